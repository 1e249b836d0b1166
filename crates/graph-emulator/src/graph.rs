//! The Graph routes (`/v1.0/...` and `/beta/...`, same behaviour): authentication,
//! throttling, permission checks, and each endpoint with Graph's strictness.
//!
//! Sign-in paging: the first page fixes an "as of" visibility instant; every
//! `$skiptoken` carries it together with the (createdDateTime, id) of the last
//! record served. Later pages show records strictly older than that cursor and
//! visible at "as of", so one paging sequence is a consistent snapshot: records
//! that turn visible while a client pages are never half-served; the next
//! incremental pull (re-reading its overlap window) sees them.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::faults::{Family, format_retry_after};
use super::log::LogEntry;
use super::odata::{self, PageTokenError, Query, Tok};
use super::server::{Ctx, Directory, Kind, Shared};
use super::tenant::{DirectoryObject, SignIn, User};
use super::token::{self, Caller};

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

    fn bad_request(message: &str) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    fn unsupported(message: &str) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    fn denied() -> GraphError {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    fn not_found(key: &str) -> GraphError {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
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

type GResult = Result<Response, GraphError>;

/// Resource units a request costs against the directory bucket.
fn cost(family: Family, method: &Method, segments: &[String], query: &Query) -> u32 {
    match family {
        Family::Users if method == Method::PATCH => 3,
        Family::Users if segments.len() == 1 => {
            if query.get("$select").is_some() {
                1
            } else {
                2
            }
        }
        Family::MemberOf => 2,
        _ => 1,
    }
}

/// Serve one Graph request.
#[allow(clippy::too_many_arguments)]
pub(crate) fn handle(
    shared: &Shared,
    ctx: &Ctx,
    family: Family,
    parts: &Parts,
    path: &str,
    raw_query: Option<&str>,
    body: &[u8],
    entry: &mut LogEntry,
) -> Response {
    // "/v1.0/" and "/beta/" are both six bytes; classify() checked the prefix.
    let rest = path.get(6..).unwrap_or("");
    let segments = match split_segments(rest) {
        Ok(s) => s,
        Err(e) => return e.render(ctx),
    };
    let query = Query::parse(raw_query);
    let caller = match token::validate(shared, parts, ctx.now) {
        Ok(c) => c,
        Err(e) => return e.render(ctx),
    };
    let tenant_id = shared
        .dir
        .read()
        .expect("dir lock")
        .tenant
        .tenant_id
        .to_string();
    if caller.tenant_id != tenant_id {
        return GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        )
        .render(ctx);
    }
    let units = cost(family, &parts.method, &segments, &query);
    let admitted = {
        let mut t = shared.throttle.lock().expect("throttle lock");
        let (config, state) = &mut *t;
        let fractional = config.fractional_retry_after;
        state
            .admit(
                config,
                &tenant_id,
                &caller.app_id,
                family,
                units,
                shared.clock.now(),
            )
            .map_err(|t| (t, fractional))
    };
    let usage = match admitted {
        Ok(u) => u,
        Err((t, fractional)) => {
            entry.fault = Some("throttled".into());
            let mut r = GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests. Application is over its request limit.",
            )
            .render(ctx);
            let h = r.headers_mut();
            let ra = format_retry_after(t.retry_after.as_secs_f64(), fractional);
            for (k, v) in [
                ("retry-after", ra),
                (
                    "x-ms-throttle-limit-percentage",
                    format!("{:.1}", t.limit_percentage),
                ),
                ("x-ms-throttle-scope", t.scope.clone()),
                ("x-ms-throttle-information", t.information.to_string()),
                ("x-ms-resource-unit", units.to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            return r;
        }
    };
    let result = route(shared, ctx, &caller, parts, &segments, &query, body);
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.render(ctx),
    };
    let h = resp.headers_mut();
    if matches!(
        family,
        Family::Users | Family::MemberOf | Family::Photo | Family::Organization
    ) {
        h.insert("x-ms-resource-unit", HeaderValue::from(units));
    }
    if let Some(u) = usage.filter(|u| *u >= 0.8)
        && let Ok(v) = HeaderValue::from_str(&format!("{u:.1}"))
    {
        h.insert("x-ms-throttle-limit-percentage", v);
    }
    resp
}

/// Path segments after the version, decoded; `users('x')` becomes `users`, `x`.
fn split_segments(rest: &str) -> Result<Vec<String>, GraphError> {
    let mut out = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let seg = odata::percent_decode(raw).ok_or_else(|| {
            GraphError::bad_request("Invalid percent-encoding in the request path.")
        })?;
        if let Some(inner) = seg
            .strip_prefix("users(")
            .or_else(|| seg.strip_prefix("Users("))
            .and_then(|s| s.strip_suffix(')'))
        {
            let toks = odata::tokenize(inner).map_err(|e| GraphError::bad_request(&e))?;
            let [Tok::Str(key)] = toks.as_slice() else {
                return Err(GraphError::bad_request(&format!(
                    "Bad key in segment '{seg}'."
                )));
            };
            out.push("users".to_string());
            out.push(format!("'{key}"));
        } else {
            out.push(seg);
        }
    }
    Ok(out)
}

fn method_not_allowed() -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
}

fn route(
    shared: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    parts: &Parts,
    segments: &[String],
    query: &Query,
    body: &[u8],
) -> GResult {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let lower: Vec<String> = seg.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = &parts.method;
    let get = m == Method::GET;
    match l.as_slice() {
        ["organization"] if get => organization(shared, caller),
        ["organization"] => Err(method_not_allowed()),
        ["communications", "getpresencesbyuserid"] if m == Method::POST => {
            presences(shared, caller, body)
        }
        ["communications", "getpresencesbyuserid"] => Err(method_not_allowed()),
        ["auditlogs", "signins"] if get => sign_ins(shared, ctx, caller, parts.uri.path(), query),
        ["auditlogs", "signins", _] if get => sign_in_by_id(shared, ctx, caller, seg[2]),
        ["me"] if get => me(shared, caller, query),
        ["me", ..] => Err(method_not_allowed()),
        ["users"] if get => list_users(shared, caller, parts, query),
        ["users", _] if get => get_user(shared, caller, seg[1], query),
        ["users", _] if m == Method::PATCH => patch_user(shared, caller, seg[1], body),
        ["users", _, "presence"] if get => presence(shared, caller, seg[1]),
        ["users", _, "memberof"] if get => member_of(shared, caller, parts, seg[1], None, query),
        ["users", _, "memberof", cast] if get => {
            member_of(shared, caller, parts, seg[1], Some(cast), query)
        }
        ["users", _, "photo"] if get => photo(shared, caller, seg[1], None, false),
        ["users", _, "photo", "$value"] if get => photo(shared, caller, seg[1], None, true),
        ["users", _, "photos", _] if get => photo(shared, caller, seg[1], Some(seg[3]), false),
        ["users", _, "photos", _, "$value"] if get => {
            photo(shared, caller, seg[1], Some(seg[3]), true)
        }
        ["users", ..] | ["auditlogs", ..] => Err(method_not_allowed()),
        _ => {
            tracing::warn!(path = ?segments, "emulator: unknown Graph route");
            let last = seg.last().copied().unwrap_or("");
            Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Resource not found for the segment '{last}'."),
            ))
        }
    }
}

fn require(caller: &Caller, perms: &[&str]) -> Result<(), GraphError> {
    if caller.has_any(perms) {
        Ok(())
    } else {
        Err(GraphError::denied())
    }
}

const READ_USERS: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "User.ReadBasic.All",
];

/// Resolve `{id}` / `'{upn}'` (from the `users('...')` form) to a user index.
fn resolve_user(dir: &Directory, key: &str) -> Result<usize, GraphError> {
    if let Some(upn) = key.strip_prefix('\'') {
        return dir
            .user_index(upn)
            .ok_or_else(|| GraphError::not_found(upn));
    }
    if key.starts_with('$') {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Resource not found for the segment '{key}'."),
        ));
    }
    dir.user_index(key)
        .ok_or_else(|| GraphError::not_found(key))
}

