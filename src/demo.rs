//! `msgraph-connector demo`: the main job end to end, with no account.
//!
//! Starts the emulator in this process with a generated organisation whose working day
//! is today (offices in three time zones, a VPN egress marked remote, IPv4 and IPv6),
//! builds the IP range configuration from its offices, gives its users presence modes,
//! runs `sync_ip_presence`'s own code ([`crate::office::Office::sync`]) through
//! the real HTTP path (token endpoint, paging, pacing) into a store, and prints who is in
//! which office.
//!
//! Two things differ from production, and the output says so: the emulator's clock is
//! frozen at the end of the generated day so the whole day is visible, and the demo asset
//! paces the audit-log API far above Graph's 5 requests / 10 s (the emulator's throttle
//! is real time, and nobody wants to watch a demo wait).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::time::Instant;

use foldhash::fast::FixedState;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::graph::{ClientOptions, GraphClient};
use crate::office::report::{CountsOut, DiscoveryOut, Whereabouts};
use crate::office::{Office, SyncOptions, WhoQuery};
use crate::signins::EventType;
use graph_emulator::{self as emulator, EmulatorConfig, GenerateSpec, Tenant, ThrottleConfig};
use ip_presence::{
    IpRange, Place, PresenceConfig, PresenceMode, ProcessOptions, Settings, TrackedUser,
};

/// Audit-log pacing of the demo asset (Graph's own limit is 5 requests / 10 s).
const DEMO_AUDIT_LOG_REQUESTS_PER_SECOND: u32 = 1000;
/// Names shown per office before "+N more".
const NAMES_SHOWN: usize = 3;
/// Discovery blocks shown.
const BLOCKS_SHOWN: usize = 5;

/// What to generate and where to keep the store.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub users: usize,
    pub sign_ins: usize,
    pub seed: u64,
    /// Keep the store here; default: a temporary directory removed at the end.
    pub state_dir: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            users: 3000,
            sign_ins: 30_000,
            seed: 7,
            state_dir: None,
        }
    }
}

/// One office (or Remote) at the end of the day.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OfficeRow {
    /// The office, or `Remote`.
    pub name: String,
    pub remote: bool,
    /// Time zone that defines the office's calendar day.
    pub time_zone: String,
    /// Users whose status at the end of the day is this place.
    pub present: u64,
    /// Distinct users with any presence event here today.
    pub occupancy: u64,
    /// The users shown (`track_and_display`), by display name, in a fixed shuffled order.
    pub names: Vec<String>,
    /// Users present in `track_only` mode: counted, not named.
    pub not_named: u64,
}

/// The demo's result (`demo --json`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DemoReport {
    pub organisation: String,
    pub date: String,
    pub users: u64,
    /// Users by configured presence mode, and those configured inactive.
    pub modes: BTreeMap<String, u64>,
    pub sign_ins_pulled: u64,
    pub pages: u64,
    pub offices: Vec<OfficeRow>,
    pub counts: CountsOut,
    /// Suggested ranges for sign-ins from addresses in no range (home networks here).
    pub discovery: Vec<DiscoveryOut>,
    pub discovery_blocks: u64,
    pub seconds: f64,
    /// Where the store was kept (absent when it was a temporary directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// How the demo differs from a production run.
    pub notes: Vec<String>,
}

/// The presence mode of the `i`-th generated user: most shown, some tracked only, a few
/// off, a few inactive, a few (service accounts, say) not tracked at all.
/// Spread over offices by a hash, since the generator assigns offices round-robin.
fn mode_of(i: usize) -> Option<(PresenceMode, bool)> {
    match spread(i as u64) % 100 {
        0 => None,
        1 | 2 => Some((PresenceMode::TrackAndDisplay, false)),
        3..=6 => Some((PresenceMode::Off, true)),
        7..=18 => Some((PresenceMode::TrackOnly, true)),
        _ => Some((PresenceMode::TrackAndDisplay, true)),
    }
}

