//! Token requests: the oauth2 crate (5.x) driven over our one reqwest client.
//!
//! oauth2 builds the form body and parses the answer into our own types:
//! [`EntraTokenResponse`] keeps `ext_expires_in` (and `refresh_token`, `scope`),
//! [`EntraError`] keeps Entra's `error_codes`, `trace_id` and `correlation_id`.
//! The client-certificate flow is oauth2's client-credentials request with
//! `client_assertion_type` and `client_assertion` as extra parameters and no
//! secret (oauth2 has no private-key JWT support of its own).
//!
//! [`TokenProvider`] hands out bearer tokens: from memory, else from the disk
//! cache (see [`super::cache`]; an entry is used only by the credential that
//! obtained it), else from the token endpoint; for `refresh_token` assets it
//! keeps the newest rotated refresh token.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ErrorResponse, ExtraTokenFields,
    RefreshToken, RequestTokenError, ResourceOwnerPassword, ResourceOwnerUsername, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::assertion::AssertionSigner;
use super::cache::{CacheSlot, CachedToken, CredentialKey};
use super::shared_cache::{SharedLock, SharedSlot, StateKey};
use crate::asset::{Asset, Flow};
use crate::error::{Error, Result};
use crate::http::describe_reqwest;
use crate::http::retry::{Decision, RetryBudget};

/// The longest token lifetime we believe (seconds).
const MAX_TOKEN_LIFETIME: u64 = 86_400;

/// Entra's extra field of a token answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntraTokenFields {
    /// Lifetime (seconds) during an Entra outage ("extended expiry").
    #[serde(
        default,
        deserialize_with = "lenient_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub ext_expires_in: Option<u64>,
}

impl ExtraTokenFields for EntraTokenFields {}

/// A token answer: access token, `expires_in`, `refresh_token`, `scope`, `ext_expires_in`.
/// oauth2's secret types redact themselves in `Debug`.
pub type EntraTokenResponse = StandardTokenResponse<EntraTokenFields, BasicTokenType>;

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Entra's error answer. Its description never contains the credential sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntraError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u64>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub error_uri: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

impl EntraError {
    /// The first line of `error_description` (the rest is trace/correlation ids and a timestamp).
    pub fn first_line(&self) -> Option<&str> {
        self.error_description
            .as_deref()
            .and_then(|d| d.lines().next())
            .map(str::trim)
            .filter(|l| !l.is_empty())
    }

    /// `AADSTS7000215`, from `error_codes` or the description's prefix.
    pub fn aadsts(&self) -> Option<String> {
        if let Some(code) = self.error_codes.first() {
            return Some(format!("AADSTS{code}"));
        }
        let line = self.first_line()?;
        let rest = line.strip_prefix("AADSTS")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
    }
}

impl std::fmt::Display for EntraError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.first_line() {
            Some(line) => write!(f, "{}: {line}", self.error),
            None => f.write_str(&self.error),
        }
    }
}

impl ErrorResponse for EntraError {}

type OauthClient = oauth2::Client<
    EntraError,
    EntraTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What a person should do about an AADSTS code.
pub fn aadsts_hint(code: u64) -> Option<&'static str> {
    Some(match code {
        7000215 => "invalid client secret: use the secret's Value, not its Secret ID",
        7000222 => "the client secret has expired: create a new one in the app registration",
        700016 => {
            "application not found in the tenant: check client_id and tenant_id, and that the app is consented there"
        }
        90002 => "tenant not found: check tenant_id (a GUID or verified domain) and login_url",
        50126 => "invalid username or password",
        50034 => "the user does not exist in this tenant: check username and tenant_id",
        50053 => "the account is locked (too many sign-in attempts or blocked IP)",
        50055 => "the user's password has expired: change it, then update the asset",
        50057 => "the user account is disabled",
        50076 | 50079 => {
            "MFA is required: the password grant cannot do MFA; use refresh_token or client credentials"
        }
        65001 => "the app lacks consent for the requested permissions: an admin must grant consent",
        70011 => "the scope is invalid: for app-only use {graph_url}/.default",
        700082 | 70008 => "the refresh token has expired: sign in again to get a new one",
        50173 => "the refresh token was revoked (password change or admin action): sign in again",
        700024 => "the client assertion is outside its validity window: check this machine's clock",
        700027 => {
            "the client assertion's certificate is not registered on the app: upload the certificate"
        }
        _ => return None,
    })
}

