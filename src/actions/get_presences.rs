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
//! bookkeeping borrows the input strings instead of copying them, and a presence
//! is matched to its user by position in its chunk before any hash lookup (Graph
//! answers in order). Object ids as numbers, their hash tables and the reading of
//! answers (each presence kept as the JSON Graph sent) are in [`crate::fastpath`].

use std::borrow::Cow;
use std::collections::HashSet;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::get_presence::Presence;
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::fastpath::guid::{self, IdMap, IdSet};
use crate::graph::{GraphClient, ResponseHeaders};
use crate::presences::{
    CONCURRENCY, PRESENCE_CHUNK, Resolved, presence_request, presences_of, resolve_upns,
};
use crate::progress::Progress;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Object ids (GUIDs) and/or user principal names, in the order the answer should keep.
    /// Duplicates are fetched once.
    /// No control characters (CR, LF, NUL, ...) in an id or UPN.
    #[schemars(length(min = 1, max = 100000))]
    #[schemars(extend("items" = {"type": "string", "minLength": 1, "maxLength": 1024,
                                 "pattern": "^[^\\u0000-\\u001F\\u007F]*$"}))]
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
        permissions: &[
            &["Presence.Read.All"],
            // UPN resolution, GET /users?$filter=...: User.Read.All app-only
            // (https://learn.microsoft.com/graph/api/user-list#permissions).
            &["User.Read.All"],
        ],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        get_presences(graph, &input.ids, &ctx.progress).await
    }
}

/// A user as named in the input: an object id (as a number, so case and
/// hashing cost nothing) or a lower-cased UPN.
#[derive(Debug)]
enum Key<'a> {
    Id(u128),
    Upn(Cow<'a, str>),
}

/// What we know of one distinct user.
enum Slot {
    Pending,
    Found(Box<RawValue>),
    Emitted,
}

/// Distinct users, their UPNs resolved, their presences fetched, reported in input order.
pub(crate) async fn get_presences(
    graph: &GraphClient,
    ids: &[String],
    progress: &Progress,
) -> Result<Reply<Output>> {
    let wanted = distinct(ids);
    let upns: Vec<&str> = wanted
        .iter()
        .filter(|(_, k)| matches!(k, Key::Upn(_)))
        .map(|(input, _)| *input)
        .collect();
    let resolved = resolve_upns(graph, &upns).await?;
    let users = Users::of(&wanted, &resolved);
    let (slots, headers) = fetch(graph, &users, progress).await?;
    Ok(Reply::ok(in_input_order(&wanted, &users, slots, &resolved)).with_headers(headers))
}

/// Distinct inputs, in first-mention order, case-insensitively (GUIDs and UPNs both are).
fn distinct(ids: &[String]) -> Vec<(&str, Key<'_>)> {
    let mut seen_ids = IdSet::with_capacity_and_hasher(ids.len(), Default::default());
    let mut seen_upns: HashSet<Cow<str>> = HashSet::new();
    let mut wanted = Vec::with_capacity(ids.len());
    for input in ids {
        let fresh = match guid::parse(input) {
            Some(n) => seen_ids.insert(n).then_some(Key::Id(n)),
            None => {
                let upn = lower(input);
                seen_upns.insert(upn.clone()).then_some(Key::Upn(upn))
            }
        };
        if let Some(key) = fresh {
            wanted.push((input.as_str(), key));
        }
    }
    wanted
}

/// One slot per distinct user (a UPN and its object id are one user).
struct Users<'a> {
    /// The id sent for each slot: the input's own text (lower-cased, as Graph writes
    /// ids), or the resolved id.
    ids: Vec<Cow<'a, str>>,
    /// The same ids as numbers.
    nums: Vec<u128>,
    /// The slot of each id.
    slot_of: IdMap<usize>,
    /// The slot of each distinct input; `None` for a UPN Graph does not know.
    per_input: Vec<Option<usize>>,
}

