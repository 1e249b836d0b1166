//! Swimlane Turbine through the real binary: the flat-object protocol
//! (`ASSET_KEYS`, `::set-output` / `::set-error`), Swimlane's HTTP-style input
//! grouping, and `export turbine` compared with the golden files in
//! `tests/golden/turbine/` (`UPDATE_GOLDEN=1 cargo test --test cli golden` rewrites them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::emulator::Emulator;
use crate::support::process::{self, Outcome};

/// The asset keys of the emulator's client-credentials asset, without `type`:
/// Turbine assets carry none, so the binary infers it.
fn flat(emu: &Emulator, inputs: Value) -> (Value, String) {
    let mut all = emu.asset("client_credentials");
    all.as_object_mut().unwrap().remove("type");
    let keys: Vec<String> = all.as_object().unwrap().keys().cloned().collect();
    for (k, v) in inputs.as_object().unwrap() {
        all[k] = v.clone();
    }
    (all, keys.join(","))
}

fn turbine(emu: &Emulator, action: &str, stdin: &[u8], keys: Option<&str>) -> Outcome {
    let mut args = vec!["run", action];
    if keys.is_none() {
        args.push("--turbine");
    }
    let env: Vec<(&str, &str)> = keys.map(|k| ("ASSET_KEYS", k)).into_iter().collect();
    process::run_env(&args, stdin, emu.state.path(), &env)
}

fn output(out: &Outcome) -> Value {
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let line = out
        .stdout
        .strip_prefix("::set-output ")
        .expect("a ::set-output line");
    serde_json::from_str(line).unwrap()
}

fn error(out: &Outcome) -> Value {
    assert_eq!(out.stdout, "", "nothing on stdout on failure");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one ::set-error line: {}", out.stderr);
    let line = lines[0]
        .strip_prefix("::set-error ")
        .expect("a ::set-error line");
    serde_json::from_str(line).unwrap()
}

#[test]
fn turbine_runs_an_action_from_one_flat_object() {
    let emu = Emulator::start();
    let upn = emu.upn(0);
    let (all, keys) = flat(&emu, json!({"id": upn}));
    let result = output(&turbine(
        &emu,
        "get_presence",
        all.to_string().as_bytes(),
        Some(&keys),
    ));
    assert_eq!(result["status_code"], 200);
    assert_eq!(result["json_body"]["id"], emu.user_id(0));
    assert!(result.get("response_headers").is_some() && result.get("reason").is_some());
}

#[test]
fn turbine_bad_input_is_one_set_error_line_and_no_request() {
    let emu = Emulator::start();
    let (all, keys) = flat(&emu, json!({"id": emu.upn(0)}));
    let mut unknown = all.clone();
    unknown["colour"] = json!("blue");
    let cases: Vec<(&str, Vec<u8>, Option<String>, &str)> = vec![
        (
            "unknown key",
            unknown.to_string().into_bytes(),
            Some(keys.clone()),
            "/inputs/colour",
        ),
        (
            "ASSET_KEYS naming an absent key",
            all.to_string().into_bytes(),
            Some(format!("{keys},certificate")),
            "/asset/certificate",
        ),
        ("no ASSET_KEYS", all.to_string().into_bytes(), None, ""),
        (
            "stdin not JSON",
            b"{\"id\": ".to_vec(),
            Some(keys.clone()),
            "",
        ),
    ];
    emu.clear_log();
    for (what, stdin, keys, pointer) in cases {
        let out = turbine(&emu, "get_presence", &stdin, keys.as_deref());
        assert_eq!(out.code, 2, "{what}: {}", out.stderr);
        let e = error(&out);
        assert_eq!(e["error"]["kind"], "invalid_input", "{what}");
        assert_eq!(e["error"]["details"][0]["path"], pointer, "{what}");
        emu.assert_no_secrets(&out.stderr, None);
    }
    assert!(emu.log().is_empty(), "no request may leave on bad input");
}

#[test]
fn turbine_incremental_state_round_trips_through_inputs_and_output() {
    let emu = Emulator::start();
    let (all, keys) = flat(&emu, json!({"max_records": 5}));
    let first = output(&turbine(
        &emu,
        "pull_sign_ins",
        all.to_string().as_bytes(),
        Some(&keys),
    ));
    let state = first["state"].clone();
    assert!(state.is_object(), "the new state is part of the output");
    let mut again = all.clone();
    again["state"] = state;
    let second = output(&turbine(
        &emu,
        "pull_sign_ins",
        again.to_string().as_bytes(),
        Some(&keys),
    ));
    assert_eq!(second["status_code"], 200);
}

