//! Time to target that holds on real cooks: three forecasters, blended by how well each has
//! done on this cook so far, with an interval calibrated on other cooks.
//!
//! Real cooks break the clean Newton fit of [`super::predict`]: pits ramp and sag, stalls run
//! from one to five hours, a wrap ends a stall at once, there is often no pit probe. So each
//! food probe runs three forecasters side by side:
//!
//! * **newton** — [`Predictor`]: Newton's law against the pit, with the evaporative stall.
//!   Exact when the meat heats as the law says (the simulator's meat does).
//! * **curve** — the meat's own recent curve in *log distance to an effective asymptote*:
//!   `ln(A - T)` is a straight line in time when the meat approaches `A` exponentially, so a
//!   weighted least-squares line through the last half of the heating (at least 20 minutes,
//!   2-minute bins) gives the rate constant `k` and the time to the target is
//!   `ln((A - T) / (A - target)) / k`. The window follows the cook: slowing in a stall,
//!   speeding up after a wrap. `A` is the forecast pit when there is a pit probe (what
//!   evaporation costs shows as a smaller `k` over the window); without one it is
//!   `target + margin`, a margin fitted on recorded cooks (never below the meat). It needs
//!   no pit probe, so every probe gets an estimate once it has heated for a few bins.
//! * **linear** — the recent rate (a line through the last 15 minutes, or 15 % of the
//!   heating if longer) extrapolated to the target. It stands in only while neither model
//!   has an estimate (the first minutes of a probe).
//!
//! **Online skill.** Every 10 minutes the forecaster sets itself a check: a level a third of
//! the way to the target, and each forecaster's time to reach it. When the meat gets there,
//! each forecaster is scored by its squared log error; a forecaster whose time has long
//! passed (twice its forecast) is scored at once on the time elapsed, a lower bound — an
//! over-optimistic forecast in a stall is punished while the stall lasts. The blend is the
//! mean in log time weighted by the inverse of each forecaster's exponentially forgotten mean
//! squared error, cubed (a prior error before any check resolves — newton against a measured
//! pit is trusted first; an open check a forecaster is already late for counts at once, on
//! the time elapsed). This is learnt on the cook itself,
//! from what it has already done: no cook's outcome is used before it happens.
//!
//! **Interval.** The blend's log-scale uncertainty `sigma` combines a floor, the spread of the
//! forecasters and their scored error. The 80 % interval is
//! `[τ·e^{q_lo·sigma}, τ·e^{q_hi·sigma}]` (τ in seconds plus one minute). `q_lo` and `q_hi`
//! are split conformal bounds over other cooks, the exchangeable units: each cook's own 10th
//! and 90th percentiles of the normalised residual `ln(true / predicted) / sigma`, and of
//! those the ceil((n + 1)·0.9)-th of n — the extreme while there are fewer than nine cooks,
//! so the interval is wide while few cooks are recorded and narrows as more are.
//! `emberline eval-predictions` fits them leaving the scored cook out;
//! [`ModelParams::default`] holds the values fitted on all shared recorded cooks. As the cook
//! goes the remaining time shrinks and the interval with it.
//!
//! **Learnt prior.** A cook on a device with completed cooks starts from what they taught
//! ([`super::learn`], [`ForecastPrior`]): without a pit probe the curve heads for the
//! device's learnt effective asymptote instead of the fitted margin, and the blend (with its
//! interval) is moved by the device's learnt timing bias in log time. With nothing learnt
//! both are the model's own, and the forecast is what it was without learning.
//!
//! Robustness: readings feed the curve only while the probe is heating or stalled — not while
//! it is out of the food, nor for a few minutes after it is back (it is still catching up
//! with the meat). Gaps just leave bins empty. The pit forecast is a robust level (the median
//! of the last 30 minutes of 2-minute pit bins) so a lid-open dip or a spike does not move it.
//! Everything is a function of the inputs: no clock, no randomness.

