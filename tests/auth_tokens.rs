//! Token requests, the token cache, `check`, and secrets staying secret:
//! the real binary against a fake token endpoint + Graph on 127.0.0.1.

mod common;
mod fake;

use std::time::{Duration, Instant};

use fake::{
    Fake, Reply, Seen, USER_ID, app_token, assert_no_secrets, entra_error, json_reply, presence,
    token_ok,
};
use serde_json::{Value, json};

/// Token requests get tokens numbered 0, 1, ...; Graph answers presence.
fn simple(seen: &Seen, n: usize) -> Reply {
    if seen.is_token() {
        token_ok(&app_token(n), 3599, None)
    } else {
        presence(USER_ID)
    }
}

fn presence_run(
    fake: &Fake,
    asset: &Value,
    dir: &std::path::Path,
    extra: &[&str],
) -> common::Outcome {
    let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
    let mut args = extra.to_vec();
    args.extend(["run", "get_presence"]);
    let out = common::run(&args, envelope.as_bytes(), dir);
    assert_no_secrets(fake, &out.stdout);
    assert_no_secrets(fake, &out.stderr);
    out
}

#[test]
fn client_credentials_token_then_bearer_call() {
    let fake = Fake::start(simple);
    let dir = tempfile::tempdir().unwrap();
    let out = presence_run(&fake, &fake.asset("client_credentials"), dir.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["json_body"]["availability"], "Available");
    assert_eq!(v["response_headers"]["request-id"], "req-ok");
    assert_eq!(
        v["response_headers"]["x-ms-throttle-limit-percentage"],
        "0.4"
    );

    let tokens = fake.tokens();
    assert_eq!(tokens.len(), 1);
    let form = tokens[0].form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "app-1");
    assert_eq!(form["client_secret"], fake::SECRET);
    assert_eq!(form["scope"], format!("{}/.default", fake.base));
    assert!(
        !tokens[0].headers.contains_key("authorization"),
        "secret goes in the body"
    );

    let graph = fake.graph();
    assert_eq!(graph.len(), 1);
    assert_eq!(graph[0].uri, format!("/v1.0/users/{USER_ID}/presence"));
    assert_eq!(graph[0].bearer(), Some(app_token(0).as_str()));
    let crid = &graph[0].headers["client-request-id"];
    assert!(uuid::Uuid::parse_str(crid).is_ok(), "{crid}");
    assert!(graph[0].headers["user-agent"].starts_with("msgraph-connector/"));
}

#[test]
fn token_errors_exit_3_with_code_and_advice() {
    let cases: &[(u64, &str, &str)] = &[
        (7000215, "invalid_client", "Value, not its Secret ID"),
        (7000222, "invalid_client", "expired"),
        (700016, "unauthorized_client", "not found in the tenant"),
        (90002, "invalid_request", "tenant not found"),
        (65001, "invalid_grant", "consent"),
        (70011, "invalid_scope", "scope"),
    ];
    for &(code, error, hint) in cases {
        let fake = Fake::start(move |seen, _| {
            if seen.is_token() {
                entra_error(
                    if error == "invalid_client" { 401 } else { 400 },
                    error,
                    code,
                    "Something went wrong.",
                )
            } else {
                panic!("no Graph call may follow a refused token")
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let out = presence_run(
            &fake,
            &fake.asset("client_credentials"),
            dir.path(),
            &["-vvv"],
        );
        assert_eq!(out.code, 3, "{code}: {}", out.stderr);
        let e = &out.json()["error"];
        assert_eq!(e["kind"], "auth");
        assert_eq!(e["code"], format!("AADSTS{code}"));
        assert_eq!(e["request_id"], format!("trace-{code}"));
        assert!(e["status_code"] == 400 || e["status_code"] == 401);
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(hint), "{code}: {msg}");
        assert!(!msg.contains("Trace ID"), "only the first line: {msg}");
        assert!(fake.graph().is_empty());
    }
}

#[test]
fn password_grant_and_its_errors() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            match n {
                0 => token_ok(&app_token(0), 3599, Some("rt-1-do-not-print")),
                1 => entra_error(
                    400,
                    "invalid_grant",
                    50076,
                    "Due to a configuration change made by your administrator, you must use multi-factor authentication.",
                ),
                2 => entra_error(
                    400,
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                ),
                _ => entra_error(400, "invalid_grant", 50057, "The user account is disabled."),
            }
        } else {
            presence(USER_ID)
        }
    });
    let asset = fake.asset("password");
    let out = presence_run(&fake, &asset, tempfile::tempdir().unwrap().path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let form = fake.tokens()[0].form();
    assert_eq!(form["grant_type"], "password");
    assert_eq!(form["username"], "adele@contoso.com");
    assert_eq!(form["password"], fake::PASSWORD);
    assert!(form["scope"].contains("offline_access"));
    assert!(
        !form.contains_key("client_secret"),
        "a public client sends no secret"
    );

    for (code, hint) in [
        (50076, "MFA is required"),
        (50126, "invalid username or password"),
        (50057, "disabled"),
    ] {
        let out = presence_run(
            &fake,
            &asset,
            tempfile::tempdir().unwrap().path(),
            &["-vvv"],
        );
        assert_eq!(out.code, 3, "{}", out.stderr);
        let e = &out.json()["error"];
        assert_eq!(e["code"], format!("AADSTS{code}"));
        assert!(e["message"].as_str().unwrap().contains(hint), "{e}");
        assert!(out.stderr.contains(&format!("AADSTS{code}")) || out.stderr.contains(hint));
    }
}

