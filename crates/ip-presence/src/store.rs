//! The embedded store: one SQLite file under the state dir.
//!
//! Each batch runs in one `BEGIN IMMEDIATE` transaction, so a crash leaves the store as it
//! was before the batch or after it, never between. WAL mode and a busy timeout let several
//! processes (a scheduled sync and an administrator's override) share the file.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use jiff::civil::Date;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::backend::{PresenceBackend, RangeRef, UserRef};
use super::calendar::{is_valid_ms, timestamp_of};
use super::config::{PresenceMode, normalise_upn};
use super::engine::PresenceEngine;
use super::error::PresenceError;
use super::file::JsonLinesBackend;
use super::model::{
    AccessEvent, DayChange, DiscoveryBlock, EventSource, Override, Place, PresenceEvent,
    TimelineItem, Transition, UserDayStatus, diff, transitions,
};

/// The schema this code writes. Older stores are migrated on open.
pub const SCHEMA_VERSION: u32 = 1;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1
    r#"
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version (version) VALUES (0);
    -- At most one per user, address and day; the date only, never the time.
    CREATE TABLE access_events (
        user TEXT NOT NULL, ip TEXT NOT NULL, date TEXT NOT NULL,
        PRIMARY KEY (user, date, ip)) WITHOUT ROWID;
    CREATE INDEX access_events_by_date ON access_events (date);
    -- Ids already processed, kept for the late-arrival window.
    CREATE TABLE seen_sign_ins (id TEXT PRIMARY KEY, date TEXT NOT NULL) WITHOUT ROWID;
    CREATE INDEX seen_sign_ins_by_date ON seen_sign_ins (date);
    -- What a user-day's timeline is recomputed from: place_kind 'office' | 'remote'.
    CREATE TABLE observations (
        user TEXT NOT NULL, date TEXT NOT NULL, at_ms INTEGER NOT NULL,
        range_name TEXT NOT NULL, place_kind TEXT NOT NULL, location TEXT NOT NULL,
        PRIMARY KEY (user, date, at_ms, range_name, place_kind, location)) WITHOUT ROWID;
    CREATE INDEX observations_by_date ON observations (date);
    -- An administrator's set or clear: place_kind 'office' | 'remote' | 'cleared'.
    CREATE TABLE overrides (
        user TEXT NOT NULL, date TEXT NOT NULL, at_ms INTEGER NOT NULL, set_by TEXT NOT NULL,
        place_kind TEXT NOT NULL, location TEXT NOT NULL,
        PRIMARY KEY (user, date, at_ms, set_by)) WITHOUT ROWID;
    -- The day's transitions (events that no longer hold are deleted).
    CREATE TABLE presence_events (
        user TEXT NOT NULL, date TEXT NOT NULL, at_ms INTEGER NOT NULL,
        place_kind TEXT NOT NULL, location TEXT NOT NULL, range_name TEXT,
        source TEXT NOT NULL, set_by TEXT);
    CREATE INDEX presence_events_by_user ON presence_events (user, date);
    CREATE INDEX presence_events_by_date ON presence_events (date, place_kind, location);
    -- Status at the end of what is known of each user-day.
    CREATE TABLE day_status (
        user TEXT NOT NULL, date TEXT NOT NULL, place_kind TEXT NOT NULL,
        location TEXT NOT NULL, since_ms INTEGER,
        PRIMARY KEY (user, date)) WITHOUT ROWID;
    CREATE INDEX day_status_by_date ON day_status (date);
    -- Unmatched addresses of known users (auto-create), by suggested block.
    CREATE TABLE discovery (
        block TEXT NOT NULL, ip TEXT NOT NULL, user TEXT NOT NULL,
        events INTEGER NOT NULL, last_date TEXT NOT NULL,
        PRIMARY KEY (block, ip, user)) WITHOUT ROWID;
    -- Named values of the first version (sign-in cursors, the kept configuration). Nothing
    -- writes it any more: the connector's state.sqlite3 imports it once when it is created.
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    "#,
];

/// A place as a store's two columns: `place_kind` (`office`, `remote`, or `cleared` for
/// `None`) and `location` (empty unless an office).
pub fn place_columns(p: Option<&Place>) -> (&'static str, &str) {
    match p {
        Some(Place::Office { location }) => ("office", location.as_str()),
        Some(Place::Remote) => ("remote", ""),
        None => ("cleared", ""),
    }
}

/// The place of a store's `place_kind` and `location` columns ([`place_columns`]).
pub fn place_from_columns(kind: &str, location: String) -> Option<Place> {
    match kind {
        "office" => Some(Place::Office { location }),
        "remote" => Some(Place::Remote),
        _ => None,
    }
}

