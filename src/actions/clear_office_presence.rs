//! `clear_office_presence`: an administrator removes a user's presence for the day.
//!
//! No Graph call: this changes the connector's own store under `--state-dir`, never the
//! tenant. The user shows as nowhere until their next sign-in from a different place than
//! before the clear that day (`shared/docs/ip-presence.md`, step 4).

use schemars::JsonSchema;
use serde::Deserialize;

use super::set_office_presence::{ManualInput, Output, apply};
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::Result;
use crate::office::ConfigInput;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Input {
    #[serde(flatten)]
    pub change: ManualInput,
    #[serde(flatten)]
    pub config: ConfigInput,
}

pub struct ClearOfficePresence;

impl Action for ClearOfficePresence {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "clear_office_presence",
        title: "Clear office presence",
        description: "An administrator's manual clear of a user's IP-based presence for a day: the user shows nowhere until their next sign-in from a different place. Changes the connector's own store (--state-dir), not the tenant; no Graph call.",
        permissions: &[],
        changes_data: true,
        needs_graph: false,
        incremental: false,
        writes_local_state: LocalWrites::Repeatable,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let body = apply(ctx, Self::META.name, &input.config, &input.change, None).await?;
        Ok(Reply::ok(body))
    }
}
