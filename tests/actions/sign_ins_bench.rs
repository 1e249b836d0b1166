//! Benchmarks of pull_sign_ins against the emulator (ignored by default; numbers for
//! docs/benchmarks.md). Run them with the release binary:
//!
//! ```text
//! cargo test --release --test actions -- --ignored --nocapture --test-threads 1 sign_ins_bench
//! ```
//!
//! * `backfill_100k_with_the_limit_lifted`: 100,000 generated sign-ins into an
//!   `output_path`, audit-log throttling off on both sides; records/s, the
//!   connector's peak RSS and CPU time (from `/usr/bin/time -v`, else VmHWM polled
//!   from `/proc/<pid>/status`).
//! * `paced_to_the_published_limit`: 5 requests / 10 s, 1,000 a page; the rate
//!   achieved in steady state, from the emulator's request log (pages 5 to 35).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graph_emulator::{GenerateSpec, ThrottleConfig};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::emulator::{Emulator, EmulatorSetup};
use crate::support::process::BIN;

struct Measured {
    elapsed: Duration,
    peak_rss_kib: Option<u64>,
    cpu_seconds: Option<f64>,
    result: Value,
}

/// Run `pull_sign_ins` once, measuring wall time, peak RSS and CPU of the connector.
fn measure(asset: &Value, inputs: Value, state_dir: &std::path::Path) -> Measured {
    let envelope = json!({"asset": asset, "inputs": inputs});
    let time_v = std::path::Path::new("/usr/bin/time").exists();
    let mut cmd = if time_v {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("--state-dir")
        .arg(state_dir)
        .args(["run", "pull_sign_ins"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(envelope.to_string().as_bytes())
        .unwrap();
    let pid = child.id();
    // Without `time -v`: poll the high-water mark while it runs.
    let poller = (!time_v).then(|| {
        std::thread::spawn(move || {
            let mut hwm = 0;
            while let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kib) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    hwm = kib;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            hwm
        })
    });
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let peak_rss_kib = match poller {
        Some(p) => Some(p.join().unwrap()).filter(|k| *k > 0),
        None => field("Maximum resident set size (kbytes):").and_then(|v| v.parse().ok()),
    };
    let cpu_seconds = match (
        field("User time (seconds):").and_then(|v| v.parse::<f64>().ok()),
        field("System time (seconds):").and_then(|v| v.parse::<f64>().ok()),
    ) {
        (Some(u), Some(s)) => Some(u + s),
        _ => None,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    Measured {
        elapsed,
        peak_rss_kib,
        cpu_seconds,
        result: serde_json::from_str(stdout.trim()).unwrap(),
    }
}

fn generated(sign_ins: usize, throttle: ThrottleConfig) -> Emulator {
    EmulatorSetup::generated(GenerateSpec {
        users: 2000,
        sign_ins,
        seed: 11,
        day: None,
    })
    .throttle(throttle)
    // The day after the generated working day: every sign-in is visible.
    .clock_frozen_at("2025-06-03T12:00:00Z")
    .start()
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture, release build"]
fn backfill_100k_with_the_limit_lifted() {
    let n = 100_000;
    let emu = generated(
        n,
        ThrottleConfig {
            audit_logs: None,
            ..ThrottleConfig::published()
        },
    );
    let mut asset = emu.asset("client_credentials");
    asset["rate_limits"] = json!({"audit_logs": {"requests": 1000000, "per_seconds": 1}});
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sign-ins.jsonl");
    let m = measure(
        &asset,
        json!({"since": "2025-06-01T00:00:00Z", "output_path": out}),
        dir.path(),
    );
    let body = &m.result["json_body"];
    assert_eq!(body["records"], n as u64);
    let lines =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
            .count();
    assert_eq!(lines, n);
    let secs = m.elapsed.as_secs_f64();
    println!(
        "backfill {n} sign-ins, {} pages, limit lifted: {secs:.2} s wall, {:.0} records/s, \
         peak RSS {} KiB, connector CPU {} ({} per record), output {} MiB",
        body["pages"],
        n as f64 / secs,
        m.peak_rss_kib.map_or("?".into(), |k| k.to_string()),
        m.cpu_seconds.map_or("?".into(), |c| format!("{c:.2} s")),
        m.cpu_seconds
            .map_or("?".into(), |c| format!("{:.1} µs", c * 1e6 / n as f64)),
        std::fs::metadata(&out).unwrap().len() / (1024 * 1024),
    );
    if let Some(k) = m.peak_rss_kib {
        assert!(k < 50 * 1024, "peak RSS {k} KiB is not under 50 MiB");
    }
}

#[test]
#[ignore = "benchmark: takes about 80 s at the published limit"]
fn paced_to_the_published_limit() {
    let emu = generated(45_000, ThrottleConfig::published());
    let asset = emu.asset("client_credentials");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sign-ins.jsonl");
    let m = measure(
        &asset,
        json!({"since": "2025-06-01T00:00:00Z", "top": 1000, "max_records": 40_000, "output_path": out}),
        dir.path(),
    );
    let log = emu.request_log().family("signins");
    let ok: Vec<_> = log.iter().filter(|e| e.status == 200).collect();
    let throttled = log.iter().filter(|e| e.status == 429).count();
    let t = |i: usize| ok[i].time.parse::<Timestamp>().unwrap();
    // Pages 5..35: past the first burst of five, thirty full pages of 1,000.
    let span = t(35).duration_since(t(5)).as_secs_f64();
    let rate = 30_000.0 / span;
    println!(
        "paced at 5 requests / 10 s, 1,000 a page: {rate:.1} records/s in steady state \
         (pages 5-35 over {span:.2} s), {} pages, {} records in {:.1} s wall, {throttled} x 429",
        m.result["json_body"]["pages"],
        m.result["json_body"]["records"],
        m.elapsed.as_secs_f64()
    );
    assert!(
        (rate - 500.0).abs() <= 25.0,
        "{rate} records/s is not within 5 % of 500"
    );
}
