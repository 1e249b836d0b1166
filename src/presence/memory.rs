//! The engine state in memory, and its compact JSON form for stateless runs (the action
//! envelope's `state` when the platform gives no disk).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::engine::{
    AccessEvent, DayChange, DiscoveryBlock, Override, Place, PresenceBackend, PresenceEvent,
    RangeRef, TimelineItem, Transition, UserDayStatus, UserRef, diff, transitions,
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

#[derive(Debug, Default, Clone)]
struct UserDay {
    /// (time, place id); sorted and deduplicated when recomputed.
    obs: Vec<(i64, u32)>,
    overrides: Vec<Override>,
    events: Vec<Transition>,
    dirty: bool,
}

#[derive(Debug, Default, Clone)]
struct DayBook {
    seen: HashSet<u64, Fx>,
    access: HashSet<(u32, IpAddr), Fx>,
    users: HashMap<u32, UserDay, Fx>,
}

/// Engine state in memory: per calendar day the seen sign-in ids, the access events and
/// each user's observations (all of them: a late sign-in can fall between any two).
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    users: Vec<Box<str>>,
    user_ids: HashMap<Box<str>, u32, Fx>,
    places: Vec<(Box<str>, Place)>,
    place_ids: HashMap<(Box<str>, Place), u32, Fx>,
    days: BTreeMap<Date, DayBook>,
    discovery: HashMap<(IpNet, IpAddr, u32), u64, Fx>,
    user_cache: Vec<u32>,
    range_cache: Vec<u32>,
    dirty: Vec<(Date, u32)>,
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
        self.users.push(key.into());
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

    fn mark_dirty(&mut self, date: Date, user: u32) {
        let ud = self
            .days
            .entry(date)
            .or_default()
            .users
            .entry(user)
            .or_default();
        if !ud.dirty {
            ud.dirty = true;
            self.dirty.push((date, user));
        }
    }

    fn recompute_one(&mut self, date: Date, user: u32) -> Option<DayChange> {
        let places = &self.places;
        let ud = self.days.get_mut(&date)?.users.get_mut(&user)?;
        ud.dirty = false;
        ud.obs.sort_unstable();
        ud.obs.dedup();
        let mut items: Vec<TimelineItem<'_>> = ud
            .obs
            .iter()
            .map(|&(at_ms, p)| TimelineItem {
                at_ms,
                manual: false,
                key: &places[p as usize].0,
                place: Some(&places[p as usize].1),
            })
            .collect();
        items.extend(ud.overrides.iter().map(|o| TimelineItem {
            at_ms: o.at_ms,
            manual: true,
            key: &o.set_by,
            place: o.place.as_ref(),
        }));
        let new = transitions(&mut items);
        let (emitted, superseded) = diff(&ud.events, &new);
        ud.events = new;
        Some(DayChange {
            user: self.users[user as usize].to_string(),
            date,
            emitted,
            superseded,
            status: ud.events.last().cloned(),
        })
    }

    /// Every presence event currently held, sorted.
    pub fn presence_events(&self) -> Vec<PresenceEvent> {
        let mut out: Vec<PresenceEvent> = self
            .days
            .iter()
            .flat_map(|(date, book)| {
                book.users.iter().flat_map(move |(u, ud)| {
                    ud.events
                        .iter()
                        .map(move |t| t.event(&self.users[*u as usize], *date))
                })
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Every access event currently held (within the late-arrival window), sorted.
    pub fn access_events(&self) -> Vec<AccessEvent> {
        let mut out: Vec<AccessEvent> = self
            .days
            .iter()
            .flat_map(|(date, book)| {
                book.access.iter().map(move |(u, ip)| AccessEvent {
                    user: self.users[*u as usize].to_string(),
                    ip: *ip,
                    date: *date,
                })
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The end-of-day status of every user-day with observations, sorted.
    pub fn statuses(&self) -> Vec<UserDayStatus> {
        let mut out: Vec<UserDayStatus> = self
            .days
            .iter()
            .flat_map(|(date, book)| {
                book.users.iter().map(move |(u, ud)| {
                    let last = ud.events.last();
                    UserDayStatus {
                        user: self.users[*u as usize].to_string(),
                        date: *date,
                        place: last.and_then(|t| t.place.clone()),
                        since: last
                            .map(|t| jiff::Timestamp::from_millisecond(t.at_ms).expect("valid")),
                    }
                })
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The compact JSON form (see the module doc of [`super`] for the shape).
    pub fn to_json(&self) -> serde_json::Value {
        // Renumber places in sorted order so equal states serialise identically.
        let mut order: Vec<u32> = (0..self.places.len() as u32).collect();
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
        let days = self
            .days
            .iter()
            .map(|(date, book)| {
                let mut seen: Vec<u64> = book.seen.iter().copied().collect();
                seen.sort_unstable();
                let mut hex = String::with_capacity(seen.len() * 16);
                for h in seen {
                    use std::fmt::Write;
                    let _ = write!(hex, "{h:016x}");
                }
                let mut access: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
                for (u, ip) in &book.access {
                    access
                        .entry(self.users[*u as usize].to_string())
                        .or_default()
                        .push(*ip);
                }
                access.values_mut().for_each(|v| v.sort_unstable());
                let users = book
                    .users
                    .iter()
                    .map(|(u, ud)| {
                        let mut obs: Vec<(i64, u32)> = ud
                            .obs
                            .iter()
                            .map(|&(t, p)| (t, renum[p as usize]))
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
                        (
                            self.users[*u as usize].to_string(),
                            UserDayJson { obs, overrides },
                        )
                    })
                    .collect();
                DayJson {
                    date: *date,
                    seen: hex,
                    access,
                    users,
                }
            })
            .collect();
        serde_json::to_value(StateJson {
            version: 1,
            places,
            days,
        })
        .expect("state serialises")
    }

    /// Rebuild a state from [`MemoryState::to_json`]; the day's events are recomputed.
    pub fn from_json(value: serde_json::Value) -> Result<Self, PresenceError> {
        let bad = |m: String| PresenceError::State(m);
        let j: StateJson = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if j.version != 1 {
            return Err(bad(format!("unsupported state version {}", j.version)));
        }
        let mut st = MemoryState::new();
        let ids: Vec<u32> = j
            .places
            .iter()
            .map(|(r, p)| st.intern_place(r, p))
            .collect();
        for d in j.days {
            if d.seen.len() % 16 != 0 {
                return Err(bad(format!(
                    "{}: seen is not a list of 16-digit hashes",
                    d.date
                )));
            }
            let mut book = DayBook::default();
            for k in (0..d.seen.len()).step_by(16) {
                let h = d
                    .seen
                    .get(k..k + 16)
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| bad(format!("{}: bad hash in seen", d.date)))?;
                book.seen.insert(h);
            }
            for (u, ips) in d.access {
                let uid = st.intern_user(&u);
                book.access.extend(ips.into_iter().map(|ip| (uid, ip)));
            }
            for (u, ud) in d.users {
                let uid = st.intern_user(&u);
                let mut obs = Vec::with_capacity(ud.obs.len());
                for (t, p) in ud.obs {
                    let p = *ids
                        .get(p as usize)
                        .ok_or_else(|| bad(format!("{}: place {p} out of range", d.date)))?;
                    obs.push((t, p));
                }
                let overrides = ud
                    .overrides
                    .into_iter()
                    .map(|o| Override {
                        at_ms: o.at_ms,
                        place: o.place,
                        set_by: o.set_by,
                    })
                    .collect();
                book.users.insert(
                    uid,
                    UserDay {
                        obs,
                        overrides,
                        events: Vec::new(),
                        dirty: false,
                    },
                );
            }
            let users: Vec<u32> = book.users.keys().copied().collect();
            st.days.insert(d.date, book);
            for u in users {
                st.recompute_one(d.date, u);
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
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DayJson {
    date: Date,
    /// FNV-1a hashes of the sign-in ids seen for this day, 16 hex digits each, sorted.
    seen: String,
    access: BTreeMap<String, Vec<IpAddr>>,
    users: BTreeMap<String, UserDayJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDayJson {
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

impl PresenceBackend for MemoryState {
    fn begin(&mut self) -> Result<(), PresenceError> {
        self.user_cache.clear();
        self.range_cache.clear();
        Ok(())
    }

    fn first_seen(&mut self, id: &str, date: Date) -> Result<bool, PresenceError> {
        Ok(self.days.entry(date).or_default().seen.insert(id_hash(id)))
    }

    fn log_access(
        &mut self,
        user: UserRef<'_>,
        ip: IpAddr,
        date: Date,
    ) -> Result<bool, PresenceError> {
        let u = self.user_id(user);
        Ok(self.days.entry(date).or_default().access.insert((u, ip)))
    }

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
        self.mark_dirty(date, u);
        let ud = self
            .days
            .get_mut(&date)
            .and_then(|b| b.users.get_mut(&u))
            .expect("just marked");
        ud.obs.push((at_ms, p));
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
        *self.discovery.entry((block, ip, u)).or_default() += 1;
        Ok(())
    }

    fn add_override(&mut self, user: &str, date: Date, ov: Override) -> Result<(), PresenceError> {
        let u = self.intern_user(user);
        self.mark_dirty(date, u);
        self.days
            .get_mut(&date)
            .and_then(|b| b.users.get_mut(&u))
            .expect("just marked")
            .overrides
            .push(ov);
        Ok(())
    }

    fn recompute(&mut self) -> Result<Vec<DayChange>, PresenceError> {
        let dirty = std::mem::take(&mut self.dirty);
        Ok(dirty
            .into_iter()
            .filter_map(|(d, u)| self.recompute_one(d, u))
            .collect())
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
        self.days = self.days.split_off(&cutoff);
        Ok(())
    }

    fn discovery(&mut self) -> Result<Vec<DiscoveryBlock>, PresenceError> {
        let mut blocks: BTreeMap<IpNet, (u64, HashSet<u32>, HashSet<IpAddr>)> = BTreeMap::new();
        for ((block, ip, u), n) in &self.discovery {
            let e = blocks.entry(*block).or_default();
            e.0 += n;
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
        Ok(self
            .days
            .get(&date)
            .and_then(|b| b.users.get(&u))
            .map(|ud| ud.events.clone())
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
