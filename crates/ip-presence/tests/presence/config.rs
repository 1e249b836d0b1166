//! Configuration loading and validation: every error names a JSON pointer.

use ip_presence::*;
use serde_json::json;

fn pointers(v: serde_json::Value) -> Vec<String> {
    let errs = PresenceConfig::from_value(v).expect_err("invalid config");
    errs.into_iter().map(|e| e.pointer).collect()
}

fn range(name: &str, cidrs: &[&str]) -> serde_json::Value {
    json!({"name": name, "cidrs": cidrs, "location": "HQ"})
}

#[test]
fn defaults_apply() {
    let c = PresenceConfig::from_value(json!({
        "ranges": [range("a", &["10.0.0.0/8"])],
        "users": [{"upn": "a@x", "mode": "track_only"}]
    }))
    .unwrap();
    assert!(c.ranges[0].presence_enabled && c.ranges[0].logging_enabled);
    assert!(!c.ranges[0].remote);
    assert!(c.users[0].active);
    assert_eq!(c.settings, Settings::default());
    assert_eq!(c.settings.retention_days, 90);
    assert_eq!(c.settings.time_zone, "UTC");
    assert!(c.settings.access_logging && !c.settings.auto_create);
    assert!(!c.settings.count_failed_sign_ins);
}

#[test]
fn a_bad_cidr_is_named_by_pointer() {
    let p = pointers(json!({"ranges": [
        range("a", &["10.0.0.0/8"]),
        range("b", &["192.168.0.0/16", "300.1.2.0/24"]),
        range("c", &["10.0.0.1/24"]),
    ]}));
    assert_eq!(p, ["/ranges/1/cidrs/1", "/ranges/2/cidrs/0"]);
}

#[test]
fn the_same_prefix_in_two_ranges_is_refused() {
    let p = pointers(json!({"ranges": [
        range("a", &["10.0.0.0/8", "2001:db8::/32"]),
        range("b", &["10.1.0.0/16", "2001:db8:0::/32"]),
        // The mapped form of an IPv4 block is the same block.
        range("c", &["::ffff:10.0.0.0/104"]),
    ]}));
    assert_eq!(p, ["/ranges/1/cidrs/1", "/ranges/2/cidrs/0"]);
}

#[test]
fn presence_needs_exactly_one_of_location_and_remote() {
    let p = pointers(json!({"ranges": [
        {"name": "a", "cidrs": ["10.0.0.0/8"]},
        {"name": "b", "cidrs": ["11.0.0.0/8"], "location": "HQ", "remote": true},
        {"name": "c", "cidrs": ["12.0.0.0/8"], "presence_enabled": false},
        {"name": "d", "cidrs": ["13.0.0.0/8"], "remote": true},
    ]}));
    assert_eq!(p, ["/ranges/0", "/ranges/1"]);
}

#[test]
fn unknown_time_zones_and_retention_out_of_range_are_refused() {
    let p = pointers(json!({"settings": {
        "time_zone": "Mars/Olympus",
        "location_time_zones": {"HQ/Main": "Europe/Berlin", "Tokyo": "Asia/Tokio"}
    }}));
    assert_eq!(
        p,
        ["/settings/time_zone", "/settings/location_time_zones/Tokyo"]
    );
    for days in [0, 91] {
        let p = pointers(json!({"settings": {"retention_days": days}}));
        assert_eq!(p, ["/settings/retention_days"]);
    }
    let ok = PresenceConfig::from_value(json!({"settings": {"retention_days": 1}}));
    assert!(ok.is_ok());
}

#[test]
fn duplicate_upns_are_refused_regardless_of_case() {
    let p = pointers(json!({"users": [
        {"upn": "a@x", "mode": "off"},
        {"upn": "b@x", "mode": "off"},
        {"upn": " A@X ", "mode": "track_only"},
    ]}));
    assert_eq!(p, ["/users/2/upn"]);
}

