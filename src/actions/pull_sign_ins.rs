//! `pull_sign_ins`: the sign-ins created since the last run, each exactly once.
//!
//! Graph: `GET /auditLogs/signIns?$filter=createdDateTime ge ...&$top=...`
//! (AuditLog.Read.All + Directory.Read.All, and an Entra ID P1/P2 tenant), paced
//! by the HTTP layer to the audit-log limit of 5 requests / 10 s. The cursor
//! logic and why it neither loses nor repeats late sign-ins: [`crate::graph::signins`].
//!
//! State: what the run prints under `state`, and, with a state dir, the same cursor
//! kept in the embedded store (its kv table, key `pull_sign_ins.cursor.<hash of Graph
//! URL, token URL, client id and filter>`: one cursor per tenant, app and filter; no
//! file of its own, as the contract keeps the state dir to the token cache and the
//! store). The envelope's `state` wins over the kept one. Neither is advanced unless
//! the run completed: with `output_path`, records go to a temporary file beside it
//! that is renamed into place only at the end, and the cursor is kept only after that,
//! so a killed run leaves no half file and no moved cursor; its rerun delivers the
//! same records again. (A crash between the rename and the store write does that too:
//! the one window where a record can come twice, inherent to a file and a cursor kept
//! apart.)

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, ActionMeta, Context, Reply, parse_time, sign_in_cursor};
use crate::error::{Error, Result};
use crate::graph::signins::{self, PullOptions, SignInCursor, Window, WindowKind};
use ip_presence::PresenceStore;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// First run only (no state): read sign-ins created at or after this time (RFC 3339,
    /// e.g. 2024-05-01T00:00:00Z). Default: 24 hours ago. Ignored once a state exists.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub since: Option<String>,
    /// Read nothing created after this time (RFC 3339); later sign-ins are left for a later run.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,
    /// How late (after createdDateTime) a sign-in may appear in Graph and still be
    /// delivered. Graph shows sign-ins minutes, sometimes 15-30 minutes, late.
    #[serde(default = "default_lookback")]
    #[schemars(range(min = 0, max = 10080))]
    pub lookback_minutes: u32,
    /// OData filter ANDed with the time window, e.g. `status/errorCode ne 0` or
    /// `appDisplayName eq 'Office 365 Exchange Online'`. Must not mention createdDateTime
    /// (use since/until). Part of the state: a state is refused with a different filter.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub filter: Option<String>,
    /// Page size (Graph's $top), at most 1000.
    #[serde(default = "default_top")]
    #[schemars(range(min = 1, max = 1000))]
    pub top: u32,
    /// Deliver at most this many; the rest (older ones first left) comes in the next runs.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_records: Option<u64>,
    /// Write the sign-ins as JSON lines to this file (replaced when the pull completes)
    /// instead of returning them in `value`; memory then stays flat whatever the volume.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub output_path: Option<String>,
}

fn default_lookback() -> u32 {
    30
}

fn default_top() -> u32 {
    signins::MAX_TOP
}

/// One `$filter`ed listing the run made.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WindowRead {
    /// `createdDateTime ge` this.
    pub from: String,
    /// `createdDateTime le` this, when bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// `live` (new sign-ins) or `backlog` (older ones a max_records cut left).
    pub kind: String,
}

