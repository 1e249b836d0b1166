//! Talking to Microsoft Graph: the one place where tokens, retries, pacing and
//! paging live. Actions build a [`GraphRequest`] and call [`GraphClient::send`]
//! or [`GraphClient::pages`]; they never see a token, a retry or a `nextLink`
//! host check.
//!
//! Layers, outermost first (smithy-rs style, around one plain call):
//! 1. pacing: a client-side limiter per (tenant, app, [`ApiFamily`]);
//! 2. retry: 429/503/504 honour `Retry-After` (integer, fractional, HTTP date),
//!    else exponential backoff with jitter, capped in attempts and total time;
//!    a 401 `InvalidAuthenticationToken` gets one fresh token and one retry;
//! 3. auth: a bearer token from [`crate::auth::TokenProvider`], only ever sent
//!    to the asset's Graph host;
//! 4. the request itself, with a `client-request-id` GUID and our User-Agent.

pub mod pacing;
pub mod path;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

pub use path::{GraphPath, odata_string};

use crate::auth::TokenProvider;
use crate::auth::token::describe_reqwest;
use crate::error::{Error, Result};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("msgraph-connector/", env!("CARGO_PKG_VERSION"));

/// Which published throttling limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFamily {
    Presence,
    AuditLogs,
    Directory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
}

/// One Graph call, described as data so that the HTTP layer can replay it.
/// Its `Debug` leaves the body out: an `update_user` body can hold a password.
#[derive(Clone)]
pub struct GraphRequest {
    pub method: Method,
    pub path: GraphPath,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    pub family: ApiFamily,
}

impl std::fmt::Debug for GraphRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>(),
            )
            .field("body", &self.body.as_ref().map(|_| "<not shown>"))
            .field("family", &self.family)
            .finish()
    }
}

impl GraphRequest {
    pub fn new(method: Method, path: GraphPath, family: ApiFamily) -> Self {
        GraphRequest {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            family,
        }
    }
    pub fn get(path: GraphPath, family: ApiFamily) -> Self {
        GraphRequest::new(Method::Get, path, family)
    }
    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    pub fn post(path: GraphPath, family: ApiFamily) -> Self {
        GraphRequest::new(Method::Post, path, family)
    }
    pub fn patch(path: GraphPath, family: ApiFamily) -> Self {
        GraphRequest::new(Method::Patch, path, family)
    }

    /// Whether sending this twice is harmless, so that a lost connection may be retried:
    /// GETs, and the POSTs that only read (`getPresencesByUserId`).
    pub fn is_idempotent(&self) -> bool {
        match self.method {
            Method::Get => true,
            Method::Post => self.path.as_str().ends_with("getPresencesByUserId"),
            Method::Patch => false,
        }
    }
}

impl Method {
    fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Patch => reqwest::Method::PATCH,
        }
    }
}

/// Response headers kept for the result: `request-id`, `client-request-id`,
/// throttling headers, `ETag`, `Content-Type`.
pub type ResponseHeaders = Map<String, Value>;

/// A successful (2xx) answer; error statuses become [`Error`] inside `send`.
#[derive(Debug, Clone)]
pub struct GraphResponse {
    pub status: u16,
    pub headers: ResponseHeaders,
    pub body: Bytes,
}

impl GraphResponse {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            unreadable_body(
                self.status,
                format!(
                    "Graph answered {} with a body we cannot read: {e}",
                    self.status
                ),
            )
        })
    }
}

/// A 2xx answer whose body is not what Graph sends (a proxy's or captive
/// portal's HTML page, a cut body): the service's fault, not ours, so kind
/// `graph` with code `UnreadableBody` rather than `internal`.
pub fn unreadable_body(status: u16, message: impl Into<String>) -> Error {
    Error::graph(status, message).with_code("UnreadableBody")
}

/// Where a client keeps what outlives one process.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Directory for the token cache; `None` keeps tokens in memory only.
    pub state_dir: Option<std::path::PathBuf>,
    /// `false` with `--no-token-cache`: never read or write cached tokens.
    pub token_cache: bool,
}

