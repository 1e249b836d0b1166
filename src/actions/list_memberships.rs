//! `list_memberships`: the groups, directory roles and administrative units a
//! user is a direct member of.
//!
//! Graph: `GET /users/{id}/memberOf`, or the cast
//! `/users/{id}/memberOf/microsoft.graph.{group|directoryRole|administrativeUnit}`
//! (Directory.Read.All; GroupMember.Read.All is enough for groups only).
//!
//! `$filter`, `$search`, `$orderby`, `$count` and casts are "advanced queries":
//! Graph answers 400 `Request_UnsupportedQuery` unless the request carries
//! `ConsistencyLevel: eventual` **and** `$count=true`, so both are added
//! whenever one of them is used, on every page. `$search` wants its value in
//! double quotes (`"displayName:tier"`); the user's `displayName:tier` is quoted
//! here. Every page is followed by default; with `max_items` the action stops
//! at a page boundary and returns `@odata.nextLink`, which a later call passes
//! back as `next_link` (the HTTP layer refuses links to any host but Graph's).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::graph::{ApiFamily, GraphPath, GraphRequest, ResponseHeaders};

/// Graph's largest `$top` for `memberOf`.
pub const MAX_TOP: u32 = 999;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    pub id: String,
    /// OData `$filter`, e.g. `startswith(displayName,'tier')` (adds `ConsistencyLevel: eventual`).
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub filter: Option<String>,
    /// `$search` as `property:value`, e.g. `displayName:tier`; quoted for Graph. A value
    /// that already starts with `"` (e.g. `"displayName:a" OR "mail:b"`) is sent as it is.
    #[serde(default)]
    #[schemars(length(min = 1, max = 1024))]
    pub search: Option<String>,
    /// Ask Graph for `@odata.count`, the number of matching objects.
    #[serde(default)]
    pub count: bool,
    /// OData `$orderby`, e.g. `displayName desc`.
    #[serde(default)]
    #[schemars(length(min = 1, max = 256))]
    pub orderby: Option<String>,
    /// Properties to return (`$select`), e.g. `["id", "displayName"]`.
    #[serde(default)]
    #[schemars(
        length(max = 100),
        inner(regex(pattern = r"^[A-Za-z][A-Za-z0-9_]{0,199}$"))
    )]
    pub select: Vec<String>,
    /// Only objects of this type (a cast of `memberOf`).
    #[serde(default, rename = "type")]
    pub object_type: Option<MembershipType>,
    /// Page size (`$top`, 1 to 999; Graph's default is 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 999))]
    pub top: Option<u32>,
    /// Stop after the page on which this many objects have been read, and return
    /// `@odata.nextLink` to resume from. Without `top`, the page size is set to it (at most 999).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_items: Option<u32>,
    /// Resume from the `@odata.nextLink` of an earlier call; the query options are
    /// then those of that link, and `filter`, `search`, `orderby`, `select`, `type`, `top`, `count` are ignored.
    #[serde(default)]
    #[schemars(length(min = 1, max = 8192))]
    pub next_link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MembershipType {
    Group,
    DirectoryRole,
    AdministrativeUnit,
}

