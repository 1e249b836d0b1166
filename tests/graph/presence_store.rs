//! The IP presence store over both engines (issue 17, step 5): every scenario runs on
//! the embedded SQLite store and on the shared PostgreSQL one (a real server, a database
//! per test: `support::postgres`), and the two must give equal reports and answers; the
//! concrete expectations are checked too, so two equally wrong stores fail. Then what
//! only the shared store has: scopes that do not see each other, workers on one scope
//! that count each sign-in once, the schema version, and its errors.

use std::path::PathBuf;
use std::sync::Arc;

use ip_presence::{
    BatchReport, DayChange, DiscoveryBlock, Override, Place, PresenceBackend, PresenceEngine,
    PresenceError, ProcessOptions, RangeRef, SignIn, Transition, UserRef,
};
use jiff::civil::{Date, date};
use msgraph_connector::backend::{Backend, Postgres, SharedPresenceStore, StateUrl};
use msgraph_connector::office::OfficeStore;

use crate::support::postgres;
use crate::support::presence_day::{engine, evening, sign_in, sign_ins};

/// Where a scenario keeps its store.
#[derive(Clone)]
enum Engine {
    Sqlite(PathBuf),
    Postgres { url: String, scope: String },
}

/// Named in messages without the test server's password.
impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Sqlite(_) => f.write_str("SQLite"),
            Engine::Postgres { scope, .. } => write!(f, "PostgreSQL (scope {scope})"),
        }
    }
}

impl Engine {
    fn open(&self) -> OfficeStore {
        match self {
            Engine::Sqlite(dir) => {
                OfficeStore::Embedded(ip_presence::PresenceStore::open(dir).unwrap())
            }
            Engine::Postgres { url, scope } => {
                OfficeStore::Shared(SharedPresenceStore::open(pg(url), scope.clone()).unwrap())
            }
        }
    }
}

fn pg(url: &str) -> Arc<Postgres> {
    match Backend::choose(&StateUrl::parse(Some(url)).unwrap(), None) {
        Some(Backend::Postgres(pg)) => pg,
        other => panic!("not PostgreSQL: {other:?}"),
    }
}

/// The engines of one test: SQLite in a temporary dir, and PostgreSQL in a new database
/// when there is a server (under CI there must be one: `support::postgres`).
fn engines(dir: &tempfile::TempDir) -> Vec<Engine> {
    let mut out = vec![Engine::Sqlite(dir.path().join("state"))];
    if let Some(url) = postgres::database() {
        out.push(Engine::Postgres {
            url,
            scope: "https://login.example/tenant-a/oauth2/v2.0/token client-a".into(),
        });
    }
    out
}

/// `scenario` on each engine: the answers must be equal; the first is returned.
fn on_both<T: PartialEq + std::fmt::Debug>(scenario: impl Fn(&Engine) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let mut answers = engines(&dir)
        .iter()
        .map(|e| (format!("{e:?}"), scenario(e)))
        .collect::<Vec<_>>();
    for (name, answer) in &answers[1..] {
        assert_eq!(
            answer, &answers[0].1,
            "{name} answers otherwise than SQLite"
        );
    }
    answers.swap_remove(0).1
}

/// Everything a store answers, for comparing two stores.
#[derive(Debug, PartialEq)]
struct Answers {
    presence: Vec<ip_presence::PresenceEvent>,
    access: Vec<ip_presence::AccessEvent>,
    discovery: Vec<DiscoveryBlock>,
    who: Vec<ip_presence::WhoIsWhere>,
    occupancy: Vec<ip_presence::OccupancyDay>,
    users: Vec<ip_presence::UserPresence>,
}

fn answers(store: &mut OfficeStore, e: &PresenceEngine, users: usize) -> Answers {
    let days = [date(2024, 5, 6), date(2024, 5, 7), date(2024, 5, 8)];
    let mut who = Vec::new();
    for d in days {
        who.push(store.who_is_where(e, d, None, false).unwrap());
        who.push(store.who_is_where(e, d, None, true).unwrap());
        who.push(store.who_is_where(e, d, Some("Berlin"), false).unwrap());
        who.push(store.who_is_where(e, d, Some("remote"), true).unwrap());
    }
    Answers {
        presence: store.all_presence_events().unwrap(),
        access: store.all_access_events().unwrap(),
        discovery: store.discovery().unwrap(),
        who,
        occupancy: store.occupancy(days[0], days[2], None).unwrap(),
        users: (0..users)
            .map(|i| {
                store
                    .user_presence(&format!("U{i}@X"), days[0], days[2])
                    .unwrap()
            })
            .collect(),
    }
}

