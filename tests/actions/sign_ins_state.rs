//! pull_sign_ins refuses states it cannot trust before any request leaves.

use serde_json::{Value, json};

use crate::support::process::{self, Outcome};

/// An asset whose hosts answer nothing: these runs must fail before the network.
fn asset() -> Value {
    json!({"type": "client_credentials", "url": "http://127.0.0.1:9", "login_url": "http://127.0.0.1:9",
           "tenant_id": "t", "client_id": "c", "client_secret": "s"})
}

fn run_with_state(state: Value, inputs: Value, dir: &std::path::Path) -> Outcome {
    let envelope = json!({"asset": asset(), "inputs": inputs, "state": state});
    process::run(
        &["run", "pull_sign_ins"],
        envelope.to_string().as_bytes(),
        dir,
    )
}

#[test]
fn old_version_state_is_exit_2_naming_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_state(
        json!({"version": 0, "cursor": "2026-01-01T00:00:00Z"}),
        json!({}),
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let e = out.json();
    assert_eq!(e["error"]["kind"], "invalid_input");
    assert_eq!(e["error"]["details"][0]["path"], "/state/version");
    assert!(out.stderr.contains("not supported"), "{}", out.stderr);
}

#[test]
fn corrupted_state_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for state in [
        json!("garbage"),
        json!({"version": 1, "window_start": "not a time", "cursor": null}),
        json!({"version": 1, "window_start": "2026-01-01T00:00:00Z", "cursor": null,
               "delivered": {"2026-01-01T00:00:00Z": "not a list"}}),
    ] {
        let out = run_with_state(state.clone(), json!({}), dir.path());
        assert_eq!(out.code, 2, "{state}: {}", out.stderr);
        let path = out.json()["error"]["details"][0]["path"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(path.starts_with("/state"), "{path}");
    }
}

#[test]
fn state_built_with_another_filter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = json!({"version": 1, "window_start": "2026-01-01T00:00:00Z", "cursor": null,
                       "filter": "status/errorCode ne 0"});
    let out = run_with_state(state, json!({"filter": "appId eq 'x'"}), dir.path());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.json()["error"]["details"][0]["path"], "/inputs/filter");
}

#[test]
fn filters_that_escape_the_window_or_set_it_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for filter in [
        "x eq 1) or (true",
        "createdDateTime ge 2020-01-01T00:00:00Z",
    ] {
        let out = process::run_action(
            "pull_sign_ins",
            &asset(),
            &json!({"filter": filter}),
            dir.path(),
        );
        assert_eq!(out.code, 2, "{filter}: {}", out.stderr);
        assert_eq!(out.json()["error"]["details"][0]["path"], "/inputs/filter");
    }
}
