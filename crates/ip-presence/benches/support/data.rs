//! The data of the reproducible benchmark of issue 7: a seeded generator for sign-ins (JSON
//! lines with the real signIn field set, about 780 bytes each, 70 % IPv4 / 30 % IPv6) and a
//! matching configuration of 2,000 nested ranges. Shared, by `#[path]`, by the criterion
//! bench (`benches/presence.rs`), the 1M job (`examples/presence_bench.rs`) and the file
//! tests (`tests/presence/file.rs`).

// Each includer reads a different part of what `generate` returns.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ip_presence::{IpRange, PresenceConfig, PresenceMode, Settings, TrackedUser};
use jiff::Timestamp;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct BenchSpec {
    pub seed: u64,
    pub sign_ins: usize,
    pub users: usize,
    /// Office locations (each gets 65 nested ranges); remote ranges fill up to `ranges`.
    pub offices: usize,
    pub ranges: usize,
    /// Sign-ins are spread over this many days starting at `first_day`.
    pub days: u32,
    pub first_day: jiff::civil::Date,
}

impl Default for BenchSpec {
    /// The figures: 1,000,000 sign-ins, 2,000 ranges.
    fn default() -> Self {
        Self {
            seed: 7,
            sign_ins: 1_000_000,
            users: 20_000,
            offices: 20,
            ranges: 2_000,
            days: 2,
            first_day: jiff::civil::date(2024, 5, 6),
        }
    }
}

impl BenchSpec {
    /// "Now" for a run over the generated file: the end of its last day.
    pub fn now(&self) -> Timestamp {
        let last = self.first_day + jiff::Span::new().days(i64::from(self.days));
        last.to_zoned(jiff::tz::TimeZone::UTC)
            .expect("valid")
            .timestamp()
            - jiff::Span::new().seconds(1)
    }
}

/// Where the generator wrote its files.
#[derive(Debug, Clone)]
pub struct BenchFiles {
    pub sign_ins: PathBuf,
    pub config: PathBuf,
    pub bytes: u64,
}

/// splitmix64: tiny, seeded, and stable forever (the figures must be reproducible).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn guid(&mut self, out: &mut String) {
        let a = self.next();
        let b = self.next();
        let _ = write!(
            out,
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        );
    }
}

const ZONES: [&str; 3] = ["Europe/Berlin", "America/New_York", "Asia/Tokyo"];

/// The configuration matching [`generate`]: per office a campus (/16 and /48), 45 floors
/// (/24 and /64 nested in it), 15 guest networks (/28 nested in a floor, presence off) and
/// 4 labs (/26, logging off); the rest remote ISP ranges (/18 and /32).
pub fn bench_config(spec: &BenchSpec) -> PresenceConfig {
    let mut ranges = Vec::with_capacity(spec.ranges);
    let r = |name: String, cidrs: Vec<String>, location: Option<String>, remote: bool| IpRange {
        name,
        cidrs,
        location,
        remote,
        presence_enabled: true,
        logging_enabled: true,
    };
    let mut location_time_zones = std::collections::BTreeMap::new();
    for o in 0..spec.offices {
        let loc = format!("Office {o:02}");
        location_time_zones.insert(loc.clone(), ZONES[o % ZONES.len()].to_owned());
        let a = 100 + o;
        ranges.push(r(
            format!("office-{o:02}-campus"),
            vec![format!("{a}.20.0.0/16"), format!("2001:db8:{o:x}::/48")],
            Some(loc.clone()),
            false,
        ));
        for f in 0..45 {
            ranges.push(r(
                format!("office-{o:02}-floor-{f:02}"),
                vec![
                    format!("{a}.20.{f}.0/24"),
                    format!("2001:db8:{o:x}:{f:x}::/64"),
                ],
                Some(loc.clone()),
                false,
            ));
        }
        for g in 0..15 {
            let mut x = r(
                format!("office-{o:02}-guest-{g:02}"),
                vec![format!("{a}.20.{g}.240/28")],
                None,
                false,
            );
            x.presence_enabled = false;
            ranges.push(x);
        }
        for l in 0..4 {
            let mut x = r(
                format!("office-{o:02}-lab-{l}"),
                vec![format!("{a}.20.{}.0/26", 100 + l)],
                Some(loc.clone()),
                false,
            );
            x.logging_enabled = false;
            ranges.push(x);
        }
    }
    let mut i = 0;
    while ranges.len() < spec.ranges {
        ranges.push(r(
            format!("isp-{i:04}"),
            vec![
                format!("{}.{}.0.0/18", 150 + i / 256, i % 256),
                format!("2a00:{i:x}::/32"),
            ],
            None,
            true,
        ));
        i += 1;
    }
    let users = (0..spec.users)
        .map(|u| TrackedUser {
            upn: format!("user{u:05}@contoso.com"),
            active: !u.is_multiple_of(50),
            mode: match u % 20 {
                0 => PresenceMode::Off,
                1 | 2 => PresenceMode::TrackOnly,
                _ => PresenceMode::TrackAndDisplay,
            },
        })
        .collect();
    PresenceConfig {
        ranges,
        users,
        settings: Settings {
            auto_create: true,
            location_time_zones,
            ..Settings::default()
        },
    }
}

