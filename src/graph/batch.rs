//! JSON batching: many Graph requests in few round trips, each with its own answer.
//!
//! Graph takes up to [`MAX_BATCH`] requests in one `POST /$batch`
//! (<https://learn.microsoft.com/en-us/graph/json-batching>, "up to 20"; also
//! <https://learn.microsoft.com/en-us/graph/known-issues>, "Limit on batch size").
//! The batch answer is 200 whatever its items got: every item carries its own
//! `status`, `headers` and `body`, and the answers may come in any order, matched
//! by `id` (same page). A body that is not JSON (a photo) comes base64-encoded.
//!
//! [`GraphClient::batch`] takes any number of [`BatchItem`]s and gives one
//! result per item, in input order:
//! - items are packed 20 to a batch; an item and the items it `dependsOn`
//!   (indexes of earlier items) always travel in the same batch, as Graph
//!   requires (the json-batching page: dependencies are resolved inside one batch);
//! - each item counts against its own family's client-side limiter, as Graph
//!   evaluates every item against the limits of its resource (json-batching page,
//!   "Throttling and batching"); the `$batch` POST itself is not paced;
//! - an item answered 429/503/504 is retried, honouring its own `Retry-After`,
//!   with a [`RetryBudget`] per item, exactly as a single request would be; an
//!   item that failed only because its dependency did (424 Failed Dependency)
//!   goes again with it;
//! - the batch POST goes through the usual retry loop (token renewal, 5xx,
//!   transport errors while every item only reads), so a failure of the whole
//!   batch is the call's error; an item's error is that item's result.
//!
//! Up to [`CONCURRENT_BATCHES`] batches are in flight at once; pacing has the final word.

use std::time::Duration;

use base64::Engine;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::client::GraphClient;
use super::path::GraphPath;
use super::request::{ApiFamily, GraphRequest, MAX_JSON_BODY};
use super::response::{GraphResponse, ResponseHeaders, graph_error};
use crate::error::{Error, Result};
use crate::http::retry::{self, Decision, RetryBudget};

/// Most requests in one `$batch` (json-batching page: "up to 20").
pub const MAX_BATCH: usize = 20;
/// Batches in flight at once.
pub const CONCURRENT_BATCHES: usize = 4;
/// Largest batch answer read: twenty items of the largest JSON answer would be
/// absurd; a batch of photos (16 MiB each, base64) fits.
const MAX_BATCH_BODY: u64 = 512 << 20;

/// One request of a batch and the earlier items (indexes into the same list) it depends on.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub request: GraphRequest,
    /// Indexes of earlier items that must succeed first (`dependsOn`).
    pub depends_on: Vec<usize>,
}

impl BatchItem {
    pub fn new(request: GraphRequest) -> Self {
        BatchItem {
            request,
            depends_on: Vec::new(),
        }
    }
    /// Run after item `index` (an earlier one) has succeeded.
    pub fn after(mut self, index: usize) -> Self {
        self.depends_on.push(index);
        self
    }
}

/// How many `$batch` requests `items` will take (without retries).
pub fn batch_count(items: &[BatchItem]) -> Result<usize> {
    Ok(pack(items)?.len())
}

