//! Fault injection and throttling: the ways the fake tenant misbehaves on purpose.
//!
//! Faults are given per route family, as a spec string (command line, fixture
//! `faults:` key) or as values at runtime:
//!
//! ```text
//! signins:429=0.3,503=0.1,retry_after=2.128;presence:drop=0.05,slow=0.1,delay_ms=1500;token:expire_after=30
//! ```
//!
//! Families: `token`, `presence`, `users`, `memberof`, `photo`, `signins`,
//! `organization`, `identity` (riskyUsers), `batch` (the `$batch` POST itself; its
//! items draw the faults of their own families, status faults only), and `all`
//! (every family but `token`). Keys: `429`, `503`, `504`,
//! `drop` (close the connection without an answer), `slow` (answer after `delay_ms`,
//! default 2000), `truncate` (send half the body then cut the connection): each a
//! share between 0 and 1; `retry_after` (seconds, may be fractional, or `none`;
//! default 0.5) for the status faults; `expire_after` (token family only: access
//! tokens stop being accepted this many seconds after issue although `expires_in`
//! promises more). Shares are drawn from an RNG seeded by `seed=N` (top-level item,
//! default 0), so a run is reproducible.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;

/// A group of routes that share faults and throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Token,
    Presence,
    Users,
    MemberOf,
    Photo,
    SignIns,
    Organization,
    /// `identityProtection/riskyUsers` and its actions (counted in the directory bucket).
    Identity,
    /// `POST /$batch` itself; each of its items is faulted and throttled as its own family.
    Batch,
    /// A route the emulator does not serve.
    Unknown,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Token,
        Family::Presence,
        Family::Users,
        Family::MemberOf,
        Family::Photo,
        Family::SignIns,
        Family::Organization,
        Family::Identity,
        Family::Batch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Token => "token",
            Family::Presence => "presence",
            Family::Users => "users",
            Family::MemberOf => "memberof",
            Family::Photo => "photo",
            Family::SignIns => "signins",
            Family::Organization => "organization",
            Family::Identity => "identity",
            Family::Batch => "batch",
            Family::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Family::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown route family '{s}'"))
    }
}

/// Random misbehaviour of one family; all shares are 0..=1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRule {
    pub status_429: f64,
    pub status_503: f64,
    pub status_504: f64,
    pub drop: f64,
    pub slow: f64,
    pub truncate: f64,
    /// Delay of a slow answer.
    pub delay: Option<Duration>,
    /// `Retry-After` of injected 429/503/504, in seconds; `None` in `Some(None)` = no header.
    pub retry_after: Option<Option<f64>>,
    /// Token family: access tokens become invalid this long after issue.
    pub expire_after: Option<Duration>,
}

/// One deterministic fault.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this status (429, 500, 503, 504, ...) and optional `Retry-After` seconds.
    Status {
        status: u16,
        retry_after: Option<f64>,
    },
    /// Close the connection without an answer.
    Drop,
    /// Answer normally after a delay.
    Slow(Duration),
    /// Send half the body, then cut the connection.
    Truncate,
}

impl FaultKind {
    pub fn label(&self) -> String {
        match self {
            FaultKind::Status { status, .. } => status.to_string(),
            FaultKind::Drop => "drop".into(),
            FaultKind::Slow(d) => format!("slow:{}ms", d.as_millis()),
            FaultKind::Truncate => "truncate".into(),
        }
    }
}

/// All configured faults: random rules per family and a queue of "next N fail".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub rules: BTreeMap<Family, FaultRule>,
    pub seed: u64,
    /// Deterministic faults consumed in order by the next matching requests
    /// (`None` family = any family but token).
    pub queue: VecDeque<(Option<Family>, FaultKind)>,
}

const DEFAULT_RETRY_AFTER: f64 = 0.5;
const DEFAULT_DELAY: Duration = Duration::from_millis(2000);

