//! The built-in fake tenant (see shared/docs/emulator.md).
//!
//! An axum server on loopback that behaves like Microsoft Graph (`/v1.0` and
//! `/beta`) and the Entra ID v2.0 token endpoint, over a [`Tenant`] loaded from a
//! fixture ([`Tenant::load`]) or generated from a seed ([`Tenant::generate`]).
//! Where Graph is strict the emulator is strict: permissions per endpoint, the
//! 650-id presence cap, `$top` limits, `ConsistencyLevel: eventual`, opaque signed
//! `$skiptoken`s, sign-ins that show up late, throttling with fractional
//! `Retry-After`, and injectable faults.
//!
//! ```no_run
//! # async fn demo() -> Result<(), graph_emulator::EmulatorError> {
//! use graph_emulator::{self as emulator, EmulatorConfig, GenerateSpec, Tenant};
//! let tenant = Tenant::generate(&GenerateSpec { users: 100, sign_ins: 1000, seed: 1, ..Default::default() });
//! let emu = emulator::start("127.0.0.1:0".parse().unwrap(), EmulatorConfig::new(tenant)).await?;
//! let asset = emu.asset_json("client_credentials")?; // a connector asset pointing at emu
//! # let _ = asset; Ok(()) }
//! ```
//!
//! Runtime knobs for tests: [`RunningEmulator::set_faults`], [`RunningEmulator::fail_next`],
//! [`RunningEmulator::set_throttle`], [`RunningEmulator::set_clock`] /
//! [`RunningEmulator::advance_clock`] (the virtual "now" used for token expiry, throttling
//! windows and sign-in visibility), [`RunningEmulator::add_sign_ins`] and the [`RequestLog`].

mod faults;
mod generate;
mod graph;
mod log;
mod odata;
mod server;
mod tenant;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;

pub use faults::{
    Family, FaultKind, FaultPlan, FaultRule, RateLimit, ResourceBucket, ThrottleConfig,
};
pub use generate::{
    DEFAULT_DAY, DELEGATED_PASSWORD, DELEGATED_USER, FULL_APP_CLIENT_ID, FULL_APP_SECRET,
    GenerateSpec, MFA_USER, READ_APP_CLIENT_ID, READ_APP_SECRET, TENANT_ID,
};
pub use log::{LogEntry, RequestLog, TokenRequest};
pub use tenant::{
    AppCertificate, AppRegistration, DelegatedUser, DirectoryObject, Office, Photo, Presence,
    SignIn, Tenant, Text, User,
};

use server::{Clock, Directory, Settings, Shared};

/// What can go wrong starting or configuring the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("the emulator only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("tenant fixture {path}: {message}")]
    Fixture { path: String, message: String },
    #[error("invalid emulator setting: {0}")]
    Config(String),
    #[error("request log {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
}

/// How to run the emulator. `EmulatorConfig::new(tenant)` gives the defaults.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub tenant: Tenant,
    /// `expires_in` of access tokens (default 3599 s).
    pub token_lifetime: Duration,
    /// Default: Microsoft's published limits, fractional `Retry-After`.
    pub throttle: ThrottleConfig,
    /// Faults at start; when empty, the tenant's `faults:` spec (if any) is used.
    pub faults: FaultPlan,
    /// Also append every request as one JSON line to this file.
    pub request_log_path: Option<PathBuf>,
    /// Start with the virtual clock frozen at this instant (default: real time).
    pub clock: Option<Timestamp>,
    /// Allow a refresh token to be redeemed more than once (default false: the old
    /// one is invalid once a new one has been issued).
    pub refresh_token_reuse: bool,
    /// Refresh tokens unused this long are refused with AADSTS700082 (default 90 days).
    pub refresh_token_max_inactive: Duration,
    /// How long a `$skiptoken` stays usable (default 1 hour).
    pub skiptoken_ttl: Duration,
}

impl EmulatorConfig {
    pub fn new(tenant: Tenant) -> EmulatorConfig {
        EmulatorConfig {
            tenant,
            token_lifetime: Duration::from_secs(3599),
            throttle: ThrottleConfig::published(),
            faults: FaultPlan::none(),
            request_log_path: None,
            clock: None,
            refresh_token_reuse: false,
            refresh_token_max_inactive: Duration::from_secs(90 * 24 * 3600),
            skiptoken_ttl: Duration::from_secs(3600),
        }
    }
}

