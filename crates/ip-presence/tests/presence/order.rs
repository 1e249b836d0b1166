//! Order independence: any permutation and batching of the same sign-ins (with repeats)
//! gives the same final events and statuses as in-order processing, in memory, through
//! the JSON state, and in the SQLite store.

use std::collections::{BTreeMap, BTreeSet};

use ip_presence::*;
use jiff::Timestamp;
use jiff::civil::Date;
use proptest::prelude::*;
use serde_json::json;

use super::support::{engine_of, opts, si};

fn engine() -> PresenceEngine {
    let v = json!({
        "ranges": [
            {"name": "hq", "cidrs": ["10.0.0.0/8"], "location": "Berlin"},
            {"name": "hq-6", "cidrs": ["2001:db8::/32"], "location": "Berlin"},
            {"name": "ny", "cidrs": ["10.1.0.0/16"], "location": "New York"},
            {"name": "vpn", "cidrs": ["192.0.2.0/24"], "remote": true},
            {"name": "nolog", "cidrs": ["10.8.0.0/16"], "location": "Tokyo", "logging_enabled": false}
        ],
        "users": [
            {"upn": "a@x", "mode": "track_and_display"},
            {"upn": "b@x", "mode": "track_only"},
            {"upn": "c@x", "mode": "off"}
        ],
        "settings": {
            "auto_create": true,
            "location_time_zones": {"Berlin": "Europe/Berlin", "New York": "America/New_York"}
        }
    });
    engine_of(v)
}

const IPS: [&str; 7] = [
    "10.0.0.1",
    "2001:db8::9",
    "10.1.0.1",
    "192.0.2.1",
    "10.8.0.1",
    "203.0.113.9",
    "::ffff:10.1.0.2",
];
const USERS: [&str; 3] = ["a@x", "b@x", "C@X"];

#[derive(Debug, Clone)]
struct Raw {
    id: u32,
    minute: i64,
    ip: usize,
    user: usize,
}

fn to_sign_in(r: &Raw) -> SignIn<'static> {
    // Two days around midnight in Berlin and New York; few distinct minutes so ties happen.
    let at = Timestamp::from_second(1_715_032_800 + r.minute * 60).unwrap();
    si(
        &format!("id-{}", r.id),
        &at.to_string(),
        IPS[r.ip],
        USERS[r.user],
    )
}

/// Sign-ins (ids unique by content) plus repeats of some of them.
fn inputs() -> impl Strategy<Value = Vec<Raw>> {
    prop::collection::vec((0i64..48 * 60, 0..IPS.len(), 0..USERS.len()), 1..40)
        .prop_flat_map(|v| {
            let raws: Vec<Raw> = v
                .into_iter()
                .enumerate()
                .map(|(i, (m, ip, user))| Raw {
                    id: i as u32,
                    // Round to 10 minutes: plenty of equal timestamps.
                    minute: m / 10 * 10,
                    ip,
                    user,
                })
                .collect();
            let n = raws.len();
            (Just(raws), prop::collection::vec(0..n, 0..5))
        })
        .prop_map(|(mut raws, repeats)| {
            let extra: Vec<Raw> = repeats.iter().map(|&i| raws[i].clone()).collect();
            raws.extend(extra);
            raws
        })
}

