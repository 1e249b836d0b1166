//! `get_presences` for 10,000 ids as a platform runs it: one whole process
//! against the emulator on loopback. Checks the request budget (exactly 16
//! presence requests, plus 1 token request when none is cached) and measures
//! the client's CPU time (user + system of the child process, from
//! `/proc/self/stat` cutime/cstime after `wait`) and wall time, with a cached token.
//!
//! Run: `cargo bench --bench get_presences` (Linux; prints one line per figure).
//! `GET_PRESENCES_RUNS=N` changes the number of timed runs (default 30; 0 skips
//! the whole-process figures).
//!
//! First, the criterion group `fastpath` times [`msgraph_connector::fastpath`]
//! against the plain path on one 650-presence answer (the most Graph sends): the
//! GUID parser against `uuid`, and the answer scanner against serde reading each
//! presence's id and against a `serde_json::Value` tree.
//!
//! The CPU figure has 10 ms ticks and shares the machine with everything else;
//! for a finer, steadier number run the release binary against
//! `msgraph-connector emulator --generate users=10000,sign_ins=0,seed=1 --throttle off`
//! with `perf stat -r 30 -e task-clock sh -c 'msgraph-connector run get_presences < env.json >/dev/null'`,
//! or count instructions with `valgrind --tool=callgrind` (deterministic).

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use graph_emulator::{self as emulator, EmulatorConfig, GenerateSpec, Tenant};
use msgraph_connector::fastpath::{guid, presence_scan};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_msgraph-connector");

/// User + system CPU of all waited-for children so far, from `/proc/self/stat`.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // Fields after the `(comm)`: state is field 3; cutime and cstime are 16 and 17.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[13].parse::<u64>().unwrap() + f[14].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

fn run(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("ASSET_KEYS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    child.stdin.take().expect("piped").write_all(stdin).unwrap();
    let out = child.wait_with_output().expect("binary ends");
    (out.status.code().unwrap_or(-1), out.stdout)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A `getPresencesByUserId` answer of 650 presences, written as Graph writes it
/// (the id first, then the other properties; a status message on one in five).
fn presence_answer() -> (String, Vec<String>) {
    let ids: Vec<String> = (0..650u128)
        .map(|i| {
            Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_string()
        })
        .collect();
    let mut body = String::from(
        r#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.presence)","value":["#,
    );
    for (i, id) in ids.iter().enumerate() {
        let (availability, activity) = [
            ("Available", "Available"),
            ("Busy", "InAMeeting"),
            ("Away", "Away"),
            ("Offline", "OffWork"),
        ][i % 4];
        let status = if i % 5 == 0 {
            r#"{"message":{"content":"Back at 3 — \"ping\" me","contentType":"text"},"publishedDateTime":"2024-05-01T09:00:00Z","expiryDateTime":null}"#
        } else {
            "null"
        };
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"{id}","availability":"{availability}","activity":"{activity}","statusMessage":{status},"outOfOfficeSettings":{{"message":null,"isOutOfOffice":false}},"workLocation":{{"workLocationType":"office","source":"automatic","placeId":null}},"sequenceNumber":"C{i:08}"}}"#
        ));
    }
    body.push_str("]}");
    (body, ids)
}

