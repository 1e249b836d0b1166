//! Configuration of the presence engine: IP ranges, tracked users and settings.
//!
//! Loaded inline (a `serde_json::Value`) or from a YAML/JSON file, then checked in two
//! stages: the JSON Schema (shape, unknown fields, types) and the rules the schema cannot
//! express (CIDR syntax, identical prefixes, time zones, duplicate UPNs). Every problem is
//! reported with a JSON pointer to the offending entry so the caller can fix it at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use ipnet::{IpNet, Ipv4Net};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One problem in a configuration, located by a JSON pointer (`/ranges/3/cidrs/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct ConfigError {
    pub pointer: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A named network: one or more CIDR blocks that mean "this office" or "remote".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpRange {
    /// Unique name, used in presence events and in the store.
    pub name: String,
    /// CIDR blocks (`10.1.0.0/16`, `2001:db8::/48`); a bare address means a single host.
    pub cidrs: Vec<String>,
    /// The office this range belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// A match means "Remote" (home-office ranges, a VPN egress used only by remote staff).
    #[serde(default)]
    pub remote: bool,
    /// A match may change a user's presence.
    #[serde(default = "yes")]
    pub presence_enabled: bool,
    /// A match may be logged as an IP access event.
    #[serde(default = "yes")]
    pub logging_enabled: bool,
}

/// How much of a user's presence is recorded and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceMode {
    /// Not tracked: no presence events (access events may still be logged).
    Off,
    /// Recorded, counted in occupancy, but not named to colleagues.
    TrackOnly,
    /// Recorded and shown.
    TrackAndDisplay,
}

/// A person the organisation tracks, by UPN (matched without regard to case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackedUser {
    pub upn: String,
    #[serde(default = "yes")]
    pub active: bool,
    pub mode: PresenceMode,
}

fn default_retention() -> u16 {
    90
}
fn default_tz() -> String {
    "UTC".to_owned()
}

/// App-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// App-wide IP access-event logging.
    #[serde(default = "yes")]
    pub access_logging: bool,
    /// Count unmatched addresses toward a discovery report of suggested ranges.
    #[serde(default)]
    pub auto_create: bool,
    /// Days access and presence events are kept (1 to 90).
    #[serde(default = "default_retention")]
    #[schemars(range(min = 1, max = 90))]
    pub retention_days: u16,
    /// IANA time zone that defines a calendar day where a location has none of its own.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// IANA time zone per location, for organisations whose offices span zones.
    #[serde(default)]
    pub location_time_zones: BTreeMap<String, String>,
    /// Whether failed sign-ins (`status.errorCode != 0`) count.
    #[serde(default)]
    pub count_failed_sign_ins: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_logging: true,
            auto_create: false,
            retention_days: default_retention(),
            time_zone: default_tz(),
            location_time_zones: BTreeMap::new(),
            count_failed_sign_ins: false,
        }
    }
}

/// Everything the engine needs: ranges, users and settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    #[serde(default)]
    pub ranges: Vec<IpRange>,
    #[serde(default)]
    pub users: Vec<TrackedUser>,
    #[serde(default)]
    pub settings: Settings,
}

/// Escape one JSON pointer segment (RFC 6901).
pub(crate) fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn schema_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema =
            serde_json::to_value(schemars::schema_for!(PresenceConfig)).expect("schema serialises");
        jsonschema::validator_for(&schema).expect("generated schema compiles")
    })
}

