//! When to try again and how long to wait.
//!
//! Graph's `Retry-After` comes as integer seconds, fractional seconds
//! (`2.128`, seen on presence APIs) or an HTTP date; without it we back off
//! exponentially with jitter. backon's [`ExponentialBuilder`] provides that
//! schedule. [`RetryBudget`] is the one decision both retry loops make (the
//! Graph request's in `graph::client` and the token request's in
//! `auth::token`): count attempts and time, then "wait this long" or "give up,
//! because". The loops stay with their callers because a Graph retry must also
//! honour the one-time token renewal on 401, which does not fit backon's
//! `Retryable`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

/// The longest `Retry-After` we would ever wait for one retry.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Parse `Retry-After`: seconds (integer or fractional) or an HTTP date.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let date = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let wait = date.duration_since(now);
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        Duration::try_from(wait)
            .unwrap_or(MAX_RETRY_AFTER)
            .min(MAX_RETRY_AFTER)
    })
}

/// The exponential backoff schedule with jitter: 0.5 s, 1 s, 2 s ... up to 30 s, each plus up to 100%.
pub fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Whether an HTTP status is throttling or a transient outage that Graph asks us to retry.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 503 | 504)
}

/// Whether a Graph answer is worth another try: [`is_retryable_status`], and for a
/// request that may be repeated (`idempotent`) also 509 (bandwidth limit exceeded)
/// and 409 `Directory_ConcurrencyViolation`, whose message says "Please wait briefly
/// and retry". Neither is in Microsoft's SDK design list of retried statuses
/// (https://github.com/microsoftgraph/msgraph-sdk-design/blob/master/middleware/RetryHandler.md
/// names 429, 503, 504); the directory answers them under load and for concurrent
/// writes to one object (public threads, e.g. hashicorp/vault-plugin-secrets-azure and
/// nais/azureator retry the 409). No Microsoft page lists 509 for Graph: that rule has
/// no source beyond issue 11 of this project.
pub fn is_retryable_answer(status: u16, code: Option<&str>, idempotent: bool) -> bool {
    is_retryable_status(status)
        || (idempotent
            && (status == 509 || (status == 409 && code == Some("Directory_ConcurrencyViolation"))))
}

/// The header every retry carries, as Microsoft's SDKs send it: `Retry-Attempt`, the
/// number of the retry (1 for the first), "for diagnostics and determining the
/// effectiveness of the retry handler"
/// (https://github.com/microsoftgraph/msgraph-sdk-design/blob/master/middleware/RetryHandler.md).
pub const RETRY_ATTEMPT_HEADER: &str = "Retry-Attempt";

/// The wait after [`backoff`] runs out (it never does: it has no maximum of times).
const LAST_BACKOFF: Duration = Duration::from_secs(30);

/// Where a wait's length came from, as the logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitSource {
    /// The server's `Retry-After`.
    RetryAfter,
    /// The next step of [`backoff`].
    Backoff,
}

impl WaitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitSource::RetryAfter => "Retry-After",
            WaitSource::Backoff => "backoff",
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Sleep `wait`, then try again.
    Wait { wait: Duration, source: WaitSource },
    /// Stop, for the reason given ("gave up after 6 attempts").
    GiveUp(String),
}

/// The attempts and the total time one request may use, with the backoff
/// schedule between them: the asset's `max_attempts` and `max_retry_seconds`.
#[derive(Debug)]
pub struct RetryBudget {
    max_attempts: u32,
    max_time: Duration,
    attempts: u32,
    /// When the first attempt started: the budget's time runs from there.
    started: Option<Instant>,
    backoff: ExponentialBackoff,
}

impl RetryBudget {
    /// At least one attempt is always made.
    pub fn new(max_attempts: u32, max_time: Duration) -> Self {
        RetryBudget {
            max_attempts: max_attempts.max(1),
            max_time,
            attempts: 0,
            started: None,
            backoff: backoff(),
        }
    }

    /// Count an attempt about to start (the clock starts with the first); its number.
    pub fn start_attempt(&mut self) -> u32 {
        self.started.get_or_insert_with(Instant::now);
        self.attempts += 1;
        self.attempts
    }

    /// Take back the attempt just counted: it is repeated for a reason that is
    /// not a failure of the request (Graph refused a token that had expired).
    pub fn refund_attempt(&mut self) {
        self.attempts = self.attempts.saturating_sub(1);
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// After a failed attempt: wait `retry_after` when the server named it, else
    /// the next backoff step; give up when the attempts are used up or the wait
    /// would overrun the time budget.
    pub fn decide(&mut self, retry_after: Option<Duration>) -> Decision {
        let (wait, source) = match retry_after {
            Some(wait) => (wait, WaitSource::RetryAfter),
            None => (
                self.backoff.next().unwrap_or(LAST_BACKOFF),
                WaitSource::Backoff,
            ),
        };
        let attempts = self.attempts;
        if attempts >= self.max_attempts {
            return Decision::GiveUp(format!("gave up after {attempts} attempts"));
        }
        let elapsed = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        if elapsed + wait > self.max_time {
            return Decision::GiveUp(format!(
                "gave up after {attempts} attempts and {:.1}s: the retry budget of {}s would be exceeded",
                elapsed.as_secs_f64(),
                self.max_time.as_secs()
            ));
        }
        Decision::Wait { wait, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 2024 00:00:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_counts_attempts() {
        let mut budget = RetryBudget::new(3, Duration::from_secs(600));
        assert_eq!(budget.start_attempt(), 1);
        let wait = Duration::from_millis(500);
        assert_eq!(
            budget.decide(Some(wait)),
            Decision::Wait {
                wait,
                source: WaitSource::RetryAfter
            }
        );
        budget.start_attempt();
        budget.refund_attempt();
        assert_eq!(budget.start_attempt(), 2);
        assert!(matches!(
            budget.decide(None),
            Decision::Wait {
                source: WaitSource::Backoff,
                ..
            }
        ));
        assert_eq!(budget.start_attempt(), 3);
        assert_eq!(
            budget.decide(None),
            Decision::GiveUp("gave up after 3 attempts".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn budget_counts_time() {
        let mut budget = RetryBudget::new(10, Duration::from_secs(2));
        budget.start_attempt();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            budget.decide(Some(Duration::from_secs(1))),
            Decision::GiveUp(
                "gave up after 1 attempts and 1.5s: the retry budget of 2s would be exceeded"
                    .to_string()
            )
        );
        assert_eq!(RetryBudget::new(0, Duration::ZERO).max_attempts(), 1);
    }

    #[test]
    fn conflicts_and_509_are_retried_only_when_repeatable() {
        let cv = Some("Directory_ConcurrencyViolation");
        assert!(is_retryable_answer(409, cv, true));
        assert!(!is_retryable_answer(409, cv, false));
        assert!(!is_retryable_answer(409, Some("Request_BadRequest"), true));
        assert!(is_retryable_answer(509, None, true));
        assert!(!is_retryable_answer(509, None, false));
        assert!(is_retryable_answer(429, None, false));
        assert!(!is_retryable_answer(400, None, true));
    }

    #[test]
    fn backoff_grows() {
        let d: Vec<_> = backoff().take(4).collect();
        assert!(d[0] >= Duration::from_millis(500) && d[0] <= Duration::from_millis(1000));
        assert!(d[3] >= Duration::from_secs(4));
    }
}