/// The fast paths against the plain path on one 650-presence answer.
fn fastpath(c: &mut Criterion) {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        value: Vec<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let uuid_u128 = |s: &str| Uuid::try_parse(s).ok().map(|u| u.as_u128());
    let (body, ids) = presence_answer();
    let scanned = presence_scan::presences(&body).unwrap();
    assert_eq!(scanned.len(), 650);
    assert!(
        scanned
            .iter()
            .zip(&ids)
            .all(|((n, _), id)| *n == uuid_u128(id)),
        "the scanner reads the ids uuid reads"
    );

    let mut g = c.benchmark_group("fastpath");
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function("guid_650_ids/fastpath", |b| {
        b.iter(|| {
            black_box(&ids)
                .iter()
                .filter_map(|id| guid::parse(id))
                .fold(0, |a, n| a ^ n)
        })
    });
    g.bench_function("guid_650_ids/uuid", |b| {
        b.iter(|| {
            black_box(&ids)
                .iter()
                .filter_map(|id| uuid_u128(id))
                .fold(0, |a, n| a ^ n)
        })
    });
    g.bench_function("answer_650_presences/fastpath", |b| {
        b.iter(|| presence_scan::presences(black_box(&body)).unwrap().len())
    });
    g.bench_function("answer_650_presences/serde_each_id", |b| {
        b.iter(|| {
            let answer: Answer = serde_json::from_str(black_box(&body)).unwrap();
            answer
                .value
                .into_iter()
                .map(|raw| {
                    let IdOnly { id } = serde_json::from_str(raw.get()).unwrap();
                    (uuid_u128(&id), raw)
                })
                .collect::<Vec<_>>()
                .len()
        })
    });
    g.bench_function("answer_650_presences/serde_value_tree", |b| {
        b.iter(|| {
            let answer: Value = serde_json::from_str(black_box(&body)).unwrap();
            answer["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["id"].as_str().and_then(uuid_u128), p))
                .collect::<Vec<_>>()
                .len()
        })
    });
    g.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    fastpath(&mut criterion);
    criterion.final_summary();

    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run once then.
    let bench = std::env::args().any(|a| a == "--bench");
    let runs: usize = match std::env::var("GET_PRESENCES_RUNS") {
        Ok(v) if v == "0" => 0,
        Ok(v) if bench => v.parse().unwrap_or(30),
        _ if bench => 30,
        _ => 1,
    };
    if runs == 0 {
        return;
    }
    let tenant = Tenant::generate(&GenerateSpec {
        users: 10_000,
        sign_ins: 0,
        seed: 1,
        ..Default::default()
    });
    let ids: Vec<String> = tenant.users.iter().map(|u| u.id.to_string()).collect();
    let emu =
        emulator::start_in_background("127.0.0.1:0".parse().unwrap(), EmulatorConfig::new(tenant))
            .expect("emulator starts");
    let envelope = json!({
        "asset": emu.asset_json("client_credentials").unwrap(),
        "inputs": {"ids": ids},
    })
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_string();
    let args = ["--state-dir", state.as_str(), "run", "get_presences"];

    // Cold: no cached token.
    let (code, stdout) = run(&args, envelope.as_bytes());
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&stdout));
    let result: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        result["json_body"]["value"].as_array().unwrap().len(),
        10_000
    );
    let log = emu.request_log().snapshot();
    let tokens = log.iter().filter(|e| e.family == "token").count();
    let presence = log.iter().filter(|e| e.family == "presence").count();
    assert_eq!((tokens, presence, log.len()), (1, 16, 17), "request budget");
    println!(
        "get_presences 10000 ids: {presence} presence requests + {tokens} token request (cold)"
    );

    // Warm: cached token; timed.
    let mut cpu = Vec::with_capacity(runs);
    let mut wall = Vec::with_capacity(runs);
    for _ in 0..runs {
        emu.request_log().clear();
        let before = children_cpu();
        let start = Instant::now();
        let (code, _) = run(&args, envelope.as_bytes());
        wall.push(start.elapsed());
        cpu.push(children_cpu().saturating_sub(before));
        assert_eq!(code, 0);
        let log = emu.request_log().snapshot();
        assert_eq!(log.len(), 16, "16 presence requests, token cached");
    }
    let total_cpu: Duration = cpu.iter().sum();
    println!(
        "get_presences 10000 ids, cached token, {runs} runs: client CPU mean {:.1} ms (user+sys, 10 ms ticks), wall median {:.1} ms",
        total_cpu.as_secs_f64() * 1000.0 / runs as f64,
        median(wall).as_secs_f64() * 1000.0
    );

    // One get_presence as a whole process with a cached token (issue 5: < 5 ms median).
    let one = json!({
        "asset": emu.asset_json("client_credentials").unwrap(),
        "inputs": {"id": ids[0]},
    })
    .to_string();
    let one_args = ["--state-dir", state.as_str(), "run", "get_presence"];
    let one_runs = if bench { runs.max(100) } else { 1 };
    let mut one_wall = Vec::with_capacity(one_runs);
    let before = children_cpu();
    for _ in 0..one_runs {
        let start = Instant::now();
        let (code, _) = run(&one_args, one.as_bytes());
        one_wall.push(start.elapsed());
        assert_eq!(code, 0);
    }
    let one_cpu = children_cpu().saturating_sub(before);
    println!(
        "get_presence, cached token, {one_runs} runs: wall median {:.2} ms, CPU mean {:.1} ms",
        median(one_wall).as_secs_f64() * 1000.0,
        one_cpu.as_secs_f64() * 1000.0 / one_runs as f64
    );

    // The floor every action pays: a process that refuses its input.
    let before = children_cpu();
    for _ in 0..runs {
        run(&args, br#"{"asset":{},"inputs":{"ids":[]}}"#);
    }
    let floor = children_cpu().saturating_sub(before);
    println!(
        "process start-up floor (invalid input, no network), {runs} runs: CPU mean {:.1} ms",
        floor.as_secs_f64() * 1000.0 / runs as f64
    );
}
