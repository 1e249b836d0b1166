//! What one request carries through the layers (see [`crate::server`]): its route
//! [`Family`], the facts every answer needs ([`Ctx`]), the parsed Graph path and
//! query ([`GraphTarget`]), and the marks inner layers leave on the answer for the
//! request log ([`FaultMark`], [`Dropped`], [`BodyArrived`]; token routes add a
//! [`crate::log::TokenRequest`]).
//!
//! The request log layer, outermost, puts the family and the `Ctx` into the request's
//! extensions; everything inside reads them from there.

use std::time::Instant;

use axum::http::{Extensions, Uri};
use jiff::Timestamp;
use uuid::Uuid;

use crate::faults::Family;
use crate::odata::{self, Query};

/// Route family of a request path, for faults, throttling and the log.
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
    if rest == "$batch" {
        Family::Batch
    } else if rest.starts_with("identityprotection/") {
        Family::Identity
    } else if rest.starts_with("communications/getpresencesbyuserid") {
        Family::Presence
    } else if rest.starts_with("auditlogs/signins") {
        Family::SignIns
    } else if rest.starts_with("groups/") {
        // Group members count in the directory bucket, like memberOf.
        Family::MemberOf
    } else if rest.starts_with("organization") {
        Family::Organization
    } else if rest == "me" || rest.starts_with("me/") {
        Family::Users
    } else if rest.starts_with("users") {
        if rest.ends_with("/presence") || rest.contains("/presence/") {
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

impl Family {
    /// A Graph route (authenticated and throttled), not the token endpoint or an unknown path.
    pub(crate) fn is_graph(self) -> bool {
        !matches!(self, Family::Token | Family::Unknown)
    }
}

/// The family the request log layer put on the request (classified again without it).
pub(crate) fn family(extensions: &Extensions, uri: &Uri) -> Family {
    extensions
        .get::<Family>()
        .copied()
        .unwrap_or_else(|| classify(uri.path()))
}

/// Per-request facts every answer needs.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
    /// The emulator's virtual "now" when the request arrived.
    pub now: Timestamp,
}

impl Ctx {
    /// The `Ctx` of the request log layer. Without it (a layer used on its own) a fresh
    /// one on real time, so that an answer can still be rendered.
    pub fn of(extensions: &Extensions) -> Ctx {
        extensions.get::<Ctx>().cloned().unwrap_or_else(|| {
            let request_id = Uuid::new_v4().to_string();
            Ctx {
                client_request_id: request_id.clone(),
                request_id,
                now: Timestamp::now(),
            }
        })
    }
}

/// What a Graph request addresses: path segments after `/v1.0/` or `/beta/`, decoded
/// (`users('x')` becomes `users`, `'x`), and the query.
#[derive(Debug, Clone)]
pub(crate) struct GraphTarget {
    pub segments: Vec<String>,
    pub query: Query,
    /// Addressed to `/beta` rather than `/v1.0` (the sign-in log differs between them).
    pub beta: bool,
}

impl GraphTarget {
    /// `Err` is the message of Graph's 400 for a malformed path.
    pub fn parse(uri: &Uri) -> Result<GraphTarget, String> {
        // "/v1.0/" and "/beta/" are both six bytes; `classify` checked the prefix.
        let rest = uri.path().get(6..).unwrap_or("");
        Ok(GraphTarget {
            segments: odata::split_path(rest)?,
            query: Query::parse(uri.query()),
            beta: uri
                .path()
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("/beta/")),
        })
    }
}

/// Answer mark: the fault the request got (`429`, `drop`, `slow:2000ms`, `truncate`,
/// `throttled`), for the log's `fault` field.
#[derive(Debug, Clone)]
pub(crate) struct FaultMark(pub String);

/// Answer mark: the connection is cut; nothing reaches the client (logged as status 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dropped;

/// Answer mark: when the request body was in. Server time (`micros`) counts from here,
/// so injected delays and receiving the body are not counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyArrived(pub Instant);