/// Write `signins.jsonl` and `presence.json` into `dir`.
pub fn generate(dir: &Path, spec: &BenchSpec) -> std::io::Result<BenchFiles> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("presence.json");
    std::fs::write(
        &config,
        serde_json::to_vec(&bench_config(spec)).expect("config serialises"),
    )?;
    let sign_ins = dir.join("signins.jsonl");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&sign_ins)?);
    let mut rng = Rng(spec.seed);
    let isps = spec.ranges.saturating_sub(spec.offices * 65).max(1) as u64;
    let day0 = spec
        .first_day
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("valid")
        .timestamp()
        .as_second();
    let mut line = String::with_capacity(1024);
    let mut bytes = 0u64;
    for _ in 0..spec.sign_ins {
        line.clear();
        // 3 % of sign-ins come from people outside the directory.
        let u = rng.below(spec.users as u64 + spec.users as u64 / 32);
        let o = u % spec.offices as u64;
        let a = 100 + o;
        let v6 = rng.chance(30);
        let day = rng.below(u64::from(spec.days)) as i64;
        // Most people spend a day in one place: the office (70 %) or at home; 2 % of
        // their sign-ins come from the other place, 5 % from unknown networks.
        let in_office_today =
            (u ^ (day as u64).wrapping_mul(0x9e37)).wrapping_mul(0x2545_f491) % 10 < 7;
        let floor = (u * 7 + u64::from(rng.chance(10))) % 45;
        let host = 1 + u % 200;
        let i = u % isps;
        let ip = match rng.below(100) {
            n if (n < 93) == in_office_today && n < 95 => {
                if v6 {
                    format!("2001:db8:{o:x}:{floor:x}::{host:x}")
                } else {
                    format!("{a}.20.{floor}.{host}")
                }
            }
            n if n < 95 => {
                if v6 {
                    format!("2a00:{i:x}:{:x}::{:x}", u & 0xffff, 1 + u % 7)
                } else {
                    format!("{}.{}.{}.{}", 150 + i / 256, i % 256, u % 64, 1 + u % 250)
                }
            }
            // Somewhere unknown.
            _ if v6 => format!("2c0f:{:x}::{:x}", rng.below(64), rng.below(1000)),
            _ => format!("198.51.{}.{}", rng.below(64), rng.below(256)),
        };
        let secs = day0 + day * 86_400 + 5 * 3600 + rng.below(14 * 3600) as i64;
        write_sign_in(&mut line, &mut rng, secs, u, &ip);
        bytes += line.len() as u64;
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(BenchFiles {
        sign_ins,
        config,
        bytes,
    })
}

