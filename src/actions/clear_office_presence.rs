//! `clear_office_presence`: an administrator removes a user's presence for the day.
//!
//! No Graph call: this changes the connector's own store under `--state-dir`, never the
//! tenant. The user shows as nowhere until their next sign-in from a different place than
//! before the clear that day (`shared/docs/ip-presence.md`, step 4).

use schemars::JsonSchema;
use serde::Deserialize;

use super::set_office_presence::{Change, Output, apply, default_set_by};
use super::{Action, ActionMeta, Context, Reply};
use crate::error::Result;
use crate::office::ConfigInput;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Input {
    /// The user (UPN, any case), who must be in the configuration's users.
    #[schemars(length(min = 1, max = 1024))]
    pub user: String,
    /// The day (YYYY-MM-DD). Default: today in `settings.time_zone`.
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

pub struct ClearOfficePresence;

impl Action for ClearOfficePresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "clear_office_presence",
        title: "Clear office presence",
        description: "An administrator's manual clear of a user's IP-based presence for a day: the user shows nowhere until their next sign-in from a different place. Changes the connector's own store (--state-dir), not the tenant; no Graph call.",
        permissions: &[],
        changes_data: true,
        needs_graph: false,
        incremental: false,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let body = apply(
            ctx,
            Self::META.name,
            &input.config,
            Change {
                user: &input.user,
                place: None,
                date: input.date.as_deref(),
                at: input.at.as_deref(),
                set_by: &input.set_by,
            },
        )?;
        Ok(Reply::ok(body))
    }
}