/// The error a token endpoint refusal becomes: kind `auth`, code `AADSTS...`.
pub fn entra_error_to_error(e: &EntraError, status: Option<u16>) -> Error {
    let code = e.aadsts();
    let numeric = e.error_codes.first().copied().or_else(|| {
        code.as_deref()
            .and_then(|c| c.strip_prefix("AADSTS"))
            .and_then(|d| d.parse().ok())
    });
    let detail = e.first_line().unwrap_or(&e.error).to_string();
    let message = match numeric.and_then(aadsts_hint) {
        Some(hint) => format!("token request refused: {hint} ({detail})"),
        None => format!("token request refused: {detail}"),
    };
    // Entra's text is the server's: one that echoes the form body would hand back
    // the secret (issue 19, item 7), so every field taken from it is scrubbed.
    use crate::redact::scrub;
    let code = code.unwrap_or_else(|| e.error.clone());
    let mut err = Error::auth(scrub(&message)).with_code(scrub(&code));
    if let Some(s) = status {
        err = err.with_status(s);
    }
    if let Some(id) = e.trace_id.as_deref().or(e.correlation_id.as_deref()) {
        err = err.with_request_id(scrub(id));
    }
    err
}

/// A transport failure under oauth2.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("cannot build the token response: {0}")]
    Build(#[from] oauth2::http::Error),
}

/// The credential a token request presents.
enum Credential {
    Secret(SecretString),
    Certificate(AssertionSigner),
    Password {
        username: String,
        password: SecretString,
        client_secret: Option<SecretString>,
    },
    Refresh {
        seed: SecretString,
        client_secret: Option<SecretString>,
    },
}

/// What `check` learns from one token answer.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: SecretString,
    pub from_cache: bool,
}

/// Where tokens are kept between processes.
#[derive(Debug)]
enum Slot {
    /// `<state_dir>/tokens/`.
    File(CacheSlot),
    /// The shared PostgreSQL state.
    Shared(SharedSlot),
}

/// A slot's lock, held while a token is read, requested and written.
enum Held {
    File(#[allow(dead_code)] Option<std::fs::File>),
    Shared(Option<SharedLock>),
}

impl Slot {
    async fn lock(&self, wait: Duration) -> Held {
        match self {
            Slot::File(s) => Held::File(s.lock(wait).await),
            Slot::Shared(s) => Held::Shared(s.lock(wait).await),
        }
    }

    async fn unlock(&self, held: Held) {
        match (self, held) {
            (Slot::Shared(s), Held::Shared(lock)) => s.unlock(lock).await,
            // A lock file's lock ends when the file is closed.
            (_, held) => drop(held),
        }
    }

    async fn load(&self) -> Option<CachedToken> {
        match self {
            Slot::File(s) => s.load(),
            Slot::Shared(s) => s.load().await,
        }
    }

    async fn store(&self, token: &CachedToken) {
        match self {
            Slot::File(s) => s.store(token),
            Slot::Shared(s) => s.store(token).await,
        }
    }

