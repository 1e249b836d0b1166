//! `GET /users/{id}/memberOf` and its type casts (groups, directory roles,
//! administrative units): `$select`, `$top` and paging; `$filter`, `$search`,
//! `$orderby`, `$count` and casts are advanced queries that need
//! `ConsistencyLevel: eventual` and `$count=true`. Apps with only
//! `GroupMember.Read.All` see groups only.

use axum::http::request::Parts;
use serde_json::{Map, Value, json};

use super::common::{GResult, allow_options, context, require, resolve_user, select_props};
use super::paging::{ListPage, consistency_eventual, count_true, page_offset, parse_top};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::odata::{self, Query, Tok};
use crate::state::{Kind, Shared};
use crate::tenant::DirectoryObject;

fn object_json(kind: Kind, o: &DirectoryObject) -> Map<String, Value> {
    let mut m = Map::new();
    let t = match kind {
        Kind::Group => "#microsoft.graph.group",
        Kind::Role => "#microsoft.graph.directoryRole",
        Kind::Unit => "#microsoft.graph.administrativeUnit",
    };
    m.insert("@odata.type".into(), json!(t));
    m.insert("id".into(), json!(o.id.to_string()));
    m.insert("deletedDateTime".into(), Value::Null);
    m.insert("description".into(), json!(o.description));
    m.insert("displayName".into(), json!(o.display_name));
    match kind {
        Kind::Group => {
            m.insert("groupTypes".into(), json!([]));
            m.insert("mail".into(), json!(o.mail));
            m.insert("mailEnabled".into(), json!(o.mail_enabled.unwrap_or(false)));
            m.insert(
                "securityEnabled".into(),
                json!(o.security_enabled.unwrap_or(true)),
            );
            m.insert("visibility".into(), Value::Null);
        }
        Kind::Role => {
            m.insert(
                "roleTemplateId".into(),
                json!(o.role_template_id.map(|u| u.to_string())),
            );
        }
        Kind::Unit => {
            m.insert("visibility".into(), Value::Null);
        }
    }
    m
}

const OBJECT_PROPS: &[&str] = &[
    "id",
    "deletedDateTime",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "securityEnabled",
    "visibility",
    "roleTemplateId",
];

