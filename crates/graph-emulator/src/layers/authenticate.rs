//! Authentication of Graph requests (the token endpoint and unknown paths pass
//! through): the path is read first (a malformed one is a 400 before any token
//! check), then the bearer token must be valid and of this tenant (else 401).
//! The parsed [`GraphTarget`] and the [`Caller`] go on to the throttle and the route.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::access_token::{self, Caller};
use crate::http_error::GraphError;
use crate::request::{self, Ctx, GraphTarget};
use crate::state::Shared;

pub(crate) async fn authenticate(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !request::family(req.extensions(), req.uri()).is_graph() {
        return next.run(req).await;
    }
    let ctx = Ctx::of(req.extensions());
    let target = match GraphTarget::parse(req.uri()) {
        Ok(t) => t,
        Err(message) => return GraphError::bad_request(&message).render(&ctx),
    };
    let caller: Caller = match access_token::validate(&shared, req.headers(), ctx.now) {
        Ok(c) => c,
        Err(e) => return e.render(&ctx),
    };
    let tenant_id = shared
        .dir
        .read()
        .expect("dir lock")
        .tenant
        .tenant_id
        .to_string();
    if caller.tenant_id != tenant_id {
        return GraphError::unauthorized("Access token validation failure. Invalid audience.")
            .render(&ctx);
    }
    req.extensions_mut().insert(target);
    req.extensions_mut().insert(caller);
    next.run(req).await
}
