//! Identity Protection and sign-in state, the parts a SOC playbook reads and changes:
//!
//! - `GET /identityProtection/riskyUsers[/{id}]` (IdentityRiskyUser.Read.All; Entra ID P2,
//!   <https://learn.microsoft.com/en-us/graph/api/riskyuser-get>). A user never at risk
//!   has no record: 404. Without P2 Graph answers a bare 403 Forbidden that looks like a
//!   missing permission (reported in microsoft/zerotrustassessment#1022); so do we.
//! - `POST /identityProtection/riskyUsers/confirmCompromised` and `/dismiss` with
//!   `{"userIds": [...]}` (IdentityRiskyUser.ReadWrite.All, P2; 204): risk level high,
//!   state `confirmedCompromised` / level none, state `dismissed`
//!   (<https://learn.microsoft.com/en-us/graph/api/riskyuser-confirmcompromised>,
//!   <https://learn.microsoft.com/en-us/graph/api/riskyuser-dismiss>). The number of ids
//!   one call takes is not published; we take up to [`MAX_RISK_IDS`].
//! - `POST /users/{id}/revokeSignInSessions` (User.RevokeSessions.All, the only application
//!   permission listed on <https://learn.microsoft.com/en-us/graph/api/user-revokesigninsessions>):
//!   moves `signInSessionsValidFromDateTime` to now; v1.0 answers 200 `{"value": true}`.
//! - `signInActivity` of a user (for `$select=signInActivity`): AuditLog.Read.All and a
//!   P1/P2 tenant (<https://learn.microsoft.com/en-us/graph/api/resources/signinactivity>;
//!   the user-list page: "requires ... AuditLog.Read.All ... Microsoft Entra ID P1 or P2");
//!   without the licence 403 `Authentication_RequestFromNonPremiumTenantOrB2CTenant`, as
//!   for sign-in logs. Derived from the tenant's visible sign-ins of that user.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use super::common::{GResult, context, json_response, require, resolve_user};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::state::{Directory, Shared};
use crate::tenant::{RiskyUser, Text, User};

/// Most user ids one confirmCompromised / dismiss takes (Graph publishes no number).
pub(crate) const MAX_RISK_IDS: usize = 60;

const READ_RISK: &[&str] = &[
    "IdentityRiskyUser.Read.All",
    "IdentityRiskyUser.ReadWrite.All",
];

/// Without P2, Graph's bare 403 (see the module doc).
fn require_p2(dir: &Directory) -> Result<(), GraphError> {
    if dir.tenant.premium && dir.tenant.premium_p2 {
        Ok(())
    } else {
        Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Forbidden",
        ))
    }
}

fn risky_json(shared: &Shared, dir: &Directory, r: &RiskyUser, single: bool) -> Value {
    let user = dir.user(&r.id.to_string());
    let mut v = json!({
        "id": r.id.to_string(),
        "isDeleted": user.is_none(),
        "isProcessing": false,
        "riskLastUpdatedDateTime": r.risk_last_updated_date_time.map(|t| t.to_string()),
        "riskLevel": r.risk_level,
        "riskState": r.risk_state,
        "riskDetail": r.risk_detail,
        "userDisplayName": user.map(|u| u.display_name.to_string()),
        "userPrincipalName": user.map(|u| u.user_principal_name.to_string()),
    });
    if single {
        v["@odata.context"] = json!(context(shared, "identityProtection/riskyUsers/$entity"));
    }
    v
}

/// `GET /identityProtection/riskyUsers/{id}`.
pub(crate) fn risky_user(shared: &Shared, caller: &Caller, id: &str) -> GResult {
    require(caller, READ_RISK)?;
    let dir = shared.dir.read().expect("dir lock");
    require_p2(&dir)?;
    let r = Uuid::try_parse(id)
        .ok()
        .and_then(|id| dir.tenant.risky_users.iter().find(|r| r.id == id))
        .ok_or_else(|| GraphError::not_found(id))?;
    Ok(json_response(&risky_json(shared, &dir, r, true)))
}

/// `GET /identityProtection/riskyUsers` (one page; risky users are few).
pub(crate) fn risky_users(shared: &Shared, caller: &Caller) -> GResult {
    require(caller, READ_RISK)?;
    let dir = shared.dir.read().expect("dir lock");
    require_p2(&dir)?;
    let value: Vec<Value> = dir
        .tenant
        .risky_users
        .iter()
        .map(|r| risky_json(shared, &dir, r, false))
        .collect();
    Ok(json_response(&json!({
        "@odata.context": context(shared, "identityProtection/riskyUsers"),
        "value": value,
    })))
}