/// Whether `place` is the `location` a query asked for (an office's name, or `Remote`
/// in any case).
pub fn place_is(place: &Place, want: &str) -> bool {
    match place {
        Place::Office { location } => location == want,
        Place::Remote => want.eq_ignore_ascii_case("remote"),
    }
}

/// Who is where, from a store's end-of-day statuses of `date` in user order: grouped by
/// place (offices by name, then Remote), optionally one `location`, users in
/// `track_only` mode counted but named only in the `full_view`. Every store answers
/// with this, so they agree.
pub fn who_is_where_of(
    engine: &PresenceEngine,
    date: Date,
    location: Option<&str>,
    full_view: bool,
    statuses: impl IntoIterator<Item = (String, Option<Place>)>,
) -> WhoIsWhere {
    let mut by_place: BTreeMap<Place, LocationPresence> = BTreeMap::new();
    for (user, place) in statuses {
        let Some(place) = place else {
            continue;
        };
        if location.is_some_and(|want| !place_is(&place, want)) {
            continue;
        }
        let e = by_place
            .entry(place.clone())
            .or_insert_with(|| LocationPresence {
                place,
                count: 0,
                users: Vec::new(),
                hidden: 0,
            });
        e.count += 1;
        if full_view || engine.user_mode(&user) == Some(PresenceMode::TrackAndDisplay) {
            e.users.push(user);
        } else {
            e.hidden += 1;
        }
    }
    WhoIsWhere {
        date,
        locations: by_place.into_values().collect(),
    }
}

/// A user-day recomputed from what a store keeps of it: its observations (time, range,
/// place), overrides and the transitions stored before. The new transitions (what the
/// store keeps from now on) and the change to report. Every store recomputes with this,
/// so they agree.
pub fn recompute_day(
    user: &str,
    date: Date,
    observations: &[(i64, String, Option<Place>)],
    overrides: &[Override],
    old: &[Transition],
) -> (Vec<Transition>, DayChange) {
    let mut items: Vec<TimelineItem<'_>> = observations
        .iter()
        .filter(|o| o.2.is_some())
        .map(|(t, r, p)| TimelineItem {
            at_ms: *t,
            manual: false,
            key: r,
            place: p.as_ref(),
        })
        .chain(overrides.iter().map(|o| TimelineItem {
            at_ms: o.at_ms,
            manual: true,
            key: &o.set_by,
            place: o.place.as_ref(),
        }))
        .collect();
    let new = transitions(&mut items);
    let (emitted, superseded) = diff(old, &new);
    let change = DayChange {
        user: user.to_owned(),
        date,
        emitted,
        superseded,
        status: new.last().cloned(),
    };
    (new, change)
}

fn date_col(d: Date) -> String {
    d.to_string()
}

fn parse_date(s: &str) -> Result<Date, PresenceError> {
    s.parse()
        .map_err(|e| PresenceError::Schema(format!("bad date {s:?} in store: {e}")))
}

fn days_before(d: Date, n: u16) -> Date {
    d.checked_sub(jiff::Span::new().days(i64::from(n)))
        .unwrap_or(Date::MIN)
}

/// What [`PresenceBackend::prune`] keeps: access and presence events, statuses and
/// discovery from the first date, seen ids, observations and overrides from the second
/// (the late-arrival window, never longer than retention).
pub fn prune_cutoffs(today: Date, retention_days: u16, window_days: u16) -> (Date, Date) {
    (
        days_before(today, retention_days),
        days_before(today, window_days.min(retention_days)),
    )
}

/// Who is where on a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoIsWhere {
    pub date: Date,
    pub locations: Vec<LocationPresence>,
}

/// The users at one place (their end-of-day status). Users in `track_only` mode (or no
/// longer in the configuration) are counted in `count` but only named in the full view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationPresence {
    pub place: Place,
    pub count: u64,
    pub users: Vec<String>,
    /// How many of `count` are not named.
    pub hidden: u64,
}

/// How many distinct users were at a place on a day (any presence event there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccupancyDay {
    pub date: Date,
    pub place: Place,
    pub users: u64,
}

/// A user's statuses and events over a date range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub user: String,
    pub days: Vec<UserDayStatus>,
    pub events: Vec<PresenceEvent>,
}

/// The SQLite store.
pub struct PresenceStore {
    conn: Connection,
    path: PathBuf,
    dirty: HashSet<(String, Date)>,
    in_tx: bool,
}

