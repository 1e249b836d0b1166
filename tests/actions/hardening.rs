//! Issue 19's remaining items through the real binary against the emulator: local
//! failures as kind `local` (exit 6), duplicate keys, control characters, integral
//! numbers, RFC 3339 offsets, proxy schemes and the proxy environment, and the store's
//! errors naming the file.

use serde_json::{Value, json};

use crate::support::emulator::{Emulator, EmulatorSetup, USER_ID};
use crate::support::fake;
use crate::support::process;

fn envelope(emu: &Emulator, inputs: Value) -> String {
    json!({"asset": emu.asset("client_credentials"), "inputs": inputs}).to_string()
}

/// A photo for a folder nobody can write in (here /proc, which refuses even root) is
/// `local`, exit 6, naming the folder, and no request is made.
#[test]
fn an_unwritable_output_folder_is_local_before_any_request() {
    let emu = EmulatorSetup::users(4).start();
    for (action, inputs) in [
        (
            "get_user_photo",
            json!({"id": emu.user_id(0), "output_path": "/proc/photo.jpg"}),
        ),
        (
            "pull_sign_ins",
            json!({"output_path": "/proc/sign-ins.jsonl"}),
        ),
    ] {
        let out = process::run(
            &["run", action],
            envelope(&emu, inputs).as_bytes(),
            emu.state.path(),
        );
        assert_eq!(out.code, 6, "{action}: {}\n{}", out.stdout, out.stderr);
        let e = &out.json()["error"];
        assert_eq!(e["kind"], "local", "{e}");
        assert!(e["message"].as_str().unwrap().contains("/proc"), "{e}");
        assert!(emu.log().is_empty(), "{action} sent requests");
    }
}

/// A corrupt store (here: not SQLite at all) is `local`, exit 6, naming the file:
/// the state database, and the presence store beside a sound state database.
#[test]
fn a_corrupt_store_is_local_naming_the_file() {
    let emu = EmulatorSetup::users(4).start();
    for file in ["state.sqlite3", "presence.sqlite3"] {
        let dir = tempfile::tempdir().unwrap();
        if file == "presence.sqlite3" {
            drop(msgraph_connector::state::StateDb::open(dir.path()).unwrap());
        }
        std::fs::write(dir.path().join(file), vec![b'x'; 8192]).unwrap();
        let out = process::run(
            &["run", "get_office_presence"],
            envelope(&emu, json!({"config_path": "examples/ip-presence.yaml"})).as_bytes(),
            dir.path(),
        );
        assert_eq!(out.code, 6, "{file}: {}\n{}", out.stdout, out.stderr);
        let e = &out.json()["error"];
        assert_eq!(e["kind"], "local");
        assert!(e["message"].as_str().unwrap().contains(file), "{e}");
    }
}

