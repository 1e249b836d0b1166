//! `pull_sign_ins`: the sign-ins created since the last run, each exactly once.
//!
//! Graph: `GET /auditLogs/signIns?$filter=createdDateTime ge ...&$top=...`
//! (AuditLog.Read.All + Directory.Read.All, and an Entra ID P1/P2 tenant), paced
//! by the HTTP layer to the audit-log limit of 5 requests / 10 s. The cursor
//! logic and why it neither loses nor repeats late sign-ins: [`crate::signins`].
//!
//! `event_types` (default: interactive only) picks the sign-ins: v1.0 lists interactive
//! ones; the others come from `beta` with `signInEventTypes/any(t: t eq '...')` ANDed
//! with the time window ([`crate::signins::EventType`]). Interactive stays the default:
//! it is what v1.0 (and every earlier version of this action) returns, stored states
//! and cursors carry on unchanged, and non-interactive sign-ins are many times the
//! volume and only on beta, so a playbook asks for them. Each event type has its own
//! cursor (in the state and in the state database).
//!
//! State: what the run prints under `state`, and, with a state dir, the same cursor
//! kept in the state database ([`crate::state`], key `pull_sign_ins.cursor.<hash of
//! Graph URL, token URL, client id and filter>`: one cursor per tenant, app and filter). The envelope's `state` wins over the kept one. Neither is advanced unless
//! the run completed: with `output_path`, records go to a temporary file beside it
//! that is renamed into place only at the end, and the cursor is kept only after that,
//! so a killed run leaves no half file and no moved cursor; its rerun delivers the
//! same records again. (A crash between the rename and the store write does that too:
//! the one window where a record can come twice, inherent to a file and a cursor kept
//! apart.) With a state dir, one run at a time uses a kept cursor: a run takes the
//! cursor's lease ([`crate::state::lease`]) before reading it, and a second run waits up
//! to `lease_wait_seconds`, then ends successfully with `skipped` and nothing changed.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::inputs::parse_time;
use crate::jsonl::{PartialFile, check_output_path};

use crate::graph::GraphClient;
use crate::signins::{
    self, CursorOf, EventType, KeptCursor, LostSpan, PullOptions, SignInCursor, SignInCursors,
    Window, WindowKind,
};
use crate::state::{CursorLease, LeaseOutcome, StateStore};

/// A progress step every this many sign-ins read (when the caller asked for progress).
pub const PROGRESS_EVERY: u64 = 1000;

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
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub filter: Option<String>,
    /// Page size (Graph's $top), at most 1000.
    #[serde(default = "default_top")]
    #[schemars(range(min = 1, max = 1000))]
    pub top: u32,
    /// Deliver at most this many; the rest (older ones first left) comes in the next runs.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_records: Option<u64>,
    /// Which sign-ins: `interactiveUser` (v1.0), and from Graph's beta endpoint
    /// `nonInteractiveUser` (token refreshes, background sync: most of a working day),
    /// `servicePrincipal`, `managedIdentity`. Each has its own cursor.
    #[serde(default = "default_event_types")]
    #[schemars(length(min = 1, max = 4), extend("uniqueItems" = true))]
    pub event_types: Vec<EventType>,
    /// Write the sign-ins as JSON lines to this file (replaced when the pull completes, mode
    /// 0600) instead of returning them in `value`; memory then stays flat whatever the volume.
    /// It must be a regular file or a new name in an existing directory, outside the state dir.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub output_path: Option<String>,
    /// With a state dir: how long to wait while another run pulls with the same cursor
    /// (same tenant, app and filter) before ending without reading anything, successfully,
    /// with `skipped` saying why. One run at a time per cursor delivers each sign-in once.
    #[serde(default = "default_lease_wait")]
    #[schemars(range(min = 0, max = 3600))]
    pub lease_wait_seconds: u32,
}

fn default_event_types() -> Vec<EventType> {
    vec![EventType::InteractiveUser]
}

fn default_lookback() -> u32 {
    30
}

