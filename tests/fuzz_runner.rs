//! Random envelopes never panic the runner: every one is either accepted or
//! refused as `invalid_input` (exit 2). In-process, up to the point where a
//! request would be sent, so the property runs thousands of cases quickly.

use msgraph_connector::ErrorKind;
use msgraph_connector::actions::ACTIONS;
use msgraph_connector::runner::{Envelope, RunSettings, prepare};
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
