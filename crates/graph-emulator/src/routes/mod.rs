//! The routes: what the emulator answers once the layers (see [`crate::server`]) let a
//! request through. [`serve`] is a plain `match` from family, method and path to the
//! handler of each resource; handlers are plain functions of the shared state, the
//! caller and the request, returning an answer or a [`GraphError`].
//!
//! - [`token`]: the Entra ID token endpoint.
//! - [`identity`]: Identity Protection's risky users and `revokeSignInSessions`
//!   (and `signInActivity`, which [`users`] asks it for).
//! - [`token`]: the Entra ID token endpoint; [`discovery`]: the OpenID configuration,
//!   its key set and instance discovery that client libraries read first.
//! - [`organization`], [`presence`], [`users`] (and `/me`), [`photo`], [`member_of`],
//!   [`sign_ins`], [`groups`] (transitive members): the Graph resources, `/v1.0` and `/beta` alike.
//! - [`common`] and [`paging`]: what the resource routes share. Resource routes never
//!   use each other.

mod common;
mod discovery;
mod groups;
mod identity;
mod member_of;
mod organization;
mod paging;
mod photo;
mod presence;
mod sign_ins;
pub(crate) mod token;
mod users;

pub use photo::{NO_PHOTO_CODES, blank_photo_metadata, no_photo_answer};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::access_token::Caller;
use crate::faults::Family;
use crate::http_error::GraphError;
use crate::request::{self, Ctx, GraphTarget};
use crate::state::Shared;
use common::GResult;
/// Graph's JSON answer, for the batch layer's own answer.
pub(crate) use common::json_response as json_answer;

/// The handler behind every layer: the token endpoint, a Graph route, or a 404
/// for a path the emulator does not serve.
pub(crate) async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let family = request::family(req.extensions(), req.uri());
    let ctx = Ctx::of(req.extensions());
    let (parts, body) = req.into_parts();
    // The body layer has read it already; this only takes the bytes back out.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    match family {
        Family::Token => {
            let mut summary = token::summarize(&parts, &body);
            summary.refresh_token_serial = token::refresh_serial(&shared, &body);
            let mut resp = token::handle(&shared, &ctx, &parts, parts.uri.path(), &body);
            resp.extensions_mut().insert(summary);
            resp
        }
        Family::Unknown => {
            let path = parts.uri.path();
            if parts.method == Method::GET
                && let Some(r) = discovery::discovery(&shared, path, parts.uri.query())
            {
                return r;
            }
            tracing::warn!(method = %parts.method, path = %path, "emulator: request for a route it does not serve");
            if path.starts_with("/v1.0/") || path.starts_with("/beta/") {
                // A Graph resource the emulator does not serve: Graph's 400.
                let segment = path.rsplit('/').next().unwrap_or("");
                return GraphError::unknown_segment(segment).render(&ctx);
            }
            // Anything else: 404, as Entra answers any path it does not serve
            // (`.../oauth2/v2.0/token/` included, so a client that alters its token
            // URL fails here as in production). Entra's 404 page has no stable body.
            axum::http::StatusCode::NOT_FOUND.into_response()
        }
        _ => {
            let (Some(target), Some(caller)) = (
                parts.extensions.get::<GraphTarget>(),
                parts.extensions.get::<Caller>(),
            ) else {
                // Only without the authentication layer, which the router always has.
                return GraphError::unauthorized("Access token is empty.").render(&ctx);
            };
            match graph(&shared, &ctx, caller, &parts, target, &body) {
                Ok(r) => r,
                Err(e) => e.render(&ctx),
            }
        }
    }
}

/// The Graph route table.
fn graph(
    shared: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    parts: &Parts,
    target: &GraphTarget,
    body: &[u8],
) -> GResult {
    let segments = &target.segments;
    let query = &target.query;
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let lower: Vec<String> = seg.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = &parts.method;
    let get = m == Method::GET;
    match l.as_slice() {
        ["organization"] if get => organization::organization(shared, caller),
        ["organization"] => Err(GraphError::method_not_allowed()),
        ["communications", "getpresencesbyuserid"] if m == Method::POST => {
            presence::presences(shared, caller, body)
        }
        ["communications", "getpresencesbyuserid"] => Err(GraphError::method_not_allowed()),
        ["auditlogs", "signins"] if get => {
            sign_ins::sign_ins(shared, ctx, caller, parts.uri.path(), query, target.beta)
        }
        ["auditlogs", "signins", _] if get => sign_ins::sign_in_by_id(shared, ctx, caller, seg[2]),
        ["me"] if get => users::me(shared, caller, query),
        ["me", ..] => Err(GraphError::method_not_allowed()),
        ["users"] if get => users::list_users(shared, caller, parts, query),
        ["users", _] if get => users::get_user(shared, caller, seg[1], query),
        ["users", _] if m == Method::PATCH => users::patch_user(shared, caller, seg[1], body),
        ["users", _, "revokesigninsessions"] if m == Method::POST => {
            identity::revoke_sessions(shared, caller, seg[1])
        }
        ["identityprotection", "riskyusers"] if get => identity::risky_users(shared, caller),
        ["identityprotection", "riskyusers", "confirmcompromised"] if m == Method::POST => {
            identity::set_risk(
                shared,
                caller,
                body,
                identity::RiskChange::ConfirmCompromised,
            )
        }
        ["identityprotection", "riskyusers", "dismiss"] if m == Method::POST => {
            identity::set_risk(shared, caller, body, identity::RiskChange::Dismiss)
        }
        ["identityprotection", "riskyusers", _] if get => {
            identity::risky_user(shared, caller, seg[2])
        }
        ["identityprotection", ..] => Err(GraphError::method_not_allowed()),
        ["users", _, "presence"] if get => presence::presence(shared, caller, seg[1]),
        ["users", _, "presence", op] if m == Method::POST => {
            presence::write(shared, caller, seg[1], op, body)
        }
        ["users", _, "memberof"] if get => {
            member_of::member_of(shared, caller, parts, seg[1], None, query)
        }
        ["users", _, "memberof", cast] if get => {
            member_of::member_of(shared, caller, parts, seg[1], Some(cast), query)
        }
        ["groups", _, "transitivemembers", cast] if get => {
            groups::transitive_members(shared, caller, parts, seg[1], Some(cast), query)
        }
        ["users", _, "photo"] if get => photo::photo(shared, caller, seg[1], None, false),
        ["users", _, "photo", "$value"] if get => photo::photo(shared, caller, seg[1], None, true),
        ["users", _, "photos", _] if get => {
            photo::photo(shared, caller, seg[1], Some(seg[3]), false)
        }
        ["users", _, "photos", _, "$value"] if get => {
            photo::photo(shared, caller, seg[1], Some(seg[3]), true)
        }
        ["groups", _, "transitivemembers"] if get => {
            groups::transitive_members(shared, caller, parts, seg[1], None, query)
        }
        ["users", ..] | ["auditlogs", ..] => Err(GraphError::method_not_allowed()),
        _ => {
            tracing::warn!(path = ?segments, "emulator: unknown Graph route");
            let last = seg.last().copied().unwrap_or("");
            Err(GraphError::unknown_segment(last))
        }
    }
}