/// Half a minute: a scheduler's five-minute runs overlap only when one is slow, and the
/// later one should then step aside rather than wait for long.
pub fn default_lease_wait() -> u32 {
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
    /// The sign-ins listed.
    pub event_type: EventType,
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
            event_type: w.event_type,
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
    /// The newest createdDateTime ever delivered, of any event type.
    pub cursor: Option<String>,
    /// The newest createdDateTime delivered per event type (the state's cursors).
    pub cursors: std::collections::BTreeMap<EventType, Option<String>>,
    pub windows: Vec<WindowRead>,
    /// Present when the run read nothing because another run held the cursor's lease
    /// past `lease_wait_seconds` (`lease held by another run: ...`); nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Sign-ins the state or `since` still wanted that Graph no longer keeps (30 days
    /// with Entra ID P1/P2; no filter may reach back more than 90): the span given up.
    /// The cursor now starts at its end. Absent when nothing was lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_to_retention: Option<LostSpan>,
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
        // Bad inputs are refused before a lease is taken (and read again below).
        parse_time(input.since.as_deref(), "/inputs/since")?;
        parse_time(input.until.as_deref(), "/inputs/until")?;
        let filter = input.filter.as_deref();
        if let Some(f) = filter {
            signins::check_user_filter(f).map_err(|e| e.under("/inputs/filter"))?;
        }
        let db = ctx.state_store()?;
        let types = &input.event_types;
        let keys: Vec<(EventType, String)> = types
            .iter()
            .map(|&t| {
                let of = CursorOf::Pull {
                    asset: graph.asset(),
                    filter,
                };
                (t, signins::cursor_key(of, t))
            })
            .collect();
        // One run at a time per kept cursor, its leases taken (in the order of the event
        // types, so two runs never wait on each other crosswise) before a cursor is read.
        let wait = Duration::from_secs(input.lease_wait_seconds.into());
        let mut leases = Vec::new();
        if let Some(db) = &db {
            for (_, key) in &keys {
                match CursorLease::acquire(db, key, wait).await? {
                    LeaseOutcome::Held(lease) => leases.push(lease),
                    LeaseOutcome::Busy(holder) => {
                        CursorLease::release_all(leases).await;
                        return skipped(ctx, &input, holder.skipped(wait));
                    }
                }
            }
        }
        let done = pull_leased(ctx, &input, graph, db.as_ref(), &keys, &leases).await;
        CursorLease::release_all(leases).await;
        done
    }
}

/// The pull proper, once every kept cursor's lease is held.
async fn pull_leased(
    ctx: &Context,
    input: &Input,
    graph: &GraphClient,
    db: Option<&StateStore>,
    keys: &[(EventType, String)],
    leases: &[CursorLease],
) -> Result<Reply<Output>> {
    let since = parse_time(input.since.as_deref(), "/inputs/since")?;
    let until = parse_time(input.until.as_deref(), "/inputs/until")?;
    let filter = input.filter.as_deref();
    let types = &input.event_types;
    let kept: Vec<(EventType, KeptCursor)> = match db {
        Some(db) => keys
            .iter()
            .map(|(t, key)| (*t, KeptCursor { db, key }))
            .collect(),
        None => Vec::new(),
    };
    let cursors = start_cursors(ctx.state.as_ref(), &kept, types, filter, since, until).await?;
    for c in cursors.values() {
        c.check_until(until).map_err(|e| e.under("/inputs/until"))?;
    }

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
    let fresh = || SignInCursor::fresh(since, filter.map(str::to_string));
    let mut read = 0u64;
    let pulled = signins::pull_each(graph, types, cursors, fresh, filter, &options, |record| {
        read += 1;
        ctx.progress.count(read, PROGRESS_EVERY, "sign-ins read");
        sink.push(record)
    })
    .await;
    // A run overtaken while it stalled delivers nothing: the other run does.
    let pulled = match (pulled, db) {
        (Ok(o), Some(db)) => still_held(leases, db).await.map(|()| o),
        (pulled, _) => pulled,
    };
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
    for (t, kept) in &kept {
        if let Some(c) = outcome.cursors.get(t)
            && let Err(e) = kept.keep(c).await
        {
            tracing::warn!(error = %e.message, "cannot keep the sign-in cursor");
        }
    }
    let newest = |t: &EventType| outcome.cursors.get(t).and_then(|c| c.cursor);
    let cursor = types.iter().filter_map(newest).max();
    let cursors = outcome
        .cursors
        .iter()
        .map(|(t, c)| (*t, c.cursor.map(|c| c.to_string())))
        .collect();
    let state = SignInCursors(outcome.cursors).to_json();
    let body = Output {
        value,
        output_path,
        records: outcome.stats.records,
        pages: outcome.stats.pages,
        duplicates_dropped: outcome.stats.duplicates_dropped,
        truncated: outcome.stats.truncated,
        cursor: cursor.map(|c| c.to_string()),
        cursors,
        windows: outcome.windows.iter().map(WindowRead::from).collect(),
        skipped: None,
        lost_to_retention: outcome.lost_to_retention,
    };
    Ok(Reply::ok(body)
        .with_headers(outcome.headers)
        .with_state(state))
}

/// Whether every lease is still this run's (see [`CursorLease::still_held`]).
async fn still_held(leases: &[CursorLease], db: &StateStore) -> Result<()> {
    for lease in leases {
        lease.still_held(db).await?;
    }
    Ok(())
}