impl FaultPlan {
    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Parse `family:key=value,...;family:...` (see the module docs).
    pub fn parse(spec: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(seed) = part.strip_prefix("seed=") {
                plan.seed = seed
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad seed '{seed}'"))?;
                continue;
            }
            let (fam, items) = part
                .split_once(':')
                .ok_or_else(|| format!("'{part}': expected family:key=value,..."))?;
            let families: Vec<Family> = match fam.trim() {
                "all" | "*" => Family::ALL[1..].to_vec(),
                f => vec![f.parse()?],
            };
            let mut rule = FaultRule::default();
            for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (k, v) = item
                    .split_once('=')
                    .ok_or_else(|| format!("'{item}': expected key=value"))?;
                let v = v.trim();
                let share = || -> Result<f64, String> {
                    let x: f64 = v.parse().map_err(|_| format!("'{item}': not a number"))?;
                    if (0.0..=1.0).contains(&x) {
                        Ok(x)
                    } else {
                        Err(format!("'{item}': a share is between 0 and 1"))
                    }
                };
                let secs = || -> Result<f64, String> {
                    let x: f64 = v.parse().map_err(|_| format!("'{item}': not a number"))?;
                    // A day is more than any test or playbook trial needs, and keeps
                    // every conversion to a Duration far from overflow.
                    if (0.0..=86_400.0).contains(&x) {
                        Ok(x)
                    } else {
                        Err(format!("'{item}': must be between 0 and 86400"))
                    }
                };
                match k.trim() {
                    "429" => rule.status_429 = share()?,
                    "503" => rule.status_503 = share()?,
                    "504" => rule.status_504 = share()?,
                    "drop" => rule.drop = share()?,
                    "slow" => rule.slow = share()?,
                    "truncate" => rule.truncate = share()?,
                    "delay_ms" => rule.delay = Some(Duration::from_millis(secs()? as u64)),
                    "retry_after" if v == "none" => rule.retry_after = Some(None),
                    "retry_after" => rule.retry_after = Some(Some(secs()?)),
                    "expire_after" => rule.expire_after = Some(Duration::from_secs_f64(secs()?)),
                    other => return Err(format!("unknown fault key '{other}'")),
                }
            }
            let total = rule.status_429
                + rule.status_503
                + rule.status_504
                + rule.drop
                + rule.slow
                + rule.truncate;
            if total > 1.0 + 1e-9 {
                return Err(format!("'{part}': shares add up to more than 1"));
            }
            for f in families {
                plan.rules.insert(f, rule.clone());
            }
        }
        Ok(plan)
    }

    /// Token family: how long after issue access tokens stop being accepted.
    pub fn token_expire_after(&self) -> Option<Duration> {
        self.rules.get(&Family::Token).and_then(|r| r.expire_after)
    }

    /// Pick the fault (if any) for one request of `family`.
    pub(crate) fn draw(&mut self, family: Family, rng: &mut fastrand::Rng) -> Option<FaultKind> {
        if let Some(pos) = self.queue.iter().position(|(f, _)| match f {
            Some(f) => *f == family,
            None => family != Family::Token,
        }) {
            return self.queue.remove(pos).map(|(_, k)| k);
        }
        let rule = self.rules.get(&family)?;
        let retry_after = rule.retry_after.unwrap_or(Some(DEFAULT_RETRY_AFTER));
        let x = rng.f64();
        let mut edge = 0.0;
        let choices = [
            (
                rule.status_429,
                FaultKind::Status {
                    status: 429,
                    retry_after,
                },
            ),
            (
                rule.status_503,
                FaultKind::Status {
                    status: 503,
                    retry_after,
                },
            ),
            (
                rule.status_504,
                FaultKind::Status {
                    status: 504,
                    retry_after,
                },
            ),
            (rule.drop, FaultKind::Drop),
            (
                rule.slow,
                FaultKind::Slow(rule.delay.unwrap_or(DEFAULT_DELAY)),
            ),
            (rule.truncate, FaultKind::Truncate),
        ];
        for (share, kind) in choices {
            edge += share;
            if share > 0.0 && x < edge {
                return Some(kind);
            }
        }
        None
    }
}

