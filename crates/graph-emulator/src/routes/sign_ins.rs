//! Sign-ins: `GET /auditLogs/signIns` (newest first, `$filter`, `$select`, `$top` up
//! to 1000) and `GET /auditLogs/signIns/{id}`. Needs `AuditLog.Read.All` (apps also a
//! directory read permission) and a premium tenant; a record is served only once it
//! is visible (`visible_at`, on the virtual clock).
//!
//! Event types: `v1.0` lists interactive user sign-ins only; `beta` lists the others
//! when asked with `$filter=signInEventTypes/any(t: t eq 'nonInteractiveUser')` (and
//! `servicePrincipal`, `managedIdentity`), and interactive ones without that filter.
//! Sources: the v1.0 signIn resource ("interactive sign-ins ... and successful federated
//! sign-ins", https://learn.microsoft.com/graph/api/resources/signin?view=graph-rest-1.0),
//! the beta List signIns examples filtering on `signInEventTypes/any(...)`
//! (https://learn.microsoft.com/graph/api/signin-list?view=graph-rest-beta), and users
//! getting 400 `BadRequest` "Invalid filter clause" for that filter on v1.0
//! (https://github.com/MicrosoftDocs/SupportArticles-docs/issues/668,
//! https://github.com/microsoftgraph/msgraph-sdk-powershell/issues/956).
//!
//! Retention, on the virtual clock: a tenant keeps sign-ins 30 days with Entra ID P1/P2
//! and 7 days without (https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention);
//! older records are not served. A `createdDateTime` bound more than 90 days back is
//! refused with 400 `BadRequest` "Invalid filter clause" (a "min date validation" of 90
//! days, as Microsoft's engineer explains in
//! https://github.com/microsoftgraph/microsoft-graph-docs/issues/5676).
//!
//! Paging: the first page fixes an "as of" visibility instant; every
//! `$skiptoken` carries it together with the (createdDateTime, id) of the last
//! record served. Later pages show records strictly older than that cursor and
//! visible at "as of", so one paging sequence is a consistent snapshot: records
//! that turn visible while a client pages are never half-served; the next
//! incremental pull (re-reading its overlap window) sees them.

use std::borrow::Cow;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::common::{
    GRAPH_JSON, GResult, allow_options, context, json_response, require, select_props,
};
use super::paging::{expiry, next_link, open_page_token, parse_top};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::odata::{self, Query, Tok};
use crate::request::Ctx;
use crate::state::Shared;
use crate::tenant::{SignIn, User};

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
    /// Beta only.
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_in_event_types: Option<Vec<&'a str>>,
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

fn sign_in_view<'a>(s: &'a SignIn, user: Option<&'a User>, beta: bool) -> SignInView<'a> {
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
        sign_in_event_types: beta.then(|| s.event_types()),
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
    /// `signInEventTypes/any(t: t eq 'a' or t eq 'b')` (beta only).
    EventTypes(Vec<String>),
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

fn sign_in_field<'a>(s: &'a SignIn, user: Option<&'a User>, field: &str) -> Cow<'a, str> {
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

/// Graph's answer to a filter it refuses outright (the event-type lambda on v1.0, a
/// date beyond the 90-day limit): no reason given.
fn invalid_filter_clause() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "Invalid filter clause",
    )
}

/// The values of `x: x eq 'a' or x eq 'b'`, the inside of `signInEventTypes/any(...)`.
fn event_type_values(inner: &[Tok]) -> Option<Vec<String>> {
    let (var, rest) = match inner {
        [Tok::Word(w), rest @ ..] if w.ends_with(':') && w.len() > 1 => {
            (w.trim_end_matches(':').to_string(), rest.to_vec())
        }
        [Tok::Word(w), rest @ ..] => {
            let (var, first) = w.split_once(':')?;
            let mut r = vec![Tok::Word(first.to_string())];
            r.extend_from_slice(rest);
            (var.to_string(), r)
        }
        _ => return None,
    };
    let mut values = Vec::new();
    for part in rest.split(|t| t.is_word("or")) {
        match part {
            [Tok::Word(v), op, Tok::Str(value)] if *v == var && op.is_word("eq") => {
                values.push(value.clone())
            }
            _ => return None,
        }
    }
    (!values.is_empty()).then_some(values)
}

fn parse_sign_in_filter(filter: &str, beta: bool) -> Result<Vec<SignInClause>, GraphError> {
    let bad = |m: &str| GraphError::bad_request(&format!("Invalid filter clause: {m}"));
    let toks = odata::tokenize(filter).map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for clause in odata::split_and(&toks).map_err(|e| bad(&e))? {
        let c = match clause {
            [Tok::Word(f), Tok::LParen, inner @ .., Tok::RParen]
                if f.eq_ignore_ascii_case("signInEventTypes/any") =>
            {
                if !beta {
                    return Err(invalid_filter_clause());
                }
                SignInClause::EventTypes(event_type_values(inner).ok_or_else(|| {
                    bad("signInEventTypes/any takes t: t eq 'nonInteractiveUser' (or ... or ...)")
                })?)
            }
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
            [Tok::Word(f), op, Tok::Word(b)]
                if op.is_word("eq") && f.eq_ignore_ascii_case("isInteractive") =>
            {
                SignInClause::Interactive(
                    b.parse()
                        .map_err(|_| bad("isInteractive takes true or false"))?,
                )
            }
            _ => match odata::startswith_call(clause) {
                Some((f, v)) => {
                    let field = sign_in_text_field(f)
                        .ok_or_else(|| bad(&format!("startswith on '{f}' is not supported")))?;
                    SignInClause::Text {
                        field,
                        value: v.to_lowercase(),
                        prefix: true,
                    }
                }
                None => return Err(bad("unsupported expression")),
            },
        };
        out.push(c);
    }
    Ok(out)
}

