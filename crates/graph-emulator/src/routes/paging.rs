//! Paging and counting, as the list routes share them: `$top` bounds, `$count`,
//! `ConsistencyLevel: eventual`, and opaque signed `$skiptoken`s in `@odata.nextLink`
//! (sealed by [`crate::odata::PageTokens`], bound to the query they page, expiring
//! after `skiptoken_ttl`).

use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::common::json_response;
use crate::http_error::GraphError;
use crate::odata::{self, PageTokenError, Query};
use crate::state::Shared;

/// `$top`, between 1 and `max` (`default` without it).
pub(crate) fn parse_top(query: &Query, default: usize, max: usize) -> Result<usize, GraphError> {
    match query.get("$top") {
        None => Ok(default),
        Some(t) => match t.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(GraphError::bad_request(&format!(
                "Invalid page size specified: '{t}'. Must be between 1 and {max} inclusive."
            ))),
        },
    }
}

/// The request has `ConsistencyLevel: eventual` (advanced queries need it).
pub(crate) fn consistency_eventual(parts: &Parts) -> bool {
    parts
        .headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

/// `$count=true`.
pub(crate) fn count_true(query: &Query) -> Result<bool, GraphError> {
    match query.get("$count") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(GraphError::bad_request(&format!(
            "Invalid value '{v}' for $count."
        ))),
    }
}

/// Offset from a sealed `$skiptoken`, or 0 on the first page.
pub(crate) fn page_offset(
    shared: &Shared,
    scope: &str,
    query: &Query,
) -> Result<usize, GraphError> {
    let Some(tok) = query.get("$skiptoken") else {
        return Ok(0);
    };
    open_page_token(shared, scope, tok)?
        .get("o")
        .and_then(Value::as_u64)
        .map(|o| o as usize)
        .ok_or_else(|| GraphError::bad_request("Invalid paging token."))
}

/// The payload of a `$skiptoken` for `scope`, or Graph's 400 for a bad or expired one.
pub(crate) fn open_page_token(
    shared: &Shared,
    scope: &str,
    tok: &str,
) -> Result<Value, GraphError> {
    let now = shared.clock.now().as_second();
    shared.pages.open(scope, tok, now).map_err(|e| match e {
        PageTokenError::Expired => GraphError::new(
            StatusCode::BAD_REQUEST,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in your request.",
        ),
        PageTokenError::Invalid => GraphError::bad_request("Invalid paging token."),
    })
}

/// `@odata.nextLink`: the same request with `$skiptoken` replaced.
pub(crate) fn next_link(shared: &Shared, path: &str, query: &Query, token: &str) -> String {
    let mut pairs = query.without_skiptoken();
    pairs.push(("$skiptoken".into(), token.to_string()));
    format!(
        "{}{}?{}",
        shared.base_url,
        path,
        odata::encode_query(&pairs)
    )
}

/// One page of a list answer, in Graph's order: `@odata.context`, `@odata.count`
/// (with `$count=true`), `@odata.nextLink` (when more follow), `value`.
pub(crate) struct ListPage {
    pub context: String,
    pub count: Option<usize>,
    /// Offset of the next page, when there is one.
    pub next: Option<usize>,
    pub value: Vec<Value>,
}

impl ListPage {
    /// The answer; the next link's `$skiptoken` is sealed for `scope`.
    pub fn answer(self, shared: &Shared, parts: &Parts, query: &Query, scope: &str) -> Response {
        let mut body = Map::new();
        body.insert("@odata.context".into(), json!(self.context));
        if let Some(n) = self.count {
            body.insert("@odata.count".into(), json!(n));
        }
        if let Some(offset) = self.next {
            let tok = shared
                .pages
                .seal(scope, &json!({"o": offset, "x": expiry(shared)}));
            body.insert(
                "@odata.nextLink".into(),
                json!(next_link(shared, parts.uri.path(), query, &tok)),
            );
        }
        body.insert("value".into(), Value::Array(self.value));
        json_response(&body)
    }
}

/// Unix second a new `$skiptoken` stops being accepted, on the virtual clock. Graph
/// documents no lifetime for directory skip tokens, only that they expire
/// (`Directory_ExpiredPageToken`); the emulator's is `skiptoken_ttl`.
pub(crate) fn expiry(shared: &Shared) -> i64 {
    shared.clock.now().as_second() + shared.settings.skiptoken_ttl.as_secs() as i64
}
