//! The built-in emulator as the tests use it, on 127.0.0.1 from its own thread.
//!
//! [`EmulatorSetup`] says which tenant it serves and how: the small tenant with the
//! auth and HTTP edge cases ([`tenant_with_edge_cases`]) or a generated one, throttling
//! off or relaxed, the clock frozen, settings added to every asset. [`Emulator`] is the
//! running server with the tenant it serves, a state dir, the real binary run against
//! it, and its request log.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use graph_emulator::{
    self as emulator, AppRegistration, DELEGATED_PASSWORD, DelegatedUser, DirectoryObject,
    EmulatorConfig, FULL_APP_SECRET, GenerateSpec, LogEntry, READ_APP_CLIENT_ID, READ_APP_SECRET,
    RateLimit, RunningEmulator, SignIn, Tenant, ThrottleConfig, User,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::process::{self, Outcome};

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
        directory_roles: Vec::new(),
    }
}

/// A small generated tenant plus the few records the auth and HTTP tests need: a
/// disabled user, an expired secret, an app granted only `/me`, a public client, and
/// [`USER_ID`] with a presence and [`GROUPS`] memberships to page through.
pub fn tenant_with_edge_cases() -> Tenant {
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

/// The clock a test freezes the emulator at, to place its sign-ins exactly.
pub const T0: &str = "2026-03-02T08:00:00Z";

/// How the emulator of one test is set up; [`EmulatorSetup::start`] runs it.
pub struct EmulatorSetup {
    config: EmulatorConfig,
    /// The day the tenant's generated sign-ins lie on: unless a test sets the clock, it
    /// runs from the next day, so they are all visible and within the sign-in log's
    /// retention, as on a real tenant read soon after.
    data_day: jiff::civil::Date,
    /// Added to every asset [`Emulator::asset`] gives.
    asset_settings: Map<String, Value>,
}

impl EmulatorSetup {
    /// [`tenant_with_edge_cases`], throttling off, and the asset's retry settings
    /// the auth and HTTP tests rely on.
    pub fn edge_cases() -> EmulatorSetup {
        EmulatorSetup::serving(tenant_with_edge_cases())
            .throttle(ThrottleConfig::off())
            .asset_setting("timeout_seconds", json!(5))
            .asset_setting("max_attempts", json!(4))
            .asset_setting("max_retry_seconds", json!(10))
    }

    /// A generated tenant, throttled at Microsoft's published limits (the emulator's
    /// default), on the real clock.
    pub fn generated(spec: GenerateSpec) -> EmulatorSetup {
        EmulatorSetup {
            data_day: spec.day.unwrap_or(emulator::DEFAULT_DAY),
            ..EmulatorSetup::serving(Tenant::generate(&spec))
        }
    }

    /// A generated tenant of `users` users and no sign-ins (seed 7), throttling off.
    pub fn users(users: usize) -> EmulatorSetup {
        EmulatorSetup::generated(GenerateSpec {
            users,
            sign_ins: 0,
            seed: 7,
            day: None,
        })
        .throttle(ThrottleConfig::off())
    }

    fn serving(tenant: Tenant) -> EmulatorSetup {
        EmulatorSetup {
            config: EmulatorConfig::new(tenant),
            data_day: emulator::DEFAULT_DAY,
            asset_settings: Map::new(),
        }
    }

    /// Whether the tenant has Entra ID P1/P2 (the sign-in log needs it).
    pub fn premium(mut self, premium: bool) -> EmulatorSetup {
        self.config.tenant.premium = premium;
        self
    }

    pub fn throttle(mut self, throttle: ThrottleConfig) -> EmulatorSetup {
        self.config.throttle = throttle;
        self
    }

    /// The audit-log limit raised to 1,000 requests a second on both sides, the
    /// emulator's and the asset's pacing, so that sign-in suites stay fast.
    pub fn relaxed_audit_logs(mut self) -> EmulatorSetup {
        self.config.throttle.audit_logs = Some(RateLimit {
            requests: 1000,
            per: Duration::from_secs(1),
        });
        self.asset_setting(
            "rate_limits",
            json!({"audit_logs": {"requests": 1000, "per_seconds": 1}}),
        )
    }

    /// Start with the virtual clock frozen at `at` (tests move it themselves).
    pub fn clock_frozen_at(mut self, at: &str) -> EmulatorSetup {
        self.config.clock = Some(at.parse().expect("a timestamp"));
        self
    }

    /// Set `key` in every asset.
    pub fn asset_setting(mut self, key: &str, value: Value) -> EmulatorSetup {
        self.asset_settings.insert(key.to_string(), value);
        self
    }

    /// Change anything else of the settings or the tenant (`config.tenant`).
    pub fn configure(mut self, tweak: impl FnOnce(&mut EmulatorConfig)) -> EmulatorSetup {
        tweak(&mut self.config);
        self
    }

    pub fn start(self) -> Emulator {
        let tenant = self.config.tenant.clone();
        let running_from = self.config.clock.is_none().then(|| {
            self.data_day
                .tomorrow()
                .expect("a day")
                .at(1, 0, 0, 0)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .expect("a time")
                .timestamp()
        });
        let server = emulator::start_in_background("127.0.0.1:0".parse().unwrap(), self.config)
            .expect("the emulator starts");
        if let Some(at) = running_from {
            server.start_clock_at(at);
        }
        Emulator {
            server,
            tenant,
            state: tempfile::tempdir().unwrap(),
            asset_settings: self.asset_settings,
        }
    }
}

/// A running emulator, the tenant it started with, and a state dir for the binary.
pub struct Emulator {
    pub server: RunningEmulator,
    pub tenant: Tenant,
    pub state: tempfile::TempDir,
    asset_settings: Map<String, Value>,
}

impl std::ops::Deref for Emulator {
    type Target = RunningEmulator;
    fn deref(&self) -> &RunningEmulator {
        &self.server
    }
}

impl Emulator {
    /// [`EmulatorSetup::edge_cases`], started.
    pub fn start() -> Emulator {
        EmulatorSetup::edge_cases().start()
    }

    /// [`EmulatorSetup::edge_cases`] after `tweak`, started.
    pub fn start_with(tweak: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
        EmulatorSetup::edge_cases().configure(tweak).start()
    }

    /// `asset_json(kind)` with the setup's asset settings.
    pub fn asset(&self, kind: &str) -> Value {
        let mut a = self.server.asset_json(kind).unwrap();
        for (k, v) in &self.asset_settings {
            a[k] = v.clone();
        }
        a
    }

    /// The client-credentials asset of the app with only `User.Read.All`.
    pub fn read_only_asset(&self) -> Value {
        let mut a = self.asset("client_credentials");
        a["client_id"] = json!(READ_APP_CLIENT_ID);
        a["client_secret"] = json!(READ_APP_SECRET);
        a
    }

    /// Run `action` as the full-permission app, with the emulator's state dir.
    pub fn run(&self, action: &str, inputs: Value) -> Outcome {
        self.run_as(&self.asset("client_credentials"), action, inputs)
    }

    /// Runs with a fresh state dir each time when `asset` is not the default one,
    /// so a cached token of another app is never reused.
    pub fn run_as(&self, asset: &Value, action: &str, inputs: Value) -> Outcome {
        if asset == &self.asset("client_credentials") {
            process::run_action(action, asset, &inputs, self.state.path())
        } else {
            let dir = tempfile::tempdir().unwrap();
            process::run_action(action, asset, &inputs, dir.path())
        }
    }

    /// Every request since the start or the last [`Emulator::clear_log`].
    pub fn log(&self) -> Vec<LogEntry> {
        self.server.request_log().snapshot()
    }

    /// The token requests of [`Emulator::log`].
    pub fn token_log(&self) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(|e| e.family == "token")
            .collect()
    }

    /// The Graph requests of [`Emulator::log`] (token requests left out).
    pub fn graph_log(&self) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(|e| e.family != "token")
            .collect()
    }

    pub fn clear_log(&self) {
        self.server.request_log().clear();
    }

    pub fn user_id(&self, i: usize) -> String {
        self.tenant.users[i].id.to_string()
    }

    pub fn upn(&self, i: usize) -> String {
        self.tenant.users[i].user_principal_name.to_string()
    }

    /// Index of the user with this UPN.
    pub fn index_of(&self, upn: &str) -> usize {
        self.tenant
            .users
            .iter()
            .position(|u| u.user_principal_name == upn)
            .unwrap_or_else(|| panic!("no user {upn}"))
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

/// A successful interactive browser sign-in to Teams by `user` from `ip`, that the
/// sign-in log shows `late` after it happened.
pub fn sign_in(user: Uuid, created: Timestamp, late: SignedDuration, ip: &str) -> SignIn {
    SignIn {
        id: Uuid::new_v4(),
        created_date_time: created,
        visible_at: Some(created.checked_add(late).unwrap()),
        user_id: user,
        app_id: Uuid::nil(),
        app_display_name: "Teams".into(),
        ip_address: ip.parse().unwrap(),
        error_code: 0,
        client_app_used: "Browser".into(),
        is_interactive: true,
        sign_in_event_types: Vec::new(),
        city: None,
        country_or_region: None,
        operating_system: None,
        browser: None,
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
