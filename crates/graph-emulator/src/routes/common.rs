//! What every Graph resource route shares: the permission check, resolving a user
//! key (object id, UPN, or the `users('upn')` form), the `@odata.context` URL, and
//! the JSON answer with Graph's content type.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Serialize;

use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::state::{Directory, Shared};

/// What a route answers: its response, or a Graph error to render.
pub(crate) type GResult = Result<Response, GraphError>;

/// `Authorization_RequestDenied` unless the caller holds one of `perms`.
pub(crate) fn require(caller: &Caller, perms: &[&str]) -> Result<(), GraphError> {
    if caller.has_any(perms) {
        Ok(())
    } else {
        Err(GraphError::denied())
    }
}

/// Resolve `{id}` / `'{upn}'` (from the `users('...')` form) to a user index.
pub(crate) fn resolve_user(dir: &Directory, key: &str) -> Result<usize, GraphError> {
    if let Some(upn) = key.strip_prefix('\'') {
        return dir
            .user_index(upn)
            .ok_or_else(|| GraphError::not_found(upn));
    }
    if key.starts_with('$') {
        return Err(GraphError::unknown_segment(key));
    }
    dir.user_index(key)
        .ok_or_else(|| GraphError::not_found(key))
}

/// `@odata.context`: `{base}/v1.0/$metadata#{tail}`.
pub(crate) fn context(shared: &Shared, tail: &str) -> String {
    format!("{}/v1.0/$metadata#{tail}", shared.base_url)
}

/// Graph's `content-type` of JSON answers.
pub(crate) const GRAPH_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// A JSON answer with Graph's `content-type`.
pub(crate) fn json_response(v: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(GRAPH_JSON));
    r
}
