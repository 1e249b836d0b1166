//! Client-side pacing: at most N requests per window, per (token URL, client
//! id, [`ApiFamily`]), shared by every request of this process, so a bulk
//! action spreads its calls under Graph's published limits instead of
//! provoking 429s. A sliding window of recent start times: exact, and small
//! enough at these limits (at most a few thousand instants).
//!
//! The window is kept [`MARGIN`] longer than the published one: we count a
//! request when it starts and Graph when it arrives, so a window exactly as
//! long as Graph's lets the first request of the next window land a few
//! milliseconds early and draw a 429 (seen against the emulator at 5 / 10 s).
//! Two per cent costs two per cent of throughput and removes that edge.
//!
//! That limiter is this process's only. When the run has a state backend (a state dir,
//! or `--state-url`), [`pacer`] gives a [`Pacer::Shared`] instead: the same sliding
//! window kept in the backend ([`crate::backend::budget`]) and reserved by every
//! process of the app and tenant before each request, so eight concurrent runs share
//! one budget instead of each believing it has the whole of it. A 429's
//! `Retry-After` is recorded there ([`Pacer::blocked_for`]) so all of them back off.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::request::ApiFamily;
use crate::asset::RateLimit;
use crate::backend::{Backend, budget};
use crate::error::Result;

/// How much longer than the published window ours is (see the module doc).
pub const MARGIN: f64 = 1.02;

/// One sliding window.
#[derive(Debug)]
pub struct Limiter {
    requests: usize,
    window: Duration,
    starts: Mutex<VecDeque<Instant>>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Limiter {
            requests: limit.requests.max(1) as usize,
            // The schema bounds per_seconds to 0.001..=86400; clamp anyway so no
            // value can make the conversion panic.
            window: Duration::from_secs_f64(limit.per_seconds.clamp(0.001, 86_400.0) * MARGIN),
            starts: Mutex::new(VecDeque::new()),
        }
    }

    /// Wait until one more request fits in the window, then count it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while starts
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    starts.pop_front();
                }
                if starts.len() < self.requests {
                    starts.push_back(now);
                    return;
                }
                let oldest = *starts.front().expect("full window is not empty");
                (oldest + self.window).saturating_duration_since(now)
            };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "pacing: waiting for the rate limit window"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

type Key = (String, String, ApiFamily);

/// The limiter for one (token URL, client id, family), created on first use.
pub fn limiter(
    token_url: &str,
    client_id: &str,
    family: ApiFamily,
    limit: RateLimit,
) -> Arc<Limiter> {
    static ALL: OnceLock<Mutex<HashMap<Key, Arc<Limiter>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    all.entry((token_url.to_string(), client_id.to_string(), family))
        .or_insert_with(|| Arc::new(Limiter::new(limit)))
        .clone()
}

/// How a request waits for its turn.
#[derive(Debug, Clone)]
pub enum Pacer {
    /// This process's own window (no state backend).
    Local(Arc<Limiter>),
    /// A window shared by every process using the backend.
    Shared {
        backend: Backend,
        budget: budget::Budget,
    },
}

impl Pacer {
    /// Wait until one more request may start, then count it.
    pub async fn acquire(&self) -> Result<()> {
        match self {
            Pacer::Local(l) => {
                l.acquire().await;
                Ok(())
            }
            Pacer::Shared { backend, budget } => {
                let wait = budget::reserve(backend, budget).await?;
                if !wait.is_zero() {
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "pacing: waiting for the shared rate limit window"
                    );
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
        }
    }

    /// Graph answered 429 with `Retry-After: wait`: hold every worker back that long.
    /// The local limiter leaves that to the retry loop's own wait.
    pub async fn blocked_for(&self, wait: Duration) -> Result<()> {
        match self {
            Pacer::Local(_) => Ok(()),
            Pacer::Shared { backend, budget } => budget::block_for(backend, budget, wait).await,
        }
    }
}

/// The pacer of one (token URL, client id, family): shared through `backend` when
/// there is one, else this process's limiter.
pub fn pacer(
    backend: Option<&Backend>,
    token_url: &str,
    client_id: &str,
    family: ApiFamily,
    limit: RateLimit,
) -> Pacer {
    match backend {
        None => Pacer::Local(limiter(token_url, client_id, family, limit)),
        Some(backend) => Pacer::Shared {
            backend: backend.clone(),
            budget: budget::Budget {
                key: format!("{token_url} {client_id} {}", family_name(family)),
                requests: limit.requests.max(1),
                window: Duration::from_secs_f64(limit.per_seconds.clamp(0.001, 86_400.0) * MARGIN),
            },
        },
    }
}

fn family_name(family: ApiFamily) -> &'static str {
    match family {
        ApiFamily::Presence => "presence",
        ApiFamily::AuditLogs => "audit_logs",
        ApiFamily::Directory => "directory",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock time moves only when every task waits, so the
    /// schedule is exact on any machine: the window is 0.2 s × [`MARGIN`].
    #[tokio::test(start_paused = true)]
    async fn window_spreads_requests() {
        let l = Limiter::new(RateLimit {
            requests: 3,
            per_seconds: 0.2,
        });
        let window = Duration::from_secs_f64(0.2 * MARGIN);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..7 {
            l.acquire().await;
            at.push(start.elapsed());
        }
        let zero = Duration::ZERO;
        assert_eq!(at, [zero, zero, zero, window, window, window, window * 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn families_have_windows_of_their_own() {
        let limit = RateLimit {
            requests: 1,
            per_seconds: 10.0,
        };
        let url = "http://127.0.0.1:9/pacing-test/token";
        let audit = limiter(url, "c", ApiFamily::AuditLogs, limit);
        let directory = limiter(url, "c", ApiFamily::Directory, limit);
        let start = Instant::now();
        audit.acquire().await;
        directory.acquire().await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "not held back by audit logs"
        );
        // The same key is the same limiter: its window is full.
        limiter(url, "c", ApiFamily::AuditLogs, limit)
            .acquire()
            .await;
        assert_eq!(start.elapsed(), Duration::from_secs_f64(10.0 * MARGIN));
    }
}