impl Default for EmulatorConfig {
    /// A small generated tenant (`GenerateSpec::default()`).
    fn default() -> Self {
        EmulatorConfig::new(Tenant::generate(&GenerateSpec::default()))
    }
}

/// A running emulator. Dropping it stops the server.
pub struct RunningEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    k[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    k
}

/// Serve `config.tenant` on `listen` (loopback only; port 0 picks a free port).
/// Must be called inside a tokio runtime; the server runs as a task of it.
pub async fn start(
    listen: SocketAddr,
    config: EmulatorConfig,
) -> Result<RunningEmulator, EmulatorError> {
    if !listen.ip().is_loopback() {
        return Err(EmulatorError::NotLoopback(listen));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: listen,
            source,
        })?;
    let shared = Arc::new(build_shared(addr, config)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = server::router(shared.clone());
    let serve = axum::serve(
        server::FaultListener(listener),
        app.into_make_service_with_connect_info::<server::Conn>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!("emulator server: {e}");
        }
    });
    tracing::info!("emulator listening on http://{addr}");
    Ok(RunningEmulator {
        addr,
        shared,
        stop: Some(stop),
        thread: None,
    })
}

/// Like [`start`], on a thread with its own tokio runtime: for plain `#[test]`s and
/// for callers inside another runtime that must not share it.
pub fn start_in_background(
    listen: SocketAddr,
    config: EmulatorConfig,
) -> Result<RunningEmulator, EmulatorError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("msgraph-emulator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(EmulatorError::Config(format!("tokio runtime: {e}"))));
                    return;
                }
            };
            rt.block_on(async move {
                match start(listen, config).await {
                    Ok(mut emu) => {
                        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                        let inner_stop = emu.stop.take();
                        let _ = tx.send(Ok((emu.addr, emu.shared.clone(), stop_tx)));
                        let _ = stop_rx.await;
                        if let Some(s) = inner_stop {
                            let _ = s.send(());
                        }
                        // Let in-flight answers finish, briefly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| EmulatorError::Config(format!("emulator thread: {e}")))?;
    let (addr, shared, stop) = rx
        .recv()
        .map_err(|_| EmulatorError::Config("emulator thread ended early".into()))??;
    Ok(RunningEmulator {
        addr,
        shared,
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn build_shared(addr: SocketAddr, config: EmulatorConfig) -> Result<Shared, EmulatorError> {
    let mut faults = config.faults;
    if faults == FaultPlan::none()
        && let Some(spec) = &config.tenant.faults
    {
        faults = FaultPlan::parse(spec).map_err(EmulatorError::Config)?;
    }
    let log = RequestLog::with_file(config.request_log_path.as_deref()).map_err(|source| {
        EmulatorError::Log {
            path: config
                .request_log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source,
        }
    })?;
    let clock = Clock::default();
    if let Some(at) = config.clock {
        clock.set(at);
    }
    let rng = fastrand::Rng::with_seed(faults.seed);
    Ok(Shared {
        dir: RwLock::new(Directory::new(config.tenant)),
        clock,
        faults: Mutex::new((faults, rng)),
        throttle: Mutex::new((config.throttle, Default::default())),
        refresh: Mutex::default(),
        token_requests: Default::default(),
        log,
        token_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &random_key()),
        pages: odata::PageTokens::new(&random_key()),
        base_url: format!("http://{addr}"),
        settings: Settings {
            token_lifetime: config.token_lifetime,
            refresh_token_reuse: config.refresh_token_reuse,
            refresh_token_max_inactive: config.refresh_token_max_inactive,
            skiptoken_ttl: config.skiptoken_ttl,
        },
    })
}

impl RunningEmulator {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: both the Graph `url` and the `login_url`.
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
        token::mint_refresh_token(&self.shared, upn, client_id).map_err(EmulatorError::Config)
    }

    /// An app-only access token for `client_id` with its granted permissions.
    pub fn mint_access_token(&self, client_id: Uuid) -> Result<String, EmulatorError> {
        token::mint_app_token(&self.shared, client_id).map_err(EmulatorError::Config)
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
