//! The connector's own small state database: `state.sqlite3` under `--state-dir`,
//! beside the IP presence store (`presence.sqlite3`, whose tables belong to the
//! `ip-presence` crate).
//!
//! It holds named values: the sign-in cursors of `pull_sign_ins` (one per tenant, app
//! and filter) and of `sync_ip_presence`, and the presence configuration the last sync
//! ran with. One table, `kv (key, value)`, behind versioned migrations; each write is one
//! SQLite statement, so a value is the old one or the new one, never half. A second
//! table, `cursor_lease`, lets one run at a time use a cursor ([`lease`]).
//!
//! The first version of the connector kept these values in a `kv` table of the presence
//! store. A database created by this version imports them from there once, in the
//! transaction that creates it, so an upgrade loses no cursor (and re-delivers nothing).
//!
//! Like the presence store and the token cache, the file is readable by its owner only
//! (0600 in a 0700 directory); WAL and a busy timeout let concurrent processes share it.
//!
//! With a shared state (`--state-url postgres://...`, issue 17) the same values and
//! leases live in PostgreSQL instead ([`shared`]), under the scope of the asset's tenant
//! and app; [`StateStore`] is the one handle the actions use, whichever it is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};

mod holder;
pub mod lease;
pub mod shared;

pub use lease::{CursorLease, LeaseOutcome, LeaseStore};
pub use shared::{SharedState, scope_of};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migration `n` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version (version) VALUES (0);
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
",
    // Cursor leases ([`lease`]): one run at a time per cursor key.
    "
    CREATE TABLE cursor_lease (
        key TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
",
];

/// Where the first version kept these values (the presence store's file and table).
const V1_PRESENCE_STORE: &str = "presence.sqlite3";

/// The open state database.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("path", &self.path).finish()
    }
}

impl StateDb {
    pub const FILE_NAME: &'static str = "state.sqlite3";

    /// Open (or create) the database in `state_dir`, migrated to [`SCHEMA_VERSION`].
    /// Failures say which folder, since the usual cause is a state dir that cannot be written.
    pub fn open(state_dir: &Path) -> Result<Self> {
        crate::backend::refuse_local("this state database (state.sqlite3)")?;
        let path = state_dir.join(Self::FILE_NAME);
        Self::open_at(state_dir).map_err(|e| {
            let message = format!(
                "cannot open the state database {}: {e} (give a writable --state-dir)",
                path.display()
            );
            // A state dir that cannot be made private (another user's, a sticky /tmp) is
            // the caller's choice, refused before anything: invalid input. Anything else
            // (unopenable, corrupt, foreign or locked file) is this machine's: `local`.
            if e.refused {
                Error::invalid("", message)
            } else {
                Error::local(message)
            }
        })
    }

    fn open_at(state_dir: &Path) -> std::result::Result<Self, OpenError> {
        let path = &crate::owner_only::create_private(state_dir, Self::FILE_NAME)?;
        let conn = Connection::open(path)?;
        ip_presence::sqlite_wal::enable(&conn, BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut db = StateDb {
            conn,
            path: path.to_path_buf(),
        };
        db.migrate(&state_dir.join(V1_PRESENCE_STORE))?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self, v1_store: &Path) -> std::result::Result<(), OpenError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let has_table: bool = tx.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        let mut version: u32 = if has_table {
            tx.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?
        } else {
            0
        };
        if version > SCHEMA_VERSION {
            return Err(OpenError::new(format!(
                "its schema version {version} is newer than this program's {SCHEMA_VERSION}"
            )));
        }
        let created = version == 0;
        while version < SCHEMA_VERSION {
            tx.execute_batch(MIGRATIONS[version as usize])?;
            version += 1;
            tx.execute("UPDATE schema_version SET version = ?1", [version])?;
        }
        if created && v1_store.exists() {
            import_v1_values(&tx, v1_store)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The value kept under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.failed("read", e))
    }

