//! One user's books in memory: per calendar day ([`UserDay`]) the sign-in ids seen, the
//! addresses logged, the observations packed into 8 bytes each ([`pack_obs`]), the manual
//! changes, and the day's transitions by reference ([`Ev`]).

use std::net::IpAddr;

use jiff::civil::Date;
use rustc_hash::FxHashSet;

use crate::calendar::is_valid_ms;
use crate::error::PresenceError;
use crate::model::{EventSource, Override, Place, Transition};

/// A set that stays a small vector (fast, compact) until it grows large.
#[derive(Debug, Clone)]
pub(super) enum SmallSet<T: std::hash::Hash + Eq + Copy> {
    Small(Vec<T>),
    Large(FxHashSet<T>),
}

impl<T: std::hash::Hash + Eq + Copy> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet::Small(Vec::new())
    }
}

impl<T: std::hash::Hash + Eq + Copy> SmallSet<T> {
    const LIMIT: usize = 48;

    #[inline]
    pub(super) fn insert(&mut self, v: T) -> bool {
        match self {
            SmallSet::Small(items) => {
                if items.contains(&v) {
                    return false;
                }
                if items.len() < Self::LIMIT {
                    if items.capacity() == 0 {
                        // A day's sign-ins are some seven (the generated organisation's
                        // 1M over 150,000 user-days): room for eight at once, rather
                        // than four, then a copy to eight.
                        items.reserve_exact(8);
                    }
                    items.push(v);
                } else {
                    let mut set: FxHashSet<T> = items.drain(..).collect();
                    set.insert(v);
                    *self = SmallSet::Large(set);
                }
                true
            }
            SmallSet::Large(set) => set.insert(v),
        }
    }

    pub(super) fn iter(&self) -> Box<dyn Iterator<Item = &T> + '_> {
        match self {
            SmallSet::Small(items) => Box::new(items.iter()),
            SmallSet::Large(set) => Box::new(set.iter()),
        }
    }
}

/// One user's calendar day.
#[derive(Debug, Default, Clone)]
pub(super) struct UserDay {
    /// Hashes of the sign-in ids processed (a given id always has the same user and day).
    pub(super) seen: SmallSet<u64>,
    /// Addresses logged as access events.
    pub(super) access: SmallSet<IpAddr>,
    /// Observations packed by [`pack_obs`] (time, place id): 8 bytes each, and sorting
    /// them sorts by (time, place id). Sorted and deduplicated when recomputed.
    pub(super) obs: Vec<u64>,
    pub(super) overrides: Vec<Override>,
    /// The day's transitions, by reference to places and overrides (strings are built
    /// only for what is reported).
    pub(super) events: Vec<Ev>,
    pub(super) dirty: bool,
}

/// Observation times are kept relative to the start (UTC) of their day: 40 bits of
/// milliseconds (about ±17 years around it) and 24 bits of place id.
const OBS_TIME_BIAS: i64 = 1 << 39;
const OBS_PLACE_BITS: u32 = 24;

/// Pack an observation of `date`; `None` when the time is implausibly far from the day
/// or no time at all ([`is_valid_ms`]), or there are more places than fit.
#[inline]
pub(super) fn pack_obs(day_start: i64, at_ms: i64, place: u32) -> Option<u64> {
    let rel = at_ms.checked_sub(day_start)?.checked_add(OBS_TIME_BIAS)?;
    if !(0..1 << 40).contains(&rel) || place >= 1 << OBS_PLACE_BITS || !is_valid_ms(at_ms) {
        return None;
    }
    Some((rel as u64) << OBS_PLACE_BITS | u64::from(place))
}

#[inline]
pub(super) fn unpack_obs(day_start: i64, v: u64) -> (i64, u32) {
    (
        (v >> OBS_PLACE_BITS) as i64 - OBS_TIME_BIAS + day_start,
        (v & ((1 << OBS_PLACE_BITS) - 1)) as u32,
    )
}

pub(super) fn obs_error() -> PresenceError {
    PresenceError::State("observation too far from its day, or too many places".into())
}

/// A transition of a day: a sign-in at a place (`what` is the place id), or a manual
/// change (`what` is `MANUAL` | index in the day's overrides, which are only appended).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ev {
    pub(super) at_ms: i64,
    pub(super) what: u32,
}

pub(super) const MANUAL: u32 = 1 << 31;

pub(super) fn ev_transition(
    places: &[(Box<str>, Place)],
    overrides: &[Override],
    e: &Ev,
) -> Transition {
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
pub(super) struct UserBook {
    pub(super) key: Box<str>,
    /// Few days (the late-arrival window), so a vector.
    pub(super) days: Vec<(Date, UserDay)>,
}

impl UserBook {
    #[inline]
    pub(super) fn day(&mut self, date: Date) -> &mut UserDay {
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
