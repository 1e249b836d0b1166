//! Cursor leases: one run at a time reads with a given sign-in cursor.
//!
//! Two `pull_sign_ins` (or `sync_ip_presence`) runs on one state would each load the
//! same kept cursor and each deliver everything after it (issue 19, item 8). Before a run
//! loads its cursor it takes the cursor's lease: a row `(key, holder, acquired_at,
//! expires_at)` in `state.sqlite3`, or in the shared state's `msgraph_cursor_lease` under
//! the tenant's scope ([`super::shared`], issue 17), keyed by the cursor's own key (one
//! per tenant and token URL, client id and filter for `pull_sign_ins`; the sync's one
//! cursor). Taking it is one statement (an upsert that only replaces a row that has
//! expired or is ours), so two runs cannot both win.
//!
//! A lease lasts [`LEASE_TTL`] and the holder renews it every [`RENEW_EVERY`] while the
//! run lives (a thread on its own SQLite connection; a task on the PostgreSQL
//! connection); a holder killed with `kill -9` stops renewing and its lease is free
//! [`LEASE_TTL`] later at most, or at once when its process is seen to be gone on this
//! machine (the holder id names the pid and the machine; Linux `/proc`). PostgreSQL
//! judges expiry by the server's clock, so machines whose clocks disagree still agree.
//! A run that finds the lease held waits, polling, up to the caller's bound, then gives
//! up ([`Acquired::HeldBy`]); the action says so in a successful result and changes
//! nothing. Before a run keeps its new cursor it checks that it still holds the lease
//! ([`CursorLease::still_held`]): one that stalled past the TTL and was overtaken keeps
//! nothing. A finished run gives its lease up ([`CursorLease::release`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

pub use super::holder::{Acquired, Holder, now_ms};
use super::{SharedState, StateDb, StateStore};
use crate::error::{Error, Result};

