//! The Entra ID token endpoint: grants, AADSTS errors, refresh token rotation,
//! client assertions, and connector assets.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use graph_emulator::{AppCertificate, AppRegistration};
use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{FULL, assert_aadsts, fixture, json_of, jwt_claims, small_generated, start};

#[tokio::test]
async fn client_credentials_success_shape_and_claims() {
    let t = start(fixture()).await;
    let scope = "https://graph.microsoft.com/.default";
    let (status, body) = t
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", FULL.0),
            ("client_secret", FULL.1),
            ("scope", scope),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_u64() && body["ext_expires_in"].is_u64());
    assert!(body.get("refresh_token").is_none());
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["tid"], "0f0e0d0c-0b0a-4900-8800-000000000001");
    assert_eq!(claims["appid"], FULL.0);
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("Presence.Read.All"))
    );
    assert!(claims["exp"].as_i64().unwrap() > Timestamp::now().as_second());

    // HTTP Basic instead of the body secret; domain name instead of tenant id.
    let r = t
        .http
        .post(t.url("/fabrikam.example/oauth2/v2.0/token"))
        .basic_auth(FULL.0, Some(FULL.1))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(t.emu.token_requests(), 2);
}

#[tokio::test]
async fn token_errors_carry_the_right_aadsts_codes() {
    let t = start(fixture()).await;
    let scope = format!("{}/.default", t.emu.base_url());
    let cc = |id: &'static str, secret: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ]
    };
    let with_scope = |mut v: Vec<(&'static str, &'static str)>, s: &'static str| {
        v.push(("scope", s));
        v
    };
    let scope: &'static str = Box::leak(scope.into_boxed_str());
    let (s, b) = t
        .token_request(&with_scope(cc(FULL.0, "wrong"), scope))
        .await;
    assert_aadsts(s, &b, 401, "invalid_client", 7000215);
    let (s, b) = t
        .token_request(&with_scope(
            cc("0d000000-0000-4000-8000-00000000000d", "old-secret"),
            scope,
        ))
        .await;
    assert_aadsts(s, &b, 401, "invalid_client", 7000222);
    let (s, b) = t
        .token_request(&with_scope(
            cc("99999999-0000-4000-8000-000000000000", "x"),
            scope,
        ))
        .await;
    assert_aadsts(s, &b, 400, "unauthorized_client", 700016);
    let (s, b) = t
        .token_request(&with_scope(
            cc(FULL.0, FULL.1),
            "https://example.com/.default",
        ))
        .await;
    assert_aadsts(s, &b, 400, "invalid_scope", 70011);
    let (s, b) = t
        .token_request(&with_scope(
            cc(FULL.0, FULL.1),
            "https://graph.microsoft.com/User.Read.All",
        ))
        .await;
    assert_aadsts(s, &b, 400, "invalid_scope", 1002012);
    let (s, b) = t
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", FULL.0),
            ("scope", scope),
        ])
        .await;
    assert_aadsts(s, &b, 401, "invalid_client", 7000218);
    let (s, b) = t.token_request(&[("client_id", FULL.0)]).await;
    assert_aadsts(s, &b, 400, "invalid_request", 900144);
    let (s, b) = t
        .token_request(&[("grant_type", "device_code"), ("client_id", FULL.0)])
        .await;
    assert_aadsts(s, &b, 400, "unsupported_grant_type", 70003);

    let r = t
        .http
        .post(t.url("/00000000-dead-4000-8000-000000000000/oauth2/v2.0/token"))
        .form(&with_scope(cc(FULL.0, FULL.1), scope))
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    assert_aadsts(s, &b, 400, "invalid_request", 90002);
}