fn context(shared: &Shared, tail: &str) -> String {
    format!("{}/v1.0/$metadata#{tail}", shared.base_url)
}

fn json_response(v: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"),
    );
    r
}

// ---------------------------------------------------------------- organization

fn organization(shared: &Shared, caller: &Caller) -> GResult {
    require(
        caller,
        &[
            "Organization.Read.All",
            "Organization.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
    )?;
    let dir = shared.dir.read().expect("dir lock");
    let t = &dir.tenant;
    Ok(json_response(&json!({
        "@odata.context": context(shared, "organization"),
        "value": [{
            "id": t.tenant_id.to_string(),
            "displayName": t.display_name,
            "tenantType": "AAD",
            "countryLetterCode": "DE",
            "verifiedDomains": [{
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": true, "isInitial": true, "name": t.domain, "type": "Managed"
            }],
        }]
    })))
}

// ---------------------------------------------------------------- presence

/// Graph's presence resource.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceView<'a> {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    id: String,
    availability: &'a str,
    activity: &'a str,
    status_message: Option<StatusMessageView<'a>>,
    out_of_office_settings: OutOfOfficeView,
    work_location: WorkLocationView<'a>,
    sequence_number: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusMessageView<'a> {
    message: ItemBodyView<'a>,
    published_date_time: Option<&'a str>,
    expiry_date_time: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemBodyView<'a> {
    content: &'a str,
    content_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutOfOfficeView {
    message: Option<String>,
    is_out_of_office: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkLocationView<'a> {
    work_location_type: &'a str,
    source: &'static str,
    place_id: Option<&'a str>,
}

fn presence_view(user: &User) -> PresenceView<'_> {
    let p = user.presence.as_ref();
    PresenceView {
        context: None,
        id: user.id.to_string(),
        availability: p.map_or("PresenceUnknown", |p| &p.availability),
        activity: p.map_or("PresenceUnknown", |p| &p.activity),
        status_message: p
            .and_then(|p| p.status_message.as_deref())
            .map(|m| StatusMessageView {
                message: ItemBodyView {
                    content: m,
                    content_type: "text",
                },
                published_date_time: None,
                expiry_date_time: None,
            }),
        out_of_office_settings: OutOfOfficeView {
            message: None,
            is_out_of_office: p.is_some_and(|p| p.is_out_of_office),
        },
        work_location: WorkLocationView {
            work_location_type: p
                .and_then(|p| p.work_location_type.as_deref())
                .unwrap_or("unknown"),
            source: "automatic",
            place_id: None,
        },
        sequence_number: format!("{:016X}", user.id.as_u128() as u64),
    }
}

const PRESENCE_PERMS: &[&str] = &[
    "Presence.Read.All",
    "Presence.ReadWrite.All",
    "Presence.Read",
];

fn presence(shared: &Shared, caller: &Caller, key: &str) -> GResult {
    require(caller, PRESENCE_PERMS)?;
    let id = Uuid::try_parse(key.trim_start_matches('\'')).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("The user id '{key}' is not a valid object id (GUID); resolve the userPrincipalName first."),
        )
    })?;
    let dir = shared.dir.read().expect("dir lock");
    let i = dir
        .by_id
        .get(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    let mut v = presence_view(&dir.tenant.users[*i]);
    v.context = Some(context(shared, &format!("users('{id}')/presence/$entity")));
    Ok(json_response(&v))
}

/// Most ids one `getPresencesByUserId` takes.
pub const MAX_PRESENCE_IDS: usize = 650;

fn presences(shared: &Shared, caller: &Caller, body: &[u8]) -> GResult {
    require(caller, PRESENCE_PERMS)?;
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        )
    })?;
    let Some(ids) = v.get("ids").and_then(Value::as_array) else {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The request body must contain 'ids'.",
        ));
    };
    if ids.len() > MAX_PRESENCE_IDS || ids.is_empty() {
        return Err(GraphError {
            status: StatusCode::BAD_REQUEST,
            code: String::new(),
            message: String::new(),
            bare: true,
        });
    }
    let dir = shared.dir.read().expect("dir lock");
    let mut seen = HashSet::with_capacity(ids.len());
    let mut value = Vec::with_capacity(ids.len());
    for id in ids {
        let parsed = id
            .as_str()
            .and_then(|s| Uuid::try_parse(s).ok())
            .ok_or_else(|| {
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Invalid user id {id}."),
                )
            })?;
        if !seen.insert(parsed) {
            continue;
        }
        if let Some(i) = dir.by_id.get(&parsed) {
            value.push(presence_view(&dir.tenant.users[*i]));
        }
    }
    #[derive(Serialize)]
    struct Page<'a> {
        #[serde(rename = "@odata.context")]
        context: String,
        value: Vec<PresenceView<'a>>,
    }
    Ok(json_response(&Page {
        context: context(shared, "Collection(microsoft.graph.presence)"),
        value,
    }))
}

// ---------------------------------------------------------------- users

/// How a user property may be written.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    Yes,
    ReadOnly,
    /// Only with a delegated token.
    DelegatedOnly,
    /// Needs `User-PasswordProfile.ReadWrite.All` (or delegated Directory.AccessAsUser.All).
    Password,
}

const USER_PROPS: &[(&str, Write)] = &[
    ("aboutMe", Write::DelegatedOnly),
    ("accountEnabled", Write::Yes),
    ("ageGroup", Write::Yes),
    ("assignedLicenses", Write::ReadOnly),
    ("assignedPlans", Write::ReadOnly),
    ("birthday", Write::DelegatedOnly),
    ("businessPhones", Write::Yes),
    ("city", Write::Yes),
    ("companyName", Write::Yes),
    ("consentProvidedForMinor", Write::Yes),
    ("country", Write::Yes),
    ("createdDateTime", Write::ReadOnly),
    ("creationType", Write::ReadOnly),
    ("deletedDateTime", Write::ReadOnly),
    ("department", Write::Yes),
    ("displayName", Write::Yes),
    ("employeeHireDate", Write::Yes),
    ("employeeId", Write::Yes),
    ("employeeOrgData", Write::Yes),
    ("employeeType", Write::Yes),
    ("externalUserState", Write::ReadOnly),
    ("faxNumber", Write::Yes),
    ("givenName", Write::Yes),
    ("hireDate", Write::DelegatedOnly),
    ("id", Write::ReadOnly),
    ("identities", Write::Yes),
    ("imAddresses", Write::ReadOnly),
    ("interests", Write::DelegatedOnly),
    ("isResourceAccount", Write::ReadOnly),
    ("jobTitle", Write::Yes),
    ("lastPasswordChangeDateTime", Write::ReadOnly),
    ("mail", Write::Yes),
    ("mailNickname", Write::Yes),
    ("mobilePhone", Write::Yes),
    ("mySite", Write::DelegatedOnly),
    ("officeLocation", Write::Yes),
    ("onPremisesDistinguishedName", Write::ReadOnly),
    ("onPremisesDomainName", Write::ReadOnly),
    ("onPremisesExtensionAttributes", Write::Yes),
    ("onPremisesImmutableId", Write::Yes),
    ("onPremisesLastSyncDateTime", Write::ReadOnly),
    ("onPremisesSamAccountName", Write::ReadOnly),
    ("onPremisesSecurityIdentifier", Write::ReadOnly),
    ("onPremisesSyncEnabled", Write::ReadOnly),
    ("onPremisesUserPrincipalName", Write::ReadOnly),
    ("otherMails", Write::Yes),
    ("passwordPolicies", Write::Yes),
    ("passwordProfile", Write::Password),
    ("pastProjects", Write::DelegatedOnly),
    ("postalCode", Write::Yes),
    ("preferredDataLocation", Write::Yes),
    ("preferredLanguage", Write::Yes),
    ("preferredName", Write::DelegatedOnly),
    ("proxyAddresses", Write::ReadOnly),
    ("responsibilities", Write::DelegatedOnly),
    ("schools", Write::DelegatedOnly),
    ("securityIdentifier", Write::ReadOnly),
    ("showInAddressList", Write::Yes),
    ("signInSessionsValidFromDateTime", Write::ReadOnly),
    ("skills", Write::DelegatedOnly),
    ("state", Write::Yes),
    ("streetAddress", Write::Yes),
    ("surname", Write::Yes),
    ("usageLocation", Write::Yes),
    ("userPrincipalName", Write::Yes),
    ("userType", Write::Yes),
];

