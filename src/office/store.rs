//! The store (under the state dir, or in the shared state: [`OfficeStore`]) and the small
//! things every presence action needs: the state dir itself, the engine's errors as the
//! contract's, dates and "now".

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::Date;

use super::config::config_errors;
use crate::backend::SharedPresenceStore;
use crate::error::{Error, Result};
use ip_presence::{
    AccessEvent, DayChange, DiscoveryBlock, Observation, OccupancyDay, Override, PresenceBackend,
    PresenceConfig, PresenceEngine, PresenceError, PresenceEvent, PresenceStore, RangeRef,
    SeenSignIn, Transition, UserPresence, UserRef,
};

/// The state dir, which the store-backed actions require.
pub fn require_state_dir(state_dir: Option<&Path>, action: &str) -> Result<PathBuf> {
    state_dir.map(Path::to_path_buf).ok_or_else(|| {
        Error::invalid(
            "",
            format!(
                "{action} keeps presence in the embedded store and needs a state dir \
                 (--state-dir or MSGRAPH_CONNECTOR_STATE_DIR); evaluate_ip_presence works without one"
            ),
        )
    })
}

/// Open the store under the state dir.
/// A folder or store open to others that cannot be made owner-only is refused,
/// exit 2, naming the folder; a store that cannot be opened otherwise (corrupt,
/// foreign, locked) is `local`, exit 6, naming it too.
pub fn open_store(dir: &Path) -> Result<PresenceStore> {
    PresenceStore::open(dir).map_err(|e| match e {
        PresenceError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Error::invalid(
            "",
            format!("cannot open the presence store in {}: {e}", dir.display()),
        ),
        e => store_error_in(dir, e),
    })
}

/// [`store_error`], with a failure of the store file itself (SQLite, I/O, schema)
/// naming the file under `dir`.
pub fn store_error_in(dir: &Path, e: PresenceError) -> Error {
    match e {
        PresenceError::Store(_) | PresenceError::Schema(_) | PresenceError::Io(_) => {
            Error::local(format!(
                "cannot use the presence store {}: {e}",
                dir.join(PresenceStore::FILE_NAME).display()
            ))
        }
        e => store_error(e),
    }
}

/// A failure of the engine or store, as the contract's error. The store's own
/// failures are `local` (exit 6); [`store_error_in`] names the file.
pub fn store_error(e: PresenceError) -> Error {
    match e {
        PresenceError::Config(errors) => config_errors(errors, "/inputs"),
        PresenceError::Input(e) => Error::invalid("/inputs", e.to_string()),
        PresenceError::Invalid(m) => Error::invalid("/inputs", m),
        PresenceError::State(m) => Error::invalid("/state", m),
        PresenceError::StateAt { pointer, message } => {
            Error::invalid(format!("/state{pointer}"), message)
        }
        e @ (PresenceError::Store(_) | PresenceError::Schema(_) | PresenceError::Io(_)) => {
            Error::local(e.to_string())
        }
        // The engine's own files (partition files, a replay's days file): they name
        // their folder or path.
        PresenceError::Scratch(e) => Error::local(e.to_string()),
        // The shared store's own failures (it names the database): the shared state
        // cannot be used, exit 7, never a fallback.
        PresenceError::Backend(m) => Error::state(m),
        other => Error::internal(other.to_string()),
    }
}

/// Today in the configuration's default zone.
pub fn today(config: &PresenceConfig, now: Timestamp) -> Date {
    let tz = jiff::tz::TimeZone::get(&config.settings.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    now.to_zoned(tz).date()
}

/// Where the office keeps presence: the state dir's SQLite file (the default), or the
/// shared PostgreSQL state under a scope ([`crate::backend::SharedPresenceStore`]). Both
/// take the engine's batches ([`PresenceBackend`]) and answer the same queries alike.
#[derive(Debug)]
pub enum OfficeStore {
    Embedded(PresenceStore),
    Shared(SharedPresenceStore),
}

/// Each method of the store the office uses, on whichever it is.
macro_rules! either {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            OfficeStore::Embedded($s) => $e,
            OfficeStore::Shared($s) => $e,
        }
    };
}

