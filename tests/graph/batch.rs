//! JSON batching: the Graph layer's `GraphClient::batch` and the emulator's
//! `$batch` against each other over real HTTP, asserted from the request log.

use graph_emulator::{FULL_APP_CLIENT_ID, Family, FaultKind, ThrottleConfig};
use msgraph_connector::ErrorKind;
use msgraph_connector::graph::{
    ApiFamily, BatchItem, ClientOptions, GraphClient, GraphPath, GraphRequest,
};
use serde_json::{Value, json};

use crate::support::emulator::{Emulator, EmulatorSetup};

const MISSING: &str = "00000000-0000-4000-8000-00000000dead";

fn client(emu: &Emulator) -> GraphClient {
    let asset =
        msgraph_connector::runner::parse_asset(Some(&emu.asset("client_credentials"))).unwrap();
    GraphClient::new(asset, ClientOptions::default()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get_user(id: &str) -> BatchItem {
    BatchItem::new(
        GraphRequest::get(GraphPath::user(id), ApiFamily::Directory)
            .query("$select", "id,displayName"),
    )
}

fn on_wire(emu: &Emulator) -> usize {
    emu.graph_log().iter().filter(|e| e.batch.is_none()).count()
}

#[test]
fn forty_five_requests_go_in_three_batches_and_answer_in_order() {
    let emu = EmulatorSetup::users(43).start();
    let mut items: Vec<BatchItem> = (0..43).map(|i| get_user(&emu.user_id(i))).collect();
    items.insert(10, get_user(MISSING));
    items.push(get_user(&emu.upn(7)));
    let results = runtime().block_on(client(&emu).batch(items)).unwrap();
    assert_eq!(results.len(), 45);
    for (n, r) in results.iter().enumerate() {
        match n {
            10 => {
                let e = r.as_ref().unwrap_err();
                assert_eq!((e.kind, e.status_code), (ErrorKind::Graph, Some(404)));
                assert_eq!(e.code.as_deref(), Some("Request_ResourceNotFound"));
            }
            _ => {
                let user: Value = r.as_ref().unwrap().json().unwrap();
                let i = match n {
                    44 => 7,
                    n if n < 10 => n,
                    n => n - 1,
                };
                assert_eq!(user["id"], emu.user_id(i), "item {n}");
            }
        }
    }
    assert_eq!(on_wire(&emu), 3);
    let log = emu.graph_log();
    let mut sizes: Vec<usize> = log
        .iter()
        .filter(|e| e.batch.is_none())
        .map(|b| {
            assert_eq!(
                (b.method.as_str(), b.path.as_str()),
                ("POST", "/v1.0/$batch")
            );
            log.iter()
                .filter(|e| e.batch.as_deref() == Some(&b.request_id))
                .count()
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, [5, 20, 20]);
}

#[test]
fn throttled_items_are_retried_alone_after_their_retry_after() {
    let emu = EmulatorSetup::users(5).start();
    emu.fail_next(
        Some(Family::Users),
        2,
        FaultKind::Status {
            status: 429,
            retry_after: Some(0.3),
        },
    );
    let items: Vec<BatchItem> = (0..5).map(|i| get_user(&emu.user_id(i))).collect();
    let started = std::time::Instant::now();
    let results = runtime().block_on(client(&emu).batch(items)).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let log = emu.graph_log();
    let items: Vec<_> = log.iter().filter(|e| e.batch.is_some()).collect();
    assert_eq!(items.iter().filter(|e| e.status == 429).count(), 2);
    assert_eq!(items.len(), 7, "5 items, 2 of them twice");
    assert_eq!(
        on_wire(&emu),
        2,
        "the second batch holds only the two throttled items"
    );
}

#[test]
fn throttling_past_the_budget_fails_the_item_not_the_batch() {
    let emu = EmulatorSetup::users(3)
        .asset_setting("max_attempts", json!(2))
        .start();
    emu.fail_next(
        Some(Family::Users),
        2,
        FaultKind::Status {
            status: 429,
            retry_after: Some(0.1),
        },
    );
    let rt = runtime();
    let results = rt
        .block_on(client(&emu).batch(vec![get_user(&emu.user_id(0))]))
        .unwrap();
    let e = results[0].as_ref().unwrap_err();
    assert_eq!((e.kind, e.status_code), (ErrorKind::Network, Some(429)));
    assert_eq!(e.code.as_deref(), Some("TooManyRequests"));
    // The next batch is not held back by the item that gave up.
    let results = rt
        .block_on(client(&emu).batch(vec![get_user(&emu.user_id(1))]))
        .unwrap();
    assert!(results[0].is_ok());
}

#[test]
fn a_dependant_of_a_failed_request_gets_424_and_travels_with_it() {
    let emu = EmulatorSetup::users(25).start();
    let mut items: Vec<BatchItem> = (0..19).map(|i| get_user(&emu.user_id(i))).collect();
    items.push(get_user(MISSING));
    items.push(get_user(&emu.user_id(20)).after(19));
    let results = runtime().block_on(client(&emu).batch(items)).unwrap();
    assert_eq!(results[19].as_ref().unwrap_err().status_code, Some(404));
    let e = results[20].as_ref().unwrap_err();
    assert_eq!(e.status_code, Some(424));
    // 19 + the pair do not fit in one batch: the pair went together.
    let log = emu.graph_log();
    assert_eq!(on_wire(&emu), 2);
    let dependant = log
        .iter()
        .find(|e| e.path == format!("/v1.0/users/{}", emu.user_id(20)));
    assert!(
        dependant.is_none(),
        "a failed dependency is not run: {log:?}"
    );
}

/// The emulator's own refusals, raw.
#[tokio::test]
async fn the_emulator_refuses_what_graph_refuses() {
    let emu = EmulatorSetup::users(3)
        .throttle(ThrottleConfig::off())
        .start();
    let token = emu
        .mint_access_token(FULL_APP_CLIENT_ID.parse().unwrap())
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/$batch", emu.base_url());
    let post = async |body: Value| {
        let r = http
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let get = |id: &str, url: &str| json!({"id": id, "method": "GET", "url": url});
    let many: Vec<Value> = (0..21).map(|i| get(&i.to_string(), "/users")).collect();
    let (status, body) = post(json!({"requests": many})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("20"));
    let (status, _) = post(json!({"requests": [get("a", "/users"), get("A", "/users")]})).await;
    assert_eq!(status, 400, "ids are unique, case-insensitively");
    let (status, _) = post(
        json!({"requests": [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}]}),
    )
    .await;
    assert_eq!(status, 400);

    let user = emu.user_id(1);
    let (status, body) = post(json!({"requests": [
        get("1", &format!("/users/{user}?$select=id")),
        get("2", &format!("{}/v1.0/users/{user}", emu.base_url())),
        {"id": "3", "method": "PATCH", "url": format!("/users/{user}"), "body": {"jobTitle": "x"}},
        {"id": "4", "method": "PATCH", "url": format!("/users/{user}"), "body": {"jobTitle": "Analyst"},
         "headers": {"Content-Type": "application/json"}, "dependsOn": ["1"]},
    ]})).await;
    assert_eq!(status, 200);
    let answers: std::collections::HashMap<String, &Value> = body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap().to_string(), a))
        .collect();
    assert_eq!(answers["1"]["status"], 200);
    assert_eq!(answers["1"]["body"]["id"], user);
    assert_eq!(answers["2"]["status"], 400, "absolute URLs are refused");
    assert_eq!(answers["3"]["status"], 400, "a body needs a Content-Type");
    assert_eq!(answers["4"]["status"], 204);
    assert_eq!(
        emu.user(&user).unwrap().job_title.as_deref(),
        Some("Analyst")
    );

    // A photo comes base64-encoded.
    let photo_user = emu
        .tenant
        .users
        .iter()
        .find(|u| u.photo.is_some())
        .map(|u| u.id.to_string());
    if let Some(p) = photo_user {
        let (_, body) =
            post(json!({"requests": [get("p", &format!("/users/{p}/photo/$value"))]})).await;
        let a = &body["responses"][0];
        assert_eq!(a["status"], 200);
        assert_eq!(a["headers"]["content-type"], "image/jpeg");
        assert!(a["body"].is_string());
    }
}
