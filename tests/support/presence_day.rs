//! A working day of sign-ins for the presence store tests and benchmark (issue 17,
//! step 5): a configuration of two offices, a VPN and a range that keeps no access log,
//! users in every mode, and a seeded generator of sign-ins over two days (repeats,
//! unmatched addresses for discovery, failures), the same on every run.

use std::borrow::Cow;

use ip_presence::{PresenceConfig, PresenceEngine, ProcessOptions, SignIn};
use serde_json::json;

/// The engine of these sign-ins: `users` users `u0@x`.. (every fifth `track_only`,
/// every seventh `off`), retention 30 days, discovery on.
pub fn engine(users: usize) -> PresenceEngine {
    let users: Vec<_> = (0..users)
        .map(|i| {
            let mode = match i {
                i if i % 7 == 6 => "off",
                i if i % 5 == 4 => "track_only",
                _ => "track_and_display",
            };
            json!({"upn": format!("u{i}@x"), "mode": mode})
        })
        .collect();
    let config = json!({
        "ranges": [
            {"name": "hq", "cidrs": ["10.0.0.0/8"], "location": "Berlin"},
            {"name": "ny", "cidrs": ["10.1.0.0/16"], "location": "New York"},
            {"name": "vpn", "cidrs": ["192.0.2.0/24"], "remote": true},
            {"name": "quiet", "cidrs": ["10.8.0.0/16"], "location": "Tokyo", "logging_enabled": false}
        ],
        "users": users,
        "settings": {"retention_days": 30, "auto_create": true,
                     "location_time_zones": {"Berlin": "Europe/Berlin"}}
    });
    PresenceEngine::new(PresenceConfig::from_value(config).expect("valid config")).expect("engine")
}

/// One sign-in from its fields.
pub fn sign_in(id: &str, at: &str, ip: &str, upn: &str) -> SignIn<'static> {
    SignIn {
        id: Some(Cow::Owned(id.into())),
        created_date_time: Some(Cow::Owned(at.into())),
        ip_address: Some(Cow::Owned(ip.into())),
        user_principal_name: Some(Cow::Owned(upn.into())),
        status: None,
    }
}

/// `n` sign-ins of `users` users on 2024-05-07 and 08 (UTC), seeded: ids `s{seed}-{i}`,
/// addresses in every range and outside them all.
pub fn sign_ins(n: usize, users: usize, seed: u64) -> Vec<SignIn<'static>> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    (0..n)
        .map(|i| {
            let ip = match next(10) {
                0..=3 => format!("10.0.{}.{}", next(4), next(250) + 1),
                4 | 5 => format!("10.1.0.{}", next(250) + 1),
                6 => format!("192.0.2.{}", next(250) + 1),
                7 => format!("10.8.0.{}", next(250) + 1),
                _ => format!("203.0.{}.{}", 113 + next(2), next(250) + 1),
            };
            let minute = next(2 * 24 * 60);
            let at = format!(
                "2024-05-{:02}T{:02}:{:02}:{:02}Z",
                7 + minute / (24 * 60),
                minute / 60 % 24,
                minute % 60,
                next(60)
            );
            sign_in(
                &format!("s{seed}-{i}"),
                &at,
                &ip,
                &format!("u{}@x", next(users as u64)),
            )
        })
        .collect()
}

/// Processing at the end of the second day.
pub fn evening() -> ProcessOptions {
    ProcessOptions::at("2024-05-08T20:00:00Z".parse().expect("a time"))
}
