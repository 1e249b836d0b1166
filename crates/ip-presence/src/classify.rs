//! Classification: the configuration compiled for lookups ([`Rules`]), and the verdict on
//! one sign-in before any state is consulted ([`Rules::classify`]): discarded (failed,
//! unknown or inactive user, malformed, unmatched, too late) or a [`Candidate`] with its
//! user, matched range and calendar day.

use std::hash::Hasher;
use std::net::IpAddr;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use rustc_hash::{FxHashMap, FxHasher};

use super::backend::id_hash;
use super::calendar::{Zone, parse_timestamp_ms};
use super::config::{ConfigError, PresenceConfig, PresenceMode, normalise_upn};
use super::model::{Discarded, Place};
use super::ranges::{IpRangeTable, canonical_ip};
use super::signin::SignIn;

/// A sign-in that passed the user and failure rules, ready for a backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub at_ms: i64,
    pub user: u32,
    pub date: Date,
    pub ip: IpAddr,
    /// Matched range, [`NO_RANGE`] for none.
    pub range: u32,
    pub id_hash: u64,
}

/// [`Candidate::range`] of an address in no range (counted toward discovery).
pub(crate) const NO_RANGE: u32 = u32::MAX;

pub(crate) enum Verdict {
    Discard(fn(&mut Discarded)),
    Candidate(Candidate),
}

#[derive(Debug, Clone)]
pub(crate) struct UserEntry {
    pub key: String,
    pub active: bool,
    pub mode: PresenceMode,
}

/// Normalised UPN -> user index. Open addressing over 32-byte slots that hold short keys
/// inline, so a lookup reads one cache line; the users' own key strings are scattered
/// over the heap and cost a second miss per sign-in. Longer keys go to a plain map.
#[derive(Debug, Clone)]
struct UserIndex {
    slots: Vec<UserSlot>,
    long: FxHashMap<Box<[u8]>, u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct UserSlot {
    /// 0: empty.
    len: u8,
    ix: u32,
    key: [u8; UserSlot::INLINE],
}

impl UserSlot {
    const INLINE: usize = 27;
}

impl UserIndex {
    fn with_capacity(n: usize) -> Self {
        let slots = (n.max(8) + n / 2).next_power_of_two();
        Self {
            slots: vec![UserSlot::default(); slots],
            long: FxHashMap::default(),
        }
    }

    /// The first slot to probe for `key`. rustc-hash's `finish` moves its best bits to
    /// the bottom, for tables indexed by the low bits like this one.
    #[inline]
    fn home(&self, key: &[u8]) -> usize {
        let mut h = FxHasher::default();
        h.write(key);
        h.finish() as usize & (self.slots.len() - 1)
    }

