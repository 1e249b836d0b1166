//! [`SignInCursor`]: where incremental sign-in reading stands (the semantics are in
//! the [module doc](super)), its JSON form, and where it is kept between runs: the
//! envelope's `state`, or the state store (the state dir's database or the shared one) ([`KeptCursor`]).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event_type::EventType;
use crate::error::{Error, Result};
use crate::state::StateStore;

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

    /// Forget what lies before `horizon` (the oldest sign-in Graph still keeps): the live
    /// window and the backlog start no earlier. Returns the span given up, if any.
    pub fn clamp_to(&mut self, horizon: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let horizon = floor_second(horizon);
        let mut lost_from = None;
        if self.window_start < horizon {
            lost_from = Some(self.window_start);
            self.window_start = horizon;
        }
        if let Some(b) = self.backlog
            && b.from < horizon
        {
            lost_from = Some(lost_from.map_or(b.from, |l: Timestamp| l.min(b.from)));
            self.backlog = (b.until >= horizon).then_some(Backlog {
                from: horizon,
                until: b.until,
            });
        }
        self.prune();
        lost_from.map(|from| (from, horizon))
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

/// A cursor kept in the state (this state dir's database or the shared one) under one key.
pub struct KeptCursor<'a> {
    pub db: &'a StateStore,
    pub key: &'a str,
}

