//! The IP presence store in PostgreSQL (issue 17, step 5): the tables of the embedded
//! `presence.sqlite3` ([`ip_presence::PresenceStore`]) as `msgraph_presence_*`, each with
//! a leading `scope` column in its key, so one database serves many tenants. The scope
//! is the caller's string (the asset's token URL and client id); nothing of one scope
//! is read or written by a store of another.
//!
//! The design, in the order a batch meets it:
//!
//! - **A connection of its own** ([`Postgres::own_connection`], durable commits), never
//!   the process's shared one: a batch holds a transaction open across many statements,
//!   and the shared connection's pacer reservations and token-cache locks must never
//!   run inside it.
//! - **Synchronous calls from async code.** The engine's [`PresenceBackend`] is
//!   synchronous and is called inside the sync's async pull, on the runner's
//!   `current_thread` runtime. The connection is driven by a thread of its own (a
//!   one-thread tokio runtime owning the socket, stopped when the store is dropped);
//!   the caller's thread sends each statement through tokio-postgres's client, whose
//!   futures only pass messages to the connection's task over channels and so need no
//!   runtime (read in its source; no document says so, and
//!   `tests/graph/presence_store.rs` runs the store inside a `current_thread` runtime),
//!   and parks until the answer wakes it ([`wait`]). The caller's
//!   runtime is blocked meanwhile, as by the SQLite store's calls; nothing the store
//!   waits for runs there, so it cannot deadlock, and the embedded path is unchanged
//!   (no runtime change; `tokio::task::block_in_place` would have needed a
//!   multi-thread runtime for every PostgreSQL run).
//! - **One batch, one transaction** (`begin` .. `end`), committed or rolled back, as the
//!   SQLite store's `BEGIN IMMEDIATE`. `begin` takes a transaction-scoped advisory lock
//!   on the scope (`pg_advisory_xact_lock(class, hashtext(scope))`; `hashtext` is
//!   PostgreSQL's internal text hash, undocumented but the same for every session of
//!   one server, which is all a lock key needs), so batches of one
//!   scope run one after another whatever machine they come from. That is enough
//!   because every write to a scope happens inside a batch, and under READ COMMITTED
//!   each statement after the lock sees what the batch before it committed: a sign-in
//!   id another worker committed is a duplicate here, and a day is recomputed from all
//!   its observations, never from one worker's half. Two scopes whose hashes collide
//!   are only serialised, never mixed. The two-key form keeps this lock apart from the
//!   one-key locks of migrations and the token cache (the key spaces do not overlap:
//!   <https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS>).
//!   A worker killed mid-batch loses its connection, and PostgreSQL rolls its
//!   transaction back and frees the lock; a stalled one is ended by
//!   `idle_in_transaction_session_timeout`.
//! - **A batch in a handful of round trips.** The store asks the engine for its
//!   sign-ins in bulk ([`PresenceBackend::in_bulk`]): per 5,000 of them one statement
//!   each records their ids (answering which are new), access events, observations and
//!   discoveries, with `unnest()` over arrays; the days they touched are recomputed
//!   2,000 at a time in three reads and three writes, each three sent together, and
//!   `prune`'s seven deletes go together ([`wait_all`]: tokio-postgres pipelines
//!   requests in flight at once and runs them in the order first polled,
//!   <https://docs.rs/tokio-postgres/latest/tokio_postgres/#behavior>). A batch of
//!   10,000 sign-ins costs about two and a half times the SQLite file's time, where one
//!   round trip per call cost 45 times (`docs/benchmarks.md`). Statements are prepared once per store. The one-by-one
//!   methods stay for callers that use them (and are tested through them).
//! - Texts are `COLLATE "C"` (byte order, as SQLite compares) and dates are ISO text
//!   as in the SQLite store (not `DATE`): the same comparisons, ranges and orders as the
//!   embedded store, with no conversion, so both answer alike; a day's recompute and
//!   "who is where" are the same functions of `ip_presence` for both
//!   ([`recompute_day`], [`who_is_where_of`]). Times are BIGINT milliseconds.
//!
//! The ranges configuration the last sync used is not here: it is a named value of
//! the state database (`crate::state`), with the sign-in cursors.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::Date;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, Row, Statement};

use ip_presence::{
    AccessEvent, DayChange, DiscoveryBlock, EventSource, Observation, OccupancyDay, Override,
    Place, PresenceBackend, PresenceEngine, PresenceError, PresenceEvent, RangeRef, SeenSignIn,
    Transition, UserDayStatus, UserPresence, UserRef, WhoIsWhere, is_valid_ms, normalise_upn,
    place_columns, place_from_columns, place_is, prune_cutoffs, recompute_day, who_is_where_of,
};

