//! What the request log keeps of a token request: what was asked for and how the
//! client authenticated, never a credential (secret, password, refresh token,
//! assertion signature).

use std::collections::HashMap;

use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::client_auth::basic_auth;
use crate::log::TokenRequest;

/// The log's summary of a token request.
pub(crate) fn summarize(parts: &Parts, body: &[u8]) -> TokenRequest {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let basic = basic_auth(parts);
    let assertion = form.get("client_assertion").map(|jwt| {
        let mut it = jwt.split('.');
        let mut part = || {
            it.next()
                .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        };
        (part(), part())
    });
    let presented = [
        (assertion.is_some(), "private_key_jwt"),
        (form.contains_key("client_secret"), "client_secret_post"),
        (basic.is_some(), "client_secret_basic"),
    ];
    let mut client_auth: Vec<&str> = presented
        .iter()
        .filter(|(sent, _)| *sent)
        .map(|(_, name)| *name)
        .collect();
    if client_auth.is_empty() {
        client_auth.push("none");
    }
    let (assertion_header, assertion_claims) = assertion.unwrap_or_default();
    TokenRequest {
        grant_type: form.get("grant_type").cloned(),
        client_id: form
            .get("client_id")
            .cloned()
            .or_else(|| basic.map(|(id, _)| id)),
        scope: form.get("scope").cloned(),
        username: form.get("username").cloned(),
        client_auth: client_auth.join(","),
        assertion_header,
        assertion_claims,
        refresh_token_serial: None,
    }
}