/// A day's sign-ins in three overlapping batches give the same reports, events,
/// statuses, access events, discovery and answers on both stores.
#[test]
fn a_days_sign_ins_give_the_same_events_statuses_and_discovery_on_both_stores() {
    let (reports, answers) = on_both(|place| {
        let e = engine(40);
        let all = sign_ins(3_000, 40, 1);
        let mut store = place.open();
        let reports: Vec<BatchReport> = [&all[..1_200], &all[1_000..2_500], &all[2_000..]]
            .into_iter()
            .map(|batch| e.process(&mut store, batch.to_vec(), &evening()).unwrap())
            .collect();
        (reports, answers(&mut store, &e, 40))
    });
    // Not two equally empty stores: the batches did what a day does.
    let counts = |r: &BatchReport| r.counts.discarded.duplicate;
    assert_eq!(counts(&reports[0]), 0);
    assert_eq!(counts(&reports[1]), 200, "ids of batch 1 are duplicates");
    assert_eq!(counts(&reports[2]), 500, "ids of batch 2 are duplicates");
    let total: u64 = reports.iter().map(|r| r.counts.received).sum();
    assert_eq!(total, 3_700);
    assert!(reports.iter().all(|r| !r.presence_events.is_empty()));
    assert!(reports[1..].iter().any(|r| !r.superseded_events.is_empty()));
    assert!(answers.presence.len() > 100, "{}", answers.presence.len());
    assert!(answers.access.len() > 1_000, "{}", answers.access.len());
    assert!(
        answers
            .access
            .iter()
            .all(|a| !a.ip.to_string().starts_with("10.8.")),
        "the quiet range keeps no access log"
    );
    assert_eq!(answers.discovery.len(), 2, "{:?}", answers.discovery);
    assert!(answers.who[4].locations.iter().any(|l| l.hidden > 0));
    assert!(!answers.occupancy.is_empty());
}

