//! The emulator over real HTTP on 127.0.0.1: each strictness rule fails the
//! request it should, the way Graph and Entra ID do.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use graph_emulator::{
    self as emulator, AppCertificate, AppRegistration, EmulatorConfig, EmulatorError, Family,
    FaultKind, FaultPlan, GenerateSpec, RateLimit, RunningEmulator, Tenant, ThrottleConfig,
};
use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;

const FULL: (&str, &str) = ("0a000000-0000-4000-8000-00000000000a", "full-secret");
const READER: (&str, &str) = ("0b000000-0000-4000-8000-00000000000b", "reader-secret");
const HELPDESK: (&str, &str) = ("0c000000-0000-4000-8000-00000000000c", "helpdesk-secret");
const ADA: &str = "11111111-1111-4111-8111-111111111111";
const GRACE: &str = "44444444-4444-4444-8444-444444444444";

fn fixture() -> Tenant {
    Tenant::load(format!(
        "{}/tests/fixtures/tenant.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn small_generated() -> Tenant {
    Tenant::generate(&GenerateSpec {
        users: 50,
        sign_ins: 2500,
        seed: 11,
        day: None,
    })
}

struct T {
    emu: RunningEmulator,
    http: reqwest::Client,
}

async fn start_with(tenant: Tenant, tweak: impl FnOnce(&mut EmulatorConfig)) -> T {
    let mut config = EmulatorConfig::new(tenant);
    config.throttle = ThrottleConfig::off();
    tweak(&mut config);
    let emu = emulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    T {
        emu,
        http: reqwest::Client::new(),
    }
}

async fn start(tenant: Tenant) -> T {
    start_with(tenant, |_| {}).await
}

impl T {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.emu.base_url(), path)
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.emu.token_url())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn app_token(&self, (id, secret): (&str, &str)) -> String {
        let scope = format!("{}/.default", self.emu.base_url());
        let (status, body) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", &scope),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn get_eventual(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .header("ConsistencyLevel", "eventual")
            .send()
            .await
            .unwrap()
    }
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_graph_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let inner = &body["error"]["innerError"];
    assert!(
        inner["request-id"].is_string()
            && inner["date"].is_string()
            && inner["client-request-id"].is_string(),
        "{body}"
    );
}

fn assert_aadsts(status: u16, body: &Value, want_status: u16, error: &str, code: u64) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
    assert!(
        d.contains("\r\nTrace ID: ")
            && d.contains("\r\nCorrelation ID: ")
            && d.contains("\r\nTimestamp: "),
        "{d}"
    );
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[k].is_string(), "{k} missing in {body}");
    }
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

// ------------------------------------------------------------------ token endpoint

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
async fn refresh_tokens_rotate_and_the_old_one_dies() {
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
    let (s, b) = redeem(first).await;
    assert_aadsts(s, &b, 400, "invalid_grant", 70008);
    let (s, b) = redeem(second).await;
    assert_eq!(s, 200, "{b}");
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

// ------------------------------------------------------------------ auth on Graph

#[tokio::test]
async fn graph_rejects_missing_expired_and_early_expired_tokens() {
    let t = start(fixture()).await;
    let r = t
        .http
        .get(t.url("/v1.0/organization"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("request-id"));
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");

    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, "/v1.0/organization").await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["id"], "0f0e0d0c-0b0a-4900-8800-000000000001");

    t.emu.advance_clock(Duration::from_secs(3600));
    let (s, b) = json_of(t.get(&token, "/v1.0/organization").await).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");
    assert_eq!(
        b["error"]["message"],
        "Access token has expired or is not yet valid."
    );

    t.emu.use_real_clock();
    t.emu
        .set_faults(FaultPlan::parse("token:expire_after=0").unwrap());
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, "/v1.0/organization").await).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");

    // A token of another emulator instance is not accepted.
    t.emu.set_faults(FaultPlan::none());
    let other = start(fixture()).await;
    let foreign = other.app_token(FULL).await;
    let (s, b) = json_of(t.get(&foreign, "/v1.0/organization").await).await;
    assert_graph_error(s, &b, 401, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn request_ids_are_echoed_and_unknown_routes_fail_loudly() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let r = t
        .http
        .get(t.url("/v1.0/users/nobody@fabrikam.example"))
        .bearer_auth(&token)
        .header("client-request-id", "7c1f6a3e-0000-4000-8000-000000000001")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["client-request-id"],
        "7c1f6a3e-0000-4000-8000-000000000001"
    );
    let rid = r.headers()["request-id"].to_str().unwrap().to_string();
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 404, "Request_ResourceNotFound");
    assert_eq!(b["error"]["innerError"]["request-id"], rid);
    assert_eq!(
        b["error"]["innerError"]["client-request-id"],
        "7c1f6a3e-0000-4000-8000-000000000001"
    );

    let (s, b) = json_of(t.get(&token, "/v1.0/groups/whatever").await).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = json_of(t.get(&token, "/v2.0/users").await).await;
    assert_eq!(s, 400);
    let log = t.emu.request_log().snapshot();
    assert!(
        log.iter()
            .any(|e| e.path == "/v2.0/users" && e.family == "unknown")
    );
}

