//! [`pull`]: one run against Graph, page by page, with a progress line for a person
//! at a terminal; [`explain_forbidden`] says what a 403 from the sign-in log means.

use std::time::Instant;

use jiff::Timestamp;
use serde_json::Value;

use super::cursor::SignInCursor;
use super::run::{PullOptions, PullRun, PullStats, Window};
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{GraphClient, ResponseHeaders};

/// What [`pull`] gives back besides the records.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub cursor: SignInCursor,
    pub stats: PullStats,
    pub windows: Vec<Window>,
    /// Headers of the last Graph response (request ids, throttling headers).
    pub headers: ResponseHeaders,
}

/// Read one run's new sign-ins and hand each to `on_record`, page by page (memory
/// stays flat). The returned cursor is the state to keep once the records are safe.
pub async fn pull<F>(
    graph: &GraphClient,
    cursor: SignInCursor,
    user_filter: Option<&str>,
    options: &PullOptions,
    mut on_record: F,
) -> Result<PullOutcome>
where
    F: FnMut(&Value) -> Result<()>,
{
    let mut run = PullRun::new(cursor, options);
    let mut windows = Vec::new();
    let mut headers = ResponseHeaders::new();
    let mut progress = options.progress.then(Progress::new);
    while let Some(window) = run.next_window() {
        windows.push(window);
        let mut pages = graph.pages(window.request(user_filter, options.top));
        while let Some(page) = pages.next_page().await.map_err(explain_forbidden)? {
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
    let (cursor, stats) = run.finish();
    Ok(PullOutcome {
        cursor,
        stats,
        windows,
        headers,
    })
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
