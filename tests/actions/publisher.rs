//! The presence publisher (set_presence, clear_presence, set_user_preferred_presence,
//! clear_user_preferred_presence, set_status_message) against the emulator's presence
//! sessions: every documented pair accepted and shown by get_presence, a sample of
//! undocumented ones refused before any request, aggregation across two app sessions
//! and a preferred presence, and the fade and expiry on the emulator's clock.

use std::time::Duration;

use msgraph_connector::publisher::{APP_COMBINATIONS, PREFERRED_COMBINATIONS};
use serde_json::{Value, json};

use crate::support::assertions::{assert_invalid, decode};
use crate::support::emulator::{Emulator, EmulatorSetup, T0};

/// A second application's session (any GUID; the default is the asset's client id).
const OTHER_SESSION: &str = "5e551011-0000-4000-8000-0000000000b2";

/// Users with no Teams client online (no fixture presence), on a frozen clock.
fn quiet(users: usize) -> Emulator {
    EmulatorSetup::users(users)
        .clock_frozen_at(T0)
        .configure(|c| {
            for u in &mut c.tenant.users {
                u.presence = None;
            }
        })
        .start()
}

fn run_ok(emu: &Emulator, action: &str, inputs: Value) -> Value {
    let out = emu.run(action, inputs);
    assert_eq!(out.code, 0, "{action}: {}\n{}", out.stdout, out.stderr);
    out.json()["json_body"].clone()
}

/// (availability, activity, sequenceNumber) as get_presence shows them.
fn shown(emu: &Emulator, id: &str) -> (String, String, String) {
    let p = run_ok(emu, "get_presence", json!({"id": id}));
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    (s("availability"), s("activity"), s("sequenceNumber"))
}

fn pair(emu: &Emulator, id: &str) -> (String, String) {
    let (a, b, _) = shown(emu, id);
    (a, b)
}

fn own(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn every_documented_pair_is_accepted_and_shown() {
    let emu = quiet(APP_COMBINATIONS.len() + PREFERRED_COMBINATIONS.len());
    for (i, (availability, activity)) in APP_COMBINATIONS.iter().enumerate() {
        let id = emu.user_id(i);
        emu.clear_log();
        let body = run_ok(
            &emu,
            "set_presence",
            json!({"id": id, "availability": availability, "activity": activity}),
        );
        assert_eq!(body["expiration_duration"], "PT5M");
        assert!(body["notes"][0].as_str().unwrap().contains("few minutes"));
        let log = emu.graph_log();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].method.as_str(), decode(&log[0].path), log[0].status),
            (
                "POST",
                format!("/v1.0/users/{id}/presence/setPresence"),
                200
            )
        );
        assert_eq!(pair(&emu, &id), own(availability, activity));
    }
    for (j, (availability, activity)) in PREFERRED_COMBINATIONS.iter().enumerate() {
        let id = emu.user_id(APP_COMBINATIONS.len() + j);
        // A preferred presence shows only over a session: make one.
        run_ok(
            &emu,
            "set_presence",
            json!({"id": id, "availability": "Available", "activity": "Available", "expiration_duration": "PT1H"}),
        );
        run_ok(
            &emu,
            "set_user_preferred_presence",
            json!({"id": id, "availability": availability, "activity": activity}),
        );
        assert_eq!(pair(&emu, &id), own(availability, activity));
    }
}

