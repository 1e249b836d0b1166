//! `get_user_status`: what a SOC playbook asks about an account, in one call,
//! for one user or up to 1,000 (object ids and/or UPNs).
//!
//! Account, sign-in activity, presence, today's office presence, risk and
//! privileged memberships, each read with JSON batching (see [`crate::status`]
//! for the Graph calls and the permission or licence each part needs). A part
//! that cannot be read is listed in the user's `unavailable` with the reason and
//! what would enable it; the call still succeeds. `summary` holds the booleans a
//! playbook branches on.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::status::{self, Part, StatusQuery, UserStatus};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Object ids (GUIDs) and/or user principal names; the answer keeps their order
    /// (repeats, in any case, are reported once).
    #[schemars(length(min = 1, max = 1000), inner(length(min = 1, max = 1024)))]
    pub ids: Vec<String>,
    /// Only these parts. Default: all of them.
    #[serde(default)]
    #[schemars(length(min = 1, max = 6))]
    pub parts: Option<Vec<Part>>,
    /// `summary.signed_in_recently` means a sign-in within this many days. Default 7.
    #[serde(default = "default_recent_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub recent_days: i64,
}

fn default_recent_days() -> i64 {
    7
}

/// One status per distinct input, in input order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    pub users: Vec<UserStatus>,
}

pub struct GetUserStatus;

impl Action for GetUserStatus {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "get_user_status",
        title: "Get user status",
        description: "A SOC status of 1 to 1,000 users (ids or UPNs) in one call: account state, last sign-ins, presence, today's office presence, risk and directory roles, read with JSON batching; a part that cannot be read (permission, licence, user gone) is listed under unavailable with what would enable it, and summary holds booleans to branch on.",
        permissions: &[&["User.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        let query = StatusQuery {
            ids: &input.ids,
            parts: input.parts.unwrap_or_else(|| Part::ALL.to_vec()),
            recent_days: input.recent_days,
            state_dir: ctx.state_dir.as_deref(),
            shared: ctx.shared_state()?,
        };
        let users = status::user_status(graph, &query).await?;
        Ok(Reply::ok(Output { users }))
    }
}
