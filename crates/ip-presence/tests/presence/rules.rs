//! Every rule of ip-presence.md, one test each, against the in-memory state.

use ip_presence::*;
use jiff::Timestamp;
use jiff::civil::{Date, date};
use serde_json::json;

use super::support::{engine_of, opts, si};

fn base_config() -> serde_json::Value {
    json!({
        "ranges": [
            {"name": "hq", "cidrs": ["10.0.0.0/8", "2001:db8::/32"], "location": "Berlin"},
            {"name": "lab", "cidrs": ["10.1.0.0/16", "2001:db8:1::/48"], "location": "Munich"},
            {"name": "vpn", "cidrs": ["192.0.2.0/24"], "remote": true},
            {"name": "guest", "cidrs": ["10.9.9.0/24"], "presence_enabled": false},
            {"name": "nolog", "cidrs": ["10.8.0.0/16"], "location": "Berlin", "logging_enabled": false},
            {"name": "dark", "cidrs": ["10.7.0.0/16"], "location": "Berlin",
             "presence_enabled": false, "logging_enabled": false}
        ],
        "users": [
            {"upn": "Alice@Contoso.com", "mode": "track_and_display"},
            {"upn": "bob@contoso.com", "mode": "track_only"},
            {"upn": "carol@contoso.com", "mode": "off"},
            {"upn": "dave@contoso.com", "mode": "track_and_display", "active": false}
        ]
    })
}

fn engine_with(edit: impl FnOnce(&mut serde_json::Value)) -> PresenceEngine {
    let mut v = base_config();
    edit(&mut v);
    engine_of(v)
}

fn engine() -> PresenceEngine {
    engine_with(|_| {})
}

fn failed(mut s: SignIn<'static>) -> SignIn<'static> {
    s.status = Some(SignInStatus {
        error_code: Some(50126),
    });
    s
}

fn run(e: &PresenceEngine, st: &mut MemoryState, s: Vec<SignIn<'static>>) -> BatchReport {
    e.process(st, s, &opts()).expect("process")
}

fn office(l: &str) -> Option<Place> {
    Some(Place::Office { location: l.into() })
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const D: Date = date(2024, 5, 7);

#[test]
fn unknown_and_inactive_users_are_discarded() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![
            si(
                "1",
                "2024-05-07T09:00:00Z",
                "10.0.0.1",
                "mallory@contoso.com",
            ),
            si("2", "2024-05-07T09:00:00Z", "10.0.0.1", "dave@contoso.com"),
        ],
    );
    assert_eq!(r.counts.received, 2);
    assert_eq!(r.counts.discarded.unknown_user, 1);
    assert_eq!(r.counts.discarded.inactive_user, 1);
    assert!(r.access_events.is_empty() && r.presence_events.is_empty());
    assert!(st.access_events().is_empty());
}

#[test]
fn upns_match_without_regard_to_case() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![si(
            "1",
            "2024-05-07T09:00:00Z",
            "10.0.0.1",
            "ALICE@contoso.COM",
        )],
    );
    assert_eq!(r.counts.matched, 1);
    assert_eq!(r.presence_events[0].user, "alice@contoso.com");
}

#[test]
fn mode_off_logs_access_but_never_presence() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![si(
            "1",
            "2024-05-07T09:00:00Z",
            "10.0.0.1",
            "carol@contoso.com",
        )],
    );
    assert_eq!(r.access_events.len(), 1);
    assert!(r.presence_events.is_empty());
    assert_eq!(r.counts.presence_mode_off, 1);
}

#[test]
fn unmatched_addresses_are_discarded_without_auto_create() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![si(
            "1",
            "2024-05-07T09:00:00Z",
            "203.0.113.5",
            "alice@contoso.com",
        )],
    );
    assert_eq!(r.counts.discarded.unmatched, 1);
    assert!(st.discovery().unwrap().is_empty());
}

