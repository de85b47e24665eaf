//! Exponential backoff with jitter, for retrying external failures.

use std::time::Duration;

/// Delays that double from `initial` up to `max`, each with up to ±25 % jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    /// Backoff from `initial` doubling to at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let jitter = (self.seed >> 33) as f64 / (1u64 << 31) as f64; // 0..1
        let delay = self.next.mul_f64(0.75 + 0.5 * jitter);
        self.next = (self.next * 2).min(self.max);
        delay.min(self.max)
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(75) && delays[0] <= Duration::from_millis(125));
        assert!(delays[3] >= Duration::from_millis(600));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
