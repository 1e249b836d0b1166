//! Where an IP presence action's configuration comes from: a file (`config_path`),
//! inline (`ranges`, `users`, `settings`), or, for the actions that work on the store,
//! the configuration the last `sync_ip_presence` ran with, kept in the state database.
//!
//! [`ConfigInput`] is the one definition of those four input fields; every presence
//! action flattens it into its input. serde cannot combine `flatten` with
//! `deny_unknown_fields`, so the inputs close their JSON Schema instead
//! (`#[schemars(deny_unknown_fields)]`), which the action entry point checks before
//! deserialising.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Detail, Error, Result};
use crate::inputs::{now_or, parse_time};
use crate::state::StateStore;
use ip_presence::{ConfigError, IpRange, PresenceConfig, ProcessOptions, Settings, TrackedUser};

/// Key of the presence configuration the last sync used, in the state database.
pub const CONFIG_KEY: &str = "ip_presence.config";

/// The configuration fields every IP presence action accepts.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ConfigInput {
    /// A YAML or JSON file holding `ranges`, `users` and `settings`, instead of giving
    /// them inline. With neither, the actions that use the store take the configuration
    /// the last sync_ip_presence ran with; evaluate_ip_presence needs one.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub config_path: Option<String>,
    /// IP ranges: offices and remote networks. Nested blocks: the longest prefix wins.
    #[serde(default)]
    pub ranges: Option<Vec<IpRange>>,
    /// The people tracked, by UPN (any case); sign-ins of anyone else are discarded.
    #[serde(default)]
    pub users: Option<Vec<TrackedUser>>,
    /// App-wide settings.
    #[serde(default)]
    pub settings: Option<Settings>,
}

impl ConfigInput {
    fn inline_given(&self) -> bool {
        self.ranges.is_some() || self.users.is_some() || self.settings.is_some()
    }

    /// The configuration given in the inputs, if any. Errors point into `/inputs`.
    pub fn load(&self) -> Result<Option<PresenceConfig>> {
        match (&self.config_path, self.inline_given()) {
            (Some(_), true) => Err(Error::invalid(
                "/inputs/config_path",
                "give either config_path or ranges/users/settings, not both",
            )),
            (Some(path), false) => PresenceConfig::from_path(Path::new(path))
                .map(Some)
                .map_err(|errors| config_file_error(path, errors)),
            (None, true) => {
                let config = PresenceConfig {
                    ranges: self.ranges.clone().unwrap_or_default(),
                    users: self.users.clone().unwrap_or_default(),
                    settings: self.settings.clone().unwrap_or_default(),
                };
                config
                    .validate()
                    .map_err(|errors| config_errors(errors, "/inputs"))?;
                Ok(Some(config))
            }
            (None, false) => Ok(None),
        }
    }

    /// The configuration of the inputs; without one, a stateless action cannot run.
    pub fn require(&self) -> Result<PresenceConfig> {
        self.load()?.ok_or_else(|| {
            Error::invalid(
                "/inputs/ranges",
                "is required (with users and settings), or give config_path",
            )
        })
    }

    /// The configuration of the inputs, else the one the last sync kept.
    pub async fn load_or_kept(&self, db: &StateStore) -> Result<PresenceConfig> {
        if let Some(config) = self.load()? {
            return Ok(config);
        }
        let Some(text) = db.get(CONFIG_KEY).await? else {
            return Err(Error::invalid(
                "/inputs/config_path",
                "no configuration: give config_path or ranges/users/settings \
                 (none is kept in the store yet: sync_ip_presence keeps the one it ran with)",
            ));
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::internal(format!("the kept presence configuration is not JSON: {e}"))
        })?;
        PresenceConfig::from_value(value).map_err(|errors| {
            Error::invalid(
                "/inputs/config_path",
                format!(
                    "the configuration kept in the store is no longer valid ({}); give one",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        })
    }
}

/// How sign-ins are processed: the inputs that `evaluate_ip_presence` and
/// `sync_ip_presence` share.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProcessInput {
    /// "Now" for the late-arrival window and retention (RFC 3339). Default: the
    /// current time. Give it to replay old sign-ins.
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub now: Option<String>,
    /// Sign-ins whose calendar day is more than this many days before today (UTC) no
    /// longer change anything, and such days are forgotten.
    #[serde(default = "default_late_window")]
    #[schemars(range(min = 0, max = 90))]
    pub late_window_days: u16,
}

fn default_late_window() -> u16 {
    ProcessOptions::DEFAULT_LATE_WINDOW_DAYS
}

impl ProcessInput {
    /// The engine's options (a bad `now` is refused at `/inputs/now`).
    pub fn options(&self) -> Result<ProcessOptions> {
        Ok(ProcessOptions {
            late_window_days: self.late_window_days,
            ..ProcessOptions::at(now_or(parse_time(self.now.as_deref(), "/inputs/now")?))
        })
    }
}

/// Keep the configuration a sync ran with, for the actions that come after it.
pub async fn keep_config(db: &StateStore, config: &PresenceConfig) -> Result<()> {
    let text = serde_json::to_string(config)
        .map_err(|e| Error::internal(format!("configuration does not serialise: {e}")))?;
    db.put(CONFIG_KEY, &text).await
}

/// Config errors (pointers relative to the configuration) placed under `prefix`.
pub fn config_errors(errors: Vec<ConfigError>, prefix: &str) -> Error {
    Error::invalid_details(
        errors
            .into_iter()
            .map(|e| Detail::new(format!("{prefix}{}", e.pointer), e.message))
            .collect(),
    )
}

/// Errors in a configuration file: at `/inputs/config_path`, naming the place in the file.
fn config_file_error(path: &str, errors: Vec<ConfigError>) -> Error {
    Error::invalid_details(
        errors
            .into_iter()
            .map(|e| {
                let at = if e.pointer.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", e.pointer)
                };
                Detail::new("/inputs/config_path", format!("{path}{at}: {}", e.message))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_config_errors_point_into_the_inputs() {
        let input = ConfigInput {
            ranges: Some(vec![IpRange {
                name: "HQ".into(),
                cidrs: vec!["10.0.0.0/8".into(), "10.0.0.300/32".into()],
                location: Some("HQ".into()),
                remote: false,
                presence_enabled: true,
                logging_enabled: true,
            }]),
            ..ConfigInput::default()
        };
        let e = input.load().unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/ranges/0/cidrs/1");
    }
}
