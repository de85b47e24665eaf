//! Learning from the user's own cooks: a per-smoker profile of what completed cooks on one
//! device showed, and the prior the next cook on that device starts from.
//!
//! This module owns three things:
//!
//! * [`Observed`] — what one food probe's cook shows while it runs (when it started heating,
//!   how long it stalled and where, the heating coefficient it fitted, the pit it cooked in,
//!   the estimates it was given). Kept in the probe's state, reset when a cook starts.
//! * [`SmokerProfile`] — per device, what its completed cooks taught: one [`Learnt`] over all
//!   of them and one per kind of meat the cooks named (a planner cut name, so "pork butt"
//!   and "pork_shoulder" are one kind). A cook is complete when its food probe reached its
//!   target; a cook ended before that teaches nothing about how long a cook takes.
//! * [`CookPrior`] — what the next cook starts from, worked out at its `CookStarted`.
//!
//! What is learnt, per completed probe:
//!
//! * **heating coefficient** `k` (1/s) of Newton's law against the pit, the predictor's last
//!   fit; with the weight known, as `k · w^(2/3)` too (a piece's surface-to-volume ratio goes
//!   as `w^(-1/3)` and its heat path as `w^(1/3)`, so `k` as `w^(-2/3)`), so a 6 kg shoulder
//!   learns from a 4 kg one.
//! * **stall**: its length (time in the stall phase) and level (mean temperature in it), for
//!   low-and-slow cooks whose target lies above the stall band (a cook of that kind with no
//!   stall teaches a stall of 0).
//! * **pit behaviour**: the effective level the meat heated toward, as a margin above the
//!   target — the asymptote whose log distance is straightest over the second half of the
//!   heating. It is what the curve forecaster uses for a cook without a pit probe.
//! * **timing bias**: the median of `ln(true remaining / predicted remaining)` (in log time
//!   with [`LOG_OFFSET_S`]) over the estimates between 20 and 80 % of the cook, before any
//!   learnt bias was applied: what this smoker does that the model misses.
//!
//! **What the next cook uses.** The forecaster applies the learnt timing bias, and without a
//! pit probe the learnt asymptote margin ([`super::forecast::ForecastPrior`]). The stall and
//! the heating coefficient are learnt and kept (they describe the smoker, and the prediction
//! says what it is based on) but not fed to Newton's predictor: on the simulated smokers of
//! the learning evaluation ([`super::learning`]) doing so made the predictions worse — the
//! coefficient is fitted at the end of a cook, where a thick piece heats differently from
//! its start, the stall phase's length is a noisy measure of the stall, and the bias, learnt
//! against the model as it ran, no longer matches a model whose inputs moved under it.
//!
//! **Shrinkage.** Each learnt value is a mean over cooks (the probes of one cook share one
//! cook's weight), shrunk toward its prior by the number of cooks `n` and how much they
//! scatter — the normal–normal posterior mean
//! `prior + n / (n + s² / tau²) · (mean − prior)`, where `tau` says how far smokers differ
//! from the prior and `s²` is the cooks' own variance pooled with one cook of a prior
//! scatter ([`Spread`]). With a prior scatter like `tau` the first cook moves a value half
//! way, three that agree 90 %; a value that jumps from cook to cook (the bias of stall-bound
//! cooks) is believed much more slowly. The built-in priors are the forecaster's constants
//! (a 2.5 h stall at 65 °C, the fitted asymptote margin, no bias).
//!
//! **Which cooks count.** A cook that names its meat learns from earlier cooks of the same
//! kind of meat only — a brisket's stall and bias say little about a chicken — except the
//! stall's level, the pit air's wet-bulb temperature, which is the smoker's and comes from
//! all its cooks. A cook that names no meat learns from all the device's cooks.
//!
//! Everything is a function of the inputs: no clock, no randomness, so a replay learns the
//! same profile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::forecast::LOG_OFFSET_S;
use super::phase::{ProbePhase, STALL_BAND_C};
use super::plan::Cut;

