//! The HTTP side: one dispatcher that applies faults, serves the token endpoint or
//! a Graph route, stamps `request-id`, and writes the request log.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use futures_util::StreamExt;
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use super::faults::{Family, FaultKind, FaultPlan, ThrottleConfig, ThrottleState};
use super::log::{LogEntry, RequestLog};
use super::odata::PageTokens;
use super::tenant::{SignIn, Tenant, User};
use super::{graph, token};

/// The emulator's "now": real time unless a test froze or shifted it.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    state: Mutex<(Option<Timestamp>, SignedDuration)>,
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        let (frozen, offset) = *self.state.lock().expect("clock lock");
        let base = frozen.unwrap_or_else(Timestamp::now);
        base.checked_add(offset).unwrap_or(base)
    }
    pub fn set(&self, at: Timestamp) {
        *self.state.lock().expect("clock lock") = (Some(at), SignedDuration::ZERO);
    }
    pub fn advance(&self, by: Duration) {
        let mut s = self.state.lock().expect("clock lock");
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        s.1 = s.1.saturating_add(by);
    }
    pub fn real(&self) {
        *self.state.lock().expect("clock lock") = (None, SignedDuration::ZERO);
    }
}

/// Which collection a membership points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Group,
    Role,
    Unit,
}

/// The tenant with the indexes the routes need.
pub(crate) struct Directory {
    pub tenant: Tenant,
    pub by_id: HashMap<Uuid, usize>,
    pub by_upn: HashMap<String, usize>,
    pub member_of: HashMap<Uuid, Vec<(Kind, usize)>>,
    /// Sorted by (createdDateTime, id).
    pub sign_ins: Vec<SignIn>,
}

impl Directory {
    pub fn new(mut tenant: Tenant) -> Directory {
        let mut sign_ins = std::mem::take(&mut tenant.sign_ins);
        sign_ins.sort_unstable_by_key(|a| (a.created_date_time, a.id));
        let mut d = Directory {
            tenant,
            by_id: HashMap::new(),
            by_upn: HashMap::new(),
            member_of: HashMap::new(),
            sign_ins,
        };
        d.reindex();
        d
    }

    pub fn reindex(&mut self) {
        let t = &self.tenant;
        self.by_id = t.users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        self.by_upn = t
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.user_principal_name.to_lowercase(), i))
            .collect();
        let mut m: HashMap<Uuid, Vec<(Kind, usize)>> = HashMap::new();
        for (kind, list) in [
            (Kind::Group, &t.groups),
            (Kind::Role, &t.directory_roles),
            (Kind::Unit, &t.administrative_units),
        ] {
            for (i, o) in list.iter().enumerate() {
                for member in &o.members {
                    m.entry(*member).or_default().push((kind, i));
                }
            }
        }
        self.member_of = m;
    }

    /// A user by object id or (case-insensitive) UPN.
    pub fn user_index(&self, key: &str) -> Option<usize> {
        match Uuid::try_parse(key) {
            Ok(id) => self.by_id.get(&id).copied(),
            Err(_) => self.by_upn.get(&key.to_lowercase()).copied(),
        }
    }

    pub fn user(&self, key: &str) -> Option<&User> {
        self.user_index(key).map(|i| &self.tenant.users[i])
    }

    pub fn add_sign_ins(&mut self, more: Vec<SignIn>) {
        self.sign_ins.extend(more);
        self.sign_ins.sort_by_key(|a| (a.created_date_time, a.id));
    }
}

/// A refresh token the emulator issued.
#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub client_id: Uuid,
    pub upn: String,
    pub scope: String,
    pub issued: Timestamp,
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub token_lifetime: Duration,
    pub refresh_token_reuse: bool,
    pub refresh_token_max_inactive: Duration,
    pub skiptoken_ttl: Duration,
}

/// Everything the routes share.
pub(crate) struct Shared {
    pub dir: RwLock<Directory>,
    pub clock: Clock,
    pub faults: Mutex<(FaultPlan, fastrand::Rng)>,
    pub throttle: Mutex<(ThrottleConfig, ThrottleState)>,
    /// Refresh tokens issued, and whether each was already redeemed.
    pub refresh: Mutex<HashMap<String, (RefreshGrant, bool)>>,
    pub token_requests: AtomicU64,
    pub log: RequestLog,
    pub token_key: aws_lc_rs::hmac::Key,
    pub pages: PageTokens,
    pub base_url: String,
    pub settings: Settings,
}

/// Per-request facts every answer needs.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
    pub now: Timestamp,
}

/// Listener whose connections the dispatcher can cut without answering.
pub(crate) struct FaultListener(pub TcpListener);

pub(crate) struct FaultStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

/// Per-connection handle given to the dispatcher.
#[derive(Clone)]
pub(crate) struct Conn(Arc<AtomicBool>);

impl Listener for FaultListener {
    type Io = FaultStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, a)) => {
                    let _ = s.set_nodelay(true);
                    return (
                        FaultStream {
                            inner: s,
                            kill: Arc::default(),
                        },
                        a,
                    );
                }
                Err(e) => {
                    tracing::warn!("emulator accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Self {
        Conn(stream.io().kill.clone())
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "dropped by fault injection",
    )
}

