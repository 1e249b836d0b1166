//! The pacer's shared budgets: one per (token URL, client id, API family), reserved
//! atomically by every request of every process sharing the backend.
//!
//! A budget allows `requests` starts in any `window` (the published limit, the window
//! made [`crate::graph::pacing::MARGIN`] longer by the caller). It keeps a ring of the
//! last `requests` reserved start times; request number `k` gets the slot
//! `max(now, slot[k - requests] + window, blocked_until)` and sleeps until it. That is
//! exactly the sliding window the in-process limiter keeps and Graph (and the emulator's
//! throttle) enforce: full throughput, bursts included, and never more than `requests`
//! in a window, whatever the number of processes. Strict spacing (GCRA without burst)
//! would also give no 429, but would spread a 5-request burst of audit-log pages over
//! 8 s that the window lets go at once; GCRA with a burst of `requests` lets the next
//! request go one interval after a full burst, which a sliding window refuses. Slots
//! are reserved in order, so each is at least the one before.
//!
//! A 429's `Retry-After` moves `blocked_until` later ([`block_for`]), so every worker
//! backs off together.
//!
//! - SQLite (`<state-dir>/pacer.sqlite3`): the ring is a blob of little-endian `i64`
//!   microseconds; a reservation reads and writes the row in one `BEGIN IMMEDIATE`
//!   transaction, so processes on this machine take turns. The clock is this machine's.
//! - PostgreSQL: the ring is a row per place (`msgraph_pacer_slot`) and a reservation
//!   is one call of the function `msgraph_pacer_reserve` (one round trip: an
//!   `UPDATE ... RETURNING` of the budget's counter, whose row lock orders concurrent
//!   reservations, then the place's read and write); the clock is the server's
//!   (`clock_timestamp()`), so machines whose clocks differ still agree.
//!
//! A change of limit (another asset's `rate_limits` for the same app) starts the ring
//! afresh.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Backend, Postgres};
use crate::error::{Error, Result};

/// One budget: its key and limit.
#[derive(Debug, Clone)]
pub struct Budget {
    pub key: String,
    pub requests: u32,
    pub window: Duration,
}

impl Budget {
    fn window_us(&self) -> i64 {
        i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX / 4)
    }

    fn requests(&self) -> u32 {
        self.requests.clamp(1, 1_000_000)
    }
}