impl MembershipType {
    fn cast(self) -> &'static str {
        match self {
            MembershipType::Group => "microsoft.graph.group",
            MembershipType::DirectoryRole => "microsoft.graph.directoryRole",
            MembershipType::AdministrativeUnit => "microsoft.graph.administrativeUnit",
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    /// Directory objects, each with its `@odata.type` (`#microsoft.graph.group`, ...).
    pub value: Vec<Value>,
    /// Present when `max_items` stopped the listing early: pass it as `next_link` to continue.
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    /// The total count, when Graph reported it (advanced queries and `count: true`).
    #[serde(rename = "@odata.count", skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

pub struct ListMemberships;

impl Action for ListMemberships {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "list_memberships",
        title: "List memberships",
        description: "List the groups, directory roles and administrative units a user is a direct member of, with filter, search, order, type cast and paging.",
        permissions: &[&["GroupMember.Read.All", "Directory.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Nothing,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let mut pages = match &input.next_link {
            Some(link) => {
                if !link.contains("/memberOf") {
                    return Err(Error::invalid(
                        "/inputs/next_link",
                        "is not a memberOf nextLink returned by this action",
                    ));
                }
                let headers = if link_is_advanced(link) {
                    vec![("ConsistencyLevel", "eventual".to_string())]
                } else {
                    Vec::new()
                };
                ctx.graph()?.pages_from_link_at(
                    link,
                    ApiFamily::Directory,
                    "/inputs/next_link",
                    headers,
                )?
            }
            None => {
                let request = memberships_request(&input)?;
                ctx.graph()?.pages(request)
            }
        };
        let limit = input.max_items.map(|m| m as usize);
        let mut out = Output {
            value: Vec::new(),
            next_link: None,
            count: None,
        };
        let mut headers = ResponseHeaders::new();
        let mut first = true;
        while let Some(page) = pages.next_page().await? {
            if first {
                out.count = page.count;
                first = false;
            }
            out.value.extend(page.items);
            headers = page.headers;
            if limit.is_some_and(|l| out.value.len() >= l) {
                out.next_link = page.next_link;
                break;
            }
        }
        Ok(Reply::ok(out).with_headers(headers))
    }
}

/// Whether the options make an advanced query (header and `$count=true` needed).
pub fn is_advanced(input: &Input) -> bool {
    input.filter.is_some()
        || input.search.is_some()
        || input.orderby.is_some()
        || input.count
        || input.object_type.is_some()
}

/// A nextLink of an advanced query: we always sent `$count=true` (Graph keeps it), or a cast.
fn link_is_advanced(link: &str) -> bool {
    link.contains("$count=true")
        || link.contains("%24count=true")
        || link.contains("/memberOf/microsoft.graph.")
}

/// The first request for `input` (without `next_link`).
pub fn memberships_request(input: &Input) -> Result<GraphRequest> {
    let mut path = GraphPath::user(&input.id).then("memberOf");
    if let Some(t) = input.object_type {
        path = path.then(t.cast());
    }
    let mut request = GraphRequest::get(path, ApiFamily::Directory);
    if let Some(f) = &input.filter {
        request = request.query("$filter", f.as_str());
    }
    if let Some(s) = &input.search {
        request = request.query("$search", search_value(s)?);
    }
    if let Some(o) = &input.orderby {
        request = request.query("$orderby", o.as_str());
    }
    if !input.select.is_empty() {
        request = request.query("$select", input.select.join(","));
    }
    let top = input
        .top
        .or_else(|| input.max_items.map(|m| m.min(MAX_TOP)));
    if let Some(top) = top {
        request = request.query("$top", top.to_string());
    }
    if is_advanced(input) {
        request = request
            .query("$count", "true")
            .header("ConsistencyLevel", "eventual");
    }
    Ok(request)
}

/// `displayName:tier` -> `"displayName:tier"`; inner `"` and `\` escaped.
pub fn search_value(search: &str) -> Result<String> {
    let s = search.trim();
    if s.starts_with('"') {
        return Ok(s.to_string());
    }
    if !s.contains(':') {
        return Err(Error::invalid(
            "/inputs/search",
            "must be property:value, e.g. displayName:tier",
        ));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: Value) -> Input {
        serde_json::from_value(v).unwrap()
    }

    fn query(r: &GraphRequest) -> Vec<(&str, &str)> {
        r.query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn plain_listing_is_not_advanced() {
        let r = memberships_request(&input(serde_json::json!({"id": "u1"}))).unwrap();
        assert_eq!(r.path.as_str(), "users/u1/memberOf");
        assert!(r.query.is_empty());
        assert!(r.headers.is_empty());
    }

    #[test]
    fn select_and_top_alone_stay_simple() {
        let r = memberships_request(&input(
            serde_json::json!({"id": "u1", "select": ["id", "displayName"], "top": 5}),
        ))
        .unwrap();
        assert_eq!(query(&r), [("$select", "id,displayName"), ("$top", "5")]);
        assert!(r.headers.is_empty());
    }

    #[test]
    fn search_is_quoted_and_advanced() {
        let r = memberships_request(&input(
            serde_json::json!({"id": "u1", "search": "displayName:tier"}),
        ))
        .unwrap();
        assert_eq!(
            query(&r),
            [("$search", "\"displayName:tier\""), ("$count", "true")]
        );
        assert_eq!(r.headers, [("ConsistencyLevel", "eventual".to_string())]);
    }

    #[test]
    fn cast_filter_orderby_count() {
        let r = memberships_request(&input(serde_json::json!({
            "id": "$x@contoso.com", "type": "directoryRole",
            "filter": "startswith(displayName,'Glo')", "orderby": "displayName"
        })))
        .unwrap();
        assert_eq!(
            r.path.as_str(),
            "users('$x@contoso.com')/memberOf/microsoft.graph.directoryRole"
        );
        assert_eq!(
            query(&r),
            [
                ("$filter", "startswith(displayName,'Glo')"),
                ("$orderby", "displayName"),
                ("$count", "true")
            ]
        );
        assert_eq!(r.headers.len(), 1);
        for t in ["group", "administrativeUnit"] {
            let r = memberships_request(&input(serde_json::json!({"id": "u", "type": t}))).unwrap();
            assert!(
                r.path
                    .as_str()
                    .ends_with(&format!("memberOf/microsoft.graph.{t}"))
            );
            assert_eq!(query(&r), [("$count", "true")]);
        }
    }

    #[test]
    fn max_items_sets_page_size() {
        let r =
            memberships_request(&input(serde_json::json!({"id": "u", "max_items": 50}))).unwrap();
        assert_eq!(query(&r), [("$top", "50")]);
        let r =
            memberships_request(&input(serde_json::json!({"id": "u", "max_items": 5000}))).unwrap();
        assert_eq!(query(&r), [("$top", "999")]);
        let r = memberships_request(&input(
            serde_json::json!({"id": "u", "max_items": 50, "top": 20}),
        ))
        .unwrap();
        assert_eq!(query(&r), [("$top", "20")]);
    }

    #[test]
    fn search_values() {
        assert_eq!(
            search_value("displayName:tier").unwrap(),
            "\"displayName:tier\""
        );
        assert_eq!(
            search_value("displayName:say \"hi\"").unwrap(),
            "\"displayName:say \\\"hi\\\"\""
        );
        assert_eq!(
            search_value("\"displayName:a\" OR \"mail:b\"").unwrap(),
            "\"displayName:a\" OR \"mail:b\""
        );
        let e = search_value("tier").unwrap_err();
        assert_eq!(e.details[0].path, "/inputs/search");
    }

    #[test]
    fn advanced_links_are_recognised() {
        assert!(link_is_advanced(
            "https://graph.microsoft.com/v1.0/users/u/memberOf?$count=true&$skiptoken=x"
        ));
        assert!(link_is_advanced(
            "https://graph.microsoft.com/v1.0/users/u/memberOf/microsoft.graph.group?$skiptoken=x"
        ));
        assert!(!link_is_advanced(
            "https://graph.microsoft.com/v1.0/users/u/memberOf?$skiptoken=x"
        ));
    }
}
