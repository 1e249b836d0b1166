//! `get_presence_changes`: the presences that changed since the last call, for
//! platforms that poll on a schedule instead of running `watch presence`.
//!
//! Graph: the same requests as `get_presences` (it runs that action's reading:
//! `getPresencesByUserId`, 650 ids a request, UPNs resolved 15 at a time;
//! Presence.Read.All, User.Read.All for UPNs). The state round-trips in the envelope
//! (`{"version": 1, "seen": {object id: change key}}`, compact: Graph's
//! `sequenceNumber`, else `h:` and a hash of the presence, see
//! [`crate::presences::change_key`]); a presence is reported when its key differs from
//! the state's. Without a state every presence is a change. A user Graph no longer
//! knows is listed under `not_found` and leaves the state.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::get_presence::Presence;
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::fastpath::presence_scan;
use crate::presences::change_key;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Object ids (GUIDs) and/or user principal names; duplicates are read once.
    #[schemars(length(min = 1, max = 100000))]
    #[schemars(extend("items" = {"type": "string", "minLength": 1, "maxLength": 1024,
                                 "pattern": "^[^\\u0000-\\u001F\\u007F]*$"}))]
    pub ids: Vec<String>,
}

/// The state this action returns and takes back.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeState {
    /// 1.
    pub version: u32,
    /// Object id -> the change key of the presence last reported.
    pub seen: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// The presences that differ from the state, as Graph sent them, in input order.
    #[schemars(with = "Vec<Presence>")]
    pub changes: Vec<Box<RawValue>>,
    /// Users read whose presence is as the state says.
    pub unchanged: usize,
    /// Inputs (as given) with no user, or no presence.
    pub not_found: Vec<String>,
}

pub struct GetPresenceChanges;

impl Action for GetPresenceChanges {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "get_presence_changes",
        title: "Get presence changes",
        description: "The presences of up to 100,000 users (ids and/or UPNs) that changed since the state of the last call (by sequenceNumber, else by value); the new state is returned compact (id -> sequenceNumber or hash).",
        permissions: &[&["Presence.Read.All"], &["User.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: true,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let previous: ChangeState = match &ctx.state {
            None | Some(Value::Null) => ChangeState::default(),
            Some(v) => {
                let s: ChangeState = serde_json::from_value(v.clone()).map_err(|e| {
                    Error::invalid(
                        "/state",
                        format!("is not a state of get_presence_changes: {e}"),
                    )
                })?;
                if s.version != 1 {
                    return Err(Error::invalid("/state/version", "must be 1"));
                }
                s
            }
        };
        let graph = ctx.graph()?;
        let read = super::get_presences::get_presences(graph, &input.ids, &ctx.progress).await?;
        let mut next = ChangeState {
            version: 1,
            seen: BTreeMap::new(),
        };
        let mut changes = Vec::new();
        let mut unchanged = 0;
        for presence in read.body.value {
            let Some(id) = presence_scan::top_level_id(presence.get())
                .map(str::to_ascii_lowercase)
                .or_else(|| {
                    serde_json::from_str::<Value>(presence.get())
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_ascii_lowercase))
                })
            else {
                continue;
            };
            let key = change_key(&presence);
            if previous.seen.get(&id) == Some(&key) {
                unchanged += 1;
            } else {
                changes.push(presence);
            }
            next.seen.insert(id, key);
        }
        let state = serde_json::to_value(&next)
            .map_err(|e| Error::internal(format!("state does not serialise: {e}")))?;
        Ok(Reply::ok(Output {
            changes,
            unchanged,
            not_found: read.body.not_found,
        })
        .with_headers(read.headers)
        .with_state(state))
    }
}
