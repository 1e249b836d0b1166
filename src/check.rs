//! `check`: test connectivity, and tell an administrator which permissions
//! are missing before a playbook fails on them.
//!
//! It asks the token endpoint for a fresh token (never the cached one: the
//! point is to prove the credential works today), makes one cheap read
//! (`GET /organization?$select=id` app-only, `GET /me?$select=id` delegated),
//! then reads the token's `roles` (app) or `scp` (delegated) claim, decoded
//! without verification, and judges each action of [`crate::actions::ACTIONS`].
//!
//! Rule per action: every entry of its `permissions` is needed; an entry is
//! met when the token holds one of its alternatives or a permission that
//! includes one (`User.ReadWrite.All` includes `User.Read.All`,
//! `Directory.Read.All` includes `User.Read.All`). `missing` names, for each
//! entry not met, its least privileged alternative: what to consent.
//!
//! Directory roles an action needs on the app's service principal (`update_user`
//! setting passwords or changing an admin's sensitive properties) are not in the
//! token's `roles` claim, so they cannot be judged here: each action line lists
//! them under `directory_roles`, for the administrator to verify in Entra.
//!
//! A 403 on the cheap read still proves that Graph accepted the token (only
//! that read is not permitted), so it is reported, not failed. `successful`
//! is true when the token and the read worked and no action misses anything.

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::actions::ACTIONS;
use crate::asset::Asset;
use crate::auth::claims::{self, TokenType};
use crate::error::{ErrorKind, Result};
use crate::graph::{ApiFamily, ClientOptions, GraphClient, GraphPath, GraphRequest};

/// Run the check; the value is the result's `json_body`.
pub async fn check(asset: Asset, options: ClientOptions) -> Result<(Value, u16)> {
    let delegated = asset.asset_type.is_delegated();
    // The asset came from the envelope's `/asset`: its errors point there.
    let graph = GraphClient::new(asset, options).map_err(|e| e.under("/asset"))?;
    graph.ready().await?;
    let issued = graph.tokens().fresh().await?;

    let read = if delegated {
        GraphRequest::get(GraphPath::new("me"), ApiFamily::Directory)
    } else {
        GraphRequest::get(GraphPath::new("organization"), ApiFamily::Directory)
    }
    .query("$select", "id");
    let (status, code) = match graph.send(read).await {
        Ok(r) => (r.status, None),
        Err(e) if e.kind == ErrorKind::Graph && e.status_code == Some(403) => (403, e.code),
        Err(e) => return Err(e),
    };

    let granted = claims::granted(issued.access_token.expose_secret(), delegated);
    let (token_type, permissions) = match &granted {
        Some(g) => (g.token_type, g.permissions.clone()),
        None if delegated => (TokenType::Delegated, Vec::new()),
        None => (TokenType::App, Vec::new()),
    };
    let actions: Vec<Value> = ACTIONS
        .iter()
        .filter(|a| a.meta.needs_graph)
        .map(|a| {
            let missing = missing_permissions(a.meta.permissions, &permissions);
            let mut line =
                json!({"name": a.meta.name, "ok": missing.is_empty(), "missing": missing});
            if !a.directory_roles.is_empty() && !delegated {
                line["directory_roles"] = json!(a.directory_roles);
            }
            line
        })
        .collect();
    let all_ok = actions.iter().all(|a| a["ok"] == true);
    let mut graph_part = json!({"status": status});
    if let Some(code) = code {
        graph_part["code"] = json!(code);
    }
    let body = json!({
        "successful": status < 300 && all_ok && granted.is_some(),
        "token": {
            "type": token_type.as_str(),
            "permissions": permissions,
            "readable": granted.is_some(),
        },
        "graph": graph_part,
        "actions": actions,
    });
    Ok((body, status))
}

/// What an action misses given the granted permissions (see the module rule).
pub fn missing_permissions(needed: &[&[&str]], granted: &[String]) -> Vec<String> {
    needed
        .iter()
        .filter(|alternatives| !alternatives.iter().any(|n| satisfied(n, granted)))
        .filter_map(|alternatives| alternatives.first().map(|n| n.to_string()))
        .collect()
}

/// Whether `needed` is granted, directly or through a broader permission.
fn satisfied(needed: &str, granted: &[String]) -> bool {
    granted
        .iter()
        .any(|g| g.eq_ignore_ascii_case(needed) || includes(g, needed))
}

/// Broader permissions that include narrower ones (Microsoft's documented hierarchy, the part we use).
fn includes(granted: &str, needed: &str) -> bool {
    let g = granted.to_ascii_lowercase();
    let n = needed.to_ascii_lowercase();
    // X.ReadWrite.All includes X.Read.All.
    if let Some(base) = g.strip_suffix(".readwrite.all")
        && n == format!("{base}.read.all")
    {
        return true;
    }
    let directory_read = matches!(g.as_str(), "directory.read.all" | "directory.readwrite.all");
    let user_read = matches!(g.as_str(), "user.read.all" | "user.readwrite.all");
    match n.as_str() {
        "user.readbasic.all" => directory_read || user_read,
        "user.read.all" | "groupmember.read.all" => directory_read,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Issue 11, item 4: app-only user reads need User.Read.All; an app holding only
    /// User.ReadBasic.All was passed by check and refused by Graph.
    #[test]
    fn user_reads_are_not_met_by_read_basic() {
        for action in ["get_user", "get_presence", "get_presences"] {
            let a = crate::actions::find(action).unwrap();
            assert_eq!(
                missing_permissions(
                    a.meta.permissions,
                    &g(&["User.ReadBasic.All", "Presence.Read.All"])
                ),
                ["User.Read.All"],
                "{action}"
            );
        }
    }

    #[test]
    fn alternatives_and_broader_permissions_count() {
        let either: &[&[&str]] = &[&["User.ReadBasic.All", "User.Read.All"]];
        assert!(missing_permissions(either, &g(&["User.Read.All"])).is_empty());
        assert!(missing_permissions(either, &g(&["Directory.Read.All"])).is_empty());
        assert!(missing_permissions(&[&["User.Read.All"]], &g(&["User.ReadWrite.All"])).is_empty());
        assert_eq!(
            missing_permissions(either, &g(&["Mail.Read"])),
            ["User.ReadBasic.All"]
        );
        assert!(missing_permissions(&[], &[]).is_empty());
    }

    #[test]
    fn every_entry_is_needed() {
        let both: &[&[&str]] = &[&["AuditLog.Read.All"], &["Directory.Read.All"]];
        assert_eq!(
            missing_permissions(both, &g(&["AuditLog.Read.All"])),
            ["Directory.Read.All"]
        );
        assert_eq!(
            missing_permissions(both, &g(&["Presence.Read.All"])),
            ["AuditLog.Read.All", "Directory.Read.All"]
        );
        assert!(
            missing_permissions(both, &g(&["AuditLog.Read.All", "Directory.ReadWrite.All"]))
                .is_empty()
        );
    }
}