// ------------------------------------------------------------------ presence

#[tokio::test]
async fn presence_single_and_bulk_with_the_650_cap() {
    let t = start(small_generated()).await;
    let tenant = small_generated();
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let id = tenant.users[5].id.to_string();
    let (s, b) = json_of(t.get(&token, &format!("/v1.0/users/{id}/presence")).await).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id"], id);
    assert!(b["availability"].is_string() && b["activity"].is_string());
    assert!(b["outOfOfficeSettings"]["isOutOfOffice"].is_boolean());

    let bulk = |ids: Vec<String>| {
        let http = t.http.clone();
        let url = t.url("/v1.0/communications/getPresencesByUserId");
        let token = token.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"ids": ids}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let mut ids: Vec<String> = tenant.users.iter().map(|u| u.id.to_string()).collect();
    let unknown: Vec<String> = (0..600).map(|_| Uuid::new_v4().to_string()).collect();
    ids.extend(unknown);
    assert_eq!(ids.len(), 650);
    let (s, body) = bulk(ids.clone()).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        50,
        "unknown ids are left out"
    );
    ids.push(Uuid::new_v4().to_string());
    let (s, body) = bulk(ids).await;
    assert_eq!(s, 400);
    assert!(body.is_empty(), "a bare 400: {body}");

    let reader = t
        .app_token((emulator::READ_APP_CLIENT_ID, emulator::READ_APP_SECRET))
        .await;
    let (s, b) = json_of(t.get(&reader, &format!("/v1.0/users/{id}/presence")).await).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
}

// ------------------------------------------------------------------ users

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
    let helpdesk = t.app_token(HELPDESK).await;
    let (s, _) = patch(helpdesk, pw).await;
    assert_eq!(s, 204);
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
    assert_graph_error(s, &b, 404, "ImageNotFound");
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{GRACE}/photo/$value"))
            .await,
    )
    .await;
    assert_graph_error(s, &b, 404, "ImageNotFound");
}

// ------------------------------------------------------------------ memberOf