/// A fixed, well-mixed permutation of `n` (splitmix64's finaliser).
fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The IP presence configuration of a generated organisation: one range per office
/// (IPv4 and IPv6 blocks), the remote ones marked remote, each office's time zone.
pub fn config_for(tenant: &Tenant) -> PresenceConfig {
    let mut settings = Settings {
        auto_create: true,
        ..Settings::default()
    };
    let ranges = tenant
        .offices()
        .iter()
        .map(|o| {
            if !o.remote {
                settings
                    .location_time_zones
                    .insert(o.name.to_string(), o.time_zone.to_string());
            }
            IpRange {
                name: o.name.to_string(),
                cidrs: o.cidrs.iter().map(ToString::to_string).collect(),
                location: (!o.remote).then(|| o.name.to_string()),
                remote: o.remote,
                presence_enabled: true,
                logging_enabled: true,
            }
        })
        .collect();
    let users = tenant
        .users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            mode_of(i).map(|(mode, active)| TrackedUser {
                upn: u.user_principal_name.to_string(),
                active,
                mode,
            })
        })
        .collect();
    PresenceConfig {
        ranges,
        users,
        settings,
    }
}

/// Run the demo (its own runtime).
pub fn run(options: &DemoOptions) -> Result<DemoReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(options))
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = Timestamp::now().as_nanosecond();
        let path = std::env::temp_dir().join(format!(
            "msgraph-connector-demo-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", path.display())))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the demo inside an existing runtime: the emulator serves from this runtime too.
