//! The stateless evaluation: the rules over sign-ins handed in, with what the engine must
//! remember between runs (per user and day: the sign-in ids seen, the addresses logged,
//! the observations, manual changes; the discovery counts) carried in and out as
//! `MemoryState` JSON (see [`ip_presence`]), so two runs with the state in between give
//! what one run with all the sign-ins gives, in whatever order the sign-ins came.
//!
//! Where the events go: with an output file ([`Output::File`]) each is written as one
//! JSON line as the engine finds it ([`EventLines`], on the engine's threads), so memory
//! does not grow with the events and stdout carries only counts and the file's name and
//! size. Without one,
//! they are collected and returned inline, unless there are more than [`INLINE_EVENTS`]:
//! then they go to a new private file in the system's temporary directory, which the
//! result names. A `sign_ins_path` over [`INLINE_INPUT_BYTES`] predicts such a result, so
//! it is refused before any work unless an output file is given.

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use super::lines::{EventLines, OutputFile};
use super::report::{
    AccessEventOut, CountsOut, DiscoveryOut, PresenceEventOut, StatusOut, sign_in_of,
};
use super::store::store_error;
use crate::error::{Error, Result};
use crate::jsonl::PartialFile;
use ip_presence::{
    BatchReport, Counts, DiscoveryBlock, EventSink, MemoryState, PresenceBackend, PresenceConfig,
    PresenceEngine, PresenceError, ProcessOptions,
};

/// A `sign_ins_path` larger than this needs `output_path`: at the ~800 bytes a Graph
/// sign-in takes as a JSON line this is ~80,000 sign-ins, whose events approach
/// [`INLINE_EVENTS`]; a month of an organisation's sign-ins (1 GB) would print 200 MB.
pub const INLINE_INPUT_BYTES: u64 = 64 << 20;

/// At most this many events (access, presence, superseded, statuses together) are
/// returned inline (about 15 MB of JSON); more go to a file the result names.
pub const INLINE_EVENTS: usize = 100_000;

/// At most this many discovery blocks are returned inline (the largest first); the rest
/// are counted in `discovery_more` (and all of them are in an output file).
pub const INLINE_DISCOVERY: usize = 100;

/// Where the sign-ins come from.
#[derive(Clone, Copy)]
pub enum SignInSource<'a> {
    /// Graph `signIn` objects (only the five fields the rules use are read).
    Inline(&'a [Map<String, Value>]),
    /// A file of them: a JSON array or JSON lines (errors point at `/inputs/sign_ins_path`).
    File(&'a Path),
}

/// Where the events go.
pub enum Output {
    /// Returned in the result (or, when too many, in a temporary file it names).
    Inline,
    /// Written to `events` (`output_path`, already checked), renamed into place when done.
    /// A replay of a large file also writes the days of its state to `days`
    /// ([`days_path`]), which the state then names, rather than return them.
    File {
        events: PartialFile,
        days: Option<Box<PartialFile>>,
    },
}

/// Where a replay with `output_path` writes the days of its state: beside the events,
/// `{output_path}.state.jsonl`.
pub fn days_path(output: &Path) -> std::path::PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".state.jsonl");
    name.into()
}

/// What one evaluation found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EvaluateReport {
    /// What became of the sign-ins, and why some changed nothing.
    pub counts: CountsOut,
    /// New IP access events (user, address, date), at most one per user, address and day
    /// (absent when the events went to a file: see `output`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_events: Option<Vec<AccessEventOut>>,
    /// Presence events that now hold and did not before, by user, date and time (absent
    /// when the events went to a file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_events: Option<Vec<PresenceEventOut>>,
    /// Events reported earlier that late sign-ins have replaced (drop them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_events: Option<Vec<PresenceEventOut>>,
    /// The resulting status of every user-day the run touched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<StatusOut>>,
    /// Suggested ranges for addresses in no range (with `settings.auto_create`), largest
    /// first, over everything the state remembers: at most 100 (the rest in
    /// `discovery_more`).
    pub discovery: Vec<DiscoveryOut>,
    /// Discovery blocks left out of `discovery` (present only when some were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_more: Option<DiscoveryMore>,
    /// The file the events were written to (with `output_path`, or when there were too
    /// many to return inline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputFile>,
}

/// Discovery blocks not listed inline.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiscoveryMore {
    pub blocks: u64,
    /// Sign-ins seen from them.
    pub events: u64,
}

/// Refuse, before any work, a `sign_ins_path` whose result would be too large for stdout.
pub fn check_inline_size(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > INLINE_INPUT_BYTES => Err(Error::invalid(
            "/inputs/output_path",
            format!(
                "is required for a sign_ins_path over {} MiB ({} is {} MiB): its events would \
                 not fit a result on stdout; give a file to write them to as JSON lines",
                INLINE_INPUT_BYTES >> 20,
                path.display(),
                m.len() >> 20
            ),
        )),
        _ => Ok(()),
    }
}

