//! One sync: pull the new sign-ins, run the IP presence rules, keep the result in the
//! store. Used by the `sync_ip_presence` action and by `demo`.
//!
//! Graph: `GET /auditLogs/signIns` through the same incremental pull as `pull_sign_ins`
//! ([`crate::signins::pull()`]: a lookback window for sign-ins Graph shows late, each id
//! delivered once), one cursor per event type. By default interactive and
//! non-interactive user sign-ins (the latter from `beta`): a device refreshing its
//! tokens from the office network is a sign-in from there too, and those background
//! sign-ins are most of a working day's.

//!
//! Order of writes, and why a crash anywhere leaves the store consistent:
//! 1. pull the new sign-ins, keeping only the five fields the rules use, and every
//!    [`SYNC_BATCH`] of them
//! 2. process them as one batch: one store transaction (SQLite's, or PostgreSQL's for the
//!    shared store), committed or not at all, with no
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

use super::config::keep_config;
use super::report::{CountsOut, DiscoveryOut, PresenceChanges, sign_in_of};
use super::store::store_error;
use super::{Office, OfficeStore};
use crate::error::Result;
use crate::graph::{GraphClient, ResponseHeaders};
use crate::progress::Progress;
use crate::signins::{
    self, CursorOf, EventType, KeptCursor, LostSpan, PullOptions, SignInCursor, cursor_key,
};
use crate::state::{CursorLease, LeaseOutcome};
use ip_presence::{
    BatchReport, PresenceBackend, PresenceConfig, PresenceEngine, PresenceError, PresenceEvent,
    ProcessOptions, SignIn,
};

/// Sign-ins applied per store transaction: about 1 MB of the five fields, a few
/// milliseconds of writes.
pub const SYNC_BATCH: usize = 10_000;

/// How one sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// First run only (no cursor kept yet): read sign-ins created at or after this.
    pub since: Option<Timestamp>,
    /// Which sign-ins to read, each with its own cursor.
    pub event_types: Vec<EventType>,
    pub lookback: SignedDuration,
    pub process: ProcessOptions,
    pub progress: bool,
    /// How long to wait while another run holds the cursor's lease.
    pub lease_wait: Duration,
    /// Steps for a caller that asked (MCP): sign-ins read, then the batch processed.
    pub report: Progress,
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
    /// The newest createdDateTime read so far, of any event type.
    pub cursor: Option<String>,
    /// Sign-ins a cursor (or `since`) still wanted that Graph no longer keeps (30 days):
    /// the span given up. Absent when nothing was lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_to_retention: Option<LostSpan>,
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
        let keys: Vec<(EventType, String)> = options
            .event_types
            .iter()
            .map(|&t| (t, cursor_key(CursorOf::Sync, t)))
            .collect();
        // One sync at a time per cursor, its leases taken (in event-type order) before
        // a cursor is read.
        let mut leases = Vec::new();
        for (_, key) in &keys {
            match CursorLease::acquire(db, key, options.lease_wait).await? {
                LeaseOutcome::Held(lease) => leases.push(lease),
                LeaseOutcome::Busy(holder) => {
                    let why = holder.skipped(options.lease_wait);
                    tracing::info!("{why}");
                    CursorLease::release_all(leases).await;
                    return Ok((SyncReport::skipped(why), ResponseHeaders::new()));
                }
            }
        }
        let done = self
            .sync_leased(graph, &engine, &mut store, &keys, &leases, options)
            .await;
        CursorLease::release_all(leases).await;
        done
    }

    /// The sync proper, once every cursor's lease is held.
    async fn sync_leased(
        &self,
        graph: &GraphClient,
        engine: &PresenceEngine,
        store: &mut OfficeStore,
        keys: &[(EventType, String)],
        leases: &[CursorLease],
        options: &SyncOptions,
    ) -> Result<(SyncReport, ResponseHeaders)> {
        let db = &self.db;
        let mut cursors = std::collections::BTreeMap::new();
        for (t, key) in keys {
            if let Some(c) = (KeptCursor { db, key }).load().await? {
                cursors.insert(*t, c);
            }
        }
        let pull_options = PullOptions {
            lookback: options.lookback,
            until: None,
            top: signins::MAX_TOP,
            max_records: None,
            progress: options.progress,
        };
        // Applied SYNC_BATCH sign-ins at a time as the pages arrive, each batch one short
        // transaction (no network inside it), so a month's first sync never holds its
        // sign-ins. The cursors move only once every batch is committed.
        let mut report = BatchReport::default();
        let mut read = 0u64;
        let mut pending: Vec<SignIn<'static>> = Vec::with_capacity(SYNC_BATCH);
        let process = &options.process;
        let fresh = || SignInCursor::fresh(options.since, None);
        let types = &options.event_types;
        let outcome = signins::pull_each(
            graph,
            types,
            cursors,
            fresh,
            None,
            &pull_options,
            |record| {
                read += 1;
                options.report.count(read, 1000, "sign-ins read");
                pending.push(match record.as_object() {
                    Some(r) => sign_in_of(r).into_owned(),
                    None => SignIn::default(),
                });
                if pending.len() >= SYNC_BATCH {
                    apply(engine, store, &mut pending, process, &mut report)
                        .map_err(|e| self.store_failed(e))?;
                }
                Ok(())
            },
        )
        .await?;
        options.report.report(
            read,
            None,
            &format!("{read} sign-ins read; evaluating the last of them"),
        );
        // Overtaken while it stalled: the other run does the work; keep no cursor (what
        // this run applied, the other's run discards as duplicates).
        for lease in leases {
            lease.still_held(db).await?;
        }
        apply(engine, store, &mut pending, process, &mut report)
            .map_err(|e| self.store_failed(e))?;
        net_superseded(&mut report);
        report.sort();
        keep_config(db, engine.config()).await?;
        for (t, key) in keys {
            if let Some(c) = outcome.cursors.get(t) {
                (KeptCursor { db, key }).keep(c).await?;
            }
        }
        let newest = outcome.cursors.values().filter_map(|c| c.cursor).max();
        let discovery = store.discovery().map_err(|e| self.store_failed(e))?;
        let body = SyncReport {
            sign_ins: PullSummary {
                records: outcome.stats.records,
                pages: outcome.stats.pages,
                duplicates_dropped: outcome.stats.duplicates_dropped,
                cursor: newest.map(|c| c.to_string()),
                lost_to_retention: outcome.lost_to_retention,
            },
            counts: (&report.counts).into(),
            changes: (&report).into(),
            discovery: discovery.iter().map(Into::into).collect(),
            skipped: None,
        };
        Ok((body, outcome.headers))
    }
}

/// Apply the pending sign-ins as one batch (one transaction), its events into `report`.
fn apply(
    engine: &PresenceEngine,
    store: &mut OfficeStore,
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