use serde::{Deserialize, Serialize};

use super::phase::ProbePhase;
use super::predict::{Estimate, PredictInputs, Predictor};

/// Width of a history bin, ms.
pub const BIN_MS: i64 = 120_000;
/// Bins kept (16 hours).
const MAX_BINS: usize = 480;
/// The curve window: this share of the heating so far…
const CURVE_WINDOW_SHARE: f64 = 0.5;
/// …but at least this long, ms.
const CURVE_WINDOW_MIN_MS: i64 = 1_200_000;
/// The linear window: this share of the heating so far…
const LINEAR_WINDOW_SHARE: f64 = 0.15;
/// …but at least this long, ms.
const LINEAR_WINDOW_MIN_MS: i64 = 900_000;
/// Bins a fit needs.
const MIN_BINS: usize = 3;
/// A probe back in the food is ignored this long while it catches up, ms.
const SETTLE_MS: i64 = 240_000;
/// A skill check is set this often, ms.
const CHECK_EVERY_MS: i64 = 600_000;
/// A check's level lies this share of the way to the target.
const CHECK_SHARE: f64 = 0.5;
/// Open checks kept at most.
const MAX_CHECKS: usize = 24;
/// A check unresolved this long is dropped, ms.
const CHECK_EXPIRES_MS: i64 = 6 * 3_600_000;
/// Each scored check keeps this share of the earlier ones' weight.
const SKILL_MEMORY: f64 = 0.7;
/// Blend weights are the inverse error to this power: a forecaster clearly better on this
/// cook takes over rather than being averaged with a worse one.
const WEIGHT_POWER: i32 = 3;
/// Prior mean squared log error of each forecaster (newton against a pit probe, the curve,
/// the line), and its weight in checks: the physical law with a measured pit is trusted
/// first, the meat's own curve next, the line least (it ignores that meat slows as it nears
/// its heat); then the cook's own checks take over.
const PRIOR_MSE: [f64; 3] = [0.02, 0.1, 0.3];
/// Prior error of newton without a pit probe (it must fit the asymptote too).
const PRIOR_MSE_NO_PIT: f64 = 0.3;
const PRIOR_CHECKS: f64 = 2.0;
/// Floor of a forecaster's error in the blend weights (a tenth in log time).
const MSE_FLOOR: f64 = 0.01;
/// Added to times before taking logs, s (a forecast of 0 s is not infinitely wrong).
pub const LOG_OFFSET_S: f64 = 60.0;
/// Pit bins of this span, ms, make the pit forecast.
const PIT_WINDOW_MS: i64 = 1_800_000;

/// How a blended estimate's method starts (then the leading forecaster's name).
const BLEND: &str = "blend/";
/// Names of the forecasters, in the order of their slots.
pub const FORECASTERS: [&str; 3] = ["newton", "curve", "linear"];

/// Parameters fitted from recorded cooks (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// The effective asymptote sits this far above the target, °C (below the pit).
    pub asymptote_margin_c: f64,
    /// Interval calibration.
    pub calibration: Calibration,
}

/// Split conformal calibration of the interval, in units of the blend's `sigma`, over cooks:
/// bounds that the 10th and 90th percentiles of a new cook's normalised residuals stay
/// within (see `eval::fit_params`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Floor of `sigma`.
    pub sigma_floor: f64,
    /// Lower bound in sigmas: the conformal bound of the cooks' 10th percentiles of
    /// `ln(true / predicted) / sigma`.
    pub q_low: f64,
    /// Upper bound: the conformal bound of their 90th percentiles.
    pub q_high: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            sigma_floor: 0.1,
            q_low: -5.17,
            q_high: 5.03,
        }
    }
}

impl Default for ModelParams {
    /// Fitted on all the shared recorded cooks by `emberline eval-predictions`.
    fn default() -> Self {
        Self {
            asymptote_margin_c: 25.0,
            calibration: Calibration::default(),
        }
    }
}

