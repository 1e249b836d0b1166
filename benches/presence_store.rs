//! One batch of 10,000 sign-ins (1,000 users, two days, every kind of sign-in the rules
//! meet) through the presence engine into each store (issue 17, step 5): the embedded
//! SQLite file and the shared PostgreSQL store over loopback. Each iteration starts from
//! an empty store (a new state dir, a new scope), so every sign-in is new.
//!
//! Run: `cargo bench --profile dev --bench presence_store` (PostgreSQL:
//! `MSGRAPH_TEST_POSTGRES_URL`, else one is started with scripts/postgres). Medians in
//! docs/benchmarks.md ("Shared state").

use std::process::Command;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use msgraph_connector::backend::{Backend, SharedPresenceStore, StateUrl};
use msgraph_connector::office::OfficeStore;

#[path = "../tests/support/presence_day.rs"]
mod presence_day;

const SIGN_INS: usize = 10_000;
const USERS: usize = 1_000;

fn postgres_url() -> (String, Option<String>) {
    if let Ok(url) = std::env::var("MSGRAPH_TEST_POSTGRES_URL") {
        return (url, None);
    }
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres"))
        .args(["start", "--until-pid", &std::process::id().to_string()])
        .output()
        .expect("scripts/postgres runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_string(),
        lines.next().map(str::to_string),
    )
}

fn bench(c: &mut Criterion) {
    let engine = presence_day::engine(USERS);
    let sign_ins = presence_day::sign_ins(SIGN_INS, USERS, 11);
    let options = presence_day::evening();
    let (url, started) = postgres_url();
    let Some(Backend::Postgres(pg)) = Backend::choose(&StateUrl::parse(Some(&url)).unwrap(), None)
    else {
        panic!("not a PostgreSQL URL");
    };
    let dirs = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("presence_batch_10k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut n = 0u32;
    let mut open = |shared: bool| {
        n += 1;
        if shared {
            let scope = format!("bench {} {n}", uuid::Uuid::new_v4());
            OfficeStore::Shared(SharedPresenceStore::open(pg.clone(), scope).unwrap())
        } else {
            let dir = dirs.path().join(format!("s{n}"));
            OfficeStore::Embedded(ip_presence::PresenceStore::open(&dir).unwrap())
        }
    };
    for (name, shared) in [("sqlite", false), ("postgres", true)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || (open(shared), sign_ins.clone()),
                |(mut store, batch)| {
                    let report = engine.process(&mut store, batch, &options).unwrap();
                    assert_eq!(report.counts.discarded.duplicate, 0);
                    store
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    if let Some(dir) = started {
        let _ = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres"))
            .args(["stop", &dir])
            .status();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
