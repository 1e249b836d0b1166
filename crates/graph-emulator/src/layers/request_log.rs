//! The outermost layer: gives each request its ids and [`Ctx`], stamps
//! `request-id` and `client-request-id` on the answer, and writes one [`LogEntry`]
//! from the request and the marks inner layers left on the answer.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use jiff::Timestamp;
use uuid::Uuid;

use crate::log::{LogEntry, TokenRequest};
use crate::request::{BodyArrived, Ctx, Dropped, FaultMark, classify};
use crate::state::Shared;

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) async fn request_log(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let family = classify(req.uri().path());
    let headers = req.headers();
    let request_id = Uuid::new_v4().to_string();
    let client_request_id = header_str(headers, "client-request-id")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| request_id.clone());
    let ctx = Ctx {
        request_id: request_id.clone(),
        client_request_id,
        now: shared.clock.now(),
    };
    let mut entry = LogEntry {
        seq: 0,
        time: Timestamp::now().to_string(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        family: family.as_str().to_string(),
        status: 0,
        authorization: headers.contains_key(header::AUTHORIZATION),
        consistency_level: header_str(headers, "consistencylevel"),
        client_request_id: header_str(headers, "client-request-id"),
        content_type: header_str(headers, "content-type"),
        user_agent: header_str(headers, "user-agent"),
        retry_attempt: header_str(headers, "retry-attempt"),
        request_id,
        fault: None,
        micros: 0,
        token: None,
        batch: None,
    };
    req.extensions_mut().insert(family);
    req.extensions_mut().insert(ctx.clone());

    let mut resp = next.run(req).await;

    let marks = resp.extensions_mut();
    entry.fault = marks.remove::<FaultMark>().map(|m| m.0);
    entry.token = marks.remove::<TokenRequest>();
    let server_time_from = marks.remove::<BodyArrived>().map_or(started, |b| b.0);
    // A dropped connection answers nothing: status 0, no ids.
    if marks.remove::<Dropped>().is_none() {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            h.insert("request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.client_request_id) {
            h.insert("client-request-id", v);
        }
        // The virtual clock's time, as Graph's `Date` tells its own (clients that mind the
        // sign-in log's retention measure it from here).
        let date = ctx
            .now
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        if let Ok(v) = HeaderValue::from_str(&date) {
            h.insert(header::DATE, v);
        }
        entry.status = resp.status().as_u16();
    }
    entry.micros = server_time_from.elapsed().as_micros() as u64;
    shared.log.push(entry);
    resp
}
