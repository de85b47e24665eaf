//! Time to target: Newton's law of heating fitted online, with the evaporative stall.
//!
//! Meat heats toward the pit: `dT/dt = k (P - T)`. The predictor fits `k` per probe from the
//! rates the trend measures (least squares through the origin of rate against the drive
//! `P - T`, with exponential forgetting so a cut that behaves differently late in the cook
//! is followed) and solves for the time to the target:
//! `t = ln((P - T) / (P - target)) / k`. Without a pit probe it fits the asymptote as well
//! (`dT/dt = a - b T`, so `P = a / b`, `k = b`).
//!
//! The stall breaks the law: evaporation takes most of the heat while the surface is wet.
//! Rates measured in a stall are not used for `k`; while a stall lasts, the prediction is the
//! stall's expected remainder plus Newton's time from there, and its interval widens. A
//! low-and-slow cook still below the band gets the stall it is likely to meet added too.
//!
//! The 80 % interval comes from the fit's spread of `k` (with a floor for model error) and
//! the stall's uncertainty. Everything is a function of the inputs: no clock, no randomness.

use serde::{Deserialize, Serialize};

use super::phase::{ProbePhase, STALL_BAND_C};

/// Forgetting time constant of the fit, ms of event time.
const FORGET_MS: f64 = 2_700_000.0;
/// Fit samples are taken at most this often.
const SAMPLE_EVERY_MS: i64 = 30_000;
/// A fit needs this much effective evidence (samples × weight).
const MIN_EVIDENCE: f64 = 8.0;
/// Expected total length of a stall, seconds (a prior: stalls of big cuts run 1–4 h).
pub const STALL_PRIOR_S: f64 = 9_000.0;
/// Pits hotter than this rarely produce a visible stall (roasting, not smoking).
const LOW_AND_SLOW_PIT_C: f64 = 150.0;
/// Where a stall holds the meat, °C (a flat stretch at the bottom of the band).
pub const STALL_PLATEAU_C: f64 = 65.0;
/// z for a two-sided 80 % interval.
const Z80: f64 = 1.2816;

/// A prediction for one probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Seconds to target.
    pub remaining_s: Option<f64>,
    /// 80 % interval, seconds (upper `None` = unbounded).
    pub low_s: Option<f64>,
    /// 80 % interval upper end.
    pub high_s: Option<f64>,
    /// The probe is in the stall.
    pub stall: bool,
    /// How it was estimated.
    pub method: String,
    /// Uncertainty of the remaining time in log scale, before calibration (see
    /// [`super::forecast`]); `None` when not estimated that way.
    #[serde(default)]
    pub sigma: Option<f64>,
}

impl Estimate {
    fn none(stall: bool) -> Self {
        Self {
            remaining_s: None,
            low_s: None,
            high_s: None,
            stall,
            method: "none".into(),
            sigma: None,
        }
    }
}

/// Per-probe fit state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Predictor {
    /// Weighted sums for rate (°C/s) against drive (°C), through the origin.
    sxx: f64,
    sxy: f64,
    syy: f64,
    /// Weighted sums for rate against temperature, with intercept (no pit).
    w: f64,
    st: f64,
    stt: f64,
    sr: f64,
    str_: f64,
    srr: f64,
    last_sample: Option<i64>,
    /// When the current stall began, event ms.
    stall_began: Option<i64>,
    /// Whether this probe has been through a stall already.
    stalled_before: bool,
    /// The last estimate made from a reading, and when: carried through a short unplug.
    last: Option<(i64, Estimate)>,
    /// How far the rate's moment lags the temperature's, minutes.
    rate_lag_min: f64,
}

impl Predictor {
    /// A predictor for rates measured `rate_lag_min` minutes behind the temperatures given
    /// (half the rate window less half the smoothing window; 0 for exact rates).
    pub fn with_rate_lag(rate_lag_min: f64) -> Self {
        Self {
            rate_lag_min,
            ..Self::default()
        }
    }
}