/// One sign-in as a JSON line (the real signIn field set) into `line`: created at `secs`
/// (plus a random fraction), by `user{u:05}@contoso.com`, from `ip`; 3 % failed.
fn write_sign_in(line: &mut String, rng: &mut Rng, secs: i64, u: u64, ip: &str) {
    let ts = Timestamp::from_second(secs).expect("valid");
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    line.push_str("{\"id\":\"");
    rng.guid(line);
    let _ = write!(
        line,
        "\",\"createdDateTime\":\"{}T{:02}:{:02}:{:02}.{:07}Z\"",
        dt.date(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        rng.below(10_000_000)
    );
    let _ = write!(
        line,
        ",\"userDisplayName\":\"User {u:05}\",\"userPrincipalName\":\"user{u:05}@contoso.com\",\"userId\":\""
    );
    rng.guid(line);
    line.push_str("\",\"appId\":\"");
    rng.guid(line);
    let failed = rng.chance(3);
    let _ = write!(
        line,
        "\",\"appDisplayName\":\"Microsoft Teams\",\"ipAddress\":\"{ip}\",\"clientAppUsed\":\"Browser\",\"correlationId\":\""
    );
    rng.guid(line);
    line.push_str("\",\"conditionalAccessStatus\":\"notApplied\",\"isInteractive\":false,\"resourceDisplayName\":\"Microsoft Graph\",\"resourceId\":\"00000003-0000-0000-c000-000000000000\",\"riskDetail\":\"none\",\"riskEventTypes\":[],\"riskEventTypes_v2\":[],\"riskLevelAggregated\":\"none\",\"riskLevelDuringSignIn\":\"none\",\"riskState\":\"none\",");
    let _ = write!(
        line,
        "\"status\":{{\"errorCode\":{}}},\"location\":{{\"countryOrRegion\":\"DE\"}},\"deviceDetail\":{{\"operatingSystem\":\"Windows10\",\"isCompliant\":{},\"isManaged\":true}},",
        if failed { 50126 } else { 0 },
        u.is_multiple_of(3)
    );
    line.push_str("\"appliedConditionalAccessPolicies\":[]}\n");
}

/// The organisation-scale data of issue 15: many days, one directory of people who each
/// have a home office, a home ISP and a phone, seen almost every day.
///
/// The people (`users`, 1 % of sign-ins from people outside the directory):
/// - a **home office** (`u % offices`) with a fixed floor and desk address, where they
///   spend about half of the working days (hashed per user and day), mostly from the desk,
///   with some sign-ins from home before leaving and from the phone;
/// - a **home ISP**: one of the ISP blocks below, with an address that changes every week
///   (dynamic addresses); on home days most sign-ins come from there, 15 % through the
///   **VPN** and some from the phone; weekends are home days with fewer sign-ins;
/// - a **phone** on one of 8 mobile carriers (the first ISP blocks), a new address from the
///   carrier's block at almost every sign-in;
/// - **travel**: 3 % of working days at another office;
/// - 3 % of sign-ins from networks in no range (hotels, cafés), for discovery.
///
/// The ranges (`ranges`, 2,000 by default), nested: per office a campus /16 (and /48), 20
/// floors /24 (and /64) and 4 guest networks /28 with presence off; one VPN egress /24
/// (and /48), remote; the rest ISP-style blocks, remote: /12 parents each holding /16s,
/// with /18s and /20s nested in them, and a /32 of IPv6 per parent.
///
/// Time: sign-ins spread over `days` days from `first_day`, 06:00 to 22:00 UTC, `sign_ins`
/// in all. The file is in the order Graph would have delivered them: by time, except that
/// 5 % arrive **late**, up to 6 hours after they were created.
#[derive(Debug, Clone, Copy)]
pub struct OrgSpec {
    pub seed: u64,
    pub sign_ins: usize,
    pub users: usize,
    pub offices: usize,
    pub ranges: usize,
    pub days: u32,
    pub first_day: jiff::civil::Date,
}

impl Default for OrgSpec {
    /// The job: 1,000,000 sign-ins over 30 days from 5,000 people, 2,000 ranges.
    fn default() -> Self {
        Self {
            seed: 15,
            sign_ins: 1_000_000,
            users: 5_000,
            offices: 8,
            ranges: 2_000,
            days: 30,
            first_day: jiff::civil::date(2024, 4, 1),
        }
    }
}

/// ISP blocks: /12 parents from 32.0.0.0 up, each with 8 /16s, 4 /18s and 3 /20s.
const ISP_CHILDREN: usize = 15;
const CARRIERS: u64 = 8;

impl OrgSpec {
    /// "Now" for a run over the generated file: the end of its last day.
    pub fn now(&self) -> Timestamp {
        BenchSpec {
            days: self.days,
            first_day: self.first_day,
            ..BenchSpec::default()
        }
        .now()
    }

    /// How many ISP parents the ranges left after offices and the VPN hold.
    fn isp_parents(&self) -> usize {
        let left = self.ranges.saturating_sub(self.offices * 25 + 1);
        left.div_ceil(1 + ISP_CHILDREN).max(1)
    }

    /// The first two octets of ISP parent `k`'s /12 and of its `j`-th /16 (j < 8).
    fn isp_octets(k: usize, j: usize) -> (usize, usize) {
        (32 + k / 16, (k % 16) * 16 + j)
    }
}

/// The configuration matching [`generate_org`].
pub fn org_config(spec: &OrgSpec) -> PresenceConfig {
    let r = |name: String, cidrs: Vec<String>, location: Option<String>| IpRange {
        remote: location.is_none(),
        name,
        cidrs,
        location,
        presence_enabled: true,
        logging_enabled: true,
    };
    let mut ranges = Vec::with_capacity(spec.ranges);
    for o in 0..spec.offices {
        let loc = Some(format!("Office {o:02}"));
        let a = 100 + o;
        ranges.push(r(
            format!("office-{o:02}-campus"),
            vec![format!("{a}.20.0.0/16"), format!("2001:db8:{o:x}::/48")],
            loc.clone(),
        ));
        for f in 0..20 {
            ranges.push(r(
                format!("office-{o:02}-floor-{f:02}"),
                vec![
                    format!("{a}.20.{f}.0/24"),
                    format!("2001:db8:{o:x}:{f:x}::/64"),
                ],
                loc.clone(),
            ));
        }
        for g in 0..4 {
            let mut x = r(
                format!("office-{o:02}-guest-{g}"),
                vec![format!("{a}.20.{}.0/28", 200 + g)],
                loc.clone(),
            );
            x.presence_enabled = false;
            ranges.push(x);
        }
    }
    ranges.push(r(
        "vpn".into(),
        vec!["198.18.0.0/24".into(), "2001:db8:ffff::/48".into()],
        None,
    ));
    'parents: for k in 0..spec.isp_parents() {
        let (a, b) = OrgSpec::isp_octets(k, 0);
        let mut push = |name: String, cidrs: Vec<String>| {
            ranges.push(r(name, cidrs, None));
            ranges.len() >= spec.ranges
        };
        if push(
            format!("isp-{k:03}"),
            vec![format!("{a}.{b}.0.0/12"), format!("2a00:{k:x}::/32")],
        ) {
            break;
        }
        for j in 0..8 {
            let (a, b) = OrgSpec::isp_octets(k, j);
            if push(format!("isp-{k:03}-{j}"), vec![format!("{a}.{b}.0.0/16")]) {
                break 'parents;
            }
            let nested = match j {
                0..4 => vec![(format!("{a}.{b}.64.0/18"), 'q')],
                4..7 => vec![(format!("{a}.{b}.16.0/20"), 'p')],
                _ => vec![],
            };
            for (cidr, kind) in nested {
                if push(format!("isp-{k:03}-{j}{kind}"), vec![cidr]) {
                    break 'parents;
                }
            }
        }
    }
    let users = (0..spec.users)
        .map(|u| TrackedUser {
            upn: format!("user{u:05}@contoso.com"),
            active: !u.is_multiple_of(100),
            mode: match u % 20 {
                0 => PresenceMode::Off,
                1 | 2 => PresenceMode::TrackOnly,
                _ => PresenceMode::TrackAndDisplay,
            },
        })
        .collect();
    PresenceConfig {
        ranges,
        users,
        settings: Settings {
            auto_create: true,
            ..Settings::default()
        },
    }
}