use super::Postgres;
use super::postgres::describe;
use crate::error::{Error, Result};

/// The first key of the scope's advisory lock ("msgp"); the second is the scope's hash.
const SCOPE_LOCK_CLASS: i32 = 0x6d73_6770;

/// A batch waiting for another worker's batch of its scope gives up after this (the
/// SQLite store's busy timeout is 10 s; a PostgreSQL batch of 10,000 sign-ins takes
/// longer, see docs/benchmarks.md), and a transaction left idle this long (a stalled
/// worker) is ended by the server, its lock freed.
const SESSION_SETTINGS: &str = "SET lock_timeout = '60s';
     SET idle_in_transaction_session_timeout = '60s';";

type Out<T> = std::result::Result<T, PresenceError>;

/// The presence store of one scope in the shared PostgreSQL state.
pub struct SharedPresenceStore {
    client: Client,
    statements: RefCell<HashMap<&'static str, Statement>>,
    scope: String,
    shown: String,
    dirty: HashSet<(String, Date)>,
    in_tx: bool,
    /// Last: dropped after the client, it stops the connection's thread.
    _driver: Driver,
}

impl std::fmt::Debug for SharedPresenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPresenceStore")
            .field("database", &self.shown)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The thread that drives the connection; dropping it stops the thread (and so closes
/// the connection).
struct Driver {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SharedPresenceStore {
    /// Connect (a connection of this store's own, the schema migrated) and serve `scope`.
    /// Fails as the backend does: kind `state`, naming the database without its password.
    pub fn open(pg: Arc<Postgres>, scope: String) -> Result<Self> {
        let shown = pg.shown().to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Client>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("presence-store".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::internal(format!(
                            "cannot start the presence store's connection: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match pg.own_connection().await {
                        Ok(client) => {
                            if ready_tx.send(Ok(client)).is_ok() {
                                let _ = stopped.await;
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
        let driver = Driver {
            stop: Some(stop),
            thread: Some(thread),
        };
        let client = ready_rx.recv().map_err(|_| {
            Error::internal("the presence store's connection thread ended unexpectedly")
        })??;
        let store = SharedPresenceStore {
            client,
            statements: RefCell::new(HashMap::new()),
            scope,
            shown,
            dirty: HashSet::new(),
            in_tx: false,
            _driver: driver,
        };
        wait(store.client.batch_execute(SESSION_SETTINGS)).map_err(|e| {
            Error::state(format!(
                "cannot configure the presence store in the shared state {}: {}",
                store.shown,
                describe(&e)
            ))
        })?;
        Ok(store)
    }

    /// The scope this store serves.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A statement failed: the store's error, naming the database (never its password).
    fn failed(&self, e: &tokio_postgres::Error) -> PresenceError {
        PresenceError::Backend(format!(
            "cannot use the presence store in the shared state {}: {}",
            self.shown,
            describe(e)
        ))
    }

    fn statement(&self, sql: &'static str) -> Out<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = wait(self.client.prepare(sql)).map_err(|e| self.failed(&e))?;
        self.statements.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    fn query(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Out<Vec<Row>> {
        let s = self.statement(sql)?;
        wait(self.client.query(&s, params)).map_err(|e| self.failed(&e))
    }

    fn execute(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Out<u64> {
        let s = self.statement(sql)?;
        wait(self.client.execute(&s, params)).map_err(|e| self.failed(&e))
    }

    /// A column of a row, a type mismatch an error (a changed table), never a panic.
    fn col<'a, T: FromSql<'a>>(&self, row: &'a Row, i: usize) -> Out<T> {
        row.try_get(i).map_err(|e| self.failed(&e))
    }

    /// A kept time, checked: a corrupt row is refused naming the table and row, rather
    /// than failing (or panicking) wherever the time is used.
    fn stored_ms(&self, table: &str, user: &str, date: &str, ms: i64) -> Out<i64> {
        if is_valid_ms(ms) {
            Ok(ms)
        } else {
            Err(PresenceError::Backend(format!(
                "the presence store in the shared state {} is corrupt: {table} of {user} on \
                 {date} has time {ms} ms, which is out of range",
                self.shown
            )))
        }
    }

    fn date_of(&self, text: &str) -> Out<Date> {
        text.parse().map_err(|e| {
            PresenceError::Backend(format!(
                "the presence store in the shared state {} holds a bad date {text:?}: {e}",
                self.shown
            ))
        })
    }

    /// Who is where at the end of `date` (as far as known), optionally at one location.
    pub fn who_is_where(
        &self,
        engine: &PresenceEngine,
        date: Date,
        location: Option<&str>,
        full_view: bool,
    ) -> Out<WhoIsWhere> {
        let rows = self.query(
            "SELECT upn, place_kind, location FROM msgraph_presence_day_status
             WHERE scope = $1 AND date = $2 AND place_kind <> 'cleared' ORDER BY upn",
            &[&self.scope, &date.to_string()],
        )?;
        let statuses = rows
            .iter()
            .map(|r| {
                Ok((
                    self.col::<String>(r, 0)?,
                    place_from_columns(&self.col::<String>(r, 1)?, self.col(r, 2)?),
                ))
            })
            .collect::<Out<Vec<_>>>()?;
        Ok(who_is_where_of(engine, date, location, full_view, statuses))
    }

    /// Distinct users per place per day over `from..=to`, optionally for one location.
    pub fn occupancy(
        &self,
        from: Date,
        to: Date,
        location: Option<&str>,
    ) -> Out<Vec<OccupancyDay>> {
        let rows = self.query(
            "SELECT date, place_kind, location, count(DISTINCT upn) FROM msgraph_presence_events
             WHERE scope = $1 AND date >= $2 AND date <= $3 AND place_kind <> 'cleared'
             GROUP BY date, place_kind, location ORDER BY date, place_kind, location",
            &[&self.scope, &from.to_string(), &to.to_string()],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let Some(place) = place_from_columns(&self.col::<String>(r, 1)?, self.col(r, 2)?)
            else {
                continue;
            };
            if location.is_some_and(|want| !place_is(&place, want)) {
                continue;
            }
            out.push(OccupancyDay {
                date: self.date_of(self.col(r, 0)?)?,
                place,
                users: self.col::<i64>(r, 3)? as u64,
            });
        }
        Ok(out)
    }

    /// A user's end-of-day statuses and presence events over `from..=to`.
    pub fn user_presence(&self, upn: &str, from: Date, to: Date) -> Out<UserPresence> {
        let user = normalise_upn(upn);
        let rows = self.query(
            "SELECT date, place_kind, location, since_ms FROM msgraph_presence_day_status
             WHERE scope = $1 AND upn = $2 AND date >= $3 AND date <= $4 ORDER BY date",
            &[&self.scope, &user, &from.to_string(), &to.to_string()],
        )?;
        let mut days = Vec::new();
        for r in &rows {
            let date: &str = self.col(r, 0)?;
            let since = self
                .col::<Option<i64>>(r, 3)?
                .map(|ms| timestamp(self.stored_ms("day_status", &user, date, ms)?))
                .transpose()?;
            days.push(UserDayStatus {
                user: user.clone(),
                date: self.date_of(date)?,
                place: place_from_columns(&self.col::<String>(r, 1)?, self.col(r, 2)?),
                since,
            });
        }
        let mut events = Vec::new();
        for d in &days {
            for t in self.load_events(&user, d.date)? {
                events.push(t.into_event(&user, d.date)?);
            }
        }
        Ok(UserPresence { user, days, events })
    }

    /// Every presence event of the scope, sorted (for tests and exports).
    pub fn all_presence_events(&self) -> Out<Vec<PresenceEvent>> {
        let rows = self.query(
            "SELECT DISTINCT upn, date FROM msgraph_presence_events WHERE scope = $1",
            &[&self.scope],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let user: String = self.col(r, 0)?;
            let date = self.date_of(self.col(r, 1)?)?;
            for t in self.load_events(&user, date)? {
                out.push(t.into_event(&user, date)?);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every access event of the scope, sorted.
    pub fn all_access_events(&self) -> Out<Vec<AccessEvent>> {
        let rows = self.query(
            "SELECT upn, ip, date FROM msgraph_presence_access_events WHERE scope = $1",
            &[&self.scope],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let ip: &str = self.col(r, 1)?;
            out.push(AccessEvent {
                user: self.col(r, 0)?,
                ip: ip.parse().map_err(|_| {
                    PresenceError::Backend(format!(
                        "the presence store in the shared state {} holds a bad address {ip:?}",
                        self.shown
                    ))
                })?,
                date: self.date_of(self.col(r, 2)?)?,
            });
        }
        out.sort_unstable();
        Ok(out)
    }

    fn load_events(&self, user: &str, date: Date) -> Out<Vec<Transition>> {
        let rows = self.query(LOAD_EVENTS, &[&self.scope, &user, &date.to_string()])?;
        self.transitions_of(user, date, &rows)
    }

    fn transitions_of(&self, user: &str, date: Date, rows: &[Row]) -> Out<Vec<Transition>> {
        let d = date.to_string();
        rows.iter()
            .map(|r| {
                Ok(Transition {
                    at_ms: self.stored_ms("presence_events", user, &d, self.col(r, 0)?)?,
                    place: place_from_columns(&self.col::<String>(r, 1)?, self.col(r, 2)?),
                    range: self.col(r, 3)?,
                    source: if self.col::<&str>(r, 4)? == "manual" {
                        EventSource::Manual
                    } else {
                        EventSource::SignIn
                    },
                    set_by: self.col(r, 5)?,
                })
            })
            .collect()
    }

    /// User-days recomputed together: their observations, overrides and events read in
    /// three statements sent at once, each day recomputed (and handed to `sink`, in
    /// order), then their writes in three statements sent at once: the events of the
    /// days that changed replaced, every day's status kept.
    fn recompute_days(&self, days: &[(String, Date)], sink: &mut dyn FnMut(DayChange)) -> Out<()> {
        let users: Vec<&str> = days.iter().map(|(u, _)| u.as_str()).collect();
        let dates: Vec<String> = days.iter().map(|(_, d)| d.to_string()).collect();
        let (obs_sql, ovs_sql, events_sql) = (
            self.statement(
                r#"SELECT o.upn, o.date, o.at_ms, o.range_name, o.place_kind, o.location
                 FROM msgraph_presence_observations o
                 JOIN unnest($2::text[], $3::text[]) AS k(upn, date)
                   ON o.upn = k.upn COLLATE "C" AND o.date = k.date COLLATE "C"
                 WHERE o.scope = $1"#,
            )?,
            self.statement(
                r#"SELECT o.upn, o.date, o.at_ms, o.set_by, o.place_kind, o.location
                 FROM msgraph_presence_overrides o
                 JOIN unnest($2::text[], $3::text[]) AS k(upn, date)
                   ON o.upn = k.upn COLLATE "C" AND o.date = k.date COLLATE "C"
                 WHERE o.scope = $1"#,
            )?,
            self.statement(
                r#"SELECT e.upn, e.date, e.at_ms, e.place_kind, e.location, e.range_name,
                        e.source, e.set_by
                 FROM msgraph_presence_events e
                 JOIN unnest($2::text[], $3::text[]) AS k(upn, date)
                   ON e.upn = k.upn COLLATE "C" AND e.date = k.date COLLATE "C"
                 WHERE e.scope = $1
                 ORDER BY e.upn, e.date, e.at_ms, e.source, e.range_name NULLS FIRST,
                          e.set_by NULLS FIRST"#,
            )?,
        );
        let key: [&(dyn ToSql + Sync); 3] = [&self.scope, &users, &dates];
        let mut reads = wait_all(vec![
            self.client.query(&obs_sql, &key),
            self.client.query(&ovs_sql, &key),
            self.client.query(&events_sql, &key),
        ])
        .map_err(|e| self.failed(&e))?
        .into_iter();
        let (Some(obs_rows), Some(ovs_rows), Some(event_rows)) =
            (reads.next(), reads.next(), reads.next())
        else {
            return Err(PresenceError::Backend(
                "three reads gave fewer answers".into(),
            ));
        };
        // Each day's rows, by (user, date).
        type Day = (String, String);
        let mut obs: HashMap<Day, Vec<(i64, String, Option<Place>)>> = HashMap::new();
        for r in &obs_rows {
            let (user, date): Day = (self.col(r, 0)?, self.col(r, 1)?);
            let at_ms = self.stored_ms("observations", &user, &date, self.col(r, 2)?)?;
            let place = place_from_columns(&self.col::<String>(r, 4)?, self.col(r, 5)?);
            obs.entry((user, date))
                .or_default()
                .push((at_ms, self.col(r, 3)?, place));
        }
        let mut ovs: HashMap<Day, Vec<Override>> = HashMap::new();
        for r in &ovs_rows {
            let (user, date): Day = (self.col(r, 0)?, self.col(r, 1)?);
            let at_ms = self.stored_ms("overrides", &user, &date, self.col(r, 2)?)?;
            ovs.entry((user, date)).or_default().push(Override {
                at_ms,
                set_by: self.col(r, 3)?,
                place: place_from_columns(&self.col::<String>(r, 4)?, self.col(r, 5)?),
            });
        }
        let mut old: HashMap<Day, Vec<Transition>> = HashMap::new();
        for r in &event_rows {
            let (user, date): Day = (self.col(r, 0)?, self.col(r, 1)?);
            let t = Transition {
                at_ms: self.stored_ms("presence_events", &user, &date, self.col(r, 2)?)?,
                place: place_from_columns(&self.col::<String>(r, 3)?, self.col(r, 4)?),
                range: self.col(r, 5)?,
                source: if self.col::<&str>(r, 6)? == "manual" {
                    EventSource::Manual
                } else {
                    EventSource::SignIn
                },
                set_by: self.col(r, 7)?,
            };
            old.entry((user, date)).or_default().push(t);
        }

        // The writes, as columns.
        let mut replaced: (Vec<&str>, Vec<&str>) = Default::default();
        let mut events = EventColumns::default();
        let mut status = StatusColumns::default();
        for ((user, date), d) in days.iter().zip(&dates) {
            let key = (user.clone(), d.clone());
            let (new, change) = recompute_day(
                user,
                *date,
                obs.get(&key).map_or(&[][..], Vec::as_slice),
                ovs.get(&key).map_or(&[][..], Vec::as_slice),
                old.get(&key).map_or(&[][..], Vec::as_slice),
            );
            if !change.emitted.is_empty() || !change.superseded.is_empty() {
                replaced.0.push(user);
                replaced.1.push(d);
                for t in &new {
                    events.push(user, d, t);
                }
            }
            status.push(user, d, change.status.as_ref());
            sink(change);
        }
        let delete = self.statement(
            r#"DELETE FROM msgraph_presence_events e
             USING unnest($2::text[], $3::text[]) AS k(upn, date)
             WHERE e.scope = $1 AND e.upn = k.upn COLLATE "C" AND e.date = k.date COLLATE "C""#,
        )?;
        let insert = self.statement(
            "INSERT INTO msgraph_presence_events
             (scope, upn, date, at_ms, place_kind, location, range_name, source, set_by)
             SELECT $1, upn, date, at_ms, place_kind, location, range_name, source, set_by
             FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[])
                 AS t(upn, date, at_ms, place_kind, location, range_name, source, set_by)",
        )?;
        let keep_status = self.statement(
            "INSERT INTO msgraph_presence_day_status
             (scope, upn, date, place_kind, location, since_ms)
             SELECT $1, upn, date, place_kind, location, since_ms
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[])
                 AS t(upn, date, place_kind, location, since_ms)
             ON CONFLICT (scope, upn, date) DO UPDATE SET place_kind = excluded.place_kind,
               location = excluded.location, since_ms = excluded.since_ms",
        )?;
        let delete_params: [&(dyn ToSql + Sync); 3] = [&self.scope, &replaced.0, &replaced.1];
        let insert_params: [&(dyn ToSql + Sync); 9] = [
            &self.scope,
            &events.users,
            &events.dates,
            &events.times,
            &events.kinds,
            &events.locations,
            &events.ranges,
            &events.sources,
            &events.set_by,
        ];
        let status_params: [&(dyn ToSql + Sync); 6] = [
            &self.scope,
            &status.users,
            &status.dates,
            &status.kinds,
            &status.locations,
            &status.since,
        ];
        // In this order on the one connection: the old events go before the new come.
        wait_all(vec![
            self.client.execute(&delete, &delete_params),
            self.client.execute(&insert, &insert_params),
            self.client.execute(&keep_status, &status_params),
        ])
        .map_err(|e| self.failed(&e))?;
        Ok(())
    }
}

/// User-days recomputed per round of statements: a few MB of rows at most.
const RECOMPUTE_DAYS: usize = 2_000;

/// The day's events to write, as the columns of one `INSERT .. SELECT FROM unnest`.
#[derive(Default)]
struct EventColumns<'a> {
    users: Vec<&'a str>,
    dates: Vec<&'a str>,
    times: Vec<i64>,
    kinds: Vec<&'static str>,
    locations: Vec<String>,
    ranges: Vec<Option<String>>,
    sources: Vec<&'static str>,
    set_by: Vec<Option<String>>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, user: &'a str, date: &'a str, t: &Transition) {
        let (kind, location) = place_columns(t.place.as_ref());
        self.users.push(user);
        self.dates.push(date);
        self.times.push(t.at_ms);
        self.kinds.push(kind);
        self.locations.push(location.to_owned());
        self.ranges.push(t.range.clone());
        self.sources.push(match t.source {
            EventSource::SignIn => "sign_in",
            EventSource::Manual => "manual",
        });
        self.set_by.push(t.set_by.clone());
    }
}

/// Days' end statuses to keep, as columns.
#[derive(Default)]
struct StatusColumns<'a> {
    users: Vec<&'a str>,
    dates: Vec<&'a str>,
    kinds: Vec<&'static str>,
    locations: Vec<String>,
    since: Vec<Option<i64>>,
}

impl<'a> StatusColumns<'a> {
    fn push(&mut self, user: &'a str, date: &'a str, status: Option<&Transition>) {
        let (kind, location) = place_columns(status.and_then(|t| t.place.as_ref()));
        self.users.push(user);
        self.dates.push(date);
        self.kinds.push(kind);
        self.locations.push(location.to_owned());
        self.since.push(status.map(|t| t.at_ms));
    }
}

const LOAD_EVENTS: &str = "SELECT at_ms, place_kind, location, range_name, source, set_by
     FROM msgraph_presence_events WHERE scope = $1 AND upn = $2 AND date = $3
     ORDER BY at_ms, source, range_name NULLS FIRST, set_by NULLS FIRST";

fn timestamp(ms: i64) -> Out<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|_| PresenceError::Time(ms))
}

impl PresenceBackend for SharedPresenceStore {
    fn begin(&mut self) -> Out<()> {
        if !self.in_tx {
            wait(self.client.batch_execute("BEGIN")).map_err(|e| self.failed(&e))?;
            self.in_tx = true;
            // Batches of one scope, one after another (see the module doc).
            if let Err(e) = self.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&SCOPE_LOCK_CLASS, &self.scope],
            ) {
                let _ = self.end(false);
                return Err(e);
            }
        }
        self.dirty.clear();
        Ok(())
    }

    fn end(&mut self, ok: bool) -> Out<()> {
        if self.in_tx {
            self.in_tx = false;
            self.dirty.clear();
            let sql = if ok { "COMMIT" } else { "ROLLBACK" };
            wait(self.client.batch_execute(sql)).map_err(|e| self.failed(&e))?;
        }
        Ok(())
    }

    fn in_bulk(&self) -> bool {
        true
    }

    fn first_seen_all(&mut self, items: &[SeenSignIn<'_>]) -> Out<Vec<bool>> {
        let mut first = HashSet::with_capacity(items.len());
        let (mut ids, mut dates) = (Vec::new(), Vec::new());
        for s in items {
            if first.insert(s.id) {
                ids.push(s.id);
                dates.push(s.date.to_string());
            }
        }
        let rows = self.query(
            "INSERT INTO msgraph_presence_seen_sign_ins (scope, id, date)
             SELECT $1, id, date FROM unnest($2::text[], $3::text[]) AS t(id, date)
             ON CONFLICT DO NOTHING RETURNING id",
            &[&self.scope, &ids, &dates],
        )?;
        let mut new = rows
            .iter()
            .map(|r| self.col::<String>(r, 0))
            .collect::<Out<HashSet<_>>>()?;
        // New the first time only: the id is taken out of the set once answered.
        Ok(items.iter().map(|s| new.remove(s.id)).collect())
    }

    fn log_access_all(&mut self, items: &[(UserRef<'_>, IpAddr, Date)]) -> Out<Vec<bool>> {
        let keys: Vec<(&str, String, String)> = items
            .iter()
            .map(|(u, ip, date)| (u.key, ip.to_string(), date.to_string()))
            .collect();
        let mut first = HashSet::with_capacity(keys.len());
        let (mut users, mut ips, mut dates) = (Vec::new(), Vec::new(), Vec::new());
        for k in &keys {
            if first.insert(k) {
                users.push(k.0);
                ips.push(k.1.as_str());
                dates.push(k.2.as_str());
            }
        }
        let rows = self.query(
            "INSERT INTO msgraph_presence_access_events (scope, upn, ip, date)
             SELECT $1, upn, ip, date FROM unnest($2::text[], $3::text[], $4::text[])
                 AS t(upn, ip, date)
             ON CONFLICT DO NOTHING RETURNING upn, ip, date",
            &[&self.scope, &users, &ips, &dates],
        )?;
        let mut new = rows
            .iter()
            .map(|r| Ok((self.col::<String>(r, 0)?, self.col(r, 1)?, self.col(r, 2)?)))
            .collect::<Out<HashSet<(String, String, String)>>>()?;
        Ok(keys
            .into_iter()
            .map(|(u, ip, d)| new.remove(&(u.to_owned(), ip, d)))
            .collect())
    }

    fn observe_all(&mut self, items: &[Observation<'_>]) -> Out<()> {
        let rows: Vec<(&str, String, i64, &str, &str, &str)> = items
            .iter()
            .map(|o| {
                let (kind, loc) = place_columns(Some(o.range.place));
                (
                    o.user.key,
                    o.date.to_string(),
                    o.at_ms,
                    o.range.name,
                    kind,
                    loc,
                )
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let users: Vec<&str> = rows.iter().map(|r| r.0).collect();
        let dates: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let ranges: Vec<&str> = rows.iter().map(|r| r.3).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.4).collect();
        let locations: Vec<&str> = rows.iter().map(|r| r.5).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.2).collect();
        let inserted = self.query(
            "INSERT INTO msgraph_presence_observations
             (scope, upn, date, at_ms, range_name, place_kind, location)
             SELECT $1, upn, date, at_ms, range_name, place_kind, location
             FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[])
                 AS t(upn, date, at_ms, range_name, place_kind, location)
             ON CONFLICT DO NOTHING RETURNING upn, date",
            &[
                &self.scope,
                &users,
                &dates,
                &times,
                &ranges,
                &kinds,
                &locations,
            ],
        )?;
        for r in &inserted {
            let date = self.date_of(self.col(r, 1)?)?;
            self.dirty.insert((self.col(r, 0)?, date));
        }
        Ok(())
    }

    fn discover_all(&mut self, items: &[(IpNet, IpAddr, UserRef<'_>, Date)]) -> Out<()> {
        // One row per (block, ip, user): how many times, and the latest date.
        let mut counted: HashMap<(String, String, &str), (i64, Date)> = HashMap::new();
        for &(block, ip, user, date) in items {
            let e = counted
                .entry((block.to_string(), ip.to_string(), user.key))
                .or_insert((0, date));
            e.0 += 1;
            e.1 = e.1.max(date);
        }
        let rows: Vec<_> = counted.iter().collect();
        let blocks: Vec<&str> = rows.iter().map(|(k, _)| k.0.as_str()).collect();
        let ips: Vec<&str> = rows.iter().map(|(k, _)| k.1.as_str()).collect();
        let users: Vec<&str> = rows.iter().map(|(k, _)| k.2).collect();
        let events: Vec<i64> = rows.iter().map(|(_, v)| v.0).collect();
        let dates: Vec<String> = rows.iter().map(|(_, v)| v.1.to_string()).collect();
        self.execute(
            "INSERT INTO msgraph_presence_discovery AS d (scope, block, ip, upn, events, last_date)
             SELECT $1, block, ip, upn, events, last_date
             FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[])
                 AS t(block, ip, upn, events, last_date)
             ON CONFLICT (scope, block, ip, upn) DO UPDATE SET events = d.events + excluded.events,
               last_date = greatest(d.last_date, excluded.last_date)",
            &[&self.scope, &blocks, &ips, &users, &events, &dates],
        )?;
        Ok(())
    }

    fn first_seen(&mut self, _user: UserRef<'_>, id: &str, _hash: u64, date: Date) -> Out<bool> {
        let n = self.execute(
            "INSERT INTO msgraph_presence_seen_sign_ins (scope, id, date) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&self.scope, &id, &date.to_string()],
        )?;
        Ok(n == 1)
    }

    fn log_access(&mut self, user: UserRef<'_>, ip: IpAddr, date: Date) -> Out<bool> {
        let n = self.execute(
            "INSERT INTO msgraph_presence_access_events (scope, upn, ip, date)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&self.scope, &user.key, &ip.to_string(), &date.to_string()],
        )?;
        Ok(n == 1)
    }

    fn observe(
        &mut self,
        user: UserRef<'_>,
        date: Date,
        at_ms: i64,
        range: RangeRef<'_>,
    ) -> Out<()> {
        let (kind, loc) = place_columns(Some(range.place));
        let n = self.execute(
            "INSERT INTO msgraph_presence_observations
             (scope, upn, date, at_ms, range_name, place_kind, location)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &self.scope,
                &user.key,
                &date.to_string(),
                &at_ms,
                &range.name,
                &kind,
                &loc,
            ],
        )?;
        if n == 1 {
            self.dirty.insert((user.key.to_owned(), date));
        }
        Ok(())
    }

    fn discover(&mut self, block: IpNet, ip: IpAddr, user: UserRef<'_>, date: Date) -> Out<()> {
        self.execute(
            "INSERT INTO msgraph_presence_discovery AS d (scope, block, ip, upn, events, last_date)
             VALUES ($1, $2, $3, $4, 1, $5)
             ON CONFLICT (scope, block, ip, upn) DO UPDATE SET events = d.events + 1,
               last_date = greatest(d.last_date, excluded.last_date)",
            &[
                &self.scope,
                &block.to_string(),
                &ip.to_string(),
                &user.key,
                &date.to_string(),
            ],
        )?;
        Ok(())
    }

    fn add_override(&mut self, user: &str, date: Date, ov: Override) -> Out<()> {
        if !is_valid_ms(ov.at_ms) {
            return Err(PresenceError::Time(ov.at_ms));
        }
        let (kind, loc) = place_columns(ov.place.as_ref());
        self.execute(
            "INSERT INTO msgraph_presence_overrides
             (scope, upn, date, at_ms, set_by, place_kind, location)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (scope, upn, date, at_ms, set_by) DO UPDATE SET
               place_kind = excluded.place_kind, location = excluded.location",
            &[
                &self.scope,
                &user,
                &date.to_string(),
                &ov.at_ms,
                &ov.set_by,
                &kind,
                &loc,
            ],
        )?;
        self.dirty.insert((user.to_owned(), date));
        Ok(())
    }

    fn recompute(&mut self, sink: &mut dyn FnMut(DayChange)) -> Out<()> {
        let mut dirty: Vec<(String, Date)> = self.dirty.drain().collect();
        dirty.sort();
        for days in dirty.chunks(RECOMPUTE_DAYS) {
            self.recompute_days(days, sink)?;
        }
        Ok(())
    }

    fn prune(&mut self, today: Date, retention_days: u16, window_days: u16) -> Out<()> {
        let (keep, window) = prune_cutoffs(today, retention_days, window_days);
        let (keep, window) = (keep.to_string(), window.to_string());
        let deletes = [
            (
                "DELETE FROM msgraph_presence_access_events WHERE scope = $1 AND date < $2",
                &keep,
            ),
            (
                "DELETE FROM msgraph_presence_events WHERE scope = $1 AND date < $2",
                &keep,
            ),
            (
                "DELETE FROM msgraph_presence_day_status WHERE scope = $1 AND date < $2",
                &keep,
            ),
            (
                "DELETE FROM msgraph_presence_discovery WHERE scope = $1 AND last_date < $2",
                &keep,
            ),
            (
                "DELETE FROM msgraph_presence_seen_sign_ins WHERE scope = $1 AND date < $2",
                &window,
            ),
            (
                "DELETE FROM msgraph_presence_observations WHERE scope = $1 AND date < $2",
                &window,
            ),
            (
                "DELETE FROM msgraph_presence_overrides WHERE scope = $1 AND date < $2",
                &window,
            ),
        ];
        let statements = deletes
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect::<Out<Vec<_>>>()?;
        let params: Vec<[&(dyn ToSql + Sync); 2]> = deletes
            .iter()
            .map(|(_, cutoff)| [&self.scope as &(dyn ToSql + Sync), *cutoff])
            .collect();
        let runs = statements
            .iter()
            .zip(&params)
            .map(|(s, p)| self.client.execute(s, p))
            .collect();
        wait_all(runs).map_err(|e| self.failed(&e))?;
        Ok(())
    }

    fn discovery(&mut self) -> Out<Vec<DiscoveryBlock>> {
        let rows = self.query(
            "SELECT block, sum(events)::BIGINT, count(DISTINCT upn), count(DISTINCT ip)
             FROM msgraph_presence_discovery WHERE scope = $1
             GROUP BY block ORDER BY sum(events) DESC, block",
            &[&self.scope],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let block: &str = self.col(r, 0)?;
            out.push(DiscoveryBlock {
                block: block.parse().map_err(|_| {
                    PresenceError::Backend(format!(
                        "the presence store in the shared state {} holds a bad block {block:?}",
                        self.shown
                    ))
                })?,
                events: self.col::<i64>(r, 1)? as u64,
                distinct_users: self.col::<i64>(r, 2)? as u64,
                distinct_addresses: self.col::<i64>(r, 3)? as u64,
            });
        }
        Ok(out)
    }

    fn day_transitions(&mut self, user: &str, date: Date) -> Out<Vec<Transition>> {
        self.load_events(user, date)
    }
}

/// Run `futs` together on this thread, polled in order, so their requests are sent in
/// order and pipelined on the one connection (the server runs them in that order); the
/// first failure ends the wait. See [`wait`].
fn wait_all<T, F>(futs: Vec<F>) -> std::result::Result<Vec<T>, tokio_postgres::Error>
where
    F: Future<Output = std::result::Result<T, tokio_postgres::Error>>,
{
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    let waker = this_thread();
    let mut cx = Context::from_waker(&waker);
    loop {
        let mut pending = false;
        for (fut, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_some() {
                continue;
            }
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(v)) => *out = Some(v),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => pending = true,
            }
        }
        if !pending {
            return Ok(outs.into_iter().flatten().collect());
        }
        std::thread::park();
    }
}

/// A waker that unparks this thread.
fn this_thread() -> Waker {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// Run `fut` to its end on this thread, parked while it waits. tokio-postgres's client
/// futures only exchange messages with the connection's task (on the store's own
/// thread), so they need no runtime here, and this may run inside one (see the module
/// doc).
fn wait<F: Future>(fut: F) -> F::Output {
    let waker = this_thread();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
