//! The rules of ip-presence.md applied to sign-ins, over a [`PresenceBackend`] that keeps
//! the state (in memory, [`super::MemoryState`], or in SQLite, [`super::PresenceStore`]).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::config::{ConfigError, PresenceConfig, PresenceMode, normalise_upn};
use super::ranges::{IpRangeTable, canonical_ip, suggested_block};
use super::signin::{
    SignIn, SignInParseError, for_each_in_array, for_each_json_line, is_json_array,
};
use super::{FxHasher, PresenceError};

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

/// A change of a user's status for one calendar day (see the module doc of
/// [`super`] for what it means under late arrival).
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

/// The earliest and latest millisecond a [`Timestamp`] holds (`Timestamp::MIN/MAX
/// .as_millisecond()`, which is not `const`; a test checks them). Every time the engine
/// keeps is in this range.
pub const MIN_MS: i64 = -377_705_023_201_000;
pub const MAX_MS: i64 = 253_402_207_200_999;

/// Whether `ms` (since the epoch) is a time the engine can keep and report.
#[inline]
pub fn is_valid_ms(ms: i64) -> bool {
    (MIN_MS..=MAX_MS).contains(&ms)
}

/// `ms` as a timestamp, or an error naming it. (Not `Timestamp::from_millisecond`,
/// which refuses the last 999 ms before `Timestamp::MAX` that `as_millisecond` gives:
/// an `at` input of 9999-12-30T22:00:00.999Z would come back as an error.)
pub(crate) fn timestamp_of(ms: i64) -> Result<Timestamp, PresenceError> {
    let nanos = (ms.rem_euclid(1000) * 1_000_000) as i32;
    Timestamp::new(ms.div_euclid(1000), nanos).map_err(|_| PresenceError::Time(ms))
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

/// A user as the engine passes it to a backend: the index in the configuration (valid
/// between [`PresenceBackend::begin`] calls) and the normalised UPN.
#[derive(Debug, Clone, Copy)]
pub struct UserRef<'a> {
    pub ix: u32,
    pub key: &'a str,
}

/// A matched range as passed to a backend.
#[derive(Debug, Clone, Copy)]
pub struct RangeRef<'a> {
    pub ix: u32,
    pub name: &'a str,
    pub place: &'a Place,
}

/// Where the engine keeps its state. All calls of one batch happen between `begin` and
/// `recompute`; the store wraps them in one transaction.
pub trait PresenceBackend {
    /// Start a batch; indices in [`UserRef`]/[`RangeRef`] are valid until the next `begin`.
    fn begin(&mut self) -> Result<(), PresenceError> {
        Ok(())
    }
    /// The in-memory state, which [`PresenceEngine::process_file`] can split by user
    /// across threads.
    fn as_memory(&mut self) -> Option<&mut super::MemoryState> {
        None
    }
    /// End a batch: keep its changes (`ok`) or drop them.
    fn end(&mut self, ok: bool) -> Result<(), PresenceError> {
        let _ = ok;
        Ok(())
    }
    /// Record a sign-in id (of `user` on `date`; `hash` is [`super::id_hash`] of `id`);
    /// false when it was already seen.
    fn first_seen(
        &mut self,
        user: UserRef<'_>,
        id: &str,
        hash: u64,
        date: Date,
    ) -> Result<bool, PresenceError>;
    /// Record an access event; false when (user, ip, date) was already recorded.
    fn log_access(
        &mut self,
        user: UserRef<'_>,
        ip: IpAddr,
        date: Date,
    ) -> Result<bool, PresenceError>;
    /// Record that the user was seen at the range's place at `at_ms` on `date`.
    fn observe(
        &mut self,
        user: UserRef<'_>,
        date: Date,
        at_ms: i64,
        range: RangeRef<'_>,
    ) -> Result<(), PresenceError>;
    /// Count an unmatched address toward the discovery report.
    fn discover(
        &mut self,
        block: IpNet,
        ip: IpAddr,
        user: UserRef<'_>,
        date: Date,
    ) -> Result<(), PresenceError>;
    /// Record a manual change.
    fn add_override(&mut self, user: &str, date: Date, ov: Override) -> Result<(), PresenceError>;
    /// Recompute every user-day touched since `begin`, handing each change to `sink`
    /// (one at a time, so a large batch never holds them all twice).
    fn recompute(&mut self, sink: &mut dyn FnMut(DayChange)) -> Result<(), PresenceError>;
    /// Enforce retention (access and presence events) and forget what is older than the
    /// late-arrival window (seen ids, observations, overrides).
    fn prune(
        &mut self,
        today: Date,
        retention_days: u16,
        window_days: u16,
    ) -> Result<(), PresenceError>;
    /// The discovery report, largest blocks first.
    fn discovery(&mut self) -> Result<Vec<DiscoveryBlock>, PresenceError>;
    /// The transitions of one user-day (for queries).
    fn day_transitions(&mut self, user: &str, date: Date)
    -> Result<Vec<Transition>, PresenceError>;
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

/// Options of one run.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOptions {
    /// "Now": defines today (UTC) for the late-arrival window and retention.
    pub now: Timestamp,
    /// Sign-ins whose calendar day is more than this many days before today are too late
    /// to change anything (their day's observations are no longer kept).
    pub late_window_days: u16,
}

