//! `set_presence`: publish a user's presence as this application.
//!
//! Graph: `POST /users/{id}/presence/setPresence` (Presence.ReadWrite.All;
//! <https://learn.microsoft.com/en-us/graph/api/presence-setpresence>) with
//! `{sessionId, availability, activity, expirationDuration}`. The pairs Microsoft
//! documents as supported, the PT5M..PT4H range and the session id defaulting to the
//! app's client id are in [`crate::publisher`]; anything else is refused before any
//! request. A UPN is first resolved to the object id (User.Read.All), as for
//! `get_presence`. The session fades (Available -> AvailableInactive -> Away, 5 minutes
//! each) unless set again, and ends at its expiry: a publisher calls again before then.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::get_presence::resolve_user_id;
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::publisher::{self, APP_COMBINATIONS};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = app_pairs)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
    /// Available (with activity Available), Busy (InACall or InAConferenceCall), Away
    /// (Away) or DoNotDisturb (Presenting): the pairs setPresence supports.
    pub availability: String,
    /// The activity paired with the availability (see `availability`).
    pub activity: String,
    /// How long the session lasts unless set again: ISO 8601, PT5M to PT4H (default PT5M).
    #[serde(default)]
    #[schemars(extend("pattern" = publisher::DURATION_PATTERN))]
    pub expiration_duration: Option<String>,
    /// The presence session to set; default the asset's client id (Microsoft: "Provide
    /// the ID of the application as sessionId").
    #[serde(default)]
    #[schemars(extend("pattern" = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    pub session_id: Option<String>,
}

fn app_pairs(schema: &mut schemars::Schema) {
    publisher::pairs_into_schema(schema, &APP_COMBINATIONS);
}

/// What was published.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The user's object id.
    pub id: String,
    pub session_id: String,
    pub availability: String,
    pub activity: String,
    pub expiration_duration: String,
    pub notes: Vec<String>,
}

pub struct SetPresence;

impl Action for SetPresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "set_presence",
        title: "Set presence",
        description: "Publish a user's presence as this application (setPresence): Available, Busy in a call or conference call, Away, or DoNotDisturb presenting, for PT5M to PT4H; Teams shows it after a few minutes.",
        permissions: &[&["Presence.ReadWrite.All"], &["User.Read.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let expiration = input.expiration_duration.as_deref().unwrap_or("PT5M");
        publisher::app_expiration(expiration, "/inputs/expiration_duration")?;
        let graph = ctx.graph()?;
        let session_id = publisher::session_id(graph, input.session_id.as_deref());
        let id = resolve_user_id(graph, &input.id).await?;
        let mut body = Map::new();
        body.insert("sessionId".into(), json!(session_id));
        body.insert("availability".into(), json!(input.availability));
        body.insert("activity".into(), json!(input.activity));
        body.insert("expirationDuration".into(), json!(expiration));
        let response = publisher::post(graph, &id, "setPresence", Some(body)).await?;
        Ok(Reply::from_response(
            &response,
            Output {
                id,
                session_id,
                availability: input.availability,
                activity: input.activity,
                expiration_duration: expiration.to_string(),
                notes: vec![publisher::TEAMS_DELAY.to_string()],
            },
        ))
    }
}
