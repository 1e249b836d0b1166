//! `get_presences`: the presence of many users at once.
//!
//! Graph: `POST /communications/getPresencesByUserId` with `{"ids": [...]}`
//! (Presence.Read.All), at most [`PRESENCE_CHUNK`] ids a request, chunks sent
//! concurrently (the HTTP layer paces them against the presence limit). User
//! principal names are resolved first, [`UPN_GROUP`] at a time, with
//! `GET /users?$filter=userPrincipalName in ('a','b')&$select=id,userPrincipalName`
//! (User.Read.All).
//!
//! Duplicates (the same id twice, or a UPN and its object id) are fetched once
//! and reported once. A user Graph does not know never fails the batch: it is
//! listed under `not_found`.
//!
//! This is the hot path of a dashboard refreshing thousands of people, so the
//! bookkeeping borrows the input strings instead of copying them and keeps each
//! presence object as the raw JSON Graph sent (reading only its `id`) instead
//! of building and re-serialising a tree per user.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::get_presence::{Presence, is_object_id};
use super::{Action, ActionMeta, Context, Reply};
use crate::error::{Error, Result};
use crate::graph::{
    ApiFamily, GraphClient, GraphPath, GraphRequest, GraphResponse, Method, ResponseHeaders,
    odata_string,
};

/// Graph refuses more ids than this in one `getPresencesByUserId` call (a bare 400).
pub const PRESENCE_CHUNK: usize = 650;
/// Graph allows at most this many values in one `in (...)` filter.
pub const UPN_GROUP: usize = 15;
/// Requests in flight at once; the HTTP layer's pacing has the final word.
const CONCURRENCY: usize = 4;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Object ids (GUIDs) and/or user principal names, in the order the answer should keep.
    /// Duplicates are fetched once.
    #[schemars(length(min = 1, max = 100000), inner(length(min = 1, max = 1024)))]
    pub ids: Vec<String>,
}

/// Presences in input order, and the inputs Graph knows nothing about.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// One presence per distinct user, in the order of the user's first mention in `ids`.
    #[schemars(with = "Vec<Presence>")]
    pub value: Vec<Box<RawValue>>,
    /// Inputs (as given) with no user, or no presence, in input order.
    pub not_found: Vec<String>,
    /// The object id each user principal name of the input resolved to.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub resolved: Map<String, Value>,
}

pub struct GetPresences;

impl Action for GetPresences {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "get_presences",
        title: "Get presences",
        description: "Get the presence of up to 100,000 users (object ids and/or UPNs) in batches of 650, concurrently; users Graph does not know are listed under not_found.",
        permissions: &["Presence.Read.All", "User.Read.All"],
        changes_data: false,
        needs_graph: true,
        incremental: false,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        get_presences(graph, &input.ids).await
    }
}

/// One distinct input, in first-mention order.
struct Wanted<'a> {
    input: &'a str,
    /// Lower-cased input: the object id, or the UPN to resolve.
    key: Cow<'a, str>,
    upn: bool,
}

/// What we know of one distinct user.
enum Slot {
    Pending,
    Found(Box<RawValue>),
    Emitted,
}

