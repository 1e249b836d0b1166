//! Random envelopes never panic the runner: every one is either accepted or
//! refused as `invalid_input` (exit 2). In-process, up to the point where a
//! request would be sent, so the property runs thousands of cases quickly.
//!
//! The offline actions go further, end to end in-process: `evaluate_ip_presence` on
//! random sign-ins with a real state JSON mutated (numbers, strings, arrays, objects
//! replaced, removed, duplicated), and `set`/`get`/`clear_office_presence` on random
//! inputs against a store in a temporary state dir. Each either succeeds or is
//! refused as `invalid_input`: never a panic, never an internal error.

use std::path::Path;
use std::sync::OnceLock;

use msgraph_connector::actions::{ACTIONS, find};
use msgraph_connector::runner::{Envelope, RunSettings, prepare};
use msgraph_connector::{Error, ErrorKind};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Arbitrary JSON, biased towards the keys and shapes the runner looks at.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_string()),
        Just("id".to_string()),
        Just("ids".to_string()),
        Just("client_id".to_string()),
        Just("tenant_id".to_string()),
        Just("client_secret".to_string()),
        Just("url".to_string()),
        Just("select".to_string()),
        Just("scope".to_string()),
        "[a-z_$]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!("client_credentials")),
        Just(json!("http://127.0.0.1:9")),
        Just(json!("$x'y@contoso.com")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_envelope() -> impl Strategy<Value = Value> {
    (arb_json(), arb_json(), arb_json(), any::<u8>()).prop_map(|(asset, inputs, state, shape)| {
        match shape % 4 {
            0 => json!({"asset": asset, "inputs": inputs, "state": state}),
            1 => json!({"asset": asset, "inputs": inputs}),
            2 => json!({"inputs": inputs}),
            _ => asset,
        }
    })
}

fn check_all_actions(bytes: &[u8]) {
    let settings = RunSettings::default();
    for action in ACTIONS {
        match Envelope::parse(bytes).and_then(|env| prepare(action, env, &settings)) {
            Ok(_) => {}
            Err(e) => assert_eq!(
                e.kind,
                ErrorKind::InvalidInput,
                "{}: {e:?}",
                action.meta.name
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_all_actions(&bytes);
    }

    #[test]
    fn random_envelopes_never_panic(envelope in arb_envelope()) {
        check_all_actions(envelope.to_string().as_bytes());
    }
}

// ---------------------------------------------------------------------------------
// The offline actions, end to end.

const NOW: &str = "2026-03-02T20:00:00Z";

/// Offices in two zones (one far east), a nested range, a VPN, a range with presence
/// off, users of every mode, and auto-create: every path of the rules.
fn presence_config() -> Value {
    json!({
        "ranges": [
            {"name": "Berlin", "cidrs": ["10.1.0.0/16", "2001:db8:1::/48"], "location": "Berlin"},
            {"name": "Lab", "cidrs": ["10.1.9.0/24"], "location": "Lab"},
            {"name": "VPN", "cidrs": ["192.0.2.0/26"], "remote": true},
            {"name": "Guest", "cidrs": ["10.3.0.0/16"], "location": "Berlin", "presence_enabled": false}
        ],
        "users": [
            {"upn": "ann@x.example", "mode": "track_and_display"},
            {"upn": "bob@x.example", "mode": "track_only"},
            {"upn": "cat@x.example", "mode": "off"},
            {"upn": "dan@x.example", "mode": "track_and_display", "active": false}
        ],
        "settings": {"time_zone": "Europe/Berlin", "auto_create": true,
                     "location_time_zones": {"Lab": "Pacific/Kiritimati"}}
    })
}

fn with_config(extra: Value) -> Value {
    let mut v = presence_config();
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// Run one action in-process as `run` would: prepare, then the handler.
fn run_offline(action: &str, envelope: &Value, state_dir: Option<&Path>) -> Result<Value, Error> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    let action = find(action).unwrap();
    let settings = RunSettings {
        state_dir: state_dir.map(Path::to_path_buf),
        token_cache: false,
        state_url: Default::default(),
    };
    let (ctx, inputs) = prepare(
        action,
        Envelope::parse(envelope.to_string().as_bytes())?,
        &settings,
    )?;
    let result = runtime.block_on(action.run(&ctx, inputs))?;
    // As the runner prints it: the result must serialise, whatever the input.
    let mut bytes = Vec::new();
    result
        .write(&mut bytes, false)
        .expect("a result always serialises");
    Ok(serde_json::from_slice(&bytes).expect("the result is JSON"))
}

fn accepted_or_invalid(what: &str, r: &Result<Value, Error>, envelope: &Value) {
    if let Err(e) = r {
        assert_eq!(
            e.kind,
            ErrorKind::InvalidInput,
            "{what}: {e:?}\nenvelope: {envelope}"
        );
    }
}

fn sign_in(id: &str, at: &str, ip: &str, upn: &str) -> Value {
    json!({"id": id, "createdDateTime": at, "ipAddress": ip, "userPrincipalName": upn,
           "status": {"errorCode": 0}})
}

/// A real state: observations at every place, access events, discovery, and manual
/// overrides on two days, as evaluate_ip_presence and set_office_presence leave them.
fn base_state() -> &'static Value {
    static STATE: OnceLock<Value> = OnceLock::new();
    STATE.get_or_init(|| {
        let sign_ins = json!([
            sign_in("a1", "2026-03-02T07:00:00Z", "10.1.2.3", "ann@x.example"),
            sign_in("a2", "2026-03-02T09:00:00Z", "192.0.2.9", "ann@x.example"),
            sign_in("a3", "2026-03-01T11:00:00Z", "2001:db8:1::5", "ann@x.example"),
            sign_in("b1", "2026-03-02T08:00:00Z", "10.1.9.7", "bob@x.example"),
            sign_in("b2", "2026-03-02T08:30:00Z", "203.0.113.5", "bob@x.example"),
            sign_in("b3", "2026-03-02T08:40:00Z", "2001:db8:77::1", "bob@x.example"),
            sign_in("c1", "2026-03-02T08:00:00Z", "10.1.2.4", "cat@x.example"),
            sign_in("g1", "2026-03-02T10:00:00Z", "10.3.0.1", "ann@x.example")
        ]);
        let envelope = json!({"inputs": with_config(json!({"sign_ins": sign_ins, "now": NOW}))});
        let out = run_offline("evaluate_ip_presence", &envelope, None).unwrap();
        let mut state = out["state"].clone();
        // Overrides as the state format keeps them (set_office_presence writes these
        // to the store; the JSON form is the same data).
        let days = state["days"].as_array_mut().unwrap();
        let day = days.last_mut().unwrap();
        day["users"]["ann@x.example"]["overrides"] = json!([
            {"at_ms": 1772438400000i64, "place": {"kind": "office", "location": "Berlin"}, "set_by": "admin@x.example"},
            {"at_ms": 1772445600000i64, "place": null, "set_by": "admin@x.example"}
        ]);
        let check = json!({"inputs": with_config(json!({"sign_ins": [], "now": NOW})), "state": state});
        run_offline("evaluate_ip_presence", &check, None).expect("the base state is valid");
        state
    })
}

/// JSON pointers of every node of `v`, root first.
fn nodes(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => {
            out.push(at.clone());
            for (i, x) in a.iter().enumerate() {
                nodes(x, format!("{at}/{i}"), out);
            }
        }
        Value::Object(m) => {
            out.push(at.clone());
            for (k, x) in m {
                nodes(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => out.push(at),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the node with this value (a number, string or any JSON).
    Replace(Value),
    /// Remove it from its array or object.
    Remove,
    /// Put a copy of it next to it (arrays only).
    Duplicate,
    /// Add this value to it (an array: at the end; an object: under a new key).
    Insert(Value),
}

/// Which node a mutation hits: any, or (where the interesting values are: times,
/// place indexes, counts) a number.
#[derive(Debug, Clone, Copy)]
struct Target {
    numbers_only: bool,
    pick: usize,
}

/// A mutation and where it goes: numbers are replaced by numbers (extremes mostly),
/// any node by anything.
fn arb_targeted_mutation() -> impl Strategy<Value = (Target, Mutation)> {
    prop_oneof![
        3 => any::<usize>().prop_flat_map(|pick| {
            arb_integer().prop_map(move |n| {
                let target = Target {
                    numbers_only: true,
                    pick,
                };
                (target, Mutation::Replace(n))
            })
        }),
        1 => (any::<usize>(), arb_mutation()).prop_map(|(pick, m)| {
            let target = Target {
                numbers_only: false,
                pick,
            };
            (target, m)
        }),
    ]
}

fn apply(state: &mut Value, target: Target, m: &Mutation) {
    let mut all = Vec::new();
    nodes(state, String::new(), &mut all);
    if target.numbers_only {
        all.retain(|p| state.pointer(p).is_some_and(Value::is_number));
    }
    if all.is_empty() {
        return;
    }
    let at = &all[target.pick % all.len()];
    let (parent, last) = match at.rfind('/') {
        Some(i) => (
            &at[..i],
            Some(at[i + 1..].replace("~1", "/").replace("~0", "~")),
        ),
        None => ("", None),
    };
    match m {
        Mutation::Replace(v) => *state.pointer_mut(at).unwrap() = v.clone(),
        Mutation::Insert(v) => match state.pointer_mut(at).unwrap() {
            Value::Array(a) => a.push(v.clone()),
            Value::Object(o) => {
                o.insert("x".into(), v.clone());
            }
            other => *other = v.clone(),
        },
        Mutation::Remove | Mutation::Duplicate => {
            let Some(last) = last else { return };
            match state.pointer_mut(parent).unwrap() {
                Value::Array(a) => {
                    let i: usize = last.parse().unwrap();
                    if matches!(m, Mutation::Remove) {
                        a.remove(i);
                    } else {
                        let copy = a[i].clone();
                        a.insert(i, copy);
                    }
                }
                Value::Object(o) if matches!(m, Mutation::Remove) => {
                    o.remove(&last);
                }
                _ => {}
            }
        }
    }
}

/// Integers a state's times, place indexes and counts could be: the edges of each.
fn arb_integer() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64),
            Just(0i64),
            Just(9_000_000_000_000_000_000),
            Just(-377_705_023_201_001),
            Just(253_402_207_200_001),
            Just(1i64 << 39),
            Just(i64::from(u32::MAX)),
        ]
        .prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        // Around the state's days, and small indexes and counts: accepted, and so
        // carried into the rules.
        3 => (1_772_200_000_000i64..1_772_600_000_000).prop_map(Value::from),
        2 => (0i64..5).prop_map(Value::from),
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64),
            Just(0i64),
            Just(9_000_000_000_000_000_000),
            Just(-377_705_023_201_001),
            Just(253_402_207_200_001),
            Just(1i64 << 39),
            Just(1i64 << 40),
            Just(i64::from(u32::MAX)),
            Just(1_772_438_400_000),
        ]
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (1_772_000_000_000i64..1_773_000_000_000).prop_map(Value::from),
        (0i64..8).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

fn arb_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop_oneof![
            Just(""),
            Just("2026-03-02"),
            Just("2024-02-30"),
            Just("9999-12-31"),
            Just("-009999-01-01"),
            Just("0000-01-01"),
            Just("ffffffffffffffff"),
            Just("0123456789abcdef0123456789abcdeg"),
            Just("zz"),
            Just("10.1.0.0/16"),
            Just("10.1.0.0/99"),
            Just("::1"),
            Just("2001:db8::/129"),
            Just("office"),
            Just("remote"),
            Just("ANN@X.EXAMPLE"),
            Just("a/b~c@x"),
        ]
        .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        "[0-9a-f]{16,48}".prop_map(Value::from),
    ]
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => arb_number().prop_map(Mutation::Replace),
        3 => arb_text().prop_map(Mutation::Replace),
        1 => arb_json().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        2 => Just(Mutation::Duplicate),
        1 => prop_oneof![arb_number(), arb_text(), arb_json()].prop_map(Mutation::Insert),
    ]
}