impl OfficeStore {
    /// Who is where at the end of `date` (as far as known), optionally at one location.
    pub fn who_is_where(
        &self,
        engine: &PresenceEngine,
        date: Date,
        location: Option<&str>,
        full_view: bool,
    ) -> Result<ip_presence::WhoIsWhere, PresenceError> {
        either!(self, s => s.who_is_where(engine, date, location, full_view))
    }

    /// Distinct users per place per day over `from..=to`, optionally for one location.
    pub fn occupancy(
        &self,
        from: Date,
        to: Date,
        location: Option<&str>,
    ) -> Result<Vec<OccupancyDay>, PresenceError> {
        either!(self, s => s.occupancy(from, to, location))
    }

    /// A user's end-of-day statuses and presence events over `from..=to`.
    pub fn user_presence(
        &self,
        upn: &str,
        from: Date,
        to: Date,
    ) -> Result<UserPresence, PresenceError> {
        either!(self, s => s.user_presence(upn, from, to))
    }

    /// Every presence event kept, sorted.
    pub fn all_presence_events(&self) -> Result<Vec<PresenceEvent>, PresenceError> {
        either!(self, s => s.all_presence_events())
    }

    /// Every access event kept, sorted.
    pub fn all_access_events(&self) -> Result<Vec<AccessEvent>, PresenceError> {
        either!(self, s => s.all_access_events())
    }
}

impl PresenceBackend for OfficeStore {
    fn begin(&mut self) -> Result<(), PresenceError> {
        either!(self, s => s.begin())
    }
    fn end(&mut self, ok: bool) -> Result<(), PresenceError> {
        either!(self, s => s.end(ok))
    }
    fn first_seen(
        &mut self,
        user: UserRef<'_>,
        id: &str,
        hash: u64,
        date: Date,
    ) -> Result<bool, PresenceError> {
        either!(self, s => s.first_seen(user, id, hash, date))
    }
    fn log_access(
        &mut self,
        user: UserRef<'_>,
        ip: IpAddr,
        date: Date,
    ) -> Result<bool, PresenceError> {
        either!(self, s => s.log_access(user, ip, date))
    }
    fn in_bulk(&self) -> bool {
        either!(self, s => s.in_bulk())
    }
    fn first_seen_all(&mut self, items: &[SeenSignIn<'_>]) -> Result<Vec<bool>, PresenceError> {
        either!(self, s => s.first_seen_all(items))
    }
    fn log_access_all(
        &mut self,
        items: &[(UserRef<'_>, IpAddr, Date)],
    ) -> Result<Vec<bool>, PresenceError> {
        either!(self, s => s.log_access_all(items))
    }
    fn observe_all(&mut self, items: &[Observation<'_>]) -> Result<(), PresenceError> {
        either!(self, s => s.observe_all(items))
    }
    fn discover_all(
        &mut self,
        items: &[(IpNet, IpAddr, UserRef<'_>, Date)],
    ) -> Result<(), PresenceError> {
        either!(self, s => s.discover_all(items))
    }
    fn observe(
        &mut self,
        user: UserRef<'_>,
        date: Date,
        at_ms: i64,
        range: RangeRef<'_>,
    ) -> Result<(), PresenceError> {
        either!(self, s => s.observe(user, date, at_ms, range))
    }
    fn discover(
        &mut self,
        block: IpNet,
        ip: IpAddr,
        user: UserRef<'_>,
        date: Date,
    ) -> Result<(), PresenceError> {
        either!(self, s => s.discover(block, ip, user, date))
    }
    fn add_override(&mut self, user: &str, date: Date, ov: Override) -> Result<(), PresenceError> {
        either!(self, s => s.add_override(user, date, ov))
    }
    fn recompute(&mut self, sink: &mut dyn FnMut(DayChange)) -> Result<(), PresenceError> {
        either!(self, s => s.recompute(sink))
    }
    fn prune(
        &mut self,
        today: Date,
        retention_days: u16,
        window_days: u16,
    ) -> Result<(), PresenceError> {
        either!(self, s => s.prune(today, retention_days, window_days))
    }
    fn discovery(&mut self) -> Result<Vec<DiscoveryBlock>, PresenceError> {
        either!(self, s => s.discovery())
    }
    fn day_transitions(
        &mut self,
        user: &str,
        date: Date,
    ) -> Result<Vec<Transition>, PresenceError> {
        either!(self, s => s.day_transitions(user, date))
    }
}
