//! `get_office_presence`: who is in which office on a day, and occupancy per office per
//! day over a date range, from the embedded store that `sync_ip_presence` fills.
//!
//! No Graph call. Users in `track_only` mode are counted but not named unless the caller
//! asks for the full view (`full_view: true`), which is for administrators.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ip_presence::{
    ConfigSource, PresenceEventOut, StatusOut, Whereabouts, open_store, parse_date,
    require_state_dir, store_error, today,
};
use super::{Action, ActionMeta, Context, Reply};
use crate::error::{Error, Result};
use ip_presence::{IpRange, PresenceEngine, PresenceMode, Settings, TrackedUser};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
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

/// The users at one place at the end of the day.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlacePresence {
    #[serde(flatten)]
    pub place: Whereabouts,
    /// Everyone there, named or not.
    pub count: u64,
    /// The users shown (`track_and_display`, or everyone with `full_view`), by UPN.
    pub users: Vec<String>,
    /// How many of `count` are not named.
    pub hidden: u64,
}

/// Distinct users at a place on a day (anyone with a presence event there that day).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Occupancy {
    pub date: String,
    #[serde(flatten)]
    pub place: Whereabouts,
    pub users: u64,
}

/// One user's presence over the date range.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UserReport {
    pub user: String,
    /// The user is in `track_only` mode and `full_view` was not asked for: nothing is shown.
    pub hidden: bool,
    /// End-of-day status per day.
    pub days: Vec<StatusOut>,
    pub events: Vec<PresenceEventOut>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The day of `locations`.
    pub date: String,
    /// Who is where at the end of `date` (as far as known), offices first, then Remote.
    pub locations: Vec<PlacePresence>,
    /// First and last day of `occupancy`.
    pub from: String,
    pub to: String,
    /// Distinct users per place per day, by date then place.
    pub occupancy: Vec<Occupancy>,
    /// With `user`: that user's days and events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserReport>,
}

pub struct GetOfficePresence;

impl Action for GetOfficePresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "get_office_presence",
        title: "Get office presence",
        description: "Who is in which office (or remote) on a day, and occupancy per office per day over a date range, from the IP presence kept by sync_ip_presence in the embedded store (--state-dir). Users in track_only mode are counted but only named with full_view. Local: no Graph call.",
        permissions: &[],
        changes_data: false,
        needs_graph: false,
        incremental: false,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let dir = require_state_dir(ctx.state_dir.as_deref(), Self::META.name)?;
        let store = open_store(&dir)?;
        let config = ConfigSource {
            config_path: input.config_path.as_deref(),
            ranges: input.ranges.as_ref(),
            users: input.users.as_ref(),
            settings: input.settings.as_ref(),
        }
        .load_or_kept(&store)?;
        let date = match parse_date(input.date.as_deref(), "/inputs/date")? {
            Some(d) => d,
            None => today(&config, jiff::Timestamp::now()),
        };
        let to = parse_date(input.to.as_deref(), "/inputs/to")?.unwrap_or(date);
        let from = match parse_date(input.from.as_deref(), "/inputs/from")? {
            Some(d) => d,
            None => to
                .checked_sub(jiff::Span::new().days(6))
                .map_err(|e| Error::invalid("/inputs/to", e.to_string()))?,
        };
        if from > to {
            return Err(Error::invalid("/inputs/from", "is after `to`"));
        }
        if to.since(from).map(|s| s.get_days()).unwrap_or(0) > 366 {
            return Err(Error::invalid(
                "/inputs/from",
                "the occupancy range is at most 366 days",
            ));
        }
        let engine = PresenceEngine::new(config).map_err(|e| store_error(e.into()))?;
        let location = input.location.as_deref();
        if let Some(l) = location
            && !l.eq_ignore_ascii_case("remote")
            && engine.locations().binary_search(&l.to_string()).is_err()
        {
            return Err(Error::invalid(
                "/inputs/location",
                format!(
                    "is not a configured location ({}, or Remote)",
                    engine.locations().join(", ")
                ),
            ));
        }
        let who = store
            .who_is_where(&engine, date, location, input.full_view)
            .map_err(store_error)?;
        let occupancy = store.occupancy(from, to, location).map_err(store_error)?;
        let user = match &input.user {
            None => None,
            Some(upn) => {
                let mode = engine.user_mode(upn).ok_or_else(|| {
                    Error::invalid("/inputs/user", "is not a tracked user of the configuration")
                })?;
                let hidden = mode != PresenceMode::TrackAndDisplay && !input.full_view;
                let p = store.user_presence(upn, from, to).map_err(store_error)?;
                Some(UserReport {
                    user: p.user,
                    hidden,
                    days: if hidden {
                        Vec::new()
                    } else {
                        p.days.iter().map(Into::into).collect()
                    },
                    events: if hidden {
                        Vec::new()
                    } else {
                        p.events.iter().map(Into::into).collect()
                    },
                })
            }
        };
        let body = Output {
            date: date.to_string(),
            locations: who
                .locations
                .iter()
                .map(|l| PlacePresence {
                    place: Some(&l.place).into(),
                    count: l.count,
                    users: l.users.clone(),
                    hidden: l.hidden,
                })
                .collect(),
            from: from.to_string(),
            to: to.to_string(),
            occupancy: occupancy
                .iter()
                .map(|o| Occupancy {
                    date: o.date.to_string(),
                    place: Some(&o.place).into(),
                    users: o.users,
                })
                .collect(),
            user,
        };
        Ok(Reply::ok(body))
    }
}
