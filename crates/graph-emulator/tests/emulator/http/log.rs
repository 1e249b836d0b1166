//! The request log: what it records, and never a credential.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::support::{ADA, FULL, fixture, start, start_with};

#[tokio::test]
async fn request_log_records_shape_but_never_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let p2 = path.clone();
    let t = start_with(fixture(), move |c| c.request_log_path = Some(p2)).await;
    let token = t.app_token(FULL).await;
    t.get_eventual(&token, &format!("/v1.0/users/{ADA}/memberOf?$count=true"))
        .await;
    let log = t.emu.request_log();
    let entries = log.snapshot();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].family, "token");
    assert_eq!(entries[0].method, "POST");
    // What the token request asked for, never its secret.
    let asked = entries[0].token.as_ref().unwrap();
    assert_eq!(asked.grant_type.as_deref(), Some("client_credentials"));
    assert_eq!(asked.client_id.as_deref(), Some(FULL.0));
    assert_eq!(
        asked.scope.as_deref(),
        Some(format!("{}/.default", t.emu.base_url()).as_str())
    );
    assert_eq!(asked.client_auth, "client_secret_post");
    assert!(asked.username.is_none() && asked.assertion_header.is_none());
    assert!(entries[1].token.is_none());
    let e = &entries[1];
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, format!("/v1.0/users/{ADA}/memberOf"));
    assert_eq!(e.query.as_deref(), Some("$count=true"));
    assert!(e.authorization);
    assert_eq!(e.consistency_level.as_deref(), Some("eventual"));
    assert_eq!(e.status, 200);
    let file = std::fs::read_to_string(&path).unwrap();
    assert_eq!(file.lines().count(), 2);
    for line in file.lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
    assert!(!file.contains(&token) && !file.contains(FULL.1));
    log.clear();
    assert!(log.is_empty());
}

#[tokio::test]
async fn request_log_tells_how_a_token_request_authenticated() {
    let t = start(fixture()).await;
    let scope = "https://graph.microsoft.com/.default";
    t.http
        .post(t.emu.token_url())
        .basic_auth(FULL.0, Some(FULL.1))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    let (s, _) = t
        .token_request(&[
            ("grant_type", "password"),
            ("client_id", FULL.0),
            ("client_secret", FULL.1),
            ("scope", "User.Read.All offline_access"),
            ("username", "ada.lovelace@fabrikam.example"),
            ("password", "correct horse"),
        ])
        .await;
    assert_eq!(s, 200);
    let jwt = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","x5t#S256":"abc"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"iss":"x","jti":"1"}"#)
    );
    t.token_request(&[
        ("grant_type", "client_credentials"),
        ("client_id", FULL.0),
        ("scope", scope),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &jwt),
    ])
    .await;
    // A secret both in the body and as Basic: both are named.
    t.http
        .post(t.emu.token_url())
        .basic_auth(FULL.0, Some(FULL.1))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", FULL.1),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    let tokens = t.emu.request_log().family("token");
    let asked: Vec<_> = tokens.iter().map(|e| e.token.clone().unwrap()).collect();
    assert_eq!(
        asked[3].client_auth,
        "client_secret_post,client_secret_basic"
    );
    assert_eq!(asked[0].client_auth, "client_secret_basic");
    assert_eq!(asked[0].client_id.as_deref(), Some(FULL.0));
    assert_eq!(asked[1].client_auth, "client_secret_post");
    assert_eq!(asked[1].grant_type.as_deref(), Some("password"));
    assert_eq!(
        asked[1].username.as_deref(),
        Some("ada.lovelace@fabrikam.example")
    );
    assert_eq!(
        asked[1].scope.as_deref(),
        Some("User.Read.All offline_access")
    );
    assert_eq!(asked[2].client_auth, "private_key_jwt");
    assert_eq!(
        asked[2].assertion_header.as_ref().unwrap()["x5t#S256"],
        "abc"
    );
    assert_eq!(asked[2].assertion_claims.as_ref().unwrap()["jti"], "1");
    let logged = serde_json::to_string(&tokens).unwrap();
    assert!(
        !logged.contains(FULL.1) && !logged.contains("correct horse") && !logged.contains("c2ln")
    );
}