impl KeptCursor<'_> {
    /// The kept cursor, if any. It is read as the envelope's state would be: a corrupt
    /// one is `invalid_input` (pointers relative to the cursor, as from
    /// [`SignInCursor::from_json`]) naming the database, never a silent restart.
    pub async fn load(&self) -> Result<Option<SignInCursor>> {
        let Some(text) = self.db.get(self.key).await? else {
            return Ok(None);
        };
        // Said in each detail, so it survives the caller placing the pointers.
        let kept_in = |mut e: Error| {
            for d in &mut e.details {
                d.message = format!("{} (the cursor kept in {})", d.message, self.db.describe());
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
    pub async fn keep(&self, cursor: &SignInCursor) -> Result<()> {
        self.db.put(self.key, &cursor.to_json().to_string()).await
    }
}

/// Whose cursor: `pull_sign_ins`' of one tenant, app and filter, or the sync's.
#[derive(Debug, Clone, Copy)]
pub enum CursorOf<'a> {
    Pull {
        asset: &'a crate::asset::Asset,
        filter: Option<&'a str>,
    },
    /// `sync_ip_presence` (one store per state dir).
    Sync,
}

/// The kv key of one cursor: the one function that names cursors. Interactive
/// cursors keep the keys they had before event types existed, so a stored cursor
/// carries on as the interactive one; other event types get their own.
pub fn cursor_key(of: CursorOf<'_>, event_type: EventType) -> String {
    let (asset, filter) = match of {
        CursorOf::Sync => {
            return match event_type {
                EventType::InteractiveUser => SYNC_CURSOR_KEY.to_string(),
                t => format!("{SYNC_CURSOR_KEY}.{}", t.as_str()),
            };
        }
        CursorOf::Pull { asset, filter } => (asset, filter),
    };
    // The token URL as versions before issue 11 spelt it (they appended a `/`; it is
    // now used exactly as given), so that cursors kept by those versions keep their keys.
    let token_url = asset.token_url.as_str();
    let slash = if token_url.ends_with('/') { "" } else { "/" };
    let mut key = format!(
        "{}\n{token_url}{slash}\n{}\n{}",
        asset.graph_url,
        asset.client_id,
        filter.unwrap_or("")
    );
    if event_type != EventType::InteractiveUser {
        key.push('\n');
        key.push_str(event_type.as_str());
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("pull_sign_ins.cursor.{hex}")
}

/// The sync's interactive cursor key, as the first versions named it.
const SYNC_CURSOR_KEY: &str = "ip_presence.sign_in_cursor";

/// One cursor per event type: `pull_sign_ins`' envelope `state`. With interactive
/// sign-ins only it is printed as a plain version-1 cursor, as before event types, and
/// a version-1 state is read as the interactive cursor; with more it is
/// `{"version": 2, "event_types": {"interactiveUser": <cursor>, ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignInCursors(pub BTreeMap<EventType, SignInCursor>);

/// The version of the multi-cursor state.
pub const MULTI_STATE_VERSION: u32 = 2;

impl SignInCursors {
    pub fn from_json(value: &Value) -> Result<Self> {
        if value.get("version").and_then(Value::as_u64) != Some(u64::from(MULTI_STATE_VERSION)) {
            let one = SignInCursor::from_json(value)?;
            return Ok(SignInCursors(BTreeMap::from([(
                EventType::InteractiveUser,
                one,
            )])));
        }
        let Some(Value::Object(map)) = value.get("event_types") else {
            return Err(Error::invalid(
                "/event_types",
                "is required in a version 2 state: an object of cursors by event type",
            ));
        };
        if let Some(k) = value
            .as_object()
            .and_then(|m| m.keys().find(|k| *k != "version" && *k != "event_types"))
        {
            return Err(Error::invalid(
                format!("/{k}"),
                "is not part of a pull_sign_ins state",
            ));
        }
        let mut out = BTreeMap::new();
        for (name, cursor) in map {
            let t = EventType::parse(name).ok_or_else(|| {
                Error::invalid(
                    format!("/event_types/{name}"),
                    "is not an event type (interactiveUser, nonInteractiveUser, \
                     servicePrincipal, managedIdentity)",
                )
            })?;
            let c = SignInCursor::from_json(cursor)
                .map_err(|e| e.under(&format!("/event_types/{name}")))?;
            out.insert(t, c);
        }
        Ok(SignInCursors(out))
    }

    pub fn to_json(&self) -> Value {
        match self.0.iter().next() {
            Some((EventType::InteractiveUser, c)) if self.0.len() == 1 => c.to_json(),
            _ => serde_json::json!({
                "version": MULTI_STATE_VERSION,
                "event_types": self.0.iter().map(|(t, c)| (t.as_str().to_string(), c.to_json())).collect::<serde_json::Map<_, _>>(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_cursors_round_trip_and_corruption_is_exit_2_naming_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateStore::Local(crate::state::StateDb::open(dir.path()).unwrap());
        let kept = KeptCursor { db: &db, key: "k" };
        assert_eq!(kept.load().await.unwrap(), None);
        let c = SignInCursor::fresh(Some("2026-01-01T00:00:00Z".parse().unwrap()), None).unwrap();
        kept.keep(&c).await.unwrap();
        assert_eq!(kept.load().await.unwrap(), Some(c));
        let other = KeptCursor {
            db: &db,
            key: "other",
        };
        assert_eq!(other.load().await.unwrap(), None);

        db.put("k", "{\"version\": 1, \"window_").await.unwrap();
        let e = kept.load().await.unwrap_err();
        assert_eq!((e.exit_code(), e.details[0].path.as_str()), (2, ""));
        let file = crate::state::StateDb::FILE_NAME;
        assert!(e.message.contains(file), "{}", e.message);
        db.put("k", "{\"version\": 7}").await.unwrap();
        let e = kept.load().await.unwrap_err();
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
        let key = |client: &str, filter: Option<&str>, t: EventType| {
            let asset = asset(client);
            cursor_key(
                CursorOf::Pull {
                    asset: &asset,
                    filter,
                },
                t,
            )
        };
        let i = EventType::InteractiveUser;
        let a = key("a", None, i);
        assert!(a.starts_with("pull_sign_ins.cursor."), "{a}");
        assert_eq!(a, key("a", None, i));
        assert_ne!(a, key("b", None, i));
        assert_ne!(a, key("a", Some("status/errorCode ne 0"), i));
        // Each event type its own cursor; the interactive one keeps the key the first
        // versions gave (sha256 of "url\ntoken url\nclient\nfilter", 12 bytes).
        assert_ne!(a, key("a", None, EventType::NonInteractiveUser));
        assert_eq!(a, "pull_sign_ins.cursor.319585183458674d43eae066");
        assert_eq!(cursor_key(CursorOf::Sync, i), "ip_presence.sign_in_cursor");
        assert_eq!(
            cursor_key(CursorOf::Sync, EventType::ManagedIdentity),
            "ip_presence.sign_in_cursor.managedIdentity"
        );
    }
}
