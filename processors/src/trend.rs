//! The rolling trend of one probe: the state kept per (device, probe) and how a reading
//! updates it. Pure and deterministic: no clocks, no I/O.
//!
//! * The **window** holds the readings of the last [`WINDOW_MS`] of event time (at most
//!   [`MAX_SAMPLES`]), ordered by event time; late readings are inserted in place, readings
//!   older than the window are recorded in history but do not move the trend.
//! * **Smoothed** temperature: the mean of the readings in the last [`SMOOTHING_MS`], after
//!   dropping the single highest and lowest when there are at least five (so one spike does
//!   not move it).
//! * **Rate of rise**: the least-squares slope over the whole window, in °C per minute, once
//!   the window spans at least [`MIN_RATE_SPAN_MS`] with three readings or more.
//! * An unplugged reading (no temperature) empties the window: a re-plugged probe starts a
//!   fresh trend instead of mixing two insertions.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Event-time length of the window the rate of rise is fitted over.
pub const WINDOW_MS: i64 = 300_000;
/// Event-time length the smoothed temperature averages over.
pub const SMOOTHING_MS: i64 = 60_000;
/// The window must span this much before a rate is reported.
pub const MIN_RATE_SPAN_MS: i64 = 30_000;
/// Most readings kept in a window (a 4 Hz probe fills five minutes with 1 200).
pub const MAX_SAMPLES: usize = 2_048;

/// Per-probe state: the window of (event time, °C), oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrendState {
    window: VecDeque<(i64, f64)>,
}

/// What the trend says after one reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendFigures {
    /// Smoothed temperature, °C.
    pub smoothed_c: f64,
    /// Rate of rise, °C per minute.
    pub rate_c_per_min: Option<f64>,
    /// Lowest reading in the window.
    pub min_c: f64,
    /// Highest reading in the window.
    pub max_c: f64,
    /// Span of the window, ms.
    pub window_ms: i64,
    /// Readings in the window.
    pub samples: u32,
}

impl TrendState {
    /// Applies one reading; returns the figures after it, or `None` when the probe is
    /// unplugged or the reading is too old to count.
    pub fn update(&mut self, event_time: i64, temperature_c: Option<f64>) -> Option<TrendFigures> {
        let Some(temp) = temperature_c.filter(|t| t.is_finite()) else {
            self.window.clear();
            return None;
        };
        let newest = self
            .window
            .back()
            .map_or(event_time, |(t, _)| (*t).max(event_time));
        if event_time <= newest - WINDOW_MS {
            crate::metrics::late_reading("trends", "dropped");
            return None;
        }
        // Insert in event-time order (after equal times: arrival order breaks ties).
        let at = self.window.partition_point(|(t, _)| *t <= event_time);
        if at < self.window.len() {
            crate::metrics::late_reading("trends", "reordered");
        }
        self.window.insert(at, (event_time, temp));
        while let Some((t, _)) = self.window.front() {
            if *t <= newest - WINDOW_MS || self.window.len() > MAX_SAMPLES {
                self.window.pop_front();
            } else {
                break;
            }
        }
        Some(self.figures(newest))
    }

    fn figures(&self, newest: i64) -> TrendFigures {
        let (mut min_c, mut max_c) = (f64::INFINITY, f64::NEG_INFINITY);
        for (_, v) in &self.window {
            min_c = min_c.min(*v);
            max_c = max_c.max(*v);
        }
        // The window is ordered by time: the readings of the smoothing span are its tail.
        let from = self
            .window
            .partition_point(|(t, _)| *t <= newest - SMOOTHING_MS);
        let smoothed_c = trimmed_mean(self.window.range(from..).map(|(_, v)| *v));
        let first = self.window.front().map_or(newest, |(t, _)| *t);
        let span = newest - first;
        let rate_c_per_min = if span >= MIN_RATE_SPAN_MS && self.window.len() >= 3 {
            slope_per_ms(&self.window, first).map(|s| s * 60_000.0)
        } else {
            None
        };
        TrendFigures {
            smoothed_c,
            rate_c_per_min,
            min_c,
            max_c,
            window_ms: span,
            samples: self.window.len() as u32,
        }
    }
}

/// Mean without the single extremes once there are at least five values (summed in order,
/// as a slice would be, so the figures do not depend on how the values are held).
fn trimmed_mean(values: impl ExactSizeIterator<Item = f64> + Clone) -> f64 {
    let n = values.len();
    if n >= 5 {
        let (min, max) = values
            .clone()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let sum: f64 = values.sum::<f64>() - min - max;
        sum / (n - 2) as f64
    } else {
        values.sum::<f64>() / n.max(1) as f64
    }
}

