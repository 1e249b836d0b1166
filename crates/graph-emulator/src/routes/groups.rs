//! `GET /groups/{id}/transitiveMembers`: a group's members, nested groups expanded
//! into a flat list (<https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers>:
//! "returns a flat list of all nested members"; GroupMember.Read.All, or
//! Group.Read.All / Directory.Read.All; pages of 100 by default, `$top` up to 999 as
//! for the other directory-object lists). Each member carries its `@odata.type`;
//! users answer the `$select`ed user properties below, nested groups are listed as
//! members too (Graph lists them), each once. The `/microsoft.graph.user` cast keeps
//! the users of that flat list (the page's "Get only users" example; other casts are a
//! 400), also spelt `/graph.user`: Microsoft's v1.0 metadata declares `graph` as the
//! alias of the `microsoft.graph` namespace (`schemas/v1.0-Prod.csdl`, `<Schema
//! Namespace="microsoft.graph" Alias="graph">`), and Microsoft's Python SDK sends that
//! form (`transitive_members.graph_user`, checked by `python/msclients`); advanced
//! queries are not served (a 400, as for any option the route does not take).

use std::collections::HashSet;

use axum::http::request::Parts;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::common::{GResult, allow_options, context, require, select_props};
use super::paging::{ListPage, count_true, page_offset, parse_top};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::odata::Query;
use crate::state::Shared;

/// The properties a member can be `$select`ed on (v1.0 directoryObject and user
/// properties, `schemas/v1.0-Prod.csdl`); a group member has only `id` and `displayName` of them.
const MEMBER_PROPS: &[&str] = &[
    "id",
    "displayName",
    "userPrincipalName",
    "accountEnabled",
    "mail",
];

/// `GET /groups/{id}/transitiveMembers[/{cast}]`.
pub(crate) fn transitive_members(
    shared: &Shared,
    caller: &Caller,
    parts: &Parts,
    key: &str,
    cast: Option<&str>,
    query: &Query,
) -> GResult {
    require(
        caller,
        &[
            "GroupMember.Read.All",
            "Group.Read.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
    )?;
    allow_options(query, &["$select", "$top", "$skiptoken", "$count"])?;
    let users_only = match cast {
        None => false,
        Some("microsoft.graph.user" | "graph.user") => true,
        Some(other) => {
            return Err(GraphError::bad_request(&format!(
                "Resource not found for the segment '{other}'."
            )));
        }
    };
    let count = count_true(query)?;
    let top = parse_top(query, 100, 999)?;
    let select = match query.get("$select") {
        Some(s) => select_props(s, MEMBER_PROPS, "microsoft.graph.directoryObject")?,
        None => MEMBER_PROPS.to_vec(),
    };
    let dir = shared.dir.read().expect("dir lock");
    let t = &dir.tenant;
    let group_id = Uuid::try_parse(key).map_err(|_| GraphError::not_found(key))?;
    let group_of = |id: Uuid| t.groups.iter().find(|g| g.id == id);
    let root = group_of(group_id).ok_or_else(|| GraphError::not_found(key))?;

    // Depth first, each object once, nested groups listed before their members.
    let mut seen: HashSet<Uuid> = HashSet::from([group_id]);
    let mut members: Vec<Value> = Vec::new();
    let mut stack: Vec<Uuid> = root.members.iter().rev().copied().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let mut m = Map::new();
        if let Some(u) = dir.by_id.get(&id).map(|&i| &t.users[i]) {
            m.insert("@odata.type".into(), json!("#microsoft.graph.user"));
            for p in &select {
                let v = match *p {
                    "id" => json!(u.id.to_string()),
                    "displayName" => json!(u.display_name),
                    "userPrincipalName" => json!(u.user_principal_name),
                    "accountEnabled" => json!(u.account_enabled),
                    _ => json!(u.mail),
                };
                m.insert((*p).to_string(), v);
            }
        } else if let Some(g) = group_of(id) {
            stack.extend(g.members.iter().rev().copied());
            if users_only {
                continue;
            }
            m.insert("@odata.type".into(), json!("#microsoft.graph.group"));
            for p in &select {
                let v = match *p {
                    "id" => json!(g.id.to_string()),
                    "displayName" => json!(g.display_name),
                    _ => Value::Null,
                };
                m.insert((*p).to_string(), v);
            }
        } else {
            // A member deleted since: Graph no longer lists it.
            continue;
        }
        members.push(Value::Object(m));
    }

    let scope = format!(
        "transitiveMembers|{group_id}|{}|{top}|{users_only}",
        query.get("$select").unwrap_or("")
    );
    let offset = page_offset(shared, &scope, query)?;
    let total = members.len();
    let page = ListPage {
        context: context(
            shared,
            if users_only {
                "users"
            } else {
                "directoryObjects"
            },
        ),
        count: count.then_some(total),
        next: (offset + top < total).then_some(offset + top),
        value: members.into_iter().skip(offset).take(top).collect(),
    };
    Ok(page.answer(shared, parts, query, &scope))
}
