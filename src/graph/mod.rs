//! Talking to Microsoft Graph: the one place where tokens, retries, pacing and
//! paging live. Actions build a [`GraphRequest`] and call [`GraphClient::send`]
//! or [`GraphClient::pages`]; they never see a token, a retry or a `nextLink`
//! host check.
//!
//! Layers, outermost first (smithy-rs style, around one plain call):
//! 1. pacing ([`pacing`]): a client-side limiter per (tenant, app, [`ApiFamily`]);
//! 2. retry ([`client`], deciding with [`crate::http::retry::RetryBudget`]):
//!    429/503/504 honour `Retry-After` (integer, fractional, HTTP date), else
//!    exponential backoff with jitter, capped in attempts and total time;
//!    a 401 `InvalidAuthenticationToken` gets one fresh token and one retry;
//! 3. auth: a bearer token from [`crate::auth::TokenProvider`], only ever sent
//!    to the asset's Graph host;
//! 4. the request itself ([`request`] out, [`response`] back), with a
//!    `client-request-id` GUID and our User-Agent.
//!
//! [`batch`] sends many requests as JSON batches (20 a `POST /$batch`), each
//! item paced, retried and answered as a single request would be.
//!
//! [`path`] builds paths from untrusted values and [`pages`] follows
//! `@odata.nextLink`. Refusals of bad input point relative to what this layer
//! was given; the caller places them in the envelope.

pub mod batch;
pub mod client;
pub mod pacing;
pub mod pages;
pub mod path;
pub mod request;
pub mod response;

pub use batch::{BatchItem, MAX_BATCH};
pub use client::{ClientOptions, GraphClient};
pub use pages::{Collected, Page, Pages};
pub use path::{GraphPath, odata_string};
pub use request::{ApiFamily, GraphRequest, MAX_JSON_BODY, MAX_PHOTO_BODY, Method};
pub use response::{GraphResponse, ResponseHeaders, unreadable_body};