/// A stable hash of a few numbers (which day is an office day, which address this week).
fn mix(a: u64, b: u64) -> u64 {
    Rng(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b).next()
}

/// Where user `u` signs in from at second `sec` of day `day` (of the week `weekday`,
/// 0 = Monday): the address as text.
fn org_address(spec: &OrgSpec, rng: &mut Rng, u: u64, day: u64, sec: u64) -> String {
    let weekday = day % 7; // the default first day is a Monday
    let offices = spec.offices as u64;
    let v6 = rng.chance(30);
    // Somewhere in no range.
    if rng.chance(3) {
        return if v6 {
            format!("2c0f:{:x}::{:x}", rng.below(256), rng.below(1000))
        } else {
            format!("203.0.{}.{}", rng.below(256), 1 + rng.below(254))
        };
    }
    let parents = spec.isp_parents() as u64;
    let phone = |rng: &mut Rng| {
        let k = (u % CARRIERS).min(parents - 1) as usize;
        if v6 {
            format!(
                "2a00:{k:x}:{:x}::{:x}",
                rng.below(65536),
                1 + rng.below(999)
            )
        } else {
            let (a, b) = OrgSpec::isp_octets(k, rng.below(8) as usize);
            format!("{a}.{b}.{}.{}", rng.below(256), 1 + rng.below(254))
        }
    };
    let home = || {
        let k = (CARRIERS + u % (parents.saturating_sub(CARRIERS)).max(1)).min(parents - 1);
        let j = (u / parents) % 8;
        let week = mix(u, day / 7);
        let (a, b) = OrgSpec::isp_octets(k as usize, j as usize);
        if v6 {
            format!("2a00:{k:x}:{:x}::{:x}", week & 0xffff, 1 + u % 200)
        } else {
            format!("{a}.{b}.{}.{}", week % 256, 1 + (week >> 8) % 254)
        }
    };
    let office = |o: u64| {
        let floor = (u / offices) % 20;
        let host = 1 + (u / offices / 20) % 250;
        if v6 {
            format!("2001:db8:{o:x}:{floor:x}::{host:x}")
        } else {
            format!("{}.20.{floor}.{host}", 100 + o)
        }
    };
    let working = weekday < 5;
    let kind = mix(u, day) % 100;
    let r = rng.below(100);
    if working && kind < 3 {
        // Travelling: at another office, else the phone.
        return if r < 80 {
            office((u + 1 + day) % offices)
        } else {
            phone(rng)
        };
    }
    if working && kind < 53 {
        // An office day: home early and late, the desk in between, the phone throughout.
        let at_desk = (8 * 3600..18 * 3600).contains(&sec);
        return match r {
            0..12 => phone(rng),
            _ if at_desk => office(u % offices),
            _ => home(),
        };
    }
    // A home day.
    match r {
        0..12 => phone(rng),
        12..27 if v6 => format!("2001:db8:ffff::{:x}", 1 + rng.below(64)),
        12..27 => format!("198.18.0.{}", 1 + rng.below(64)),
        _ => home(),
    }
}

