//! `disable_user`: block a user's sign-in, and optionally revoke their sessions.
//!
//! Step 1 is `update_user` with `accountEnabled: false` (`PATCH /users/{id}`,
//! User.ReadWrite.All; the same request `update_user` builds). Disabling a user
//! who holds a privileged admin role needs the app to hold a higher privileged
//! role as well (graph-facts.md, "Sensitive properties"), otherwise Graph answers
//! 403 `Authorization_RequestDenied`, which is reported as it is (exit 4).
//! With `revoke_sessions: true`, step 2 is `revokeSignInSessions`
//! (User.RevokeSessions.All), since disabling alone leaves issued tokens usable
//! until they expire. Each step is reported; when step 2 fails after step 1
//! succeeded, the error says that the account *is* disabled.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::revoke_sign_in_sessions::revoke;
use super::update_user::{self, UserChanges};
use super::{Action, ActionMeta, Context, DirectoryRole, LocalWrites, Reply};
use crate::error::Result;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    pub id: String,
    /// Also revoke the user's sign-in sessions after disabling (default false).
    #[serde(default)]
    pub revoke_sessions: bool,
}

/// One step done.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Step {
    /// `disable` or `revoke_sessions`.
    pub step: String,
    /// Graph's status for it (204 for the PATCH, 200 for the revocation).
    pub status_code: u16,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// `accountEnabled` is now false.
    pub disabled: bool,
    /// Sessions were revoked (only with `revoke_sessions`).
    pub sessions_revoked: bool,
    /// The steps, in the order they ran.
    pub steps: Vec<Step>,
    /// What a playbook should know about the revocation, when it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub struct DisableUser;

impl Action for DisableUser {
    type Input = Input;
    type Output = Output;
    const DIRECTORY_ROLES: &'static [DirectoryRole] = crate::users::DISABLE_ROLES;
    const META: ActionMeta = ActionMeta {
        name: "disable_user",
        title: "Disable user",
        description: "Block a user's sign-in (update_user with accountEnabled: false) and, with revoke_sessions: true, then revoke their sign-in sessions; each step is reported, and a refusal (e.g. for an admin) names the directory role the app lacks.",
        permissions: &[&["User.ReadWrite.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let graph = ctx.graph()?;
        let patch = update_user::update_request(&update_user::Input {
            id: input.id.clone(),
            properties: UserChanges {
                account_enabled: Some(false),
                ..UserChanges::default()
            },
        })?;
        let changes = patch.body.unwrap_or(Value::Null);
        // Through the users use case, so a refusal names the directory role the app lacks.
        let disabled = crate::users::update(graph, &input.id, changes).await?;
        let mut out = Output {
            disabled: true,
            sessions_revoked: false,
            steps: vec![Step {
                step: "disable".into(),
                status_code: disabled.status,
            }],
            notes: Vec::new(),
        };
        if !input.revoke_sessions {
            return Ok(Reply::from_response(&disabled, out));
        }
        let (revoked, r) = revoke(graph, &input.id).await.map_err(|mut e| {
            e.message = format!(
                "the account is disabled (step 1 done), but revoking its sign-in sessions failed: {}",
                e.message
            );
            e
        })?;
        out.sessions_revoked = r.revoked;
        out.notes = r.notes;
        out.steps.push(Step {
            step: "revoke_sessions".into(),
            status_code: revoked.status,
        });
        Ok(Reply::from_response(&revoked, out))
    }
}
