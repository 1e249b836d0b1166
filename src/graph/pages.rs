//! Paging: reading a collection page by page, following `@odata.nextLink`
//! verbatim and only ever to the asset's Graph host, and resuming from a link
//! an earlier run returned ([`GraphClient::pages_from_link`]).
//!
//! A link to a page already read in this walk would loop forever (a broken or
//! hostile server; Graph's links always move on, and the emulator's too). Every
//! URL read is remembered, and a `nextLink` back to one of them stops the walk
//! with kind `graph`, code `NextLinkLoop` (issue 19). The message names the
//! link by its path and page number only: its query carries opaque tokens.

use std::collections::HashSet;

use serde_json::{Map, Value};
use url::Url;

use super::client::{GraphClient, Prepared};
use super::request::{ApiFamily, GraphRequest, Method};
use super::response::{ResponseHeaders, unreadable_body};
use crate::error::{Error, Result};

/// One page of a collection.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Value>,
    /// `@odata.nextLink` verbatim, when there are more pages.
    pub next_link: Option<String>,
    /// `@odata.count`, when asked for with `$count=true`.
    pub count: Option<u64>,
    pub headers: ResponseHeaders,
}

impl GraphClient {
    /// Iterate a collection page by page, following `@odata.nextLink` verbatim.
    pub fn pages(&self, request: GraphRequest) -> Pages {
        Pages {
            client: self.clone(),
            next: Some(PageSource::First(request)),
            seen: HashSet::new(),
        }
    }

    /// Resume a collection from a `nextLink` an earlier run returned; refused unless it points at the Graph host.
    /// A refusal is `invalid_input` at the root (the link itself): the caller places it under
    /// the input it came from, or names that input with [`Self::pages_from_link_at`].
    pub fn pages_from_link(&self, next_link: &str, family: ApiFamily) -> Result<Pages> {
        self.pages_from_link_at(next_link, family, "", Vec::new())
    }