/// The prior scatter of one cook counts as this many cooks' worth.
pub const PRIOR_COOKS: f64 = 1.0;
/// Estimates are kept for the bias this often, ms.
const ESTIMATE_EVERY_MS: i64 = 300_000;
/// Estimates kept at most (a day at the rate above).
const MAX_ESTIMATES: usize = 288;
/// The bias is read over estimates made in this share of the cook.
const BIAS_PROGRESS: (f64, f64) = (0.2, 0.8);
/// Pits below this are low and slow (the cooks that stall).
const LOW_AND_SLOW_PIT_C: f64 = 150.0;
/// The learnt bias is clamped to this, in log time (a factor of e^0.7 ≈ 2).
const MAX_BIAS: f64 = 0.7;
/// Margins above the target tried for the effective asymptote, °C: from this…
const MARGIN_FROM_C: f64 = 3.0;
/// …to this…
const MARGIN_TO_C: f64 = 80.0;
/// …in steps of this.
const MARGIN_STEP_C: f64 = 1.0;
/// A cook's heating needs this many bins in its second half for the asymptote fit.
const MIN_MARGIN_BINS: usize = 8;

/// A mean over cooks, each cook with its weight, and their spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Mean {
    /// Sum of weights (cooks).
    pub n: f64,
    /// Weighted sum.
    pub sum: f64,
    /// Weighted sum of squares.
    pub sq: f64,
}

/// How a learnt value is shrunk: how far smokers differ from the prior (`tau`) and how much
/// one cook scatters about its smoker's value before any spread is seen (`scatter`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Standard deviation of the value between smokers.
    pub tau: f64,
    /// Prior standard deviation of one cook about its smoker's value.
    pub scatter: f64,
}

/// Bias, log time: smokers differ by about a quarter; one cook's bias scatters more.
const BIAS_SPREAD: Spread = Spread {
    tau: 0.25,
    scatter: 0.3,
};
/// Stall length, s.
const STALL_S_SPREAD: Spread = Spread {
    tau: 3_600.0,
    scatter: 3_600.0,
};
/// Stall level, °C (the pit air's wet-bulb temperature).
const STALL_C_SPREAD: Spread = Spread {
    tau: 3.0,
    scatter: 2.0,
};
/// Effective asymptote margin, °C.
const MARGIN_SPREAD: Spread = Spread {
    tau: 10.0,
    scatter: 10.0,
};

impl Mean {
    fn add(&mut self, value: f64, weight: f64) {
        if value.is_finite() && weight > 0.0 {
            self.n += weight;
            self.sum += value * weight;
            self.sq += value * value * weight;
        }
    }

    /// The mean shrunk toward `prior`: `prior + n / (n + s² / tau²) · (mean − prior)`, where
    /// `s²` is the cooks' own variance (over `n − 1`) pooled with [`PRIOR_COOKS`] cooks of the
    /// spread's prior scatter (see the module docs).
    pub fn shrunk(&self, prior: f64, spread: Spread) -> f64 {
        let Some(mean) = self.mean() else {
            return prior;
        };
        let own = (self.sq - self.n * mean * mean).max(0.0);
        let s2 = (own + PRIOR_COOKS * spread.scatter.powi(2))
            / (self.n - 1.0 + PRIOR_COOKS).max(PRIOR_COOKS);
        let weight = self.n / (self.n + s2 / spread.tau.powi(2));
        prior + weight * (mean - prior)
    }

    /// The mean, when there is any evidence.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.sum / self.n)
    }
}

/// What a set of completed cooks taught.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Learnt {
    /// Completed cooks learnt from.
    pub cooks: u32,
    /// Heating coefficient, 1/s.
    pub k: Mean,
    /// Heating coefficient times the weight to the 2/3, for cooks that gave their weight.
    pub k_kg: Mean,
    /// Stall length, s (low-and-slow cooks with a target above the band).
    pub stall_s: Mean,
    /// Where the stall held the meat, °C.
    pub stall_c: Mean,
    /// Effective asymptote above the target, °C.
    pub margin_c: Mean,
    /// Timing bias, log time.
    pub bias: Mean,
}