    /// Keep `value` under `key` (one statement: the old value or the new, never half).
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(drop)
            .map_err(|e| self.failed("write", e))
    }

    fn failed(&self, what: &str, e: rusqlite::Error) -> Error {
        Error::local(format!("cannot {what} {}: {e}", self.path.display()))
    }
}

/// Where a run keeps named values and takes cursor leases: this machine's
/// `state.sqlite3`, or one scope of the shared PostgreSQL state.
#[derive(Debug)]
pub enum StateStore {
    Local(StateDb),
    Shared(SharedState),
}

impl StateStore {
    /// Where the values are, for messages: the file, or the database and scope.
    pub fn describe(&self) -> String {
        match self {
            StateStore::Local(db) => db.path().display().to_string(),
            StateStore::Shared(s) => s.describe(),
        }
    }

    /// The value kept under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        match self {
            StateStore::Local(db) => db.get(key),
            StateStore::Shared(s) => s.get(key).await,
        }
    }

    /// Keep `value` under `key` (the old value or the new, never half).
    pub async fn put(&self, key: &str, value: &str) -> Result<()> {
        match self {
            StateStore::Local(db) => db.put(key, value),
            StateStore::Shared(s) => s.put(key, value).await,
        }
    }
}

/// Copy the first version's named values out of the presence store's `kv` table.
/// A store without that table (made by a later version) has nothing to give.
fn import_v1_values(
    tx: &rusqlite::Transaction<'_>,
    v1_store: &Path,
) -> std::result::Result<(), OpenError> {
    let old = Connection::open_with_flags(v1_store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    old.busy_timeout(Duration::from_secs(10))?;
    let has_kv: bool = old.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'kv'",
        [],
        |r| r.get(0),
    )?;
    if !has_kv {
        return Ok(());
    }
    let mut rows = old.prepare("SELECT key, value FROM kv")?;
    let mut insert = tx.prepare("INSERT OR IGNORE INTO kv (key, value) VALUES (?1, ?2)")?;
    for row in rows.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (key, value) = row?;
        insert.execute(params![key, value])?;
    }
    Ok(())
}

/// Why the database could not be opened (said inside [`StateDb::open`]'s error);
/// `refused` when the folder could not be made owner-only.
#[derive(Debug)]
struct OpenError {
    message: String,
    refused: bool,
}

impl OpenError {
    fn new(message: String) -> Self {
        OpenError {
            message,
            refused: false,
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        OpenError::new(e.to_string())
    }
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError {
            refused: e.kind() == std::io::ErrorKind::PermissionDenied,
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.get("k").unwrap(), None);
        db.put("k", "one").unwrap();
        db.put("k", "two").unwrap();
        drop(db);
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some("two"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(db.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_first_version_store_gives_its_values_once() {
        let dir = tempfile::tempdir().unwrap();
        let old = Connection::open(dir.path().join(V1_PRESENCE_STORE)).unwrap();
        old.execute_batch(
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO kv VALUES ('pull_sign_ins.cursor.abc', '{\"version\": 1}');",
        )
        .unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(
            db.get("pull_sign_ins.cursor.abc").unwrap().as_deref(),
            Some("{\"version\": 1}")
        );
        // Imported once, when the database is created: later changes there are not ours.
        db.put("pull_sign_ins.cursor.abc", "new").unwrap();
        drop(db);
        old.execute("UPDATE kv SET value = 'old'", []).unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(
            db.get("pull_sign_ins.cursor.abc").unwrap().as_deref(),
            Some("new")
        );
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateDb::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(StateDb::FILE_NAME)).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        let e = StateDb::open(dir.path()).unwrap_err();
        assert_eq!(e.exit_code(), 6, "a foreign store is a local failure");
        assert!(e.message.contains("newer"), "{}", e.message);
        assert!(e.message.contains(StateDb::FILE_NAME), "{}", e.message);
    }
}
