//! `evaluate_ip_presence`: run the IP presence rules over sign-ins you hand in.
//!
//! No Graph call and no state dir: the sign-ins come inline (`sign_ins`, a JSON array of
//! Graph `signIn` objects) or from a file (`sign_ins_path`: JSON lines, split at
//! line boundaries and read by two threads; or a JSON array, read whole), the
//! configuration inline or from `config_path`. What the engine must remember between
//! runs travels in the envelope's `state` ([`office::evaluate()`]); after a replay with
//! `output_path`, its days are in a file beside the events that the state names.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::jsonl::{PartialFile, check_output_path};
use crate::office::{self, ConfigInput, EvaluateReport, Output, ProcessInput, SignInSource};

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
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
    /// Write the events to this file instead of the result, as JSON lines (one event a
    /// line, tagged by `kind`: access, presence, superseded, status, discovery), each as
    /// it is found, so memory does not grow with them; the result then holds the counts
    /// and the file's path and size. Written beside the target and renamed onto it when
    /// complete, mode 0600; never inside the state dir. Required for a sign_ins_path
    /// over 64 MiB.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub output_path: Option<String>,
    /// Read sign_ins_path as a replay of the past (a backfill): the late-arrival window
    /// runs from the day the reading has reached, not from `now`, so a month needs only
    /// the default window; each day is reported and forgotten once the reading is
    /// late_window_days past it, so memory and the returned state depend on the people
    /// and the window, not on the days in the file. The file must be in the order Graph
    /// delivered it, oldest first or newest first (pull_sign_ins writes newest first); a
    /// sign-in more than late_window_days behind the furthest day read is too late.
    /// With output_path, the window's sign-ins are kept on disk beside it and the days
    /// of the state go to output_path + ".state.jsonl", which the state names.
    #[serde(default)]
    pub replay: bool,
    #[serde(flatten)]
    pub config: ConfigInput,
    #[serde(flatten)]
    pub process: ProcessInput,
}

pub struct EvaluateIpPresence;

impl Action for EvaluateIpPresence {
    type Input = Input;
    type Output = EvaluateReport;
    const META: ActionMeta = ActionMeta {
        name: "evaluate_ip_presence",
        title: "Evaluate IP presence",
        description: "Apply the IP-based office presence rules to the sign-ins given (inline or as a file): returns the new IP access events, presence events (and those late sign-ins superseded), each touched user's status for the day, suggested ranges for unknown addresses, and counts of everything discarded and why. Local: no Graph call, no state dir; keep the returned state for the next run.",
        permissions: &[],
        changes_data: false,
        needs_graph: false,
        incremental: true,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<EvaluateReport>> {
        let config = input.config.require()?;
        let mut options = input.process.options()?;
        if input.replay {
            if input.sign_ins_path.is_none() {
                return Err(Error::invalid(
                    "/inputs/replay",
                    "replays a sign_ins_path; inline sign_ins are one batch",
                ));
            }
            options.replay = true;
        }
        let sign_ins = match (&input.sign_ins, &input.sign_ins_path) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "/inputs/sign_ins_path",
                    "give either sign_ins or sign_ins_path, not both",
                ));
            }
            (Some(records), None) => SignInSource::Inline(records),
            (None, Some(path)) => SignInSource::File(Path::new(path)),
            (None, None) => {
                return Err(Error::invalid(
                    "/inputs/sign_ins",
                    "is required (or sign_ins_path)",
                ));
            }
        };
        // Where the events go is settled before any work: a bad output_path, or a large
        // file without one, is refused first.
        let output = match &input.output_path {
            Some(p) => {
                let target = Path::new(p);
                check_output_path(target, ctx.state_dir.as_deref(), "/inputs/output_path")?;
                let days = if options.replay {
                    let days = office::days_path(target);
                    check_output_path(&days, ctx.state_dir.as_deref(), "/inputs/output_path")?;
                    Some(Box::new(PartialFile::create(&days, "/inputs/output_path")?))
                } else {
                    None
                };
                Output::File {
                    events: PartialFile::create(target, "/inputs/output_path")?,
                    days,
                }
            }
            None => {
                if let SignInSource::File(path) = sign_ins {
                    office::check_inline_size(path)?;
                }
                Output::Inline
            }
        };
        let (body, state) =
            office::evaluate(config, sign_ins, ctx.state.as_ref(), &options, output)?;
        Ok(Reply::ok(body).with_state(state))
    }
}