/// Graph's default property set when there is no `$select`.
const DEFAULT_USER_PROPS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// What `User.ReadBasic.All` may read.
const BASIC_USER_PROPS: &[&str] = &[
    "displayName",
    "givenName",
    "id",
    "mail",
    "surname",
    "userPrincipalName",
];

fn user_prop(name: &str) -> Option<(&'static str, Write)> {
    USER_PROPS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .copied()
}

/// Canonical property names of `$select`, or Graph's 400 for an unknown one.
fn user_select(query: &Query) -> Result<Vec<&'static str>, GraphError> {
    let Some(sel) = query.get("$select") else {
        return Ok(DEFAULT_USER_PROPS.to_vec());
    };
    let mut out = Vec::new();
    for name in odata::parse_select(sel) {
        let (canon, _) = user_prop(&name).ok_or_else(|| {
            GraphError::bad_request(&format!(
                "Parsing OData Select and Expand failed: Could not find a property named '{name}' on type 'microsoft.graph.user'."
            ))
        })?;
        if !out.contains(&canon) {
            out.push(canon);
        }
    }
    Ok(out)
}

fn user_json(user: &User, select: &[&str], basic_only: bool) -> Map<String, Value> {
    let full = match serde_json::to_value(user) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut out = Map::with_capacity(select.len());
    for &name in select {
        let v = if basic_only && !BASIC_USER_PROPS.contains(&name) {
            Value::Null
        } else if name == "onPremisesExtensionAttributes" {
            let given = full.get(name).and_then(Value::as_object);
            let mut ext = Map::new();
            for i in 1..=15 {
                let k = format!("extensionAttribute{i}");
                ext.insert(
                    k.clone(),
                    given
                        .and_then(|g| g.get(&k))
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
            Value::Object(ext)
        } else if name == "passwordProfile" {
            Value::Null
        } else {
            full.get(name).cloned().unwrap_or(match name {
                "businessPhones" | "otherMails" | "proxyAddresses" | "imAddresses" => json!([]),
                _ => Value::Null,
            })
        };
        out.insert(name.to_string(), v);
    }
    out
}

fn select_context(select: &[&str], query: &Query) -> String {
    if query.get("$select").is_some() {
        format!("({})", select.join(","))
    } else {
        String::new()
    }
}

fn get_user(shared: &Shared, caller: &Caller, key: &str, query: &Query) -> GResult {
    require(caller, READ_USERS)?;
    let select = single_user_select(query)?;
    let dir = shared.dir.read().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    let basic = !caller.has_any(&READ_USERS[..4]);
    Ok(user_entity(
        shared,
        &dir.tenant.users[i],
        &select,
        query,
        basic,
    ))
}

/// What lets a signed-in user read their own profile (`User.Read` is the least).
const READ_ME: &[&str] = &[
    "User.Read",
    "User.ReadWrite",
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "User.ReadBasic.All",
];

/// `GET /me`: the signed-in user of a delegated token (by `oid`, else `upn`).
/// App-only tokens have no signed-in user; Graph answers them 400.
fn me(shared: &Shared, caller: &Caller, query: &Query) -> GResult {
    let Some(upn) = caller.user.as_deref() else {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        ));
    };
    require(caller, READ_ME)?;
    let select = single_user_select(query)?;
    let dir = shared.dir.read().expect("dir lock");
    let i = caller
        .user_id
        .as_deref()
        .and_then(|oid| dir.user_index(oid))
        .or_else(|| dir.user_index(upn))
        .ok_or_else(|| GraphError::not_found(upn))?;
    let basic = !caller.has_any(&READ_ME[..6]);
    Ok(user_entity(
        shared,
        &dir.tenant.users[i],
        &select,
        query,
        basic,
    ))
}

/// The query of one user (`/users/{id}`, `/me`): only `$select` is allowed.
fn single_user_select(query: &Query) -> Result<Vec<&'static str>, GraphError> {
    if let Some(opt) = query.unsupported_option(&["$select"]) {
        return Err(GraphError::bad_request(&format!(
            "Query option '{opt}' is not allowed here."
        )));
    }
    user_select(query)
}

fn user_entity(
    shared: &Shared,
    user: &User,
    select: &[&str],
    query: &Query,
    basic: bool,
) -> Response {
    let mut v = user_json(user, select, basic);
    v.insert(
        "@odata.context".into(),
        json!(context(
            shared,
            &format!("users{}/$entity", select_context(select, query))
        )),
    );
    json_response(&v)
}

/// Graph's cap on values in one `in (...)`.
pub const MAX_IN_VALUES: usize = 15;

enum UserClause {
    Upns(Vec<String>),
    Ids(Vec<String>),
    Mail(String),
    StartsWith(String),
    Enabled(bool),
}

fn parse_user_filter(filter: &str) -> Result<Vec<UserClause>, GraphError> {
    let bad = |m: &str| GraphError::bad_request(&format!("Invalid filter clause: {m}"));
    let toks = odata::tokenize(filter).map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for clause in odata::split_and(&toks).map_err(|e| GraphError::unsupported(&e))? {
        let c = match clause {
            [Tok::Word(f), op, rest @ ..] if op.is_word("in") => {
                let values = odata::parse_in_list(rest).map_err(|e| bad(&e))?;
                if values.len() > MAX_IN_VALUES {
                    return Err(GraphError::unsupported(&format!(
                        "Too many child clauses specified in search filter expression containing 'OR' operators: {}. Max allowed: {MAX_IN_VALUES}.",
                        values.len()
                    )));
                }
                match f.to_ascii_lowercase().as_str() {
                    "userprincipalname" => UserClause::Upns(values),
                    "id" => UserClause::Ids(values),
                    _ => {
                        return Err(GraphError::unsupported(&format!(
                            "Unsupported property '{f}' in 'in'."
                        )));
                    }
                }
            }
            [Tok::Word(f), op, Tok::Str(v)] if op.is_word("eq") => {
                match f.to_ascii_lowercase().as_str() {
                    "userprincipalname" => UserClause::Upns(vec![v.clone()]),
                    "id" => UserClause::Ids(vec![v.clone()]),
                    "mail" => UserClause::Mail(v.to_lowercase()),
                    _ => {
                        return Err(GraphError::unsupported(&format!(
                            "Unsupported property '{f}' in filter."
                        )));
                    }
                }
            }
            [Tok::Word(f), op, Tok::Word(b)]
                if op.is_word("eq") && f.eq_ignore_ascii_case("accountEnabled") =>
            {
                UserClause::Enabled(b.parse().map_err(|_| bad("expected true or false"))?)
            }
            [
                Tok::Word(func),
                Tok::LParen,
                Tok::Word(f),
                Tok::Comma,
                Tok::Str(v),
                Tok::RParen,
            ] if func.eq_ignore_ascii_case("startswith")
                && f.eq_ignore_ascii_case("displayName") =>
            {
                UserClause::StartsWith(v.to_lowercase())
            }
            _ => {
                return Err(GraphError::unsupported(
                    "Unsupported or invalid query filter clause specified.",
                ));
            }
        };
        out.push(c);
    }
    Ok(out)
}

fn parse_top(query: &Query, default: usize, max: usize) -> Result<usize, GraphError> {
    match query.get("$top") {
        None => Ok(default),
        Some(t) => match t.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(GraphError::bad_request(&format!(
                "Invalid page size specified: '{t}'. Must be between 1 and {max} inclusive."
            ))),
        },
    }
}

