//! Access tokens: the JWT-shaped bearer tokens the token endpoint mints, signed with
//! the emulator's own HMAC key, and their validation on every Graph request
//! (signature, expiry on the virtual clock, the token family's `expire_after` fault).

use std::time::Duration;

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::http_error::GraphError;
use crate::state::Shared;
use crate::tenant::{AppRegistration, Tenant};

/// The audience of Graph access tokens.
pub(crate) const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// Microsoft Graph's application id.
pub(crate) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Mint a JWT-shaped access token signed with the emulator's HMAC key.
pub(crate) fn mint(
    shared: &Shared,
    tenant: &Tenant,
    app: &AppRegistration,
    now: Timestamp,
    lifetime: Duration,
    perms: &[String],
    user: Option<(Uuid, &str)>,
) -> String {
    let iat = now.as_second();
    let mut claims = json!({
        "aud": GRAPH_RESOURCE,
        "iss": format!("https://sts.windows.net/{}/", tenant.tenant_id),
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime.as_secs() as i64,
        "app_displayname": app.display_name,
        "appid": app.client_id.to_string(),
        "appidacr": "1",
        "idtyp": if user.is_some() { "user" } else { "app" },
        "tid": tenant.tenant_id.to_string(),
        "uti": URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes()),
        "ver": "1.0",
    });
    match user {
        Some((oid, upn)) => {
            claims["scp"] = json!(perms.join(" "));
            claims["upn"] = json!(upn);
            claims["unique_name"] = json!(upn);
            claims["oid"] = json!(oid.to_string());
            claims["sub"] = json!(oid.to_string());
        }
        None => {
            claims["roles"] = json!(perms);
            claims["oid"] = json!(app.client_id.to_string());
            claims["sub"] = json!(app.client_id.to_string());
        }
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256","kid":"msgraph-emulator"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let tag = hmac::sign(&shared.token_key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Who is calling a Graph route.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub app_id: String,
    pub tenant_id: String,
    pub permissions: Vec<String>,
    /// UPN for delegated tokens.
    pub user: Option<String>,
    /// Object id of the signed-in user (`oid`), for delegated tokens.
    pub user_id: Option<String>,
}

impl Caller {
    pub fn has_any(&self, perms: &[&str]) -> bool {
        self.permissions
            .iter()
            .any(|p| perms.iter().any(|q| q.eq_ignore_ascii_case(p)))
    }
}

/// Validate the bearer token of a Graph request.
pub(crate) fn validate(
    shared: &Shared,
    headers: &HeaderMap,
    now: Timestamp,
) -> Result<Caller, GraphError> {
    let unauthorized = GraphError::unauthorized;
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("Access token is empty."));
    };
    let value = value.to_str().unwrap_or("");
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(unauthorized(
            "Access token validation failure. Invalid audience.",
        ));
    };
    let token = token.trim();
    let malformed = || unauthorized("IDX14100: JWT is not well formed, there are no dots (.).");
    let (signing_input, sig) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (_, payload) = signing_input.split_once('.').ok_or_else(malformed)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| malformed())?;
    if hmac::verify(&shared.token_key, signing_input.as_bytes(), &sig).is_err() {
        return Err(unauthorized("Access token validation failure."));
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let now_s = now.as_second();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    let nbf = claims["nbf"].as_i64().unwrap_or(0);
    let iat = claims["iat"].as_i64().unwrap_or(0);
    let early = shared
        .faults
        .lock()
        .expect("faults lock")
        .0
        .token_expire_after()
        .is_some_and(|d| now_s >= iat + d.as_secs() as i64);
    if now_s >= exp || now_s < nbf - 300 || early {
        return Err(unauthorized(
            "Access token has expired or is not yet valid.",
        ));
    }
    let tid = claims["tid"].as_str().unwrap_or("").to_string();
    let permissions = match (&claims["roles"], &claims["scp"]) {
        (Value::Array(r), _) => r
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        (_, Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    Ok(Caller {
        app_id: claims["appid"].as_str().unwrap_or("").to_string(),
        tenant_id: tid,
        permissions,
        user: claims["upn"].as_str().map(str::to_string),
        user_id: claims["upn"]
            .as_str()
            .and(claims["oid"].as_str())
            .map(str::to_string),
    })
}