/// A late sign-in supersedes an event in both stores alike; a later one brings it back;
/// the events carry the sign-ins' times.
#[test]
fn late_arrival_supersedes_and_restores_events_alike() {
    let reports = on_both(|place| {
        let e = engine(3);
        let mut store = place.open();
        let now = ProcessOptions::at("2024-05-07T18:00:00Z".parse().unwrap());
        let batches = [
            vec![
                sign_in("a", "2024-05-07T09:00:00Z", "10.0.0.1", "u0@x"),
                sign_in("b", "2024-05-07T10:00:00Z", "192.0.2.1", "u0@x"),
            ],
            vec![sign_in("c", "2024-05-07T09:30:00Z", "192.0.2.9", "u0@x")],
            vec![sign_in("d", "2024-05-07T09:45:00Z", "10.0.0.7", "u0@x")],
        ];
        batches
            .into_iter()
            .map(|b| e.process(&mut store, b, &now).unwrap())
            .collect::<Vec<_>>()
    });
    let at = |r: &BatchReport, superseded: bool| {
        let events = if superseded {
            &r.superseded_events
        } else {
            &r.presence_events
        };
        events.iter().map(|e| e.at.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(
        at(&reports[0], false),
        ["2024-05-07T09:00:00Z", "2024-05-07T10:00:00Z"]
    );
    assert_eq!(at(&reports[1], false), ["2024-05-07T09:30:00Z"]);
    assert_eq!(at(&reports[1], true), ["2024-05-07T10:00:00Z"]);
    assert_eq!(
        at(&reports[2], false),
        ["2024-05-07T09:45:00Z", "2024-05-07T10:00:00Z"]
    );
}

/// Manual overrides, then retention: both stores alike, and what retention keeps.
#[test]
fn overrides_and_retention_alike() {
    let (after_override, after_prune, left) = on_both(|place| {
        let e = engine(10);
        let mut store = place.open();
        e.process(&mut store, sign_ins(400, 10, 2), &evening())
            .unwrap();
        // After the day's last sign-in (sign-ins sort before a manual change of the same
        // millisecond), so the overrides end the day.
        let t = "2024-05-08T23:59:59.999Z".parse().unwrap();
        let office = Some(Place::Office {
            location: "New York".into(),
        });
        // A day without sign-ins, then the end of a day with them.
        let r1 = e
            .set_manual(
                &mut store,
                "U1@X",
                office,
                "2024-05-06T12:00:00Z".parse().unwrap(),
                None,
                "admin@x",
            )
            .unwrap();
        let r2 = e
            .set_manual(&mut store, "u2@x", None, t, None, "admin@x")
            .unwrap();
        let before = answers(&mut store, &e, 10);
        // A month on, an empty run drops what retention no longer keeps.
        let june = ProcessOptions::at("2024-06-10T12:00:00Z".parse().unwrap());
        e.process(&mut store, Vec::new(), &june).unwrap();
        e.process(
            &mut store,
            vec![sign_in("june", "2024-06-10T08:00:00Z", "10.1.0.3", "u1@x")],
            &june,
        )
        .unwrap();
        let after = answers(&mut store, &e, 10);
        (
            (r1, r2, before),
            after,
            store.all_access_events().unwrap().len(),
        )
    });
    let (r1, r2, before) = after_override;
    assert_eq!(r1.presence_events.len(), 1);
    assert_eq!(r1.presence_events[0].set_by.as_deref(), Some("admin@x"));
    assert_eq!(r2.statuses[0].place, None, "a clear ends the day nowhere");
    let u1 = &before.users[1];
    assert_eq!(
        u1.days[0].place,
        Some(Place::Office {
            location: "New York".into()
        })
    );
    assert!(after_prune.discovery.is_empty());
    assert_eq!(after_prune.presence.len(), 1, "{:?}", after_prune.presence);
    assert_eq!(left, 1);
}

/// A store as the engine sees it through one call per sign-in (or, with `bulk`, through
/// the `_all` methods' one-by-one defaults), failing on its `left + 1`th observation.
struct FailingAt<'a> {
    inner: &'a mut OfficeStore,
    left: usize,
    bulk: bool,
}

impl PresenceBackend for FailingAt<'_> {
    fn in_bulk(&self) -> bool {
        self.bulk
    }
    fn begin(&mut self) -> Result<(), PresenceError> {
        self.inner.begin()
    }
    fn end(&mut self, ok: bool) -> Result<(), PresenceError> {
        self.inner.end(ok)
    }
    fn first_seen(
        &mut self,
        u: UserRef<'_>,
        id: &str,
        h: u64,
        d: Date,
    ) -> Result<bool, PresenceError> {
        self.inner.first_seen(u, id, h, d)
    }
    fn log_access(
        &mut self,
        u: UserRef<'_>,
        ip: std::net::IpAddr,
        d: Date,
    ) -> Result<bool, PresenceError> {
        self.inner.log_access(u, ip, d)
    }
    fn observe(
        &mut self,
        u: UserRef<'_>,
        d: Date,
        at: i64,
        r: RangeRef<'_>,
    ) -> Result<(), PresenceError> {
        if self.left == 0 {
            return Err(PresenceError::Invalid("the disk is full (test)".into()));
        }
        self.left -= 1;
        self.inner.observe(u, d, at, r)
    }
    fn discover(
        &mut self,
        b: ipnet::IpNet,
        ip: std::net::IpAddr,
        u: UserRef<'_>,
        d: Date,
    ) -> Result<(), PresenceError> {
        self.inner.discover(b, ip, u, d)
    }
    fn add_override(&mut self, u: &str, d: Date, o: Override) -> Result<(), PresenceError> {
        self.inner.add_override(u, d, o)
    }
    fn recompute(&mut self, sink: &mut dyn FnMut(DayChange)) -> Result<(), PresenceError> {
        self.inner.recompute(sink)
    }
    fn prune(&mut self, t: Date, r: u16, w: u16) -> Result<(), PresenceError> {
        self.inner.prune(t, r, w)
    }
    fn discovery(&mut self) -> Result<Vec<DiscoveryBlock>, PresenceError> {
        self.inner.discovery()
    }
    fn day_transitions(&mut self, u: &str, d: Date) -> Result<Vec<Transition>, PresenceError> {
        self.inner.day_transitions(u, d)
    }
}

