//! Presence: `GET /users/{id}/presence` and `POST /communications/getPresencesByUserId`
//! (at most 650 ids: more, or none, is a bare 400), and the five presence writes
//! (`setPresence`, `clearPresence`, `setUserPreferredPresence`,
//! `clearUserPreferredPresence`, `setStatusMessage`) over the sessions of `crate::sessions`.

use std::collections::HashSet;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::common::{GResult, context, json_response, require};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::sessions::{
    APP_COMBINATIONS, FADE, PREFERRED_COMBINATIONS, Seen, StatusMessage, documented,
    preferred_default_expiry,
};
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
    published_date_time: Option<String>,
    /// Graph's `dateTimeTimeZone`, as the caller gave it.
    expiry_date_time: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemBodyView<'a> {
    content: &'a str,
    content_type: &'a str,
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

fn presence_view<'a>(user: &'a User, seen: &'a Seen) -> PresenceView<'a> {
    let p = user.presence.as_ref();
    let status_message = match &seen.status {
        Some(m) => Some(StatusMessageView {
            message: ItemBodyView {
                content: &m.content,
                content_type: &m.content_type,
            },
            published_date_time: Some(m.published.to_string()),
            expiry_date_time: m.expiry.as_ref().map(|(_, date_time, time_zone)| {
                serde_json::json!({"dateTime": date_time, "timeZone": time_zone})
            }),
        }),
        None => p
            .and_then(|p| p.status_message.as_deref())
            .map(|m| StatusMessageView {
                message: ItemBodyView {
                    content: m,
                    content_type: "text",
                },
                published_date_time: None,
                expiry_date_time: None,
            }),
    };
    PresenceView {
        context: None,
        id: user.id.to_string(),
        availability: &seen.availability,
        activity: &seen.activity,
        status_message,
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
        // Opaque to clients; it moves whenever the aggregate does (see `sessions`).
        sequence_number: format!(
            "{:016X}",
            (user.id.as_u128() as u64).wrapping_add(seen.generation)
        ),
    }
}

/// What `user` shows now (observing it, so its sequence number follows changes).
fn seen(shared: &Shared, user: &User, now: Timestamp) -> Seen {
    let mut book = shared.sessions.lock().expect("sessions lock");
    book.entry(user.id)
        .or_default()
        .observe(user.presence.as_ref(), now)
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
    let user = &dir.tenant.users[*i];
    let seen = seen(shared, user, shared.clock.now());
    let mut v = presence_view(user, &seen);
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
    let mut users = Vec::with_capacity(ids.len());
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
            users.push(&dir.tenant.users[*i]);
        }
    }
    let now = shared.clock.now();
    let looks: Vec<Seen> = {
        let mut book = shared.sessions.lock().expect("sessions lock");
        users
            .iter()
            .map(|u| {
                book.entry(u.id)
                    .or_default()
                    .observe(u.presence.as_ref(), now)
            })
            .collect()
    };
    let value: Vec<PresenceView<'_>> = users
        .iter()
        .zip(&looks)
        .map(|(u, s)| presence_view(u, s))
        .collect();
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

/// Application permission of every presence write (each of the five pages lists
/// `Presence.ReadWrite.All` for applications; delegated callers hold `Presence.ReadWrite`).
const WRITE_PERMS: &[&str] = &["Presence.ReadWrite.All", "Presence.ReadWrite"];

