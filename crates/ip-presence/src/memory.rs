//! The engine state in memory, and its compact JSON form for stateless runs (the action
//! envelope's `state` when the platform gives no disk).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::engine::{
    AccessEvent, DayChange, DiscoveryBlock, EventSource, Override, Place, PresenceBackend,
    PresenceEvent, RangeRef, TimelineItem, Transition, UserDayStatus, UserRef, is_valid_ms,
    timestamp_of,
};
use super::{FxHasher, PresenceError};

type Fx = BuildHasherDefault<FxHasher>;

/// FNV-1a: a stable 64-bit hash of a sign-in id (stable across versions and machines,
/// unlike std's hasher, because it is saved in the JSON state).
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A set that stays a small vector (fast, compact) until it grows large.
#[derive(Debug, Clone)]
enum SmallSet<T: std::hash::Hash + Eq + Copy> {
    Small(Vec<T>),
    Large(HashSet<T, Fx>),
}

impl<T: std::hash::Hash + Eq + Copy> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet::Small(Vec::new())
    }
}

impl<T: std::hash::Hash + Eq + Copy> SmallSet<T> {
    const LIMIT: usize = 48;

    #[inline]
    fn insert(&mut self, v: T) -> bool {
        match self {
            SmallSet::Small(items) => {
                if items.contains(&v) {
                    return false;
                }
                if items.len() < Self::LIMIT {
                    items.push(v);
                } else {
                    let mut set: HashSet<T, Fx> = items.drain(..).collect();
                    set.insert(v);
                    *self = SmallSet::Large(set);
                }
                true
            }
            SmallSet::Large(set) => set.insert(v),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &T> + '_> {
        match self {
            SmallSet::Small(items) => Box::new(items.iter()),
            SmallSet::Large(set) => Box::new(set.iter()),
        }
    }
}

/// One user's calendar day.
#[derive(Debug, Default, Clone)]
struct UserDay {
    /// Hashes of the sign-in ids processed (a given id always has the same user and day).
    seen: SmallSet<u64>,
    /// Addresses logged as access events.
    access: SmallSet<IpAddr>,
    /// Observations packed by [`pack_obs`] (time, place id): 8 bytes each, and sorting
    /// them sorts by (time, place id). Sorted and deduplicated when recomputed.
    obs: Vec<u64>,
    overrides: Vec<Override>,
    /// The day's transitions, by reference to places and overrides (strings are built
    /// only for what is reported).
    events: Vec<Ev>,
    dirty: bool,
}

/// Observation times are kept relative to the start (UTC) of their day: 40 bits of
/// milliseconds (about ±17 years around it) and 24 bits of place id.
const OBS_TIME_BIAS: i64 = 1 << 39;
const OBS_PLACE_BITS: u32 = 24;

#[inline]
fn day_start_ms(date: Date) -> i64 {
    super::engine::days_from_civil(
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    ) * 86_400_000
}

/// Pack an observation of `date`; `None` when the time is implausibly far from the day
/// or no time at all ([`is_valid_ms`]), or there are more places than fit.
#[inline]
fn pack_obs(day_start: i64, at_ms: i64, place: u32) -> Option<u64> {
    let rel = at_ms.checked_sub(day_start)?.checked_add(OBS_TIME_BIAS)?;
    if !(0..1 << 40).contains(&rel) || place >= 1 << OBS_PLACE_BITS || !is_valid_ms(at_ms) {
        return None;
    }
    Some((rel as u64) << OBS_PLACE_BITS | u64::from(place))
}

#[inline]
fn unpack_obs(day_start: i64, v: u64) -> (i64, u32) {
    (
        (v >> OBS_PLACE_BITS) as i64 - OBS_TIME_BIAS + day_start,
        (v & ((1 << OBS_PLACE_BITS) - 1)) as u32,
    )
}

/// `s` escaped as one JSON pointer reference token (RFC 6901).
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

pub(crate) fn obs_error() -> PresenceError {
    PresenceError::State("observation too far from its day, or too many places".into())
}

/// A transition of a day: a sign-in at a place (`what` is the place id), or a manual
/// change (`what` is `MANUAL` | index in the day's overrides, which are only appended).
#[derive(Debug, Clone, Copy)]
struct Ev {
    at_ms: i64,
    what: u32,
}

const MANUAL: u32 = 1 << 31;

fn ev_transition(places: &[(Box<str>, Place)], overrides: &[Override], e: &Ev) -> Transition {
    if e.what & MANUAL != 0 {
        let o = &overrides[(e.what & !MANUAL) as usize];
        Transition {
            at_ms: e.at_ms,
            place: o.place.clone(),
            range: None,
            source: EventSource::Manual,
            set_by: Some(o.set_by.clone()),
        }
    } else {
        let (name, place) = &places[e.what as usize];
        Transition {
            at_ms: e.at_ms,
            place: Some(place.clone()),
            range: Some(name.to_string()),
            source: EventSource::SignIn,
            set_by: None,
        }
    }
}

#[derive(Debug, Clone)]
struct UserBook {
    key: Box<str>,
    /// Few days (the late-arrival window), so a vector.
    days: Vec<(Date, UserDay)>,
}

impl UserBook {
    #[inline]
    fn day(&mut self, date: Date) -> &mut UserDay {
        let i = match self.days.iter().position(|(d, _)| *d == date) {
            Some(i) => i,
            None => {
                // Few days per user: no room to spare (a vector would reserve four).
                self.days.reserve_exact(1);
                self.days.push((date, UserDay::default()));
                self.days.len() - 1
            }
        };
        &mut self.days[i].1
    }
}

/// Engine state in memory: per user and calendar day the seen sign-in ids, the logged
/// addresses and every observation (all of them: a late sign-in can fall between any two).
/// Everything one sign-in touches sits in one user's book, which keeps processing fast.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    users: Vec<UserBook>,
    user_ids: HashMap<Box<str>, u32, Fx>,
    places: Vec<(Box<str>, Place)>,
    place_ids: HashMap<(Box<str>, Place), u32, Fx>,
    discovery: HashMap<(IpNet, IpAddr, u32), u64, Fx>,
    user_cache: Vec<u32>,
    range_cache: Vec<u32>,
    dirty: Vec<(u32, Date)>,
}

