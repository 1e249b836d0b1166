//! Starting and stopping: loopback only, a background thread, and the server-time
//! benchmark.

use graph_emulator::{self as emulator, EmulatorConfig, EmulatorError, GenerateSpec, Tenant};
use serde_json::json;

use crate::support::{fixture, start};

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let err = emulator::start("0.0.0.0:0".parse().unwrap(), EmulatorConfig::new(fixture()))
        .await
        .unwrap_err();
    assert!(matches!(err, EmulatorError::NotLoopback(_)));
}

#[test]
fn runs_in_the_background_from_a_plain_test() {
    use std::io::{Read, Write};
    let emu = emulator::start_in_background(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig::new(fixture()),
    )
    .unwrap();
    let addr = emu.addr();
    assert_ne!(addr.port(), 0);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /v1.0/organization HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("request-id:"));
    // shutdown joins the server thread, so the listener is closed when it returns.
    emu.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err(), "stopped");
}

/// A benchmark, not a test (speed is never asserted in `cargo test`): the emulator's
/// own server time on a large tenant, from its request log.
/// `cargo test --release -p graph-emulator --test emulator -- --ignored --nocapture emulator_server_time`
#[tokio::test]
#[ignore]
async fn emulator_server_time_on_a_large_tenant() {
    let tenant = Tenant::generate(&GenerateSpec {
        users: 20_000,
        sign_ins: 50_000,
        seed: 2,
        day: None,
    });
    let ids: Vec<String> = tenant
        .users
        .iter()
        .take(650)
        .map(|u| u.id.to_string())
        .collect();
    let one = tenant.users[12_345].id;
    let t = start(tenant).await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    for _ in 0..5 {
        assert_eq!(
            t.get(&token, &format!("/v1.0/users/{one}"))
                .await
                .status()
                .as_u16(),
            200
        );
        let r = t
            .http
            .post(t.url("/v1.0/communications/getPresencesByUserId"))
            .bearer_auth(&token)
            .json(&json!({ "ids": ids }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let best = |family: &str| {
        t.emu
            .request_log()
            .family(family)
            .iter()
            .map(|e| e.micros)
            .min()
            .unwrap()
    };
    eprintln!(
        "best server time of 5: GET user {} µs, 650 presences {} µs",
        best("users"),
        best("presence")
    );
}
