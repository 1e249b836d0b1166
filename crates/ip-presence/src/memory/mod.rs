//! [`MemoryState`]: the engine state in memory, a book per user ([`day`]: the user's days).
//! Its compact JSON form for stateless runs (the action envelope's `state` when the
//! platform gives no disk) is in [`json`]; the two-thread reading of a large JSON-lines
//! file is in [`shards`], straight into the books or through partition files by user
//! ([`partitions`], applied by [`spill`], which also writes a spilled replay's days).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use jiff::civil::Date;
use rustc_hash::FxHashMap;

use crate::backend::{PresenceBackend, RangeRef, UserRef};
use crate::calendar::{day_start_ms, is_valid_ms, timestamp_of};
use crate::error::PresenceError;
use crate::model::{
    AccessEvent, DayChange, DiscoveryBlock, Override, Place, PresenceEvent, TimelineItem,
    Transition, UserDayStatus,
};
use crate::ranges::suggested_block;

use day::{Ev, MANUAL, UserBook, UserDay, ev_transition, obs_error, pack_obs, unpack_obs};

mod day;
mod json;
mod partitions;
mod shards;
mod spill;

/// Engine state in memory: per user and calendar day the seen sign-in ids, the logged
/// addresses and every observation (all of them: a late sign-in can fall between any two).
/// Everything one sign-in touches sits in one user's book, which keeps processing fast.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    users: Vec<UserBook>,
    user_ids: FxHashMap<Box<str>, u32>,
    places: Vec<(Box<str>, Place)>,
    place_ids: FxHashMap<(Box<str>, Place), u32>,
    discovery: Discovery,
    user_cache: Vec<u32>,
    range_cache: Vec<u32>,
    dirty: Vec<(u32, Date)>,
    /// Set by [`MemoryState::spill_to`]: a replay of a large file keeps almost nothing.
    spill: Option<Arc<Spill>>,
}

/// Where a spilled replay (the crate doc, "Replay") puts what it would otherwise hold: its
/// sign-ins, sorted by user into partition files in `temp_dir` (unnamed, gone when
/// closed), and the days of now's window, as JSON lines to `days` (the file the state
/// then names as `days_file`: [`MemoryState::into_json`]).
pub struct Spill {
    temp_dir: PathBuf,
    days_path: String,
    days: Mutex<Box<dyn Write + Send>>,
    lines: AtomicU64,
    used: AtomicBool,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("temp_dir", &self.temp_dir)
            .field("days_path", &self.days_path)
            .field("lines", &self.lines())
            .finish_non_exhaustive()
    }
}

impl Spill {
    pub(super) fn days_path(&self) -> &str {
        &self.days_path
    }
    pub(super) fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }
    pub(super) fn used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }
}

/// In `user_cache` and `range_cache`: not interned yet.
const NONE: u32 = u32::MAX;

/// Discovery keeps at most this many (address, user) counts, so a month of hotel and café
/// addresses cannot grow the state without end: what a hash table of 65,536 slots holds
/// at its 7/8 load (hashbrown's), 1.9 MB with 28-byte (address, user) entries. One more would
/// double the table, which for a moment also holds the old one. Below the cap the counts
/// are exact; past it, sign-ins of further new pairs are not counted (which pairs are
/// kept then depends on the reading order).
pub const DISCOVERY_KEYS: usize = 65_536 / 8 * 7;

/// The discovery counts: per address in no range and state user, the sign-ins.
pub(super) type Discovery = FxHashMap<Found, u32>;

/// A discovery count's key: an address in no range and the state user. The address's
/// suggested block ([`suggested_block`]) is not kept, since the address gives it; with
/// the count, 28 bytes an entry (a key of block, address and user took 40, its count 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Found {
    /// IPv4 addresses as their IPv4-mapped IPv6 form, told apart by `v6`.
    addr: [u8; 16],
    v6: bool,
    pub(super) user: u32,
}

