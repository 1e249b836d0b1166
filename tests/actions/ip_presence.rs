//! The IP presence actions through the real binary: evaluate_ip_presence (the rules,
//! the state round trip, config pointers), sync_ip_presence over real HTTP against the
//! emulator on 127.0.0.1 (late arrival across runs, nothing counted twice, a lost cursor),
//! and get/set/clear_office_presence on the store it fills (track_only, retention).

use std::collections::BTreeSet;
use std::time::Duration;

use graph_emulator::{FaultPlan, GenerateSpec, SignIn};
use ip_presence::{Place, PresenceStore};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use uuid::Uuid;

use msgraph_connector::backend::{Backend, SharedPresenceStore, StateUrl};

use crate::support::emulator::{self, Emulator, EmulatorSetup, T0};
use crate::support::postgres::{self, STATE_KEY};
use crate::support::process::{self, Outcome};

const NOW: &str = "2026-03-02T20:00:00Z";
const DAY: &str = "2026-03-02";

fn at(mins: i64) -> Timestamp {
    T0.parse::<Timestamp>()
        .unwrap()
        .checked_add(SignedDuration::from_mins(mins))
        .unwrap()
}

fn run(action: &str, inputs: &Value, state: Option<&Value>, dir: &std::path::Path) -> Value {
    let out = run_raw(action, inputs, state, dir);
    assert_eq!(out.code, 0, "{action}: {}\n{}", out.stdout, out.stderr);
    out.json()
}

fn run_raw(action: &str, inputs: &Value, state: Option<&Value>, dir: &std::path::Path) -> Outcome {
    let envelope = json!({"inputs": inputs, "state": state});
    process::run(&["run", action], envelope.to_string().as_bytes(), dir)
}

fn sign_in(id: &str, mins: i64, ip: &str, upn: &str) -> Value {
    json!({"id": id, "createdDateTime": at(mins).to_string(), "ipAddress": ip,
           "userPrincipalName": upn, "status": {"errorCode": 0}, "appDisplayName": "Teams"})
}

/// Two offices in two zones, a nested lab inside Berlin, a VPN marked remote, and a
/// range with presence off.
fn rules_config() -> Value {
    json!({
        "ranges": [
            {"name": "Berlin", "cidrs": ["10.1.0.0/16", "2001:db8:1::/48"], "location": "Berlin"},
            {"name": "Berlin lab", "cidrs": ["10.1.9.0/24"], "location": "Berlin lab"},
            {"name": "New York", "cidrs": ["10.2.0.0/16"], "location": "New York"},
            {"name": "VPN", "cidrs": ["192.0.2.0/26"], "remote": true},
            {"name": "Guest wifi", "cidrs": ["10.3.0.0/16"], "location": "Berlin",
             "presence_enabled": false}
        ],
        "users": [
            {"upn": "ann@x.example", "mode": "track_and_display"},
            {"upn": "bob@x.example", "mode": "track_only"},
            {"upn": "cat@x.example", "mode": "off"},
            {"upn": "dan@x.example", "mode": "track_and_display", "active": false},
            {"upn": "eve@x.example", "mode": "track_and_display"}
        ],
        "settings": {"time_zone": "UTC",
                     "location_time_zones": {"Berlin": "Europe/Berlin", "New York": "America/New_York"}}
    })
}

fn with(config: &Value, extra: Value) -> Value {
    let mut v = config.clone();
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// (user, at, place) of each event, for comparing runs.
fn events(v: &Value) -> BTreeSet<(String, String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let place = match (&e["location"], &e["remote"]) {
                (Value::String(l), _) => l.clone(),
                (_, Value::Bool(true)) => "Remote".into(),
                _ => "cleared".into(),
            };
            (
                e["user"].as_str().unwrap().into(),
                e["at"].as_str().unwrap().into(),
                place,
            )
        })
        .collect()
}

#[test]
fn evaluate_applies_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let sign_ins = json!([
        sign_in("1", 0, "10.1.0.5", "ANN@x.example"),   // office, UPN in another case
        sign_in("2", 30, "10.1.9.7", "ann@x.example"),  // nested lab: longest prefix wins
        sign_in("3", 40, "10.1.9.8", "ann@x.example"),  // same place: no new event
        sign_in("4", 60, "192.0.2.9", "ann@x.example"), // remote range
        sign_in("5", 10, "10.2.0.1", "bob@x.example"),  // track_only: recorded
        sign_in("6", 10, "10.1.0.1", "cat@x.example"),  // mode off: access only
        sign_in("7", 10, "10.1.0.1", "dan@x.example"),  // inactive
        sign_in("8", 10, "10.1.0.1", "zed@x.example"),  // unknown
        sign_in("9", 10, "100.64.1.1", "eve@x.example"), // no range, no auto-create
        sign_in("10", 20, "10.3.0.1", "eve@x.example"),  // presence off for the range
        {"id": "11", "createdDateTime": at(5).to_string(), "ipAddress": "10.1.0.1",
         "userPrincipalName": "eve@x.example", "status": {"errorCode": 50126}}, // failed
        sign_in("1", 0, "10.1.0.5", "ann@x.example"),   // the same id again
        {"id": "13", "ipAddress": "10.1.0.1", "userPrincipalName": "eve@x.example"}, // no time
        sign_in("14", 50, "2001:db8:1::9", "eve@x.example") // IPv6 office
    ]);
    let r = run(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins": sign_ins, "now": NOW})),
        None,
        dir.path(),
    );
    let b = &r["json_body"];
    let c = &b["counts"];
    assert_eq!(c["received"], 14);
    assert_eq!(
        c["discarded"],
        json!({"malformed": 1, "failed": 1, "unknown_user": 1, "inactive_user": 1,
               "too_late": 0, "duplicate": 1, "unmatched": 1})
    );
    assert_eq!(c["presence_mode_off"], 1);
    assert_eq!(c["presence_not_enabled"], 1);
    let got = events(&b["presence_events"]);
    let t = |m| at(m).to_string();
    let want: BTreeSet<_> = [
        ("ann@x.example", t(0), "Berlin"),
        ("ann@x.example", t(30), "Berlin lab"),
        ("ann@x.example", t(60), "Remote"),
        ("bob@x.example", t(10), "New York"),
        ("eve@x.example", t(50), "Berlin"),
    ]
    .into_iter()
    .map(|(u, a, p)| (u.to_string(), a, p.to_string()))
    .collect();
    assert_eq!(got, want);
    // cat (mode off) is logged as an access event but has no presence.
    let access: Vec<&str> = b["access_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user"].as_str().unwrap())
        .collect();
    assert!(access.contains(&"cat@x.example"));
    assert!(!access.contains(&"dan@x.example"));

    // Failed sign-ins count when the settings say so.
    let mut config = rules_config();
    config["settings"]["count_failed_sign_ins"] = json!(true);
    let r = run(
        "evaluate_ip_presence",
        &with(&config, json!({"sign_ins": [b_failed()], "now": NOW})),
        None,
        dir.path(),
    );
    assert_eq!(r["json_body"]["counts"]["discarded"]["failed"], 0);
    assert_eq!(r["json_body"]["presence_events"][0]["location"], "Berlin");
}

