//! [`pull`]: one run against Graph, page by page, with a progress line for a person
//! at a terminal; [`explain_forbidden`] says what a 403 from the sign-in log means.
//!
//! # Retention
//!
//! Entra keeps sign-ins 30 days with P1/P2 (which reading them through Graph needs; 7
//! days without), https://learn.microsoft.com/entra/identity/monitoring-health/reference-reports-data-retention,
//! and refuses a `createdDateTime` filter more than 90 days back with 400 `BadRequest`
//! "Invalid filter clause" (https://github.com/microsoftgraph/microsoft-graph-docs/issues/5676).
//! A cursor, backlog or `since` older than that would wedge every run on that 400, or
//! quietly read nothing for the span Graph no longer has. So the run measures the
//! retention horizon on Graph's own clock (the `Date` of its answers; never ours, which
//! the emulator's virtual clock need not share), clamps the cursor to it and reports the
//! span given up as `lost_to_retention`. A 400 on the first page of a run whose window
//! starts before the horizon is that refusal: one cheap request (`$top=1`, no filter)
//! reads Graph's clock, the cursor is clamped and the run starts again, once.

use std::time::Instant;

use jiff::Timestamp;
use serde_json::Value;

use super::cursor::SignInCursor;
use super::event_type::EventType;
use super::run::{PullOptions, PullRun, PullStats, SIGN_INS_PATH, Window};
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{ApiFamily, GraphClient, GraphPath, GraphRequest, ResponseHeaders};

/// How long Graph keeps sign-ins for a tenant that can read them (P1/P2); see the
/// module doc.
pub const RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 30);

/// A span of sign-ins Graph no longer keeps, given up by a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct LostSpan {
    /// Start of the span the state (or `since`) still wanted to read.
    #[schemars(with = "String")]
    pub from: Timestamp,
    /// The retention horizon: Graph's clock minus 30 days.
    #[schemars(with = "String")]
    pub until: Timestamp,
}

impl LostSpan {
    /// The span covering both.
    pub fn merge(a: Option<LostSpan>, b: Option<LostSpan>) -> Option<LostSpan> {
        match (a, b) {
            (Some(a), Some(b)) => Some(LostSpan {
                from: a.from.min(b.from),
                until: a.until.max(b.until),
            }),
            (a, b) => a.or(b),
        }
    }
}

/// Graph's clock, from the `Date` of an answer (RFC 9110's IMF-fixdate).
pub fn server_time(headers: &ResponseHeaders) -> Option<Timestamp> {
    let date = headers.get("date")?.as_str()?;
    jiff::fmt::rfc2822::parse(date).ok().map(|z| z.timestamp())
}

/// What [`pull`] gives back besides the records.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub cursor: SignInCursor,
    pub stats: PullStats,
    pub windows: Vec<Window>,
    /// Headers of the last Graph response (request ids, throttling headers).
    pub headers: ResponseHeaders,
    /// Sign-ins Graph no longer keeps that the state or `since` still wanted.
    pub lost_to_retention: Option<LostSpan>,
}

