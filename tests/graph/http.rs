//! The Graph HTTP layer against the built-in emulator on 127.0.0.1: retries and
//! Retry-After, token renewal on 401, paging, path injection, lost connections,
//! pacing. Binary runs where an action exercises the behaviour, the library's
//! `GraphClient` where no action pages or writes yet. Requests are asserted from
//! the emulator's request log. Only a nextLink to a foreign host needs `fake`.

use std::path::Path;
use std::time::{Duration, Instant};

use graph_emulator::{Family, FaultKind, FaultPlan, LogEntry, User};
use msgraph_connector::ErrorKind;
use msgraph_connector::graph::{
    ApiFamily, ClientOptions, GraphClient, GraphPath, GraphRequest, Method,
};
use serde_json::{Value, json};

use crate::support::emulator::{Emulator, GROUPS, USER_ID};
use crate::support::fake;
use crate::support::process::{self, Outcome};

fn run_presence(emu: &Emulator, asset: &Value, id: &str, dir: &Path) -> (Outcome, Duration) {
    let envelope = json!({"asset": asset, "inputs": {"id": id}}).to_string();
    let started = Instant::now();
    let out = process::run(&["-vvv", "run", "get_presence"], envelope.as_bytes(), dir);
    let took = started.elapsed();
    emu.assert_no_secrets(&out.stdout, Some(dir));
    emu.assert_no_secrets(&out.stderr, Some(dir));
    (out, took)
}

fn fresh_presence(emu: &Emulator, asset: &Value, id: &str) -> (Outcome, Duration) {
    run_presence(emu, asset, id, tempfile::tempdir().unwrap().path())
}

fn client(asset: Value) -> GraphClient {
    let asset = msgraph_connector::runner::parse_asset(Some(&asset)).unwrap();
    GraphClient::new(asset, ClientOptions::default()).unwrap()
}

fn family(emu: &Emulator, family: &str) -> Vec<LogEntry> {
    emu.request_log().family(family)
}

/// The URL a log entry was requested at.
fn url_of(emu: &Emulator, e: &LogEntry) -> String {
    match &e.query {
        Some(q) => format!("{}{}?{q}", emu.base_url(), e.path),
        None => format!("{}{}", emu.base_url(), e.path),
    }
}

#[test]
fn fractional_retry_after_is_honoured_then_success() {
    let emu = Emulator::start();
    emu.fail_next(
        Some(Family::Presence),
        1,
        FaultKind::Status {
            status: 429,
            retry_after: Some(0.5),
        },
    );
    let (out, took) = fresh_presence(&emu, &emu.asset("client_credentials"), USER_ID);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A lower bound holds on any machine; what was waited for is read from the
    // client's own log line, not from the wall clock.
    assert!(took >= Duration::from_millis(500), "waited only {took:?}");
    assert!(
        out.stderr.contains("waiting 0.500s (Retry-After)"),
        "{}",
        out.stderr
    );
    let g = family(&emu, "presence");
    let statuses: Vec<u16> = g.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [429, 200]);
    assert!(
        out.stderr.contains("429") && out.stderr.contains("Retry-After"),
        "{}",
        out.stderr
    );
    // Each attempt has its own client-request-id.
    assert_ne!(g[0].client_request_id, g[1].client_request_id);
}

#[test]
fn a_503_storm_ends_in_exit_5_within_the_budget() {
    let emu = Emulator::start();
    emu.set_faults(FaultPlan::parse("presence:503=1,retry_after=0.3").unwrap());
    let mut asset = emu.asset("client_credentials");
    asset["max_attempts"] = json!(20);
    asset["max_retry_seconds"] = json!(2);
    let (out, _) = fresh_presence(&emu, &asset, USER_ID);
    assert_eq!(out.code, 5, "{}", out.stderr);
    let e = &out.json()["error"];
    assert_eq!(e["kind"], "network");
    assert_eq!(e["status_code"], 503);
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("503"), "{e}");
    // The budget, not max_attempts, ended it. Waits of 0.3 s fit at most six times
    // in 2 s, so at most seven attempts on any machine; a slow machine makes fewer.
    assert!(
        message.contains("the retry budget of 2s would be exceeded"),
        "{e}"
    );
    let attempts = family(&emu, "presence").len();
    assert!(
        (2..=7).contains(&attempts),
        "{attempts} attempts in a 2 s budget at 0.3 s"
    );

    // Without Retry-After: exponential backoff, capped by max_attempts.
    let emu = Emulator::start();
    emu.set_faults(FaultPlan::parse("presence:504=1,retry_after=none").unwrap());
    let mut asset = emu.asset("client_credentials");
    asset["max_attempts"] = json!(2);
    let (out, took) = fresh_presence(&emu, &asset, USER_ID);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(family(&emu, "presence").len(), 2);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(out.stderr.contains("(backoff)"), "{}", out.stderr);
    assert!(
        out.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{}",
        out.stdout
    );
}

