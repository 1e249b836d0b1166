//! What a lease attempt is told, shared by both stores' lease statements
//! (`state.sqlite3`'s in [`super::lease`], PostgreSQL's in [`super::shared`]).

use std::time::Duration;

/// Who holds a lease, as a waiting run is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

impl Holder {
    /// What a run that gave up waiting says in its result.
    pub fn skipped(&self, waited: Duration) -> String {
        let until = jiff::Timestamp::from_millisecond(self.expires_at_ms)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| self.expires_at_ms.to_string());
        format!(
            "lease held by another run: the sign-in cursor is in use by {} (lease until {until}, \
             renewed while it runs); waited {} s; nothing was read or changed",
            self.holder,
            waited.as_secs()
        )
    }
}

/// The answer to one attempt at a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    Taken,
    HeldBy(Holder),
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
