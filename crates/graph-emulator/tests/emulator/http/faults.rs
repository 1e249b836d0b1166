//! Throttling and injected faults.

use std::time::{Duration, Instant};

use graph_emulator::{Family, FaultKind, FaultPlan, RateLimit, ThrottleConfig};

use crate::support::{ADA, FULL, assert_graph_error, fixture, json_of, start};

#[tokio::test]
async fn throttling_answers_429_with_fractional_retry_after_and_headers() {
    let t = start(fixture()).await;
    // The windows run on the emulator's clock: frozen here, so the wait is exact
    // however fast or slow the machine is.
    t.emu.set_clock(t.emu.now());
    let token = t.app_token(FULL).await;
    t.emu.set_throttle(ThrottleConfig {
        audit_logs: Some(RateLimit {
            requests: 2,
            per: Duration::from_secs(10),
        }),
        ..ThrottleConfig::off()
    });
    for step in [2_500, 1_125] {
        assert_eq!(
            t.get(&token, "/v1.0/auditLogs/signIns")
                .await
                .status()
                .as_u16(),
            200
        );
        t.emu.advance_clock(Duration::from_millis(step));
    }
    // The oldest request is 3.625 s old: 6.375 s are left of its 10 s window.
    let r = t.get(&token, "/v1.0/auditLogs/signIns").await;
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "6.375");
    for h in [
        "x-ms-throttle-limit-percentage",
        "x-ms-throttle-scope",
        "x-ms-throttle-information",
        "x-ms-resource-unit",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    // `<Scope>/<Limit>/<ApplicationId>/<TenantId>`, the documented order (issue 11, item 12).
    assert_eq!(
        r.headers()["x-ms-throttle-scope"],
        format!(
            "Tenant_Application/ReadWrite/{}/{}",
            FULL.0,
            fixture().tenant_id
        )
        .as_str()
    );
    let (s, b) = json_of(r).await;
    assert_graph_error(s, &b, 429, "TooManyRequests");
    // Other families are not affected.
    assert_eq!(
        t.get(&token, &format!("/v1.0/users/{ADA}"))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        t.emu
            .request_log()
            .family("signins")
            .last()
            .unwrap()
            .fault
            .as_deref(),
        Some("throttled")
    );
    // Once the clock has moved by the wait it was told, the request is admitted.
    t.emu.advance_clock(Duration::from_millis(6_374));
    assert_eq!(
        t.get(&token, "/v1.0/auditLogs/signIns")
            .await
            .status()
            .as_u16(),
        429
    );
    t.emu.advance_clock(Duration::from_millis(1));
    assert_eq!(
        t.get(&token, "/v1.0/auditLogs/signIns")
            .await
            .status()
            .as_u16(),
        200
    );

    // Published defaults: 5 audit requests per 10 s.
    t.emu.set_throttle(ThrottleConfig::published());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            t.get(&token, "/v1.0/auditLogs/signIns")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn injected_faults_status_drop_truncate_slow_and_shares() {
    let t = start(fixture()).await;
    let token = t.app_token(FULL).await;
    let path = format!("/v1.0/users/{ADA}/presence");

    t.emu.fail_next(
        Some(Family::Presence),
        1,
        FaultKind::Status {
            status: 503,
            retry_after: Some(1.5),
        },
    );
    let r = t.get(&token, &path).await;
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1.5");
    assert_eq!(t.get(&token, &path).await.status().as_u16(), 200);

    t.emu.fail_next(Some(Family::Presence), 1, FaultKind::Drop);
    let fresh = reqwest::Client::new();
    let err = fresh.get(t.url(&path)).bearer_auth(&token).send().await;
    assert!(
        err.is_err(),
        "connection dropped without an answer: {err:?}"
    );
    assert_eq!(t.emu.request_log().snapshot().last().unwrap().status, 0);

    t.emu
        .fail_next(Some(Family::Presence), 1, FaultKind::Truncate);
    let r = reqwest::Client::new()
        .get(t.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.is_err(), "truncated body");

    t.emu
        .fail_next(None, 1, FaultKind::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(t.get(&token, &path).await.status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    t.emu
        .set_faults(FaultPlan::parse("presence:429=1.0,retry_after=0.25").unwrap());
    for _ in 0..3 {
        let r = t.get(&token, &path).await;
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "0.25");
    }
    assert_eq!(
        t.get(&token, &format!("/v1.0/users/{ADA}"))
            .await
            .status()
            .as_u16(),
        200
    );

    // A share is drawn from a seeded RNG: same seed, same sequence.
    let run = |seed: u64| {
        let t = &t;
        let token = token.clone();
        let path = path.clone();
        async move {
            t.emu
                .set_faults(FaultPlan::parse(&format!("presence:503=0.5;seed={seed}")).unwrap());
            let mut v = Vec::new();
            for _ in 0..20 {
                v.push(t.get(&token, &path).await.status().as_u16());
            }
            v
        }
    };
    let a = run(3).await;
    assert_eq!(a, run(3).await);
    assert!(a.contains(&503) && a.contains(&200), "{a:?}");

    // The token endpoint can fail too.
    t.emu.set_faults(FaultPlan::none());
    t.emu.fail_next(
        Some(Family::Token),
        1,
        FaultKind::Status {
            status: 503,
            retry_after: None,
        },
    );
    let (s, b) = t
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", FULL.0),
            ("client_secret", FULL.1),
        ])
        .await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"], "temporarily_unavailable");
}
