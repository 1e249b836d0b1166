//! Switching a shared SQLite file to WAL when several processes open it at once.
//!
//! Every SQLite file of this workspace (the presence store here; the connector's state
//! database and pacer) is opened by many short processes at once (a playbook's fan-out),
//! with a busy timeout and `PRAGMA journal_mode=WAL`, both set here. On a new file, that switch
//! takes an exclusive lock while the connection already holds a shared one, and SQLite
//! does not call the busy handler where waiting could deadlock: "If SQLite determines
//! that invoking the busy handler could result in a deadlock, it will go ahead and
//! return SQLITE_BUSY to the application instead of invoking the busy handler"
//! (<https://www.sqlite.org/c3ref/busy_handler.html>). Eight processes opening one new
//! file lost that race 1 to 27 times in 800 here (`database is locked`, in spite of a
//! 10-second busy timeout), so the switch is retried until the timeout runs out.

use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

/// Make `conn` wait up to `patience` for other processes' locks (its busy timeout), then
/// `PRAGMA journal_mode=WAL`, tried again after a short pause (2 ms, doubling to 50 ms)
/// while it fails with `SQLITE_BUSY`, for up to `patience` as well.
pub fn enable(conn: &Connection, patience: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(patience)?;
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(2);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}
