//! The Graph HTTP layer against a fake Graph on 127.0.0.1: retries and
//! Retry-After, token renewal on 401, paging, nextLink safety, path
//! injection, pacing. Binary runs where an action exercises the behaviour,
//! the library's `GraphClient` where no action pages yet.

mod common;
mod fake;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake::{
    Fake, Seen, USER_ID, app_token, assert_no_secrets, graph_error, json_reply, presence, token_ok,
};
use msgraph_connector::ErrorKind;
use msgraph_connector::graph::{
    ApiFamily, ClientOptions, GraphClient, GraphPath, GraphRequest, Method,
};
use serde_json::{Value, json};

fn run_presence(fake: &Fake, asset: &Value, id: &str) -> (common::Outcome, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let envelope = json!({"asset": asset, "inputs": {"id": id}}).to_string();
    let started = Instant::now();
    let out = common::run(
        &["-vvv", "run", "get_presence"],
        envelope.as_bytes(),
        dir.path(),
    );
    let took = started.elapsed();
    assert_no_secrets(fake, &out.stdout);
    assert_no_secrets(fake, &out.stderr);
    (out, took)
}

fn client(asset: Value) -> GraphClient {
    let asset = msgraph_connector::runner::parse_asset(Some(&asset)).unwrap();
    GraphClient::new(asset, ClientOptions::default()).unwrap()
}

#[test]
fn fractional_retry_after_is_honoured_then_success() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            return token_ok(&app_token(n), 3599, None);
        }
        if n == 0 {
            let (s, mut h, b) = graph_error(429, "TooManyRequests", "Too many requests");
            h.push(("retry-after", "0.5".into()));
            (s, h, b)
        } else {
            presence(USER_ID)
        }
    });
    let (out, took) = run_presence(&fake, &fake.asset("client_credentials"), USER_ID);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(took >= Duration::from_millis(500), "waited only {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(fake.graph().len(), 2);
    assert!(
        out.stderr.contains("429") && out.stderr.contains("Retry-After"),
        "{}",
        out.stderr
    );
    // Each attempt has its own client-request-id.
    let g = fake.graph();
    assert_ne!(
        g[0].headers["client-request-id"],
        g[1].headers["client-request-id"]
    );
}

#[test]
fn a_503_storm_ends_in_exit_5_within_the_budget() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            return token_ok(&app_token(n), 3599, None);
        }
        let (s, mut h, b) = graph_error(503, "ServiceUnavailable", "Service Unavailable");
        h.push(("retry-after", "0.3".into()));
        (s, h, b)
    });
    let mut asset = fake.asset("client_credentials");
    asset["max_attempts"] = json!(20);
    asset["max_retry_seconds"] = json!(2);
    let (out, took) = run_presence(&fake, &asset, USER_ID);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(took < Duration::from_secs(4), "{took:?}");
    let e = &out.json()["error"];
    assert_eq!(e["kind"], "network");
    assert_eq!(e["status_code"], 503);
    assert!(e["message"].as_str().unwrap().contains("503"), "{e}");
    let attempts = fake.graph().len();
    assert!(
        (4..=8).contains(&attempts),
        "{attempts} attempts in a 2 s budget at 0.3 s"
    );

    // Without Retry-After: exponential backoff, capped by max_attempts.
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            token_ok(&app_token(n), 3599, None)
        } else {
            graph_error(504, "GatewayTimeout", "Gateway Timeout")
        }
    });
    let mut asset = fake.asset("client_credentials");
    asset["max_attempts"] = json!(2);
    let (out, took) = run_presence(&fake, &asset, USER_ID);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(fake.graph().len(), 2);
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(out.stderr.contains("backoff"), "{}", out.stderr);
}

#[test]
fn other_4xx_are_not_retried_and_keep_graph_metadata() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            token_ok(&app_token(n), 3599, None)
        } else {
            graph_error(
                404,
                "Request_ResourceNotFound",
                "Resource 'x' does not exist.",
            )
        }
    });
    let (out, _) = run_presence(&fake, &fake.asset("client_credentials"), USER_ID);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let e = &out.json()["error"];
    assert_eq!(e["kind"], "graph");
    assert_eq!(e["code"], "Request_ResourceNotFound");
    assert_eq!(e["status_code"], 404);
    assert_eq!(e["request_id"], "req-err");
    assert!(e["message"].as_str().unwrap().contains("does not exist"));
    assert_eq!(fake.graph().len(), 1);
}