/// One page of a collection.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Value>,
    /// `@odata.nextLink` verbatim, when there are more pages.
    pub next_link: Option<String>,
    /// `@odata.count`, when asked for with `$count=true`.
    pub count: Option<u64>,
    pub headers: ResponseHeaders,
}

/// The Graph client of one run: cheap to clone, shared by concurrent requests.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    asset: crate::auth::Asset,
    http: reqwest::Client,
    tokens: TokenProvider,
    /// `{graph_url}{api_version}/`: every request URL starts with it.
    base: Url,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph_url", &self.inner.asset.graph_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A request ready to go on the wire (and to be replayed on retry).
struct Prepared {
    method: Method,
    url: Url,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
    family: ApiFamily,
    idempotent: bool,
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

impl GraphClient {
    pub fn new(asset: crate::auth::Asset, options: ClientOptions) -> Result<Self> {
        let http = build_http_client(&asset)?;
        let state_dir = options.state_dir.as_deref().filter(|_| options.token_cache);
        let tokens = TokenProvider::new(&asset, http.clone(), state_dir)?;
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
            }),
        })
    }

    pub fn asset(&self) -> &crate::auth::Asset {
        &self.inner.asset
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
    pub fn url_for(&self, request: &GraphRequest) -> Result<Url> {
        let mut url = format!("{}{}", self.inner.base.as_str(), request.path.as_str());
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
        let expected = format!("{}{}", self.inner.base.path(), request.path.as_str());
        if url.path() != expected {
            return Err(Error::invalid(
                "/inputs",
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
        let prepared = Prepared {
            method: request.method,
            url: self.url_for(&request)?,
            idempotent: request.is_idempotent(),
            headers: request.headers,
            body: request.body,
            family: request.family,
        };
        self.execute(&prepared).await
    }

    /// Iterate a collection page by page, following `@odata.nextLink` verbatim.
    pub fn pages(&self, request: GraphRequest) -> Pages {
        Pages {
            client: self.clone(),
            next: Some(PageSource::First(request)),
        }
    }

    /// Resume a collection from a `nextLink` an earlier run returned; refused unless it points at the Graph host.
    /// A refusal is `invalid_input` at `/inputs/next_link`; see [`Self::pages_from_link_at`] to name another input.
    pub fn pages_from_link(&self, next_link: &str, family: ApiFamily) -> Result<Pages> {
        self.pages_from_link_at(next_link, family, "/inputs/next_link", Vec::new())
    }

    /// [`Self::pages_from_link`] with the input's JSON pointer and the headers the
    /// original request carried (e.g. `ConsistencyLevel: eventual`).
    pub fn pages_from_link_at(
        &self,
        next_link: &str,
        family: ApiFamily,
        pointer: &str,
        headers: Vec<(&'static str, String)>,
    ) -> Result<Pages> {
        let url = Url::parse(next_link)
            .map_err(|e| Error::invalid(pointer, format!("is not a URL: {e}")))?;
        self.ensure_graph_url(&url).map_err(|m| {
            Error::invalid(
                pointer,
                format!("{m}; only links returned by this asset's Graph are accepted"),
            )
        })?;
        Ok(Pages {
            client: self.clone(),
            next: Some(PageSource::Link(next_link.to_string(), family, headers)),
        })
    }

    /// The bearer token goes only to the asset's Graph origin (scheme, host, port) under its base path.
    fn ensure_graph_url(&self, url: &Url) -> std::result::Result<(), String> {
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

    /// The retry loop around one request.
    async fn execute(&self, request: &Prepared) -> Result<GraphResponse> {
        let asset = &self.inner.asset;
        let limiter = pacing::limiter(
            asset.token_url.as_str(),
            &asset.client_id,
            request.family,
            match request.family {
                ApiFamily::Presence => asset.rate_limits.presence,
                ApiFamily::AuditLogs => asset.rate_limits.audit_logs,
                ApiFamily::Directory => asset.rate_limits.directory,
            },
        );
        let max_attempts = asset.max_attempts.max(1);
        let mut backoff = retry::backoff();
        let mut attempt = 0u32;
        let mut renewed_token = false;
        let mut started: Option<Instant> = None;
        let mut token = self.inner.tokens.token().await?;
        loop {
            attempt += 1;
            limiter.acquire().await;
            let started = *started.get_or_insert_with(Instant::now);
            let failure = match self.attempt(request, &token).await {
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
                    attempt -= 1;
                    continue;
                }
                Err(AttemptError::Retry(f)) => f,
            };
            let (wait, why, last) = match &failure {
                Failure::Transport(m) => {
                    if !request.idempotent {
                        return Err(Error::network(format!(
                            "{} {}: {m} (not retried: the request changes data)",
                            request.method.as_reqwest(),
                            request.url.path()
                        )));
                    }
                    let wait = backoff.next().unwrap_or(Duration::from_secs(30));
                    (wait, m.clone(), m.clone())
                }
                Failure::Status {
                    status,
                    retry_after,
                    ..
                } => {
                    let (wait, source) = match retry_after {
                        Some(w) => (*w, "Retry-After"),
                        None => (backoff.next().unwrap_or(Duration::from_secs(30)), "backoff"),
                    };
                    (
                        wait,
                        format!(
                            "Graph answered {status}; waiting {:.3}s ({source})",
                            wait.as_secs_f64()
                        ),
                        format!("last status {status}"),
                    )
                }
            };
            let elapsed = started.elapsed();
            let budget = asset.max_retry_time;
            let give_up = if attempt >= max_attempts {
                Some(format!("gave up after {attempt} attempts"))
            } else if elapsed + wait > budget {
                Some(format!(
                    "gave up after {attempt} attempts and {:.1}s: the retry budget of {}s would be exceeded",
                    elapsed.as_secs_f64(),
                    budget.as_secs()
                ))
            } else {
                None
            };
            if let Some(reason) = give_up {
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
            tracing::warn!(
                attempt,
                max_attempts,
                "retrying {} {}: {why}",
                request.method.as_reqwest(),
                request.url.path()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt on the wire.
    async fn attempt(
        &self,
        request: &Prepared,
        token: &SecretString,
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
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
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
        if retry::is_retryable_status(status) {
            return Err(AttemptError::Retry(Failure::Status {
                status,
                retry_after,
                error,
            }));
        }
        Err(AttemptError::Final(error))
    }
}

enum AttemptError {
    Final(Error),
    ExpiredToken(Error),
    Retry(Failure),
}

/// Our one reqwest client: rustls, HTTP/2 by ALPN, gzip, the asset's timeouts and proxy,
/// and redirects followed only within the same origin (the bearer token stays with Graph).
fn build_http_client(asset: &crate::auth::Asset) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(asset.timeout)
        .connect_timeout(asset.timeout.min(Duration::from_secs(10)))
        .gzip(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if attempt.previous().len() >= 5 || !same_origin {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }));
    if asset.graph_url.scheme() == "http" && asset.token_url.scheme() == "http" {
        // Plain http is allowed only on loopback (the emulator), and redirects stay
        // on the same origin, so this client never speaks TLS: skip loading the
        // platform's root store, about two thirds of a short run's CPU.
        builder = builder.tls_certs_only([]);
    }
    if !asset.verify_ssl {
        tracing::warn!(
            "verify_ssl is false: TLS certificates are NOT verified; anyone on the network path can read the token"
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(proxy) = &asset.http_proxy {
        let proxy = reqwest::Proxy::all(proxy.expose_secret()).map_err(|_| {
            Error::invalid(
                "/asset/http_proxy",
                "is not a usable proxy URL (e.g. http://proxy.corp:3128)",
            )
        })?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
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

/// The response headers a result keeps.
fn kept_headers(headers: &HeaderMap) -> ResponseHeaders {
    const KEPT: [&str; 6] = [
        "request-id",
        "client-request-id",
        "x-ms-resource-unit",
        "retry-after",
        "etag",
        "content-type",
    ];
    let mut kept = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        if (KEPT.contains(&name)
            || name.starts_with("x-ms-throttle-")
            || name == "x-ms-ags-diagnostic")
            && let Ok(v) = value.to_str()
        {
            kept.insert(name.to_string(), Value::String(v.to_string()));
        }
    }
    kept
}

/// Graph's error envelope as our error: kind `graph`, `code` = `error.code`.
fn graph_error(status: u16, headers: &ResponseHeaders, body: &[u8], url: &Url) -> Error {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Body,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "innerError")]
        inner_error: Option<Map<String, Value>>,
    }
    let parsed: Option<Body> = serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error);
    let request_id = headers
        .get("request-id")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|p| p.inner_error.as_ref())
                .and_then(|i| i.get("request-id"))
                .and_then(Value::as_str)
                .map(String::from)
        });
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let message = match parsed.as_ref().and_then(|p| p.message.as_deref()) {
        Some(m) if !m.is_empty() => format!("Graph answered {status} for {}: {m}", url.path()),
        _ if (300..400).contains(&status) => format!(
            "Graph answered {status} {reason} for {}: a redirect to another host is not followed",
            url.path()
        ),
        _ => format!("Graph answered {status} {reason} for {}", url.path()),
    };
    let mut err = Error::graph(status, message);
    if let Some(code) = parsed.and_then(|p| p.code) {
        err = err.with_code(code);
    }
    if let Some(id) = request_id {
        err = err.with_request_id(id);
    }
    err
}

enum PageSource {
    First(GraphRequest),
    /// A `nextLink`, the family it counts against, and the extra headers to repeat.
    Link(String, ApiFamily, Vec<(&'static str, String)>),
}

/// A collection being read page by page.
pub struct Pages {
    client: GraphClient,
    next: Option<PageSource>,
}

/// What [`Pages::collect`] gathered.
#[derive(Debug, Clone)]
pub struct Collected {
    pub items: Vec<Value>,
    /// Where to continue. When `max_items` cut a page short this is that page's own
    /// link (re-reading it repeats up to one page of items; nothing is skipped).
    pub next_link: Option<String>,
    pub count: Option<u64>,
    /// Headers of the last page read.
    pub headers: ResponseHeaders,
    pub pages: usize,
}

impl Pages {
    /// The link the next call to [`Self::next_page`] will read, if it is a `nextLink`.
    pub fn pending_link(&self) -> Option<&str> {
        match &self.next {
            Some(PageSource::Link(link, ..)) => Some(link),
            _ => None,
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Page>> {
        let Some(source) = self.next.take() else {
            return Ok(None);
        };
        let (prepared, headers) = match source {
            PageSource::First(request) => {
                let headers = request.headers.clone();
                let url = self.client.url_for(&request)?;
                (
                    Prepared {
                        method: request.method,
                        url,
                        idempotent: request.is_idempotent(),
                        headers: request.headers,
                        body: request.body,
                        family: request.family,
                    },
                    headers,
                )
            }
            PageSource::Link(link, family, headers) => {
                let url = Url::parse(&link).map_err(|e| {
                    Error::graph(
                        200,
                        format!("Graph returned a nextLink that is not a URL: {e}"),
                    )
                    .with_code("InvalidNextLink")
                })?;
                if let Err(m) = self.client.ensure_graph_url(&url) {
                    // Server-given: Graph's answer is at fault, so kind `graph`; the token is not sent.
                    return Err(Error::graph(
                        200,
                        format!("refusing to follow @odata.nextLink: {m}"),
                    )
                    .with_code("ForeignNextLink"));
                }
                (
                    Prepared {
                        method: Method::Get,
                        url,
                        idempotent: true,
                        headers: headers.clone(),
                        body: None,
                        family,
                    },
                    headers,
                )
            }
        };
        let family = prepared.family;
        let response = self.client.execute(&prepared).await?;
        let mut body: Map<String, Value> = match serde_json::from_slice(&response.body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(unreadable_body(
                    response.status,
                    format!(
                        "Graph answered {} for {} with a body that is not a collection",
                        response.status,
                        prepared.url.path()
                    ),
                ));
            }
        };
        let items = match body.remove("value") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(unreadable_body(
                    response.status,
                    format!(
                        "Graph answered {} with a `value` that is not a list",
                        prepared.url.path()
                    ),
                ));
            }
        };
        let next_link = body
            .remove("@odata.nextLink")
            .and_then(|v| v.as_str().map(String::from));
        let count = body.get("@odata.count").and_then(Value::as_u64);
        if let Some(link) = &next_link {
            self.next = Some(PageSource::Link(link.clone(), family, headers));
        }
        Ok(Some(Page {
            items,
            next_link,
            count,
            headers: response.headers,
        }))
    }

    /// Read pages until `max_items` items (or the end); see [`Collected::next_link`].
    pub async fn collect(mut self, max_items: usize) -> Result<Collected> {
        let mut out = Collected {
            items: Vec::new(),
            next_link: None,
            count: None,
            headers: Map::new(),
            pages: 0,
        };
        while out.items.len() < max_items {
            // Where this page can be read again: its nextLink, or for the first
            // page the request's own URL (a Graph URL, so resumable like a link).
            let this_link = match &self.next {
                Some(PageSource::Link(link, ..)) => Some(link.clone()),
                Some(PageSource::First(request)) => Some(self.client.url_for(request)?.to_string()),
                None => None,
            };
            let Some(page) = self.next_page().await? else {
                break;
            };
            out.pages += 1;
            out.count = out.count.or(page.count);
            out.headers = page.headers;
            let room = max_items - out.items.len();
            if page.items.len() > room {
                out.items.extend(page.items.into_iter().take(room));
                out.next_link = this_link;
                return Ok(out);
            }
            out.items.extend(page.items);
            out.next_link = page.next_link;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn client(url: &str) -> GraphClient {
        let asset = crate::runner::parse_asset(Some(&json!({
            "type": "client_credentials", "tenant_id": "t", "client_id": "c",
            "client_secret": "s", "url": url, "login_url": url
        })))
        .unwrap();
        GraphClient::new(asset, ClientOptions::default()).unwrap()
    }

    #[test]
    fn urls_keep_values_in_their_place() {
        let c = client("https://graph.example.com");
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
        let c = client("https://graph.example.com");
        let r = GraphRequest::get(GraphPath::new("groups").value(".."), ApiFamily::Directory);
        assert_eq!(c.url_for(&r).unwrap_err().kind, ErrorKind::InvalidInput);
        let r = GraphRequest::get(GraphPath::user(".."), ApiFamily::Directory);
        assert_eq!(c.url_for(&r).unwrap().path(), "/v1.0/users('..')");
    }

    #[test]
    fn links_elsewhere_are_refused() {
        let c = client("https://graph.example.com");
        for bad in [
            "https://evil.example.com/v1.0/users?$skiptoken=x",
            "http://graph.example.com/v1.0/users",
            "https://graph.example.com:8443/v1.0/users",
            "https://user:pw@graph.example.com/v1.0/users",
            "not a url",
        ] {
            let e = c.pages_from_link(bad, ApiFamily::Directory).err().unwrap();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad}");
            assert_eq!(e.details[0].path, "/inputs/next_link");
        }
        assert!(
            c.pages_from_link(
                "https://graph.example.com/v1.0/users?$skiptoken=x",
                ApiFamily::Directory
            )
            .is_ok()
        );
    }

    #[test]
    fn kept_headers_are_the_listed_ones() {
        let mut h = HeaderMap::new();
        h.insert("request-id", HeaderValue::from_static("r"));
        h.insert("x-ms-throttle-scope", HeaderValue::from_static("s"));
        h.insert("set-cookie", HeaderValue::from_static("no"));
        let kept = kept_headers(&h);
        assert_eq!(kept.len(), 2);
        assert!(kept.get("set-cookie").is_none());
    }
}
