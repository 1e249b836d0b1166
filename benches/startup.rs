//! Start-up is part of every action a platform runs: whole-process timings of
//! `schema asset` and of `run` refusing an invalid input (no network).
//!
//! Run: `cargo bench --bench startup` (medians in docs/benchmarks.md).

use std::io::Write;
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};

const BIN: &str = env!("CARGO_BIN_EXE_msgraph-connector");

fn run(args: &[&str], stdin: &[u8]) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("ASSET_KEYS")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let _ = child.stdin.take().expect("piped").write_all(stdin);
    child.wait().expect("binary ends");
}

fn startup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_string();
    let invalid = br#"{"asset":{"type":"client_credentials","tenant_id":"t","client_id":"c","client_secret":"s"},"inputs":{"id":42}}"#;
    let mut group = c.benchmark_group("startup");
    group.sample_size(200);
    group.bench_function("schema_asset", |b| {
        b.iter(|| run(&["--state-dir", &state, "schema", "asset"], b""))
    });
    group.bench_function("run_invalid_input", |b| {
        b.iter(|| run(&["--state-dir", &state, "run", "get_presence"], invalid))
    });
    group.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
