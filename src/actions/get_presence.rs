//! `get_presence`: one user's presence.
//!
//! Graph: `GET /users/{id}/presence` (Presence.Read.All). The presence endpoint
//! wants the object id; a UPN is first resolved with
//! `GET /users/{upn}?$select=id` (User.Read.All), as Graph does not reliably
//! accept UPNs there.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http_style::{Grouped, HttpStyle, UserPath};
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::fastpath::guid;
use crate::graph::{ApiFamily, GraphClient, GraphPath, GraphRequest};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
}

/// The same input in Swimlane's HTTP-style grouping: `GET /users/{id}/presence`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpInput {
    pub path_parameters: UserPath,
}

impl Grouped for HttpInput {
    const PLACES: &'static [(&'static str, &'static str)] = &[("/id", "/path_parameters/id")];
    fn into_plain(self) -> Value {
        serde_json::json!({ "id": self.path_parameters.id })
    }
}

/// A user's presence as Graph reports it. Values are open sets: unknown strings pass through.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    /// The user's object id.
    pub id: String,
    /// Available, AvailableIdle, Away, BeRightBack, Busy, BusyIdle, DoNotDisturb, Offline, PresenceUnknown, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<String>,
    /// Available, Away, InACall, InAMeeting, OutOfOffice, Presenting, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_office_settings: Option<OutOfOfficeSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_location: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    /// Any further properties Graph returns (`@odata.context`, newer fields), kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeSettings {
    #[serde(default)]
    pub is_out_of_office: Option<bool>,
    #[serde(default)]
    pub message: Option<String>,
}

pub struct GetPresence;

impl Action for GetPresence {
    type Input = Input;
    type Output = Presence;
    const META: ActionMeta = ActionMeta {
        name: "get_presence",
        title: "Get presence",
        description: "Get one user's presence (availability, activity, out-of-office, status message) by object id or UPN.",
        permissions: &[
            &["Presence.Read.All"],
            // UPNs are resolved with GET /users?$filter=...: app-only that needs
            // User.Read.All (https://learn.microsoft.com/graph/api/user-list#permissions).
            &["User.Read.All"],
        ],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };
    const HTTP_STYLE: Option<HttpStyle> = Some(HttpStyle::of::<HttpInput>());

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Presence>> {
        let graph = ctx.graph()?;
        let id = resolve_user_id(graph, &input.id).await?;
        let request = GraphRequest::get(GraphPath::user(&id).then("presence"), ApiFamily::Presence);
        let response = graph.send(request).await?;
        Ok(Reply::from_response(&response, response.json()?))
    }
}

/// Whether `s` has the shape of an object id (a GUID).
pub fn is_object_id(s: &str) -> bool {
    guid::parse(s).is_some()
}

/// The object id of a user given by object id or UPN (one `$select=id` call for a UPN).
pub async fn resolve_user_id(graph: &GraphClient, id_or_upn: &str) -> Result<String> {
    if is_object_id(id_or_upn) {
        return Ok(id_or_upn.to_string());
    }
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    let request =
        GraphRequest::get(GraphPath::user(id_or_upn), ApiFamily::Directory).query("$select", "id");
    let user: IdOnly = graph.send(request).await?.json()?;
    Ok(user.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_recognised() {
        assert!(is_object_id("4562bcc8-c436-4f95-b7c0-4f8ce89dca5e"));
        assert!(!is_object_id("adele@contoso.com"));
        assert!(!is_object_id("4562bcc8xc436-4f95-b7c0-4f8ce89dca5e"));
    }
}
