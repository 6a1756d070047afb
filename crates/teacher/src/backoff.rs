//! When to try again. Pure, so the policy can be tested without sleeping.

use std::time::Duration;

/// Exponential backoff with full jitter (the AWS architecture blog's recommendation), which
/// spreads retries of many concurrent requests instead of synchronising them.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before retry number `retry` (0 = first retry). `unit` is a uniform draw in
    /// [0, 1). A server's `Retry-After` is a floor: waiting less would only be refused again.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX))
            .min(self.max);
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            // A little jitter on top so the requests a 429 paused do not return together.
            Some(after) => after + jittered.min(Duration::from_secs(1)) / 4,
            None => jittered,
        }
    }
}

/// Parses `Retry-After` as seconds (the HTTP-date form is rare from API servers and is
/// treated as absent). `retry-after-ms` (OpenAI, Azure) is preferred when present.
pub fn parse_retry_after(seconds: Option<&str>, millis: Option<&str>) -> Option<Duration> {
    if let Some(ms) = millis.and_then(|v| v.trim().parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let secs = seconds?.trim().parse::<f64>().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, None, 0.999_999).as_millis(), 499);
        assert_eq!(b.delay(3, None, 0.5), Duration::from_secs(2));
        assert_eq!(b.delay(40, None, 0.999_999).as_secs(), 59);
        assert_eq!(b.delay(5, None, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let b = Backoff::default();
        let d = b.delay(0, Some(Duration::from_secs(7)), 0.0);
        assert_eq!(d, Duration::from_secs(7));
        let d = b.delay(10, Some(Duration::from_secs(7)), 0.999);
        assert!(
            d >= Duration::from_secs(7) && d <= Duration::from_millis(7250),
            "{d:?}"
        );
    }

    #[test]
    fn parses_retry_after_headers() {
        assert_eq!(
            parse_retry_after(Some("3"), None),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(Some(" 1.5 "), None),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(Some("3"), Some("250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
            None
        );
        assert_eq!(parse_retry_after(Some("-1"), None), None);
        assert_eq!(parse_retry_after(None, None), None);
    }
}
