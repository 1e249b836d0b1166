//! Sign-ins: order, filters, permissions, late records on the virtual clock,
//! snapshot paging.

use std::collections::HashSet;
use std::time::Duration;

use graph_emulator as emulator;
use jiff::Timestamp;
use uuid::Uuid;

use crate::support::{
    FULL, READER, assert_graph_error, fixture, json_of, small_generated, start, start_with,
};

#[tokio::test]
async fn sign_ins_newest_first_filters_top_and_permissions() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(s, 200, "{b}");
    let ids: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "5170a000-0000-4000-8000-000000000004",
            "5170a000-0000-4000-8000-000000000003",
            "5170a000-0000-4000-8000-000000000002",
            "5170a000-0000-4000-8000-000000000001",
        ]
    );
    let rec = &b["value"][1];
    assert_eq!(rec["userPrincipalName"], "grace.hopper@fabrikam.example");
    assert_eq!(rec["status"]["errorCode"], 50126);
    for k in [
        "correlationId",
        "deviceDetail",
        "location",
        "riskEventTypes_v2",
        "appliedConditionalAccessPolicies",
        "conditionalAccessStatus",
    ] {
        assert!(rec.get(k).is_some(), "{k}");
    }
    let one = serde_json::to_string(&b["value"][0]).unwrap();
    assert!(
        (700..1400).contains(&one.len()),
        "record size {}: {one}",
        one.len()
    );

    let q = |f: &str| format!("/v1.0/auditLogs/signIns?$filter={}", url_encode(f));
    let (_, b) = json_of(t.get(&token, &q("createdDateTime ge 2025-06-02T08:05:00Z and createdDateTime lt 2025-06-02T08:20:00Z")).await).await;
    let ids: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "5170a000-0000-4000-8000-000000000003",
            "5170a000-0000-4000-8000-000000000002"
        ]
    );
    let (_, b) = json_of(
        t.get(
            &token,
            &q("createdDateTime gt 2025-06-02T08:00:00Z and status/errorCode ne 0"),
        )
        .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), 1);
    let (_, b) = json_of(
        t.get(
            &token,
            &q("userPrincipalName eq 'Ada.Lovelace@fabrikam.example'"),
        )
        .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), 2);
    for bad in [
        "createdDateTime ge '2025-06-02T08:00:00Z'",
        "createdDateTime ge 2025-06-02T08:00:00Z or createdDateTime le 2025-06-02T09:00:00Z",
        "deviceDetail/browser eq 'Edge'",
        "createdDateTime ne 2025-06-02T08:00:00Z",
    ] {
        let (s, b) = json_of(t.get(&token, &q(bad)).await).await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
    let (_, b) = json_of(
        t.get(
            &token,
            &q("startswith(userPrincipalName,'SEAN.') and isInteractive eq true"),
        )
        .await,
    )
    .await;
    assert_eq!(b["value"].as_array().unwrap().len(), 1);
    let (s, b) = json_of(
        t.get(&token, "/v1.0/auditLogs/signIns?$select=id,createdDateTime,ipAddress,userPrincipalName,status&$top=2")
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0].as_object().unwrap().len(), 5);
    assert!(b["@odata.nextLink"].as_str().unwrap().contains("select"));
    let (s, _) = json_of(
        t.get(&token, "/v1.0/auditLogs/signIns?$select=id,shoeSize")
            .await,
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns?$top=1001").await).await;
    assert_graph_error(s, &b, 400, "Request_BadRequest");
    let reader = t.app_token(READER).await;
    let (s, b) = json_of(t.get(&reader, "/v1.0/auditLogs/signIns").await).await;
    assert_graph_error(s, &b, 403, "Authorization_RequestDenied");

    let mut tenant = fixture();
    tenant.premium = false;
    let basic = start(tenant).await;
    let token = basic.app_token(FULL).await;
    let (s, b) = json_of(basic.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_graph_error(
        s,
        &b,
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    );
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn late_sign_ins_appear_with_the_virtual_clock() {
    let t = start(fixture()).await;
    t.emu.set_clock("2025-06-02T08:30:00Z".parse().unwrap());
    let token = t.app_token(FULL).await;
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    let ids: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(&"5170a000-0000-4000-8000-000000000004"));
    t.emu.advance_clock(Duration::from_secs(15 * 60));
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(b["value"][0]["id"], "5170a000-0000-4000-8000-000000000004");

    // Records added at runtime obey visible_at too.
    let mut late = fixture().sign_ins[0].clone();
    late.id = Uuid::new_v4();
    late.created_date_time = "2025-06-02T08:40:00Z".parse().unwrap();
    late.visible_at = Some("2025-06-02T09:00:00Z".parse().unwrap());
    t.emu.add_sign_ins(vec![late.clone()]);
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(b["value"].as_array().unwrap().len(), 4);
    t.emu.advance_clock(Duration::from_secs(15 * 60));
    let (_, b) = json_of(t.get(&token, "/v1.0/auditLogs/signIns").await).await;
    assert_eq!(b["value"][0]["id"], late.id.to_string());
}

#[tokio::test]
async fn sign_in_paging_is_complete_and_a_stable_snapshot() {
    let tenant = small_generated();
    // v1.0 lists the interactive ones (the generated tenant has others too).
    let records: Vec<_> = tenant
        .sign_ins
        .iter()
        .filter(|s| s.is_interactive_user())
        .cloned()
        .collect();
    assert!(records.len() < tenant.sign_ins.len());
    let t = start(tenant).await;
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;

    // Real clock: every generated record (2025) is visible; three full pages.
    let mut next = Some(t.url("/v1.0/auditLogs/signIns"));
    let mut got = Vec::new();
    while let Some(url) = next.take() {
        let (s, b) = json_of(t.http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(s, 200, "{b}");
        for v in b["value"].as_array().unwrap() {
            got.push((
                v["createdDateTime"]
                    .as_str()
                    .unwrap()
                    .parse::<Timestamp>()
                    .unwrap(),
                v["id"].as_str().unwrap().to_string(),
            ));
        }
        next = b["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(got.len(), records.len());
    assert_eq!(
        got.iter().map(|g| &g.1).collect::<HashSet<_>>().len(),
        records.len()
    );
    assert!(got.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");

    // Mid-day: the sequence is the snapshot at the first page, even as the clock moves.
    let t0: Timestamp = "2025-06-02T10:00:00Z".parse().unwrap();
    t.emu.set_clock(t0);
    let token = t
        .app_token((emulator::FULL_APP_CLIENT_ID, emulator::FULL_APP_SECRET))
        .await;
    let mut next = Some(t.url("/v1.0/auditLogs/signIns?$top=50"));
    let mut got = HashSet::new();
    while let Some(url) = next.take() {
        let (s, b) = json_of(t.http.get(&url).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(s, 200, "{b}");
        for v in b["value"].as_array().unwrap() {
            assert!(
                got.insert(v["id"].as_str().unwrap().to_string()),
                "duplicate"
            );
        }
        next = b["@odata.nextLink"].as_str().map(str::to_string);
        t.emu.advance_clock(Duration::from_secs(120));
    }
    let want: HashSet<String> = records
        .iter()
        .filter(|s| s.visible_at() <= t0)
        .map(|s| s.id.to_string())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

/// v1.0 lists interactive sign-ins only and refuses the event-type lambda as Graph does
/// (400 "Invalid filter clause"); beta lists the others with it.
#[tokio::test]
async fn event_types_v1_is_interactive_only_beta_takes_the_lambda() {
    let mut tenant = fixture();
    let n = tenant.sign_ins.len();
    tenant.sign_ins[0].is_interactive = false;
    tenant.sign_ins[1].sign_in_event_types = vec!["servicePrincipal".into()];
    let (background, app) = (tenant.sign_ins[0].id, tenant.sign_ins[1].id);
    let t = start(tenant).await;
    let token = t.app_token(FULL).await;
    let ids = |b: &serde_json::Value| -> HashSet<String> {
        b["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    for version in ["v1.0", "beta"] {
        let (s, b) = json_of(
            t.get(&token, &format!("/{version}/auditLogs/signIns"))
                .await,
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let got = ids(&b);
        assert_eq!(got.len(), n - 2, "{version}: interactive only");
        assert!(!got.contains(&background.to_string()));
    }
    let lambda = url_encode(
        "signInEventTypes/any(t: t eq 'nonInteractiveUser') and createdDateTime ge 2025-06-01T00:00:00Z",
    );
    let (s, b) = json_of(
        t.get(&token, &format!("/v1.0/auditLogs/signIns?$filter={lambda}"))
            .await,
    )
    .await;
    assert_graph_error(s, &b, 400, "BadRequest");
    assert_eq!(b["error"]["message"], "Invalid filter clause");
    let (s, b) = json_of(
        t.get(&token, &format!("/beta/auditLogs/signIns?$filter={lambda}"))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), HashSet::from([background.to_string()]));
    assert_eq!(
        b["value"][0]["signInEventTypes"],
        serde_json::json!(["nonInteractiveUser"])
    );
    let both =
        url_encode("signInEventTypes/any(x:x eq 'servicePrincipal' or x eq 'nonInteractiveUser')");
    let (s, b) = json_of(
        t.get(&token, &format!("/beta/auditLogs/signIns?$filter={both}"))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        ids(&b),
        HashSet::from([background.to_string(), app.to_string()])
    );
}

/// Retention on the virtual clock: 30 days with P1/P2 (older records are gone), and no
/// `createdDateTime` bound more than 90 days back (400 "Invalid filter clause").
/// `Date` tells the virtual time.
#[tokio::test]
async fn retention_and_the_90_day_limit_on_the_virtual_clock() {
    let t = start_with(fixture(), |c| c.sign_in_retention = true).await;
    let q = |f: &str| format!("/v1.0/auditLogs/signIns?$filter={}", url_encode(f));
    let since = "createdDateTime ge 2025-06-01T00:00:00Z";
    t.emu.set_clock("2025-06-20T00:00:00Z".parse().unwrap());
    let token = t.app_token(FULL).await;
    let r = t.get(&token, &q(since)).await;
    assert_eq!(r.headers()["date"], "Fri, 20 Jun 2025 00:00:00 GMT");
    let (s, b) = json_of(r).await;
    assert_eq!((s, b["value"].as_array().unwrap().len()), (200, 4), "{b}");
    // 31 days on: the records of 2025-06-02 are past retention.
    t.emu.set_clock("2025-07-03T12:00:00Z".parse().unwrap());
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, &q(since)).await).await;
    assert_eq!((s, b["value"].as_array().unwrap().len()), (200, 0), "{b}");
    // 91 days on: the filter itself is refused.
    t.emu.set_clock("2025-08-31T00:00:00Z".parse().unwrap());
    let token = t.app_token(FULL).await;
    let (s, b) = json_of(t.get(&token, &q(since)).await).await;
    assert_graph_error(s, &b, 400, "BadRequest");
    assert_eq!(b["error"]["message"], "Invalid filter clause");
}
