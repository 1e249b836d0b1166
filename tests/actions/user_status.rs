//! get_user_status against the emulator over real HTTP: every part read with JSON
//! batching, each missing permission or licence reported for its own part, a 429
//! inside a batch, a user deleted between the two rounds, and the request count
//! for 1,000 users from the request log.

use graph_emulator::{
    FULL_APP_CLIENT_ID, Family, FaultKind, GenerateSpec, LogEntry, ThrottleConfig,
};
use serde_json::{Value, json};

use crate::support::emulator::{Emulator, EmulatorSetup};

const MISSING: &str = "00000000-0000-4000-8000-00000000dead";
/// The generator gives user 5 a risk record (every 37th user from the 6th).
const RISKY: usize = 5;
/// A user this file makes a Global Administrator.
const ADMIN: usize = 3;

fn setup() -> EmulatorSetup {
    EmulatorSetup::generated(GenerateSpec {
        users: 40,
        sign_ins: 400,
        seed: 7,
        day: None,
    })
    .throttle(ThrottleConfig::off())
    .configure(|c| {
        let admin = c.tenant.users[ADMIN].id;
        c.tenant.directory_roles[0].members.push(admin);
    })
}

/// `setup()` with the full app's permissions minus `without`.
fn without(perms: &[&str]) -> Emulator {
    let perms: Vec<String> = perms.iter().map(|p| p.to_string()).collect();
    setup()
        .configure(move |c| {
            let app = c
                .tenant
                .apps
                .iter_mut()
                .find(|a| a.client_id.to_string() == FULL_APP_CLIENT_ID)
                .unwrap();
            app.permissions
                .retain(|p| !perms.iter().any(|x| x.as_str() == &**p));
        })
        .start()
}

fn status(emu: &Emulator, ids: Vec<String>) -> Vec<Value> {
    let out = emu.run("get_user_status", json!({ "ids": ids }));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    emu.assert_no_secrets(&out.stdout, None);
    out.json()["json_body"]["users"].as_array().unwrap().clone()
}

