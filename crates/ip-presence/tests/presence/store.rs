//! The SQLite store: reopen, schema version, retention, queries, overrides.

use ip_presence::*;
use jiff::Timestamp;
use jiff::civil::date;
use serde_json::json;

use super::support::{at, engine_of, si};

fn engine() -> PresenceEngine {
    let v = json!({
        "ranges": [
            {"name": "hq", "cidrs": ["10.0.0.0/8"], "location": "Berlin"},
            {"name": "ny", "cidrs": ["10.1.0.0/16"], "location": "New York"},
            {"name": "vpn", "cidrs": ["192.0.2.0/24"], "remote": true}
        ],
        "users": [
            {"upn": "alice@x", "mode": "track_and_display"},
            {"upn": "bob@x", "mode": "track_only"},
            {"upn": "carol@x", "mode": "track_and_display"}
        ],
        "settings": {"retention_days": 30, "auto_create": true}
    });
    engine_of(v)
}

fn day() -> Vec<SignIn<'static>> {
    vec![
        si("1", "2024-05-07T08:00:00Z", "10.0.0.1", "alice@x"),
        si("2", "2024-05-07T08:30:00Z", "10.0.0.2", "bob@x"),
        si("3", "2024-05-07T09:00:00Z", "10.1.0.1", "carol@x"),
        si("4", "2024-05-07T12:00:00Z", "192.0.2.1", "carol@x"),
        si("5", "2024-05-07T12:00:00Z", "203.0.113.1", "carol@x"),
    ]
}

#[test]
fn the_store_survives_reopen_and_records_its_schema_version() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = PresenceStore::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let r = e
            .process(&mut s, day(), &at("2024-05-07T18:00:00Z"))
            .unwrap();
        assert_eq!(r.access_events.len(), 4);
        assert_eq!(r.presence_events.len(), 4);
    }
    let mut s = PresenceStore::open(dir.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), 1);
    assert_eq!(s.all_access_events().unwrap().len(), 4);
    assert_eq!(s.all_presence_events().unwrap().len(), 4);
    // Re-processing after reopen changes nothing.
    let r = e
        .process(&mut s, day(), &at("2024-05-07T18:00:00Z"))
        .unwrap();
    assert_eq!(r.counts.discarded.duplicate, 5);
    assert!(r.presence_events.is_empty() && r.access_events.is_empty());
    let d = s.discovery().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].events, 1);
}

#[test]
fn a_store_from_a_newer_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(PresenceStore::open(dir.path()).unwrap());
    let conn = rusqlite_path(dir.path());
    conn.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(conn);
    let err = PresenceStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_corrupt_time_in_the_store_is_an_error_naming_the_file_not_a_panic() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let mut s = PresenceStore::open(dir.path()).unwrap();
    e.process(&mut s, day(), &at("2024-05-07T18:00:00Z"))
        .unwrap();
    let conn = rusqlite_path(dir.path());
    for table in ["presence_events", "observations"] {
        conn.execute(
            &format!("UPDATE {table} SET at_ms = 9000000000000000000 WHERE user = 'alice@x'"),
            [],
        )
        .unwrap();
    }
    conn.execute(
        "UPDATE day_status SET since_ms = -9000000000000000000 WHERE user = 'carol@x'",
        [],
    )
    .unwrap();
    let corrupt = |r: Result<_, PresenceError>| match r {
        Err(PresenceError::Schema(m)) => {
            assert!(
                m.contains(PresenceStore::FILE_NAME) && m.contains("out of range"),
                "{m}"
            );
        }
        other => panic!("expected a corrupt-store error, got {other:?}"),
    };
    corrupt(s.all_presence_events().map(|_| ()));
    corrupt(
        s.user_presence("alice@x", date(2024, 5, 1), date(2024, 5, 9))
            .map(|_| ()),
    );
    corrupt(
        s.user_presence("carol@x", date(2024, 5, 1), date(2024, 5, 9))
            .map(|_| ()),
    );
    // Recomputing alice's day reads her observations: refused, and the batch rolled back.
    let late = vec![si("9", "2024-05-07T07:00:00Z", "10.1.0.9", "alice@x")];
    corrupt(
        e.process(&mut s, late, &at("2024-05-07T18:00:00Z"))
            .map(|_| ()),
    );
}

fn rusqlite_path(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(PresenceStore::FILE_NAME)).unwrap()
}

#[test]
fn retention_deletes_old_access_events_on_every_run() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let mut s = PresenceStore::open(dir.path()).unwrap();
    e.process(&mut s, day(), &at("2024-05-07T18:00:00Z"))
        .unwrap();
    e.process(
        &mut s,
        vec![si("6", "2024-06-01T08:00:00Z", "10.0.0.1", "alice@x")],
        &at("2024-06-01T18:00:00Z"),
    )
    .unwrap();
    assert_eq!(s.all_access_events().unwrap().len(), 5);
    // 30 days of retention: on 2024-06-07 the events of 2024-05-07 go, even in an empty run.
    e.process(&mut s, Vec::new(), &at("2024-06-07T01:00:00Z"))
        .unwrap();
    let left = s.all_access_events().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].date, date(2024, 6, 1));
    assert_eq!(s.all_presence_events().unwrap().len(), 1);
    assert!(s.discovery().unwrap().is_empty());
}

