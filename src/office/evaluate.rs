//! The stateless evaluation: the rules over sign-ins handed in, with what the engine must
//! remember between runs (per user and day: the sign-in ids seen, the addresses logged,
//! the observations, manual changes; the discovery counts) carried in and out as
//! `MemoryState` JSON (see [`ip_presence`]), so two runs with the state in between give
//! what one run with all the sign-ins gives, in whatever order the sign-ins came.

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use super::report::{AccessEventOut, CountsOut, DiscoveryOut, PresenceChanges, sign_in_of};
use super::store::store_error;
use crate::error::{Error, Result};
use ip_presence::{
    MemoryState, PresenceBackend, PresenceConfig, PresenceEngine, PresenceError, ProcessOptions,
};

/// Where the sign-ins come from.
pub enum SignInSource<'a> {
    /// Graph `signIn` objects (only the five fields the rules use are read).
    Inline(&'a [Map<String, Value>]),
    /// A file of them: a JSON array or JSON lines (errors point at `/inputs/sign_ins_path`).
    File(&'a Path),
}

/// What one evaluation found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EvaluateReport {
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

/// Evaluate `sign_ins` from `state` (the envelope's, if any): the report and the new state.
pub fn evaluate(
    config: PresenceConfig,
    sign_ins: SignInSource<'_>,
    state: Option<&Value>,
    options: &ProcessOptions,
) -> Result<(EvaluateReport, Value)> {
    let engine = PresenceEngine::new(config).map_err(|e| store_error(e.into()))?;
    let mut state = match state {
        Some(v) => MemoryState::from_json(v.clone()).map_err(|e| match e {
            PresenceError::StateAt { pointer, message } => Error::invalid(
                format!("/state{pointer}"),
                format!("is not a state of this action: {message}"),
            ),
            e => Error::invalid("/state", format!("is not a state of this action: {e}")),
        })?,
        None => MemoryState::new(),
    };
    let report = match sign_ins {
        SignInSource::Inline(records) => engine
            .process(&mut state, records.iter().map(sign_in_of), options)
            .map_err(store_error)?,
        SignInSource::File(path) => {
            if !path.is_file() {
                return Err(Error::invalid(
                    "/inputs/sign_ins_path",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            engine
                .process_file(&mut state, path, options)
                .map_err(|e| match e {
                    PresenceError::Input(e) => {
                        Error::invalid("/inputs/sign_ins_path", format!("{}: {e}", path.display()))
                    }
                    PresenceError::Io(e) => Error::invalid(
                        "/inputs/sign_ins_path",
                        format!("cannot read {}: {e}", path.display()),
                    ),
                    other => store_error(other),
                })?
        }
    };
    let discovery = state.discovery().map_err(store_error)?;
    let body = EvaluateReport {
        counts: (&report.counts).into(),
        access_events: report.access_events.iter().map(Into::into).collect(),
        changes: (&report).into(),
        discovery: discovery.iter().map(Into::into).collect(),
    };
    Ok((body, state.to_json()))
}