#[test]
fn unknown_fields_and_wrong_types_are_named_by_the_schema() {
    let p = pointers(json!({"ranges": [{"name": "a", "cidrs": ["10.0.0.0/8"], "locaton": "HQ"}]}));
    assert_eq!(p, ["/ranges/0"]);
    let p = pointers(json!({"users": [{"upn": "a@x", "mode": "sometimes"}]}));
    assert_eq!(p, ["/users/0/mode"]);
    let p = pointers(json!({"settings": {"auto_create": "yes"}}));
    assert_eq!(p, ["/settings/auto_create"]);
}

#[test]
fn errors_display_pointer_and_message() {
    let errs = PresenceConfig::from_value(json!({"ranges": [range("a", &["nope"])]})).unwrap_err();
    let text = errs[0].to_string();
    assert!(text.starts_with("/ranges/0/cidrs/0: "), "{text}");
}

#[test]
fn configuration_loads_from_yaml_and_json_files() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("presence.yaml");
    std::fs::write(
        &yaml,
        "ranges:\n  - name: hq\n    cidrs: [10.0.0.0/8, '2001:db8::/32']\n    location: Berlin\nusers:\n  - {upn: a@x, mode: track_and_display}\nsettings:\n  time_zone: Europe/Berlin\n",
    )
    .unwrap();
    let c = PresenceConfig::from_path(&yaml).unwrap();
    assert_eq!(c.ranges[0].cidrs.len(), 2);
    assert_eq!(c.settings.time_zone, "Europe/Berlin");
    let js = dir.path().join("presence.json");
    std::fs::write(&js, serde_json::to_vec(&c).unwrap()).unwrap();
    assert_eq!(PresenceConfig::from_path(&js).unwrap(), c);
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "ranges:\n  - name: hq\n    cidrs: [10.0.0.0/33]\n    remote: true\n",
    )
    .unwrap();
    assert_eq!(
        PresenceConfig::from_path(&bad).unwrap_err()[0].pointer,
        "/ranges/0/cidrs/0"
    );
    assert!(PresenceConfig::from_path(&dir.path().join("missing.yaml")).is_err());
}

/// `from_path` on another thread, failing the test if it takes more than 10 s
/// (the old code hung on a FIFO and read /dev/zero until it was killed).
fn from_path_within_10s(path: std::path::PathBuf) -> Result<PresenceConfig, Vec<ConfigError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(PresenceConfig::from_path(&path)));
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("from_path did not return within 10 s")
}

/// Issue 19, item 4: only a regular file of at most 16 MiB is read.
#[test]
fn config_files_must_be_regular_and_at_most_16_mib() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let big = dir.path().join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_CONFIG_BYTES + 1)
        .unwrap();
    for (path, why) in [
        (fifo, "is not a regular file"),
        ("/dev/zero".into(), "is not a regular file"),
        (dir.path().to_path_buf(), "is not a regular file"),
        (big, "is larger than 16 MiB"),
    ] {
        let errs = from_path_within_10s(path.clone()).unwrap_err();
        assert_eq!(errs.len(), 1, "{path:?}: {errs:?}");
        assert_eq!(errs[0].pointer, "");
        assert!(errs[0].message.contains(why), "{path:?}: {errs:?}");
    }
}

#[test]
fn the_schema_is_draft_2020_12() {
    let s = PresenceConfig::json_schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(s["$defs"]["IpRange"].is_object());
}

#[test]
fn cidr_parsing_folds_mapped_blocks_and_accepts_bare_addresses() {
    assert_eq!(
        parse_cidr("::ffff:10.1.0.0/112").unwrap().to_string(),
        "10.1.0.0/16"
    );
    assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
    assert_eq!(
        parse_cidr("2001:db8::1").unwrap().to_string(),
        "2001:db8::1/128"
    );
    assert!(parse_cidr("10.0.0.1/24").is_err());
}