async fn get_presences(graph: &GraphClient, ids: &[String]) -> Result<Reply<Output>> {
    // 1. Distinct inputs, case-insensitively (GUIDs and UPNs both are).
    let mut seen: HashSet<Cow<str>> = HashSet::with_capacity(ids.len());
    let mut wanted: Vec<Wanted> = Vec::with_capacity(ids.len());
    for input in ids {
        let key = lower(input);
        if seen.insert(key.clone()) {
            let upn = !is_object_id(input);
            wanted.push(Wanted { input, key, upn });
        }
    }
    drop(seen);

    // 2. UPNs to object ids, 15 at a time.
    let upns: Vec<&str> = wanted.iter().filter(|w| w.upn).map(|w| w.input).collect();
    let resolved = resolve_upns(graph, &upns).await?;

    // 3. One slot per distinct user.
    let mut slot_of: HashMap<&str, usize> = HashMap::with_capacity(wanted.len());
    let mut slot_ids: Vec<&str> = Vec::with_capacity(wanted.len());
    let mut slot_per_wanted: Vec<Option<usize>> = Vec::with_capacity(wanted.len());
    for w in &wanted {
        let id = if w.upn {
            resolved.get(w.key.as_ref()).map(String::as_str)
        } else {
            Some(w.key.as_ref())
        };
        slot_per_wanted.push(id.map(|id| {
            *slot_of.entry(id).or_insert_with(|| {
                slot_ids.push(id);
                slot_ids.len() - 1
            })
        }));
    }

    // 4. Presences, 650 ids a request, concurrently; each kept as the raw JSON Graph sent.
    let answers: Vec<GraphResponse> = stream::iter(slot_ids.chunks(PRESENCE_CHUNK))
        .map(|chunk| graph.send(presence_request(chunk)))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut slots: Vec<Slot> = slot_ids.iter().map(|_| Slot::Pending).collect();
    let mut headers = ResponseHeaders::new();
    for response in answers {
        for (id, presence) in presences_of(&response)? {
            let slot = slot_of
                .get(id.as_ref())
                .or_else(|| slot_of.get(id.to_ascii_lowercase().as_str()))
                .copied();
            if let Some(slot) = slot {
                slots[slot] = Slot::Found(presence.to_owned());
            }
        }
        headers = response.headers;
    }

    // 5. Input order; a user named twice (UPN and id) is reported once.
    let mut value = Vec::with_capacity(slot_ids.len());
    let mut not_found = Vec::new();
    let mut resolved_out = Map::new();
    for (w, slot) in wanted.iter().zip(slot_per_wanted) {
        if w.upn
            && let Some(id) = resolved.get(w.key.as_ref())
        {
            resolved_out.insert(w.input.to_string(), Value::String(id.clone()));
        }
        let Some(s) = slot else {
            not_found.push(w.input.to_string());
            continue;
        };
        match std::mem::replace(&mut slots[s], Slot::Emitted) {
            Slot::Found(p) => value.push(p),
            Slot::Emitted => {}
            Slot::Pending => {
                // Graph left this user out; every input naming them is reported.
                slots[s] = Slot::Pending;
                not_found.push(w.input.to_string());
            }
        }
    }
    Ok(Reply::ok(Output {
        value,
        not_found,
        resolved: resolved_out,
    })
    .with_headers(headers))
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The `getPresencesByUserId` request for one chunk of at most 650 ids.
pub fn presence_request(ids: &[&str]) -> GraphRequest {
    debug_assert!(ids.len() <= PRESENCE_CHUNK);
    GraphRequest::new(
        Method::Post,
        GraphPath::new("communications/getPresencesByUserId"),
        ApiFamily::Presence,
    )
    .json(serde_json::json!({ "ids": ids }))
}

/// `(id, presence)` pairs of one `getPresencesByUserId` answer, borrowed from its body.
fn presences_of(response: &GraphResponse) -> Result<Vec<(Cow<'_, str>, &RawValue)>> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        value: Vec<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    let unreadable = |e: serde_json::Error| {
        Error::internal(format!(
            "Graph answered getPresencesByUserId with a body we cannot read: {e}"
        ))
    };
    let answer: Answer = serde_json::from_slice(&response.body).map_err(unreadable)?;
    answer
        .value
        .into_iter()
        .map(|raw| {
            let IdOnly { id } = serde_json::from_str(raw.get()).map_err(unreadable)?;
            Ok((id, raw))
        })
        .collect()
}

/// The user lookup for one group of at most 15 UPNs.
pub fn upn_request(upns: &[&str]) -> GraphRequest {
    debug_assert!(upns.len() <= UPN_GROUP);
    let mut filter = String::from("userPrincipalName in (");
    for (i, upn) in upns.iter().enumerate() {
        if i > 0 {
            filter.push(',');
        }
        filter.push_str(&odata_string(upn));
    }
    filter.push(')');
    GraphRequest::get(GraphPath::new("users"), ApiFamily::Directory)
        .query("$filter", filter)
        .query("$select", "id,userPrincipalName")
}

/// Lower-cased UPN to object id (lower-cased), for the UPNs Graph knows.
async fn resolve_upns(graph: &GraphClient, upns: &[&str]) -> Result<HashMap<String, String>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Found {
        id: String,
        user_principal_name: String,
    }
    let groups: Vec<Vec<Found>> = stream::iter(upns.chunks(UPN_GROUP))
        .map(|group| async move {
            let mut found = Vec::new();
            let mut pages = graph.pages(upn_request(group));
            while let Some(page) = pages.next_page().await? {
                for item in page.items {
                    if let Ok(f) = serde_json::from_value::<Found>(item) {
                        found.push(f);
                    }
                }
            }
            Ok::<_, crate::Error>(found)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(groups
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f.user_principal_name.to_ascii_lowercase(),
                f.id.to_ascii_lowercase(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_filter_escapes_quotes_and_keeps_dollar() {
        let r = upn_request(&["o'brien@contoso.com", "$admin@contoso.com"]);
        assert_eq!(r.path.as_str(), "users");
        assert_eq!(
            r.query,
            vec![
                (
                    "$filter".to_string(),
                    "userPrincipalName in ('o''brien@contoso.com','$admin@contoso.com')"
                        .to_string()
                ),
                ("$select".to_string(), "id,userPrincipalName".to_string()),
            ]
        );
        assert!(r.headers.is_empty());
    }

    #[test]
    fn presence_request_posts_ids() {
        let r = presence_request(&["a", "b"]);
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path.as_str(), "communications/getPresencesByUserId");
        assert_eq!(r.family, ApiFamily::Presence);
        assert_eq!(r.body, Some(serde_json::json!({"ids": ["a", "b"]})));
    }

    #[test]
    fn ten_thousand_ids_make_sixteen_chunks() {
        let ids: Vec<String> = (0..10_000)
            .map(|i| format!("00000000-0000-0000-0000-{i:012}"))
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(refs.chunks(PRESENCE_CHUNK).count(), 16);
        assert!(refs.chunks(PRESENCE_CHUNK).all(|c| c.len() <= 650));
    }

    #[test]
    fn lower_borrows_when_already_lower() {
        assert!(matches!(lower("abc@x.com"), Cow::Borrowed(_)));
        assert_eq!(lower("ABC@x.com"), "abc@x.com");
    }
}
