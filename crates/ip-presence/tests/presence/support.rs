//! Helpers the test modules share: an engine from inline JSON, a sign-in from its four
//! fields, and the "now" most tests run at.

use std::borrow::Cow;

use ip_presence::{PresenceConfig, PresenceEngine, ProcessOptions, SignIn};

/// An engine for a configuration given as JSON (it must be valid).
pub fn engine_of(v: serde_json::Value) -> PresenceEngine {
    PresenceEngine::new(PresenceConfig::from_value(v).expect("valid config")).expect("engine")
}

/// A successful sign-in.
pub fn si(id: &str, at: &str, ip: &str, upn: &str) -> SignIn<'static> {
    SignIn {
        id: Some(Cow::Owned(id.into())),
        created_date_time: Some(Cow::Owned(at.into())),
        ip_address: Some(Cow::Owned(ip.into())),
        user_principal_name: Some(Cow::Owned(upn.into())),
        status: None,
    }
}

/// Options at `now` (RFC 3339).
pub fn at(now: &str) -> ProcessOptions {
    ProcessOptions::at(now.parse().expect("RFC 3339 time"))
}

/// Options at 2024-05-08T12:00:00Z, the day after most test sign-ins.
pub fn opts() -> ProcessOptions {
    at("2024-05-08T12:00:00Z")
}
