//! The store under the state dir and the small things every presence action needs:
//! the state dir itself, the engine's errors as the contract's, dates and "now".

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::Date;

use super::config::config_errors;
use crate::error::{Error, Result};
use ip_presence::{PresenceConfig, PresenceError, PresenceStore};

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
        other => Error::internal(other.to_string()),
    }
}

/// Today in the configuration's default zone.
pub fn today(config: &PresenceConfig, now: Timestamp) -> Date {
    let tz = jiff::tz::TimeZone::get(&config.settings.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    now.to_zoned(tz).date()
}