#[test]
fn unmatched_addresses_feed_discovery_with_auto_create() {
    let e = engine_with(|v| v["settings"] = json!({"auto_create": true}));
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![
            si(
                "1",
                "2024-05-07T09:00:00Z",
                "203.0.113.5",
                "alice@contoso.com",
            ),
            si(
                "2",
                "2024-05-07T09:05:00Z",
                "203.0.113.5",
                "alice@contoso.com",
            ),
            si(
                "3",
                "2024-05-07T09:10:00Z",
                "203.0.113.77",
                "bob@contoso.com",
            ),
            si(
                "4",
                "2024-05-07T09:10:00Z",
                "2001:db9:5:6::1",
                "bob@contoso.com",
            ),
            // Re-processing an id does not count twice.
            si(
                "1",
                "2024-05-07T09:00:00Z",
                "203.0.113.5",
                "alice@contoso.com",
            ),
        ],
    );
    assert_eq!(r.counts.discovered, 4);
    assert_eq!(r.counts.discarded.duplicate, 1);
    assert!(r.access_events.is_empty() && r.presence_events.is_empty());
    let d = st.discovery().unwrap();
    assert_eq!(
        d,
        vec![
            DiscoveryBlock {
                block: "203.0.113.0/24".parse().unwrap(),
                events: 3,
                distinct_users: 2,
                distinct_addresses: 2
            },
            DiscoveryBlock {
                block: "2001:db9:5::/48".parse().unwrap(),
                events: 1,
                distinct_users: 1,
                distinct_addresses: 1
            },
        ]
    );
}

#[test]
fn one_access_record_per_user_address_and_day_holding_the_date_only() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![
            si("1", "2024-05-07T09:00:00Z", "10.0.0.1", "alice@contoso.com"),
            si("2", "2024-05-07T15:00:00Z", "10.0.0.1", "alice@contoso.com"),
            si("3", "2024-05-07T15:00:00Z", "10.0.0.2", "alice@contoso.com"),
            si("4", "2024-05-08T08:00:00Z", "10.0.0.1", "alice@contoso.com"),
        ],
    );
    assert_eq!(r.counts.access_logged, 3);
    assert_eq!(r.counts.access_already_logged, 1);
    let json = serde_json::to_value(&r.access_events[0]).unwrap();
    assert_eq!(
        json,
        json!({"user": "alice@contoso.com", "ip": "10.0.0.1", "date": "2024-05-07"})
    );
    // A later batch with the same user, address and day adds nothing.
    let r2 = run(
        &e,
        &mut st,
        vec![si(
            "5",
            "2024-05-07T18:00:00Z",
            "10.0.0.2",
            "alice@contoso.com",
        )],
    );
    assert!(r2.access_events.is_empty());
    assert_eq!(st.access_events().len(), 3);
}

#[test]
fn logging_and_presence_flags_combine_independently() {
    let e = engine();
    let mut st = MemoryState::new();
    let alice = "alice@contoso.com";
    let r = run(
        &e,
        &mut st,
        vec![
            si("on-on", "2024-05-07T08:00:00Z", "10.0.0.1", alice),
            si("guest", "2024-05-07T09:00:00Z", "10.9.9.1", alice),
            si(
                "nolog",
                "2024-05-07T10:00:00Z",
                "10.8.0.1",
                "bob@contoso.com",
            ),
            si(
                "dark",
                "2024-05-07T11:00:00Z",
                "10.7.0.1",
                "carol@contoso.com",
            ),
        ],
    );
    let ips: Vec<String> = r.access_events.iter().map(|a| a.ip.to_string()).collect();
    assert_eq!(ips, ["10.0.0.1", "10.9.9.1"]);
    assert_eq!(r.counts.access_not_logged, 2);
    assert_eq!(r.counts.presence_not_enabled, 2);
    // bob's presence event without an access event (range logging off).
    let who: Vec<(&str, Option<&str>)> = r
        .presence_events
        .iter()
        .map(|p| (p.user.as_str(), p.range.as_deref()))
        .collect();
    assert_eq!(
        who,
        [
            ("alice@contoso.com", Some("hq")),
            ("bob@contoso.com", Some("nolog"))
        ]
    );
}

#[test]
fn app_wide_logging_off_still_gives_presence() {
    let e = engine_with(|v| v["settings"] = json!({"access_logging": false}));
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![si(
            "1",
            "2024-05-07T08:00:00Z",
            "10.0.0.1",
            "alice@contoso.com",
        )],
    );
    assert!(r.access_events.is_empty());
    assert_eq!(r.presence_events.len(), 1);
}

