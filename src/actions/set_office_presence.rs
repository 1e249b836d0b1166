//! `set_office_presence`: an administrator says where a user is for the day.
//!
//! No Graph call: this changes the connector's own store under `--state-dir`, never the
//! tenant. The override holds from now until the user's next sign-in from a different
//! place that day (`shared/docs/ip-presence.md`, step 4).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, ActionMeta, Context, Reply, parse_time};
use crate::error::{Error, Result};
use crate::office::{ConfigInput, ManualChange, Office, PresenceChanges, now_or, parse_date};
use ip_presence::Place;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Input {
    /// The user (UPN, any case), who must be in the configuration's users.
    #[schemars(length(min = 1, max = 1024))]
    pub user: String,
    /// The office (a configured location). Give this or `remote: true`.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub location: Option<String>,
    /// The user is remote.
    #[serde(default)]
    pub remote: bool,
    /// The day (YYYY-MM-DD). Default: today, in the zone of the location.
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
    #[serde(flatten)]
    pub config: ConfigInput,
}

pub(crate) fn default_set_by() -> String {
    "administrator".into()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    #[serde(flatten)]
    pub changes: PresenceChanges,
}

/// What set and clear share: the user, the change, the day and the time it holds from.
pub(crate) struct Change<'a> {
    pub user: &'a str,
    pub place: Option<Place>,
    pub date: Option<&'a str>,
    pub at: Option<&'a str>,
    pub set_by: &'a str,
}

/// Record a manual change (set or clear).
pub(crate) fn apply(
    ctx: &Context,
    action: &str,
    config: &ConfigInput,
    change: Change<'_>,
) -> Result<Output> {
    let office = Office::open(ctx.state_dir.as_deref(), action)?;
    let config = office.config(config)?;
    let change = ManualChange {
        user: change.user,
        place: change.place,
        date: parse_date(change.date, "/inputs/date")?,
        at: now_or(parse_time(change.at, "/inputs/at")?),
        set_by: change.set_by,
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
            Change {
                user: &input.user,
                place: Some(place),
                date: input.date.as_deref(),
                at: input.at.as_deref(),
                set_by: &input.set_by,
            },
        )?;
        Ok(Reply::ok(body))
    }
}
