//! `pull_sign_ins`: the sign-ins created since the last run, each exactly once.
//!
//! Graph: `GET /auditLogs/signIns?$filter=createdDateTime ge ...&$top=...`
//! (AuditLog.Read.All + Directory.Read.All, and an Entra ID P1/P2 tenant), paced
//! by the HTTP layer to the audit-log limit of 5 requests / 10 s. The cursor
//! logic and why it neither loses nor repeats late sign-ins: [`crate::signins`].
//!
//! State: what the run prints under `state`, and, with a state dir, the same cursor
//! kept in the state database ([`crate::state`], key `pull_sign_ins.cursor.<hash of
//! Graph URL, token URL, client id and filter>`: one cursor per tenant, app and filter). The envelope's `state` wins over the kept one. Neither is advanced unless
//! the run completed: with `output_path`, records go to a temporary file beside it
//! that is renamed into place only at the end, and the cursor is kept only after that,
//! so a killed run leaves no half file and no moved cursor; its rerun delivers the
//! same records again. (A crash between the rename and the store write does that too:
//! the one window where a record can come twice, inherent to a file and a cursor kept
//! apart.)

use std::io::IsTerminal;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::inputs::parse_time;
use crate::jsonl::{PartialFile, check_output_path};

/// A progress step every this many sign-ins read (when the caller asked for progress).
pub const PROGRESS_EVERY: u64 = 1000;
use crate::signins::{self, KeptCursor, PullOptions, SignInCursor, Window, WindowKind};
use crate::state::StateDb;

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
    /// Write the sign-ins as JSON lines to this file (replaced when the pull completes, mode
    /// 0600) instead of returning them in `value`; memory then stays flat whatever the volume.
    /// It must be a regular file or a new name in an existing directory, outside the state dir.
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
        writes_local_state: LocalWrites::Advances,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        if let Some(p) = &input.output_path {
            check_output_path(
                Path::new(p),
                ctx.state_dir.as_deref(),
                "/inputs/output_path",
            )?;
        }
        let graph = ctx.graph()?;
        let since = parse_time(input.since.as_deref(), "/inputs/since")?;
        let until = parse_time(input.until.as_deref(), "/inputs/until")?;
        let filter = input.filter.as_deref();
        if let Some(f) = filter {
            signins::check_user_filter(f).map_err(|e| e.under("/inputs/filter"))?;
        }
        let db = ctx.state_dir.as_deref().map(StateDb::open).transpose()?;
        let key = signins::cursor_key(graph.asset(), filter);
        let kept = db.as_ref().map(|db| KeptCursor { db, key: &key });
        let cursor = start_cursor(ctx.state.as_ref(), kept.as_ref(), filter, since, until)?;
        cursor
            .check_until(until)
            .map_err(|e| e.under("/inputs/until"))?;

        let mut sink = match &input.output_path {
            Some(p) => Sink::File(PartialFile::create(Path::new(p), "/inputs/output_path")?),
            None => Sink::Inline(Vec::new()),
        };
        let options = PullOptions {
            lookback: SignedDuration::from_mins(i64::from(input.lookback_minutes)),
            until,
            top: input.top,
            max_records: input.max_records,
            progress: std::io::stderr().is_terminal(),
        };
        let mut read = 0u64;
        let pulled = signins::pull(graph, cursor, filter, &options, |record| {
            read += 1;
            ctx.progress.count(read, PROGRESS_EVERY, "sign-ins read");
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
            tracing::warn!(error = %e.message, "cannot keep the sign-in cursor");
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
fn start_cursor(
    envelope: Option<&Value>,
    kept: Option<&KeptCursor>,
    filter: Option<&str>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<SignInCursor> {
    let stored = match (envelope, kept) {
        (Some(state), _) => Some(SignInCursor::from_json(state).map_err(|e| e.under("/state"))?),
        (None, Some(kept)) => kept.load().map_err(|e| e.under("/state"))?,
        (None, None) => None,
    };
    match stored {
        Some(cursor) => {
            if cursor.filter.as_deref() != filter {
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
            let cursor = SignInCursor::fresh(since, filter.map(str::to_string))?;
            if let Some(u) = until
                && u < cursor.window_start
            {
                return Err(Error::invalid("/inputs/until", "is before `since`"));
            }
            Ok(cursor)
        }
    }
}

/// Where the records go: the result's `value`, or an output file.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_state_is_used_unless_the_envelope_has_one_and_corruption_is_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let kept = KeptCursor { db: &db, key: "x" };
        let since = Some("2026-01-01T00:00:00Z".parse().unwrap());
        // Nothing kept: a fresh cursor from `since`.
        let c = start_cursor(None, Some(&kept), None, since, None).unwrap();
        assert_eq!(c.window_start.to_string(), "2026-01-01T00:00:00Z");
        let mut newer = c.clone();
        newer.window_start = "2026-02-01T00:00:00Z".parse().unwrap();
        kept.keep(&newer).unwrap();
        assert_eq!(
            start_cursor(None, Some(&kept), None, since, None).unwrap(),
            newer
        );
        // The envelope wins.
        let env = c.to_json();
        assert_eq!(
            start_cursor(Some(&env), Some(&kept), None, since, None).unwrap(),
            c
        );
        // Another filter is another cursor; a kept one with the wrong filter is refused.
        let e = start_cursor(None, Some(&kept), Some("x eq 1"), since, None).unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/filter");
        db.put("x", "{\"version\": 1, \"window_").unwrap();
        let e = start_cursor(None, Some(&kept), None, since, None).unwrap_err();
        assert_eq!((e.exit_code(), e.details[0].path.as_str()), (2, "/state"));
        assert!(e.message.contains(StateDb::FILE_NAME), "{}", e.message);
        // Only the state database is in the state dir.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| n.starts_with(StateDb::FILE_NAME)),
            "{names:?}"
        );
    }

    #[test]
    fn until_before_since_is_refused() {
        let since = Some("2026-01-01T00:00:00Z".parse().unwrap());
        let until = Some("2025-12-31T00:00:00Z".parse().unwrap());
        let e = start_cursor(None, None, None, since, until).unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/until");
    }

    #[test]
    fn times_must_carry_an_offset() {
        assert!(parse_time(Some("2024-05-01T00:00:00Z"), "/inputs/since").is_ok());
        let e = parse_time(Some("2024-05-01"), "/inputs/since").unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/since");
    }
}
