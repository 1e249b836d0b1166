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