/// Read one run's new sign-ins and hand each to `on_record`, page by page (memory
/// stays flat). The returned cursor is the state to keep once the records are safe.
pub async fn pull<F>(
    graph: &GraphClient,
    cursor: SignInCursor,
    event_type: EventType,
    user_filter: Option<&str>,
    options: &PullOptions,
    mut on_record: F,
) -> Result<PullOutcome>
where
    F: FnMut(&Value) -> Result<()>,
{
    let start = cursor.clone();
    let mut run = PullRun::new(cursor, options).for_event_type(event_type);
    let mut windows = Vec::new();
    let mut headers = ResponseHeaders::new();
    let mut progress = options.progress.then(Progress::new);
    let mut lost = None;
    let mut restarted = false;
    'windows: while let Some(window) = run.next_window() {
        windows.push(window);
        let mut pages = graph.pages(window.request(user_filter, options.top));
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if !restarted && run.stats().pages == 0 && e.status_code == Some(400) => {
                    // Perhaps Graph's 90-day limit: read its clock and see.
                    restarted = true;
                    let Some(now) = graph_clock(graph, event_type).await else {
                        return Err(e);
                    };
                    let horizon = minus(now, RETENTION);
                    if window.from >= horizon {
                        return Err(e);
                    }
                    tracing::warn!(from = %window.from, %horizon, "sign-in window older than Graph keeps; clamping");
                    let mut clamped = start.clone();
                    lost = clamped
                        .clamp_to(horizon)
                        .map(|(from, until)| LostSpan { from, until });
                    run = PullRun::new(clamped, options).for_event_type(event_type);
                    windows.clear();
                    continue 'windows;
                }
                Err(e) => return Err(explain_forbidden(e)),
            };
            let more = run.take_page(&page.items, page.next_link.is_some(), &mut on_record)?;
            headers = page.headers;
            if let Some(p) = &mut progress {
                p.page(&window, run.span_read(), run.stats());
            }
            if !more {
                break;
            }
        }
        run.end_window();
    }
    if let Some(p) = &mut progress {
        p.show(run.stats(), true);
    }
    let (mut cursor, stats) = run.finish();
    // Whatever was read, what lies before Graph's horizon is gone: say so, and keep the
    // cursor from asking for it again (past 90 days that would be a 400 every run).
    if let Some(now) = server_time(&headers) {
        let horizon = super::cursor::floor_second(minus(now, RETENTION));
        for w in windows.iter().filter(|w| w.from < horizon) {
            let until = w.until.map_or(horizon, |u| u.min(horizon));
            lost = LostSpan::merge(
                lost,
                Some(LostSpan {
                    from: w.from,
                    until,
                }),
            );
        }
        let clamped = cursor
            .clamp_to(horizon)
            .map(|(from, until)| LostSpan { from, until });
        lost = LostSpan::merge(lost, clamped);
    }
    Ok(PullOutcome {
        cursor,
        stats,
        windows,
        headers,
        lost_to_retention: lost,
    })
}

/// What [`pull_each`] gives back: one cursor per event type read, the counts summed.
#[derive(Debug, Clone)]
pub struct PullEachOutcome {
    pub cursors: std::collections::BTreeMap<EventType, SignInCursor>,
    pub stats: PullStats,
    pub windows: Vec<Window>,
    pub headers: ResponseHeaders,
    pub lost_to_retention: Option<LostSpan>,
}

/// [`pull`] each event type in turn, each from its own cursor (taken from `cursors`, or
/// `fresh()` when it has none yet), with `max_records` shared among them.
pub async fn pull_each<F>(
    graph: &GraphClient,
    event_types: &[EventType],
    mut cursors: std::collections::BTreeMap<EventType, SignInCursor>,
    fresh: impl Fn() -> Result<SignInCursor>,
    user_filter: Option<&str>,
    options: &PullOptions,
    mut on_record: F,
) -> Result<PullEachOutcome>
where
    F: FnMut(&Value) -> Result<()>,
{
    let mut out = PullEachOutcome {
        cursors: std::collections::BTreeMap::new(),
        stats: PullStats::default(),
        windows: Vec::new(),
        headers: ResponseHeaders::new(),
        lost_to_retention: None,
    };
    for &t in event_types {
        let cursor = match cursors.remove(&t) {
            Some(c) => c,
            None => fresh()?,
        };
        let left = options
            .max_records
            .map(|m| m.saturating_sub(out.stats.records));
        if left == Some(0) {
            // Untouched: read by a later run.
            out.stats.truncated = true;
            out.cursors.insert(t, cursor);
            continue;
        }
        let options = PullOptions {
            max_records: left,
            ..options.clone()
        };
        let o = pull(graph, cursor, t, user_filter, &options, &mut on_record).await?;
        out.stats.records += o.stats.records;
        out.stats.pages += o.stats.pages;
        out.stats.duplicates_dropped += o.stats.duplicates_dropped;
        out.stats.outside_window += o.stats.outside_window;
        out.stats.truncated |= o.stats.truncated;
        out.windows.extend(o.windows);
        if !o.headers.is_empty() {
            out.headers = o.headers;
        }
        out.lost_to_retention = LostSpan::merge(out.lost_to_retention, o.lost_to_retention);
        out.cursors.insert(t, o.cursor);
    }
    // Cursors of event types not asked for this time are kept as they were.
    out.cursors.extend(cursors);
    Ok(out)
}

