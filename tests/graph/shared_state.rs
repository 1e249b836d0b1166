//! Shared state (issue 17): many processes of one app and tenant share one pacer
//! budget, through the state dir's SQLite files or one PostgreSQL database
//! (`--state-url`), against the emulator's throttle with a binding limit; and a
//! `--state-url` that cannot be used is exit 7 with the password nowhere in the output.
//! PostgreSQL is a real server (`support::postgres`), never a mock.

use std::path::Path;
use std::time::Duration;

use graph_emulator::{LogEntry, RateLimit, ThrottleConfig};
use serde_json::{Value, json};

use msgraph_connector::backend::budget::{self, Budget};
use msgraph_connector::backend::{Backend, StateUrl};
use msgraph_connector::state::{CursorLease, LeaseOutcome, SharedState, StateDb, StateStore};

use crate::support::emulator::{Emulator, EmulatorSetup, cached_tokens};
use crate::support::postgres::{self, STATE_KEY};
use crate::support::process::{self, Outcome};

/// The binding limit of these tests, on both sides: 8 presence requests per 4 s. Our
/// window is 2 % longer (80 ms here), and that margin must cover the spread between a
/// request's reserved slot and its arrival at the emulator. Eight processes starting at
/// once on a busy two-core machine spread their first requests by up to 200 ms: a
/// window of 2 s (40 ms of margin) drew a 429 now and then, one of 4 s (80 ms) too,
/// with `get_presences` of 650 ids whose bodies the emulator parses before stamping.
/// That is a property of pacing on the client's clock, not of the shared budget
/// (Graph's own windows, 10 s and 30 s, leave 200 ms and 600 ms).
const LIMIT: u32 = 8;
const PER_SECONDS: f64 = 4.0;
/// Workers, and the `get_presence` processes each runs one after another: one round
/// of the workers fills a window (each next process reserves its slot while the
/// window before is still running, so the measure is the pacer's, not process start-up),
/// four windows in all.
const WORKERS: usize = 8;
/// The state key of these tests (base64 of 32 bytes), and another one.
const OTHER_KEY: &str = "YW5vdGhlciBrZXksIGFub3RoZXIgMzIgYnl0ZXMhISE=";
const BATCHES: usize = 4;

fn throttled_emulator() -> Emulator {
    EmulatorSetup::users(20)
        .throttle(ThrottleConfig {
            presence: Some(RateLimit {
                requests: LIMIT,
                per: Duration::from_secs_f64(PER_SECONDS),
            }),
            ..ThrottleConfig::off()
        })
        .asset_setting(
            "rate_limits",
            json!({"presence": {"requests": LIMIT, "per_seconds": PER_SECONDS}}),
        )
        .start()
}

/// One `get_presence` (a light GET: the emulator's own work must not delay the arrival
/// it stamps, as 650-id `get_presences` bodies on a busy machine did by 500 ms).
fn presence_envelope(emu: &Emulator, worker: usize) -> String {
    let user = emu.user_id(worker % emu.tenant.users.len());
    json!({"asset": emu.asset("client_credentials"), "inputs": {"id": user}}).to_string()
}