#[test]
fn other_4xx_are_not_retried_and_keep_graph_metadata() {
    let emu = Emulator::start();
    let nobody = "0e0e0e0e-0000-4000-8000-000000000000";
    let (out, _) = fresh_presence(&emu, &emu.asset("client_credentials"), nobody);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let g = emu.graph_log();
    assert_eq!(g.len(), 1, "a 404 is not retried");
    assert_eq!(g[0].status, 404);
    let e = &out.json()["error"];
    assert_eq!(e["kind"], "graph");
    assert_eq!(e["code"], "Request_ResourceNotFound");
    assert_eq!(e["status_code"], 404);
    assert_eq!(e["request_id"], g[0].request_id);
    assert!(e["message"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn an_expired_token_is_renewed_once() {
    let emu = Emulator::start();
    let asset = emu.asset("client_credentials");
    let dir = tempfile::tempdir().unwrap();
    let (warm, _) = run_presence(&emu, &asset, USER_ID, dir.path());
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    // The cached token still looks good to the connector; Graph says it has expired.
    emu.advance_clock(Duration::from_secs(2 * 3600));
    let before = emu.log().len();
    let (out, _) = run_presence(&emu, &asset, USER_ID, dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: Vec<(String, u16)> = emu.log()[before..]
        .iter()
        .map(|e| (e.family.clone(), e.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("presence".to_string(), 401),
            ("token".to_string(), 200),
            ("presence".to_string(), 200)
        ]
    );

    // A token Graph keeps refusing: one renewal, then the 401 is the answer.
    let emu = Emulator::start();
    emu.set_faults(FaultPlan::parse("token:expire_after=0").unwrap());
    let (out, _) = fresh_presence(&emu, &emu.asset("client_credentials"), USER_ID);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.json()["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(emu.token_log().len(), 2);
    let statuses: Vec<u16> = emu.graph_log().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 401]);
}

#[test]
fn ids_cannot_change_the_path_or_query() {
    // Each hostile id is the UPN of a user: the emulator finds that user only if the
    // whole id arrived as one key, and answers 400/404 for any other reading.
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
    let id_of = |i: usize| format!("1d000000-0000-4000-8000-0000000000{i:02}");
    let emu = Emulator::start_with(|c| {
        for (i, (upn, _)) in cases.iter().enumerate() {
            let user: User = serde_json::from_value(
                json!({"id": id_of(i), "userPrincipalName": upn, "displayName": upn}),
            )
            .unwrap();
            c.tenant.users.push(user);
        }
    });
    let asset = emu.asset("client_credentials");
    for (i, (id, want)) in cases.into_iter().enumerate() {
        let before = emu.graph_log().len();
        let (out, _) = fresh_presence(&emu, &asset, id);
        assert_eq!(out.code, 0, "{id}: {}", out.stderr);
        let seen = &emu.graph_log()[before..];
        assert_eq!(seen.len(), 2, "{id}");
        let (path, query) = want.split_once('?').unwrap();
        assert_eq!(seen[0].path, path, "{id}");
        assert_eq!(seen[0].query.as_deref(), Some(query), "{id}");
        assert_eq!(
            seen[1].path,
            format!("/v1.0/users/{}/presence", id_of(i)),
            "{id}"
        );
        assert_eq!(out.json()["json_body"]["id"], id_of(i), "{id}");
    }
}

#[tokio::test]
async fn paging_follows_next_link_verbatim_across_a_token_expiry() {
    // Skip tokens outlive the access token here (they expire after an hour by default).
    let emu = Emulator::start_with(|c| c.skiptoken_ttl = Duration::from_secs(6 * 3600));
    let graph = client(emu.asset("client_credentials"));
    let request = GraphRequest::get(
        GraphPath::user(USER_ID).then("memberOf"),
        ApiFamily::Directory,
    )
    .query("$count", "true")
    .query("$filter", "startswith(displayName,'Paging')")
    .query("$top", "2")
    .header("ConsistencyLevel", "eventual");
    let mut pages = graph.pages(request);
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.count, Some(GROUPS as u64));
    let link = first.next_link.clone().unwrap();
    assert_eq!(pages.pending_link(), Some(link.as_str()));
    // The token expires between page 1 and page 2.
    emu.advance_clock(Duration::from_secs(2 * 3600));
    let mut items = first.items.clone();
    while let Some(page) = pages.next_page().await.unwrap() {
        items.extend(page.items);
    }
    let mut ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), GROUPS, "every group once: {items:?}");

    let log = emu.log();
    let seen: Vec<(&str, u16)> = log.iter().map(|e| (e.family.as_str(), e.status)).collect();
    assert_eq!(
        seen,
        [
            ("token", 200),
            ("memberof", 200),
            ("memberof", 401),
            ("token", 200),
            ("memberof", 200),
            ("memberof", 200),
        ],
        "page 1, page 2 refused, page 2 again, page 3"
    );
    assert_eq!(
        log[1].query.as_deref(),
        Some("$count=true&$filter=startswith(displayName,%27Paging%27)&$top=2")
    );
    assert_eq!(url_of(&emu, &log[2]), link, "the nextLink, byte for byte");
    assert_eq!(url_of(&emu, &log[4]), link, "and again after the renewal");
    for e in log.iter().filter(|e| e.family == "memberof") {
        assert_eq!(e.consistency_level.as_deref(), Some("eventual"), "{e:?}");
    }
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    // The emulator only links to itself, so a fake plays the tenant that links elsewhere.
    // The would-be thief: another server that records whatever reaches it.
    let thief = fake::Fake::start(|_, _| fake::json_reply(200, json!({"value": []})));
    let thief_base = thief.base.clone();
    let fake = fake::Fake::start(move |seen, n| {
        if seen.is_token() {
            return fake::token_ok(&fake::app_token(n));
        }
        fake::json_reply(
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
    let emu = Emulator::start();
    let graph = client(emu.asset("client_credentials"));
    let users = || {
        GraphRequest::get(GraphPath::new("users"), ApiFamily::Directory)
            .query("$select", "id")
            .query("$top", "3")
    };
    let all = graph.pages(users()).collect(9).await.unwrap();
    assert_eq!(all.items.len(), 9);

    let before = emu.log().len();
    let got = graph.pages(users()).collect(4).await.unwrap();
    assert_eq!(got.items, all.items[..4]);
    assert_eq!(got.pages, 2);
    // Page 2 was cut short: resuming re-reads it rather than skipping its last items.
    let page_2 = &emu.log()[before + 1];
    assert_eq!(got.next_link.unwrap(), url_of(&emu, page_2));

    // The first page cut short: resuming from its own request loses nothing.
    let got = graph.pages(users()).collect(2).await.unwrap();
    assert_eq!(got.items, all.items[..2]);
    let resumed = graph
        .pages_from_link(&got.next_link.unwrap(), ApiFamily::Directory)
        .unwrap()
        .collect(3)
        .await
        .unwrap();
    assert_eq!(resumed.items, all.items[..3]);

    let got = graph.pages(users()).collect(6).await.unwrap();
    assert_eq!(got.items, all.items[..6]);
    // Both pages were used up: resuming starts at page 3.
    let resumed = graph
        .pages_from_link(&got.next_link.unwrap(), ApiFamily::Directory)
        .unwrap()
        .collect(3)
        .await
        .unwrap();
    assert_eq!(resumed.items, all.items[6..9]);
}

#[tokio::test]
async fn lost_connections_are_retried_only_for_reads() {
    let emu = Emulator::start();
    let mut asset = emu.asset("client_credentials");
    asset["max_attempts"] = json!(2);
    let graph = client(asset);
    let dropped = |family: &str| {
        emu.request_log()
            .family(family)
            .iter()
            .filter(|e| e.fault.as_deref() == Some("drop"))
            .count()
    };

    emu.fail_next(Some(Family::Users), 2, FaultKind::Drop);
    let err = graph
        .send(GraphRequest::get(
            GraphPath::user(USER_ID),
            ApiFamily::Directory,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network);
    assert_eq!(dropped("users"), 2, "a GET is retried");

    emu.fail_next(Some(Family::Users), 1, FaultKind::Drop);
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
    let users = emu.request_log().family("users");
    assert_eq!(users.len(), 3, "a PATCH is sent once");
    assert_eq!(users[2].method, "PATCH");

    // getPresencesByUserId is a POST that only reads: retried.
    emu.fail_next(Some(Family::Presence), 2, FaultKind::Drop);
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
    assert_eq!(dropped("presence"), 2);
    let presence = emu.request_log().family("presence");
    assert!(presence.iter().all(|e| e.method == "POST"));

    // Every queued fault was used by exactly the requests above.
    let r = graph
        .send(GraphRequest::get(
            GraphPath::user(USER_ID),
            ApiFamily::Directory,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn pacing_spreads_a_burst_over_the_window() {
    let emu = Emulator::start();
    let mut asset = emu.asset("client_credentials");
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
    // A lower bound only: the exact schedule, and that other families are not held
    // back, are shown on tokio's paused clock in `graph::pacing`'s unit tests.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "5 requests at 2 per 0.5 s took {took:?}"
    );
    assert_eq!(family(&emu, "signins").len(), 5);
    assert!(
        family(&emu, "signins").iter().all(|e| e.status == 200),
        "paced, so never throttled"
    );
}

/// Issue 19, item 4: a hostile or broken server's 2 GiB body took `get_user` to
/// 2.1 GB and `get_user_photo` to 4.9 GB. JSON answers are read up to 64 MiB and
/// photos up to 16 MiB; one byte more is refused as kind `graph`, exit 4, code
/// `ResponseTooLarge`, whether or not the server says its length.
#[test]
fn bodies_above_the_caps_are_refused_not_read() {
    const MIB: usize = 1 << 20;
    for streamed in [true, false] {
        let fake = fake::Fake::start(move |seen, n| {
            if seen.is_token() {
                return fake::token_ok(&fake::app_token(n));
            }
            let (body, cap) = if seen.uri.ends_with("$value") {
                (String::new(), 16 * MIB)
            } else {
                (json!({"id": USER_ID}).to_string(), 64 * MIB)
            };
            let reply = (200, vec![("content-type", "image/jpeg".to_string())], body);
            let pad = cap + 1 - reply.2.len();
            if streamed {
                fake::padded_reply(reply, pad)
            } else {
                let (s, h, b) = reply;
                (s, h, b + &" ".repeat(pad))
            }
        });
        let dir = tempfile::tempdir().unwrap();
        for action in ["get_user", "get_user_photo"] {
            let out = process::run_action(
                action,
                &fake.asset("client_credentials"),
                &json!({"id": USER_ID}),
                dir.path(),
            );
            assert_eq!(out.code, 4, "{action} streamed={streamed}: {}", out.stderr);
            let e = &out.json()["error"];
            assert_eq!(e["kind"], "graph", "{e}");
            assert_eq!(e["code"], "ResponseTooLarge", "{e}");
            assert!(
                e["message"].as_str().unwrap().contains("larger than"),
                "{e}"
            );
        }
        // Refused at once, not retried.
        assert_eq!(fake.graph().len(), 2);
    }
}

/// A `nextLink` back to a page already read (a broken or hostile server: the emulator's
/// links always move on, so a fake plays it) stops the walk with kind `graph`, exit 4,
/// code `NextLinkLoop`, after one repeat, not after thousands of requests. Both actions
/// that page (and the sign-in pull's windows) go through the one paging layer.
#[test]
fn a_next_link_back_to_a_read_page_stops_with_next_link_loop() {
    let fake = fake::Fake::start(move |seen, n| {
        if seen.is_token() {
            return fake::token_ok(&fake::app_token(n));
        }
        // Page 1 links to page 2, and page 2 links to itself, for ever.
        let path = seen.uri.split('?').next().unwrap_or_default().to_string();
        fake::json_reply(
            200,
            json!({"value": [],
                   "@odata.nextLink": format!("http://{}{path}?$skiptoken=LOOP-TOKEN",
                                             seen.headers["host"])}),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    for (action, inputs) in [
        ("list_memberships", json!({"id": fake::USER_ID})),
        ("pull_sign_ins", json!({"since": "2026-03-01T00:00:00Z"})),
    ] {
        let before = fake.graph().len();
        let envelope = json!({"asset": fake.asset("client_credentials"), "inputs": inputs});
        let out = process::run_within(
            &["run", action],
            envelope.to_string().as_bytes(),
            dir.path(),
            Duration::from_secs(60),
        );
        assert_eq!(out.code, 4, "{action}: {}\n{}", out.stdout, out.stderr);
        let e = &out.json()["error"];
        assert_eq!(e["kind"], "graph", "{e}");
        assert_eq!(e["code"], "NextLinkLoop", "{e}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("already read"), "{message}");
        assert!(
            !message.contains("LOOP-TOKEN"),
            "the query is not shown: {message}"
        );
        assert_eq!(
            fake.graph().len() - before,
            2,
            "{action}: page 1, page 2; page 2 once more is refused before it is sent"
        );
    }
}