/// What one prediction step reads.
#[derive(Clone, Copy, Debug)]
pub struct PredictInputs {
    /// Event time.
    pub time: i64,
    /// Smoothed probe temperature.
    pub temp_c: f64,
    /// Rate of rise, °C per minute.
    pub rate_c_per_min: Option<f64>,
    /// The pit level heated toward, when there is a pit probe.
    pub pit_c: Option<f64>,
    /// The pit holds (samples taken during a lid-open dip or a dying fire are skipped).
    pub pit_steady: bool,
    /// The pit holds a level (not coming up to temperature): a low-and-slow cook.
    pub pit_holding: bool,
    /// The probe's phase.
    pub phase: ProbePhase,
    /// Target.
    pub target_c: f64,
}

impl Predictor {
    /// The heating coefficient fitted against the pit, 1/s.
    pub fn k(&self) -> Option<f64> {
        self.k_with_pit().map(|(k, _)| k)
    }

    /// The heating coefficient, 1/s, and its relative standard error, with a pit.
    fn k_with_pit(&self) -> Option<(f64, f64)> {
        if self.w < MIN_EVIDENCE || self.sxx <= 0.0 {
            return None;
        }
        let k = self.sxy / self.sxx;
        if k <= 0.0 {
            return None;
        }
        let resid = (self.syy - k * self.sxy).max(0.0) / (self.w - 1.0).max(1.0);
        let se = (resid / self.sxx).sqrt();
        Some((k, se / k))
    }

    /// `(asymptote, k, relative error)` fitted without a pit.
    fn asymptote(&self) -> Option<(f64, f64, f64)> {
        if self.w < MIN_EVIDENCE {
            return None;
        }
        let n = self.w;
        let vt = self.stt - self.st * self.st / n;
        if vt <= 1e-9 {
            return None;
        }
        let cov = self.str_ - self.st * self.sr / n;
        let slope = cov / vt; // d rate / d T = -k
        let k = -slope;
        if k <= 0.0 {
            return None;
        }
        let a = (self.sr - slope * self.st) / n;
        let resid =
            ((self.srr - self.sr * self.sr / n) - slope * cov).max(0.0) / (n - 2.0).max(1.0);
        let se = (resid / vt).sqrt();
        Some((a / k, k, se / k))
    }

    /// Learns from one reading (if it is fit for learning) and predicts.
    pub fn update(&mut self, i: PredictInputs) -> Estimate {
        if i.phase == ProbePhase::ProbeOut {
            // Out of the food: the last estimate, aged, until it is back (or for good).
            return self.last.as_ref().map_or_else(
                || Estimate::none(false),
                |(at, e)| {
                    let aged =
                        |s: Option<f64>| s.map(|s| (s - (i.time - at) as f64 / 1_000.0).max(0.0));
                    Estimate {
                        remaining_s: aged(e.remaining_s),
                        low_s: aged(e.low_s),
                        high_s: aged(e.high_s),
                        stall: e.stall,
                        method: e.method.clone(),
                        sigma: None,
                    }
                },
            );
        }
        let estimate = self.estimate(i);
        self.last = Some((i.time, estimate.clone()));
        estimate
    }

    fn estimate(&mut self, i: PredictInputs) -> Estimate {
        let stall = i.phase == ProbePhase::Stall;
        if stall {
            // The phase confirms a stall after it has lasted a while.
            self.stall_began
                .get_or_insert(i.time - super::phase::STALL_CONFIRM_MS);
            self.stalled_before = true;
        } else {
            self.stall_began = None;
        }
        self.learn(&i);
        self.predict(&i, i.target_c)
    }

    /// What the fit says now about reaching `target_c` from the reading `i`, without
    /// learning from it.
    pub fn predict(&self, i: &PredictInputs, target_c: f64) -> Estimate {
        self.predict_level(i, target_c)
    }