pub async fn run_async(options: &DemoOptions) -> Result<DemoReport> {
    let started = Instant::now();
    let day = Timestamp::now().to_zoned(TimeZone::UTC).date();
    let tenant = Tenant::generate(&GenerateSpec {
        users: options.users,
        sign_ins: options.sign_ins,
        seed: options.seed,
        day: Some(day),
    });
    let config = config_for(&tenant);
    let names: HashMap<String, String> = tenant
        .users
        .iter()
        .map(|u| {
            (
                u.user_principal_name.to_lowercase(),
                u.display_name.to_string(),
            )
        })
        .collect();
    let zones: Vec<(String, bool, String)> = tenant
        .offices()
        .iter()
        .map(|o| (o.name.to_string(), o.remote, o.time_zone.to_string()))
        .collect();
    let organisation = tenant.display_name.to_string();
    let user_count = tenant.users.len() as u64;

    // The whole generated day is visible: the last sign-ins (New York, 18:00 local) show
    // up to 25 minutes late, so freeze the clock at the end of the UTC day.
    let end_of_day = day
        .at(23, 59, 59, 0)
        .to_zoned(TimeZone::UTC)
        .map_err(|e| Error::internal(e.to_string()))?
        .timestamp();
    let mut emu_config = EmulatorConfig::new(tenant);
    emu_config.throttle = ThrottleConfig::off();
    emu_config.clock = Some(end_of_day);
    let running = emulator::start("127.0.0.1:0".parse().expect("loopback"), emu_config)
        .await
        .map_err(|e| Error::internal(format!("cannot start the emulator: {e}")))?;
    let mut asset = running
        .asset_json("client_credentials")
        .map_err(|e| Error::internal(e.to_string()))?;
    asset["rate_limits"] = serde_json::json!({
        "audit_logs": {"requests": DEMO_AUDIT_LOG_REQUESTS_PER_SECOND, "per_seconds": 1.0}
    });
    let graph = GraphClient::new(
        crate::runner::parse_asset(Some(&asset))?,
        ClientOptions {
            state_dir: None,
            token_cache: false,
            backend: None,
        },
    )?;

    let temp;
    let dir: &Path = match &options.state_dir {
        Some(d) => d,
        None => {
            temp = TempDir::new()?;
            &temp.0
        }
    };
    let since = day
        .yesterday()
        .map_err(|e| Error::internal(e.to_string()))?
        .to_zoned(TimeZone::UTC)
        .map_err(|e| Error::internal(e.to_string()))?
        .timestamp();
    let sync_options = SyncOptions {
        since: Some(since),
        event_types: vec![EventType::InteractiveUser, EventType::NonInteractiveUser],
        lookback: SignedDuration::from_mins(30),
        process: ProcessOptions::at(Timestamp::now()),
        progress: false,
        lease_wait: std::time::Duration::from_secs(30),
        report: Default::default(),
    };
    let office = Office::open(Some(dir), "demo")?;
    let (out, _) = office.sync(&graph, config.clone(), &sync_options).await?;
    running.shutdown();

    let who = office.who_is_where(
        config.clone(),
        WhoQuery {
            date: Some(day),
            from: Some(day),
            to: Some(day),
            ..WhoQuery::default()
        },
    )?;
    let occupancy_of = |place: &Whereabouts| {
        who.occupancy
            .iter()
            .find(|o| &o.place == place)
            .map_or(0, |o| o.users)
    };
    let mut offices = Vec::new();
    let mut remote_done = false;
    for (name, remote, tz) in &zones {
        let place = if *remote {
            if remote_done {
                continue;
            }
            remote_done = true;
            Place::Remote
        } else {
            Place::Office {
                location: name.clone(),
            }
        };
        let place = Whereabouts::from(Some(&place));
        let here = who.locations.iter().find(|l| l.place == place);
        // A varied but repeatable sample rather than everyone called Adele.
        let mut shown: Vec<&String> = here.map(|l| l.users.iter().collect()).unwrap_or_default();
        shown.sort_by_key(|u| spread(FixedState::with_seed(0).hash_one(u)));
        let shown: Vec<String> = shown
            .into_iter()
            .map(|u| names.get(u).cloned().unwrap_or_else(|| u.clone()))
            .collect();
        offices.push(OfficeRow {
            name: if *remote {
                "Remote".into()
            } else {
                name.clone()
            },
            remote: *remote,
            time_zone: if *remote { "-".into() } else { tz.clone() },
            present: here.map_or(0, |l| l.count),
            occupancy: occupancy_of(&place),
            names: shown,
            not_named: here.map_or(0, |l| l.hidden),
        });
    }
    // Remote last, offices in the generator's order.
    offices.sort_by_key(|o| o.remote);

    let mut modes: BTreeMap<String, u64> = BTreeMap::new();
    for u in &config.users {
        let key = if !u.active {
            "inactive"
        } else {
            match u.mode {
                PresenceMode::Off => "off",
                PresenceMode::TrackOnly => "track_only",
                PresenceMode::TrackAndDisplay => "track_and_display",
            }
        };
        *modes.entry(key.into()).or_default() += 1;
    }
    *modes.entry("not_tracked".into()).or_default() = user_count - config.users.len() as u64;

    let discovery_blocks = out.discovery.len() as u64;
    Ok(DemoReport {
        organisation,
        date: day.to_string(),
        users: user_count,
        modes,
        sign_ins_pulled: out.sign_ins.records,
        pages: out.sign_ins.pages,
        offices,
        counts: out.counts,
        discovery: out.discovery.into_iter().take(BLOCKS_SHOWN).collect(),
        discovery_blocks,
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        state_dir: options.state_dir.as_ref().map(|d| d.display().to_string()),
        notes: vec![
            "the emulator's clock is frozen at the end of the generated day, so the whole day is visible".into(),
            format!(
                "the demo asset paces the audit-log API at {} requests/s; \
                 Graph allows 5 requests / 10 s (asset rate_limits.audit_logs), so a real first sync of a day this size takes about {} s",
                thousands(DEMO_AUDIT_LOG_REQUESTS_PER_SECOND.into()),
                out.sign_ins.pages.div_ceil(5) * 10
            ),
        ],
    })
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn weekday_title(date: &str) -> String {
    date.parse::<Date>()
        .map(|d| d.strftime("%A %-d %B %Y").to_string())
        .unwrap_or_else(|_| date.to_string())
}

/// The report as a table for a person at a terminal.
pub fn render(r: &DemoReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "IP-based office presence: {}, {}",
        r.organisation,
        weekday_title(&r.date)
    );
    let _ = writeln!(
        s,
        "{} users; {} sign-ins pulled from the emulator over HTTP in {} pages; {:.1} s\n",
        thousands(r.users),
        thousands(r.sign_ins_pulled),
        r.pages,
        r.seconds
    );

    let name_w = r
        .offices
        .iter()
        .map(|o| o.name.chars().count())
        .max()
        .unwrap_or(6)
        .max("Office".len());
    let tz_w = r
        .offices
        .iter()
        .map(|o| o.time_zone.len())
        .max()
        .unwrap_or(9)
        .max("Time zone".len());
    let _ = writeln!(
        s,
        "  {:name_w$}  {:tz_w$}  {:>7}  {:>9}  Who is there",
        "Office", "Time zone", "Present", "Occupancy"
    );
    for o in &r.offices {
        let mut who: Vec<String> = o.names.iter().take(NAMES_SHOWN).cloned().collect();
        let more = o.present.saturating_sub(who.len() as u64);
        if more > 0 {
            let hidden = if o.not_named > 0 {
                format!(", {} of them track-only", thousands(o.not_named))
            } else {
                String::new()
            };
            who.push(format!("+{} more{hidden}", thousands(more)));
        }
        let pad = name_w - o.name.chars().count();
        let _ = writeln!(
            s,
            "  {}{}  {:tz_w$}  {:>7}  {:>9}  {}",
            o.name,
            " ".repeat(pad),
            o.time_zone,
            thousands(o.present),
            thousands(o.occupancy),
            who.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\n  Present: status at the end of the day. Occupancy: distinct people seen there during the day."
    );

    let c = &r.counts;
    let d = &c.discarded;
    let _ = writeln!(s, "\nSign-ins");
    let rows: [(&str, u64); 6] = [
        ("matched a range", c.matched),
        ("changed presence", c.presence_observed),
        ("access events logged", c.access_logged),
        ("user's presence mode is off", c.presence_mode_off),
        ("in no range (counted for discovery)", c.discovered),
        ("received", c.received),
    ];
    for (label, n) in rows {
        let _ = writeln!(s, "  {:<38} {:>8}", label, thousands(n));
    }
    let _ = writeln!(s, "Discarded");
    let rows: [(&str, u64); 7] = [
        ("failed sign-in", d.failed),
        ("unknown user", d.unknown_user),
        ("inactive user", d.inactive_user),
        ("in no range", d.unmatched),
        ("duplicate", d.duplicate),
        ("too late", d.too_late),
        ("malformed", d.malformed),
    ];
    for (label, n) in rows {
        let _ = writeln!(s, "  {:<38} {:>8}", label, thousands(n));
    }

    if !r.discovery.is_empty() {
        let _ = writeln!(
            s,
            "\nSuggested ranges (addresses in no range; {} blocks, largest first)",
            thousands(r.discovery_blocks)
        );
        let bw = r
            .discovery
            .iter()
            .map(|b| b.block.len())
            .max()
            .unwrap_or(5)
            .max("Block".len());
        let _ = writeln!(
            s,
            "  {:bw$}  {:>8}  {:>5}  {:>9}",
            "Block", "Sign-ins", "Users", "Addresses"
        );
        for b in &r.discovery {
            let _ = writeln!(
                s,
                "  {:bw$}  {:>8}  {:>5}  {:>9}",
                b.block,
                thousands(b.events),
                thousands(b.distinct_users),
                thousands(b.distinct_addresses)
            );
        }
    }
    let modes: Vec<String> = r
        .modes
        .iter()
        .map(|(k, v)| format!("{} {k}", thousands(*v)))
        .collect();
    let _ = writeln!(s, "\nUsers by presence mode: {}", modes.join(", "));
    if let Some(dir) = &r.state_dir {
        let _ = writeln!(s, "Store: {dir}");
    }
    for n in &r.notes {
        let _ = writeln!(s, "Note: {n}.");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn generated_offices_make_a_valid_config() {
        let tenant = Tenant::generate(&GenerateSpec {
            users: 200,
            sign_ins: 0,
            seed: 1,
            day: None,
        });
        let config = config_for(&tenant);
        config.validate().unwrap();
        assert!(config.ranges.iter().any(|r| r.remote));
        assert!(config.settings.location_time_zones.len() >= 2);
        assert!(
            config
                .users
                .iter()
                .any(|u| u.mode == PresenceMode::TrackOnly)
        );
        assert!(config.users.iter().any(|u| !u.active));
        assert!(config.users.len() < 200);
    }
}