/// Graph's clock, read with the cheapest sign-in request there is.
async fn graph_clock(graph: &GraphClient, event_type: EventType) -> Option<Timestamp> {
    let mut request =
        GraphRequest::get(GraphPath::new(SIGN_INS_PATH), ApiFamily::AuditLogs).query("$top", "1");
    if event_type != EventType::InteractiveUser {
        request = request.api_version(crate::asset::ApiVersion::Beta);
    }
    let response = graph.send(request).await.ok()?;
    server_time(&response.headers)
}

fn minus(t: Timestamp, d: jiff::SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// A 403 from the sign-in log says why in Graph's words; add what to do about it.
pub fn explain_forbidden(e: Error) -> Error {
    if e.kind != ErrorKind::Graph || e.status_code != Some(403) {
        return e;
    }
    // The licence code has two causes: a tenant without P1/P2, or (a known issue, seen
    // intermittently in licensed tenants) an app without Directory.Read.All
    // (https://learn.microsoft.com/graph/api/signin-list, https://learn.microsoft.com/graph/known-issues).
    let hint = if e.code.as_deref() == Some("Authentication_RequestFromNonPremiumTenantOrB2CTenant")
    {
        "one of two causes: the tenant has no Microsoft Entra ID P1 or P2 licence \
         (a free or B2C tenant cannot read sign-in logs: license it), or the app lacks the \
         application permission Directory.Read.All (Graph gives this same error then, \
         even in a licensed tenant: grant it with admin consent, beside AuditLog.Read.All)"
    } else {
        "reading sign-in logs needs the application permissions AuditLog.Read.All and \
         Directory.Read.All with admin consent"
    };
    Error {
        message: format!("{} ({hint})", e.message),
        ..e
    }
}

/// The stderr progress line, for a person at a terminal.
struct Progress {
    started: Instant,
    last_shown: Option<Instant>,
    fraction: Option<f64>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: Instant::now(),
            last_shown: None,
            fraction: None,
        }
    }

    /// Newest first: the share of the window's time span read so far gives the ETA.
    fn page(
        &mut self,
        window: &Window,
        span_read: Option<(Timestamp, Timestamp)>,
        stats: &PullStats,
    ) {
        if let Some((newest, at)) = span_read {
            let top = window.until.unwrap_or(newest);
            let span = top.duration_since(window.from).as_secs_f64();
            if span > 0.0 {
                let done = top.duration_since(at).as_secs_f64() / span;
                self.fraction = Some(done.clamp(0.0, 1.0));
            }
        }
        self.show(stats, false);
    }

    fn show(&mut self, stats: &PullStats, last: bool) {
        use std::io::Write;
        let now = Instant::now();
        if !last
            && self
                .last_shown
                .is_some_and(|t| now.duration_since(t).as_millis() < 250)
        {
            return;
        }
        self.last_shown = Some(now);
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let rate = stats.records as f64 / secs;
        let eta = match self.fraction {
            Some(f) if f > 0.01 && !last => {
                format!(", ETA {:.0} s", secs * (1.0 - f) / f)
            }
            _ => String::new(),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rpull_sign_ins: {} records, {} pages, {} duplicates dropped, {rate:.0} records/s{eta}\x1b[K",
            stats.records, stats.pages, stats.duplicates_dropped
        );
        if last {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}