/// Least-squares slope, °C per ms, with times taken relative to `origin` for precision.
fn slope_per_ms(window: &VecDeque<(i64, f64)>, origin: i64) -> Option<f64> {
    let n = window.len() as f64;
    let (mut sx, mut sy) = (0.0, 0.0);
    for (t, v) in window {
        sx += (t - origin) as f64;
        sy += v;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in window {
        let dx = (t - origin) as f64 - mx;
        sxy += dx * (v - my);
        sxx += dx * dx;
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious version: keep every reading, recompute everything from scratch.
    fn oracle(readings: &[(i64, Option<f64>)]) -> Vec<Option<TrendFigures>> {
        let mut kept: Vec<(i64, f64)> = Vec::new();
        let mut out = Vec::new();
        for (i, (t, temp)) in readings.iter().enumerate() {
            let Some(temp) = temp else {
                kept.clear();
                out.push(None);
                continue;
            };
            let newest = kept.iter().map(|(t, _)| *t).max().unwrap_or(*t).max(*t);
            if *t <= newest - WINDOW_MS {
                out.push(None);
                continue;
            }
            kept.push((*t, *temp));
            let _ = i;
            // Stable sort keeps arrival order among equal times.
            kept.sort_by_key(|(t, _)| *t);
            kept.retain(|(t, _)| *t > newest - WINDOW_MS);
            while kept.len() > MAX_SAMPLES {
                kept.remove(0);
            }
            let min_c = kept.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
            let max_c = kept
                .iter()
                .map(|(_, v)| *v)
                .fold(f64::NEG_INFINITY, f64::max);
            let mut recent: Vec<f64> = kept
                .iter()
                .filter(|(t, _)| *t > newest - SMOOTHING_MS)
                .map(|(_, v)| *v)
                .collect();
            let smoothed_c = if recent.len() >= 5 {
                recent.sort_by(f64::total_cmp);
                let inner = &recent[1..recent.len() - 1];
                inner.iter().sum::<f64>() / inner.len() as f64
            } else {
                recent.iter().sum::<f64>() / recent.len() as f64
            };
            let span = newest - kept[0].0;
            let rate = (span >= MIN_RATE_SPAN_MS && kept.len() >= 3)
                .then(|| least_squares_slope(&kept).map(|s| s * 60_000.0))
                .flatten();
            out.push(Some(TrendFigures {
                smoothed_c,
                rate_c_per_min: rate,
                min_c,
                max_c,
                window_ms: span,
                samples: kept.len() as u32,
            }));
        }
        out
    }

    /// The textbook least-squares slope, °C per ms, from the plain sums
    /// `(n Σxy - Σx Σy) / (n Σx² - (Σx)²)`, with time and temperature taken from the first
    /// reading so the sums stay small.
    fn least_squares_slope(points: &[(i64, f64)]) -> Option<f64> {
        let (t0, v0) = *points.first()?;
        let n = points.len() as f64;
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for (t, v) in points {
            let (x, y) = ((t - t0) as f64, v - v0);
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let denominator = n * sxx - sx * sx;
        (denominator > 0.0).then(|| (n * sxy - sx * sy) / denominator)
    }

    #[test]
    fn the_textbook_slope_recovers_a_line() {
        // y = 3 + 0.002 t, unevenly sampled: the oracle itself must be right.
        let points: Vec<(i64, f64)> = [0, 1_000, 7_000, 30_000, 31_500]
            .iter()
            .map(|t| (*t, 3.0 + 0.002 * *t as f64))
            .collect();
        let slope = least_squares_slope(&points).expect("a slope");
        assert!((slope - 0.002).abs() < 1e-15, "{slope}");
        assert_eq!(least_squares_slope(&[(5, 1.0), (5, 2.0)]), None);
    }

    fn close(a: &Option<TrendFigures>, b: &Option<TrendFigures>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                let near = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs()));
                near(a.smoothed_c, b.smoothed_c)
                    && a.min_c == b.min_c
                    && a.max_c == b.max_c
                    && a.window_ms == b.window_ms
                    && a.samples == b.samples
                    && match (a.rate_c_per_min, b.rate_c_per_min) {
                        (None, None) => true,
                        (Some(x), Some(y)) => near(x, y),
                        _ => false,
                    }
            }
            _ => false,
        }
    }

    fn readings() -> impl Strategy<Value = Vec<(i64, Option<f64>)>> {
        // Mostly advancing time with jitter (late readings), occasional unplugs.
        prop::collection::vec(
            (
                -20_000i64..30_000,
                prop::option::weighted(0.97, -20.0f64..300.0),
            ),
            1..400,
        )
        .prop_map(|steps| {
            let mut t = 1_700_000_000_000i64;
            steps
                .into_iter()
                .map(|(dt, v)| {
                    t += dt.max(0);
                    (t + dt.min(0), v)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn matches_the_from_scratch_oracle(readings in readings()) {
            let mut state = TrendState::default();
            let fast: Vec<_> = readings.iter().map(|(t, v)| state.update(*t, *v)).collect();
            let slow = oracle(&readings);
            for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                prop_assert!(close(f, s), "reading {i}: {f:?} vs {s:?}");
            }
        }
    }

    #[test]
    fn steady_rise_gives_its_rate_and_a_spike_barely_moves_the_smoothing() {
        let mut state = TrendState::default();
        let mut last = None;
        for i in 0..120 {
            // 0.5 °C per minute, one reading every 5 s.
            last = state.update(i * 5_000, Some(20.0 + i as f64 * 5.0 / 120.0));
        }
        let figures = last.expect("figures");
        let rate = figures.rate_c_per_min.expect("rate");
        assert!((rate - 0.5).abs() < 1e-9, "rate {rate}");
        let before = figures.smoothed_c;
        let spiked = state.update(120 * 5_000, Some(500.0)).expect("figures");
        assert!(
            (spiked.smoothed_c - before).abs() < 0.5,
            "{before} -> {}",
            spiked.smoothed_c
        );
        assert!(state.update(121 * 5_000, None).is_none());
        let fresh = state.update(122 * 5_000, Some(25.0)).expect("figures");
        assert_eq!((fresh.samples, fresh.rate_c_per_min), (1, None));
    }
}
