//! The cursor logic against a simulated sign-in log (late, newest first, paged).

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::filter::has_top_level_or;
use super::*;
use crate::error::{Error, ErrorKind};
use crate::graph::ApiFamily;
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn at(base: Timestamp, secs: i64) -> Timestamp {
    base.checked_add(SignedDuration::from_secs(secs)).unwrap()
}

/// A sign-in log as Graph serves it: newest first, late, in pages.
struct Log {
    /// (id, created, visible from)
    records: Vec<(String, Timestamp, Timestamp)>,
}

impl Log {
    fn list(&self, now: Timestamp, w: &Window) -> Vec<Value> {
        let mut hits: Vec<_> = self
            .records
            .iter()
            .filter(|(_, c, v)| *v <= now && w.contains(*c))
            .collect();
        // Newest first; ties in whatever order (here: by id, descending).
        hits.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        hits.iter()
            .map(|(id, c, _)| json!({"id": id, "createdDateTime": c.to_string()}))
            .collect()
    }

    /// One run at server time `now`, driven exactly as `pull` drives it.
    fn run(
        &self,
        now: Timestamp,
        cursor: SignInCursor,
        options: &PullOptions,
        out: &mut Vec<String>,
    ) -> (SignInCursor, PullStats) {
        let mut run = PullRun::new(cursor, options);
        let mut deliver = |r: &Value| {
            out.push(r["id"].as_str().unwrap().to_string());
            Ok(())
        };
        while let Some(w) = run.next_window() {
            let all = self.list(now, &w);
            let pages: Vec<&[Value]> = all.chunks(options.top as usize).collect();
            for (i, page) in pages.iter().enumerate() {
                let more = i + 1 < pages.len();
                if !run.take_page(page, more, &mut deliver).unwrap() {
                    break;
                }
            }
            run.end_window();
        }
        let (c, s) = run.finish();
        // What is printed is what the next run reads.
        let c = SignInCursor::from_json(&c.to_json()).unwrap();
        (c, s)
    }
}

fn assert_exactly_once(log: &Log, delivered: &[String]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in delivered {
        *seen.entry(id).or_default() += 1;
    }
    for (id, _, _) in &log.records {
        assert_eq!(seen.get(id.as_str()).copied().unwrap_or(0), 1, "{id}");
    }
    assert_eq!(seen.len(), log.records.len());
}

#[test]
fn window_filter_and_user_filter() {
    let w = Window {
        from: ts("2026-01-01T00:00:00Z"),
        until: Some(ts("2026-01-02T00:00:00Z")),
        kind: WindowKind::Live,
        event_type: EventType::InteractiveUser,
    };
    assert_eq!(
        w.filter(Some("status/errorCode ne 0")),
        "createdDateTime ge 2026-01-01T00:00:00Z and createdDateTime le 2026-01-02T00:00:00Z and status/errorCode ne 0"
    );
    assert_eq!(
        w.filter(Some("appId eq 'a' OR appId eq 'b'")),
        "createdDateTime ge 2026-01-01T00:00:00Z and createdDateTime le 2026-01-02T00:00:00Z and (appId eq 'a' OR appId eq 'b')"
    );
    for f in [
        "(a eq 1 or b eq 2) and c eq 3",
        "appDisplayName eq 'x or y'",
        "orbit eq 1",
    ] {
        assert!(!has_top_level_or(f), "{f}");
    }
    assert!(has_top_level_or("a eq 'it''s' or b eq 1"));
    let open = Window { until: None, ..w };
    assert_eq!(open.filter(None), "createdDateTime ge 2026-01-01T00:00:00Z");
    let r = open.request(None, 5000);
    assert_eq!(r.path.as_str(), "auditLogs/signIns");
    assert_eq!(r.query[1], ("$top".to_string(), "1000".to_string()));
    assert_eq!(r.family, ApiFamily::AuditLogs);
    assert_eq!(r.api_version, None);
    // Other event types: beta, the lambda first, then the window and the user's filter.
    let background = Window {
        event_type: EventType::NonInteractiveUser,
        ..open
    };
    assert_eq!(
        background.filter(Some("appId eq 'a' or appId eq 'b'")),
        "signInEventTypes/any(t: t eq 'nonInteractiveUser') and createdDateTime ge 2026-01-01T00:00:00Z and (appId eq 'a' or appId eq 'b')"
    );
    assert_eq!(
        background.request(None, 10).api_version,
        Some(crate::asset::ApiVersion::Beta)
    );
}

