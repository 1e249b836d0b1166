//! When to try again and how long to wait.
//!
//! Graph's `Retry-After` comes as integer seconds, fractional seconds
//! (`2.128`, seen on presence APIs) or an HTTP date; without it we back off
//! exponentially with jitter. backon's [`ExponentialBuilder`] provides that
//! schedule; the loop around it is ours (in `graph/mod.rs`) because a retry
//! there must also honour the server's `Retry-After`, a total time budget and
//! the one-time token renewal on 401, which do not fit backon's `Retryable`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

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
pub fn backoff() -> impl Iterator<Item = Duration> {
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

    #[test]
    fn backoff_grows() {
        let d: Vec<_> = backoff().take(4).collect();
        assert!(d[0] >= Duration::from_millis(500) && d[0] <= Duration::from_millis(1000));
        assert!(d[3] >= Duration::from_secs(4));
    }
}