    /// Insert or replace.
    fn insert(&mut self, key: &str, ix: u32) {
        let k = key.as_bytes();
        if k.is_empty() || k.len() > UserSlot::INLINE {
            self.long.insert(k.into(), ix);
            return;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(k);
        loop {
            let s = &mut self.slots[i];
            if s.len == 0 {
                s.len = k.len() as u8;
                s.key[..k.len()].copy_from_slice(k);
                s.ix = ix;
                return;
            }
            if &s.key[..usize::from(s.len)] == k {
                s.ix = ix;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn get(&self, k: &[u8]) -> Option<u32> {
        if k.is_empty() || k.len() > UserSlot::INLINE {
            return self.long.get(k).copied();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(k);
        loop {
            let s = &self.slots[i];
            if s.len == 0 {
                return None;
            }
            if usize::from(s.len) == k.len() && &s.key[..k.len()] == k {
                return Some(s.ix);
            }
            i = (i + 1) & mask;
        }
    }
}

/// A validated configuration compiled for classifying sign-ins: users by UPN, the range
/// table, and per range the place a match means and the zone its calendar day is taken in.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub table: IpRangeTable,
    pub users: Vec<UserEntry>,
    by_upn: UserIndex,
    /// Per range: the place a match means, when the range has presence on.
    pub places: Vec<Option<Place>>,
    /// Per range: the zone its calendar day is computed in.
    zones: Vec<Zone>,
    pub default_zone: Zone,
    count_failed_sign_ins: bool,
    auto_create: bool,
    access_logging: bool,
}

impl Rules {
    /// Compile `config`, which must have been validated (its time zones exist).
    pub(crate) fn new(config: &PresenceConfig) -> Result<Self, Vec<ConfigError>> {
        let table = IpRangeTable::new(&config.ranges)?;
        let s = &config.settings;
        let zone_of = |name: &str| Zone::new(TimeZone::get(name).expect("validated"));
        let default_zone = zone_of(&s.time_zone);
        let zones = config
            .ranges
            .iter()
            .map(|r| {
                match r
                    .location
                    .as_ref()
                    .and_then(|l| s.location_time_zones.get(l))
                {
                    Some(tz) => zone_of(tz),
                    None => default_zone.clone(),
                }
            })
            .collect();
        let places = config
            .ranges
            .iter()
            .map(|r| match (&r.location, r.remote) {
                _ if !r.presence_enabled => None,
                (Some(l), false) => Some(Place::Office {
                    location: l.clone(),
                }),
                (None, true) => Some(Place::Remote),
                _ => None,
            })
            .collect();
        let mut users = Vec::with_capacity(config.users.len());
        let mut by_upn = UserIndex::with_capacity(config.users.len());
        for u in &config.users {
            let key = normalise_upn(&u.upn);
            by_upn.insert(&key, users.len() as u32);
            users.push(UserEntry {
                key,
                active: u.active,
                mode: u.mode,
            });
        }
        Ok(Self {
            table,
            users,
            by_upn,
            places,
            zones,
            default_zone,
            count_failed_sign_ins: s.count_failed_sign_ins,
            auto_create: s.auto_create,
            access_logging: s.access_logging,
        })
    }

    /// The index of a user, by UPN in any case.
    #[inline]
    pub(crate) fn lookup_user(&self, upn: &str) -> Option<u32> {
        let b = upn.as_bytes();
        // Already normalised (the usual case): ASCII, no capitals, nothing to trim.
        let plain = match (b.first(), b.last()) {
            (Some(&f), Some(&l)) => {
                !matches!(f, b'\t'..=b'\r' | b' ')
                    && !matches!(l, b'\t'..=b'\r' | b' ')
                    && !b
                        .iter()
                        .fold(false, |a, &c| a | (c >= 0x80) | c.is_ascii_uppercase())
            }
            _ => false,
        };
        if plain {
            self.by_upn.get(b)
        } else {
            self.by_upn.get(normalise_upn(upn).as_bytes())
        }
    }

    /// Whether a sign-in matched to `range` is logged as an access event (app-wide and for
    /// the range).
    #[inline]
    pub(crate) fn logs_access(&self, range: u32) -> bool {
        self.access_logging && self.table.range(range).logging_enabled
    }

    /// Steps 1, 2 (lookup) and the failure rule, which need no state; a day outside
    /// `days` (oldest and newest accepted, [`crate::ProcessOptions::accepted`]) is too late.
    pub(crate) fn classify(&self, s: &SignIn<'_>, days: (Date, Date)) -> Verdict {
        if s.error_code() != 0 && !self.count_failed_sign_ins {
            return Verdict::Discard(|d| d.failed += 1);
        }
        let Some(user) = s
            .user_principal_name
            .as_deref()
            .and_then(|u| self.lookup_user(u))
        else {
            return Verdict::Discard(|d| d.unknown_user += 1);
        };
        if !self.users[user as usize].active {
            return Verdict::Discard(|d| d.inactive_user += 1);
        }
        let (Some(id), Some(at_ms), Some(ip)) = (
            s.id.as_deref().filter(|i| !i.is_empty()),
            s.created_date_time.as_deref().and_then(parse_timestamp_ms),
            s.ip_address.as_deref().and_then(|i| parse_ip(i.trim())),
        ) else {
            return Verdict::Discard(|d| d.malformed += 1);
        };
        let ip = canonical_ip(ip);
        let (range, date) = match self.table.lookup(ip) {
            Some(m) => (m.index, self.zones[m.index as usize].date(at_ms)),
            None if self.auto_create => (NO_RANGE, self.default_zone.date(at_ms)),
            None => return Verdict::Discard(|d| d.unmatched += 1),
        };
        if date < days.0 || date > days.1 {
            return Verdict::Discard(|d| d.too_late += 1);
        }
        Verdict::Candidate(Candidate {
            at_ms,
            user,
            date,
            ip,
            range,
            id_hash: id_hash(id),
        })
    }
}

/// An address as `str::parse::<IpAddr>` reads it. IPv6 as hexadecimal groups with at most
/// one `::` is read here, without std's parser, which tries an embedded IPv4 address at
/// every group (2.5 % of the 30-day bench's CPU); any other text (IPv4, an embedded IPv4
/// address, a zone, something wrong) is std's to read. That Graph writes IPv6 this way
/// has no source (Microsoft's signIn examples show IPv4 only); it is the generated data's
/// form, and nothing depends on it but speed.
#[inline]
fn parse_ip(s: &str) -> Option<IpAddr> {
    // An IPv6 address has a colon among its first five characters; IPv4 has none.
    if s.as_bytes()[..s.len().min(5)].contains(&b':')
        && let Some(a) = ipv6_groups(s.as_bytes())
    {
        return Some(IpAddr::V6(a));
    }
    s.parse().ok()
}

/// `b` as an IPv6 address of hexadecimal groups (one to four digits each) with at most
/// one `::` standing for one or more zero groups (RFC 4291, section 2.2); `None` for
/// anything else, which is then std's to accept or refuse: this never accepts what std
/// refuses, nor reads a text otherwise.
fn ipv6_groups(b: &[u8]) -> Option<std::net::Ipv6Addr> {
    fn hex(c: u8) -> Option<u16> {
        match c {
            b'0'..=b'9' => Some(u16::from(c - b'0')),
            b'a'..=b'f' => Some(u16::from(c - b'a' + 10)),
            b'A'..=b'F' => Some(u16::from(c - b'A' + 10)),
            _ => None,
        }
    }
    // The groups before the `::` (or all of them) and after it.
    let (mut head, mut tail) = ([0u16; 8], [0u16; 8]);
    let (mut nh, mut nt) = (0, 0);
    let mut gap = b.starts_with(b"::");
    let mut i = if gap { 2 } else { 0 };
    while i < b.len() {
        let start = i;
        let mut v = 0u16;
        while i < b.len() && i - start < 4 {
            let Some(d) = hex(b[i]) else { break };
            v = v << 4 | d;
            i += 1;
        }
        if i == start || b.get(i).is_some_and(|&c| hex(c).is_some()) {
            return None;
        }
        let (groups, n) = if gap {
            (&mut tail, &mut nt)
        } else {
            (&mut head, &mut nh)
        };
        *groups.get_mut(*n)? = v;
        *n += 1;
        match b.get(i) {
            None => break,
            Some(b':') => i += 1,
            Some(_) => return None,
        }
        match b.get(i) {
            None => return None,
            Some(b':') if gap => return None,
            Some(b':') => {
                gap = true;
                i += 1;
            }
            Some(_) => {}
        }
    }
    let whole = if gap { nh + nt <= 7 } else { nh == 8 };
    if !whole {
        return None;
    }
    let mut g = [0u16; 8];
    g[..nh].copy_from_slice(&head[..nh]);
    g[8 - nt..].copy_from_slice(&tail[..nt]);
    Some(g.into())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Texts std refuses or reads otherwise than as plain groups, and the edges of the
    /// `::` rule: read as std reads them.
    #[test]
    fn addresses_are_read_as_std_reads_them() {
        for text in [
            "",
            ":",
            "::",
            ":::",
            "1::",
            "::1",
            "1:",
            ":1",
            "1::2::3",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7",
            "12345::",
            "0000:0000::",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "10.0.0.1",
            "1.2.3",
            "2a00:42:91::c2",
        ] {
            assert_eq!(parse_ip(text), text.parse::<IpAddr>().ok(), "{text:?}");
        }
    }

    /// A group of an IPv6 address: often zero (so that runs of zeros fall everywhere),
    /// small, or any.
    fn group() -> impl Strategy<Value = u16> {
        prop_oneof![Just(0u16), 0u16..16, any::<u16>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Graph's forms of an address (compressed, in full with leading zeros, in
        /// capitals) are read here, not by std, and as std reads them.
        #[test]
        fn ipv6_addresses_are_read_here_as_std_reads_them(g in prop::array::uniform8(group())) {
            let a = std::net::Ipv6Addr::from(g);
            let full = g.map(|x| format!("{x:04x}")).join(":");
            for text in [a.to_string(), full, a.to_string().to_uppercase()] {
                prop_assert_eq!(parse_ip(&text), text.parse::<IpAddr>().ok());
                if !text.contains('.') {
                    prop_assert_eq!(ipv6_groups(text.as_bytes()), Some(a));
                }
            }
        }

        /// Texts of groups, colons, dots and other characters: read as std reads them.
        #[test]
        fn any_text_reads_as_std_reads_it(
            text in "(:|::|[0-9a-fA-F]{1,5}|\\.[0-9]{1,3}|[g %]){0,12}",
        ) {
            prop_assert_eq!(parse_ip(&text), text.parse::<IpAddr>().ok());
        }
    }

    #[test]
    fn users_are_found_by_upn_in_any_case_and_length() {
        let long = format!("{}@contoso.com", "x".repeat(40));
        let config = PresenceConfig::from_value(serde_json::json!({
            "ranges": [{"name": "hq", "cidrs": ["10.0.0.0/8"], "location": "HQ"}],
            "users": [{"upn": "a@x", "mode": "off"}, {"upn": "Ünïcode@Contoso.com", "mode": "off"}, {"upn": long, "mode": "off"}]
        }))
        .unwrap();
        let e = Rules::new(&config).unwrap();
        assert_eq!(e.lookup_user("a@x"), Some(0));
        assert_eq!(e.lookup_user(" A@X\t"), Some(0));
        assert_eq!(e.lookup_user("ünïcode@contoso.com"), Some(1));
        assert_eq!(e.lookup_user("ÜNÏCODE@CONTOSO.COM"), Some(1));
        assert_eq!(e.lookup_user(&long.to_uppercase()), Some(2));
        assert_eq!(e.lookup_user(&long), Some(2));
        for missing in ["", " ", "b@x", "a@xx", "a@", &long[1..]] {
            assert_eq!(e.lookup_user(missing), None, "{missing:?}");
        }
        let mut ix = UserIndex::with_capacity(1000);
        for i in 0..1000u32 {
            ix.insert(&format!("user{i}@contoso.com"), i);
        }
        for i in 0..1000u32 {
            assert_eq!(ix.get(format!("user{i}@contoso.com").as_bytes()), Some(i));
        }
        assert_eq!(ix.get(b"user1000@contoso.com"), None);
    }
}
