//! [`SignInCursor`]: where incremental sign-in reading stands (the semantics are in
//! the [module doc](super)), its JSON form, and where it is kept between runs: the
//! envelope's `state`, or the [`StateDb`] under the state dir ([`KeptCursor`]).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::state::StateDb;

/// The version of the state JSON this build reads and writes.
pub const STATE_VERSION: u32 = 1;

/// A closed range of `createdDateTime` still to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backlog {
    pub from: Timestamp,
    pub until: Timestamp,
}

impl Backlog {
    pub(super) fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t <= self.until
    }
}

/// Where incremental sign-in reading stands: small, bounded by the lookback window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInCursor {
    pub version: u32,
    /// The newest `createdDateTime` delivered so far.
    pub cursor: Option<Timestamp>,
    /// Start of the live window; every id delivered at or after it is in `delivered`.
    pub window_start: Timestamp,
    /// An older range left unread by a run that stopped at `max_records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
    /// The user filter this state was built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Ids delivered inside the live window or the backlog, by `createdDateTime`.
    #[serde(default)]
    pub delivered: BTreeMap<Timestamp, Vec<String>>,
}

impl SignInCursor {
    /// A fresh cursor whose first run reads from `since`.
    pub fn start(since: Timestamp, filter: Option<String>) -> Self {
        SignInCursor {
            version: STATE_VERSION,
            cursor: None,
            window_start: floor_second(since),
            backlog: None,
            filter,
            delivered: BTreeMap::new(),
        }
    }

    /// Read a state printed by an earlier run; a wrong version or shape is
    /// `invalid_input`, never a silent restart. Pointers are relative to the state
    /// (the caller places them, e.g. under `/state`).
    pub fn from_json(value: &Value) -> Result<Self> {
        let pointer = "";
        let Value::Object(map) = value else {
            return Err(Error::invalid(
                pointer,
                "is not a pull_sign_ins state (expected an object with a version); \
                 pass the state an earlier run printed, or none to start from `since`",
            ));
        };
        match map.get("version") {
            Some(v) if v.as_u64() == Some(u64::from(STATE_VERSION)) => {}
            Some(v) => {
                return Err(Error::invalid(
                    format!("{pointer}/version"),
                    format!(
                        "state version {v} is not supported (this build reads version {STATE_VERSION}); \
                         refusing rather than pulling everything again: remove the state and set \
                         `since` to where the old one stood"
                    ),
                ));
            }
            None => {
                return Err(Error::invalid(
                    format!("{pointer}/version"),
                    "is required: this is not a pull_sign_ins state",
                ));
            }
        }
        let cursor: SignInCursor = serde_json::from_value(value.clone()).map_err(|e| {
            Error::invalid(
                pointer,
                format!("is not a valid pull_sign_ins state (corrupted?): {e}"),
            )
        })?;
        if let Some(b) = cursor.backlog
            && b.from > b.until
        {
            return Err(Error::invalid(
                format!("{pointer}/backlog"),
                "is corrupted: `from` is after `until`",
            ));
        }
        if let Some((t, _)) = cursor
            .delivered
            .iter()
            .find(|(t, ids)| ids.is_empty() || !cursor.remembers(**t))
        {
            return Err(Error::invalid(
                format!("{pointer}/delivered"),
                format!(
                    "is corrupted: the entry at {t} lies outside the window and backlog, or is empty"
                ),
            ));
        }
        Ok(cursor)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a cursor serialises")
    }

    /// Refuse an `until` that would cut into the backlog: the unread part would then be
    /// two ranges. A backlog never ends after the `until` of the run that left it, so
    /// this only happens when `until` moves back between runs. Errors are relative (`""`).
    pub fn check_until(&self, until: Option<Timestamp>) -> Result<()> {
        match (self.backlog, until.map(floor_second)) {
            (Some(b), Some(u)) if u < b.until => Err(Error::invalid(
                "",
                format!(
                    "is before {}, where the state's unread backlog ends (a run stopped at \
                     max_records there); give an `until` at or after it, or none",
                    b.until
                ),
            )),
            _ => Ok(()),
        }
    }

    /// How many ids the state remembers.
    pub fn remembered(&self) -> usize {
        self.delivered.values().map(Vec::len).sum()
    }

    pub(super) fn remembers(&self, t: Timestamp) -> bool {
        t >= self.window_start || self.backlog.is_some_and(|b| b.contains(t))
    }

    pub(super) fn is_delivered(&self, t: Timestamp, id: &str) -> bool {
        self.delivered
            .get(&t)
            .is_some_and(|ids| ids.iter().any(|x| x == id))
    }

    pub(super) fn remember(&mut self, t: Timestamp, id: &str) {
        let ids = self.delivered.entry(t).or_default();
        if !ids.iter().any(|x| x == id) {
            ids.push(id.to_string());
        }
    }

    pub(super) fn prune(&mut self) {
        let (start, backlog) = (self.window_start, self.backlog);
        self.delivered
            .retain(|t, _| *t >= start || backlog.is_some_and(|b| b.contains(*t)));
    }