/// A 2-minute bin being filled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct OpenBin {
    index: i64,
    sum: f64,
    n: u32,
}

impl OpenBin {
    fn mid_and_mean(&self) -> (i64, f64) {
        (
            self.index * BIN_MS + BIN_MS / 2,
            self.sum / f64::from(self.n.max(1)),
        )
    }
}

/// Binned history of a series: closed bins of (mid time, mean) plus the open one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    closed: Vec<(i64, f64)>,
    open: Option<OpenBin>,
}

impl Bins {
    /// Adds a value; returns whether a bin closed.
    fn add(&mut self, time: i64, value: f64, keep: usize) -> bool {
        let index = time.div_euclid(BIN_MS);
        match &mut self.open {
            Some(b) if b.index == index => {
                b.sum += value;
                b.n += 1;
                false
            }
            Some(b) if b.index > index => false, // late: its bin is gone
            _ => {
                let closed = self.open.take().map(|b| b.mid_and_mean());
                if let Some(c) = closed {
                    self.closed.push(c);
                    if self.closed.len() > keep {
                        let drop = self.closed.len() - keep;
                        self.closed.drain(..drop);
                    }
                }
                self.open = Some(OpenBin {
                    index,
                    sum: value,
                    n: 1,
                });
                closed.is_some()
            }
        }
    }

    /// Closed bins, then the open one.
    fn all(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.closed
            .iter()
            .copied()
            .chain(self.open.as_ref().map(OpenBin::mid_and_mean))
    }
}

/// The pit's recent history, for its forecast.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PitRecent {
    bins: Bins,
}

impl PitRecent {
    /// Adds a pit reading.
    pub fn add(&mut self, time: i64, temp_c: f64) {
        self.bins.add(time, temp_c, 32);
    }

    /// The level the pit will hold: the median of the last 30 minutes of bins (robust to a
    /// lid-open dip, a flare, a gap), `None` without recent readings.
    pub fn forecast(&self, now: i64) -> Option<f64> {
        let mut v: Vec<f64> = self
            .bins
            .all()
            .filter(|(t, _)| *t > now - PIT_WINDOW_MS - BIN_MS)
            .map(|(_, v)| v)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

/// A skill check: a level and each forecaster's time to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Check {
    made_at: i64,
    level_c: f64,
    predicted_s: [Option<f64>; 3],
}

/// The curve and linear fits, refreshed as bins close.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Fits {
    /// Effective asymptote and rate constant (1/s) of the curve.
    curve: Option<(f64, f64)>,
    /// Linear rate, °C/s.
    linear: Option<f64>,
    /// The target the asymptote was set for.
    target_c: f64,
}

/// What a cook's forecast starts from, learnt from earlier cooks on the device (see
/// [`super::learn`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastPrior {
    /// The effective asymptote's margin above the target without a pit probe, °C (`None`:
    /// the model's).
    pub margin_c: Option<f64>,
    /// Added to the blend in log time: what this smoker's cooks showed the model misses.
    pub bias: f64,
}

/// Per-probe forecaster state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecaster {
    /// What this cook started from.
    #[serde(default)]
    pub prior: ForecastPrior,
    bins: Bins,
    heating_since: Option<i64>,
    settle_until: Option<i64>,
    was_out: bool,
    fits: Option<Fits>,
    checks: Vec<Check>,
    last_check: Option<i64>,
    /// Exponentially forgotten sum of squared log errors, and of checks, per forecaster.
    err: [f64; 3],
    scored: [f64; 3],
    last: Option<(i64, Estimate)>,
}

/// What one forecast step reads.
#[derive(Clone, Copy, Debug)]
pub struct ForecastInputs<'a> {
    /// What the Newton predictor was given (time, smoothed temperature, phase, target…).
    pub reading: PredictInputs,
    /// The Newton predictor, after learning from this reading.
    pub newton: &'a Predictor,
    /// The pit forecast, when there is a pit probe.
    pub pit_forecast_c: Option<f64>,
}