#[test]
fn http_style_inputs_run_like_ours() {
    let emu = Emulator::start();
    let upn = emu.upn(0);
    let ours = emu.run(
        "get_user",
        json!({"id": upn, "select": ["displayName", "jobTitle"]}),
    );
    let grouped = emu.run(
        "get_user",
        json!({"path_parameters": {"id": upn}, "parameters": {"$select": "displayName,jobTitle"}}),
    );
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    assert_eq!(grouped.code, 0, "{}", grouped.stderr);
    assert_eq!(ours.json()["json_body"], grouped.json()["json_body"]);

    let changed = emu.run(
        "update_user",
        json!({"path_parameters": {"id": upn}, "json_body": {"jobTitle": "Analyst"}}),
    );
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    let after = emu.run("get_user", json!({"id": upn, "select": ["jobTitle"]}));
    assert_eq!(after.json()["json_body"]["jobTitle"], "Analyst");

    let listed = emu.run(
        "list_memberships",
        json!({"path_parameters": {"id": upn}, "parameters": {"$top": 5, "$select": ["id"]}}),
    );
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let presence = emu.run("get_presence", json!({"path_parameters": {"id": upn}}));
    assert_eq!(presence.code, 0, "{}", presence.stderr);
}

#[test]
fn a_malformed_mix_of_shapes_is_refused_at_its_pointer() {
    let emu = Emulator::start();
    emu.clear_log();
    let cases = [
        (
            "get_user",
            json!({"id": "a@b.c", "path_parameters": {"id": "a@b.c"}}),
            "/inputs/id",
        ),
        (
            "get_user",
            json!({"parameters": {"$select": "displayName"}}),
            "/inputs/path_parameters",
        ),
        (
            "list_memberships",
            json!({"path_parameters": {"id": "a@b.c"}, "parameters": {"$top": 5000}}),
            "/inputs/parameters/$top",
        ),
        (
            "update_user",
            json!({"path_parameters": {"id": "a@b.c"}, "json_body": {"jobTitel": "x"}}),
            "/inputs/json_body/jobTitel",
        ),
        (
            "get_presence",
            json!({"path_parameters": {"id": ""}}),
            "/inputs/path_parameters/id",
        ),
    ];
    for (action, inputs, pointer) in cases {
        let out = emu.run(action, inputs.clone());
        assert_eq!(out.code, 2, "{action} {inputs}: {}", out.stderr);
        let paths: Vec<Value> = out.json()["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].clone())
            .collect();
        assert!(
            paths.contains(&json!(pointer)),
            "{action} {inputs}: {paths:?}"
        );
    }
    assert!(emu.log().is_empty());
}

fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

#[test]
fn export_turbine_matches_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("package");
    let out = process::run(
        &["export", "turbine", package.to_str().unwrap()],
        b"",
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fresh = tree(&package);
    assert_eq!(out.json()["written"].as_array().unwrap().len(), fresh.len());
    let golden_dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", "turbine"]
        .iter()
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden_dir);
        for (rel, bytes) in &fresh {
            let path = golden_dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
    let golden = tree(&golden_dir);
    let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&fresh),
        names(&golden),
        "export turbine writes other files than tests/golden/turbine (UPDATE_GOLDEN=1 rewrites it)"
    );
    for (rel, bytes) in &fresh {
        assert!(
            golden[rel] == *bytes,
            "{rel} differs from tests/golden/turbine (UPDATE_GOLDEN=1 rewrites it)"
        );
    }
    // Every action and a manifest per Turbine asset, found by `schema` and `name`.
    for a in msgraph_connector::actions::ACTIONS {
        let text =
            String::from_utf8(fresh[&format!("actions/{}.yaml", a.meta.name)].clone()).unwrap();
        let manifest: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(
            (manifest["schema"].as_str(), manifest["name"].as_str()),
            (Some("action/1"), Some(a.meta.name))
        );
    }
    let asset: Value =
        serde_norway::from_slice(&fresh["assets/oauth2_client_credentials.yaml"]).unwrap();
    assert_eq!(
        asset["inputs"]["properties"]["client_secret"]["format"],
        "password"
    );
}