/// A batch that fails halfway is rolled back: no event, no id kept, so the same
/// sign-ins count in full next time.
#[test]
fn a_rolled_back_batch_leaves_nothing() {
    let retried = on_both(|place| {
        let e = engine(20);
        let mut store = place.open();
        let day = sign_ins(500, 20, 3);
        // One call per sign-in here (the shared store's own calls), in bulk below.
        let mut failing = FailingAt {
            inner: &mut store,
            left: 100,
            bulk: false,
        };
        let err = e
            .process(&mut failing, day.clone(), &evening())
            .unwrap_err();
        assert!(err.to_string().contains("disk is full"), "{err}");
        let empty = answers(&mut store, &e, 20);
        assert!(empty.presence.is_empty() && empty.access.is_empty());
        assert!(empty.discovery.is_empty());
        // The store is usable after the rollback, and nothing was seen.
        let r = e.process(&mut store, day, &evening()).unwrap();
        assert_eq!(r.counts.discarded.duplicate, 0);
        (r, answers(&mut store, &e, 20))
    });
    assert!(retried.0.counts.presence_observed > 100);
}

/// The engine's two ways of calling a store, sign-in by sign-in and in bulk (as it
/// calls the shared store), give the same reports and the same store.
#[test]
fn sign_ins_in_bulk_and_one_by_one_give_the_same() {
    let e = engine(25);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut one_by_one = Engine::Sqlite(a.path().to_path_buf()).open();
    let mut store = Engine::Sqlite(b.path().to_path_buf()).open();
    let all = sign_ins(2_500, 25, 8);
    let mut duplicates = 0;
    for batch in [&all[..1_000], &all[600..2_000], &all[1_500..]] {
        let plain = e
            .process(&mut one_by_one, batch.to_vec(), &evening())
            .unwrap();
        let mut bulk = FailingAt {
            inner: &mut store,
            left: usize::MAX,
            bulk: true,
        };
        let in_bulk = e.process(&mut bulk, batch.to_vec(), &evening()).unwrap();
        assert_eq!(in_bulk, plain);
        assert!(plain.counts.access_logged > 0 && !plain.presence_events.is_empty());
        duplicates += plain.counts.discarded.duplicate;
    }
    assert_eq!(duplicates, 400 + 500);
    assert_eq!(
        answers(&mut store, &e, 25),
        answers(&mut one_by_one, &e, 25)
    );
}

/// The shared store's own: a database per test, or skipped (failed under CI).
fn database() -> Option<String> {
    postgres::database()
}

/// Two tenants in one database: each scope sees its own sign-ins only, and the same
/// sign-in id in both is new in both.
#[test]
fn two_scopes_in_one_database_do_not_see_each_other() {
    let Some(url) = database() else {
        return;
    };
    let e = engine(10);
    let mut a = SharedPresenceStore::open(pg(&url), "tenant-a client".into()).unwrap();
    let mut b = SharedPresenceStore::open(pg(&url), "tenant-b client".into()).unwrap();
    let day = sign_ins(300, 10, 4);
    let ra = e.process(&mut a, day.clone(), &evening()).unwrap();
    assert!(!ra.access_events.is_empty());
    assert!(b.all_access_events().unwrap().is_empty());
    assert!(b.all_presence_events().unwrap().is_empty());
    assert!(b.discovery().unwrap().is_empty());
    assert!(
        b.who_is_where(&e, date(2024, 5, 7), None, true)
            .unwrap()
            .locations
            .is_empty()
    );
    let rb = e.process(&mut b, day, &evening()).unwrap();
    assert_eq!(rb.counts.discarded.duplicate, 0, "b's first time");
    assert_eq!(ra, rb);
    // Retention in one scope deletes nothing of the other.
    let june = ProcessOptions::at("2024-06-30T12:00:00Z".parse().unwrap());
    e.process(&mut a, Vec::new(), &june).unwrap();
    assert!(a.all_access_events().unwrap().is_empty());
    assert_eq!(b.all_access_events().unwrap(), rb.access_events);
}