    /// The time to reach `level_c` on the way to the reading's target: the stall the
    /// target's cook expects counts when the level lies beyond the stall's plateau (the
    /// forecaster scores the fit on such levels as the cook goes).
    pub fn predict_level(&self, i: &PredictInputs, level_c: f64) -> Estimate {
        let cook_target_c = i.target_c;
        let i = PredictInputs {
            target_c: level_c,
            ..*i
        };
        let stall = i.phase == ProbePhase::Stall;
        if i.phase == ProbePhase::Done || i.temp_c >= i.target_c {
            return Estimate {
                remaining_s: Some(0.0),
                low_s: Some(0.0),
                high_s: Some(0.0),
                stall: false,
                method: "reached".into(),
                sigma: None,
            };
        }
        let (asymptote, k, rel) = match (i.pit_c, self.k_with_pit()) {
            (Some(pit), Some((k, rel))) => (pit, k, rel),
            (None, _) => match self.asymptote() {
                Some(fit) => fit,
                None => return Estimate::none(stall),
            },
            _ => return Estimate::none(stall),
        };
        let method = if i.pit_c.is_some() {
            "newton"
        } else {
            "asymptote"
        }
        .to_owned();
        // The meat cannot pass its heat source; a target at or above it is never reached.
        if i.target_c >= asymptote - 0.5 {
            return Estimate {
                method,
                ..Estimate::none(stall)
            };
        }
        let rel = rel.clamp(0.08, 0.6);
        let newton = |k: f64, from: f64| -> f64 {
            let from = from.min(i.target_c);
            ((asymptote - from) / (asymptote - i.target_c)).ln() / k
        };
        // The stall still ahead or under way.
        let (stall_s, stall_lo, stall_hi) = if stall {
            let elapsed = self
                .stall_began
                .map_or(0.0, |b| (i.time - b) as f64 / 1_000.0);
            // Climbing again: the stall is breaking, only Newton's part is left.
            let breaking = i.rate_c_per_min.is_some_and(|r| r > 0.1);
            let left = if breaking {
                0.0
            } else {
                (STALL_PRIOR_S - elapsed).max(600.0)
            };
            (left, 0.3 * left, 2.5 * left + 1_800.0)
        } else if !self.stalled_before
            && (i.pit_holding || i.pit_c.is_none())
            && asymptote < LOW_AND_SLOW_PIT_C
            && i.temp_c < STALL_BAND_C.1
            && cook_target_c > STALL_BAND_C.1
            && i.target_c > STALL_PLATEAU_C
        {
            (STALL_PRIOR_S, 0.2 * STALL_PRIOR_S, 2.0 * STALL_PRIOR_S)
        } else {
            (0.0, 0.0, 0.0)
        };
        let from = if stall {
            i.temp_c.max(STALL_PLATEAU_C)
        } else {
            i.temp_c
        };
        let mid = newton(k, from) + stall_s;
        let low = newton(k * (1.0 + Z80 * rel), from) + stall_lo;
        let high = if Z80 * rel < 0.95 {
            Some(newton(k * (1.0 - Z80 * rel), from) + stall_hi)
        } else {
            None
        };
        Estimate {
            remaining_s: Some(mid),
            low_s: Some(low),
            high_s: high,
            stall,
            method,
            sigma: None,
        }
    }

    fn learn(&mut self, i: &PredictInputs) {
        let Some(rate_min) = i.rate_c_per_min else {
            return;
        };
        // Only clean heating teaches k: outside the evaporative band (where evaporation
        // already slows the meat before a stall shows), not while the pit falters.
        let in_band = i.temp_c >= STALL_BAND_C.0 && i.temp_c < STALL_BAND_C.1;
        if i.phase != ProbePhase::Heating || !i.pit_steady || in_band {
            return;
        }
        if self
            .last_sample
            .is_some_and(|t| i.time - t < SAMPLE_EVERY_MS)
        {
            return;
        }
        // Forget by the time spent learning, not across a stretch that taught nothing (the
        // stall): the fit from before it is the best there is afterwards.
        let decay = self.last_sample.map_or(1.0, |t| {
            let dt = (i.time - t).clamp(0, 2 * SAMPLE_EVERY_MS);
            (-(dt as f64) / FORGET_MS).exp()
        });
        self.last_sample = Some(i.time);
        let rate = rate_min / 60.0;
        // The rate is fitted over the trend window, centred RATE_LAG_MIN before the smoothed
        // temperature: pair it with the temperature of that moment.
        let temp = i.temp_c - rate_min * self.rate_lag_min;
        for v in [
            &mut self.sxx,
            &mut self.sxy,
            &mut self.syy,
            &mut self.w,
            &mut self.st,
            &mut self.stt,
            &mut self.sr,
            &mut self.str_,
            &mut self.srr,
        ] {
            *v *= decay;
        }
        if let Some(pit) = i.pit_c {
            let drive = pit - temp;
            if drive > 5.0 {
                self.sxx += drive * drive;
                self.sxy += drive * rate;
                self.syy += rate * rate;
            }
        }
        self.w += 1.0;
        self.st += temp;
        self.stt += temp * temp;
        self.sr += rate;
        self.str_ += temp * rate;
        self.srr += rate * rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pit: Option<f64>, k: f64, target: f64, until_s: i64) -> (f64, Estimate) {
        // Exact Newton heating from 5 °C toward 120 °C, one reading per 30 s.
        let mut p = Predictor::default();
        let mut last = Estimate::none(false);
        let mut temp = 5.0;
        for s in (0..until_s).step_by(30) {
            temp = 120.0 - (120.0 - 5.0) * (-(k * s as f64)).exp();
            let rate = k * (120.0 - temp) * 60.0;
            last = p.update(PredictInputs {
                time: s * 1_000,
                temp_c: temp,
                rate_c_per_min: Some(rate),
                pit_c: pit,
                pit_steady: true,
                pit_holding: true,
                phase: ProbePhase::Heating,
                target_c: target,
            });
        }
        (temp, last)
    }

