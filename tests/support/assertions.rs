//! Shared by `tests/actions_*.rs`: an emulator on loopback and the real binary
//! run against it, with the request log to assert which calls were made.
#![allow(dead_code)]

use graph_emulator::{
    self as emulator, EmulatorConfig, GenerateSpec, LogEntry, READ_APP_CLIENT_ID, READ_APP_SECRET,
    RunningEmulator, Tenant, ThrottleConfig,
};
use serde_json::{Value, json};

use crate::common::{self, Outcome};

pub struct Emu {
    pub emu: RunningEmulator,
    pub tenant: Tenant,
    pub state: tempfile::TempDir,
}

/// A generated tenant of `users` users, served on 127.0.0.1 with throttling off.
pub fn start(users: usize) -> Emu {
    let tenant = Tenant::generate(&GenerateSpec {
        users,
        sign_ins: 0,
        seed: 7,
        day: None,
    });
    let mut config = EmulatorConfig::new(tenant.clone());
    config.throttle = ThrottleConfig::off();
    let emu = emulator::start_in_background("127.0.0.1:0".parse().unwrap(), config)
        .expect("the emulator starts");
    Emu {
        emu,
        tenant,
        state: tempfile::tempdir().unwrap(),
    }
}

impl Emu {
    /// The full-permission app's asset.
    pub fn asset(&self) -> Value {
        self.emu.asset_json("client_credentials").unwrap()
    }

    /// The app with only `User.Read.All`.
    pub fn read_only_asset(&self) -> Value {
        let mut a = self.asset();
        a["client_id"] = json!(READ_APP_CLIENT_ID);
        a["client_secret"] = json!(READ_APP_SECRET);
        a
    }

    pub fn run(&self, action: &str, inputs: Value) -> Outcome {
        self.run_as(&self.asset(), action, inputs)
    }

    /// Runs with a fresh state dir each time when `asset` is not the default one,
    /// so a cached token of another app is never reused.
    pub fn run_as(&self, asset: &Value, action: &str, inputs: Value) -> Outcome {
        if asset == &self.asset() {
            common::run_action(action, asset, &inputs, self.state.path())
        } else {
            let dir = tempfile::tempdir().unwrap();
            common::run_action(action, asset, &inputs, dir.path())
        }
    }

    /// Graph requests (token requests left out) since the last clear.
    pub fn graph_log(&self) -> Vec<LogEntry> {
        self.emu
            .request_log()
            .snapshot()
            .into_iter()
            .filter(|e| e.family != "token")
            .collect()
    }

    pub fn all_log(&self) -> Vec<LogEntry> {
        self.emu.request_log().snapshot()
    }

    pub fn clear_log(&self) {
        self.emu.request_log().clear();
    }

    pub fn user_id(&self, i: usize) -> String {
        self.tenant.users[i].id.to_string()
    }

    pub fn upn(&self, i: usize) -> String {
        self.tenant.users[i].user_principal_name.to_string()
    }

    /// Index of the user with this UPN.
    pub fn index_of(&self, upn: &str) -> usize {
        self.tenant
            .users
            .iter()
            .position(|u| u.user_principal_name == upn)
            .unwrap_or_else(|| panic!("no user {upn}"))
    }
}

/// `(method, path, query)` of a log entry, query percent-decoded for readability.
pub fn line(e: &LogEntry) -> (String, String, String) {
    (
        e.method.clone(),
        decode(&e.path),
        e.query.as_deref().map(decode).unwrap_or_default(),
    )
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// An exit-4 Graph error with `code` and a request id.
pub fn assert_graph_error(out: &Outcome, status: u16, code: &str) {
    assert_eq!(
        out.code, 4,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let e = &out.json()["error"];
    assert_eq!(e["kind"], "graph", "{e}");
    assert_eq!(e["status_code"], status, "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert!(
        e["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{e}"
    );
}

/// An exit-2 error naming `pointer`, with no request at all (not even a token).
pub fn assert_invalid(emu: &Emu, out: &Outcome, pointer: &str) {
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let e = &out.json()["error"];
    assert_eq!(e["kind"], "invalid_input", "{e}");
    let paths: Vec<&str> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&pointer), "{paths:?} lacks {pointer}");
    assert!(
        emu.all_log().is_empty(),
        "requests were made: {:?}",
        emu.all_log()
    );
}

pub fn no_secret_in(out: &Outcome, secret: &str) {
    assert!(
        !out.stdout.contains(secret),
        "stdout leaks it: {}",
        out.stdout
    );
    assert!(
        !out.stderr.contains(secret),
        "stderr leaks it: {}",
        out.stderr
    );
}
