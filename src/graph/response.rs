//! What comes back: a successful answer ([`GraphResponse`]) with the headers a
//! result keeps, and every other answer turned into our [`Error`]: Graph's
//! error envelope (`code`, `message`, `request-id`) as kind `graph`, and a 2xx
//! body we cannot read as `UnreadableBody`.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use url::Url;

use crate::error::{Error, Result};

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
/// The message may quote the body (serde names the value it could not read), so it
/// is scrubbed of secrets ([`crate::redact`]).
pub fn unreadable_body(status: u16, message: impl Into<String>) -> Error {
    Error::graph(status, crate::redact::scrub(&message.into())).with_code("UnreadableBody")
}

/// The response headers a result keeps.
pub(super) fn kept_headers(headers: &HeaderMap) -> ResponseHeaders {
    const KEPT: [&str; 7] = [
        "date",
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
pub(super) fn graph_error(status: u16, headers: &ResponseHeaders, body: &[u8], url: &Url) -> Error {
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
    // Everything below is server text: a front end that echoes the request would
    // hand back our bearer token (issue 19, item 7).
    use crate::redact::scrub;
    let mut err = Error::graph(status, scrub(&message));
    if let Some(code) = parsed.and_then(|p| p.code) {
        err = err.with_code(scrub(&code));
    }
    if let Some(id) = request_id {
        err = err.with_request_id(scrub(&id));
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
