//! [`PresenceError`]: everything that can go wrong in the engine, its file reader, and the
//! two backends.

use super::config::ConfigError;
use super::signin::SignInParseError;

/// Everything that can go wrong in the presence engine and store.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("invalid presence configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),
    #[error(transparent)]
    Input(#[from] SignInParseError),
    #[error("presence store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("presence store: {0}")]
    Schema(String),
    #[error("presence state: {0}")]
    State(String),
    /// Something wrong at `pointer` (a JSON pointer into the state JSON) of a
    /// [`crate::MemoryState`] handed in.
    #[error("presence state at {pointer}: {message}")]
    StateAt { pointer: String, message: String },
    /// A time no [`jiff::Timestamp`] can hold, in milliseconds since the epoch.
    #[error("time out of range: {0} ms since the epoch")]
    Time(i64),
    #[error("{0}")]
    Invalid(String),
    /// A failure of a store kept outside this crate (the connector's PostgreSQL store),
    /// worded by that store (which names it, never a password).
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A file of the engine's own could not be written or read back: a partition file
    /// of a large file's sign-ins, or a spilled replay's days file (the message names
    /// its folder or path). The disk or the folder failed, not the input.
    #[error("{0}")]
    Scratch(std::io::Error),
}

impl From<Vec<ConfigError>> for PresenceError {
    fn from(e: Vec<ConfigError>) -> Self {
        PresenceError::Config(e)
    }
}
