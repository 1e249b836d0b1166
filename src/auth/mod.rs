//! Assets and tokens: turning an asset into a bearer token for Graph.
//!
//! [`asset`] parses and validates the asset of the contract. Token requests
//! (the oauth2 crate over our one reqwest client), the on-disk token cache and
//! the `check` command live beside it.

pub mod asset;

pub use asset::{ApiVersion, Asset, AssetSpec, AssetType, Flow, RateLimit, RateLimits};
