//! Run the real binary as a platform would: an envelope on stdin, a clean
//! environment, a state dir of the test's own.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The connector binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_msgraph-connector");

/// What one process run produced.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// stdout parsed as the one JSON object the contract promises.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Run `msgraph-connector ARGS` with `stdin` piped in, in a clean environment
/// (no Turbine variables, no RUST_LOG) and with `--state-dir` set to `state_dir`.
pub fn run(args: &[&str], stdin: &[u8], state_dir: &Path) -> Outcome {
    run_env(args, stdin, state_dir, &[])
}

/// [`run`] with these environment variables set.
pub fn run_env(args: &[&str], stdin: &[u8], state_dir: &Path, env: &[(&str, &str)]) -> Outcome {
    finish(spawn(args, stdin, state_dir, env))
}

/// Start what [`run_env`] runs, its envelope written and its output piped, and leave
/// it running (to kill it, or to watch it).
pub fn spawn(args: &[&str], stdin: &[u8], state_dir: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env_remove("ASSET_KEYS")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the connector binary starts");
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        // The child may refuse early and close stdin; that is not a test failure.
        let _ = input.write_all(stdin);
    }
    child
}

/// Wait for a [`spawn`]ed run to end: what it printed and its exit status (-1 when a
/// signal ended it).
pub fn finish(child: Child) -> Outcome {
    let out = child
        .wait_with_output()
        .expect("the connector binary finishes");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `run ACTION` with an envelope built from parts.
pub fn run_action(action: &str, asset: &Value, inputs: &Value, state_dir: &Path) -> Outcome {
    let envelope = serde_json::json!({ "asset": asset, "inputs": inputs });
    run(&["run", action], envelope.to_string().as_bytes(), state_dir)
}

/// [`run`], killing the connector and failing the test if it has not finished
/// within `limit` (for inputs the old code hung on: a FIFO, /dev/zero).
pub fn run_within(
    args: &[&str],
    stdin: &[u8],
    state_dir: &Path,
    limit: std::time::Duration,
) -> Outcome {
    let mut child = Command::new(BIN)
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env_remove("ASSET_KEYS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the connector binary starts");
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        let _ = input.write_all(stdin);
    }
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait for the connector").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("msgraph-connector {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .expect("the connector binary finishes");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
