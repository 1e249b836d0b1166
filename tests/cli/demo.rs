//! `msgraph-connector demo` through the real binary: an in-process emulator, the sync
//! over HTTP, and a table naming every office (a smaller organisation, for speed).

use graph_emulator::{GenerateSpec, Tenant};

use crate::support::process;

const SMALL: [&str; 5] = ["demo", "--users", "400", "--sign-ins", "4000"];

fn office_names() -> Vec<String> {
    Tenant::generate(&GenerateSpec {
        users: 10,
        sign_ins: 0,
        seed: 1,
        day: None,
    })
    .offices()
    .iter()
    .filter(|o| !o.remote)
    .map(|o| o.name.to_string())
    .collect()
}

#[test]
fn demo_prints_a_table_with_every_office() {
    let dir = tempfile::tempdir().unwrap();
    // No --state-dir from the command line here: process::run passes one, so the demo
    // keeps its store there (and says so).
    let out = process::run(&SMALL, b"", dir.path());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.is_empty(), "no noise on stderr: {}", out.stderr);
    let text = &out.stdout;
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("IP-based office presence: Contoso Emulated"),
        "{first}"
    );
    let header = text.lines().find(|l| l.contains("Occupancy")).unwrap();
    assert!(
        header.contains("Office") && header.contains("Present"),
        "{header}"
    );
    for office in office_names().iter().map(String::as_str).chain(["Remote"]) {
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with(office))
            .unwrap_or_else(|| panic!("no row for {office}:\n{text}"));
        assert!(row.contains(" more"), "{row}");
    }
    for section in [
        "Discarded",
        "failed sign-in",
        "Suggested ranges",
        "Note: the demo asset paces",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(
        text.contains(&dir.path().display().to_string()),
        "names the store"
    );
}

#[test]
fn demo_json_is_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = SMALL.to_vec();
    args.push("--json");
    let out = process::run(&args, b"", dir.path());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["users"], 400);
    assert_eq!(r["sign_ins_pulled"], 4000);
    assert_eq!(r["counts"]["received"], 4000);
    let offices = r["offices"].as_array().unwrap();
    assert_eq!(offices.len(), office_names().len() + 1);
    let zones: std::collections::BTreeSet<&str> = offices
        .iter()
        .filter(|o| o["remote"] == false)
        .map(|o| o["time_zone"].as_str().unwrap())
        .collect();
    assert!(zones.len() >= 2, "offices in several time zones: {zones:?}");
    for o in offices {
        assert!(o["present"].as_u64().unwrap() > 0, "{o}");
        assert!(
            o["occupancy"].as_u64().unwrap() >= o["present"].as_u64().unwrap(),
            "{o}"
        );
    }
    assert!(
        offices.iter().any(|o| o["not_named"].as_u64().unwrap() > 0),
        "track_only users are not named"
    );
    let d = &r["counts"]["discarded"];
    assert!(d["failed"].as_u64().unwrap() > 0 && d["inactive_user"].as_u64().unwrap() > 0);
    assert!(r["counts"]["presence_mode_off"].as_u64().unwrap() > 0);
    assert!(r["discovery_blocks"].as_u64().unwrap() > 0);

    // Run again on the same store: the cursor kept there says everything was read.
    let again = process::run(&args, b"", dir.path()).json();
    assert_eq!(again["counts"]["received"], 0);
    assert_eq!(again["offices"], r["offices"]);
}
