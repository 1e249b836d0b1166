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
//! 1. pull every new sign-in into memory (only the five fields the rules use);
//! 2. process them as one batch: one SQLite transaction, committed or not at all;
//! 3. only then keep the sign-in cursor (and the configuration used) in the state database.
//!
//! A crash before 3 leaves the old cursor: the next run pulls the same sign-ins again and
//! the engine discards them as duplicates (their ids are kept for the late-arrival
//! window), so nothing is counted twice and nothing is lost.

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::Serialize;

use super::Office;
use super::config::keep_config;
use super::report::{CountsOut, DiscoveryOut, PresenceChanges, sign_in_of};
use super::store::store_error;
use crate::error::Result;
use crate::graph::{GraphClient, ResponseHeaders};
use crate::signins::{
    self, CursorOf, EventType, KeptCursor, LostSpan, PullOptions, SignInCursor, cursor_key,
};
use ip_presence::{PresenceBackend, PresenceConfig, PresenceEngine, ProcessOptions, SignIn};

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
        let mut cursors = std::collections::BTreeMap::new();
        for (t, key) in &keys {
            if let Some(c) = (KeptCursor { db, key }).load()? {
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
        let mut batch: Vec<SignIn<'static>> = Vec::new();
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
                batch.push(match record.as_object() {
                    Some(r) => sign_in_of(r).into_owned(),
                    None => SignIn::default(),
                });
                Ok(())
            },
        )
        .await?;
        // One transaction; the cursor moves only once it is committed.
        let report = engine
            .process(&mut store, batch, &options.process)
            .map_err(store_error)?;
        keep_config(db, engine.config())?;
        for (t, key) in &keys {
            if let Some(c) = outcome.cursors.get(t) {
                (KeptCursor { db, key }).keep(c)?;
            }
        }
        let newest = outcome.cursors.values().filter_map(|c| c.cursor).max();
        let discovery = store.discovery().map_err(store_error)?;
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
        };
        Ok((body, outcome.headers))
    }
}