impl std::fmt::Debug for PresenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceStore")
            .field("path", &self.path)
            .finish()
    }
}

impl PresenceStore {
    pub const FILE_NAME: &'static str = "presence.sqlite3";

    /// Open (or create) the store in `state_dir`, migrating it to [`SCHEMA_VERSION`].
    pub fn open(state_dir: &Path) -> Result<Self, PresenceError> {
        // Staff whereabouts and addresses: readable by the owner only, like the
        // token cache.
        let path = crate::owner_only::create_private(state_dir, Self::FILE_NAME)?;
        let conn = Connection::open(&path)?;
        crate::sqlite_wal::enable(&conn, Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut store = Self {
            conn,
            path,
            dirty: HashSet::new(),
            in_tx: false,
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), PresenceError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let has_table: bool = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        let mut version: u32 = if has_table {
            tx.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?
        } else {
            0
        };
        if version > SCHEMA_VERSION {
            return Err(PresenceError::Schema(format!(
                "store schema version {version} is newer than this program's {SCHEMA_VERSION}"
            )));
        }
        while version < SCHEMA_VERSION {
            tx.execute_batch(MIGRATIONS[version as usize])?;
            version += 1;
            tx.execute("UPDATE schema_version SET version = ?1", [version])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<u32, PresenceError> {
        Ok(self
            .conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))?)
    }

    /// Who is where at the end of `date` (as far as known), optionally at one location.
    pub fn who_is_where(
        &self,
        engine: &PresenceEngine,
        date: Date,
        location: Option<&str>,
        full_view: bool,
    ) -> Result<WhoIsWhere, PresenceError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user, place_kind, location FROM day_status
             WHERE date = ?1 AND place_kind != 'cleared' ORDER BY user",
        )?;
        let rows = stmt.query_map([date_col(date)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let statuses = rows
            .map(|row| row.map(|(user, kind, loc)| (user, place_from_columns(&kind, loc))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(who_is_where_of(engine, date, location, full_view, statuses))
    }

    /// Distinct users per place per day over `from..=to` (any presence event there that
    /// day), optionally for one location.
    pub fn occupancy(
        &self,
        from: Date,
        to: Date,
        location: Option<&str>,
    ) -> Result<Vec<OccupancyDay>, PresenceError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT date, place_kind, location, count(DISTINCT user) FROM presence_events
             WHERE date >= ?1 AND date <= ?2 AND place_kind != 'cleared'
             GROUP BY date, place_kind, location ORDER BY date, place_kind, location",
        )?;
        let rows = stmt.query_map(params![date_col(from), date_col(to)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (date, kind, loc, n) = row?;
            let Some(place) = place_from_columns(&kind, loc) else {
                continue;
            };
            if location.is_some_and(|want| !place_is(&place, want)) {
                continue;
            }
            out.push(OccupancyDay {
                date: parse_date(&date)?,
                place,
                users: n as u64,
            });
        }
        Ok(out)
    }

    /// A user's end-of-day statuses and presence events over `from..=to`.
    pub fn user_presence(
        &self,
        upn: &str,
        from: Date,
        to: Date,
    ) -> Result<UserPresence, PresenceError> {
        let user = normalise_upn(upn);
        let mut days = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT date, place_kind, location, since_ms FROM day_status
                 WHERE user = ?1 AND date >= ?2 AND date <= ?3 ORDER BY date",
            )?;
            let rows = stmt.query_map(params![user, date_col(from), date_col(to)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })?;
            for row in rows {
                let (date, kind, loc, since) = row?;
                let since = since
                    .map(|ms| timestamp_of(self.stored_ms("day_status", &user, &date, ms)?))
                    .transpose()?;
                days.push(UserDayStatus {
                    user: user.clone(),
                    date: parse_date(&date)?,
                    place: place_from_columns(&kind, loc),
                    since,
                });
            }
        }
        let mut events = Vec::new();
        for d in &days {
            for t in self.load_events(&user, d.date)? {
                events.push(t.into_event(&user, d.date)?);
            }
        }
        Ok(UserPresence { user, days, events })
    }

    /// Every presence event in the store, sorted (for tests and exports).
    pub fn all_presence_events(&self) -> Result<Vec<PresenceEvent>, PresenceError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT user, date FROM presence_events")?;
        let keys: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (u, d) in keys {
            let date = parse_date(&d)?;
            for t in self.load_events(&u, date)? {
                out.push(t.into_event(&u, date)?);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every access event in the store, sorted.
    pub fn all_access_events(&self) -> Result<Vec<AccessEvent>, PresenceError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user, ip, date FROM access_events ORDER BY user, date, ip")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (user, ip, date) = row?;
            out.push(AccessEvent {
                user,
                ip: ip
                    .parse()
                    .map_err(|_| PresenceError::Schema(format!("bad ip {ip:?} in store")))?,
                date: parse_date(&date)?,
            });
        }
        out.sort_unstable();
        Ok(out)
    }

