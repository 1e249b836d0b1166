//! Changing a user, and saying exactly why Entra refused a change.
//!
//! `PATCH /users/{id}` with an app-only token needs `User.ReadWrite.All`, and for
//! some properties a directory role held by the app's service principal too
//! (https://learn.microsoft.com/graph/api/user-update#permissions):
//!
//! - `passwordProfile`: at least *User Administrator*. `User-PasswordProfile.ReadWrite.All`
//!   is a delegated permission only; it does nothing for an app-only token
//!   (https://learn.microsoft.com/graph/permissions-reference).
//! - the sensitive properties ([`SENSITIVE_PROPERTIES`]) of a user who holds an admin
//!   role: a higher privileged role, *Privileged Authentication Administrator*
//!   ("Who can perform sensitive actions",
//!   https://learn.microsoft.com/entra/identity/role-based-access-control/privileged-roles-permissions).
//!
//! Graph refuses all of these alike, 403 `Authorization_RequestDenied` "Insufficient
//! privileges to complete the operation.", which tells a SOC analyst nothing about
//! what to fix. [`update`] sends the change and, on that refusal, [`explain_refusal`]
//! names what is missing: it asks which directory roles the user holds (one
//! `memberOf` read; when that read is refused too, both cases are named).
//! `update_user` uses it, and so can any action that changes a user.

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::claims;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{ApiFamily, GraphClient, GraphPath, GraphRequest, GraphResponse, Method};

/// Who must hold a directory role for an action to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleScope {
    /// The app's service principal (app-only tokens).
    ServicePrincipal,
}

/// An Entra directory role an action needs beyond its Graph permissions, and when.
/// Roles are not in an app-only token's `roles` claim, so `check` can only name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DirectoryRole {
    pub role: &'static str,
    pub scope: RoleScope,
    pub when: &'static str,
}

/// Properties Entra protects on users who hold admin roles (user-update page).
pub const SENSITIVE_PROPERTIES: [&str; 6] = [
    "accountEnabled",
    "businessPhones",
    "mobilePhone",
    "otherMails",
    "passwordProfile",
    "userPrincipalName",
];

/// The least privileged role that may set a password of a user without admin roles.
pub const PASSWORD_ROLE: &str = "User Administrator";
/// The least privileged role that may change sensitive properties of an admin.
pub const ADMIN_TARGET_ROLE: &str = "Privileged Authentication Administrator";

/// The directory roles an app-only change of users may need, for the catalog and `check`.
pub const UPDATE_ROLES: &[DirectoryRole] = &[
    DirectoryRole {
        role: PASSWORD_ROLE,
        scope: RoleScope::ServicePrincipal,
        when: "changing passwordProfile of a user who holds no admin role",
    },
    DirectoryRole {
        role: ADMIN_TARGET_ROLE,
        scope: RoleScope::ServicePrincipal,
        when: "changing accountEnabled, businessPhones, mobilePhone, otherMails, passwordProfile or userPrincipalName of a user who holds an admin role",
    },
];

/// The one of [`UPDATE_ROLES`] that disabling a user can need (`accountEnabled` is sensitive).
pub const DISABLE_ROLES: &[DirectoryRole] = &[UPDATE_ROLES[1]];

/// `PATCH /users/{id}` with `changes` (an object of Graph property names); a 403
/// `Authorization_RequestDenied` comes back explained ([`explain_refusal`]).
pub async fn update(graph: &GraphClient, id: &str, changes: Value) -> Result<GraphResponse> {
    let names: Vec<String> = changes
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let request =
        GraphRequest::new(Method::Patch, GraphPath::user(id), ApiFamily::Directory).json(changes);
    match graph.send(request).await {
        Err(e) if is_denied(&e) => Err(explain_refusal(graph, id, &names, e).await),
        other => other,
    }
}

fn is_denied(e: &Error) -> bool {
    e.kind == ErrorKind::Graph
        && e.status_code == Some(403)
        && e.code.as_deref() == Some("Authorization_RequestDenied")
}

/// `refused`, its message replaced by what the app lacks for changing `names` of user `id`.
pub async fn explain_refusal(
    graph: &GraphClient,
    id: &str,
    names: &[String],
    mut refused: Error,
) -> Error {
    let sensitive: Vec<&str> = names
        .iter()
        .filter_map(|n| SENSITIVE_PROPERTIES.iter().find(|s| **s == n).copied())
        .collect();
    let admin_roles = if sensitive.is_empty() {
        None
    } else {
        held_directory_roles(graph, id).await
    };
    refused.message = format!(
        "{} {}",
        refused.message.trim_end_matches('.'),
        refusal_reason(&sensitive, admin_roles.as_deref())
    );
    refused
}

