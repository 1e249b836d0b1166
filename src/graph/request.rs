//! What goes out: a Graph call described as data ([`GraphRequest`]), so the
//! client can pace, retry and replay it, and the [`ApiFamily`] whose published
//! throttling limit it counts against.

use serde_json::Value;

use super::path::GraphPath;

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
    /// Send to this API version instead of the asset's (`beta` for what v1.0 lacks).
    pub api_version: Option<crate::asset::ApiVersion>,
    /// The largest answer body read; a larger one is refused (kind `graph`, code
    /// `ResponseTooLarge`). [`MAX_JSON_BODY`] unless set with [`GraphRequest::max_body`].
    pub max_body: u64,
}

/// The largest JSON answer read: 64 MiB (a Graph page is at most a few MiB).
pub const MAX_JSON_BODY: u64 = 64 << 20;
/// The largest photo read: 16 MiB (Graph's photos are at most a few MiB).
pub const MAX_PHOTO_BODY: u64 = 16 << 20;

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
            api_version: None,
            max_body: MAX_JSON_BODY,
        }
    }
    /// Send to `version` whatever the asset's `api_version` (e.g. `beta` for the
    /// non-interactive sign-ins v1.0 does not list).
    pub fn api_version(mut self, version: crate::asset::ApiVersion) -> Self {
        self.api_version = Some(version);
        self
    }

    /// Read at most `bytes` of the answer (e.g. [`MAX_PHOTO_BODY`] for a photo).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
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
    /// The method's name as Graph's JSON batching writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
    pub(super) fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Patch => reqwest::Method::PATCH,
        }
    }
}
