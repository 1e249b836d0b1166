//! Today's office presence of given users, for a user-status answer: the end-of-day
//! status of today (in the configuration's time zone) from the store, per user.

use std::collections::HashMap;

use ip_presence::{PresenceConfig, PresenceEngine, PresenceMode};

use super::Office;
use super::report::StatusOut;
use super::store::{store_error, today};
use crate::error::Result;

/// One user's office presence today.
#[derive(Debug, Clone)]
pub enum Today {
    /// Where the user is today (`None`: no status yet today).
    Status(Option<StatusOut>),
    /// The user is not tracked by the configuration, or only counted (`track_only`).
    NotShown,
}

impl Office {
    /// Today's status of each UPN (lower-cased keys), as the configuration allows showing it.
    pub fn today(&self, config: PresenceConfig, upns: &[&str]) -> Result<HashMap<String, Today>> {
        let store = self.store()?;
        let date = today(&config, jiff::Timestamp::now());
        let engine = PresenceEngine::new(config).map_err(|e| store_error(e.into()))?;
        let mut out = HashMap::with_capacity(upns.len());
        for upn in upns {
            let key = upn.to_lowercase();
            let shown = engine.user_mode(upn) == Some(PresenceMode::TrackAndDisplay);
            let entry = if shown {
                let p = store.user_presence(upn, date, date).map_err(store_error)?;
                Today::Status(p.days.last().map(Into::into))
            } else {
                Today::NotShown
            };
            out.insert(key, entry);
        }
        Ok(out)
    }
}