/// Squared log error of a forecast time, s.
fn log_err(actual: f64, predicted: f64) -> f64 {
    ((actual + LOG_OFFSET_S) / (predicted + LOG_OFFSET_S))
        .ln()
        .powi(2)
}

fn line(points: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
    // Weighted least squares y = a + b x; returns (a, b).
    let w: f64 = points.iter().map(|p| p.2).sum();
    if w <= 0.0 {
        return None;
    }
    let mx = points.iter().map(|p| p.2 * p.0).sum::<f64>() / w;
    let my = points.iter().map(|p| p.2 * p.1).sum::<f64>() / w;
    let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| {
        let b = sxy / sxx;
        (my - b * mx, b)
    })
}

impl Forecaster {
    /// The forecasters' mean squared log errors so far (with the prior), at `now`: an open
    /// check a forecaster is already late for counts as scored on the time elapsed (a lower
    /// bound of its error), so a forecast that a stall proves wrong loses weight while the
    /// stall lasts.
    pub fn skill(&self, now: i64, with_pit: bool) -> [f64; 3] {
        [0, 1, 2].map(|c| {
            let prior = if c == 0 && !with_pit {
                PRIOR_MSE_NO_PIT
            } else {
                PRIOR_MSE[c]
            };
            let (mut err, mut n) = (self.err[c], self.scored[c]);
            for check in &self.checks {
                let elapsed = (now - check.made_at).max(0) as f64 / 1_000.0;
                if let Some(p) = check.predicted_s[c].filter(|p| elapsed > *p) {
                    err += log_err(elapsed, p);
                    n += 1.0;
                }
            }
            (err + prior * PRIOR_CHECKS) / (n + PRIOR_CHECKS)
        })
    }

    /// `estimate`'s time left, s, as the model gave it before this cook's learnt bias moved
    /// it: what the next cook's bias is learnt from. Only blended estimates carry the bias.
    pub fn unbiased_remaining_s(&self, estimate: &Estimate) -> Option<f64> {
        let s = estimate.remaining_s?;
        Some(if estimate.method.starts_with(BLEND) {
            ((s + LOG_OFFSET_S).ln() - self.prior.bias).exp() - LOG_OFFSET_S
        } else {
            s
        })
    }

    /// Learns from one reading and forecasts.
    pub fn update(&mut self, i: ForecastInputs<'_>, params: &ModelParams) -> Estimate {
        let r = i.reading;
        if r.phase == ProbePhase::ProbeOut {
            self.was_out = true;
            return self.aged(r.time);
        }
        if self.was_out {
            self.was_out = false;
            self.settle_until = Some(r.time + SETTLE_MS);
        }
        let settling = self.settle_until.is_some_and(|u| r.time < u);
        let heating = matches!(r.phase, ProbePhase::Heating | ProbePhase::Stall);
        if heating && !settling {
            self.heating_since.get_or_insert(r.time);
            let closed = self.bins.add(r.time, r.temp_c, MAX_BINS);
            if closed || self.fits.is_none_or(|f| f.target_c != r.target_c) {
                self.refit(r.time, r.target_c, i.pit_forecast_c, params);
            }
        }
        if heating || r.phase == ProbePhase::Done {
            self.resolve_checks(r.time, r.temp_c);
        }
        let estimate = if r.phase == ProbePhase::Done || r.temp_c >= r.target_c {
            Estimate {
                remaining_s: Some(0.0),
                low_s: Some(0.0),
                high_s: Some(0.0),
                stall: false,
                method: "reached".into(),
                sigma: Some(0.0),
            }
        } else {
            if heating && !settling {
                self.maybe_check(&i);
            }
            self.blend(&i, params)
        };
        self.last = Some((r.time, estimate.clone()));
        estimate
    }