/// Write `signins.jsonl` and `presence.json` for an [`OrgSpec`] into `dir`.
pub fn generate_org(dir: &Path, spec: &OrgSpec) -> std::io::Result<BenchFiles> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("presence.json");
    std::fs::write(
        &config,
        serde_json::to_vec(&org_config(spec)).expect("config serialises"),
    )?;
    let sign_ins = dir.join("signins.jsonl");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&sign_ins)?);
    let mut rng = Rng(spec.seed);
    let day0 = spec
        .first_day
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("valid")
        .timestamp()
        .as_second();
    let mut line = String::with_capacity(1024);
    let mut bytes = 0u64;
    // (delivered at, created at, user, address), one day at a time; late ones carried over.
    let mut pending: Vec<(i64, i64, u64, String)> = Vec::new();
    let days = u64::from(spec.days.max(1));
    let users = spec.users as u64;
    for day in 0..days {
        let weekday = day % 7;
        let quota = spec.sign_ins / days as usize
            + usize::from((day as usize) < spec.sign_ins % days as usize);
        for _ in 0..quota {
            // Weekends are quieter: a third of the people.
            let mut u = rng.below(users + users / 100);
            if weekday >= 5 && u < users {
                u = rng.below(users / 3 + 1) * 3 % users;
            }
            let sec = 6 * 3600 + rng.below(16 * 3600);
            let ip = org_address(spec, &mut rng, u, day, sec);
            let created = day0 + day as i64 * 86_400 + sec as i64;
            let delivered = if rng.chance(5) {
                created + rng.below(6 * 3600) as i64
            } else {
                created
            };
            pending.push((delivered, created, u, ip));
        }
        pending.sort_unstable_by_key(|p| (p.0, p.1, p.2));
        let next_day = day0 + (day as i64 + 1) * 86_400;
        let last = day + 1 == days;
        let keep = if last {
            pending.len()
        } else {
            pending.partition_point(|p| p.0 < next_day)
        };
        for (_, created, u, ip) in pending.drain(..keep) {
            line.clear();
            write_sign_in(&mut line, &mut rng, created, u, &ip);
            bytes += line.len() as u64;
            out.write_all(line.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(BenchFiles {
        sign_ins,
        config,
        bytes,
    })
}
