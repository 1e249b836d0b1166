//! Users and `/me`: properties, `$select`, addressing, `$filter`, PATCH rules,
//! listing and paging.

use std::collections::HashSet;

use graph_emulator::{self as emulator, AppRegistration};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    ADA, FULL, GRACE, HELPDESK, READER, assert_graph_error, fixture, json_of, small_generated,
    start,
};

#[tokio::test]
async fn get_user_default_properties_select_and_addressing() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, &format!("/v1.0/users/{ADA}")).await).await;
    assert_eq!(s, 200, "{b}");
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "@odata.context",
            "businessPhones",
            "displayName",
            "givenName",
            "id",
            "jobTitle",
            "mail",
            "mobilePhone",
            "officeLocation",
            "preferredLanguage",
            "surname",
            "userPrincipalName"
        ]
    );
    let (s, b) = json_of(
        t.get(
            &token,
            "/v1.0/users/ADA.LOVELACE@fabrikam.example?$select=id,department,employeeId",
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["department"], "Research");
    assert_eq!(b["employeeId"], "F0001");
    assert!(b.get("displayName").is_none());
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{ADA}?$select=id,shoeSize"))
            .await,
    )
    .await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{}", Uuid::new_v4()))
            .await,
    )
    .await;
    assert_graph_error(s, &b, 404, "Request_ResourceNotFound");

    // A UPN starting with '$' only works in the users('...') form.
    let (s, b) = json_of(
        t.get(&token, "/v1.0/users('$admin@fabrikam.example')?$select=id")
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id"], "33333333-3333-4333-8333-333333333333");
    let (s, _) = json_of(t.get(&token, "/v1.0/users/$admin@fabrikam.example").await).await;
    assert_eq!(s, 400);
    // beta behaves the same.
    let (s, _) = json_of(t.get(&token, &format!("/beta/users/{ADA}")).await).await;
    assert_eq!(s, 200);

    let reader = t.app_token(READER).await;
    let (s, _) = json_of(t.get(&reader, &format!("/v1.0/users/{ADA}")).await).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn upn_in_filter_with_escaped_quotes_and_the_15_cap() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let filter = "userPrincipalName in ('sean.o''brien@fabrikam.example','ADA.LOVELACE@fabrikam.example','nobody@fabrikam.example')";
    let r = t
        .http
        .get(t.url("/v1.0/users"))
        .bearer_auth(&token)
        .query(&[("$filter", filter), ("$select", "id,userPrincipalName")])
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    assert_eq!(s, 200, "{b}");
    let got: HashSet<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        HashSet::from(["22222222-2222-4222-8222-222222222222", ADA])
    );
    assert_eq!(b["value"][0].as_object().unwrap().len(), 2);

    let many: Vec<String> = (0..16)
        .map(|i| format!("'u{i}@fabrikam.example'"))
        .collect();
    let filter = format!("userPrincipalName in ({})", many.join(","));
    let r = t
        .http
        .get(t.url("/v1.0/users"))
        .bearer_auth(&token)
        .query(&[("$filter", filter.as_str())])
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 400, "Request_UnsupportedQuery");
    // An unescaped quote is a syntax error.
    let r = t
        .http
        .get(t.url("/v1.0/users"))
        .bearer_auth(&token)
        .query(&[(
            "$filter",
            "userPrincipalName in ('sean.o'brien@fabrikam.example')",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn patch_user_rules() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let patch = |token: String, body: Value| {
        let http = t.http.clone();
        let url = t.url(&format!("/v1.0/users/{ADA}"));
        async move {
            let r = http
                .patch(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, text)
        }
    };
    let (s, body) = patch(
        token.clone(),
        json!({"jobTitle": "Chief Analyst", "officeLocation": "Remote"}),
    )
    .await;
    assert_eq!(s, 204);
    assert!(body.is_empty(), "204 has an empty body");
    assert_eq!(
        t.emu.user(ADA).unwrap().job_title.as_deref(),
        Some("Chief Analyst")
    );
    let (_, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{ADA}?$select=jobTitle"))
            .await,
    )
    .await;
    assert_eq!(b["jobTitle"], "Chief Analyst");

    let (s, body) = patch(token.clone(), json!({"shoeSize": 42})).await;
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    for ro in ["id", "createdDateTime", "proxyAddresses"] {
        let (s, body) = patch(token.clone(), json!({ ro: "x" })).await;
        let b: Value = serde_json::from_str(&body).unwrap();
        assert_graph_error(s, &b, 400, "Request_BadRequest");
    }
    let pw = json!({"passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "N3w-Passw0rd!"}});
    let (s, body) = patch(token.clone(), pw.clone()).await;
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    // Ada holds a directory role: User Administrator is not enough for her password
    // (the role rules are in fidelity.rs).
    let helpdesk = t.app_token(HELPDESK).await;
    let (s, _) = patch(helpdesk, pw).await;
    assert_eq!(s, 403);
    let (s, body) = patch(token.clone(), json!({"aboutMe": "hi"})).await;
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    let (s, body) = patch(token.clone(), json!({"accountEnabled": "yes"})).await;
    assert_eq!(s, 400, "{body}");
    let reader = t.app_token(READER).await;
    let (s, _) = patch(reader, json!({"jobTitle": "x"})).await;
    assert_eq!(s, 403);
    // Nothing of the refused requests stuck.
    assert_eq!(
        t.emu.user(ADA).unwrap().job_title.as_deref(),
        Some("Chief Analyst")
    );
}

#[tokio::test]
async fn photo_metadata_bytes_and_image_not_found() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, &format!("/v1.0/users/{ADA}/photo")).await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["@odata.mediaEtag"], "\"ada-photo-1\"");
    assert_eq!(b["width"], 96);
    let r = t
        .get(&token, &format!("/v1.0/users/{ADA}/photo/$value"))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert!(r.headers().contains_key("etag"));
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..3], &[0xff, 0xd8, 0xff]);
    let r = t
        .get(&token, &format!("/v1.0/users/{ADA}/photos/48x48/$value"))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{ADA}/photos/648x648/$value"))
            .await,
    )
    .await;
    // A size Ada lacks: her "no photo" shape (one of four, fixed per user).
    let ada_code = graph_emulator::no_photo_answer(ADA.parse().unwrap()).0;
    assert_graph_error(s, &b, 404, ada_code);
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{GRACE}/photo/$value"))
            .await,
    )
    .await;
    assert_graph_error(s, &b, 404, "ImageNotFound");
}

