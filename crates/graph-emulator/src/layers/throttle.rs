//! Throttling of Graph requests per app and family (the token endpoint and unknown
//! paths pass through), on the emulator's virtual clock: a refused request gets
//! Graph's 429 with `Retry-After`, `x-ms-throttle-*` and `x-ms-resource-unit`
//! headers (logged as fault `throttled`); an admitted one gets `x-ms-resource-unit`
//! (directory families) and, from 80% use, `x-ms-throttle-limit-percentage`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::access_token::Caller;
use crate::faults::{Family, Throttled, format_retry_after};
use crate::http_error::GraphError;
use crate::odata::Query;
use crate::request::{self, Ctx, FaultMark, GraphTarget};
use crate::state::Shared;

/// Resource units a request costs against the directory bucket.
fn cost(family: Family, method: &Method, segments: &[String], query: &Query) -> u32 {
    match family {
        Family::Users if method == Method::PATCH => 3,
        Family::Users if segments.len() == 1 => {
            if query.get("$select").is_some() {
                1
            } else {
                2
            }
        }
        Family::MemberOf => 2,
        _ => 1,
    }
}

pub(crate) async fn throttle(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let family = request::family(req.extensions(), req.uri());
    if !family.is_graph() {
        return next.run(req).await;
    }
    let (Some(target), Some(caller)) = (
        req.extensions().get::<GraphTarget>(),
        req.extensions().get::<Caller>(),
    ) else {
        // Not authenticated: the route refuses it.
        return next.run(req).await;
    };
    let units = cost(family, req.method(), &target.segments, &target.query);
    let admitted = {
        let mut t = shared.throttle.lock().expect("throttle lock");
        let (config, state) = &mut *t;
        let fractional = config.fractional_retry_after;
        state
            .admit(
                config,
                &caller.tenant_id,
                &caller.app_id,
                family,
                units,
                shared.clock.now(),
            )
            .map_err(|t| (t, fractional))
    };
    let usage = match admitted {
        Ok(u) => u,
        Err((t, fractional)) => {
            return too_many_requests(&Ctx::of(req.extensions()), &t, fractional, units);
        }
    };
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if matches!(
        family,
        Family::Users | Family::MemberOf | Family::Photo | Family::Organization
    ) {
        h.insert("x-ms-resource-unit", HeaderValue::from(units));
    }
    if let Some(u) = usage.filter(|u| *u >= 0.8)
        && let Ok(v) = HeaderValue::from_str(&format!("{u:.1}"))
    {
        h.insert("x-ms-throttle-limit-percentage", v);
    }
    resp
}

/// Graph's 429 for a throttled request.
fn too_many_requests(ctx: &Ctx, t: &Throttled, fractional: bool, units: u32) -> Response {
    let mut r = GraphError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests. Application is over its request limit.",
    )
    .render(ctx);
    let h = r.headers_mut();
    let ra = format_retry_after(t.retry_after.as_secs_f64(), fractional);
    for (k, v) in [
        ("retry-after", ra),
        (
            "x-ms-throttle-limit-percentage",
            format!("{:.1}", t.limit_percentage),
        ),
        ("x-ms-throttle-scope", t.scope.clone()),
        ("x-ms-throttle-information", t.information.to_string()),
        ("x-ms-resource-unit", units.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    r.extensions_mut().insert(FaultMark("throttled".into()));
    r
}
