//! memberOf: paging and advanced queries.

use std::collections::HashSet;

use graph_emulator as emulator;

use crate::support::{
    ADA, FULL, READER, assert_graph_error, fixture, json_of, small_generated, start,
};

#[tokio::test]
async fn member_of_pages_through_everything_without_loss_or_duplicates() {
    let tenant = small_generated();
    let megan = tenant.users[0].id;
    let expected =
        tenant.groups.len() + tenant.directory_roles.len() + tenant.administrative_units.len();
    let t = start(tenant).await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let mut next = Some(t.url(&format!("/v1.0/users/{megan}/memberOf?$top=5")));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        let r = t.http.get(&url).bearer_auth(&token).send().await.unwrap();
        let (s, b) = json_of(r).await;
        assert_eq!(s, 200, "{b}");
        pages += 1;
        for item in b["value"].as_array().unwrap() {
            assert!(
                item["@odata.type"]
                    .as_str()
                    .unwrap()
                    .starts_with("#microsoft.graph.")
            );
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        next = b["@odata.nextLink"].as_str().map(str::to_string);
        if let Some(n) = &next {
            assert!(n.contains("$skiptoken="), "{n}");
        }
    }
    assert_eq!(seen.len(), expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), expected);
    assert_eq!(pages, expected.div_ceil(5));

    // Default page size 100: all of them in one page.
    let (_, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf"))
            .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), expected);
    assert!(b.get("@odata.nextLink").is_none());
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf?$top=1000"))
            .await,
    )
    .await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let (s, _) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf?$top=999"))
            .await,
    )
    .await;
    assert_eq!(s, 200);

    // A forged or edited skiptoken is refused.
    let (_, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf?$top=5"))
            .await,
    )
    .await;
    let link = b["@odata.nextLink"].as_str().unwrap();
    let tampered = link.replace("$skiptoken=", "$skiptoken=A");
    let r = t
        .http
        .get(&tampered)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let changed_top = link.replace("$top=5", "$top=6");
    let r = t
        .http
        .get(&changed_top)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "a token is bound to its query");
}

#[tokio::test]
async fn member_of_advanced_queries_need_consistency_level_and_count() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let base = format!("/v1.0/users/{ADA}/memberOf");
    for q in [
        "?$filter=startswith(displayName,'Tier')",
        "?$search=\"displayName:tier\"",
        "?$orderby=displayName",
        "?$count=true",
        "/microsoft.graph.group",
    ] {
        let (s, b) = json_of(t.get(&token, &format!("{base}{q}")).await).await;
        assert_graph_error(s, &b, 400, "Request_UnsupportedQuery");
        // The header alone is not enough (except for $count=true itself).
        if q != "?$count=true" {
            let (s, b) = json_of(t.get_eventual(&token, &format!("{base}{q}")).await).await;
            assert_graph_error(s, &b, 400, "Request_UnsupportedQuery");
        }
    }
    let sep = |q: &str| if q.contains('?') { "&" } else { "?" };
    let q = "?$filter=startswith(displayName,'Tier')";
    let (s, b) = json_of(
        t.get_eventual(&token, &format!("{base}{q}{}$count=true", sep(q)))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["@odata.count"], 2);
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}?$search=\"displayName:research\"&$count=true"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["displayName"], "Research");
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}?$search=displayName:research&$count=true"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "unquoted $search: {b}");
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}/microsoft.graph.directoryRole?$count=true"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"].as_array().unwrap().len(), 1);
    // A cast's items carry no @odata.type; the context names the type (issue 11).
    assert!(b["value"][0].get("@odata.type").is_none(), "{b}");
    assert!(
        b["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#directoryRoles"),
        "{b}"
    );
    let (s, b) = json_of(
        t.get_eventual(
            &token,
            &format!("{base}?$orderby=displayName desc&$count=true&$select=displayName"),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["displayName"], "Vienna staff");
    assert_eq!(b["value"][0].as_object().unwrap().len(), 2);

    let reader = t.app_token(READER).await;
    let (s, b) = json_of(t.get(&reader, &base).await).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");
}

/// Skip tokens expire after `skiptoken_ttl` on the virtual clock, with Graph's
/// 400 `Directory_ExpiredPageToken`.
#[tokio::test]
async fn member_of_skip_tokens_expire_on_the_virtual_clock() {
    let tenant = small_generated();
    let megan = tenant.users[0].id;
    let t = crate::support::start_with(tenant, |c| {
        c.skiptoken_ttl = std::time::Duration::from_secs(120);
        c.clock = Some("2026-03-02T08:00:00Z".parse().unwrap());
    })
    .await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let (_, b) = json_of(
        t.get(&token, &format!("/v1.0/users/{megan}/memberOf?$top=5"))
            .await,
    )
    .await;
    let link = b["@odata.nextLink"].as_str().unwrap().to_string();
    let follow = || async {
        let r = t.http.get(&link).bearer_auth(&token).send().await.unwrap();
        json_of(r).await
    };
    t.emu.advance_clock(std::time::Duration::from_secs(120));
    assert_eq!(follow().await.0, 200, "usable up to its lifetime");
    t.emu.advance_clock(std::time::Duration::from_secs(1));
    let (s, b) = follow().await;
    assert_graph_error(s, &b, 400, "Directory_ExpiredPageToken");
}
