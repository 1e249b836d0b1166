//! The layers around the routes, outermost first (assembled in [`crate::server`]):
//!
//! 1. [`request_log`]: request ids, `request-id`/`client-request-id` on the answer,
//!    one [`crate::LogEntry`] per request.
//! 2. [`fault_injection`]: the fault plan's drop, status, slow and truncate faults,
//!    per route family, before the route runs.
//! 3. [`body`]: reads the request body (at most 4 MiB); server time counts from here.
//! 4. [`authenticate`]: Graph routes only: path, bearer token, tenant.
//! 5. [`batch`]: `POST /$batch` only: runs each item through authentication,
//!    throttling and the routes again (a stack [`crate::server`] hands it).
//! 6. [`throttle`]: Graph routes only: limits per app and family, on the virtual clock.
//!
//! Layers never call one another: what one tells another travels in the request's
//! or the answer's extensions (see [`crate::request`]).

pub(crate) mod authenticate;
pub(crate) mod batch;
pub(crate) mod body;
pub(crate) mod fault_injection;
pub(crate) mod request_log;
pub(crate) mod throttle;
