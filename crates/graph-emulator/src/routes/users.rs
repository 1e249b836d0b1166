//! Users: `GET /users` (`$filter`, `$select`, `$top`, `$count`, paging),
//! `GET /users/{id | upn}`, `GET /me` (delegated tokens only), and `PATCH /users/{id}`
//! with Graph's per-property write rules.

use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::common::{GResult, allow_options, context, json_response, require, resolve_user};
use super::paging::{ListPage, consistency_eventual, count_true, page_offset, parse_top};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::odata::{self, Query, Tok};
use crate::state::Shared;
use crate::tenant::User;

/// What lets a caller read users; the first four also read every property.
/// `User.ReadBasic.All` counts only in delegated tokens: for applications the get-user
/// and list-users pages name `User.Read.All` the least privileged permission, and
/// app-only reads with `User.ReadBasic.All` alone are refused 403
/// (https://learn.microsoft.com/graph/api/user-get#permissions,
/// https://learn.microsoft.com/graph/api/user-list#permissions).
const READ_USERS: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "User.ReadBasic.All",
];

/// [`READ_USERS`] as the caller may use it: without `User.ReadBasic.All` app-only.
fn require_read_users(caller: &Caller) -> Result<(), GraphError> {
    let usable = if caller.user.is_some() {
        READ_USERS
    } else {
        &READ_USERS[..4]
    };
    require(caller, usable)
}

/// How a user property may be written.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    Yes,
    ReadOnly,
    /// Only with a delegated token.
    DelegatedOnly,
    /// App-only: a directory role on the app's service principal ([`role_refusal`]);
    /// delegated: `User-PasswordProfile.ReadWrite.All` or `Directory.AccessAsUser.All`.
    Password,
}

/// Properties Entra calls sensitive: changing them for a user who holds an admin role
/// needs a higher privileged role than changing them for other users
/// (https://learn.microsoft.com/graph/api/user-update#permissions, "Who can perform
/// sensitive actions" in
/// https://learn.microsoft.com/entra/identity/role-based-access-control/privileged-roles-permissions).
const SENSITIVE: &[&str] = &[
    "accountEnabled",
    "businessPhones",
    "mobilePhone",
    "otherMails",
    "passwordProfile",
    "userPrincipalName",
];

/// Roles that let an app change any user's sensitive properties, admins included.
const PRIVILEGED_ROLES: &[&str] = &[
    "Privileged Authentication Administrator",
    "Global Administrator",
];

/// Roles that let an app set the password of a user who holds no admin role: "at least
/// User Administrator" (https://learn.microsoft.com/graph/api/user-update#permissions).
const PASSWORD_ROLES: &[&str] = &[
    "User Administrator",
    "Privileged Authentication Administrator",
    "Global Administrator",
];

/// Graph's 403 when an app-only PATCH of `changed` on `target` needs a directory role the
/// app's service principal lacks. The emulator counts any directory role of the target
/// as an admin role; Entra's table decides per pair of roles (a User Administrator may
/// reset a Helpdesk Administrator's password), a refinement not modelled here.
fn role_refusal(
    dir: &crate::state::Directory,
    caller: &Caller,
    target: &User,
    changed: &[&str],
) -> Result<(), GraphError> {
    let app_roles: Vec<&str> = Uuid::try_parse(&caller.app_id)
        .ok()
        .and_then(|id| dir.app(id))
        .map(|a| a.directory_roles.iter().map(|r| r.as_ref()).collect())
        .unwrap_or_default();
    let holds = |roles: &[&str]| {
        app_roles
            .iter()
            .any(|r| roles.iter().any(|q| q.eq_ignore_ascii_case(r)))
    };
    let target_is_admin = dir
        .member_of
        .get(&target.id)
        .is_some_and(|m| m.iter().any(|(k, _)| *k == crate::state::Kind::Role));
    let sensitive = changed.iter().any(|c| SENSITIVE.contains(c));
    let password = changed.contains(&"passwordProfile");
    let allowed = if target_is_admin && sensitive {
        holds(PRIVILEGED_ROLES)
    } else if password {
        holds(PASSWORD_ROLES)
    } else {
        true
    };
    if allowed {
        Ok(())
    } else {
        Err(GraphError::denied())
    }
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
    // In v1.0-Prod.csdl (msgraph-metadata); not among the update-user page's writable properties.
    ("deviceEnrollmentLimit", Write::ReadOnly),
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
    ("identityParentId", Write::ReadOnly),
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
    ("signInActivity", Write::ReadOnly),
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

/// `GET /users/{id | upn}`: only `$select`; `User.ReadBasic.All` sees the basic properties.
pub(crate) fn get_user(shared: &Shared, caller: &Caller, key: &str, query: &Query) -> GResult {
    require_read_users(caller)?;
    let select = single_user_select(query)?;
    let dir = shared.dir.read().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    let basic = !caller.has_any(&READ_USERS[..4]);
    let user = &dir.tenant.users[i];
    if select.contains(&"signInActivity") {
        // Its own permission and licence rules (see `identity`).
        let activity = super::identity::sign_in_activity(&dir, caller, user, shared.clock.now())?;
        let mut user = user.clone();
        user.extra.insert("signInActivity".into(), activity);
        return Ok(user_entity(shared, &user, &select, query, basic));
    }
    Ok(user_entity(shared, user, &select, query, basic))
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
pub(crate) fn me(shared: &Shared, caller: &Caller, query: &Query) -> GResult {
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
    let user = &dir.tenant.users[i];
    Ok(user_entity(shared, user, &select, query, basic))
}

/// The query of one user (`/users/{id}`, `/me`): only `$select` is allowed.
fn single_user_select(query: &Query) -> Result<Vec<&'static str>, GraphError> {
    allow_options(query, &["$select"])?;
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
const MAX_IN_VALUES: usize = 15;

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
            _ => match odata::startswith_call(clause) {
                Some((f, v)) if f.eq_ignore_ascii_case("displayName") => {
                    UserClause::StartsWith(v.to_lowercase())
                }
                _ => {
                    return Err(GraphError::unsupported(
                        "Unsupported or invalid query filter clause specified.",
                    ));
                }
            },
        };
        out.push(c);
    }
    Ok(out)
}

/// `GET /users`: `$filter` (`in`, `eq`, `startswith`), `$select`, `$top` up to 999,
/// `$count` (with `ConsistencyLevel: eventual`), `$skiptoken` paging.
pub(crate) fn list_users(
    shared: &Shared,
    caller: &Caller,
    parts: &Parts,
    query: &Query,
) -> GResult {
    require_read_users(caller)?;
    allow_options(
        query,
        &["$select", "$filter", "$top", "$skiptoken", "$count"],
    )?;
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
    let page = ListPage {
        context: context(shared, &format!("users{}", select_context(&select, query))),
        count: count.then_some(total),
        next: (offset + top < total).then_some(offset + top),
        value: page,
    };
    Ok(page.answer(shared, parts, query, &scope))
}

/// `PATCH /users/{id | upn}`: 204, or Graph's 400/403 for a property that may not be written.
pub(crate) fn patch_user(shared: &Shared, caller: &Caller, key: &str, body: &[u8]) -> GResult {
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
            // Delegated only: User-PasswordProfile.ReadWrite.All is not an application
            // permission (https://learn.microsoft.com/graph/permissions-reference).
            Write::Password
                if delegated
                    && !caller.has_any(&[
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
    if !delegated {
        let changed: Vec<&str> = canon_changes.iter().map(|(c, _)| *c).collect();
        role_refusal(&dir, caller, user, &changed)?;
    }
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