fn b_failed() -> Value {
    json!({"id": "f1", "createdDateTime": at(5).to_string(), "ipAddress": "10.1.0.1",
           "userPrincipalName": "eve@x.example", "status": {"errorCode": 50126}})
}

#[test]
fn evaluate_discovery_suggests_blocks_with_auto_create() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = rules_config();
    config["settings"]["auto_create"] = json!(true);
    let sign_ins = json!([
        sign_in("1", 0, "100.64.1.1", "ann@x.example"),
        sign_in("2", 1, "100.64.1.2", "eve@x.example"),
        sign_in("3", 2, "100.64.1.2", "eve@x.example"),
        sign_in("4", 3, "2001:db8:99:1::1", "ann@x.example"),
        sign_in("5", 4, "100.64.1.3", "zed@x.example"), // unknown users are not counted
    ]);
    let r = run(
        "evaluate_ip_presence",
        &with(&config, json!({"sign_ins": sign_ins, "now": NOW})),
        None,
        dir.path(),
    );
    let b = &r["json_body"];
    assert_eq!(b["counts"]["discovered"], 4);
    assert_eq!(b["counts"]["discarded"]["unmatched"], 0);
    assert_eq!(
        b["discovery"],
        json!([
            {"block": "100.64.1.0/24", "events": 3, "distinct_users": 2, "distinct_addresses": 2},
            {"block": "2001:db8:99::/48", "events": 1, "distinct_users": 1, "distinct_addresses": 1}
        ])
    );
    assert!(b["presence_events"].as_array().unwrap().is_empty());
}

/// A day of sign-ins for five users over offices, the VPN and home, some repeated.
fn mixed_sign_ins(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let users = ["ann", "bob", "cat", "eve", "ann"];
    let ips = [
        "10.1.0.1",
        "10.1.9.1",
        "10.2.0.1",
        "192.0.2.1",
        "100.64.0.1",
        "2001:db8:1::1",
    ];
    (0..n)
        .map(|i| {
            sign_in(
                &format!("m{i}"),
                rng.i64(-120..600),
                ips[rng.usize(..ips.len())],
                &format!("{}@x.example", users[rng.usize(..users.len())]),
            )
        })
        .collect()
}

#[test]
fn evaluate_state_round_trip_equals_one_run_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let all = mixed_sign_ins(120, 3);
    let one = run(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins": all, "now": NOW})),
        None,
        dir.path(),
    );
    // Two batches, each in reverse order, the later half first: late arrival.
    let mut first: Vec<Value> = all[60..].to_vec();
    first.reverse();
    let mut second: Vec<Value> = all[..60].to_vec();
    second.reverse();
    second.extend(first.iter().take(10).cloned()); // and some ids again
    let r1 = run(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins": first, "now": NOW})),
        None,
        dir.path(),
    );
    let r2 = run(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins": second, "now": NOW})),
        Some(&r1["state"]),
        dir.path(),
    );
    assert_eq!(r2["state"], one["state"], "the states differ");
    let repeated_in_range = first
        .iter()
        .take(10)
        .filter(|s| s["ipAddress"] != "100.64.0.1")
        .count();
    assert_eq!(
        r2["json_body"]["counts"]["discarded"]["duplicate"],
        repeated_in_range as u64
    );
    // Events of run 1, minus what run 2 superseded, plus run 2's: those of one run.
    let mut held = events(&r1["json_body"]["presence_events"]);
    for e in events(&r2["json_body"]["superseded_events"]) {
        assert!(held.remove(&e), "superseded an event never reported: {e:?}");
    }
    held.extend(events(&r2["json_body"]["presence_events"]));
    assert_eq!(held, events(&one["json_body"]["presence_events"]));
    assert!(
        !r2["json_body"]["superseded_events"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the late half should supersede something"
    );
}

#[test]
fn evaluate_reads_a_json_lines_file_and_a_yaml_config() {
    let dir = tempfile::tempdir().unwrap();
    let all = mixed_sign_ins(50, 9);
    let lines: String = all.iter().map(|v| format!("{v}\n")).collect();
    let file = dir.path().join("sign-ins.jsonl");
    std::fs::write(&file, lines).unwrap();
    let yaml = dir.path().join("presence.yaml");
    std::fs::write(&yaml, serde_norway::to_string(&rules_config()).unwrap()).unwrap();
    let inline = run(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins": all, "now": NOW})),
        None,
        dir.path(),
    );
    let from_files = run(
        "evaluate_ip_presence",
        &json!({"sign_ins_path": file, "config_path": yaml, "now": NOW}),
        None,
        dir.path(),
    );
    assert_eq!(inline["json_body"], from_files["json_body"]);
    assert_eq!(inline["state"], from_files["state"]);
}