/// Workers applying overlapping batches to one scope at once (threads, each with its
/// own store and connection, as processes on several machines would): every sign-in is
/// counted once, and the store ends as one worker applying them all would leave it.
#[test]
fn workers_on_one_scope_count_each_sign_in_once() {
    let dir = tempfile::tempdir().unwrap();
    for place in engines(&dir) {
        let all = sign_ins(4_000, 30, 5);
        drop(place.open()); // made (and migrated) before the workers start
        let workers: Vec<_> = (0..3)
            .map(|w| {
                let place = place.clone();
                // Worker w applies sign-ins [1000 w, 1000 w + 2000): each overlaps the next.
                let mine: Vec<SignIn<'static>> = all[w * 1_000..w * 1_000 + 2_000].to_vec();
                std::thread::spawn(move || {
                    let e = engine(30);
                    let mut store = place.open();
                    let mut counts = Vec::new();
                    for batch in mine.chunks(250) {
                        counts.push(
                            e.process(&mut store, batch.to_vec(), &evening())
                                .unwrap()
                                .counts,
                        );
                    }
                    counts
                })
            })
            .collect();
        let counts: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        let received: u64 = counts.iter().map(|c| c.received).sum();
        let duplicates: u64 = counts.iter().map(|c| c.discarded.duplicate).sum();
        assert_eq!(received, 6_000, "{place:?}");
        assert_eq!(
            received - duplicates,
            4_000,
            "{place:?}: each of the 4,000 sign-ins counted once"
        );
        // The same end as one worker applying everything in one go.
        let e = engine(30);
        let mut shared = place.open();
        let one = tempfile::tempdir().unwrap();
        let mut alone = Engine::Sqlite(one.path().to_path_buf()).open();
        e.process(&mut alone, all.clone(), &evening()).unwrap();
        assert_eq!(
            answers(&mut shared, &e, 30),
            answers(&mut alone, &e, 30),
            "{place:?}"
        );
    }
}

/// Called from inside the runner's `current_thread` runtime, as `sync_ip_presence`'s
/// pull does: the shared store neither panics nor deadlocks.
#[test]
fn the_shared_store_works_inside_a_current_thread_runtime() {
    let Some(url) = database() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        // Something else on this runtime meanwhile, as the pull's own tasks.
        let ticker = tokio::spawn(async { tokio::time::sleep(std::time::Duration::ZERO).await });
        let e = engine(5);
        let mut store =
            OfficeStore::Shared(SharedPresenceStore::open(pg(&url), "scope".into()).unwrap());
        let r = e
            .process(&mut store, sign_ins(200, 5, 6), &evening())
            .unwrap();
        ticker.await.unwrap();
        r
    });
    assert!(!report.presence_events.is_empty());
}

/// The presence tables are a migration of the shared schema; a database of a newer
/// version is refused (kind `state`, exit 7), and a wrong password never shows.
#[test]
fn the_shared_store_refuses_a_newer_schema_and_hides_the_password() {
    let Some(url) = database() else {
        return;
    };
    drop(SharedPresenceStore::open(pg(&url), "s".into()).unwrap());
    assert_eq!(
        postgres::query(&url, "SELECT version FROM msgraph_schema_version"),
        [msgraph_connector::backend::postgres::SCHEMA_VERSION.to_string()]
    );
    let tables = postgres::query(
        &url,
        "SELECT table_name FROM information_schema.tables
         WHERE table_name LIKE 'msgraph_presence_%' ORDER BY table_name",
    );
    assert_eq!(tables.len(), 7, "{tables:?}");
    postgres::query(&url, "UPDATE msgraph_schema_version SET version = 99");
    let err = SharedPresenceStore::open(pg(&url), "s".into()).unwrap_err();
    assert_eq!(err.exit_code(), 7, "{}", err.message);
    assert_eq!(err.kind.as_str(), "state");
    assert!(err.message.contains("newer"), "{}", err.message);

    let (head, rest) = url.split_once('@').unwrap();
    let (user, password) = head.rsplit_once(':').unwrap();
    let wrong = format!("{user}:Wr0ngPresencePw@{rest}");
    let err = SharedPresenceStore::open(pg(&wrong), "s".into()).unwrap_err();
    assert_eq!(err.exit_code(), 7);
    assert!(err.message.contains("[REDACTED]"), "{}", err.message);
    assert!(!err.message.contains("Wr0ngPresencePw") && !err.message.contains(password));
    let store = SharedPresenceStore::open(pg(&url.replace("/t_", "/nope_")), "s".into());
    assert!(store.is_err());
}

