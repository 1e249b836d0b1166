//! MCP tool annotations, derived from the catalog: nothing here is set by hand
//! per action, so a new action is annotated the moment it is registered.
//!
//! The hints and what they mean are the MCP specification's `ToolAnnotations`
//! (https://modelcontextprotocol.io/specification/2025-06-18/schema#toolannotations):
//! `readOnlyHint` (does not modify its environment), `destructiveHint` (may
//! perform destructive updates; meaningful only when not read-only),
//! `idempotentHint` (calling it again with the same arguments has no further
//! effect), `openWorldHint` (interacts with an open world of external entities).
//!
//! Our rules, from [`ActionMeta`]:
//! - read-only: changes nothing in the tenant and writes nothing on this machine
//!   (the token cache does not count: it is a cache);
//! - destructive: `changes_data`, i.e. it changes data someone owns: the tenant
//!   (`update_user`) or an administrator's override of a day (`set_`/`clear_office_presence`
//!   replace or remove one). Other local writes are the connector's own cursor and
//!   derived store, or an output file the caller names: additive;
//! - idempotent: every action that changes data sets given values (a PATCH, an
//!   override), and local writes are repeatable except those that advance (a
//!   sign-in cursor moves on with each call);
//! - open world: talks to Graph.

use rmcp::model::ToolAnnotations;

use crate::actions::{ActionMeta, LocalWrites};

/// The four hints of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Hints {
    pub fn of(meta: &ActionMeta) -> Hints {
        Hints {
            read_only: !meta.changes_data && meta.writes_local_state == LocalWrites::Nothing,
            destructive: meta.changes_data,
            idempotent: meta.writes_local_state != LocalWrites::Advances,
            open_world: meta.needs_graph,
        }
    }

    /// As the MCP SDK spells them, with the action's title.
    pub fn annotations(self, title: &str) -> ToolAnnotations {
        ToolAnnotations::with_title(title)
            .read_only(self.read_only)
            .destructive(self.destructive)
            .idempotent(self.idempotent)
            .open_world(self.open_world)
    }
}

/// The README's table: one row per action, in catalog order.
pub fn markdown_table() -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::from(
        "| tool | readOnlyHint | destructiveHint | idempotentHint | openWorldHint |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for a in crate::actions::ACTIONS {
        let h = Hints::of(&a.meta);
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            a.meta.name,
            yes(h.read_only),
            yes(h.destructive),
            yes(h.idempotent),
            yes(h.open_world)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::find;

    fn hints(name: &str) -> Hints {
        Hints::of(&find(name).unwrap().meta)
    }

    #[test]
    fn the_issues_examples_hold() {
        let update = hints("update_user");
        assert!(!update.read_only && update.destructive && update.open_world);
        let sync = hints("sync_ip_presence");
        assert!(!sync.read_only && !sync.destructive && !sync.idempotent);
        let evaluate = hints("evaluate_ip_presence");
        assert!(evaluate.read_only && !evaluate.open_world);
        let get_user = hints("get_user");
        assert!(get_user.read_only && get_user.open_world);
        assert!(!hints("set_office_presence").read_only);
        assert!(hints("clear_office_presence").destructive);
        assert!(!hints("pull_sign_ins").idempotent);
    }

    #[test]
    fn readme_carries_the_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        assert!(
            readme.contains(&markdown_table()),
            "README's MCP annotations table differs from the catalog; it should be:\n{}",
            markdown_table()
        );
    }
}
