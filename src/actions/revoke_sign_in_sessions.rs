//! `revoke_sign_in_sessions`: make a user sign in again everywhere.
//!
//! Graph: `POST /users/{id or UPN}/revokeSignInSessions` (User.RevokeSessions.All,
//! the only application permission listed on
//! <https://learn.microsoft.com/en-us/graph/api/user-revokesigninsessions>). It
//! invalidates the user's refresh tokens and browser session cookies by moving
//! `signInSessionsValidFromDateTime` to now. The same page: it can take a few
//! minutes to take effect, and it does not revoke sessions of external (guest)
//! users, who sign in through their home tenant. The result says both.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::graph::{ApiFamily, GraphClient, GraphPath, GraphRequest, GraphResponse};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    pub id: String,
}

/// What Graph answered, and what it means.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// Graph's answer (`value`: true).
    pub revoked: bool,
    /// What a playbook should know: the delay, and that guests are not affected.
    pub notes: Vec<String>,
}

/// The notes of the revokeSignInSessions page.
pub const NOTES: [&str; 2] = [
    "Revocation can take a few minutes to take effect.",
    "Sessions of external (guest) users are not revoked: they sign in through their home tenant.",
];

pub struct RevokeSignInSessions;

impl Action for RevokeSignInSessions {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "revoke_sign_in_sessions",
        title: "Revoke sign-in sessions",
        description: "Invalidate a user's refresh tokens and session cookies (revokeSignInSessions) so they must sign in again; takes a few minutes, and guests (who sign in at home) are not affected.",
        permissions: &[&["User.RevokeSessions.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let (response, output) = revoke(ctx.graph()?, &input.id).await?;
        Ok(Reply::from_response(&response, output))
    }
}

/// Revoke `id`'s sessions (also a step of `disable_user`).
pub async fn revoke(graph: &GraphClient, id: &str) -> Result<(GraphResponse, Output)> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        value: Option<bool>,
    }
    let request = GraphRequest::post(
        GraphPath::user(id).then("revokeSignInSessions"),
        ApiFamily::Directory,
    )
    .header("Content-Type", "application/json");
    let response = graph.send(request).await?;
    // v1.0 answers 200 `{"value": true}`; a 204 without a body is success too.
    let revoked = if response.body.is_empty() {
        true
    } else {
        response.json::<Answer>()?.value.unwrap_or(true)
    };
    let output = Output {
        revoked,
        notes: NOTES.iter().map(|n| n.to_string()).collect(),
    };
    Ok((response, output))
}
