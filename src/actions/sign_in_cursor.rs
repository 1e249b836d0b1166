//! The sign-in cursor ([`SignInCursor`]) as the pulling actions keep it between runs:
//! in the envelope's `state`, or in the embedded store's kv table under the state dir
//! (`pull_sign_ins` one per tenant, app and filter; `sync_ip_presence` one for the
//! store). Nothing else on disk: the contract's state dir holds the token cache and the
//! store only.

use jiff::{SignedDuration, Timestamp};

use super::ip_presence::store_error;
use crate::error::{Error, Result};
use crate::graph::signins::SignInCursor;
use ip_presence::PresenceStore;

/// Where a first run starts when no `since` is given.
pub const DEFAULT_SINCE: SignedDuration = SignedDuration::from_hours(24);

/// A first run's cursor: from `since`, else [`DEFAULT_SINCE`] before now.
pub fn fresh(since: Option<Timestamp>, filter: Option<String>) -> Result<SignInCursor> {
    let since = match since {
        Some(s) => s,
        None => Timestamp::now()
            .checked_sub(DEFAULT_SINCE)
            .map_err(|e| Error::internal(format!("the clock is out of range: {e}")))?,
    };
    Ok(SignInCursor::start(since, filter))
}

/// The cursor kept in `store` under `key`, if any. It is read as the envelope's state
/// would be: a corrupt one is `invalid_input` at `/state`, naming the store, never a
/// silent restart.
pub fn load(store: &PresenceStore, key: &str) -> Result<Option<SignInCursor>> {
    let Some(text) = store.get_value(key).map_err(store_error)? else {
        return Ok(None);
    };
    let kept_in = |e: Error| Error {
        message: format!(
            "{} (the cursor kept in {})",
            e.message,
            store.path().display()
        ),
        ..e
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        kept_in(Error::invalid(
            "/state",
            format!("is not valid JSON (corrupted?): {e}"),
        ))
    })?;
    SignInCursor::from_json(&value, "/state")
        .map(Some)
        .map_err(kept_in)
}

/// Keep `cursor` in `store` under `key` (one SQLite write: the old or the new, never half).
pub fn keep(store: &PresenceStore, key: &str, cursor: &SignInCursor) -> Result<()> {
    store
        .put_value(key, &cursor.to_json().to_string())
        .map_err(store_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_cursors_round_trip_and_corruption_is_exit_2_naming_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = PresenceStore::open(dir.path()).unwrap();
        assert_eq!(load(&store, "k").unwrap(), None);
        let c = fresh(Some("2026-01-01T00:00:00Z".parse().unwrap()), None).unwrap();
        keep(&store, "k", &c).unwrap();
        assert_eq!(load(&store, "k").unwrap(), Some(c));
        assert_eq!(load(&store, "other").unwrap(), None);

        store.put_value("k", "{\"version\": 1, \"window_").unwrap();
        let e = load(&store, "k").unwrap_err();
        assert_eq!((e.exit_code(), e.details[0].path.as_str()), (2, "/state"));
        assert!(
            e.message.contains(PresenceStore::FILE_NAME),
            "{}",
            e.message
        );
        store.put_value("k", "{\"version\": 7}").unwrap();
        let e = load(&store, "k").unwrap_err();
        assert_eq!(e.details[0].path, "/state/version");
    }

    #[test]
    fn without_since_a_first_run_starts_a_day_ago() {
        let c = fresh(None, Some("f".into())).unwrap();
        let age = Timestamp::now().duration_since(c.window_start);
        assert!(age >= DEFAULT_SINCE && age < DEFAULT_SINCE + SignedDuration::from_mins(1));
        assert_eq!(c.filter.as_deref(), Some("f"));
    }
}