#[tokio::test]
async fn password_grant_rules() {
    let t = start(fixture()).await;
    let base = t.emu.base_url();
    let scope = format!("{base}/.default offline_access");
    let ropc = |user: &str, pw: &str| {
        vec![
            ("grant_type".to_string(), "password".to_string()),
            ("client_id".into(), FULL.0.into()),
            ("client_secret".into(), FULL.1.into()),
            ("scope".into(), scope.clone()),
            ("username".into(), user.into()),
            ("password".into(), pw.into()),
        ]
    };
    let send = |form: Vec<(String, String)>, url: String| {
        let http = t.http.clone();
        async move { json_of(http.post(url).form(&form).send().await.unwrap()).await }
    };
    let url = t.emu.token_url();
    let (s, b) = send(
        ropc("Ada.Lovelace@fabrikam.example", "correct horse"),
        url.clone(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["refresh_token"].is_string() && b["scope"].is_string(),
        "{b}"
    );
    let claims = jwt_claims(b["access_token"].as_str().unwrap());
    assert_eq!(claims["upn"], "ada.lovelace@fabrikam.example");
    assert!(claims["scp"].as_str().unwrap().contains("User.Read.All"));

    let (s, b) = send(ropc("ada.lovelace@fabrikam.example", "wrong"), url.clone()).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 50126);
    let (s, b) = send(ropc("nobody@fabrikam.example", "x"), url.clone()).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 50034);
    let (s, b) = send(
        ropc("grace.hopper@fabrikam.example", "battery staple"),
        url.clone(),
    )
    .await;
    assert_aadsts(s, &b, 400, "invalid_grant", 50076);
    let (s, b) = send(ropc("locked.out@fabrikam.example", "pw"), url.clone()).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 50053);
    let (s, b) = send(ropc("gone.away@fabrikam.example", "pw"), url.clone()).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 50057);
    let (s, b) = send(
        ropc("ada.lovelace@fabrikam.example", "correct horse"),
        format!("{base}/common/oauth2/v2.0/token"),
    )
    .await;
    assert_aadsts(s, &b, 400, "invalid_request", 9001023);
    // organizations is fine for ROPC; without offline_access there is no refresh token.
    let mut form = ropc("ada.lovelace@fabrikam.example", "correct horse");
    form[3].1 = format!("{base}/.default");
    let (s, b) = send(form, format!("{base}/organizations/oauth2/v2.0/token")).await;
    assert_eq!(s, 200, "{b}");
    assert!(b.get("refresh_token").is_none(), "{b}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_the_old_one_stays_valid() {
    let t = start(fixture()).await;
    let asset = t.emu.asset_json("refresh_token").unwrap();
    let first = asset["refresh_token"].as_str().unwrap().to_string();
    let redeem = |rt: String| {
        let http = t.http.clone();
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            asset["login_url"].as_str().unwrap(),
            asset["tenant_id"].as_str().unwrap()
        );
        async move {
            json_of(
                http.post(url)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", FULL.0),
                        ("client_secret", FULL.1),
                        ("refresh_token", rt.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (s, b) = redeem(first.clone()).await;
    assert_eq!(s, 200, "{b}");
    let second = b["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    // Entra does not revoke a refresh token on use
    // (https://learn.microsoft.com/entra/identity-platform/refresh-tokens).
    let (s, b) = redeem(first.clone()).await;
    assert_eq!(s, 200, "a redeemed refresh token still works: {b}");
    assert_ne!(b["refresh_token"].as_str().unwrap(), second);
    let (s, b) = redeem(second).await;
    assert_eq!(s, 200, "{b}");
    let serials: Vec<_> = t
        .emu
        .request_log()
        .family("token")
        .iter()
        .map(|e| e.token.as_ref().unwrap().refresh_token_serial)
        .collect();
    assert_eq!(
        serials,
        [Some(1), Some(1), Some(2)],
        "the log names which one, by issue order"
    );
    let (s, b) = redeem("garbage".into()).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 9002313);
    // Inactive for more than 90 days.
    let third = b["refresh_token"].as_str().map(str::to_string);
    assert!(third.is_none());
    let fresh = t
        .emu
        .mint_refresh_token("ada.lovelace@fabrikam.example", FULL.0.parse().unwrap())
        .unwrap();
    t.emu.advance_clock(Duration::from_secs(91 * 24 * 3600));
    let (s, b) = redeem(fresh).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 700082);
}

#[tokio::test]
async fn single_use_refresh_tokens_when_asked() {
    let t = crate::support::start_with(fixture(), |c| c.refresh_token_reuse = false).await;
    let asset = t.emu.asset_json("refresh_token").unwrap();
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        asset["login_url"].as_str().unwrap(),
        asset["tenant_id"].as_str().unwrap()
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", FULL.0),
        ("client_secret", FULL.1),
        ("refresh_token", asset["refresh_token"].as_str().unwrap()),
    ];
    let (s, b) = json_of(t.http.post(&url).form(&form).send().await.unwrap()).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = json_of(t.http.post(&url).form(&form).send().await.unwrap()).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 70008);
}

