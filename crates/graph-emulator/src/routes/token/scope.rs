//! The `scope` parameter: app-only grants ask for `{resource}/.default`; delegated
//! grants name Graph permissions (only those granted to the app) and OIDC scopes.

use crate::access_token::{GRAPH_APP_ID, GRAPH_RESOURCE};
use crate::http_error::TokenError;
use crate::state::Shared;
use crate::tenant::AppRegistration;

const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The names Graph answers to as a resource.
fn graph_resources(shared: &Shared) -> [String; 3] {
    [
        GRAPH_RESOURCE.to_string(),
        shared.base_url.clone(),
        GRAPH_APP_ID.to_string(),
    ]
}

pub(super) fn check_app_scope(shared: &Shared, scope: &str) -> Result<(), TokenError> {
    let items: Vec<&str> = scope.split_whitespace().collect();
    let invalid = || {
        TokenError::new(
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
        return Err(TokenError::new(
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
pub(super) fn delegated_scope(
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
                    return Err(TokenError::new(
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
            return Err(TokenError::new(
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