/// Evaluate `sign_ins` from `state` (the envelope's, if any): the report and the new state.
pub fn evaluate(
    config: PresenceConfig,
    sign_ins: SignInSource<'_>,
    state: Option<&Value>,
    options: &ProcessOptions,
    output: Output,
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
    if let SignInSource::File(path) = sign_ins
        && !path.is_file()
    {
        return Err(Error::invalid(
            "/inputs/sign_ins_path",
            format!("{} is not a readable file", path.display()),
        ));
    }
    let run =
        |state: &mut MemoryState, sink: &mut dyn EventSink| -> Result<Counts> {
            match sign_ins {
                SignInSource::Inline(records) => engine
                    .process_to(state, records.iter().map(sign_in_of), options, sink)
                    .map_err(store_error),
                SignInSource::File(path) => engine
                    .process_file_to(state, path, options, sink)
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
                    }),
            }
        };
    let body = match output {
        Output::File { events, days } => {
            if let Some(days) = &days {
                let internal = |e: std::io::Error| {
                    Error::local(format!("cannot write {}: {e}", days.target().display()))
                };
                let target = days.target();
                // The state names the file the next run reads, wherever that run starts:
                // a relative output_path is made absolute against this run's directory.
                let named = std::path::absolute(target).map_err(internal)?;
                state.spill_to(
                    crate::jsonl::parent_dir(target).to_path_buf(),
                    named.display().to_string(),
                    Box::new(days.raw_handle().map_err(internal)?),
                );
            }
            let mut lines = EventLines::new(events);
            let counts = run(&mut state, &mut lines)?;
            let discovery = state.discovery().map_err(store_error)?;
            lines.discovery(&discovery);
            let mut body = report(&counts, None, &discovery);
            // Only a replay that spilled wrote days; otherwise the state holds them.
            let days = days.filter(|_| state.days_spilled());
            // The files are synced and renamed (mostly waiting on the disk) while the
            // state's JSON is built; a file that cannot be completed fails the run.
            let (output, days, state) = std::thread::scope(|scope| {
                let committed = scope.spawn(|| lines.commit());
                let days = scope.spawn(|| days.map(|d| d.commit()).transpose());
                let state = state.into_json();
                (committed.join(), days.join(), state)
            });
            let incomplete = || Error::internal("an output file could not be completed");
            let output = output.map_err(|_| incomplete())??;
            days.map_err(|_| incomplete())??;
            body.output = Some(output);
            return Ok((body, state));
        }
        Output::Inline => {
            let mut events = BatchReport::default();
            let counts = run(&mut state, &mut events)?;
            events.sort();
            let discovery = state.discovery().map_err(store_error)?;
            let n = events.access_events.len()
                + events.presence_events.len()
                + events.superseded_events.len()
                + events.statuses.len();
            if n > INLINE_EVENTS {
                let mut body = report(&counts, None, &discovery);
                body.output = Some(spill(&events, &discovery)?);
                body
            } else {
                report(&counts, Some(&events), &discovery)
            }
        }
    };
    Ok((body, state.into_json()))
}

/// The result: counts, the events when inline, the largest discovery blocks.
fn report(
    counts: &Counts,
    events: Option<&BatchReport>,
    discovery: &[DiscoveryBlock],
) -> EvaluateReport {
    let shown = discovery.len().min(INLINE_DISCOVERY);
    let rest = &discovery[shown..];
    EvaluateReport {
        counts: counts.into(),
        access_events: events.map(|e| e.access_events.iter().map(Into::into).collect()),
        presence_events: events.map(|e| e.presence_events.iter().map(Into::into).collect()),
        superseded_events: events.map(|e| e.superseded_events.iter().map(Into::into).collect()),
        statuses: events.map(|e| e.statuses.iter().map(Into::into).collect()),
        discovery: discovery[..shown].iter().map(Into::into).collect(),
        discovery_more: (!rest.is_empty()).then(|| DiscoveryMore {
            blocks: rest.len() as u64,
            events: rest.iter().map(|b| b.events).sum(),
        }),
        output: None,
    }
}

/// Too many events for stdout: write them to a new private file in the temporary
/// directory (0600, an unpredictable name) and keep it for the caller.
fn spill(events: &BatchReport, discovery: &[DiscoveryBlock]) -> Result<OutputFile> {
    let internal = |e: std::io::Error| {
        Error::internal(format!("cannot write the events to a temporary file: {e}"))
    };
    let dir = std::env::temp_dir();
    let tmp = crate::jsonl::private_temp_in(&dir, "evaluate_ip_presence-").map_err(internal)?;
    // The name is ours (created exclusively); the complete file is renamed onto it.
    let (_, path) = tmp.keep().map_err(|e| internal(e.error))?;
    let mut lines = EventLines::new(PartialFile::create(&path, "/inputs/output_path")?);
    for e in &events.access_events {
        lines.access(e);
    }
    for e in &events.presence_events {
        lines.presence(e, false);
    }
    for e in &events.superseded_events {
        lines.presence(e, true);
    }
    for s in &events.statuses {
        lines.status(s);
    }
    lines.discovery(discovery);
    lines.commit()
}