#[test]
fn undocumented_pairs_and_durations_are_refused_before_any_request() {
    let emu = quiet(1);
    let id = emu.upn(0);
    let refused = |action: &str, extra: Value, pointer: &str| {
        let mut inputs = json!({"id": id});
        for (k, v) in extra.as_object().unwrap() {
            inputs[k] = v.clone();
        }
        emu.clear_log();
        let out = emu.run(action, inputs.clone());
        assert_invalid(&emu, &out, pointer);
        assert!(
            emu.log().is_empty(),
            "{action} {inputs}: a request was made"
        );
    };
    for (av, ac) in [
        ("Busy", "Busy"),
        ("Available", "Away"),
        ("DoNotDisturb", "DoNotDisturb"),
        ("Away", "InACall"),
    ] {
        refused(
            "set_presence",
            json!({"availability": av, "activity": ac}),
            "/inputs/activity",
        );
    }
    for (av, ac) in [
        ("Offline", "OffWork"),
        ("BeRightBack", "BeRightBack"),
        ("available", "Available"),
    ] {
        refused(
            "set_presence",
            json!({"availability": av, "activity": ac}),
            "/inputs/availability",
        );
    }
    for (av, ac) in [
        ("Offline", "Offline"),
        ("Busy", "InACall"),
        ("Away", "BeRightBack"),
    ] {
        refused(
            "set_user_preferred_presence",
            json!({"availability": av, "activity": ac}),
            "/inputs/activity",
        );
    }
    for d in ["PT4M59S", "PT4H1M", "P1D", "5m", "PT", "1 hour"] {
        refused(
            "set_presence",
            json!({"availability": "Available", "activity": "Available", "expiration_duration": d}),
            "/inputs/expiration_duration",
        );
    }
    refused(
        "set_user_preferred_presence",
        json!({"availability": "Busy", "activity": "Busy", "expiration_duration": "PT0S"}),
        "/inputs/expiration_duration",
    );
    refused(
        "set_presence",
        json!({"availability": "Available", "activity": "Available", "session_id": "not-a-guid"}),
        "/inputs/session_id",
    );
    refused(
        "set_status_message",
        json!({"message": "x", "expires_at": "tomorrow"}),
        "/inputs/expires_at",
    );
    refused(
        "set_status_message",
        json!({"message": "x", "content_type": "markdown"}),
        "/inputs/content_type",
    );
}

#[test]
fn sessions_aggregate_and_the_sequence_number_follows() {
    let emu = quiet(1);
    let id = emu.user_id(0);
    let (_, _, mut seq) = shown(&emu, &id);
    let expect = |emu: &Emulator, seq: &mut String, want: (&str, &str)| {
        let (a, b, s) = shown(emu, &id);
        assert_eq!((a.as_str(), b.as_str()), want);
        assert_ne!(&s, seq, "sequenceNumber did not move for {want:?}");
        *seq = s;
    };
    // The app's own session (its client id), then another app's: the stronger shows.
    run_ok(
        &emu,
        "set_presence",
        json!({"id": id, "availability": "Available", "activity": "Available", "expiration_duration": "PT1H"}),
    );
    expect(&emu, &mut seq, ("Available", "Available"));
    run_ok(
        &emu,
        "set_presence",
        json!({"id": id, "availability": "Busy", "activity": "InAConferenceCall",
               "expiration_duration": "PT30M", "session_id": OTHER_SESSION}),
    );
    expect(&emu, &mut seq, ("Busy", "InAConferenceCall"));
    // Reading again changes nothing, so the sequence number stays.
    assert_eq!(shown(&emu, &id).2, seq);
    // The user's preferred presence is over every session.
    run_ok(
        &emu,
        "set_user_preferred_presence",
        json!({"id": id, "availability": "BeRightBack", "activity": "BeRightBack"}),
    );
    expect(&emu, &mut seq, ("BeRightBack", "BeRightBack"));
    run_ok(&emu, "clear_user_preferred_presence", json!({"id": id}));
    expect(&emu, &mut seq, ("Busy", "InAConferenceCall"));
    run_ok(
        &emu,
        "clear_presence",
        json!({"id": id, "session_id": OTHER_SESSION}),
    );
    expect(&emu, &mut seq, ("Available", "Available"));
    run_ok(&emu, "clear_presence", json!({"id": id}));
    expect(&emu, &mut seq, ("Offline", "Offline"));
    // With no session left, a preferred presence does not show.
    run_ok(
        &emu,
        "set_user_preferred_presence",
        json!({"id": id, "availability": "Busy", "activity": "Busy"}),
    );
    assert_eq!(pair(&emu, &id), own("Offline", "Offline"));
    let log: Vec<String> = emu
        .graph_log()
        .iter()
        .filter(|e| e.method == "POST")
        .map(|e| decode(&e.path).rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        log,
        [
            "setPresence",
            "setPresence",
            "setUserPreferredPresence",
            "clearUserPreferredPresence",
            "clearPresence",
            "clearPresence",
            "setUserPreferredPresence"
        ]
    );
}