fn consistency_eventual(parts: &Parts) -> bool {
    parts
        .headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

fn count_true(query: &Query) -> Result<bool, GraphError> {
    match query.get("$count") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(GraphError::bad_request(&format!(
            "Invalid value '{v}' for $count."
        ))),
    }
}

/// Offset from a sealed `$skiptoken`, or 0 on the first page.
fn page_offset(shared: &Shared, scope: &str, query: &Query) -> Result<usize, GraphError> {
    let Some(tok) = query.get("$skiptoken") else {
        return Ok(0);
    };
    match shared.pages.open(scope, tok) {
        Ok(v) => v
            .get("o")
            .and_then(Value::as_u64)
            .map(|o| o as usize)
            .ok_or_else(|| GraphError::bad_request("Invalid paging token.")),
        Err(PageTokenError::Expired) => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in your request.",
        )),
        Err(PageTokenError::Invalid) => Err(GraphError::bad_request("Invalid paging token.")),
    }
}

fn next_link(shared: &Shared, path: &str, query: &Query, token: &str) -> String {
    let mut pairs = query.without_skiptoken();
    pairs.push(("$skiptoken".into(), token.to_string()));
    format!(
        "{}{}?{}",
        shared.base_url,
        path,
        odata::encode_query(&pairs)
    )
}

fn expiry(shared: &Shared) -> i64 {
    Timestamp::now().as_second() + shared.settings.skiptoken_ttl.as_secs() as i64
}

fn list_users(shared: &Shared, caller: &Caller, parts: &Parts, query: &Query) -> GResult {
    require(caller, READ_USERS)?;
    if let Some(opt) =
        query.unsupported_option(&["$select", "$filter", "$top", "$skiptoken", "$count"])
    {
        return Err(GraphError::bad_request(&format!(
            "Query option '{opt}' is not allowed here."
        )));
    }
    let count = count_true(query)?;
    if query.get("$count").is_some() && !consistency_eventual(parts) {
        return Err(GraphError::unsupported(
            "$count is not currently supported without the header 'ConsistencyLevel: eventual'.",
        ));
    }
    let select = user_select(query)?;
    let top = parse_top(query, 100, 999)?;
    let clauses = match query.get("$filter") {
        Some(f) => parse_user_filter(f)?,
        None => Vec::new(),
    };
    let dir = shared.dir.read().expect("dir lock");
    let users = &dir.tenant.users;
    // Index-backed clauses narrow the candidates; the rest filter them.
    let mut candidates: Option<Vec<usize>> = None;
    for c in &clauses {
        let found: Option<Vec<usize>> = match c {
            UserClause::Upns(v) => Some(
                v.iter()
                    .filter_map(|u| dir.by_upn.get(&u.to_lowercase()).copied())
                    .collect(),
            ),
            UserClause::Ids(v) => Some(
                v.iter()
                    .filter_map(|s| {
                        Uuid::try_parse(s)
                            .ok()
                            .and_then(|id| dir.by_id.get(&id).copied())
                    })
                    .collect(),
            ),
            _ => None,
        };
        if let Some(found) = found {
            candidates = Some(match candidates {
                None => found,
                Some(prev) => prev.into_iter().filter(|i| found.contains(i)).collect(),
            });
        }
    }
    // No filter at all: page over the user list without touching every user.
    let result: Option<Vec<usize>> = if clauses.is_empty() {
        None
    } else {
        let mut r: Vec<usize> = candidates.unwrap_or_else(|| (0..users.len()).collect());
        r.sort_unstable();
        r.dedup();
        r.retain(|&i| {
            let u = &users[i];
            clauses.iter().all(|c| match c {
                UserClause::Mail(m) => u.mail.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)),
                UserClause::StartsWith(p) => u.display_name.to_lowercase().starts_with(p.as_str()),
                UserClause::Enabled(b) => u.account_enabled == *b,
                _ => true,
            })
        });
        Some(r)
    };
    let total = result.as_ref().map_or(users.len(), Vec::len);
    let scope = format!(
        "users|{}|{}|{}",
        query.get("$filter").unwrap_or(""),
        query.get("$select").unwrap_or(""),
        top
    );
    let offset = page_offset(shared, &scope, query)?;
    let basic = !caller.has_any(&READ_USERS[..4]);
    let indices: Vec<usize> = match &result {
        Some(r) => r.iter().skip(offset).take(top).copied().collect(),
        None => (offset.min(total)..(offset + top).min(total)).collect(),
    };
    let page: Vec<Value> = indices
        .into_iter()
        .map(|i| Value::Object(user_json(&users[i], &select, basic)))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context(
            shared,
            &format!("users{}", select_context(&select, query))
        )),
    );
    if count {
        body.insert("@odata.count".into(), json!(total));
    }
    if offset + top < total {
        let tok = shared
            .pages
            .seal(&scope, &json!({"o": offset + top, "x": expiry(shared)}));
        body.insert(
            "@odata.nextLink".into(),
            json!(next_link(shared, parts.uri.path(), query, &tok)),
        );
    }
    body.insert("value".into(), Value::Array(page));
    Ok(json_response(&body))
}

fn patch_user(shared: &Shared, caller: &Caller, key: &str, body: &[u8]) -> GResult {
    require(
        caller,
        &[
            "User.ReadWrite.All",
            "Directory.ReadWrite.All",
            "Directory.AccessAsUser.All",
        ],
    )?;
    let changes: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) if !m.is_empty() => m,
        _ => {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Empty Payload. JSON content expected.",
            ));
        }
    };
    let delegated = caller.user.is_some();
    let mut dir = shared.dir.write().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    let mut canon_changes = Vec::with_capacity(changes.len());
    for (name, value) in changes {
        if name.starts_with("@odata.") {
            continue;
        }
        let Some((canon, write)) = user_prop(&name) else {
            return Err(GraphError::bad_request(&format!(
                "Property '{name}' does not exist as a declared property or extension property."
            )));
        };
        match write {
            Write::ReadOnly => {
                return Err(GraphError::bad_request(&format!(
                    "Property '{canon}' is read-only and cannot be set."
                )));
            }
            Write::DelegatedOnly if !delegated => {
                return Err(GraphError::new(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    &format!(
                        "Updating '{canon}' is not supported with application permissions; it needs a delegated (signed-in user) token."
                    ),
                ));
            }
            Write::Password
                if !caller.has_any(&[
                    "User-PasswordProfile.ReadWrite.All",
                    "Directory.AccessAsUser.All",
                ]) =>
            {
                return Err(GraphError::denied());
            }
            _ => {}
        }
        check_type(canon, &value)?;
        canon_changes.push((canon, value));
    }
    let user = &dir.tenant.users[i];
    let mut v = match serde_json::to_value(user) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let old_upn = user.user_principal_name.to_lowercase();
    for (canon, value) in canon_changes {
        if canon == "passwordProfile" {
            continue; // accepted, never readable
        }
        if canon == "userPrincipalName" {
            let new = value.as_str().unwrap_or("").to_lowercase();
            if new != old_upn && dir.by_upn.contains_key(&new) {
                return Err(GraphError::bad_request(
                    "Another object with the same value for property userPrincipalName already exists.",
                ));
            }
        }
        v.insert(canon.to_string(), value);
    }
    let updated: User = serde_json::from_value(Value::Object(v))
        .map_err(|e| GraphError::bad_request(&format!("Invalid value: {e}")))?;
    let upn_changed = updated.user_principal_name.to_lowercase() != old_upn;
    dir.tenant.users[i] = updated;
    if upn_changed {
        dir.reindex();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn check_type(name: &str, v: &Value) -> Result<(), GraphError> {
    let ok = match name {
        "accountEnabled" | "showInAddressList" | "consentProvidedForMinor" => {
            v.is_boolean() || v.is_null()
        }
        "businessPhones" | "otherMails" | "identities" | "interests" | "pastProjects"
        | "responsibilities" | "schools" | "skills" => v.is_array(),
        "onPremisesExtensionAttributes" | "passwordProfile" | "employeeOrgData" => {
            v.is_object() || v.is_null()
        }
        "displayName" | "userPrincipalName" => v.is_string(),
        _ => v.is_string() || v.is_null(),
    };
    if ok {
        Ok(())
    } else {
        Err(GraphError::bad_request(&format!(
            "Invalid value specified for property '{name}' of resource 'User'."
        )))
    }
}

// ---------------------------------------------------------------- photo

const PHOTO_SIZES: &[u32] = &[48, 64, 96, 120, 240, 360, 432, 504, 648];

fn photo(shared: &Shared, caller: &Caller, key: &str, size: Option<&str>, bytes: bool) -> GResult {
    require(
        caller,
        &[
            "User.Read.All",
            "User.ReadWrite.All",
            "ProfilePhoto.Read.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
            "User.ReadBasic.All",
        ],
    )?;
    let dir = shared.dir.read().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    let user = &dir.tenant.users[i];
    let not_found = || {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "ImageNotFound",
            "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.",
        )
    };
    let p = user.photo.as_ref().ok_or_else(not_found)?;
    let (w, h) = match size {
        None => (p.width, p.height),
        Some(s) => {
            let (a, b) = s
                .to_ascii_lowercase()
                .split_once('x')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(not_found)?;
            let (a, b): (u32, u32) = (
                a.parse().map_err(|_| not_found())?,
                b.parse().map_err(|_| not_found())?,
            );
            if a != b || !PHOTO_SIZES.contains(&a) || a > p.width.max(p.height) {
                return Err(not_found());
            }
            (a, b)
        }
    };
    let data = STANDARD.decode(p.content_base64.as_bytes()).map_err(|_| {
        GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "Stored photo is not valid base64.",
        )
    })?;
    let etag = p.etag.as_deref().map(str::to_string).unwrap_or_else(|| {
        format!(
            "W/\"{:x}\"",
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data).as_ref()[..8]
                .iter()
                .fold(0u64, |a, b| (a << 8) | u64::from(*b))
        )
    });
    if bytes {
        let mut r = Response::new(Body::from(data));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    Ok(json_response(&json!({
        "@odata.context": context(shared, &format!("users('{}')/photo/$entity", user.id)),
        "@odata.mediaContentType": "image/jpeg",
        "@odata.mediaEtag": etag,
        "id": format!("{w}X{h}"),
        "width": w,
        "height": h,
    })))
}

