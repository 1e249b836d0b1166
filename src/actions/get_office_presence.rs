//! `get_office_presence`: who is in which office on a day, and occupancy per office per
//! day over a date range, from the embedded store that `sync_ip_presence` fills.
//!
//! No Graph call. Users in `track_only` mode are counted but not named unless the caller
//! asks for the full view (`full_view: true`), which is for administrators.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::inputs::parse_date;
use crate::office::{ConfigInput, WhoIsWhere, WhoQuery};

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Input {
    /// The day of "who is where" (YYYY-MM-DD). Default: today in `settings.time_zone`.
    #[serde(default)]
    #[schemars(extend("format" = "date"))]
    pub date: Option<String>,
    /// Only this office (its location name), or `Remote`.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub location: Option<String>,
    /// Only this user (UPN, any case): their statuses and presence events from `from` to `to`.
    #[serde(default)]
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub user: Option<String>,
    /// First day of the occupancy range (YYYY-MM-DD). Default: six days before `to`.
    #[serde(default)]
    #[schemars(extend("format" = "date"))]
    pub from: Option<String>,
    /// Last day of the occupancy range (YYYY-MM-DD). Default: `date`.
    #[serde(default)]
    #[schemars(extend("format" = "date"))]
    pub to: Option<String>,
    /// Name users in `track_only` mode too (for administrators). Default: count them only.
    #[serde(default)]
    pub full_view: bool,
    #[serde(flatten)]
    pub config: ConfigInput,
}

pub struct GetOfficePresence;

impl Action for GetOfficePresence {
    type Input = Input;
    type Output = WhoIsWhere;
    const META: ActionMeta = ActionMeta {
        name: "get_office_presence",
        title: "Get office presence",
        description: "Who is in which office (or remote) on a day, and occupancy per office per day over a date range, from the IP presence kept by sync_ip_presence in the embedded store (--state-dir). Users in track_only mode are counted but only named with full_view. Local: no Graph call.",
        permissions: &[],
        changes_data: false,
        needs_graph: false,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<WhoIsWhere>> {
        let office = ctx.office(Self::META.name)?;
        let config = office.config(&input.config).await?;
        let query = WhoQuery {
            date: parse_date(input.date.as_deref(), "/inputs/date")?,
            location: input.location.as_deref(),
            user: input.user.as_deref(),
            from: parse_date(input.from.as_deref(), "/inputs/from")?,
            to: parse_date(input.to.as_deref(), "/inputs/to")?,
            full_view: input.full_view,
        };
        Ok(Reply::ok(office.who_is_where(config, query)?))
    }
}