#[test]
fn remote_ranges_mean_remote() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![si(
            "1",
            "2024-05-07T08:00:00Z",
            "192.0.2.9",
            "alice@contoso.com",
        )],
    );
    assert_eq!(r.presence_events[0].place, Some(Place::Remote));
    assert_eq!(
        serde_json::to_value(&r.presence_events[0].place).unwrap(),
        json!({"kind": "remote"})
    );
}

#[test]
fn longest_prefix_wins_for_ipv4_ipv6_and_mapped_addresses() {
    let e = engine();
    let t = e.ranges();
    let name = |ip: &str| t.lookup(ip.parse().unwrap()).map(|m| m.range.name.clone());
    assert_eq!(name("10.2.0.1").as_deref(), Some("hq"));
    assert_eq!(name("10.1.2.3").as_deref(), Some("lab"));
    assert_eq!(name("::ffff:10.1.2.3").as_deref(), Some("lab"));
    assert_eq!(name("2001:db8:1::5").as_deref(), Some("lab"));
    assert_eq!(name("2001:db8:2::5").as_deref(), Some("hq"));
    assert_eq!(name("11.0.0.1"), None);
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![si(
            "1",
            "2024-05-07T08:00:00Z",
            "::ffff:10.1.2.3",
            "alice@contoso.com",
        )],
    );
    assert_eq!(r.access_events[0].ip.to_string(), "10.1.2.3");
    assert_eq!(r.presence_events[0].place, office("Munich"));
}

#[test]
fn failed_sign_ins_are_ignored_unless_configured() {
    let s = failed(si(
        "1",
        "2024-05-07T08:00:00Z",
        "10.0.0.1",
        "alice@contoso.com",
    ));
    let mut st = MemoryState::new();
    let r = run(&engine(), &mut st, vec![s.clone()]);
    assert_eq!(r.counts.discarded.failed, 1);
    assert!(r.presence_events.is_empty());
    let e = engine_with(|v| v["settings"] = json!({"count_failed_sign_ins": true}));
    let r = run(&e, &mut MemoryState::new(), vec![s]);
    assert_eq!(r.presence_events.len(), 1);
}

#[test]
fn calendar_day_is_taken_in_the_locations_time_zone() {
    let e = engine_with(|v| {
        v["settings"] = json!({
            "time_zone": "America/New_York",
            "location_time_zones": {"Berlin": "Europe/Berlin"}
        })
    });
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![
            // 23:30 UTC is already the next day in Berlin.
            si("1", "2024-05-06T23:30:00Z", "10.0.0.1", "alice@contoso.com"),
            // 03:00 UTC is still the previous day in New York (remote: default zone).
            si("2", "2024-05-07T03:00:00Z", "192.0.2.1", "bob@contoso.com"),
            // Munich has no zone of its own: the default.
            si("3", "2024-05-07T02:00:00Z", "10.1.0.1", "carol@contoso.com"),
        ],
    );
    let dates: Vec<(String, Date)> = r
        .access_events
        .iter()
        .map(|a| (a.user.clone(), a.date))
        .collect();
    assert_eq!(
        dates,
        [
            ("alice@contoso.com".into(), date(2024, 5, 7)),
            ("bob@contoso.com".into(), date(2024, 5, 6)),
            ("carol@contoso.com".into(), date(2024, 5, 6)),
        ]
    );
    assert_eq!(r.presence_events[0].date, date(2024, 5, 7));
    assert_eq!(r.presence_events[0].at, ts("2024-05-06T23:30:00Z"));
}

#[test]
fn a_later_sign_in_from_the_same_place_emits_nothing_and_another_place_switches() {
    let e = engine();
    let mut st = MemoryState::new();
    let a = "alice@contoso.com";
    let r = run(
        &e,
        &mut st,
        vec![
            si("1", "2024-05-07T08:00:00Z", "10.0.0.1", a),
            si("2", "2024-05-07T09:00:00Z", "10.0.0.2", a),
            si("3", "2024-05-07T10:00:00Z", "192.0.2.1", a),
        ],
    );
    let seq: Vec<(Timestamp, Option<Place>)> = r
        .presence_events
        .iter()
        .map(|p| (p.at, p.place.clone()))
        .collect();
    assert_eq!(
        seq,
        [
            (ts("2024-05-07T08:00:00Z"), office("Berlin")),
            (ts("2024-05-07T10:00:00Z"), Some(Place::Remote)),
        ]
    );
    assert_eq!(r.statuses.len(), 1);
    assert_eq!(r.statuses[0].place, Some(Place::Remote));
    let r = run(
        &e,
        &mut st,
        vec![si("4", "2024-05-07T11:00:00Z", "192.0.2.7", a)],
    );
    assert!(r.presence_events.is_empty() && r.superseded_events.is_empty());
}

