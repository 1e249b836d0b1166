//! Publishing presence as an application: the rules Graph enforces on the five
//! presence writes, mirrored so that a bad input is refused (exit 2, its pointer)
//! before any request, and the one POST each of them makes.
//!
//! Sources, one page per write (v1.0):
//! - `setPresence`: <https://learn.microsoft.com/en-us/graph/api/presence-setpresence>:
//!   the supported availability/activity pairs ([`APP_COMBINATIONS`]); `sessionId` is
//!   the application's id; `expirationDuration` ISO 8601, PT5M to PT4H, default PT5M.
//! - `clearPresence`: <https://learn.microsoft.com/en-us/graph/api/presence-clearpresence>:
//!   `{"sessionId"}` of the app's session.
//! - `setUserPreferredPresence`:
//!   <https://learn.microsoft.com/en-us/graph/api/presence-setuserpreferredpresence>: its
//!   own pairs ([`PREFERRED_COMBINATIONS`]); `expirationDuration` optional (default 1 day
//!   for DoNotDisturb and Busy, 7 days otherwise; the page gives no range).
//! - `clearUserPreferredPresence`:
//!   <https://learn.microsoft.com/en-us/graph/api/presence-clearuserpreferredpresence>.
//! - `setStatusMessage`: <https://learn.microsoft.com/en-us/graph/api/presence-setstatusmessage>:
//!   a `presenceStatusMessage` (an `itemBody` and an optional `expiryDateTime`).
//!
//! Each page: application permission `Presence.ReadWrite.All`, success `200 OK` with no
//! body. The setPresence page: Teams clients poll, so a change takes a few minutes to
//! show there ([`TEAMS_DELAY`]).

use jiff::{SignedDuration, Span, SpanRelativeTo};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::graph::{ApiFamily, GraphClient, GraphPath, GraphRequest, GraphResponse};

/// `setPresence`'s supported `availability`/`activity` pairs (its v1.0 page, table
/// "Supported combinations of availability and activity").
pub const APP_COMBINATIONS: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// `setUserPreferredPresence`'s supported pairs (its v1.0 page).
pub const PREFERRED_COMBINATIONS: [(&str, &str); 6] = [
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

/// What every presence write's result repeats (setPresence page: "because the Teams
/// client uses poll mode, it will take a few minutes to update the presence status").
pub const TEAMS_DELAY: &str =
    "Teams clients show the change after a few minutes: they poll for presence.";

/// An ISO 8601 duration as Graph's `Edm.Duration` writes it (`PT5M`, `PT1H30M`, `P1D`).
pub const DURATION_PATTERN: &str = r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$";

/// `setPresence`'s range of `expirationDuration`, inclusive (its page: "The valid
/// duration range is 5-240 minutes (PT5M to PT4H)").
pub const APP_EXPIRATION: (SignedDuration, SignedDuration) =
    (SignedDuration::from_mins(5), SignedDuration::from_hours(4));

/// A duration matching [`DURATION_PATTERN`] as a length of time (a day is 24 hours).
pub fn parse_duration(text: &str, pointer: &str) -> Result<SignedDuration> {
    let bad = || Error::invalid(pointer, "must be an ISO 8601 duration such as PT5M or PT1H");
    if !text.starts_with('P') || text == "P" || text.ends_with('T') {
        return Err(bad());
    }
    let span: Span = text.parse().map_err(|_| bad())?;
    let d = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    if d <= SignedDuration::ZERO {
        return Err(Error::invalid(pointer, "must be longer than zero"));
    }
    Ok(d)
}

/// `setPresence`'s `expirationDuration`, checked against its documented range.
pub fn app_expiration(text: &str, pointer: &str) -> Result<SignedDuration> {
    let d = parse_duration(text, pointer)?;
    let (min, max) = APP_EXPIRATION;
    if d < min || d > max {
        return Err(Error::invalid(
            pointer,
            "must be from PT5M to PT4H (setPresence's documented range)",
        ));
    }
    Ok(d)
}

/// Put a table of pairs into an input schema: `availability` and `activity` each an
/// enum of the values the table names, and one `if`/`then` per availability limiting
/// `activity` to its partners, so that a refusal points at `/activity`.
pub fn pairs_into_schema(schema: &mut schemars::Schema, table: &[(&str, &str)]) {
    let mut availabilities: Vec<&str> = Vec::new();
    let mut activities: Vec<&str> = Vec::new();
    for (av, ac) in table {
        if !availabilities.contains(av) {
            availabilities.push(av);
        }
        if !activities.contains(ac) {
            activities.push(ac);
        }
    }
    let rules: Vec<Value> = availabilities
        .iter()
        .map(|av| {
            let partners: Vec<&str> = table
                .iter()
                .filter(|(a, _)| a == av)
                .map(|(_, c)| *c)
                .collect();
            json!({
                "if": {"properties": {"availability": {"const": av}}, "required": ["availability"]},
                "then": {"properties": {"activity": {"enum": partners}}},
            })
        })
        .collect();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, values) in [("availability", &availabilities), ("activity", &activities)] {
            if let Some(Value::Object(p)) = props.get_mut(name) {
                p.insert("enum".into(), json!(values));
            }
        }
    }
    schema.insert("allOf".into(), Value::Array(rules));
}

/// The session id to publish under: the one given, else the app's client id (the
/// setPresence page: "Provide the ID of the application as sessionId").
pub fn session_id(graph: &GraphClient, given: Option<&str>) -> String {
    given.map_or_else(|| graph.asset().client_id.clone(), str::to_string)
}

/// `POST /users/{id}/presence/{operation}` with `body` (none: no body at all).
pub async fn post(
    graph: &GraphClient,
    user_id: &str,
    operation: &str,
    body: Option<Map<String, Value>>,
) -> Result<GraphResponse> {
    let mut request = GraphRequest::post(
        GraphPath::user(user_id).then("presence").then(operation),
        ApiFamily::Presence,
    );
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .json(Value::Object(body));
    }
    graph.send(request).await
}

/// A `dateTimeTimeZone` in UTC for `at` (Graph's shape: a civil time and a zone name).
pub fn utc_date_time(at: jiff::Timestamp) -> Value {
    let civil = at.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    json!({"dateTime": civil.strftime("%Y-%m-%dT%H:%M:%S").to_string(), "timeZone": "UTC"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_iso_8601_and_set_presence_keeps_to_its_range() {
        assert_eq!(
            parse_duration("PT1H30M", "/d").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_duration("P1D", "/d").unwrap(),
            SignedDuration::from_hours(24)
        );
        for bad in ["", "P", "PT", "5m", "1 hour", "PT-5M", "PT0S", "P1M"] {
            assert!(parse_duration(bad, "/d").is_err(), "{bad}");
        }
        assert!(app_expiration("PT5M", "/d").is_ok());
        assert!(app_expiration("PT4H", "/d").is_ok());
        assert!(app_expiration("PT240M", "/d").is_ok());
        let e = app_expiration("PT4M59S", "/d").unwrap_err();
        assert_eq!(e.details[0].path, "/d");
        assert!(app_expiration("PT4H1S", "/d").is_err());
    }

    #[test]
    fn the_tables_are_the_emulators() {
        // Two copies of Microsoft's tables, one per crate; they must say the same.
        assert_eq!(APP_COMBINATIONS, graph_emulator::APP_COMBINATIONS);
        assert_eq!(
            PREFERRED_COMBINATIONS,
            graph_emulator::PREFERRED_COMBINATIONS
        );
    }
}