/// The items in batches of at most [`MAX_BATCH`], each item with all it depends on.
fn pack(items: &[BatchItem]) -> Result<Vec<Vec<usize>>> {
    // Union of dependency groups: every item points at its group's first item.
    let mut group: Vec<usize> = (0..items.len()).collect();
    for (i, item) in items.iter().enumerate() {
        for &d in &item.depends_on {
            if d >= i {
                return Err(Error::internal(format!(
                    "batch item {i} depends on item {d}, which is not an earlier one"
                )));
            }
            let (a, b) = (root(&mut group, d), root(&mut group, i));
            group[a.max(b)] = a.min(b);
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut slot: Vec<Option<usize>> = vec![None; items.len()];
    for i in 0..items.len() {
        let r = root(&mut group, i);
        let g = *slot[r].get_or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for g in groups {
        if g.len() > MAX_BATCH {
            return Err(Error::internal(format!(
                "{} batch items depend on one another; a batch holds at most {MAX_BATCH}",
                g.len()
            )));
        }
        match batches.last_mut() {
            Some(last) if last.len() + g.len() <= MAX_BATCH => last.extend(g),
            _ => batches.push(g),
        }
    }
    Ok(batches)
}

fn root(group: &mut [usize], mut i: usize) -> usize {
    while group[i] != i {
        group[i] = group[group[i]];
        i = group[i];
    }
    i
}

/// One answer inside the batch answer.
#[derive(Deserialize)]
struct ItemAnswer {
    id: String,
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct BatchAnswer {
    responses: Vec<ItemAnswer>,
}

/// What one item needs between attempts.
struct Pending {
    index: usize,
    budget: RetryBudget,
    /// Why the last attempt failed, for the final error.
    last: Option<Error>,
}

impl GraphClient {
    /// Send `items` in `$batch` requests (see the module doc); one result per item, in order.
    /// The outer `Err` is a failure of a whole batch (or a dependency list that cannot be batched).
    pub async fn batch(&self, items: Vec<BatchItem>) -> Result<Vec<Result<GraphResponse>>> {
        let batches = pack(&items)?;
        let items = &items;
        let done: Vec<Vec<(usize, Result<GraphResponse>)>> = stream::iter(batches)
            .map(|b| self.send_batch(items, b))
            .buffer_unordered(CONCURRENT_BATCHES)
            .try_collect()
            .await?;
        let mut out: Vec<Option<Result<GraphResponse>>> = (0..items.len()).map(|_| None).collect();
        for (i, r) in done.into_iter().flatten() {
            out[i] = Some(r);
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("a batch item got no result"))))
            .collect())
    }

    /// One batch's items until each has a final answer.
    async fn send_batch(
        &self,
        items: &[BatchItem],
        indexes: Vec<usize>,
    ) -> Result<Vec<(usize, Result<GraphResponse>)>> {
        let asset = self.asset();
        let mut pending: Vec<Pending> = indexes
            .iter()
            .map(|&index| Pending {
                index,
                budget: RetryBudget::new(asset.max_attempts, asset.max_retry_time),
                last: None,
            })
            .collect();
        let mut done: Vec<(usize, Result<GraphResponse>)> = Vec::with_capacity(indexes.len());
        let mut succeeded: Vec<usize> = Vec::new();
        while !pending.is_empty() {
            let mut urls = Vec::with_capacity(pending.len());
            let mut requests = Vec::with_capacity(pending.len());
            let mut max_body: u64 = 0;
            for p in &mut pending {
                let request = &items[p.index].request;
                self.pacer(request.family).acquire().await?;
                p.budget.start_attempt();
                let url = self.url_for(request)?;
                requests.push(self.item_json(p.index, request, &items[p.index], &succeeded, &url));
                max_body = max_body.saturating_add(request.max_body.saturating_mul(4) / 3);
                urls.push(url);
            }
            let idempotent = pending
                .iter()
                .all(|p| items[p.index].request.is_idempotent());
            let mut prepared = self.prepare(
                GraphRequest::post(GraphPath::new("$batch"), ApiFamily::Directory)
                    .json(json!({ "requests": requests })),
            )?;
            prepared.idempotent = idempotent;
            prepared.max_body = max_body.clamp(MAX_JSON_BODY, MAX_BATCH_BODY);
            let response = self.execute_paced(&prepared, false).await?;
            let answer: BatchAnswer = response.json()?;
            let mut by_id: std::collections::HashMap<String, ItemAnswer> = answer
                .responses
                .into_iter()
                .map(|a| (a.id.clone(), a))
                .collect();

            let mut again: Vec<Pending> = Vec::new();
            let mut wait = Duration::ZERO;
            let mut retrying: Vec<usize> = Vec::new();
            // Items first, dependants after: a 424 goes again only if its dependency does.
            for (p, url) in pending.into_iter().zip(urls) {
                let Some(a) = by_id.remove(&p.index.to_string()) else {
                    done.push((
                        p.index,
                        Err(Error::graph(
                            response.status,
                            format!("Graph's batch answer has no answer for {}", url.path()),
                        )
                        .with_code("IncompleteBatchAnswer")),
                    ));
                    continue;
                };
                let headers = item_headers(a.headers);
                let body = item_body(&headers, a.body.as_deref());
                if (200..300).contains(&a.status) {
                    succeeded.push(p.index);
                    done.push((
                        p.index,
                        Ok(GraphResponse {
                            status: a.status,
                            headers,
                            body,
                        }),
                    ));
                    continue;
                }
                let error = graph_error(a.status, &headers, &body, &url);
                let deps_retry = items[p.index]
                    .depends_on
                    .iter()
                    .any(|d| retrying.contains(d));
                if a.status == 424 && deps_retry {
                    // Not its own failure: it goes again with its dependency.
                    let mut p = p;
                    p.budget.refund_attempt();
                    again.push(p);
                    continue;
                }
                if !retry::is_retryable_status(a.status) {
                    done.push((p.index, Err(error)));
                    continue;
                }
                let retry_after = headers
                    .get("retry-after")
                    .and_then(Value::as_str)
                    .and_then(|v| retry::parse_retry_after(v, jiff::Timestamp::now()));
                let mut p = p;
                match p.budget.decide(retry_after) {
                    Decision::Wait { wait: w, source } => {
                        tracing::warn!(
                            "retrying batch item {}: Graph answered {}; waiting {:.3}s ({})",
                            url.path(),
                            a.status,
                            w.as_secs_f64(),
                            source.as_str()
                        );
                        wait = wait.max(w);
                        p.last = Some(error);
                        retrying.push(p.index);
                        again.push(p);
                    }
                    Decision::GiveUp(reason) => {
                        let mut err = Error::network(format!(
                            "{} {}: {reason}; last status {}",
                            items[p.index].request.method.as_str(),
                            url.path(),
                            a.status
                        ));
                        err.status_code = Some(a.status);
                        err.code = error.code;
                        err.request_id = error.request_id;
                        done.push((p.index, Err(err)));
                    }
                }
            }
            // A dependant whose dependency gave up stays failed (424) rather than retried.
            let (go, stuck): (Vec<Pending>, Vec<Pending>) = again.into_iter().partition(|p| {
                retrying.contains(&p.index)
                    || items[p.index]
                        .depends_on
                        .iter()
                        .any(|d| retrying.contains(d))
            });
            for p in stuck {
                let e = p
                    .last
                    .unwrap_or_else(|| Error::graph(424, "a request it depends on failed"));
                done.push((p.index, Err(e)));
            }
            pending = go;
            if !pending.is_empty() && !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(done)
    }

    /// The JSON of one item: relative URL, method, headers, body, `dependsOn`.
    fn item_json(
        &self,
        index: usize,
        request: &GraphRequest,
        item: &BatchItem,
        succeeded: &[usize],
        url: &url::Url,
    ) -> Value {
        // The relative URL: the full one without `{graph_url}{version}` (json-batching page:
        // "url: the relative resource URL the individual request would typically use").
        let base = self.base_url().as_str();
        let relative = format!("/{}", url.as_str().get(base.len()..).unwrap_or(""));
        let mut v = Map::new();
        v.insert("id".into(), json!(index.to_string()));
        v.insert("method".into(), json!(request.method.as_str()));
        v.insert("url".into(), json!(relative));
        let mut headers = Map::new();
        for (name, value) in &request.headers {
            headers.insert((*name).to_string(), json!(value));
        }
        if let Some(body) = &request.body {
            // json-batching page: a body needs a Content-Type header.
            headers
                .entry("Content-Type")
                .or_insert_with(|| json!("application/json"));
            v.insert("body".into(), body.clone());
        }
        if !headers.is_empty() {
            v.insert("headers".into(), Value::Object(headers));
        }
        // A dependency that already succeeded (in an earlier round) is not named again.
        let deps: Vec<Value> = item
            .depends_on
            .iter()
            .filter(|d| !succeeded.contains(d))
            .map(|d| json!(d.to_string()))
            .collect();
        if !deps.is_empty() {
            v.insert("dependsOn".into(), Value::Array(deps));
        }
        Value::Object(v)
    }
}

/// An item's headers with lower-case names (Graph sends `Retry-After`, `Content-Type`).
fn item_headers(headers: Map<String, Value>) -> ResponseHeaders {
    headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// An item's body as the bytes a single request would have got: JSON as it came,
/// a base64 string of a non-JSON answer decoded (json-batching page: "body ... can be
/// a JSON object or a base64 URL-encoded value, for example, when the body is an image").
fn item_body(headers: &ResponseHeaders, body: Option<&RawValue>) -> bytes::Bytes {
    let Some(raw) = body else {
        return bytes::Bytes::new();
    };
    let json = headers
        .get("content-type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.to_ascii_lowercase().contains("json"));
    if !json && let Ok(s) = serde_json::from_str::<String>(raw.get()) {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ];
        for e in engines {
            if let Ok(bytes) = e
                .decode(s.trim_end_matches('=').as_bytes())
                .or_else(|_| e.decode(s.as_bytes()))
            {
                return bytes.into();
            }
        }
    }
    bytes::Bytes::copy_from_slice(raw.get().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(n: usize) -> Vec<BatchItem> {
        (0..n)
            .map(|i| {
                BatchItem::new(GraphRequest::get(
                    GraphPath::user(&format!("u{i}")),
                    ApiFamily::Directory,
                ))
            })
            .collect()
    }

    #[test]
    fn twenty_to_a_batch() {
        assert_eq!(pack(&get(0)).unwrap().len(), 0);
        assert_eq!(pack(&get(20)).unwrap().len(), 1);
        let b = pack(&get(41)).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [20, 20, 1]);
    }

    #[test]
    fn dependants_travel_with_their_dependency() {
        let mut items = get(25);
        // 19 independent items, then a chain of three that does not fit beside them.
        items[20] = items[20].clone().after(19);
        items[21] = items[21].clone().after(20);
        let b = pack(&items).unwrap();
        let with_19 = b.iter().find(|b| b.contains(&19)).unwrap();
        assert!(with_19.contains(&20) && with_19.contains(&21), "{b:?}");
        assert!(b.iter().all(|b| b.len() <= MAX_BATCH));
    }

    #[test]
    fn bad_dependencies_are_refused() {
        let mut items = get(2);
        items[0] = items[0].clone().after(1);
        assert!(pack(&items).is_err());
        let chain: Vec<BatchItem> = get(21)
            .into_iter()
            .enumerate()
            .map(|(i, item)| if i == 0 { item } else { item.after(i - 1) })
            .collect();
        assert!(pack(&chain).is_err());
    }

    #[test]
    fn bodies_decode_as_a_single_answer_would() {
        let mut h = ResponseHeaders::new();
        h.insert("content-type".into(), json!("image/jpeg"));
        let raw = RawValue::from_string("\"/9j/4AA=\"".into()).unwrap();
        assert_eq!(
            &item_body(&h, Some(&raw))[..],
            &[0xff, 0xd8, 0xff, 0xe0, 0][..]
        );
        h.insert("content-type".into(), json!("application/json"));
        let raw = RawValue::from_string("{\"a\":1}".into()).unwrap();
        assert_eq!(&item_body(&h, Some(&raw))[..], b"{\"a\":1}");
    }
}