// ---------------------------------------------------------------- memberOf

fn object_json(kind: Kind, o: &DirectoryObject) -> Map<String, Value> {
    let mut m = Map::new();
    let t = match kind {
        Kind::Group => "#microsoft.graph.group",
        Kind::Role => "#microsoft.graph.directoryRole",
        Kind::Unit => "#microsoft.graph.administrativeUnit",
    };
    m.insert("@odata.type".into(), json!(t));
    m.insert("id".into(), json!(o.id.to_string()));
    m.insert("deletedDateTime".into(), Value::Null);
    m.insert("description".into(), json!(o.description));
    m.insert("displayName".into(), json!(o.display_name));
    match kind {
        Kind::Group => {
            m.insert("groupTypes".into(), json!([]));
            m.insert("mail".into(), json!(o.mail));
            m.insert("mailEnabled".into(), json!(o.mail_enabled.unwrap_or(false)));
            m.insert(
                "securityEnabled".into(),
                json!(o.security_enabled.unwrap_or(true)),
            );
            m.insert("visibility".into(), Value::Null);
        }
        Kind::Role => {
            m.insert(
                "roleTemplateId".into(),
                json!(o.role_template_id.map(|u| u.to_string())),
            );
        }
        Kind::Unit => {
            m.insert("visibility".into(), Value::Null);
        }
    }
    m
}

const OBJECT_PROPS: &[&str] = &[
    "id",
    "deletedDateTime",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "securityEnabled",
    "visibility",
    "roleTemplateId",
];

enum ObjClause {
    DisplayNameEq(String),
    StartsWith(String),
    IdEq(String),
    Bool(&'static str, bool),
}

fn parse_object_filter(filter: &str) -> Result<Vec<ObjClause>, GraphError> {
    let toks = odata::tokenize(filter)
        .map_err(|e| GraphError::bad_request(&format!("Invalid filter clause: {e}")))?;
    let mut out = Vec::new();
    for clause in odata::split_and(&toks).map_err(|e| GraphError::unsupported(&e))? {
        out.push(match clause {
            [Tok::Word(f), op, Tok::Str(v)]
                if op.is_word("eq") && f.eq_ignore_ascii_case("displayName") =>
            {
                ObjClause::DisplayNameEq(v.to_lowercase())
            }
            [Tok::Word(f), op, Tok::Str(v)] if op.is_word("eq") && f.eq_ignore_ascii_case("id") => {
                ObjClause::IdEq(v.to_lowercase())
            }
            [Tok::Word(f), op, Tok::Word(b)]
                if op.is_word("eq")
                    && (f.eq_ignore_ascii_case("securityEnabled")
                        || f.eq_ignore_ascii_case("mailEnabled")) =>
            {
                let name = if f.eq_ignore_ascii_case("securityEnabled") {
                    "securityEnabled"
                } else {
                    "mailEnabled"
                };
                ObjClause::Bool(
                    name,
                    b.parse()
                        .map_err(|_| GraphError::bad_request("expected true or false"))?,
                )
            }
            [
                Tok::Word(func),
                Tok::LParen,
                Tok::Word(f),
                Tok::Comma,
                Tok::Str(v),
                Tok::RParen,
            ] if func.eq_ignore_ascii_case("startswith")
                && f.eq_ignore_ascii_case("displayName") =>
            {
                ObjClause::StartsWith(v.to_lowercase())
            }
            _ => {
                return Err(GraphError::unsupported(
                    "Unsupported or invalid query filter clause specified.",
                ));
            }
        });
    }
    Ok(out)
}

/// `"displayName:tier"` (quoted; several joined by OR / AND).
fn parse_search(search: &str) -> Result<(Vec<(String, String)>, bool), GraphError> {
    let bad = || {
        GraphError::bad_request(
            "Syntax error: the $search value must be quoted, e.g. $search=\"displayName:tier\".",
        )
    };
    let s = search.trim();
    if s.len() < 2 || !s.starts_with('"') || !s.ends_with('"') {
        return Err(bad());
    }
    let any = s.contains("\" OR \"");
    let mut terms = Vec::new();
    for part in s.split(" OR ").flat_map(|p| p.split(" AND ")) {
        let part = part.trim().trim_matches('"');
        let (prop, term) = part.split_once(':').ok_or_else(bad)?;
        if !["displayName", "description", "mail"]
            .iter()
            .any(|p| p.eq_ignore_ascii_case(prop))
        {
            return Err(GraphError::unsupported(&format!(
                "Search on property '{prop}' is not supported."
            )));
        }
        terms.push((prop.to_ascii_lowercase(), term.to_lowercase()));
    }
    Ok((terms, any))
}

fn member_of(
    shared: &Shared,
    caller: &Caller,
    parts: &Parts,
    key: &str,
    cast: Option<&str>,
    query: &Query,
) -> GResult {
    require(
        caller,
        &[
            "Directory.Read.All",
            "Directory.ReadWrite.All",
            "GroupMember.Read.All",
        ],
    )?;
    if let Some(opt) = query.unsupported_option(&[
        "$select",
        "$filter",
        "$top",
        "$skiptoken",
        "$count",
        "$search",
        "$orderby",
    ]) {
        return Err(GraphError::bad_request(&format!(
            "Query option '{opt}' is not allowed here."
        )));
    }
    let cast_kind = match cast {
        None => None,
        Some("microsoft.graph.group") => Some(Kind::Group),
        Some("microsoft.graph.directoryrole") => Some(Kind::Role),
        Some("microsoft.graph.administrativeunit") => Some(Kind::Unit),
        Some(other) => {
            return Err(GraphError::bad_request(&format!(
                "Resource not found for the segment '{other}'."
            )));
        }
    };
    let count = count_true(query)?;
    let advanced = ["$filter", "$search", "$orderby", "$count"]
        .iter()
        .find(|o| query.get(o).is_some())
        .copied()
        .or(cast.map(|_| "type cast"));
    if let Some(what) = advanced
        && (!consistency_eventual(parts) || !count)
    {
        return Err(GraphError::unsupported(&format!(
            "{what} on memberOf is an advanced query: it needs the header 'ConsistencyLevel: eventual' and '$count=true'."
        )));
    }
    let top = parse_top(query, 100, 999)?;
    let select: Option<Vec<String>> = match query.get("$select") {
        None => None,
        Some(s) => {
            let mut v = Vec::new();
            for name in odata::parse_select(s) {
                let canon = OBJECT_PROPS
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| {
                        GraphError::bad_request(&format!(
                            "Parsing OData Select and Expand failed: Could not find a property named '{name}' on type 'microsoft.graph.directoryObject'."
                        ))
                    })?;
                v.push(canon.to_string());
            }
            Some(v)
        }
    };
    let filters = match query.get("$filter") {
        Some(f) => parse_object_filter(f)?,
        None => Vec::new(),
    };
    let search = match query.get("$search") {
        Some(s) => Some(parse_search(s)?),
        None => None,
    };
    let desc = match query.get("$orderby").map(|o| o.trim().to_ascii_lowercase()) {
        None => None,
        Some(o) if o == "displayname" || o == "displayname asc" => Some(false),
        Some(o) if o == "displayname desc" => Some(true),
        Some(_) => {
            return Err(GraphError::unsupported(
                "Sorting is only supported on displayName.",
            ));
        }
    };
    let groups_only = !caller.has_any(&["Directory.Read.All", "Directory.ReadWrite.All"]);

