//! `set_status_message`: a user's presence status message, with an optional expiry.
//!
//! Graph: `POST /users/{id}/presence/setStatusMessage` with `{"statusMessage":
//! {"message": {"content", "contentType"}, "expiryDateTime"?: {"dateTime", "timeZone"}}}`
//! (Presence.ReadWrite.All;
//! <https://learn.microsoft.com/en-us/graph/api/presence-setstatusmessage>). The expiry is
//! taken as an RFC 3339 instant and sent in UTC; an empty message clears it.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::get_presence::resolve_user_id;
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::publisher;

/// `itemBody.contentType` (<https://learn.microsoft.com/en-us/graph/api/resources/itembody>).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    #[default]
    Text,
    Html,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
    /// The message; empty clears it.
    #[schemars(length(max = 65536))]
    pub message: String,
    /// `text` (default) or `html`.
    #[serde(default)]
    pub content_type: ContentType,
    /// When the message goes away (RFC 3339, e.g. 2026-03-02T17:00:00Z); none: it stays.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The user's object id.
    pub id: String,
    pub message: String,
    pub content_type: ContentType,
    /// The expiry as sent to Graph (a UTC `dateTimeTimeZone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_date_time: Option<serde_json::Value>,
    pub notes: Vec<String>,
}

pub struct SetStatusMessage;

impl Action for SetStatusMessage {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "set_status_message",
        title: "Set status message",
        description: "Set a user's presence status message (setStatusMessage), text or HTML, with an optional expiry; Teams shows it after a few minutes.",
        permissions: &[&["Presence.ReadWrite.All"], &["User.Read.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let expires_at = match &input.expires_at {
            None => None,
            Some(text) => Some(text.parse::<Timestamp>().map_err(|_| {
                Error::invalid(
                    "/inputs/expires_at",
                    "must be an RFC 3339 time with its offset (2026-03-02T17:00:00Z)",
                )
            })?),
        };
        let graph = ctx.graph()?;
        let id = resolve_user_id(graph, &input.id).await?;
        let expiry = expires_at.map(publisher::utc_date_time);
        let mut status = Map::new();
        status.insert(
            "message".into(),
            json!({"content": input.message, "contentType": input.content_type}),
        );
        if let Some(e) = &expiry {
            status.insert("expiryDateTime".into(), e.clone());
        }
        let mut body = Map::new();
        body.insert("statusMessage".into(), serde_json::Value::Object(status));
        let response = publisher::post(graph, &id, "setStatusMessage", Some(body)).await?;
        Ok(Reply::from_response(
            &response,
            Output {
                id,
                message: input.message,
                content_type: input.content_type,
                expiry_date_time: expiry,
                notes: vec![publisher::TEAMS_DELAY.to_string()],
            },
        ))
    }
}
