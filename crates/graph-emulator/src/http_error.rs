//! Error answers, rendered the way the real services send them: [`GraphError`] in
//! Graph's `{"error": {"code", "message", "innerError"}}` envelope, and
//! [`TokenError`] as Entra ID's AADSTS body (`error`, `error_description` with
//! trace and correlation ids, `error_codes`, ...).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::request::Ctx;

/// A Graph error, rendered in Graph's envelope with the request ids.
#[derive(Debug)]
pub(crate) struct GraphError {
    status: StatusCode,
    code: String,
    message: String,
    /// No body at all (the 650-id cap answers a bare 400).
    bare: bool,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &str, message: &str) -> GraphError {
        GraphError {
            status,
            code: code.to_string(),
            message: message.to_string(),
            bare: false,
        }
    }

    /// Only the status line, no body.
    pub fn bare(status: StatusCode) -> GraphError {
        GraphError {
            status,
            code: String::new(),
            message: String::new(),
            bare: true,
        }
    }

    pub fn bad_request(message: &str) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    pub fn unsupported(message: &str) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    pub fn denied() -> GraphError {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    pub fn not_found(key: &str) -> GraphError {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// A path segment Graph has no resource for.
    pub fn unknown_segment(segment: &str) -> GraphError {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub fn method_not_allowed() -> GraphError {
        GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    }

    pub fn unauthorized(message: &str) -> GraphError {
        GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    pub fn render(&self, ctx: &Ctx) -> Response {
        if self.bare {
            return self.status.into_response();
        }
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": ctx.now.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": ctx.request_id,
                    "client-request-id": ctx.client_request_id,
                }
            }
        });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                ),
            );
        }
        r
    }
}

/// A refusal from the token endpoint: OAuth `error`, AADSTS code and message.
#[derive(Debug)]
pub(crate) struct TokenError {
    error: &'static str,
    code: u32,
    message: String,
}

impl TokenError {
    pub fn new(error: &'static str, code: u32, message: impl Into<String>) -> TokenError {
        TokenError {
            error,
            code,
            message: message.into(),
        }
    }

    /// AADSTS900144: a required form parameter is missing.
    pub fn missing(param: &str) -> TokenError {
        TokenError::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }

    /// `base_url` is the emulator's, for `error_uri`.
    pub fn render(&self, base_url: &str, ctx: &Ctx) -> Response {
        let ts = ctx.now.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
                self.code, self.message, ctx.request_id, ctx.client_request_id, ts
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": ctx.request_id,
            "correlation_id": ctx.client_request_id,
            "error_uri": format!("{base_url}/error?code={}", self.code),
        });
        let status = if self.error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        no_store((status, axum::Json(body)).into_response())
    }
}

/// Injected 503/504/429 at the token endpoint (AADSTS50196).
pub(crate) fn token_unavailable(ctx: &Ctx, status: StatusCode) -> Response {
    let ts = ctx.now.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": "temporarily_unavailable",
        "error_description": format!(
            "AADSTS50196: The server is temporarily unavailable.\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {ts}",
            ctx.request_id, ctx.client_request_id
        ),
        "error_codes": [50196],
        "timestamp": ts,
        "trace_id": ctx.request_id,
        "correlation_id": ctx.client_request_id,
    });
    no_store((status, axum::Json(body)).into_response())
}

/// Token endpoint answers are never cached.
pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}
