//! When a probe's value stops being current.
//!
//! A probe is stale after `floor` without a reading, or after five of its usual reporting
//! intervals when that is longer — so a cloud thermometer that uploads every ten minutes is
//! not flagged between uploads, while a 1 Hz probe that goes quiet is flagged within the
//! floor. Home Assistant's own `expire_after` is set past the same threshold (and past the
//! state rate limit), so the two never disagree.

/// Milliseconds without a reading after which a probe is stale.
pub fn stale_after_ms(floor_s: u64, usual_interval_ms: Option<f64>) -> i64 {
    let floor = floor_s as f64 * 1_000.0;
    usual_interval_ms.map_or(floor, |i| floor.max(5.0 * i)) as i64
}

/// `expire_after` for Home Assistant, seconds: past the stale threshold and two state
/// intervals, rounded up to a whole minute plus one, so small changes in the learned
/// interval do not re-publish the config.
pub fn expire_after_s(stale_after_ms: i64, min_state_interval_ms: u64) -> u64 {
    let ms = stale_after_ms.max(0) as u64;
    ms.max(2 * min_state_interval_ms).div_ceil(60_000) * 60 + 60
}

/// A probe's usual interval, learned from consecutive event times (moving average).
pub fn learn_interval(current: Option<f64>, previous_event_ms: i64, event_ms: i64) -> Option<f64> {
    if previous_event_ms == 0 || event_ms <= previous_event_ms {
        return current;
    }
    let gap = (event_ms - previous_event_ms) as f64;
    Some(current.map_or(gap, |i| 0.8 * i + 0.2 * gap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_reporters_are_not_flagged_between_reports_and_fast_ones_are_flagged_soon() {
        // A cloud thermometer uploading every 10 minutes: fine at 9 minutes, 49 minutes.
        let ten_min = 600_000.0;
        let threshold = stale_after_ms(120, Some(ten_min));
        assert!(threshold > 49 * 60_000);
        // A 1 Hz probe: stale after the 2-minute floor, not after 5 s.
        assert_eq!(stale_after_ms(120, Some(1_000.0)), 120_000);
        assert_eq!(stale_after_ms(120, None), 120_000);
    }

    #[test]
    fn expiry_is_past_the_stale_threshold_and_the_rate_limit() {
        for (stale, rate) in [(120_000, 5_000), (3_000_000, 5_000), (10_000, 600_000)] {
            let expire = expire_after_s(stale, rate) * 1_000;
            assert!(
                expire > stale as u64 && expire >= 2 * rate,
                "{stale} {rate} → {expire}"
            );
        }
        // Small changes in the threshold do not change the config.
        assert_eq!(
            expire_after_s(121_000, 5_000),
            expire_after_s(150_000, 5_000)
        );
    }

    #[test]
    fn the_interval_follows_the_gaps_and_ignores_repeats_and_reordering() {
        let mut i = learn_interval(None, 0, 1_000);
        assert_eq!(i, None, "no previous reading");
        i = learn_interval(i, 1_000, 2_000);
        assert_eq!(i, Some(1_000.0));
        i = learn_interval(i, 2_000, 2_000);
        assert_eq!(i, Some(1_000.0), "a repeat is no gap");
        i = learn_interval(i, 2_000, 1_500);
        assert_eq!(i, Some(1_000.0), "an older reading is no gap");
        i = learn_interval(i, 2_000, 7_000);
        assert_eq!(i, Some(1_800.0));
    }
}