    let dir = shared.dir.read().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    let user_id = dir.tenant.users[i].id;
    let t = &dir.tenant;
    let list = |k: Kind| match k {
        Kind::Group => &t.groups,
        Kind::Role => &t.directory_roles,
        Kind::Unit => &t.administrative_units,
    };
    let mut items: Vec<(Kind, &DirectoryObject)> = dir
        .member_of
        .get(&user_id)
        .map(|v| v.iter().map(|(k, idx)| (*k, &list(*k)[*idx])).collect())
        .unwrap_or_default();
    items.retain(|(k, o)| {
        if cast_kind.is_some_and(|c| c != *k) || (groups_only && *k != Kind::Group) {
            return false;
        }
        let name = o.display_name.to_lowercase();
        let filter_ok = filters.iter().all(|f| match f {
            ObjClause::DisplayNameEq(v) => name == *v,
            ObjClause::StartsWith(p) => name.starts_with(p.as_str()),
            ObjClause::IdEq(v) => o.id.to_string() == *v,
            ObjClause::Bool("securityEnabled", b) => {
                *k == Kind::Group && o.security_enabled.unwrap_or(true) == *b
            }
            ObjClause::Bool(_, b) => *k == Kind::Group && o.mail_enabled.unwrap_or(false) == *b,
        });
        let search_ok = search.as_ref().is_none_or(|(terms, any)| {
            let hit = |(prop, term): &(String, String)| {
                let field = match prop.as_str() {
                    "displayname" => Some(name.clone()),
                    "description" => o.description.as_ref().map(|d| d.to_lowercase()),
                    _ => o.mail.as_ref().map(|d| d.to_lowercase()),
                };
                field.is_some_and(|f| f.contains(term.as_str()))
            };
            if *any {
                terms.iter().any(hit)
            } else {
                terms.iter().all(hit)
            }
        });
        filter_ok && search_ok
    });
    if let Some(desc) = desc {
        items.sort_by_key(|a| a.1.display_name.to_lowercase());
        if desc {
            items.reverse();
        }
    }
    let scope = format!(
        "memberof|{user_id}|{:?}|{}|{}|{}|{}|{top}|{groups_only}",
        cast,
        query.get("$filter").unwrap_or(""),
        query.get("$search").unwrap_or(""),
        query.get("$orderby").unwrap_or(""),
        query.get("$select").unwrap_or(""),
    );
    let offset = page_offset(shared, &scope, query)?;
    let page: Vec<Value> = items
        .iter()
        .skip(offset)
        .take(top)
        .map(|(k, o)| {
            let full = object_json(*k, o);
            match &select {
                None => Value::Object(full),
                Some(sel) => {
                    let mut m = Map::new();
                    m.insert("@odata.type".into(), full["@odata.type"].clone());
                    for s in sel {
                        m.insert(s.clone(), full.get(s).cloned().unwrap_or(Value::Null));
                    }
                    Value::Object(m)
                }
            }
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context(shared, "directoryObjects")),
    );
    if count {
        body.insert("@odata.count".into(), json!(items.len()));
    }
    if offset + top < items.len() {
        let tok = shared
            .pages
            .seal(&scope, &json!({"o": offset + top, "x": expiry(shared)}));
        body.insert(
            "@odata.nextLink".into(),
            json!(next_link(shared, parts.uri.path(), query, &tok)),
        );
    }
    body.insert("value".into(), Value::Array(page));
    Ok(json_response(&body))
}

// ---------------------------------------------------------------- sign-ins