impl ProcessOptions {
    pub const DEFAULT_LATE_WINDOW_DAYS: u16 = 2;
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            late_window_days: Self::DEFAULT_LATE_WINDOW_DAYS,
        }
    }
    pub fn today(&self) -> Date {
        self.now.to_zoned(TimeZone::UTC).date()
    }
    fn cutoff(&self) -> Date {
        self.today()
            .checked_sub(jiff::Span::new().days(i64::from(self.late_window_days)))
            .unwrap_or(Date::MIN)
    }
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self::at(Timestamp::now())
    }
}

/// A sign-in that passed the user and failure rules, ready for a backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub at_ms: i64,
    pub user: u32,
    pub date: Date,
    pub ip: IpAddr,
    /// Matched range, `u32::MAX` for none.
    pub range: u32,
    pub id_hash: u64,
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Clone)]
struct UserEntry {
    key: String,
    active: bool,
    mode: PresenceMode,
}

/// Normalised UPN -> user index. Open addressing over 32-byte slots that hold short keys
/// inline, so a lookup reads one cache line; the users' own key strings are scattered
/// over the heap and cost a second miss per sign-in. Longer keys go to a plain map.
#[derive(Debug, Clone)]
struct UserIndex {
    slots: Vec<UserSlot>,
    shift: u32,
    long: FxMap<Box<[u8]>, u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct UserSlot {
    /// 0: empty.
    len: u8,
    ix: u32,
    key: [u8; UserSlot::INLINE],
}

impl UserSlot {
    const INLINE: usize = 27;
}

impl UserIndex {
    fn with_capacity(n: usize) -> Self {
        let bits = (n.max(8) + n / 2).next_power_of_two().trailing_zeros();
        Self {
            slots: vec![UserSlot::default(); 1 << bits],
            shift: 64 - bits,
            long: FxMap::default(),
        }
    }

    #[inline]
    fn hash(key: &[u8]) -> u64 {
        let mut h = key.len() as u64;
        let mut chunks = key.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        h ^ (h >> 29)
    }

