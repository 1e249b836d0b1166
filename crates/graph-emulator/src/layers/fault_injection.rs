//! Injected faults: before the route runs, the fault plan picks at most one fault
//! for the request's family (never for a path the emulator does not serve):
//!
//! - `drop`: the connection is cut, nothing is answered (logged with status 0);
//! - a status (429, 503, 504, ...): Graph's error envelope, or AADSTS50196 at the
//!   token endpoint, with `Retry-After` when the fault has one;
//! - `slow`: the request waits before its body is read (not counted as server time);
//! - `truncate`: the route's answer is sent half, then the connection is cut.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::faults::{Family, FaultKind, format_retry_after};
use crate::http_error::{GraphError, token_unavailable};
use crate::listener::Conn;
use crate::request::{self, BodyArrived, Ctx, Dropped, FaultMark};
use crate::state::Shared;

pub(crate) async fn inject_faults(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
    next: Next,
) -> Response {
    let family = request::family(req.extensions(), req.uri());
    if family == Family::Unknown {
        return next.run(req).await;
    }
    let fault = {
        let mut f = shared.faults.lock().expect("faults lock");
        let (plan, rng) = &mut *f;
        plan.draw(family, rng)
    };
    let Some(kind) = fault else {
        return next.run(req).await;
    };
    let mut resp = match &kind {
        FaultKind::Drop => {
            conn.cut();
            let mut r = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            r.extensions_mut().insert(Dropped);
            r
        }
        FaultKind::Status {
            status,
            retry_after,
        } => status_answer(
            &shared,
            &Ctx::of(req.extensions()),
            family,
            *status,
            *retry_after,
        ),
        FaultKind::Slow(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(*delay).await;
            }
            next.run(req).await
        }
        FaultKind::Truncate => {
            let r = next.run(req).await;
            // Only an answer a route built is cut; a body refused unread is answered whole.
            if r.extensions().get::<BodyArrived>().is_some() {
                truncated(r).await
            } else {
                r
            }
        }
    };
    // A throttled answer (inside) keeps its own mark.
    if resp.extensions().get::<FaultMark>().is_none() {
        resp.extensions_mut().insert(FaultMark(kind.label()));
    }
    resp
}

/// The answer of an injected status fault (also used for batch items).
pub(crate) fn status_answer(
    shared: &Shared,
    ctx: &Ctx,
    family: Family,
    status: u16,
    retry_after: Option<f64>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = if family == Family::Token {
        token_unavailable(ctx, status)
    } else {
        GraphError::new(status, status_code_name(status), status_message(status)).render(ctx)
    };
    if let Some(secs) = retry_after {
        let fractional = shared
            .throttle
            .lock()
            .expect("throttle lock")
            .0
            .fractional_retry_after;
        if let Ok(v) = HeaderValue::from_str(&format_retry_after(secs, fractional)) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

fn status_code_name(s: StatusCode) -> &'static str {
    match s.as_u16() {
        429 => "TooManyRequests",
        503 => "serviceNotAvailable",
        504 => "gatewayTimeout",
        500 => "generalException",
        // The directory's answer to concurrent writes to one object (seen in public
        // threads; no Microsoft page lists it): "wait briefly and retry".
        409 => "Directory_ConcurrencyViolation",
        // No source gives Graph's code for 509; the status is what clients act on.
        509 => "BandwidthLimitExceeded",
        _ => "UnknownError",
    }
}

fn status_message(s: StatusCode) -> &'static str {
    match s.as_u16() {
        429 => "Too many requests.",
        503 => "The service is temporarily unavailable. Please retry later.",
        504 => "The gateway timed out.",
        409 => {
            "Error due to concurrent requests being made to the tenant. Please wait briefly and retry."
        }
        509 => "Bandwidth limit exceeded.",
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
