//! Reads the request body before any route runs (at most 4 MiB; more, or a body that
//! cannot be read, is Graph's 413), and marks when it was in: server time counts from
//! there, so receiving the body and injected delays are not counted.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::http_error::GraphError;
use crate::request::{BodyArrived, Ctx};

/// Most bytes a request body may have.
const MAX_BODY: usize = 4 * 1024 * 1024;

pub(crate) async fn read_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return GraphError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request_BadRequest",
                "The request body is too large or could not be read.",
            )
            .render(&Ctx::of(&parts.extensions));
        }
    };
    let arrived = Instant::now();
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    resp.extensions_mut().insert(BodyArrived(arrived));
    resp
}