/// Reserve one start in `budget`; the answer is how long to wait before starting.
pub async fn reserve(backend: &Backend, budget: &Budget) -> Result<Duration> {
    let wait_us = match backend {
        Backend::Embedded(s) => {
            let (s, b) = (s.clone(), budget.clone());
            tokio::task::spawn_blocking(move || s.reserve(&b))
                .await
                .map_err(|e| Error::internal(format!("pacer task failed: {e}")))??
        }
        Backend::Postgres(p) => reserve_postgres(p, budget).await?,
    };
    Ok(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
}

/// Let nobody start a request of `budget` for `wait` (a 429's `Retry-After`).
pub async fn block_for(backend: &Backend, budget: &Budget, wait: Duration) -> Result<()> {
    let wait_us = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX / 4);
    match backend {
        Backend::Embedded(s) => {
            let (s, key) = (s.clone(), budget.key.clone());
            tokio::task::spawn_blocking(move || s.block_for(&key, wait_us))
                .await
                .map_err(|e| Error::internal(format!("pacer task failed: {e}")))?
        }
        Backend::Postgres(p) => {
            let client = p.client().await?;
            client
                .execute(
                    "UPDATE msgraph_pacer_budget
                     SET blocked_until_us = greatest(blocked_until_us, $2 +
                         (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
                     WHERE key = $1",
                    &[&budget.key, &wait_us],
                )
                .await
                .map(drop)
                .map_err(|e| p.failed("record a Retry-After", &e))
        }
    }
}

async fn reserve_postgres(p: &Postgres, budget: &Budget) -> Result<i64> {
    let client = p.client().await?;
    let requests = budget.requests() as i32;
    let window_us = budget.window_us();
    let row = client
        .query_one(
            "SELECT msgraph_pacer_reserve($1, $2, $3)",
            &[&budget.key, &requests, &window_us],
        )
        .await
        .map_err(|e| p.failed("reserve a request in the pacer", &e))?;
    row.get::<_, Option<i64>>(0).ok_or_else(|| {
        Error::state(format!(
            "the pacer budget {} in {} keeps changing limit: workers of one app disagree \
             on its rate_limits",
            budget.key,
            p.shown()
        ))
    })
}

/// The budgets in `<state-dir>/pacer.sqlite3`, opened on first use.
pub struct SqliteBudgets {
    dir: PathBuf,
    path: PathBuf,
    conn: OnceLock<std::result::Result<Mutex<Connection>, String>>,
}

impl SqliteBudgets {
    pub const FILE_NAME: &'static str = "pacer.sqlite3";

    pub fn new(dir: PathBuf) -> Self {
        SqliteBudgets {
            path: dir.join(Self::FILE_NAME),
            dir,
            conn: OnceLock::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_conn<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self
            .conn
            .get_or_init(|| open(&self.dir).map(Mutex::new))
            .as_ref()
            .map_err(|e| {
                Error::local(format!(
                    "cannot open the pacer's store {}: {e} (give a writable --state-dir)",
                    self.path.display()
                ))
            })?;
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
            .map_err(|e| Error::local(format!("cannot {what} in {}: {e}", self.path.display())))
    }

    /// One reservation: microseconds to wait.
    pub fn reserve(&self, budget: &Budget) -> Result<i64> {
        let requests = budget.requests() as usize;
        let window_us = budget.window_us();
        self.with_conn("reserve a request in the pacer", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_us();
            let row: Option<(i64, i64, i64, Vec<u8>, i64)> = tx
                .query_row(
                    "SELECT requests, window_us, seq, slots, blocked_until_us
                     FROM budget WHERE key = ?1",
                    [&budget.key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let (mut seq, mut slots, blocked) = match row {
                Some((n, w, seq, slots, blocked))
                    if n == requests as i64 && w == window_us && slots.len() == requests * 8 =>
                {
                    (seq, slots, blocked)
                }
                Some((.., blocked)) => (0, vec![0; requests * 8], blocked),
                None => (0, vec![0; requests * 8], 0),
            };
            let at = (seq.rem_euclid(requests as i64) as usize) * 8;
            let previous = i64::from_le_bytes(slots[at..at + 8].try_into().expect("8 bytes"));
            let slot = now.max(previous.saturating_add(window_us)).max(blocked);
            slots[at..at + 8].copy_from_slice(&slot.to_le_bytes());
            seq += 1;
            tx.execute(
                "INSERT INTO budget (key, requests, window_us, seq, slots, blocked_until_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET requests = excluded.requests,
                     window_us = excluded.window_us, seq = excluded.seq,
                     slots = excluded.slots, blocked_until_us = excluded.blocked_until_us",
                params![budget.key, requests as i64, window_us, seq, slots, blocked],
            )?;
            tx.commit()?;
            Ok(slot - now)
        })
    }

    fn block_for(&self, key: &str, wait_us: i64) -> Result<()> {
        self.with_conn("record a Retry-After", |conn| {
            conn.execute(
                "UPDATE budget SET blocked_until_us = max(blocked_until_us, ?2) WHERE key = ?1",
                params![key, now_us().saturating_add(wait_us)],
            )
            .map(drop)
        })
    }
}

/// `pacer.sqlite3`, private to its owner like the other stores; WAL and a busy timeout
/// let this machine's processes share it. `user_version` is its schema version.
fn open(dir: &Path) -> std::result::Result<Connection, String> {
    let path = crate::owner_only::create_private(dir, SqliteBudgets::FILE_NAME)
        .map_err(|e| e.to_string())?;
    let conn = Connection::open(&path).map_err(|e| e.to_string())?;
    let setup = || -> rusqlite::Result<i64> {
        ip_presence::sqlite_wal::enable(&conn, Duration::from_secs(10))?;
        // A reservation lost in a power cut costs nothing; no fsync per request.
        conn.pragma_update(None, "synchronous", "OFF")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS budget (
                     key TEXT PRIMARY KEY,
                     requests INTEGER NOT NULL,
                     window_us INTEGER NOT NULL,
                     seq INTEGER NOT NULL,
                     slots BLOB NOT NULL,
                     blocked_until_us INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        Ok(version)
    };
    match setup() {
        Ok(v) if v > 1 => Err(format!(
            "its schema version {v} is newer than this program's 1"
        )),
        Ok(_) => Ok(conn),
        Err(e) => Err(e.to_string()),
    }
}

/// Microseconds since the Unix epoch, by this machine's clock.
pub fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(requests: u32, window_ms: u64) -> Budget {
        Budget {
            key: "k".into(),
            requests,
            window: Duration::from_millis(window_ms),
        }
    }

    /// The ring gives the sliding window: `requests` at once, then each one a window
    /// after the one `requests` before it.
    #[test]
    fn slots_follow_the_sliding_window() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteBudgets::new(dir.path().to_path_buf());
        let b = budget(3, 60_000);
        let waits: Vec<i64> = (0..7).map(|_| s.reserve(&b).unwrap()).collect();
        let minute = 60_000_000;
        for w in &waits[..3] {
            assert!(*w <= 0, "{waits:?}");
        }
        for w in &waits[3..6] {
            assert!((minute - 1_000_000..=minute).contains(w), "{waits:?}");
        }
        assert!((2 * minute - 1_000_000..=2 * minute).contains(&waits[6]));
        // A second handle on the same file (another process) shares the budget.
        let other = SqliteBudgets::new(dir.path().to_path_buf());
        assert!(other.reserve(&b).unwrap() >= 2 * minute - 1_000_000);
        // Another limit starts afresh.
        assert!(other.reserve(&budget(5, 60_000)).unwrap() <= 0);
    }

    #[test]
    fn a_retry_after_holds_everyone_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteBudgets::new(dir.path().to_path_buf());
        let b = budget(100, 1_000);
        assert!(s.reserve(&b).unwrap() <= 0);
        s.block_for("k", 5_000_000).unwrap();
        let other = SqliteBudgets::new(dir.path().to_path_buf());
        let wait = other.reserve(&b).unwrap();
        assert!((4_000_000..=5_000_000).contains(&wait), "{wait}");
    }
}
