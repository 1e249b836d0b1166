//! get_presence and get_presences against the emulator over real HTTP, asserting
//! the exact requests made.

use serde_json::{Value, json};

use crate::support::assertions::{assert_graph_error, assert_invalid, decode, line};
use crate::support::emulator::{Emulator, EmulatorSetup};

const SEAN: &str = "sean.o'brien@contoso.example";
const RECEPTION: &str = "$svc-reception@contoso.example";
const MISSING_ID: &str = "00000000-0000-4000-8000-00000000dead";

#[test]
fn get_presence_by_id_and_by_upn_with_apostrophe() {
    let emu = EmulatorSetup::users(10).start();
    let id = emu.user_id(4);
    let out = emu.run("get_presence", json!({"id": id}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["id"], id.as_str());
    assert!(body["availability"].is_string());
    let log: Vec<_> = emu.graph_log().iter().map(line).collect();
    assert_eq!(
        log,
        [(
            "GET".into(),
            format!("/v1.0/users/{id}/presence"),
            String::new()
        )]
    );
    for e in emu.graph_log() {
        assert!(e.authorization);
        assert!(e.client_request_id.is_some());
    }

    emu.clear_log();
    let out = emu.run("get_presence", json!({"id": SEAN}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sean = emu.user_id(emu.index_of(SEAN));
    assert_eq!(out.json()["json_body"]["id"], sean.as_str());
    let log: Vec<_> = emu.graph_log().iter().map(line).collect();
    assert_eq!(
        log,
        [
            (
                "GET".into(),
                format!("/v1.0/users/{SEAN}"),
                "$select=id".to_string()
            ),
            (
                "GET".into(),
                format!("/v1.0/users/{sean}/presence"),
                String::new()
            ),
        ]
    );
}

#[test]
fn get_presence_not_found_and_forbidden() {
    let emu = EmulatorSetup::users(5).start();
    let out = emu.run("get_presence", json!({"id": MISSING_ID}));
    assert_graph_error(&out, 404, "Request_ResourceNotFound");
    let out = emu.run_as(
        &emu.read_only_asset(),
        "get_presence",
        json!({"id": emu.user_id(0)}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
}

#[test]
fn get_presences_mixed_inputs_in_order_with_duplicates_and_missing() {
    let emu = EmulatorSetup::users(12).start();
    let (a, b, c) = (emu.user_id(4), emu.user_id(5), emu.user_id(6));
    let sean = emu.user_id(emu.index_of(SEAN));
    let reception = emu.user_id(emu.index_of(RECEPTION));
    let ids = json!([
        b,
        SEAN,
        a.to_uppercase(),
        MISSING_ID,
        "nobody@contoso.example",
        a,
        RECEPTION,
        sean,
        c,
        "SEAN.O'BRIEN@contoso.example"
    ]);
    let out = emu.run("get_presences", json!({ "ids": ids }));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let result = out.json();
    let body = &result["json_body"];
    let got: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [b.as_str(), &sean, &a, &reception, &c]);
    assert_eq!(
        body["not_found"],
        json!([MISSING_ID, "nobody@contoso.example"])
    );
    assert_eq!(body["resolved"][SEAN], sean.as_str());
    assert_eq!(body["resolved"][RECEPTION], reception.as_str());
    assert_eq!(result["status_code"], 200);

    let log = emu.graph_log();
    let lines: Vec<_> = log.iter().map(line).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        (
            "GET".into(),
            "/v1.0/users".into(),
            format!(
                "$filter=userPrincipalName in ('sean.o''brien@contoso.example','nobody@contoso.example','{RECEPTION}')&$select=id,userPrincipalName"
            )
        )
    );
    assert_eq!(
        lines[1],
        (
            "POST".into(),
            "/v1.0/communications/getPresencesByUserId".into(),
            String::new()
        )
    );
    assert_eq!(log[1].content_type.as_deref(), Some("application/json"));
}

fn distinct_ids(emu: &Emulator, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = emu.tenant.users.iter().map(|u| u.id.to_string()).collect();
    let mut i = 0u64;
    while ids.len() < n {
        ids.push(format!("00000000-0000-4000-8000-{i:012x}"));
        i += 1;
    }
    ids.truncate(n);
    ids
}

#[test]
fn get_presences_chunks_by_650_and_fetches_duplicates_once() {
    let emu = EmulatorSetup::users(1300).start();
    let mut ids = distinct_ids(&emu, 1300);
    ids.extend(ids.clone().into_iter().take(200));
    let out = emu.run("get_presences", json!({ "ids": ids }));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["value"].as_array().unwrap().len(), 1300);
    assert_eq!(body["not_found"], json!([]));
    let posts: Vec<_> = emu
        .graph_log()
        .into_iter()
        .filter(|e| e.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|e| e.status == 200));
    assert_eq!(emu.graph_log().len(), 2, "no user lookups for object ids");
}

#[test]
fn get_presences_ten_thousand_ids_make_sixteen_requests_and_one_token() {
    let emu = EmulatorSetup::users(2000).start();
    let ids = distinct_ids(&emu, 10_000);
    let out = emu.run("get_presences", json!({ "ids": ids }));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["value"].as_array().unwrap().len(), 2000);
    assert_eq!(body["not_found"].as_array().unwrap().len(), 8000);
    assert_eq!(body["not_found"][0], ids[2000].as_str());
    let all = emu.log();
    assert_eq!(all.iter().filter(|e| e.family == "token").count(), 1);
    assert_eq!(
        all.iter()
            .filter(|e| e.method == "POST" && e.family != "token")
            .count(),
        16
    );
    assert_eq!(all.len(), 17);
}

#[test]
fn get_presences_resolves_upns_fifteen_at_a_time() {
    let emu = EmulatorSetup::users(40).start();
    let upns: Vec<String> = (4..24).map(|i| emu.upn(i)).collect();
    let out = emu.run("get_presences", json!({ "ids": upns }));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    let got: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (4..24).map(|i| emu.user_id(i)).collect();
    assert_eq!(got, want);
    let log = emu.graph_log();
    let gets: Vec<_> = log.iter().filter(|e| e.method == "GET").collect();
    assert_eq!(gets.len(), 2);
    let mut sizes: Vec<usize> = gets
        .iter()
        .map(|e| {
            decode(e.query.as_deref().unwrap())
                .matches("@contoso.example'")
                .count()
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, [5, 15]);
    assert_eq!(log.iter().filter(|e| e.method == "POST").count(), 1);
}

#[test]
fn get_presences_forbidden_without_presence_permission() {
    let emu = EmulatorSetup::users(5).start();
    let out = emu.run_as(
        &emu.read_only_asset(),
        "get_presences",
        json!({"ids": [emu.user_id(0)]}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
}

#[test]
fn get_presences_bad_inputs_make_no_request() {
    let emu = EmulatorSetup::users(5).start();
    for (inputs, pointer) in [
        (json!({"ids": []}), "/inputs/ids"),
        (json!({"ids": ["a", ""]}), "/inputs/ids/1"),
        (json!({"ids": "a"}), "/inputs/ids"),
        (json!({"ids": ["a"], "extra": 1}), "/inputs/extra"),
        (json!({}), "/inputs/ids"),
    ] {
        let out = emu.run("get_presences", inputs);
        assert_invalid(&emu, &out, pointer);
    }
    let too_many: Vec<Value> = (0..100_001).map(|_| json!("x")).collect();
    let out = emu.run("get_presences", json!({ "ids": too_many }));
    assert_invalid(&emu, &out, "/inputs/ids");
}