    /// A time read from `table`, checked: a corrupt row is refused here, naming the file
    /// and the row, rather than failing (or panicking) wherever the time is used.
    fn stored_ms(
        &self,
        table: &str,
        user: &str,
        date: &str,
        ms: i64,
    ) -> Result<i64, PresenceError> {
        if is_valid_ms(ms) {
            Ok(ms)
        } else {
            Err(PresenceError::Schema(format!(
                "{} is corrupt: {table} of {user} on {date} has time {ms} ms, which is out of range",
                self.path.display()
            )))
        }
    }

    fn load_events(&self, user: &str, date: Date) -> Result<Vec<Transition>, PresenceError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, place_kind, location, range_name, source, set_by FROM presence_events
             WHERE user = ?1 AND date = ?2 ORDER BY at_ms, source, range_name, set_by",
        )?;
        let rows = stmt.query_map(params![user, date_col(date)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        let d = date_col(date);
        for row in rows {
            let (at_ms, kind, loc, range, source, set_by) = row?;
            out.push(Transition {
                at_ms: self.stored_ms("presence_events", user, &d, at_ms)?,
                place: place_from_columns(&kind, loc),
                range,
                source: if source == "manual" {
                    EventSource::Manual
                } else {
                    EventSource::SignIn
                },
                set_by,
            });
        }
        Ok(out)
    }

    fn recompute_one(&self, user: &str, date: Date) -> Result<DayChange, PresenceError> {
        let d = date_col(date);
        let mut obs: Vec<(i64, String, Option<Place>)> = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT at_ms, range_name, place_kind, location FROM observations
                 WHERE user = ?1 AND date = ?2",
            )?;
            let rows = stmt.query_map(params![user, d], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            for row in rows {
                let (t, range, kind, loc) = row?;
                let t = self.stored_ms("observations", user, &d, t)?;
                obs.push((t, range, place_from_columns(&kind, loc)));
            }
        }
        let mut ovs: Vec<Override> = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT at_ms, set_by, place_kind, location FROM overrides
                 WHERE user = ?1 AND date = ?2",
            )?;
            let rows = stmt.query_map(params![user, d], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            for row in rows {
                let (at_ms, set_by, kind, loc) = row?;
                ovs.push(Override {
                    at_ms: self.stored_ms("overrides", user, &d, at_ms)?,
                    place: place_from_columns(&kind, loc),
                    set_by,
                });
            }
        }
        let old = self.load_events(user, date)?;
        let (new, change) = recompute_day(user, date, &obs, &ovs, &old);
        if !change.emitted.is_empty() || !change.superseded.is_empty() {
            self.conn.execute(
                "DELETE FROM presence_events WHERE user = ?1 AND date = ?2",
                params![user, d],
            )?;
            let mut ins = self.conn.prepare_cached(
                "INSERT INTO presence_events
                 (user, date, at_ms, place_kind, location, range_name, source, set_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for t in &new {
                let (kind, loc) = place_columns(t.place.as_ref());
                let source = match t.source {
                    EventSource::SignIn => "sign_in",
                    EventSource::Manual => "manual",
                };
                ins.execute(params![
                    user, d, t.at_ms, kind, loc, t.range, source, t.set_by
                ])?;
            }
        }
        let status = change.status.as_ref();
        let (kind, loc) = place_columns(status.and_then(|t| t.place.as_ref()));
        self.conn.execute(
            "INSERT INTO day_status (user, date, place_kind, location, since_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user, date) DO UPDATE SET place_kind = excluded.place_kind,
               location = excluded.location, since_ms = excluded.since_ms",
            params![user, d, kind, loc, status.map(|t| t.at_ms)],
        )?;
        Ok(change)
    }
}

/// A large JSON-lines file is applied on the calling thread, in blocks (the default): one
/// connection, one transaction.
impl JsonLinesBackend for PresenceStore {}

impl PresenceBackend for PresenceStore {
    fn begin(&mut self) -> Result<(), PresenceError> {
        if !self.in_tx {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_tx = true;
        }
        self.dirty.clear();
        Ok(())
    }

