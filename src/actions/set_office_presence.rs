//! `set_office_presence`: an administrator says where a user is for the day.
//!
//! No Graph call: this changes the connector's own store under `--state-dir`, never the
//! tenant. The override holds from now until the user's next sign-in from a different
//! place that day (`shared/docs/ip-presence.md`, step 4).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::inputs::{now_or, parse_date, parse_time};
use crate::office::{ConfigInput, ManualChange, PresenceChanges};
use ip_presence::Place;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Input {
    #[serde(flatten)]
    pub change: ManualInput,
    /// The office (a configured location). Give this or `remote: true`.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub location: Option<String>,
    /// The user is remote.
    #[serde(default)]
    pub remote: bool,
    #[serde(flatten)]
    pub config: ConfigInput,
}

/// What an administrator's set and clear share: who, which day, from when, by whom.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ManualInput {
    /// The user (UPN, any case), who must be in the configuration's users.
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub user: String,
    /// The day (YYYY-MM-DD). Default: today, in the zone of the location (a clear:
    /// of `settings.time_zone`).
    #[serde(default)]
    #[schemars(extend("format" = "date"))]
    pub date: Option<String>,
    /// When the change takes effect (RFC 3339), e.g. the time the user said they arrived.
    /// Default: now.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub at: Option<String>,
    /// Who made the change, recorded with it.
    #[serde(default = "default_set_by")]
    #[schemars(length(min = 1, max = 256))]
    pub set_by: String,
}

fn default_set_by() -> String {
    "administrator".into()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    #[serde(flatten)]
    pub changes: PresenceChanges,
}

/// Record a manual change (set, or clear with no place).
pub(crate) async fn apply(
    ctx: &Context,
    action: &str,
    config: &ConfigInput,
    input: &ManualInput,
    place: Option<Place>,
) -> Result<Output> {
    let office = ctx.office(action)?;
    let config = office.config(config).await?;
    let change = ManualChange {
        user: &input.user,
        place,
        date: parse_date(input.date.as_deref(), "/inputs/date")?,
        at: now_or(parse_time(input.at.as_deref(), "/inputs/at")?),
        set_by: &input.set_by,
    };
    let changes = office.set_manual(config, change)?;
    Ok(Output { changes })
}

pub struct SetOfficePresence;

impl Action for SetOfficePresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "set_office_presence",
        title: "Set office presence",
        description: "An administrator's manual override of a user's IP-based presence for a day: in an office (location) or remote, until the user's next sign-in from a different place that day. Changes the connector's own store (--state-dir), not the tenant; no Graph call.",
        permissions: &[],
        changes_data: true,
        needs_graph: false,
        incremental: false,
        writes_local_state: LocalWrites::Repeatable,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let place = match (&input.location, input.remote) {
            (Some(_), true) => {
                return Err(Error::invalid(
                    "/inputs/remote",
                    "give either location or remote: true, not both",
                ));
            }
            (Some(l), false) => Place::Office {
                location: l.clone(),
            },
            (None, true) => Place::Remote,
            (None, false) => {
                return Err(Error::invalid(
                    "/inputs/location",
                    "is required (or remote: true); to remove a status use clear_office_presence",
                ));
            }
        };
        let body = apply(
            ctx,
            Self::META.name,
            &input.config,
            &input.change,
            Some(place),
        )
        .await?;
        Ok(Reply::ok(body))
    }
}
