//! Issue 11: the HTTP and auth layers as the real service and Microsoft's SDKs expect:
//! the token URL used exactly as given, `Retry-Attempt` on retries, `Retry-After`
//! honoured at the token endpoint, 509 and 409 `Directory_ConcurrencyViolation`
//! retried on requests that may be repeated.

use graph_emulator::{Family, FaultKind};
use serde_json::json;

use crate::support::emulator::{Emulator, USER_ID};
use crate::support::process;

fn status(status: u16, retry_after: Option<f64>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after,
    }
}

/// Item 1: `.../oauth2/v2.0/token` went out as `.../token/`, which Entra (and now the
/// emulator) answers 404.
#[test]
fn an_oauth2_token_url_is_used_exactly_as_given() {
    let emu = Emulator::start();
    let asset = emu.asset("oauth2_client_credentials");
    let out = emu.run_as(&asset, "get_presence", json!({"id": USER_ID}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tokens = emu.token_log();
    assert_eq!(tokens.len(), 1);
    let given = url::Url::parse(asset["token_url"].as_str().unwrap()).unwrap();
    assert_eq!(tokens[0].path, given.path());
    assert_eq!(tokens[0].status, 200);
}

/// Item 10: each retry says which one it is, as Microsoft's SDKs' RetryHandler does.
#[test]
fn retries_carry_retry_attempt() {
    let emu = Emulator::start();
    emu.fail_next(Some(Family::Presence), 2, status(503, Some(0.01)));
    let out = emu.run("get_presence", json!({"id": USER_ID}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sent: Vec<_> = emu
        .graph_log()
        .iter()
        .map(|e| (e.status, e.retry_attempt.clone()))
        .collect();
    assert_eq!(
        sent,
        [
            (503, None),
            (503, Some("1".to_string())),
            (200, Some("2".to_string()))
        ]
    );
}

/// Item 10: 409 `Directory_ConcurrencyViolation` and 509 are retried when the request
/// may be repeated (a GET), and a PATCH is not sent twice.
#[test]
fn concurrency_violations_and_509_are_retried_on_reads_only() {
    let emu = Emulator::start();
    emu.fail_next(Some(Family::Users), 1, status(409, None));
    emu.fail_next(Some(Family::Users), 1, status(509, None));
    let out = emu.run("get_user", json!({"id": USER_ID, "select": ["id"]}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let statuses: Vec<u16> = emu.graph_log().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [409, 509, 200]);

    emu.clear_log();
    emu.fail_next(Some(Family::Users), 1, status(409, None));
    let out = emu.run(
        "update_user",
        json!({"id": USER_ID, "properties": {"jobTitle": "x"}}),
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(
        out.json()["error"]["code"],
        "Directory_ConcurrencyViolation"
    );
    assert_eq!(emu.graph_log().len(), 1, "a PATCH is not repeated");
}

/// Item 10: the token endpoint's `Retry-After` is honoured, not replaced by backoff.
#[test]
fn the_token_endpoint_retry_after_is_honoured() {
    let emu = Emulator::start();
    emu.fail_next(Some(Family::Token), 1, status(429, Some(0.25)));
    let dir = tempfile::tempdir().unwrap();
    let envelope = json!({"asset": emu.asset("client_credentials"), "inputs": {"id": USER_ID}});
    let out = process::run(
        &["run", "get_presence"],
        envelope.to_string().as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let statuses: Vec<u16> = emu.token_log().iter().map(|t| t.status).collect();
    assert_eq!(statuses, [429, 200]);
    assert!(
        out.stderr
            .contains("retrying the token request in 0.250s (Retry-After)"),
        "{}",
        out.stderr
    );
}
