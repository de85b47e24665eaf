//! History summarised in steps of event time: what a chart of a long range plots instead of
//! every stored point. A 12 h cook read at one reading a second is 43 200 points per probe;
//! in steps of a minute it is 720, each with the mean, lowest and highest temperature of
//! its readings.
//!
//! Steps start on multiples of the step since the epoch (a step of a minute starts on the
//! minute), so the same range asked twice, or by two clients, gives the same steps. The
//! summary is computed when read, from the stored points in order, with nothing kept but the
//! step being filled.

/// One step of a probe's history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryStep {
    /// Start of the step, epoch ms (event time); the step covers `[start, start + step)`.
    pub start: i64,
    /// Readings in the step, unplugged ones (no temperature) included.
    pub readings: u32,
    /// Mean temperature of the readings that have one, Celsius; `None` when every reading
    /// of the step was unplugged.
    pub mean_c: Option<f64>,
    /// Lowest temperature in the step.
    pub min_c: Option<f64>,
    /// Highest temperature in the step.
    pub max_c: Option<f64>,
}

/// Summarises points given oldest first into steps of `step_ms`, keeping at most `limit`
/// steps.
#[derive(Debug)]
pub struct Downsampler {
    step_ms: i64,
    limit: usize,
    open: Option<Open>,
    steps: Vec<HistoryStep>,
}

/// The step being filled.
#[derive(Debug)]
struct Open {
    start: i64,
    readings: u32,
    with_temperature: u32,
    sum: f64,
    min: f64,
    max: f64,
}

impl Open {
    fn close(self) -> HistoryStep {
        let any = self.with_temperature > 0;
        HistoryStep {
            start: self.start,
            readings: self.readings,
            mean_c: any.then(|| self.sum / f64::from(self.with_temperature)),
            min_c: any.then_some(self.min),
            max_c: any.then_some(self.max),
        }
    }
}

impl Downsampler {
    /// A summary in steps of `step_ms` (at least 1), at most `limit` steps.
    pub fn new(step_ms: i64, limit: usize) -> Self {
        Self {
            step_ms: step_ms.max(1),
            limit,
            open: None,
            steps: Vec::new(),
        }
    }

    /// The start of the step holding `event_time`.
    pub fn step_of(&self, event_time: i64) -> i64 {
        event_time.saturating_sub(event_time.rem_euclid(self.step_ms))
    }

    /// Adds the next point (event times ascending). Returns `false` once `limit` steps are
    /// complete and the point starts another: the caller can stop reading.
    pub fn push(&mut self, event_time: i64, temperature_c: Option<f64>) -> bool {
        let start = self.step_of(event_time);
        match &mut self.open {
            Some(open) if open.start == start => {}
            _ => {
                if let Some(done) = self.open.take() {
                    self.steps.push(done.close());
                }
                if self.steps.len() >= self.limit {
                    return false;
                }
                self.open = Some(Open {
                    start,
                    readings: 0,
                    with_temperature: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                });
            }
        }
        if let Some(open) = &mut self.open {
            open.readings = open.readings.saturating_add(1);
            if let Some(t) = temperature_c {
                open.with_temperature += 1;
                open.sum += t;
                open.min = open.min.min(t);
                open.max = open.max.max(t);
            }
        }
        true
    }

    /// The steps, oldest first.
    pub fn finish(mut self) -> Vec<HistoryStep> {
        if let Some(done) = self.open.take() {
            self.steps.push(done.close());
        }
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The steps computed the slow way: group every point by its step, then summarise.
    fn by_grouping(points: &[(i64, Option<f64>)], step: i64) -> Vec<HistoryStep> {
        let mut groups: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
        for &(t, v) in points {
            groups.entry(t.div_euclid(step) * step).or_default().push(v);
        }
        groups
            .into_iter()
            .map(|(start, values)| {
                let temps: Vec<f64> = values.iter().flatten().copied().collect();
                HistoryStep {
                    start,
                    readings: values.len() as u32,
                    mean_c: (!temps.is_empty())
                        .then(|| temps.iter().sum::<f64>() / temps.len() as f64),
                    min_c: temps.iter().copied().reduce(f64::min),
                    max_c: temps.iter().copied().reduce(f64::max),
                }
            })
            .collect()
    }

    fn points() -> Vec<(i64, Option<f64>)> {
        // Around the epoch and a minute boundary, irregular spacing, unplugged readings,
        // and one whole step unplugged.
        (0..500)
            .map(|i: i64| {
                let t = -45_000 + i * 1_237 + (i % 3) * 11;
                let v = match i % 17 {
                    0 => None,
                    _ if (200..210).contains(&i) => None,
                    _ => Some(20.0 + (i as f64 * 0.37).sin() * 5.0 + i as f64 / 7.0),
                };
                (t, v)
            })
            .collect()
    }

    #[test]
    fn steps_equal_the_points_grouped_by_step() {
        let points = points();
        for step in [1_000, 60_000, 600_000, 7_001] {
            let mut d = Downsampler::new(step, usize::MAX);
            for &(t, v) in &points {
                assert!(d.push(t, v));
            }
            let got = d.finish();
            let want = by_grouping(&points, step);
            assert_eq!(got.len(), want.len(), "step {step}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!((g.start, g.readings), (w.start, w.readings), "step {step}");
                assert_eq!((g.min_c, g.max_c), (w.min_c, w.max_c), "step {step}");
                match (g.mean_c, w.mean_c) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{a} vs {b}"),
                    (a, b) => assert_eq!(a, b, "step {step} at {}", g.start),
                }
            }
        }
    }

    #[test]
    fn a_step_of_unplugged_readings_has_no_temperature() {
        let mut d = Downsampler::new(60_000, 10);
        d.push(0, None);
        d.push(1_000, None);
        d.push(60_000, Some(50.0));
        let steps = d.finish();
        assert_eq!(steps.len(), 2);
        assert_eq!(
            (steps[0].readings, steps[0].mean_c, steps[0].min_c),
            (2, None, None)
        );
        assert_eq!(steps[1].mean_c, Some(50.0));
    }

    #[test]
    fn the_limit_counts_steps_not_points() {
        let mut d = Downsampler::new(60_000, 2);
        for t in (0..180_000).step_by(1_000) {
            if !d.push(t, Some(1.0)) {
                assert_eq!(t, 120_000, "stops at the first point of the third step");
                break;
            }
        }
        let steps = d.finish();
        assert_eq!(steps.len(), 2);
        assert!(steps.iter().all(|s| s.readings == 60));
    }
}
