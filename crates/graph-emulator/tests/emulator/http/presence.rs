//! Presence: one user and the bulk call with its 650-id cap.

use graph_emulator as emulator;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{assert_graph_error, json_of, small_generated, start};

#[tokio::test]
async fn presence_single_and_bulk_with_the_650_cap() {
    let t = start(small_generated()).await;
    let tenant = small_generated();
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let id = tenant.users[5].id.to_string();
    let (s, b) = json_of(t.get(&token, &format!("/v1.0/users/{id}/presence")).await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id"], id);
    assert!(b["availability"].is_string() && b["activity"].is_string());
    assert!(b["outOfOfficeSettings"]["isOutOfOffice"].is_boolean());

    let bulk = |ids: Vec<String>| {
        let http = t.http.clone();
        let url = t.url("/v1.0/communications/getPresencesByUserId");
        let token = token.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"ids": ids}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let mut ids: Vec<String> = tenant.users.iter().map(|u| u.id.to_string()).collect();
    let unknown: Vec<String> = (0..600).map(|_| Uuid::new_v4().to_string()).collect();
    ids.extend(unknown);
    assert_eq!(ids.len(), 650);
    let (s, body) = bulk(ids.clone()).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        50,
        "unknown ids are left out"
    );
    ids.push(Uuid::new_v4().to_string());
    let (s, body) = bulk(ids).await;
    assert_eq!(s, 400);
    assert!(body.is_empty(), "a bare 400: {body}");

    let reader = t
        .app_token((emulator::READ_APP_CLIENT_ID, emulator::READ_APP_SECRET))
        .await;
    let (s, b) = json_of(t.get(&reader, &format!("/v1.0/users/{id}/presence")).await).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
}

/// The presence writes over raw HTTP: Graph's permission, the documented pairs and
/// range (400 in Graph's envelope otherwise), sessions aggregated on the clock.
#[tokio::test]
async fn presence_writes_keep_sessions_and_refuse_what_graph_does_not_document() {
    let mut tenant = small_generated();
    for u in &mut tenant.users {
        u.presence = None;
    }
    let t = crate::support::start_with(tenant.clone(), |c| {
        c.clock = Some("2026-03-02T08:00:00Z".parse().unwrap());
    })
    .await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let id = tenant.users[3].id.to_string();
    let post = |op: &str, body: Value, token: String| {
        let http = t.http.clone();
        let url = t.url(&format!("/v1.0/users/{id}/presence/{op}"));
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            json_of(r).await
        }
    };
    let shown = || async {
        let (s, b) = json_of(t.get(&token, &format!("/v1.0/users/{id}/presence")).await).await;
        assert_eq!(s, 200, "{b}");
        (
            b["availability"].as_str().unwrap().to_string(),
            b["activity"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        shown().await,
        ("PresenceUnknown".into(), "PresenceUnknown".into())
    );
    let app = emulator::FULL_APP_CLIENT_ID;
    for (av, ac) in [
        ("Busy", "Busy"),
        ("Offline", "OffWork"),
        ("DoNotDisturb", "DoNotDisturb"),
    ] {
        let (s, b) = post(
            "setPresence",
            json!({"sessionId": app, "availability": av, "activity": ac}),
            token.clone(),
        )
        .await;
        assert_graph_error(s, &b, 400, "BadRequest");
    }
    for d in ["PT4M", "PT4H1S", "soon"] {
        let (s, b) = post(
            "setPresence",
            json!({"sessionId": app, "availability": "Away", "activity": "Away", "expirationDuration": d}),
            token.clone(),
        )
        .await;
        assert_graph_error(s, &b, 400, "BadRequest");
    }
    let (s, b) = post(
        "setUserPreferredPresence",
        json!({"availability": "Busy", "activity": "InACall"}),
        token.clone(),
    )
    .await;
    assert_graph_error(s, &b, 400, "BadRequest");
    assert_eq!(
        shown().await,
        ("PresenceUnknown".into(), "PresenceUnknown".into())
    );

    let (s, b) = post(
        "setPresence",
        json!({"sessionId": app, "availability": "Available", "activity": "Available", "expirationDuration": "PT1H"}),
        token.clone(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = post(
        "setPresence",
        json!({"sessionId": Uuid::new_v4().to_string(), "availability": "Away", "activity": "Away"}),
        token.clone(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(shown().await, ("Available".into(), "Available".into()));
    t.emu.advance_clock(std::time::Duration::from_secs(5 * 60));
    // The Away session expired (PT5M default); the Available one timed out once.
    assert_eq!(
        shown().await,
        ("Available".into(), "AvailableInactive".into())
    );
    let (s, _) = post(
        "setStatusMessage",
        json!({"statusMessage": {"message": {"content": "hi"}}}),
        token.clone(),
    )
    .await;
    assert_eq!(s, 200);
    let (_, b) = json_of(t.get(&token, &format!("/v1.0/users/{id}/presence")).await).await;
    assert_eq!(
        b["statusMessage"]["message"],
        json!({"content": "hi", "contentType": "text"})
    );

    let reader = t
        .app_token((emulator::READ_APP_CLIENT_ID, emulator::READ_APP_SECRET))
        .await;
    let (s, b) = post("clearUserPreferredPresence", json!({}), reader).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
}