/// What one completed probe showed (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Heating coefficient, 1/s.
    pub k: Option<f64>,
    /// Stall length, s, when the cook was of the kind that stalls.
    pub stall_s: Option<f64>,
    /// Stall level, °C.
    pub stall_c: Option<f64>,
    /// Effective asymptote above the target, °C.
    pub margin_c: Option<f64>,
    /// Timing bias, log time.
    pub bias: Option<f64>,
}

impl Learnt {
    fn add(&mut self, outcomes: &[Outcome], weight_kg: Option<f64>) {
        if outcomes.is_empty() {
            return;
        }
        self.cooks += 1;
        // The probes of one cook share one cook's weight.
        let w = 1.0 / outcomes.len() as f64;
        for o in outcomes {
            if let Some(k) = o.k {
                self.k.add(k, w);
                if let Some(kg) = weight_kg.filter(|kg| *kg > 0.0) {
                    self.k_kg.add(k * kg.powf(2.0 / 3.0), w);
                }
            }
            if let Some(s) = o.stall_s {
                self.stall_s.add(s, w);
            }
            if let Some(c) = o.stall_c {
                self.stall_c.add(c, w);
            }
            if let Some(m) = o.margin_c {
                self.margin_c.add(m, w);
            }
            if let Some(b) = o.bias {
                self.bias.add(b, w);
            }
        }
    }
}

/// A device's profile: what its completed cooks taught, over all and per kind of meat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SmokerProfile {
    /// Every completed cook on the device.
    pub all: Learnt,
    /// Completed cooks that named their meat, by its cut name.
    pub by_meat: BTreeMap<String, Learnt>,
}

/// The built-in priors the profile shrinks toward (the forecaster's own constants).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Priors {
    /// Stall length, s.
    pub stall_s: f64,
    /// Stall level, °C.
    pub stall_c: f64,
    /// Effective asymptote above the target, °C, without a pit probe.
    pub margin_c: f64,
}

/// What a cook starts from: the profile's values for it, shrunk toward the priors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookPrior {
    /// Completed cooks on the device it learnt from.
    pub cooks: u32,
    /// Of those, cooks of this cook's meat.
    pub meat_cooks: u32,
    /// The meat's cut name, when the cook named it.
    pub meat: Option<String>,
    /// Heating coefficient to start from, 1/s.
    pub k: Option<f64>,
    /// Expected stall length, s.
    pub stall_s: f64,
    /// Expected stall level, °C.
    pub stall_c: f64,
    /// Effective asymptote margin, °C (no pit probe).
    pub margin_c: f64,
    /// Timing bias to apply, log time.
    pub bias: f64,
}

impl CookPrior {
    /// Nothing learnt: the priors themselves.
    pub fn built_in(priors: &Priors) -> Self {
        Self {
            cooks: 0,
            meat_cooks: 0,
            meat: None,
            k: None,
            stall_s: priors.stall_s,
            stall_c: priors.stall_c,
            margin_c: priors.margin_c,
            bias: 0.0,
        }
    }

    /// "based on your last 3 pork shoulders" — or, for a cook that names no meat, "based on
    /// your last 2 cooks"; `None` while the estimate uses nothing learnt (no earlier cook of
    /// its meat: the smoker's stall level alone does not move the forecast).
    pub fn based_on(&self) -> Option<String> {
        let plural = |n: u32, one: &str, many: &str| {
            if n == 1 {
                format!("based on your last {one}")
            } else {
                format!("based on your last {n} {many}")
            }
        };
        match &self.meat {
            Some(meat) if self.meat_cooks > 0 && meat == Cut::Other.name() => {
                Some(plural(self.meat_cooks, "cook like this", "cooks like this"))
            }
            Some(meat) if self.meat_cooks > 0 => {
                let words = meat.replace('_', " ");
                let many = if words.ends_with('s') {
                    words.clone()
                } else {
                    format!("{words}s")
                };
                Some(plural(self.meat_cooks, &words, &many))
            }
            None if self.cooks > 0 => Some(plural(self.cooks, "cook", "cooks")),
            _ => None,
        }
    }
}

