//! `sync_ip_presence`: the five-minute job. Pull the new sign-ins, run the IP presence
//! rules, keep the result in the embedded store under `--state-dir` (or the shared
//! state of `--state-url`).
//!
//! Graph: `GET /auditLogs/signIns` (AuditLog.Read.All + Directory.Read.All). The order
//! of writes that keeps the store consistent through a crash: [`Office::sync`].

use jiff::SignedDuration;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::inputs::parse_time;
use crate::office::{ConfigInput, ProcessInput, SyncOptions, SyncReport};
use crate::signins::EventType;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Input {
    #[serde(flatten)]
    pub config: ConfigInput,
    /// First run only (no cursor in the store yet): read sign-ins created at or after this
    /// time (RFC 3339). Default: 24 hours ago.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub since: Option<String>,
    /// Which sign-ins count: `interactiveUser` (v1.0) and, from Graph's beta endpoint,
    /// `nonInteractiveUser` (a device refreshing its tokens from the office network),
    /// `servicePrincipal`, `managedIdentity`. Default: interactive and non-interactive user
    /// sign-ins. Each has its own cursor in the store.
    #[serde(default = "default_event_types")]
    #[schemars(length(min = 1, max = 4), extend("uniqueItems" = true))]
    pub event_types: Vec<EventType>,
    /// How late (after createdDateTime) a sign-in may appear in Graph and still be read.
    #[serde(default = "default_lookback")]
    #[schemars(range(min = 0, max = 10080))]
    pub lookback_minutes: u32,
    #[serde(flatten)]
    pub process: ProcessInput,
    /// How long to wait while another sync on this state dir runs before ending without
    /// reading anything, successfully, with `skipped` saying why.
    #[serde(default = "super::pull_sign_ins::default_lease_wait")]
    #[schemars(range(min = 0, max = 3600))]
    pub lease_wait_seconds: u32,
}

fn default_event_types() -> Vec<EventType> {
    vec![EventType::InteractiveUser, EventType::NonInteractiveUser]
}

fn default_lookback() -> u32 {
    30
}

pub struct SyncIpPresence;

impl Action for SyncIpPresence {
    type Input = Input;
    type Output = SyncReport;
    const META: ActionMeta = ActionMeta {
        name: "sync_ip_presence",
        title: "Sync IP presence",
        description: "The scheduled job of IP-based office presence (every few minutes): read the sign-ins created since the last run (re-reading a lookback window for late ones), apply the presence rules, and keep access events, presence events and each user's status for the day in the embedded store under --state-dir (required), or in the shared state of --state-url. Returns counts, the new presence events and the statuses they changed.",
        permissions: &[&["AuditLog.Read.All"], &["Directory.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Advances,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<SyncReport>> {
        let office = ctx.office(Self::META.name)?;
        let since = parse_time(input.since.as_deref(), "/inputs/since")?;
        let process = input.process.options()?;
        // Checked before any request: a bad configuration makes no network call.
        let config = office.config(&input.config).await?;
        let options = SyncOptions {
            since,
            event_types: input.event_types,
            lookback: SignedDuration::from_mins(i64::from(input.lookback_minutes)),
            process,
            progress: false,
            lease_wait: std::time::Duration::from_secs(input.lease_wait_seconds.into()),
            report: ctx.progress.clone(),
        };
        let (body, headers) = office.sync(ctx.graph()?, config, &options).await?;
        Ok(Reply::ok(body).with_headers(headers))
    }
}
