//! What the tests assert again and again: the contract's error shapes, the request
//! log as readable lines, no secret in the output.

use graph_emulator::LogEntry;

use super::emulator::Emulator;
use super::process::Outcome;

/// `(method, path, query)` of a log entry, query percent-decoded for readability.
pub fn line(e: &LogEntry) -> (String, String, String) {
    (
        e.method.clone(),
        decode(&e.path),
        e.query.as_deref().map(decode).unwrap_or_default(),
    )
}

/// `s` with its `%XX` escapes decoded.
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
pub fn assert_invalid(emu: &Emulator, out: &Outcome, pointer: &str) {
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
    assert!(emu.log().is_empty(), "requests were made: {:?}", emu.log());
}

/// Neither stdout nor stderr contains `secret`.
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

/// `output_path`s an action must refuse before any request (issue 19, item 2), made
/// under `scratch`, with what each one is: a directory, a FIFO, a symbolic link to
/// the FIFO, a dangling link, the store in `state_dir` (written here as a stand-in
/// whose content must survive), a new name in `state_dir`, and a link to the store.
/// No character device: the old code, run as root, would replace /dev/null itself.
pub fn refused_output_paths(
    state_dir: &std::path::Path,
    scratch: &std::path::Path,
) -> Vec<(std::path::PathBuf, &'static str)> {
    use std::os::unix::fs::symlink;
    let store = state_dir.join("presence.sqlite3");
    if !store.exists() {
        std::fs::write(&store, "the store").unwrap();
    }
    let fifo = scratch.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    symlink(&fifo, scratch.join("to-fifo")).unwrap();
    symlink(scratch.join("nothing"), scratch.join("dangling")).unwrap();
    symlink(&store, scratch.join("to-store")).unwrap();
    std::fs::create_dir(scratch.join("dir")).unwrap();
    vec![
        (scratch.join("dir"), "a directory"),
        (fifo, "a FIFO"),
        (scratch.join("to-fifo"), "a FIFO"),
        (scratch.join("dangling"), "to nothing"),
        (store, "inside the state dir"),
        (state_dir.join("new.out"), "inside the state dir"),
        (scratch.join("to-store"), "inside the state dir"),
    ]
}

/// [`assert_invalid`] at `/inputs/output_path`, the message saying `why`.
pub fn assert_output_path_refused(emu: &Emulator, out: &Outcome, why: &str) {
    assert_invalid(emu, out, "/inputs/output_path");
    let message = out.json()["error"]["details"][0]["message"].to_string();
    assert!(message.contains(why), "{why}: {message}");
}
