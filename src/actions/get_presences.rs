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
//! of building and re-serialising a tree per user. Object ids are hashed with
//! a keyed multiply rather than SipHash, and a presence is matched to its user
//! by position in its chunk before any hash lookup (Graph answers in order).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::get_presence::Presence;
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
        permissions: &[
            &["Presence.Read.All"],
            &["User.ReadBasic.All", "User.Read.All"],
        ],
        changes_data: false,
        needs_graph: true,
        incremental: false,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        get_presences(graph, &input.ids).await
    }
}

/// A user as named in the input: an object id (as a number, so case and
/// hashing cost nothing) or a lower-cased UPN.
#[derive(Debug)]
enum Key<'a> {
    Id(u128),
    Upn(Cow<'a, str>),
}

/// Hashes object ids, which are already uniformly random 128-bit numbers, with
/// one folded multiply (as foldhash does) instead of SipHash's rounds. The keys
/// are random per process, so an input cannot be crafted to collide.
#[derive(Clone, Copy)]
struct IdHash(u64, u64);

impl IdHash {
    fn new() -> Self {
        IdHash(fastrand::u64(..), fastrand::u64(..))
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            keys: (self.0, self.1),
            hash: 0,
        }
    }
}

struct IdHasher {
    keys: (u64, u64),
    hash: u64,
}