/// The canonical kind of a meat a cook names.
pub fn meat_kind(meat: &str) -> String {
    Cut::from_words(meat).name().to_owned()
}

impl SmokerProfile {
    /// Learns from one completed cook: its probes' outcomes (none: nothing is learnt).
    pub fn learn(&mut self, meat: Option<&str>, weight_kg: Option<f64>, outcomes: &[Outcome]) {
        if outcomes.is_empty() {
            return;
        }
        self.all.add(outcomes, weight_kg);
        if let Some(meat) = meat {
            self.by_meat
                .entry(meat_kind(meat))
                .or_default()
                .add(outcomes, weight_kg);
        }
    }

    /// What a cook of `meat` (`weight_kg`) on this device starts from.
    pub fn prior_for(
        &self,
        meat: Option<&str>,
        weight_kg: Option<f64>,
        priors: &Priors,
    ) -> CookPrior {
        let all = &self.all;
        // The stall's level is the pit air's (its wet-bulb temperature): the smoker's.
        let stall_c = all.stall_c.shrunk(priors.stall_c, STALL_C_SPREAD);
        let Some(meat) = meat else {
            // A cook that names no meat: the device's cooks, whatever they were.
            return CookPrior {
                cooks: all.cooks,
                meat_cooks: 0,
                meat: None,
                k: None,
                stall_s: all.stall_s.shrunk(priors.stall_s, STALL_S_SPREAD),
                stall_c,
                margin_c: all.margin_c.shrunk(priors.margin_c, MARGIN_SPREAD),
                bias: all.bias.shrunk(0.0, BIAS_SPREAD),
            };
        };
        let kind = meat_kind(meat);
        let none = Learnt::default();
        let learnt = self.by_meat.get(&kind).unwrap_or(&none);
        let k = match (weight_kg.filter(|w| *w > 0.0), learnt.k_kg.mean()) {
            (Some(w), Some(k_kg)) => Some(k_kg / w.powf(2.0 / 3.0)),
            _ => learnt.k.mean(),
        };
        CookPrior {
            cooks: all.cooks,
            meat_cooks: learnt.cooks,
            meat: Some(kind),
            k,
            stall_s: learnt.stall_s.shrunk(priors.stall_s, STALL_S_SPREAD),
            stall_c: learnt.stall_c.shrunk(stall_c, STALL_C_SPREAD),
            margin_c: learnt.margin_c.shrunk(priors.margin_c, MARGIN_SPREAD),
            bias: learnt.bias.shrunk(0.0, BIAS_SPREAD),
        }
    }
}

/// What one food probe's cook shows as it runs (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// First reading heating (or stalled), event ms.
    pub heating_since: Option<i64>,
    /// First reading at the target, event ms.
    pub done_at: Option<i64>,
    /// Target of the cook, °C.
    pub target_c: Option<f64>,
    /// Time in the stall phase, ms, and the sum of temperatures × ms there.
    stall_ms: i64,
    stall_temp_ms: f64,
    /// The previous reading's (time, phase), for the time in a phase.
    last: Option<(i64, ProbePhase)>,
    /// The latest heating coefficient fitted, 1/s.
    pub k: Option<f64>,
    /// Sum of pit levels seen while heating, and their count.
    pit_sum: f64,
    pit_n: u32,
    /// (event ms, ln(remaining + offset) before the learnt bias) every few minutes.
    estimates: Vec<(i64, f64)>,
    /// The meat while heating (not stalled): (event ms, °C) every two minutes.
    curve: Vec<(i64, f64)>,
}

