//! IP presence at organisation scale (issue 15): one whole `run evaluate_ip_presence`
//! process per data set, as a platform runs it, with every output written to a file.
//! Asserts the memory bound (peak RSS under 100 MiB) and flatness (the largest peak
//! within 10 % of the smallest), and prints wall time, peak RSS and the output's size.
//!
//! Run: `cargo bench --bench presence_scale` (Linux, needs GNU `/usr/bin/time` for the
//! child's peak RSS). The data (`OrgSpec` in `crates/ip-presence/benches/support/data.rs`:
//! 5,000 people, 2,000 nested ranges) is generated once under `$PRESENCE_SCALE_DIR`
//! (default `/tmp/presence-scale`; a 1M-sign-in file is ~0.8 GB).
//! `PRESENCE_SCALE=30:1000000,1:1000000,...` picks the sets (`days:sign-ins`; default the
//! issue's five: 30, 1, 7 and 90 days at 1M, and 30 days at 10M, which needs 8 GB);
//! `PRESENCE_SCALE_RUNS` the runs per set (default 3; medians).
//!
//! The job: `sign_ins_path` and `config_path`, `replay: true` with the default
//! late-arrival window (2 days), `now` at the end of the last day, `output_path` for the
//! events.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../crates/ip-presence/benches/support/data.rs"]
mod data;

use data::{OrgSpec, generate_org};

const BIN: &str = env!("CARGO_BIN_EXE_msgraph-connector");
const LIMIT_MIB: f64 = 100.0;
/// How far apart the peaks of the sets may be, in percent of the smallest.
const FLAT_PCT: f64 = 10.0;

/// One run: wall time, peak RSS (KiB) and the result's body.
fn run(envelope: &Path) -> (Duration, u64, Value) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(BIN)
        .args(["run", "evaluate_ip_presence"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::from(
            std::fs::File::open(envelope).expect("envelope"),
        ))
        .output()
        .expect("/usr/bin/time runs the connector");
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak = stderr
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .expect("/usr/bin/time prints the peak RSS");
    let result: Value = serde_json::from_slice(&out.stdout).expect("one result object");
    assert_eq!(
        result["status_code"], 200,
        "the job failed: {result} {stderr}"
    );
    (wall, peak, result)
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("PRESENCE_SCALE_DIR").unwrap_or_else(|_| "/tmp/presence-scale".into()),
    );
    let sets = std::env::var("PRESENCE_SCALE")
        .unwrap_or_else(|_| "30:1000000,1:1000000,7:1000000,90:1000000,30:10000000".into());
    let runs: usize = std::env::var("PRESENCE_SCALE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut peaks: Vec<(String, f64)> = Vec::new();
    for set in sets.split(',').filter(|s| !s.is_empty()) {
        let (days, sign_ins) = set.split_once(':').expect("days:sign-ins");
        let spec = OrgSpec {
            days: days.parse().expect("days"),
            sign_ins: sign_ins.parse().expect("sign-ins"),
            ..OrgSpec::default()
        };
        let here = dir.join(format!("{}d-{}", spec.days, spec.sign_ins));
        if !here.join("signins.jsonl").exists() {
            eprintln!("generating {} ...", here.display());
            generate_org(&here, &spec).expect("generate");
        }
        let envelope = here.join("envelope-bench.json");
        std::fs::write(
            &envelope,
            json!({"inputs": {
                "sign_ins_path": here.join("signins.jsonl"),
                "config_path": here.join("presence.json"),
                "now": spec.now().to_string(),
                "replay": true,
                "output_path": here.join("events.jsonl"),
            }})
            .to_string(),
        )
        .expect("envelope");
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        let mut last = Value::Null;
        for _ in 0..runs {
            let (wall, peak, result) = run(&envelope);
            walls.push(wall);
            rss.push(peak);
            last = result;
        }
        let body = &last["json_body"];
        let wall = median(walls);
        let peak = median(rss);
        let mib = peak as f64 / 1024.0;
        println!(
            "presence_scale {:>2} days {:>9} sign-ins: wall {:.3} s, peak RSS {:.1} MiB, output {:.1} MB \
             (lines {}), counts {}, state {} bytes",
            spec.days,
            spec.sign_ins,
            wall.as_secs_f64(),
            mib,
            body["output"]["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
            body["output"]["lines"],
            body["counts"],
            last["state"].to_string().len(),
        );
        peaks.push((set.to_owned(), mib));
    }
    let lo = peaks.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let hi = peaks.iter().map(|p| p.1).fold(0.0, f64::max);
    let spread = (hi / lo - 1.0) * 100.0;
    if peaks.len() > 1 {
        println!(
            "presence_scale peaks from {lo:.1} to {hi:.1} MiB: the largest is {spread:.1} % above the smallest"
        );
    }
    // Every set is measured and printed before the bound is checked, so one run shows
    // them all.
    let over: Vec<String> = peaks
        .iter()
        .filter(|(_, mib)| *mib >= LIMIT_MIB)
        .map(|(set, mib)| format!("{set}: {mib:.1} MiB"))
        .collect();
    assert!(
        over.is_empty(),
        "peak RSS over the {LIMIT_MIB} MiB bound (days:sign-ins): {}",
        over.join(", ")
    );
    assert!(
        peaks.len() < 2 || spread <= FLAT_PCT,
        "peak RSS not flat: {spread:.1} % apart (at most {FLAT_PCT} %): {peaks:?}"
    );
}