/// The lines of an output file of `kind`, without the tag, sorted.
fn lines_of(file: &str, kind: &str) -> Vec<Value> {
    let mut out: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("kind");
            v
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

fn sorted(v: &Value) -> Vec<Value> {
    let mut out = v.as_array().unwrap().clone();
    out.sort_by_key(|v| v.to_string());
    out
}

#[test]
fn evaluate_output_path_holds_exactly_the_events_returned_inline() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut config = rules_config();
    config["settings"]["auto_create"] = json!(true);
    let all = mixed_sign_ins(200, 21);
    let file = dir.path().join("sign-ins.jsonl");
    std::fs::write(
        &file,
        all.iter().map(|v| format!("{v}\n")).collect::<String>(),
    )
    .unwrap();
    let inline = run(
        "evaluate_ip_presence",
        &with(&config, json!({"sign_ins_path": file, "now": NOW})),
        None,
        dir.path(),
    );
    let target = out_dir.path().join("events.jsonl");
    let streamed = run(
        "evaluate_ip_presence",
        &with(
            &config,
            json!({"sign_ins_path": file, "now": NOW, "output_path": target}),
        ),
        None,
        dir.path(),
    );
    let (i, s) = (&inline["json_body"], &streamed["json_body"]);
    assert_eq!(s["counts"], i["counts"]);
    assert_eq!(streamed["state"], inline["state"]);
    for key in [
        "access_events",
        "presence_events",
        "superseded_events",
        "statuses",
    ] {
        assert!(s.get(key).is_none(), "{key} is in the file, not the result");
    }
    let text = std::fs::read_to_string(&target).unwrap();
    assert_eq!(lines_of(&text, "access"), sorted(&i["access_events"]));
    assert_eq!(lines_of(&text, "presence"), sorted(&i["presence_events"]));
    assert_eq!(
        lines_of(&text, "superseded"),
        sorted(&i["superseded_events"])
    );
    assert_eq!(lines_of(&text, "status"), sorted(&i["statuses"]));
    assert_eq!(lines_of(&text, "discovery"), sorted(&i["discovery"]));
    assert!(!lines_of(&text, "presence").is_empty() && !lines_of(&text, "discovery").is_empty());
    let output = &s["output"];
    assert_eq!(output["path"], target.display().to_string());
    assert_eq!(output["bytes"], text.len() as u64);
    assert_eq!(
        output["lines"]["presence"],
        i["presence_events"].as_array().unwrap().len()
    );
    assert_eq!(
        output["lines"]["access"],
        i["access_events"].as_array().unwrap().len()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "events are personal data");
    }
}

/// A replay of a file large enough for the two-thread reader (over 4 MiB), with
/// output_path: the window's sign-ins go through partition files and the state's days to
/// `{output_path}.state.jsonl`, which the state names. The events, counts and the next
/// run are those of the same replay held in memory; a damaged days file is exit 2.
#[test]
fn evaluate_a_spilled_replay_equals_one_held_in_memory_and_its_state_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut config = rules_config();
    config["settings"]["auto_create"] = json!(true);
    // Graph's sign-ins carry some kilobytes the rules never read.
    let padding = "x".repeat(1500);
    let lines: String = mixed_sign_ins(3_200, 5)
        .into_iter()
        .map(|mut v| {
            v["deviceDetail"] = json!({"displayName": padding});
            format!("{v}\n")
        })
        .collect();
    assert!(lines.len() > 4 << 20, "{}", lines.len());
    let file = dir.path().join("sign-ins.jsonl");
    std::fs::write(&file, lines).unwrap();
    let inputs = |extra: Value| {
        let mut i = with(
            &config,
            json!({"sign_ins_path": file, "now": NOW, "replay": true}),
        );
        i.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        i
    };
    let held = run("evaluate_ip_presence", &inputs(json!({})), None, dir.path());
    // One batch without output_path puts its partition files in the system's temporary
    // folder: one that cannot be written is a local failure (exit 6) naming it, not bad
    // input.
    let envelope = json!({"inputs": inputs(json!({"replay": false}))});
    let out = process::run_env(
        &["run", "evaluate_ip_presence"],
        envelope.to_string().as_bytes(),
        dir.path(),
        &[("TMPDIR", "/nonexistent-msgraph-connector-tmp")],
    );
    assert_eq!(out.code, 6, "{}\n{}", out.stdout, out.stderr);
    let e = out.json();
    assert_eq!(e["error"]["kind"], "local", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot create a partition file in /nonexistent-msgraph-connector-tmp"),
        "{message}"
    );
    // A relative output_path, as given on a command line: the state must name its days
    // file wherever the next run starts.
    let target = out_dir.path().join("events.jsonl");
    let spilled = {
        let envelope = json!({"inputs": inputs(json!({"output_path": "events.jsonl"}))});
        let mut child = std::process::Command::new(process::BIN)
            .current_dir(out_dir.path())
            .arg("--state-dir")
            .arg(dir.path())
            .args(["run", "evaluate_ip_presence"])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(envelope.to_string().as_bytes()).unwrap();
        drop(stdin);
        let out = process::finish(child);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        out.json()
    };
    let (h, s) = (&held["json_body"], &spilled["json_body"]);
    assert_eq!(s["counts"], h["counts"]);
    let text = std::fs::read_to_string(&target).unwrap();
    assert_eq!(lines_of(&text, "presence"), sorted(&h["presence_events"]));
    assert_eq!(lines_of(&text, "access"), sorted(&h["access_events"]));
    assert_eq!(lines_of(&text, "status"), sorted(&h["statuses"]));
    assert!(!lines_of(&text, "presence").is_empty());

    let state = &spilled["state"];
    let days = format!("{}.state.jsonl", target.display());
    assert_eq!(state["version"], 3);
    let named = std::path::Path::new(state["days_file"]["path"].as_str().unwrap());
    assert!(named.is_absolute(), "{named:?}");
    assert_eq!(
        named.canonicalize().unwrap(),
        std::path::Path::new(&days).canonicalize().unwrap()
    );
    assert_eq!(state["days"], json!([]));
    let day_lines = std::fs::read_to_string(&days).unwrap().lines().count();
    assert_eq!(state["days_file"]["lines"], day_lines as u64);
    assert!(day_lines >= 4, "{day_lines}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&days).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state holds personal data");
    }
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        2,
        "nothing left beside the events and the days"
    );

    // The next batch, from either state: the same result and the same state.
    let next = json!({"sign_ins": mixed_sign_ins(150, 6), "now": NOW});
    let a = run(
        "evaluate_ip_presence",
        &with(&config, next.clone()),
        Some(&held["state"]),
        dir.path(),
    );
    let b = run(
        "evaluate_ip_presence",
        &with(&config, next.clone()),
        Some(state),
        dir.path(),
    );
    assert_eq!(a["json_body"], b["json_body"]);
    assert_eq!(a["state"], b["state"]);
    // Its ids are those of the replay's first 150 (`m0`...): where user and day match
    // too, the state remembers them.
    let duplicates = &b["json_body"]["counts"]["discarded"]["duplicate"];
    assert!(duplicates.as_u64() > Some(0), "{duplicates}");

    // A days file cut short is refused before any work, naming the state's path.
    let text = std::fs::read_to_string(&days).unwrap();
    std::fs::write(&days, text.lines().next().unwrap().to_owned() + "\n").unwrap();
    let out = run_raw(
        "evaluate_ip_presence",
        &with(&config, next),
        Some(state),
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let e = out.json();
    assert_eq!(
        e["error"]["details"][0]["path"], "/state/days_file/path",
        "{e}"
    );
}

