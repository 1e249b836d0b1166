//! `set_office_presence`: an administrator says where a user is for the day.
//!
//! No Graph call: this changes the connector's own store under `--state-dir`, never the
//! tenant. The override holds from now until the user's next sign-in from a different
//! place that day (`shared/docs/ip-presence.md`, step 4).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ip_presence::{
    ConfigSource, PresenceChanges, now_or, open_store, parse_date, require_state_dir, store_error,
};
use super::{Action, ActionMeta, Context, Reply, parse_time};
use crate::error::{Error, Result};
use ip_presence::{IpRange, Place, PresenceEngine, PresenceMode, Settings, TrackedUser};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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

pub(crate) fn default_set_by() -> String {
    "administrator".into()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    #[serde(flatten)]
    pub changes: PresenceChanges,
}

/// What set and clear share.
pub(crate) struct ManualChange<'a> {
    pub user: &'a str,
    pub place: Option<Place>,
    pub date: Option<&'a str>,
    pub at: Option<&'a str>,
    pub set_by: &'a str,
    pub config: ConfigSource<'a>,
}

pub(crate) fn apply(ctx: &Context, action: &str, change: ManualChange<'_>) -> Result<Output> {
    let dir = require_state_dir(ctx.state_dir.as_deref(), action)?;
    let mut store = open_store(&dir)?;
    let config = change.config.load_or_kept(&store)?;
    let date = parse_date(change.date, "/inputs/date")?;
    let at = now_or(parse_time(change.at, "/inputs/at")?);
    let engine = PresenceEngine::new(config).map_err(|e| store_error(e.into()))?;
    match engine.user_mode(change.user) {
        None => {
            return Err(Error::invalid(
                "/inputs/user",
                "is not a tracked user of the configuration",
            ));
        }
        Some(PresenceMode::Off) => {
            return Err(Error::invalid(
                "/inputs/user",
                "has presence mode off: nothing is recorded for this user",
            ));
        }
        Some(_) => {}
    }
    if let Some(Place::Office { location }) = &change.place
        && engine.locations().binary_search(location).is_err()
    {
        return Err(Error::invalid(
            "/inputs/location",
            format!(
                "is not a configured location ({})",
                engine.locations().join(", ")
            ),
        ));
    }
    let report = engine
        .set_manual(
            &mut store,
            change.user,
            change.place,
            at,
            date,
            change.set_by,
        )
        .map_err(store_error)?;
    Ok(Output {
        changes: (&report).into(),
    })
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
            ManualChange {
                user: &input.user,
                place: Some(place),
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