    /// The probe is unplugged: the last estimate, aged.
    pub fn out(&mut self, now: i64) -> Estimate {
        self.was_out = true;
        self.aged(now)
    }

    /// The last estimate, aged by the time since (a probe out of the food).
    fn aged(&self, now: i64) -> Estimate {
        self.last.as_ref().map_or_else(
            || Estimate {
                remaining_s: None,
                low_s: None,
                high_s: None,
                stall: false,
                method: "none".into(),
                sigma: None,
            },
            |(at, e)| {
                let aged = |s: Option<f64>| s.map(|s| (s - (now - at) as f64 / 1_000.0).max(0.0));
                Estimate {
                    remaining_s: aged(e.remaining_s),
                    low_s: aged(e.low_s),
                    high_s: aged(e.high_s),
                    ..e.clone()
                }
            },
        )
    }

    fn refit(&mut self, now: i64, target_c: f64, pit_c: Option<f64>, params: &ModelParams) {
        let since = self.heating_since.unwrap_or(now);
        let elapsed = (now - since) as f64;
        let window = |share: f64, min_ms: i64| -> Vec<(i64, f64)> {
            let span = (elapsed * share).max(min_ms as f64) as i64;
            self.bins.all().filter(|(t, _)| *t > now - span).collect()
        };
        let curve_bins = window(CURVE_WINDOW_SHARE, CURVE_WINDOW_MIN_MS);
        let hottest = curve_bins
            .iter()
            .map(|(_, v)| *v)
            .fold(f64::NEG_INFINITY, f64::max);
        // With a pit probe the meat heads for the pit (the window's k takes in what
        // evaporation costs); without one, for a level the margin above the target.
        let margin = self.prior.margin_c.unwrap_or(params.asymptote_margin_c);
        let asym = pit_c.unwrap_or(target_c + margin);
        let asym = asym.max(target_c + 1.0).max(hottest + 1.0);
        let curve = (curve_bins.len() >= MIN_BINS)
            .then(|| {
                let pts: Vec<(f64, f64, f64)> = curve_bins
                    .iter()
                    .map(|(t, v)| ((t - now) as f64 / 1_000.0, (asym - v).ln(), 1.0))
                    .collect();
                line(&pts)
            })
            .flatten()
            .map(|(_, b)| -b)
            .filter(|k| *k > 1e-7)
            .map(|k| (asym, k));
        let linear_bins = window(LINEAR_WINDOW_SHARE, LINEAR_WINDOW_MIN_MS);
        let linear = (linear_bins.len() >= MIN_BINS)
            .then(|| {
                let pts: Vec<(f64, f64, f64)> = linear_bins
                    .iter()
                    .map(|(t, v)| ((t - now) as f64 / 1_000.0, *v, 1.0))
                    .collect();
                line(&pts)
            })
            .flatten()
            .map(|(_, b)| b)
            .filter(|b| *b > 1e-6);
        self.fits = Some(Fits {
            curve,
            linear,
            target_c,
        });
    }

    /// Each forecaster's time, s, from the reading to `level_c`.
    fn times(&self, i: &ForecastInputs<'_>, level_c: f64) -> [Option<f64>; 3] {
        let temp = i.reading.temp_c;
        if temp >= level_c {
            return [Some(0.0); 3];
        }
        let newton = i
            .newton
            .predict_level(&i.reading, level_c)
            .remaining_s
            .filter(|s| s.is_finite());
        let fits = self.fits.as_ref();
        let curve = fits.and_then(|f| f.curve).and_then(|(asym, k)| {
            (asym > level_c).then(|| ((asym - temp) / (asym - level_c)).ln() / k)
        });
        let linear = fits.and_then(|f| f.linear).map(|b| (level_c - temp) / b);
        [newton, curve, linear]
    }