/// How long a lease holds without renewal: how long a killed run blocks the cursor.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often a live holder renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(15);
/// How often a waiting run asks again.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// A store that can lease cursors. Times are milliseconds since the Unix epoch, given
/// by the caller so that every store judges expiry by the same clock.
pub trait LeaseStore {
    /// Take the lease on `key` for `holder` until `now_ms + ttl` if nobody holds it, its
    /// holder's time is up, or `holder` holds it already; else say who holds it.
    fn try_acquire(&self, key: &str, holder: &str, now_ms: i64, ttl: Duration) -> Result<Acquired>;
    /// Extend `holder`'s lease on `key` to `now_ms + ttl`; `false` when it is not theirs
    /// any more.
    fn renew(&self, key: &str, holder: &str, now_ms: i64, ttl: Duration) -> Result<bool>;
    /// Give the lease up, if `holder` still holds it.
    fn release(&self, key: &str, holder: &str) -> Result<()>;
    /// Take the lease from `dead`, a holder known to be gone, if it still holds it.
    fn take_over(
        &self,
        key: &str,
        dead: &str,
        holder: &str,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<bool>;
}

/// Whether the holder named `holder` ran on this machine and is gone: a run killed
/// with `kill -9` need not block the cursor for the whole TTL. Linux only (`/proc`);
/// elsewhere, and for a pid that was reused, the TTL decides.
fn holder_is_gone(holder: &str) -> bool {
    let mut words = holder.strip_prefix("pid ").unwrap_or("").split(' ');
    let pid = words.next().and_then(|p| p.parse::<u32>().ok());
    // A holder on another machine (a shared state) is judged by its lease's time alone;
    // one named without a machine was written by an older version, on this one.
    if words.next() == Some("on") && words.next().is_some_and(|h| h != this_host()) {
        return false;
    }
    match pid {
        Some(pid) if Path::new("/proc/self").exists() => {
            !Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn try_acquire_on(
    conn: &Connection,
    key: &str,
    holder: &str,
    now_ms: i64,
    ttl: Duration,
) -> rusqlite::Result<Acquired> {
    // One statement: the row is inserted, or replaced only where the WHERE allows.
    let changed = conn.execute(
        "INSERT INTO cursor_lease (key, holder, acquired_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET
             holder = excluded.holder,
             acquired_at_ms = excluded.acquired_at_ms,
             expires_at_ms = excluded.expires_at_ms
         WHERE cursor_lease.expires_at_ms <= ?3 OR cursor_lease.holder = excluded.holder",
        params![key, holder, now_ms, now_ms.saturating_add(ttl_ms(ttl))],
    )?;
    if changed == 1 {
        return Ok(Acquired::Taken);
    }
    let held = conn
        .query_row(
            "SELECT holder, expires_at_ms FROM cursor_lease WHERE key = ?1",
            [key],
            |r| {
                Ok(Holder {
                    holder: r.get(0)?,
                    expires_at_ms: r.get(1)?,
                })
            },
        )
        .optional()?;
    Ok(match held {
        Some(h) => Acquired::HeldBy(h),
        // Released between the two statements: try again next poll.
        None => Acquired::HeldBy(Holder {
            holder: "another run".into(),
            expires_at_ms: now_ms,
        }),
    })
}

fn renew_on(
    conn: &Connection,
    key: &str,
    holder: &str,
    now_ms: i64,
    ttl: Duration,
) -> rusqlite::Result<bool> {
    conn.execute(
        "UPDATE cursor_lease SET expires_at_ms = ?3 WHERE key = ?1 AND holder = ?2",
        params![key, holder, now_ms.saturating_add(ttl_ms(ttl))],
    )
    .map(|n| n == 1)
}

impl LeaseStore for StateDb {
    fn try_acquire(&self, key: &str, holder: &str, now_ms: i64, ttl: Duration) -> Result<Acquired> {
        try_acquire_on(&self.conn, key, holder, now_ms, ttl)
            .map_err(|e| self.failed("take the cursor lease in", e))
    }

    fn renew(&self, key: &str, holder: &str, now_ms: i64, ttl: Duration) -> Result<bool> {
        renew_on(&self.conn, key, holder, now_ms, ttl)
            .map_err(|e| self.failed("renew the cursor lease in", e))
    }

    fn release(&self, key: &str, holder: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM cursor_lease WHERE key = ?1 AND holder = ?2",
                params![key, holder],
            )
            .map(drop)
            .map_err(|e| self.failed("release the cursor lease in", e))
    }

    fn take_over(
        &self,
        key: &str,
        dead: &str,
        holder: &str,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<bool> {
        self.conn
            .execute(
                "UPDATE cursor_lease SET holder = ?3, acquired_at_ms = ?4, expires_at_ms = ?5
                 WHERE key = ?1 AND holder = ?2",
                params![
                    key,
                    dead,
                    holder,
                    now_ms,
                    now_ms.saturating_add(ttl_ms(ttl))
                ],
            )
            .map(|n| n == 1)
            .map_err(|e| self.failed("take over the cursor lease in", e))
    }
}

/// A held lease on one cursor of a [`StateStore`]: renewed while it lives (by a thread
/// with its own SQLite connection, or a task on the shared connection), given up by
/// [`CursorLease::release`] or, failing that, when dropped.
pub struct CursorLease {
    key: String,
    holder: String,
    /// Where the lease is, for messages.
    place: String,
    lost: Arc<AtomicBool>,
    renewer: Renewer,
}

/// What renews a lease, and how it is given up.
enum Renewer {
    /// A thread on its own connection to `state.sqlite3`.
    Thread {
        path: PathBuf,
        stop: Option<mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// A task on the process's connection to PostgreSQL.
    Task {
        shared: SharedState,
        stop: tokio_util::sync::CancellationToken,
    },
}

impl std::fmt::Debug for CursorLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorLease")
            .field("key", &self.key)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// What [`CursorLease::acquire`] got.
#[derive(Debug)]
pub enum LeaseOutcome {
    Held(CursorLease),
    /// Still held by another run after waiting: what to tell the caller.
    Busy(Holder),
}

/// This run's name in a lease: the process, the machine (a shared state has holders on
/// several) and a random run id.
fn new_holder() -> String {
    format!(
        "pid {} on {} run {}",
        std::process::id(),
        this_host(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// This machine's name (Linux: the kernel's hostname), or `?`.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".into())
}

impl StateStore {
    async fn try_acquire(&self, key: &str, holder: &str) -> Result<Acquired> {
        match self {
            StateStore::Local(db) => db.try_acquire(key, holder, now_ms(), LEASE_TTL),
            StateStore::Shared(s) => s.try_acquire(key, holder, LEASE_TTL).await,
        }
    }

    async fn renew(&self, key: &str, holder: &str) -> Result<bool> {
        match self {
            StateStore::Local(db) => db.renew(key, holder, now_ms(), LEASE_TTL),
            StateStore::Shared(s) => s.renew(key, holder, LEASE_TTL).await,
        }
    }

    async fn take_over(&self, key: &str, dead: &str, holder: &str) -> Result<bool> {
        match self {
            StateStore::Local(db) => db.take_over(key, dead, holder, now_ms(), LEASE_TTL),
            StateStore::Shared(s) => s.take_over(key, dead, holder, LEASE_TTL).await,
        }
    }
}

impl CursorLease {
    /// Take the lease on `key`, waiting up to `wait` while another run holds it.
    pub async fn acquire(store: &StateStore, key: &str, wait: Duration) -> Result<LeaseOutcome> {
        let holder = new_holder();
        let deadline = std::time::Instant::now() + wait;
        loop {
            match store.try_acquire(key, &holder).await? {
                Acquired::Taken => break,
                Acquired::HeldBy(h) => {
                    if holder_is_gone(&h.holder) && store.take_over(key, &h.holder, &holder).await?
                    {
                        tracing::info!(
                            dead = h.holder,
                            "took over the lease of a run that is gone"
                        );
                        break;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Ok(LeaseOutcome::Busy(h));
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        }
        tracing::debug!(key, holder, "took the cursor lease");
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = match store {
            StateStore::Local(db) => {
                let (stop, stopped) = mpsc::channel::<()>();
                let (path, key, holder, lost) = (
                    db.path.clone(),
                    key.to_string(),
                    holder.clone(),
                    lost.clone(),
                );
                let thread = std::thread::Builder::new()
                    .name("cursor-lease".into())
                    .spawn(move || renew_until_stopped(&path, &key, &holder, &lost, &stopped))
                    .map_err(|e| Error::local(format!("cannot start the lease renewal: {e}")))?;
                Renewer::Thread {
                    path: db.path.clone(),
                    stop: Some(stop),
                    thread: Some(thread),
                }
            }
            StateStore::Shared(shared) => {
                let stop = tokio_util::sync::CancellationToken::new();
                let (task_shared, key, holder, lost, stopped) = (
                    shared.clone(),
                    key.to_string(),
                    holder.clone(),
                    lost.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = stopped.cancelled() => return,
                            () = tokio::time::sleep(RENEW_EVERY) => {}
                        }
                        match task_shared.renew(&key, &holder, LEASE_TTL).await {
                            Ok(true) => {}
                            Ok(false) => {
                                lost.store(true, Ordering::SeqCst);
                                return;
                            }
                            Err(e) => {
                                tracing::warn!("cannot renew the cursor lease: {}", e.message)
                            }
                        }
                    }
                });
                Renewer::Task {
                    shared: shared.clone(),
                    stop,
                }
            }
        };
        Ok(LeaseOutcome::Held(CursorLease {
            key: key.to_string(),
            holder,
            place: store.describe(),
            lost,
            renewer,
        }))
    }

    /// Before keeping a new cursor: is the lease still ours? A run that stalled past
    /// [`LEASE_TTL`] may have been overtaken, and must keep nothing.
    pub async fn still_held(&self, store: &StateStore) -> Result<()> {
        let ours =
            !self.lost.load(Ordering::SeqCst) && store.renew(&self.key, &self.holder).await?;
        if ours {
            Ok(())
        } else {
            self.lost.store(true, Ordering::SeqCst);
            Err(Error::local(format!(
                "this run lost the sign-in cursor's lease in {} (it stalled for more than {} s \
                 and another run took over); the cursor was not kept, the next run reads again",
                self.place,
                LEASE_TTL.as_secs()
            )))
        }
    }

    /// Give the lease up now (the next run need not wait for it to run out).
    pub async fn release(self) {
        if let Renewer::Task { shared, stop } = &self.renewer {
            stop.cancel();
            if !self.lost.load(Ordering::SeqCst)
                && let Err(e) = shared.release(&self.key, &self.holder).await
            {
                tracing::warn!("cannot release the cursor lease: {}", e.message);
            }
            // Nothing left for `drop` to do.
            self.lost.store(true, Ordering::SeqCst);
        }
    }

    /// Give up every lease of `leases` (see [`CursorLease::release`]).
    pub async fn release_all(leases: Vec<CursorLease>) {
        for lease in leases {
            lease.release().await;
        }
    }
}

impl Drop for CursorLease {
    fn drop(&mut self) {
        match &mut self.renewer {
            Renewer::Thread { path, stop, thread } => {
                drop(stop.take());
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
                if !self.lost.load(Ordering::SeqCst)
                    && let Ok(conn) = open_conn(path)
                {
                    let _ = conn.execute(
                        "DELETE FROM cursor_lease WHERE key = ?1 AND holder = ?2",
                        params![self.key, self.holder],
                    );
                }
            }
            Renewer::Task { shared, stop } => {
                stop.cancel();
                // Not released by `release` (a run that failed): ask for it on the way
                // out; if the process ends first, the lease runs out after its TTL.
                if !self.lost.load(Ordering::SeqCst)
                    && let Ok(handle) = tokio::runtime::Handle::try_current()
                {
                    let (shared, key, holder) =
                        (shared.clone(), self.key.clone(), self.holder.clone());
                    handle.spawn(async move { shared.release(&key, &holder).await });
                }
            }
        }
    }
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    Ok(conn)
}

fn renew_until_stopped(
    path: &Path,
    key: &str,
    holder: &str,
    lost: &AtomicBool,
    stopped: &mpsc::Receiver<()>,
) {
    let Ok(conn) = open_conn(path) else {
        // Without renewal the lease still holds for its TTL; `still_held` says the rest.
        return;
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RENEW_EVERY) {
        match renew_on(&conn, key, holder, now_ms(), LEASE_TTL) {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // Busy past the timeout: try again next time; the TTL leaves room.
            Err(e) => tracing::warn!("cannot renew the cursor lease: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let ttl = Duration::from_secs(60);
        assert_eq!(
            db.try_acquire("k", "a", 1_000, ttl).unwrap(),
            Acquired::Taken
        );
        // Another holder is refused while it lasts, and told who holds it.
        let held = db.try_acquire("k", "b", 2_000, ttl).unwrap();
        assert_eq!(
            held,
            Acquired::HeldBy(Holder {
                holder: "a".into(),
                expires_at_ms: 61_000
            })
        );
        // Another key is another lease.
        assert_eq!(
            db.try_acquire("k2", "b", 2_000, ttl).unwrap(),
            Acquired::Taken
        );
        // The holder renews; a killed holder's lease expires and is taken over.
        assert!(db.renew("k", "a", 30_000, ttl).unwrap());
        assert!(matches!(
            db.try_acquire("k", "b", 61_000, ttl).unwrap(),
            Acquired::HeldBy(_)
        ));
        assert_eq!(
            db.try_acquire("k", "b", 90_000, ttl).unwrap(),
            Acquired::Taken
        );
        assert!(!db.renew("k", "a", 90_001, ttl).unwrap(), "a lost it");
        // Release frees it at once, and only the holder's release counts.
        db.release("k", "a").unwrap();
        assert!(matches!(
            db.try_acquire("k", "c", 90_002, ttl).unwrap(),
            Acquired::HeldBy(_)
        ));
        db.release("k", "b").unwrap();
        assert_eq!(
            db.try_acquire("k", "c", 90_003, ttl).unwrap(),
            Acquired::Taken
        );
    }

    #[tokio::test]
    async fn a_lease_is_released_on_drop_and_waited_for_with_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateStore::Local(StateDb::open(dir.path()).unwrap());
        let first = match CursorLease::acquire(&db, "k", Duration::ZERO)
            .await
            .unwrap()
        {
            LeaseOutcome::Held(l) => l,
            LeaseOutcome::Busy(h) => panic!("busy: {h:?}"),
        };
        let other = StateStore::Local(StateDb::open(dir.path()).unwrap());
        let started = std::time::Instant::now();
        let busy = CursorLease::acquire(&other, "k", Duration::from_millis(500))
            .await
            .unwrap();
        assert!(matches!(busy, LeaseOutcome::Busy(_)), "{busy:?}");
        assert!(started.elapsed() >= Duration::from_millis(500));
        first.still_held(&db).await.unwrap();
        drop(first);
        assert!(matches!(
            CursorLease::acquire(&other, "k", Duration::ZERO)
                .await
                .unwrap(),
            LeaseOutcome::Held(_)
        ));
    }
}