/// Graph's 400 for a body the presence writes refuse. The pages document no error
/// shape or code for these; `BadRequest` in Graph's envelope is our choice (no source).
fn refused(message: &str) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// An ISO 8601 duration (`PT5M`, `P1D`; days count 24 hours).
fn iso_duration(v: &Value, field: &str) -> Result<Option<SignedDuration>, GraphError> {
    let Some(v) = v.get(field).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let text = v.as_str().unwrap_or_default();
    let bad = || refused(&format!("'{field}' is not a valid ISO 8601 duration."));
    if !text.starts_with(['P', 'p']) {
        return Err(bad());
    }
    let span: jiff::Span = text.parse().map_err(|_| bad())?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    if d <= SignedDuration::ZERO {
        return Err(bad());
    }
    Ok(Some(d))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// `POST /users/{id}/presence/{setPresence|clearPresence|setUserPreferredPresence|
/// clearUserPreferredPresence|setStatusMessage}`: 200 with no body.
pub(crate) fn write(
    shared: &Shared,
    caller: &Caller,
    key: &str,
    operation: &str,
    body: &[u8],
) -> GResult {
    require(caller, WRITE_PERMS)?;
    let id = Uuid::try_parse(key.trim_start_matches('\'')).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("The user id '{key}' is not a valid object id (GUID)."),
        )
    })?;
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|_| refused("The request body is not valid JSON."))?
    };
    let dir = shared.dir.read().expect("dir lock");
    let i = dir
        .by_id
        .get(&id)
        .ok_or_else(|| GraphError::not_found(key))?;
    let user = &dir.tenant.users[*i];
    let now = shared.clock.now();
    let mut book = shared.sessions.lock().expect("sessions lock");
    let sessions = book.entry(id).or_default();
    // Seen before the change, so that the change moves the sequence number.
    sessions.observe(user.presence.as_ref(), now);
    match operation {
        "setpresence" => {
            let session = text(&body, "sessionId");
            if Uuid::try_parse(session).is_err() {
                return Err(refused(
                    "'sessionId' must be the application's id (a GUID).",
                ));
            }
            let pair = documented(
                &APP_COMBINATIONS,
                text(&body, "availability"),
                text(&body, "activity"),
            )
            .ok_or_else(|| {
                refused("This combination of availability and activity is not supported.")
            })?;
            // "If not provided, a default expiration of 5 minutes will be applied. The
            // valid duration range is 5-240 minutes (PT5M to PT4H)" (setPresence page).
            let expires = iso_duration(&body, "expirationDuration")?.unwrap_or(FADE);
            if expires < SignedDuration::from_mins(5) || expires > SignedDuration::from_hours(4) {
                return Err(refused("'expirationDuration' must be from PT5M to PT4H."));
            }
            sessions.set_app(session, pair, expires, now);
        }
        "clearpresence" => {
            let session = text(&body, "sessionId");
            if Uuid::try_parse(session).is_err() {
                return Err(refused(
                    "'sessionId' must be the application's id (a GUID).",
                ));
            }
            // Clearing a session that is not there: the page is silent; 200 (no source).
            sessions.clear_app(session);
        }
        "setuserpreferredpresence" => {
            let pair = documented(
                &PREFERRED_COMBINATIONS,
                text(&body, "availability"),
                text(&body, "activity"),
            )
            .ok_or_else(|| {
                refused("This combination of availability and activity is not supported.")
            })?;
            let expires = iso_duration(&body, "expirationDuration")?
                .unwrap_or_else(|| preferred_default_expiry(pair.0));
            sessions.set_preferred(pair, expires, now);
        }
        "clearuserpreferredpresence" => sessions.clear_preferred(),
        "setstatusmessage" => {
            let m = body.get("statusMessage").cloned().unwrap_or(Value::Null);
            let content = m.pointer("/message/content").and_then(Value::as_str);
            let Some(content) = content else {
                return Err(refused("'statusMessage.message.content' is required."));
            };
            let content_type = m
                .pointer("/message/contentType")
                .and_then(Value::as_str)
                .unwrap_or("text");
            if !["text", "html"].contains(&content_type.to_ascii_lowercase().as_str()) {
                return Err(refused("'contentType' must be text or html."));
            }
            let expiry = match m.get("expiryDateTime").filter(|v| !v.is_null()) {
                None => None,
                Some(e) => Some(expiry_instant(e)?),
            };
            sessions.set_status(StatusMessage {
                content: content.to_string(),
                content_type: content_type.to_ascii_lowercase(),
                published: now,
                expiry,
            });
        }
        _ => return Err(GraphError::unknown_segment(operation)),
    }
    sessions.observe(user.presence.as_ref(), now);
    Ok(StatusCode::OK.into_response())
}

/// A `dateTimeTimeZone` (`{"dateTime": "2026-03-02T17:05:33.2079781", "timeZone": "UTC"}`)
/// as an instant. Time zones by IANA name or `UTC`; Windows names (`Pacific Standard
/// Time`, which Graph also takes) are not known to the emulator.
fn expiry_instant(e: &Value) -> Result<(Timestamp, String, String), GraphError> {
    let date_time = text(e, "dateTime");
    let zone = text(e, "timeZone");
    let bad = || refused("'expiryDateTime' is not a valid dateTimeTimeZone.");
    let civil: jiff::civil::DateTime = date_time.parse().map_err(|_| bad())?;
    let tz = if zone.eq_ignore_ascii_case("UTC") || zone.is_empty() {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::get(zone).map_err(|_| bad())?
    };
    let at = civil.to_zoned(tz).map_err(|_| bad())?.timestamp();
    Ok((at, date_time.to_string(), zone.to_string()))
}
