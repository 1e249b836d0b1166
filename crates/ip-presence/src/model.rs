//! What the engine speaks of: places ([`Place`]), a day's timeline and its changes
//! ([`TimelineItem`], [`transitions`], [`Transition`], [`PresenceEvent`]), manual changes
//! ([`Override`]), and what one batch reports ([`BatchReport`], [`Counts`]) under which
//! options ([`ProcessOptions`]).

use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::calendar::timestamp_of;
use super::error::PresenceError;

/// Where a user is: an office (a location) or remote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Place {
    Office { location: String },
    Remote,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Office { location } => f.write_str(location),
            Place::Remote => f.write_str("Remote"),
        }
    }
}

/// What caused a presence event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    SignIn,
    Manual,
}

/// A change of a user's status for one calendar day (see the crate doc for what it
/// means under late arrival).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PresenceEvent {
    pub user: String,
    pub date: Date,
    /// The `createdDateTime` of the sign-in (or the time of the manual change).
    pub at: Timestamp,
    /// The new status; `None` when an administrator cleared it.
    pub place: Option<Place>,
    /// The range the sign-in matched (sign-in events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    pub source: EventSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
}

/// A day's change without its user and date, as a backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transition {
    pub at_ms: i64,
    pub place: Option<Place>,
    pub range: Option<String>,
    pub source: EventSource,
    pub set_by: Option<String>,
}

impl Transition {
    /// The event of `user` on `date`; an error when `at_ms` is no time jiff can hold
    /// (backends check times where they come in, so this is the last line of defence).
    pub fn into_event(self, user: &str, date: Date) -> Result<PresenceEvent, PresenceError> {
        Ok(PresenceEvent {
            user: user.to_owned(),
            date,
            at: timestamp_of(self.at_ms)?,
            place: self.place,
            range: self.range,
            source: self.source,
            set_by: self.set_by,
        })
    }

    pub fn event(&self, user: &str, date: Date) -> Result<PresenceEvent, PresenceError> {
        self.clone().into_event(user, date)
    }
}

/// One input to a user-day's timeline: a sign-in observation or a manual change.
#[derive(Debug, Clone, Copy)]
pub struct TimelineItem<'a> {
    pub at_ms: i64,
    /// Manual changes sort after sign-ins of the same millisecond.
    pub manual: bool,
    /// Range name (sign-in) or administrator (manual); the last tie-breaker.
    pub key: &'a str,
    /// `None` only for a manual clear.
    pub place: Option<&'a Place>,
}

/// The day's transitions: items in (time, sign-in before manual, key) order, keeping
/// each item that changes the status. The initial status of a day is "nowhere".
pub fn transitions(items: &mut [TimelineItem<'_>]) -> Vec<Transition> {
    items.sort_unstable_by(|a, b| {
        (a.at_ms, a.manual, a.key, a.place).cmp(&(b.at_ms, b.manual, b.key, b.place))
    });
    let mut out = Vec::new();
    let mut status: Option<&Place> = None;
    for it in items.iter() {
        if it.place != status {
            status = it.place;
            out.push(Transition {
                at_ms: it.at_ms,
                place: it.place.cloned(),
                range: (!it.manual).then(|| it.key.to_owned()),
                source: if it.manual {
                    EventSource::Manual
                } else {
                    EventSource::SignIn
                },
                set_by: it.manual.then(|| it.key.to_owned()),
            });
        }
    }
    out
}

/// The difference between a day's old and new transitions.
pub fn diff(old: &[Transition], new: &[Transition]) -> (Vec<Transition>, Vec<Transition>) {
    let emitted = new.iter().filter(|t| !old.contains(t)).cloned().collect();
    let superseded = old.iter().filter(|t| !new.contains(t)).cloned().collect();
    (emitted, superseded)
}

/// A recomputed user-day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayChange {
    pub user: String,
    pub date: Date,
    pub emitted: Vec<Transition>,
    pub superseded: Vec<Transition>,
    /// Status at the end of what is known of the day.
    pub status: Option<Transition>,
}

/// A manual set (`place: Some`) or clear (`None`) by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub at_ms: i64,
    pub place: Option<Place>,
    pub set_by: String,
}

/// A suggested range for unmatched addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryBlock {
    pub block: IpNet,
    pub events: u64,
    pub distinct_users: u64,
    pub distinct_addresses: u64,
}

/// An IP access event: a user came from an address on a date. Date only, never the time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessEvent {
    pub user: String,
    pub ip: IpAddr,
    pub date: Date,
}

/// A user's status at the end of a day (as far as known).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserDayStatus {
    pub user: String,
    pub date: Date,
    pub place: Option<Place>,
    pub since: Option<Timestamp>,
}

/// Why sign-ins were discarded (counts for one batch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    /// No id, no parsable time or no parsable address.
    pub malformed: u64,
    /// `status.errorCode != 0` and failed sign-ins do not count.
    pub failed: u64,
    pub unknown_user: u64,
    pub inactive_user: u64,
    /// Older than the late-arrival window.
    pub too_late: u64,
    /// The id was already processed.
    pub duplicate: u64,
    /// In no range, auto-create off.
    pub unmatched: u64,
}