    #[test]
    fn exact_newton_heating_is_predicted_exactly_with_or_without_a_pit() {
        let k = 1.0 / 5_000.0;
        // Target 80 °C (no stall expected below the band's top), one hour in.
        let truth = ((120.0f64 - 5.0) / (120.0 - 80.0)).ln() / k - 3_570.0;
        for pit in [Some(120.0), None] {
            let (_, e) = run(pit, k, 80.0, 3_600);
            let got = e.remaining_s.expect("an estimate");
            assert!(
                (got - truth).abs() < 0.01 * truth,
                "{pit:?}: {got} vs {truth}"
            );
            assert!(e.low_s.expect("low") <= got && got <= e.high_s.expect("high"));
        }
    }

    #[test]
    fn a_target_above_the_pit_is_never_reached() {
        let (_, e) = run(Some(120.0), 1.0 / 5_000.0, 125.0, 3_600);
        assert_eq!(e.remaining_s, None);
    }

    #[test]
    fn a_stall_adds_time_and_widens_the_interval() {
        // One fit, one hour of exact Newton heating toward a 120 °C pit; then the probe
        // reads 65 °C and flat. Both estimates are made from that same fit at that moment.
        let k = 1.0 / 5_000.0;
        let mut p = Predictor::default();
        for s in (0..3_600).step_by(30) {
            let temp = 120.0 - 115.0 * (-(k * s as f64)).exp();
            p.update(PredictInputs {
                time: s * 1_000,
                temp_c: temp,
                rate_c_per_min: Some(k * (120.0 - temp) * 60.0),
                pit_c: Some(120.0),
                pit_steady: true,
                pit_holding: true,
                phase: ProbePhase::Heating,
                target_c: 95.0,
            });
        }
        let at_65 = |phase: ProbePhase, pit_holding: bool, rate: f64| PredictInputs {
            time: 3_600_000,
            temp_c: 65.0,
            rate_c_per_min: Some(rate),
            pit_c: Some(120.0),
            pit_steady: true,
            pit_holding,
            phase,
            target_c: 95.0,
        };
        // No stall: heating at Newton's rate, and the pit not holding a low-and-slow level,
        // so no stall is expected ahead either.
        let plain = p
            .clone()
            .update(at_65(ProbePhase::Heating, false, k * (120.0 - 65.0) * 60.0));
        let stalled = p.clone().update(at_65(ProbePhase::Stall, true, 0.0));
        assert!(!plain.stall && stalled.stall);

        // The plain estimate is Newton's time alone, worked out here by hand.
        let newton_s = ((120.0f64 - 65.0) / (120.0 - 95.0)).ln() / k;
        let plain_s = plain.remaining_s.expect("a plain estimate");
        assert!(
            (plain_s - newton_s).abs() < 0.01 * newton_s,
            "{plain_s} vs {newton_s}"
        );

        let stalled_s = stalled.remaining_s.expect("a stalled estimate");
        assert!(
            stalled_s > plain_s + 600.0,
            "the stall adds at least ten minutes: {stalled_s} vs {plain_s}"
        );
        let width = |e: &Estimate| e.high_s.unwrap_or(f64::INFINITY) - e.low_s.unwrap_or(0.0);
        assert!(
            width(&stalled) > width(&plain),
            "the stall widens the interval: {stalled:?} vs {plain:?}"
        );
    }
}