/// Graph's answer shape of one sign-in record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInView<'a> {
    id: String,
    created_date_time: String,
    user_display_name: &'a str,
    user_principal_name: &'a str,
    user_id: String,
    app_id: String,
    app_display_name: &'a str,
    ip_address: String,
    client_app_used: &'a str,
    correlation_id: String,
    conditional_access_status: &'static str,
    is_interactive: bool,
    risk_detail: &'static str,
    risk_level_aggregated: &'static str,
    risk_level_during_sign_in: &'static str,
    risk_state: &'static str,
    risk_event_types: [&'static str; 0],
    #[serde(rename = "riskEventTypes_v2")]
    risk_event_types_v2: [&'static str; 0],
    resource_display_name: &'static str,
    resource_id: &'static str,
    status: StatusView,
    device_detail: DeviceView<'a>,
    location: LocationView<'a>,
    applied_conditional_access_policies: Vec<PolicyView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    error_code: u32,
    failure_reason: &'static str,
    additional_details: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceView<'a> {
    device_id: &'static str,
    display_name: &'static str,
    operating_system: &'a str,
    browser: &'a str,
    is_compliant: bool,
    is_managed: bool,
    trust_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LocationView<'a> {
    city: &'a str,
    state: &'a str,
    country_or_region: &'a str,
    geo_coordinates: GeoView,
}

#[derive(Serialize)]
struct GeoView {
    altitude: Option<f64>,
    latitude: f64,
    longitude: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyView {
    id: &'static str,
    display_name: &'static str,
    enforced_grant_controls: [&'static str; 1],
    enforced_session_controls: [&'static str; 0],
    result: &'static str,
}

fn failure_reason(code: u32) -> (&'static str, Option<&'static str>) {
    match code {
        0 => ("Other.", None),
        50126 => (
            "Error validating credentials due to invalid username or password.",
            Some(
                "The user didn't enter the right credentials. It's expected to see some number of these errors in your logs due to users making mistakes.",
            ),
        ),
        50074 => (
            "Strong Authentication is required.",
            Some("The user is required to complete multi-factor authentication."),
        ),
        50053 => (
            "Account is locked because user tried to sign in too many times with an incorrect user ID or password.",
            None,
        ),
        50140 => (
            "This occurred due to 'Keep me signed in' interrupt when the user was signing in.",
            None,
        ),
        50055 => ("The password is expired.", None),
        50057 => ("User account is disabled.", None),
        _ => ("Other.", None),
    }
}

fn sign_in_view<'a>(s: &'a SignIn, user: Option<&'a User>) -> SignInView<'a> {
    let (reason, details) = failure_reason(s.error_code);
    let corr =
        Uuid::from_u128(s.id.as_u128().rotate_left(32) ^ 0x5a5a_0000_0000_4000_8000_0000_0000_5a5a);
    SignInView {
        id: s.id.to_string(),
        created_date_time: s.created_date_time.to_string(),
        user_display_name: user.map_or("", |u| &u.display_name),
        user_principal_name: user.map_or("", |u| &u.user_principal_name),
        user_id: s.user_id.to_string(),
        app_id: s.app_id.to_string(),
        app_display_name: &s.app_display_name,
        ip_address: s.ip_address.to_string(),
        client_app_used: &s.client_app_used,
        correlation_id: corr.to_string(),
        conditional_access_status: if s.error_code == 0 {
            "success"
        } else {
            "failure"
        },
        is_interactive: s.is_interactive,
        risk_detail: "none",
        risk_level_aggregated: "none",
        risk_level_during_sign_in: "none",
        risk_state: "none",
        risk_event_types: [],
        risk_event_types_v2: [],
        resource_display_name: "Microsoft Graph",
        resource_id: "00000003-0000-0000-c000-000000000000",
        status: StatusView {
            error_code: s.error_code,
            failure_reason: reason,
            additional_details: details,
        },
        device_detail: DeviceView {
            device_id: "",
            display_name: "",
            operating_system: s.operating_system.as_deref().unwrap_or("Windows10"),
            browser: s.browser.as_deref().unwrap_or("Edge 124.0.0"),
            is_compliant: false,
            is_managed: false,
            trust_type: "",
        },
        location: LocationView {
            city: s.city.as_deref().unwrap_or(""),
            state: "",
            country_or_region: s.country_or_region.as_deref().unwrap_or(""),
            geo_coordinates: GeoView {
                altitude: None,
                latitude: 0.0,
                longitude: 0.0,
            },
        },
        applied_conditional_access_policies: if s.error_code == 0 {
            Vec::new()
        } else {
            vec![PolicyView {
                id: "6b3b1f2e-7d1c-4a43-9c7e-0f4b2d8a1c55",
                display_name: "Require MFA outside trusted locations",
                enforced_grant_controls: ["Mfa"],
                enforced_session_controls: [],
                result: "notApplied",
            }]
        },
    }
}

/// One parsed `$filter` clause for sign-ins.
enum SignInClause {
    Created(&'static str, Timestamp),
    ErrorCode(bool, u32),
    Interactive(bool),
    /// `field eq 'v'` (prefix false) or `startswith(field,'v')` (prefix true), case-insensitive.
    Text {
        field: &'static str,
        value: String,
        prefix: bool,
    },
}

fn sign_in_text_field(f: &str) -> Option<&'static str> {
    Some(match f.to_ascii_lowercase().as_str() {
        "appdisplayname" => "appDisplayName",
        "userprincipalname" => "userPrincipalName",
        "userdisplayname" => "userDisplayName",
        "userid" => "userId",
        "appid" => "appId",
        "ipaddress" => "ipAddress",
        "clientappused" => "clientAppUsed",
        "location/city" => "location/city",
        "location/countryorregion" => "location/countryOrRegion",
        _ => return None,
    })
}

fn sign_in_field<'a>(
    s: &'a SignIn,
    user: Option<&'a User>,
    field: &str,
) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    match field {
        "appDisplayName" => Cow::Borrowed(&s.app_display_name),
        "userPrincipalName" => Cow::Borrowed(user.map_or("", |u| &u.user_principal_name)),
        "userDisplayName" => Cow::Borrowed(user.map_or("", |u| &u.display_name)),
        "userId" => Cow::Owned(s.user_id.to_string()),
        "appId" => Cow::Owned(s.app_id.to_string()),
        "clientAppUsed" => Cow::Borrowed(&s.client_app_used),
        "location/city" => Cow::Borrowed(s.city.as_deref().unwrap_or("")),
        "location/countryOrRegion" => Cow::Borrowed(s.country_or_region.as_deref().unwrap_or("")),
        _ => Cow::Owned(s.ip_address.to_string()),
    }
}

fn parse_sign_in_filter(filter: &str) -> Result<Vec<SignInClause>, GraphError> {
    let bad = |m: &str| GraphError::bad_request(&format!("Invalid filter clause: {m}"));
    let toks = odata::tokenize(filter).map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for clause in odata::split_and(&toks).map_err(|e| bad(&e))? {
        let c = match clause {
            [Tok::Word(f), Tok::Word(op), value] if f.eq_ignore_ascii_case("createdDateTime") => {
                let op = match op.to_ascii_lowercase().as_str() {
                    "ge" => "ge",
                    "le" => "le",
                    "gt" => "gt",
                    "lt" => "lt",
                    "eq" => "eq",
                    other => {
                        return Err(bad(&format!(
                            "operator '{other}' is not supported on createdDateTime"
                        )));
                    }
                };
                let Tok::Word(v) = value else {
                    return Err(bad(
                        "createdDateTime takes an unquoted ISO 8601 UTC value, e.g. 2025-06-02T08:00:00Z",
                    ));
                };
                let t: Timestamp = v.parse().map_err(|_| {
                    bad(&format!(
                        "'{v}' is not an ISO 8601 date-time with an offset"
                    ))
                })?;
                SignInClause::Created(op, t)
            }
            [Tok::Word(f), Tok::Word(op), Tok::Word(v)]
                if f.eq_ignore_ascii_case("status/errorCode") =>
            {
                let eq = match op.to_ascii_lowercase().as_str() {
                    "eq" => true,
                    "ne" => false,
                    other => {
                        return Err(bad(&format!(
                            "operator '{other}' is not supported on status/errorCode"
                        )));
                    }
                };
                SignInClause::ErrorCode(
                    eq,
                    v.parse()
                        .map_err(|_| bad("status/errorCode takes a number"))?,
                )
            }
            [Tok::Word(f), op, Tok::Str(v)] if op.is_word("eq") => {
                let field = sign_in_text_field(f)
                    .ok_or_else(|| bad(&format!("filtering on '{f}' is not supported")))?;
                SignInClause::Text {
                    field,
                    value: v.to_lowercase(),
                    prefix: false,
                }
            }
            [
                Tok::Word(func),
                Tok::LParen,
                Tok::Word(f),
                Tok::Comma,
                Tok::Str(v),
                Tok::RParen,
            ] if func.eq_ignore_ascii_case("startswith") => {
                let field = sign_in_text_field(f)
                    .ok_or_else(|| bad(&format!("startswith on '{f}' is not supported")))?;
                SignInClause::Text {
                    field,
                    value: v.to_lowercase(),
                    prefix: true,
                }
            }
            [Tok::Word(f), op, Tok::Word(b)]
                if op.is_word("eq") && f.eq_ignore_ascii_case("isInteractive") =>
            {
                SignInClause::Interactive(
                    b.parse()
                        .map_err(|_| bad("isInteractive takes true or false"))?,
                )
            }
            _ => return Err(bad("unsupported expression")),
        };
        out.push(c);
    }
    Ok(out)
}

fn sign_in_perms(shared: &Shared, caller: &Caller) -> Result<(), GraphError> {
    require(caller, &["AuditLog.Read.All"])?;
    if caller.user.is_none() {
        require(caller, &["Directory.Read.All", "Directory.ReadWrite.All"])?;
    }
    if !shared.dir.read().expect("dir lock").tenant.premium {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        ));
    }
    Ok(())
}

/// Properties a signIn `$select` may name.
const SIGN_IN_PROPS: &[&str] = &[
    "id",
    "createdDateTime",
    "userDisplayName",
    "userPrincipalName",
    "userId",
    "appId",
    "appDisplayName",
    "ipAddress",
    "clientAppUsed",
    "correlationId",
    "conditionalAccessStatus",
    "isInteractive",
    "riskDetail",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "riskEventTypes",
    "riskEventTypes_v2",
    "resourceDisplayName",
    "resourceId",
    "status",
    "deviceDetail",
    "location",
    "appliedConditionalAccessPolicies",
];

