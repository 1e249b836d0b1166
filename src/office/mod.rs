//! IP-based office presence as the connector serves it: the use cases between the
//! presence actions and the `ip-presence` engine.
//!
//! - [`config`]: the one set of configuration inputs ([`ConfigInput`]) and where a
//!   configuration comes from (a file, inline, or the one the last sync kept);
//! - [`Office`]: the state dir's presence store and state database, opened once per
//!   run, with the use cases as methods: [`Office::sync`] (pull sign-ins, apply the
//!   rules, keep the result), [`Office::set_manual`] (an administrator's change) and
//!   [`Office::who_is_where`] (who is where, occupancy, one user's days) and
//!   [`Office::today`] (given users' status today, for `get_user_status`);
//! - [`evaluate()`]: the stateless evaluation, state in and out as JSON;
//! - [`report`]: the output types, converted from the engine's.
//!
//! The actions in `crate::actions` parse their inputs, call one of these, and return
//! what it gives.

pub mod config;
mod evaluate;
mod manual;
pub mod report;
mod store;
mod sync;
mod today;
mod who;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::{StateDb, StateStore};
use ip_presence::{PresenceConfig, PresenceError, PresenceStore};

pub use config::{ConfigInput, ProcessInput};
pub use evaluate::{EvaluateReport, Output, SignInSource, check_inline_size, evaluate};
pub use manual::ManualChange;
pub use report::{PresenceChanges, sign_in_of};
pub use store::store_error;
pub use sync::{PullSummary, SyncOptions, SyncReport};
pub use today::Today;
pub use who::{WhoIsWhere, WhoQuery};

/// The presence state under a state dir: the engine's store and our state database.
pub struct Office {
    dir: PathBuf,
    db: StateStore,
}

impl Office {
    /// Open the state under `state_dir`, which the store-backed `action` requires.
    pub fn open(state_dir: Option<&Path>, action: &str) -> Result<Self> {
        crate::backend::refuse_local("the IP presence store")?;
        let dir = store::require_state_dir(state_dir, action)?;
        let db = StateStore::Local(StateDb::open(&dir)?);
        Ok(Office { dir, db })
    }

    /// The configuration of the inputs, else the one the last sync kept.
    pub async fn config(&self, input: &ConfigInput) -> Result<PresenceConfig> {
        input.load_or_kept(&self.db).await
    }

    fn store(&self) -> Result<PresenceStore> {
        store::open_store(&self.dir)
    }

    /// A failure of the engine or of this state dir's store, naming the store's file.
    fn store_failed(&self, e: PresenceError) -> Error {
        store::store_error_in(&self.dir, e)
    }
}