/// Which risk action.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RiskChange {
    ConfirmCompromised,
    Dismiss,
}

/// `POST .../confirmCompromised` and `.../dismiss` with `{"userIds": [...]}`: 204.
pub(crate) fn set_risk(
    shared: &Shared,
    caller: &Caller,
    body: &[u8],
    change: RiskChange,
) -> GResult {
    require(caller, &["IdentityRiskyUser.ReadWrite.All"])?;
    let ids: Vec<Uuid> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("userIds")?
                .as_array()?
                .iter()
                .map(|x| x.as_str().and_then(|s| Uuid::try_parse(s).ok()))
                .collect::<Option<Vec<_>>>()
        })
        .filter(|ids| !ids.is_empty())
        .ok_or_else(|| {
            GraphError::bad_request(
                "The request body must hold 'userIds', a list of user object ids.",
            )
        })?;
    if ids.len() > MAX_RISK_IDS {
        return Err(GraphError::bad_request(&format!(
            "At most {MAX_RISK_IDS} userIds are accepted in one request."
        )));
    }
    let now = shared.clock.now();
    let mut dir = shared.dir.write().expect("dir lock");
    require_p2(&dir)?;
    if let Some(missing) = ids.iter().find(|id| !dir.by_id.contains_key(id)) {
        return Err(GraphError::not_found(&missing.to_string()));
    }
    let (level, state, detail) = match change {
        RiskChange::ConfirmCompromised => (
            "high",
            "confirmedCompromised",
            "adminConfirmedUserCompromised",
        ),
        RiskChange::Dismiss => ("none", "dismissed", "adminDismissedAllRiskForUser"),
    };
    for id in ids {
        let record = RiskyUser {
            id,
            risk_level: Text::Borrowed(level),
            risk_state: Text::Borrowed(state),
            risk_detail: Text::Borrowed(detail),
            risk_last_updated_date_time: Some(now),
        };
        match dir.tenant.risky_users.iter_mut().find(|r| r.id == id) {
            Some(r) => *r = record,
            None => dir.tenant.risky_users.push(record),
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{id}/revokeSignInSessions`.
pub(crate) fn revoke_sessions(shared: &Shared, caller: &Caller, key: &str) -> GResult {
    require(caller, &["User.RevokeSessions.All"])?;
    let now = shared.clock.now();
    let mut dir = shared.dir.write().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    // Whole seconds, as Graph shows this property.
    let at = Timestamp::from_second(now.as_second()).unwrap_or(now);
    dir.tenant.users[i].extra.insert(
        "signInSessionsValidFromDateTime".into(),
        json!(at.to_string()),
    );
    Ok(json_response(&json!({
        "@odata.context": context(shared, "Edm.Boolean"),
        "value": true,
    })))
}

/// A user's `signInActivity`, or the 403 Graph gives for it (see the module doc).
pub(crate) fn sign_in_activity(
    dir: &Directory,
    caller: &Caller,
    user: &User,
    now: Timestamp,
) -> Result<Value, GraphError> {
    require(caller, &["AuditLog.Read.All"])?;
    if !dir.tenant.premium {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        ));
    }
    if let Some(v) = user.extra.get("signInActivity") {
        return Ok(v.clone());
    }
    let visible = dir
        .sign_ins
        .iter()
        .rev()
        .filter(|s| s.user_id == user.id && s.visible_at() <= now);
    let (mut interactive, mut non_interactive, mut success) = (None, None, None);
    for s in visible {
        let slot = if s.is_interactive {
            &mut interactive
        } else {
            &mut non_interactive
        };
        if slot.is_none() {
            *slot = Some(s);
        }
        if success.is_none() && s.error_code == 0 {
            success = Some(s);
        }
        if interactive.is_some() && non_interactive.is_some() && success.is_some() {
            break;
        }
    }
    let time = |s: Option<&crate::tenant::SignIn>| s.map(|s| s.created_date_time.to_string());
    let id = |s: Option<&crate::tenant::SignIn>| s.map(|s| s.id.to_string());
    Ok(json!({
        "lastSignInDateTime": time(interactive),
        "lastSignInRequestId": id(interactive),
        "lastNonInteractiveSignInDateTime": time(non_interactive),
        "lastNonInteractiveSignInRequestId": id(non_interactive),
        "lastSuccessfulSignInDateTime": time(success),
        "lastSuccessfulSignInRequestId": id(success),
    }))
}