#[tokio::test]
async fn me_is_the_signed_in_user_and_only_for_delegated_tokens() {
    const PRESENCE_ONLY: (&str, &str) = ("0f000000-0000-4000-8000-00000000000f", "presence-secret");
    let mut tenant = fixture();
    tenant.apps.push(AppRegistration {
        client_id: PRESENCE_ONLY.0.parse().unwrap(),
        display_name: "presence only".into(),
        client_secret: Some(PRESENCE_ONLY.1.into()),
        client_secret_expired: false,
        certificate: None,
        public_client: false,
        permissions: vec!["Presence.Read.All".into()],
        directory_roles: Vec::new(),
    });
    let t = start(tenant).await;
    // App-only: Graph's 400, whatever the app's permissions.
    let app = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&app, "/v1.0/me?$select=id").await).await;
    assert_graph_error(s, &b, 400, "BadRequest");
    assert_eq!(
        b["error"]["message"],
        "/me request is only valid with delegated authentication flow."
    );

    let delegated = |app: (&'static str, &'static str), upn: &'static str| {
        let http = t.http.clone();
        let url = t.emu.token_url();
        let rt = t
            .emu
            .mint_refresh_token(upn, app.0.parse().unwrap())
            .unwrap();
        async move {
            let (s, b) = json_of(
                http.post(url)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", app.0),
                        ("client_secret", app.1),
                        ("refresh_token", rt.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, 200, "{b}");
            b["access_token"].as_str().unwrap().to_string()
        }
    };
    let ada = delegated(FULL, "ada.lovelace@fabrikam.example").await;
    let (s, b) = json_of(t.get(&ada, "/v1.0/me?$select=id,displayName").await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id"], ADA);
    assert_eq!(b["displayName"], "Ada Lovelace");
    assert!(b.get("mail").is_none(), "only what $select names: {b}");
    assert!(
        b["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#users(id,displayName)/$entity"),
        "{b}"
    );
    // Without $select: the default properties, as /users/{id} gives them.
    let (s, me) = json_of(t.get(&ada, "/v1.0/me").await).await;
    assert_eq!(s, 200);
    let (_, by_id) = json_of(t.get(&app, &format!("/v1.0/users/{ADA}")).await).await;
    assert_eq!(me, by_id);
    let (s, b) = json_of(t.get(&ada, "/v1.0/me?$select=nope").await).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let (s, b) = json_of(t.get(&ada, "/v1.0/me?$top=1").await).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");

    // Another signed-in user is themselves.
    let grace = delegated(FULL, "grace.hopper@fabrikam.example").await;
    let (_, b) = json_of(t.get(&grace, "/v1.0/me?$select=id").await).await;
    assert_eq!(b["id"], GRACE);
    let helpdesk = delegated(HELPDESK, "ada.lovelace@fabrikam.example").await;
    let (s, _) = json_of(t.get(&helpdesk, "/v1.0/me?$select=id").await).await;
    assert_eq!(s, 200, "User.ReadWrite.All includes reading oneself");
    let no_user_read = delegated(PRESENCE_ONLY, "ada.lovelace@fabrikam.example").await;
    let (s, b) = json_of(t.get(&no_user_read, "/v1.0/me?$select=id").await).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
    let r = t
        .http
        .patch(t.url("/v1.0/me"))
        .bearer_auth(&ada)
        .json(&json!({"jobTitle": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let me_entries: Vec<_> = t
        .emu
        .request_log()
        .snapshot()
        .into_iter()
        .filter(|e| e.path == "/v1.0/me")
        .collect();
    assert!(me_entries.iter().all(|e| e.family == "users"));
}

#[tokio::test]
async fn listing_users_pages_and_counts() {
    let t = start(small_generated()).await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let mut next = Some(t.url("/v1.0/users?$top=7&$select=id"));
    let mut ids = HashSet::new();
    while let Some(url) = next.take() {
        let (s, b) = json_of(t.http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(s, 200, "{b}");
        for u in b["value"].as_array().unwrap() {
            assert!(ids.insert(u["id"].as_str().unwrap().to_string()));
        }
        next = b["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(ids.len(), 50);
    let (s, b) = json_of(t.get(&token, "/v1.0/users?$count=true&$top=1").await).await;
    assert_graph_error(s, &b, 400, "Request_UnsupportedQuery");
    let (s, b) = json_of(
        t.get_eventual(&token, "/v1.0/users?$count=true&$top=1")
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["@odata.count"], 50);
    let (s, b) = json_of(t.get(&token, "/v1.0/users?$top=1000").await).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let (s, b) = json_of(t.get(&token, "/v1.0/users?$expand=manager").await).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
}
