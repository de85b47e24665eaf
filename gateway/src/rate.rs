//! A request budget per caller: a token bucket per user, API token or share link, so one
//! runaway script (or a leaked token) cannot take the gateway's time from everyone else.
//! Over budget, a call is answered `RESOURCE_EXHAUSTED` with how long to wait; the budget
//! is generous for people — a dashboard opening with a dozen grills stays far below it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Calls a caller may make per second, sustained, by default.
pub const CALLS_PER_SECOND: f64 = 100.0;
/// Calls a caller may make at once after a quiet spell, by default.
pub const BURST: f64 = 400.0;

/// A caller's budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Calls per second, sustained; 0 for no limit.
    pub per_second: f64,
    /// Calls at once.
    pub burst: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            per_second: CALLS_PER_SECOND,
            burst: BURST,
        }
    }
}
/// Callers tracked at most; the longest idle go first beyond it.
const MAX_TRACKED: usize = 10_000;

/// One caller's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets by caller.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    budget: Budget,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter giving each caller `budget`.
    pub(crate) fn new(budget: Budget) -> Self {
        Self {
            budget,
            buckets: Mutex::default(),
        }
    }

    /// The budget of each caller.
    pub(crate) fn budget(&self) -> Budget {
        self.budget
    }

    /// Takes one call from `caller`'s budget at `now`; `Err` with the wait when it is spent.
    pub(crate) fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let Budget { per_second, burst } = self.budget;
        if per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(caller) {
            // Full buckets of idle callers carry no information: forget them first.
            let full = Duration::from_secs_f64(burst / per_second);
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < full);
            if buckets.len() >= MAX_TRACKED
                && let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, b)| b.at)
                    .map(|(k, _)| k.clone())
            {
                buckets.remove(&oldest);
            }
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / CALLS_PER_SECOND,
            ))
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate_and_callers_apart() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        let allowed = (0..1_000)
            .filter(|_| limiter.take("script", t0).is_ok())
            .count();
        assert_eq!(allowed, BURST as usize);
        let wait = limiter.take("script", t0).expect_err("spent");
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        assert!(
            limiter.take("someone else", t0).is_ok(),
            "budgets are per caller"
        );
        let later = t0 + Duration::from_secs(1);
        let refilled = (0..1_000)
            .filter(|_| limiter.take("script", later).is_ok())
            .count();
        assert_eq!(refilled, CALLS_PER_SECOND as usize);
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let limiter = RateLimiter::new(Budget {
            per_second: 0.0,
            burst: 0.0,
        });
        assert!((0..10_000).all(|_| limiter.take("bench", Instant::now()).is_ok()));
    }

    #[test]
    fn memory_stays_bounded_under_many_callers() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED + 5_000) {
            let _ = limiter.take(&format!("caller {i}"), t0 + Duration::from_millis(i as u64));
            assert!(limiter.tracked() <= MAX_TRACKED);
        }
    }
}
