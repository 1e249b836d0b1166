//! One sync: pull the new sign-ins, run the IP presence rules, keep the result in the
//! store. Used by the `sync_ip_presence` action and by `demo`.
//!
//! Graph: `GET /auditLogs/signIns` through the same incremental pull as `pull_sign_ins`
//! ([`crate::signins::pull()`]: a lookback window for sign-ins Graph shows late, each id
//! delivered once).
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
use crate::progress::Progress;
use crate::signins::{self, KeptCursor, PullOptions, SignInCursor};
use ip_presence::{PresenceBackend, PresenceConfig, PresenceEngine, ProcessOptions, SignIn};

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
    /// Steps for a caller that asked (MCP): sign-ins read, then the batch processed.
    pub report: Progress,
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
        let mut batch: Vec<SignIn<'static>> = Vec::new();
        let outcome = signins::pull(graph, cursor, None, &pull_options, |record| {
            options
                .report
                .count(batch.len() as u64 + 1, 1000, "sign-ins read");
            batch.push(match record.as_object() {
                Some(r) => sign_in_of(r).into_owned(),
                None => SignIn::default(),
            });
            Ok(())
        })
        .await?;
        options.report.report(
            batch.len() as u64,
            None,
            &format!("{} sign-ins read; evaluating them", batch.len()),
        );
        // One transaction; the cursor moves only once it is committed.
        let report = engine
            .process(&mut store, batch, &options.process)
            .map_err(store_error)?;
        keep_config(db, engine.config())?;
        kept.keep(&outcome.cursor)?;
        let discovery = store.discovery().map_err(store_error)?;
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
        };
        Ok((body, outcome.headers))
    }
}
