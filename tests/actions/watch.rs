//! `watch presence` (continuous collection) and `get_presence_changes` against the
//! emulator: only changes are written across cycles, a UPN whose user is deleted
//! mid-run is reported gone, SIGTERM ends the run after the batch in flight with a
//! summary, UPNs are resolved once (kept in the store), requests per cycle are
//! ceil(users / 650), and the incremental action reports exactly what changed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::assertions::{assert_invalid, decode};
use crate::support::emulator::{Emulator, EmulatorSetup, T0};
use crate::support::process::{self, BIN};

fn quiet(users: usize) -> Emulator {
    EmulatorSetup::users(users)
        .clock_frozen_at(T0)
        .configure(|c| {
            for u in &mut c.tenant.users {
                u.presence = None;
            }
        })
        .start()
}

/// The asset in a file, and a users file, in the emulator's state dir's sibling.
fn files(emu: &Emulator, users: &[String]) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let asset = dir.path().join("asset.json");
    std::fs::write(&asset, emu.asset("client_credentials").to_string()).unwrap();
    let list = dir.path().join("users.txt");
    std::fs::write(&list, format!("# agents\n\n{}\n", users.join("\n"))).unwrap();
    let a = asset.to_str().unwrap().to_string();
    let l = list.to_str().unwrap().to_string();
    (dir, a, l)
}

