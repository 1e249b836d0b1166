//! `evaluate_ip_presence`: run the IP presence rules over sign-ins you hand in.
//!
//! No Graph call and no disk: the sign-ins come inline (`sign_ins`, a JSON array of
//! Graph `signIn` objects) or from a file (`sign_ins_path`: JSON lines, split at
//! line boundaries and read by two threads; or a JSON array, read whole), the
//! configuration inline or from `config_path`. What the engine must remember between
//! runs travels in the envelope's `state` ([`office::evaluate()`]).

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::office::{self, ConfigInput, EvaluateReport, ProcessInput, SignInSource};

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
        description: "Apply the IP-based office presence rules to the sign-ins given (inline or as a file): returns the new IP access events, presence events (and those late sign-ins superseded), each touched user's status for the day, suggested ranges for unknown addresses, and counts of everything discarded and why. Local: no Graph call, no disk; keep the returned state for the next run.",
        permissions: &[],
        changes_data: false,
        needs_graph: false,
        incremental: true,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<EvaluateReport>> {
        let config = input.config.require()?;
        let options = input.process.options()?;
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
        let (body, state) = office::evaluate(config, sign_ins, ctx.state.as_ref(), &options)?;
        Ok(Reply::ok(body).with_state(state))
    }
}