impl FromStr for FaultPlan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultPlan::parse(s)
    }
}

/// A fixed window of requests: at most `requests` in any `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

/// A token bucket of resource units refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceBucket {
    pub units: u32,
    pub per: Duration,
}

/// Throttling per app per tenant. `None` turns a limit off.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleConfig {
    /// Presence APIs; published 1,500 / 30 s (newer docs: 10,000 / 30 s).
    pub presence: Option<RateLimit>,
    /// Audit logs including signIns; published 5 / 10 s.
    pub audit_logs: Option<RateLimit>,
    /// Identity and directory (users, memberOf, photo, organization): resource units.
    pub directory: Option<ResourceBucket>,
    /// `Retry-After` with milliseconds ("2.128") rather than whole seconds.
    pub fractional_retry_after: bool,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig::published()
    }
}

impl ThrottleConfig {
    /// Microsoft's published limits (small tenant for the directory bucket).
    pub fn published() -> ThrottleConfig {
        ThrottleConfig {
            presence: Some(RateLimit {
                requests: 1500,
                per: Duration::from_secs(30),
            }),
            audit_logs: Some(RateLimit {
                requests: 5,
                per: Duration::from_secs(10),
            }),
            directory: Some(ResourceBucket {
                units: 3500,
                per: Duration::from_secs(10),
            }),
            fractional_retry_after: true,
        }
    }

    /// No throttling at all.
    pub fn off() -> ThrottleConfig {
        ThrottleConfig {
            presence: None,
            audit_logs: None,
            directory: None,
            fractional_retry_after: true,
        }
    }

    /// Parse `presence=1500/30,signins=5/10,directory=3500/10,fractional=true` or `off`.
    pub fn parse(spec: &str) -> Result<ThrottleConfig, String> {
        let spec = spec.trim();
        if spec == "off" || spec == "none" {
            return Ok(ThrottleConfig::off());
        }
        let mut c = ThrottleConfig::published();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}': expected key=value"))?;
            let v = v.trim();
            let limit = || -> Result<Option<(u32, Duration)>, String> {
                if v == "off" {
                    return Ok(None);
                }
                let (n, s) = v
                    .split_once('/')
                    .ok_or_else(|| format!("'{item}': expected N/SECONDS"))?;
                let n: u32 = n.parse().map_err(|_| format!("'{item}': bad count"))?;
                let s: f64 = s.parse().map_err(|_| format!("'{item}': bad seconds"))?;
                if n == 0 || !(s > 0.0 && s <= 86_400.0) {
                    return Err(format!("'{item}': must be positive, at most 86400 seconds"));
                }
                Ok(Some((n, Duration::from_secs_f64(s))))
            };
            match k.trim() {
                "presence" => {
                    c.presence = limit()?.map(|(requests, per)| RateLimit { requests, per })
                }
                "signins" | "audit_logs" => {
                    c.audit_logs = limit()?.map(|(requests, per)| RateLimit { requests, per })
                }
                "directory" => {
                    c.directory = limit()?.map(|(units, per)| ResourceBucket { units, per })
                }
                "fractional" => {
                    c.fractional_retry_after =
                        v.parse().map_err(|_| format!("'{item}': true or false"))?
                }
                other => return Err(format!("unknown throttle key '{other}'")),
            }
        }
        Ok(c)
    }
}

/// What a throttled request is told.
#[derive(Debug, Clone)]
pub(crate) struct Throttled {
    pub retry_after: Duration,
    pub scope: String,
    pub information: &'static str,
    pub limit_percentage: f64,
}

/// Windows and buckets are kept on the emulator's virtual clock, so a test that freezes
/// it decides exactly how much time passes between requests.
#[derive(Debug, Default)]
pub(crate) struct ThrottleState {
    windows: HashMap<(String, Family), VecDeque<Timestamp>>,
    buckets: HashMap<String, (f64, Timestamp)>,
}

