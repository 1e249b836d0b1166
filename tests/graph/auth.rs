//! Token requests, the token cache, `check`, and secrets staying secret: the
//! real binary against the built-in emulator on 127.0.0.1 (the proxy test alone
//! uses `fake`, see its module doc). What the connector sent is read from the
//! emulator's request log; the emulator's own strictness (secrets, passwords,
//! rotated refresh tokens, signed assertions) proves the credential was right.

use std::path::Path;
use std::time::Duration;

use graph_emulator::{
    AppCertificate, AppRegistration, DELEGATED_PASSWORD, DELEGATED_USER, FULL_APP_CLIENT_ID,
    FULL_APP_SECRET, Family, FaultKind, FaultPlan, MFA_USER, READ_APP_CLIENT_ID, READ_APP_SECRET,
    RateLimit, ThrottleConfig,
};
use serde_json::{Value, json};

use crate::support::emulator::{
    self, DISABLED_USER, EXPIRED_APP, Emulator, ME_ONLY_APP, PUBLIC_APP, USER_ID,
};
use crate::support::fake;
use crate::support::process::{self, Outcome};

fn presence_run(emu: &Emulator, asset: &Value, dir: &Path, extra: &[&str]) -> Outcome {
    let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
    let mut args = extra.to_vec();
    args.extend(["run", "get_presence"]);
    let out = process::run(&args, envelope.as_bytes(), dir);
    emu.assert_no_secrets(&out.stdout, Some(dir));
    emu.assert_no_secrets(&out.stderr, Some(dir));
    out
}

#[test]
fn client_credentials_token_then_bearer_call() {
    let emu = Emulator::start();
    // One presence request a window: the first answer already reports 100 % use.
    emu.set_throttle(ThrottleConfig {
        presence: Some(RateLimit {
            requests: 1,
            per: Duration::from_secs(30),
        }),
        ..ThrottleConfig::off()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = presence_run(&emu, &emu.asset("client_credentials"), dir.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["json_body"]["availability"], "Available");

    let tokens = emu.token_log();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].status, 200, "the emulator accepted the secret");
    let asked = tokens[0].token.as_ref().unwrap();
    assert_eq!(asked.grant_type.as_deref(), Some("client_credentials"));
    assert_eq!(asked.client_id.as_deref(), Some(FULL_APP_CLIENT_ID));
    assert_eq!(
        asked.scope.as_deref(),
        Some(format!("{}/.default", emu.base_url()).as_str())
    );
    assert_eq!(
        asked.client_auth, "client_secret_post",
        "secret in the body"
    );
    assert!(!tokens[0].authorization, "no Authorization header either");

    let graph = emu.graph_log();
    assert_eq!(graph.len(), 1);
    let g = &graph[0];
    assert_eq!(g.method, "GET");
    assert_eq!(g.path, format!("/v1.0/users/{USER_ID}/presence"));
    assert_eq!(g.query, None);
    assert!(g.authorization);
    assert_eq!(g.status, 200, "the emulator accepted the bearer token");
    let crid = g.client_request_id.as_deref().unwrap();
    assert!(uuid::Uuid::parse_str(crid).is_ok(), "{crid}");
    assert!(
        g.user_agent
            .as_deref()
            .unwrap()
            .starts_with("msgraph-connector/")
    );
    // Graph's headers reach the result.
    assert_eq!(v["response_headers"]["request-id"], g.request_id);
    assert_eq!(
        v["response_headers"]["x-ms-throttle-limit-percentage"],
        "1.0"
    );
}

