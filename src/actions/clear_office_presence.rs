//! `clear_office_presence`: an administrator removes a user's presence for the day.
//!
//! No Graph call: this changes the connector's own store under `--state-dir`, never the
//! tenant. The user shows as nowhere until their next sign-in from a different place than
//! before the clear that day (`shared/docs/ip-presence.md`, step 4).

use schemars::JsonSchema;
use serde::Deserialize;

use super::ip_presence::ConfigSource;
use super::set_office_presence::{ManualChange, Output, apply, default_set_by};
use super::{Action, ActionMeta, Context, Reply};
use crate::error::Result;
use ip_presence::{IpRange, Settings, TrackedUser};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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
    /// A YAML or JSON file holding `ranges`, `users` and `settings`. Default: the
    /// configuration of the last sync_ip_presence.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub config_path: Option<String>,
    /// IP ranges (instead of config_path).
    #[serde(default)]
    pub ranges: Option<Vec<IpRange>>,
    /// Tracked users (instead of config_path).
    #[serde(default)]
    pub users: Option<Vec<TrackedUser>>,
    /// Settings (instead of config_path).
    #[serde(default)]
    pub settings: Option<Settings>,
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
            ManualChange {
                user: &input.user,
                place: None,
                date: input.date.as_deref(),
                at: input.at.as_deref(),
                set_by: &input.set_by,
                config: ConfigSource {
                    config_path: input.config_path.as_deref(),
                    ranges: input.ranges.as_ref(),
                    users: input.users.as_ref(),
                    settings: input.settings.as_ref(),
                },
            },
        )?;
        Ok(Reply::ok(body))
    }
}