impl From<&Window> for WindowRead {
    fn from(w: &Window) -> Self {
        WindowRead {
            from: w.from.to_string(),
            until: w.until.map(|u| u.to_string()),
            kind: match w.kind {
                WindowKind::Live => "live",
                WindowKind::Backlog => "backlog",
            }
            .to_string(),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The new sign-ins, newest first within each window (absent with `output_path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Vec<Value>>,
    /// The file the sign-ins were written to, one JSON object a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    /// Sign-ins delivered by this run.
    pub records: u64,
    /// Pages read from Graph.
    pub pages: u64,
    /// Sign-ins Graph listed again that an earlier run had delivered.
    pub duplicates_dropped: u64,
    /// `max_records` stopped the run: run again for the rest.
    pub truncated: bool,
    /// The newest createdDateTime ever delivered (the state's cursor).
    pub cursor: Option<String>,
    pub windows: Vec<WindowRead>,
}

pub struct PullSignIns;

impl Action for PullSignIns {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "pull_sign_ins",
        title: "Pull sign-ins",
        description: "Incrementally read the sign-in log: each run returns the sign-ins not delivered before, each exactly once, re-reading a lookback window for sign-ins Graph shows late. Keep the returned state for the next run.",
        permissions: &[&["AuditLog.Read.All"], &["Directory.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: true,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        let since = parse_time(input.since.as_deref(), "/inputs/since")?;
        let until = parse_time(input.until.as_deref(), "/inputs/until")?;
        if let Some(f) = &input.filter {
            signins::check_user_filter(f).map_err(|e| e.under("/inputs/filter"))?;
        }
        let kept = match ctx.state_dir.as_deref() {
            Some(dir) => Some(KeptCursor::open(
                dir,
                graph.asset(),
                input.filter.as_deref(),
            )?),
            None => None,
        };
        let cursor = load_cursor(ctx.state.as_ref(), kept.as_ref(), &input, since, until)?;
        cursor
            .check_until(until)
            .map_err(|e| e.under("/inputs/until"))?;

        let mut sink = match &input.output_path {
            Some(p) => Sink::File(PartialFile::create(Path::new(p))?),
            None => Sink::Inline(Vec::new()),
        };
        let options = PullOptions {
            lookback: SignedDuration::from_mins(i64::from(input.lookback_minutes)),
            until,
            top: input.top,
            max_records: input.max_records,
            progress: std::io::stderr().is_terminal(),
        };
        let pulled = signins::pull(graph, cursor, input.filter.as_deref(), &options, |record| {
            sink.push(record)
        })
        .await;
        let outcome = match pulled {
            Ok(o) => o,
            Err(e) => {
                sink.abandon();
                return Err(e);
            }
        };
        let (value, output_path) = match sink {
            Sink::Inline(v) => (Some(v), None),
            Sink::File(f) => (None, Some(f.commit()?)),
        };
        // Only now that the output is in place: a run that failed moved nothing.
        if let Some(kept) = &kept
            && let Err(e) = kept.keep(&outcome.cursor)
        {
            tracing::warn!(store = %kept.store.path().display(), error = %e.message, "cannot keep the sign-in cursor in the store");
        }
        let state = outcome.cursor.to_json();
        let body = Output {
            value,
            output_path,
            records: outcome.stats.records,
            pages: outcome.stats.pages,
            duplicates_dropped: outcome.stats.duplicates_dropped,
            truncated: outcome.stats.truncated,
            cursor: outcome.cursor.cursor.map(|c| c.to_string()),
            windows: outcome.windows.iter().map(WindowRead::from).collect(),
        };
        Ok(Reply::ok(body)
            .with_headers(outcome.headers)
            .with_state(state))
    }
}

/// The cursor to start from: the envelope's state, else the kept one, else a fresh one.
fn load_cursor(
    envelope: Option<&Value>,
    kept: Option<&KeptCursor>,
    input: &Input,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<SignInCursor> {
    let stored = match (envelope, kept) {
        (Some(state), _) => Some(SignInCursor::from_json(state, "/state")?),
        (None, Some(kept)) => kept.load()?,
        (None, None) => None,
    };
    match stored {
        Some(cursor) => {
            if cursor.filter != input.filter {
                return Err(Error::invalid(
                    "/inputs/filter",
                    format!(
                        "differs from the filter the state was built with ({}); a cursor says \
                         nothing about sign-ins another filter left out: keep the filter, or \
                         start a new state",
                        cursor
                            .filter
                            .as_deref()
                            .map_or("none".into(), |f| format!("{f:?}"))
                    ),
                ));
            }
            Ok(cursor)
        }
        None => {
            let cursor = sign_in_cursor::fresh(since, input.filter.clone())?;
            if let Some(u) = until
                && u < cursor.window_start
            {
                return Err(Error::invalid("/inputs/until", "is before `since`"));
            }
            Ok(cursor)
        }
    }
}

/// The cursor kept in the embedded store under the state dir: one per tenant, app and
/// filter, so that runs for different tenants or filters sharing a state dir do not
/// mix their cursors.
struct KeptCursor {
    store: PresenceStore,
    key: String,
}

impl KeptCursor {
    fn open(dir: &Path, asset: &crate::asset::Asset, filter: Option<&str>) -> Result<Self> {
        let store = PresenceStore::open(dir).map_err(|e| {
            Error::invalid(
                "",
                format!(
                    "cannot open the store in the state dir {} to keep the sign-in cursor: {e} \
                     (give a writable --state-dir)",
                    dir.display()
                ),
            )
        })?;
        Ok(KeptCursor {
            store,
            key: cursor_key(asset, filter),
        })
    }

    fn load(&self) -> Result<Option<SignInCursor>> {
        sign_in_cursor::load(&self.store, &self.key)
    }

    fn keep(&self, cursor: &SignInCursor) -> Result<()> {
        sign_in_cursor::keep(&self.store, &self.key, cursor)
    }
}

/// The kv key of the cursor of one tenant, app and filter.
fn cursor_key(asset: &crate::asset::Asset, filter: Option<&str>) -> String {
    let key = format!(
        "{}\n{}\n{}\n{}",
        asset.graph_url,
        asset.token_url,
        asset.client_id,
        filter.unwrap_or("")
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("pull_sign_ins.cursor.{hex}")
}

enum Sink {
    Inline(Vec<Value>),
    File(PartialFile),
}

impl Sink {
    fn push(&mut self, record: &Value) -> Result<()> {
        match self {
            Sink::Inline(v) => {
                v.push(record.clone());
                Ok(())
            }
            Sink::File(f) => f.write(record),
        }
    }

    fn abandon(self) {
        if let Sink::File(f) = self {
            f.abandon();
        }
    }
}

/// JSON lines written beside the target and renamed onto it only when complete.
struct PartialFile {
    target: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
}

impl PartialFile {
    fn create(target: &Path) -> Result<Self> {
        let bad = |m: String| Error::invalid("/inputs/output_path", m);
        let name = target
            .file_name()
            .ok_or_else(|| bad("names no file".into()))?
            .to_string_lossy()
            .into_owned();
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if target.is_dir() {
            return Err(bad(format!("{} is a directory", target.display())));
        }
        let prefix = format!(".{name}.partial-");
        remove_stale_partials(&dir, &prefix);
        let tmp = dir.join(format!("{prefix}{}", std::process::id()));
        let file = File::create(&tmp)
            .map_err(|e| bad(format!("cannot create a file in {}: {e}", dir.display())))?;
        Ok(PartialFile {
            target: target.to_path_buf(),
            tmp,
            out: BufWriter::with_capacity(256 * 1024, file),
        })
    }

    fn write(&mut self, record: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| self.io_error(e))
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::invalid(
            "/inputs/output_path",
            format!("cannot write {}: {e}", self.tmp.display()),
        )
    }

    /// Flush, sync and rename onto the target; the path written.
    fn commit(self) -> Result<String> {
        let PartialFile { target, tmp, out } = self;
        let done = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &target));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::invalid(
                "/inputs/output_path",
                format!("cannot complete {}: {e}", target.display()),
            ));
        }
        Ok(target.display().to_string())
    }

    fn abandon(self) {
        drop(self.out);
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Partial files of runs that were killed (their process is gone). Linux only: elsewhere
/// there is no cheap way to tell a dead writer from a live one, so they are left.
fn remove_stale_partials(dir: &Path, prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        // A leftover of a killed run whose process is gone.
        let stale = dir.path().join(".out.jsonl.partial-4000000000");
        std::fs::write(&stale, "{\"id\":").unwrap();
        let mut f = PartialFile::create(&target).unwrap();
        assert!(!stale.exists());
        f.write(&json!({"id": "a"})).unwrap();
        f.write(&json!({"id": "b"})).unwrap();
        assert!(!target.exists());
        f.commit().unwrap();
        let text = std::fs::read_to_string(&target).unwrap();
        assert_eq!(text, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut f = PartialFile::create(&target).unwrap();
        f.write(&json!({"id": "c"})).unwrap();
        f.abandon();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn output_path_in_a_missing_directory_is_invalid_input() {
        let e = PartialFile::create(Path::new("/nonexistent-dir/x.jsonl"))
            .err()
            .unwrap();
        assert_eq!(e.details[0].path, "/inputs/output_path");
    }

    fn input(filter: Option<&str>) -> Input {
        serde_json::from_value(json!({"filter": filter})).unwrap()
    }

    fn kept(dir: &Path, key: &str) -> KeptCursor {
        KeptCursor {
            store: PresenceStore::open(dir).unwrap(),
            key: key.into(),
        }
    }

    #[test]
    fn kept_state_is_used_unless_the_envelope_has_one_and_corruption_is_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let kept = kept(dir.path(), "x");
        let since = Some("2026-01-01T00:00:00Z".parse().unwrap());
        // Nothing kept: a fresh cursor from `since`.
        let c = load_cursor(None, Some(&kept), &input(None), since, None).unwrap();
        assert_eq!(c.window_start.to_string(), "2026-01-01T00:00:00Z");
        let mut newer = c.clone();
        newer.window_start = "2026-02-01T00:00:00Z".parse().unwrap();
        kept.keep(&newer).unwrap();
        assert_eq!(
            load_cursor(None, Some(&kept), &input(None), since, None).unwrap(),
            newer
        );
        // The envelope wins.
        let env = c.to_json();
        assert_eq!(
            load_cursor(Some(&env), Some(&kept), &input(None), since, None).unwrap(),
            c
        );
        // Another filter is another cursor; a kept one with the wrong filter is refused.
        let e = load_cursor(None, Some(&kept), &input(Some("x eq 1")), since, None).unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/filter");
        kept.store
            .put_value("x", "{\"version\": 1, \"window_")
            .unwrap();
        let e = load_cursor(None, Some(&kept), &input(None), since, None).unwrap_err();
        assert_eq!((e.exit_code(), e.details[0].path.as_str()), (2, "/state"));
        assert!(
            e.message.contains(PresenceStore::FILE_NAME),
            "{}",
            e.message
        );
        // Only the store is in the state dir.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with(PresenceStore::FILE_NAME)),
            "{names:?}"
        );
    }

    #[test]
    fn until_before_since_is_refused() {
        let since = Some("2026-01-01T00:00:00Z".parse().unwrap());
        let until = Some("2025-12-31T00:00:00Z".parse().unwrap());
        let e = load_cursor(None, None, &input(None), since, until).unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/until");
    }

    #[test]
    fn cursor_keys_differ_by_tenant_app_and_filter() {
        let asset = |client: &str| {
            serde_json::from_value::<crate::asset::AssetSpec>(json!({
                "type": "oauth2_client_credentials", "url": "http://127.0.0.1:9",
                "token_url": "http://127.0.0.1:9/token", "client_id": client,
                "client_secret": "s"}))
            .unwrap()
            .into_asset()
            .unwrap()
        };
        let a = cursor_key(&asset("a"), None);
        assert!(a.starts_with("pull_sign_ins.cursor."), "{a}");
        assert_eq!(a, cursor_key(&asset("a"), None));
        assert_ne!(a, cursor_key(&asset("b"), None));
        assert_ne!(a, cursor_key(&asset("a"), Some("status/errorCode ne 0")));
    }

    #[test]
    fn times_must_carry_an_offset() {
        assert!(parse_time(Some("2024-05-01T00:00:00Z"), "/inputs/since").is_ok());
        let e = parse_time(Some("2024-05-01"), "/inputs/since").unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/since");
    }
}