const NONE: u32 = u32::MAX;

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
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
        let places = &self.places;
        let book = &mut self.users[user as usize];
        let ud = &mut book.days.iter_mut().find(|(d, _)| *d == date)?.1;
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
        Some(DayChange {
            user: book.key.to_string(),
            date,
            emitted,
            superseded,
            status,
        })
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

    /// The compact JSON form (see the module doc of [`super`] for the shape).
    pub fn to_json(&self) -> serde_json::Value {
        // Only places in use, renumbered in sorted order, so equal states serialise
        // identically however their places were interned.
        let mut used = vec![false; self.places.len()];
        for (_, _, ud) in self.user_days() {
            for &v in &ud.obs {
                used[unpack_obs(0, v).1 as usize] = true;
            }
        }
        let mut order: Vec<u32> = (0..self.places.len() as u32)
            .filter(|p| used[*p as usize])
            .collect();
        order.sort_by(|a, b| self.places[*a as usize].cmp(&self.places[*b as usize]));
        let mut renum = vec![0u32; self.places.len()];
        for (new, old) in order.iter().enumerate() {
            renum[*old as usize] = new as u32;
        }
        let places = order
            .iter()
            .map(|&p| {
                let (r, pl) = &self.places[p as usize];
                (r.to_string(), pl.clone())
            })
            .collect();
        let mut days: BTreeMap<Date, BTreeMap<String, UserDayJson>> = BTreeMap::new();
        for (u, date, ud) in self.user_days() {
            let mut seen: Vec<u64> = ud.seen.iter().copied().collect();
            seen.sort_unstable();
            let mut hex = String::with_capacity(seen.len() * 16);
            for h in seen {
                use std::fmt::Write;
                let _ = write!(hex, "{h:016x}");
            }
            let mut access: Vec<IpAddr> = ud.access.iter().copied().collect();
            access.sort_unstable();
            let start = day_start_ms(date);
            let mut obs: Vec<(i64, u32)> = ud
                .obs
                .iter()
                .map(|&v| {
                    let (t, p) = unpack_obs(start, v);
                    (t, renum[p as usize])
                })
                .collect();
            obs.sort_unstable();
            obs.dedup();
            let mut overrides: Vec<OverrideJson> = ud
                .overrides
                .iter()
                .map(|o| OverrideJson {
                    at_ms: o.at_ms,
                    place: o.place.clone(),
                    set_by: o.set_by.clone(),
                })
                .collect();
            overrides.sort_by(|a, b| (a.at_ms, &a.set_by).cmp(&(b.at_ms, &b.set_by)));
            days.entry(date).or_default().insert(
                u.to_owned(),
                UserDayJson {
                    seen: hex,
                    access,
                    obs,
                    overrides,
                },
            );
        }
        let mut discovery: Vec<(IpNet, IpAddr, String, u64)> = self
            .discovery
            .iter()
            .map(|((b, ip, u), n)| (*b, *ip, self.users[*u as usize].key.to_string(), *n))
            .collect();
        discovery.sort();
        serde_json::to_value(StateJson {
            version: 1,
            places,
            discovery,
            days: days
                .into_iter()
                .map(|(date, users)| DayJson { date, users })
                .collect(),
        })
        .expect("state serialises")
    }

    /// Rebuild a state from [`MemoryState::to_json`]; the days' events are recomputed.
    /// A value out of range is refused with [`PresenceError::StateAt`], whose pointer
    /// names it in `value`.
    pub fn from_json(value: serde_json::Value) -> Result<Self, PresenceError> {
        let at = |pointer: String, message: String| PresenceError::StateAt { pointer, message };
        let j: StateJson =
            serde_json::from_value(value).map_err(|e| PresenceError::State(e.to_string()))?;
        if j.version != 1 {
            return Err(at(
                "/version".into(),
                format!("unsupported state version {}", j.version),
            ));
        }
        let mut st = MemoryState::new();
        let ids: Vec<u32> = j
            .places
            .iter()
            .map(|(r, p)| st.intern_place(r, p))
            .collect();
        for (block, ip, u, n) in j.discovery {
            let uid = st.intern_user(&u);
            let e = st.discovery.entry((block, ip, uid)).or_default();
            *e = e.saturating_add(n);
        }
        for (i, d) in j.days.into_iter().enumerate() {
            for (u, ud) in d.users {
                let here = format!("/days/{i}/users/{}", pointer_token(&u));
                let uid = st.intern_user(&u);
                if ud.seen.len() % 16 != 0 {
                    return Err(at(format!("{here}/seen"), "is not 16-digit hashes".into()));
                }
                let mut day = UserDay::default();
                for k in (0..ud.seen.len()).step_by(16) {
                    let h = ud
                        .seen
                        .get(k..k + 16)
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or_else(|| {
                            at(format!("{here}/seen"), format!("bad hash at offset {k}"))
                        })?;
                    day.seen.insert(h);
                }
                for ip in ud.access {
                    day.access.insert(ip);
                }
                let start = day_start_ms(d.date);
                for (k, (t, p)) in ud.obs.into_iter().enumerate() {
                    let p = *ids.get(p as usize).ok_or_else(|| {
                        at(
                            format!("{here}/obs/{k}/1"),
                            format!("place {p} is not in places"),
                        )
                    })?;
                    let v = pack_obs(start, t, p).ok_or_else(|| {
                        at(
                            format!("{here}/obs/{k}/0"),
                            format!("{t} ms is no time on or near {}", d.date),
                        )
                    })?;
                    day.obs.push(v);
                }
                day.overrides = ud
                    .overrides
                    .into_iter()
                    .enumerate()
                    .map(|(k, o)| {
                        if !is_valid_ms(o.at_ms) {
                            return Err(at(
                                format!("{here}/overrides/{k}/at_ms"),
                                format!("{} ms is out of range for a time", o.at_ms),
                            ));
                        }
                        Ok(Override {
                            at_ms: o.at_ms,
                            place: o.place,
                            set_by: o.set_by,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                *st.users[uid as usize].day(d.date) = day;
                st.recompute_one(uid, d.date);
            }
        }
        Ok(st)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateJson {
    version: u32,
    /// `[range name, place]`; observations refer to places by index.
    places: Vec<(String, Place)>,
    days: Vec<DayJson>,
    /// `[suggested block, address, user, events]` of unmatched addresses (auto-create).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    discovery: Vec<(IpNet, IpAddr, String, u64)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DayJson {
    date: Date,
    users: BTreeMap<String, UserDayJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDayJson {
    /// FNV-1a hashes of the sign-in ids processed, 16 hex digits each, sorted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    seen: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    access: Vec<IpAddr>,
    /// `[milliseconds since the epoch, place index]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    obs: Vec<(i64, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    overrides: Vec<OverrideJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideJson {
    at_ms: i64,
    place: Option<Place>,
    set_by: String,
}

/// The books of a [`MemoryState`] shared by the reader threads of
/// [`super::PresenceEngine::process_file`]: one lock per user, taken once per sign-in.
/// Every sign-in touches only its user's book, so two threads rarely meet on a lock and
/// nothing has to be handed from one thread to the other. The interning caches are filled
/// beforehand ([`MemoryState::prepare_shards`]) and only read.
pub(crate) struct SharedBooks<'a> {
    books: Vec<std::sync::Mutex<UserBook>>,
    user_cache: &'a [u32],
    range_cache: &'a [u32],
}

/// One thread's handle on [`SharedBooks`]: what it found that is not kept in a book.
pub(crate) struct BookWriter<'s, 'a> {
    shared: &'s SharedBooks<'a>,
    pub(crate) discovery: HashMap<(IpNet, IpAddr, u32), u64, Fx>,
    dirty: Vec<(u32, Date)>,
    /// New access events as (engine user index, address, date); strings are built once,
    /// for the report.
    pub(crate) access: Vec<(u32, IpAddr, Date)>,
}

/// What a writer hands back to be merged.
pub(crate) struct WriterOutcome {
    discovery: HashMap<(IpNet, IpAddr, u32), u64, Fx>,
    dirty: Vec<(u32, Date)>,
}

/// The outcome of [`BookWriter::record`] for a matched sign-in.
pub(crate) enum Recorded {
    Duplicate,
    /// The observation could not be kept ([`pack_obs`]).
    Invalid,
    /// New; `Some(new)` when the access was to be logged (`new`: not logged before).
    New(Option<bool>),
}

impl<'a> SharedBooks<'a> {
    pub(crate) fn writer(&self) -> BookWriter<'_, 'a> {
        BookWriter {
            shared: self,
            discovery: HashMap::default(),
            dirty: Vec::new(),
            access: Vec::new(),
        }
    }
}

impl SharedBooks<'_> {
    #[inline]
    fn lock(&self, engine_user: u32) -> (u32, std::sync::MutexGuard<'_, UserBook>) {
        let id = self.user_cache[engine_user as usize];
        let book = self.books[id as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (id, book)
    }
}

impl BookWriter<'_, '_> {
    /// Record a sign-in outside every range (auto-create): false when already seen.
    #[inline]
    pub(crate) fn discover(
        &mut self,
        engine_user: u32,
        hash: u64,
        date: Date,
        block: IpNet,
        ip: IpAddr,
    ) -> bool {
        let (id, mut book) = self.shared.lock(engine_user);
        if !book.day(date).seen.insert(hash) {
            return false;
        }
        drop(book);
        let e = self.discovery.entry((block, ip, id)).or_default();
        *e = e.saturating_add(1);
        true
    }

    /// Record a matched sign-in: its id, the access (when `log`) and the observation at
    /// the range's place (when `observe`, `(at_ms, engine range index)`), under one lock.
    #[inline]
    pub(crate) fn record(
        &mut self,
        engine_user: u32,
        hash: u64,
        date: Date,
        log: Option<IpAddr>,
        observe: Option<(i64, u32)>,
    ) -> Recorded {
        let (id, mut book) = self.shared.lock(engine_user);
        let ud = book.day(date);
        if !ud.seen.insert(hash) {
            return Recorded::Duplicate;
        }
        let logged = match log {
            Some(ip) => {
                let new = ud.access.insert(ip);
                if new {
                    self.access.push((engine_user, ip, date));
                }
                Some(new)
            }
            None => None,
        };
        if let Some((at_ms, range)) = observe {
            let p = self.shared.range_cache[range as usize];
            match pack_obs(day_start_ms(date), at_ms, p) {
                Some(v) => ud.obs.push(v),
                None => return Recorded::Invalid,
            }
            if !ud.dirty {
                ud.dirty = true;
                self.dirty.push((id, date));
            }
        }
        Recorded::New(logged)
    }

    pub(crate) fn finish(self) -> WriterOutcome {
        WriterOutcome {
            discovery: self.discovery,
            dirty: self.dirty,
        }
    }
}

impl MemoryState {
    /// Intern every user and place an engine can hand over, so writers need no interning.
    pub(crate) fn prepare_shards<'k>(
        &mut self,
        users: impl Iterator<Item = (u32, &'k str)>,
        ranges: impl Iterator<Item = (u32, &'k str, &'k Place)>,
    ) {
        self.user_cache.clear();
        self.range_cache.clear();
        for (ix, key) in users {
            let id = self.intern_user(key);
            if ix as usize >= self.user_cache.len() {
                self.user_cache.resize(ix as usize + 1, NONE);
            }
            self.user_cache[ix as usize] = id;
        }
        for (ix, name, place) in ranges {
            let id = self.intern_place(name, place);
            if ix as usize >= self.range_cache.len() {
                self.range_cache.resize(ix as usize + 1, NONE);
            }
            self.range_cache[ix as usize] = id;
        }
    }

    /// Lend the books to reader threads (after [`Self::prepare_shards`]) and take them back
    /// with what the writers found when `run` returns.
    pub(crate) fn with_shared_books<R>(
        &mut self,
        run: impl FnOnce(&SharedBooks<'_>) -> (R, Vec<WriterOutcome>),
    ) -> R {
        let shared = SharedBooks {
            books: std::mem::take(&mut self.users)
                .into_iter()
                .map(std::sync::Mutex::new)
                .collect(),
            user_cache: &self.user_cache,
            range_cache: &self.range_cache,
        };
        let (r, outcomes) = run(&shared);
        self.users = shared
            .books
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect();
        for o in outcomes {
            for (k, n) in o.discovery {
                let e = self.discovery.entry(k).or_default();
                *e = e.saturating_add(n);
            }
            self.dirty.extend(o.dirty);
        }
        r
    }
}

impl PresenceBackend for MemoryState {
    fn as_memory(&mut self) -> Option<&mut MemoryState> {
        Some(self)
    }

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
        let e = self.discovery.entry((block, ip, u)).or_default();
        *e = e.saturating_add(1);
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
        for (u, d) in dirty {
            if let Some(ch) = self.recompute_one(u, d) {
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
        for ((block, ip, u), n) in &self.discovery {
            let e = blocks.entry(*block).or_default();
            e.0 = e.0.saturating_add(*n);
            e.1.insert(*u);
            e.2.insert(*ip);
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

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}
