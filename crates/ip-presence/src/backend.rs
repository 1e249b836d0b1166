//! [`PresenceBackend`]: where the engine keeps its state (in memory,
//! [`crate::MemoryState`], or in SQLite, [`crate::PresenceStore`]; the connector adds one
//! in PostgreSQL, recomputing days with the same [`crate::recompute_day`]), with the references to
//! users and ranges the engine hands it ([`UserRef`], [`RangeRef`]) and the stable hash of
//! a sign-in id ([`id_hash`]).

use std::net::IpAddr;

use ipnet::IpNet;
use jiff::civil::Date;

use super::error::PresenceError;
use super::model::{DayChange, DiscoveryBlock, Override, Place, Transition};

/// FNV-1a: a stable 64-bit hash of a sign-in id. This is a format, not a map hasher:
/// `MemoryState` saves these hashes in its JSON state (`seen`), so the output must stay
/// the same across versions and machines (unlike std's or rustc-hash's hashers).
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A user as the engine passes it to a backend: the index in the configuration (valid
/// between [`PresenceBackend::begin`] calls) and the normalised UPN.
#[derive(Debug, Clone, Copy)]
pub struct UserRef<'a> {
    pub ix: u32,
    pub key: &'a str,
}

/// A matched range as passed to a backend.
#[derive(Debug, Clone, Copy)]
pub struct RangeRef<'a> {
    pub ix: u32,
    pub name: &'a str,
    pub place: &'a Place,
}

/// A sign-in id to record ([`PresenceBackend::first_seen_all`]).
#[derive(Debug, Clone, Copy)]
pub struct SeenSignIn<'a> {
    pub user: UserRef<'a>,
    pub id: &'a str,
    pub hash: u64,
    pub date: Date,
}

/// A user seen at a range's place ([`PresenceBackend::observe_all`]).
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub user: UserRef<'a>,
    pub date: Date,
    pub at_ms: i64,
    pub range: RangeRef<'a>,
}

/// Where the engine keeps its state. All calls of one batch happen between `begin` and
/// `recompute`; the store wraps them in one transaction.
pub trait PresenceBackend {
    /// Start a batch; indices in [`UserRef`]/[`RangeRef`] are valid until the next `begin`.
    fn begin(&mut self) -> Result<(), PresenceError> {
        Ok(())
    }
    /// End a batch: keep its changes (`ok`) or drop them.
    fn end(&mut self, ok: bool) -> Result<(), PresenceError> {
        let _ = ok;
        Ok(())
    }
    /// Record a sign-in id (of `user` on `date`; `hash` is [`id_hash`] of `id`);
    /// false when it was already seen.
    fn first_seen(
        &mut self,
        user: UserRef<'_>,
        id: &str,
        hash: u64,
        date: Date,
    ) -> Result<bool, PresenceError>;
    /// Whether the engine should hand this backend a batch's sign-ins in bulk (the `_all`
    /// methods below, each in place of one call per sign-in), for a store where every
    /// call is a round trip to a server. The results are the same either way.
    fn in_bulk(&self) -> bool {
        false
    }
    /// [`Self::first_seen`] of each sign-in, in order: an id given twice is new only the
    /// first time.
    fn first_seen_all(&mut self, items: &[SeenSignIn<'_>]) -> Result<Vec<bool>, PresenceError> {
        items
            .iter()
            .map(|s| self.first_seen(s.user, s.id, s.hash, s.date))
            .collect()
    }
    /// [`Self::log_access`] of each, in order: a repeated (user, ip, date) is new only the
    /// first time.
    fn log_access_all(
        &mut self,
        items: &[(UserRef<'_>, IpAddr, Date)],
    ) -> Result<Vec<bool>, PresenceError> {
        items
            .iter()
            .map(|&(user, ip, date)| self.log_access(user, ip, date))
            .collect()
    }
    /// [`Self::observe`] of each.
    fn observe_all(&mut self, items: &[Observation<'_>]) -> Result<(), PresenceError> {
        items
            .iter()
            .try_for_each(|o| self.observe(o.user, o.date, o.at_ms, o.range))
    }
    /// [`Self::discover`] of each.
    fn discover_all(
        &mut self,
        items: &[(IpNet, IpAddr, UserRef<'_>, Date)],
    ) -> Result<(), PresenceError> {
        items
            .iter()
            .try_for_each(|&(block, ip, user, date)| self.discover(block, ip, user, date))
    }
    /// Record an access event; false when (user, ip, date) was already recorded.
    fn log_access(
        &mut self,
        user: UserRef<'_>,
        ip: IpAddr,
        date: Date,
    ) -> Result<bool, PresenceError>;
    /// Record that the user was seen at the range's place at `at_ms` on `date`.
    fn observe(
        &mut self,
        user: UserRef<'_>,
        date: Date,
        at_ms: i64,
        range: RangeRef<'_>,
    ) -> Result<(), PresenceError>;
    /// Count an unmatched address toward the discovery report.
    fn discover(
        &mut self,
        block: IpNet,
        ip: IpAddr,
        user: UserRef<'_>,
        date: Date,
    ) -> Result<(), PresenceError>;
    /// Record a manual change.
    fn add_override(&mut self, user: &str, date: Date, ov: Override) -> Result<(), PresenceError>;
    /// Recompute every user-day touched since `begin`, handing each change to `sink`
    /// (one at a time, so a large batch never holds them all twice).
    fn recompute(&mut self, sink: &mut dyn FnMut(DayChange)) -> Result<(), PresenceError>;
    /// Enforce retention (access and presence events) and forget what is older than the
    /// late-arrival window (seen ids, observations, overrides).
    fn prune(
        &mut self,
        today: Date,
        retention_days: u16,
        window_days: u16,
    ) -> Result<(), PresenceError>;
    /// The discovery report, largest blocks first.
    fn discovery(&mut self) -> Result<Vec<DiscoveryBlock>, PresenceError>;
    /// The transitions of one user-day (for queries).
    fn day_transitions(&mut self, user: &str, date: Date)
    -> Result<Vec<Transition>, PresenceError>;
}
