//! The containment actions against the emulator: revoke_sign_in_sessions,
//! disable_user (with and without revoking), confirm_compromised and
//! dismiss_risky_user, and Graph's refusals of each, asserted from the request log.

use graph_emulator::{FULL_APP_CLIENT_ID, GenerateSpec, ThrottleConfig};
use serde_json::{Value, json};

use crate::support::assertions::{assert_graph_error, decode};
use crate::support::emulator::{Emulator, EmulatorSetup};

const RISKY: usize = 5;

fn setup() -> EmulatorSetup {
    EmulatorSetup::generated(GenerateSpec {
        users: 12,
        sign_ins: 0,
        seed: 7,
        day: None,
    })
    .throttle(ThrottleConfig::off())
}

fn without(setup: EmulatorSetup, perms: &'static [&'static str]) -> Emulator {
    setup
        .configure(move |c| {
            let app = c
                .tenant
                .apps
                .iter_mut()
                .find(|a| a.client_id.to_string() == FULL_APP_CLIENT_ID)
                .unwrap();
            app.permissions.retain(|p| !perms.contains(&&**p));
        })
        .start()
}

fn lines(emu: &Emulator) -> Vec<String> {
    emu.graph_log()
        .iter()
        .map(|e| format!("{} {} {}", e.method, decode(&e.path), e.status))
        .collect()
}

fn risk_of(emu: &Emulator, i: usize) -> Value {
    let out = emu.run(
        "get_user_status",
        json!({"ids": [emu.user_id(i)], "parts": ["risk"]}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()["json_body"]["users"][0]["risk"].clone()
}

#[test]
fn revoke_moves_the_sessions_start_and_says_what_it_does_not_do() {
    let emu = setup().start();
    let upn = emu.upn(2);
    let moved = |emu: &Emulator| {
        emu.user(&upn)
            .unwrap()
            .extra
            .contains_key("signInSessionsValidFromDateTime")
    };
    assert!(!moved(&emu));
    let out = emu.run("revoke_sign_in_sessions", json!({"id": upn}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["revoked"], true);
    let notes = body["notes"].to_string();
    assert!(
        notes.contains("few minutes") && notes.contains("guest"),
        "{notes}"
    );
    assert!(moved(&emu));
    assert_eq!(
        lines(&emu),
        [format!("POST /v1.0/users/{upn}/revokeSignInSessions 200")]
    );
}

#[test]
fn revoke_without_its_permission_is_refused() {
    let emu = setup().start();
    let out = emu.run_as(
        &emu.read_only_asset(),
        "revoke_sign_in_sessions",
        json!({"id": emu.upn(2)}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    // User.ReadWrite.All is not enough: the page lists only User.RevokeSessions.All.
    let emu = without(setup(), &["User.RevokeSessions.All"]);
    let out = emu.run("revoke_sign_in_sessions", json!({"id": emu.upn(2)}));
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
}

#[test]
fn disable_user_then_revoke_reports_each_step() {
    let emu = setup().start();
    let id = emu.user_id(4);
    let out = emu.run("disable_user", json!({"id": id, "revoke_sessions": true}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["disabled"], true);
    assert_eq!(body["sessions_revoked"], true);
    assert_eq!(
        body["steps"],
        json!([
            {"step": "disable", "status_code": 204},
            {"step": "revoke_sessions", "status_code": 200}
        ])
    );
    let user = emu.user(&id).unwrap();
    assert!(!user.account_enabled);
    assert!(user.extra.contains_key("signInSessionsValidFromDateTime"));
    assert_eq!(
        lines(&emu),
        [
            format!("PATCH /v1.0/users/{id} 204"),
            format!("POST /v1.0/users/{id}/revokeSignInSessions 200")
        ]
    );

    // Without revoke_sessions: one PATCH with only accountEnabled.
    emu.clear_log();
    let out = emu.run("disable_user", json!({"id": emu.upn(6)}));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["json_body"]["sessions_revoked"], false);
    assert_eq!(emu.graph_log().len(), 1);
}

#[test]
fn disable_user_refusals_are_graphs_and_say_what_was_done() {
    // No write permission: nothing changes, Graph's refusal as it is.
    let emu = setup().start();
    let out = emu.run_as(
        &emu.read_only_asset(),
        "disable_user",
        json!({"id": emu.upn(4), "revoke_sessions": true}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    assert!(emu.user(&emu.upn(4)).unwrap().account_enabled);

    // Disabled, then the revocation refused: exit 4, and the message says the account is disabled.
    let emu = without(setup(), &["User.RevokeSessions.All"]);
    let out = emu.run(
        "disable_user",
        json!({"id": emu.upn(4), "revoke_sessions": true}),
    );
    assert_graph_error(&out, 403, "Authorization_RequestDenied");
    assert!(
        out.stdout.contains("the account is disabled"),
        "{}",
        out.stdout
    );
    assert!(!emu.user(&emu.upn(4)).unwrap().account_enabled);

    let out = emu.run(
        "disable_user",
        json!({"id": "00000000-0000-4000-8000-00000000dead"}),
    );
    assert_graph_error(&out, 404, "Request_ResourceNotFound");
}

#[test]
fn confirm_compromised_then_dismiss() {
    let emu = setup().start();
    let out = emu.run(
        "confirm_compromised",
        json!({"ids": [emu.upn(2), emu.user_id(2), emu.user_id(3)]}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["user_ids"], json!([emu.user_id(2), emu.user_id(3)]));
    assert_eq!(body["risk_level"], "high");
    assert_eq!(out.json()["status_code"], 204);
    assert_eq!(risk_of(&emu, 2)["riskState"], "confirmedCompromised");
    assert_eq!(risk_of(&emu, 2)["riskLevel"], "high");

    let out = emu.run(
        "dismiss_risky_user",
        json!({"ids": [emu.user_id(2), emu.user_id(RISKY)]}),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(risk_of(&emu, 2)["riskLevel"], "none");
    assert_eq!(risk_of(&emu, RISKY)["riskState"], "dismissed");
    let posts: Vec<_> = emu
        .graph_log()
        .into_iter()
        .filter(|e| e.method == "POST" && e.path.contains("identityProtection"))
        .map(|e| e.path)
        .collect();
    assert_eq!(
        posts,
        [
            "/v1.0/identityProtection/riskyUsers/confirmCompromised",
            "/v1.0/identityProtection/riskyUsers/dismiss"
        ]
    );
}

#[test]
fn risk_verdicts_are_refused_without_p2_or_the_write_permission() {
    let emu = setup().configure(|c| c.tenant.premium_p2 = false).start();
    let out = emu.run("confirm_compromised", json!({"ids": [emu.user_id(2)]}));
    assert_graph_error(&out, 403, "Forbidden");
    assert!(
        out.stdout.contains("Microsoft Entra ID P2"),
        "{}",
        out.stdout
    );

    let emu = without(setup(), &["IdentityRiskyUser.ReadWrite.All"]);
    let out = emu.run("dismiss_risky_user", json!({"ids": [emu.user_id(RISKY)]}));
    assert_graph_error(&out, 403, "Authorization_RequestDenied");

    let out = emu.run(
        "confirm_compromised",
        json!({"ids": [emu.upn(1), "nobody@contoso.example"]}),
    );
    assert_graph_error(&out, 404, "Request_ResourceNotFound");
    assert!(out.stdout.contains("/inputs/ids/1"), "{}", out.stdout);
    let many: Vec<String> = (0..61).map(|i| format!("u{i}@x")).collect();
    let out = emu.run("confirm_compromised", json!({"ids": many}));
    assert_eq!(out.code, 2);
}
