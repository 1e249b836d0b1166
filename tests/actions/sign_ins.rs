//! pull_sign_ins against the emulator over real HTTP on 127.0.0.1: exactly once
//! across late arrival, page boundaries, max_records cuts, throttling, faults and
//! a run killed mid-pull.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graph_emulator::{FaultPlan, GenerateSpec, SignIn};
use jiff::{SignedDuration, Timestamp};
use msgraph_connector::state::StateDb;
use serde_json::{Value, json};

use crate::support::assertions::{assert_output_path_refused, refused_output_paths};
use crate::support::emulator::{self, Emulator, EmulatorSetup, T0};
use crate::support::postgres::{self, STATE_KEY};
use crate::support::process::{self, Outcome};

/// The emulator with the pull_sign_ins runs these tests make against it.
struct SignInEmulator {
    emu: Emulator,
}

/// An emulator with no sign-ins yet, its clock frozen at `T0`, and the audit-log
/// throttle relaxed (on both sides) so that the suite stays fast.
fn start(premium: bool) -> SignInEmulator {
    let emu = EmulatorSetup::generated(GenerateSpec {
        users: 10,
        sign_ins: 0,
        seed: 6,
        day: None,
    })
    .premium(premium)
    .relaxed_audit_logs()
    .clock_frozen_at(T0)
    .asset_setting("max_attempts", json!(10))
    .start();
    SignInEmulator { emu }
}

fn at(secs: i64) -> Timestamp {
    T0.parse::<Timestamp>()
        .unwrap()
        .checked_add(SignedDuration::from_secs(secs))
        .unwrap()
}

impl SignInEmulator {
    fn sign_in(&self, n: usize, created: Timestamp, late: i64) -> SignIn {
        let users = &self.emu.tenant.users;
        SignIn {
            app_display_name: if n.is_multiple_of(3) {
                "Azure Portal"
            } else {
                "Office 365 Exchange Online"
            }
            .into(),
            error_code: if n.is_multiple_of(10) { 50126 } else { 0 },
            ..emulator::sign_in(
                users[n % users.len()].id,
                created,
                SignedDuration::from_secs(late),
                &format!("203.0.113.{}", n % 250),
            )
        }
    }

    fn run(&self, inputs: Value, state: Option<&Value>) -> Outcome {
        let envelope = json!({"asset": self.emu.asset("client_credentials"), "inputs": inputs, "state": state});
        process::run(
            &["run", "pull_sign_ins"],
            envelope.to_string().as_bytes(),
            self.emu.state.path(),
        )
    }

    /// Run and return (ids delivered, the result).
    fn pull(&self, inputs: Value, state: Option<&Value>) -> (Vec<String>, Value) {
        let out = self.run(inputs, state);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let v = out.json();
        let ids = v["json_body"]["value"]
            .as_array()
            .expect("inline value")
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        (ids, v)
    }

    fn sign_in_requests(&self) -> Vec<(u16, String)> {
        self.emu
            .request_log()
            .family("signins")
            .into_iter()
            .map(|e| (e.status, e.query.unwrap_or_default()))
            .collect()
    }
}

/// The pull_sign_ins cursors kept in the store under the state dir.
fn kept_cursors(e: &SignInEmulator) -> Vec<Value> {
    let db = StateDb::open(e.emu.state.path()).unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT value FROM kv WHERE key LIKE 'pull_sign_ins.cursor.%' ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|v| serde_json::from_str(&v.unwrap()).unwrap())
        .collect()
}