#[test]
fn the_next_day_starts_with_no_presence() {
    let e = engine();
    let mut st = MemoryState::new();
    let a = "alice@contoso.com";
    run(
        &e,
        &mut st,
        vec![si("1", "2024-05-07T08:00:00Z", "10.0.0.1", a)],
    );
    assert!(
        st.statuses()
            .unwrap()
            .iter()
            .all(|s| s.date == D && s.place == office("Berlin"))
    );
    let r = run(
        &e,
        &mut st,
        vec![si("2", "2024-05-08T08:00:00Z", "10.0.0.1", a)],
    );
    // Same place as yesterday, but a new day: a new event.
    assert_eq!(r.presence_events.len(), 1);
    assert_eq!(r.presence_events[0].date, date(2024, 5, 8));
}

#[test]
fn a_manual_change_holds_until_the_next_change() {
    let e = engine();
    let mut st = MemoryState::new();
    let a = "alice@contoso.com";
    run(
        &e,
        &mut st,
        vec![si("1", "2024-05-07T08:00:00Z", "10.0.0.1", a)],
    );
    let r = e
        .set_manual(&mut st, a, None, ts("2024-05-07T10:00:00Z"), None, "admin")
        .unwrap();
    assert_eq!(r.presence_events.len(), 1);
    assert_eq!(r.presence_events[0].source, EventSource::Manual);
    assert_eq!(r.statuses[0].place, None);
    // A late sign-in before the override does not undo it.
    let r = run(
        &e,
        &mut st,
        vec![si("2", "2024-05-07T09:30:00Z", "10.0.0.1", a)],
    );
    assert!(r.presence_events.is_empty());
    assert_eq!(r.statuses[0].place, None);
    // The next sign-in after it is a change again.
    let r = run(
        &e,
        &mut st,
        vec![si("3", "2024-05-07T11:00:00Z", "10.0.0.1", a)],
    );
    assert_eq!(r.presence_events.len(), 1);
    assert_eq!(r.statuses[0].place, office("Berlin"));
    // Set remote; a sign-in from the same (set) place changes nothing.
    e.set_manual(
        &mut st,
        a,
        Some(Place::Remote),
        ts("2024-05-07T12:00:00Z"),
        None,
        "admin",
    )
    .unwrap();
    let r = run(
        &e,
        &mut st,
        vec![si("4", "2024-05-07T13:00:00Z", "192.0.2.1", a)],
    );
    assert!(r.presence_events.is_empty());
    assert!(
        e.set_manual(
            &mut st,
            "carol@contoso.com",
            None,
            ts("2024-05-07T12:00:00Z"),
            None,
            "x"
        )
        .is_err()
    );
    assert!(
        e.set_manual(
            &mut st,
            a,
            office("Atlantis"),
            ts("2024-05-07T12:00:00Z"),
            None,
            "x"
        )
        .is_err()
    );
}

#[test]
fn reprocessing_an_id_changes_nothing() {
    let e = engine_with(|v| v["settings"] = json!({"auto_create": true}));
    let mut st = MemoryState::new();
    let batch = || {
        vec![
            si("1", "2024-05-07T08:00:00Z", "10.0.0.1", "alice@contoso.com"),
            si(
                "2",
                "2024-05-07T09:00:00Z",
                "192.0.2.1",
                "alice@contoso.com",
            ),
            si(
                "3",
                "2024-05-07T09:00:00Z",
                "203.0.113.1",
                "bob@contoso.com",
            ),
        ]
    };
    run(&e, &mut st, batch());
    let before = st.to_json();
    let disc = st.discovery().unwrap();
    let r = run(&e, &mut st, batch());
    assert_eq!(r.counts.discarded.duplicate, 3);
    assert!(r.access_events.is_empty() && r.presence_events.is_empty());
    assert_eq!(st.to_json(), before);
    assert_eq!(st.discovery().unwrap(), disc);
}

