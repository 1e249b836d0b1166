//! IP-based office presence as the connector serves it: the use cases between the
//! presence actions and the `ip-presence` engine.
//!
//! - [`config`]: the one set of configuration inputs ([`ConfigInput`]) and where a
//!   configuration comes from (a file, inline, or the one the last sync kept);
//! - [`Office`]: the presence store (the state dir's, or the shared PostgreSQL one:
//!   [`OfficeStore`]) and state database, opened once per run, with the use cases as methods: [`Office::sync`] (pull sign-ins, apply the
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
use std::sync::Arc;

use crate::backend::{Postgres, SharedPresenceStore};
use crate::error::{Error, Result};
use crate::state::StateDb;
use ip_presence::{PresenceConfig, PresenceError};

pub use config::{ConfigInput, ProcessInput};
pub use evaluate::{EvaluateReport, Output, SignInSource, check_inline_size, evaluate};
pub use manual::ManualChange;
pub use report::{PresenceChanges, sign_in_of};
pub use store::{OfficeStore, store_error};
pub use sync::{PullSummary, SyncOptions, SyncReport};
pub use today::Today;
pub use who::{WhoIsWhere, WhoQuery};

/// The presence state under a state dir: the engine's store and our state database.
pub struct Office {
    dir: PathBuf,
    db: StateDb,
    /// The presence store in the shared PostgreSQL state, under this scope, instead of
    /// the state dir's (see [`Office::with_shared_store`]).
    shared: Option<(Arc<Postgres>, String)>,
}

impl Office {
    /// Open the state under `state_dir`, which the store-backed `action` requires.
    pub fn open(state_dir: Option<&Path>, action: &str) -> Result<Self> {
        let dir = store::require_state_dir(state_dir, action)?;
        let db = StateDb::open(&dir)?;
        Ok(Office {
            dir,
            db,
            shared: None,
        })
    }

    /// Keep presence (events, statuses, overrides, discovery) in the shared PostgreSQL
    /// state under `scope` (one tenant and app: the asset's token URL and client id),
    /// not in the state dir. Each use case opens the store on a connection of its own.
    pub fn with_shared_store(mut self, pg: Arc<Postgres>, scope: String) -> Self {
        self.shared = Some((pg, scope));
        self
    }

    /// The configuration of the inputs, else the one the last sync kept.
    pub fn config(&self, input: &ConfigInput) -> Result<PresenceConfig> {
        input.load_or_kept(&self.db)
    }

    fn store(&self) -> Result<OfficeStore> {
        match &self.shared {
            None => store::open_store(&self.dir).map(OfficeStore::Embedded),
            Some((pg, scope)) => {
                SharedPresenceStore::open(pg.clone(), scope.clone()).map(OfficeStore::Shared)
            }
        }
    }

    /// A failure of the engine or of this state dir's store, naming the store's file.
    fn store_failed(&self, e: PresenceError) -> Error {
        store::store_error_in(&self.dir, e)
    }
}
