//! Issue 11: the actions against an emulator that answers as the real service does
//! where a first reading of the docs misleads: the four "no photo" 404s, memberOf
//! casts without `@odata.type`, app-only user reads with `User.ReadBasic.All`, the
//! directory roles a PATCH needs, the sign-ins licence error of an app without
//! Directory.Read.All, and `$select` names from Microsoft's metadata.

use graph_emulator::{AppRegistration, User};
use serde_json::{Value, json};

use crate::support::assertions::assert_graph_error;
use crate::support::emulator::{Emulator, EmulatorSetup};

const LIMITED: (&str, &str) = ("11e11000-0000-4000-8000-0000000000a1", "limited-secret");
const BASIC: (&str, &str) = ("11e11000-0000-4000-8000-0000000000a2", "basic-secret");
const NO_DIRECTORY: (&str, &str) = ("11e11000-0000-4000-8000-0000000000a3", "nodir-secret");

fn app((id, secret): (&str, &str), permissions: &[&str]) -> AppRegistration {
    AppRegistration {
        client_id: id.parse().unwrap(),
        display_name: format!("issue 11 app {id}").into(),
        client_secret: Some(secret.to_string().into()),
        client_secret_expired: false,
        certificate: None,
        public_client: false,
        permissions: permissions.iter().map(|p| p.to_string().into()).collect(),
        directory_roles: Vec::new(),
    }
}

fn asset_of(emu: &Emulator, (id, secret): (&str, &str)) -> Value {
    let mut a = emu.asset("client_credentials");
    a["client_id"] = json!(id);
    a["client_secret"] = json!(secret);
    a
}

/// Six users (user 0 holds every directory role of the generated tenant), and apps:
/// LIMITED may change users and read the directory but its service principal holds no
/// role; BASIC holds only User.ReadBasic.All; NO_DIRECTORY changes users and reads
/// audit logs without Directory.Read.All.
fn start() -> Emulator {
    EmulatorSetup::users(6)
        .configure(|c| {
            c.tenant
                .apps
                .push(app(LIMITED, &["User.ReadWrite.All", "Directory.Read.All"]));
            c.tenant
                .apps
                .push(app(BASIC, &["User.ReadBasic.All", "Presence.Read.All"]));
            c.tenant.apps.push(app(
                NO_DIRECTORY,
                &["User.ReadWrite.All", "AuditLog.Read.All"],
            ));
        })
        .start()
}

// ---------------------------------------------------------------- item 3

#[test]
fn every_no_photo_shape_means_has_photo_false() {
    let ids: Vec<String> = (0..4)
        .map(|i| format!("9d0f0000-0000-4000-8000-00000000000{i}"))
        .collect();
    let emu = EmulatorSetup::users(2)
        .configure(|c| {
            for (i, id) in ids.iter().enumerate() {
                let u: User = serde_json::from_value(json!({
                    "id": id, "userPrincipalName": format!("nophoto{i}@contoso.example"),
                    "displayName": format!("No Photo {i}")
                }))
                .unwrap();
                c.tenant.users.push(u);
            }
        })
        .start();
    let mut codes = Vec::new();
    for id in &ids {
        let out = emu.run("get_user_photo", json!({"id": id}));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.json()["json_body"], json!({"has_photo": false}));
        codes.push(graph_emulator::no_photo_answer(id.parse().unwrap()).0);
    }
    codes.sort_unstable();
    assert_eq!(
        codes,
        [
            "ErrorEntityNotFound",
            "ErrorItemNotFound",
            "GetUserPhoto",
            "ImageNotFound"
        ],
        "the emulator answered each shape once"
    );
    let statuses: Vec<u16> = emu.graph_log().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [404, 404, 404, 404]);
}

// ---------------------------------------------------------------- item 12