    fn maybe_check(&mut self, i: &ForecastInputs<'_>) {
        let r = i.reading;
        if self.last_check.is_some_and(|t| r.time - t < CHECK_EVERY_MS) {
            return;
        }
        let level_c = r.temp_c + ((r.target_c - r.temp_c) * CHECK_SHARE).max(1.0);
        let predicted_s = self.times(i, level_c);
        if predicted_s.iter().all(Option::is_none) {
            return;
        }
        self.last_check = Some(r.time);
        self.checks.push(Check {
            made_at: r.time,
            level_c,
            predicted_s,
        });
        if self.checks.len() > MAX_CHECKS {
            self.checks.remove(0);
        }
    }

    fn resolve_checks(&mut self, now: i64, temp_c: f64) {
        let mut err = self.err;
        let mut scored = self.scored;
        let mut score = |c: usize, e: f64| {
            err[c] = err[c] * SKILL_MEMORY + e;
            scored[c] = scored[c] * SKILL_MEMORY + 1.0;
        };
        self.checks.retain_mut(|check| {
            let elapsed = (now - check.made_at).max(0) as f64 / 1_000.0;
            let reached = temp_c >= check.level_c;
            let expired = now - check.made_at >= CHECK_EXPIRES_MS;
            for c in 0..3 {
                let Some(p) = check.predicted_s[c] else {
                    continue;
                };
                // Reached: scored on the truth. Expired: on the time elapsed, for those
                // already late (a lower bound); the others are not known to be wrong.
                if reached || (expired && elapsed > p) {
                    score(c, log_err(elapsed, p));
                }
            }
            !reached && !expired
        });
        self.err = err;
        self.scored = scored;
    }

    fn blend(&self, i: &ForecastInputs<'_>, params: &ModelParams) -> Estimate {
        let r = i.reading;
        let times = self.times(i, r.target_c);
        let newton = i.newton.predict(&i.reading, r.target_c);
        let skill = self.skill(r.time, r.pit_c.is_some());
        let mut parts: Vec<(usize, f64, f64)> = Vec::new(); // (forecaster, ln time, weight)
        // The line only stands in when neither model has an estimate (the first minutes): it
        // does well on the short checks yet ignores that meat slows as it nears its heat.
        let models = times[0].is_some() || times[1].is_some();
        for c in 0..3 {
            if c == 2 && models {
                continue;
            }
            if let Some(s) = times[c] {
                let w = 1.0 / (skill[c] + MSE_FLOOR);
                parts.push((c, (s.max(0.0) + LOG_OFFSET_S).ln(), w.powi(WEIGHT_POWER)));
            }
        }
        let w: f64 = parts.iter().map(|p| p.2).sum();
        if parts.is_empty() || w <= 0.0 {
            return Estimate {
                remaining_s: None,
                low_s: None,
                high_s: None,
                stall: newton.stall,
                method: "none".into(),
                sigma: None,
            };
        }
        let mean = parts.iter().map(|p| p.1 * p.2).sum::<f64>() / w;
        let spread = parts
            .iter()
            .map(|p| p.2 * (p.1 - mean).powi(2))
            .sum::<f64>()
            / w;
        let scored_mse = parts.iter().map(|p| p.2 * skill[p.0]).sum::<f64>() / w;
        let cal = &params.calibration;
        let sigma = (cal.sigma_floor.powi(2) + spread + scored_mse).sqrt();
        // The spread is about the forecasters' own mean; the learnt bias moves all of it.
        let mean = mean + self.prior.bias;
        let from_log = |l: f64| (l.exp() - LOG_OFFSET_S).max(0.0);
        let main = parts
            .iter()
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map_or(0, |p| p.0);
        Estimate {
            remaining_s: Some(from_log(mean)),
            low_s: Some(from_log(mean + cal.q_low * sigma)),
            high_s: Some(from_log(mean + cal.q_high * sigma)),
            stall: newton.stall,
            method: format!("{BLEND}{}", FORECASTERS[main]),
            sigma: Some(sigma),
        }
    }
}
