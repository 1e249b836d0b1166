//! The shared pacer's reservation cost per request (issue 17): one
//! `backend::budget::reserve` on the embedded SQLite store and on PostgreSQL over
//! loopback, for the three published budgets (audit logs 5 / 10 s, presence
//! 1,500 / 30 s, directory 3,500 / 10 s: the ring a reservation rewrites grows with
//! the limit). Reservations run into the future (nobody sleeps), which costs the same.
//!
//! Run: `cargo bench --bench shared_pacer` (PostgreSQL: `MSGRAPH_TEST_POSTGRES_URL`, else
//! one is started with scripts/postgres). Medians in docs/benchmarks.md.

use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use msgraph_connector::backend::budget::{self, Budget};
use msgraph_connector::backend::{Backend, StateUrl};

const BUDGETS: [(&str, u32, f64); 3] = [
    ("audit_logs_5", 5, 10.0),
    ("presence_1500", 1500, 30.0),
    ("directory_3500", 3500, 10.0),
];

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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, started) = postgres_url();
    let backends = [
        (
            "sqlite",
            Backend::choose(&StateUrl::Embedded, Some(&dir.path().to_path_buf())).unwrap(),
        ),
        (
            "postgres",
            Backend::choose(&StateUrl::parse(Some(&url)).unwrap(), None).unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("pacer_reserve");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(4));
    for (name, backend) in &backends {
        runtime.block_on(backend.ready()).unwrap();
        for (budget_name, requests, per) in BUDGETS {
            let budget = Budget {
                key: format!("bench {budget_name} {}", uuid::Uuid::new_v4()),
                requests,
                window: Duration::from_secs_f64(per * 1.02),
            };
            group.bench_function(format!("{name}/{budget_name}"), |b| {
                b.iter(|| runtime.block_on(budget::reserve(backend, &budget)).unwrap())
            });
        }
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
