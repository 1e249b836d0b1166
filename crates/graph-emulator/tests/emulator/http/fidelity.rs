//! Where the real service differs from a first reading of the docs (issue 11): app-only
//! user reads, directory roles on PATCH, the four "no photo" 404s, memberOf casts, and
//! the sign-ins licence error of an app without Directory.Read.All.

use serde_json::{Value, json};

use crate::support::{
    ADA, FULL, GRACE, HELPDESK, app, assert_graph_error, fixture, json_of, start,
};

const BASIC: (&str, &str) = ("0e000000-0000-4000-8000-0000000000b1", "basic-secret");
const PWPROFILE: (&str, &str) = ("0e000000-0000-4000-8000-0000000000b2", "pw-secret");
const PRIVILEGED: (&str, &str) = ("0e000000-0000-4000-8000-0000000000b3", "paa-secret");
const AUDIT_ONLY: (&str, &str) = ("0e000000-0000-4000-8000-0000000000b4", "audit-secret");

fn tenant() -> graph_emulator::Tenant {
    let mut t = fixture();
    t.apps.push(app(BASIC, &["User.ReadBasic.All"], &[]));
    // The delegated-only permission does nothing for an app-only token.
    t.apps.push(app(
        PWPROFILE,
        &["User.ReadWrite.All", "User-PasswordProfile.ReadWrite.All"],
        &[],
    ));
    t.apps.push(app(
        PRIVILEGED,
        &["User.ReadWrite.All"],
        &["Privileged Authentication Administrator"],
    ));
    t.apps.push(app(AUDIT_ONLY, &["AuditLog.Read.All"], &[]));
    t
}

#[tokio::test]
async fn app_only_user_reads_need_user_read_all() {
    let t = start(tenant()).await;
    let basic = t.app_token(BASIC).await;
    for path in [
        format!("/v1.0/users/{ADA}?$select=id,displayName"),
        "/v1.0/users?$filter=userPrincipalName eq 'grace.hopper@fabrikam.example'&$select=id"
            .to_string(),
    ] {
        let (s, b) = json_of(t.get(&basic, &path).await).await;
        assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    }
    let full = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&full, &format!("/v1.0/users/{ADA}")).await).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn patch_needs_directory_roles_for_passwords_and_admins() {
    let t = start(tenant()).await;
    let patch = |token: String, user: &'static str, body: Value| {
        let req = t
            .http
            .patch(t.url(&format!("/v1.0/users/{user}")))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            json_of(r).await
        }
    };
    let pw = json!({"passwordProfile": {"password": "N3w-Passw0rd!", "forceChangePasswordNextSignIn": true}});
    let full = t.app_token(FULL).await;
    let helpdesk = t.app_token(HELPDESK).await;
    let pwprofile = t.app_token(PWPROFILE).await;
    let privileged = t.app_token(PRIVILEGED).await;

    // Grace holds no directory role; Ada holds Global Reader.
    let (s, b) = patch(full.clone(), GRACE, pw.clone()).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    assert_eq!(
        b["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    let (s, b) = patch(pwprofile, GRACE, pw.clone()).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    let (s, b) = patch(helpdesk.clone(), GRACE, pw.clone()).await;
    assert_eq!(
        s, 204,
        "User Administrator sets a non-admin's password: {b}"
    );
    let (s, b) = patch(helpdesk.clone(), ADA, pw.clone()).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    let (s, b) = patch(privileged.clone(), ADA, pw).await;
    assert_eq!(s, 204, "{b}");

    let disable = json!({"accountEnabled": false});
    let (s, b) = patch(full.clone(), ADA, disable.clone()).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    assert!(
        t.emu.user(ADA).unwrap().account_enabled,
        "a refusal changes nothing"
    );
    let (s, b) = patch(full.clone(), ADA, json!({"jobTitle": "Analyst"})).await;
    assert_eq!(s, 204, "an admin's other properties need no role: {b}");
    let (s, b) = patch(full, GRACE, disable.clone()).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = patch(privileged, ADA, disable).await;
    assert_eq!(s, 204, "{b}");
    assert!(!t.emu.user(ADA).unwrap().account_enabled);
}

#[tokio::test]
async fn no_photo_comes_in_four_shapes_fixed_per_user() {
    let mut tenant = fixture();
    let grace = tenant
        .users
        .iter()
        .find(|u| u.id.to_string() == GRACE)
        .unwrap()
        .clone();
    let ids: Vec<String> = (0..4)
        .map(|i| format!("44444444-4444-4444-8444-00000000000{i}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut u = grace.clone();
        u.id = id.parse().unwrap();
        u.user_principal_name = format!("nophoto{i}@fabrikam.example").into();
        tenant.users.push(u);
    }
    let t = start(tenant).await;
    let token = t.app_token(FULL).await;
    let mut codes = Vec::new();
    for id in &ids {
        let (s, b) = json_of(
            t.get(&token, &format!("/v1.0/users/{id}/photo/$value"))
                .await,
        )
        .await;
        let (code, message) = graph_emulator::no_photo_answer(id.parse().unwrap());
        assert_graph_error(s, &b, 404, code);
        assert_eq!(b["error"]["message"], message);
        // The same user always gets the same shape; its metadata is that 404 or the
        // documented 1x1 answer with an empty mediaEtag (profilephoto-get).
        let (s, again) = json_of(t.get(&token, &format!("/v1.0/users/{id}/photo")).await).await;
        if graph_emulator::blank_photo_metadata(id.parse().unwrap()) {
            assert_eq!(s, 200, "{again}");
            assert_eq!(
                (&again["id"], &again["@odata.mediaEtag"]),
                (&json!("1x1"), &json!(""))
            );
        } else {
            assert_eq!(again["error"]["code"], code);
        }
        codes.push(code);
    }
    codes.sort_unstable();
    assert_eq!(
        codes,
        [
            "ErrorEntityNotFound",
            "ErrorItemNotFound",
            "GetUserPhoto",
            "ImageNotFound"
        ]
    );
}

#[tokio::test]
async fn member_of_casts_drop_odata_type_and_name_the_type_in_the_context() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    for (cast, tail) in [
        ("microsoft.graph.group", "#groups"),
        ("microsoft.graph.directoryRole", "#directoryRoles"),
        ("microsoft.graph.administrativeUnit", "#administrativeUnits"),
    ] {
        let (s, b) = json_of(
            t.get_eventual(
                &token,
                &format!("/v1.0/users/{ADA}/memberOf/{cast}?$count=true"),
            )
            .await,
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert!(b["@odata.context"].as_str().unwrap().ends_with(tail), "{b}");
        let items = b["value"].as_array().unwrap();
        assert!(!items.is_empty());
        assert!(items.iter().all(|i| i.get("@odata.type").is_none()), "{b}");
    }
    let (_, b) = json_of(t.get(&token, &format!("/v1.0/users/{ADA}/memberOf")).await).await;
    assert!(
        b["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#directoryObjects")
    );
    assert!(
        b["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["@odata.type"].is_string())
    );
}

#[tokio::test]
async fn sign_ins_without_directory_read_all_look_like_a_licence_problem() {
    let t = start(tenant()).await;
    let token = t.app_token(AUDIT_ONLY).await;
    let (s, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_graph_error(
        s,
        &b,
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    );
}