/// Issue 11, item 1: Entra answers 404 on a path it does not serve, the token URL
/// with a trailing slash among them.
#[tokio::test]
async fn token_url_with_a_trailing_slash_is_not_found() {
    let t = start(fixture()).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", FULL.0),
        ("client_secret", FULL.1),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    for path in [
        "/0f0e0d0c-0b0a-4900-8800-000000000001/oauth2/v2.0/token/",
        "/0f0e0d0c-0b0a-4900-8800-000000000001/oauth2/token",
        "/nothing/here",
    ] {
        let r = t.http.post(t.url(path)).form(&form).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    assert_eq!(t.emu.token_requests(), 0);
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn client_assertion_is_verified() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let spki = key.public_key().as_der().unwrap();
    let client_id = "0e000000-0000-4000-8000-00000000000e";
    let thumb = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let mut tenant = fixture();
    tenant.apps.push(AppRegistration {
        client_id: client_id.parse().unwrap(),
        display_name: "cert app".into(),
        client_secret: None,
        client_secret_expired: false,
        certificate: Some(AppCertificate {
            thumbprint_sha256: Some(thumb.clone().into()),
            thumbprint_sha1: None,
            public_key_pem: pem(spki.as_ref()).into(),
        }),
        public_client: false,
        permissions: vec!["User.Read.All".into()],
        directory_roles: Vec::new(),
    });
    let t = start(tenant).await;
    let sign = |header: Value, claims: Value| {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    let now = Timestamp::now().as_second();
    let claims = |aud: String| json!({"aud": aud, "iss": client_id, "sub": client_id, "jti": Uuid::new_v4().to_string(), "nbf": now, "exp": now + 600});
    let header = |t: &str| json!({"alg": "RS256", "typ": "JWT", "x5t#S256": t});
    let try_assertion = |jwt: String| {
        let http = t.http.clone();
        let url = t.emu.token_url();
        let scope = format!("{}/.default", t.emu.base_url());
        async move {
            json_of(
                http.post(url)
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("scope", scope.as_str()),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", jwt.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (s, b) = try_assertion(sign(header(&thumb), claims(t.emu.token_url()))).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = try_assertion(sign(header("bm9wZQ"), claims(t.emu.token_url()))).await;
    assert_aadsts(s, &b, 401, "invalid_client", 700027);
    let (s, b) = try_assertion(sign(
        header(&thumb),
        claims("https://elsewhere/token".into()),
    ))
    .await;
    assert_aadsts(s, &b, 401, "invalid_client", 700023);
    let good = sign(header(&thumb), claims(t.emu.token_url()));
    let cut = good.len() - 20;
    let flipped = if &good[cut..cut + 1] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &good[..cut], &good[cut + 1..]);
    let (s, b) = try_assertion(tampered).await;
    assert_aadsts(s, &b, 401, "invalid_client", 700027);
}

#[tokio::test]
async fn assets_point_at_the_emulator_and_work() {
    let t = start(small_generated()).await;
    for kind in [
        "client_credentials",
        "oauth2_client_credentials",
        "password",
        "refresh_token",
    ] {
        let a = t.emu.asset_json(kind).unwrap();
        assert_eq!(a["type"], kind);
        assert_eq!(a["url"], t.emu.base_url());
        let token_url = match a.get("token_url") {
            Some(u) => u.as_str().unwrap().to_string(),
            None => format!(
                "{}/{}/oauth2/v2.0/token",
                a["login_url"].as_str().unwrap(),
                a["tenant_id"].as_str().unwrap()
            ),
        };
        let scope = format!("{}/.default", a["url"].as_str().unwrap());
        let mut form = vec![
            ("client_id", a["client_id"].as_str().unwrap().to_string()),
            (
                "client_secret",
                a["client_secret"].as_str().unwrap().to_string(),
            ),
        ];
        match kind {
            "password" => {
                form.push(("grant_type", "password".into()));
                form.push(("username", a["username"].as_str().unwrap().into()));
                form.push(("password", a["password"].as_str().unwrap().into()));
                form.push(("scope", format!("{scope} offline_access")));
            }
            "refresh_token" => {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", a["refresh_token"].as_str().unwrap().into()));
            }
            _ => {
                form.push(("grant_type", "client_credentials".into()));
                form.push(("scope", scope));
            }
        }
        let (s, b) = json_of(t.http.post(token_url).form(&form).send().await.unwrap()).await;
        assert_eq!(s, 200, "{kind}: {b}");
        let token = b["access_token"].as_str().unwrap();
        let (s, b) = json_of(t.get(token, "/v1.0/users?$top=1").await).await;
        assert_eq!(s, 200, "{kind}: {b}");
    }
    assert!(t.emu.asset_json("kerberos").is_err());
}

/// `tls`: HTTPS under a CA made at start, and the discovery documents Microsoft's
/// libraries read before a token: the OpenID configuration, its key set, instance
/// discovery; an unknown tenant is AADSTS90002.
#[tokio::test]
async fn tls_and_discovery_documents() {
    let t = crate::support::start_with(crate::support::fixture(), |c| c.tls = true).await;
    let base = t.emu.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = reqwest::Certificate::from_pem(t.emu.ca_pem().unwrap().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let tenant = t.emu.tenant_id();
    let (s, oidc) = get(format!(
        "{base}/{tenant}/v2.0/.well-known/openid-configuration"
    ))
    .await;
    assert_eq!(s, 200, "{oidc}");
    assert_eq!(oidc["token_endpoint"], t.emu.token_url());
    assert_eq!(oidc["issuer"], format!("{base}/{tenant}/v2.0"));
    let (s, keys) = get(oidc["jwks_uri"].as_str().unwrap().to_string()).await;
    assert_eq!((s, keys), (200, serde_json::json!({"keys": []})));
    let authorize = format!("{base}/{tenant}/oauth2/v2.0/authorize");
    let (s, instance) = get(format!(
        "{base}/common/discovery/instance?api-version=1.0&authorization_endpoint={authorize}"
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        instance["tenant_discovery_endpoint"],
        format!("{base}/{tenant}/v2.0/.well-known/openid-configuration")
    );
    let (s, b) = get(format!(
        "{base}/nosuchtenant/v2.0/.well-known/openid-configuration"
    ))
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error_codes"][0], 90002);
    // Without the CA, no client gets through.
    assert!(reqwest::Client::new().get(&base).send().await.is_err());
}