    /// The live window's start for a run with this lookback.
    pub(super) fn live_from(&self, lookback: SignedDuration) -> Timestamp {
        match self.cursor {
            Some(c) => self.window_start.max(floor_second(minus(c, lookback))),
            None => self.window_start,
        }
    }
}

/// `t - d`, saturating at the earliest timestamp.
pub(super) fn minus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// A whole second at or before `t`: the unit of every bound we send.
pub fn floor_second(t: Timestamp) -> Timestamp {
    let s = t.as_second() - i64::from(t.subsec_nanosecond() < 0);
    Timestamp::from_second(s).unwrap_or(t)
}

/// Where a first run starts when no `since` is given.
pub const DEFAULT_SINCE: SignedDuration = SignedDuration::from_hours(24);

impl SignInCursor {
    /// A first run's cursor: from `since`, else [`DEFAULT_SINCE`] before now.
    pub fn fresh(since: Option<Timestamp>, filter: Option<String>) -> Result<Self> {
        let since = match since {
            Some(s) => s,
            None => Timestamp::now()
                .checked_sub(DEFAULT_SINCE)
                .map_err(|e| Error::internal(format!("the clock is out of range: {e}")))?,
        };
        Ok(SignInCursor::start(since, filter))
    }
}

/// A cursor kept in the state database under one key.
pub struct KeptCursor<'a> {
    pub db: &'a StateDb,
    pub key: &'a str,
}

impl KeptCursor<'_> {
    /// The kept cursor, if any. It is read as the envelope's state would be: a corrupt
    /// one is `invalid_input` (pointers relative to the cursor, as from
    /// [`SignInCursor::from_json`]) naming the database, never a silent restart.
    pub fn load(&self) -> Result<Option<SignInCursor>> {
        let Some(text) = self.db.get(self.key)? else {
            return Ok(None);
        };
        // Said in each detail, so it survives the caller placing the pointers.
        let kept_in = |mut e: Error| {
            for d in &mut e.details {
                d.message = format!(
                    "{} (the cursor kept in {})",
                    d.message,
                    self.db.path().display()
                );
            }
            Error::invalid_details(e.details)
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            kept_in(Error::invalid(
                "",
                format!("is not valid JSON (corrupted?): {e}"),
            ))
        })?;
        SignInCursor::from_json(&value).map(Some).map_err(kept_in)
    }

    /// Keep `cursor` (one write: the old or the new, never half).
    pub fn keep(&self, cursor: &SignInCursor) -> Result<()> {
        self.db.put(self.key, &cursor.to_json().to_string())
    }
}

/// The kv key of the cursor of one tenant, app and filter.
pub fn cursor_key(asset: &crate::asset::Asset, filter: Option<&str>) -> String {
    let key = format!(
        "{}\n{}\n{}\n{}",
        asset.graph_url,
        asset.token_url,
        asset.client_id,
        filter.unwrap_or("")
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("pull_sign_ins.cursor.{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_cursors_round_trip_and_corruption_is_exit_2_naming_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let kept = KeptCursor { db: &db, key: "k" };
        assert_eq!(kept.load().unwrap(), None);
        let c = SignInCursor::fresh(Some("2026-01-01T00:00:00Z".parse().unwrap()), None).unwrap();
        kept.keep(&c).unwrap();
        assert_eq!(kept.load().unwrap(), Some(c));
        assert_eq!(
            KeptCursor {
                db: &db,
                key: "other"
            }
            .load()
            .unwrap(),
            None
        );

        db.put("k", "{\"version\": 1, \"window_").unwrap();
        let e = kept.load().unwrap_err();
        assert_eq!((e.exit_code(), e.details[0].path.as_str()), (2, ""));
        assert!(e.message.contains(StateDb::FILE_NAME), "{}", e.message);
        db.put("k", "{\"version\": 7}").unwrap();
        let e = kept.load().unwrap_err();
        assert_eq!(e.details[0].path, "/version");
    }

    #[test]
    fn without_since_a_first_run_starts_a_day_ago() {
        let c = SignInCursor::fresh(None, Some("f".into())).unwrap();
        let age = Timestamp::now().duration_since(c.window_start);
        assert!(age >= DEFAULT_SINCE && age < DEFAULT_SINCE + SignedDuration::from_mins(1));
        assert_eq!(c.filter.as_deref(), Some("f"));
    }

    #[test]
    fn cursor_keys_differ_by_tenant_app_and_filter() {
        let asset = |client: &str| {
            serde_json::from_value::<crate::asset::AssetSpec>(serde_json::json!({
                "type": "oauth2_client_credentials", "url": "http://127.0.0.1:9",
                "token_url": "http://127.0.0.1:9/token", "client_id": client,
                "client_secret": "s"}))
            .unwrap()
            .into_asset()
            .unwrap()
        };
        let a = cursor_key(&asset("a"), None);
        assert!(a.starts_with("pull_sign_ins.cursor."), "{a}");
        assert_eq!(a, cursor_key(&asset("a"), None));
        assert_ne!(a, cursor_key(&asset("b"), None));
        assert_ne!(a, cursor_key(&asset("a"), Some("status/errorCode ne 0")));
    }
}