#[test]
fn a_teams_client_online_is_a_session_too() {
    let emu = EmulatorSetup::users(1)
        .clock_frozen_at(T0)
        .configure(|c| {
            c.tenant.users[0].presence = Some(
                serde_json::from_value(json!({"availability": "Busy", "activity": "InAMeeting"}))
                    .unwrap(),
            );
        })
        .start();
    let id = emu.user_id(0);
    run_ok(
        &emu,
        "set_presence",
        json!({"id": id, "availability": "Available", "activity": "Available"}),
    );
    assert_eq!(pair(&emu, &id), own("Busy", "InAMeeting"));
    run_ok(
        &emu,
        "set_presence",
        json!({"id": id, "availability": "DoNotDisturb", "activity": "Presenting"}),
    );
    assert_eq!(pair(&emu, &id), own("DoNotDisturb", "Presenting"));
}

#[test]
fn an_available_session_fades_then_expires_on_the_clock() {
    let emu = quiet(1);
    let id = emu.user_id(0);
    run_ok(
        &emu,
        "set_presence",
        json!({"id": id, "availability": "Available", "activity": "Available", "expiration_duration": "PT1H"}),
    );
    let minutes = |m: u64| emu.advance_clock(Duration::from_secs(m * 60));
    minutes(4);
    assert_eq!(pair(&emu, &id), own("Available", "Available"));
    minutes(1);
    assert_eq!(pair(&emu, &id), own("Available", "AvailableInactive"));
    minutes(5);
    assert_eq!(pair(&emu, &id), own("Away", "Away"));
    // Set again (a keep-alive): the fade starts over.
    run_ok(
        &emu,
        "set_presence",
        json!({"id": id, "availability": "Available", "activity": "Available", "expiration_duration": "PT10M"}),
    );
    assert_eq!(pair(&emu, &id), own("Available", "Available"));
    minutes(10);
    assert_eq!(pair(&emu, &id), own("Offline", "Offline"));
    // A Busy session does not fade; it ends at its expiry (default PT5M).
    run_ok(
        &emu,
        "set_presence",
        json!({"id": id, "availability": "Busy", "activity": "InACall"}),
    );
    minutes(4);
    assert_eq!(pair(&emu, &id), own("Busy", "InACall"));
    minutes(1);
    assert_eq!(pair(&emu, &id), own("Offline", "Offline"));
}

#[test]
fn a_status_message_shows_until_it_expires() {
    let emu = quiet(1);
    let id = emu.user_id(0);
    let out = run_ok(
        &emu,
        "set_status_message",
        json!({"id": id, "message": "<b>Queue</b>", "content_type": "html",
               "expires_at": "2026-03-02T09:30:00+01:00"}),
    );
    assert_eq!(
        out["expiry_date_time"],
        json!({"dateTime": "2026-03-02T08:30:00", "timeZone": "UTC"})
    );
    let p = run_ok(&emu, "get_presence", json!({"id": id}));
    assert_eq!(p["statusMessage"]["message"]["content"], "<b>Queue</b>");
    assert_eq!(p["statusMessage"]["message"]["contentType"], "html");
    assert_eq!(p["statusMessage"]["expiryDateTime"]["timeZone"], "UTC");
    emu.advance_clock(Duration::from_secs(31 * 60));
    let p = run_ok(&emu, "get_presence", json!({"id": id}));
    assert!(p["statusMessage"].is_null(), "{p}");
}

#[test]
fn writing_presence_needs_presence_read_write_all() {
    let emu = quiet(1);
    let out = emu.run_as(
        &emu.read_only_asset(),
        "set_presence",
        json!({"id": emu.user_id(0), "availability": "Available", "activity": "Available"}),
    );
    crate::support::assertions::assert_graph_error(&out, 403, "Authorization_RequestDenied");
}
