//! The asset: the connection profile of one run, as a platform stores it.
//!
//! It says where Graph is (URL, national cloud, API version), how to get a
//! token (the flow and its credentials), and how to talk HTTP (proxy, TLS,
//! timeouts, retry budget, client-side pacing). Two stages, as ripgrep parses
//! flags: [`spec`] is the flat JSON object of the contract and its JSON Schema;
//! [`profile`] applies the per-type rules and yields the typed [`Asset`].
//! [`parse`] runs both. Every layer above (http, auth, graph) reads the
//! [`Asset`]; this module depends on none of them.

pub mod profile;
pub mod spec;

use serde_json::Value;

pub use profile::{Asset, Flow, url_for_display};
pub use spec::{ApiVersion, AssetSpec, AssetType, RateLimit, RateLimits};

use crate::error::Result;

/// Validate `asset` against [`AssetSpec::schema`], then apply the per-type rules.
/// Pointers in errors are relative to the asset (`/tenant_id`); the runner places
/// them under `/asset`.
pub fn parse(asset: &Value) -> Result<Asset> {
    crate::schema::validate(&AssetSpec::schema(), asset)?;
    let spec: AssetSpec =
        serde_json::from_value(asset.clone()).map_err(|e| crate::schema::deserialize_error(&e))?;
    spec.into_asset()
}
