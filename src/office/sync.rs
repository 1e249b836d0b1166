//! One sync: pull the new sign-ins, run the IP presence rules, keep the result in the
//! store. Used by the `sync_ip_presence` action and by `demo`.
//!
//! Graph: `GET /auditLogs/signIns` through the same incremental pull as `pull_sign_ins`
//! ([`crate::signins::pull()`]: a lookback window for sign-ins Graph shows late, each id
//! delivered once).
//!
//! Order of writes, and why a crash anywhere leaves the store consistent:
//! 1. pull the new sign-ins, keeping only the five fields the rules use, and every
//!    [`SYNC_BATCH`] of them
//! 2. process them as one batch: one SQLite transaction, committed or not at all, with no
//!    network wait inside it (a month's first sync holds one batch, never the month);
//! 3. only once every batch is committed, keep the sign-in cursor (and the configuration
//!    used) in the state database.
//!
//! A crash before 3 leaves the old cursor: the next run pulls the same sign-ins again and
//! the engine discards those already committed as duplicates (their ids are kept for the
//! late-arrival window), so nothing is counted twice and nothing is lost. The store ends
//! the same however the sign-ins are cut into batches (the engine's order independence);
//! an event one batch emitted and a later batch of the same run superseded is left out of
//! the report.
//!
//! One sync at a time per state dir: a run takes the cursor's lease
//! ([`crate::state::lease`]) before reading the cursor; another waits up to its bound,
//! then reports `skipped` having changed nothing.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::Serialize;

use super::Office;
use super::config::keep_config;
use super::report::{CountsOut, DiscoveryOut, PresenceChanges, sign_in_of};
use super::store::store_error;
use crate::error::Result;
use crate::graph::{GraphClient, ResponseHeaders};
use crate::signins::{self, KeptCursor, PullOptions, SignInCursor};
use crate::state::{CursorLease, LeaseOutcome};
use ip_presence::{
    BatchReport, PresenceBackend, PresenceConfig, PresenceEngine, PresenceError, PresenceEvent,
    PresenceStore, ProcessOptions, SignIn,
};

/// Sign-ins applied per store transaction: about 1 MB of the five fields, a few
/// milliseconds of writes.
pub const SYNC_BATCH: usize = 10_000;

/// Key of the sync's sign-in cursor in the state database.
pub const CURSOR_KEY: &str = "ip_presence.sign_in_cursor";

/// How one sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// First run only (no cursor kept yet): read sign-ins created at or after this.
    pub since: Option<Timestamp>,
    pub lookback: SignedDuration,
    pub process: ProcessOptions,
    pub progress: bool,
    /// How long to wait while another run holds the cursor's lease.
    pub lease_wait: Duration,
}

/// What the pull read.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
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

/// What one sync did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SyncReport {
    /// What the pull read from Graph.
    pub sign_ins: PullSummary,
    /// What became of the sign-ins, and why some changed nothing.
    pub counts: CountsOut,
    #[serde(flatten)]
    pub changes: PresenceChanges,
    /// Suggested ranges for addresses in no range (with `settings.auto_create`), largest first.
    pub discovery: Vec<DiscoveryOut>,
    /// Present when the sync read nothing because another run held the cursor's lease
    /// past `lease_wait_seconds` (`lease held by another run: ...`); nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl SyncReport {
    /// Another run holds the cursor: nothing read, nothing changed, and why.
    fn skipped(why: String) -> Self {
        SyncReport {
            sign_ins: PullSummary::default(),
            counts: CountsOut::default(),
            changes: PresenceChanges::default(),
            discovery: Vec::new(),
            skipped: Some(why),
        }
    }
}