fn arb_time() -> impl Strategy<Value = Value> {
    prop_oneof![
        // 2026-03-01T00:00Z and the two days after: the days of the base state.
        4 => (0i64..2 * 86_400).prop_map(|s| Value::from(
            jiff::Timestamp::from_second(1_772_323_200 + s).unwrap().to_string()
        )),
        1 => prop_oneof![
            Just("9999-12-31T23:59:59Z"),
            Just("9999-12-30T22:00:00.999Z"),
            Just("0000-01-01T00:00:00Z"),
            Just("2026-03-02T08:00:60Z"),
            Just("2026-03-02T08:00:00.1234567Z"),
            Just("2026-03-02T09:00:00+14:00"),
            Just("2026-02-29T00:00:00Z"),
            Just("yesterday"),
        ]
        .prop_map(Value::from),
        1 => ".{0,24}".prop_map(Value::from),
        1 => arb_number(),
    ]
}

fn arb_sign_in() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        Just(json!("a1")),
        Just(json!("b2")),
        "[a-z0-9]{0,6}".prop_map(Value::from),
        Just(Value::Null),
    ];
    let ip = prop_oneof![
        Just("10.1.2.3"),
        Just("10.1.9.200"),
        Just("192.0.2.1"),
        Just("10.3.4.5"),
        Just("203.0.113.7"),
        Just("2001:db8:1::9"),
        Just("2001:db8:99::1"),
        Just("::ffff:10.1.2.3"),
        Just(" 10.1.2.3 "),
        Just("10.1.2"),
    ]
    .prop_map(Value::from);
    let upn = prop_oneof![
        Just("ann@x.example"),
        Just(" Bob@X.Example "),
        Just("cat@x.example"),
        Just("dan@x.example"),
        Just("eve@x.example"),
    ]
    .prop_map(Value::from);
    let status = prop_oneof![
        Just(json!({"errorCode": 0})),
        Just(json!({"errorCode": 50126})),
        Just(json!({})),
        Just(Value::Null),
        arb_number().prop_map(|n| json!({"errorCode": n})),
    ];
    // Mostly sign-ins the rules keep (so that the days of the state are recomputed and
    // reported), some of every kind of wrong.
    let plausible = (
        "[a-z0-9]{1,8}",
        prop_oneof![
            // The working hours of the state's last day, where its overrides are.
            (0i64..36_000).prop_map(|s| Value::from(
                jiff::Timestamp::from_second(1_772_438_400 + s)
                    .unwrap()
                    .to_string()
            )),
            arb_time(),
        ],
        prop_oneof![
            Just("10.1.2.3"),
            Just("10.1.9.200"),
            Just("192.0.2.1"),
            Just("2001:db8:1::9")
        ],
        prop_oneof![Just("ann@x.example"), Just("bob@x.example")],
    )
        .prop_map(|(id, at, ip, upn)| {
            json!({"id": id, "createdDateTime": at, "ipAddress": ip,
                   "userPrincipalName": upn, "status": {"errorCode": 0}})
        });
    prop_oneof![
        8 => plausible,
        6 => (id, arb_time(), ip, upn, status).prop_map(|(id, at, ip, upn, status)| {
            json!({"id": id, "createdDateTime": at, "ipAddress": ip,
                   "userPrincipalName": upn, "status": status})
        }),
        1 => arb_json().prop_map(|v| match v {
            Value::Object(_) => v,
            other => json!({"id": other}),
        }),
    ]
}

