//! The 1M sign-in presence benchmark of issue 7, as a whole job.
//!
//! ```text
//! cargo run --release -p ip-presence --example presence_bench -- generate /tmp/presence-bench
//! cargo run --release -p ip-presence --example presence_bench -- run /tmp/presence-bench
//! ```
//! `generate` writes `signins.jsonl` (1,000,000 lines) and `presence.json` (2,000 ranges);
//! `run` prints wall time and peak RSS (VmHWM) of a separate process, so the generator's
//! memory does not count.
//!
//! The organisation-scale data of issue 15 (`OrgSpec` in `benches/support/data.rs`):
//!
//! ```text
//! presence_bench generate-org /tmp/org30 [SIGN_INS (1000000)] [DAYS (30)] [USERS (5000)]
//! msgraph-connector run evaluate_ip_presence < /tmp/org30/envelope-window.json > out.json
//! msgraph-connector run evaluate_ip_presence < /tmp/org30/envelope-replay.json
//! ```
//! `generate-org` also writes two envelopes for the whole job as one connector run
//! (`sign_ins_path`, `config_path`, `now` at the end of the last day):
//! `envelope-window.json` with `late_window_days` covering every day (at most 90), so
//! nothing is too late, the events on stdout (the job as issue 15 found it; any version
//! runs it), and `envelope-replay.json`, a replay with the default window and the events
//! to `events.jsonl` beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use ip_presence::{
    Counts, MemoryState, PresenceBackend as _, PresenceConfig, PresenceEngine, PresenceError,
    ProcessOptions,
};
use jiff::Timestamp;
use serde::Serialize;

#[path = "../benches/support/data.rs"]
mod data;

use data::{BenchSpec, OrgSpec, generate, generate_org};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("/tmp/presence-bench", |s| s.as_str()));
    let mut spec = BenchSpec::default();
    if let Some(n) = args.get(2) {
        spec.sign_ins = n.parse().expect("sign-in count");
    }
    match args.first().map(String::as_str) {
        Some("generate") => {
            let files = generate(&dir, &spec).expect("generate");
            println!(
                "wrote {} ({} bytes, {:.0} bytes per sign-in) and {}",
                files.sign_ins.display(),
                files.bytes,
                files.bytes as f64 / spec.sign_ins as f64,
                files.config.display()
            );
        }
        Some("generate-org") => {
            let mut org = OrgSpec::default();
            let num = |i: usize| args.get(i).map(|n| n.parse::<usize>().expect("a number"));
            if let Some(n) = num(2) {
                org.sign_ins = n;
            }
            if let Some(n) = num(3) {
                org.days = n as u32;
            }
            if let Some(n) = num(4) {
                org.users = n;
            }
            let files = generate_org(&dir, &org).expect("generate");
            let envelope = serde_json::json!({
                "inputs": {
                    "sign_ins_path": files.sign_ins,
                    "config_path": files.config,
                    "now": org.now().to_string(),
                    "late_window_days": org.days.min(90),
                }
            });
            std::fs::write(dir.join("envelope-window.json"), envelope.to_string())
                .expect("envelope");
            // The same job as a replay: the default window, events to a file.
            let replay = serde_json::json!({
                "inputs": {
                    "sign_ins_path": files.sign_ins,
                    "config_path": files.config,
                    "now": org.now().to_string(),
                    "replay": true,
                    "output_path": dir.join("events.jsonl"),
                }
            });
            std::fs::write(dir.join("envelope-replay.json"), replay.to_string()).expect("envelope");
            println!(
                "wrote {} ({} bytes, {:.0} bytes per sign-in, {} days, {} users), {} and the envelopes",
                files.sign_ins.display(),
                files.bytes,
                files.bytes as f64 / org.sign_ins as f64,
                org.days,
                org.users,
                files.config.display()
            );
        }
        Some("run") => {
            let out = run(
                &dir.join("presence.json"),
                &dir.join("signins.jsonl"),
                spec.now(),
            )
            .expect("run");
            println!(
                "wall {:.3} s, peak RSS {:.1} MiB, {} sign-ins, {} access events, {} presence events, {} discovery blocks",
                out.wall.as_secs_f64(),
                out.peak_rss_kib.unwrap_or(0) as f64 / 1024.0,
                out.received,
                out.access_events,
                out.presence_events,
                out.discovery_blocks
            );
            println!("{}", serde_json::to_string(&out.counts).expect("counts"));
        }
        _ => eprintln!(
            "usage: presence_bench generate|run [DIR] [SIGN_INS] | generate-org DIR [SIGN_INS] [DAYS] [USERS]"
        ),
    }
}

/// Peak resident set size of this process (`VmHWM`), in KiB, where /proc has it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
struct BenchOutcome {
    wall: Duration,
    peak_rss_kib: Option<u64>,
    received: u64,
    access_events: usize,
    presence_events: usize,
    discovery_blocks: usize,
    counts: Counts,
}

/// The whole job: load the configuration, read and process the file with both cores,
/// deduplicate access events per user, address and day. Timed from start to finish.
fn run(config: &Path, sign_ins: &Path, now: Timestamp) -> Result<BenchOutcome, PresenceError> {
    let start = Instant::now();
    let engine = PresenceEngine::new(PresenceConfig::from_path(config)?)?;
    let mut state = MemoryState::new();
    let report = engine.process_file(&mut state, sign_ins, &ProcessOptions::at(now))?;
    let discovery = state.discovery()?;
    let wall = start.elapsed();
    Ok(BenchOutcome {
        wall,
        peak_rss_kib: peak_rss_kib(),
        received: report.counts.received,
        access_events: report.access_events.len(),
        presence_events: report.presence_events.len(),
        discovery_blocks: discovery.len(),
        counts: report.counts,
    })
}