#[test]
fn late_sign_ins_move_and_bring_back_transitions() {
    // The example of the module doc: A@9:00, B@10:00; late B@9:30; later A@9:45.
    let e = engine();
    let mut st = MemoryState::new();
    let a = "alice@contoso.com";
    let r = run(
        &e,
        &mut st,
        vec![
            si("a900", "2024-05-07T09:00:00Z", "10.0.0.1", a),
            si("b1000", "2024-05-07T10:00:00Z", "192.0.2.1", a),
        ],
    );
    assert_eq!(r.presence_events.len(), 2);
    let r = run(
        &e,
        &mut st,
        vec![si("b930", "2024-05-07T09:30:00Z", "192.0.2.1", a)],
    );
    assert_eq!(r.presence_events.len(), 1);
    assert_eq!(r.presence_events[0].at, ts("2024-05-07T09:30:00Z"));
    assert_eq!(r.superseded_events.len(), 1);
    assert_eq!(r.superseded_events[0].at, ts("2024-05-07T10:00:00Z"));
    let r = run(
        &e,
        &mut st,
        vec![si("a945", "2024-05-07T09:45:00Z", "10.0.0.1", a)],
    );
    let back: Vec<Timestamp> = r.presence_events.iter().map(|p| p.at).collect();
    assert_eq!(
        back,
        [ts("2024-05-07T09:45:00Z"), ts("2024-05-07T10:00:00Z")]
    );
    assert!(r.superseded_events.is_empty());
    assert_eq!(st.presence_events().unwrap().len(), 4);
}

#[test]
fn sign_ins_older_than_the_window_are_too_late() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![si(
            "1",
            "2024-05-01T08:00:00Z",
            "10.0.0.1",
            "alice@contoso.com",
        )],
    );
    assert_eq!(r.counts.discarded.too_late, 1);
}

#[test]
fn malformed_sign_ins_are_counted() {
    let e = engine();
    let mut st = MemoryState::new();
    let r = run(
        &e,
        &mut st,
        vec![
            si("1", "not a time", "10.0.0.1", "alice@contoso.com"),
            si("2", "2024-05-07T08:00:00Z", "", "alice@contoso.com"),
            si("", "2024-05-07T08:00:00Z", "10.0.0.1", "alice@contoso.com"),
        ],
    );
    assert_eq!(r.counts.discarded.malformed, 3);
}

#[test]
fn state_json_round_trip_continues_where_it_left_off() {
    let e = engine();
    let a = "alice@contoso.com";
    let first = vec![
        si("1", "2024-05-07T09:00:00Z", "10.0.0.1", a),
        si("2", "2024-05-07T10:00:00Z", "192.0.2.1", a),
        si("3", "2024-05-07T10:00:00Z", "10.1.0.1", "bob@contoso.com"),
    ];
    let second = vec![
        si("4", "2024-05-07T09:30:00Z", "192.0.2.1", a),
        si("1", "2024-05-07T09:00:00Z", "10.0.0.1", a),
    ];
    let mut continuous = MemoryState::new();
    run(&e, &mut continuous, first.clone());
    let r_cont = run(&e, &mut continuous, second.clone());

    let mut st = MemoryState::new();
    run(&e, &mut st, first);
    let json = st.to_json();
    let text = serde_json::to_string(&json).unwrap();
    assert!(text.contains("\"version\":2"), "{text}");
    let mut restored = MemoryState::from_json(json).unwrap();
    e.set_manual(
        &mut restored,
        a,
        None,
        ts("2024-05-07T23:00:00Z"),
        Some(D),
        "a",
    )
    .unwrap();
    e.set_manual(
        &mut continuous,
        a,
        None,
        ts("2024-05-07T23:00:00Z"),
        Some(D),
        "a",
    )
    .unwrap();
    let mut restored2 = MemoryState::from_json(restored.to_json()).unwrap();
    let mut continuous2 = continuous.clone();
    let r_rest = run(&e, &mut restored2, second.clone());
    let _ = run(&e, &mut continuous2, second);
    assert_eq!(r_rest.counts.discarded.duplicate, 1);
    assert_eq!(restored2.to_json(), continuous2.to_json());
    assert_eq!(
        restored2.presence_events().unwrap(),
        continuous2.presence_events().unwrap()
    );
    assert_eq!(r_cont.counts.discarded.duplicate, 1);
    assert!(MemoryState::from_json(json!({"version": 9, "places": [], "days": []})).is_err());
}
