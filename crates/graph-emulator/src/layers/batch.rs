//! JSON batching: `POST /v1.0/$batch` (and `/beta/$batch`) with up to 20 requests.
//!
//! Rules, from <https://learn.microsoft.com/en-us/graph/json-batching> unless said:
//! - the body is `{"requests": [...]}`; each request has a case-insensitive `id`
//!   unique in the batch, a `method` and a relative `url` (`/users/x` or `users/x`);
//!   optional `headers` (a `body` needs a `Content-Type` among them) and `dependsOn`
//!   (ids of the same batch). A malformed batch, a duplicate id, a `dependsOn` naming
//!   no request of the batch, or more than [`MAX_ITEMS`] requests is a 400 for the
//!   whole batch (the 20 cap: same page and
//!   <https://learn.microsoft.com/en-us/graph/known-issues>; the exact wording of
//!   Graph's message is not published, ours says what is wrong);
//! - the batch answers 200 `{"responses": [{id, status, headers, body}]}`, one per
//!   request; a request whose dependency failed gets 424 Failed Dependency;
//! - each request is authenticated, throttled and faulted as its own family (the
//!   page's "Throttling and batching": items are evaluated individually against the
//!   limits; a throttled item gets 429 with `Retry-After` in its own headers). Items
//!   draw only status faults: a dropped or truncated item has no meaning inside one
//!   answer;
//! - a JSON answer is embedded as JSON, anything else (a photo) as base64.
//!
//! This layer sits inside authentication (a bad token is the batch's 401) and
//! runs each item through `inner`: the authentication and throttle layers around
//! the routes, the same ones a request on the wire passes. Each item is logged,
//! with `batch` set to the `$batch`'s request id, before the batch's own line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::fault_injection::status_answer;
use crate::faults::{Family, FaultKind};
use crate::http_error::GraphError;
use crate::log::LogEntry;
use crate::request::{self, Ctx, FaultMark, classify};
use crate::routes::json_answer;
use crate::state::Shared;

/// Most requests in one batch.
pub(crate) const MAX_ITEMS: usize = 20;

/// What the layer needs: the shared state and the stack each item runs through.
#[derive(Clone)]
pub(crate) struct BatchState {
    pub shared: Arc<Shared>,
    pub inner: Router,
}

pub(crate) async fn batch(State(state): State<BatchState>, req: Request, next: Next) -> Response {
    if request::family(req.extensions(), req.uri()) != Family::Batch {
        return next.run(req).await;
    }
    let ctx = Ctx::of(req.extensions());
    if req.method() != Method::POST {
        return GraphError::method_not_allowed().render(&ctx);
    }
    let shared = &state.shared;
    // A test's scheduled deletion happens as the n-th batch arrives.
    let n = shared.batches.fetch_add(1, Ordering::SeqCst) + 1;
    shared.apply_scheduled_deletions(n);

    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let items = match parse(&body) {
        Ok(items) => items,
        Err(message) => return GraphError::bad_request(&message).render(&ctx),
    };
    let order = match run_order(&items) {
        Ok(o) => o,
        Err(message) => return GraphError::bad_request(&message).render(&ctx),
    };
    let version = if parts.uri.path().starts_with("/beta/") {
        "/beta"
    } else {
        "/v1.0"
    };
    let mut answers: HashMap<usize, Value> = HashMap::new();
    let mut ok: Vec<bool> = vec![false; items.len()];
    for i in order {
        let item = &items[i];
        let failed_dependency = item.depends_on.iter().any(|&d| !ok[d]);
        let (status, answer) = if failed_dependency {
            (424, failed_dependency_answer(&item.id))
        } else {
            run_item(&state, &ctx, &parts, version, item).await
        };
        ok[i] = (200..300).contains(&status);
        answers.insert(i, answer);
    }
    let responses: Vec<Value> = (0..items.len())
        .filter_map(|i| answers.remove(&i))
        .collect();
    json_answer(&json!({ "responses": responses }))
}

/// One request of the batch, as sent.
struct Item {
    id: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    /// Indexes of the items it depends on.
    depends_on: Vec<usize>,
}