impl Found {
    pub(super) fn new(ip: IpAddr, user: u32) -> Self {
        let (addr, v6) = match ip {
            IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), false),
            IpAddr::V6(a) => (a.octets(), true),
        };
        Found { addr, v6, user }
    }

    pub(super) fn ip(&self) -> IpAddr {
        let a = std::net::Ipv6Addr::from(self.addr);
        match (self.v6, a.to_ipv4_mapped()) {
            (false, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(a),
        }
    }

    pub(super) fn block(&self) -> IpNet {
        suggested_block(self.ip())
    }
}

/// Count `n` more sign-ins for `key` in `map`, within [`DISCOVERY_KEYS`] (a count stops
/// at `u32::MAX`).
fn count_discovery(map: &mut Discovery, key: Found, n: u64) {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    if let Some(e) = map.get_mut(&key) {
        *e = e.saturating_add(n);
    } else if map.len() < DISCOVERY_KEYS {
        map.insert(key, n);
    }
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Let a replay of a large JSON-lines file (`process_file_to` with
    /// [`crate::ProcessOptions::replay`]) spill: its sign-ins go to partition files in
    /// `temp_dir` and come back a partition of users at a time, and the days this state
    /// would keep go to `days` as JSON lines, the state naming `days_path` for them. Memory
    /// then holds a partition's window, not the whole window. Other runs are unchanged
    /// ([`Self::days_spilled`] says which it was).
    pub fn spill_to(&mut self, temp_dir: PathBuf, days_path: String, days: Box<dyn Write + Send>) {
        self.spill = Some(Arc::new(Spill {
            temp_dir,
            days_path,
            days: Mutex::new(days),
            lines: AtomicU64::new(0),
            used: AtomicBool::new(false),
        }));
    }

    /// Where the partition files of a large file go: the spill's directory, else the
    /// system's temporary one.
    fn temp_dir(&self) -> PathBuf {
        self.spill
            .as_ref()
            .map_or_else(std::env::temp_dir, |s| s.temp_dir.clone())
    }

    /// Whether the days went to the spill's file (then [`Self::into_json`] names it).
    pub fn days_spilled(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| s.used())
    }

    fn intern_user(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.user_ids.get(key) {
            return id;
        }
        let id = self.users.len() as u32;
        self.users.push(UserBook {
            key: key.into(),
            days: Vec::new(),
        });
        self.user_ids.insert(key.into(), id);
        id
    }

    #[inline]
    fn user_id(&mut self, u: UserRef<'_>) -> u32 {
        let ix = u.ix as usize;
        if ix >= self.user_cache.len() {
            self.user_cache.resize(ix + 1, NONE);
        }
        if self.user_cache[ix] == NONE {
            self.user_cache[ix] = self.intern_user(u.key);
        }
        self.user_cache[ix]
    }

    fn intern_place(&mut self, range: &str, place: &Place) -> u32 {
        let key: (Box<str>, Place) = (range.into(), place.clone());
        if let Some(&id) = self.place_ids.get(&key) {
            return id;
        }
        let id = self.places.len() as u32;
        self.places.push(key.clone());
        self.place_ids.insert(key, id);
        id
    }

    /// The user-day, marked for recomputation.
    #[inline]
    fn dirty_day(&mut self, user: u32, date: Date) -> &mut UserDay {
        let ud = self.users[user as usize].day(date);
        if !ud.dirty {
            ud.dirty = true;
            self.dirty.push((user, date));
        }
        self.users[user as usize].day(date)
    }

    fn recompute_one(&mut self, user: u32, date: Date) -> Option<DayChange> {
        let book = &mut self.users[user as usize];
        let ud = &mut book.days.iter_mut().find(|(d, _)| *d == date)?.1;
        Some(recompute_day(&self.places, book.key.to_string(), date, ud))
    }

    /// A replay's step ([`shards`]): the days `settled` says no sign-in to come can change
    /// are done ([`settle_book`] for every user). The touched ones that leave the books
    /// are returned, to be recomputed by [`SettledDay::report`] (by the threads that read
    /// the next block, before they read it).
    fn settle(
        &mut self,
        settled: impl Fn(Date) -> bool,
        keep_from: Date,
        emit: &mut dyn FnMut(DayChange),
    ) -> Vec<SettledDay> {
        let mut out = Vec::new();
        for book in &mut self.users {
            settle_book(book, &self.places, &settled, keep_from, &mut out, emit);
        }
        let users = &self.users;
        self.dirty.retain(|(u, d)| {
            users[*u as usize]
                .days
                .iter()
                .any(|(day, ud)| day == d && ud.dirty)
        });
        out
    }

    fn user_days(&self) -> impl Iterator<Item = (&str, Date, &UserDay)> {
        self.users
            .iter()
            .flat_map(|b| b.days.iter().map(move |(d, ud)| (&*b.key, *d, ud)))
    }

    /// Every presence event currently held, sorted.
    pub fn presence_events(&self) -> Result<Vec<PresenceEvent>, PresenceError> {
        let mut out: Vec<PresenceEvent> = self
            .user_days()
            .flat_map(|(u, d, ud)| {
                ud.events
                    .iter()
                    .map(move |e| ev_transition(&self.places, &ud.overrides, e).into_event(u, d))
            })
            .collect::<Result<_, _>>()?;
        out.sort_unstable();
        Ok(out)
    }

    /// Every access event currently held (within the late-arrival window), sorted.
    pub fn access_events(&self) -> Vec<AccessEvent> {
        let mut out: Vec<AccessEvent> = self
            .user_days()
            .flat_map(|(u, date, ud)| {
                ud.access.iter().map(move |ip| AccessEvent {
                    user: u.to_owned(),
                    ip: *ip,
                    date,
                })
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The end-of-day status of every user-day with presence, sorted.
    pub fn statuses(&self) -> Result<Vec<UserDayStatus>, PresenceError> {
        let mut out: Vec<UserDayStatus> = self
            .user_days()
            .filter(|(_, _, ud)| !ud.events.is_empty())
            .map(|(u, date, ud)| {
                let last = ud
                    .events
                    .last()
                    .map(|e| ev_transition(&self.places, &ud.overrides, e));
                Ok(UserDayStatus {
                    user: u.to_owned(),
                    date,
                    since: last.as_ref().map(|t| timestamp_of(t.at_ms)).transpose()?,
                    place: last.and_then(|t| t.place),
                })
            })
            .collect::<Result<_, PresenceError>>()?;
        out.sort_unstable();
        Ok(out)
    }
}

impl PresenceBackend for MemoryState {
    fn begin(&mut self) -> Result<(), PresenceError> {
        self.user_cache.clear();
        self.range_cache.clear();
        Ok(())
    }

    #[inline]
    fn first_seen(
        &mut self,
        user: UserRef<'_>,
        _id: &str,
        hash: u64,
        date: Date,
    ) -> Result<bool, PresenceError> {
        let u = self.user_id(user);
        Ok(self.users[u as usize].day(date).seen.insert(hash))
    }

    #[inline]
    fn log_access(
        &mut self,
        user: UserRef<'_>,
        ip: IpAddr,
        date: Date,
    ) -> Result<bool, PresenceError> {
        let u = self.user_id(user);
        Ok(self.users[u as usize].day(date).access.insert(ip))
    }

    #[inline]
    fn observe(
        &mut self,
        user: UserRef<'_>,
        date: Date,
        at_ms: i64,
        range: RangeRef<'_>,
    ) -> Result<(), PresenceError> {
        let u = self.user_id(user);
        let ix = range.ix as usize;
        if ix >= self.range_cache.len() {
            self.range_cache.resize(ix + 1, NONE);
        }
        if self.range_cache[ix] == NONE {
            self.range_cache[ix] = self.intern_place(range.name, range.place);
        }
        let p = self.range_cache[ix];
        let v = pack_obs(day_start_ms(date), at_ms, p).ok_or_else(obs_error)?;
        self.dirty_day(u, date).obs.push(v);
        Ok(())
    }

    fn discover(
        &mut self,
        block: IpNet,
        ip: IpAddr,
        user: UserRef<'_>,
        _date: Date,
    ) -> Result<(), PresenceError> {
        let u = self.user_id(user);
        debug_assert_eq!(block, suggested_block(ip));
        count_discovery(&mut self.discovery, Found::new(ip, u), 1);
        Ok(())
    }

    fn add_override(&mut self, user: &str, date: Date, ov: Override) -> Result<(), PresenceError> {
        if !is_valid_ms(ov.at_ms) {
            return Err(PresenceError::Time(ov.at_ms));
        }
        let u = self.intern_user(user);
        self.dirty_day(u, date).overrides.push(ov);
        Ok(())
    }

    fn recompute(&mut self, sink: &mut dyn FnMut(DayChange)) -> Result<(), PresenceError> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for (u, d) in dirty {
            // A day a replay settled is recomputed already (or gone).
            if self.users[u as usize]
                .days
                .iter()
                .any(|(day, ud)| *day == d && ud.dirty)
                && let Some(ch) = self.recompute_one(u, d)
            {
                sink(ch);
            }
        }
        Ok(())
    }

    fn prune(
        &mut self,
        today: Date,
        retention_days: u16,
        window_days: u16,
    ) -> Result<(), PresenceError> {
        // Nothing older than the window is kept at all, so retention only matters when it
        // is shorter than the window.
        let keep = window_days.min(retention_days);
        let cutoff = today
            .checked_sub(jiff::Span::new().days(i64::from(keep)))
            .unwrap_or(Date::MIN);
        for b in &mut self.users {
            b.days.retain(|(d, _)| *d >= cutoff);
        }
        Ok(())
    }

    fn discovery(&mut self) -> Result<Vec<DiscoveryBlock>, PresenceError> {
        let mut blocks: BTreeMap<IpNet, (u64, HashSet<u32>, HashSet<IpAddr>)> = BTreeMap::new();
        for (found, n) in &self.discovery {
            let e = blocks.entry(found.block()).or_default();
            e.0 = e.0.saturating_add(u64::from(*n));
            e.1.insert(found.user);
            e.2.insert(found.ip());
        }
        let mut out: Vec<DiscoveryBlock> = blocks
            .into_iter()
            .map(|(block, (events, users, ips))| DiscoveryBlock {
                block,
                events,
                distinct_users: users.len() as u64,
                distinct_addresses: ips.len() as u64,
            })
            .collect();
        out.sort_by(|a, b| b.events.cmp(&a.events).then(a.block.cmp(&b.block)));
        Ok(out)
    }

    fn day_transitions(
        &mut self,
        user: &str,
        date: Date,
    ) -> Result<Vec<Transition>, PresenceError> {
        let Some(&u) = self.user_ids.get(user) else {
            return Ok(Vec::new());
        };
        Ok(self.users[u as usize]
            .days
            .iter()
            .find(|(d, _)| *d == date)
            .map(|(_, ud)| {
                ud.events
                    .iter()
                    .map(|e| ev_transition(&self.places, &ud.overrides, e))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// One user's part of a replay's step: the days `settled` says no sign-in to come can
/// change are done. Those before `keep_from` leave the book: the touched ones go to `out`,
/// to be recomputed by [`SettledDay::report`], the others are forgotten. Those the state
/// keeps are recomputed in place, each change handed to `emit`.
fn settle_book(
    book: &mut UserBook,
    places: &[(Box<str>, Place)],
    settled: &impl Fn(Date) -> bool,
    keep_from: Date,
    out: &mut Vec<SettledDay>,
    emit: &mut dyn FnMut(DayChange),
) {
    for (date, day) in book
        .days
        .extract_if(.., |(d, _)| settled(*d) && *d < keep_from)
    {
        if day.dirty {
            out.push(SettledDay {
                user: book.key.to_string(),
                date,
                day,
            });
        }
    }
    if book.days.capacity() > 2 * book.days.len() + 4 {
        book.days.shrink_to_fit();
    }
    let key = &book.key;
    for (date, ud) in book.days.iter_mut() {
        if ud.dirty && settled(*date) {
            emit(recompute_day(places, key.to_string(), *date, ud));
        }
    }
}

/// A touched day a replay has settled and taken out of the books ([`MemoryState::settle`]).
struct SettledDay {
    user: String,
    date: Date,
    day: UserDay,
}

impl SettledDay {
    /// Recompute the day: what changed since it was last reported. The day is then
    /// forgotten.
    fn report(mut self, places: &[(Box<str>, Place)]) -> DayChange {
        recompute_day(places, self.user, self.date, &mut self.day)
    }
}

/// Recompute one day of the user `user` from its observations and manual changes: its
/// transitions now, and what changed since they were last reported.
fn recompute_day(
    places: &[(Box<str>, Place)],
    user: String,
    date: Date,
    ud: &mut UserDay,
) -> DayChange {
    ud.dirty = false;
    ud.obs.sort_unstable();
    ud.obs.dedup();
    let start = day_start_ms(date);
    // The order of [`transitions`]: (time, sign-in before manual, range or
    // administrator, place).
    let mut items: Vec<(TimelineItem<'_>, u32)> =
        Vec::with_capacity(ud.obs.len() + ud.overrides.len());
    items.extend(ud.obs.iter().map(|&v| {
        let (at_ms, p) = unpack_obs(start, v);
        let (name, place) = &places[p as usize];
        (
            TimelineItem {
                at_ms,
                manual: false,
                key: name,
                place: Some(place),
            },
            p,
        )
    }));
    items.extend(ud.overrides.iter().enumerate().map(|(i, o)| {
        (
            TimelineItem {
                at_ms: o.at_ms,
                manual: true,
                key: &o.set_by,
                place: o.place.as_ref(),
            },
            MANUAL | i as u32,
        )
    }));
    items.sort_unstable_by(|(a, _), (b, _)| {
        (a.at_ms, a.manual, a.key, a.place).cmp(&(b.at_ms, b.manual, b.key, b.place))
    });
    let mut new = Vec::new();
    let mut status: Option<&Place> = None;
    for (it, what) in &items {
        if it.place != status {
            status = it.place;
            new.push(Ev {
                at_ms: it.at_ms,
                what: *what,
            });
        }
    }
    drop(items);
    let same = |a: &Ev, b: &Ev| {
        a.at_ms == b.at_ms
            && match (a.what & MANUAL != 0, b.what & MANUAL != 0) {
                (false, false) => a.what == b.what,
                (true, true) => {
                    let x = &ud.overrides[(a.what & !MANUAL) as usize];
                    let y = &ud.overrides[(b.what & !MANUAL) as usize];
                    x.place == y.place && x.set_by == y.set_by
                }
                _ => false,
            }
    };
    let to_t = |e: &Ev| ev_transition(places, &ud.overrides, e);
    let emitted = new
        .iter()
        .filter(|n| !ud.events.iter().any(|o| same(o, n)))
        .map(to_t)
        .collect();
    let superseded = ud
        .events
        .iter()
        .filter(|o| !new.iter().any(|n| same(o, n)))
        .map(to_t)
        .collect();
    let status = new.last().map(to_t);
    new.shrink_to_fit();
    ud.events = new;
    DayChange {
        user,
        date,
        emitted,
        superseded,
        status,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::Found;

    #[test]
    fn a_found_key_gives_back_its_address_and_block() {
        for (ip, block) in [
            ("203.0.113.9", "203.0.113.0/24"),
            ("2001:db8:5::1", "2001:db8:5::/48"),
            // An IPv4-mapped IPv6 address stays itself; its block is the IPv4 one.
            ("::ffff:203.0.113.9", "203.0.113.0/24"),
            ("0.0.0.0", "0.0.0.0/24"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let f = Found::new(ip, 7);
            assert_eq!((f.ip(), f.user), (ip, 7));
            assert_eq!(f.block().to_string(), block);
        }
        assert_ne!(
            Found::new("::ffff:1.2.3.4".parse().unwrap(), 1),
            Found::new("1.2.3.4".parse().unwrap(), 1)
        );
        assert_eq!(std::mem::size_of::<(Found, u32)>(), 28);
    }
}
