//! `confirm_compromised`: an analyst's verdict that users are compromised, in
//! Identity Protection (`dismiss_risky_user` is the opposite verdict and shares
//! [`set_risk`]).
//!
//! Graph: `POST /identityProtection/riskyUsers/confirmCompromised` (risk level set
//! to high) and `POST /identityProtection/riskyUsers/dismiss` (risk level set to
//! none), body `{"userIds": [...]}`, both IdentityRiskyUser.ReadWrite.All and an
//! Entra ID P2 tenant, answered 204
//! (<https://learn.microsoft.com/en-us/graph/api/riskyuser-confirmcompromised>,
//! <https://learn.microsoft.com/en-us/graph/api/riskyuser-dismiss>). Without P2
//! Graph answers a bare 403 like a missing permission (microsoft/zerotrustassessment#1022),
//! so the error names both causes. UPNs are resolved to object ids first
//! (`GET /users/{upn}?$select=id`, User.Read.All), as the body takes object ids.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::get_presence::resolve_user_id;
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{ErrorKind, Result};
use crate::graph::{ApiFamily, GraphClient, GraphPath, GraphRequest};

/// The most users one call takes (Graph publishes no limit; the emulator takes 60).
pub const MAX_IDS: usize = 60;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Object ids (GUIDs) and/or user principal names.
    #[schemars(length(min = 1, max = 60), inner(length(min = 1, max = 1024)))]
    pub ids: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The object ids sent to Graph, in input order.
    pub user_ids: Vec<String>,
    /// The risk level Identity Protection now gives them (`high` or `none`).
    pub risk_level: String,
}

pub struct ConfirmCompromised;

impl Action for ConfirmCompromised {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "confirm_compromised",
        title: "Confirm compromised",
        description: "Confirm users as compromised in Identity Protection (their risk level becomes high, which risk-based Conditional Access acts on); needs Entra ID P2.",
        permissions: &[&["IdentityRiskyUser.ReadWrite.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        set_risk(ctx.graph()?, &input.ids, "confirmCompromised", "high").await
    }
}

/// Resolve the users, then POST the verdict (also `dismiss_risky_user`'s).
pub(super) async fn set_risk(
    graph: &GraphClient,
    ids: &[String],
    verb: &str,
    level: &str,
) -> Result<Reply<Output>> {
    let mut user_ids: Vec<String> = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let resolved = resolve_user_id(graph, id).await.map_err(|mut e| {
            e.message = format!("/inputs/ids/{i}: {}", e.message);
            e
        })?;
        if !user_ids.contains(&resolved) {
            user_ids.push(resolved);
        }
    }
    let request = GraphRequest::post(
        GraphPath::new("identityProtection/riskyUsers").then(verb),
        ApiFamily::Directory,
    )
    .json(json!({ "userIds": user_ids }));
    let response = graph.send(request).await.map_err(|mut e| {
        if e.kind == ErrorKind::Graph && e.status_code == Some(403) {
            e.message = format!(
                "{} (Graph answers 403 both when the app lacks IdentityRiskyUser.ReadWrite.All and when the tenant has no Microsoft Entra ID P2)",
                e.message
            );
        }
        e
    })?;
    Ok(Reply::from_response(
        &response,
        Output {
            user_ids,
            risk_level: level.to_string(),
        },
    ))
}
