//! The Entra ID v2.0 token endpoint: `POST /{tenant}/oauth2/v2.0/token` (and
//! tenant-less `/oauth2/v2.0/token`), with the four grants, client assertions,
//! AADSTS error shapes, rotating refresh tokens, and JWT-shaped access tokens the
//! Graph routes validate with the emulator's own HMAC key.
//!
//! Client assertion times (`exp`/`nbf`) are checked against real time, since the
//! client signs them with its own clock; access token expiry uses the virtual clock.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::{hmac, signature};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use uuid::Uuid;

use super::graph::GraphError;
use super::log::TokenRequest;
use super::server::{Ctx, RefreshGrant, Shared};
use super::tenant::{AppRegistration, Tenant};

const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A refusal from the token endpoint.
#[derive(Debug)]
pub(crate) struct TokenError {
    error: &'static str,
    code: u32,
    message: String,
}

fn err(error: &'static str, code: u32, message: impl Into<String>) -> TokenError {
    TokenError {
        error,
        code,
        message: message.into(),
    }
}

fn missing(param: &str) -> TokenError {
    err(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

impl TokenError {
    fn render(&self, shared: &Shared, ctx: &Ctx) -> Response {
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
            "error_uri": format!("{}/error?code={}", shared.base_url, self.code),
        });
        let status = if self.error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        no_store((status, axum::Json(body)).into_response())
    }
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// Injected 503/504/429 at the token endpoint.
pub(crate) fn unavailable(ctx: &Ctx, status: StatusCode) -> Response {
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

/// Parse the `public_key_pem` of a certificate credential.
pub(crate) fn parse_public_key_pem(pem: &str) -> Result<Vec<u8>, String> {
    SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| format!("not a PEM public key: {e:?}"))
}

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
        Err(err(
            "invalid_request",
            90002,
            format!(
                "Tenant '{seg}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ))
    }
}

/// What the request log keeps of a token request: no credential.
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
    }
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
        Err(e) => e.render(shared, ctx),
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
        return Err(err(
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
        return Err(missing("grant_type"));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let segment = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|s| !s.eq_ignore_ascii_case("oauth2"));
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| missing("grant_type"))?
        .clone();
    let dir = shared.dir.read().expect("dir lock");
    let tenant = &dir.tenant;
    let authority = resolve_authority(tenant, segment)?;
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic_auth(parts).map(|(id, _)| id));
    let client_id = client_id.ok_or_else(|| missing("client_id"))?;
    let app = Uuid::try_parse(&client_id)
        .ok()
        .and_then(|id| tenant.apps.iter().find(|a| a.client_id == id))
        .cloned()
        .ok_or_else(|| {
            err(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                    tenant.display_name
                ),
            )
        })?;
    let requested_url = format!("{}{}", shared.base_url, path);

    match grant_type.as_str() {
        "client_credentials" => {
            if !matches!(authority, Authority::Tenant) {
                return Err(err(
                    "invalid_request",
                    50059,
                    "No tenant-identifying information found in either the request or implied by any provided credentials.",
                ));
            }
            if !authenticate_client(shared, tenant, &app, &form, parts, &requested_url)? {
                return Err(err(
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                ));
            }
            let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
            check_app_scope(shared, scope)?;
            let perms: Vec<String> = app.permissions.iter().map(|p| p.to_string()).collect();
            let lifetime = shared.settings.token_lifetime;
            let access = mint(shared, tenant, &app, ctx.now, lifetime, &perms, None);
            Ok(json!({
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
                "ext_expires_in": lifetime.as_secs(),
                "access_token": access,
            }))
        }
        "password" => {
            if matches!(authority, Authority::Common | Authority::Consumers) {
                return Err(err(
                    "invalid_request",
                    9001023,
                    "The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
                ));
            }
            let username = form.get("username").ok_or_else(|| missing("username"))?;
            let password = form.get("password").ok_or_else(|| missing("password"))?;
            let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
            let confidential =
                authenticate_client(shared, tenant, &app, &form, parts, &requested_url)?;
            if !confidential && !app.public_client {
                return Err(err(
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                ));
            }
            let upn = check_user(&dir, username, Some(password))?;
            let (scp, oidc) = delegated_scope(shared, &app, scope)?;
            let refresh = oidc.iter().any(|s| s == "offline_access");
            drop(dir);
            delegated_answer(shared, ctx, app.client_id, &upn, &scp, &oidc, refresh)
        }
        "refresh_token" => {
            if matches!(authority, Authority::Consumers) {
                return Err(err(
                    "invalid_request",
                    9001023,
                    "The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
                ));
            }
            let token = form
                .get("refresh_token")
                .ok_or_else(|| missing("refresh_token"))?;
            let confidential =
                authenticate_client(shared, tenant, &app, &form, parts, &requested_url)?;
            if !confidential && !app.public_client {
                return Err(err(
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                ));
            }
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
        other => Err(err(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

fn basic_auth(parts: &Parts) -> Option<(String, String)> {
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
fn authenticate_client(
    shared: &Shared,
    tenant: &Tenant,
    app: &AppRegistration,
    form: &HashMap<String, String>,
    parts: &Parts,
    requested_url: &str,
) -> Result<bool, TokenError> {
    if let Some(assertion) = form.get("client_assertion") {
        let kind = form.get("client_assertion_type").map(String::as_str);
        if kind != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
            return Err(err(
                "invalid_request",
                700023,
                "Invalid client_assertion_type: expected 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            ));
        }
        verify_assertion(shared, tenant, app, assertion, requested_url)?;
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
                Err(err(
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
        _ => Err(err(
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
    _shared: &Shared,
    tenant: &Tenant,
    app: &AppRegistration,
    jwt: &str,
    requested_url: &str,
) -> Result<(), TokenError> {
    let malformed = || {
        err(
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
        err(
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
    let der = parse_public_key_pem(&cert.public_key_pem).map_err(|_| not_registered())?;
    let key = signature::UnparsedPublicKey::new(alg, der);
    if key.verify(format!("{h}.{p}").as_bytes(), &sig).is_err() {
        return Err(err(
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
        return Err(err(
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
            return Err(err(
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
        return Err(err(
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

fn graph_resources(shared: &Shared) -> [String; 3] {
    [
        GRAPH_RESOURCE.to_string(),
        shared.base_url.clone(),
        GRAPH_APP_ID.to_string(),
    ]
}

fn check_app_scope(shared: &Shared, scope: &str) -> Result<(), TokenError> {
    let items: Vec<&str> = scope.split_whitespace().collect();
    let invalid = || {
        err(
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        )
    };
    let [item] = items.as_slice() else {
        return Err(invalid());
    };
    let Some(resource) = item.strip_suffix("/.default") else {
        return Err(err(
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {item} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    let resource = resource.trim_end_matches('/');
    if graph_resources(shared)
        .iter()
        .any(|r| r.eq_ignore_ascii_case(resource))
    {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Split a delegated `scope` into Graph permissions (granted ones only) and OIDC scopes.
fn delegated_scope(
    shared: &Shared,
    app: &AppRegistration,
    scope: &str,
) -> Result<(Vec<String>, Vec<String>), TokenError> {
    let mut perms = Vec::new();
    let mut oidc = Vec::new();
    let resources = graph_resources(shared);
    for item in scope.split_whitespace() {
        if OIDC_SCOPES.contains(&item) {
            oidc.push(item.to_string());
            continue;
        }
        let name = match item.rsplit_once('/') {
            Some((res, name)) => {
                if !resources
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(res.trim_end_matches('/')))
                {
                    return Err(err(
                        "invalid_scope",
                        70011,
                        format!(
                            "The provided value for the input parameter 'scope' is not valid. The scope {item} is not valid."
                        ),
                    ));
                }
                name
            }
            None => item,
        };
        if name == ".default" {
            perms.extend(app.permissions.iter().map(|p| p.to_string()));
        } else if let Some(p) = app
            .permissions
            .iter()
            .find(|p| p.eq_ignore_ascii_case(name))
        {
            perms.push(p.to_string());
        } else {
            return Err(err(
                "invalid_grant",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization request for this user and resource.",
                    app.client_id, app.display_name
                ),
            ));
        }
    }
    perms.sort();
    perms.dedup();
    if perms.is_empty() {
        perms.extend(app.permissions.iter().map(|p| p.to_string()));
    }
    Ok((perms, oidc))
}

/// Account checks for a delegated user; with a password, also the password.
fn check_user(
    dir: &super::server::Directory,
    username: &str,
    password: Option<&str>,
) -> Result<String, TokenError> {
    let Some(user) = dir
        .by_upn
        .get(&username.to_lowercase())
        .map(|i| &dir.tenant.users[*i])
    else {
        return Err(err(
            "invalid_grant",
            50034,
            format!(
                "The user account {{EUII Hidden}} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                dir.tenant.tenant_id
            ),
        ));
    };
    let creds = dir.tenant.delegated_users.iter().find(|d| {
        d.user_principal_name
            .eq_ignore_ascii_case(&user.user_principal_name)
    });
    let bad_password = || {
        err(
            "invalid_grant",
            50126,
            "Error validating credentials due to invalid username or password.",
        )
    };
    let Some(creds) = creds else {
        return Err(bad_password());
    };
    if creds.locked {
        return Err(err(
            "invalid_grant",
            50053,
            "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
        ));
    }
    if let Some(pw) = password
        && pw != creds.password
    {
        return Err(bad_password());
    }
    if creds.disabled || !user.account_enabled {
        return Err(err("invalid_grant", 50057, "The user account is disabled."));
    }
    if creds.password_expired {
        return Err(err("invalid_grant", 50055, "The password is expired."));
    }
    if password.is_some() && creds.mfa_required {
        return Err(err(
            "invalid_grant",
            50076,
            format!(
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{GRAPH_APP_ID}'."
            ),
        ));
    }
    Ok(user.user_principal_name.to_string())
}

fn redeem_refresh(
    shared: &Shared,
    token: &str,
    client_id: Uuid,
    now: Timestamp,
) -> Result<RefreshGrant, TokenError> {
    let mut table = shared.refresh.lock().expect("refresh lock");
    let Some((grant, used)) = table.get(token).cloned() else {
        return Err(err(
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        ));
    };
    if grant.client_id != client_id {
        return Err(err(
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed.",
        ));
    }
    if used && !shared.settings.refresh_token_reuse {
        return Err(err(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ));
    }
    let idle = now.duration_since(grant.issued);
    if idle.as_secs_f64() > shared.settings.refresh_token_max_inactive.as_secs_f64() {
        return Err(err(
            "invalid_grant",
            700082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {:.2} days.",
                grant.issued,
                shared.settings.refresh_token_max_inactive.as_secs_f64() / 86400.0
            ),
        ));
    }
    if let Some(entry) = table.get_mut(token) {
        entry.1 = true;
    }
    Ok(grant)
}

fn new_refresh(shared: &Shared, client_id: Uuid, upn: &str, scope: &str, now: Timestamp) -> String {
    let token = format!(
        "1.EMU{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    shared.refresh.lock().expect("refresh lock").insert(
        token.clone(),
        (
            RefreshGrant {
                client_id,
                upn: upn.to_string(),
                scope: scope.to_string(),
                issued: now,
            },
            false,
        ),
    );
    token
}

fn delegated_answer(
    shared: &Shared,
    ctx: &Ctx,
    client_id: Uuid,
    upn: &str,
    scp: &[String],
    oidc: &[String],
    refresh: bool,
) -> Result<Value, TokenError> {
    let dir = shared.dir.read().expect("dir lock");
    let tenant = &dir.tenant;
    let app = tenant
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .ok_or_else(|| err("invalid_client", 700016, "Application not found."))?;
    let lifetime = shared.settings.token_lifetime;
    let user = dir.user(upn);
    let access = mint(
        shared,
        tenant,
        app,
        ctx.now,
        lifetime,
        scp,
        user.map(|u| (u.id, upn)),
    );
    let scope = scp
        .iter()
        .chain(oidc)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let mut v = json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": lifetime.as_secs(),
        "ext_expires_in": lifetime.as_secs(),
        "access_token": access,
    });
    if refresh {
        let full_scope = scp
            .iter()
            .map(|s| format!("{GRAPH_RESOURCE}/{s}"))
            .chain(oidc.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        v["refresh_token"] = json!(new_refresh(shared, client_id, upn, &full_scope, ctx.now));
    }
    Ok(v)
}

/// Mint a JWT-shaped access token signed with the emulator's HMAC key.
fn mint(
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
    parts: &Parts,
    now: Timestamp,
) -> Result<Caller, GraphError> {
    let unauthorized =
        |m: &str| GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", m);
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
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

/// For `RunningEmulator::mint_refresh_token`.
pub(crate) fn mint_refresh_token(
    shared: &Shared,
    upn: &str,
    client_id: Uuid,
) -> Result<String, String> {
    let dir = shared.dir.read().expect("dir lock");
    let app = dir
        .tenant
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .ok_or_else(|| format!("no app {client_id}"))?;
    let user = dir.user(upn).ok_or_else(|| format!("no user {upn}"))?;
    let scope = app
        .permissions
        .iter()
        .map(|p| format!("{GRAPH_RESOURCE}/{p}"))
        .chain(["openid".into(), "profile".into(), "offline_access".into()])
        .collect::<Vec<_>>()
        .join(" ");
    let upn = user.user_principal_name.to_string();
    drop(dir);
    Ok(new_refresh(
        shared,
        client_id,
        &upn,
        &scope,
        shared.clock.now(),
    ))
}

/// For `RunningEmulator::mint_access_token`.
pub(crate) fn mint_app_token(shared: &Shared, client_id: Uuid) -> Result<String, String> {
    let dir = shared.dir.read().expect("dir lock");
    let app = dir
        .tenant
        .apps
        .iter()
        .find(|a| a.client_id == client_id)
        .ok_or_else(|| format!("no app {client_id}"))?;
    let perms: Vec<String> = app.permissions.iter().map(|p| p.to_string()).collect();
    Ok(mint(
        shared,
        &dir.tenant,
        app,
        shared.clock.now(),
        shared.settings.token_lifetime,
        &perms,
        None,
    ))
}
