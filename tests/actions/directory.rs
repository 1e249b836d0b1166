//! get_user, list_memberships, update_user and get_user_photo against the
//! emulator over real HTTP, asserting the exact requests made.

use base64::Engine;
use graph_emulator::DELEGATED_USER;
use serde_json::json;

use crate::support::assertions::{
    assert_graph_error, assert_invalid, assert_output_path_refused, line, no_secret_in,
    refused_output_paths,
};
use crate::support::emulator::EmulatorSetup;

const SEAN: &str = "sean.o'brien@contoso.example";
const RECEPTION: &str = "$svc-reception@contoso.example";
const MISSING_ID: &str = "00000000-0000-4000-8000-00000000dead";

// ---------------------------------------------------------------- get_user

#[test]
fn get_user_selects_checked_properties() {
    let emu = EmulatorSetup::users(8).start();
    let id = emu.user_id(5);
    let out = emu.run(
        "get_user",
        json!({"id": id, "select": ["displayName", "JOBTITLE", "onPremisesExtensionAttributes", "id"]}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["id"], id.as_str());
    assert_eq!(
        body["displayName"],
        emu.tenant.users[5].display_name.as_ref()
    );
    assert!(body.get("jobTitle").is_some());
    assert!(
        body.get("mail").is_none(),
        "only the selected properties: {body}"
    );
    let log: Vec<_> = emu.graph_log().iter().map(line).collect();
    assert_eq!(
        log,
        [(
            "GET".into(),
            format!("/v1.0/users/{id}"),
            "$select=displayName,jobTitle,onPremisesExtensionAttributes,id".into()
        )]
    );
}

#[test]
fn get_user_by_dollar_upn_uses_key_form() {
    let emu = EmulatorSetup::users(8).start();
    let out = emu.run(
        "get_user",
        json!({"id": RECEPTION, "select": ["userPrincipalName"]}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["json_body"]["userPrincipalName"], RECEPTION);
    let log: Vec<_> = emu.graph_log().iter().map(line).collect();
    assert_eq!(
        log,
        [(
            "GET".into(),
            format!("/v1.0/users('{RECEPTION}')"),
            "$select=userPrincipalName".into()
        )]
    );
    let out = emu.run("get_user", json!({"id": SEAN}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["json_body"]["userPrincipalName"], SEAN);
}

#[test]
fn get_user_errors() {
    let emu = EmulatorSetup::users(5).start();
    let out = emu.run(
        "get_user",
        json!({"id": "x", "select": ["displayName", "jobtitel"]}),
    );
    assert_invalid(&emu, &out, "/inputs/select/1");
    let out = emu.run("get_user", json!({"id": ""}));
    assert_invalid(&emu, &out, "/inputs/id");
    let out = emu.run("get_user", json!({"id": MISSING_ID}));
    assert_graph_error(&out, 404, "Request_ResourceNotFound");
}

// ---------------------------------------------------------------- list_memberships

#[test]
fn list_memberships_follows_every_page() {
    // 3,000 users: 120 groups, all with the delegated user in them, plus roles and units.
    let emu = EmulatorSetup::users(3000).start();
    let out = emu.run("list_memberships", json!({"id": DELEGATED_USER}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    let value = body["value"].as_array().unwrap();
    let expected = emu.tenant.groups.len()
        + emu.tenant.directory_roles.len()
        + emu.tenant.administrative_units.len();
    assert!(expected > 100);
    assert_eq!(value.len(), expected);
    assert!(body.get("@odata.nextLink").is_none());
    let mut ids: Vec<&str> = value.iter().map(|v| v["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected, "no object twice");
    let log = emu.graph_log();
    assert_eq!(log.len(), expected.div_ceil(100));
    assert_eq!(
        line(&log[0]),
        (
            "GET".into(),
            format!("/v1.0/users/{DELEGATED_USER}/memberOf"),
            String::new()
        )
    );
    assert!(log[1].query.as_deref().unwrap().contains("skiptoken"));
    assert!(log.iter().all(|e| e.consistency_level.is_none()));
}

#[test]
fn list_memberships_cast_and_search_add_consistency_level() {
    let emu = EmulatorSetup::users(60).start();
    let out = emu.run(
        "list_memberships",
        json!({"id": DELEGATED_USER, "type": "group", "search": "displayName:tier", "select": ["id", "displayName"]}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    let value = body["value"].as_array().unwrap();
    assert!(!value.is_empty());
    assert!(value.iter().all(|g| {
        g["displayName"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("tier")
    }));
    assert_eq!(body["@odata.count"], value.len());
    let log = emu.graph_log();
    assert_eq!(
        log.iter().map(line).collect::<Vec<_>>(),
        [(
            "GET".into(),
            format!("/v1.0/users/{DELEGATED_USER}/memberOf/microsoft.graph.group"),
            "$search=\"displayName:tier\"&$select=id,displayName&$count=true".into()
        )]
    );
    assert_eq!(log[0].consistency_level.as_deref(), Some("eventual"));

    emu.clear_log();
    let out = emu.run(
        "list_memberships",
        json!({"id": DELEGATED_USER, "type": "directoryRole"}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let roles = out.json()["json_body"]["value"].as_array().unwrap().clone();
    assert_eq!(roles.len(), emu.tenant.directory_roles.len());
    assert!(
        roles
            .iter()
            .all(|r| r["@odata.type"] == "#microsoft.graph.directoryRole")
    );
    let log = emu.graph_log();
    assert_eq!(log[0].query.as_deref(), Some("$count=true"));
    assert_eq!(log[0].consistency_level.as_deref(), Some("eventual"));
}

#[test]
fn list_memberships_max_items_returns_a_link_that_resumes() {
    let emu = EmulatorSetup::users(3000).start();
    let out = emu.run(
        "list_memberships",
        json!({"id": DELEGATED_USER, "filter": "startswith(displayName,'Tier')", "max_items": 10}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = out.json()["json_body"].clone();
    assert_eq!(body["value"].as_array().unwrap().len(), 10);
    let link = body["@odata.nextLink"]
        .as_str()
        .expect("a nextLink")
        .to_string();
    let total = body["@odata.count"].as_u64().unwrap();
    assert!(total > 10);
    let log = emu.graph_log();
    assert_eq!(
        line(&log[0]).2,
        "$filter=startswith(displayName,'Tier')&$top=10&$count=true"
    );

    emu.clear_log();
    let out = emu.run(
        "list_memberships",
        json!({"id": DELEGATED_USER, "next_link": link}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rest = out.json()["json_body"]["value"].as_array().unwrap().len() as u64;
    assert_eq!(rest + 10, total);
    let log = emu.graph_log();
    assert!(!log.is_empty());
    assert!(
        log.iter()
            .all(|e| e.consistency_level.as_deref() == Some("eventual"))
    );
    assert!(log.iter().all(|e| e.status == 200));
}

#[test]
fn list_memberships_errors() {
    let emu = EmulatorSetup::users(5).start();
    let out = emu.run("list_memberships", json!({"id": "u", "type": "team"}));
    assert_invalid(&emu, &out, "/inputs/type");
    let out = emu.run("list_memberships", json!({"id": "u", "top": 1000}));
    assert_invalid(&emu, &out, "/inputs/top");
    let out = emu.run("list_memberships", json!({"id": "u", "search": "tier"}));
    assert_invalid(&emu, &out, "/inputs/search");
    let out = emu.run(
        "list_memberships",
        json!({"id": "u", "next_link": "https://evil.example/v1.0/users/u/memberOf?$skiptoken=x"}),
    );
    assert_invalid(&emu, &out, "/inputs/next_link");
    let out = emu.run("list_memberships", json!({"id": MISSING_ID}));
    assert_graph_error(&out, 404, "Request_ResourceNotFound");
    let out = emu.run_as(
        &emu.read_only_asset(),
        "list_memberships",
        json!({"id": emu.user_id(0)}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
}

// ---------------------------------------------------------------- update_user

#[test]
fn update_user_patches_and_answers_204() {
    let emu = EmulatorSetup::users(6).start();
    let id = emu.user_id(4);
    let out = emu.run(
        "update_user",
        json!({"id": id, "properties": {"accountEnabled": false, "jobTitle": "Contained",
               "onPremisesExtensionAttributes": {"extensionAttribute1": "soar-case-42"}}}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let result = out.json();
    assert_eq!(result["status_code"], 204);
    assert_eq!(result["reason"], "No Content");
    assert!(result["json_body"].is_null());
    let log = emu.graph_log();
    assert_eq!(
        log.iter().map(line).collect::<Vec<_>>(),
        [("PATCH".into(), format!("/v1.0/users/{id}"), String::new())]
    );
    assert_eq!(log[0].status, 204);
    assert_eq!(log[0].content_type.as_deref(), Some("application/json"));
    let user = emu.user(&id).unwrap();
    assert!(!user.account_enabled);
    assert_eq!(user.job_title.as_deref(), Some("Contained"));

    let out = emu.run(
        "update_user",
        json!({"id": SEAN, "properties": {"jobTitle": null}}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(emu.user(SEAN).unwrap().job_title, None);
}

#[test]
fn update_user_password_never_shows() {
    let emu = EmulatorSetup::users(6).start();
    let secret = "Xy!9-very-secret-Pw";
    let inputs = json!({"id": emu.user_id(4), "properties": {"passwordProfile": {
        "password": secret, "forceChangePasswordNextSignIn": true}}});
    let out = emu.run("update_user", inputs.clone());
    assert_eq!(out.code, 0, "{}", out.stderr);
    no_secret_in(&out, secret);
    // The read-only app is refused; the error does not echo the password either.
    let out = emu.run_as(&emu.read_only_asset(), "update_user", inputs);
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    no_secret_in(&out, secret);
    // A bad password field is refused without the value in the message.
    let emu2 = EmulatorSetup::users(1).start();
    let out = emu2.run(
        "update_user",
        json!({"id": "u", "properties": {"passwordProfile": {"password": secret, "bogus": secret}}}),
    );
    assert_invalid(&emu2, &out, "/inputs/properties/passwordProfile/bogus");
    no_secret_in(&out, secret);
}

#[test]
fn update_user_bad_inputs_make_no_request() {
    let emu = EmulatorSetup::users(3).start();
    for (inputs, pointer) in [
        (json!({"id": "u", "properties": {}}), "/inputs/properties"),
        (
            json!({"id": "u", "properties": {"birthday": "2000-01-01"}}),
            "/inputs/properties/birthday",
        ),
        (
            json!({"id": "u", "properties": {"accountEnabled": "no"}}),
            "/inputs/properties/accountEnabled",
        ),
        (
            json!({"id": "u", "properties": {"usageLocation": "Germany"}}),
            "/inputs/properties/usageLocation",
        ),
        (
            json!({"id": "u", "properties": {"businessPhones": ["1", "2"]}}),
            "/inputs/properties/businessPhones",
        ),
        (
            json!({"id": "u", "properties": {"onPremisesExtensionAttributes": {"extensionAttribute16": "x"}}}),
            "/inputs/properties/onPremisesExtensionAttributes/extensionAttribute16",
        ),
        (
            json!({"id": "u", "properties": {"extension_abc_x": "1"}}),
            "/inputs/properties/extension_abc_x",
        ),
        (json!({"id": "u"}), "/inputs/properties"),
    ] {
        let out = emu.run("update_user", inputs);
        assert_invalid(&emu, &out, pointer);
    }
}

#[test]
fn update_user_not_found() {
    let emu = EmulatorSetup::users(3).start();
    let out = emu.run(
        "update_user",
        json!({"id": MISSING_ID, "properties": {"department": "X"}}),
    );
    assert_graph_error(&out, 404, "Request_ResourceNotFound");
}

// ---------------------------------------------------------------- get_user_photo

#[test]
fn get_user_photo_base64_file_and_none() {
    let emu = EmulatorSetup::users(6).start();
    // Generated users 0, 3, 6, ... have a photo; 1, 2, 4, 5 have none.
    let with = emu.user_id(3);
    let out = emu.run("get_user_photo", json!({"id": with}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = out.json()["json_body"].clone();
    assert_eq!(body["has_photo"], true);
    assert_eq!(body["content_type"], "image/jpeg");
    assert!(body["etag"].as_str().is_some_and(|e| !e.is_empty()));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["content_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
    assert_eq!(body["bytes"], bytes.len());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.jpg");
    emu.clear_log();
    let out = emu.run(
        "get_user_photo",
        json!({"id": with, "size": "120x120", "output_path": path}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = out.json()["json_body"].clone();
    assert!(body.get("content_base64").is_none());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
    assert_eq!(
        emu.graph_log().iter().map(line).collect::<Vec<_>>(),
        [(
            "GET".into(),
            format!("/v1.0/users/{with}/photos/120x120/$value"),
            String::new()
        )]
    );

    emu.clear_log();
    let without = emu.user_id(4);
    let out = emu.run(
        "get_user_photo",
        json!({"id": without, "output_path": dir.path().join("none.jpg")}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["json_body"], json!({"has_photo": false}));
    assert!(!dir.path().join("none.jpg").exists());
    assert_eq!(
        emu.graph_log().iter().map(line).collect::<Vec<_>>(),
        [(
            "GET".into(),
            format!("/v1.0/users/{without}/photo/$value"),
            String::new()
        )]
    );
}

#[test]
fn get_user_photo_refuses_output_paths_it_must_not_replace() {
    let emu = EmulatorSetup::users(6).start();
    let with = emu.user_id(3);
    let scratch = tempfile::tempdir().unwrap();
    for (path, why) in refused_output_paths(emu.state.path(), scratch.path()) {
        let out = emu.run("get_user_photo", json!({"id": with, "output_path": path}));
        assert_output_path_refused(&emu, &out, why);
    }
    let store = emu.state.path().join("presence.sqlite3");
    assert_eq!(std::fs::read_to_string(store).unwrap(), "the store");
    assert!(scratch.path().join("dir").is_dir());
    // A regular file is replaced, and the photo is private.
    let photo = scratch.path().join("photo.jpg");
    std::fs::write(&photo, "old").unwrap();
    let out = emu.run("get_user_photo", json!({"id": with, "output_path": photo}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&photo).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn get_user_photo_errors() {
    let emu = EmulatorSetup::users(3).start();
    let out = emu.run("get_user_photo", json!({"id": "u", "size": "100x100"}));
    assert_invalid(&emu, &out, "/inputs/size");
    let out = emu.run(
        "get_user_photo",
        json!({"id": "u", "output_path": "/nonexistent-dir-xyz/p.jpg"}),
    );
    assert_invalid(&emu, &out, "/inputs/output_path");
    let out = emu.run("get_user_photo", json!({"id": MISSING_ID}));
    assert_graph_error(&out, 404, "Request_ResourceNotFound");
}

/// A saved next_link whose skip token expired (Graph: 400 Directory_ExpiredPageToken) is
/// answered with an error that says to start over; a call without it reads every page.
#[test]
fn list_memberships_expired_next_link_says_start_over() {
    let emu = EmulatorSetup::users(3000)
        .configure(|c| c.skiptoken_ttl = std::time::Duration::from_secs(60))
        .start();
    let out = emu.run(
        "list_memberships",
        json!({"id": DELEGATED_USER, "max_items": 10}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let link = out.json()["json_body"]["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_string();
    emu.advance_clock(std::time::Duration::from_secs(61));
    let out = emu.run(
        "list_memberships",
        json!({"id": DELEGATED_USER, "next_link": link}),
    );
    assert_eq!(out.code, 4, "{}", out.stdout);
    let err = &out.json()["error"];
    assert_eq!(err["code"], "Directory_ExpiredPageToken");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("start over") && message.contains("without next_link"),
        "{message}"
    );
}
