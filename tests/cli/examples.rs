//! Every example in `actions/*.yaml` runs against the emulator's seeded tenant
//! (`--generate users=1000,sign_ins=10000,seed=1`) through the real binary, and
//! its documented result must hold: the page is a promise to playbook authors.
//!
//! Matching is by subset: every key the example states must be in the answer
//! with that value (objects by key, scalars equal), so pages stay readable while
//! volatile fields (request ids, ports) are left out. Arrays match element by
//! element and in length, so an expected `[]` means "none"; where a page means
//! "begins with", it says so: `{starts_with: [...]}` matches an array whose first
//! elements match those given (see [`STARTS_WITH`]).

use graph_emulator::GenerateSpec;
use msgraph_connector::actions::ACTIONS;
use serde_json::{Value, json};

use crate::support::emulator::EmulatorSetup;
use crate::support::process;

/// In the expected results of `actions/*.yaml` examples, `{starts_with: [...]}` in
/// place of an array means "an array beginning with these"; a plain array means
/// exactly these (so `[]` means none).
pub const STARTS_WITH: &str = "starts_with";

/// The items of a `{starts_with: [...]}` marker.
pub fn starts_with(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(STARTS_WITH)?.as_array().map(Vec::as_slice),
        _ => None,
    }
}

/// An expected result with each marker replaced by its items: the shape of a real
/// answer, for checking examples against the output schema.
pub fn without_markers(v: &Value) -> Value {
    if let Some(items) = starts_with(v) {
        return Value::Array(items.iter().map(without_markers).collect());
    }
    match v {
        Value::Array(a) => Value::Array(a.iter().map(without_markers).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), without_markers(x)))
                .collect(),
        ),
        x => x.clone(),
    }
}

fn subset(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    let items = |e: &[Value], a: &[Value]| {
        e.iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (ev, av))| subset(ev, av, &format!("{at}/{i}")))
    };
    match (expected, actual) {
        (e, Value::Array(a)) if starts_with(e).is_some() => {
            let e = starts_with(e).unwrap_or_default();
            if e.len() > a.len() {
                return Err(format!(
                    "{at}: expected at least {} items, got {}",
                    e.len(),
                    a.len()
                ));
            }
            items(e, a)
        }
        // Every key is checked, so one mismatch does not hide the next.
        (Value::Object(e), Value::Object(a)) => {
            let errors: Vec<String> = e
                .iter()
                .filter_map(|(k, v)| match a.get(k) {
                    Some(av) => subset(v, av, &format!("{at}/{k}")).err(),
                    None => Some(format!("{at}/{k} is missing")),
                })
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => items(e, a),
        (Value::Array(e), Value::Array(a)) => Err(format!(
            "{at}: expected {} items, got {}{}",
            e.len(),
            a.len(),
            if e.len() < a.len() {
                " (write {starts_with: [...]} if the page means a prefix)"
            } else {
                ""
            }
        )),
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{at}: expected {e}, got {a}")),
    }
}

#[test]
fn the_matcher_tells_none_from_some_and_prefixes_from_lists() {
    let ok = |e: Value, a: Value| subset(&e, &a, "").is_ok();
    assert!(ok(json!([]), json!([])));
    assert!(!ok(json!([]), json!([1])));
    assert!(!ok(json!({"v": []}), json!({"v": [{"id": 1}]})));
    assert!(ok(json!([{"id": 1}]), json!([{"id": 1, "x": 2}])));
    assert!(!ok(json!([{"id": 1}]), json!([{"id": 1}, {"id": 2}])));
    assert!(ok(json!({"starts_with": [1]}), json!([1, 2])));
    assert!(ok(json!({"starts_with": []}), json!([1, 2])));
    assert!(!ok(json!({"starts_with": [2]}), json!([1, 2])));
    assert!(!ok(json!({"starts_with": [1, 2, 3]}), json!([1, 2])));
    // An object that only looks like the marker matches as an object.
    assert!(ok(json!({"starts_with": [1]}), json!({"starts_with": [1]})));
}

#[test]
fn every_action_example_runs_against_the_emulator() {
    let emu = EmulatorSetup::generated(GenerateSpec {
        users: 1000,
        sign_ins: 10000,
        seed: 1,
        ..Default::default()
    })
    .start();
    let asset = emu.asset("client_credentials");
    let mut failures = Vec::new();
    let mut ran = 0;
    for action in ACTIONS {
        let path = format!(
            "{}/actions/{}.yaml",
            env!("CARGO_MANIFEST_DIR"),
            action.meta.name
        );
        let page: Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (i, example) in page["examples"].as_array().unwrap().iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let mut envelope = json!({"asset": asset, "inputs": example["inputs"]});
            if let Some(state) = example.get("state") {
                envelope["state"] = state.clone();
            }
            let out = process::run(
                &["run", action.meta.name],
                envelope.to_string().as_bytes(),
                dir.path(),
            );
            ran += 1;
            let expected = &example["result"];
            let want_code = if expected.get("error").is_some() {
                expected["exit"].as_i64().unwrap_or(4) as i32
            } else {
                0
            };
            let label = format!("{} example {i} ({})", action.meta.name, example["name"]);
            if out.code != want_code {
                failures.push(format!(
                    "{label}: exit {} instead of {want_code}: {}",
                    out.code, out.stderr
                ));
                continue;
            }
            let mut expected = expected.clone();
            if let Value::Object(m) = &mut expected {
                m.remove("exit");
            }
            if let Err(e) = subset(&expected, &out.json(), "") {
                failures.push(format!("{label}: {e}"));
            }
        }
    }
    assert!(ran >= ACTIONS.len());
    assert!(
        failures.is_empty(),
        "examples that do not hold:\n{}",
        failures.join("\n")
    );
}
