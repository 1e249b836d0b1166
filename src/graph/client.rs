//! The Graph client of one run and its retry loop around one plain call.
//!
//! [`GraphClient::send`] builds the URL (every value one encoded segment, the
//! host always the asset's Graph host), then loops: pacing (a slot of the
//! family's window), auth (the bearer token), one attempt on the wire, and on
//! failure the [`RetryBudget`]'s decision: wait for `Retry-After` or backoff,
//! or give up. Retries carry `Retry-Attempt: n`, as Microsoft's SDKs send it. A 401 `InvalidAuthenticationToken` gets one fresh token and one
//! retry that does not count as an attempt.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::pacing;
use super::request::{ApiFamily, GraphRequest, Method};
use super::response::{GraphResponse, graph_error, kept_headers};
use crate::asset::Asset;
use crate::auth::TokenProvider;
use crate::auth::token::TokenCache;
use crate::error::{Error, Result};
use crate::http::describe_reqwest;
use crate::http::retry::{self, Decision, RetryBudget};

/// Where a client keeps what outlives one process.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Directory for the token cache; `None` keeps tokens in memory only.
    pub state_dir: Option<std::path::PathBuf>,
    /// `false` with `--no-token-cache`: never read or write cached tokens.
    pub token_cache: bool,
    /// Where the pacer's budgets are shared with other processes (issue 17); `None`
    /// paces within this process only.
    pub backend: Option<crate::backend::Backend>,
}

/// The Graph client of one run: cheap to clone, shared by concurrent requests.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    asset: Asset,
    http: reqwest::Client,
    tokens: TokenProvider,
    /// `{graph_url}{api_version}/`: every request URL starts with it.
    base: Url,
    backend: Option<crate::backend::Backend>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field(
                "graph_url",
                &crate::asset::url_for_display(&self.inner.asset.graph_url),
            )
            .finish_non_exhaustive()
    }
}

/// A request ready to go on the wire (and to be replayed on retry).
pub(super) struct Prepared {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Option<Value>,
    pub(super) family: ApiFamily,
    pub(super) idempotent: bool,
    pub(super) max_body: u64,
}

/// Why the last attempt failed, for the retry decision and the final error.
enum Failure {
    /// No answer: connect error, timeout, cut-off body.
    Transport(String),
    /// An answer with a status we may retry.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        error: Error,
    },
}

enum AttemptError {
    Final(Error),
    ExpiredToken(Error),
    Retry(Failure),
}

impl GraphClient {
    /// The client of `asset`. Errors point into the asset (`/http_proxy`,
    /// `/private_key`); the caller places them.
    pub fn new(asset: Asset, options: ClientOptions) -> Result<Self> {
        let http = crate::http::build_client(&asset)?;
        let state_dir = options.state_dir.as_deref().filter(|_| options.token_cache);
        if !asset.verify_ssl {
            warn_unverified_tls(&asset, state_dir);
        }
        // With a shared state (PostgreSQL) the tokens are kept there, sealed under the
        // state key; else in the state dir.
        let cache = match (&options.backend, state_dir) {
            (_, None) if !options.token_cache => TokenCache::None,
            (Some(crate::backend::Backend::Postgres(pg)), _) => TokenCache::Shared(pg),
            (_, Some(dir)) => TokenCache::Dir(dir),
            (_, None) => TokenCache::None,
        };
        let tokens = TokenProvider::new(&asset, http.clone(), cache)?;
        let base = asset
            .graph_url
            .join(&format!("{}/", asset.api_version.as_str()))
            .map_err(|e| Error::internal(format!("cannot build the Graph base URL: {e}")))?;
        Ok(GraphClient {
            inner: Arc::new(Inner {
                asset,
                http,
                tokens,
                base,
                backend: options.backend,
            }),
        })
    }

    pub fn asset(&self) -> &Asset {
        &self.inner.asset
    }

    /// Where this client shares its state with other processes, if anywhere.
    pub fn backend(&self) -> Option<&crate::backend::Backend> {
        self.inner.backend.as_ref()
    }

    /// Connect the shared state now (PostgreSQL), so that a bad `--state-url` fails
    /// before any request leaves the machine.
    pub async fn ready(&self) -> Result<()> {
        match &self.inner.backend {
            Some(b) => b.ready().await,
            None => Ok(()),
        }
    }

