//! Who is in which office on a day, occupancy per office per day over a date range,
//! and one user's days, from the store that `sync_ip_presence` fills. Users in
//! `track_only` mode are counted but not named unless the caller asks for the full view
//! (for administrators).

use jiff::civil::Date;
use schemars::JsonSchema;
use serde::Serialize;

use super::Office;
use super::report::{PresenceEventOut, StatusOut, Whereabouts};
use super::store::{store_error, today};
use crate::error::{Error, Result};
use ip_presence::{PresenceConfig, PresenceEngine, PresenceMode};

/// What to look up.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhoQuery<'a> {
    /// The day of "who is where"; default today in `settings.time_zone`.
    pub date: Option<Date>,
    /// Only this office, or `Remote`.
    pub location: Option<&'a str>,
    /// Only this user's days and events.
    pub user: Option<&'a str>,
    /// The occupancy range; default the six days before `to`, and `date`.
    pub from: Option<Date>,
    pub to: Option<Date>,
    /// Name users in `track_only` mode too.
    pub full_view: bool,
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
pub struct WhoIsWhere {
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

impl Office {
    /// Who is where, occupancy and one user's days (see the module doc).
    pub fn who_is_where(&self, config: PresenceConfig, query: WhoQuery<'_>) -> Result<WhoIsWhere> {
        let store = self.store()?;
        let date = match query.date {
            Some(d) => d,
            None => today(&config, jiff::Timestamp::now()),
        };
        let to = query.to.unwrap_or(date);
        let from = match query.from {
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
        let location = query.location;
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
            .who_is_where(&engine, date, location, query.full_view)
            .map_err(|e| self.store_failed(e))?;
        let occupancy = store
            .occupancy(from, to, location)
            .map_err(|e| self.store_failed(e))?;
        let user = match query.user {
            None => None,
            Some(upn) => {
                let mode = engine.user_mode(upn).ok_or_else(|| {
                    Error::invalid("/inputs/user", "is not a tracked user of the configuration")
                })?;
                let hidden = mode != PresenceMode::TrackAndDisplay && !query.full_view;
                let p = store
                    .user_presence(upn, from, to)
                    .map_err(|e| self.store_failed(e))?;
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
        let body = WhoIsWhere {
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
        Ok(body)
    }
}
