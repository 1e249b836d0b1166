//! `clear_presence`: end this application's presence session for a user.
//!
//! Graph: `POST /users/{id}/presence/clearPresence` with `{"sessionId"}`
//! (Presence.ReadWrite.All; <https://learn.microsoft.com/en-us/graph/api/presence-clearpresence>).
//! The session id defaults to the asset's client id, the one `set_presence` uses. The
//! user's presence becomes the aggregate of the sessions left (Offline when none).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

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
    /// The presence session to end; default the asset's client id.
    #[serde(default)]
    #[schemars(extend("pattern" = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    pub session_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The user's object id.
    pub id: String,
    pub session_id: String,
    pub cleared: bool,
    pub notes: Vec<String>,
}

pub struct ClearPresence;

impl Action for ClearPresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "clear_presence",
        title: "Clear presence",
        description: "End this application's presence session for a user (clearPresence); the user's presence becomes that of the sessions left; Teams shows it after a few minutes.",
        permissions: &[&["Presence.ReadWrite.All"], &["User.Read.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        let session_id = publisher::session_id(graph, input.session_id.as_deref());
        let id = resolve_user_id(graph, &input.id).await?;
        let mut body = Map::new();
        body.insert("sessionId".into(), json!(session_id));
        let response = publisher::post(graph, &id, "clearPresence", Some(body)).await?;
        Ok(Reply::from_response(
            &response,
            Output {
                id,
                session_id,
                cleared: true,
                notes: vec![publisher::TEAMS_DELAY.to_string()],
            },
        ))
    }
}
