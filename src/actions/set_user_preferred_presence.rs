//! `set_user_preferred_presence`: the presence a user prefers, over every session.
//!
//! Graph: `POST /users/{id}/presence/setUserPreferredPresence` with `{availability,
//! activity, expirationDuration?}` (Presence.ReadWrite.All;
//! <https://learn.microsoft.com/en-us/graph/api/presence-setuserpreferredpresence>). Its
//! own supported pairs ([`crate::publisher::PREFERRED_COMBINATIONS`]); without an
//! expiration Graph applies 1 day (DoNotDisturb, Busy) or 7 days (the others). The page
//! gives no range for it, so any positive ISO 8601 duration is passed on. It shows only
//! while the user has at least one presence session (a Teams client or an app's):
//! otherwise the user stays Offline.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::get_presence::resolve_user_id;
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::publisher::{self, PREFERRED_COMBINATIONS};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = preferred_pairs)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
    /// Available, Busy, DoNotDisturb, BeRightBack, Away (each with the same activity) or
    /// Offline (with activity OffWork).
    pub availability: String,
    /// The activity paired with the availability (see `availability`).
    pub activity: String,
    /// How long it holds: ISO 8601 (PT8H, P1D). Default (Graph's): 1 day for
    /// DoNotDisturb and Busy, 7 days for the others.
    #[serde(default)]
    #[schemars(extend("pattern" = publisher::DURATION_PATTERN))]
    pub expiration_duration: Option<String>,
}

fn preferred_pairs(schema: &mut schemars::Schema) {
    publisher::pairs_into_schema(schema, &PREFERRED_COMBINATIONS);
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The user's object id.
    pub id: String,
    pub availability: String,
    pub activity: String,
    /// As given; absent when Graph's default applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_duration: Option<String>,
    pub notes: Vec<String>,
}

/// What a playbook should know beyond the delay.
pub const NO_SESSION_NOTE: &str = "A preferred presence shows only while the user has a presence session (a Teams client or an application's); otherwise the user shows Offline.";

pub struct SetUserPreferredPresence;

impl Action for SetUserPreferredPresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "set_user_preferred_presence",
        title: "Set user preferred presence",
        description: "Set the presence a user prefers over every session (setUserPreferredPresence): Available, Busy, DoNotDisturb, BeRightBack, Away or Offline; shows only while the user has a session; Teams shows it after a few minutes.",
        permissions: &[&["Presence.ReadWrite.All"], &["User.Read.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        if let Some(d) = &input.expiration_duration {
            publisher::parse_duration(d, "/inputs/expiration_duration")?;
        }
        let graph = ctx.graph()?;
        let id = resolve_user_id(graph, &input.id).await?;
        let mut body = Map::new();
        body.insert("availability".into(), json!(input.availability));
        body.insert("activity".into(), json!(input.activity));
        if let Some(d) = &input.expiration_duration {
            body.insert("expirationDuration".into(), json!(d));
        }
        let response = publisher::post(graph, &id, "setUserPreferredPresence", Some(body)).await?;
        Ok(Reply::from_response(
            &response,
            Output {
                id,
                availability: input.availability,
                activity: input.activity,
                expiration_duration: input.expiration_duration,
                notes: vec![
                    publisher::TEAMS_DELAY.to_string(),
                    NO_SESSION_NOTE.to_string(),
                ],
            },
        ))
    }
}