    /// [`Self::pages_from_link`] refused at `pointer` (the caller's name for the link,
    /// e.g. its input's JSON pointer), with the headers the original request carried
    /// (e.g. `ConsistencyLevel: eventual`).
    pub fn pages_from_link_at(
        &self,
        next_link: &str,
        family: ApiFamily,
        pointer: &str,
        headers: Vec<(&'static str, String)>,
    ) -> Result<Pages> {
        let url = Url::parse(next_link)
            .map_err(|e| Error::invalid(pointer, format!("is not a URL: {e}")))?;
        self.ensure_graph_url(&url).map_err(|m| {
            Error::invalid(
                pointer,
                format!("{m}; only links returned by this asset's Graph are accepted"),
            )
        })?;
        Ok(Pages {
            client: self.clone(),
            next: Some(PageSource::Link(next_link.to_string(), family, headers)),
            seen: HashSet::new(),
        })
    }
}

enum PageSource {
    First(GraphRequest),
    /// A `nextLink`, the family it counts against, and the extra headers to repeat.
    Link(String, ApiFamily, Vec<(&'static str, String)>),
}

/// A collection being read page by page.
pub struct Pages {
    client: GraphClient,
    next: Option<PageSource>,
    /// Every URL read so far, to refuse a `nextLink` back to one of them.
    seen: HashSet<String>,
}

/// What [`Pages::collect`] gathered.
#[derive(Debug, Clone)]
pub struct Collected {
    pub items: Vec<Value>,
    /// Where to continue. When `max_items` cut a page short this is that page's own
    /// link (re-reading it repeats up to one page of items; nothing is skipped).
    pub next_link: Option<String>,
    pub count: Option<u64>,
    /// Headers of the last page read.
    pub headers: ResponseHeaders,
    pub pages: usize,
}

impl Pages {
    /// The link the next call to [`Self::next_page`] will read, if it is a `nextLink`.
    pub fn pending_link(&self) -> Option<&str> {
        match &self.next {
            Some(PageSource::Link(link, ..)) => Some(link),
            _ => None,
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Page>> {
        let Some(source) = self.next.take() else {
            return Ok(None);
        };
        let (prepared, headers) = match source {
            PageSource::First(request) => {
                let headers = request.headers.clone();
                (self.client.prepare(request)?, headers)
            }
            PageSource::Link(link, family, headers) => {
                let url = Url::parse(&link).map_err(|e| {
                    Error::graph(
                        200,
                        format!("Graph returned a nextLink that is not a URL: {e}"),
                    )
                    .with_code("InvalidNextLink")
                })?;
                if let Err(m) = self.client.ensure_graph_url(&url) {
                    // Server-given: Graph's answer is at fault, so kind `graph`; the token is not sent.
                    return Err(Error::graph(
                        200,
                        format!("refusing to follow @odata.nextLink: {m}"),
                    )
                    .with_code("ForeignNextLink"));
                }
                (
                    Prepared {
                        method: Method::Get,
                        url,
                        idempotent: true,
                        headers: headers.clone(),
                        body: None,
                        family,
                        max_body: super::request::MAX_JSON_BODY,
                    },
                    headers,
                )
            }
        };
        if !self.seen.insert(prepared.url.as_str().to_string()) {
            return Err(Error::graph(
                200,
                format!(
                    "Graph's @odata.nextLink after page {} points back at a page already read \
                     ({}, query not shown); stopping instead of looping",
                    self.seen.len(),
                    prepared.url.path()
                ),
            )
            .with_code("NextLinkLoop"));
        }
        let family = prepared.family;
        let response = self.client.execute(&prepared).await?;
        let mut body: Map<String, Value> = match serde_json::from_slice(&response.body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(unreadable_body(
                    response.status,
                    format!(
                        "Graph answered {} for {} with a body that is not a collection",
                        response.status,
                        prepared.url.path()
                    ),
                ));
            }
        };
        let items = match body.remove("value") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                return Err(unreadable_body(
                    response.status,
                    format!(
                        "Graph answered {} with a `value` that is not a list",
                        prepared.url.path()
                    ),
                ));
            }
        };
        let next_link = body
            .remove("@odata.nextLink")
            .and_then(|v| v.as_str().map(String::from));
        let count = body.get("@odata.count").and_then(Value::as_u64);
        if let Some(link) = &next_link {
            self.next = Some(PageSource::Link(link.clone(), family, headers));
        }
        Ok(Some(Page {
            items,
            next_link,
            count,
            headers: response.headers,
        }))
    }

    /// Read pages until `max_items` items (or the end); see [`Collected::next_link`].
    pub async fn collect(mut self, max_items: usize) -> Result<Collected> {
        let mut out = Collected {
            items: Vec::new(),
            next_link: None,
            count: None,
            headers: Map::new(),
            pages: 0,
        };
        while out.items.len() < max_items {
            // Where this page can be read again: its nextLink, or for the first
            // page the request's own URL (a Graph URL, so resumable like a link).
            let this_link = match &self.next {
                Some(PageSource::Link(link, ..)) => Some(link.clone()),
                Some(PageSource::First(request)) => Some(self.client.url_for(request)?.to_string()),
                None => None,
            };
            let Some(page) = self.next_page().await? else {
                break;
            };
            out.pages += 1;
            out.count = out.count.or(page.count);
            out.headers = page.headers;
            let room = max_items - out.items.len();
            if page.items.len() > room {
                out.items.extend(page.items.into_iter().take(room));
                out.next_link = this_link;
                return Ok(out);
            }
            out.items.extend(page.items);
            out.next_link = page.next_link;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn links_elsewhere_are_refused() {
        let c = GraphClient::for_tests("https://graph.example.com");
        for bad in [
            "https://evil.example.com/v1.0/users?$skiptoken=x",
            "http://graph.example.com/v1.0/users",
            "https://graph.example.com:8443/v1.0/users",
            "https://user:pw@graph.example.com/v1.0/users",
            "not a url",
        ] {
            let e = c.pages_from_link(bad, ApiFamily::Directory).err().unwrap();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad}");
            assert_eq!(e.details[0].path, "", "{bad}: relative to the link");
            let at = c
                .pages_from_link_at(bad, ApiFamily::Directory, "/next_link", Vec::new())
                .err()
                .unwrap();
            assert_eq!(at.details[0].path, "/next_link");
            assert!(at.message.starts_with("invalid input at /next_link: "));
        }
        assert!(
            c.pages_from_link(
                "https://graph.example.com/v1.0/users?$skiptoken=x",
                ApiFamily::Directory
            )
            .is_ok()
        );
    }
}