/// Another run holds the cursor: a success that reads and changes nothing, so a
/// scheduler's overlapping run is not reported as a failure. The envelope's state, if
/// any, goes back unchanged; an `output_path` is emptied, so that nobody reads the
/// previous run's sign-ins from it again as if they were new.
fn skipped(ctx: &Context, input: &Input, why: String) -> Result<Reply<Output>> {
    tracing::info!("{why}");
    let output_path = match &input.output_path {
        Some(p) => Some(PartialFile::create(Path::new(p), "/inputs/output_path")?.commit()?),
        None => None,
    };
    let body = Output {
        value: output_path.is_none().then(Vec::new),
        output_path,
        records: 0,
        pages: 0,
        duplicates_dropped: 0,
        truncated: false,
        cursor: None,
        cursors: BTreeMap::new(),
        windows: Vec::new(),
        skipped: Some(why),
        lost_to_retention: None,
    };
    let reply = Reply::ok(body);
    Ok(match &ctx.state {
        Some(state) => reply.with_state(state.clone()),
        None => reply,
    })
}

/// The cursors to start from, per event type: the envelope's state (with every cursor it
/// holds, asked for or not, so none is lost), else the kept ones; an event type without
/// one is left out (it starts fresh from `since`). A fresh start's `until` is checked.
async fn start_cursors(
    envelope: Option<&Value>,
    kept: &[(EventType, KeptCursor<'_>)],
    types: &[EventType],
    filter: Option<&str>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<BTreeMap<EventType, SignInCursor>> {
    let mut out = BTreeMap::new();
    match envelope {
        Some(state) => {
            let all = SignInCursors::from_json(state).map_err(|e| e.under("/state"))?;
            for (t, c) in all.0 {
                out.insert(t, check_filter(c, filter)?);
            }
        }
        None => {
            for (t, kept) in kept {
                if let Some(c) = kept.load().await.map_err(|e| e.under("/state"))? {
                    out.insert(*t, check_filter(c, filter)?);
                }
            }
        }
    }
    if types.iter().any(|t| !out.contains_key(t)) {
        start_cursor(None, filter, since, until)?;
    }
    Ok(out)
}

fn check_filter(cursor: SignInCursor, filter: Option<&str>) -> Result<SignInCursor> {
    start_cursor(Some(cursor), filter, None, None)
}

/// A stored cursor checked against the filter, else a fresh one from `since`.
fn start_cursor(
    stored: Option<SignInCursor>,
    filter: Option<&str>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<SignInCursor> {
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
    use crate::state::StateDb;

    #[tokio::test]
    async fn kept_state_is_used_unless_the_envelope_has_one_and_corruption_is_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateStore::Local(StateDb::open(dir.path()).unwrap());
        let i = EventType::InteractiveUser;
        let n = EventType::NonInteractiveUser;
        let kept = vec![
            (i, KeptCursor { db: &db, key: "x" }),
            (n, KeptCursor { db: &db, key: "y" }),
        ];
        let since = Some("2026-01-01T00:00:00Z".parse().unwrap());
        let start = async |env: Option<&Value>, filter: Option<&str>| {
            start_cursors(env, &kept, &[i, n], filter, since, None).await
        };
        // Nothing kept: no cursor yet (each starts fresh from `since`).
        assert!(start(None, None).await.unwrap().is_empty());
        let c = SignInCursor::fresh(since, None).unwrap();
        let mut newer = c.clone();
        newer.window_start = "2026-02-01T00:00:00Z".parse().unwrap();
        kept[0].1.keep(&newer).await.unwrap();
        assert_eq!(
            start(None, None).await.unwrap(),
            BTreeMap::from([(i, newer.clone())])
        );
        // The envelope wins; a version-1 state is the interactive cursor.
        let env = c.to_json();
        assert_eq!(
            start(Some(&env), None).await.unwrap(),
            BTreeMap::from([(i, c.clone())])
        );
        // A version-2 state keeps every cursor, asked for or not.
        let both = SignInCursors(BTreeMap::from([
            (i, c.clone()),
            (EventType::ManagedIdentity, newer.clone()),
        ]));
        let env = both.to_json();
        assert_eq!(env["version"], 2);
        assert_eq!(start(Some(&env), None).await.unwrap(), both.0);
        let bad = serde_json::json!({"version": 2, "event_types": {"nonInteractiveUser": {"version": 9}}});
        let e = start(Some(&bad), None).await.unwrap_err();
        assert_eq!(
            e.details[0].path,
            "/state/event_types/nonInteractiveUser/version"
        );
        // Another filter is another cursor; a kept one with the wrong filter is refused.
        let e = start(None, Some("x eq 1")).await.unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/filter");
        db.put("x", "{\"version\": 1, \"window_").await.unwrap();
        let e = start(None, None).await.unwrap_err();
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
        let e = start_cursor(None, None, since, until).unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/until");
    }

    #[test]
    fn times_must_carry_an_offset() {
        assert!(parse_time(Some("2024-05-01T00:00:00Z"), "/inputs/since").is_ok());
        let e = parse_time(Some("2024-05-01"), "/inputs/since").unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/since");
    }
}