/// While one worker's batch is open, another worker's batch on the same scope waits for
/// it (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the scope's advisory lock), even when
/// their sign-ins share no row; a batch of another scope does not wait. Without this a
/// day could be recomputed from one worker's half of its observations.
#[test]
fn a_batch_waits_for_the_open_batch_of_its_scope_only() {
    let dir = tempfile::tempdir().unwrap();
    for place in engines(&dir) {
        let e = engine(5);
        let mut first = place.open();
        first.begin().unwrap();
        let user = UserRef { ix: 0, key: "u0@x" };
        assert!(first.first_seen(user, "open", 0, date(2024, 5, 7)).unwrap());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let second = {
            let place = place.clone();
            std::thread::spawn(move || {
                let mut store = place.open();
                let batch = vec![sign_in("other", "2024-05-07T09:00:00Z", "10.0.0.1", "u1@x")];
                let r = engine(5).process(&mut store, batch, &evening()).unwrap();
                done_tx.send(()).unwrap();
                r
            })
        };
        let waited = done_rx.recv_timeout(std::time::Duration::from_millis(500));
        assert!(
            waited.is_err(),
            "{place:?}: the second batch ran inside the first"
        );
        first.end(true).unwrap();
        let r = second.join().unwrap();
        assert_eq!(r.counts.presence_observed, 1, "{place:?}");
        if let Engine::Postgres { url, .. } = &place {
            // Another scope is not held up by an open batch.
            first.begin().unwrap();
            let mut other = SharedPresenceStore::open(pg(url), "another tenant".into()).unwrap();
            let batch = vec![sign_in("x", "2024-05-07T09:00:00Z", "10.0.0.1", "u1@x")];
            e.process(&mut other, batch, &evening()).unwrap();
            first.end(false).unwrap();
        }
    }
}

/// The office's use cases (an administrator's change, who is where) answer alike from
/// the state dir's store and from the shared one, which leaves the state dir without a
/// presence file; a shared store that cannot be reached is exit 7, kind `state`,
/// naming the database without its password.
#[test]
fn the_office_answers_alike_from_either_store() {
    use msgraph_connector::office::{ManualChange, Office, WhoQuery};
    use msgraph_connector::state::SharedState;
    let config = engine(5).config().clone();
    let answer = on_both(|place| {
        let state = tempfile::tempdir().unwrap();
        let office = match place {
            Engine::Sqlite(dir) => Office::open(Some(dir), "test").unwrap(),
            Engine::Postgres { url, scope } => {
                Office::shared(SharedState::new(pg(url), scope.clone()))
            }
        };
        let change = office
            .set_manual(
                config.clone(),
                ManualChange {
                    user: "U1@x",
                    place: Some(Place::Office {
                        location: "Berlin".into(),
                    }),
                    date: Some(date(2024, 5, 7)),
                    at: "2024-05-07T10:00:00Z".parse().unwrap(),
                    set_by: "admin@x",
                },
            )
            .unwrap();
        let who = office
            .who_is_where(
                config.clone(),
                WhoQuery {
                    date: Some(date(2024, 5, 7)),
                    user: Some("u1@x"),
                    full_view: true,
                    ..WhoQuery::default()
                },
            )
            .unwrap();
        if let Engine::Postgres { .. } = place {
            assert!(!state.path().join("presence.sqlite3").exists());
        }
        (
            serde_json::to_value(change).unwrap(),
            serde_json::to_value(who).unwrap(),
        )
    });
    assert_eq!(
        answer.1["locations"][0]["users"],
        serde_json::json!(["u1@x"])
    );
    assert_eq!(answer.0["presence_events"][0]["set_by"], "admin@x");

    let state = tempfile::tempdir().unwrap();
    let office = Office::shared(SharedState::new(
        pg("postgres://app:Unre4chablePw@127.0.0.1:1/state?connect_timeout=2"),
        "s".into(),
    ));
    let err = office
        .who_is_where(config, WhoQuery::default())
        .unwrap_err();
    assert_eq!((err.exit_code(), err.kind.as_str()), (7, "state"));
    assert!(err.message.contains("[REDACTED]"), "{}", err.message);
    assert!(!err.message.contains("Unre4chablePw"), "{}", err.message);
    assert!(!state.path().join("presence.sqlite3").exists());
}
