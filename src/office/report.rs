//! What the IP presence actions report, as their outputs show it: events, statuses,
//! counts and suggested ranges, converted from the engine's types; and the five fields
//! of a Graph sign-in record that the rules read.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use ip_presence::{
    AccessEvent, BatchReport, Counts, DiscoveryBlock, EventSource, Place, PresenceEvent, SignIn,
    SignInStatus, UserDayStatus,
};

/// The five fields of a Graph sign-in record, borrowed from it. Fields of the wrong
/// type are left out, so the engine counts the sign-in as malformed.
pub fn sign_in_of(record: &serde_json::Map<String, Value>) -> SignIn<'_> {
    let text = |k: &str| record.get(k).and_then(Value::as_str).map(Into::into);
    SignIn {
        id: text("id"),
        created_date_time: text("createdDateTime"),
        ip_address: text("ipAddress"),
        user_principal_name: text("userPrincipalName"),
        status: record.get("status").map(|s| SignInStatus {
            error_code: s.get("errorCode").and_then(Value::as_i64),
        }),
    }
}

/// Where a user is, as the outputs say it: an office `location`, or `remote: true`, or
/// neither (an administrator cleared the status: the user shows nowhere).
#[derive(Debug, Clone, Default, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Whereabouts {
    /// The office, when the user is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The user is remote.
    pub remote: bool,
}

impl From<Option<&Place>> for Whereabouts {
    fn from(p: Option<&Place>) -> Self {
        match p {
            Some(Place::Office { location }) => Whereabouts {
                location: Some(location.clone()),
                remote: false,
            },
            Some(Place::Remote) => Whereabouts {
                location: None,
                remote: true,
            },
            None => Whereabouts::default(),
        }
    }
}

/// A change of a user's status for a calendar day.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PresenceEventOut {
    pub user: String,
    /// The calendar day (in the zone of the location, else `settings.time_zone`).
    pub date: String,
    /// When it happened: the sign-in's createdDateTime or the time of the manual change.
    pub at: String,
    #[serde(flatten)]
    pub place: Whereabouts,
    /// The range the sign-in matched (sign-in events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// `sign_in` or `manual`.
    pub source: String,
    /// The administrator of a manual change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
}

impl From<&PresenceEvent> for PresenceEventOut {
    fn from(e: &PresenceEvent) -> Self {
        PresenceEventOut {
            user: e.user.clone(),
            date: e.date.to_string(),
            at: e.at.to_string(),
            place: e.place.as_ref().into(),
            range: e.range.clone(),
            source: match e.source {
                EventSource::SignIn => "sign_in",
                EventSource::Manual => "manual",
            }
            .into(),
            set_by: e.set_by.clone(),
        }
    }
}

/// A user's status at the end of a day, as far as known.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StatusOut {
    pub user: String,
    pub date: String,
    #[serde(flatten)]
    pub place: Whereabouts,
    /// Since when (absent when the day has no status, e.g. after a clear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl From<&UserDayStatus> for StatusOut {
    fn from(s: &UserDayStatus) -> Self {
        StatusOut {
            user: s.user.clone(),
            date: s.date.to_string(),
            place: s.place.as_ref().into(),
            since: s.since.map(|t| t.to_string()),
        }
    }
}

/// An IP access event: a user came from an address on a date (never the time).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AccessEventOut {
    pub user: String,
    pub ip: String,
    pub date: String,
}

impl From<&AccessEvent> for AccessEventOut {
    fn from(e: &AccessEvent) -> Self {
        AccessEventOut {
            user: e.user.clone(),
            ip: e.ip.to_string(),
            date: e.date.to_string(),
        }
    }
}

/// A suggested range for addresses in no range (with `settings.auto_create`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiscoveryOut {
    /// The /24 (IPv4) or /48 (IPv6) block.
    pub block: String,
    /// Sign-ins seen from it.
    pub events: u64,
    pub distinct_users: u64,
    pub distinct_addresses: u64,
}

impl From<&DiscoveryBlock> for DiscoveryOut {
    fn from(d: &DiscoveryBlock) -> Self {
        DiscoveryOut {
            block: d.block.to_string(),
            events: d.events,
            distinct_users: d.distinct_users,
            distinct_addresses: d.distinct_addresses,
        }
    }
}

/// Sign-ins that changed nothing, by reason.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct DiscardedOut {
    /// No id, no parsable createdDateTime or no parsable ipAddress.
    pub malformed: u64,
    /// `status.errorCode != 0` and `settings.count_failed_sign_ins` is off.
    pub failed: u64,
    /// Not in `users`.
    pub unknown_user: u64,
    /// In `users` with `active: false`.
    pub inactive_user: u64,
    /// Its calendar day is older than the late-arrival window.
    pub too_late: u64,
    /// Its id was already processed.
    pub duplicate: u64,
    /// Its address is in no range and `settings.auto_create` is off.
    pub unmatched: u64,
}

/// What became of the sign-ins of one run.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct CountsOut {
    pub received: u64,
    pub discarded: DiscardedOut,
    /// In no range, counted toward the discovery report.
    pub discovered: u64,
    /// In a range (and new).
    pub matched: u64,
    /// New IP access events.
    pub access_logged: u64,
    /// Access events already recorded for that user, address and day.
    pub access_already_logged: u64,
    /// Logging is off app-wide or for the range.
    pub access_not_logged: u64,
    /// Fed into the user's presence for the day.
    pub presence_observed: u64,
    /// The range has presence off.
    pub presence_not_enabled: u64,
    /// The user's mode is `off`.
    pub presence_mode_off: u64,
}

impl From<&Counts> for CountsOut {
    fn from(c: &Counts) -> Self {
        let d = &c.discarded;
        CountsOut {
            received: c.received,
            discarded: DiscardedOut {
                malformed: d.malformed,
                failed: d.failed,
                unknown_user: d.unknown_user,
                inactive_user: d.inactive_user,
                too_late: d.too_late,
                duplicate: d.duplicate,
                unmatched: d.unmatched,
            },
            discovered: c.discovered,
            matched: c.matched,
            access_logged: c.access_logged,
            access_already_logged: c.access_already_logged,
            access_not_logged: c.access_not_logged,
            presence_observed: c.presence_observed,
            presence_not_enabled: c.presence_not_enabled,
            presence_mode_off: c.presence_mode_off,
        }
    }
}

/// A batch's presence changes, as the outputs list them.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct PresenceChanges {
    /// Presence events that now hold and did not before, by user, date and time.
    pub presence_events: Vec<PresenceEventOut>,
    /// Events reported earlier that late sign-ins have replaced (drop them).
    pub superseded_events: Vec<PresenceEventOut>,
    /// The resulting status of every user-day the run touched.
    pub statuses: Vec<StatusOut>,
}

impl From<&BatchReport> for PresenceChanges {
    fn from(r: &BatchReport) -> Self {
        PresenceChanges {
            presence_events: r.presence_events.iter().map(Into::into).collect(),
            superseded_events: r.superseded_events.iter().map(Into::into).collect(),
            statuses: r.statuses.iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn graph_records_give_the_five_fields() {
        let r = json!({"id": "1", "createdDateTime": "2024-05-01T09:00:00Z", "ipAddress": "10.0.0.1",
                       "userPrincipalName": "A@b.c", "status": {"errorCode": 50126}, "appId": "x"});
        let s = sign_in_of(r.as_object().unwrap());
        assert_eq!(s.id.as_deref(), Some("1"));
        assert_eq!(s.error_code(), 50126);
        assert_eq!(sign_in_of(json!({"id": 5}).as_object().unwrap()).id, None);
    }
}
