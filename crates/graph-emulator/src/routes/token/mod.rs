//! The Entra ID v2.0 token endpoint: `POST /{tenant}/oauth2/v2.0/token` (and
//! tenant-less `/oauth2/v2.0/token`), with the grants `client_credentials`,
//! `password` and `refresh_token`, AADSTS error shapes, and rotating refresh tokens.
//! Access tokens are minted by [`crate::access_token`].
//!
//! - [`client_auth`]: client secrets (form or HTTP Basic) and signed client assertions.
//! - [`scope`]: the `scope` parameter of app-only and delegated grants.
//! - [`delegated`]: what the user grants share: account checks, refresh token
//!   redemption, the answer with access and refresh token.
//! - [`summary`]: the credential-free summary the request log keeps.

mod client_auth;
mod delegated;
mod scope;
mod summary;

use std::collections::HashMap;

use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access_token;
use crate::http_error::{TokenError, no_store};
use crate::request::Ctx;
use crate::state::Shared;
use crate::tenant::Tenant;

use client_auth::{authenticate_client, basic_auth};
use delegated::{check_user, delegated_answer, redeem_refresh};
use scope::{check_app_scope, delegated_scope};
pub(crate) use summary::summarize;

/// Where the request is addressed.
enum Authority {
    Tenant,
    Common,
    Organizations,
    Consumers,
}

fn resolve_authority(tenant: &Tenant, segment: Option<&str>) -> Result<Authority, TokenError> {
    let Some(seg) = segment else {
        return Ok(Authority::Tenant);
    };
    let lower = seg.to_ascii_lowercase();
    match lower.as_str() {
        "common" => return Ok(Authority::Common),
        "organizations" => return Ok(Authority::Organizations),
        "consumers" => return Ok(Authority::Consumers),
        _ => {}
    }
    if Uuid::try_parse(seg).ok() == Some(tenant.tenant_id)
        || lower == tenant.domain.to_ascii_lowercase()
    {
        Ok(Authority::Tenant)
    } else {
        Err(TokenError::new(
            "invalid_request",
            90002,
            format!(
                "Tenant '{seg}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ))
    }
}

/// AADSTS7000218: a confidential client presented no credential.
fn no_client_credential() -> TokenError {
    TokenError::new(
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

/// AADSTS9001023: user grants are not served over `/common` or `/consumers`.
fn not_over_common() -> TokenError {
    TokenError::new(
        "invalid_request",
        9001023,
        "The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
    )
}

/// The issue order of the refresh token a request presents, if the emulator issued it.
pub(crate) fn refresh_serial(shared: &Shared, body: &[u8]) -> Option<u64> {
    let token = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "refresh_token")
        .map(|(_, v)| v.into_owned())?;
    let table = shared.refresh.lock().expect("refresh lock");
    table.get(&token).map(|(grant, _)| grant.serial)
}

/// Handle one token request.
pub(crate) fn handle(
    shared: &Shared,
    ctx: &Ctx,
    parts: &Parts,
    path: &str,
    body: &[u8],
) -> Response {
    shared
        .token_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match grant(shared, ctx, parts, path, body) {
        Ok(v) => no_store(axum::Json(v).into_response()),
        Err(e) => e.render(&shared.base_url, ctx),
    }
}

fn grant(
    shared: &Shared,
    ctx: &Ctx,
    parts: &Parts,
    path: &str,
    body: &[u8],
) -> Result<Value, TokenError> {
    if parts.method != axum::http::Method::POST {
        return Err(TokenError::new(
            "invalid_request",
            900561,
            format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {} request.",
                parts.method
            ),
        ));
    }
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(TokenError::missing("grant_type"));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let segment = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|s| !s.eq_ignore_ascii_case("oauth2"));
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| TokenError::missing("grant_type"))?
        .clone();
    let dir = shared.dir.read().expect("dir lock");
    let tenant = &dir.tenant;
    let authority = resolve_authority(tenant, segment)?;
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic_auth(parts).map(|(id, _)| id));
    let client_id = client_id.ok_or_else(|| TokenError::missing("client_id"))?;
    let app = Uuid::try_parse(&client_id)
        .ok()
        .and_then(|id| dir.app(id))
        .cloned()
        .ok_or_else(|| {
            TokenError::new(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                    tenant.display_name
                ),
            )
        })?;
    let requested_url = format!("{}{}", shared.base_url, path);
    // User grants: a confidential client must present a credential; a public one may go without.
    let authenticate_user_grant_client = || {
        let confidential = authenticate_client(tenant, &app, &form, parts, &requested_url)?;
        if confidential || app.public_client {
            Ok(())
        } else {
            Err(no_client_credential())
        }
    };

    match grant_type.as_str() {
        "client_credentials" => {
            if !matches!(authority, Authority::Tenant) {
                return Err(TokenError::new(
                    "invalid_request",
                    50059,
                    "No tenant-identifying information found in either the request or implied by any provided credentials.",
                ));
            }
            if !authenticate_client(tenant, &app, &form, parts, &requested_url)? {
                return Err(no_client_credential());
            }
            let scope = form
                .get("scope")
                .ok_or_else(|| TokenError::missing("scope"))?;
            check_app_scope(shared, scope)?;
            let perms: Vec<String> = app.permissions.iter().map(|p| p.to_string()).collect();
            let lifetime = shared.settings.token_lifetime;
            let access = access_token::mint(shared, tenant, &app, ctx.now, lifetime, &perms, None);
            Ok(json!({
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
                "ext_expires_in": lifetime.as_secs(),
                "access_token": access,
            }))
        }
        "password" => {
            if matches!(authority, Authority::Common | Authority::Consumers) {
                return Err(not_over_common());
            }
            let username = form
                .get("username")
                .ok_or_else(|| TokenError::missing("username"))?;
            let password = form
                .get("password")
                .ok_or_else(|| TokenError::missing("password"))?;
            let scope = form
                .get("scope")
                .ok_or_else(|| TokenError::missing("scope"))?;
            authenticate_user_grant_client()?;
            let upn = check_user(&dir, username, Some(password))?;
            let (scp, oidc) = delegated_scope(shared, &app, scope)?;
            let refresh = oidc.iter().any(|s| s == "offline_access");
            drop(dir);
            delegated_answer(shared, ctx, app.client_id, &upn, &scp, &oidc, refresh)
        }
        "refresh_token" => {
            if matches!(authority, Authority::Consumers) {
                return Err(not_over_common());
            }
            let token = form
                .get("refresh_token")
                .ok_or_else(|| TokenError::missing("refresh_token"))?;
            authenticate_user_grant_client()?;
            let grant = redeem_refresh(shared, token, app.client_id, ctx.now)?;
            let upn = check_user(&dir, &grant.upn, None)?;
            let scope = form
                .get("scope")
                .cloned()
                .unwrap_or_else(|| grant.scope.clone());
            let (scp, mut oidc) = delegated_scope(shared, &app, &scope)?;
            if !oidc.iter().any(|s| s == "offline_access") {
                oidc.push("offline_access".into());
            }
            drop(dir);
            delegated_answer(shared, ctx, app.client_id, &upn, &scp, &oidc, true)
        }
        other => Err(TokenError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}
