//! How far a long action has got, for a caller that asked to be told.
//!
//! `run` prints one result and nobody listens in between, so its actions get
//! [`Progress::none`] and reporting costs one branch. The MCP server hands long
//! actions (`get_presences`, `pull_sign_ins`, `sync_ip_presence`) a reporter that
//! turns each step into a `notifications/progress` message when the client sent a
//! progress token. It serves every layer (like [`crate::error`]), so the use cases
//! below the actions can report without knowing who listens.

use std::sync::Arc;

type Report = dyn Fn(u64, Option<u64>, &str) + Send + Sync;

/// A sink for progress steps: `done` of `total` (when known), with a short message.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<Report>>);

impl Progress {
    /// Nobody listens.
    pub fn none() -> Self {
        Progress(None)
    }

    /// Steps go to `report`.
    pub fn new(report: impl Fn(u64, Option<u64>, &str) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(report)))
    }

    /// Whether anybody listens (so a caller can skip building a message).
    pub fn is_wanted(&self) -> bool {
        self.0.is_some()
    }

    /// One step: `done` of `total` units.
    pub fn report(&self, done: u64, total: Option<u64>, message: &str) {
        if let Some(report) = &self.0 {
            report(done, total, message);
        }
    }

    /// For per-record hooks: a step every `every` records (and none in between),
    /// so a million sign-ins make a thousand messages, not a million.
    pub fn count(&self, done: u64, every: u64, what: &str) {
        if self.0.is_some() && every > 0 && done.is_multiple_of(every) {
            self.report(done, None, &format!("{done} {what}"));
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(reported)"
        } else {
            "Progress(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn counting_reports_every_nth_record_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let p = Progress::new(move |done, total, msg| {
            sink.lock().unwrap().push((done, total, msg.to_string()))
        });
        for n in 1..=2500 {
            p.count(n, 1000, "sign-ins");
        }
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![
                (1000, None, "1000 sign-ins".to_string()),
                (2000, None, "2000 sign-ins".to_string())
            ]
        );
        Progress::none().report(1, Some(2), "nobody hears this");
    }
}
