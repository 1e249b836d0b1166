//! `sync_ip_presence`: the five-minute job. Pull the new sign-ins, run the IP presence
//! rules, keep the result in the embedded store under `--state-dir`.
//!
//! Graph: `GET /auditLogs/signIns` through the same incremental pull as `pull_sign_ins`
//! ([`crate::graph::signins::pull`]: a lookback window for sign-ins Graph shows late,
//! each id delivered once), AuditLog.Read.All + Directory.Read.All.
//!
//! Order of writes, and why a crash anywhere leaves the store consistent:
//! 1. pull every new sign-in into memory (only the five fields the rules use);
//! 2. process them as one batch: one SQLite transaction, committed or not at all;
//! 3. only then store the sign-in cursor (and the configuration used) in the store's kv.
//!
//! A crash before 3 leaves the old cursor: the next run pulls the same sign-ins again and
//! the engine discards them as duplicates (their ids are kept for the late-arrival
//! window), so nothing is counted twice and nothing is lost.

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ip_presence::{
    ConfigSource, CountsOut, DiscoveryOut, PresenceChanges, keep_config, now_or, open_store,
    require_state_dir, sign_in_of, store_error,
};
use super::{Action, ActionMeta, Context, Reply, parse_time, sign_in_cursor};
use crate::error::Result;
use crate::graph::GraphClient;
use crate::graph::signins::{self, PullOptions};
use ip_presence::{
    IpRange, PresenceBackend, PresenceConfig, PresenceEngine, ProcessOptions, Settings, SignIn,
    TrackedUser,
};

/// Key of the sign-in cursor in the store's kv table.
pub const CURSOR_KEY: &str = "ip_presence.sign_in_cursor";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A YAML or JSON file holding `ranges`, `users` and `settings`. Without it (and
    /// without inline configuration) the configuration of the previous sync is used.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub config_path: Option<String>,
    /// IP ranges: offices and remote networks. Nested blocks: the longest prefix wins.
    #[serde(default)]
    pub ranges: Option<Vec<IpRange>>,
    /// The people tracked, by UPN (any case); sign-ins of anyone else are discarded.
    #[serde(default)]
    pub users: Option<Vec<TrackedUser>>,
    /// App-wide settings.
    #[serde(default)]
    pub settings: Option<Settings>,
    /// First run only (no cursor in the store yet): read sign-ins created at or after this
    /// time (RFC 3339). Default: 24 hours ago.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub since: Option<String>,
    /// How late (after createdDateTime) a sign-in may appear in Graph and still be read.
    #[serde(default = "default_lookback")]
    #[schemars(range(min = 0, max = 10080))]
    pub lookback_minutes: u32,
    /// "Now" for the late-arrival window and retention (RFC 3339). Default: the current
    /// time. Give it to replay old sign-ins.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub now: Option<String>,
    /// Sign-ins whose calendar day is more than this many days before today (UTC) no
    /// longer change anything.
    #[serde(default = "default_window")]
    #[schemars(range(min = 0, max = 90))]
    pub late_window_days: u16,
}

fn default_lookback() -> u32 {
    30
}

fn default_window() -> u16 {
    ProcessOptions::DEFAULT_LATE_WINDOW_DAYS
}

/// What the pull read.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PullSummary {
    /// New sign-ins read from Graph.
    pub records: u64,
    /// Pages read.
    pub pages: u64,
    /// Sign-ins Graph listed again that an earlier run had read.
    pub duplicates_dropped: u64,
    /// The newest createdDateTime read so far (the cursor kept in the store).
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// What the pull read from Graph.
    pub sign_ins: PullSummary,
    /// What became of the sign-ins, and why some changed nothing.
    pub counts: CountsOut,
    #[serde(flatten)]
    pub changes: PresenceChanges,
    /// Suggested ranges for addresses in no range (with `settings.auto_create`), largest first.
    pub discovery: Vec<DiscoveryOut>,
}

/// How one sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub since: Option<Timestamp>,
    pub lookback: SignedDuration,
    pub process: ProcessOptions,
    pub progress: bool,
}

/// One sync: pull, process as one committed batch, then keep the cursor (see the module doc).
/// Used by the action and by `demo`.
pub async fn sync(
    graph: &GraphClient,
    state_dir: &std::path::Path,
    config: PresenceConfig,
    options: &SyncOptions,
) -> Result<(Output, crate::graph::ResponseHeaders)> {
    let engine = PresenceEngine::new(config).map_err(|e| store_error(e.into()))?;
    let mut store = open_store(state_dir)?;
    let cursor = match sign_in_cursor::load(&store, CURSOR_KEY)? {
        Some(kept) => kept,
        None => sign_in_cursor::fresh(options.since, None)?,
    };
    let pull_options = PullOptions {
        lookback: options.lookback,
        until: None,
        top: signins::MAX_TOP,
        max_records: None,
        progress: options.progress,
    };
    let mut batch: Vec<SignIn<'static>> = Vec::new();
    let outcome = signins::pull(graph, cursor, None, &pull_options, |record| {
        batch.push(match record.as_object() {
            Some(r) => sign_in_of(r).into_owned(),
            None => SignIn::default(),
        });
        Ok(())
    })
    .await?;
    // One transaction; the cursor moves only once it is committed.
    let report = engine
        .process(&mut store, batch, &options.process)
        .map_err(store_error)?;
    keep_config(&store, engine.config())?;
    sign_in_cursor::keep(&store, CURSOR_KEY, &outcome.cursor)?;
    let discovery = store.discovery().map_err(store_error)?;
    let body = Output {
        sign_ins: PullSummary {
            records: outcome.stats.records,
            pages: outcome.stats.pages,
            duplicates_dropped: outcome.stats.duplicates_dropped,
            cursor: outcome.cursor.cursor.map(|c| c.to_string()),
        },
        counts: (&report.counts).into(),
        changes: (&report).into(),
        discovery: discovery.iter().map(Into::into).collect(),
    };
    Ok((body, outcome.headers))
}

pub struct SyncIpPresence;

impl Action for SyncIpPresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "sync_ip_presence",
        title: "Sync IP presence",
        description: "The scheduled job of IP-based office presence (every few minutes): read the sign-ins created since the last run (re-reading a lookback window for late ones), apply the presence rules, and keep access events, presence events and each user's status for the day in the embedded store under --state-dir (required). Returns counts, the new presence events and the statuses they changed.",
        permissions: &[&["AuditLog.Read.All"], &["Directory.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: false,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let dir = require_state_dir(ctx.state_dir.as_deref(), Self::META.name)?;
        let since = parse_time(input.since.as_deref(), "/inputs/since")?;
        let now = now_or(parse_time(input.now.as_deref(), "/inputs/now")?);
        let source = ConfigSource {
            config_path: input.config_path.as_deref(),
            ranges: input.ranges.as_ref(),
            users: input.users.as_ref(),
            settings: input.settings.as_ref(),
        };
        // Checked before any request: a bad configuration makes no network call.
        let config = source.load_or_kept(&open_store(&dir)?)?;
        let graph = ctx.graph()?;
        let options = SyncOptions {
            since,
            lookback: SignedDuration::from_mins(i64::from(input.lookback_minutes)),
            process: ProcessOptions {
                now,
                late_window_days: input.late_window_days,
            },
            progress: false,
        };
        let (body, headers) = sync(graph, &dir, config, &options).await?;
        Ok(Reply::ok(body).with_headers(headers))
    }
}