/// A running `watch presence` whose stdout lines arrive on a channel.
struct Watching {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Watching {
    fn start(emu: &Emulator, args: &[&str]) -> Watching {
        let mut child = Command::new(BIN)
            .arg("--state-dir")
            .arg(emu.state.path())
            .args(["watch", "presence"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("every line is JSON");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Watching { child, lines: rx }
    }

    /// Lines until `done` says so (or panic after 20 s), the last one included.
    fn until(&self, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out; lines so far: {got:#?}"));
            let stop = done(&line);
            got.push(line);
            if stop {
                return got;
            }
        }
    }

    fn terminate(mut self) -> (i32, Vec<Value>) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let rest = self.until(|l| l["kind"] == "summary");
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        (code, rest)
    }
}

fn kinds(lines: &[Value], kind: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn watch_writes_only_changes_and_stops_cleanly_on_sigterm() {
    let emu = quiet(12);
    // Six by object id, six by UPN.
    let users: Vec<String> = (0..12)
        .map(|i| if i < 6 { emu.user_id(i) } else { emu.upn(i) })
        .collect();
    let (_dir, asset, list) = files(&emu, &users);
    let w = Watching::start(
        &emu,
        &[
            "--asset",
            &asset,
            "--users",
            &list,
            "--interval",
            "0.2",
            "--heartbeat",
            "1",
        ],
    );
    // The first cycle writes everyone, once.
    let mut seen = 0;
    let first = w.until(|l| {
        seen += usize::from(l["kind"] == "presence");
        seen == 12
    });
    let ids: std::collections::HashSet<String> = kinds(&first, "presence")
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 12, "{first:#?}");
    let by_upn = kinds(&first, "presence")
        .into_iter()
        .find(|l| l["id"] == emu.user_id(7).as_str())
        .unwrap();
    assert_eq!(by_upn["upn"], emu.upn(7).as_str());
    assert_eq!(by_upn["presence"]["availability"], "PresenceUnknown");
    // Nothing changes for a few cycles: heartbeats only, no presence line.
    let quiet_lines = w.until(|l| l["kind"] == "heartbeat" && l["cycles"].as_u64() >= Some(3));
    assert!(
        kinds(&quiet_lines, "presence").is_empty(),
        "{quiet_lines:#?}"
    );

    // Two users change: exactly their two lines come.
    for i in [2, 8] {
        let out = emu.run(
            "set_presence",
            json!({"id": emu.user_id(i), "availability": "Busy", "activity": "InACall",
                   "expiration_duration": "PT1H"}),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let mut changed = Vec::new();
    let lines = w.until(|l| {
        if l["kind"] == "presence" {
            changed.push(l["id"].as_str().unwrap().to_string());
        }
        changed.len() == 2
    });
    changed.sort();
    let mut want = vec![emu.user_id(2), emu.user_id(8)];
    want.sort();
    assert_eq!(changed, want, "{lines:#?}");
    for l in kinds(&lines, "presence") {
        assert_eq!(l["presence"]["activity"], "InACall");
    }

    // A user watched by UPN is deleted mid-run: Graph stops answering for its id, the
    // UPN is resolved again, and no longer resolves: one `gone` line.
    let deleted = emu.user_id(9);
    assert!(emu.delete_user(deleted.parse().unwrap()));
    let lines = w.until(|l| l["kind"] == "gone");
    let gone = lines.last().unwrap();
    assert_eq!(gone["upn"], emu.upn(9).as_str());
    assert_eq!(gone["id"], deleted.as_str());
    assert!(kinds(&lines, "presence").is_empty(), "{lines:#?}");

    let (code, rest) = w.terminate();
    assert_eq!(code, 0);
    let summary = rest.last().unwrap();
    assert_eq!(summary["stopped_by"], "signal");
    assert_eq!(summary["changes"], 14);
    assert_eq!(summary["users"], 12);
    assert_eq!(summary["not_found"], 1);
    assert!(kinds(&rest, "presence").is_empty(), "{rest:#?}");
    let log = emu.graph_log();
    let polls = log
        .iter()
        .filter(|e| e.path.ends_with("getPresencesByUserId"))
        .count() as u64;
    assert!(
        polls >= summary["cycles"].as_u64().unwrap(),
        "{polls} polls"
    );
    // The UPNs were looked up once at the start, and the deleted one once more.
    let lookups: Vec<String> = log
        .iter()
        .filter(|e| e.method == "GET" && e.path == "/v1.0/users")
        .map(|e| decode(e.query.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    assert!(lookups[1].contains(&emu.upn(9)) && !lookups[1].contains(&emu.upn(8)));
}

#[test]
fn upns_are_resolved_once_and_each_cycle_is_ceil_users_over_650_requests() {
    let emu = quiet(1400);
    let users: Vec<String> = (0..1400).map(|i| emu.upn(i)).collect();
    let (_dir, asset, list) = files(&emu, &users);
    let run = || {
        process::run(
            &[
                "watch",
                "presence",
                "--asset",
                &asset,
                "--users",
                &list,
                "--interval",
                "0",
                "--cycles",
                "3",
            ],
            b"",
            emu.state.path(),
        )
    };
    let out = run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    emu.assert_no_secrets(&out.stdout, Some(emu.state.path()));
    emu.assert_no_secrets(&out.stderr, Some(emu.state.path()));
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kinds(&lines, "presence").len(), 1400);
    let summary = lines.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["stopped_by"], "cycles");
    assert_eq!(
        (summary["cycles"].as_u64(), summary["requests"].as_u64()),
        (Some(3), Some(9))
    );
    let count =
        |emu: &Emulator, path: &str| emu.graph_log().iter().filter(|e| e.path == path).count();
    // 1,400 UPNs: 94 lookups of 15; 3 cycles of ceil(1400 / 650) = 3 requests.
    assert_eq!(count(&emu, "/v1.0/users"), 94);
    assert_eq!(count(&emu, "/v1.0/communications/getPresencesByUserId"), 9);
    // A second run finds the UPNs in the store: no lookup at all.
    emu.clear_log();
    let out = run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(count(&emu, "/v1.0/users"), 0);
    assert_eq!(count(&emu, "/v1.0/communications/getPresencesByUserId"), 9);
}

#[test]
fn a_group_is_watched_through_its_transitive_members() {
    let emu = quiet(60);
    let group = &emu.tenant.groups[0];
    let gid = group.id.to_string();
    let members = group.members.len();
    assert!(members > 0);
    let (_dir, asset, _) = files(&emu, &[emu.user_id(0)]);
    let out = process::run(
        &[
            "watch", "presence", "--asset", &asset, "--group", &gid, "--cycles", "1",
        ],
        b"",
        emu.state.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kinds(&lines, "presence").len(), members);
    let paths: Vec<String> = emu.graph_log().iter().map(|e| decode(&e.path)).collect();
    assert_eq!(
        paths[0],
        format!("/v1.0/groups/{gid}/transitiveMembers/microsoft.graph.user")
    );
}

#[test]
fn bad_watch_arguments_are_refused_before_any_request() {
    let emu = quiet(2);
    let (dir, asset, list) = files(&emu, &[emu.user_id(0)]);
    let bad_list = dir.path().join("bad.txt");
    std::fs::write(&bad_list, "ok@contoso.example\nbad\u{7}@contoso.example\n").unwrap();
    let bad = bad_list.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--users", bad], "/users/1"),
        (vec!["--users", &list, "--interval=-1"], "/interval"),
        (vec!["--group", "not-a-guid"], "/group"),
    ];
    for (args, pointer) in cases {
        let mut all = vec!["watch", "presence", "--asset", &asset];
        all.extend(args);
        let out = process::run(&all, b"", emu.state.path());
        assert_invalid(&emu, &out, pointer);
    }
}

#[test]
fn get_presence_changes_reports_exactly_what_changed_since_its_state() {
    let emu = quiet(5);
    let ids: Vec<String> = (0..5).map(|i| emu.user_id(i)).collect();
    let out = emu.run("get_presence_changes", json!({"ids": ids}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = out.json();
    assert_eq!(first["json_body"]["changes"].as_array().unwrap().len(), 5);
    let state = first["state"].clone();
    assert_eq!(state["seen"].as_object().unwrap().len(), 5);
    let out = emu.run(
        "set_presence",
        json!({"id": ids[3], "availability": "Away", "activity": "Away"}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let again = |state: Value| {
        let envelope = json!({"asset": emu.asset("client_credentials"),
                              "inputs": {"ids": ids}, "state": state});
        process::run(
            &["run", "get_presence_changes"],
            envelope.to_string().as_bytes(),
            emu.state.path(),
        )
    };
    let out = again(state.clone());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second = out.json();
    let changes = second["json_body"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{second}");
    assert_eq!(changes[0]["id"], ids[3].as_str());
    assert_eq!(changes[0]["availability"], "Away");
    assert_eq!(second["json_body"]["unchanged"], 4);
    assert_ne!(second["state"]["seen"][&ids[3]], state["seen"][&ids[3]]);

    emu.clear_log();
    let out = again(json!({"version": 1, "seen": {"x": 1}}));
    assert_invalid(&emu, &out, "/state");
}

#[test]
fn heartbeats_go_on_while_the_pacer_holds_a_request() {
    // 700 users: 2 requests a cycle; the asset allows one request every 3 s.
    let emu = EmulatorSetup::users(700)
        .asset_setting(
            "rate_limits",
            json!({"presence": {"requests": 1, "per_seconds": 3}}),
        )
        .start();
    let users: Vec<String> = (0..700).map(|i| emu.user_id(i)).collect();
    let (_dir, asset, list) = files(&emu, &users);
    let out = process::run(
        &[
            "watch",
            "presence",
            "--asset",
            &asset,
            "--users",
            &list,
            "--cycles",
            "1",
            "--heartbeat",
            "1",
        ],
        b"",
        emu.state.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let beats = kinds(&lines, "heartbeat");
    assert!(beats.len() >= 2, "{} heartbeats", beats.len());
    assert_eq!(lines.last().unwrap()["requests"], 2);
}

#[test]
fn a_missing_permission_stops_the_watch_instead_of_looping() {
    let emu = quiet(3);
    let (_dir, _, list) = files(&emu, &[emu.user_id(0)]);
    let asset = _dir.path().join("reader.json");
    std::fs::write(&asset, emu.read_only_asset().to_string()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = process::run(
        &[
            "watch",
            "presence",
            "--asset",
            asset.to_str().unwrap(),
            "--users",
            &list,
        ],
        b"",
        state.path(),
    );
    assert_eq!(out.code, 4, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.json()["error"]["code"], "Authorization_RequestDenied");
}

#[test]
fn output_appends_to_a_private_file_and_refuses_a_directory() {
    use std::os::unix::fs::PermissionsExt;
    let emu = quiet(2);
    let (dir, asset, list) = files(&emu, &[emu.user_id(0), emu.user_id(1)]);
    let file = dir.path().join("presence.jsonl");
    let run = |output: &std::path::Path| {
        process::run(
            &[
                "watch",
                "presence",
                "--asset",
                &asset,
                "--users",
                &list,
                "--cycles",
                "1",
                "--output",
                output.to_str().unwrap(),
            ],
            b"",
            emu.state.path(),
        )
    };
    for _ in 0..2 {
        let out = run(&file);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    // Two runs appended: each wrote both users and its summary.
    assert_eq!(text.matches("\"kind\":\"presence\"").count(), 4, "{text}");
    assert_eq!(text.matches("\"kind\":\"summary\"").count(), 2, "{text}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    emu.clear_log();
    let out = run(dir.path());
    assert_invalid(&emu, &out, "/output");
}