impl ThrottleState {
    /// Account one request; `Err` when it must be refused. `cost` is in resource units.
    pub fn admit(
        &mut self,
        config: &ThrottleConfig,
        tenant: &str,
        app: &str,
        family: Family,
        cost: u32,
        now: Timestamp,
    ) -> Result<Option<f64>, Throttled> {
        // `<Scope>/<Limit>/<ApplicationId>/<TenantId|UserId|ResourceId>`, the documented
        // order (identity and access service limits,
        // https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits).
        let scope = format!("Tenant_Application/ReadWrite/{app}/{tenant}");
        let limit = match family {
            Family::Presence => config.presence,
            Family::SignIns => config.audit_logs,
            Family::Users
            | Family::MemberOf
            | Family::Photo
            | Family::Organization
            | Family::Identity => {
                let Some(bucket) = config.directory else {
                    return Ok(None);
                };
                let cap = f64::from(bucket.units);
                let rate = cap / bucket.per.as_secs_f64();
                let (level, at) = self.buckets.entry(app.to_string()).or_insert((cap, now));
                *level = (*level + elapsed(*at, now).as_secs_f64() * rate).min(cap);
                *at = now;
                let cost = f64::from(cost);
                if *level < cost {
                    let wait = (cost - *level) / rate;
                    return Err(Throttled {
                        retry_after: Duration::from_secs_f64(wait.clamp(0.001, 86_400.0)),
                        scope,
                        information: "ResourceUnitLimitExceeded",
                        limit_percentage: 1.0 + (cost - *level) / cap,
                    });
                }
                *level -= cost;
                return Ok(Some(1.0 - *level / cap));
            }
            // A batch is not throttled as a whole: each item is, as its own family
            // (https://learn.microsoft.com/en-us/graph/json-batching, "Throttling and batching").
            Family::Token | Family::Batch | Family::Unknown => None,
        };
        let Some(limit) = limit else {
            return Ok(None);
        };
        let window = self.windows.entry((app.to_string(), family)).or_default();
        while window
            .front()
            .is_some_and(|t| elapsed(*t, now) >= limit.per)
        {
            window.pop_front();
        }
        if window.len() >= limit.requests as usize {
            let oldest = *window.front().expect("non-empty window");
            let wait = limit.per.saturating_sub(elapsed(oldest, now));
            return Err(Throttled {
                retry_after: wait.max(Duration::from_millis(1)),
                scope,
                information: "RateLimitExceeded",
                limit_percentage: (window.len() + 1) as f64 / f64::from(limit.requests),
            });
        }
        window.push_back(now);
        Ok(Some(window.len() as f64 / f64::from(limit.requests)))
    }
}

/// Time from `then` to `now` on the emulator's clock; zero when the clock was set back.
fn elapsed(then: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

/// Format a `Retry-After` value.
pub(crate) fn format_retry_after(secs: f64, fractional: bool) -> String {
    if fractional {
        let s = format!("{secs:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() {
            "0".into()
        } else {
            s.to_string()
        }
    } else {
        format!("{}", secs.ceil().max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec() {
        let p = FaultPlan::parse(
            "signins:429=0.3,503=0.1,retry_after=2.128;presence:drop=0.05;token:expire_after=30;seed=7",
        )
        .unwrap();
        assert_eq!(p.seed, 7);
        assert_eq!(p.rules[&Family::SignIns].status_429, 0.3);
        assert_eq!(p.rules[&Family::SignIns].retry_after, Some(Some(2.128)));
        assert_eq!(p.rules[&Family::Presence].drop, 0.05);
        assert_eq!(p.token_expire_after(), Some(Duration::from_secs(30)));
        assert!(FaultPlan::parse("signins:429=2").is_err());
        assert!(FaultPlan::parse("nope:429=0.1").is_err());
    }

    #[test]
    fn retry_after_format() {
        assert_eq!(format_retry_after(2.128, true), "2.128");
        assert_eq!(format_retry_after(2.0, true), "2");
        assert_eq!(format_retry_after(2.1, false), "3");
    }
}