/// Duplicate keys are refused at the pointer of the repeated key, not last-wins.
#[test]
fn duplicate_keys_are_refused_at_their_pointer() {
    let emu = EmulatorSetup::users(2).start();
    let asset = emu.asset("client_credentials").to_string();
    for (text, pointer) in [
        (
            format!(r#"{{"asset": {asset}, "inputs": {{"id": "a", "id": "{USER_ID}"}}}}"#),
            "/inputs/id",
        ),
        (
            format!(r#"{{"inputs": {{"id": "{USER_ID}"}}, "asset": {asset}, "asset": {asset}}}"#),
            "/asset",
        ),
        (
            format!(
                r#"{{"asset": {}, "inputs": {{"id": "{USER_ID}"}}}}"#,
                asset.replacen("{", r#"{"client_id": "x", "#, 1)
            ),
            "/asset/client_id",
        ),
    ] {
        let out = process::run(&["run", "get_presence"], text.as_bytes(), emu.state.path());
        assert_eq!(out.code, 2, "{text}: {}", out.stdout);
        assert_eq!(out.json()["error"]["details"][0]["path"], pointer, "{text}");
    }
    // In a presence configuration file too, YAML or JSON.
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("c.yaml");
    std::fs::write(
        &yaml,
        "ranges:\n  - name: HQ\n    cidrs: [10.0.0.0/8]\n    location: HQ\n    location: Other\nusers: []\n",
    )
    .unwrap();
    let out = process::run(
        &["run", "evaluate_ip_presence"],
        json!({"inputs": {"config_path": yaml, "sign_ins": []}})
            .to_string()
            .as_bytes(),
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
    let message = out.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("/ranges/0/location"), "{message}");
    assert!(emu.log().is_empty());
}

/// A file named as config_path that is not a presence configuration is refused
/// without echoing its keys or values.
#[test]
fn a_foreign_config_file_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.yaml");
    std::fs::write(
        &foreign,
        "db_password_key: hunter2-value\nnested:\n  api_token: tok\n",
    )
    .unwrap();
    let deep = dir.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    for path in [&foreign, &deep] {
        let started = std::time::Instant::now();
        let out = process::run(
            &["run", "evaluate_ip_presence"],
            json!({"inputs": {"config_path": path, "sign_ins": []}})
                .to_string()
                .as_bytes(),
            dir.path(),
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(out.code, 2, "{}", out.stdout);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(text.contains("is not a presence configuration"), "{text}");
        for secret in ["db_password_key", "hunter2", "api_token"] {
            assert!(!text.contains(secret), "{secret} echoed: {text}");
        }
        assert_eq!(
            out.json()["error"]["details"][0]["path"],
            "/inputs/config_path"
        );
    }
}

/// CR, LF, NUL and other control characters are refused in ids, UPNs and filters at
/// their pointer, before any request.
#[test]
fn control_characters_are_refused_in_ids_and_filters() {
    let emu = EmulatorSetup::users(2).start();
    for (action, inputs, pointer) in [
        (
            "get_presence",
            json!({"id": format!("{USER_ID}\r\nX-Injected: 1")}),
            "/inputs/id",
        ),
        (
            "get_user",
            json!({"id": "a\u{0}b@contoso.example"}),
            "/inputs/id",
        ),
        (
            "get_presences",
            json!({"ids": [USER_ID, "x\ny"]}),
            "/inputs/ids/1",
        ),
        (
            "list_memberships",
            json!({"id": USER_ID, "filter": "a eq 'b'\n"}),
            "/inputs/filter",
        ),
        (
            "pull_sign_ins",
            json!({"filter": "status/errorCode ne 0\u{7f}"}),
            "/inputs/filter",
        ),
    ] {
        let out = process::run(
            &["run", action],
            envelope(&emu, inputs).as_bytes(),
            emu.state.path(),
        );
        assert_eq!(out.code, 2, "{action}: {}", out.stdout);
        assert_eq!(
            out.json()["error"]["details"][0]["path"],
            pointer,
            "{action}"
        );
    }
    assert!(emu.log().is_empty());
}

/// `1.0` is an integer to JSON Schema, so it is taken as one; `1.5` is refused at its
/// pointer; a `+25:00` offset is refused at its pointer.
#[test]
fn integral_numbers_and_offsets() {
    let emu = EmulatorSetup::users(2).start();
    let out = process::run(
        &["run", "pull_sign_ins"],
        envelope(&emu, json!({"top": 1.5})).as_bytes(),
        emu.state.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert_eq!(out.json()["error"]["details"][0]["path"], "/inputs/top");
    let out = process::run(
        &["run", "pull_sign_ins"],
        envelope(
            &emu,
            json!({"top": 10.0, "lookback_minutes": 5.0, "since": "2026-03-01T00:00:00Z"}),
        )
        .as_bytes(),
        emu.state.path(),
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let out = process::run(
        &["run", "pull_sign_ins"],
        envelope(&emu, json!({"since": "2026-03-01T00:00:00+25:00"})).as_bytes(),
        emu.state.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert_eq!(out.json()["error"]["details"][0]["path"], "/inputs/since");
}

/// Only http:// and https:// proxies: the rest (SOCKS, which this build cannot speak,
/// ftp, gopher) is refused at validation, exit 2 at /asset/http_proxy, no request.
#[test]
fn unsupported_proxy_schemes_are_refused_at_validation() {
    let emu = EmulatorSetup::users(2).start();
    for proxy in [
        "socks5://u:pw-do-not-print@127.0.0.1:1080",
        "ftp://proxy.corp",
        "gopher://proxy.corp:70",
    ] {
        let mut asset = emu.asset("client_credentials");
        asset["http_proxy"] = json!(proxy);
        let text = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
        let out = process::run(&["run", "get_presence"], text.as_bytes(), emu.state.path());
        assert_eq!(out.code, 2, "{proxy}: {}", out.stdout);
        assert_eq!(
            out.json()["error"]["details"][0]["path"],
            "/asset/http_proxy"
        );
        assert!(!out.stdout.contains("pw-do-not-print"));
    }
    assert!(emu.log().is_empty());
}

/// With no `http_proxy` in the asset, the standard environment variables are honoured
/// (`HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`, minus `NO_PROXY`); an asset's proxy
/// replaces them.
#[test]
fn the_proxy_environment_is_honoured_without_an_asset_proxy() {
    let proxy = fake::Fake::start(fake::simple);
    let mut asset = proxy.asset("client_credentials");
    // Hosts nobody answers on: only a proxy can carry these requests.
    asset["url"] = json!("http://localhost:9");
    asset["login_url"] = json!("http://localhost:9/login");
    let text = json!({"asset": asset, "inputs": {"id": USER_ID}}).to_string();
    let dir = tempfile::tempdir().unwrap();
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        let before = proxy.seen().len();
        let out = process::run_env(
            &["run", "get_presence"],
            text.as_bytes(),
            dir.path(),
            &[
                (var, proxy.base.as_str()),
                ("NO_PROXY", ""),
                ("no_proxy", ""),
            ],
        );
        assert_eq!(out.code, 0, "{var}: {}\n{}", out.stdout, out.stderr);
        assert!(
            proxy.seen().len() > before,
            "{var}: the proxy carried the requests"
        );
    }
    // NO_PROXY exempts the host: the request goes direct, to nobody.
    let before = proxy.seen().len();
    let out = process::run_env(
        &["--no-token-cache", "run", "get_presence"],
        text.as_bytes(),
        dir.path(),
        &[
            ("HTTP_PROXY", proxy.base.as_str()),
            ("NO_PROXY", "localhost"),
        ],
    );
    assert_eq!(out.code, 5, "{}", out.stdout);
    assert_eq!(proxy.seen().len(), before);
}
