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

use super::day::{UserDay, pack_obs, unpack_obs};
use super::{Found, MemoryState};
use crate::calendar::{day_start_ms, is_valid_ms};
use crate::error::PresenceError;
use crate::model::{Override, Place};
use crate::ranges::suggested_block;

/// The state format written: 2 keeps a day's observations as one string ([`obs_text`]);
/// version 1 states (observations as pairs) are still read.
const VERSION: u32 = 2;

/// The format of a state whose days are in a file (`days_file`, written by a spilled
/// replay: [`super::Spill`]); earlier releases refuse it rather than lose those days.
const SPILLED_VERSION: u32 = 3;

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
        // A spilled replay wrote its days with the places' own ids: all of them, in order.
        let spilled = self.spill.take().filter(|s| s.used());
        let mut order: Vec<u32> = (0..self.places.len() as u32)
            .filter(|p| spilled.is_some() || used[*p as usize])
            .collect();
        if spilled.is_none() {
            order.sort_by(|a, b| self.places[*a as usize].cmp(&self.places[*b as usize]));
        }
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
        // A spilled replay wrote the discovery counts to its file.
        let mut discovery: Vec<(IpNet, IpAddr, String, u64)> = if spilled.is_some() {
            Vec::new()
        } else {
            self.discovery
                .iter()
                .map(|(found, n)| {
                    let user = self.users[found.user as usize].key.to_string();
                    (found.block(), found.ip(), user, u64::from(*n))
                })
                .collect()
        };
        discovery.sort();
        // Each user-day becomes its JSON object at once, its long fields as single
        // strings moved in (no tree of one value per observation: a day of a million
        // sign-ins would take some hundred bytes each), so the state costs about its
        // own printed size.
        let mut days: BTreeMap<Date, Map<String, Value>> = BTreeMap::new();
        let books = std::mem::take(&mut self.users);
        for (u, date, ud) in books.into_iter().flat_map(|b| {
            b.days
                .into_iter()
                .map(move |(d, ud)| (b.key.clone(), d, ud))
        }) {
            let day = user_day_json(date, ud, |p| renum[p as usize]);
            days.entry(date)
                .or_default()
                .insert(u.to_string(), Value::Object(day));
        }
        let mut state = Map::new();
        match &spilled {
            Some(spill) => {
                state.insert("version".into(), json!(SPILLED_VERSION));
                state.insert(
                    "days_file".into(),
                    json!({"path": spill.days_path(), "lines": spill.lines()}),
                );
            }
            None => {
                state.insert("version".into(), json!(VERSION));
            }
        }
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
        if !(1..=SPILLED_VERSION).contains(&j.version) {
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
        for (i, (block, ip, u, n)) in j.discovery.into_iter().enumerate() {
            st.read_discovery(block, ip, &u, n)
                .map_err(|message| at(format!("/discovery/{i}/0"), message))?;
        }
        for (i, d) in j.days.into_iter().enumerate() {
            for (u, ud) in d.users {
                let here = format!("/days/{i}/users/{}", pointer_token(&u));
                st.read_user_day(&ids, d.date, &u, ud, &|field, message| {
                    at(format!("{here}{field}"), message)
                })?;
            }
        }
        if let Some(file) = j.days_file {
            st.read_days_file(&ids, &file, j.version)?;
        }
        Ok(st)
    }

    /// One user-day of a state back into the books, recomputed; a bad value is refused
    /// with `bad(field, message)` (`field` a pointer within the user-day: `/seen`, ...).
    fn read_user_day(
        &mut self,
        ids: &[u32],
        date: Date,
        u: &str,
        ud: UserDayJson,
        bad: &dyn Fn(String, String) -> PresenceError,
    ) -> Result<(), PresenceError> {
        let uid = self.intern_user(u);
        if !ud.seen.len().is_multiple_of(16) {
            return Err(bad("/seen".into(), "is not 16-digit hashes".into()));
        }
        let mut day = UserDay::default();
        for k in (0..ud.seen.len()).step_by(16) {
            let h = ud
                .seen
                .get(k..k + 16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad("/seen".into(), format!("bad hash at offset {k}")))?;
            day.seen.insert(h);
        }
        for ip in ud.access {
            day.access.insert(ip);
        }
        let start = day_start_ms(date);
        // Where a bad observation is: its pair's member (version 1) or the string.
        type At = fn(usize, usize) -> String;
        let (obs, obs_at): (Vec<(i64, u32)>, At) = match ud.obs {
            ObsJson::List(list) => (list, |k, i| format!("/obs/{k}/{i}")),
            ObsJson::Text(text) => (
                parse_obs_text(start, &text).map_err(|k| {
                    bad(
                        "/obs".into(),
                        format!("entry {k} is not milliseconds:place"),
                    )
                })?,
                |_, _| "/obs".into(),
            ),
        };
        for (k, (t, p)) in obs.into_iter().enumerate() {
            let p = *ids
                .get(p as usize)
                .ok_or_else(|| bad(obs_at(k, 1), format!("place {p} is not in places")))?;
            let v = pack_obs(start, t, p).ok_or_else(|| {
                bad(
                    obs_at(k, 0),
                    format!("{t} ms is no time on or near {}", date),
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
                    return Err(bad(
                        format!("/overrides/{k}/at_ms"),
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
        *self.users[uid as usize].day(date) = day;
        self.recompute_one(uid, date);
        Ok(())
    }

    /// One discovery count of a state; its block must be the address's suggested one.
    fn read_discovery(
        &mut self,
        block: IpNet,
        ip: IpAddr,
        user: &str,
        n: u64,
    ) -> Result<(), String> {
        if block != suggested_block(ip) {
            return Err(format!("{block} is not the suggested block of {ip}"));
        }
        let uid = self.intern_user(user);
        super::count_discovery(&mut self.discovery, Found::new(ip, uid), n);
        Ok(())
    }

    /// The days of a state written to a file by a spilled replay ([`super::Spill`]): one
    /// JSON object a line, a user-day with its date and user. A bad line is named by its
    /// number, under the pointer `/days_file/path`.
    fn read_days_file(
        &mut self,
        ids: &[u32],
        file: &DaysFileJson,
        version: u32,
    ) -> Result<(), PresenceError> {
        use std::io::BufRead;
        let at = |message: String| PresenceError::StateAt {
            pointer: "/days_file/path".into(),
            message,
        };
        if version < 3 {
            return Err(at("days_file needs a state of version 3".into()));
        }
        let path = &file.path;
        let f = std::fs::File::open(path).map_err(|e| at(format!("cannot read {path}: {e}")))?;
        let mut read = 0u64;
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| at(format!("cannot read {path}: {e}")))?;
            let n = n + 1;
            let d: DayLineJson =
                serde_json::from_str(&line).map_err(|e| at(format!("{path} line {n}: {e}")))?;
            match (d.date, d.user, d.discovery) {
                (None, None, Some((block, ip, u, count))) => {
                    self.read_discovery(block, ip, &u, count)
                        .map_err(|message| at(format!("{path} line {n}: {message}")))?;
                }
                (Some(date), Some(user), None) => {
                    self.read_user_day(ids, date, &user, d.day, &|field, message| {
                        at(format!(
                            "{path} line {n}, {}: {message}",
                            field.trim_start_matches('/')
                        ))
                    })?;
                }
                _ => {
                    return Err(at(format!(
                        "{path} line {n}: is neither a user-day (date, user) nor a discovery count"
                    )));
                }
            }
            read += 1;
        }
        if read != file.lines {
            return Err(at(format!(
                "{path} holds {read} user-days where the state says {}",
                file.lines
            )));
        }
        Ok(())
    }
}

/// One user-day's JSON object (the shape is in the crate doc), its place ids mapped by
/// `renum`; its long fields are single strings moved in.
pub(super) fn user_day_json(
    date: Date,
    ud: UserDay,
    renum: impl Fn(u32) -> u32,
) -> Map<String, Value> {
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
            (t, renum(p))
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
    day
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
    /// Version 3: more days, in a file ([`MemoryState::read_days_file`]).
    #[serde(default)]
    days_file: Option<DaysFileJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaysFileJson {
    path: String,
    /// The user-days written: a file with another number of lines is refused (cut
    /// short, or not the one this state was written with).
    lines: u64,
}

/// A line of a days file: one user-day, or one discovery count.
#[derive(Deserialize)]
struct DayLineJson {
    #[serde(default)]
    date: Option<Date>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    discovery: Option<(IpNet, IpAddr, String, u64)>,
    #[serde(flatten)]
    day: UserDayJson,
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
    use serde_json::json;

    use super::{MemoryState, push_hex16, push_int};
    use crate::error::PresenceError;

    #[test]
    fn a_discovery_count_is_refused_when_its_block_is_not_its_address_s() {
        let state = |block: &str| {
            json!({"version": 2, "places": [], "days": [],
                   "discovery": [["10.0.1.0/24", "10.0.1.5", "a@x.example", 3],
                                 [block, "10.0.2.5", "a@x.example", 1]]})
        };
        let back = MemoryState::from_json(state("10.0.2.0/24")).unwrap();
        assert_eq!(back.to_json(), state("10.0.2.0/24"));
        match MemoryState::from_json(state("10.0.0.0/16")).unwrap_err() {
            PresenceError::StateAt { pointer, message } => {
                assert_eq!(pointer, "/discovery/1/0");
                assert!(
                    message.contains("not the suggested block of 10.0.2.5"),
                    "{message}"
                );
            }
            e => panic!("{e}"),
        }
    }

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
