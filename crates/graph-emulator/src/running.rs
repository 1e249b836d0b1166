//! [`RunningEmulator`]: the handle on a started emulator, with the runtime knobs
//! tests use (faults, throttling, the virtual clock, sign-ins, minted tokens) and
//! a connector asset that points at it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;

use crate::access_token::{self, GRAPH_RESOURCE};
use crate::error::EmulatorError;
use crate::faults::{Family, FaultKind, FaultPlan, ThrottleConfig};
use crate::log::RequestLog;
use crate::state::Shared;
use crate::tenant::{SignIn, User};

/// A running emulator. Dropping it stops the server.
pub struct RunningEmulator {
    pub(crate) addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    /// With `tls`: the PEM of the certificate authority that signed the server's certificate.
    pub(crate) ca_pem: Option<String>,
    /// Stops the server task.
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's own thread and runtime ([`crate::start_in_background`]).
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningEmulator {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// With `tls`: the PEM of the certificate authority clients must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// `http://127.0.0.1:PORT` (`https://` with `tls`): both the Graph `url` and the `login_url`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{base_url}/{tenant_id}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.shared.base_url,
            self.tenant_id()
        )
    }

    pub fn tenant_id(&self) -> Uuid {
        self.shared.dir.read().expect("dir lock").tenant.tenant_id
    }

    /// Handle on the request log (cloneable, shared with the server).
    pub fn request_log(&self) -> RequestLog {
        self.shared.log.clone()
    }

    /// Token endpoint requests answered so far (including refused ones).
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::Relaxed)
    }

    /// A connector asset (CONTRACT.md field names) pointing at this emulator.
    /// Kinds: `client_credentials`, `oauth2_client_credentials`, `password`, `refresh_token`.
    /// Uses the tenant's first app with a secret and its first delegated user that can
    /// sign in without MFA.
    pub fn asset_json(&self, kind: &str) -> Result<serde_json::Value, EmulatorError> {
        let (tenant_id, app, user) = {
            let dir = self.shared.dir.read().expect("dir lock");
            let t = &dir.tenant;
            let app = t
                .apps
                .iter()
                .find(|a| a.client_secret.is_some() && !a.client_secret_expired)
                .cloned()
                .ok_or_else(|| {
                    EmulatorError::Config("the tenant has no app with a client secret".into())
                })?;
            let user = t
                .delegated_users
                .iter()
                .find(|d| !d.mfa_required && !d.locked && !d.disabled && !d.password_expired)
                .cloned();
            (t.tenant_id, app, user)
        };
        let base = self.base_url();
        let secret = app.client_secret.clone().unwrap_or_default();
        let need_user = || {
            user.clone().ok_or_else(|| {
                EmulatorError::Config("the tenant has no delegated user without MFA".into())
            })
        };
        Ok(match kind {
            "client_credentials" => json!({
                "type": "client_credentials", "url": base, "login_url": base,
                "tenant_id": tenant_id.to_string(), "client_id": app.client_id.to_string(),
                "client_secret": secret,
            }),
            "oauth2_client_credentials" => json!({
                "type": "oauth2_client_credentials", "url": base, "token_url": self.token_url(),
                "client_id": app.client_id.to_string(), "client_secret": secret,
            }),
            "password" => {
                let u = need_user()?;
                json!({
                    "type": "password", "url": base, "login_url": base,
                    "tenant_id": tenant_id.to_string(), "client_id": app.client_id.to_string(),
                    "client_secret": secret, "username": u.user_principal_name, "password": u.password,
                })
            }
            "refresh_token" => {
                let u = need_user()?;
                let rt = self.mint_refresh_token(&u.user_principal_name, app.client_id)?;
                json!({
                    "type": "refresh_token", "url": base, "login_url": base,
                    "tenant_id": tenant_id.to_string(), "client_id": app.client_id.to_string(),
                    "client_secret": secret, "refresh_token": rt,
                })
            }
            other => {
                return Err(EmulatorError::Config(format!(
                    "unknown asset type '{other}' (client_credentials, oauth2_client_credentials, password, refresh_token)"
                )));
            }
        })
    }

    /// Issue a refresh token for a delegated user and app, as if they had signed in.
    pub fn mint_refresh_token(&self, upn: &str, client_id: Uuid) -> Result<String, EmulatorError> {
        let dir = self.shared.dir.read().expect("dir lock");
        let app = dir
            .app(client_id)
            .ok_or_else(|| EmulatorError::Config(format!("no app {client_id}")))?;
        let user = dir
            .user(upn)
            .ok_or_else(|| EmulatorError::Config(format!("no user {upn}")))?;
        let scope = app
            .permissions
            .iter()
            .map(|p| format!("{GRAPH_RESOURCE}/{p}"))
            .chain(["openid".into(), "profile".into(), "offline_access".into()])
            .collect::<Vec<_>>()
            .join(" ");
        let upn = user.user_principal_name.to_string();
        drop(dir);
        Ok(self
            .shared
            .issue_refresh_token(client_id, &upn, &scope, self.shared.clock.now()))
    }

    /// An app-only access token for `client_id` with its granted permissions.
    pub fn mint_access_token(&self, client_id: Uuid) -> Result<String, EmulatorError> {
        let shared = &self.shared;
        let dir = shared.dir.read().expect("dir lock");
        let app = dir
            .app(client_id)
            .ok_or_else(|| EmulatorError::Config(format!("no app {client_id}")))?;
        let perms: Vec<String> = app.permissions.iter().map(|p| p.to_string()).collect();
        Ok(access_token::mint(
            shared,
            &dir.tenant,
            app,
            shared.clock.now(),
            shared.settings.token_lifetime,
            &perms,
            None,
        ))
    }

    /// Replace the fault plan (the RNG is reseeded from `plan.seed`).
    pub fn set_faults(&self, plan: FaultPlan) {
        let rng = fastrand::Rng::with_seed(plan.seed);
        *self.shared.faults.lock().expect("faults lock") = (plan, rng);
    }

    /// The next `n` requests of `family` (`None`: any family but token) fail with `kind`.
    pub fn fail_next(&self, family: Option<Family>, n: usize, kind: FaultKind) {
        let mut f = self.shared.faults.lock().expect("faults lock");
        for _ in 0..n {
            f.0.queue.push_back((family, kind.clone()));
        }
    }

    /// Replace the throttle limits (counters restart).
    pub fn set_throttle(&self, config: ThrottleConfig) {
        *self.shared.throttle.lock().expect("throttle lock") = (config, Default::default());
    }

    /// Freeze the virtual clock at `at`.
    pub fn set_clock(&self, at: Timestamp) {
        self.shared.clock.set(at);
    }

    /// Run the virtual clock at real speed from `at` (unlike [`Self::set_clock`], it moves).
    pub fn start_clock_at(&self, at: Timestamp) {
        self.shared.clock.start_at(at);
    }

    /// Move the virtual clock forward (frozen or not).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Back to real time.
    pub fn use_real_clock(&self) {
        self.shared.clock.real();
    }

    /// The emulator's current "now".
    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// Delete a user now; `false` when there is no such user.
    pub fn delete_user(&self, id: Uuid) -> bool {
        self.shared.dir.write().expect("dir lock").delete_user(id)
    }

    /// Delete a user as the `n`-th `$batch` request from the start arrives (before it is
    /// answered): a user deleted between a client's first reads and its later ones.
    pub fn delete_user_at_batch(&self, id: Uuid, n: u64) {
        self.shared
            .scheduled_deletions
            .lock()
            .expect("deletions lock")
            .push((n, id));
    }

    /// Change a user in place (a new photo, a disabled account) as an administrator
    /// would between two runs; `false` when there is no such user.
    pub fn edit_user(&self, id: Uuid, edit: impl FnOnce(&mut User)) -> bool {
        let mut dir = self.shared.dir.write().expect("dir lock");
        let Some(i) = dir.by_id.get(&id).copied() else {
            return false;
        };
        let before = (
            dir.tenant.users[i].id,
            dir.tenant.users[i].user_principal_name.clone(),
        );
        edit(&mut dir.tenant.users[i]);
        let user = &dir.tenant.users[i];
        // The indexes are by id and UPN: rebuilt only when one of them changed.
        if (user.id, &user.user_principal_name) != (before.0, &before.1) {
            dir.reindex();
        }
        true
    }

    /// Add sign-in records (visible from their `visible_at`).
    pub fn add_sign_ins(&self, sign_ins: Vec<SignIn>) {
        self.shared
            .dir
            .write()
            .expect("dir lock")
            .add_sign_ins(sign_ins);
    }

    /// A user by id or UPN, as the emulator currently holds it (sees PATCHes).
    pub fn user(&self, id_or_upn: &str) -> Option<User> {
        self.shared
            .dir
            .read()
            .expect("dir lock")
            .user(id_or_upn)
            .cloned()
    }

    /// Stop serving. Also happens on drop.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.stop_now();
    }
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("addr", &self.addr)
            .finish()
    }
}
