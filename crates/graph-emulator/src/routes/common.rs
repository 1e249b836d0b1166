//! What every Graph resource route shares: the permission check, resolving a user
//! key (object id, UPN, or the `users('upn')` form), the `@odata.context` URL, and
//! the JSON answer with Graph's content type.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Serialize;

use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::odata::{self, Query};
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

/// Graph's 400 for a `$` query option the route does not take.
pub(crate) fn allow_options(query: &Query, allowed: &[&str]) -> Result<(), GraphError> {
    match query.unsupported_option(allowed) {
        None => Ok(()),
        Some(opt) => Err(GraphError::bad_request(&format!(
            "Query option '{opt}' is not allowed here."
        ))),
    }
}

/// The `$select` names, each as `props` spells it, or Graph's 400 for the first
/// property `type_name` does not have.
pub(crate) fn select_props(
    sel: &str,
    props: &[&'static str],
    type_name: &str,
) -> Result<Vec<&'static str>, GraphError> {
    odata::parse_select(sel)
        .iter()
        .map(|name| {
            props
                .iter()
                .find(|p| p.eq_ignore_ascii_case(name))
                .copied()
                .ok_or_else(|| {
                    GraphError::bad_request(&format!(
                        "Parsing OData Select and Expand failed: Could not find a property named '{name}' on type '{type_name}'."
                    ))
                })
        })
        .collect()
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
