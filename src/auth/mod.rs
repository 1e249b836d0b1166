//! Tokens: turning the asset's credentials into a bearer token for Graph.
//!
//! [`token`] asks the token endpoint (the oauth2 crate over the run's one
//! reqwest client, retried under the same [`crate::http::retry::RetryBudget`]
//! as Graph), [`cache`] keeps tokens on disk between processes
//! ([`shared_cache`]: in the shared PostgreSQL state, sealed under the state key), [`assertion`]
//! signs the client assertion of certificate credentials, and [`claims`] reads
//! the permissions a token carries (for `check`). It reads the
//! [`crate::asset::Asset`] and speaks through [`crate::http`]; it knows nothing
//! of Graph. Errors about the asset point into it (`/private_key`).

pub mod assertion;
pub mod cache;
pub mod claims;
pub mod shared_cache;
pub mod token;

pub use token::{IssuedToken, TokenProvider};