#[test]
fn unreachable_token_endpoint_is_a_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let asset = json!({"type": "client_credentials", "url": "http://127.0.0.1:9",
        "login_url": "http://127.0.0.1:9", "tenant_id": "t", "client_id": "c",
        "client_secret": fake::SECRET, "timeout_seconds": 2, "max_attempts": 2});
    let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
    let out = common::run(
        &["-vvv", "run", "get_presence"],
        envelope.as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(out.json()["error"]["kind"], "network");
    assert!(
        out.stderr.contains("retrying the token request"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains(fake::SECRET) && !out.stderr.contains(fake::SECRET));
}

#[test]
fn second_process_reuses_the_cached_token() {
    let fake = Fake::start(simple);
    let dir = tempfile::tempdir().unwrap();
    let asset = fake.asset("client_credentials");
    for _ in 0..2 {
        let out = presence_run(&fake, &asset, dir.path(), &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(
        fake.tokens().len(),
        1,
        "the second run must make no token request"
    );
    let graph = fake.graph();
    assert_eq!(graph[1].bearer(), graph[0].bearer());

    // The entry is private and named by a hash, never by a secret.
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("tokens"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(entries.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&entries[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    assert!(
        !text.contains(fake::SECRET),
        "the cache never holds the client secret"
    );

    // Without the cache every run asks again, and nothing new is written.
    let other = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = presence_run(&fake, &asset, other.path(), &["--no-token-cache"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(fake.tokens().len(), 3);
    assert!(!other.path().join("tokens").exists());
}

#[test]
fn concurrent_processes_share_one_token_request() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            std::thread::sleep(Duration::from_millis(300));
            token_ok(&app_token(n), 3599, None)
        } else {
            presence(USER_ID)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let asset = fake.asset("client_credentials");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (asset, dir) = (asset.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || {
                let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
                common::run(&["run", "get_presence"], envelope.as_bytes(), &dir)
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(
        fake.tokens().len(),
        1,
        "the lock lets one process ask, the others read the cache"
    );
}

#[test]
fn refresh_token_rotates_across_three_runs() {
    // Each answer carries a new refresh token; an old one is refused, as a strict server would.
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            let expected = if n == 0 {
                fake::REFRESH_SEED.to_string()
            } else {
                format!("rt-{n}-do-not-print")
            };
            let form = seen.form();
            if form.get("refresh_token") != Some(&expected) {
                return entra_error(
                    400,
                    "invalid_grant",
                    70008,
                    "The refresh token has expired or is invalid.",
                );
            }
            // expires_in 0: no access token outlives its run, so every run refreshes.
            token_ok(
                &app_token(n),
                0,
                Some(&format!("rt-{}-do-not-print", n + 1)),
            )
        } else {
            presence(USER_ID)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let asset = fake.asset("refresh_token");
    for run in 0..3 {
        let out = presence_run(&fake, &asset, dir.path(), &["-vvv"]);
        assert_eq!(out.code, 0, "run {run}: {}", out.stderr);
    }
    let sent: Vec<String> = fake
        .tokens()
        .iter()
        .map(|t| t.form()["refresh_token"].clone())
        .collect();
    assert_eq!(
        sent,
        [fake::REFRESH_SEED, "rt-1-do-not-print", "rt-2-do-not-print"]
    );
    let form = fake.tokens()[0].form();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["client_id"], "app-1");
}

#[test]
fn expired_refresh_token_says_sign_in_again() {
    let fake = Fake::start(|seen, _| {
        assert!(seen.is_token());
        entra_error(
            400,
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity.",
        )
    });
    let out = presence_run(
        &fake,
        &fake.asset("refresh_token"),
        tempfile::tempdir().unwrap().path(),
        &["-vvv"],
    );
    assert_eq!(out.code, 3);
    let e = &out.json()["error"];
    assert_eq!(e["code"], "AADSTS700082");
    assert!(e["message"].as_str().unwrap().contains("sign in again"));
}

/// A fresh RSA key (PKCS#8 PEM), a stand-in certificate, and the public key to verify with.
fn test_key() -> (String, String, Vec<u8>) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
    use base64::Engine;
    let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
    let pem = |label: &str, bytes: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    // The thumbprint is over the DER bytes; Entra holds the real certificate, the test server these bytes.
    let cert = pem("CERTIFICATE", b"test certificate bytes");
    (
        pem("PRIVATE KEY", der.as_ref()),
        cert,
        key.public_key().as_ref().to_vec(),
    )
}

#[test]
fn client_certificate_sends_a_signed_assertion() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (key_pem, cert_pem, public) = test_key();
    let fake = Fake::start(simple);
    let mut asset = fake.asset("client_certificate");
    asset["certificate"] = json!(cert_pem);
    asset["private_key"] = json!(key_pem);
    let out = presence_run(
        &fake,
        &asset,
        tempfile::tempdir().unwrap().path(),
        &["-vvv"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("PRIVATE KEY"));

    let form = fake.tokens()[0].form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!form.contains_key("client_secret"));
    let jwt = &form["client_assertion"];
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"test certificate bytes");
    assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(thumb));
    assert_eq!(claims["aud"], fake.token_url());
    assert_eq!(claims["iss"], "app-1");
    assert_eq!(claims["sub"], "app-1");
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        600
    );
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        &public,
    )
    .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
    .expect("the assertion verifies with the app's public key");
}

#[test]
fn a_bad_private_key_is_invalid_input_before_any_request() {
    let fake = Fake::start(simple);
    let mut asset = fake.asset("client_certificate");
    asset["certificate"] = json!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    asset["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nnot-a-key-do-not-print\n-----END PRIVATE KEY-----\n");
    let out = presence_run(&fake, &asset, tempfile::tempdir().unwrap().path(), &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.json()["error"]["details"][0]["path"],
        "/asset/private_key"
    );
    assert!(fake.seen().is_empty());
}

#[test]
fn check_reports_token_permissions_per_action() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            token_ok(
                &fake::jwt(json!({"roles": ["User.Read.All"], "n": n})),
                3599,
                None,
            )
        } else if seen.uri.ends_with("/presence") {
            presence(USER_ID)
        } else {
            assert_eq!(seen.uri, "/v1.0/organization?$select=id");
            json_reply(200, json!({"value": [{"id": "org-1"}]}))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let envelope = json!({"asset": fake.asset("client_credentials")}).to_string();
    // A cached token exists: check must still prove the credential with a fresh request.
    let warm = presence_run(&fake, &fake.asset("client_credentials"), dir.path(), &[]);
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    let started = Instant::now();
    let out = common::run(&["check"], envelope.as_bytes(), dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fake.tokens().len(), 2);
    let body = &out.json()["json_body"];
    assert_eq!(body["token"]["type"], "app");
    assert_eq!(body["token"]["permissions"], json!(["User.Read.All"]));
    assert_eq!(body["graph"]["status"], 200);
    let presence = body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "get_presence")
        .unwrap();
    // get_presence lists Presence.Read.All, User.Read.All: any one is accepted.
    assert_eq!(presence["ok"], true);
    assert!(body["successful"].is_boolean());
    assert_no_secrets(&fake, &out.stdout);
}