#[test]
fn evaluate_refuses_a_large_file_without_output_path_and_bad_outputs_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    // 65 MiB of nothing: refused on its size alone, never read (it would not parse).
    let big = dir.path().join("big.jsonl");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let out = run_raw(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins_path": big, "now": NOW})),
        None,
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
    let e = out.json();
    assert_eq!(
        e["error"]["details"][0]["path"], "/inputs/output_path",
        "{e}"
    );
    assert!(out.stdout.contains("64 MiB"), "{}", out.stdout);

    // Inside the state dir, where a rename could destroy the store: refused.
    let inside = dir.path().join("events.jsonl");
    let out = run_raw(
        "evaluate_ip_presence",
        &with(
            &rules_config(),
            json!({"sign_ins": [], "now": NOW, "output_path": inside}),
        ),
        None,
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert_eq!(
        out.json()["error"]["details"][0]["path"],
        "/inputs/output_path"
    );
    assert!(!inside.exists());

    // A replay is of a file.
    let out = run_raw(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins": [], "replay": true})),
        None,
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert_eq!(out.json()["error"]["details"][0]["path"], "/inputs/replay");
}

#[test]
fn evaluate_config_errors_are_exit_2_with_pointers_under_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = json!({
        "ranges": [
            {"name": "A", "cidrs": ["10.0.0.0/8"], "location": "A"},
            {"name": "B", "cidrs": ["10.0.0.0/8", "10.1.2.300/24"], "location": "B"},
            {"name": "C", "cidrs": ["10.9.0.0/16"]}
        ],
        "users": [{"upn": "a@x", "mode": "off"}, {"upn": "A@X", "mode": "off"}],
        "settings": {"time_zone": "Mars/Olympus"},
        "sign_ins": []
    });
    let out = run_raw("evaluate_ip_presence", &inputs, None, dir.path());
    assert_eq!(out.code, 2, "{}", out.stderr);
    let paths: BTreeSet<String> = out.json()["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "/inputs/ranges/1/cidrs/0",
        "/inputs/ranges/1/cidrs/1",
        "/inputs/ranges/2",
        "/inputs/users/1/upn",
        "/inputs/settings/time_zone",
    ] {
        assert!(paths.contains(want), "{want} missing in {paths:?}");
    }
    // Shape errors come from the schema, before anything runs.
    let out = run_raw(
        "evaluate_ip_presence",
        &json!({"ranges": [{"name": "A", "cidrs": ["10.0.0.0/8"], "colour": "red"}], "sign_ins": []}),
        None,
        dir.path(),
    );
    assert_eq!(out.code, 2);
    assert_eq!(
        out.json()["error"]["details"][0]["path"],
        "/inputs/ranges/0/colour"
    );
    // A state from elsewhere.
    let out = run_raw(
        "evaluate_ip_presence",
        &with(&rules_config(), json!({"sign_ins": []})),
        Some(&json!({"version": 99})),
        dir.path(),
    );
    assert_eq!(out.code, 2);
    assert_eq!(out.json()["error"]["details"][0]["path"], "/state");
}

#[test]
fn evaluate_refuses_out_of_range_times_in_the_state_with_their_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(
        "evaluate_ip_presence",
        &with(
            &rules_config(),
            json!({"sign_ins": [sign_in("s1", 0, "10.1.2.3", "ann@x.example")], "now": NOW}),
        ),
        None,
        dir.path(),
    );
    let again = with(
        &rules_config(),
        json!({"sign_ins": [sign_in("s2", 30, "10.2.0.1", "ann@x.example")], "now": NOW}),
    );
    let user = "/days/0/users/ann@x.example";
    let mut cases = Vec::new();
    for t in [
        9_000_000_000_000_000_000i64,
        i64::MIN,
        -9_000_000_000_000_000_000,
    ] {
        // Observations as version 1 wrote them (pairs), still read...
        let mut state = first["state"].clone();
        state.pointer_mut(user).unwrap()["obs"] = json!([[t, 0]]);
        cases.push((state, format!("/state{user}/obs/0/0")));
        // ...and as version 2 writes them (one string).
        let mut state = first["state"].clone();
        state.pointer_mut(user).unwrap()["obs"] = json!(format!("{t}:0"));
        cases.push((state, format!("/state{user}/obs")));
        let mut state = first["state"].clone();
        state.pointer_mut(user).unwrap()["overrides"] =
            json!([{"at_ms": t, "place": null, "set_by": "admin@x.example"}]);
        cases.push((state, format!("/state{user}/overrides/0/at_ms")));
    }
    assert_eq!(first["state"]["version"], 2);
    assert!(
        first["state"]
            .pointer(&format!("{user}/obs"))
            .unwrap()
            .is_string()
    );
    for obs in [
        json!([[0, 7]]),
        json!("0:7"),
        json!("x:0"),
        json!("5:0,,1:0"),
    ] {
        let mut state = first["state"].clone();
        let pointer = match &obs {
            Value::Array(_) => format!("/state{user}/obs/0/1"),
            _ => format!("/state{user}/obs"),
        };
        state.pointer_mut(user).unwrap()["obs"] = obs;
        cases.push((state, pointer));
    }
    for (state, pointer) in cases {
        let out = run_raw("evaluate_ip_presence", &again, Some(&state), dir.path());
        assert_eq!(out.code, 2, "{pointer}: {}\n{}", out.stdout, out.stderr);
        let v = out.json();
        assert_eq!(v["error"]["kind"], "invalid_input");
        assert_eq!(v["error"]["details"][0]["path"], pointer.as_str());
    }
    // A sign-in past the last instant a time can hold is malformed, not a panic.
    let out = run_raw(
        "evaluate_ip_presence",
        &with(
            &rules_config(),
            json!({"now": "9999-12-30T21:00:00Z", "sign_ins": [
                {"id": "x", "createdDateTime": "9999-12-31T08:00:00Z", "ipAddress": "10.1.2.3",
                 "userPrincipalName": "ann@x.example"}]}),
        ),
        None,
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json()["json_body"]["counts"]["discarded"]["malformed"],
        1
    );
}