    /// Insert or replace.
    fn insert(&mut self, key: &str, ix: u32) {
        let k = key.as_bytes();
        if k.is_empty() || k.len() > UserSlot::INLINE {
            self.long.insert(k.into(), ix);
            return;
        }
        let mask = self.slots.len() - 1;
        let mut i = (Self::hash(k) >> self.shift) as usize;
        loop {
            let s = &mut self.slots[i];
            if s.len == 0 {
                s.len = k.len() as u8;
                s.key[..k.len()].copy_from_slice(k);
                s.ix = ix;
                return;
            }
            if &s.key[..usize::from(s.len)] == k {
                s.ix = ix;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn get(&self, k: &[u8]) -> Option<u32> {
        if k.is_empty() || k.len() > UserSlot::INLINE {
            return self.long.get(k).copied();
        }
        let mask = self.slots.len() - 1;
        let mut i = (Self::hash(k) >> self.shift) as usize;
        loop {
            let s = &self.slots[i];
            if s.len == 0 {
                return None;
            }
            if usize::from(s.len) == k.len() && &s.key[..k.len()] == k {
                return Some(s.ix);
            }
            i = (i + 1) & mask;
        }
    }
}

/// The engine: a validated configuration compiled for fast lookups.
#[derive(Debug, Clone)]
pub struct PresenceEngine {
    config: PresenceConfig,
    table: IpRangeTable,
    users: Vec<UserEntry>,
    by_upn: UserIndex,
    /// Per user: the position of its key in sorted order (to sort by key without strings).
    user_rank: Vec<u32>,
    /// Per range: the place a match means, when the range has presence on.
    places: Vec<Option<Place>>,
    /// Per range: the zone its calendar day is computed in.
    zones: Vec<Zone>,
    default_zone: Zone,
    locations: Vec<String>,
}

#[derive(Debug, Clone)]
enum Zone {
    Utc,
    Tz(TimeZone),
}

impl Zone {
    fn new(tz: TimeZone) -> Self {
        if tz.iana_name() == Some("UTC") || tz == TimeZone::UTC {
            Zone::Utc
        } else {
            Zone::Tz(tz)
        }
    }
    #[inline]
    fn date(&self, at_ms: i64) -> Date {
        let secs = at_ms.div_euclid(1000);
        let local = match self {
            Zone::Utc => secs,
            Zone::Tz(tz) => {
                let ts = Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH);
                secs + i64::from(tz.to_offset(ts).seconds())
            }
        };
        date_from_days(local.div_euclid(86_400))
    }
}

/// Civil date of a day count since 1970-01-01 (Hinnant's algorithm).
fn date_from_days(z: i64) -> Date {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Date::new(y as i16, m as i8, d as i8).unwrap_or(Date::MIN)
}

pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// `createdDateTime` in milliseconds since the epoch. Graph writes
/// `2024-05-01T09:13:22.1234567Z`; other RFC 3339 forms go through jiff.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z'
    {
        let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
        let (h, mi, se) = (
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        );
        let frac = &b[19..b.len() - 1];
        let ms = match frac {
            [] => 0,
            [b'.', f @ ..] if !f.is_empty() => {
                let mut v = 0;
                for i in 0..3 {
                    let c = f.get(i).copied().unwrap_or(b'0');
                    if !c.is_ascii_digit() {
                        return None;
                    }
                    v = v * 10 + i64::from(c - b'0');
                }
                digits(f)?;
                v
            }
            _ => return None,
        };
        if (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && se < 61 {
            if Date::new(y as i16, mo as i8, d as i8).is_err() {
                return None;
            }
            let days = days_from_civil(y, mo, d);
            let at = ((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms;
            // Years 0000-9999 fit; the last hours of 9999-12-31 are past jiff's range.
            return is_valid_ms(at).then_some(at);
        }
        return None;
    }
    s.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

pub(crate) enum Verdict {
    Discard(fn(&mut Discarded)),
    Candidate(Candidate),
}

impl PresenceEngine {
    /// Compile a configuration; it is validated again here so no unchecked config gets in.
    pub fn new(config: PresenceConfig) -> Result<Self, Vec<ConfigError>> {
        config.validate()?;
        let table = IpRangeTable::new(&config.ranges)?;
        let s = &config.settings;
        let zone_of = |name: &str| Zone::new(TimeZone::get(name).expect("validated"));
        let default_zone = zone_of(&s.time_zone);
        let zones = config
            .ranges
            .iter()
            .map(|r| {
                match r
                    .location
                    .as_ref()
                    .and_then(|l| s.location_time_zones.get(l))
                {
                    Some(tz) => zone_of(tz),
                    None => default_zone.clone(),
                }
            })
            .collect();
        let places = config
            .ranges
            .iter()
            .map(|r| match (&r.location, r.remote) {
                _ if !r.presence_enabled => None,
                (Some(l), false) => Some(Place::Office {
                    location: l.clone(),
                }),
                (None, true) => Some(Place::Remote),
                _ => None,
            })
            .collect();
        let mut users = Vec::with_capacity(config.users.len());
        let mut by_upn = UserIndex::with_capacity(config.users.len());
        for u in &config.users {
            let key = normalise_upn(&u.upn);
            by_upn.insert(&key, users.len() as u32);
            users.push(UserEntry {
                key,
                active: u.active,
                mode: u.mode,
            });
        }
        let mut order: Vec<u32> = (0..users.len() as u32).collect();
        order.sort_unstable_by(|a, b| users[*a as usize].key.cmp(&users[*b as usize].key));
        let mut user_rank = vec![0u32; users.len()];
        for (rank, u) in order.into_iter().enumerate() {
            user_rank[u as usize] = rank as u32;
        }
        let mut locations: Vec<String> = config
            .ranges
            .iter()
            .filter_map(|r| r.location.clone())
            .collect();
        locations.sort();
        locations.dedup();
        Ok(Self {
            config,
            table,
            users,
            by_upn,
            user_rank,
            places,
            zones,
            default_zone,
            locations,
        })
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    pub fn ranges(&self) -> &IpRangeTable {
        &self.table
    }

    /// Known office locations, sorted.
    pub fn locations(&self) -> &[String] {
        &self.locations
    }

    /// The configured mode of a user (by UPN, any case).
    pub fn user_mode(&self, upn: &str) -> Option<PresenceMode> {
        self.lookup_user(upn).map(|ix| self.users[ix as usize].mode)
    }

    #[inline]
    fn lookup_user(&self, upn: &str) -> Option<u32> {
        let b = upn.as_bytes();
        // Already normalised (the usual case): ASCII, no capitals, nothing to trim.
        let plain = match (b.first(), b.last()) {
            (Some(&f), Some(&l)) => {
                !matches!(f, b'\t'..=b'\r' | b' ')
                    && !matches!(l, b'\t'..=b'\r' | b' ')
                    && !b
                        .iter()
                        .fold(false, |a, &c| a | (c >= 0x80) | c.is_ascii_uppercase())
            }
            _ => false,
        };
        if plain {
            self.by_upn.get(b)
        } else {
            self.by_upn.get(normalise_upn(upn).as_bytes())
        }
    }

    /// The calendar day of an instant at a place: the location's zone, else the default.
    pub fn date_at(&self, place: Option<&Place>, at: Timestamp) -> Date {
        let zone = match place {
            Some(Place::Office { location }) => {
                match self.config.settings.location_time_zones.get(location) {
                    Some(tz) => Zone::new(TimeZone::get(tz).expect("validated")),
                    None => self.default_zone.clone(),
                }
            }
            _ => self.default_zone.clone(),
        };
        zone.date(at.as_millisecond())
    }

    /// Steps 1, 2 (lookup) and the failure rule, which need no state.
    pub(crate) fn classify(&self, s: &SignIn<'_>, cutoff: Date) -> Verdict {
        if s.error_code() != 0 && !self.config.settings.count_failed_sign_ins {
            return Verdict::Discard(|d| d.failed += 1);
        }
        let Some(user) = s
            .user_principal_name
            .as_deref()
            .and_then(|u| self.lookup_user(u))
        else {
            return Verdict::Discard(|d| d.unknown_user += 1);
        };
        if !self.users[user as usize].active {
            return Verdict::Discard(|d| d.inactive_user += 1);
        }
        let (Some(id), Some(at_ms), Some(ip)) = (
            s.id.as_deref().filter(|i| !i.is_empty()),
            s.created_date_time.as_deref().and_then(parse_timestamp_ms),
            s.ip_address
                .as_deref()
                .and_then(|i| i.trim().parse::<IpAddr>().ok()),
        ) else {
            return Verdict::Discard(|d| d.malformed += 1);
        };
        let ip = canonical_ip(ip);
        let (range, date) = match self.table.lookup(ip) {
            Some(m) => (m.index, self.zones[m.index as usize].date(at_ms)),
            None if self.config.settings.auto_create => (u32::MAX, self.default_zone.date(at_ms)),
            None => return Verdict::Discard(|d| d.unmatched += 1),
        };
        if date < cutoff {
            return Verdict::Discard(|d| d.too_late += 1);
        }
        Verdict::Candidate(Candidate {
            at_ms,
            user,
            date,
            ip,
            range,
            id_hash: super::id_hash(id),
        })
    }

    /// Steps 2 (discovery) to 4 for one candidate.
    pub(crate) fn apply<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        id: &str,
        c: &Candidate,
        counts: &mut Counts,
        access: &mut Vec<AccessEvent>,
    ) -> Result<(), PresenceError> {
        let u = &self.users[c.user as usize];
        let user = UserRef {
            ix: c.user,
            key: &u.key,
        };
        if !b.first_seen(user, id, c.id_hash, c.date)? {
            counts.discarded.duplicate += 1;
            return Ok(());
        }
        if c.range == u32::MAX {
            b.discover(suggested_block(c.ip), c.ip, user, c.date)?;
            counts.discovered += 1;
            return Ok(());
        }
        counts.matched += 1;
        let range = self.table.range(c.range);
        if self.config.settings.access_logging && range.logging_enabled {
            if b.log_access(user, c.ip, c.date)? {
                counts.access_logged += 1;
                access.push(AccessEvent {
                    user: u.key.clone(),
                    ip: c.ip,
                    date: c.date,
                });
            } else {
                counts.access_already_logged += 1;
            }
        } else {
            counts.access_not_logged += 1;
        }
        match &self.places[c.range as usize] {
            None => counts.presence_not_enabled += 1,
            Some(_) if u.mode == PresenceMode::Off => counts.presence_mode_off += 1,
            Some(place) => {
                counts.presence_observed += 1;
                b.observe(
                    user,
                    c.date,
                    c.at_ms,
                    RangeRef {
                        ix: c.range,
                        name: &range.name,
                        place,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn finish<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        opts: &ProcessOptions,
        mut report: BatchReport,
    ) -> Result<BatchReport, PresenceError> {
        let mut failed = None;
        b.recompute(&mut |ch: DayChange| {
            let r = (|| -> Result<(), PresenceError> {
                for t in ch.emitted {
                    report
                        .presence_events
                        .push(t.into_event(&ch.user, ch.date)?);
                }
                for t in ch.superseded {
                    report
                        .superseded_events
                        .push(t.into_event(&ch.user, ch.date)?);
                }
                report.statuses.push(UserDayStatus {
                    since: ch
                        .status
                        .as_ref()
                        .map(|t| timestamp_of(t.at_ms))
                        .transpose()?,
                    place: ch.status.and_then(|t| t.place),
                    user: ch.user,
                    date: ch.date,
                });
                Ok(())
            })();
            if let Err(e) = r {
                failed.get_or_insert(e);
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        b.prune(
            opts.today(),
            self.config.settings.retention_days,
            opts.late_window_days,
        )?;
        report.access_events.sort_unstable();
        report.presence_events.sort_unstable();
        report.superseded_events.sort_unstable();
        report.statuses.sort_unstable();
        Ok(report)
    }

    /// Process a batch of sign-ins. The backend's state afterwards is the same whatever
    /// the order and batching of the sign-ins (see the module doc).
    pub fn process<'a, B, I>(
        &self,
        b: &mut B,
        sign_ins: I,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError>
    where
        B: PresenceBackend + ?Sized,
        I: IntoIterator<Item = SignIn<'a>>,
    {
        b.begin()?;
        let r = self.process_in(b, sign_ins, opts);
        b.end(r.is_ok())?;
        r
    }

    fn process_in<'a, B, I>(
        &self,
        b: &mut B,
        sign_ins: I,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError>
    where
        B: PresenceBackend + ?Sized,
        I: IntoIterator<Item = SignIn<'a>>,
    {
        let cutoff = opts.cutoff();
        let mut report = BatchReport::default();
        let mut access = Vec::new();
        for s in sign_ins {
            report.counts.received += 1;
            match self.classify(&s, cutoff) {
                Verdict::Discard(f) => f(&mut report.counts.discarded),
                Verdict::Candidate(c) => {
                    let id = s.id.as_deref().unwrap_or_default();
                    self.apply(b, id, &c, &mut report.counts, &mut access)?;
                }
            }
        }
        report.access_events = access;
        self.finish(b, opts, report)
    }

    /// Process a file of sign-ins: a JSON array, or JSON lines read by two threads (each
    /// half of the file, split at a line boundary) that parse and classify while this
    /// thread applies the results. Memory stays bounded: the file is read in blocks.
    pub fn process_file<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        path: &Path,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = [0u8; 256];
        let n = file.read(&mut head)?;
        if is_json_array(&head[..n]) || len < 4 << 20 {
            let mut buf = Vec::with_capacity(len as usize);
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut buf)?;
            let mut sign_ins = Vec::new();
            if is_json_array(&buf) {
                for_each_in_array(&buf, |s| sign_ins.push(s))?;
            } else {
                for_each_json_line(&buf, 0, |s| sign_ins.push(s))?;
            }
            return self.process(b, sign_ins, opts);
        }
        let split = line_boundary(&mut file, len / 2)?;
        b.begin()?;
        let r = match b.as_memory() {
            Some(mem) => self.process_halves_shared(mem, path, split, len, opts),
            None => self.process_halves(b, path, split, len, opts),
        };
        b.end(r.is_ok())?;
        r
    }

    fn process_halves<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        path: &Path,
        split: u64,
        len: u64,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError> {
        let cutoff = opts.cutoff();
        let mut report = BatchReport::default();
        let mut access = Vec::new();
        // Full chunks flow to this thread; emptied ones go back to their reader for reuse,
        // so memory stays flat however large the file.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Chunk)>(4);
        let result: Result<(), PresenceError> = std::thread::scope(|scope| {
            let halves = [(0, split), (split, len)];
            let mut recycle = Vec::new();
            let workers: Vec<_> = halves
                .into_iter()
                .enumerate()
                .map(|(w, (from, to))| {
                    let tx = tx.clone();
                    let (back_tx, back_rx) = std::sync::mpsc::channel::<Chunk>();
                    recycle.push(back_tx);
                    scope.spawn(move || {
                        self.read_part(path, from, to, cutoff, |c| tx.send((w, c)).is_ok(), back_rx)
                    })
                })
                .collect();
            drop(tx);
            let mut applied = Ok(());
            for (w, mut chunk) in rx {
                report.counts.add(&chunk.counts);
                if applied.is_ok() {
                    for (c, off, len) in &chunk.candidates {
                        let id = &chunk.ids[*off as usize..(*off + *len) as usize];
                        if let Err(e) = self.apply(b, id, c, &mut report.counts, &mut access) {
                            applied = Err(e);
                            break;
                        }
                    }
                }
                chunk.clear();
                let _ = recycle[w].send(chunk);
            }
            for w in workers {
                w.join().expect("reader thread panicked")?;
            }
            applied
        });
        result?;
        report.access_events = access;
        self.finish(b, opts, report)
    }

    /// Both threads read, classify and apply their half of the file straight into the
    /// shared books (one lock per user, [`super::memory::SharedBooks`]); nothing is queued
    /// between them. Access events are kept as indices until the report is built.
    fn process_halves_shared(
        &self,
        mem: &mut super::MemoryState,
        path: &Path,
        split: u64,
        len: u64,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError> {
        let cutoff = opts.cutoff();
        mem.prepare_shards(
            self.users
                .iter()
                .enumerate()
                .map(|(i, u)| (i as u32, u.key.as_str())),
            self.places.iter().enumerate().filter_map(|(i, p)| {
                p.as_ref()
                    .map(|p| (i as u32, self.table.range(i as u32).name.as_str(), p))
            }),
        );
        type Out = (Counts, Vec<(u32, IpAddr, Date)>);
        let results: Vec<Result<Out, PresenceError>> = mem.with_shared_books(|shared| {
            std::thread::scope(|scope| {
                let half = move |from: u64, to: u64| {
                    let mut w = shared.writer();
                    let mut counts = Counts::default();
                    let mut failed = None;
                    let r = read_blocks(path, from, to, |block, base| {
                        if failed.is_some() {
                            return Ok(());
                        }
                        for_each_json_line(block, base, |s| {
                            counts.received += 1;
                            match self.classify(&s, cutoff) {
                                Verdict::Discard(f) => f(&mut counts.discarded),
                                Verdict::Candidate(c) => {
                                    if failed.is_none()
                                        && let Err(e) = self.apply_shared(&mut w, &c, &mut counts)
                                    {
                                        failed = Some(e);
                                    }
                                }
                            }
                        })
                    })
                    .and_then(|()| failed.map_or(Ok(()), Err));
                    let access = std::mem::take(&mut w.access);
                    (r.map(|()| (counts, access)), w.finish())
                };
                // The second half on a new thread, the first on this one: what this thread
                // allocates reuses the memory the configuration was parsed in.
                let second = scope.spawn(move || half(split, len));
                let (r0, o0) = half(0, split);
                let (r1, o1) = second.join().expect("reader thread panicked");
                let (results, outcomes) = (vec![r0, r1], vec![o0, o1]);
                (results, outcomes)
            })
        });
        let mut report = BatchReport::default();
        let mut compact = Vec::new();
        for r in results {
            let (counts, mut a) = r?;
            report.counts.add(&counts);
            if compact.is_empty() {
                compact = a;
            } else {
                compact.append(&mut a);
            }
        }
        // Sort by (user key, address, date) on indices, then build the strings once.
        compact.sort_unstable_by_key(|&(u, ip, d)| (self.user_rank[u as usize], ip, d));
        report.access_events = compact
            .into_iter()
            .map(|(u, ip, date)| AccessEvent {
                user: self.users[u as usize].key.clone(),
                ip,
                date,
            })
            .collect();
        self.finish(mem, opts, report)
    }

    /// Steps 2 (discovery) to 4 for one candidate, into shared books: the same rules and
    /// counts as [`Self::apply`].
    #[inline]
    fn apply_shared(
        &self,
        w: &mut super::memory::BookWriter<'_, '_>,
        c: &Candidate,
        counts: &mut Counts,
    ) -> Result<(), PresenceError> {
        use super::memory::Recorded;
        if c.range == u32::MAX {
            if w.discover(c.user, c.id_hash, c.date, suggested_block(c.ip), c.ip) {
                counts.discovered += 1;
            } else {
                counts.discarded.duplicate += 1;
            }
            return Ok(());
        }
        let range = self.table.range(c.range);
        let log = self.config.settings.access_logging && range.logging_enabled;
        let u = &self.users[c.user as usize];
        let place = &self.places[c.range as usize];
        let observe = place.is_some() && u.mode != PresenceMode::Off;
        match w.record(
            c.user,
            c.id_hash,
            c.date,
            log.then_some(c.ip),
            observe.then_some((c.at_ms, c.range)),
        ) {
            Recorded::Duplicate => counts.discarded.duplicate += 1,
            Recorded::Invalid => return Err(super::memory::obs_error()),
            Recorded::New(logged) => {
                counts.matched += 1;
                match logged {
                    Some(true) => counts.access_logged += 1,
                    Some(false) => counts.access_already_logged += 1,
                    None => counts.access_not_logged += 1,
                }
                if place.is_none() {
                    counts.presence_not_enabled += 1;
                } else if observe {
                    counts.presence_observed += 1;
                } else {
                    counts.presence_mode_off += 1;
                }
            }
        }
        Ok(())
    }

    fn read_part(
        &self,
        path: &Path,
        from: u64,
        to: u64,
        cutoff: Date,
        mut send: impl FnMut(Chunk) -> bool,
        back: std::sync::mpsc::Receiver<Chunk>,
    ) -> Result<(), PresenceError> {
        let mut chunk = Chunk::default();
        let mut stopped = false;
        read_blocks(path, from, to, |block, base| {
            if stopped {
                return Ok(());
            }
            for_each_json_line(block, base, |s| {
                chunk.counts.received += 1;
                match self.classify(&s, cutoff) {
                    Verdict::Discard(f) => f(&mut chunk.counts.discarded),
                    Verdict::Candidate(c) => {
                        let id = s.id.as_deref().unwrap_or_default();
                        let off = chunk.ids.len() as u32;
                        chunk.ids.push_str(id);
                        chunk.candidates.push((c, off, id.len() as u32));
                    }
                }
            })?;
            if chunk.candidates.len() >= 16_384 {
                let next = back.try_recv().unwrap_or_default();
                stopped = !send(std::mem::replace(&mut chunk, next));
            }
            Ok(())
        })?;
        if !stopped && chunk.counts.received > 0 {
            send(chunk);
        }
        Ok(())
    }

    /// Apply a manual set (`place: Some`) or clear (`None`) for a user, effective from
    /// `at` until the user's next change that day. `date` defaults to the day of `at`
    /// at the place (the default zone for remote and clear).
    pub fn set_manual<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        upn: &str,
        place: Option<Place>,
        at: Timestamp,
        date: Option<Date>,
        set_by: &str,
    ) -> Result<BatchReport, PresenceError> {
        let ix = self
            .lookup_user(upn)
            .ok_or_else(|| PresenceError::Invalid(format!("unknown user {upn:?}")))?;
        let u = &self.users[ix as usize];
        if u.mode == PresenceMode::Off {
            return Err(PresenceError::Invalid(format!(
                "presence is off for {upn:?}"
            )));
        }
        if let Some(Place::Office { location }) = &place
            && self.locations.binary_search(location).is_err()
        {
            return Err(PresenceError::Invalid(format!(
                "unknown location {location:?}"
            )));
        }
        let date = date.unwrap_or_else(|| self.date_at(place.as_ref(), at));
        b.begin()?;
        let r = b
            .add_override(
                &u.key,
                date,
                Override {
                    at_ms: at.as_millisecond(),
                    place,
                    set_by: set_by.to_owned(),
                },
            )
            .and_then(|()| self.finish(b, &ProcessOptions::at(at), BatchReport::default()));
        b.end(r.is_ok())?;
        r
    }
}

#[derive(Default)]
struct Chunk {
    ids: String,
    candidates: Vec<(Candidate, u32, u32)>,
    counts: Counts,
}

impl Chunk {
    fn clear(&mut self) {
        self.ids.clear();
        self.candidates.clear();
        self.counts = Counts::default();
    }
}

/// Read `from..to` of a file (both at line starts) in blocks of whole lines, handing each
/// block and its file offset to `f`. One buffer, reused: memory stays flat.
fn read_blocks(
    path: &Path,
    from: u64,
    to: u64,
    mut f: impl FnMut(&[u8], u64) -> Result<(), SignInParseError>,
) -> Result<(), PresenceError> {
    const BLOCK: usize = 1 << 20;
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; BLOCK];
    let mut filled = 0usize;
    let mut pos = from; // file offset of buf[0]
    loop {
        let remaining = to - pos - filled as u64;
        let want = (remaining.min((buf.len() - filled) as u64)) as usize;
        let n = if want == 0 {
            0
        } else {
            file.read(&mut buf[filled..filled + want])?
        };
        filled += n;
        let at_end = pos + filled as u64 >= to || n == 0;
        let usable = if at_end {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(k) => k + 1,
                None if filled == buf.len() => {
                    buf.resize(buf.len() * 2, 0); // a line longer than the block
                    continue;
                }
                None => continue,
            }
        };
        f(&buf[..usable], pos)?;
        if at_end {
            return Ok(());
        }
        buf.copy_within(usable..filled, 0);
        filled -= usable;
        pos += usable as u64;
    }
}

/// The first offset at or after `at` that starts a line.
fn line_boundary(file: &mut std::fs::File, at: u64) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(at))?;
    let mut pos = at;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(pos);
        }
        if let Some(k) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(pos + k as u64 + 1);
        }
        pos += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_timestamps_parse_fast_and_agree_with_jiff() {
        for s in [
            "2024-05-01T09:13:22Z",
            "2024-05-01T09:13:22.1234567Z",
            "1999-12-31T23:59:59.9Z",
            "2024-02-29T00:00:00.000Z",
        ] {
            let jiff: Timestamp = s.parse().unwrap();
            assert_eq!(parse_timestamp_ms(s), Some(jiff.as_millisecond()), "{s}");
        }
        assert_eq!(
            parse_timestamp_ms("2024-05-01T11:13:22+02:00"),
            parse_timestamp_ms("2024-05-01T09:13:22Z")
        );
        assert_eq!(parse_timestamp_ms("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        // Past jiff's last instant: not a time the engine can report, so malformed.
        assert_eq!(parse_timestamp_ms("9999-12-31T08:00:00Z"), None);
        assert!(parse_timestamp_ms("0000-01-01T00:00:00Z").is_some());
    }

    #[test]
    fn the_time_range_is_jiffs() {
        assert_eq!(MIN_MS, Timestamp::MIN.as_millisecond());
        assert_eq!(MAX_MS, Timestamp::MAX.as_millisecond());
        for ms in [
            MIN_MS,
            MIN_MS + 1,
            -1,
            0,
            1,
            1_714_554_000_123,
            MAX_MS - 1,
            MAX_MS,
        ] {
            assert_eq!(timestamp_of(ms).unwrap().as_millisecond(), ms);
        }
        assert!(timestamp_of(MIN_MS - 1).is_err() && timestamp_of(MAX_MS + 1).is_err());
        assert!(timestamp_of(i64::MIN).is_err() && timestamp_of(i64::MAX).is_err());
        let last: Timestamp = "9999-12-30T22:00:00.999Z".parse().unwrap();
        assert!(is_valid_ms(last.as_millisecond()));
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

    #[test]
    fn users_are_found_by_upn_in_any_case_and_length() {
        let long = format!("{}@contoso.com", "x".repeat(40));
        let config = PresenceConfig::from_value(serde_json::json!({
            "ranges": [{"name": "hq", "cidrs": ["10.0.0.0/8"], "location": "HQ"}],
            "users": [{"upn": "a@x", "mode": "off"}, {"upn": "Ünïcode@Contoso.com", "mode": "off"}, {"upn": long, "mode": "off"}]
        }))
        .unwrap();
        let e = PresenceEngine::new(config).unwrap();
        assert_eq!(e.lookup_user("a@x"), Some(0));
        assert_eq!(e.lookup_user(" A@X\t"), Some(0));
        assert_eq!(e.lookup_user("ünïcode@contoso.com"), Some(1));
        assert_eq!(e.lookup_user("ÜNÏCODE@CONTOSO.COM"), Some(1));
        assert_eq!(e.lookup_user(&long.to_uppercase()), Some(2));
        assert_eq!(e.lookup_user(&long), Some(2));
        for missing in ["", " ", "b@x", "a@xx", "a@", &long[1..]] {
            assert_eq!(e.lookup_user(missing), None, "{missing:?}");
        }
        let mut ix = UserIndex::with_capacity(1000);
        for i in 0..1000u32 {
            ix.insert(&format!("user{i}@contoso.com"), i);
        }
        for i in 0..1000u32 {
            assert_eq!(ix.get(format!("user{i}@contoso.com").as_bytes()), Some(i));
        }
        assert_eq!(ix.get(b"user1000@contoso.com"), None);
    }

    #[test]
    fn day_numbers_round_trip() {
        for d in [-1000i64, -1, 0, 1, 19_000, 20_000, 60_000] {
            let date = date_from_days(d);
            let y = i64::from(date.year());
            let m = i64::from(date.month());
            assert_eq!(days_from_civil(y, m, i64::from(date.day())), d);
        }
    }
}
