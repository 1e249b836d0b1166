//! Client authentication at the token endpoint: a client secret (form field or HTTP
//! Basic) or a signed client assertion (`private_key_jwt`: RS256/PS256 over the
//! app's registered certificate, audience, issuer and time checked).
//!
//! Assertion times (`exp`/`nbf`) are checked against real time, since the client
//! signs them with its own clock; access token expiry uses the virtual clock.

use std::collections::HashMap;

use aws_lc_rs::signature;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use serde_json::Value;

use crate::http_error::TokenError;
use crate::tenant::{AppRegistration, Tenant};

/// Client id and secret of an `Authorization: Basic` header.
pub(super) fn basic_auth(parts: &Parts) -> Option<(String, String)> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// Check the client's credential. `Ok(false)`: none was presented.
pub(super) fn authenticate_client(
    tenant: &Tenant,
    app: &AppRegistration,
    form: &HashMap<String, String>,
    parts: &Parts,
    requested_url: &str,
) -> Result<bool, TokenError> {
    if let Some(assertion) = form.get("client_assertion") {
        let kind = form.get("client_assertion_type").map(String::as_str);
        if kind != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
            return Err(TokenError::new(
                "invalid_request",
                700023,
                "Invalid client_assertion_type: expected 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            ));
        }
        verify_assertion(tenant, app, assertion, requested_url)?;
        return Ok(true);
    }
    let secret = form
        .get("client_secret")
        .cloned()
        .or_else(|| basic_auth(parts).map(|(_, s)| s));
    let Some(secret) = secret else {
        return Ok(false);
    };
    match &app.client_secret {
        Some(s) if s.as_ref() == secret => {
            if app.client_secret_expired {
                Err(TokenError::new(
                    "invalid_client",
                    7000222,
                    format!(
                        "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app.",
                        app.client_id
                    ),
                ))
            } else {
                Ok(true)
            }
        }
        _ => Err(TokenError::new(
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        )),
    }
}

fn verify_assertion(
    tenant: &Tenant,
    app: &AppRegistration,
    jwt: &str,
    requested_url: &str,
) -> Result<(), TokenError> {
    let malformed = || {
        TokenError::new(
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let mut it = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(malformed());
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let claims: Value = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| malformed())?;
    let not_registered = || {
        TokenError::new(
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        )
    };
    let cert = app.certificate.as_ref().ok_or_else(not_registered)?;
    let x5t256 = header.get("x5t#S256").and_then(Value::as_str);
    let x5t = header.get("x5t").and_then(Value::as_str);
    let thumb_ok = match (x5t256, x5t) {
        (Some(t), _) if cert.thumbprint_sha256.as_deref() == Some(t) => true,
        (_, Some(t)) if cert.thumbprint_sha1.as_deref() == Some(t) => true,
        _ => false,
    };
    if !thumb_ok {
        return Err(not_registered());
    }
    let alg: &'static dyn signature::VerificationAlgorithm =
        match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
            Some("PS256") => &signature::RSA_PSS_2048_8192_SHA256,
            _ => return Err(malformed()),
        };
    let der = cert.public_key_der().map_err(|_| not_registered())?;
    let key = signature::UnparsedPublicKey::new(alg, der);
    if key.verify(format!("{h}.{p}").as_bytes(), &sig).is_err() {
        return Err(TokenError::new(
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    let auds = [
        requested_url.to_string(),
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            tenant.tenant_id
        ),
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            tenant.domain
        ),
    ];
    if !auds.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(TokenError::new(
            "invalid_client",
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials. Audience '{aud}'."
            ),
        ));
    }
    let id = app.client_id.to_string();
    for claim in ["iss", "sub"] {
        if claims.get(claim).and_then(Value::as_str) != Some(id.as_str()) {
            return Err(TokenError::new(
                "invalid_client",
                700021,
                format!(
                    "Client assertion application identifier doesn't match 'client_id' parameter ({claim})."
                ),
            ));
        }
    }
    let now = Timestamp::now().as_second();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(now);
    if exp <= now || nbf > now + 300 {
        return Err(TokenError::new(
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}
