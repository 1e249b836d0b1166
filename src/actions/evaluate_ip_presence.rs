//! `evaluate_ip_presence`: run the IP presence rules over sign-ins you hand in.
//!
//! No Graph call and no disk: the sign-ins come inline (`sign_ins`, a JSON array of
//! Graph `signIn` objects) or from a file (`sign_ins_path`: JSON lines, split at
//! line boundaries and read by two threads; or a JSON array, read whole), the
//! configuration inline or from
//! `config_path`. What the engine must remember between runs (per user and day: the
//! sign-in ids seen, the addresses logged, the observations, manual changes; the
//! discovery counts) travels in the envelope's `state` (`MemoryState` JSON, see
//! [`ip_presence`]), so two runs with the state in between give what one run
//! with all the sign-ins gives, in whatever order the sign-ins came.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ip_presence::{
    AccessEventOut, ConfigSource, CountsOut, DiscoveryOut, PresenceChanges, now_or, sign_in_of,
    store_error,
};
use super::{Action, ActionMeta, Context, Reply, parse_time};
use crate::error::{Error, Result};
use ip_presence::{
    IpRange, MemoryState, PresenceBackend, PresenceEngine, PresenceError, ProcessOptions, Settings,
    TrackedUser,
};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Sign-ins as Graph lists them (`GET /auditLogs/signIns` items). Only `id`,
    /// `createdDateTime`, `ipAddress`, `userPrincipalName` and `status.errorCode` are read.
    #[serde(default)]
    pub sign_ins: Option<Vec<serde_json::Map<String, Value>>>,
    /// A file of sign-ins instead: a JSON array or JSON lines (one object a line), e.g.
    /// the `output_path` of pull_sign_ins. For large batches.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub sign_ins_path: Option<String>,
    /// A YAML or JSON file holding `ranges`, `users` and `settings` (instead of giving them inline).
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
    /// "Now" for the late-arrival window (RFC 3339). Default: the current time. Give it to
    /// replay old sign-ins.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub now: Option<String>,
    /// Sign-ins whose calendar day is more than this many days before today (UTC) no
    /// longer change anything, and the state forgets such days.
    #[serde(default = "default_window")]
    #[schemars(range(min = 0, max = 90))]
    pub late_window_days: u16,
}

fn default_window() -> u16 {
    ProcessOptions::DEFAULT_LATE_WINDOW_DAYS
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// What became of the sign-ins, and why some changed nothing.
    pub counts: CountsOut,
    /// New IP access events (user, address, date), at most one per user, address and day.
    pub access_events: Vec<AccessEventOut>,
    #[serde(flatten)]
    pub changes: PresenceChanges,
    /// Suggested ranges for addresses in no range (with `settings.auto_create`), largest first,
    /// over everything the state remembers.
    pub discovery: Vec<DiscoveryOut>,
}

pub struct EvaluateIpPresence;

impl Action for EvaluateIpPresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "evaluate_ip_presence",
        title: "Evaluate IP presence",
        description: "Apply the IP-based office presence rules to the sign-ins given (inline or as a file): returns the new IP access events, presence events (and those late sign-ins superseded), each touched user's status for the day, suggested ranges for unknown addresses, and counts of everything discarded and why. Local: no Graph call, no disk; keep the returned state for the next run.",
        permissions: &[],
        changes_data: false,
        needs_graph: false,
        incremental: true,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let config = ConfigSource {
            config_path: input.config_path.as_deref(),
            ranges: input.ranges.as_ref(),
            users: input.users.as_ref(),
            settings: input.settings.as_ref(),
        }
        .load()?
        .ok_or_else(|| {
            Error::invalid(
                "/inputs/ranges",
                "is required (with users and settings), or give config_path",
            )
        })?;
        let opts = ProcessOptions {
            now: now_or(parse_time(input.now.as_deref(), "/inputs/now")?),
            late_window_days: input.late_window_days,
        };
        let engine = PresenceEngine::new(config).map_err(|e| store_error(e.into()))?;
        let mut state = match &ctx.state {
            Some(v) => MemoryState::from_json(v.clone()).map_err(|e| match e {
                PresenceError::StateAt { pointer, message } => Error::invalid(
                    format!("/state{pointer}"),
                    format!("is not a state of this action: {message}"),
                ),
                e => Error::invalid("/state", format!("is not a state of this action: {e}")),
            })?,
            None => MemoryState::new(),
        };
        let report = match (&input.sign_ins, &input.sign_ins_path) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "/inputs/sign_ins_path",
                    "give either sign_ins or sign_ins_path, not both",
                ));
            }
            (Some(records), None) => engine
                .process(&mut state, records.iter().map(sign_in_of), &opts)
                .map_err(store_error)?,
            (None, Some(path)) => {
                let path = Path::new(path);
                if !path.is_file() {
                    return Err(Error::invalid(
                        "/inputs/sign_ins_path",
                        format!("{} is not a readable file", path.display()),
                    ));
                }
                engine
                    .process_file(&mut state, path, &opts)
                    .map_err(|e| match e {
                        PresenceError::Input(e) => Error::invalid(
                            "/inputs/sign_ins_path",
                            format!("{}: {e}", path.display()),
                        ),
                        PresenceError::Io(e) => Error::invalid(
                            "/inputs/sign_ins_path",
                            format!("cannot read {}: {e}", path.display()),
                        ),
                        other => store_error(other),
                    })?
            }
            (None, None) => {
                return Err(Error::invalid(
                    "/inputs/sign_ins",
                    "is required (or sign_ins_path)",
                ));
            }
        };
        let discovery = state.discovery().map_err(store_error)?;
        let body = Output {
            counts: (&report.counts).into(),
            access_events: report.access_events.iter().map(Into::into).collect(),
            changes: (&report).into(),
            discovery: discovery.iter().map(Into::into).collect(),
        };
        Ok(Reply::ok(body).with_state(state.to_json()))
    }
}