impl PresenceConfig {
    /// The JSON Schema (draft 2020-12) of the configuration.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(PresenceConfig)).expect("schema serialises")
    }

    /// Load and validate an inline configuration.
    pub fn from_value(value: serde_json::Value) -> Result<Self, Vec<ConfigError>> {
        let errors: Vec<ConfigError> = schema_validator()
            .iter_errors(&value)
            .map(|e| ConfigError::new(e.instance_path().to_string(), e.masked().to_string()))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let config: PresenceConfig =
            serde_json::from_value(value).map_err(|e| vec![ConfigError::new("", e.to_string())])?;
        config.validate()?;
        Ok(config)
    }

    /// Load and validate a configuration file: JSON if it ends in `.json`, YAML otherwise.
    /// Only a regular file of at most [`MAX_CONFIG_BYTES`] is read (see [`read_config_file`]).
    ///
    /// Whatever file was named, its content is not echoed unless it is shaped like a
    /// presence configuration (an object with only `ranges`, `users`, `settings`): a
    /// parse failure says where (line, column), a foreign document only that it is not
    /// one, so a mistaken or malicious `config_path` cannot read out another file's keys.
    /// Duplicate keys are refused naming their pointer, and YAML nested deeper than
    /// [`crate::unique_keys::MAX_YAML_DEPTH`] before it is parsed.
    pub fn from_path(path: &Path) -> Result<Self, Vec<ConfigError>> {
        use crate::unique_keys::{self, Refusal};
        let shown = path.display();
        let not_config = |why: String| {
            vec![ConfigError::new(
                "",
                format!("is not a presence configuration: {why}"),
            )]
        };
        let text = read_config_file(path)
            .map_err(|m| vec![ConfigError::new("", format!("{shown}: {m}"))])?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parsed = if is_json {
            unique_keys::json_from_slice(text.as_bytes()).map_err(|r| match r {
                Refusal::Parse(e) => Refusal::Parse(format!(
                    "not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )),
                Refusal::Duplicate(p) => Refusal::Duplicate(p),
                Refusal::TooDeep => Refusal::TooDeep,
            })
        } else {
            unique_keys::yaml_from_str(&text).map_err(|r| match r {
                Refusal::Parse(e) => Refusal::Parse(match e.location() {
                    Some(l) => format!("not valid YAML (line {}, column {})", l.line(), l.column()),
                    None => "not valid YAML".to_string(),
                }),
                Refusal::Duplicate(p) => Refusal::Duplicate(p),
                Refusal::TooDeep => Refusal::TooDeep,
            })
        };
        let value = match parsed {
            Ok(v) => v,
            Err(Refusal::Parse(why)) => return Err(not_config(why)),
            Err(Refusal::TooDeep) => {
                return Err(not_config(format!(
                    "nested more than {} levels deep",
                    unique_keys::MAX_YAML_DEPTH
                )));
            }
            Err(Refusal::Duplicate(pointer)) => {
                let is_shaped = pointer
                    .split('/')
                    .nth(1)
                    .is_some_and(|top| matches!(top, "ranges" | "users" | "settings"));
                return Err(if is_shaped {
                    vec![ConfigError::new(
                        pointer,
                        "this key appears twice in one object (the last would silently win)",
                    )]
                } else {
                    not_config("a key appears twice in one object".to_string())
                });
            }
        };
        let shaped = value.as_object().is_some_and(|top| {
            top.keys()
                .all(|k| matches!(k.as_str(), "ranges" | "users" | "settings"))
        });
        if !shaped {
            return Err(not_config(
                "its top level must be an object with only ranges, users and settings".to_string(),
            ));
        }
        Self::from_value(value)
    }

    /// The rules the schema cannot express. Returns every problem found, not just the first.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut prefixes: HashMap<IpNet, String> = HashMap::new();
        for (i, range) in self.ranges.iter().enumerate() {
            let at = format!("/ranges/{i}");
            if range.name.trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("{at}/name"),
                    "range name is empty",
                ));
            } else if let Some(first) = names.insert(&range.name, i) {
                errors.push(ConfigError::new(
                    format!("{at}/name"),
                    format!(
                        "range name {:?} is already used by /ranges/{first}",
                        range.name
                    ),
                ));
            }
            if range.cidrs.is_empty() {
                errors.push(ConfigError::new(format!("{at}/cidrs"), "no CIDR blocks"));
            }
            for (j, cidr) in range.cidrs.iter().enumerate() {
                let here = format!("{at}/cidrs/{j}");
                match parse_cidr(cidr) {
                    Ok(net) => {
                        if let Some(first) = prefixes.get(&net) {
                            errors.push(ConfigError::new(
                                &here,
                                format!("prefix {net} is already listed at {first}"),
                            ));
                        } else {
                            prefixes.insert(net, here);
                        }
                    }
                    Err(message) => errors.push(ConfigError::new(here, message)),
                }
            }
            if let Some(loc) = &range.location
                && loc.trim().is_empty()
            {
                errors.push(ConfigError::new(
                    format!("{at}/location"),
                    "location is empty",
                ));
            }
            match (range.location.is_some(), range.remote) {
                (true, true) => errors.push(ConfigError::new(
                    at.clone(),
                    "a range is either an office (location) or remote, not both",
                )),
                (false, false) if range.presence_enabled => errors.push(ConfigError::new(
                    at.clone(),
                    "presence is enabled but the range has neither a location nor remote: true",
                )),
                _ => {}
            }
        }
        let mut upns: HashMap<String, usize> = HashMap::new();
        for (i, user) in self.users.iter().enumerate() {
            let key = normalise_upn(&user.upn);
            if key.is_empty() {
                errors.push(ConfigError::new(format!("/users/{i}/upn"), "UPN is empty"));
            } else if let Some(first) = upns.insert(key, i) {
                errors.push(ConfigError::new(
                    format!("/users/{i}/upn"),
                    format!("UPN {:?} is already listed at /users/{first}", user.upn),
                ));
            }
        }
        let s = &self.settings;
        if !(1..=90).contains(&s.retention_days) {
            errors.push(ConfigError::new(
                "/settings/retention_days",
                format!("retention_days must be 1 to 90, not {}", s.retention_days),
            ));
        }
        if let Err(e) = jiff::tz::TimeZone::get(&s.time_zone) {
            errors.push(ConfigError::new(
                "/settings/time_zone",
                format!("unknown time zone {:?}: {e}", s.time_zone),
            ));
        }
        for (loc, tz) in &s.location_time_zones {
            if let Err(e) = jiff::tz::TimeZone::get(tz) {
                errors.push(ConfigError::new(
                    format!("/settings/location_time_zones/{}", pointer_segment(loc)),
                    format!("unknown time zone {tz:?}: {e}"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Parse one configured block. A bare address is a single host; an IPv4-mapped IPv6 block
/// (`::ffff:10.0.0.0/104`) is folded to IPv4 like the addresses it must match. Host bits
/// set (`10.0.0.1/24`) are refused: they usually hide a typo.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    let net = if t.contains('/') {
        t.parse::<IpNet>()
            .map_err(|_| format!("{text:?} is not a CIDR block"))?
    } else {
        let ip = t
            .parse::<IpAddr>()
            .map_err(|_| format!("{text:?} is not a CIDR block or an IP address"))?;
        IpNet::from(ip)
    };
    if net.network() != net.addr() {
        return Err(format!(
            "{text:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(fold_mapped(net))
}

fn fold_mapped(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
    {
        return IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix <= 32"));
    }
    net
}

/// The key a UPN is matched by: trimmed and lower-cased.
pub fn normalise_upn(upn: &str) -> String {
    let t = upn.trim();
    if t.is_ascii() {
        t.to_ascii_lowercase()
    } else {
        t.to_lowercase()
    }
}

/// The largest configuration file read: 16 MiB, far above any real one.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Read a configuration file. It must be a regular file: a FIFO would block the
/// open and a device such as `/dev/zero` would be read forever, so both are
/// refused before reading (checked by path, then again on the opened file in
/// case it was swapped). More than [`MAX_CONFIG_BYTES`] is refused without
/// reading the rest.
fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let not_regular = || "is not a regular file".to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_large = || format!("is larger than {} MiB", MAX_CONFIG_BYTES >> 20);
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
}
