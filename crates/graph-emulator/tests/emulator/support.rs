//! The one way these tests start an emulator ([`start`], [`start_with`]: throttling off
//! unless a test turns it on), the tenants they use, and the assertions every area shares.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use graph_emulator::{
    self as emulator, EmulatorConfig, GenerateSpec, RunningEmulator, Tenant, ThrottleConfig,
};
use serde_json::{Value, json};

pub const FULL: (&str, &str) = ("0a000000-0000-4000-8000-00000000000a", "full-secret");
pub const READER: (&str, &str) = ("0b000000-0000-4000-8000-00000000000b", "reader-secret");
pub const HELPDESK: (&str, &str) = ("0c000000-0000-4000-8000-00000000000c", "helpdesk-secret");
pub const ADA: &str = "11111111-1111-4111-8111-111111111111";
pub const GRACE: &str = "44444444-4444-4444-8444-444444444444";

/// The repository's fixture tenant (shared with the connector's tests).
pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/tenant.yaml"
);

/// An app registration with a client secret, `permissions` and the directory roles its
/// service principal holds.
pub fn app(
    (id, secret): (&str, &str),
    permissions: &[&str],
    directory_roles: &[&str],
) -> graph_emulator::AppRegistration {
    graph_emulator::AppRegistration {
        client_id: id.parse().unwrap(),
        display_name: format!("app {id}").into(),
        client_secret: Some(secret.to_string().into()),
        client_secret_expired: false,
        certificate: None,
        public_client: false,
        permissions: permissions.iter().map(|p| p.to_string().into()).collect(),
        directory_roles: directory_roles
            .iter()
            .map(|r| r.to_string().into())
            .collect(),
    }
}

pub fn fixture() -> Tenant {
    Tenant::load(FIXTURE).unwrap()
}

pub fn small_generated() -> Tenant {
    Tenant::generate(&GenerateSpec {
        users: 50,
        sign_ins: 2500,
        seed: 11,
        day: None,
    })
}

pub struct T {
    pub emu: RunningEmulator,
    pub http: reqwest::Client,
}

pub async fn start_with(tenant: Tenant, tweak: impl FnOnce(&mut EmulatorConfig)) -> T {
    let mut config = EmulatorConfig::new(tenant);
    config.throttle = ThrottleConfig::off();
    // The fixture's sign-ins lie on a fixed day in 2025 and most tests run on the real
    // clock; the retention tests switch it back on.
    config.sign_in_retention = false;
    tweak(&mut config);
    let emu = emulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    T {
        emu,
        http: reqwest::Client::new(),
    }
}

pub async fn start(tenant: Tenant) -> T {
    start_with(tenant, |_| {}).await
}

impl T {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.emu.base_url(), path)
    }

    pub async fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.emu.token_url())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn app_token(&self, (id, secret): (&str, &str)) -> String {
        let scope = format!("{}/.default", self.emu.base_url());
        let (status, body) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", &scope),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_eventual(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .header("ConsistencyLevel", "eventual")
            .send()
            .await
            .unwrap()
    }
}

pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn assert_graph_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let inner = &body["error"]["innerError"];
    assert!(
        inner["request-id"].is_string()
            && inner["date"].is_string()
            && inner["client-request-id"].is_string(),
        "{body}"
    );
}

pub fn assert_aadsts(status: u16, body: &Value, want_status: u16, error: &str, code: u64) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
    assert!(
        d.contains("\r\nTrace ID: ")
            && d.contains("\r\nCorrelation ID: ")
            && d.contains("\r\nTimestamp: "),
        "{d}"
    );
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[k].is_string(), "{k} missing in {body}");
    }
}

pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