    async fn remove(&self) {
        match self {
            Slot::File(s) => s.remove(),
            Slot::Shared(s) => s.remove().await,
        }
    }
}

/// Where a [`TokenProvider`] keeps tokens between processes.
#[derive(Clone, Copy)]
pub enum TokenCache<'a> {
    /// Nowhere (`--no-token-cache`, or no state dir): memory only.
    None,
    /// `<state_dir>/tokens/`.
    Dir(&'a std::path::Path),
    /// The shared PostgreSQL state (`--state-url`), sealed under the state key.
    Shared(&'a std::sync::Arc<crate::backend::Postgres>),
}

/// Hands out bearer tokens for one asset, asking the endpoint as rarely as it can.
pub struct TokenProvider {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    scope: Vec<String>,
    credential: Credential,
    slot: Option<Slot>,
    wait_for_lock: Duration,
    max_attempts: u32,
    max_retry_time: Duration,
    /// The current token (and newest refresh token) of this process.
    current: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &crate::asset::url_for_display(&self.token_url))
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("cache", &self.slot)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// `cache` says where tokens are kept between processes. Errors point into the
    /// asset (`/type`, `/private_key`); a shared state without its state key is kind
    /// `state` (exit 7).
    pub fn new(asset: &Asset, http: reqwest::Client, cache: TokenCache<'_>) -> Result<Self> {
        let state_dir = match cache {
            TokenCache::Dir(dir) => Some(dir),
            _ => None,
        };
        let credential = match &asset.flow {
            Flow::ClientSecret { secret } => Credential::Secret(secret.clone()),
            Flow::ClientCertificate {
                certificate_pem,
                private_key_pem,
            } => Credential::Certificate(AssertionSigner::from_pem(
                certificate_pem,
                private_key_pem,
            )?),
            Flow::Password {
                username,
                password,
                client_secret,
            } => Credential::Password {
                username: username.clone(),
                password: password.clone(),
                client_secret: client_secret.clone(),
            },
            Flow::RefreshToken {
                refresh_token,
                client_secret,
            } => Credential::Refresh {
                seed: refresh_token.clone(),
                client_secret: client_secret.clone(),
            },
        };
        if matches!(credential, Credential::Refresh { .. }) && matches!(cache, TokenCache::None) {
            // Every answer rotates the refresh token and the old one dies: without a
            // cache the new one would be lost after this run, and the seed with it.
            // It cannot travel in the result's `state` either, which is printed.
            return Err(Error::invalid(
                "/type",
                "refresh_token needs the token cache to keep each rotated refresh token: \
                 give a --state-dir and do not pass --no-token-cache, or use client credentials \
                 where the platform gives no disk",
            ));
        }
        if let Some(dir) = state_dir {
            // Unlike other cache failures, an open token folder is not gone around:
            // the tokens already in it would stay readable by others.
            super::cache::tighten(dir)
                .map_err(|e| Error::invalid("", format!("the token cache is not private: {e}")))?;
        }
        let name = |user: String| {
            [
                asset.token_url.to_string(),
                asset.client_id.clone(),
                asset.scope.join(" "),
                user,
            ]
        };
        let slot = match cache {
            TokenCache::None => None,
            TokenCache::Shared(pg) => {
                // Checked before anything is sent: without the key no worker could read
                // what another stored, nor store what the others can read.
                let key = StateKey::from_env(pg.shown())?;
                let (user, fingerprint) = cache_binding(&asset.flow, key.fingerprint_key());
                Some(Slot::Shared(SharedSlot::new(
                    pg.clone(),
                    name(user),
                    fingerprint,
                    &key,
                )))
            }
            TokenCache::Dir(dir) => match CredentialKey::open(dir) {
                Ok(key) => {
                    let (user, fingerprint) = cache_binding(&asset.flow, &key);
                    Some(Slot::File(CacheSlot::new(
                        dir,
                        name(user).to_vec(),
                        fingerprint,
                    )))
                }
                Err(e) => {
                    // Like any other cache failure: a token request per run beats no result.
                    tracing::warn!(
                        "token cache: cannot use the fingerprint key, going without: {e}"
                    );
                    None
                }
            },
        };
        Ok(TokenProvider {
            http,
            token_url: asset.token_url.clone(),
            client_id: asset.client_id.clone(),
            scope: asset.scope.clone(),
            credential,
            slot,
            wait_for_lock: asset.timeout + Duration::from_secs(5),
            max_attempts: asset.max_attempts,
            max_retry_time: asset.max_retry_time,
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// A token good for at least a few more minutes.
    pub async fn token(&self) -> Result<SecretString> {
        Ok(self.obtain(None, false).await?.access_token)
    }

    /// A token other than `rejected`, which Graph refused as expired or invalid.
    pub async fn replace(&self, rejected: &SecretString) -> Result<SecretString> {
        Ok(self.obtain(Some(rejected), false).await?.access_token)
    }

    /// A token straight from the endpoint (for `check`, which must prove the credential works).
    pub async fn fresh(&self) -> Result<IssuedToken> {
        self.obtain(None, true).await
    }

    async fn obtain(&self, rejected: Option<&SecretString>, force: bool) -> Result<IssuedToken> {
        let mut current = self.current.lock().await;
        let now = jiff::Timestamp::now().as_second();
        let usable = |t: &CachedToken| {
            !force
                && t.is_fresh(now)
                && rejected.is_none_or(|r| r.expose_secret() != t.access_token.expose_secret())
        };
        if let Some(t) = current.as_ref().filter(|t| usable(t)) {
            return Ok(IssuedToken {
                access_token: t.access_token.clone(),
                from_cache: true,
            });
        }
        // Across processes: hold the entry's lock while we read, request and write.
        let Some(slot) = &self.slot else {
            return self
                .obtain_locked(&mut current, None, rejected, force)
                .await;
        };
        let held = slot.lock(self.wait_for_lock).await;
        let result = self
            .obtain_locked(&mut current, Some(slot), rejected, force)
            .await;
        slot.unlock(held).await;
        result
    }

    /// [`Self::obtain`] under the entry's lock: the cache's token, else a new one.
    async fn obtain_locked(
        &self,
        current: &mut Option<CachedToken>,
        slot: Option<&Slot>,
        rejected: Option<&SecretString>,
        force: bool,
    ) -> Result<IssuedToken> {
        let now = jiff::Timestamp::now().as_second();
        let usable = |t: &CachedToken| {
            !force
                && t.is_fresh(now)
                && rejected.is_none_or(|r| r.expose_secret() != t.access_token.expose_secret())
        };
        let stored = match slot {
            Some(slot) => slot.load().await,
            None => None,
        };
        if let Some(t) = &stored {
            remember_token(t);
        }
        if let Some(t) = stored.as_ref().filter(|t| usable(t)) {
            tracing::debug!("using the cached token");
            *current = Some(t.clone());
            return Ok(IssuedToken {
                access_token: t.access_token.clone(),
                from_cache: true,
            });
        }
        // The newest refresh token we know: this process's, else the cache's, else the asset's seed.
        let known_refresh = current
            .as_ref()
            .and_then(|t| t.refresh_token.clone())
            .or_else(|| stored.as_ref().and_then(|t| t.refresh_token.clone()));
        let result = self.request_with_retries(known_refresh.as_ref()).await;
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                if e.kind == crate::error::ErrorKind::Auth
                    && known_refresh.is_some()
                    && let Some(slot) = slot
                {
                    // A refused rotated refresh token is useless; the next run starts from the seed.
                    slot.remove().await;
                }
                return Err(e);
            }
        };
        let now = jiff::Timestamp::now().as_second();
        // Entra issues tokens for about an hour; a day caps whatever a token endpoint
        // claims, so no answer can overflow the arithmetic or pin a token forever.
        let clamp = |secs: u64| secs.min(MAX_TOKEN_LIFETIME) as i64;
        let lifetime = clamp(answer.expires_in().map_or(3600, |d| d.as_secs()));
        let token = CachedToken {
            access_token: SecretString::from(answer.access_token().secret().as_str()),
            obtained_at: now,
            expires_at: now + lifetime,
            ext_expires_at: answer.extra_fields().ext_expires_in.map(|s| now + clamp(s)),
            refresh_token: answer
                .refresh_token()
                .map(|r| SecretString::from(r.secret().as_str()))
                .or(known_refresh),
            scope: answer
                .scopes()
                .map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(" ")),
        };
        remember_token(&token);
        tracing::info!(
            expires_in = lifetime,
            "got a new token from {}",
            crate::asset::url_for_display(&self.token_url)
        );
        if let Some(slot) = slot {
            slot.store(&token).await;
        }
        let issued = IssuedToken {
            access_token: token.access_token.clone(),
            from_cache: false,
        };
        *current = Some(token);
        Ok(issued)
    }

    /// The token endpoint unreachable, throttling (429) or failing (5xx) is retried
    /// like Graph is (same attempt and time caps); a refusal (4xx) never is.
    async fn request_with_retries(
        &self,
        refresh: Option<&SecretString>,
    ) -> Result<EntraTokenResponse> {
        let mut budget = RetryBudget::new(self.max_attempts, self.max_retry_time);
        loop {
            let attempt = budget.start_attempt();
            let retry_after = StdMutex::new(None);
            match self.request(refresh, &retry_after).await {
                // Entra's throttling and outage answers (429, 503) may name a
                // Retry-After, honoured as Graph's is; without one, backoff.
                Err(e) if e.kind == crate::error::ErrorKind::Network => {
                    let named = *retry_after.lock().unwrap_or_else(|p| p.into_inner());
                    match budget.decide(named) {
                        Decision::GiveUp(_) => return Err(e),
                        Decision::Wait { wait, source } => {
                            tracing::warn!(
                                attempt,
                                "retrying the token request in {:.3}s ({}): {}",
                                wait.as_secs_f64(),
                                source.as_str(),
                                e.message
                            );
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
                other => return other,
            }
        }
    }

    /// One request to the token endpoint; a `Retry-After` of the answer goes to `retry_after`.
    async fn request(
        &self,
        refresh: Option<&SecretString>,
        retry_after: &StdMutex<Option<Duration>>,
    ) -> Result<EntraTokenResponse> {
        let mut client: OauthClient = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
        let secret = match &self.credential {
            Credential::Secret(s) => Some(s),
            Credential::Password { client_secret, .. }
            | Credential::Refresh { client_secret, .. } => client_secret.as_ref(),
            Credential::Certificate(_) => None,
        };
        if let Some(s) = secret {
            client = client.set_client_secret(ClientSecret::new(s.expose_secret().to_string()));
        }
        let scopes = self.scope.iter().map(|s| Scope::new(s.clone()));

        let status = StdMutex::new(None::<u16>);
        let http = |request: oauth2::HttpRequest| {
            let status = &status;
            async move {
                let mut request = reqwest::Request::try_from(request)?;
                request.headers_mut().insert(
                    "client-request-id",
                    reqwest::header::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                        .expect("a GUID is a header value"),
                );
                let response = self.http.execute(request).await?;
                let code = response.status();
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(code.as_u16());
                *retry_after.lock().unwrap_or_else(|p| p.into_inner()) = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| crate::http::retry::parse_retry_after(v, jiff::Timestamp::now()));
                let mut builder = oauth2::http::Response::builder().status(code.as_u16());
                for (name, value) in response.headers() {
                    builder = builder.header(name.as_str(), value.as_bytes());
                }
                let body = response.bytes().await?;
                Ok::<_, TransportError>(builder.body(body.to_vec())?)
            }
        };

        let result = match &self.credential {
            Credential::Secret(_) => {
                client
                    .exchange_client_credentials()
                    .add_scopes(scopes)
                    .request_async(&http)
                    .await
            }
            Credential::Certificate(signer) => {
                let assertion = signer.assertion(&self.client_id, self.token_url.as_str())?;
                crate::redact::remember(assertion.expose_secret());
                client
                    .exchange_client_credentials()
                    .add_scopes(scopes)
                    .add_extra_param(
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    )
                    .add_extra_param("client_assertion", assertion.expose_secret().to_string())
                    .request_async(&http)
                    .await
            }
            Credential::Password {
                username, password, ..
            } => {
                let username = ResourceOwnerUsername::new(username.clone());
                let password = ResourceOwnerPassword::new(password.expose_secret().to_string());
                client
                    .exchange_password(&username, &password)
                    .add_scopes(scopes)
                    .request_async(&http)
                    .await
            }
            Credential::Refresh { seed, .. } => {
                let token = RefreshToken::new(refresh.unwrap_or(seed).expose_secret().to_string());
                client
                    .exchange_refresh_token(&token)
                    .add_scopes(scopes)
                    .request_async(&http)
                    .await
            }
        };
        let status = *status.lock().unwrap_or_else(|p| p.into_inner());
        result.map_err(|e| self.map_error(e, status))
    }

    fn map_error(
        &self,
        e: RequestTokenError<TransportError, EntraError>,
        status: Option<u16>,
    ) -> Error {
        let host = self.token_url.host_str().unwrap_or_default();
        let with_status = |err: Error| match status {
            Some(s) => err.with_status(s),
            None => err,
        };
        match e {
            RequestTokenError::ServerResponse(entra) => match status {
                // Throttled or failing, not refusing: retried, then reported as no answer.
                Some(s) if s == 429 || s >= 500 => {
                    let mut err = entra_error_to_error(&entra, status);
                    err.kind = crate::error::ErrorKind::Network;
                    err.message = crate::redact::scrub(&format!(
                        "the token endpoint at {host} answered {s}: {entra}"
                    ));
                    err
                }
                _ => entra_error_to_error(&entra, status),
            },
            RequestTokenError::Request(TransportError::Http(e)) => Error::network(format!(
                "cannot reach the token endpoint at {host}: {}",
                describe_reqwest(&e)
            )),
            RequestTokenError::Request(TransportError::Build(e)) => {
                Error::internal(format!("token response: {e}"))
            }
            RequestTokenError::Parse(_, _) | RequestTokenError::Other(_) => match status {
                Some(s) if s == 429 || s >= 500 => with_status(Error::network(format!(
                    "the token endpoint at {host} answered {s}; try again later"
                ))),
                Some(s) if s != 200 => with_status(
                    Error::auth(format!(
                        "the token endpoint at {host} refused with {s} and no readable error"
                    ))
                    .with_code(format!("http_{s}")),
                ),
                _ => with_status(Error::auth(format!(
                    "the token endpoint at {host} answered with something that is not a token (check token_url / login_url)"
                ))),
            },
        }
    }
}

/// Know a token's secrets, so server text that echoes them is scrubbed ([`crate::redact`]).
fn remember_token(t: &CachedToken) {
    crate::redact::remember(t.access_token.expose_secret());
    if let Some(r) = &t.refresh_token {
        crate::redact::remember(r.expose_secret());
    }
}

/// What names a cache entry's user, and the fingerprint of the credential the
/// entry is bound to (see [`super::cache`]).
///
/// A `refresh_token` asset is bound to the refresh token it was given (the
/// seed), not to the rotated one the cache keeps: the asset does not change
/// when Entra rotates the token, so its fingerprint does not either, and the
/// next run finds the rotated token it needs. A new seed in the asset is a new
/// sign-in and gets an entry of its own. A changed client secret or password
/// is a miss: Entra decides, not the cache.
fn optional(s: &Option<SecretString>) -> [&[u8]; 2] {
    match s {
        Some(s) => [b"1", s.expose_secret().as_bytes()],
        None => [b"0", b""],
    }
}

fn cache_binding(flow: &Flow, key: &CredentialKey) -> (String, String) {
    match flow {
        Flow::ClientSecret { secret } => (
            String::new(),
            key.fingerprint(&[b"client_secret", secret.expose_secret().as_bytes()]),
        ),
        Flow::ClientCertificate {
            certificate_pem,
            private_key_pem,
        } => (
            String::new(),
            key.fingerprint(&[
                b"client_certificate",
                certificate_pem.as_bytes(),
                private_key_pem.expose_secret().as_bytes(),
            ]),
        ),
        Flow::Password {
            username,
            password,
            client_secret,
        } => {
            let [has, secret] = optional(client_secret);
            (
                format!("user:{}", username.to_lowercase()),
                key.fingerprint(&[
                    b"password",
                    username.as_bytes(),
                    password.expose_secret().as_bytes(),
                    has,
                    secret,
                ]),
            )
        }
        Flow::RefreshToken {
            refresh_token,
            client_secret,
        } => {
            let seed = refresh_token.expose_secret().as_bytes();
            let [has, secret] = optional(client_secret);
            (
                // Keyed too: the entry's name part is stored in the entry.
                format!(
                    "refresh:{}",
                    &key.fingerprint(&[b"refresh_token seed", seed])[..16]
                ),
                key.fingerprint(&[b"refresh_token", seed, has, secret]),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(json: &str) -> EntraError {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn entra_errors_keep_code_trace_and_first_line() {
        let e = entra(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\nTimestamp: 2024-01-01 00:00:00Z","error_codes":[7000215],"trace_id":"t-1","correlation_id":"c-1"}"#,
        );
        let err = entra_error_to_error(&e, Some(401));
        assert_eq!(err.exit_code(), 3);
        assert_eq!(err.code.as_deref(), Some("AADSTS7000215"));
        assert_eq!(err.request_id.as_deref(), Some("t-1"));
        assert_eq!(err.status_code, Some(401));
        assert!(err.message.contains("Value, not its Secret ID"));
        assert!(!err.message.contains("Trace ID"));
    }

    #[test]
    fn code_from_description_when_error_codes_missing() {
        let e = entra(r#"{"error":"invalid_grant","error_description":"AADSTS50076: Due to MFA"}"#);
        let err = entra_error_to_error(&e, Some(400));
        assert_eq!(err.code.as_deref(), Some("AADSTS50076"));
        assert!(err.message.contains("MFA is required"));
    }

    #[test]
    fn token_answers_keep_ext_expires_in() {
        let t: EntraTokenResponse = serde_json::from_str(
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"secret-at","refresh_token":"secret-rt","scope":"User.Read offline_access"}"#,
        )
        .unwrap();
        assert_eq!(t.extra_fields().ext_expires_in, Some(3599));
        assert_eq!(t.refresh_token().unwrap().secret(), "secret-rt");
        assert_eq!(t.scopes().unwrap().len(), 2);
        let debug = format!("{t:?}");
        assert!(!debug.contains("secret-at") && !debug.contains("secret-rt"));
    }
}
