//! Presence: `GET /users/{id}/presence` and `POST /communications/getPresencesByUserId`
//! (at most 650 ids: more, or none, is a bare 400).

use std::collections::HashSet;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::common::{GResult, context, json_response, require};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::state::Shared;
use crate::tenant::User;

/// Graph's presence resource.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceView<'a> {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    id: String,
    availability: &'a str,
    activity: &'a str,
    status_message: Option<StatusMessageView<'a>>,
    out_of_office_settings: OutOfOfficeView,
    work_location: WorkLocationView<'a>,
    sequence_number: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusMessageView<'a> {
    message: ItemBodyView<'a>,
    published_date_time: Option<&'a str>,
    expiry_date_time: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemBodyView<'a> {
    content: &'a str,
    content_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutOfOfficeView {
    message: Option<String>,
    is_out_of_office: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkLocationView<'a> {
    work_location_type: &'a str,
    source: &'static str,
    place_id: Option<&'a str>,
}

fn presence_view(user: &User) -> PresenceView<'_> {
    let p = user.presence.as_ref();
    PresenceView {
        context: None,
        id: user.id.to_string(),
        availability: p.map_or("PresenceUnknown", |p| &p.availability),
        activity: p.map_or("PresenceUnknown", |p| &p.activity),
        status_message: p
            .and_then(|p| p.status_message.as_deref())
            .map(|m| StatusMessageView {
                message: ItemBodyView {
                    content: m,
                    content_type: "text",
                },
                published_date_time: None,
                expiry_date_time: None,
            }),
        out_of_office_settings: OutOfOfficeView {
            message: None,
            is_out_of_office: p.is_some_and(|p| p.is_out_of_office),
        },
        work_location: WorkLocationView {
            work_location_type: p
                .and_then(|p| p.work_location_type.as_deref())
                .unwrap_or("unknown"),
            source: "automatic",
            place_id: None,
        },
        sequence_number: format!("{:016X}", user.id.as_u128() as u64),
    }
}

const PRESENCE_PERMS: &[&str] = &[
    "Presence.Read.All",
    "Presence.ReadWrite.All",
    "Presence.Read",
];

/// `GET /users/{id}/presence`: by object id only.
pub(crate) fn presence(shared: &Shared, caller: &Caller, key: &str) -> GResult {
    require(caller, PRESENCE_PERMS)?;
    let id = Uuid::try_parse(key.trim_start_matches('\'')).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("The user id '{key}' is not a valid object id (GUID); resolve the userPrincipalName first."),
        )
    })?;
    let dir = shared.dir.read().expect("dir lock");
    let i = dir
        .by_id
        .get(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    let mut v = presence_view(&dir.tenant.users[*i]);
    v.context = Some(context(shared, &format!("users('{id}')/presence/$entity")));
    Ok(json_response(&v))
}

/// Most ids one `getPresencesByUserId` takes.
const MAX_PRESENCE_IDS: usize = 650;

/// `POST /communications/getPresencesByUserId`: up to 650 ids, duplicates once.
pub(crate) fn presences(shared: &Shared, caller: &Caller, body: &[u8]) -> GResult {
    require(caller, PRESENCE_PERMS)?;
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        )
    })?;
    let Some(ids) = v.get("ids").and_then(Value::as_array) else {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The request body must contain 'ids'.",
        ));
    };
    if ids.len() > MAX_PRESENCE_IDS || ids.is_empty() {
        return Err(GraphError::bare(StatusCode::BAD_REQUEST));
    }
    let dir = shared.dir.read().expect("dir lock");
    let mut seen = HashSet::with_capacity(ids.len());
    let mut value = Vec::with_capacity(ids.len());
    for id in ids {
        let parsed = id
            .as_str()
            .and_then(|s| Uuid::try_parse(s).ok())
            .ok_or_else(|| {
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Invalid user id {id}."),
                )
            })?;
        if !seen.insert(parsed) {
            continue;
        }
        if let Some(i) = dir.by_id.get(&parsed) {
            value.push(presence_view(&dir.tenant.users[*i]));
        }
    }
    #[derive(Serialize)]
    struct Page<'a> {
        #[serde(rename = "@odata.context")]
        context: String,
        value: Vec<PresenceView<'a>>,
    }
    Ok(json_response(&Page {
        context: context(shared, "Collection(microsoft.graph.presence)"),
        value,
    }))
}
