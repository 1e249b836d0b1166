//! The HTTP service: the routes ([`crate::routes::serve`]) inside their layers
//! ([`crate::layers`]), outermost first: request log, fault injection, body,
//! authentication, JSON batching, throttling. The batch layer runs each item
//! through a second stack of authentication, throttling and the routes.

use std::sync::Arc;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};

use crate::layers::batch::BatchState;
use crate::layers::{authenticate, batch, body, fault_injection, request_log, throttle};
use crate::routes;
use crate::state::Shared;

/// Build the router over shared state. The layer added last runs first.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let items = Router::new()
        .fallback(routes::serve)
        .layer(from_fn_with_state(shared.clone(), throttle::throttle))
        .layer(from_fn_with_state(
            shared.clone(),
            authenticate::authenticate,
        ))
        .with_state(shared.clone());
    Router::new()
        .fallback(routes::serve)
        .layer(from_fn_with_state(shared.clone(), throttle::throttle))
        .layer(from_fn_with_state(
            BatchState {
                shared: shared.clone(),
                inner: items,
            },
            batch::batch,
        ))
        .layer(from_fn_with_state(
            shared.clone(),
            authenticate::authenticate,
        ))
        .layer(from_fn(body::read_body))
        .layer(from_fn_with_state(
            shared.clone(),
            fault_injection::inject_faults,
        ))
        .layer(from_fn_with_state(shared.clone(), request_log::request_log))
        .with_state(shared)
}
