//! `clear_user_preferred_presence`: remove a user's preferred presence.
//!
//! Graph: `POST /users/{id}/presence/clearUserPreferredPresence` with no body
//! (Presence.ReadWrite.All;
//! <https://learn.microsoft.com/en-us/graph/api/presence-clearuserpreferredpresence>).
//! The user's presence becomes the aggregate of their sessions again.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::get_presence::resolve_user_id;
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::publisher;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The user's object id.
    pub id: String,
    pub cleared: bool,
    pub notes: Vec<String>,
}

pub struct ClearUserPreferredPresence;

impl Action for ClearUserPreferredPresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "clear_user_preferred_presence",
        title: "Clear user preferred presence",
        description: "Remove a user's preferred presence (clearUserPreferredPresence), so their sessions decide again; Teams shows it after a few minutes.",
        permissions: &[&["Presence.ReadWrite.All"], &["User.Read.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        let id = resolve_user_id(graph, &input.id).await?;
        let response = publisher::post(graph, &id, "clearUserPreferredPresence", None).await?;
        Ok(Reply::from_response(
            &response,
            Output {
                id,
                cleared: true,
                notes: vec![publisher::TEAMS_DELAY.to_string()],
            },
        ))
    }
}
