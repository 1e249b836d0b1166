//! The built-in emulator as the binary's tests use it: a small generated tenant
//! plus the few records the auth and HTTP tests need, served on 127.0.0.1 from
//! its own thread, and helpers that read its request log.
#![allow(dead_code)]

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use graph_emulator::{
    self as emulator, AppRegistration, DELEGATED_PASSWORD, DelegatedUser, DirectoryObject,
    EmulatorConfig, FULL_APP_SECRET, GenerateSpec, LogEntry, READ_APP_SECRET, RunningEmulator,
    Tenant, ThrottleConfig, User,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// A user with a presence (Available/Available) and five group memberships.
pub const USER_ID: &str = "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e";
pub const USER_UPN: &str = "adele.vance@contoso.example";
/// A delegated user whose account is disabled (AADSTS50057).
pub const DISABLED_USER: &str = "disabled.user@contoso.example";
/// Its secret has expired (AADSTS7000222).
pub const EXPIRED_APP: (&str, &str) = ("e1ec7a11-0003-4a00-8000-00000000a003", "old~S3cret");
/// Granted only delegated `User.Read`: reads /me, nothing an action needs.
pub const ME_ONLY_APP: (&str, &str) = ("e1ec7a11-0004-4a00-8000-00000000a004", "me~S3cret");
/// A public client (no secret at all) with the connector's permissions.
pub const PUBLIC_APP: &str = "e1ec7a11-0005-4a00-8000-00000000a005";
/// Groups the user is a member of, for paging memberOf.
pub const GROUPS: usize = 5;

/// The base64url JOSE header every emulator access token starts with.
pub fn token_header_b64() -> String {
    URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256","kid":"msgraph-emulator"}"#)
}

fn user(id: &str, upn: &str, extra: Value) -> User {
    let mut v = json!({"id": id, "userPrincipalName": upn, "displayName": upn});
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).expect("a valid test user")
}

fn app(
    client_id: &str,
    secret: Option<&'static str>,
    permissions: &[&'static str],
) -> AppRegistration {
    AppRegistration {
        client_id: client_id.parse().unwrap(),
        display_name: format!("test app {client_id}").into(),
        client_secret: secret.map(Into::into),
        client_secret_expired: false,
        certificate: None,
        public_client: false,
        permissions: permissions.iter().map(|&p| p.into()).collect(),
    }
}

/// The generated tenant with this module's additions.
pub fn tenant() -> Tenant {
    let mut t = Tenant::generate(&GenerateSpec {
        users: 20,
        sign_ins: 20,
        seed: 7,
        day: None,
    });
    t.users.push(user(
        USER_ID,
        USER_UPN,
        json!({"presence": {"availability": "Available", "activity": "Available"}}),
    ));
    t.users.push(user(
        "d15ab1ed-0000-4000-8000-000000000001",
        DISABLED_USER,
        json!({"accountEnabled": false}),
    ));
    t.delegated_users.push(DelegatedUser {
        user_principal_name: DISABLED_USER.into(),
        password: DELEGATED_PASSWORD.into(),
        mfa_required: false,
        locked: false,
        disabled: false,
        password_expired: false,
    });
    let full = t.apps[0].permissions.clone();
    let mut expired = app(EXPIRED_APP.0, Some(EXPIRED_APP.1), &["User.Read.All"]);
    expired.client_secret_expired = true;
    t.apps.push(expired);
    t.apps
        .push(app(ME_ONLY_APP.0, Some(ME_ONLY_APP.1), &["User.Read"]));
    let mut public = app(PUBLIC_APP, None, &[]);
    public.public_client = true;
    public.permissions = full;
    t.apps.push(public);
    for i in 0..GROUPS {
        t.groups.push(DirectoryObject {
            id: Uuid::parse_str(&format!("9a000000-0000-4000-8000-00000000000{i}")).unwrap(),
            display_name: format!("Paging group {i}").into(),
            description: None,
            security_enabled: None,
            mail_enabled: None,
            mail: None,
            role_template_id: None,
            members: vec![USER_ID.parse().unwrap()],
        });
    }
    t
}

/// A running emulator over [`tenant`] (throttling off unless a test turns it on).
pub struct Emu {
    pub emu: RunningEmulator,
}

impl std::ops::Deref for Emu {
    type Target = RunningEmulator;
    fn deref(&self) -> &RunningEmulator {
        &self.emu
    }
}

impl Emu {
    pub fn start() -> Emu {
        Emu::start_with(|_| {})
    }

    /// Start after `tweak` has changed the settings or the tenant (`config.tenant`).
    pub fn start_with(tweak: impl FnOnce(&mut EmulatorConfig)) -> Emu {
        let mut config = EmulatorConfig::new(tenant());
        config.throttle = ThrottleConfig::off();
        tweak(&mut config);
        let emu = emulator::start_in_background("127.0.0.1:0".parse().unwrap(), config).unwrap();
        Emu { emu }
    }

    /// `asset_json(kind)` with the retry settings the tests rely on.
    pub fn asset(&self, kind: &str) -> Value {
        let mut a = self.emu.asset_json(kind).unwrap();
        a["timeout_seconds"] = json!(5);
        a["max_attempts"] = json!(4);
        a["max_retry_seconds"] = json!(10);
        a
    }

    pub fn log(&self) -> Vec<LogEntry> {
        self.emu.request_log().snapshot()
    }
    pub fn tokens(&self) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(|e| e.family == "token")
            .collect()
    }
    pub fn graph(&self) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(|e| e.family != "token")
            .collect()
    }

    /// No credential of the tenant, and no token the emulator issued (its JWT header,
    /// its refresh-token prefix, and every token cached under `state_dir`), is in `text`.
    pub fn assert_no_secrets(&self, text: &str, state_dir: Option<&Path>) {
        for secret in [
            FULL_APP_SECRET,
            READ_APP_SECRET,
            EXPIRED_APP.1,
            ME_ONLY_APP.1,
            DELEGATED_PASSWORD,
            "-----BEGIN",
        ] {
            assert!(!text.contains(secret), "a secret leaked: {text}");
        }
        assert!(
            !text.contains(&token_header_b64()),
            "an access token leaked: {text}"
        );
        assert!(!text.contains("1.EMU"), "a refresh token leaked: {text}");
        for cached in state_dir.map(cached_tokens).unwrap_or_default() {
            assert!(!text.contains(&cached), "a cached token leaked: {text}");
        }
    }
}

/// Every access and refresh token in the token cache under `state_dir`.
pub fn cached_tokens(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("tokens")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap())
                .unwrap_or_default();
            for k in ["access_token", "refresh_token"] {
                if let Some(s) = v[k].as_str() {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}
