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
//!
//! Skip tokens expire: Graph refuses a stale one with 400 `Directory_ExpiredPageToken`,
//! after minutes, with no documented lifetime
//! (https://learn.microsoft.com/answers/questions/2337800/how-to-handle-directory-expiredpagetoken-error-in).
//! A listing this call started itself is restarted from the first page, transparently,
//! skipping the objects already returned (by id), at most [`MAX_RESTARTS`] times. A
//! `next_link` saved by an earlier call cannot be: what that call returned is not known
//! here, so a restart would repeat it; that is refused with an error saying to start over.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http_style::{Grouped, HttpStyle, SelectList, UserPath};
use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::graph::{ApiFamily, GraphPath, GraphRequest, ResponseHeaders};

/// Graph's largest `$top` for `memberOf`.
pub const MAX_TOP: u32 = 999;

/// How often a listing this call started is restarted after its skip token expired.
pub const MAX_RESTARTS: u32 = 2;

/// Graph's code for a skip token past its lifetime.
const EXPIRED_PAGE_TOKEN: &str = "Directory_ExpiredPageToken";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
    /// OData `$filter`, e.g. `startswith(displayName,'tier')` (adds `ConsistencyLevel: eventual`).
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub filter: Option<String>,
    /// `$search` as `property:value`, e.g. `displayName:tier`; quoted for Graph. A value
    /// that already starts with `"` (e.g. `"displayName:a" OR "mail:b"`) is sent as it is.
    #[serde(default)]
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
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

/// The same input in Swimlane's HTTP-style grouping: `GET /users/{id}/memberOf?$filter=...`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpInput {
    pub path_parameters: UserPath,
    #[serde(default)]
    pub parameters: HttpParameters,
    /// Accepted for playbooks that send it; the connector adds it itself whenever
    /// Graph needs it (advanced queries).
    #[serde(default)]
    pub headers: HttpHeaders,
}

/// The OData query options of `memberOf`, under Graph's names.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParameters {
    #[serde(rename = "$filter", default)]
    #[schemars(length(min = 1, max = 4096))]
    pub filter: Option<String>,
    /// As Graph takes it (`"displayName:tier"`); unquoted text is quoted.
    #[serde(rename = "$search", default)]
    #[schemars(length(min = 1, max = 1024))]
    pub search: Option<String>,
    #[serde(rename = "$count", default)]
    pub count: Option<bool>,
    #[serde(rename = "$orderby", default)]
    #[schemars(length(min = 1, max = 256))]
    pub orderby: Option<String>,
    #[serde(rename = "$select", default)]
    pub select: Option<SelectList>,
    #[serde(rename = "$top", default)]
    #[schemars(range(min = 1, max = 999))]
    pub top: Option<u32>,
}

/// Request headers a Swimlane playbook may send.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpHeaders {
    #[serde(rename = "ConsistencyLevel", default)]
    #[schemars(regex(pattern = r"^eventual$"))]
    pub consistency_level: Option<String>,
}

impl Grouped for HttpInput {
    const PLACES: &'static [(&'static str, &'static str)] = &[
        ("/id", "/path_parameters/id"),
        ("/filter", "/parameters/$filter"),
        ("/search", "/parameters/$search"),
        ("/count", "/parameters/$count"),
        ("/orderby", "/parameters/$orderby"),
        ("/select", "/parameters/$select"),
        ("/top", "/parameters/$top"),
    ];
    fn into_plain(self) -> Value {
        let mut plain = serde_json::Map::new();
        plain.insert("id".into(), self.path_parameters.id.into());
        let p = self.parameters;
        let fields = [
            ("filter", p.filter.map(Value::from)),
            ("search", p.search.map(Value::from)),
            ("count", p.count.map(Value::from)),
            ("orderby", p.orderby.map(Value::from)),
            ("select", p.select.map(|s| Value::from(s.names()))),
            ("top", p.top.map(Value::from)),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                plain.insert(name.into(), v);
            }
        }
        Value::Object(plain)
    }
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
    const HTTP_STYLE: Option<HttpStyle> = Some(HttpStyle::of::<HttpInput>());

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
        let cast = match &input.next_link {
            Some(link) => cast_of_link(link),
            None => input.object_type.map(MembershipType::cast),
        };
        let mut headers = ResponseHeaders::new();
        let mut first = true;
        let mut restarts = 0;
        // Ids returned so far, so that a restarted listing repeats none of them.
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if e.code.as_deref() == Some(EXPIRED_PAGE_TOKEN) => {
                    if input.next_link.is_some() {
                        return Err(expired_next_link(e));
                    }
                    if restarts == MAX_RESTARTS {
                        return Err(e);
                    }
                    restarts += 1;
                    tracing::info!(
                        restarts,
                        "memberOf skip token expired; listing again from the first page"
                    );
                    pages = ctx.graph()?.pages(memberships_request(&input)?);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if first {
                out.count = page.count;
                first = false;
            }
            let mut items = page.items;
            if let Some(cast) = cast {
                typed(&mut items, cast);
            }
            for item in items {
                let id = item.get("id").and_then(Value::as_str).map(str::to_string);
                if id.is_none_or(|id| seen.insert(id)) {
                    out.value.push(item);
                }
            }
            headers = page.headers;
            if limit.is_some_and(|l| out.value.len() >= l) {
                out.next_link = page.next_link;
                break;
            }
        }
        Ok(Reply::ok(out).with_headers(headers))
    }
}

/// Items of a cast come without `@odata.type` (the cast's `@odata.context` names
/// their type: the "OData cast" examples of
/// https://learn.microsoft.com/graph/api/user-list-memberof). Every item we return
/// carries it, so a playbook tells kinds apart the same way with or without `type`.
fn typed(items: &mut [Value], cast: &str) {
    for item in items {
        if let Value::Object(m) = item
            && !m.contains_key("@odata.type")
        {
            m.insert("@odata.type".into(), Value::String(format!("#{cast}")));
        }
    }
}

/// The cast a `memberOf` nextLink lists (`.../memberOf/microsoft.graph.group?...`).
fn cast_of_link(link: &str) -> Option<&'static str> {
    let path = link.split('?').next().unwrap_or(link).to_ascii_lowercase();
    let last = path.rsplit('/').next()?;
    [
        MembershipType::Group,
        MembershipType::DirectoryRole,
        MembershipType::AdministrativeUnit,
    ]
    .into_iter()
    .map(MembershipType::cast)
    .find(|c| c.eq_ignore_ascii_case(last))
}

/// A saved `next_link` whose skip token expired: say what to do about it.
fn expired_next_link(e: Error) -> Error {
    Error {
        message: format!(
            "{} The saved next_link has expired (Graph's skip tokens last minutes): start \
             over by calling list_memberships again without next_link, with the same options, \
             or without max_items to read every page in one call.",
            e.message
        ),
        ..e
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
    fn cast_items_get_their_type_back() {
        let mut items = vec![
            serde_json::json!({"id": "g1"}),
            serde_json::json!({"@odata.type": "#microsoft.graph.group", "id": "g2"}),
        ];
        typed(&mut items, "microsoft.graph.group");
        assert_eq!(items[0]["@odata.type"], "#microsoft.graph.group");
        assert_eq!(
            cast_of_link(
                "https://g/v1.0/users/u/memberOf/microsoft.graph.directoryRole?$count=true&$skiptoken=x"
            ),
            Some("microsoft.graph.directoryRole")
        );
        assert_eq!(
            cast_of_link("https://g/v1.0/users/u/memberOf?$skiptoken=x"),
            None
        );
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