fn parse(body: &[u8]) -> Result<Vec<Item>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid batch payload format: {e}"))?;
    let Some(requests) = v.get("requests").and_then(Value::as_array) else {
        return Err("Invalid batch payload format: a 'requests' array is required.".into());
    };
    if requests.is_empty() {
        return Err("Invalid batch payload format: 'requests' is empty.".into());
    }
    if requests.len() > MAX_ITEMS {
        return Err(format!(
            "The batch holds {} requests; a batch holds at most {MAX_ITEMS}.",
            requests.len()
        ));
    }
    let mut items: Vec<Item> = Vec::with_capacity(requests.len());
    let mut raw_deps: Vec<Vec<String>> = Vec::new();
    for (n, r) in requests.iter().enumerate() {
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
        let id = text("id").ok_or_else(|| format!("Request {n}: 'id' is required."))?;
        if items.iter().any(|i| i.id.eq_ignore_ascii_case(&id)) {
            return Err(format!(
                "Batch request ids must be unique: '{id}' is repeated."
            ));
        }
        let method =
            text("method").ok_or_else(|| format!("Request '{id}': 'method' is required."))?;
        let url = text("url").ok_or_else(|| format!("Request '{id}': 'url' is required."))?;
        let headers = match r.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            Some(_) => return Err(format!("Request '{id}': 'headers' must be an object.")),
        };
        let deps = match r.get("dependsOn") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|d| d.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("Request '{id}': 'dependsOn' must list ids."))?,
            Some(_) => return Err(format!("Request '{id}': 'dependsOn' must be an array.")),
        };
        raw_deps.push(deps);
        items.push(Item {
            id,
            method,
            url,
            headers,
            body: r.get("body").cloned().filter(|b| !b.is_null()),
            depends_on: Vec::new(),
        });
    }
    for (i, deps) in raw_deps.into_iter().enumerate() {
        for d in deps {
            let j = items
                .iter()
                .position(|x| x.id.eq_ignore_ascii_case(&d))
                .ok_or_else(|| {
                    format!(
                        "Request '{}' depends on '{d}', which is not a request of this batch.",
                        items[i].id
                    )
                })?;
            items[i].depends_on.push(j);
        }
    }
    Ok(items)
}

/// Items in an order where each comes after what it depends on; a cycle is a 400.
fn run_order(items: &[Item]) -> Result<Vec<usize>, String> {
    let mut order = Vec::with_capacity(items.len());
    let mut placed = vec![false; items.len()];
    while order.len() < items.len() {
        let before = order.len();
        for (i, item) in items.iter().enumerate() {
            if !placed[i] && item.depends_on.iter().all(|&d| placed[d]) {
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            return Err("The dependsOn of the batch's requests form a cycle.".into());
        }
    }
    Ok(order)
}

/// Run one item through the inner stack (or answer its own 400); its status and answer JSON.
async fn run_item(
    state: &BatchState,
    ctx: &Ctx,
    outer: &axum::http::request::Parts,
    version: &str,
    item: &Item,
) -> (u16, Value) {
    let started = std::time::Instant::now();
    let shared = &state.shared;
    let item_ctx = Ctx {
        request_id: Uuid::new_v4().to_string(),
        client_request_id: ctx.client_request_id.clone(),
        now: shared.clock.now(),
    };
    let url = item.url.trim();
    let path_and_query = if url.starts_with('/') {
        format!("{version}{url}")
    } else {
        format!("{version}/{url}")
    };
    let family = classify(path_and_query.split('?').next().unwrap_or(""));
    let mut entry = LogEntry {
        seq: 0,
        time: Timestamp::now().to_string(),
        method: item.method.to_ascii_uppercase(),
        path: path_and_query.split('?').next().unwrap_or("").to_string(),
        query: path_and_query.split_once('?').map(|(_, q)| q.to_string()),
        family: family.as_str().to_string(),
        status: 0,
        authorization: outer.headers.contains_key(header::AUTHORIZATION),
        consistency_level: header_of(item, "consistencylevel"),
        client_request_id: Some(ctx.client_request_id.clone()),
        content_type: header_of(item, "content-type"),
        user_agent: None,
        request_id: item_ctx.request_id.clone(),
        fault: None,
        micros: 0,
        token: None,
        retry_attempt: header_of(item, "retry-attempt"),
        batch: Some(ctx.request_id.clone()),
    };
    let refuse = |m: &str| GraphError::bad_request(m).render(&item_ctx);
    // An absolute URL is that item's 400 (the batch itself is answered): Graph's known
    // issue that batch URIs must be relative
    // (<https://github.com/microsoftgraph/microsoft-graph-docs/issues/6535>), reported
    // against Microsoft's Python SDK, whose batch items keep the absolute URL
    // (microsoftgraph/msgraph-sdk-python#1015, msgraph-sdk-python-core#1116; checked by
    // `python/msclients`). Graph's exact message there is not published.
    let response = if url.contains("://") {
        refuse("A batch request's url must be relative to the service root, e.g. /users.")
    } else if family == Family::Batch {
        refuse("A batch cannot hold another batch.")
    } else if item.body.is_some() && header_of(item, "content-type").is_none() {
        refuse("A batch request with a body needs a Content-Type header.")
    } else {
        match build_request(outer, item, &path_and_query, family, &item_ctx) {
            Err(m) => refuse(&m),
            Ok(req) => {
                let fault = {
                    let mut f = shared.faults.lock().expect("faults lock");
                    let (plan, rng) = &mut *f;
                    plan.draw(family, rng)
                };
                match fault {
                    Some(FaultKind::Status {
                        status,
                        retry_after,
                    }) if family.is_graph() => {
                        let mut r = status_answer(shared, &item_ctx, family, status, retry_after);
                        r.extensions_mut().insert(FaultMark(status.to_string()));
                        r
                    }
                    _ => call(&state.inner, req).await,
                }
            }
        }
    };
    let status = response.status().as_u16();
    let mut response = response;
    entry.fault = response.extensions_mut().remove::<FaultMark>().map(|m| m.0);
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k == "content-type" || k == "retry-after" || k == "location" || k.starts_with("x-ms-")
        })
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let answer = item_answer(&item.id, status, headers);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let mut answer = answer;
    if !body.is_empty() {
        let json_type = answer["headers"]
            .get("content-type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains("json"));
        let v = if json_type {
            serde_json::from_slice(&body).unwrap_or_else(|_| {
                Value::String(base64::engine::general_purpose::STANDARD.encode(&body))
            })
        } else {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&body))
        };
        answer["body"] = v;
    }
    entry.status = status;
    entry.micros = started.elapsed().as_micros() as u64;
    shared.log.push(entry);
    (status, answer)
}

