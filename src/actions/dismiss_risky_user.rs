//! `dismiss_risky_user`: an analyst's verdict that users are not at risk.
//!
//! Graph: `POST /identityProtection/riskyUsers/dismiss` with `{"userIds": [...]}`
//! (IdentityRiskyUser.ReadWrite.All, Entra ID P2; 204; the risk level becomes none:
//! <https://learn.microsoft.com/en-us/graph/api/riskyuser-dismiss>). Resolution of
//! UPNs and the 403 wording are those of `confirm_compromised`.

use super::confirm_compromised::{Input, Output, set_risk};
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;

pub struct DismissRiskyUser;

impl Action for DismissRiskyUser {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "dismiss_risky_user",
        title: "Dismiss risky user",
        description: "Dismiss the risk of users in Identity Protection (their risk level becomes none); needs Entra ID P2.",
        permissions: &[&["IdentityRiskyUser.ReadWrite.All"]],
        changes_data: true,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        set_risk(ctx.graph()?, &input.ids, "dismiss", "none").await
    }
}
