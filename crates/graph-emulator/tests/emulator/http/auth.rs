//! Authentication on Graph routes, request ids, and unknown routes.

use std::time::Duration;

use graph_emulator::FaultPlan;

use crate::support::{FULL, assert_graph_error, fixture, json_of, start};

#[tokio::test]
async fn graph_rejects_missing_expired_and_early_expired_tokens() {
    let t = start(fixture()).await;
    let r = t
        .http
        .get(t.url("/v1.0/organization"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("request-id"));
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");

    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, "/v1.0/organization").await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["id"], "0f0e0d0c-0b0a-4900-8800-000000000001");

    t.emu.advance_clock(Duration::from_secs(3600));
    let (s, b) = json_of(t.get(&token, "/v1.0/organization").await).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");
    assert_eq!(
        b["error"]["message"],
        "Access token has expired or is not yet valid."
    );

    t.emu.use_real_clock();
    t.emu
        .set_faults(FaultPlan::parse("token:expire_after=0").unwrap());
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, "/v1.0/organization").await).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");

    // A token of another emulator instance is not accepted.
    t.emu.set_faults(FaultPlan::none());
    let other = start(fixture()).await;
    let foreign = other.app_token(FULL).await;
    let (s, b) = json_of(t.get(&foreign, "/v1.0/organization").await).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn request_ids_are_echoed_and_unknown_routes_fail_loudly() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let r = t
        .http
        .get(t.url("/v1.0/users/nobody@fabrikam.example"))
        .bearer_auth(&token)
        .header("client-request-id", "7c1f6a3e-0000-4000-8000-000000000001")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["client-request-id"],
        "7c1f6a3e-0000-4000-8000-000000000001"
    );
    let rid = r.headers()["request-id"].to_str().unwrap().to_string();
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 404, "Request_ResourceNotFound");
    assert_eq!(b["error"]["innerError"]["request-id"], rid);
    assert_eq!(
        b["error"]["innerError"]["client-request-id"],
        "7c1f6a3e-0000-4000-8000-000000000001"
    );

    let (s, b) = json_of(t.get(&token, "/v1.0/groups/whatever").await).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = json_of(t.get(&token, "/v2.0/users").await).await;
    assert_eq!(
        s, 404,
        "a path the emulator does not serve is 404, as Entra's are"
    );
    let log = t.emu.request_log().snapshot();
    assert!(
        log.iter()
            .any(|e| e.path == "/v2.0/users" && e.family == "unknown")
    );
}