#[test]
fn memberships_of_a_cast_keep_their_type() {
    let emu = start();
    let admin = emu.user_id(0);
    let out = emu.run(
        "list_memberships",
        json!({"id": admin, "type": "directoryRole", "max_items": 2}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = out.json()["json_body"].clone();
    let items = body["value"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["@odata.type"] == "#microsoft.graph.directoryRole"),
        "{body}"
    );
    // Resumed from the link: still typed.
    let link = body["@odata.nextLink"]
        .as_str()
        .expect("more roles")
        .to_string();
    let out = emu.run("list_memberships", json!({"id": admin, "next_link": link}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rest = out.json()["json_body"]["value"].clone();
    assert!(
        rest.as_array()
            .unwrap()
            .iter()
            .all(|i| i["@odata.type"] == "#microsoft.graph.directoryRole"),
        "{rest}"
    );
}

// ---------------------------------------------------------------- item 4

#[test]
fn app_only_user_reads_need_user_read_all_and_check_says_so() {
    let emu = start();
    let basic = asset_of(&emu, BASIC);
    let out = emu.run_as(&basic, "get_user", json!({"id": emu.user_id(1)}));
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    let out = emu.run_as(&basic, "get_presence", json!({"id": emu.upn(1)}));
    assert_graph_error(&out, 403, "Authorization_RequestDenied");

    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::process::run(
        &["check"],
        json!({"asset": basic}).to_string().as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    for action in ["get_user", "get_presence", "get_presences"] {
        let line = body["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == action)
            .unwrap();
        assert_eq!(line["ok"], false, "{line}");
        assert_eq!(line["missing"], json!(["User.Read.All"]), "{line}");
    }
}

// ---------------------------------------------------------------- item 2

fn message(out: &crate::support::process::Outcome) -> String {
    out.json()["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn a_refused_change_names_the_missing_directory_role() {
    let emu = start();
    let limited = asset_of(&emu, LIMITED);
    let admin = emu.user_id(0);
    let out = emu.run_as(
        &limited,
        "update_user",
        json!({"id": admin, "properties": {"accountEnabled": false}}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    let m = message(&out);
    assert!(
        m.contains("Privileged Authentication Administrator") && m.contains("Global Reader"),
        "names the role needed and the roles the user holds: {m}"
    );
    assert!(emu.user(&admin).unwrap().account_enabled);

    let no_role = (1..6)
        .map(|i| emu.user_id(i))
        .find(|id| {
            !emu.tenant
                .directory_roles
                .iter()
                .any(|r| r.members.iter().any(|m| m.to_string() == *id))
        })
        .expect("a user without a directory role");
    let out = emu.run_as(
        &limited,
        "update_user",
        json!({"id": no_role, "properties": {"passwordProfile": {"password": "Xy!9-long-enough"}}}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    let m = message(&out);
    assert!(
        m.contains("holds no admin role") && m.contains("User Administrator"),
        "{m}"
    );
    assert!(!m.contains("Xy!9-long-enough"));

    // Without Directory.Read.All the user's roles cannot be read: both causes are named.
    let out = emu.run_as(
        &asset_of(&emu, NO_DIRECTORY),
        "update_user",
        json!({"id": admin, "properties": {"passwordProfile": {"password": "Xy!9-long-enough"}}}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    let m = message(&out);
    assert!(
        m.contains("User Administrator") && m.contains("Privileged Authentication Administrator"),
        "{m}"
    );

    // The generated full app's service principal holds Privileged Authentication Administrator.
    let out = emu.run(
        "update_user",
        json!({"id": admin, "properties": {"accountEnabled": false}}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!emu.user(&admin).unwrap().account_enabled);
}

#[test]
fn the_catalog_lists_the_roles_update_user_needs() {
    let emu = start();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::process::run(&["actions"], b"", dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let catalog = out.json();
    let list = catalog
        .as_array()
        .or_else(|| catalog["actions"].as_array())
        .unwrap();
    let update = list.iter().find(|a| a["name"] == "update_user").unwrap();
    assert_eq!(update["permissions"], json!(["User.ReadWrite.All"]));
    let roles: Vec<&str> = update["directory_roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "User Administrator",
            "Privileged Authentication Administrator"
        ]
    );
    drop(emu);
}

// ---------------------------------------------------------------- item 7

#[test]
fn the_sign_ins_licence_error_names_the_missing_permission_too() {
    let emu = start();
    let out = emu.run_as(&asset_of(&emu, NO_DIRECTORY), "pull_sign_ins", json!({}));
    assert_graph_error(
        &out,
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    );
    let m = message(&out);
    assert!(
        m.contains("P1 or P2") && m.contains("Directory.Read.All"),
        "{m}"
    );
}

// ---------------------------------------------------------------- item 5

#[test]
fn properties_new_in_the_metadata_can_be_selected() {
    let emu = start();
    let out = emu.run(
        "get_user",
        json!({"id": emu.user_id(1), "select": ["id", "deviceEnrollmentLimit", "identityParentId"]}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = emu.graph_log();
    assert_eq!(
        log[0].query.as_deref(),
        Some("$select=id,deviceEnrollmentLimit,identityParentId")
    );
}