// ---------------------------------------------------------------------------------
// sync_ip_presence and the store actions, against the emulator over HTTP.

/// The emulator, its users (id, UPN) all tracked, and a configuration with its offices.
struct PresenceEmulator {
    emu: Emulator,
    users: Vec<(Uuid, String)>,
    config: Value,
}

/// A store's presence events as (user, time, place) to compare with `events`.
fn tuples(events: Vec<ip_presence::PresenceEvent>) -> BTreeSet<(String, String, String)> {
    events
        .into_iter()
        .map(|e| {
            let place = match e.place {
                Some(Place::Office { location }) => location,
                Some(Place::Remote) => "Remote".into(),
                None => "cleared".into(),
            };
            (e.user, e.at.to_string(), place)
        })
        .collect()
}

/// An emulator with no sign-ins yet, its clock frozen at `T0`, and the audit-log
/// throttle relaxed (on both sides) so that the suite stays fast.
fn start() -> PresenceEmulator {
    let emu = EmulatorSetup::generated(GenerateSpec {
        users: 8,
        sign_ins: 0,
        seed: 4,
        day: None,
    })
    .relaxed_audit_logs()
    .clock_frozen_at(T0)
    .start();
    let tenant = &emu.tenant;
    let users: Vec<(Uuid, String)> = tenant
        .users
        .iter()
        .map(|u| (u.id, u.user_principal_name.to_string()))
        .collect();
    let ranges: Vec<Value> = tenant
        .offices()
        .iter()
        .map(|o| {
            let mut r = json!({"name": o.name, "cidrs": o.cidrs.iter().map(ToString::to_string).collect::<Vec<_>>()});
            if o.remote {
                r["remote"] = json!(true);
            } else {
                r["location"] = json!(o.name);
            }
            r
        })
        .collect();
    let tracked: Vec<Value> = users
        .iter()
        .enumerate()
        .map(|(i, (_, upn))| {
            json!({"upn": upn, "mode": if i == 1 { "track_only" } else { "track_and_display" }})
        })
        .collect();
    let config = json!({"ranges": ranges, "users": tracked,
                        "settings": {"location_time_zones": {"Berlin HQ": "Europe/Berlin",
                                     "New York": "America/New_York"}}});
    PresenceEmulator { emu, users, config }
}

impl PresenceEmulator {
    /// The emulator's record and the same sign-in as Graph shows it (for evaluate).
    fn sign_in(&self, user: usize, mins: i64, ip: &str, late_mins: i64) -> (SignIn, Value) {
        let (uid, upn) = &self.users[user];
        let created = at(mins);
        let record = emulator::sign_in(*uid, created, SignedDuration::from_mins(late_mins), ip);
        let id = record.id;
        let graph = json!({"id": id.to_string(), "createdDateTime": created.to_string(),
                           "ipAddress": ip, "userPrincipalName": upn, "status": {"errorCode": 0}});
        (record, graph)
    }

    fn sync(&self, extra: Value) -> Value {
        let mut inputs = with(
            &self.config,
            json!({"since": at(-180).to_string(), "now": NOW, "lookback_minutes": 120}),
        );
        for (k, v) in extra.as_object().unwrap() {
            inputs[k] = v.clone();
        }
        let envelope = json!({"asset": self.emu.asset("client_credentials"), "inputs": inputs});
        let out = process::run(
            &["run", "sync_ip_presence"],
            envelope.to_string().as_bytes(),
            self.emu.state.path(),
        );
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        out.json()
    }

    fn store_events(&self) -> BTreeSet<(String, String, String)> {
        let store = PresenceStore::open(self.emu.state.path()).unwrap();
        tuples(store.all_presence_events().unwrap())
    }