#[test]
fn check_names_missing_permissions_and_fails_with_the_right_status() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            if n == 0 {
                token_ok(
                    &fake::jwt(json!({"scp": "Mail.Read"})),
                    3599,
                    Some("rt-9-do-not-print"),
                )
            } else {
                entra_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                )
            }
        } else {
            assert_eq!(seen.uri, "/v1.0/me?$select=id");
            json_reply(200, json!({"id": "me"}))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let envelope = json!({"asset": fake.asset("refresh_token")}).to_string();
    let out = common::run(&["check"], envelope.as_bytes(), dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["successful"], false);
    assert_eq!(body["token"]["type"], "delegated");
    let presence = body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "get_presence")
        .unwrap();
    assert_eq!(presence["ok"], false);
    assert_eq!(presence["missing"], json!(["Presence.Read.All"]));

    let out = common::run(
        &["check"],
        json!({"asset": fake.asset("client_credentials")})
            .to_string()
            .as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["error"]["code"], "AADSTS7000215");
    assert_no_secrets(&fake, &out.stdout);
    assert_no_secrets(&fake, &out.stderr);
}

#[test]
fn the_proxy_carries_every_request_and_its_credentials_stay_secret() {
    // The fake plays the proxy: requests for an unreachable host arrive at it in absolute form.
    let fake = Fake::start(simple);
    let mut asset = fake.asset("client_credentials");
    asset["url"] = json!("http://localhost:9");
    asset["login_url"] = json!("http://localhost:9/login");
    let proxy = fake
        .base
        .replace("http://", "http://proxyuser:proxy-pw-do-not-print@");
    asset["http_proxy"] = json!(proxy);
    let out = presence_run(
        &fake,
        &asset,
        tempfile::tempdir().unwrap().path(),
        &["-vvv"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fake.tokens().len(), 1);
    let graph = fake.graph();
    assert_eq!(graph.len(), 1);
    assert_eq!(graph[0].headers["host"], "localhost:9");
    assert!(graph[0].headers.contains_key("proxy-authorization"));
}

#[test]
fn verify_ssl_false_is_warned_about() {
    let fake = Fake::start(simple);
    let mut asset = fake.asset("client_credentials");
    asset["verify_ssl"] = json!(false);
    let out = presence_run(&fake, &asset, tempfile::tempdir().unwrap().path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("verify_ssl is false"), "{}", out.stderr);
}

#[test]
fn a_failing_token_endpoint_is_retried_then_refusals_are_not() {
    let fake = Fake::start(|seen, n| {
        if !seen.is_token() {
            return presence(USER_ID);
        }
        match n {
            0 => json_reply(503, json!({"error": "temporarily_unavailable"})),
            _ => token_ok(&app_token(n), 3599, None),
        }
    });
    let out = presence_run(
        &fake,
        &fake.asset("client_credentials"),
        tempfile::tempdir().unwrap().path(),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fake.tokens().len(), 2);
    assert!(
        out.stderr.contains("retrying the token request"),
        "{}",
        out.stderr
    );

    let fake = Fake::start(|seen, _| {
        assert!(seen.is_token());
        json_reply(503, json!({"error": "temporarily_unavailable"}))
    });
    let mut asset = fake.asset("client_credentials");
    asset["max_attempts"] = json!(2);
    let out = presence_run(&fake, &asset, tempfile::tempdir().unwrap().path(), &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(out.json()["error"]["status_code"], 503);
    assert_eq!(fake.tokens().len(), 2);
}