#[test]
fn an_expired_token_is_renewed_once() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            return token_ok(&app_token(n), 3599, None);
        }
        if seen.bearer() == Some(app_token(0).as_str()) {
            graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            )
        } else {
            presence(USER_ID)
        }
    });
    let (out, _) = run_presence(&fake, &fake.asset("client_credentials"), USER_ID);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fake.tokens().len(), 2);
    assert_eq!(fake.graph().len(), 2);

    // A token Graph keeps refusing: one renewal, then the 401 is the answer.
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            token_ok(&app_token(n), 3599, None)
        } else {
            graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            )
        }
    });
    let (out, _) = run_presence(&fake, &fake.asset("client_credentials"), USER_ID);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.json()["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(fake.tokens().len(), 2);
    assert_eq!(fake.graph().len(), 2);
}

#[test]
fn ids_cannot_change_the_path_or_query() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            token_ok(&app_token(n), 3599, None)
        } else if seen.uri.ends_with("/presence") {
            presence(USER_ID)
        } else {
            json_reply(200, json!({"id": USER_ID}))
        }
    });
    let asset = fake.asset("client_credentials");
    let cases = [
        ("../me", "/v1.0/users/..%2Fme?$select=id"),
        ("a/b", "/v1.0/users/a%2Fb?$select=id"),
        (
            "x?y=1&$top=5",
            "/v1.0/users/x%3Fy%3D1%26%24top%3D5?$select=id",
        ),
        ("#frag", "/v1.0/users/%23frag?$select=id"),
        ("%2e%2e", "/v1.0/users/%252e%252e?$select=id"),
        ("..", "/v1.0/users('..')?$select=id"),
        (".", "/v1.0/users('.')?$select=id"),
        ("$x@contoso.com", "/v1.0/users('$x@contoso.com')?$select=id"),
        (
            "o'brien@contoso.com",
            "/v1.0/users/o%27brien@contoso.com?$select=id",
        ),
    ];
    for (id, want) in cases {
        let before = fake.graph().len();
        let (out, _) = run_presence(&fake, &asset, id);
        assert_eq!(out.code, 0, "{id}: {}", out.stderr);
        let seen: Vec<Seen> = fake.graph()[before..].to_vec();
        assert_eq!(seen[0].uri, want, "{id}");
        assert_eq!(
            seen[1].uri,
            format!("/v1.0/users/{USER_ID}/presence"),
            "{id}"
        );
    }
}

#[tokio::test]
async fn paging_follows_next_link_verbatim_across_a_token_expiry() {
    // The nextLink carries an opaque, already-encoded skiptoken; it must arrive byte for byte.
    let link_tail = "/v1.0/users?$count=true&$skiptoken=RFNwdAIAAQAAACg6YW%2BZ%3D%3D";
    let fake = Fake::start(move |seen, n| {
        if seen.is_token() {
            return token_ok(&app_token(n), 3599, None);
        }
        let host = seen.headers["host"].clone();
        if seen.uri.contains("$skiptoken") {
            if seen.bearer() == Some(app_token(0).as_str()) {
                // The first token "expires" between page 1 and page 2.
                return graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                );
            }
            json_reply(200, json!({"value": [{"id": "u3"}]}))
        } else {
            json_reply(
                200,
                json!({
                    "@odata.count": 3,
                    "value": [{"id": "u1"}, {"id": "u2"}],
                    "@odata.nextLink": format!("http://{host}{link_tail}"),
                }),
            )
        }
    });
    let graph = client(fake.asset("client_credentials"));
    let request = GraphRequest::get(GraphPath::new("users"), ApiFamily::Directory)
        .query("$count", "true")
        .query("$filter", "startswith(displayName,'a')")
        .header("ConsistencyLevel", "eventual");
    let mut pages = graph.pages(request);
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.count, Some(3));
    assert!(first.next_link.as_deref().unwrap().ends_with(link_tail));
    assert_eq!(pages.pending_link(), first.next_link.as_deref());
    let second = pages.next_page().await.unwrap().unwrap();
    assert_eq!(second.items, vec![json!({"id": "u3"})]);
    assert!(second.next_link.is_none());
    assert!(pages.next_page().await.unwrap().is_none());

    let seen = fake.graph();
    assert_eq!(seen.len(), 3, "page 1, page 2 refused, page 2 again");
    assert_eq!(
        seen[0].uri,
        "/v1.0/users?$count=true&$filter=startswith(displayName,%27a%27)"
    );
    assert_eq!(seen[1].uri, link_tail);
    assert_eq!(seen[2].uri, link_tail);
    for s in &seen {
        assert_eq!(s.headers["consistencylevel"], "eventual", "{}", s.uri);
    }
    assert_eq!(fake.tokens().len(), 2);
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    // The would-be thief: another server that records whatever reaches it.
    let thief = Fake::start(|_, _| json_reply(200, json!({"value": []})));
    let thief_base = thief.base.clone();
    let fake = Fake::start(move |seen, n| {
        if seen.is_token() {
            return token_ok(&app_token(n), 3599, None);
        }
        json_reply(
            200,
            json!({"value": [{"id": "u1"}],
            "@odata.nextLink": format!("{thief_base}/v1.0/users?$skiptoken=x")}),
        )
    });
    let graph = client(fake.asset("client_credentials"));
    let mut pages = graph.pages(GraphRequest::get(
        GraphPath::new("users"),
        ApiFamily::Directory,
    ));
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.items.len(), 1);
    let err = pages.next_page().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Graph);
    assert_eq!(err.code.as_deref(), Some("ForeignNextLink"));
    assert!(
        err.message.contains("not at the configured Graph host"),
        "{}",
        err.message
    );
    assert!(
        thief.seen().is_empty(),
        "the token never reached the other host"
    );

    // A user-given link elsewhere is invalid input, before any request.
    let e = graph
        .pages_from_link(
            &format!("{}/v1.0/users?$skiptoken=x", thief.base),
            ApiFamily::Directory,
        )
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(thief.seen().is_empty());
}