/// Why a change of `sensitive` properties was refused, given the directory roles the
/// user holds (`None`: unknown, because reading them was refused as well).
pub fn refusal_reason(sensitive: &[&str], admin_roles: Option<&[String]>) -> String {
    let props = sensitive.join(", ");
    let password = sensitive.contains(&"passwordProfile");
    let password_rule = format!(
        "setting passwordProfile with an app-only token needs User.ReadWrite.All and the app's service principal holding at least the {PASSWORD_ROLE} directory role (User-PasswordProfile.ReadWrite.All is delegated-only)"
    );
    let admin_rule = format!(
        "changing {props} of a user who holds an admin role needs the app's service principal to hold the {ADMIN_TARGET_ROLE} directory role (or Global Administrator)"
    );
    match (sensitive.is_empty(), admin_roles) {
        (true, _) => "(the app needs User.ReadWrite.All to change users)".to_string(),
        (false, Some(roles)) if !roles.is_empty() => {
            format!("(the user holds {}: {admin_rule})", roles.join(", "))
        }
        (false, Some(_)) if password => format!("(the user holds no admin role: {password_rule})"),
        (false, Some(_)) => {
            "(the user holds no admin role, so the app lacks User.ReadWrite.All)".to_string()
        }
        (false, None) if password => format!(
            "(either {password_rule}; or, if the user holds an admin role, {admin_rule}; the user's roles could not be read to tell which)"
        ),
        (false, None) => format!(
            "(if the user holds an admin role, {admin_rule}; otherwise the app lacks User.ReadWrite.All; the user's roles could not be read to tell which)"
        ),
    }
}

/// The display names of the directory roles user `id` holds, or `None` when Graph
/// would not say (the app may lack Directory.Read.All).
async fn held_directory_roles(graph: &GraphClient, id: &str) -> Option<Vec<String>> {
    let request = GraphRequest::get(
        GraphPath::user(id)
            .then("memberOf")
            .then("microsoft.graph.directoryRole"),
        ApiFamily::Directory,
    )
    .query("$select", "displayName")
    .query("$count", "true")
    .header("ConsistencyLevel", "eventual");
    let response = graph.send(request).await.ok()?;
    let page: Map<String, Value> = response.json().ok()?;
    let roles: Vec<String> = page
        .get("value")?
        .as_array()?
        .iter()
        .filter_map(|r| r.get("displayName")?.as_str().map(str::to_string))
        .collect();
    if roles.is_empty() && !reads_directory_roles(graph).await {
        // With only GroupMember.Read.All, memberOf lists groups and nothing else: an
        // empty answer does not mean "no roles".
        return None;
    }
    Some(roles)
}

/// Whether our token may list directory roles (Directory.Read.All or broader).
async fn reads_directory_roles(graph: &GraphClient) -> bool {
    let Ok(token) = graph.tokens().token().await else {
        return false;
    };
    let delegated = graph.asset().asset_type.is_delegated();
    claims::granted(token.expose_secret(), delegated).is_some_and(|g| {
        g.permissions.iter().any(|p| {
            ["Directory.Read.All", "Directory.ReadWrite.All"]
                .iter()
                .any(|d| d.eq_ignore_ascii_case(p))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_missing_role() {
        let admin = vec!["Global Reader".to_string()];
        let r = refusal_reason(&["accountEnabled"], Some(&admin));
        assert!(
            r.contains("Global Reader") && r.contains(ADMIN_TARGET_ROLE),
            "{r}"
        );
        let r = refusal_reason(&["passwordProfile"], Some(&[]));
        assert!(
            r.contains(PASSWORD_ROLE) && !r.contains(ADMIN_TARGET_ROLE),
            "{r}"
        );
        let r = refusal_reason(&["passwordProfile"], None);
        assert!(
            r.contains(PASSWORD_ROLE) && r.contains(ADMIN_TARGET_ROLE),
            "{r}"
        );
        let r = refusal_reason(&[], None);
        assert!(r.contains("User.ReadWrite.All"), "{r}");
    }
}