fn assert_exactly_once(expected: &[SignIn], delivered: &[String]) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for id in delivered {
        *count.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let lost: Vec<_> = expected
        .iter()
        .map(|s| s.id.to_string())
        .filter(|id| !count.contains_key(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {lost:?}",
        lost.len(),
        expected.len()
    );
    assert_eq!(
        count.len(),
        expected.len(),
        "delivered ids that were never made"
    );
}

#[test]
fn late_sign_ins_over_ten_runs_are_delivered_exactly_once() {
    let e = start(true);
    let mut rng = fastrand::Rng::with_seed(42);
    // Two hours of sign-ins, each visible 0-25 minutes after it happened, some sharing a second.
    let made: Vec<SignIn> = (0..900)
        .map(|n| {
            let created = at(rng.i64(0..7200) / 3 * 3);
            e.sign_in(n, created, rng.i64(0..=1500))
        })
        .collect();
    e.emu.add_sign_ins(made.clone());
    let mut state: Option<Value> = None;
    let mut delivered = Vec::new();
    for run in 1..=10 {
        // Every 15 virtual minutes; the tenth at 2h30, after the last became visible.
        e.emu.set_clock(at(run * 900));
        let (ids, v) = e.pull(
            json!({"since": T0, "top": 100, "lookback_minutes": 30}),
            state.as_ref(),
        );
        delivered.extend(ids);
        let s = v["state"].clone();
        let remembered: usize = s["delivered"]
            .as_object()
            .unwrap()
            .values()
            .map(|ids| ids.as_array().unwrap().len())
            .sum();
        // Only the lookback window is remembered (about 225 sign-ins per 30 minutes).
        assert!(remembered < 400, "run {run}: {remembered} ids kept");
        state = Some(s);
    }
    assert_exactly_once(&made, &delivered);
    // Every request carried the window and the page size we asked for.
    for (status, query) in e.sign_in_requests() {
        // 401: the cached token expired on the emulator's clock, moved 2.5 hours on.
        assert!(status == 200 || status == 401, "{status}");
        assert!(
            query.contains("%24top=100")
                || query.contains("$top=100")
                || query.contains("skiptoken"),
            "{query}"
        );
    }
}

#[test]
fn equal_timestamps_on_a_page_boundary_and_max_records_cuts() {
    let e = start(true);
    // Ten sign-ins in one second, then three older ones; pages of three, cuts at four.
    let mut made: Vec<SignIn> = (0..10).map(|n| e.sign_in(n, at(100), 0)).collect();
    made.extend((10..13).map(|n| e.sign_in(n, at(50 - n as i64), 0)));
    e.emu.add_sign_ins(made.clone());
    e.emu.set_clock(at(3600));
    let mut state = None;
    let mut delivered = Vec::new();
    let mut runs = 0;
    loop {
        let (ids, v) = e.pull(
            json!({"since": T0, "top": 3, "max_records": 4}),
            state.as_ref(),
        );
        assert!(ids.len() <= 4);
        delivered.extend(ids);
        state = Some(v["state"].clone());
        runs += 1;
        if !v["json_body"]["truncated"].as_bool().unwrap() {
            break;
        }
        assert!(runs < 10, "does not converge");
    }
    assert_exactly_once(&made, &delivered);
    assert!(state.unwrap().get("backlog").is_none());
}

#[test]
fn throttling_storms_and_503s_mid_paging_lose_and_repeat_nothing() {
    let e = start(true);
    let made: Vec<SignIn> = (0..600)
        .map(|n| e.sign_in(n, at(n as i64 * 5), 0))
        .collect();
    e.emu.add_sign_ins(made.clone());
    e.emu.set_clock(at(4000));
    e.emu
        .set_faults(FaultPlan::parse("signins:429=0.3,503=0.15,retry_after=0.02;seed=7").unwrap());
    let (first, v) = e.pull(json!({"since": T0, "top": 50, "max_records": 350}), None);
    let (second, _) = e.pull(json!({"since": T0, "top": 50}), Some(&v["state"]));
    let mut delivered = first;
    delivered.extend(second);
    assert_exactly_once(&made, &delivered);
    let log = e.sign_in_requests();
    let (n429, n503) = (
        log.iter().filter(|(s, _)| *s == 429).count(),
        log.iter().filter(|(s, _)| *s == 503).count(),
    );
    assert!(
        n429 >= 3 && n503 >= 1,
        "faults were injected: {n429} x 429, {n503} x 503"
    );
}

#[test]
fn pull_sign_ins_refuses_output_paths_it_must_not_replace() {
    let e = start(true);
    e.emu
        .add_sign_ins((0..5).map(|n| e.sign_in(n, at(n as i64), 0)).collect());
    e.emu.set_clock(at(600));
    let scratch = tempfile::tempdir().unwrap();
    // A regular file is replaced with a private one (and the run makes the real stores).
    let target = scratch.path().join("sign-ins.jsonl");
    std::fs::write(&target, "old").unwrap();
    let out = e.run(json!({"since": T0, "output_path": target}), None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap().lines().count(), 5);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let store = e.emu.state.path().join("state.sqlite3");
    let before = std::fs::read(&store).unwrap();
    e.emu.clear_log();
    let mut paths = refused_output_paths(e.emu.state.path(), scratch.path());
    paths.push((store.clone(), "inside the state dir"));
    for (path, why) in paths {
        let out = e.run(json!({"since": T0, "output_path": path}), None);
        assert_output_path_refused(&e.emu, &out, why);
    }
    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "the store is untouched"
    );
}