/// An independent in-order model of the rules: events per user-day in time order.
fn model(raws: &[Raw], e: &PresenceEngine) -> BTreeSet<(String, Date, Timestamp, String)> {
    let mut sorted: Vec<&Raw> = raws.iter().collect();
    sorted.sort_by_key(|r| r.id);
    sorted.dedup_by_key(|r| r.id);
    let mut obs: Vec<(Timestamp, String, String, Date, String)> = Vec::new();
    for r in sorted {
        let user = USERS[r.user].to_lowercase();
        if user == "c@x" {
            continue; // mode off
        }
        let Some(m) = e.ranges().lookup(IPS[r.ip].parse().unwrap()) else {
            continue;
        };
        let place = match (&m.range.location, m.range.remote) {
            (Some(l), _) => Place::Office {
                location: l.clone(),
            },
            (None, true) => Place::Remote,
            _ => continue,
        };
        let at = Timestamp::from_second(1_715_032_800 + r.minute * 60).unwrap();
        let date = e.date_at(Some(&place), at);
        obs.push((at, m.range.name.clone(), user, date, place.to_string()));
    }
    obs.sort();
    let mut status: BTreeMap<(String, Date), String> = BTreeMap::new();
    let mut events = BTreeSet::new();
    for (at, _range, user, date, place) in obs {
        let cur = status.entry((user.clone(), date)).or_default();
        if *cur != place {
            *cur = place.clone();
            events.insert((user, date, at, place));
        }
    }
    events
}

fn summary(events: &[PresenceEvent]) -> BTreeSet<(String, Date, Timestamp, String)> {
    events
        .iter()
        .map(|p| {
            (
                p.user.clone(),
                p.date,
                p.at,
                p.place.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

fn batches<T: Clone>(items: &[T], cuts: &[usize]) -> Vec<Vec<T>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (items.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([items.len()]) {
        out.push(items[start..c.max(start)].to_vec());
        start = c.max(start);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_order_and_batching_gives_the_in_order_result(
        raws in inputs(),
        seed in any::<u64>(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        round_trip in any::<bool>(),
    ) {
        let e = engine();
        // Reference: everything in createdDateTime order, one batch.
        let mut in_order = raws.clone();
        in_order.sort_by_key(|r| (r.minute, r.id));
        let mut reference = MemoryState::new();
        e.process(&mut reference, in_order.iter().map(to_sign_in), &opts()).unwrap();
        prop_assert_eq!(summary(&reference.presence_events().unwrap()), model(&raws, &e));

        // Shuffled and cut into batches.
        let mut shuffled = raws.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut st = MemoryState::new();
        let mut emitted: BTreeSet<PresenceEvent> = BTreeSet::new();
        for batch in batches(&shuffled, &cuts) {
            if round_trip {
                st = MemoryState::from_json(st.to_json()).unwrap();
            }
            let r = e.process(&mut st, batch.iter().map(to_sign_in), &opts()).unwrap();
            for p in &r.superseded_events {
                prop_assert!(emitted.remove(p), "superseded an event never emitted: {:?}", p);
            }
            for p in r.presence_events {
                prop_assert!(emitted.insert(p));
            }
        }
        prop_assert_eq!(st.presence_events().unwrap(), reference.presence_events().unwrap());
        prop_assert_eq!(emitted.into_iter().collect::<Vec<_>>(), reference.presence_events().unwrap());
        prop_assert_eq!(st.statuses().unwrap(), reference.statuses().unwrap());
        prop_assert_eq!(st.access_events(), reference.access_events());
        prop_assert_eq!(st.discovery().unwrap(), reference.discovery().unwrap());
        prop_assert_eq!(st.to_json(), reference.to_json());
    }

}

proptest! {
    // SQLite on disk: fewer cases keep the suite fast.
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn the_store_agrees_with_memory_in_any_order(
        raws in inputs(),
        cuts in prop::collection::vec(any::<usize>(), 0..3),
    ) {
        let e = engine();
        let mut reference = MemoryState::new();
        e.process(&mut reference, raws.iter().map(to_sign_in), &opts()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut store = PresenceStore::open(dir.path()).unwrap();
        let mut rev = raws.clone();
        rev.reverse();
        for batch in batches(&rev, &cuts) {
            e.process(&mut store, batch.iter().map(to_sign_in), &opts()).unwrap();
        }
        prop_assert_eq!(store.all_presence_events().unwrap(), reference.presence_events().unwrap());
        prop_assert_eq!(store.all_access_events().unwrap(), reference.access_events());
        prop_assert_eq!(store.discovery().unwrap(), reference.discovery().unwrap());
    }
}
