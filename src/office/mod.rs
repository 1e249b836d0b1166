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
mod lines;
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
use crate::state::{SharedState, StateDb, StateStore};
use ip_presence::{PresenceConfig, PresenceError};

pub use config::{ConfigInput, ProcessInput};
pub use evaluate::{EvaluateReport, Output, SignInSource, check_inline_size, days_path, evaluate};
pub use manual::ManualChange;
pub use report::{PresenceChanges, sign_in_of};
pub use store::{OfficeStore, store_error};
pub use sync::{PullSummary, SyncOptions, SyncReport};
pub use today::Today;
pub use who::{WhoIsWhere, WhoQuery};

/// The presence state of a run: the engine's store and the named values (the kept
/// configuration, the sync's cursors), in the state dir or in the shared state.
pub struct Office {
    db: StateStore,
    store_at: StoreAt,
}

/// Where the presence store is.
enum StoreAt {
    /// `presence.sqlite3` in this state dir.
    Dir(PathBuf),
    /// The shared PostgreSQL state, under one scope (tenant and app); each use case
    /// opens the store on a connection of its own.
    Shared(Arc<Postgres>, String),
}

impl Office {
    /// Open the state under `state_dir`, which the store-backed `action` requires.
    pub fn open(state_dir: Option<&Path>, action: &str) -> Result<Self> {
        let dir = store::require_state_dir(state_dir, action)?;
        let db = StateStore::Local(StateDb::open(&dir)?);
        Ok(Office {
            db,
            store_at: StoreAt::Dir(dir),
        })
    }

    /// The state of one scope of the shared PostgreSQL state: presence (events,
    /// statuses, overrides, discovery) and the named values, nothing in a state dir.
    pub fn shared(state: SharedState) -> Self {
        Office {
            store_at: StoreAt::Shared(state.pg().clone(), state.scope().to_string()),
            db: StateStore::Shared(state),
        }
    }

    /// The configuration of the inputs, else the one the last sync kept.
    pub async fn config(&self, input: &ConfigInput) -> Result<PresenceConfig> {
        input.load_or_kept(&self.db).await
    }

    fn store(&self) -> Result<OfficeStore> {
        match &self.store_at {
            StoreAt::Dir(dir) => store::open_store(dir).map(OfficeStore::Embedded),
            StoreAt::Shared(pg, scope) => {
                SharedPresenceStore::open(pg.clone(), scope.clone()).map(OfficeStore::Shared)
            }
        }
    }

    /// A failure of the engine or of the store, naming the state dir's file.
    fn store_failed(&self, e: PresenceError) -> Error {
        match &self.store_at {
            StoreAt::Dir(dir) => store::store_error_in(dir, e),
            StoreAt::Shared(..) => store::store_error(e),
        }
    }
}
