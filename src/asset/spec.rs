//! The asset as a platform stores it: one flat JSON object whose `type` picks
//! the authentication flow ([`AssetSpec`], `shared/docs/CONTRACT.md`, "Asset"),
//! its JSON Schema ([`AssetSpec::schema`], with the fields each `type` requires),
//! and the small value types it is made of ([`AssetType`], [`ApiVersion`],
//! [`RateLimit`], [`RateLimits`]). Secrets are [`SecretString`] from the moment
//! they are parsed, so no `Debug` or error path can show them.

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";

/// Authentication flow named by the asset's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetType {
    /// App-only: client id + secret, token URL built from `login_url` and `tenant_id`.
    ClientCredentials,
    /// App-only: client id + secret against an explicit `token_url`.
    Oauth2ClientCredentials,
    /// App-only: a client assertion JWT signed with the app's certificate key.
    ClientCertificate,
    /// Delegated, resource-owner password (ROPC). Fails for users who must do MFA.
    Password,
    /// Delegated, from a refresh token; every answer rotates it.
    RefreshToken,
}

impl AssetType {
    pub const ALL: [AssetType; 5] = [
        AssetType::ClientCredentials,
        AssetType::Oauth2ClientCredentials,
        AssetType::ClientCertificate,
        AssetType::Password,
        AssetType::RefreshToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetType::ClientCredentials => "client_credentials",
            AssetType::Oauth2ClientCredentials => "oauth2_client_credentials",
            AssetType::ClientCertificate => "client_certificate",
            AssetType::Password => "password",
            AssetType::RefreshToken => "refresh_token",
        }
    }

    pub fn is_delegated(self) -> bool {
        matches!(self, AssetType::Password | AssetType::RefreshToken)
    }

    /// The fields this type requires beyond `type` and `client_id`.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            AssetType::ClientCredentials => &["tenant_id", "client_secret"],
            AssetType::Oauth2ClientCredentials => &["token_url", "client_secret"],
            AssetType::ClientCertificate => &["tenant_id", "certificate", "private_key"],
            AssetType::Password => &["tenant_id", "username", "password"],
            AssetType::RefreshToken => &["refresh_token"],
        }
    }
}

/// The `api_version` path segment of every Graph URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[default]
    #[serde(rename = "v1.0")]
    V1,
    #[serde(rename = "beta")]
    Beta,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

/// Client-side pacing for one API family: at most `requests` per `per_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[schemars(range(min = 1))]
    pub requests: u32,
    #[schemars(range(min = 0.001, max = 86400))]
    pub per_seconds: f64,
}

/// Pacing per API family; the defaults are Graph's published per-app limits.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Presence APIs. Default 1,500 requests / 30 s.
    pub presence: RateLimit,
    /// Audit logs including sign-ins. Default 5 requests / 10 s.
    pub audit_logs: RateLimit,
    /// Users, groups, memberships. Default 3,500 requests / 10 s (the smallest tenant's bucket).
    pub directory: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            presence: RateLimit {
                requests: 1500,
                per_seconds: 30.0,
            },
            audit_logs: RateLimit {
                requests: 5,
                per_seconds: 10.0,
            },
            directory: RateLimit {
                requests: 3500,
                per_seconds: 10.0,
            },
        }
    }
}

/// The asset as stored by a platform: one flat object, `type` picks the flow.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Asset",
    description = "How msgraph-connector authenticates to Microsoft Graph."
)]
pub struct AssetSpec {
    /// The authentication flow.
    #[serde(rename = "type")]
    pub asset_type: AssetType,
    /// Graph base URL; national clouds set their own (e.g. https://graph.microsoft.us).
    #[serde(default)]
    #[schemars(url, extend("default" = DEFAULT_GRAPH_URL))]
    pub url: Option<String>,
    /// Entra ID authority host (not for `oauth2_client_credentials`).
    #[serde(default)]
    #[schemars(url, extend("default" = DEFAULT_LOGIN_URL))]
    pub login_url: Option<String>,
    /// Graph API version.
    #[serde(default)]
    pub api_version: ApiVersion,
    /// Directory (tenant) id or verified domain. `organizations` by default for `refresh_token`.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub tenant_id: Option<String>,
    /// Explicit token endpoint (only for `oauth2_client_credentials`).
    #[serde(default)]
    #[schemars(url)]
    pub token_url: Option<String>,
    /// Application (client) id.
    #[schemars(length(min = 1))]
    pub client_id: String,
    /// Client secret value (not the secret's id).
    #[serde(default)]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub client_secret: Option<SecretString>,
    /// PEM certificate of the app (for `client_certificate`); its SHA-256 thumbprint goes into `x5t#S256`.
    #[serde(default)]
    pub certificate: Option<String>,
    /// PEM private key matching `certificate` (PKCS#8 or PKCS#1 RSA).
    #[serde(default)]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub private_key: Option<SecretString>,
    /// User principal name for the `password` flow.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the `password` flow.
    #[serde(default)]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub password: Option<SecretString>,
    /// Refresh token for the `refresh_token` flow; the newest rotated one is kept in the token cache.
    #[serde(default)]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub refresh_token: Option<SecretString>,
    /// Scopes. Default `["{url}/.default"]`; delegated flows add `offline_access`.
    #[serde(default)]
    pub scope: Option<Vec<String>>,
    /// Verify TLS certificates. Turning this off is logged as a warning on every run.
    #[serde(default = "yes")]
    pub verify_ssl: bool,
    /// A PEM file of certificate authorities to trust besides the system's: a company's
    /// TLS-inspecting proxy, or `emulator --tls` (which prints an asset with it set).
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub ca_file: Option<String>,
    /// Proxy URL, e.g. http://proxy.corp:3128 (may hold credentials: treated as a secret).
    #[serde(default)]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub http_proxy: Option<SecretString>,
    /// Timeout of one HTTP request, in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
    /// Attempts per request, including the first (429/503/504 and connection failures are retried).
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: u32,
    /// Time budget for one request including all retries and waits, in seconds.
    #[serde(default = "default_retry_budget")]
    #[schemars(range(min = 1, max = 3600))]
    pub max_retry_seconds: u32,
    /// Client-side pacing per API family.
    #[serde(default)]
    pub rate_limits: RateLimits,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> u32 {
    30
}
fn default_attempts() -> u32 {
    6
}
fn default_retry_budget() -> u32 {
    120
}

impl AssetSpec {
    /// The asset's JSON Schema: the derived one plus, per `type`, its required fields.
    pub fn schema() -> Value {
        let mut schema =
            serde_json::to_value(schemars::schema_for!(AssetSpec)).expect("schemas serialise");
        let all_of: Vec<Value> = AssetType::ALL
            .iter()
            .map(|t| {
                json!({
                    "if": {"properties": {"type": {"const": t.as_str()}}, "required": ["type"]},
                    "then": {"required": t.required_fields()}
                })
            })
            .collect();
        schema["allOf"] = Value::Array(all_of);
        schema
    }
}