impl Hasher for IdHasher {
    fn write_u128(&mut self, n: u128) {
        let m = u128::from(n as u64 ^ self.keys.0) * u128::from((n >> 64) as u64 ^ self.keys.1);
        self.hash ^= m as u64 ^ (m >> 64) as u64;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed with this; anything else still hashes correctly.
        for chunk in bytes.chunks(16) {
            let mut b = [0u8; 16];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u128(u128::from_le_bytes(b).rotate_left(7) ^ self.hash as u128);
        }
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// What we know of one distinct user.
enum Slot {
    Pending,
    Found(Box<RawValue>),
    Emitted,
}

async fn get_presences(graph: &GraphClient, ids: &[String]) -> Result<Reply<Output>> {
    // 1. Distinct inputs, in first-mention order, case-insensitively (GUIDs and UPNs both are).
    let id_hash = IdHash::new();
    let mut seen_ids: HashSet<u128, IdHash> = HashSet::with_capacity_and_hasher(ids.len(), id_hash);
    let mut seen_upns: HashSet<Cow<str>> = HashSet::new();
    let mut wanted: Vec<(&str, Key)> = Vec::with_capacity(ids.len());
    for input in ids {
        let fresh = match guid(input) {
            Some(n) => seen_ids.insert(n).then_some(Key::Id(n)),
            None => {
                let upn = lower(input);
                seen_upns.insert(upn.clone()).then_some(Key::Upn(upn))
            }
        };
        if let Some(key) = fresh {
            wanted.push((input, key));
        }
    }
    drop((seen_ids, seen_upns));

    // 2. UPNs to object ids, 15 at a time.
    let upns: Vec<&str> = wanted
        .iter()
        .filter(|(_, k)| matches!(k, Key::Upn(_)))
        .map(|(input, _)| *input)
        .collect();
    let resolved = resolve_upns(graph, &upns).await?;

    // 3. One slot per distinct user; the id sent is the input's own text (lower-cased, as
    //    Graph writes ids), or the resolved id.
    let mut slot_of: HashMap<u128, usize, IdHash> =
        HashMap::with_capacity_and_hasher(wanted.len(), id_hash);
    let mut slot_ids: Vec<Cow<str>> = Vec::with_capacity(wanted.len());
    let mut slot_nums: Vec<u128> = Vec::with_capacity(wanted.len());
    let mut slot_per_wanted: Vec<Option<usize>> = Vec::with_capacity(wanted.len());
    for (input, key) in &wanted {
        let id = match key {
            Key::Id(n) => Some((*n, lower(input))),
            Key::Upn(upn) => resolved
                .get(upn.as_ref())
                .map(|(n, id)| (*n, Cow::Borrowed(id.as_str()))),
        };
        slot_per_wanted.push(id.map(|(n, id)| {
            *slot_of.entry(n).or_insert_with(|| {
                slot_ids.push(id);
                slot_nums.push(n);
                slot_ids.len() - 1
            })
        }));
    }

    // 4. Presences, 650 ids a request, concurrently; each kept as the raw JSON Graph
    //    sent. An answer is read as soon as it arrives and its body dropped, so
    //    bodies and copies are not all held at once (less memory to map and fault in).
    let mut answers = stream::iter(slot_ids.chunks(PRESENCE_CHUNK).enumerate())
        .map(|(k, chunk)| async move {
            let response = graph.send(presence_request(chunk)).await?;
            Ok::<_, Error>((k * PRESENCE_CHUNK, response))
        })
        .buffer_unordered(CONCURRENCY);
    let mut slots: Vec<Slot> = slot_ids.iter().map(|_| Slot::Pending).collect();
    let mut headers = ResponseHeaders::new();
    while let Some((first, response)) = answers.try_next().await? {
        for (j, (id, presence)) in presences_of(&response)?.into_iter().enumerate() {
            let Some(n) = id else { continue };
            // Slots hold distinct ids, so a match by position is the slot itself.
            let slot = match slot_nums.get(first + j) {
                Some(&m) if m == n => Some(first + j),
                _ => slot_of.get(&n).copied(),
            };
            if let Some(slot) = slot {
                slots[slot] = Slot::Found(presence.to_owned());
            }
        }
        headers = response.headers;
    }
    drop(answers);

    // 5. Input order; a user named twice (UPN and id) is reported once.
    let mut value = Vec::with_capacity(slot_ids.len());
    let mut not_found = Vec::new();
    let mut resolved_out = Map::new();
    for ((input, key), slot) in wanted.iter().zip(slot_per_wanted) {
        if let Key::Upn(upn) = key
            && let Some((_, id)) = resolved.get(upn.as_ref())
        {
            resolved_out.insert(input.to_string(), Value::String(id.clone()));
        }
        let Some(s) = slot else {
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

/// An object id (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any case) as a number.
fn guid(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    // A table and one check at the end: this runs twice per user (input and answer).
    let (mut n, mut bad) = (0u128, 0u8);
    for group in [&b[0..8], &b[9..13], &b[14..18], &b[19..23], &b[24..36]] {
        for &c in group {
            let digit = HEX[usize::from(c)];
            bad |= digit;
            n = n << 4 | u128::from(digit & 0xf);
        }
    }
    (bad & 0x80 == 0).then_some(n)
}

/// The value of each hex digit, any case; 0x80 for anything else.
const HEX: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The `getPresencesByUserId` request for one chunk of at most 650 ids.
pub fn presence_request<S: Serialize>(ids: &[S]) -> GraphRequest {
    debug_assert!(ids.len() <= PRESENCE_CHUNK);
    GraphRequest::new(
        Method::Post,
        GraphPath::new("communications/getPresencesByUserId"),
        ApiFamily::Presence,
    )
    .json(serde_json::json!({ "ids": ids }))
}

/// `(object id, presence)` pairs of one `getPresencesByUserId` answer, the
/// presences borrowed from its body.
fn presences_of(response: &GraphResponse) -> Result<Vec<(Option<u128>, &RawValue)>> {
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
        crate::graph::unreadable_body(
            response.status,
            format!("Graph answered getPresencesByUserId with a body we cannot read: {e}"),
        )
    };
    // UTF-8 checked once for the whole body, not once per presence as `from_slice` would.
    let text = std::str::from_utf8(&response.body).map_err(|e| {
        Error::internal(format!(
            "Graph answered getPresencesByUserId with a body that is not UTF-8: {e}"
        ))
    })?;
    let answer: Answer = serde_json::from_str(text).map_err(unreadable)?;
    answer
        .value
        .into_iter()
        .map(|raw| {
            let id = match top_level_id(raw.get()) {
                Some(id) => guid(id),
                // Escapes or an odd shape: let serde read it properly.
                None => {
                    let IdOnly { id } = serde_json::from_str(raw.get()).map_err(unreadable)?;
                    guid(&id)
                }
            };
            Ok((id, raw))
        })
        .collect()
}

/// The string value of the top-level `"id"` key of one JSON object that serde
/// has already validated, found without building anything; `None` when the id
/// is missing or holds an escape (the caller then parses properly).
fn top_level_id(object: &str) -> Option<&str> {
    let b = object.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // The end (closing quote) of the string starting at `i` (its opening quote), and whether it has escapes.
    let string_end = |i: usize| {
        let mut j = i + 1;
        let mut escaped = false;
        while let Some(k) = b
            .get(j..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            j += k;
            if b[j] == b'"' {
                return (j, escaped);
            }
            escaped = true;
            j += 2;
        }
        (b.len().max(j), escaped)
    };
    let (mut i, mut depth, mut expect_key) = (0, 0usize, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                let (end, escaped) = string_end(i);
                if depth == 1 && expect_key && !escaped && &b[i + 1..end.min(b.len())] == b"id" {
                    let colon = skip_ws(end + 1);
                    let quote = skip_ws(colon + 1);
                    if b.get(colon) != Some(&b':') || b.get(quote) != Some(&b'"') {
                        return None;
                    }
                    let (value_end, escaped) = string_end(quote);
                    return (!escaped && value_end < b.len())
                        .then(|| &object[quote + 1..value_end]);
                }
                expect_key = false;
                i = end;
            }
            b'{' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => expect_key = depth == 1,
            _ => {}
        }
        i += 1;
    }
    None
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

/// Lower-cased UPN to object id (as a number and as Graph wrote it), for the UPNs Graph knows.
async fn resolve_upns(
    graph: &GraphClient,
    upns: &[&str],
) -> Result<HashMap<String, (u128, String)>> {
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
        .filter_map(|f| {
            let n = guid(&f.id)?;
            Some((f.user_principal_name.to_ascii_lowercase(), (n, f.id)))
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
    fn guids_are_numbers_whatever_their_case() {
        let a = guid("4562bcc8-c436-4f95-b7c0-4f8ce89dca5e").unwrap();
        assert_eq!(guid("4562BCC8-C436-4F95-B7C0-4F8CE89DCA5E"), Some(a));
        assert_eq!(a, 0x4562bcc8_c436_4f95_b7c0_4f8ce89dca5e);
        assert_eq!(guid("adele@contoso.com"), None);
        assert_eq!(guid("4562bcc8xc436-4f95-b7c0-4f8ce89dca5e"), None);
        assert_eq!(guid("4562bcc8-c436-4f95-b7c0-4f8ce89dca5-"), None);
        assert_eq!(guid("4562bcc8-c436-4f95-b7c0-4f8ce89dca5g"), None);
    }

    #[test]
    fn top_level_id_is_found_without_parsing() {
        let p = r#"{"activity":"Away","nested":{"id":"no"},"list":[{"id":"no"}],"s":"{\"id\":\"no\"}","id":"yes","x":1}"#;
        assert_eq!(top_level_id(p), Some("yes"));
        assert_eq!(top_level_id(r#"{ "id" : "spaced" }"#), Some("spaced"));
        assert_eq!(top_level_id(r#"{"x":"id","y":{"id":"no"}}"#), None);
        assert_eq!(top_level_id(r#"{"id":"esc\u0041"}"#), None);
        assert_eq!(top_level_id(r#"{"id":5}"#), None);
        assert_eq!(top_level_id(r#"{"i\u0064":"x"}"#), None);
    }

    #[test]
    fn lower_borrows_when_already_lower() {
        assert!(matches!(lower("abc@x.com"), Cow::Borrowed(_)));
        assert_eq!(lower("ABC@x.com"), "abc@x.com");
    }
}