impl AsyncRead for FaultStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Route family of a request, for faults, throttling and the log.
pub(crate) fn classify(path: &str) -> Family {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with("/oauth2/v2.0/token") {
        return Family::Token;
    }
    let rest = lower
        .strip_prefix("/v1.0/")
        .or_else(|| lower.strip_prefix("/beta/"));
    let Some(rest) = rest else {
        return Family::Unknown;
    };
    if rest.starts_with("communications/getpresencesbyuserid") {
        Family::Presence
    } else if rest.starts_with("auditlogs/signins") {
        Family::SignIns
    } else if rest.starts_with("organization") {
        Family::Organization
    } else if rest == "me" || rest.starts_with("me/") {
        Family::Users
    } else if rest.starts_with("users") {
        if rest.ends_with("/presence") {
            Family::Presence
        } else if rest.contains("/memberof") {
            Family::MemberOf
        } else if rest.contains("/photo") {
            Family::Photo
        } else {
            Family::Users
        }
    } else {
        Family::Unknown
    }
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The single entry point for every request.
pub(crate) async fn dispatch(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let family = classify(&path);
    let request_id = Uuid::new_v4().to_string();
    let client_request_id = header_str(&parts.headers, "client-request-id")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| request_id.clone());
    let ctx = Ctx {
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
        now: shared.clock.now(),
    };
    let mut entry = LogEntry {
        seq: 0,
        time: Timestamp::now().to_string(),
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        family: family.as_str().to_string(),
        status: 0,
        authorization: parts.headers.contains_key(header::AUTHORIZATION),
        consistency_level: header_str(&parts.headers, "consistencylevel"),
        client_request_id: header_str(&parts.headers, "client-request-id"),
        content_type: header_str(&parts.headers, "content-type"),
        user_agent: header_str(&parts.headers, "user-agent"),
        request_id: request_id.clone(),
        fault: None,
        micros: 0,
        token: None,
    };

    let fault = if family == Family::Unknown {
        None
    } else {
        let mut f = shared.faults.lock().expect("faults lock");
        let (plan, rng) = &mut *f;
        plan.draw(family, rng)
    };
    let mut delay = Duration::ZERO;
    let mut truncate = false;
    if let Some(kind) = &fault {
        entry.fault = Some(kind.label());
        match kind {
            FaultKind::Drop => {
                conn.0.store(true, Ordering::Relaxed);
                entry.micros = started.elapsed().as_micros() as u64;
                shared.log.push(entry);
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            FaultKind::Status {
                status,
                retry_after,
            } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let mut resp = if family == Family::Token {
                    token::unavailable(&ctx, status)
                } else {
                    graph::GraphError::new(status, status_code_name(status), status_message(status))
                        .render(&ctx)
                };
                if let Some(secs) = retry_after {
                    let fractional = shared
                        .throttle
                        .lock()
                        .expect("throttle lock")
                        .0
                        .fractional_retry_after;
                    if let Ok(v) =
                        HeaderValue::from_str(&super::faults::format_retry_after(*secs, fractional))
                    {
                        resp.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                return finish(&shared, resp, &ctx, entry, started);
            }
            FaultKind::Slow(d) => delay = *d,
            FaultKind::Truncate => truncate = true,
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let body = match axum::body::to_bytes(body, 4 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            let resp = graph::GraphError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request_BadRequest",
                "The request body is too large or could not be read.",
            )
            .render(&ctx);
            return finish(&shared, resp, &ctx, entry, started);
        }
    };
    // Server time starts once the request body is in: receiving it is network time.
    let started = Instant::now();

    let resp = match family {
        Family::Token => {
            entry.token = Some(token::summarize(&parts, &body));
            token::handle(&shared, &ctx, &parts, &path, &body)
        }
        Family::Unknown => {
            tracing::warn!(method = %parts.method, path = %path, "emulator: request for a route it does not serve");
            let segment = path.rsplit('/').next().unwrap_or("");
            graph::GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Resource not found for the segment '{segment}'."),
            )
            .render(&ctx)
        }
        _ => graph::handle(
            &shared,
            &ctx,
            family,
            &parts,
            &path,
            query.as_deref(),
            &body,
            &mut entry,
        ),
    };
    let resp = if truncate {
        truncated(resp).await
    } else {
        resp
    };
    finish(&shared, resp, &ctx, entry, started)
}

fn status_code_name(s: StatusCode) -> &'static str {
    match s.as_u16() {
        429 => "TooManyRequests",
        503 => "serviceNotAvailable",
        504 => "gatewayTimeout",
        500 => "generalException",
        _ => "UnknownError",
    }
}

fn status_message(s: StatusCode) -> &'static str {
    match s.as_u16() {
        429 => "Too many requests.",
        503 => "The service is temporarily unavailable. Please retry later.",
        504 => "The gateway timed out.",
        _ => "An error occurred.",
    }
}

/// Send the headers and half the body, then fail the body so the connection is cut.
async fn truncated(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(bytes.len().max(2)),
    );
    let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
    // The pause lets the headers and the first half reach the client before the cut.
    let stream = futures_util::stream::iter([Ok::<Bytes, io::Error>(half)]).chain(
        futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "truncated by fault injection",
            ))
        }),
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

fn finish(
    shared: &Shared,
    mut resp: Response,
    ctx: &Ctx,
    mut entry: LogEntry,
    started: Instant,
) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.client_request_id) {
        h.insert("client-request-id", v);
    }
    entry.status = resp.status().as_u16();
    entry.micros = started.elapsed().as_micros() as u64;
    shared.log.push(entry);
    resp
}

/// Build the router over shared state.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(shared)
}