fn sign_in_select(query: &Query) -> Result<Option<Vec<&'static str>>, GraphError> {
    let Some(sel) = query.get("$select") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for name in odata::parse_select(sel) {
        let canon = SIGN_IN_PROPS
            .iter()
            .find(|p| p.eq_ignore_ascii_case(&name))
            .ok_or_else(|| {
                GraphError::bad_request(&format!(
                    "Parsing OData Select and Expand failed: Could not find a property named '{name}' on type 'microsoft.graph.signIn'."
                ))
            })?;
        out.push(*canon);
    }
    Ok(Some(out))
}

/// Most records one sign-ins page holds (also the default page size).
pub const MAX_SIGN_IN_PAGE: usize = 1000;

fn ts_pair(t: Timestamp) -> Value {
    json!([t.as_second(), t.subsec_nanosecond()])
}

fn ts_from(v: &Value) -> Option<Timestamp> {
    Timestamp::new(v.get(0)?.as_i64()?, v.get(1)?.as_i64()? as i32).ok()
}

fn sign_ins(shared: &Shared, ctx: &Ctx, caller: &Caller, path: &str, query: &Query) -> GResult {
    sign_in_perms(shared, caller)?;
    if let Some(opt) =
        query.unsupported_option(&["$filter", "$top", "$skiptoken", "$orderby", "$select"])
    {
        return Err(GraphError::bad_request(&format!(
            "Query option '{opt}' is not allowed here."
        )));
    }
    let select = sign_in_select(query)?;
    if let Some(o) = query.get("$orderby") {
        let o = o.trim().to_ascii_lowercase();
        if o != "createddatetime desc" && o != "createddatetime" {
            return Err(GraphError::unsupported(
                "Only '$orderby=createdDateTime desc' is supported.",
            ));
        }
        if o == "createddatetime" {
            return Err(GraphError::unsupported(
                "Sign-ins are served newest first only ('createdDateTime desc').",
            ));
        }
    }
    let top = parse_top(query, MAX_SIGN_IN_PAGE, MAX_SIGN_IN_PAGE)?;
    let clauses = match query.get("$filter") {
        Some(f) => parse_sign_in_filter(f)?,
        None => Vec::new(),
    };
    let scope = format!(
        "signins|{}|{}|{top}",
        query.get("$filter").unwrap_or(""),
        query.get("$select").unwrap_or("")
    );
    let (as_of, cursor) = match query.get("$skiptoken") {
        None => (ctx.now, None),
        Some(tok) => {
            let v = shared.pages.open(&scope, tok).map_err(|e| match e {
                PageTokenError::Expired => GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "Directory_ExpiredPageToken",
                    "The specified page token value has expired and can no longer be included in your request.",
                ),
                PageTokenError::Invalid => GraphError::bad_request("Invalid paging token."),
            })?;
            let as_of =
                ts_from(&v["a"]).ok_or_else(|| GraphError::bad_request("Invalid paging token."))?;
            let c =
                ts_from(&v["c"]).ok_or_else(|| GraphError::bad_request("Invalid paging token."))?;
            let id = v["i"]
                .as_str()
                .and_then(|s| Uuid::try_parse(s).ok())
                .ok_or_else(|| GraphError::bad_request("Invalid paging token."))?;
            (as_of, Some((c, id)))
        }
    };
    let dir = shared.dir.read().expect("dir lock");
    let all = &dir.sign_ins;
    let mut lo = 0usize;
    let mut hi = all.len();
    for c in &clauses {
        if let SignInClause::Created(op, t) = c {
            let t = *t;
            match *op {
                "ge" => lo = lo.max(all.partition_point(|s| s.created_date_time < t)),
                "gt" => lo = lo.max(all.partition_point(|s| s.created_date_time <= t)),
                "le" => hi = hi.min(all.partition_point(|s| s.created_date_time <= t)),
                "lt" => hi = hi.min(all.partition_point(|s| s.created_date_time < t)),
                _ => {
                    lo = lo.max(all.partition_point(|s| s.created_date_time < t));
                    hi = hi.min(all.partition_point(|s| s.created_date_time <= t));
                }
            }
        }
    }
    if let Some(cur) = cursor {
        hi = hi.min(all.partition_point(|s| (s.created_date_time, s.id) < cur));
    }
    let users = &dir.tenant.users;
    let user_of = |s: &SignIn| dir.by_id.get(&s.user_id).map(|i| &users[*i]);
    let matches = |s: &SignIn| {
        s.visible_at() <= as_of
            && clauses.iter().all(|c| match c {
                SignInClause::Created(..) => true,
                SignInClause::ErrorCode(eq, code) => (s.error_code == *code) == *eq,
                SignInClause::Interactive(b) => s.is_interactive == *b,
                SignInClause::Text {
                    field,
                    value,
                    prefix,
                } => {
                    let actual = sign_in_field(s, user_of(s), field);
                    if *prefix {
                        actual
                            .get(..value.len())
                            .is_some_and(|p| p.eq_ignore_ascii_case(value))
                    } else {
                        actual.eq_ignore_ascii_case(value)
                    }
                }
            })
    };
    let mut page: Vec<&SignIn> = Vec::with_capacity(top.min(hi.saturating_sub(lo)));
    let mut more = false;
    let mut i = hi;
    while i > lo {
        i -= 1;
        let s = &all[i];
        if !matches(s) {
            continue;
        }
        if page.len() == top {
            more = true;
            break;
        }
        page.push(s);
    }
    let mut out = Vec::with_capacity(page.len() * 800 + 256);
    out.extend_from_slice(b"{\"@odata.context\":");
    out.extend_from_slice(
        serde_json::to_string(&context(shared, "auditLogs/signIns"))
            .unwrap_or_default()
            .as_bytes(),
    );
    if more {
        let last = page.last().expect("a full page");
        let tok = shared.pages.seal(
            &scope,
            &json!({"a": ts_pair(as_of), "c": ts_pair(last.created_date_time), "i": last.id.to_string(), "x": expiry(shared)}),
        );
        let link = next_link(shared, path, query, &tok);
        out.extend_from_slice(b",\"@odata.nextLink\":");
        out.extend_from_slice(serde_json::to_string(&link).unwrap_or_default().as_bytes());
    }
    out.extend_from_slice(b",\"value\":[");
    for (n, s) in page.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let view = sign_in_view(s, user_of(s));
        match &select {
            None => {
                let _ = serde_json::to_writer(&mut out, &view);
            }
            Some(fields) => {
                let full = serde_json::to_value(&view).unwrap_or_default();
                let picked: Map<String, Value> = fields
                    .iter()
                    .map(|f| (f.to_string(), full.get(*f).cloned().unwrap_or(Value::Null)))
                    .collect();
                let _ = serde_json::to_writer(&mut out, &picked);
            }
        }
    }
    out.extend_from_slice(b"]}");
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"));
    Ok(r)
}

fn sign_in_by_id(shared: &Shared, ctx: &Ctx, caller: &Caller, key: &str) -> GResult {
    sign_in_perms(shared, caller)?;
    let dir = shared.dir.read().expect("dir lock");
    let id = Uuid::try_parse(key).map_err(|_| GraphError::not_found(key))?;
    let s = dir
        .sign_ins
        .iter()
        .find(|s| s.id == id && s.visible_at() <= ctx.now)
        .ok_or_else(|| GraphError::not_found(key))?;
    let user = dir.by_id.get(&s.user_id).map(|i| &dir.tenant.users[*i]);
    let mut v = serde_json::to_value(sign_in_view(s, user)).unwrap_or_default();
    v["@odata.context"] = json!(context(shared, "auditLogs/signIns/$entity"));
    Ok(json_response(&v))
}