#[tokio::test]
async fn member_of_pages_through_everything_without_loss_or_duplicates() {
    let tenant = small_generated();
    let megan = tenant.users[0].id;
    let expected =
        tenant.groups.len() + tenant.directory_roles.len() + tenant.administrative_units.len();
    let t = start(tenant).await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let mut next = Some(t.url(&format!("/v1.0/users/{megan}/memberOf?$top=5")));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        let r = t.http.get(&url).bearer_auth(&token).send().await.unwrap();
        let (s, b) = json_of(r).await;
        assert_eq!(s, 200, "{b}");
        pages += 1;
        for item in b["value"].as_array().unwrap() {
            assert!(
                item["@odata.type"]
                    .as_str()
                    .unwrap()
                    .starts_with("#microsoft.graph.")
            );
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        next = b["@odata.nextLink"].as_str().map(str::to_string);
        if let Some(n) = &next {
            assert!(n.contains("$skiptoken="), "{n}");
        }
    }
    assert_eq!(seen.len(), expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), expected);
    assert_eq!(pages, expected.div_ceil(5));

    // Default page size 100: all of them in one page.
    let (_, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf"))
            .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), expected);
    assert!(b.get("@odata.nextLink").is_none());
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf?$top=1000"))
            .await,
    )
    .await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let (s, _) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf?$top=999"))
            .await,
    )
    .await;
    assert_eq!(s, 200);

    // A forged or edited skiptoken is refused.
    let (_, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf?$top=5"))
            .await,
    )
    .await;
    let link = b["@odata.nextLink"].as_str().unwrap();
    let tampered = link.replace("$skiptoken=", "$skiptoken=A");
    let r = t
        .http
        .get(&tampered)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let changed_top = link.replace("$top=5", "$top=6");
    let r = t
        .http
        .get(&changed_top)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "a token is bound to its query");
}

#[tokio::test]
async fn member_of_advanced_queries_need_consistency_level_and_count() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let base = format!("/v1.0/users/{ADA}/memberOf");
    for q in [
        "?$filter=startswith(displayName,'Tier')",
        "?$search=\"displayName:tier\"",
        "?$orderby=displayName",
        "?$count=true",
        "/microsoft.graph.group",
    ] {
        let (s, b) = json_of(t.get(&token, &format!("{base}{q}")).await).await;
        assert_graph_error(s, &b, 400, "Request_UnsupportedQuery");
        // The header alone is not enough (except for $count=true itself).
        if q != "?$count=true" {
            let (s, b) = json_of(t.get_eventual(&token, &format!("{base}{q}")).await).await;
            assert_graph_error(s, &b, 400, "Request_UnsupportedQuery");
        }
    }
    let sep = |q: &str| if q.contains('?') { "&" } else { "?" };
    let q = "?$filter=startswith(displayName,'Tier')";
    let (s, b) = json_of(
        t.get_eventual(&token, &format!("{base}{q}{}$count=true", sep(q)))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["@odata.count"], 2);
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}?$search=\"displayName:research\"&$count=true"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["displayName"], "Research");
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}?$search=displayName:research&$count=true"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "unquoted $search: {b}");
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}/microsoft.graph.directoryRole?$count=true"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        b["value"][0]["@odata.type"],
        "#microsoft.graph.directoryRole"
    );
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}?$orderby=displayName desc&$count=true&$select=displayName"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["displayName"], "Vienna staff");
    assert_eq!(b["value"][0].as_object().unwrap().len(), 2);

    let reader = t.app_token(READER).await;
    let (s, b) = json_of(t.get(&reader, &base).await).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
}

// ------------------------------------------------------------------ sign-ins