/// One reading as [`Observed::record`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct ObservedReading {
    /// Event time, ms.
    pub time: i64,
    /// Smoothed meat temperature, °C.
    pub temp_c: f64,
    /// The probe's phase after it.
    pub phase: ProbePhase,
    /// The cook's target, °C.
    pub target_c: f64,
    /// The pit level, when there is a pit probe.
    pub pit_c: Option<f64>,
    /// The predictor's heating coefficient after it, 1/s.
    pub k: Option<f64>,
    /// The estimate's remaining time, s, before the learnt bias.
    pub remaining_s: Option<f64>,
}

impl Observed {
    /// Records one reading.
    pub fn record(&mut self, r: ObservedReading) {
        let heating = matches!(r.phase, ProbePhase::Heating | ProbePhase::Stall);
        if let Some((t, ProbePhase::Stall)) = self.last {
            let dt = (r.time - t).clamp(0, 600_000);
            self.stall_ms += dt;
            self.stall_temp_ms += r.temp_c * dt as f64;
        }
        self.last = Some((r.time, r.phase));
        self.target_c = Some(r.target_c);
        if self.done_at.is_some() {
            return;
        }
        if r.phase == ProbePhase::Done {
            self.done_at = Some(r.time);
            return;
        }
        if !heating {
            return;
        }
        self.heating_since.get_or_insert(r.time);
        if r.k.is_some() {
            self.k = r.k;
        }
        if let Some(p) = r.pit_c {
            self.pit_sum += p;
            self.pit_n += 1;
        }
        let due = |v: &[(i64, f64)], every: i64| v.last().is_none_or(|(t, _)| r.time - t >= every);
        if let Some(s) = r.remaining_s.filter(|s| s.is_finite())
            && due(&self.estimates, ESTIMATE_EVERY_MS)
            && self.estimates.len() < MAX_ESTIMATES
        {
            self.estimates
                .push((r.time, (s.max(0.0) + LOG_OFFSET_S).ln()));
        }
        if r.phase == ProbePhase::Heating
            && due(&self.curve, super::forecast::BIN_MS)
            && self.curve.len() < 2 * MAX_ESTIMATES
        {
            self.curve.push((r.time, r.temp_c));
        }
    }

    /// What the cook taught, when it reached its target.
    pub fn outcome(&self) -> Option<Outcome> {
        let start = self.heating_since?;
        let done = self.done_at?;
        let target = self.target_c?;
        if done <= start {
            return None;
        }
        let span = (done - start) as f64;
        let pit = (self.pit_n > 0).then(|| self.pit_sum / f64::from(self.pit_n));
        let stalls = pit.is_none_or(|p| p < LOW_AND_SLOW_PIT_C) && target > STALL_BAND_C.1;
        let stall_s = stalls.then(|| self.stall_ms as f64 / 1_000.0);
        let stall_c = (self.stall_ms > 0).then(|| self.stall_temp_ms / self.stall_ms as f64);
        let residuals: Vec<f64> = self
            .estimates
            .iter()
            .filter(|(t, _)| {
                let p = (t - start) as f64 / span;
                (BIAS_PROGRESS.0..=BIAS_PROGRESS.1).contains(&p)
            })
            .map(|(t, ln_pred)| {
                let truth = (done - t) as f64 / 1_000.0;
                (truth + LOG_OFFSET_S).ln() - ln_pred
            })
            .collect();
        let bias = median(residuals).map(|b| b.clamp(-MAX_BIAS, MAX_BIAS));
        Some(Outcome {
            k: self.k,
            stall_s,
            stall_c,
            margin_c: self.margin(start, done, target),
            bias,
        })
    }