/// The parts listed as unavailable: (part, reason).
fn unavailable(user: &Value) -> Vec<(String, String)> {
    user["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["part"].as_str().unwrap().to_string(),
                u["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(part: &str, reason: &str) -> (String, String) {
    (part.to_string(), reason.to_string())
}

/// Requests on the wire (batch items left out).
fn wire(log: &[LogEntry]) -> Vec<&LogEntry> {
    log.iter()
        .filter(|e| e.family != "token" && e.batch.is_none())
        .collect()
}

#[test]
fn fully_permitted_app_gets_every_part_in_three_requests() {
    let emu = setup().start();
    let ids = vec![
        emu.user_id(RISKY),
        emu.upn(ADMIN),
        MISSING.to_string(),
        emu.upn(ADMIN).to_uppercase(),
    ];
    let users = status(&emu, ids);
    assert_eq!(
        users.len(),
        3,
        "a repeated input is reported once: {users:?}"
    );

    let risky = &users[0];
    assert_eq!(risky["id"], emu.user_id(RISKY));
    assert_eq!(risky["account"]["accountEnabled"], true);
    assert!(
        risky["account"]
            .get("signInSessionsValidFromDateTime")
            .is_some()
    );
    assert!(
        risky["sign_in_activity"]
            .get("lastSignInDateTime")
            .is_some()
    );
    assert!(risky["presence"]["availability"].is_string());
    assert_eq!(risky["risk"]["riskState"], "atRisk");
    assert_eq!(risky["summary"]["risky"], true);
    assert_eq!(risky["summary"]["enabled"], true);
    // Only office presence is missing: no IP presence configuration in the state dir.
    assert_eq!(
        unavailable(risky),
        [pair("office_presence", "not_configured")]
    );

    let admin = &users[1];
    assert_eq!(admin["input"], emu.upn(ADMIN));
    assert_eq!(admin["id"], emu.user_id(ADMIN));
    assert_eq!(admin["summary"]["admin"], true);
    assert_eq!(admin["risk"]["riskLevel"], "none", "no record: no risk");
    assert_eq!(admin["summary"]["risky"], false);
    assert_eq!(
        admin["privileged"]["directory_roles"][0]["displayName"],
        emu.tenant.directory_roles[0].display_name.as_ref()
    );
    assert!(
        admin["summary"]["days_since_last_sign_in"].is_i64()
            || admin["sign_in_activity"]["lastSignInDateTime"].is_null()
    );

    let missing = &users[2];
    assert_eq!(missing["summary"]["found"], false);
    let parts: Vec<_> = unavailable(missing);
    assert_eq!(parts.len(), 6, "{parts:?}");
    assert!(parts.iter().all(|(_, r)| r == "not_found"));

    // Round 1 (accounts), round 2 (the other parts) and one presence call.
    let log = emu.log();
    let mut on_wire: Vec<String> = wire(&log)
        .iter()
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    on_wire.sort();
    assert_eq!(
        on_wire,
        [
            "POST /v1.0/$batch",
            "POST /v1.0/$batch",
            "POST /v1.0/communications/getPresencesByUserId"
        ]
    );
    let items: Vec<_> = log.iter().filter(|e| e.batch.is_some()).collect();
    assert_eq!(
        items.len(),
        3 + 3 * 2,
        "3 accounts, then 3 parts of 2 users"
    );
    assert!(
        items.iter().any(
            |e| e.path == format!("/v1.0/identityProtection/riskyUsers/{}", emu.user_id(RISKY))
        )
    );
}

#[test]
fn a_missing_permission_takes_out_its_part_only() {
    // (removed, the parts then unavailable, what the first needs)
    let cases: [(&[&str], &[&str], &str); 5] = [
        (
            &["AuditLog.Read.All"],
            &["sign_in_activity"],
            "AuditLog.Read.All",
        ),
        (
            &[
                "IdentityRiskyUser.Read.All",
                "IdentityRiskyUser.ReadWrite.All",
            ],
            &["risk"],
            "IdentityRiskyUser.Read.All or IdentityRiskyUser.ReadWrite.All",
        ),
        // The full app may also write presence (issue 16), which reads it too.
        (
            &["Presence.Read.All", "Presence.ReadWrite.All"],
            &["presence"],
            "Presence.Read.All",
        ),
        (
            &["Directory.Read.All", "GroupMember.Read.All"],
            &["privileged"],
            "Directory.Read.All",
        ),
        // Directory.Read.All also reads users; signInActivity needs a user read
        // permission too; GroupMember.Read.All alone shows no roles.
        (
            &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All"],
            &["account", "sign_in_activity", "privileged"],
            "User.Read.All",
        ),
    ];
    for (removed, parts, needs) in cases {
        let emu = without(removed);
        // An object id, so that the other parts are read even without the account.
        let u = &status(&emu, vec![emu.user_id(RISKY)])[0];
        let missing: Vec<&Value> = u["unavailable"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["part"] != "office_presence")
            .collect();
        let names: Vec<&str> = missing
            .iter()
            .map(|x| x["part"].as_str().unwrap())
            .collect();
        assert_eq!(names, parts, "without {removed:?}: {}", u["unavailable"]);
        assert!(
            missing.iter().all(|x| x["reason"] == "permission_missing"),
            "{missing:?}"
        );
        assert_eq!(missing[0]["needs"], needs);
        for other in [
            "account",
            "sign_in_activity",
            "presence",
            "risk",
            "privileged",
        ] {
            if !parts.contains(&other) {
                assert!(
                    u[other].is_object(),
                    "without {removed:?}, {other} is still there: {u}"
                );
            } else {
                assert!(u.get(other).is_none(), "without {removed:?}: {u}");
            }
        }
    }
}

#[test]
fn a_p1_tenant_has_no_risk_and_a_free_tenant_no_sign_in_activity() {
    let emu = setup().configure(|c| c.tenant.premium_p2 = false).start();
    let u = &status(&emu, vec![emu.upn(RISKY)])[0];
    let risk: Vec<_> = u["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["part"] == "risk")
        .collect();
    assert_eq!(risk.len(), 1, "{u}");
    assert_eq!(risk[0]["reason"], "licence_missing");
    assert_eq!(risk[0]["needs"], "Microsoft Entra ID P2");
    assert!(
        u["sign_in_activity"].is_object() && u["account"].is_object() && u["presence"].is_object()
    );
    assert!(u["summary"]["risky"].is_null());

    let emu = setup().premium(false).start();
    let u = &status(&emu, vec![emu.upn(RISKY)])[0];
    let parts = unavailable(u);
    assert!(
        parts.contains(&pair("sign_in_activity", "licence_missing")),
        "{parts:?}"
    );
    assert!(
        parts.contains(&pair("risk", "licence_missing")),
        "{parts:?}"
    );
    assert!(u["summary"]["signed_in_recently"].is_null());
    assert!(u["account"].is_object());
}

#[test]
fn a_throttled_batch_item_is_retried_after_its_retry_after() {
    let emu = setup().start();
    emu.fail_next(
        Some(Family::Identity),
        1,
        FaultKind::Status {
            status: 429,
            retry_after: Some(0.2),
        },
    );
    let u = &status(&emu, vec![emu.user_id(RISKY)])[0];
    assert_eq!(u["risk"]["riskState"], "atRisk", "{u}");
    assert_eq!(unavailable(u), [pair("office_presence", "not_configured")]);
    let log = emu.log();
    let risk: Vec<_> = log.iter().filter(|e| e.family == "identity").collect();
    assert_eq!(risk.len(), 2, "throttled, then answered");
    assert_eq!(risk[0].status, 429);
    assert_eq!(risk[1].status, 200);
    assert_ne!(
        risk[0].batch, risk[1].batch,
        "the retry went in a batch of its own"
    );
    assert_eq!(wire(&log).iter().filter(|e| e.family == "batch").count(), 3);
}

#[test]
fn a_user_deleted_between_resolution_and_read_is_not_found() {
    let emu = setup().start();
    let gone = emu.tenant.users[RISKY].id;
    emu.delete_user_at_batch(gone, 2);
    let users = status(&emu, vec![emu.upn(RISKY), emu.upn(ADMIN)]);
    let u = &users[0];
    assert_eq!(u["summary"]["found"], false, "{u}");
    assert_eq!(u["id"], gone.to_string(), "resolved before the deletion");
    let parts = unavailable(u);
    assert_eq!(parts.len(), 6, "{parts:?}");
    assert!(parts.iter().all(|(_, r)| r == "not_found"));
    assert!(
        u["unavailable"][0]["message"]
            .as_str()
            .unwrap()
            .contains("deleted")
    );
    assert_eq!(users[1]["summary"]["found"], true);
    assert!(users[1]["risk"].is_object());
}

#[test]
fn bad_input_is_refused_before_any_request() {
    let emu = setup().start();
    let out = emu.run("get_user_status", json!({"ids": []}));
    assert_eq!(out.code, 2, "{}", out.stdout);
    let out = emu.run("get_user_status", json!({"ids": ["a"], "parts": ["mood"]}));
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("/inputs/parts/0"), "{}", out.stdout);
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}@x")).collect();
    let out = emu.run("get_user_status", json!({"ids": many}));
    assert_eq!(out.code, 2);
    assert!(emu.graph_log().is_empty());
}

/// 1,000 users: 50 account batches, 150 batches of the other parts, 2 presence calls.
#[test]
fn a_thousand_users_take_about_one_request_per_twenty() {
    let emu = EmulatorSetup::users(1000).start();
    let ids: Vec<String> = (0..1000).map(|i| emu.user_id(i)).collect();
    let started = std::time::Instant::now();
    let users = status(&emu, ids);
    let took = started.elapsed();
    assert_eq!(users.len(), 1000);
    assert!(users.iter().all(|u| u["summary"]["found"] == true));
    let log = emu.log();
    let on_wire = wire(&log);
    let batches = on_wire.iter().filter(|e| e.family == "batch").count();
    let presence = on_wire.iter().filter(|e| e.family == "presence").count();
    assert_eq!((batches, presence, on_wire.len()), (200, 2, 202));
    assert_eq!(log.iter().filter(|e| e.batch.is_some()).count(), 4000);
    eprintln!("1,000 user statuses in {took:?}");
}
