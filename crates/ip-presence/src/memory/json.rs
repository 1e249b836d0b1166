//! The compact JSON form of a [`MemoryState`] for stateless runs (the shape is in the crate
//! doc): places renumbered in sorted order so equal states serialise identically, sign-in
//! ids as their FNV-1a hashes ([`crate::id_hash`]), and every value checked on the way
//! back in, a bad one named by its JSON pointer.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::MemoryState;
use super::day::{UserDay, pack_obs, unpack_obs};
use crate::calendar::{day_start_ms, is_valid_ms};
use crate::error::PresenceError;
use crate::model::{Override, Place};

/// The state format written: 2 keeps a day's observations as one string ([`obs_text`]);
/// version 1 states (observations as pairs) are still read.
const VERSION: u32 = 2;

/// Append `h` as 16 lowercase hex digits (what `{h:016x}` writes, without the
/// formatting machinery: a replay's state holds a hash per sign-in of its window).
fn push_hex16(out: &mut String, h: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// Append `v` in decimal (what `{v}` writes).
fn push_int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// `s` escaped as one JSON pointer reference token (RFC 6901).
fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl MemoryState {
    /// The compact JSON form (see the crate doc for the shape), of a copy: the state
    /// stays as it is.
    pub fn to_json(&self) -> serde_json::Value {
        self.clone().into_json()
    }

    /// The compact JSON form, each user's days freed as soon as they are written, so a
    /// large state and its JSON are never held in full at once (a one-day replay of a
    /// million sign-ins held both: 118 MB of heap at its peak).
    pub fn into_json(mut self) -> serde_json::Value {
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
        let places: Vec<(String, Place)> = order
            .iter()
            .map(|&p| {
                let (r, pl) = &self.places[p as usize];
                (r.to_string(), pl.clone())
            })
            .collect();
        // Each user-day becomes its JSON object at once, its long fields as single
        // strings moved in (no tree of one value per observation: a day of a million
        // sign-ins would take some hundred bytes each), so the state costs about its
        // own printed size.
        let mut discovery: Vec<(IpNet, IpAddr, String, u64)> = self
            .discovery
            .iter()
            .map(|((b, ip, u), n)| (*b, *ip, self.users[*u as usize].key.to_string(), *n))
            .collect();
        discovery.sort();
        let mut days: BTreeMap<Date, Map<String, Value>> = BTreeMap::new();
        let books = std::mem::take(&mut self.users);
        for (u, date, ud) in books.into_iter().flat_map(|b| {
            b.days
                .into_iter()
                .map(move |(d, ud)| (b.key.clone(), d, ud))
        }) {
            let mut seen: Vec<u64> = ud.seen.iter().copied().collect();
            seen.sort_unstable();
            let mut hex = String::with_capacity(seen.len() * 16);
            for h in seen {
                push_hex16(&mut hex, h);
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
            let mut day = Map::new();
            if !hex.is_empty() {
                day.insert("seen".into(), Value::String(hex));
            }
            if !access.is_empty() {
                day.insert("access".into(), json!(access));
            }
            if !obs.is_empty() {
                day.insert("obs".into(), Value::String(obs_text(start, &obs)));
            }
            if !overrides.is_empty() {
                day.insert("overrides".into(), json!(overrides));
            }
            days.entry(date)
                .or_default()
                .insert(u.to_string(), Value::Object(day));
        }
        let mut state = Map::new();
        state.insert("version".into(), json!(VERSION));
        state.insert("places".into(), json!(places));
        state.insert(
            "days".into(),
            // Moved in, not through `json!`, which would copy every string of the day.
            Value::Array(
                days.into_iter()
                    .map(|(date, users)| {
                        let mut day = Map::new();
                        day.insert("date".into(), Value::String(date.to_string()));
                        day.insert("users".into(), Value::Object(users));
                        Value::Object(day)
                    })
                    .collect(),
            ),
        );
        if !discovery.is_empty() {
            state.insert("discovery".into(), json!(discovery));
        }
        Value::Object(state)
    }

    /// Rebuild a state from [`MemoryState::to_json`]; the days' events are recomputed.
    /// A value out of range is refused with [`PresenceError::StateAt`], whose pointer
    /// names it in `value`.
    pub fn from_json(value: serde_json::Value) -> Result<Self, PresenceError> {
        let at = |pointer: String, message: String| PresenceError::StateAt { pointer, message };
        let j: StateJson =
            serde_json::from_value(value).map_err(|e| PresenceError::State(e.to_string()))?;
        if !(1..=VERSION).contains(&j.version) {
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
                // Where a bad observation is: its pair's member (version 1) or the string.
                type At = fn(&str, usize, usize) -> String;
                let (obs, obs_at): (Vec<(i64, u32)>, At) = match ud.obs {
                    ObsJson::List(list) => (list, |here, k, i| format!("{here}/obs/{k}/{i}")),
                    ObsJson::Text(text) => (
                        parse_obs_text(start, &text).map_err(|k| {
                            at(
                                format!("{here}/obs"),
                                format!("entry {k} is not milliseconds:place"),
                            )
                        })?,
                        |here, _, _| format!("{here}/obs"),
                    ),
                };
                for (k, (t, p)) in obs.into_iter().enumerate() {
                    let p = *ids.get(p as usize).ok_or_else(|| {
                        at(obs_at(&here, k, 1), format!("place {p} is not in places"))
                    })?;
                    let v = pack_obs(start, t, p).ok_or_else(|| {
                        at(
                            obs_at(&here, k, 0),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateJson {
    version: u32,
    /// `[range name, place]`; observations refer to places by index.
    places: Vec<(String, Place)>,
    days: Vec<DayJson>,
    /// `[suggested block, address, user, events]` of unmatched addresses (auto-create).
    #[serde(default)]
    discovery: Vec<(IpNet, IpAddr, String, u64)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DayJson {
    date: Date,
    users: BTreeMap<String, UserDayJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDayJson {
    /// FNV-1a hashes of the sign-in ids processed, 16 hex digits each, sorted.
    #[serde(default)]
    seen: String,
    #[serde(default)]
    access: Vec<IpAddr>,
    /// Version 2: [`obs_text`]; version 1: `[milliseconds since the epoch, place index]`.
    #[serde(default)]
    obs: ObsJson,
    #[serde(default)]
    overrides: Vec<OverrideJson>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ObsJson {
    Text(String),
    List(Vec<(i64, u32)>),
}

impl Default for ObsJson {
    fn default() -> Self {
        ObsJson::List(Vec::new())
    }
}

/// A day's sorted observations as one string: `delta:place` entries joined by `,`, each
/// delta the milliseconds since the entry before (the first: since the day's start,
/// UTC; negative when a local day starts before it). About 10 bytes an observation.
fn obs_text(day_start: i64, obs: &[(i64, u32)]) -> String {
    let mut text = String::with_capacity(obs.len() * 11);
    let mut prev = day_start;
    for (i, &(t, p)) in obs.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        push_int(&mut text, t - prev);
        text.push(':');
        push_int(&mut text, i64::from(p));
        prev = t;
    }
    text
}

/// [`obs_text`] read back; `Err(k)` names the first bad entry.
fn parse_obs_text(day_start: i64, text: &str) -> Result<Vec<(i64, u32)>, usize> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut prev = day_start;
    text.split(',')
        .enumerate()
        .map(|(k, entry)| {
            let (d, p) = entry.split_once(':').ok_or(k)?;
            let d: i64 = d.parse().map_err(|_| k)?;
            let t = prev.checked_add(d).ok_or(k)?;
            prev = t;
            Ok((t, p.parse().map_err(|_| k)?))
        })
        .collect()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideJson {
    at_ms: i64,
    place: Option<Place>,
    set_by: String,
}

#[cfg(test)]
mod tests {
    use super::{push_hex16, push_int};

    #[test]
    fn hand_written_numbers_are_what_format_writes() {
        for h in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut s = String::new();
            push_hex16(&mut s, h);
            assert_eq!(s, format!("{h:016x}"));
        }
        for v in [0, 7, -7, 10, 86_399_999, i64::MIN, i64::MAX] {
            let mut s = String::new();
            push_int(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }
}