#[tokio::test]
async fn sign_ins_newest_first_filters_top_and_permissions() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(s, 200, "{b}");
    let ids: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "5170a000-0000-4000-8000-000000000004",
            "5170a000-0000-4000-8000-000000000003",
            "5170a000-0000-4000-8000-000000000002",
            "5170a000-0000-4000-8000-000000000001",
        ]
    );
    let rec = &b["value"][1];
    assert_eq!(rec["userPrincipalName"], "grace.hopper@fabrikam.example");
    assert_eq!(rec["status"]["errorCode"], 50126);
    for k in [
        "correlationId",
        "deviceDetail",
        "location",
        "riskEventTypes_v2",
        "appliedConditionalAccessPolicies",
        "conditionalAccessStatus",
    ] {
        assert!(rec.get(k).is_some(), "{k}");
    }
    let one = serde_json::to_string(&b["value"][0]).unwrap();
    assert!(
        (700..1400).contains(&one.len()),
        "record size {}: {one}",
        one.len()
    );

    let q = |f: &str| format!("/v1.0/auditLogs/signIns?$filter={}", url_encode(f));
    let (_, b) = json_of(t.get(&token, &q("createdDateTime ge 2025-06-02T08:05:00Z and createdDateTime lt 2025-06-02T08:20:00Z")).await).await;
    let ids: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "5170a000-0000-4000-8000-000000000003",
            "5170a000-0000-4000-8000-000000000002"
        ]
    );
    let (_, b) = json_of(
        t.get(
            &token,
            &q("createdDateTime gt 2025-06-02T08:00:00Z and status/errorCode ne 0"),
        )
        .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), 1);
    let (_, b) = json_of(
        t.get(
            &token,
            &q("userPrincipalName eq 'Ada.Lovelace@fabrikam.example'"),
        )
        .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), 2);
    for bad in [
        "createdDateTime ge '2025-06-02T08:00:00Z'",
        "createdDateTime ge 2025-06-02T08:00:00Z or createdDateTime le 2025-06-02T09:00:00Z",
        "deviceDetail/browser eq 'Edge'",
        "createdDateTime ne 2025-06-02T08:00:00Z",
    ] {
        let (s, b) = json_of(t.get(&token, &q(bad)).await).await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
    let (_, b) = json_of(
        t.get(
            &token,
            &q("startswith(userPrincipalName,'SEAN.') and isInteractive eq true"),
        )
        .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), 1);
    let (s, b) = json_of(
        t.get(&token, "/v1.0/auditLogs/signIns?$select=id,createdDateTime,ipAddress,userPrincipalName,status&$top=2")
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0].as_object().unwrap().len(), 5);
    assert!(b["@odata.nextLink"].as_str().unwrap().contains("select"));
    let (s, _) = json_of(
        t.get(&token, "/v1.0/auditLogs/signIns?$select=id,shoeSize")
            .await,
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns?$top=1001").await).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let reader = t.app_token(READER).await;
    let (s, b) = json_of(t.get(&reader, "/v1.0/auditLogs/signIns").await).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");

    let mut tenant = fixture();
    tenant.premium = false;
    let basic = start(tenant).await;
    let token = basic.app_token(FULL).await;
    let (s, b) = json_of(basic.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_graph_error(
        s,
        &b,
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    );
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn late_sign_ins_appear_with_the_virtual_clock() {
    let t = start(fixture()).await;
    t.emu.set_clock("2025-06-02T08:30:00Z".parse().unwrap());
    let token = t.app_token(FULL).await;
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    let ids: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(&"5170a000-0000-4000-8000-000000000004"));
    t.emu.advance_clock(Duration::from_secs(15 * 60));
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(b["value"][0]["id"], "5170a000-0000-4000-8000-000000000004");

    // Records added at runtime obey visible_at too.
    let mut late = fixture().sign_ins[0].clone();
    late.id = Uuid::new_v4();
    late.created_date_time = "2025-06-02T08:40:00Z".parse().unwrap();
    late.visible_at = Some("2025-06-02T09:00:00Z".parse().unwrap());
    t.emu.add_sign_ins(vec![late.clone()]);
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(b["value"].as_array().unwrap().len(), 4);
    t.emu.advance_clock(Duration::from_secs(15 * 60));
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(b["value"][0]["id"], late.id.to_string());
}

#[tokio::test]
async fn sign_in_paging_is_complete_and_a_stable_snapshot() {
    let tenant = small_generated();
    let records = tenant.sign_ins.clone();
    let t = start(tenant).await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;

    // Real clock: every generated record (2025) is visible; three full pages.
    let mut next = Some(t.url("/v1.0/auditLogs/signIns"));
    let mut got = Vec::new();
    while let Some(url) = next.take() {
        let (s, b) = json_of(t.http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(s, 200, "{b}");
        for v in b["value"].as_array().unwrap() {
            got.push((
                v["createdDateTime"]
                    .as_str()
                    .unwrap()
                    .parse::<Timestamp>()
                    .unwrap(),
                v["id"].as_str().unwrap().to_string(),
            ));
        }
        next = b["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(got.len(), records.len());
    assert_eq!(
        got.iter().map(|g| &g.1).collect::<HashSet<_>>().len(),
        records.len()
    );
    assert!(got.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    // Mid-day: the sequence is the snapshot at the first page, even as the clock moves.
    let t0: Timestamp = "2025-06-02T10:00:00Z".parse().unwrap();
    t.emu.set_clock(t0);
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let mut next = Some(t.url("/v1.0/auditLogs/signIns?$top=50"));
    let mut got = HashSet::new();
    while let Some(url) = next.take() {
        let (s, b) = json_of(t.http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(s, 200, "{b}");
        for v in b["value"].as_array().unwrap() {
            assert!(
                got.insert(v["id"].as_str().unwrap().to_string()),
                "duplicate"
            );
        }
        next = b["@odata.nextLink"].as_str().map(str::to_string);
        t.emu.advance_clock(Duration::from_secs(120));
    }
    let want: HashSet<String> = records
        .iter()
        .filter(|s| s.visible_at() <= t0)
        .map(|s| s.id.to_string())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

// ------------------------------------------------------------------ throttling and faults

#[tokio::test]
async fn throttling_answers_429_with_fractional_retry_after_and_headers() {
    let t = start(fixture()).await;
    // The windows run on the emulator's clock: frozen here, so the wait is exact
    // however fast or slow the machine is.
    t.emu.set_clock(t.emu.now());
    let token = t.app_token(FULL).await;
    t.emu.set_throttle(ThrottleConfig {
        audit_logs: Some(RateLimit {
            requests: 2,
            per: Duration::from_secs(10),
        }),
        ..ThrottleConfig::off()
    });
    for step in [2_500, 1_125] {
        assert_eq!(
            t.get(&token, "/v1.0/auditLogs/signIns")
                .await
                .status()
                .as_u16(),
            200
        );
        t.emu.advance_clock(Duration::from_millis(step));
    }
    // The oldest request is 3.625 s old: 6.375 s are left of its 10 s window.
    let r = t.get(&token, "/v1.0/auditLogs/signIns").await;
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "6.375");
    for h in [
        "x-ms-throttle-limit-percentage",
        "x-ms-throttle-scope",
        "x-ms-throttle-information",
        "x-ms-resource-unit",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 429, "TooManyRequests");
    // Other families are not affected.
    assert_eq!(
        t.get(&token, &format!("/v1.0/users/{ADA}"))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        t.emu
            .request_log()
            .family("signins")
            .last()
            .unwrap()
            .fault
            .as_deref(),
        Some("throttled")
    );
    // Once the clock has moved by the wait it was told, the request is admitted.
    t.emu.advance_clock(Duration::from_millis(6_374));
    assert_eq!(
        t.get(&token, "/v1.0/auditLogs/signIns")
            .await
            .status()
            .as_u16(),
        429
    );
    t.emu.advance_clock(Duration::from_millis(1));
    assert_eq!(
        t.get(&token, "/v1.0/auditLogs/signIns")
            .await
            .status()
            .as_u16(),
        200
    );

    // Published defaults: 5 audit requests per 10 s.
    t.emu.set_throttle(ThrottleConfig::published());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            t.get(&token, "/v1.0/auditLogs/signIns")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn injected_faults_status_drop_truncate_slow_and_shares() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let path = format!("/v1.0/users/{ADA}/presence");

    t.emu.fail_next(
        Some(Family::Presence),
        1,
        FaultKind::Status {
            status: 503,
            retry_after: Some(1.5),
        },
    );
    let r = t.get(&token, &path).await;
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1.5");
    assert_eq!(t.get(&token, &path).await.status().as_u16(), 200);

    t.emu.fail_next(Some(Family::Presence), 1, FaultKind::Drop);
    let fresh = reqwest::Client::new();
    let err = fresh.get(t.url(&path)).bearer_auth(&token).send().await;
    assert!(
        err.is_err(),
        "connection dropped without an answer: {err:?}"
    );
    assert_eq!(t.emu.request_log().snapshot().last().unwrap().status, 0);

    t.emu
        .fail_next(Some(Family::Presence), 1, FaultKind::Truncate);
    let r = reqwest::Client::new()
        .get(t.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.is_err(), "truncated body");

    t.emu
        .fail_next(None, 1, FaultKind::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(t.get(&token, &path).await.status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    t.emu
        .set_faults(FaultPlan::parse("presence:429=1.0,retry_after=0.25").unwrap());
    for _ in 0..3 {
        let r = t.get(&token, &path).await;
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "0.25");
    }
    assert_eq!(
        t.get(&token, &format!("/v1.0/users/{ADA}"))
            .await
            .status()
            .as_u16(),
        200
    );

    // A share is drawn from a seeded RNG: same seed, same sequence.
    let run = |seed: u64| {
        let t = &t;
        let token = token.clone();
        let path = path.clone();
        async move {
            t.emu
                .set_faults(FaultPlan::parse(&format!("presence:503=0.5;seed={seed}")).unwrap());
            let mut v = Vec::new();
            for _ in 0..20 {
                v.push(t.get(&token, &path).await.status().as_u16());
            }
            v
        }
    };
    let a = run(3).await;
    assert_eq!(a, run(3).await);
    assert!(a.contains(&503) && a.contains(&200), "{a:?}");

    // The token endpoint can fail too.
    t.emu.set_faults(FaultPlan::none());
    t.emu.fail_next(
        Some(Family::Token),
        1,
        FaultKind::Status {
            status: 503,
            retry_after: None,
        },
    );
    let (s, b) = t
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", FULL.0),
            ("client_secret", FULL.1),
        ])
        .await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"], "temporarily_unavailable");
}

// ------------------------------------------------------------------ log, lifecycle

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
async fn refuses_non_loopback_addresses() {
    let err = emulator::start("0.0.0.0:0".parse().unwrap(), EmulatorConfig::new(fixture()))
        .await
        .unwrap_err();
    assert!(matches!(err, EmulatorError::NotLoopback(_)));
}

#[test]
fn runs_in_the_background_from_a_plain_test() {
    use std::io::{Read, Write};
    let emu = emulator::start_in_background(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig::new(fixture()),
    )
    .unwrap();
    let addr = emu.addr();
    assert_ne!(addr.port(), 0);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /v1.0/organization HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("request-id:"));
    // shutdown joins the server thread, so the listener is closed when it returns.
    emu.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err(), "stopped");
}

/// A benchmark, not a test (speed is never asserted in `cargo test`): the emulator's
/// own server time on a large tenant, from its request log.
/// `cargo test --release --test emulator_http -- --ignored --nocapture emulator_server_time`
#[tokio::test]
#[ignore]
async fn emulator_server_time_on_a_large_tenant() {
    let tenant = Tenant::generate(&GenerateSpec {
        users: 20_000,
        sign_ins: 50_000,
        seed: 2,
        day: None,
    });
    let ids: Vec<String> = tenant
        .users
        .iter()
        .take(650)
        .map(|u| u.id.to_string())
        .collect();
    let one = tenant.users[12_345].id;
    let t = start(tenant).await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    for _ in 0..5 {
        assert_eq!(
            t.get(&token, &format!("/v1.0/users/{one}"))
                .await
                .status()
                .as_u16(),
            200
        );
        let r = t
            .http
            .post(t.url("/v1.0/communications/getPresencesByUserId"))
            .bearer_auth(&token)
            .json(&json!({ "ids": ids }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let best = |family: &str| {
        t.emu
            .request_log()
            .family(family)
            .iter()
            .map(|e| e.micros)
            .min()
            .unwrap()
    };
    eprintln!(
        "best server time of 5: GET user {} µs, 650 presences {} µs",
        best("users"),
        best("presence")
    );
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