    /// The margin above the target of the asymptote whose log distance is straightest over
    /// the second half of the heating.
    fn margin(&self, start: i64, done: i64, target: f64) -> Option<f64> {
        let mid = start + (done - start) / 2;
        let pts: Vec<(f64, f64)> = self
            .curve
            .iter()
            .filter(|(t, _)| *t >= mid)
            .map(|(t, v)| ((t - mid) as f64 / 1_000.0, *v))
            .collect();
        if pts.len() < MIN_MARGIN_BINS {
            return None;
        }
        let hottest = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let steps = ((MARGIN_TO_C - MARGIN_FROM_C) / MARGIN_STEP_C) as usize;
        (0..=steps)
            .map(|i| MARGIN_FROM_C + i as f64 * MARGIN_STEP_C)
            .filter(|m| target + m > hottest + 0.5)
            .filter_map(|m| {
                let line: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|(x, v)| (*x, (target + m - v).ln()))
                    .collect();
                straightness(&line).map(|r| (m, r))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(m, _)| m)
    }
}

/// The residual variance of a least-squares line through `pts`, relative to the spread of
/// `y` (1 − R²); `None` when it cannot be fitted.
fn straightness(pts: &[(f64, f64)]) -> Option<f64> {
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 || syy <= 0.0 || sxy >= 0.0 {
        return None;
    }
    Some(1.0 - sxy * sxy / (sxx * syy))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIORS: Priors = Priors {
        stall_s: 9_000.0,
        stall_c: 65.0,
        margin_c: 25.0,
    };

    fn outcome(stall_s: f64, bias: f64) -> Outcome {
        Outcome {
            k: Some(1.0 / 5_000.0),
            stall_s: Some(stall_s),
            stall_c: Some(68.0),
            margin_c: Some(15.0),
            bias: Some(bias),
        }
    }

    #[test]
    fn values_shrink_toward_the_prior_by_the_number_of_cooks_and_their_scatter() {
        let mut p = SmokerProfile::default();
        assert_eq!(
            p.prior_for(None, None, &PRIORS),
            CookPrior::built_in(&PRIORS)
        );
        // Stall lengths that agree, with a prior scatter equal to tau: one cook moves the
        // value half way, three cooks three quarters.
        p.learn(None, None, &[outcome(3_000.0, 0.3)]);
        let one = p.prior_for(None, None, &PRIORS);
        assert!((one.stall_s - 6_000.0).abs() < 1e-6, "{one:?}");
        p.learn(None, None, &[outcome(3_000.0, 0.3)]);
        p.learn(None, None, &[outcome(3_000.0, 0.3)]);
        let three = p.prior_for(None, None, &PRIORS);
        // s² = (0 + 3600²) / (3 − 1 + 1), so n / (n + s²/tau²) = 3 / (3 + 1/3).
        let expected = 9_000.0 - 6_000.0 * 0.9;
        assert!((three.stall_s - expected).abs() < 1e-6, "{three:?}");
        assert_eq!(three.cooks, 3);
        assert_eq!(
            three.based_on().as_deref(),
            Some("based on your last 3 cooks")
        );
        // The same mean bias from cooks that scatter is believed less.
        let mut noisy = SmokerProfile::default();
        for b in [0.9, -0.3, 0.9, -0.3] {
            noisy.learn(None, None, &[outcome(3_000.0, b)]);
        }
        let mut steady = SmokerProfile::default();
        for _ in 0..4 {
            steady.learn(None, None, &[outcome(3_000.0, 0.3)]);
        }
        let noisy = noisy.prior_for(None, None, &PRIORS).bias;
        let steady = steady.prior_for(None, None, &PRIORS).bias;
        assert!(
            0.0 < noisy && noisy < steady && steady < 0.3,
            "{noisy} {steady}"
        );
    }

    #[test]
    fn a_named_meat_learns_from_its_own_kind_and_the_probes_of_a_cook_count_once() {
        let mut p = SmokerProfile::default();
        let mut brisket = outcome(3_000.0, 0.5);
        brisket.stall_c = Some(60.0);
        p.learn(Some("brisket"), None, &[brisket]);
        // Two probes of one pork butt: one cook, their mean.
        p.learn(
            Some("Pork butt"),
            Some(4.0),
            &[outcome(5_000.0, 0.2), outcome(7_000.0, 0.4)],
        );
        assert_eq!(p.all.cooks, 2);
        assert_eq!(p.by_meat["pork_shoulder"].cooks, 1);
        let pork = p.prior_for(Some("pork shoulder"), Some(4.0), &PRIORS);
        assert_eq!(pork.meat_cooks, 1);
        assert_eq!(
            pork.based_on().as_deref(),
            Some("based on your last pork shoulder")
        );
        // Its stall from the pork alone (6000 s, half way from 9000), not the brisket's.
        assert!(pork.stall_s > 6_000.0 && pork.stall_s < 9_000.0, "{pork:?}");
        // The same k per kg^(2/3): a heavier piece heats more slowly.
        let heavier = p.prior_for(Some("pork_shoulder"), Some(8.0), &PRIORS);
        assert!(heavier.k.expect("k") < pork.k.expect("k"));
        // A meat never cooked here learns nothing but the smoker's stall level.
        let chicken = p.prior_for(Some("chicken"), None, &PRIORS);
        assert_eq!(chicken.meat_cooks, 0);
        assert_eq!((chicken.k, chicken.bias), (None, 0.0));
        assert_eq!(chicken.stall_s, PRIORS.stall_s);
        assert!(chicken.stall_c < PRIORS.stall_c, "{chicken:?}");
        assert_eq!(chicken.based_on(), None);
    }

    #[test]
    fn an_observed_cook_gives_its_stall_margin_and_bias() {
        // Exact Newton heating toward 110 °C (a target of 90 °C: margin 20), a 30-minute flat
        // stall at 66 °C, a forecast that always says half the truth.
        let k = 1.0 / 4_000.0;
        let mut o = Observed::default();
        let target = 90.0;
        let stall = (3_000_000, 4_800_000);
        let heat = |s: f64| 110.0 - 105.0 * (-(k * s)).exp();
        let t_at_66 = (105.0f64 / 44.0).ln() / k;
        let done_s = stall.1 as f64 / 1_000.0 + (105.0f64 / 20.0).ln() / k - t_at_66;
        let mut t = 0;
        while t <= (done_s * 1_000.0) as i64 + 30_000 {
            let s = t as f64 / 1_000.0;
            let (temp, phase) = if t < stall.0 {
                (heat(s.min(t_at_66)), ProbePhase::Heating)
            } else if t < stall.1 {
                (66.0, ProbePhase::Stall)
            } else {
                let h = heat(t_at_66 + (t - stall.1) as f64 / 1_000.0);
                let phase = if h >= target {
                    ProbePhase::Done
                } else {
                    ProbePhase::Heating
                };
                (h, phase)
            };
            o.record(ObservedReading {
                time: t,
                temp_c: temp,
                phase,
                target_c: target,
                pit_c: Some(110.0),
                k: Some(k),
                remaining_s: Some(0.5 * (done_s - s).max(0.0)),
            });
            t += 30_000;
        }
        let out = o.outcome().expect("a completed cook");
        let stall_s = out.stall_s.expect("a low-and-slow cook");
        assert!((stall_s - 1_800.0).abs() <= 30.0, "{out:?}");
        assert!((out.stall_c.expect("level") - 66.0).abs() < 0.01);
        let margin = out.margin_c.expect("a margin");
        assert!((margin - 20.0).abs() <= 1.0, "{out:?}");
        // Half the truth is ln 2 short, a little less with the offset.
        let bias = out.bias.expect("a bias");
        assert!((0.5..=0.7).contains(&bias), "{out:?}");

        // Not done: nothing learnt.
        let mut cut = o.clone();
        cut.done_at = None;
        assert_eq!(cut.outcome(), None);
    }
}