impl<'a> Users<'a> {
    fn of(wanted: &[(&'a str, Key<'a>)], resolved: &'a Resolved) -> Self {
        let mut users = Users {
            ids: Vec::with_capacity(wanted.len()),
            nums: Vec::with_capacity(wanted.len()),
            slot_of: IdMap::with_capacity_and_hasher(wanted.len(), Default::default()),
            per_input: Vec::with_capacity(wanted.len()),
        };
        for (input, key) in wanted {
            let id = match key {
                Key::Id(n) => Some((*n, lower(input))),
                Key::Upn(upn) => resolved
                    .get(upn.as_ref())
                    .map(|(n, id)| (*n, Cow::Borrowed(id.as_str()))),
            };
            users.per_input.push(id.map(|(n, id)| {
                *users.slot_of.entry(n).or_insert_with(|| {
                    users.ids.push(id);
                    users.nums.push(n);
                    users.ids.len() - 1
                })
            }));
        }
        users
    }
}

/// Presences, 650 ids a request, concurrently; each kept as the raw JSON Graph sent,
/// in its user's slot. An answer is read as soon as it arrives and its body dropped,
/// so bodies and copies are not all held at once (less memory to map and fault in).
/// Each answered chunk is a progress step (users asked for of all distinct users).
async fn fetch(
    graph: &GraphClient,
    users: &Users<'_>,
    progress: &Progress,
) -> Result<(Vec<Slot>, ResponseHeaders)> {
    let total = users.ids.len() as u64;
    let mut asked = 0u64;
    let mut answers = stream::iter(users.ids.chunks(PRESENCE_CHUNK).enumerate())
        .map(|(k, chunk)| async move {
            let response = graph.send(presence_request(chunk)).await?;
            Ok::<_, Error>((k * PRESENCE_CHUNK, response))
        })
        .buffer_unordered(CONCURRENCY);
    let mut slots: Vec<Slot> = users.ids.iter().map(|_| Slot::Pending).collect();
    let mut headers = ResponseHeaders::new();
    while let Some((first, response)) = answers.try_next().await? {
        for (j, (id, presence)) in presences_of(&response)?.into_iter().enumerate() {
            let Some(n) = id else { continue };
            // Slots hold distinct ids, so a match by position is the slot itself.
            let slot = match users.nums.get(first + j) {
                Some(&m) if m == n => Some(first + j),
                _ => users.slot_of.get(&n).copied(),
            };
            if let Some(slot) = slot {
                slots[slot] = Slot::Found(presence.to_owned());
            }
        }
        headers = response.headers;
        asked += (users.ids.len() - first).min(PRESENCE_CHUNK) as u64;
        if progress.is_wanted() {
            progress.report(asked, Some(total), &format!("{asked} of {total} presences"));
        }
    }
    Ok((slots, headers))
}

/// The answer in input order; a user named twice (UPN and id) is reported once.
fn in_input_order(
    wanted: &[(&str, Key)],
    users: &Users,
    mut slots: Vec<Slot>,
    resolved: &Resolved,
) -> Output {
    let mut value = Vec::with_capacity(slots.len());
    let mut not_found = Vec::new();
    let mut resolved_out = Map::new();
    for ((input, key), slot) in wanted.iter().zip(&users.per_input) {
        if let Key::Upn(upn) = key
            && let Some((_, id)) = resolved.get(upn.as_ref())
        {
            resolved_out.insert(input.to_string(), Value::String(id.clone()));
        }
        let Some(s) = *slot else {
            not_found.push(input.to_string());
            continue;
        };
        match std::mem::replace(&mut slots[s], Slot::Emitted) {
            Slot::Found(p) => value.push(p),
            Slot::Emitted => {}
            Slot::Pending => {
                // Graph left this user out; every input naming them is reported.
                slots[s] = Slot::Pending;
                not_found.push(input.to_string());
            }
        }
    }
    Output {
        value,
        not_found,
        resolved: resolved_out,
    }
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
