//! Admission control per endpoint: concurrency, requests per minute, tokens per minute, and
//! a pause after the server asked us to back off.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket that may go into debt: a request is admitted once the bucket is not
/// empty, and its real cost (completion tokens are only known afterwards) is charged later.
/// This keeps the long-run rate at the limit without knowing costs in advance.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket refilled at `per_minute`, holding at most `burst_secs` seconds' worth (and at
    /// least one unit).
    pub(crate) fn per_minute(per_minute: f64, burst_secs: f64) -> Self {
        let per_second = per_minute / 60.0;
        let capacity = (per_second * burst_secs).max(1.0);
        Self {
            capacity,
            per_second,
            state: Mutex::new(BucketState {
                tokens: capacity,
                updated: Instant::now(),
            }),
        }
    }

    /// Waits until the bucket is positive, then takes `cost`.
    pub(crate) async fn acquire(&self, cost: f64) {
        loop {
            let wait = {
                let mut state = self.lock();
                self.refill(&mut state);
                if state.tokens > 0.0 {
                    state.tokens -= cost;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.tokens) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Charges a cost found out after admission (may leave the bucket in debt).
    pub(crate) fn charge(&self, cost: f64) {
        let mut state = self.lock();
        self.refill(&mut state);
        state.tokens -= cost;
    }

    fn refill(&self, state: &mut BucketState) {
        let now = Instant::now();
        let elapsed = now.duration_since(state.updated).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.capacity);
        state.updated = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        // The state stays consistent even if a holder panicked: every update is one assignment.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_a_burst_then_paces() {
        let bucket = TokenBucket::per_minute(60.0, 3.0); // 1/s, burst of 3
        let start = Instant::now();
        for _ in 0..3 {
            bucket.acquire(1.0).await;
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        bucket.acquire(1.0).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(999), "{waited:?}");
        assert!(waited < Duration::from_millis(1100), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn debt_delays_later_admissions() {
        let bucket = TokenBucket::per_minute(600.0, 1.0); // 10/s
        bucket.acquire(1.0).await;
        bucket.charge(50.0); // the completion turned out long
        let start = Instant::now();
        bucket.acquire(1.0).await;
        // Refilling from about -41 to above 0 at 10/s takes about 4.2 s.
        let waited = start.elapsed().as_secs_f64();
        assert!((4.0..4.5).contains(&waited), "{waited}");
    }
}