#[test]
fn a_run_killed_while_writing_output_leaves_no_file_and_the_rerun_loses_nothing() {
    let e = start(true);
    let first: Vec<SignIn> = (0..50).map(|n| e.sign_in(n, at(n as i64), 0)).collect();
    e.emu.add_sign_ins(first.clone());
    e.emu.set_clock(at(600));
    let (ids, v) = e.pull(json!({"since": T0}), None);
    assert_exactly_once(&first, &ids);
    let old_state = v["state"].clone();

    // Then 3,000 more, read 100 a page, each page 150 ms slow: a run of ~5 s.
    let more: Vec<SignIn> = (0..3000)
        .map(|n| e.sign_in(n, at(1000 + n as i64), 0))
        .collect();
    e.emu.add_sign_ins(more.clone());
    e.emu.set_clock(at(5000));
    e.emu
        .set_faults(FaultPlan::parse("signins:slow=1,delay_ms=150").unwrap());
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("sign-ins.jsonl");
    let inputs = json!({"since": T0, "top": 100, "output_path": target});
    let envelope =
        json!({"asset": e.emu.asset("client_credentials"), "inputs": inputs, "state": old_state});
    let mut child = Command::new(process::BIN)
        .arg("--state-dir")
        .arg(e.emu.state.path())
        .args(["run", "pull_sign_ins"])
        .env_remove("ASSET_KEYS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(envelope.to_string().as_bytes())
        .unwrap();
    // Wait until it has written some records into its partial file, then kill -9.
    let started = Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(out_dir.path())
            .unwrap()
            .flatten()
            .find(|f| f.file_name().to_string_lossy().contains(".partial-"))
            .filter(|f| f.metadata().map(|m| m.len() > 0).unwrap_or(false));
        if let Some(f) = found {
            break f.path();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no partial file appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(400));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!target.exists(), "a killed run left a file at output_path");
    assert!(
        partial.exists(),
        "the partial file is what the killed run left"
    );
    // Nor did it move the cursor kept in the store: still the first run's.
    assert_eq!(kept_cursors(&e), vec![old_state.clone()]);

    // The rerun with the old state, at full speed.
    e.emu.set_faults(FaultPlan::none());
    let out = e.run(
        json!({"since": T0, "top": 1000, "output_path": target}),
        Some(&old_state),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let body = &v["json_body"];
    assert_eq!(body["records"], 3000);
    assert!(body.get("value").is_none());
    let text = std::fs::read_to_string(&target).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_exactly_once(&more, &ids);
    assert!(
        !partial.exists(),
        "the stale partial file of the killed run was removed"
    );
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1);
}