#[test]
fn user_filters_cannot_escape_or_move_the_window() {
    assert!(check_user_filter("status/errorCode ne 0").is_ok());
    assert!(check_user_filter("appDisplayName eq 'a (b'' c)'").is_ok());
    assert!(check_user_filter("x eq 1) or (true").is_err());
    assert!(check_user_filter("(x eq 1").is_err());
    assert!(check_user_filter("x eq 'open").is_err());
    assert!(check_user_filter("CreatedDateTime ge 2020-01-01T00:00:00Z").is_err());
    // Inside a literal it is only text.
    assert!(check_user_filter("userPrincipalName eq 'createdDateTime@x.com'").is_ok());
}

#[test]
fn state_round_trips_and_refuses_other_versions_and_garbage() {
    let mut c = SignInCursor::start(ts("2026-01-01T00:00:00.7Z"), Some("x eq 1".into()));
    assert_eq!(c.window_start, ts("2026-01-01T00:00:00Z"));
    c.cursor = Some(ts("2026-01-01T01:00:00Z"));
    c.remember(ts("2026-01-01T00:59:00Z"), "a");
    c.remember(ts("2026-01-01T00:59:00Z"), "b");
    let v = c.to_json();
    assert_eq!(v["delivered"]["2026-01-01T00:59:00Z"], json!(["a", "b"]));
    assert_eq!(SignInCursor::from_json(&v).unwrap(), c);

    let mut old = v.clone();
    old["version"] = json!(0);
    let e = SignInCursor::from_json(&old).unwrap_err();
    // Pointers are relative to the state; the caller places them.
    assert_eq!((e.exit_code(), e.details[0].path.as_str()), (2, "/version"));
    assert_eq!(e.under("/state").details[0].path, "/state/version");
    for (bad, at) in [
        (json!("x"), ""),
        (json!({}), "/version"),
        (json!({"version": 1, "window_start": "yesterday"}), ""),
        (
            json!({"version": 1, "window_start": "2026-01-01T00:00:00Z", "cursor": null, "extra": 1}),
            "",
        ),
        (
            json!({"version": 1, "window_start": "2026-01-02T00:00:00Z", "cursor": null,
                   "delivered": {"2026-01-01T00:00:00Z": ["old"]}}),
            "/delivered",
        ),
    ] {
        let e = SignInCursor::from_json(&bad).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad}");
        assert_eq!(e.details[0].path, at, "{bad}");
    }
}

#[test]
fn late_sign_ins_across_runs_are_delivered_once() {
    let base = ts("2026-03-01T08:00:00Z");
    // Two per minute for three hours, visible 0..25 minutes late.
    let records = (0..360)
        .map(|i| {
            let c = at(base, i * 30);
            let late = (i * 7919) % (25 * 60);
            (format!("s{i:04}"), c, at(c, late))
        })
        .collect();
    let log = Log { records };
    let options = PullOptions::default();
    let mut cursor = SignInCursor::start(base, None);
    let mut out = Vec::new();
    // A run every 20 minutes, well past the last visibility.
    for k in 1..=12 {
        let (c, _) = log.run(at(base, k * 20 * 60), cursor, &options, &mut out);
        cursor = c;
        // Bounded: ids of the lookback window only.
        assert!(cursor.remembered() <= 2 * 31 + 2, "{}", cursor.remembered());
    }
    assert_exactly_once(&log, &out);
}

#[test]
fn equal_timestamps_across_a_page_boundary_and_a_cut() {
    let base = ts("2026-03-01T08:00:00Z");
    // Seven sign-ins in the same second, pages of three, max_records cutting at two.
    let records = (0..7)
        .map(|i| (format!("e{i}"), base, base))
        .chain([("late".to_string(), at(base, -1), at(base, 5))])
        .collect();
    let log = Log { records };
    let options = PullOptions {
        top: 3,
        max_records: Some(2),
        ..PullOptions::default()
    };
    let mut cursor = SignInCursor::start(at(base, -60), None);
    let mut out = Vec::new();
    let mut truncated_runs = 0;
    for k in 0..8 {
        let (c, s) = log.run(at(base, k), cursor, &options, &mut out);
        truncated_runs += u32::from(s.truncated);
        cursor = c;
    }
    assert!(truncated_runs >= 3);
    assert!(cursor.backlog.is_none());
    assert_exactly_once(&log, &out);
}

#[test]
fn max_records_backfills_from_new_to_old_reading_each_page_once() {
    let base = ts("2026-03-01T00:00:00Z");
    let records = (0..1000)
        .map(|i| (format!("b{i:04}"), at(base, i * 60), at(base, i * 60)))
        .collect();
    let log = Log { records };
    let options = PullOptions {
        top: 100,
        max_records: Some(250),
        ..PullOptions::default()
    };
    let now = at(base, 2000 * 60);
    let mut cursor = SignInCursor::start(base, None);
    let (mut out, mut pages, mut runs) = (Vec::new(), 0, 0);
    loop {
        let (c, s) = log.run(now, cursor, &options, &mut out);
        cursor = c;
        pages += s.pages;
        runs += 1;
        assert!(cursor.remembered() <= 40, "{}", cursor.remembered());
        if !s.truncated {
            break;
        }
    }
    assert_exactly_once(&log, &out);
    assert!(runs <= 6, "{runs}");
    // Ten pages of data, plus the pages re-read where a cut fell inside one,
    // plus the final live-window pages.
    assert!(pages <= 18, "{pages}");
}

