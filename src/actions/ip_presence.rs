//! What the IP presence actions share: where their configuration comes from, the
//! store they open, and the report types of their outputs.
//!
//! Configuration (ranges, users, settings; `shared/docs/ip-presence.md`) is given
//! inline or as a YAML/JSON file (`config_path`), never both. Actions that work on the
//! store fall back to the configuration the last `sync_ip_presence` kept there, so an
//! administrator's `set_office_presence` needs no copy of it.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Detail, Error, Result};
use ip_presence::{
    AccessEvent, BatchReport, ConfigError, Counts, DiscoveryBlock, EventSource, IpRange, Place,
    PresenceConfig, PresenceError, PresenceEvent, PresenceStore, Settings, SignIn, SignInStatus,
    TrackedUser, UserDayStatus,
};

/// Key of the presence configuration the last sync used, in the store's kv table.
pub const CONFIG_KEY: &str = "ip_presence.config";

/// The configuration fields every IP presence action accepts.
pub struct ConfigSource<'a> {
    pub config_path: Option<&'a str>,
    pub ranges: Option<&'a Vec<IpRange>>,
    pub users: Option<&'a Vec<TrackedUser>>,
    pub settings: Option<&'a Settings>,
}

impl ConfigSource<'_> {
    fn inline_given(&self) -> bool {
        self.ranges.is_some() || self.users.is_some() || self.settings.is_some()
    }

    /// The configuration given in the inputs, if any. Errors point into `/inputs`.
    pub fn load(&self) -> Result<Option<PresenceConfig>> {
        match (self.config_path, self.inline_given()) {
            (Some(_), true) => Err(Error::invalid(
                "/inputs/config_path",
                "give either config_path or ranges/users/settings, not both",
            )),
            (Some(path), false) => PresenceConfig::from_path(Path::new(path))
                .map(Some)
                .map_err(|errors| config_file_error(path, errors)),
            (None, true) => {
                let config = PresenceConfig {
                    ranges: self.ranges.cloned().unwrap_or_default(),
                    users: self.users.cloned().unwrap_or_default(),
                    settings: self.settings.cloned().unwrap_or_default(),
                };
                config
                    .validate()
                    .map_err(|errors| config_errors(errors, "/inputs"))?;
                Ok(Some(config))
            }
            (None, false) => Ok(None),
        }
    }

    /// The configuration of the inputs, else the one kept in the store by the last sync.
    pub fn load_or_kept(&self, store: &PresenceStore) -> Result<PresenceConfig> {
        if let Some(config) = self.load()? {
            return Ok(config);
        }
        let kept = store.get_value(CONFIG_KEY).map_err(store_error)?;
        let Some(text) = kept else {
            return Err(Error::invalid(
                "/inputs/config_path",
                "no configuration: give config_path or ranges/users/settings \
                 (none is kept in the store yet: sync_ip_presence keeps the one it ran with)",
            ));
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::internal(format!("the kept presence configuration is not JSON: {e}"))
        })?;
        PresenceConfig::from_value(value).map_err(|errors| {
            Error::invalid(
                "/inputs/config_path",
                format!(
                    "the configuration kept in the store is no longer valid ({}); give one",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        })
    }
}

/// Config errors (pointers relative to the configuration) placed under `prefix`.
pub fn config_errors(errors: Vec<ConfigError>, prefix: &str) -> Error {
    Error::invalid_details(
        errors
            .into_iter()
            .map(|e| Detail::new(format!("{prefix}{}", e.pointer), e.message))
            .collect(),
    )
}

/// Errors in a configuration file: at `/inputs/config_path`, naming the place in the file.
fn config_file_error(path: &str, errors: Vec<ConfigError>) -> Error {
    Error::invalid_details(
        errors
            .into_iter()
            .map(|e| {
                let at = if e.pointer.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", e.pointer)
                };
                Detail::new("/inputs/config_path", format!("{path}{at}: {}", e.message))
            })
            .collect(),
    )
}

/// The state dir, which the store-backed actions require.
pub fn require_state_dir(state_dir: Option<&Path>, action: &str) -> Result<PathBuf> {
    state_dir.map(Path::to_path_buf).ok_or_else(|| {
        Error::invalid(
            "",
            format!(
                "{action} keeps presence in the embedded store and needs a state dir \
                 (--state-dir or MSGRAPH_CONNECTOR_STATE_DIR); evaluate_ip_presence works without one"
            ),
        )
    })
}

/// Open the store under the state dir.
pub fn open_store(dir: &Path) -> Result<PresenceStore> {
    PresenceStore::open(dir).map_err(store_error)
}

/// A failure of the engine or store, as the contract's error.
pub fn store_error(e: PresenceError) -> Error {
    match e {
        PresenceError::Config(errors) => config_errors(errors, "/inputs"),
        PresenceError::Input(e) => Error::invalid("/inputs", e.to_string()),
        PresenceError::Invalid(m) => Error::invalid("/inputs", m),
        PresenceError::State(m) => Error::invalid("/state", m),
        PresenceError::StateAt { pointer, message } => {
            Error::invalid(format!("/state{pointer}"), message)
        }
        other => Error::internal(other.to_string()),
    }
}

/// Parse a `YYYY-MM-DD` input.
pub fn parse_date(value: Option<&str>, pointer: &str) -> Result<Option<Date>> {
    value
        .map(|s| {
            s.parse::<Date>()
                .map_err(|e| Error::invalid(pointer, format!("is not a date YYYY-MM-DD: {e}")))
        })
        .transpose()
}

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

/// "Now" for the engine: the input, else the clock.
pub fn now_or(input: Option<Timestamp>) -> Timestamp {
    input.unwrap_or_else(Timestamp::now)
}

/// Today in the configuration's default zone.
pub fn today(config: &PresenceConfig, now: Timestamp) -> Date {
    let tz = jiff::tz::TimeZone::get(&config.settings.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    now.to_zoned(tz).date()
}

/// The configuration as the store keeps it.
pub fn keep_config(store: &PresenceStore, config: &PresenceConfig) -> Result<()> {
    let text = serde_json::to_string(config)
        .map_err(|e| Error::internal(format!("configuration does not serialise: {e}")))?;
    store.put_value(CONFIG_KEY, &text).map_err(store_error)
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

    #[test]
    fn inline_config_errors_point_into_the_inputs() {
        let ranges = vec![IpRange {
            name: "HQ".into(),
            cidrs: vec!["10.0.0.0/8".into(), "10.0.0.300/32".into()],
            location: Some("HQ".into()),
            remote: false,
            presence_enabled: true,
            logging_enabled: true,
        }];
        let src = ConfigSource {
            config_path: None,
            ranges: Some(&ranges),
            users: None,
            settings: None,
        };
        let e = src.load().unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/ranges/0/cidrs/1");
    }
}
