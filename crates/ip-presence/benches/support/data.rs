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
        let ts = Timestamp::from_second(secs).expect("valid");
        let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
        line.push_str("{\"id\":\"");
        rng.guid(&mut line);
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
        rng.guid(&mut line);
        line.push_str("\",\"appId\":\"");
        rng.guid(&mut line);
        let failed = rng.chance(3);
        let _ = write!(
            line,
            "\",\"appDisplayName\":\"Microsoft Teams\",\"ipAddress\":\"{ip}\",\"clientAppUsed\":\"Browser\",\"correlationId\":\""
        );
        rng.guid(&mut line);
        line.push_str("\",\"conditionalAccessStatus\":\"notApplied\",\"isInteractive\":false,\"resourceDisplayName\":\"Microsoft Graph\",\"resourceId\":\"00000003-0000-0000-c000-000000000000\",\"riskDetail\":\"none\",\"riskEventTypes\":[],\"riskEventTypes_v2\":[],\"riskLevelAggregated\":\"none\",\"riskLevelDuringSignIn\":\"none\",\"riskState\":\"none\",");
        let _ = write!(
            line,
            "\"status\":{{\"errorCode\":{}}},\"location\":{{\"countryOrRegion\":\"DE\"}},\"deviceDetail\":{{\"operatingSystem\":\"Windows10\",\"isCompliant\":{},\"isManaged\":true}},",
            if failed { 50126 } else { 0 },
            u.is_multiple_of(3)
        );
        line.push_str("\"appliedConditionalAccessPolicies\":[]}\n");
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