enum ObjClause {
    DisplayNameEq(String),
    StartsWith(String),
    IdEq(String),
    Bool(&'static str, bool),
}

fn parse_object_filter(filter: &str) -> Result<Vec<ObjClause>, GraphError> {
    let toks = odata::tokenize(filter)
        .map_err(|e| GraphError::bad_request(&format!("Invalid filter clause: {e}")))?;
    let mut out = Vec::new();
    for clause in odata::split_and(&toks).map_err(|e| GraphError::unsupported(&e))? {
        out.push(match clause {
            [Tok::Word(f), op, Tok::Str(v)]
                if op.is_word("eq") && f.eq_ignore_ascii_case("displayName") =>
            {
                ObjClause::DisplayNameEq(v.to_lowercase())
            }
            [Tok::Word(f), op, Tok::Str(v)] if op.is_word("eq") && f.eq_ignore_ascii_case("id") => {
                ObjClause::IdEq(v.to_lowercase())
            }
            [Tok::Word(f), op, Tok::Word(b)]
                if op.is_word("eq")
                    && (f.eq_ignore_ascii_case("securityEnabled")
                        || f.eq_ignore_ascii_case("mailEnabled")) =>
            {
                let name = if f.eq_ignore_ascii_case("securityEnabled") {
                    "securityEnabled"
                } else {
                    "mailEnabled"
                };
                ObjClause::Bool(
                    name,
                    b.parse()
                        .map_err(|_| GraphError::bad_request("expected true or false"))?,
                )
            }
            _ => match odata::startswith_call(clause) {
                Some((f, v)) if f.eq_ignore_ascii_case("displayName") => {
                    ObjClause::StartsWith(v.to_lowercase())
                }
                _ => {
                    return Err(GraphError::unsupported(
                        "Unsupported or invalid query filter clause specified.",
                    ));
                }
            },
        });
    }
    Ok(out)
}

/// `"displayName:tier"` (quoted; several joined by OR / AND).
fn parse_search(search: &str) -> Result<(Vec<(String, String)>, bool), GraphError> {
    let bad = || {
        GraphError::bad_request(
            "Syntax error: the $search value must be quoted, e.g. $search=\"displayName:tier\".",
        )
    };
    let s = search.trim();
    if s.len() < 2 || !s.starts_with('"') || !s.ends_with('"') {
        return Err(bad());
    }
    let any = s.contains("\" OR \"");
    let mut terms = Vec::new();
    for part in s.split(" OR ").flat_map(|p| p.split(" AND ")) {
        let part = part.trim().trim_matches('"');
        let (prop, term) = part.split_once(':').ok_or_else(bad)?;
        if !["displayName", "description", "mail"]
            .iter()
            .any(|p| p.eq_ignore_ascii_case(prop))
        {
            return Err(GraphError::unsupported(&format!(
                "Search on property '{prop}' is not supported."
            )));
        }
        terms.push((prop.to_ascii_lowercase(), term.to_lowercase()));
    }
    Ok((terms, any))
}

/// `GET /users/{id}/memberOf[/{cast}]`.
pub(crate) fn member_of(
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
            "Directory.Read.All",
            "Directory.ReadWrite.All",
            "GroupMember.Read.All",
        ],
    )?;
    allow_options(
        query,
        &[
            "$select",
            "$filter",
            "$top",
            "$skiptoken",
            "$count",
            "$search",
            "$orderby",
        ],
    )?;
    let cast_kind = match cast {
        None => None,
        Some("microsoft.graph.group") => Some(Kind::Group),
        Some("microsoft.graph.directoryrole") => Some(Kind::Role),
        Some("microsoft.graph.administrativeunit") => Some(Kind::Unit),
        Some(other) => {
            return Err(GraphError::bad_request(&format!(
                "Resource not found for the segment '{other}'."
            )));
        }
    };
    let count = count_true(query)?;
    let advanced = ["$filter", "$search", "$orderby", "$count"]
        .iter()
        .find(|o| query.get(o).is_some())
        .copied()
        .or(cast.map(|_| "type cast"));
    if let Some(what) = advanced
        && (!consistency_eventual(parts) || !count)
    {
        return Err(GraphError::unsupported(&format!(
            "{what} on memberOf is an advanced query: it needs the header 'ConsistencyLevel: eventual' and '$count=true'."
        )));
    }
    let top = parse_top(query, 100, 999)?;
    let select = query
        .get("$select")
        .map(|s| select_props(s, OBJECT_PROPS, "microsoft.graph.directoryObject"))
        .transpose()?;
    let filters = match query.get("$filter") {
        Some(f) => parse_object_filter(f)?,
        None => Vec::new(),
    };
    let search = match query.get("$search") {
        Some(s) => Some(parse_search(s)?),
        None => None,
    };
    let desc = match query.get("$orderby").map(|o| o.trim().to_ascii_lowercase()) {
        None => None,
        Some(o) if o == "displayname" || o == "displayname asc" => Some(false),
        Some(o) if o == "displayname desc" => Some(true),
        Some(_) => {
            return Err(GraphError::unsupported(
                "Sorting is only supported on displayName.",
            ));
        }
    };
    let groups_only = !caller.has_any(&["Directory.Read.All", "Directory.ReadWrite.All"]);

    let dir = shared.dir.read().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    let user_id = dir.tenant.users[i].id;
    let t = &dir.tenant;
    let list = |k: Kind| match k {
        Kind::Group => &t.groups,
        Kind::Role => &t.directory_roles,
        Kind::Unit => &t.administrative_units,
    };
    let mut items: Vec<(Kind, &DirectoryObject)> = dir
        .member_of
        .get(&user_id)
        .map(|v| v.iter().map(|(k, idx)| (*k, &list(*k)[*idx])).collect())
        .unwrap_or_default();
    items.retain(|(k, o)| {
        if cast_kind.is_some_and(|c| c != *k) || (groups_only && *k != Kind::Group) {
            return false;
        }
        let name = o.display_name.to_lowercase();
        let filter_ok = filters.iter().all(|f| match f {
            ObjClause::DisplayNameEq(v) => name == *v,
            ObjClause::StartsWith(p) => name.starts_with(p.as_str()),
            ObjClause::IdEq(v) => o.id.to_string() == *v,
            ObjClause::Bool("securityEnabled", b) => {
                *k == Kind::Group && o.security_enabled.unwrap_or(true) == *b
            }
            ObjClause::Bool(_, b) => *k == Kind::Group && o.mail_enabled.unwrap_or(false) == *b,
        });
        let search_ok = search.as_ref().is_none_or(|(terms, any)| {
            let hit = |(prop, term): &(String, String)| {
                let field = match prop.as_str() {
                    "displayname" => Some(name.clone()),
                    "description" => o.description.as_ref().map(|d| d.to_lowercase()),
                    _ => o.mail.as_ref().map(|d| d.to_lowercase()),
                };
                field.is_some_and(|f| f.contains(term.as_str()))
            };
            if *any {
                terms.iter().any(hit)
            } else {
                terms.iter().all(hit)
            }
        });
        filter_ok && search_ok
    });
    if let Some(desc) = desc {
        items.sort_by_key(|a| a.1.display_name.to_lowercase());
        if desc {
            items.reverse();
        }
    }
    let scope = format!(
        "memberof|{user_id}|{:?}|{}|{}|{}|{}|{top}|{groups_only}",
        cast,
        query.get("$filter").unwrap_or(""),
        query.get("$search").unwrap_or(""),
        query.get("$orderby").unwrap_or(""),
        query.get("$select").unwrap_or(""),
    );
    let offset = page_offset(shared, &scope, query)?;
    let page: Vec<Value> = items
        .iter()
        .skip(offset)
        .take(top)
        .map(|(k, o)| {
            let mut full = object_json(*k, o);
            // Items of a cast carry no `@odata.type`: the cast's `@odata.context`
            // names their type (the "OData cast" examples of
            // https://learn.microsoft.com/graph/api/user-list-memberof).
            if cast_kind.is_some() {
                full.remove("@odata.type");
            }
            match &select {
                None => Value::Object(full),
                Some(sel) => {
                    let mut m = Map::new();
                    if let Some(t) = full.get("@odata.type") {
                        m.insert("@odata.type".into(), t.clone());
                    }
                    for s in sel {
                        m.insert(s.to_string(), full.get(*s).cloned().unwrap_or(Value::Null));
                    }
                    Value::Object(m)
                }
            }
        })
        .collect();
    let context_tail = match cast_kind {
        None => "directoryObjects",
        Some(Kind::Group) => "groups",
        Some(Kind::Role) => "directoryRoles",
        Some(Kind::Unit) => "administrativeUnits",
    };
    let page = ListPage {
        context: context(shared, context_tail),
        count: count.then_some(items.len()),
        next: (offset + top < items.len()).then_some(offset + top),
        value: page,
    };
    Ok(page.answer(shared, parts, query, &scope))
}