fn header_of(item: &Item, name: &str) -> Option<String> {
    item.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// The 424 of an item whose dependency failed, with Graph's error body.
fn failed_dependency_answer(id: &str) -> Value {
    json!({
        "id": id,
        "status": 424,
        "headers": {"content-type": "application/json"},
        "body": {"error": {"code": "FailedDependency",
            "message": "The request could not be executed because a request it depends on failed."}}
    })
}

/// `{id, status, headers}` of an item's answer (the body is added by the caller).
fn item_answer(id: &str, status: u16, headers: Vec<(String, String)>) -> Value {
    let mut h = Map::new();
    for (k, v) in headers {
        h.insert(k, Value::String(v));
    }
    json!({ "id": id, "status": status, "headers": h })
}

/// The item as a request for the inner stack: the outer token, the item's headers and body.
fn build_request(
    outer: &axum::http::request::Parts,
    item: &Item,
    path_and_query: &str,
    family: Family,
    ctx: &Ctx,
) -> Result<Request, String> {
    let method = Method::from_bytes(item.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("'{}' is not an HTTP method.", item.method))?;
    let body = match &item.body {
        None => Body::empty(),
        Some(Value::String(s))
            if !header_of(item, "content-type").is_some_and(|t| t.contains("json")) =>
        {
            Body::from(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| "The body is not base64.".to_string())?,
            )
        }
        Some(v) => Body::from(serde_json::to_vec(v).unwrap_or_default()),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .body(body)
        .map_err(|e| format!("Invalid request URL: {e}"))?;
    let h = req.headers_mut();
    if let Some(auth) = outer.headers.get(header::AUTHORIZATION) {
        h.insert(header::AUTHORIZATION, auth.clone());
    }
    for (k, v) in &item.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) && k != header::AUTHORIZATION
        {
            h.insert(k, v);
        }
    }
    req.extensions_mut().insert(family);
    req.extensions_mut().insert(ctx.clone());
    Ok(req)
}

/// Run a request through the inner stack.
async fn call(inner: &Router, req: Request) -> Response {
    use tower_service::Service;
    let mut svc = inner.clone();
    match std::future::poll_fn(|cx| Service::<Request>::poll_ready(&mut svc, cx)).await {
        Ok(()) => match svc.call(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        },
        Err(e) => match e {},
    }
}