#[test]
fn state_kept_in_the_state_dir_continues_and_a_corrupted_one_is_exit_2() {
    let e = start(true);
    let made: Vec<SignIn> = (0..30)
        .map(|n| e.sign_in(n, at(n as i64 * 10), 0))
        .collect();
    e.emu.add_sign_ins(made[..20].to_vec());
    e.emu.set_clock(at(1000));
    let (a, _) = e.pull(json!({"since": T0}), None);
    e.emu.add_sign_ins(made[20..].to_vec());
    // No envelope state: the one kept under --state-dir is used.
    let (b, v) = e.pull(json!({"since": T0}), None);
    assert_eq!(v["json_body"]["duplicates_dropped"], 20);
    assert_exactly_once(&made, &[a, b].concat());

    // Kept in the state database: the state dir holds the token cache, the embedded
    // store's files and the pacer's budgets, nothing else (pull_sign_ins makes no
    // presence store).
    let mut names: Vec<String> = std::fs::read_dir(e.emu.state.path())
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n != "tokens"
                && !n.starts_with(StateDb::FILE_NAME)
                && !n.starts_with(msgraph_connector::backend::budget::SqliteBudgets::FILE_NAME)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        Vec::<String>::new(),
        "unexpected files in the state dir"
    );
    assert_eq!(kept_cursors(&e), vec![v["state"].clone()]);
    let db = StateDb::open(e.emu.state.path()).unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let keys: Vec<String> = conn
        .prepare("SELECT key FROM kv WHERE key LIKE 'pull_sign_ins.cursor.%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(keys.len(), 1, "one cursor per tenant, app and filter");
    // Another filter on the same tenant and app is another cursor: a first run.
    let (c, _) = e.pull(
        json!({"since": T0, "filter": "status/errorCode ne 0"}),
        None,
    );
    assert_eq!(c.len(), 3, "every tenth sign-in fails");
    // The unfiltered cursor was left alone: nothing new for it.
    let (d, _) = e.pull(json!({}), None);
    assert!(d.is_empty(), "{d:?}");

    db.put(&keys[0], "{\"version\": 1, \"cursor\": ").unwrap();
    let out = e.run(json!({}), None);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err = out.json();
    assert_eq!(err["error"]["details"][0]["path"], "/state");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(StateDb::FILE_NAME)
    );
}

#[test]
fn user_filter_is_anded_with_the_window() {
    let e = start(true);
    let made: Vec<SignIn> = (0..40)
        .map(|n| e.sign_in(n, at(n as i64 * 10), 0))
        .collect();
    e.emu.add_sign_ins(made.clone());
    e.emu.set_clock(at(1000));
    let (ids, _) = e.pull(
        json!({"since": T0, "filter": "status/errorCode ne 0", "until": at(300).to_string()}),
        None,
    );
    let want: Vec<SignIn> = made
        .iter()
        .enumerate()
        .filter(|(n, s)| n.is_multiple_of(10) && s.created_date_time <= at(300))
        .map(|(_, s)| s.clone())
        .collect();
    assert_exactly_once(&want, &ids);
    let (_, query) = &e.sign_in_requests()[0];
    let query = query.replace("%20", " ").replace('+', " ");
    assert!(
        query.contains("createdDateTime le 2026-03-02T08:05:00Z and status/errorCode ne 0"),
        "{query}"
    );
}

#[test]
fn forbidden_explains_the_licence_and_the_permissions() {
    let e = start(false);
    let out = e.run(json!({}), None);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let err = out.json();
    assert_eq!(
        err["error"]["code"],
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("P1 or P2")
    );

    let e = start(true);
    let envelope = json!({"asset": e.emu.read_only_asset(), "inputs": {}});
    let out = process::run(
        &["run", "pull_sign_ins"],
        envelope.to_string().as_bytes(),
        e.emu.state.path(),
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    let msg = out.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("AuditLog.Read.All") && msg.contains("Directory.Read.All"),
        "{msg}"
    );
}

/// Concurrent runs on one state dir (a scheduler that overlaps, or several workers)
/// take turns on the kept cursor: every sign-in is delivered exactly once in total.
#[test]
fn concurrent_pulls_on_one_state_dir_deliver_each_sign_in_once_in_total() {
    concurrent_pulls_deliver_each_sign_in_once(None);
}

/// The same with the runs on two machines (two state dirs) sharing one PostgreSQL state
/// (issue 17): the cursor and its lease are in the database, and nothing on either disk.
#[test]
fn concurrent_pulls_over_two_machines_sharing_postgres_deliver_each_sign_in_once() {
    let Some(url) = postgres::database() else {
        return;
    };
    concurrent_pulls_deliver_each_sign_in_once(Some(&url));
    assert_eq!(
        postgres::query(
            &url,
            "SELECT count(*) FROM msgraph_state WHERE key LIKE 'pull_sign_ins.cursor.%'"
        ),
        ["1"],
        "one cursor"
    );
    assert_eq!(
        postgres::query(&url, "SELECT count(*) FROM msgraph_cursor_lease"),
        ["0"],
        "every lease released"
    );
}