impl Office {
    /// One sync (see the module doc), with the headers of the last Graph response.
    pub async fn sync(
        &self,
        graph: &GraphClient,
        config: PresenceConfig,
        options: &SyncOptions,
    ) -> Result<(SyncReport, ResponseHeaders)> {
        let engine = PresenceEngine::new(config).map_err(|e| store_error(e.into()))?;
        let mut store = self.store()?;
        let db = &self.db;
        // One sync at a time per state dir, taken before the cursor is read.
        let lease = match CursorLease::acquire(db, CURSOR_KEY, options.lease_wait).await? {
            LeaseOutcome::Held(lease) => lease,
            LeaseOutcome::Busy(holder) => {
                let why = holder.skipped(options.lease_wait);
                tracing::info!("{why}");
                return Ok((SyncReport::skipped(why), ResponseHeaders::new()));
            }
        };
        let kept = KeptCursor {
            db,
            key: CURSOR_KEY,
        };
        let cursor = match kept.load()? {
            Some(cursor) => cursor,
            None => SignInCursor::fresh(options.since, None)?,
        };
        let pull_options = PullOptions {
            lookback: options.lookback,
            until: None,
            top: signins::MAX_TOP,
            max_records: None,
            progress: options.progress,
        };
        // Applied SYNC_BATCH sign-ins at a time as the pages arrive, each batch one short
        // transaction (no network inside it), so a month's first sync never holds its
        // sign-ins. The cursor moves only once every batch is committed.
        let mut report = BatchReport::default();
        let mut pending: Vec<SignIn<'static>> = Vec::with_capacity(SYNC_BATCH);
        let process = &options.process;
        let outcome = signins::pull(graph, cursor, None, &pull_options, |record| {
            pending.push(match record.as_object() {
                Some(r) => sign_in_of(r).into_owned(),
                None => SignIn::default(),
            });
            if pending.len() >= SYNC_BATCH {
                apply(&engine, &mut store, &mut pending, process, &mut report)
                    .map_err(|e| self.store_failed(e))?;
            }
            Ok(())
        })
        .await?;
        // Overtaken while it stalled: the other run does the work; keep no cursor (what
        // this run applied, the other's run discards as duplicates).
        lease.still_held(db)?;
        apply(&engine, &mut store, &mut pending, process, &mut report)
            .map_err(|e| self.store_failed(e))?;
        net_superseded(&mut report);
        report.sort();
        keep_config(db, engine.config())?;
        kept.keep(&outcome.cursor)?;
        let discovery = store.discovery().map_err(|e| self.store_failed(e))?;
        let body = SyncReport {
            sign_ins: PullSummary {
                records: outcome.stats.records,
                pages: outcome.stats.pages,
                duplicates_dropped: outcome.stats.duplicates_dropped,
                cursor: outcome.cursor.cursor.map(|c| c.to_string()),
            },
            counts: (&report.counts).into(),
            changes: (&report).into(),
            discovery: discovery.iter().map(Into::into).collect(),
            skipped: None,
        };
        drop(lease);
        Ok((body, outcome.headers))
    }
}

/// Apply the pending sign-ins as one batch (one transaction), its events into `report`.
fn apply(
    engine: &PresenceEngine,
    store: &mut PresenceStore,
    pending: &mut Vec<SignIn<'static>>,
    options: &ProcessOptions,
    report: &mut BatchReport,
) -> std::result::Result<(), PresenceError> {
    if pending.is_empty() {
        return Ok(());
    }
    let counts = engine.process_to(store, pending.drain(..), options, report)?;
    report.counts.add(&counts);
    Ok(())
}

/// An event one batch of this sync emitted and a later one superseded never held as far
/// as the caller knows: drop it from both lists.
fn net_superseded(report: &mut BatchReport) {
    if report.superseded_events.is_empty() {
        return;
    }
    let emitted: std::collections::HashSet<PresenceEvent> =
        report.presence_events.iter().cloned().collect();
    let gone: std::collections::HashSet<PresenceEvent> = report
        .superseded_events
        .iter()
        .filter(|e| emitted.contains(*e))
        .cloned()
        .collect();
    report.presence_events.retain(|e| !gone.contains(e));
    report.superseded_events.retain(|e| !gone.contains(e));
}