#[test]
fn token_errors_exit_3_with_code_and_advice() {
    let emu = Emulator::start();
    let base = emu.base_url();
    let cc = emu.asset("client_credentials");
    let with = |asset: &Value, changes: Value| {
        let mut a = asset.clone();
        for (k, v) in changes.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    let cases: Vec<(u64, &str, Value)> = vec![
        (
            7000215,
            "Value, not its Secret ID",
            with(&cc, json!({"client_secret": "not-the-secret"})),
        ),
        (
            7000222,
            "expired",
            with(
                &cc,
                json!({"client_id": EXPIRED_APP.0, "client_secret": EXPIRED_APP.1}),
            ),
        ),
        (
            700016,
            "not found in the tenant",
            with(
                &cc,
                json!({"client_id": "0badc0de-0000-4000-8000-000000000000"}),
            ),
        ),
        (
            90002,
            "tenant not found",
            with(&cc, json!({"tenant_id": "nowhere.example"})),
        ),
        (
            65001,
            "consent",
            with(
                &emu.asset("password"),
                json!({"scope": [format!("{base}/Mail.Read"), "offline_access"]}),
            ),
        ),
        (
            70011,
            "scope",
            with(
                &cc,
                json!({"scope": ["https://elsewhere.example/.default"]}),
            ),
        ),
    ];
    for (code, hint, asset) in cases {
        let before = emu.log().len();
        let dir = tempfile::tempdir().unwrap();
        let out = presence_run(&emu, &asset, dir.path(), &["-vvv"]);
        assert_eq!(out.code, 3, "{code}: {}", out.stderr);
        let seen = &emu.log()[before..];
        assert_eq!(seen.len(), 1, "{code}: one token request, not retried");
        assert_eq!(seen[0].family, "token", "{code}: no Graph call follows");
        let e = &out.json()["error"];
        assert_eq!(e["kind"], "auth");
        assert_eq!(e["code"], format!("AADSTS{code}"));
        assert_eq!(e["request_id"], seen[0].request_id, "Entra's trace id");
        assert_eq!(e["status_code"], seen[0].status);
        let want_status = if hint == "Value, not its Secret ID" || hint == "expired" {
            401
        } else {
            400
        };
        assert_eq!(seen[0].status, want_status, "{code}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(hint), "{code}: {msg}");
        assert!(!msg.contains("Trace ID"), "only the first line: {msg}");
    }
}

#[test]
fn password_grant_and_its_errors() {
    let emu = Emulator::start();
    // A public client: no secret in the asset, and the app has none to match.
    let mut asset = emu.asset("password");
    asset["client_id"] = json!(PUBLIC_APP);
    asset.as_object_mut().unwrap().remove("client_secret");
    let dir = tempfile::tempdir().unwrap();
    let out = presence_run(&emu, &asset, dir.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tokens = emu.token_log();
    assert_eq!(tokens[0].status, 200, "the emulator accepted the password");
    let asked = tokens[0].token.as_ref().unwrap();
    assert_eq!(asked.grant_type.as_deref(), Some("password"));
    assert_eq!(asked.username.as_deref(), Some(DELEGATED_USER));
    assert!(asked.scope.as_deref().unwrap().contains("offline_access"));
    assert_eq!(asked.client_auth, "none", "a public client sends no secret");
    // offline_access was honoured: a refresh token is kept beside the access token.
    assert_eq!(emulator::cached_tokens(dir.path()).len(), 2);

    for (username, password, code, hint) in [
        (MFA_USER, DELEGATED_PASSWORD, 50076, "MFA is required"),
        (
            DELEGATED_USER,
            "wrong-password",
            50126,
            "invalid username or password",
        ),
        (DISABLED_USER, DELEGATED_PASSWORD, 50057, "disabled"),
    ] {
        let mut asset = asset.clone();
        asset["username"] = json!(username);
        asset["password"] = json!(password);
        let dir = tempfile::tempdir().unwrap();
        let out = presence_run(&emu, &asset, dir.path(), &["-vvv"]);
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(!out.stderr.contains("wrong-password"));
        let e = &out.json()["error"];
        assert_eq!(e["code"], format!("AADSTS{code}"));
        assert!(e["message"].as_str().unwrap().contains(hint), "{e}");
        assert!(out.stderr.contains(&format!("AADSTS{code}")) || out.stderr.contains(hint));
    }
}

#[test]
fn unreachable_token_endpoint_is_a_network_error() {
    const SECRET: &str = "s3cr3t-VALUE-do-not-print";
    let dir = tempfile::tempdir().unwrap();
    let asset = json!({"type": "client_credentials", "url": "http://127.0.0.1:9",
        "login_url": "http://127.0.0.1:9", "tenant_id": "t", "client_id": "c",
        "client_secret": SECRET, "timeout_seconds": 2, "max_attempts": 2});
    let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
    let out = process::run(
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
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
}

#[test]
fn second_process_reuses_the_cached_token() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let asset = emu.asset("client_credentials");
    for _ in 0..2 {
        let out = presence_run(&emu, &asset, dir.path(), &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(
        emu.token_requests(),
        1,
        "the second run must make no token request"
    );
    // Both runs were served with the one token the emulator issued.
    let graph = emu.graph_log();
    assert_eq!(graph.len(), 2);
    assert!(graph.iter().all(|g| g.status == 200 && g.authorization));

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
        !text.contains(FULL_APP_SECRET),
        "the cache never holds the client secret"
    );

    // Without the cache every run asks again, and nothing new is written.
    let other = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = presence_run(&emu, &asset, other.path(), &["--no-token-cache"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(emu.token_requests(), 3);
    assert!(!other.path().join("tokens").exists());
}

/// `get_user` as the probe ran it, secrets checked.
fn get_user_run(emu: &Emulator, asset: &Value, dir: &Path) -> Outcome {
    let out = process::run_action("get_user", asset, &json!({"id": USER_ID}), dir);
    emu.assert_no_secrets(&out.stdout, Some(dir));
    emu.assert_no_secrets(&out.stderr, Some(dir));
    out
}

#[test]
fn a_cached_token_serves_only_the_credential_that_obtained_it() {
    // Issue 19, item 1: a good run, then a wrong secret on the same state dir.
    // The entry's key (token URL, client id, scope, user) matches; the credential does not.
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let good = emu.asset("client_credentials");
    let out = get_user_run(&emu, &good, dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut wrong = good.clone();
    wrong["client_secret"] = json!("WRONG");
    let out = get_user_run(&emu, &wrong, dir.path());
    assert_eq!(out.code, 3, "served from the cache: {}", out.stdout);
    assert_eq!(out.json()["error"]["code"], "AADSTS7000215");
    assert_eq!(emu.token_requests(), 2, "the wrong secret went to Entra");
    assert_eq!(
        emu.graph_log().len(),
        1,
        "no Graph call with the cached token"
    );
    // The rightful credential still finds its entry.
    let out = get_user_run(&emu, &good, dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(emu.token_requests(), 2);

    // A wrong password for the cached user: the same.
    let good = emu.asset("password");
    let out = get_user_run(&emu, &good, dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut wrong = good.clone();
    wrong["password"] = json!("wrong-password");
    let out = get_user_run(&emu, &wrong, dir.path());
    assert_eq!(out.code, 3, "served from the cache: {}", out.stdout);
    assert_eq!(out.json()["error"]["code"], "AADSTS50126");
    assert!(!out.stderr.contains("wrong-password"));
    assert_eq!(emu.token_requests(), 4);

    // No entry holds a secret, and the fingerprint key is private too.
    let tokens = dir.path().join("tokens");
    for e in std::fs::read_dir(&tokens).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [
            FULL_APP_SECRET,
            DELEGATED_PASSWORD,
            "WRONG",
            "wrong-password",
        ] {
            assert!(!text.contains(secret), "{}", path.display());
        }
        #[cfg(unix)]
        if path.extension().is_none_or(|x| x != "lock") {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }
    assert!(tokens.join("fingerprint.key").is_file());
}

#[test]
fn a_refresh_token_entry_is_bound_to_its_seed_and_survives_rotation() {
    // The entry keeps the rotated refresh token, which differs from the asset's
    // seed after the first run; the binding is to the seed, so the next runs still
    // find it. The emulator refuses a redeemed refresh token, so a run that fell
    // back to the seed would fail.
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let asset = emu.asset("refresh_token");
    for _ in 0..2 {
        let out = presence_run(&emu, &asset, dir.path(), &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(emu.token_requests(), 1, "two runs in a row: one refresh");
    emu.advance_clock(Duration::from_secs(2 * 3600));
    for _ in 0..2 {
        let out = presence_run(&emu, &asset, dir.path(), &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(
        emu.token_requests(),
        2,
        "the expired token: one refresh, rotated"
    );

    // Another client secret with the same seed gets neither token.
    let mut wrong = asset.clone();
    wrong["client_secret"] = json!("WRONG");
    let out = presence_run(&emu, &wrong, dir.path(), &[]);
    assert_eq!(out.code, 3, "served from the cache: {}", out.stdout);
    assert_eq!(emu.token_requests(), 3);
    let asked = emu.token_log()[2].token.clone().unwrap();
    assert_eq!(asked.grant_type.as_deref(), Some("refresh_token"));

    // And the rightful asset's chain is intact.
    emu.advance_clock(Duration::from_secs(2 * 3600));
    let out = presence_run(&emu, &asset, dir.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let statuses: Vec<u16> = emu.token_log().iter().map(|t| t.status).collect();
    assert_eq!(statuses[..2], [200, 200]);
    assert_eq!(statuses[3], 200);
    assert_eq!(statuses.len(), 4);
}

#[test]
fn concurrent_processes_share_one_token_request() {
    let emu = Emulator::start();
    // A slow token endpoint widens the window in which all four would ask.
    emu.fail_next(
        Some(Family::Token),
        1,
        FaultKind::Slow(Duration::from_millis(300)),
    );
    let dir = tempfile::tempdir().unwrap();
    let asset = emu.asset("client_credentials");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (asset, dir) = (asset.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || {
                let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
                process::run(&["run", "get_presence"], envelope.as_bytes(), &dir)
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    assert_eq!(
        emu.token_requests(),
        1,
        "the lock lets one process ask, the others read the cache"
    );
    assert_eq!(emu.graph_log().len(), 4);
}

#[test]
fn refresh_token_rotates_across_three_runs() {
    // Entra keeps a redeemed refresh token valid, so success alone proves nothing:
    // the log's serials prove each run redeemed the newest one, the one the
    // previous run received (issue 11, item 12).
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let asset = emu.asset("refresh_token");
    for run in 0..3 {
        let out = presence_run(&emu, &asset, dir.path(), &["-vvv"]);
        assert_eq!(out.code, 0, "run {run}: {}", out.stderr);
        // The access token expires between runs (virtual clock): the next run's
        // cached token is refused, and it must refresh with the rotated token.
        emu.advance_clock(Duration::from_secs(2 * 3600));
    }
    let tokens = emu.token_log();
    assert_eq!(tokens.len(), 3);
    for t in &tokens {
        assert_eq!(t.status, 200);
        let asked = t.token.as_ref().unwrap();
        assert_eq!(asked.grant_type.as_deref(), Some("refresh_token"));
        assert_eq!(asked.client_id.as_deref(), Some(FULL_APP_CLIENT_ID));
    }
    let serials: Vec<_> = tokens
        .iter()
        .map(|t| t.token.as_ref().unwrap().refresh_token_serial)
        .collect();
    assert_eq!(
        serials,
        [Some(1), Some(2), Some(3)],
        "each run redeems the newest refresh token"
    );
    let statuses: Vec<u16> = emu.graph_log().iter().map(|g| g.status).collect();
    assert_eq!(statuses, [200, 401, 200, 401, 200]);
}

#[test]
fn expired_refresh_token_says_sign_in_again() {
    let emu = Emulator::start();
    let asset = emu.asset("refresh_token");
    emu.advance_clock(Duration::from_secs(91 * 24 * 3600));
    let out = presence_run(&emu, &asset, tempfile::tempdir().unwrap().path(), &["-vvv"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let e = &out.json()["error"];
    assert_eq!(e["code"], "AADSTS700082");
    assert!(e["message"].as_str().unwrap().contains("sign in again"));
    assert_eq!(emu.token_log().len(), 1);
    assert!(emu.graph_log().is_empty());
}

fn pem(label: &str, bytes: &[u8]) -> String {
    use base64::Engine;
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
}

/// A fresh RSA key: its private key (PKCS#8 PEM) and public key (SubjectPublicKeyInfo PEM).
fn test_key() -> (String, String) {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::signature::KeyPair as _;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let private = AsDer::<Pkcs8V1Der>::as_der(&key).unwrap();
    let public = key.public_key().as_der().unwrap();
    (
        pem("PRIVATE KEY", private.as_ref()),
        pem("PUBLIC KEY", public.as_ref()),
    )
}

#[test]
fn client_certificate_sends_a_signed_assertion() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    const CERT_APP: &str = "e1ec7a11-0006-4a00-8000-00000000a006";
    // The thumbprint is over the certificate's DER bytes; the test "certificate" is these bytes.
    let cert_der = b"test certificate bytes";
    let thumb = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        cert_der,
    ));
    let (key_pem, public_pem) = test_key();
    let emu = Emulator::start_with(|c| {
        c.tenant.apps.push(AppRegistration {
            client_id: CERT_APP.parse().unwrap(),
            display_name: "certificate app".into(),
            client_secret: None,
            client_secret_expired: false,
            certificate: Some(AppCertificate {
                thumbprint_sha256: Some(thumb.clone().into()),
                thumbprint_sha1: None,
                public_key_pem: public_pem.into(),
            }),
            public_client: false,
            permissions: vec!["Presence.Read.All".into()],
            directory_roles: Vec::new(),
        })
    });
    let mut asset = emu.asset("client_credentials");
    asset["type"] = json!("client_certificate");
    asset["client_id"] = json!(CERT_APP);
    asset.as_object_mut().unwrap().remove("client_secret");
    asset["certificate"] = json!(pem("CERTIFICATE", cert_der));
    asset["private_key"] = json!(key_pem);
    let out = presence_run(&emu, &asset, tempfile::tempdir().unwrap().path(), &["-vvv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("PRIVATE KEY"));

    // The emulator verified the signature with the registered key, the thumbprint,
    // aud, iss, sub and the validity window; the rest is checked here.
    let tokens = emu.token_log();
    assert_eq!(tokens[0].status, 200);
    let asked = tokens[0].token.as_ref().unwrap();
    assert_eq!(asked.grant_type.as_deref(), Some("client_credentials"));
    assert_eq!(asked.client_auth, "private_key_jwt", "and no client secret");
    let header = asked.assertion_header.as_ref().unwrap();
    let claims = asked.assertion_claims.as_ref().unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["x5t#S256"], thumb.as_str());
    assert_eq!(claims["aud"], emu.token_url());
    assert_eq!(claims["iss"], CERT_APP);
    assert_eq!(claims["sub"], CERT_APP);
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        600
    );
}

#[test]
fn a_bad_private_key_is_invalid_input_before_any_request() {
    let emu = Emulator::start();
    let mut asset = emu.asset("client_credentials");
    asset["type"] = json!("client_certificate");
    asset.as_object_mut().unwrap().remove("client_secret");
    asset["certificate"] = json!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    asset["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nnot-a-key-do-not-print\n-----END PRIVATE KEY-----\n");
    let out = presence_run(&emu, &asset, tempfile::tempdir().unwrap().path(), &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!format!("{}{}", out.stdout, out.stderr).contains("not-a-key-do-not-print"));
    assert_eq!(
        out.json()["error"]["details"][0]["path"],
        "/asset/private_key"
    );
    assert!(emu.log().is_empty());
}

fn action<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()
}

#[test]
fn check_reports_token_permissions_per_action() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let asset = emu.asset("client_credentials");
    // A cached token exists: check must still prove the credential with a fresh request.
    let warm = presence_run(&emu, &asset, dir.path(), &[]);
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    let before = emu.log().len();
    let out = process::run(
        &["check"],
        json!({"asset": asset}).to_string().as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    emu.assert_no_secrets(&out.stdout, Some(dir.path()));
    let seen = &emu.log()[before..];
    assert_eq!(seen.len(), 2, "a fresh token, then one cheap read");
    assert_eq!(seen[0].family, "token");
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/v1.0/organization")
    );
    assert_eq!(seen[1].query.as_deref(), Some("$select=id"));
    let body = &out.json()["json_body"];
    assert_eq!(body["token"]["type"], "app");
    let granted: Vec<String> = emulator::tenant_with_edge_cases().apps[0]
        .permissions
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(body["token"]["permissions"], json!(granted));
    assert_eq!(body["graph"]["status"], 200);
    assert_eq!(action(body, "get_presence")["ok"], true);
    assert_eq!(body["successful"], true);

    // An app with only User.Read.All: get_user is fine, get_presence lacks
    // Presence.Read.All, and the 403 on /organization is reported.
    let mut reader = asset.clone();
    reader["client_id"] = json!(READ_APP_CLIENT_ID);
    reader["client_secret"] = json!(READ_APP_SECRET);
    let out = process::run(
        &["check"],
        json!({"asset": reader}).to_string().as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let body = &out.json()["json_body"];
    assert_eq!(body["token"]["permissions"], json!(["User.Read.All"]));
    assert_eq!(action(body, "get_user")["ok"], true);
    assert_eq!(action(body, "get_presence")["ok"], false);
    assert_eq!(
        action(body, "get_presence")["missing"],
        json!(["Presence.Read.All"])
    );
    // Sign-ins need two permissions together: both are named.
    assert_eq!(
        action(body, "pull_sign_ins")["missing"],
        json!(["AuditLog.Read.All", "Directory.Read.All"])
    );
    assert_eq!(body["graph"]["status"], 403);
    assert_eq!(body["graph"]["code"], "Authorization_RequestDenied");
    assert_eq!(body["successful"], false);
}

#[test]
fn check_names_missing_permissions_and_fails_with_the_right_status() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    // A user signed in to an app granted only User.Read: /me works, get_presence cannot.
    let refresh = emu
        .mint_refresh_token(DELEGATED_USER, ME_ONLY_APP.0.parse().unwrap())
        .unwrap();
    let mut asset = emu.asset("refresh_token");
    asset["client_id"] = json!(ME_ONLY_APP.0);
    asset["client_secret"] = json!(ME_ONLY_APP.1);
    asset["refresh_token"] = json!(refresh);
    let out = process::run(
        &["check"],
        json!({"asset": asset}).to_string().as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    emu.assert_no_secrets(&out.stdout, Some(dir.path()));
    let me = emu.graph_log();
    assert_eq!(me.len(), 1);
    assert_eq!((me[0].path.as_str(), me[0].status), ("/v1.0/me", 200));
    assert_eq!(me[0].query.as_deref(), Some("$select=id"));
    let body = &out.json()["json_body"];
    assert_eq!(body["successful"], false);
    assert_eq!(body["token"]["type"], "delegated");
    assert_eq!(body["token"]["permissions"], json!(["User.Read"]));
    assert_eq!(body["graph"]["status"], 200);
    let presence = action(body, "get_presence");
    assert_eq!(presence["ok"], false);
    // User.Read reads only the signed-in user: presence and other users are both missing
    // (the catalog names application permissions: User.Read.All for users, issue 11).
    assert_eq!(
        presence["missing"],
        json!(["Presence.Read.All", "User.Read.All"])
    );

    let mut bad = emu.asset("client_credentials");
    bad["client_secret"] = json!("not-the-secret");
    let out = process::run(
        &["check"],
        json!({"asset": bad}).to_string().as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["error"]["code"], "AADSTS7000215");
    emu.assert_no_secrets(&out.stdout, Some(dir.path()));
    emu.assert_no_secrets(&out.stderr, Some(dir.path()));
}

/// Issue 19, item 6: `http://:pw@host` in `login_url` was accepted, sent on and
/// logged at INFO. Credentials in any URL field are refused before any request,
/// and the value is never echoed, even at `-vvv`.
#[test]
fn credentials_in_url_fields_are_refused_and_never_echoed() {
    let emu = Emulator::start();
    let cc = emu.asset("client_credentials");
    let oauth = emu.asset("oauth2_client_credentials");
    for (base, field) in [(&cc, "url"), (&cc, "login_url"), (&oauth, "token_url")] {
        for userinfo in [
            ":url-pw-never-shown@",
            "url-user-never-shown:url-pw-never-shown@",
        ] {
            let mut asset = base.clone();
            let current = asset[field].as_str().unwrap().to_string();
            asset[field] = json!(current.replacen("://", &format!("://{userinfo}"), 1));
            let dir = tempfile::tempdir().unwrap();
            let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
            let out = process::run(
                &["-vvv", "run", "get_presence"],
                envelope.as_bytes(),
                dir.path(),
            );
            crate::support::assertions::assert_invalid(&emu, &out, &format!("/asset/{field}"));
            crate::support::assertions::no_secret_in(&out, "url-pw-never-shown");
            crate::support::assertions::no_secret_in(&out, "url-user-never-shown");
        }
    }
}

#[test]
fn the_proxy_carries_every_request_and_its_credentials_stay_secret() {
    // The fake plays the proxy: requests for an unreachable host arrive at it in absolute form.
    let fake = fake::Fake::start(fake::simple);
    let mut asset = fake.asset("client_credentials");
    asset["url"] = json!("http://localhost:9");
    asset["login_url"] = json!("http://localhost:9/login");
    let proxy = fake
        .base
        .replace("http://", "http://proxyuser:proxy-pw-do-not-print@");
    asset["http_proxy"] = json!(proxy);
    let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = process::run(
        &["-vvv", "run", "get_presence"],
        envelope.as_bytes(),
        dir.path(),
    );
    fake::assert_no_secrets(&fake, &out.stdout);
    fake::assert_no_secrets(&fake, &out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fake.tokens().len(), 1);
    let graph = fake.graph();
    assert_eq!(graph.len(), 1);
    assert_eq!(graph[0].headers["host"], "localhost:9");
    assert!(graph[0].headers.contains_key("proxy-authorization"));
}

#[test]
fn verify_ssl_false_is_warned_about_once_per_asset_and_state_dir() {
    let emu = Emulator::start();
    let mut asset = emu.asset("client_credentials");
    asset["verify_ssl"] = json!(false);
    let dir = tempfile::tempdir().unwrap();
    let first = presence_run(&emu, &asset, dir.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("verify_ssl is false"),
        "{}",
        first.stderr
    );
    let again = presence_run(&emu, &asset, dir.path(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        !again.stderr.contains("verify_ssl is false"),
        "{}",
        again.stderr
    );
    // Another asset (client id) in the same state dir is told once too.
    let mut other = asset.clone();
    other["client_id"] = json!(crate::support::emulator::ME_ONLY_APP.0);
    other["client_secret"] = json!(crate::support::emulator::ME_ONLY_APP.1);
    let other_run = presence_run(&emu, &other, dir.path(), &[]);
    assert!(
        other_run.stderr.contains("verify_ssl is false"),
        "{}",
        other_run.stderr
    );
    // Without a state dir to remember it in, every run says it.
    let fresh = presence_run(
        &emu,
        &asset,
        tempfile::tempdir().unwrap().path(),
        &["--no-token-cache"],
    );
    assert!(
        fresh.stderr.contains("verify_ssl is false"),
        "{}",
        fresh.stderr
    );
}

#[test]
fn a_failing_token_endpoint_is_retried() {
    let emu = Emulator::start();
    emu.fail_next(
        Some(Family::Token),
        1,
        FaultKind::Status {
            status: 503,
            retry_after: None,
        },
    );
    let out = presence_run(
        &emu,
        &emu.asset("client_credentials"),
        tempfile::tempdir().unwrap().path(),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let statuses: Vec<u16> = emu.token_log().iter().map(|t| t.status).collect();
    assert_eq!(statuses, [503, 200]);
    assert!(
        out.stderr.contains("retrying the token request"),
        "{}",
        out.stderr
    );

    // Failing every time: max_attempts requests, then a network error carrying the status.
    emu.set_faults(FaultPlan::parse("token:503=1,retry_after=none").unwrap());
    let mut asset = emu.asset("client_credentials");
    asset["max_attempts"] = json!(2);
    let out = presence_run(&emu, &asset, tempfile::tempdir().unwrap().path(), &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(out.json()["error"]["status_code"], 503);
    assert_eq!(emu.token_log().len(), 4);
    assert_eq!(emu.graph_log().len(), 1);
}

#[test]
fn refresh_token_without_a_cache_is_refused_before_it_is_burnt() {
    // Every answer rotates the refresh token; with nowhere to keep the new one the
    // seed would die after one run. Refused up front: exit 2, no token request.
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let envelope = json!({"asset": emu.asset("refresh_token"), "inputs": {"id": USER_ID}});
    let out = process::run(
        &["--no-token-cache", "run", "get_presence"],
        envelope.to_string().as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.json()["error"]["details"][0]["path"], "/asset/type");
    assert_eq!(emu.token_requests(), 0);
    emu.assert_no_secrets(&out.stdout, Some(dir.path()));
}

/// A token endpoint or Graph front end that echoes the request (its form body, its
/// `Authorization` header) must not put the secret or the bearer token into our error
/// message, its fields or the log: server text is scrubbed before it reaches them.
#[test]
fn server_text_that_echoes_the_request_is_scrubbed() {
    // Echoing token endpoint: a refusal (exit 3), then failures that are retried and logged.
    for status in [400u16, 503] {
        let fake = fake::Fake::start(move |seen, _| {
            fake::json_reply(
                status,
                json!({"error": "invalid_client",
                       "error_description": format!("AADSTS7000215: bad client. You sent: {}", seen.body),
                       "trace_id": format!("client_secret={}", fake::SECRET)}),
            )
        });
        let mut asset = fake.asset("client_credentials");
        asset["max_attempts"] = json!(2);
        let envelope = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
        let dir = tempfile::tempdir().unwrap();
        let out = process::run(
            &["-vv", "run", "get_presence"],
            envelope.as_bytes(),
            dir.path(),
        );
        assert_eq!(
            out.code,
            if status == 400 { 3 } else { 5 },
            "{}",
            out.stdout
        );
        assert!(!fake.tokens().is_empty());
        for text in [&out.stdout, &out.stderr] {
            fake::assert_no_secrets(&fake, text);
            let encoded: String =
                url::form_urlencoded::byte_serialize(fake::SECRET.as_bytes()).collect();
            assert!(!text.contains(&encoded), "{text}");
        }
        assert!(out.stdout.contains("[REDACTED]"), "{}", out.stdout);
        // The rest of the server's words survive.
        assert!(
            out.stdout.contains("grant_type=client_credentials"),
            "{}",
            out.stdout
        );
    }

    // Echoing Graph: the bearer token comes back in the error message, code and request id.
    let fake = fake::Fake::start(|seen, n| {
        if seen.is_token() {
            return fake::token_ok(&fake::app_token(n));
        }
        let auth = seen
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        let token = auth.strip_prefix("Bearer ").unwrap_or_default().to_string();
        (
            400,
            vec![
                ("content-type", "application/json".to_string()),
                ("request-id", format!("rid-{token}")),
            ],
            json!({"error": {"code": format!("Echo{token}"),
                             "message": format!("You sent Authorization: {auth}; token {token}")}})
            .to_string(),
        )
    });
    let envelope =
        json!({"asset": fake.asset("client_credentials"), "inputs": {"id": USER_ID}}).to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = process::run(
        &["-vv", "run", "get_presence"],
        envelope.as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 4, "{}", out.stdout);
    assert_eq!(fake.graph().len(), 1);
    fake::assert_no_secrets(&fake, &out.stdout);
    fake::assert_no_secrets(&fake, &out.stderr);
    assert!(
        out.stdout
            .contains("You sent Authorization: Bearer [REDACTED]"),
        "{}",
        out.stdout
    );
}