/// One crowd of workers at a time: two crowds at once on a two-core machine delay
/// arrivals past the 2 % margin (a client-side pacer's limit, not the budget's).
static CROWD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run the workers at once, worker `i` on `dirs[i % dirs.len()]` with `env`.
fn run_workers(emu: &Emulator, dirs: &[&Path], env: &[(&str, &str)]) {
    let _one_crowd = CROWD.lock().unwrap_or_else(|p| p.into_inner());
    let handles: Vec<_> = (0..WORKERS)
        .map(|i| {
            let dir = dirs[i % dirs.len()].to_path_buf();
            let envelope = presence_envelope(emu, i);
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                (0..BATCHES)
                    .map(|_| {
                        process::run_env(&["run", "get_presence"], envelope.as_bytes(), &dir, &env)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for out in h.join().unwrap() {
            assert_eq!(out.code, 0, "{}", out.stderr);
            emu.assert_no_secrets(&out.stdout, None);
        }
    }
}

/// No 429, and the limit's full throughput within 5 %: the requests made over the time
/// from the first to the start of the last window's share (its first `LIMIT`-th
/// request from the end) plus one window. An ideal pacer scores 1 / 1.02 of the limit
/// (our window is 2 % longer); a process's start-up only spreads arrivals within a window.
fn assert_paced_at_the_limit(log: &[LogEntry]) {
    let presence: Vec<&LogEntry> = log.iter().filter(|e| e.family == "presence").collect();
    let shown: Vec<String> = presence
        .iter()
        .map(|e| {
            format!(
                "{} {} {:?} {:?}",
                e.time, e.status, e.fault, e.retry_attempt
            )
        })
        .collect();
    assert_eq!(
        presence.len(),
        WORKERS * BATCHES,
        "every batch sent once: {shown:#?}"
    );
    let throttled: Vec<_> = presence.iter().filter(|e| e.status == 429).collect();
    assert!(throttled.is_empty(), "{} × 429", throttled.len());
    let mut at: Vec<f64> = presence
        .iter()
        .map(|e| {
            let t: jiff::Timestamp = e.time.parse().expect("a log time");
            t.as_microsecond() as f64 / 1e6
        })
        .collect();
    at.sort_by(f64::total_cmp);
    let last_window = at[at.len() - LIMIT as usize];
    let rate = at.len() as f64 / (last_window - at[0] + PER_SECONDS);
    let limit = f64::from(LIMIT) / PER_SECONDS;
    assert!(
        rate >= 0.95 * limit && rate <= limit,
        "{rate:.3} requests/s against a limit of {limit:.3}/s"
    );
    eprintln!(
        "{} requests, 0 × 429, {rate:.3}/s = {:.1} % of the limit",
        at.len(),
        100.0 * rate / limit
    );
}

#[test]
fn eight_processes_on_one_sqlite_state_share_one_budget() {
    let emu = throttled_emulator();
    let dir = tempfile::tempdir().unwrap();
    run_workers(&emu, &[dir.path()], &[]);
    assert_paced_at_the_limit(&emu.log());
    assert_eq!(emu.token_requests(), 1, "one token request for the app");
}

#[test]
fn eight_processes_over_two_state_dirs_share_one_postgres_budget() {
    let Some(url) = postgres::database() else {
        return;
    };
    let emu = throttled_emulator();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_workers(
        &emu,
        &[a.path(), b.path()],
        &[
            ("MSGRAPH_CONNECTOR_STATE_URL", url.as_str()),
            ("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY),
        ],
    );
    assert_paced_at_the_limit(&emu.log());
    // The token cache is in the database too: one token for all eight workers.
    assert_eq!(emu.token_requests(), 1);
    for d in [&a, &b] {
        assert!(cached_tokens(d.path()).is_empty(), "no token on disk");
    }
    // Sealed at rest: the row holds no token text, nor the secret.
    let rows = token_rows(&url);
    assert_eq!(rows.len(), 1);
    assert_sealed(&emu, &rows[0]);
    // The budget is in the database, not in the state dirs.
    assert_eq!(
        postgres::query(&url, "SELECT count(*) FROM msgraph_pacer_budget"),
        ["1"]
    );
    assert_eq!(
        postgres::query(&url, "SELECT count(*) FROM msgraph_pacer_slot"),
        [LIMIT.to_string()]
    );
    for d in [&a, &b] {
        assert!(!d.path().join("pacer.sqlite3").exists());
    }
}

/// A `Retry-After` seen by one worker holds back the others: the emulator's throttle is
/// stricter than the asset's pacing, so the third request draws a 429; a fourth process
/// started while the third waits is held back by the recorded `Retry-After` instead of
/// drawing a second 429.
#[test]
fn a_retry_after_holds_every_worker_back() {
    let emu = EmulatorSetup::users(20)
        .throttle(ThrottleConfig {
            presence: Some(RateLimit {
                requests: 2,
                per: Duration::from_secs(4),
            }),
            ..ThrottleConfig::off()
        })
        .asset_setting(
            "rate_limits",
            json!({"presence": {"requests": 100, "per_seconds": 1}}),
        )
        .start();
    let dir = tempfile::tempdir().unwrap().keep();
    let envelope =
        json!({"asset": emu.asset("client_credentials"), "inputs": {"id": emu.user_id(0)}})
            .to_string();
    let run = {
        let (dir, envelope) = (dir.clone(), envelope.clone());
        move || process::run(&["run", "get_presence"], envelope.as_bytes(), &dir)
    };
    for _ in 0..2 {
        let out = run();
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let third = std::thread::spawn(run.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !emu.graph_log().iter().any(|e| e.status == 429) {
        assert!(
            std::time::Instant::now() < deadline,
            "the third drew no 429"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let fourth = run();
    assert_eq!(fourth.code, 0, "{}", fourth.stderr);
    let third = third.join().unwrap();
    assert_eq!(third.code, 0, "{}", third.stderr);
    // The window frees a place 4 s after the first request: that is the Retry-After the
    // 429 carried, and nobody may send before it (the fourth would, at once, if the
    // Retry-After were only the third's to know).
    let log = emu.graph_log();
    let time = |e: &LogEntry| e.time.parse::<jiff::Timestamp>().unwrap();
    let free_at = time(&log[0]) + jiff::SignedDuration::from_millis(3_900);
    let first_429 = log.iter().position(|e| e.status == 429).unwrap();
    let early: Vec<String> = log[first_429 + 1..]
        .iter()
        .filter(|e| time(e) < free_at)
        .map(|e| format!("{} {}", e.time, e.status))
        .collect();
    assert!(early.is_empty(), "sent while blocked: {early:?}");
    assert_eq!(log.iter().filter(|e| e.status == 200).count(), 4);
    let _ = std::fs::remove_dir_all(dir);
}

/// The same budget rules on both backends: `requests` at once, then each a window
/// after the one `requests` before it, whoever reserves; another limit starts afresh;
/// a Retry-After holds everyone back.
#[test]
fn both_backends_keep_the_same_sliding_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut backends = vec![(
        "sqlite",
        Backend::choose(&StateUrl::Embedded, Some(&dir.path().to_path_buf())),
    )];
    if let Some(url) = postgres::database() {
        let url = StateUrl::parse(Some(&url)).unwrap();
        backends.push(("postgres", Backend::choose(&url, None)));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, backend) in backends {
        let backend = backend.unwrap();
        // A second handle on the same state: another process.
        let other = match &backend {
            Backend::Embedded(_) => {
                Backend::choose(&StateUrl::Embedded, Some(&dir.path().to_path_buf())).unwrap()
            }
            Backend::Postgres(_) => backend.clone(),
        };
        runtime.block_on(async {
            backend.ready().await.unwrap();
            let minute = Duration::from_secs(60);
            let b = Budget {
                key: "test key".into(),
                requests: 3,
                window: minute,
            };
            let mut waits = Vec::new();
            for i in 0..7 {
                let on = if i % 2 == 0 { &backend } else { &other };
                waits.push(budget::reserve(on, &b).await.unwrap());
            }
            let second = Duration::from_secs(1);
            for (i, w) in waits.iter().enumerate() {
                let expected = minute * (i as u32 / 3);
                assert!(
                    *w <= expected && *w + second >= expected,
                    "{name}: reservation {i} waits {w:?}: {waits:?}"
                );
            }
            // Another limit for the same key starts afresh.
            let five = Budget {
                requests: 5,
                ..b.clone()
            };
            assert!(
                budget::reserve(&other, &five).await.unwrap() < second,
                "{name}"
            );
            // A Retry-After of 30 s holds everyone back that long.
            budget::block_for(&backend, &five, Duration::from_secs(30))
                .await
                .unwrap();
            let held = budget::reserve(&other, &five).await.unwrap();
            assert!(
                held <= Duration::from_secs(30) && held + second >= Duration::from_secs(30),
                "{name}: {held:?}"
            );
        });
    }
}

/// Both state stores keep named values and cursor leases alike: a value round trips
/// and is the old or the new; a held lease makes another run wait its bound and names
/// the holder; another key is another lease; a released lease is free at once; a
/// holder of this machine that is gone is taken over at once. In PostgreSQL each scope
/// (tenant and app) is its own.
#[test]
fn both_state_stores_keep_values_and_leases_alike() {
    let dir = tempfile::tempdir().unwrap();
    let open_local = || StateStore::Local(StateDb::open(dir.path()).unwrap());
    let mut stores: Vec<(&str, StateStore, StateStore)> =
        vec![("sqlite", open_local(), open_local())];
    let mut shared = None;
    if let Some(url) = postgres::database() {
        let Some(Backend::Postgres(pg)) =
            Backend::choose(&StateUrl::parse(Some(&url)).unwrap(), None)
        else {
            unreachable!("a postgres URL chooses PostgreSQL")
        };
        let scoped = |scope: &str| StateStore::Shared(SharedState::new(pg.clone(), scope.into()));
        stores.push(("postgres", scoped("tenant-a app"), scoped("tenant-a app")));
        shared = Some(scoped("tenant-b app"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for (name, one, other) in &stores {
            assert_eq!(one.get("k").await.unwrap(), None, "{name}");
            one.put("k", "first").await.unwrap();
            other.put("k", "second").await.unwrap();
            assert_eq!(
                one.get("k").await.unwrap().as_deref(),
                Some("second"),
                "{name}"
            );

            let held = |o: LeaseOutcome| match o {
                LeaseOutcome::Held(l) => l,
                LeaseOutcome::Busy(h) => panic!("{name}: busy {h:?}"),
            };
            let a = held(
                CursorLease::acquire(one, "cursor", Duration::ZERO)
                    .await
                    .unwrap(),
            );
            let wait = Duration::from_millis(400);
            let started = std::time::Instant::now();
            match CursorLease::acquire(other, "cursor", wait).await.unwrap() {
                LeaseOutcome::Busy(h) => {
                    assert!(
                        h.holder
                            .starts_with(&format!("pid {} on ", std::process::id()))
                    );
                    assert!(h.expires_at_ms > jiff::Timestamp::now().as_millisecond());
                }
                LeaseOutcome::Held(_) => panic!("{name}: two holders"),
            }
            assert!(started.elapsed() >= wait, "{name}: it waited its bound");
            let b = held(
                CursorLease::acquire(other, "other cursor", Duration::ZERO)
                    .await
                    .unwrap(),
            );
            a.still_held(one).await.unwrap();
            a.release().await;
            drop(b);
            let c = held(
                CursorLease::acquire(other, "cursor", Duration::ZERO)
                    .await
                    .unwrap(),
            );
            c.still_held(other).await.unwrap();
            c.release().await;
        }
        if let (Some(b), Some((_, a, _))) = (&shared, stores.get(1)) {
            // Another tenant's scope: its own values, its own leases.
            assert_eq!(b.get("k").await.unwrap(), None);
            let _held = CursorLease::acquire(a, "cursor", Duration::ZERO)
                .await
                .unwrap();
            assert!(matches!(
                CursorLease::acquire(b, "cursor", Duration::ZERO)
                    .await
                    .unwrap(),
                LeaseOutcome::Held(_)
            ));
        }
    });
}

fn run_with_url(emu: &Emulator, url: &str) -> Outcome {
    run_with_key(emu, url, Some(STATE_KEY), emu.state.path())
}

/// `get_presence` with the shared state `url` and the state key `key` (none: unset).
fn run_with_key(emu: &Emulator, url: &str, key: Option<&str>, dir: &Path) -> Outcome {
    let envelope =
        json!({"asset": emu.asset("client_credentials"), "inputs": {"id": emu.user_id(0)}})
            .to_string();
    let mut env = vec![("MSGRAPH_CONNECTOR_STATE_URL", url)];
    env.extend(key.map(|k| ("MSGRAPH_CONNECTOR_STATE_KEY", k)));
    process::run_env(&["run", "get_presence"], envelope.as_bytes(), dir, &env)
}

/// A row of `msgraph_token_cache`, read with tokio-postgres as an outsider would.
struct TokenRow {
    credential: String,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
}

fn token_rows(url: &str) -> Vec<TokenRow> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let rows = client
            .query(
                "SELECT credential, nonce, sealed FROM msgraph_token_cache",
                &[],
            )
            .await
            .unwrap();
        drop(client);
        let _ = conn.await;
        rows.iter()
            .map(|r| TokenRow {
                credential: r.get(0),
                nonce: r.get(1),
                sealed: r.get(2),
            })
            .collect()
    })
}

/// The row carries a sealed entry: no access token (every one the emulator issues
/// starts with the same JWT header), no refresh token, no secret, no JSON.
fn assert_sealed(emu: &Emulator, row: &TokenRow) {
    assert_eq!(row.nonce.len(), 12);
    assert!(row.sealed.len() > 100, "{}", row.sealed.len());
    let text = String::from_utf8_lossy(&row.sealed);
    let secret = emu.asset("client_credentials")["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    for plain in [
        crate::support::emulator::token_header_b64().as_str(),
        "1.EMU",
        "access_token",
        secret.as_str(),
    ] {
        assert!(!text.contains(plain), "{plain:?} is in the row");
    }
    assert!(!row.credential.contains(&secret));
}

fn assert_state_error(out: &Outcome, says: &str, password: &str) -> Value {
    assert_eq!(out.code, 7, "{}\n{}", out.stdout, out.stderr);
    let e = out.json()["error"].clone();
    assert_eq!(e["kind"], "state", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(password), "the password leaked: {text}");
    }
    e
}

#[test]
fn a_state_url_that_cannot_be_used_is_exit_7_without_its_password_and_without_requests() {
    let emu = EmulatorSetup::users(5).start();
    // Not a backend we know.
    let out = run_with_url(&emu, "mysql://app:Sup3rSecretPw@127.0.0.1/state");
    assert_state_error(&out, "\"mysql\"", "Sup3rSecretPw");
    // Not a URL tokio-postgres can read (a port that is not a number).
    let out = run_with_url(
        &emu,
        "postgres://app:Sup3rSecretPw@127.0.0.1:notaport/state",
    );
    assert_state_error(&out, "cannot be read", "Sup3rSecretPw");
    // Nobody listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = run_with_url(
        &emu,
        &format!("postgres://app:Sup3rSecretPw@127.0.0.1:{port}/state?connect_timeout=5"),
    );
    let e = assert_state_error(&out, "cannot connect", "Sup3rSecretPw");
    assert!(e["message"].as_str().unwrap().contains("[REDACTED]"), "{e}");
    // The MCP server stops at start, from the environment too (its stdout is the
    // protocol's: the error is on stderr).
    let asset_file = emu.state.path().join("asset.json");
    std::fs::write(&asset_file, emu.asset("client_credentials").to_string()).unwrap();
    let out = process::run_env(
        &["mcp", "--asset", asset_file.to_str().unwrap()],
        b"",
        emu.state.path(),
        &[
            (
                "MSGRAPH_CONNECTOR_STATE_URL",
                &format!("postgres://app:Sup3rSecretPw@127.0.0.1:{port}/state"),
            ),
            ("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY),
        ],
    );
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(
        out.stderr.contains("state error: cannot connect"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Sup3rSecretPw") && !out.stdout.contains("Sup3rSecretPw"));
    std::fs::remove_file(&asset_file).unwrap();
    assert!(emu.log().is_empty(), "no request left: {:?}", emu.log());
    // Nothing local was used instead.
    assert!(!emu.state.path().join("pacer.sqlite3").exists());

    let Some(url) = postgres::database() else {
        return;
    };
    // Wrong credentials.
    let (head, rest) = url.split_once('@').unwrap();
    let (user, password) = head.rsplit_once(':').unwrap();
    let wrong = format!("{user}:WrongPassw0rd@{rest}");
    let out = run_with_url(&emu, &wrong);
    assert_state_error(&out, "password authentication failed", "WrongPassw0rd");
    assert!(emu.log().is_empty());
    // The right ones, from the environment: the schema is made, the request goes.
    let out = process::run_env(
        &["run", "get_presence"],
        json!({"asset": emu.asset("client_credentials"), "inputs": {"id": emu.user_id(0)}})
            .to_string()
            .as_bytes(),
        emu.state.path(),
        &[
            ("MSGRAPH_CONNECTOR_STATE_URL", url.as_str()),
            ("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains(password));
    // An office action without Graph keeps its presence in the shared state too, under
    // the scope of the asset the sync ran with: without one it cannot know which, and
    // says so (exit 2 at /asset) rather than read this machine's state dir.
    let before = emu.log().len();
    let out = process::run_env(
        &["--state-url", &url, "run", "get_office_presence"],
        json!({"inputs": {}}).to_string().as_bytes(),
        emu.state.path(),
        &[("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY)],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let e = out.json()["error"].clone();
    assert_eq!(e["details"][0]["path"], "/asset", "{e}");
    assert!(!out.stderr.contains(password) && !out.stdout.contains(password));
    assert_eq!(emu.log().len(), before, "no request");
    assert!(!emu.state.path().join("state.sqlite3").exists());
    assert!(!emu.state.path().join("presence.sqlite3").exists());
    // A newer version's schema is refused, and left as it is.
    postgres::query(&url, "UPDATE msgraph_schema_version SET version = 99");
    let out = run_with_url(&emu, &url);
    assert_state_error(&out, "newer", password);
    assert_eq!(
        postgres::query(&url, "SELECT version FROM msgraph_schema_version"),
        ["99"]
    );
}

/// The shared token cache needs the state key: without one (or with one that is not
/// 32 bytes) the run is exit 7 before any request, the value never shown; with another
/// key than the one that sealed the row, the row is a miss and a new token replaces it.
#[test]
fn the_shared_token_cache_needs_the_state_key_and_another_key_is_a_miss() {
    let Some(url) = postgres::database() else {
        return;
    };
    let emu = EmulatorSetup::users(5).start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = run_with_key(&emu, &url, None, a.path());
    assert_state_error(
        &out,
        "MSGRAPH_CONNECTOR_STATE_KEY is not set",
        "no password",
    );
    let out = run_with_key(&emu, &url, Some("bm90IDMyIGJ5dGVz"), a.path());
    assert_state_error(&out, "not base64 of 32 bytes", "bm90IDMyIGJ5dGVz");
    assert!(emu.log().is_empty(), "no request left: {:?}", emu.log());
    // With the key: one token, found by a worker on another state dir.
    for dir in [&a, &b] {
        let out = run_with_key(&emu, &url, Some(STATE_KEY), dir.path());
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(emu.token_requests(), 1);
    let first = token_rows(&url).remove(0);
    assert_sealed(&emu, &first);
    // Another key: the row does not open (said on stderr, without secrets), a new token
    // is fetched and sealed under the new key, with a fresh nonce.
    let out = run_with_key(&emu, &url, Some(OTHER_KEY), a.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("does not open with this state key"),
        "{}",
        out.stderr
    );
    for key in [STATE_KEY, OTHER_KEY] {
        assert!(!out.stderr.contains(key));
    }
    emu.assert_no_secrets(&out.stderr, None);
    assert_eq!(emu.token_requests(), 2);
    let second = token_rows(&url).remove(0);
    assert_ne!(first.nonce, second.nonce);
    assert_ne!(
        first.credential, second.credential,
        "fingerprints follow the key"
    );
    let out = run_with_key(&emu, &url, Some(OTHER_KEY), b.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(emu.token_requests(), 2, "the new row serves the new key");
    assert_eq!(token_rows(&url).len(), 1);
}

/// A `refresh_token` asset on several machines: the seed is redeemed once (Entra
/// rotates it and the old one dies), and every worker uses the token that one got.
#[test]
fn workers_racing_with_one_refresh_token_redeem_it_once() {
    let Some(url) = postgres::database() else {
        return;
    };
    let emu = EmulatorSetup::users(5).start();
    let envelope =
        json!({"asset": emu.asset("refresh_token"), "inputs": {"id": emu.user_id(1)}}).to_string();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (dir, envelope, url) = (
                dirs[i % 2].path().to_path_buf(),
                envelope.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                process::run_env(
                    &["run", "get_presence"],
                    envelope.as_bytes(),
                    &dir,
                    &[
                        ("MSGRAPH_CONNECTOR_STATE_URL", url.as_str()),
                        ("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY),
                    ],
                )
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
        emu.assert_no_secrets(&out.stdout, None);
    }
    assert_eq!(emu.token_requests(), 1);
    let rows = token_rows(&url);
    assert_eq!(rows.len(), 1);
    assert_sealed(&emu, &rows[0]);
}