    /// The pacer of `family` for this client's app and tenant.
    pub(super) fn pacer(&self, family: ApiFamily) -> pacing::Pacer {
        let asset = &self.inner.asset;
        pacing::pacer(
            self.inner.backend.as_ref(),
            asset.token_url.as_str(),
            &asset.client_id,
            family,
            match family {
                ApiFamily::Presence => asset.rate_limits.presence,
                ApiFamily::AuditLogs => asset.rate_limits.audit_logs,
                ApiFamily::Directory => asset.rate_limits.directory,
            },
        )
    }

    /// The token source of this client (used by `check`).
    pub fn tokens(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    /// `{graph_url}{api_version}/`, the prefix of every request URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The URL `request` goes to (path and query encoded), e.g. for tests and logs.
    /// A path no URL can carry is refused as `invalid_input` at the root: the
    /// caller built the request from its inputs and knows where they came from.
    pub fn url_for(&self, request: &GraphRequest) -> Result<Url> {
        let base = match request.api_version {
            Some(v) if v != self.inner.asset.api_version => self
                .inner
                .asset
                .graph_url
                .join(&format!("{}/", v.as_str()))
                .map_err(|e| Error::internal(format!("cannot build the Graph base URL: {e}")))?,
            _ => self.inner.base.clone(),
        };
        let mut url = format!("{}{}", base.as_str(), request.path.as_str());
        if !request.query.is_empty() {
            url.push('?');
            let pairs: Vec<String> = request
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", encode_query(k, true), encode_query(v, false)))
                .collect();
            url.push_str(&pairs.join("&"));
        }
        let url = Url::parse(&url)
            .map_err(|e| Error::internal(format!("cannot build a Graph URL: {e}")))?;
        // A value that URL parsing would reinterpret (a dot segment, even encoded) is refused.
        let expected = format!("{}{}", base.path(), request.path.as_str());
        if url.path() != expected {
            return Err(Error::invalid(
                "",
                format!(
                    "a value cannot be addressed as a Graph path segment: {:?}",
                    request.path.as_str()
                ),
            ));
        }
        self.ensure_graph_url(&url)
            .map_err(|m| Error::internal(format!("built a URL outside Graph: {m}")))?;
        Ok(url)
    }

    /// Send one request through pacing, retries and auth; 2xx comes back, anything else is an [`Error`].
    pub async fn send(&self, request: GraphRequest) -> Result<GraphResponse> {
        let prepared = self.prepare(request)?;
        self.execute(&prepared).await
    }

    /// `request` with its URL built and checked, ready to be sent (and replayed).
    pub(super) fn prepare(&self, request: GraphRequest) -> Result<Prepared> {
        Ok(Prepared {
            method: request.method,
            url: self.url_for(&request)?,
            idempotent: request.is_idempotent(),
            headers: request.headers,
            body: request.body,
            family: request.family,
            max_body: request.max_body,
        })
    }

    /// The bearer token goes only to the asset's Graph origin (scheme, host, port) under its base path.
    pub(super) fn ensure_graph_url(&self, url: &Url) -> std::result::Result<(), String> {
        let graph = &self.inner.asset.graph_url;
        if url.origin() != graph.origin() {
            return Err(format!(
                "the link points at {}, not at the configured Graph host {}",
                origin_text(url),
                origin_text(graph)
            ));
        }
        if !url.path().starts_with(graph.path()) {
            return Err(format!(
                "the link's path is outside the Graph base path {}",
                graph.path()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the link carries credentials".to_string());
        }
        Ok(())
    }

    /// The retry loop around one request, paced by its family's limiter.
    pub(super) async fn execute(&self, request: &Prepared) -> Result<GraphResponse> {
        self.execute_paced(request, true).await
    }

    /// The retry loop; `paced: false` for a `$batch`, whose items were paced one by one.
    pub(super) async fn execute_paced(
        &self,
        request: &Prepared,
        paced: bool,
    ) -> Result<GraphResponse> {
        let asset = &self.inner.asset;
        let pacer = self.pacer(request.family);
        let mut budget = RetryBudget::new(asset.max_attempts, asset.max_retry_time);
        let mut renewed_token = false;
        let mut token = self.inner.tokens.token().await?;
        loop {
            if paced {
                pacer.acquire().await?;
            }
            let attempt = budget.start_attempt();
            let failure = match self.attempt(request, &token, attempt).await {
                Ok(response) => return Ok(response),
                Err(AttemptError::Final(e)) => return Err(e),
                Err(AttemptError::ExpiredToken(e)) => {
                    if renewed_token {
                        return Err(e);
                    }
                    renewed_token = true;
                    tracing::warn!(
                        "Graph refused the token as expired or invalid (401 InvalidAuthenticationToken); getting a new one and retrying once"
                    );
                    token = self.inner.tokens.replace(&token).await?;
                    budget.refund_attempt();
                    continue;
                }
                Err(AttemptError::Retry(f)) => f,
            };
            let retry_after = match &failure {
                Failure::Transport(m) => {
                    if !request.idempotent {
                        return Err(Error::network(format!(
                            "{} {}: {m} (not retried: the request changes data)",
                            request.method.as_reqwest(),
                            request.url.path()
                        )));
                    }
                    None
                }
                Failure::Status {
                    status,
                    retry_after,
                    ..
                } => {
                    // Every worker of this app and tenant backs off, not just this one.
                    if *status == 429
                        && let Some(wait) = retry_after
                    {
                        pacer.blocked_for(*wait).await?;
                    }
                    *retry_after
                }
            };
            let wait = match budget.decide(retry_after) {
                Decision::Wait { wait, source } => {
                    let why = match &failure {
                        Failure::Transport(m) => m.clone(),
                        Failure::Status { status, .. } => format!(
                            "Graph answered {status}; waiting {:.3}s ({})",
                            wait.as_secs_f64(),
                            source.as_str()
                        ),
                    };
                    tracing::warn!(
                        attempt,
                        max_attempts = budget.max_attempts(),
                        "retrying {} {}: {why}",
                        request.method.as_reqwest(),
                        request.url.path()
                    );
                    wait
                }
                Decision::GiveUp(reason) => {
                    let last = match &failure {
                        Failure::Transport(m) => m.clone(),
                        Failure::Status { status, .. } => format!("last status {status}"),
                    };
                    let mut err = Error::network(format!(
                        "{} {}: {reason}; {last}",
                        request.method.as_reqwest(),
                        request.url.path()
                    ));
                    if let Failure::Status { status, error, .. } = failure {
                        err.status_code = Some(status);
                        err.code = error.code;
                        err.request_id = error.request_id;
                    }
                    return Err(err);
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt on the wire; `attempt` counts from 1, and every later one is a
    /// retry that says so in [`retry::RETRY_ATTEMPT_HEADER`].
    async fn attempt(
        &self,
        request: &Prepared,
        token: &SecretString,
        attempt: u32,
    ) -> std::result::Result<GraphResponse, AttemptError> {
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut builder = self
            .inner
            .http
            .request(request.method.as_reqwest(), request.url.clone())
            .bearer_auth(token.expose_secret())
            .header("client-request-id", &client_request_id)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if attempt > 1 {
            builder = builder.header(retry::RETRY_ATTEMPT_HEADER, (attempt - 1).to_string());
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        tracing::debug!(
            client_request_id,
            "{} {}",
            request.method.as_reqwest(),
            request.url.path()
        );
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(AttemptError::Retry(Failure::Transport(describe_reqwest(
                    &e,
                ))));
            }
        };
        let status = response.status().as_u16();
        let headers = kept_headers(response.headers());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, jiff::Timestamp::now()));
        let body = match read_capped(response, request.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                // A hostile or broken server must not take the memory: stop reading.
                return Err(AttemptError::Final(
                    Error::graph(
                        status,
                        format!(
                            "{} {}: Graph answered {status} with a body larger than {} MiB; not read",
                            request.method.as_reqwest(),
                            request.url.path(),
                            request.max_body >> 20
                        ),
                    )
                    .with_code("ResponseTooLarge"),
                ));
            }
            Err(BodyError::Transport(e)) => {
                return Err(AttemptError::Retry(Failure::Transport(describe_reqwest(
                    &e,
                ))));
            }
        };
        if (200..300).contains(&status) {
            return Ok(GraphResponse {
                status,
                headers,
                body,
            });
        }
        let error = graph_error(status, &headers, &body, &request.url);
        if status == 401 && error.code.as_deref() == Some("InvalidAuthenticationToken") {
            return Err(AttemptError::ExpiredToken(error));
        }
        if retry::is_retryable_answer(status, error.code.as_deref(), request.idempotent) {
            return Err(AttemptError::Retry(Failure::Status {
                status,
                retry_after,
                error,
            }));
        }
        Err(AttemptError::Final(error))
    }
}

enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

/// The answer body, refused as soon as it is known to exceed `max` bytes (by its
/// `Content-Length`, or while reading it): never more than `max` + one chunk in memory.
async fn read_capped(
    mut response: reqwest::Response,
    max: u64,
) -> std::result::Result<bytes::Bytes, BodyError> {
    let announced = response.content_length();
    if announced.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let too_large = |len: usize| len as u64 > max;
    // A body that arrives as one chunk is returned as it is, with no copy (as
    // `Response::bytes` did); a longer one is gathered once into a buffer sized
    // from `Content-Length` when the server sent it.
    let Some(first) = response.chunk().await.map_err(BodyError::Transport)? else {
        return Ok(bytes::Bytes::new());
    };
    if too_large(first.len()) {
        return Err(BodyError::TooLarge);
    }
    let Some(second) = response.chunk().await.map_err(BodyError::Transport)? else {
        return Ok(first);
    };
    let announced = announced.unwrap_or(0).min(max) as usize;
    let mut body = bytes::BytesMut::with_capacity(announced.max(first.len() + second.len()));
    body.extend_from_slice(&first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if too_large(body.len() + chunk.len()) {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
        next = response.chunk().await.map_err(BodyError::Transport)?;
    }
    Ok(body.freeze())
}

#[cfg(test)]
impl GraphClient {
    /// A client-credentials client for `url`, for unit tests (nothing is sent).
    pub(super) fn for_tests(url: &str) -> GraphClient {
        let asset = crate::asset::parse(&serde_json::json!({
            "type": "client_credentials", "tenant_id": "t", "client_id": "c",
            "client_secret": "s", "url": url, "login_url": url
        }))
        .unwrap();
        GraphClient::new(asset, ClientOptions::default()).unwrap()
    }
}

fn origin_text(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Percent-encode one query key or value; OData punctuation (`$`, `'`, `(`, `)`, `,`, `:`) stays readable.
fn encode_query(raw: &str, key: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'~'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b','
                    | b':'
                    | b'@'
                    | b'/'
                    | b'*'
                    | b'!'
            )
            || (!key && b == b'=');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `verify_ssl: false` is a warning the first time an asset runs with a state dir, and a
/// debug line after that (issue 19, item 11: a warning on every run of a scheduled job
/// is noise that hides new warnings). The marker in `tokens/` is named by the keyed
/// fingerprint of the asset's endpoints and client id, so it says nothing of them;
/// without a state dir (or a writable one) every run warns.
fn warn_unverified_tls(asset: &Asset, state_dir: Option<&std::path::Path>) {
    const WARNING: &str = "verify_ssl is false: TLS certificates are NOT verified; anyone on the network path can read the token";
    let first = state_dir.is_none_or(|dir| {
        let Ok(key) = crate::auth::cache::CredentialKey::open(dir) else {
            return true;
        };
        let name = key.fingerprint(&[
            asset.graph_url.as_str().as_bytes(),
            asset.token_url.as_str().as_bytes(),
            asset.client_id.as_bytes(),
        ]);
        let marker =
            crate::auth::cache::tokens_dir(dir).join(format!("tls-unverified.{}", &name[..32]));
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        // Only the run that makes the marker warns; any failure to make it warns too.
        !matches!(open.open(&marker), Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists)
    });
    if first {
        tracing::warn!("{WARNING} (said once per asset and state dir)");
    } else {
        tracing::debug!("{WARNING}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::graph::GraphPath;

    #[test]
    fn urls_keep_values_in_their_place() {
        let c = GraphClient::for_tests("https://graph.example.com");
        let r = GraphRequest::get(
            GraphPath::user("../me").then("presence"),
            ApiFamily::Presence,
        )
        .query("$filter", "userPrincipalName eq 'o''b&x=1#y'")
        .query("$select", "id,displayName");
        assert_eq!(
            c.url_for(&r).unwrap().as_str(),
            "https://graph.example.com/v1.0/users/..%2Fme/presence?$filter=userPrincipalName%20eq%20%27o%27%27b%26x=1%23y%27&$select=id,displayName"
        );
    }

    #[test]
    fn dot_segments_never_move_the_path() {
        let c = GraphClient::for_tests("https://graph.example.com");
        let r = GraphRequest::get(GraphPath::new("groups").value(".."), ApiFamily::Directory);
        let e = c.url_for(&r).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(e.details[0].path, "", "relative to the request");
        let r = GraphRequest::get(GraphPath::user(".."), ApiFamily::Directory);
        assert_eq!(c.url_for(&r).unwrap().path(), "/v1.0/users('..')");
    }
}
