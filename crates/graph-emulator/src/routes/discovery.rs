//! Entra ID's discovery documents, which Microsoft's client libraries read before they
//! ask for a token: the OpenID Connect configuration of a tenant
//! (`GET /{tenant}/v2.0/.well-known/openid-configuration`), the key set it names
//! (`jwks_uri`), and instance discovery (`GET /common/discovery/instance`), which MSAL
//! calls for an authority host it does not know.
//!
//! Sources: https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc (the
//! document and its fields, as `login.microsoftonline.com/{tenant}/v2.0/.well-known/
//! openid-configuration` serves it); instance discovery is not documented as an API: its
//! shape is what `login.microsoftonline.com/common/discovery/instance?api-version=1.1`
//! answers and what MSAL reads from it (`tenant_discovery_endpoint`, `metadata` with
//! `preferred_network`, `preferred_cache`, `aliases`), see msal's `authority.py`
//! (https://github.com/AzureAD/microsoft-authentication-library-for-python).
//!
//! Every URL in them points back at the emulator. The key set is empty: the emulator
//! signs its access tokens with a secret HMAC key (HS256), which no public key can
//! verify, and Graph's access tokens are not for clients to verify anyway.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::common::json_response;
use crate::odata::Query;
use crate::state::Shared;

/// The answer for a discovery path, or `None` when `path` is not one.
pub(crate) fn discovery(shared: &Shared, path: &str, query: Option<&str>) -> Option<Response> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [tenant, "v2.0", ".well-known", "openid-configuration"] => {
            Some(known(shared, tenant, |t| openid_configuration(shared, t)))
        }
        [tenant, "discovery", "v2.0", "keys"] => Some(known(shared, tenant, |_| {
            json_response(&json!({"keys": []}))
        })),
        ["common", "discovery", "instance"] => Some(instance(shared, query)),
        _ => None,
    }
}

/// Answer for a tenant this emulator serves (its id, its domain, `common` or
/// `organizations`); Entra's AADSTS90002 for any other.
fn known(shared: &Shared, tenant: &str, answer: impl FnOnce(&str) -> Response) -> Response {
    let dir = shared.dir.read().expect("dir lock");
    let t = &dir.tenant;
    let ok = tenant.eq_ignore_ascii_case(&t.tenant_id.to_string())
        || tenant.eq_ignore_ascii_case(&t.domain)
        || ["common", "organizations"].contains(&tenant);
    drop(dir);
    if ok {
        return answer(tenant);
    }
    let mut r = json_response(&json!({
        "error": "invalid_tenant",
        "error_description": format!(
            "AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
        "error_codes": [90002],
    }));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

fn openid_configuration(shared: &Shared, tenant: &str) -> Response {
    let base = &shared.base_url;
    let tenant_id = shared.dir.read().expect("dir lock").tenant.tenant_id;
    let host = base.split("://").nth(1).unwrap_or(base);
    json_response(&json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{tenant_id}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": host,
        "cloud_graph_host_name": host,
        "msgraph_host": host,
        "rbac_url": base,
    }))
}

/// Instance discovery: this host is its own (and only) alias.
fn instance(shared: &Shared, query: Option<&str>) -> Response {
    let base = &shared.base_url;
    let host = base.split("://").nth(1).unwrap_or(base).to_string();
    let query = Query::parse(query);
    // `authorization_endpoint=https://host/{tenant}/oauth2/v2.0/authorize` names the tenant.
    let tenant = query
        .get("authorization_endpoint")
        .and_then(|a| url::Url::parse(a).ok())
        .and_then(|u| u.path_segments()?.next().map(str::to_string))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "common".to_string());
    let body: Value = json!({
        "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": host,
            "preferred_cache": host,
            "aliases": [host],
        }],
    });
    json_response(&body)
}