/// Counts of one batch: what was received, what became of it, and what was discarded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub received: u64,
    pub discarded: Discarded,
    /// In no range, counted toward the discovery report.
    pub discovered: u64,
    /// In a range (and new).
    pub matched: u64,
    pub access_logged: u64,
    pub access_already_logged: u64,
    /// Logging off app-wide or for the range.
    pub access_not_logged: u64,
    /// Fed into the user's presence for the day.
    pub presence_observed: u64,
    /// The range has presence off (or no place).
    pub presence_not_enabled: u64,
    /// The user's mode is `off`.
    pub presence_mode_off: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        let (d, e) = (&mut self.discarded, &o.discarded);
        d.malformed += e.malformed;
        d.failed += e.failed;
        d.unknown_user += e.unknown_user;
        d.inactive_user += e.inactive_user;
        d.too_late += e.too_late;
        d.duplicate += e.duplicate;
        d.unmatched += e.unmatched;
        self.received += o.received;
        self.discovered += o.discovered;
        self.matched += o.matched;
        self.access_logged += o.access_logged;
        self.access_already_logged += o.access_already_logged;
        self.access_not_logged += o.access_not_logged;
        self.presence_observed += o.presence_observed;
        self.presence_not_enabled += o.presence_not_enabled;
        self.presence_mode_off += o.presence_mode_off;
    }
}

/// The outcome of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    pub counts: Counts,
    /// New access events, sorted.
    pub access_events: Vec<AccessEvent>,
    /// Presence events that now hold and did not before, sorted.
    pub presence_events: Vec<PresenceEvent>,
    /// Presence events emitted earlier that late sign-ins have replaced, sorted.
    pub superseded_events: Vec<PresenceEvent>,
    /// Status of every user-day this batch touched.
    pub statuses: Vec<UserDayStatus>,
}

/// Where a batch's events go as they are found, so a large batch never holds them all:
/// the connector's `output_path` writes each as a line. [`BatchReport`] is the sink that
/// collects them (and the engine's `process` sorts them). No order is promised:
/// access events come as the sign-ins are read (from two threads, in chunks), the day's
/// presence events, superseded events and status as each day is recomputed.
pub trait EventSink: Send {
    fn access(&mut self, event: &AccessEvent);
    /// A presence event that now holds (`superseded: false`) or no longer does (`true`).
    fn presence(&mut self, event: &PresenceEvent, superseded: bool);
    fn status(&mut self, status: &UserDayStatus);
    /// Another way into the same place, for one of the engine's threads: what a thread
    /// hands its fork is dealt with (encoded, buffered) on that thread, without waiting
    /// for the other; the fork passes it on at the latest when dropped. `None`, the
    /// default: every thread's events come to this sink, one thread at a time.
    fn fork(&self) -> Option<Box<dyn EventSink>> {
        None
    }
}

impl EventSink for BatchReport {
    fn access(&mut self, event: &AccessEvent) {
        self.access_events.push(event.clone());
    }
    fn presence(&mut self, event: &PresenceEvent, superseded: bool) {
        if superseded {
            self.superseded_events.push(event.clone());
        } else {
            self.presence_events.push(event.clone());
        }
    }
    fn status(&mut self, status: &UserDayStatus) {
        self.statuses.push(status.clone());
    }
}

impl BatchReport {
    /// Sort every list (the order the engine's `process` promises).
    pub fn sort(&mut self) {
        self.access_events.sort_unstable();
        self.presence_events.sort_unstable();
        self.superseded_events.sort_unstable();
        self.statuses.sort_unstable();
    }
}

/// A replay reads this much of a file before it settles the days it has left behind:
/// ~80,000 sign-ins, hours to days of an organisation's; memory holds the late-arrival
/// window plus one block.
pub const REPLAY_BLOCK: u64 = 64 << 20;

/// Options of one run.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOptions {
    /// "Now": defines today (UTC) for the late-arrival window and retention.
    pub now: Timestamp,
    /// Sign-ins whose calendar day is more than this many days before today are too late
    /// to change anything (their day's observations are no longer kept).
    pub late_window_days: u16,
    /// Read a file of sign-ins as a replay of the past (see the crate doc, "Replay"): the
    /// late-arrival window runs from the day the reading has reached instead of from
    /// `now`, and each day is reported and forgotten once the reading is past its window.
    /// Only the engine's `process_file` and its `_to` form read it.
    pub replay: bool,
    /// The bytes a replay reads before it settles days ([`REPLAY_BLOCK`] unless a
    /// test wants many blocks from a small file).
    pub replay_block: u64,
}

impl ProcessOptions {
    pub const DEFAULT_LATE_WINDOW_DAYS: u16 = 2;
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            late_window_days: Self::DEFAULT_LATE_WINDOW_DAYS,
            replay: false,
            replay_block: REPLAY_BLOCK,
        }
    }
    pub fn today(&self) -> Date {
        self.now.to_zoned(TimeZone::UTC).date()
    }
    /// The oldest day a sign-in may still change.
    pub(crate) fn cutoff(&self) -> Date {
        days_before(self.today(), self.late_window_days)
    }
    /// The days a sign-in may still change, oldest and newest (no newest limit: a sign-in
    /// dated after `now` still counts).
    pub(crate) fn accepted(&self) -> (Date, Date) {
        (self.cutoff(), Date::MAX)
    }
}

/// `days` days before `date` (the earliest date when that is before it).
pub(crate) fn days_before(date: Date, days: u16) -> Date {
    date.checked_sub(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(Date::MIN)
}

/// `days` days after `date` (the latest date when that is after it).
pub(crate) fn days_after(date: Date, days: u16) -> Date {
    date.checked_add(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(Date::MAX)
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self::at(Timestamp::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_past_jiffs_range_is_an_error() {
        let t = Transition {
            at_ms: 9_000_000_000_000_000_000,
            place: None,
            range: None,
            source: EventSource::Manual,
            set_by: None,
        };
        let d = Date::constant(2024, 5, 1);
        assert!(matches!(t.event("a", d), Err(PresenceError::Time(_))));
    }
}