#[test]
fn who_is_where_names_only_displayed_users_unless_full_view() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let mut s = PresenceStore::open(dir.path()).unwrap();
    e.process(&mut s, day(), &at("2024-05-07T18:00:00Z"))
        .unwrap();
    let d = date(2024, 5, 7);
    let w = s.who_is_where(&e, d, None, false).unwrap();
    let berlin = &w.locations[0];
    assert_eq!(
        berlin.place,
        Place::Office {
            location: "Berlin".into()
        }
    );
    assert_eq!(berlin.count, 2);
    assert_eq!(berlin.users, ["alice@x"]);
    assert_eq!(berlin.hidden, 1);
    // carol ended the day remote.
    assert_eq!(w.locations[1].place, Place::Remote);
    assert_eq!(w.locations[1].users, ["carol@x"]);
    let full = s.who_is_where(&e, d, Some("Berlin"), true).unwrap();
    assert_eq!(full.locations.len(), 1);
    assert_eq!(full.locations[0].users, ["alice@x", "bob@x"]);
    assert!(
        s.who_is_where(&e, date(2024, 5, 8), None, false)
            .unwrap()
            .locations
            .is_empty()
    );
}

#[test]
fn occupancy_counts_distinct_users_per_place_and_day() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let mut s = PresenceStore::open(dir.path()).unwrap();
    e.process(&mut s, day(), &at("2024-05-08T18:00:00Z"))
        .unwrap();
    e.process(
        &mut s,
        vec![
            si("7", "2024-05-08T08:00:00Z", "10.0.0.1", "alice@x"),
            si("8", "2024-05-08T09:00:00Z", "10.0.0.9", "alice@x"),
        ],
        &at("2024-05-08T18:00:00Z"),
    )
    .unwrap();
    let occ = s
        .occupancy(date(2024, 5, 7), date(2024, 5, 8), None)
        .unwrap();
    let rows: Vec<(String, String, u64)> = occ
        .iter()
        .map(|o| (o.date.to_string(), o.place.to_string(), o.users))
        .collect();
    assert_eq!(
        rows,
        [
            ("2024-05-07".into(), "Berlin".into(), 2),
            ("2024-05-07".into(), "New York".into(), 1),
            ("2024-05-07".into(), "Remote".into(), 1),
            ("2024-05-08".into(), "Berlin".into(), 1),
        ]
    );
    let ny = s
        .occupancy(date(2024, 5, 7), date(2024, 5, 8), Some("New York"))
        .unwrap();
    assert_eq!(ny.len(), 1);
}

#[test]
fn manual_overrides_go_through_the_store_and_user_history_shows_them() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let mut s = PresenceStore::open(dir.path()).unwrap();
    e.process(&mut s, day(), &at("2024-05-07T18:00:00Z"))
        .unwrap();
    let t: Timestamp = "2024-05-07T13:00:00Z".parse().unwrap();
    let r = e
        .set_manual(
            &mut s,
            "Carol@X",
            Some(Place::Office {
                location: "Berlin".into(),
            }),
            t,
            None,
            "admin@x",
        )
        .unwrap();
    assert_eq!(r.presence_events.len(), 1);
    assert_eq!(r.presence_events[0].set_by.as_deref(), Some("admin@x"));
    let h = s
        .user_presence("carol@x", date(2024, 5, 7), date(2024, 5, 7))
        .unwrap();
    assert_eq!(h.days.len(), 1);
    assert_eq!(
        h.days[0].place,
        Some(Place::Office {
            location: "Berlin".into()
        })
    );
    assert_eq!(h.events.len(), 3);
    e.set_manual(
        &mut s,
        "carol@x",
        None,
        t + jiff::SignedDuration::from_mins(5),
        None,
        "admin@x",
    )
    .unwrap();
    let w = s.who_is_where(&e, date(2024, 5, 7), None, true).unwrap();
    assert!(
        w.locations
            .iter()
            .all(|l| !l.users.contains(&"carol@x".to_string()))
    );
}

#[test]
fn two_handles_on_one_store_both_work() {
    // Several processes may run at once: WAL and a busy timeout.
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let mut a = PresenceStore::open(dir.path()).unwrap();
    let mut b = PresenceStore::open(dir.path()).unwrap();
    e.process(&mut a, day(), &at("2024-05-07T18:00:00Z"))
        .unwrap();
    let r = e
        .process(&mut b, day(), &at("2024-05-07T18:00:00Z"))
        .unwrap();
    assert_eq!(r.counts.discarded.duplicate, 5);
}

#[cfg(unix)]
#[test]
fn the_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = ip_presence::PresenceStore::open(&state).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&state), 0o700);
}

/// Issue 19, item 5: an existing 0777 folder and 0644 store are made owner-only on open.
#[cfg(unix)]
#[test]
fn opening_makes_an_open_folder_and_store_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(PresenceStore::open(&state).unwrap());
    let store = state.join(PresenceStore::FILE_NAME);
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    set(&state, 0o777);
    set(&store, 0o644);
    drop(PresenceStore::open(&state).unwrap());
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&store), 0o600);
}