/// Five runs at once, on `e`'s state dir or (with `shared`, a PostgreSQL URL) over two
/// state dirs sharing that database.
fn concurrent_pulls_deliver_each_sign_in_once(shared: Option<&str>) {
    let e = start(true);
    let made: Vec<SignIn> = (0..300).map(|n| e.sign_in(n, at(n as i64), 0)).collect();
    e.emu.add_sign_ins(made.clone());
    e.emu.set_clock(at(2000));
    let envelope = json!({"asset": e.emu.asset("client_credentials"),
                          "inputs": {"since": T0, "top": 50, "lease_wait_seconds": 120}})
    .to_string();
    let machines = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let env: Vec<(&str, &str)> = match shared {
        Some(url) => vec![
            ("MSGRAPH_CONNECTOR_STATE_URL", url),
            ("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY),
        ],
        None => Vec::new(),
    };
    let outs: Vec<Outcome> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..5)
            .map(|i| {
                let dir = match shared {
                    Some(_) => machines[i % 2].path(),
                    None => e.emu.state.path(),
                };
                let (envelope, env) = (&envelope, &env);
                s.spawn(move || {
                    process::run_env(&["run", "pull_sign_ins"], envelope.as_bytes(), dir, env)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut delivered = Vec::new();
    for out in &outs {
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let v = out.json();
        assert!(v["json_body"].get("skipped").is_none(), "waited: {v}");
        delivered.extend(
            v["json_body"]["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
    }
    assert_exactly_once(&made, &delivered);
    if shared.is_some() {
        for m in &machines {
            assert!(
                !m.path().join(StateDb::FILE_NAME).exists(),
                "a shared state keeps no cursor on a machine's disk"
            );
        }
    }
}

/// In a shared state a lease held by a run on another machine is judged by the
/// server's clock: a run waits its bound and skips; once the holder stops renewing (it
/// was killed) its lease runs out and the next run takes over. A run killed with
/// `kill -9` on this machine is seen to be gone, and its lease taken over at once.
#[test]
fn a_shared_lease_held_elsewhere_skips_and_a_killed_holders_is_taken_over() {
    let Some(url) = postgres::database() else {
        return;
    };
    let e = start(true);
    let env = [
        ("MSGRAPH_CONNECTOR_STATE_URL", url.as_str()),
        ("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY),
    ];
    let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pull_on = |dir: &std::path::Path, inputs: Value| {
        let envelope = json!({"asset": e.emu.asset("client_credentials"), "inputs": inputs});
        process::run_env(
            &["run", "pull_sign_ins"],
            envelope.to_string().as_bytes(),
            dir,
            &env,
        )
    };
    let ids_of = |out: &Outcome| -> Vec<String> {
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        out.json()["json_body"]["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let made: Vec<SignIn> = (0..3030).map(|n| e.sign_in(n, at(n as i64), 0)).collect();
    e.emu.add_sign_ins(made[..10].to_vec());
    e.emu.set_clock(at(5000));
    let a = ids_of(&pull_on(here.path(), json!({"since": T0})));
    e.emu.add_sign_ins(made[10..20].to_vec());

    // Another machine's run holds the cursor for an hour.
    let holder = "pid 1 on another-machine run 0123456789ab";
    postgres::query(
        &url,
        &format!(
            "INSERT INTO msgraph_cursor_lease
             SELECT scope, key, '{holder}', now(), now() + interval '1 hour'
             FROM msgraph_state WHERE key LIKE 'pull_sign_ins.cursor.%'"
        ),
    );
    let requests = e.sign_in_requests().len();
    let out = pull_on(there.path(), json!({"lease_wait_seconds": 1}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    let skipped = body["skipped"].as_str().unwrap();
    assert!(
        skipped.starts_with("lease held by another run") && skipped.contains(holder),
        "{skipped}"
    );
    assert_eq!(body["records"], 0);
    assert_eq!(e.sign_in_requests().len(), requests, "no request");

    // That run was killed: it stops renewing, and its lease runs out.
    postgres::query(
        &url,
        "UPDATE msgraph_cursor_lease SET expires_at = now() - interval '1 second'",
    );
    let b = ids_of(&pull_on(there.path(), json!({})));
    assert_exactly_once(&made[..20], &[a, b].concat());

    // A run on this machine killed with kill -9 mid-pull (3,000 sign-ins, slow pages):
    // the next run does not wait for its lease to run out.
    e.emu.add_sign_ins(made[20..].to_vec());
    e.emu
        .set_faults(FaultPlan::parse("signins:slow=1,delay_ms=150").unwrap());
    let envelope = json!({"asset": e.emu.asset("client_credentials"), "inputs": {"top": 100}});
    let mut child = process::spawn(
        &["run", "pull_sign_ins"],
        envelope.to_string().as_bytes(),
        here.path(),
        &env,
    );
    let started = Instant::now();
    while postgres::query(&url, "SELECT count(*) FROM msgraph_cursor_lease") != ["1"] {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no lease taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
    e.emu.set_faults(FaultPlan::none());
    let started = Instant::now();
    let c = ids_of(&pull_on(
        there.path(),
        json!({"top": 1000, "lease_wait_seconds": 30}),
    ));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took over at once rather than wait for the 60 s lease: {:?}",
        started.elapsed()
    );
    assert_exactly_once(&made[20..], &c);
    assert_eq!(
        postgres::query(&url, "SELECT count(*) FROM msgraph_cursor_lease"),
        ["0"]
    );
}

/// A run that finds the cursor's lease held past `lease_wait_seconds` ends with exit 0,
/// `skipped`, no request and no change; a lease whose holder died (not renewed, expired)
/// is taken over by the next run.
#[test]
fn a_held_lease_skips_cleanly_and_an_expired_one_is_taken_over() {
    let e = start(true);
    let made: Vec<SignIn> = (0..20)
        .map(|n| e.sign_in(n, at(n as i64 * 10), 0))
        .collect();
    e.emu.add_sign_ins(made[..10].to_vec());
    e.emu.set_clock(at(1000));
    let (a, _) = e.pull(json!({"since": T0}), None);
    e.emu.add_sign_ins(made[10..].to_vec());
    let before = kept_cursors(&e);
    let db = StateDb::open(e.emu.state.path()).unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let key: String = conn
        .query_row(
            "SELECT key FROM kv WHERE key LIKE 'pull_sign_ins.cursor.%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let in_an_hour = Timestamp::now().as_millisecond() + 3_600_000;
    conn.execute(
        "INSERT INTO cursor_lease VALUES (?1, 'pid 1 run other', 0, ?2)",
        rusqlite::params![key, in_an_hour],
    )
    .unwrap();
    let requests = e.sign_in_requests().len();
    let output = tempfile::tempdir().unwrap();
    let file = output.path().join("out.jsonl");
    std::fs::write(&file, "{\"id\": \"from the previous run\"}\n").unwrap();
    let started = Instant::now();
    let out = e.run(
        json!({"lease_wait_seconds": 1, "output_path": file.to_str().unwrap()}),
        None,
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    let body = &out.json()["json_body"];
    let skipped = body["skipped"].as_str().unwrap();
    assert!(
        skipped.starts_with("lease held by another run"),
        "{skipped}"
    );
    assert!(skipped.contains("pid 1 run other"), "{skipped}");
    assert_eq!(body["records"], 0);
    assert_eq!(e.sign_in_requests().len(), requests, "no request");
    assert_eq!(kept_cursors(&e), before, "no state change");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "",
        "no stale records"
    );

    // The holder was killed: its lease is not renewed and runs out.
    conn.execute("UPDATE cursor_lease SET expires_at_ms = 0", [])
        .unwrap();
    let (b, _) = e.pull(json!({}), None);
    assert_exactly_once(&made, &[a, b].concat());
    let leases: i64 = conn
        .query_row("SELECT count(*) FROM cursor_lease", [], |r| r.get(0))
        .unwrap();
    assert_eq!(leases, 0, "released at the end of the run");
}

/// Non-interactive sign-ins come from beta with the event-type lambda, each event type
/// from its own cursor; the default stays interactive (v1.0), with the state it always had.
#[test]
fn event_types_are_read_each_from_its_own_cursor() {
    let e = start(true);
    let users = &e.emu.tenant.users;
    let mut background = emulator::sign_in(
        users[1].id,
        at(-300),
        SignedDuration::from_secs(30),
        "198.51.100.9",
    );
    background.is_interactive = false;
    let interactive = e.sign_in(0, at(-200), 30);
    e.emu
        .add_sign_ins(vec![background.clone(), interactive.clone()]);
    let since = at(-3600).to_string();

    let (ids, v) = e.pull(json!({"since": since}), None);
    assert_eq!(ids, [interactive.id.to_string()], "v1.0: interactive only");
    assert_eq!(
        v["state"]["version"], 1,
        "the state of one event type is as before"
    );

    // The interactive cursor kept under --state-dir carries on; the new type starts at `since`.
    let both = json!({"since": since, "event_types": ["interactiveUser", "nonInteractiveUser"]});
    let (ids, v) = e.pull(both.clone(), None);
    assert_eq!(ids, [background.id.to_string()]);
    let state = v["state"].clone();
    assert_eq!(state["version"], 2);
    assert!(state["event_types"]["nonInteractiveUser"]["cursor"].is_string());
    let windows = v["json_body"]["windows"].as_array().unwrap();
    assert_eq!(windows[1]["event_type"], "nonInteractiveUser");
    let log = e.sign_in_requests();
    let beta = e
        .emu
        .request_log()
        .family("signins")
        .into_iter()
        .filter(|r| r.path.starts_with("/beta/"))
        .count();
    assert_eq!(beta, 1, "{log:?}");
    assert!(
        log.iter().any(
            |(_, q)| q.contains("signInEventTypes%2Fany") || q.contains("signInEventTypes/any")
        ),
        "{log:?}"
    );
    // The next run delivers nothing again, for either type.
    let (ids, _) = e.pull(both, Some(&state));
    assert!(ids.is_empty(), "{ids:?}");
    // A version-1 state is the interactive cursor; the other starts from `since`.
    let (ids, _) = e.pull(
        json!({"since": since, "event_types": ["interactiveUser", "nonInteractiveUser"]}),
        Some(&state["event_types"]["interactiveUser"]),
    );
    assert_eq!(ids, [background.id.to_string()]);
}

/// A state older than Graph keeps sign-ins (30 days; 90 for any filter) is clamped to
/// Graph's horizon, measured on Graph's clock, and the span given up is reported: no
/// endless 400, nothing silently dropped.
#[test]
fn a_state_older_than_retention_is_clamped_and_the_loss_reported() {
    let e = start(true);
    let fresh = e.sign_in(0, at(-100), 10);
    e.emu.add_sign_ins(vec![fresh.clone()]);
    let old = at(-100 * 24 * 3600);
    let state = json!({"version": 1, "cursor": old.to_string(), "window_start": old.to_string(), "delivered": {}});
    let (ids, v) = e.pull(json!({}), Some(&state));
    assert_eq!(ids, [fresh.id.to_string()]);
    let horizon = at(-30 * 24 * 3600).to_string();
    assert_eq!(
        v["json_body"]["lost_to_retention"],
        json!({"from": old.to_string(), "until": horizon})
    );
    let statuses: Vec<u16> = e.sign_in_requests().iter().map(|r| r.0).collect();
    assert_eq!(
        statuses,
        [400, 200, 200],
        "refused, Graph's clock read, then the clamped run"
    );
    let window_start: Timestamp = v["state"]["window_start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(window_start >= horizon.parse().unwrap(), "{window_start}");

    // Within 90 days but past 30: no 400, the loss is still said.
    let e = start(true);
    let since = at(-40 * 24 * 3600);
    let (_, v) = e.pull(json!({"since": since.to_string()}), None);
    assert_eq!(
        v["json_body"]["lost_to_retention"],
        json!({"from": since.to_string(), "until": horizon})
    );
    // And the next run has nothing more to say.
    let (_, v) = e.pull(json!({}), Some(&v["state"]));
    assert!(v["json_body"].get("lost_to_retention").is_none(), "{v}");
}
