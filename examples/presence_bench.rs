//! The 1M sign-in presence benchmark of issue 7, as a whole job.
//!
//! ```text
//! cargo run --release --example presence_bench -- generate /tmp/presence-bench
//! cargo run --release --example presence_bench -- run /tmp/presence-bench
//! ```
//! `generate` writes `signins.jsonl` (1,000,000 lines) and `presence.json` (2,000 ranges);
//! `run` prints wall time and peak RSS (VmHWM) of a separate process, so the generator's
//! memory does not count.

use ip_presence::bench::{BenchSpec, generate, run};

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
        _ => eprintln!("usage: presence_bench generate|run [DIR] [SIGN_INS]"),
    }
}
