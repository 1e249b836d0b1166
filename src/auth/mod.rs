//! Assets and tokens: turning an asset into a bearer token for Graph.
//!
//! [`asset`] parses and validates the asset of the contract. [`token`] asks the
//! token endpoint (the oauth2 crate over our one reqwest client), [`cache`]
//! keeps tokens on disk between processes, [`assertion`] signs the client
//! assertion of certificate credentials, and [`claims`] reads the permissions
//! a token carries (for `check`).

pub mod assertion;
pub mod asset;
pub mod cache;
pub mod claims;
pub mod token;

pub use asset::{ApiVersion, Asset, AssetSpec, AssetType, Flow, RateLimit, RateLimits};
pub use token::{IssuedToken, TokenProvider};