fn arb_now() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => Just(json!(NOW)),
        1 => Just(json!("9999-12-30T22:00:00Z")),
        1 => Just(json!("-009999-01-02T01:59:59Z")),
        1 => Just(json!("1970-01-01T00:00:00Z")),
        1 => Just(Value::Null),
        1 => ".{0,12}".prop_map(Value::from),
    ]
}

// ---- the store actions

fn arb_opt(s: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 3 => s.prop_map(Some)]
}

fn arb_date() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(json!("2026-03-02")),
        1 => Just(json!("2026-03-01")),
        1 => Just(json!("9999-12-31")),
        1 => Just(json!("-009999-01-01")),
        1 => Just(json!("0000-01-01")),
        1 => Just(json!("2024-02-30")),
        1 => ".{0,12}".prop_map(Value::from),
    ]
}

fn arb_user() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(json!("ann@x.example")),
        2 => Just(json!("BOB@x.example")),
        1 => Just(json!("cat@x.example")),
        1 => Just(json!("dan@x.example")),
        1 => Just(json!("nobody@x.example")),
        1 => ".{0,10}".prop_map(Value::from),
    ]
}

/// An administrator's `at`: mostly around the days, often at the edges of time.
fn arb_at() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => arb_time(),
        1 => prop_oneof![
            Just("9999-12-30T22:00:00.999Z"),
            Just("9999-12-30T21:59:59Z"),
            Just("-009999-01-02T01:59:59Z"),
            Just("0000-01-01T00:00:00Z"),
            Just("1970-01-01T00:00:00Z"),
        ]
        .prop_map(Value::from),
    ]
}

