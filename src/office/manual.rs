//! An administrator's change of a user's presence for a day: set (an office or remote)
//! or clear. It changes the connector's own store, never the tenant, and holds until the
//! user's next sign-in from a different place that day (`shared/docs/ip-presence.md`,
//! step 4).

use jiff::Timestamp;
use jiff::civil::Date;

use super::Office;
use super::report::PresenceChanges;
use super::store::store_error;
use crate::error::{Error, Result};
use ip_presence::{Place, PresenceConfig, PresenceEngine, PresenceMode};

/// One manual change: `place` is `None` for a clear.
pub struct ManualChange<'a> {
    pub user: &'a str,
    pub place: Option<Place>,
    /// The day; default today in the zone of the place.
    pub date: Option<Date>,
    pub at: Timestamp,
    pub set_by: &'a str,
}

impl Office {
    /// Record `change` for a tracked user (errors point at the inputs named like the
    /// fields of [`ManualChange`]).
    pub fn set_manual(
        &self,
        config: PresenceConfig,
        change: ManualChange<'_>,
    ) -> Result<PresenceChanges> {
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
        let mut store = self.store()?;
        let report = engine
            .set_manual(
                &mut store,
                change.user,
                change.place,
                change.at,
                change.date,
                change.set_by,
            )
            .map_err(|e| self.store_failed(e))?;
        Ok((&report).into())
    }
}