#[tokio::test]
async fn collect_stops_at_max_items_and_says_where_to_resume() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            return token_ok(&app_token(n), 3599, None);
        }
        let host = seen.headers["host"].clone();
        let page: usize = seen
            .uri
            .split("page=")
            .nth(1)
            .map(|p| p.parse().unwrap())
            .unwrap_or(0);
        let items: Vec<Value> = (0..3)
            .map(|i| json!({"id": format!("u{}", page * 3 + i)}))
            .collect();
        json_reply(
            200,
            json!({"value": items, "@odata.nextLink": format!("http://{host}/v1.0/users?page={}", page + 1)}),
        )
    });
    let graph = client(fake.asset("client_credentials"));
    let got = graph
        .pages(GraphRequest::get(
            GraphPath::new("users"),
            ApiFamily::Directory,
        ))
        .collect(4)
        .await
        .unwrap();
    assert_eq!(got.items.len(), 4);
    assert_eq!(got.pages, 2);
    // Page 2 was cut short: resuming re-reads it rather than skipping its last items.
    assert!(got.next_link.unwrap().ends_with("/v1.0/users?page=1"));
    let got = graph
        .pages(GraphRequest::get(
            GraphPath::new("users"),
            ApiFamily::Directory,
        ))
        .collect(6)
        .await
        .unwrap();
    assert_eq!(got.items.len(), 6);
    assert!(got.next_link.unwrap().ends_with("page=2"));
}

/// A Graph that accepts connections and closes them without answering.
fn dropping_server() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buf);
        }
    });
    (base, count)
}

#[tokio::test]
async fn lost_connections_are_retried_only_for_reads() {
    let fake = Fake::start(|seen, n| {
        assert!(seen.is_token());
        token_ok(&app_token(n), 3599, None)
    });
    let (graph_base, connections) = dropping_server();
    let mut asset = fake.asset("client_credentials");
    asset["url"] = json!(graph_base);
    asset["max_attempts"] = json!(2);
    let graph = client(asset);

    let err = graph
        .send(GraphRequest::get(
            GraphPath::user(USER_ID),
            ApiFamily::Directory,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network);
    assert_eq!(connections.load(Ordering::SeqCst), 2, "a GET is retried");

    let err = graph
        .send(
            GraphRequest::new(
                Method::Patch,
                GraphPath::user(USER_ID),
                ApiFamily::Directory,
            )
            .json(json!({"jobTitle": "x"})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network);
    assert!(err.message.contains("not retried"), "{}", err.message);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "a PATCH is sent once"
    );

    // getPresencesByUserId is a POST that only reads: retried.
    let err = graph
        .send(
            GraphRequest::post(
                GraphPath::new("communications/getPresencesByUserId"),
                ApiFamily::Presence,
            )
            .json(json!({"ids": [USER_ID]})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network);
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn pacing_spreads_a_burst_over_the_window() {
    let fake = Fake::start(|seen, n| {
        if seen.is_token() {
            token_ok(&app_token(n), 3599, None)
        } else {
            json_reply(200, json!({"value": []}))
        }
    });
    let mut asset = fake.asset("client_credentials");
    asset["rate_limits"] = json!({"audit_logs": {"requests": 2, "per_seconds": 0.5}});
    let graph = client(asset);
    let started = Instant::now();
    let sends = (0..5).map(|_| {
        graph.send(GraphRequest::get(
            GraphPath::new("auditLogs/signIns"),
            ApiFamily::AuditLogs,
        ))
    });
    for r in futures_util::future::join_all(sends).await {
        r.unwrap();
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "5 requests at 2 per 0.5 s took {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "{took:?}");
    // Directory calls are not held back by the audit-log window.
    let started = Instant::now();
    for _ in 0..5 {
        graph
            .send(GraphRequest::get(
                GraphPath::new("users"),
                ApiFamily::Directory,
            ))
            .await
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(500));
}
