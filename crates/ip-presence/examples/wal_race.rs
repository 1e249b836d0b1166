//! Eight processes opening one new SQLite file at once, 100 times over: how many fail
//! to switch it to WAL ([`ip_presence::sqlite_wal`]). With `--plain` each process runs
//! the bare `PRAGMA journal_mode=WAL` after a 10-second busy timeout, as every store of
//! the workspace did before (1 to 27 failures in 800 here); without it,
//! `sqlite_wal::enable` (none).
//!
//! Run: `cargo run --release -p ip-presence --example wal_race [-- --plain]`

use std::process::{Command, Stdio};
use std::time::Duration;

use rusqlite::Connection;

const PROCESSES: usize = 8;
const ROUNDS: usize = 100;

/// One process's open, as the stores do it: the error, if any.
fn open(path: &str, plain: bool) -> Result<(), String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    if plain {
        conn.busy_timeout(Duration::from_secs(10))
            .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
    } else {
        ip_presence::sqlite_wal::enable(&conn, Duration::from_secs(10))
    }
    .map_err(|e| format!("switching to WAL: {e}"))?;
    conn.execute_batch(
        "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY); COMMIT;",
    )
    .map_err(|e| format!("creating a table: {e}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, child, path, mode] = &args[..]
        && child == "child"
    {
        if let Err(e) = open(path, mode == "plain") {
            println!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let mode = if args.iter().any(|a| a == "--plain") {
        "plain"
    } else {
        "retry"
    };
    let mut failed = 0;
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("race.sqlite3");
        std::fs::File::create(&path).expect("the file");
        let path = path.to_str().expect("a UTF-8 path");
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(&args[0])
                    .args(["child", path, mode])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("a child process")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("its output");
            if !out.status.success() {
                failed += 1;
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
    println!("{mode}: {failed} of {} opens failed", ROUNDS * PROCESSES);
}