    /// Host `host` of an office's first block (generator order: Berlin HQ, Munich,
    /// New York, Singapore, VPN egress).
    fn office_ip(&self, office: usize, host: u32) -> String {
        let net: ipnet::IpNet = self.config["ranges"][office]["cidrs"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        match net {
            ipnet::IpNet::V4(n) => {
                std::net::Ipv4Addr::from(u32::from(n.network()) + host).to_string()
            }
            ipnet::IpNet::V6(n) => {
                std::net::Ipv6Addr::from(u128::from(n.network()) + u128::from(host)).to_string()
            }
        }
    }

    /// A store action without repeating the configuration (the sync kept it).
    fn local(&self, action: &str, inputs: Value) -> Outcome {
        let envelope = json!({"inputs": inputs});
        process::run(
            &["run", action],
            envelope.to_string().as_bytes(),
            self.emu.state.path(),
        )
    }
}

#[test]
fn sync_across_runs_with_late_sign_ins_counts_nothing_twice() {
    let e = start();
    let (berlin, munich, new_york, vpn) = (0, 1, 2, 4);
    let mut all = Vec::new();
    let mut add = |records: &mut Vec<SignIn>, (r, g): (SignIn, Value)| {
        records.push(r);
        all.push(g);
    };
    let mut records = Vec::new();
    // User 0: Berlin at 0:10, VPN at 1:00 (both seen at once), then a VPN sign-in at
    // 0:30 that shows up only at 2:00: it supersedes the 1:00 event.
    add(&mut records, e.sign_in(0, 10, &e.office_ip(berlin, 5), 1));
    add(&mut records, e.sign_in(0, 60, &e.office_ip(vpn, 5), 1));
    add(&mut records, e.sign_in(0, 30, &e.office_ip(vpn, 6), 90));
    // User 1 (track_only): New York, then a late Munich sign-in before it.
    add(&mut records, e.sign_in(1, 20, &e.office_ip(new_york, 9), 2));
    add(&mut records, e.sign_in(1, 15, &e.office_ip(munich, 9), 100));
    // Many more for the other users, some late.
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..150 {
        let user = rng.usize(2..e.users.len());
        let office = rng.usize(..5);
        let mins = rng.i64(-100..200);
        let late = if rng.u8(..10) == 0 {
            rng.i64(30..100)
        } else {
            rng.i64(0..5)
        };
        add(
            &mut records,
            e.sign_in(user, mins, &e.office_ip(office, rng.u32(1..60)), late),
        );
    }
    e.emu.add_sign_ins(records);

    // Run 1 at 1:30, run 2 at 3:00, run 3 at 6:00 (everything visible), run 4: nothing new.
    e.emu.set_clock(at(90));
    let r1 = e.sync(json!({}));
    e.emu.advance_clock(Duration::from_secs(90 * 60));
    let r2 = e.sync(json!({}));
    e.emu.advance_clock(Duration::from_secs(180 * 60));
    let r3 = e.sync(json!({}));
    let r4 = e.sync(json!({}));
    let received: u64 = [&r1, &r2, &r3, &r4]
        .iter()
        .map(|r| r["json_body"]["counts"]["received"].as_u64().unwrap())
        .sum();
    assert_eq!(
        received,
        all.len() as u64,
        "every sign-in read exactly once"
    );
    for r in [&r1, &r2, &r3, &r4] {
        assert_eq!(r["json_body"]["counts"]["discarded"]["duplicate"], 0);
    }
    assert_eq!(r4["json_body"]["counts"]["received"], 0);
    let superseded = events(&r2["json_body"]["superseded_events"]);
    assert!(
        superseded.contains(&(e.users[0].1.clone(), at(60).to_string(), "Remote".into())),
        "the late VPN sign-in supersedes the 1:00 event: {superseded:?}"
    );

    // The store holds what one evaluation of all the sign-ins gives.
    let one = run(
        "evaluate_ip_presence",
        &with(&e.config, json!({"sign_ins": all, "now": NOW})),
        None,
        e.emu.state.path(),
    );
    assert_eq!(
        e.store_events(),
        events(&one["json_body"]["presence_events"])
    );

    // A crash after the batch committed but before the cursor was stored: the rerun
    // reads the same sign-ins again and changes nothing.
    let before = e.store_events();
    let db = msgraph_connector::state::StateDb::open(e.emu.state.path()).unwrap();
    let cursor = json!({"version": 1, "cursor": null, "window_start": at(-180).to_string(), "delivered": {}});
    let key = msgraph_connector::signins::cursor_key(
        msgraph_connector::signins::CursorOf::Sync,
        msgraph_connector::signins::EventType::InteractiveUser,
    );
    db.put(&key, &cursor.to_string()).unwrap();
    drop(db);
    let again = e.sync(json!({}));
    let c = &again["json_body"]["counts"];
    assert_eq!(c["received"], all.len() as u64);
    assert_eq!(c["discarded"]["duplicate"], c["received"], "{c}");
    assert!(
        again["json_body"]["presence_events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(e.store_events(), before);

    // who is where: the track-only user is counted, named only in the full view.
    let track_only = &e.users[1].1;
    let get = |full: bool| {
        let out = e.local(
            "get_office_presence",
            json!({"date": DAY, "full_view": full}),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json()["json_body"].clone()
    };
    let named = |b: &Value| -> BTreeSet<String> {
        b["locations"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["users"].as_array().unwrap().iter())
            .map(|u| u.as_str().unwrap().to_string())
            .collect()
    };
    let (short, full) = (get(false), get(true));
    assert!(!named(&short).contains(track_only));
    assert!(named(&full).contains(track_only));
    let total = |b: &Value| -> u64 {
        b["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total(&short), total(&full));
    assert_eq!(
        total(&full),
        one["json_body"]["statuses"].as_array().unwrap().len() as u64
    );
    assert!(!short["occupancy"].as_array().unwrap().is_empty());
}

#[test]
fn set_and_clear_round_trip_and_retention() {
    let e = start();
    let (r, _) = e.sign_in(0, 10, &e.office_ip(0, 5), 1);
    e.emu.add_sign_ins(vec![r]);
    e.emu.set_clock(at(60));
    e.sync(json!({}));
    let who = &e.users[0].1;
    let where_is = |user: &str| -> Option<Value> {
        let out = e.local("get_office_presence", json!({"date": DAY, "user": user}));
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json()["json_body"]["user"]["days"].get(0).cloned()
    };
    assert_eq!(where_is(who).unwrap()["location"], "Berlin HQ");

    // An administrator: in Munich from 2:00; then cleared at 3:00.
    let out = e.local(
        "set_office_presence",
        json!({"user": who, "location": "Munich", "date": DAY, "at": at(120).to_string(), "set_by": "facilities"}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json()["json_body"]["presence_events"][0]["set_by"],
        "facilities"
    );
    assert_eq!(where_is(who).unwrap()["location"], "Munich");
    let out = e.local(
        "clear_office_presence",
        json!({"user": who, "date": DAY, "at": at(180).to_string()}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let day = where_is(who).unwrap();
    assert!(
        day.get("location").is_none() && day["remote"] == false,
        "{day}"
    );
    let out = e.local("get_office_presence", json!({"date": DAY}));
    assert!(
        out.json()["json_body"]["locations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Remote, for another user.
    let other = &e.users[2].1;
    let out = e.local(
        "set_office_presence",
        json!({"user": other, "remote": true, "date": DAY, "at": at(30).to_string()}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(where_is(other).unwrap()["remote"], true);

    // Refused: unknown user, unknown office, both place kinds.
    for (inputs, path) in [
        (
            json!({"user": "nobody@contoso.example", "remote": true}),
            "/inputs/user",
        ),
        (
            json!({"user": who, "location": "Paris"}),
            "/inputs/location",
        ),
        (
            json!({"user": who, "location": "Munich", "remote": true}),
            "/inputs/remote",
        ),
    ] {
        let out = e.local("set_office_presence", inputs);
        assert_eq!(out.code, 2, "{}", out.stdout);
        assert_eq!(out.json()["error"]["details"][0]["path"], path);
    }

    // Retention: 5 days, and a change 10 days later prunes the events of DAY.
    let mut config = e.config.clone();
    config["settings"]["retention_days"] = json!(5);
    let later = at(10 * 24 * 60);
    let mut inputs = with(
        &config,
        json!({"user": other, "remote": true, "at": later.to_string()}),
    );
    inputs["date"] = json!(later.to_zoned(jiff::tz::TimeZone::UTC).date().to_string());
    let out = e.local("set_office_presence", inputs);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(where_is(who).is_none(), "DAY is past retention");
    let store = PresenceStore::open(e.emu.state.path()).unwrap();
    let dates: BTreeSet<String> = store
        .all_presence_events()
        .unwrap()
        .iter()
        .map(|e| e.date.to_string())
        .collect();
    assert!(!dates.contains(DAY), "{dates:?}");
    assert!(store.all_access_events().unwrap().is_empty());
}

/// Issue 19, item 5: a state dir left 0777 with a 0755 `tokens/` and 0644 stores
/// and token entries stayed so. Every open makes them owner-only again.
#[test]
fn an_open_state_dir_is_made_owner_only_on_every_run() {
    use std::os::unix::fs::PermissionsExt;
    let p = start();
    let dir = p.emu.state.path();
    p.sync(json!({}));
    let tokens = dir.join("tokens");
    let files = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.path())
            .collect()
    };
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let all_files: Vec<_> = files(dir).into_iter().chain(files(&tokens)).collect();
    assert!(all_files.iter().any(|f| f.ends_with("presence.sqlite3")));
    assert!(all_files.iter().any(|f| f.ends_with("state.sqlite3")));
    assert!(
        all_files
            .iter()
            .any(|f| f.extension().is_some_and(|x| x == "json"))
    );
    chmod(dir, 0o777);
    chmod(&tokens, 0o755);
    for f in &all_files {
        chmod(f, 0o644);
    }
    p.sync(json!({}));
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&tokens), 0o700);
    for f in files(dir).into_iter().chain(files(&tokens)) {
        assert_eq!(mode(&f) & 0o077, 0, "{} is {:o}", f.display(), mode(&f));
    }
}

/// A state dir that cannot be made owner-only (a shared, sticky folder such as
/// /tmp) is refused, exit 2, before any request, and left as it was.
#[test]
fn a_shared_state_dir_is_refused_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    let p = start();
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let envelope = json!({"asset": p.emu.asset("client_credentials"),
                          "inputs": with(&p.config, json!({"since": at(-180).to_string(), "now": NOW}))});
    for action in ["sync_ip_presence", "get_presence"] {
        let mut envelope = envelope.clone();
        if action == "get_presence" {
            envelope["inputs"] = json!({"id": p.users[0].0.to_string()});
        }
        let out = process::run(
            &["run", action],
            envelope.to_string().as_bytes(),
            shared.path(),
        );
        assert_eq!(out.code, 2, "{action}: {}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("shared folder"), "{}", out.stdout);
        assert!(p.emu.log().is_empty(), "{action} sent requests");
        let mode = std::fs::metadata(shared.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o1777);
    }
}

/// Issue 17: three workers racing `sync_ip_presence` every few seconds for two minutes
/// on one state, while sign-ins keep arriving (some of them late) and one run is killed
/// with `kill -9` mid-pull: every sign-in is counted exactly once, and the store holds
/// what one evaluation of all of them gives.
#[test]
fn three_workers_racing_sync_with_a_kill_count_each_sign_in_once_on_sqlite() {
    let e = start();
    let dir = e.emu.state.path().to_path_buf();
    three_workers_race(&e, &[dir.clone(), dir.clone(), dir], &[], &|| {
        e.store_events()
    });
}

/// The same race with the three workers on three machines (state dirs) sharing one
/// PostgreSQL state: cursors, leases and the presence store all in the database.
#[test]
fn three_workers_racing_sync_with_a_kill_count_each_sign_in_once_on_postgres() {
    let Some(url) = postgres::database() else {
        return;
    };
    let e = start();
    let machines = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let dirs = [0, 1, 2].map(|i| machines[i].path().to_path_buf());
    let env = [
        ("MSGRAPH_CONNECTOR_STATE_URL", url.as_str()),
        ("MSGRAPH_CONNECTOR_STATE_KEY", STATE_KEY),
    ];
    let asset = msgraph_connector::asset::parse(&e.emu.asset("client_credentials")).unwrap();
    let scope = msgraph_connector::state::scope_of(&asset);
    let store_events = || {
        let pg = match Backend::choose(&StateUrl::parse(Some(&url)).unwrap(), None) {
            Some(Backend::Postgres(pg)) => pg,
            other => panic!("not PostgreSQL: {other:?}"),
        };
        let store = SharedPresenceStore::open(pg, scope.clone()).unwrap();
        tuples(store.all_presence_events().unwrap())
    };
    three_workers_race(&e, &dirs, &env, &store_events);
    for m in &machines {
        let files: Vec<_> = std::fs::read_dir(m.path())
            .unwrap()
            .map(|f| f.unwrap().file_name())
            .collect();
        assert!(
            !files
                .iter()
                .any(|f| f.to_string_lossy().ends_with(".sqlite3")),
            "a shared state keeps no store on a machine's disk: {files:?}"
        );
    }
}

/// How long the workers race (the two minutes).
const RACE: Duration = Duration::from_secs(120);

/// The race of [`three_workers_racing_sync_with_a_kill_count_each_sign_in_once_on_sqlite`]:
/// worker `i` runs in `dirs[i]` with `env`; `store_events` reads the store at the end.
fn three_workers_race(
    e: &PresenceEmulator,
    dirs: &[std::path::PathBuf; 3],
    env: &[(&str, &str)],
    store_events: &dyn Fn() -> BTreeSet<(String, String, String)>,
) {
    // 600 sign-ins over the emulator's first 200 minutes; a tenth of them shown 30 to
    // 100 minutes late. The emulator's clock runs at two minutes a second, so they
    // appear while the workers run.
    let mut rng = fastrand::Rng::with_seed(17);
    let (mut records, mut all) = (Vec::new(), Vec::new());
    for _ in 0..600 {
        let user = rng.usize(..e.users.len());
        let late = if rng.u8(..10) == 0 {
            rng.i64(30..100)
        } else {
            rng.i64(0..3)
        };
        let ip = e.office_ip(rng.usize(..5), rng.u32(1..60));
        let (r, g) = e.sign_in(user, rng.i64(0..200), &ip, late);
        records.push(r);
        all.push(g);
    }
    e.emu.add_sign_ins(records);
    e.emu.set_clock(at(0));
    let inputs = with(
        &e.config,
        json!({"since": at(-180).to_string(), "now": NOW, "lookback_minutes": 120,
               "lease_wait_seconds": 1}),
    );
    let envelope = json!({"asset": e.emu.asset("client_credentials"), "inputs": inputs});
    let envelope = envelope.to_string();
    let sync_in = |dir: &std::path::Path| {
        process::spawn(&["run", "sync_ip_presence"], envelope.as_bytes(), dir, env)
    };
    let started = std::time::Instant::now();
    let killed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Value> = std::thread::scope(|s| {
        // The clock: two virtual minutes a second.
        s.spawn(|| {
            while started.elapsed() < RACE {
                std::thread::sleep(Duration::from_millis(500));
                e.emu.advance_clock(Duration::from_secs(60));
            }
        });
        let workers: Vec<_> = (0..3)
            .map(|w| {
                let (dir, sync_in, killed) = (&dirs[w], &sync_in, &killed);
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(w as u64);
                    let mut done = Vec::new();
                    while started.elapsed() < RACE {
                        let mut child = sync_in(dir);
                        // Worker 0 kills its run once, half way, while Graph answers it
                        // slowly (it holds the lease and waits for its page).
                        if w == 0
                            && started.elapsed() > RACE / 2
                            && !killed.swap(true, std::sync::atomic::Ordering::SeqCst)
                        {
                            e.emu.set_faults(
                                FaultPlan::parse("signins:slow=1,delay_ms=1500").unwrap(),
                            );
                            std::thread::sleep(Duration::from_millis(rng.u64(300..800)));
                            let _ = child.kill(); // SIGKILL
                            e.emu.set_faults(FaultPlan::none());
                            let out = process::finish(child);
                            if out.code == 0 {
                                // It finished first: its result counts like any other.
                                done.push(out.json());
                            }
                        } else {
                            let out = process::finish(child);
                            assert_eq!(out.code, 0, "worker {w}: {}", out.stderr);
                            done.push(out.json());
                        }
                        std::thread::sleep(Duration::from_millis(rng.u64(500..3000)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(killed.into_inner(), "a run was killed");
    // Everything visible, then one last sync.
    e.emu.set_clock(at(400));
    let out = process::finish(sync_in(&dirs[0]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let last = out.json();
    let runs: Vec<&Value> = results.iter().chain([&last]).collect();
    let skipped = runs
        .iter()
        .filter(|r| r["json_body"].get("skipped").is_some())
        .count();
    assert!(
        runs.len() - skipped >= 10,
        "the workers synced: {} runs",
        runs.len()
    );
    // Completed runs form one chain of cursors: each sign-in read by exactly one of
    // them; what the killed run applied before it died comes back as duplicates.
    let received: u64 = runs
        .iter()
        .map(|r| r["json_body"]["counts"]["received"].as_u64().unwrap())
        .sum();
    let duplicates: u64 = runs
        .iter()
        .map(|r| {
            r["json_body"]["counts"]["discarded"]["duplicate"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    eprintln!(
        "race: {} runs ({skipped} skipped while another held the lease), {received} sign-ins \
         received, {duplicates} discarded as already applied",
        runs.len()
    );
    assert_eq!(
        received,
        all.len() as u64,
        "every sign-in read exactly once"
    );
    let one = run(
        "evaluate_ip_presence",
        &with(&e.config, json!({"sign_ins": all, "now": NOW})),
        None,
        e.emu.state.path(),
    );
    assert_eq!(
        store_events(),
        events(&one["json_body"]["presence_events"]),
        "the store holds what one evaluation of every sign-in gives"
    );
}
