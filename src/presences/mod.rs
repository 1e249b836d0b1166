//! Reading many users' presences: `getPresencesByUserId` in chunks of
//! [`PRESENCE_CHUNK`] ids, and user principal names resolved to object ids
//! [`UPN_GROUP`] at a time. Shared by `get_presences`, `get_presence_changes` and
//! `watch presence`, so the three send exactly the same requests.
//!
//! Graph: `POST /communications/getPresencesByUserId` with `{"ids": [...]}` (at most
//! 650 ids: <https://learn.microsoft.com/graph/api/cloudcommunications-getpresencesbyuserid>;
//! unknown ids are left out of `value`) and
//! `GET /users?$filter=userPrincipalName in ('a','b')&$select=id,userPrincipalName`
//! (at most 15 values in one `in`).

use std::collections::HashMap;

use aws_lc_rs::digest;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::fastpath::guid;
use crate::fastpath::presence_scan::{self, ScannedPresence};
use crate::graph::{
    ApiFamily, GraphClient, GraphPath, GraphRequest, GraphResponse, Method, odata_string,
};

/// Graph refuses more ids than this in one `getPresencesByUserId` call (a bare 400).
pub const PRESENCE_CHUNK: usize = 650;
/// Graph allows at most this many values in one `in (...)` filter.
pub const UPN_GROUP: usize = 15;
/// Requests in flight at once; the HTTP layer's pacing has the final word.
pub const CONCURRENCY: usize = 4;

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
pub fn presences_of(response: &GraphResponse) -> Result<Vec<ScannedPresence<'_>>> {
    // UTF-8 checked once for the whole body, not once per presence as `from_slice` would.
    let text = std::str::from_utf8(&response.body).map_err(|e| {
        Error::internal(format!(
            "Graph answered getPresencesByUserId with a body that is not UTF-8: {e}"
        ))
    })?;
    presence_scan::presences(text).map_err(|e| {
        crate::graph::unreadable_body(
            response.status,
            format!("Graph answered getPresencesByUserId with a body we cannot read: {e}"),
        )
    })
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
pub type Resolved = HashMap<String, (u128, String)>;

/// UPNs to object ids, [`UPN_GROUP`] at a time, concurrently.
pub async fn resolve_upns(graph: &GraphClient, upns: &[&str]) -> Result<Resolved> {
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
            let n = guid::parse(&f.id)?;
            Some((f.user_principal_name.to_ascii_lowercase(), (n, f.id)))
        })
        .collect())
}

/// What tells one presence from the next of the same user, compactly: Graph's
/// `sequenceNumber` when the presence has one (it moves whenever the presence
/// changes), else `h:` and a hash of the presence as sent.
pub fn change_key(presence: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Seq<'a> {
        #[serde(rename = "sequenceNumber", borrow, default)]
        sequence_number: Option<std::borrow::Cow<'a, str>>,
    }
    if let Ok(Seq {
        sequence_number: Some(s),
    }) = serde_json::from_str(presence.get())
        && !s.is_empty()
    {
        return s.into_owned();
    }
    // SHA-256, not a seeded hasher: the key is kept in a state across runs and versions.
    let d = digest::digest(&digest::SHA256, presence.get().as_bytes());
    let mut out = String::from("h:");
    for b in &d.as_ref()[..12] {
        out.push_str(&format!("{b:02x}"));
    }
    out
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
    fn a_change_key_is_the_sequence_number_else_a_hash_of_the_value() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        assert_eq!(
            change_key(&raw(r#"{"id":"a","sequenceNumber":"C21"}"#)),
            "C21"
        );
        let a = change_key(&raw(r#"{"id":"a","availability":"Busy"}"#));
        let b = change_key(&raw(r#"{"id":"a","availability":"Away"}"#));
        assert!(a.starts_with("h:") && a.len() == 26, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, change_key(&raw(r#"{"id":"a","availability":"Busy"}"#)));
    }
}