/// How long the tenant keeps sign-ins (see the module doc).
fn retention(shared: &Shared) -> jiff::SignedDuration {
    let premium = shared.dir.read().expect("dir lock").tenant.premium;
    jiff::SignedDuration::from_hours(24 * if premium { 30 } else { 7 })
}

/// The oldest `createdDateTime` a filter may name (see the module doc).
const FILTER_LIMIT: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 90);

fn sign_in_perms(shared: &Shared, caller: &Caller) -> Result<(), GraphError> {
    require(caller, &["AuditLog.Read.All"])?;
    let not_premium = || {
        GraphError::new(
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
    };
    // An app with AuditLog.Read.All but without Directory.Read.All gets the licence
    // error, not Authorization_RequestDenied, even in a licensed tenant: a known issue
    // Microsoft documents for the sign-ins API (https://learn.microsoft.com/graph/api/signin-list,
    // "Known issues"; https://learn.microsoft.com/graph/known-issues). Real tenants show
    // it intermittently; the emulator always does, so tests see it.
    if caller.user.is_none() && !caller.has_any(&["Directory.Read.All", "Directory.ReadWrite.All"])
    {
        return Err(not_premium());
    }
    if !shared.dir.read().expect("dir lock").tenant.premium {
        return Err(not_premium());
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
    "signInEventTypes",
];

fn sign_in_select(query: &Query) -> Result<Option<Vec<&'static str>>, GraphError> {
    query
        .get("$select")
        .map(|s| select_props(s, SIGN_IN_PROPS, "microsoft.graph.signIn"))
        .transpose()
}

/// Most records one sign-ins page holds (also the default page size).
const MAX_SIGN_IN_PAGE: usize = 1000;

fn ts_pair(t: Timestamp) -> Value {
    json!([t.as_second(), t.subsec_nanosecond()])
}

fn ts_from(v: &Value) -> Option<Timestamp> {
    Timestamp::new(v.get(0)?.as_i64()?, v.get(1)?.as_i64()? as i32).ok()
}

/// `GET /auditLogs/signIns`: newest first, one consistent snapshot per paging sequence.
pub(crate) fn sign_ins(
    shared: &Shared,
    ctx: &Ctx,
    caller: &Caller,
    path: &str,
    query: &Query,
    beta: bool,
) -> GResult {
    sign_in_perms(shared, caller)?;
    allow_options(
        query,
        &["$filter", "$top", "$skiptoken", "$orderby", "$select"],
    )?;
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
        Some(f) => parse_sign_in_filter(f, beta)?,
        None => Vec::new(),
    };
    let retained_from = if shared.settings.sign_in_retention {
        let oldest_bound = ctx.now.checked_sub(FILTER_LIMIT).unwrap_or(Timestamp::MIN);
        if clauses
            .iter()
            .any(|c| matches!(c, SignInClause::Created(_, t) if *t < oldest_bound))
        {
            return Err(invalid_filter_clause());
        }
        ctx.now
            .checked_sub(retention(shared))
            .unwrap_or(Timestamp::MIN)
    } else {
        Timestamp::MIN
    };
    // Without the lambda, both versions list interactive sign-ins only.
    let event_types: Vec<&str> = clauses
        .iter()
        .find_map(|c| match c {
            SignInClause::EventTypes(v) => Some(v.iter().map(String::as_str).collect()),
            _ => None,
        })
        .unwrap_or_else(|| vec!["interactiveUser"]);
    let scope = format!(
        "signins|{}|{}|{top}",
        query.get("$filter").unwrap_or(""),
        query.get("$select").unwrap_or("")
    );
    let (as_of, cursor) = match query.get("$skiptoken") {
        None => (ctx.now, None),
        Some(tok) => {
            let v = open_page_token(shared, &scope, tok)?;
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
    let mut lo = all.partition_point(|s| s.created_date_time < retained_from);
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
            && s.event_types().iter().any(|t| event_types.contains(t))
            && clauses.iter().all(|c| match c {
                SignInClause::Created(..) | SignInClause::EventTypes(_) => true,
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
        let view = sign_in_view(s, user_of(s), beta);
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
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(GRAPH_JSON));
    Ok(r)
}

/// `GET /auditLogs/signIns/{id}`: a record once it is visible.
pub(crate) fn sign_in_by_id(shared: &Shared, ctx: &Ctx, caller: &Caller, key: &str) -> GResult {
    sign_in_perms(shared, caller)?;
    let dir = shared.dir.read().expect("dir lock");
    let id = Uuid::try_parse(key).map_err(|_| GraphError::not_found(key))?;
    let s = dir
        .sign_ins
        .iter()
        .find(|s| s.id == id && s.visible_at() <= ctx.now)
        .ok_or_else(|| GraphError::not_found(key))?;
    let user = dir.by_id.get(&s.user_id).map(|i| &dir.tenant.users[*i]);
    let mut v = serde_json::to_value(sign_in_view(s, user, false)).unwrap_or_default();
    v["@odata.context"] = json!(context(shared, "auditLogs/signIns/$entity"));
    Ok(json_response(&v))
}