#[test]
fn until_leaves_newer_sign_ins_for_later_and_cannot_move_back_into_a_backlog() {
    let base = ts("2026-03-01T00:00:00Z");
    let records = (0..100)
        .map(|i| (format!("u{i:03}"), at(base, i * 60), at(base, i * 60)))
        .collect();
    let log = Log { records };
    let now = at(base, 200 * 60);
    let until = at(base, 50 * 60);
    let mut out = Vec::new();
    let first = PullOptions {
        until: Some(until),
        max_records: Some(20),
        ..PullOptions::default()
    };
    let (c, s) = log.run(now, SignInCursor::start(base, None), &first, &mut out);
    assert!(s.truncated);
    assert!(out.iter().all(|id| id.as_str() <= "u050"));
    assert!(c.check_until(Some(at(base, 10 * 60))).is_err());
    assert!(c.check_until(Some(until)).is_ok());
    let (c, _) = log.run(
        now,
        c,
        &PullOptions {
            max_records: None,
            ..first
        },
        &mut out,
    );
    assert_eq!(out.len(), 51);
    let (_, _) = log.run(now, c, &PullOptions::default(), &mut out);
    assert_exactly_once(&log, &out);
}

#[test]
fn outside_window_and_missing_fields() {
    let mut run = PullRun::new(
        SignInCursor::start(ts("2026-01-01T00:00:00Z"), None),
        &PullOptions::default(),
    );
    run.next_window().unwrap();
    let items = [json!({"id": "old", "createdDateTime": "2025-12-31T23:59:59Z"})];
    let mut n = 0;
    run.take_page(&items, false, &mut |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!((n, run.stats().outside_window), (0, 1));
    let e = run
        .take_page(&[json!({"id": "x"})], false, &mut |_| Ok(()))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Graph);
}

#[test]
fn forbidden_explains_licence_or_permission() {
    let e = explain_forbidden(
        Error::graph(
            403,
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
        .with_code("Authentication_RequestFromNonPremiumTenantOrB2CTenant"),
    );
    assert!(e.message.contains("Entra ID P1 or P2"));
    assert!(
        e.message.contains("Directory.Read.All"),
        "the known issue's cause is named too: {}",
        e.message
    );
    assert_eq!(
        e.code.as_deref(),
        Some("Authentication_RequestFromNonPremiumTenantOrB2CTenant")
    );
    let e = explain_forbidden(
        Error::graph(403, "Insufficient privileges").with_code("Authorization_RequestDenied"),
    );
    assert!(e.message.contains("AuditLog.Read.All") && e.message.contains("Directory.Read.All"));
    assert_eq!(e.exit_code(), 4);
    assert_eq!(explain_forbidden(Error::graph(404, "x")).message, "x");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the arrival delays (within the lookback), run times, page sizes,
    /// `max_records` and equal timestamps: every sign-in exactly once.
    #[test]
    fn exactly_once_whatever_the_schedule(
        recs in prop::collection::vec((0i64..7200, 0i64..=1800), 0..300),
        gaps in prop::collection::vec(1i64..1500, 1..15),
        top in 1u32..50,
        max in prop::option::of(1u64..80),
        lookback_min in 30i64..45,
    ) {
        let base = ts("2026-03-01T00:00:00Z");
        let records: Vec<_> = recs
            .iter()
            .enumerate()
            // Coarse seconds: many equal timestamps.
            .map(|(i, (c, late))| {
                let c = at(base, c - c % 5);
                (format!("p{i:04}"), c, at(c, *late))
            })
            .collect();
        let log = Log { records };
        let options = PullOptions {
            lookback: SignedDuration::from_mins(lookback_min),
            top,
            max_records: max,
            ..PullOptions::default()
        };
        let mut cursor = SignInCursor::start(base, None);
        let mut out = Vec::new();
        let mut now = base;
        for g in gaps {
            now = at(now, g);
            let (c, _) = log.run(now, cursor, &options, &mut out);
            cursor = c;
        }
        // Then later, until drained.
        let end = at(base, 7200 + 1800 + 1);
        for _ in 0..1000 {
            let (c, s) = log.run(end, cursor, &options, &mut out);
            cursor = c;
            if !s.truncated { break; }
        }
        assert_exactly_once(&log, &out);
    }
}