    fn end(&mut self, ok: bool) -> Result<(), PresenceError> {
        if self.in_tx {
            self.in_tx = false;
            self.dirty.clear();
            if ok {
                self.conn.execute_batch("COMMIT")?;
            } else {
                self.conn.execute_batch("ROLLBACK")?;
            }
        }
        Ok(())
    }

    fn first_seen(
        &mut self,
        _user: UserRef<'_>,
        id: &str,
        _hash: u64,
        date: Date,
    ) -> Result<bool, PresenceError> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO seen_sign_ins (id, date) VALUES (?1, ?2)")?;
        Ok(stmt.execute(params![id, date_col(date)])? == 1)
    }

    fn log_access(
        &mut self,
        user: UserRef<'_>,
        ip: IpAddr,
        date: Date,
    ) -> Result<bool, PresenceError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO access_events (user, ip, date) VALUES (?1, ?2, ?3)",
        )?;
        Ok(stmt.execute(params![user.key, ip.to_string(), date_col(date)])? == 1)
    }

    fn observe(
        &mut self,
        user: UserRef<'_>,
        date: Date,
        at_ms: i64,
        range: RangeRef<'_>,
    ) -> Result<(), PresenceError> {
        let (kind, loc) = place_columns(Some(range.place));
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO observations
             (user, date, at_ms, range_name, place_kind, location) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        if stmt.execute(params![
            user.key,
            date_col(date),
            at_ms,
            range.name,
            kind,
            loc
        ])? == 1
        {
            self.dirty.insert((user.key.to_owned(), date));
        }
        Ok(())
    }

    fn discover(
        &mut self,
        block: IpNet,
        ip: IpAddr,
        user: UserRef<'_>,
        date: Date,
    ) -> Result<(), PresenceError> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO discovery (block, ip, user, events, last_date) VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (block, ip, user) DO UPDATE SET events = events + 1,
               last_date = max(last_date, excluded.last_date)",
        )?;
        stmt.execute(params![
            block.to_string(),
            ip.to_string(),
            user.key,
            date_col(date)
        ])?;
        Ok(())
    }

    fn add_override(&mut self, user: &str, date: Date, ov: Override) -> Result<(), PresenceError> {
        if !is_valid_ms(ov.at_ms) {
            return Err(PresenceError::Time(ov.at_ms));
        }
        let (kind, loc) = place_columns(ov.place.as_ref());
        self.conn.execute(
            "INSERT INTO overrides (user, date, at_ms, set_by, place_kind, location)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (user, date, at_ms, set_by) DO UPDATE SET
               place_kind = excluded.place_kind, location = excluded.location",
            params![user, date_col(date), ov.at_ms, ov.set_by, kind, loc],
        )?;
        self.dirty.insert((user.to_owned(), date));
        Ok(())
    }

    fn recompute(&mut self, sink: &mut dyn FnMut(DayChange)) -> Result<(), PresenceError> {
        let mut dirty: Vec<(String, Date)> = self.dirty.drain().collect();
        dirty.sort();
        for (u, d) in &dirty {
            sink(self.recompute_one(u, *d)?);
        }
        Ok(())
    }

    fn prune(
        &mut self,
        today: Date,
        retention_days: u16,
        window_days: u16,
    ) -> Result<(), PresenceError> {
        let (keep, window) = prune_cutoffs(today, retention_days, window_days);
        let (keep, window) = (date_col(keep), date_col(window));
        for (table, col, cutoff) in [
            ("access_events", "date", &keep),
            ("presence_events", "date", &keep),
            ("day_status", "date", &keep),
            ("discovery", "last_date", &keep),
            ("seen_sign_ins", "date", &window),
            ("observations", "date", &window),
            ("overrides", "date", &window),
        ] {
            self.conn
                .execute(&format!("DELETE FROM {table} WHERE {col} < ?1"), [cutoff])?;
        }
        Ok(())
    }

    fn discovery(&mut self) -> Result<Vec<DiscoveryBlock>, PresenceError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT block, sum(events), count(DISTINCT user), count(DISTINCT ip)
             FROM discovery GROUP BY block ORDER BY sum(events) DESC, block",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (block, events, users, ips) = row?;
            out.push(DiscoveryBlock {
                block: block
                    .parse()
                    .map_err(|_| PresenceError::Schema(format!("bad block {block:?}")))?,
                events: events as u64,
                distinct_users: users as u64,
                distinct_addresses: ips as u64,
            });
        }
        Ok(out)
    }

    fn day_transitions(
        &mut self,
        user: &str,
        date: Date,
    ) -> Result<Vec<Transition>, PresenceError> {
        self.load_events(user, date)
    }
}