fn arb_location() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("Berlin")),
        Just(json!("Lab")),
        Just(json!("Remote")),
        Just(json!("Paris")),
        ".{0,8}".prop_map(Value::from),
    ]
}

/// Inputs with the fields given (those `None` left out) and the configuration inline.
fn store_inputs(fields: Vec<(&str, Option<Value>)>) -> Value {
    let mut v = presence_config();
    for (k, x) in fields {
        if let Some(x) = x {
            v[k] = x;
        }
    }
    v
}

#[derive(Debug, Clone)]
struct StoreCase {
    set: Value,
    clear: Value,
    get: Value,
}

fn arb_store_case() -> impl Strategy<Value = StoreCase> {
    let place = prop_oneof![
        3 => prop_oneof![Just("Berlin"), Just("Lab")].prop_map(|l| (Some(json!(l)), None)),
        2 => Just((None, Some(json!(true)))),
        1 => (arb_opt(arb_location()), arb_opt(any::<bool>().prop_map(Value::from))),
    ];
    let set = (arb_user(), place, arb_opt(arb_date()), arb_opt(arb_at())).prop_map(
        |(user, (location, remote), date, at)| {
            store_inputs(vec![
                ("user", Some(user)),
                ("location", location),
                ("remote", remote),
                ("date", date),
                ("at", at),
                ("set_by", Some(json!("admin@x.example"))),
            ])
        },
    );
    let clear =
        (arb_user(), arb_opt(arb_date()), arb_opt(arb_time())).prop_map(|(user, date, at)| {
            store_inputs(vec![
                ("user", Some(user)),
                ("date", date),
                ("at", at),
                ("set_by", Some(json!("admin@x.example"))),
            ])
        });
    let get = (
        arb_opt(arb_date()),
        arb_opt(arb_date()),
        arb_opt(arb_date()),
        arb_opt(arb_user()),
        arb_opt(arb_location()),
        any::<bool>(),
    )
        .prop_map(|(date, from, to, user, location, full_view)| {
            store_inputs(vec![
                ("date", date),
                ("from", from),
                ("to", to),
                ("user", user),
                ("location", location),
                ("full_view", Some(Value::from(full_view))),
            ])
        });
    (set, clear, get).prop_map(|(set, clear, get)| StoreCase { set, clear, get })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn evaluate_with_a_mutated_state_never_panics(
        mutations in prop::collection::vec(arb_targeted_mutation(), 1..3),
        sign_ins in prop::collection::vec(arb_sign_in(), 0..6),
        now in arb_now(),
        late_window_days in prop_oneof![4 => Just(2u64), 1 => 0u64..100],
    ) {
        let mut state = base_state().clone();
        for (target, m) in &mutations {
            apply(&mut state, *target, m);
        }
        let envelope = json!({
            "inputs": with_config(json!({"sign_ins": sign_ins, "now": now,
                                         "late_window_days": late_window_days})),
            "state": state,
        });
        let r = run_offline("evaluate_ip_presence", &envelope, None);
        accepted_or_invalid("evaluate_ip_presence", &r, &envelope);
        // What it hands back is a state it accepts again.
        if let Ok(out) = r {
            let again = json!({"inputs": with_config(json!({"sign_ins": [], "now": NOW})),
                               "state": out["state"]});
            let r = run_offline("evaluate_ip_presence", &again, None);
            prop_assert!(r.is_ok(), "its own state refused: {:?}\n{}", r.err(), again);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_actions_on_random_inputs_never_panic(cases in prop::collection::vec(arb_store_case(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        for case in &cases {
            for (action, inputs) in [
                ("set_office_presence", &case.set),
                ("get_office_presence", &case.get),
                ("clear_office_presence", &case.clear),
                ("get_office_presence", &case.get),
            ] {
                let envelope = json!({"inputs": inputs});
                let r = run_offline(action, &envelope, Some(dir.path()));
                accepted_or_invalid(action, &r, &envelope);
            }
        }
    }
}
