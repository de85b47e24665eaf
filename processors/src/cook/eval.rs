//! Prediction evaluation: replay recorded cooks through [`CookBrain`] and score its
//! time-to-target estimates against what happened, beside plain linear extrapolation over
//! the last 10 minutes (and the thermometer's own prediction when the file carries one).
//!
//! Truth per cook: the target is the file's set point when it has one, else the highest
//! temperature the food probe held for five minutes (rolling median) less 1 °C; the cook
//! starts at the probe's first reading above 0.5 °C (ETI probes read 0.0 before they are
//! in) and is done at its first reading at the target that is not a spike (nothing in the
//! next two minutes more than 2 °C below). At 25, 50 and 75 % of
//! that span each predictor's remaining time is compared with the true remaining time; the
//! error is `|predicted - true| / true` (infinite when a predictor has no estimate).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use emberline_schemas::events::{CookStarted, DeviceRegistered, ProbeReading};

use super::forecast::{Calibration, LOG_OFFSET_S, ModelParams};
use super::intel::{CookBrain, CookInput};
use super::learn::{CookPrior, Outcome, SmokerProfile};
use super::predict::Estimate;

/// Progress points scored.
pub const PROGRESS: [f64; 3] = [0.25, 0.5, 0.75];
/// Linear extrapolation looks back this far, ms.
const LINEAR_WINDOW_MS: i64 = 600_000;
const DEVICE: &str = "eval";
const PIT: &str = "pit";
const MEAT: &str = "meat";

/// Why a cook log cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The file is in no format this reads.
    #[error("{name}: {reason}")]
    Format {
        /// File name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

fn format_error(name: &str, reason: impl Into<String>) -> EvalError {
    EvalError::Format {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// A recorded cook: a food probe, maybe a pit probe, maybe a target and a vendor prediction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CookLog {
    /// Name for the report.
    pub name: String,
    /// Food probe: (epoch ms, °C or none).
    pub meat: Vec<(i64, Option<f64>)>,
    /// Pit probe.
    pub pit: Vec<(i64, Option<f64>)>,
    /// Target, when the log says it.
    pub target_c: Option<f64>,
    /// The thermometer's own prediction: (epoch ms, seconds to target).
    pub vendor: Vec<(i64, f64)>,
}

impl CookLog {
    /// A simulated cook's log: its pit and food series and the target it was run to (no
    /// vendor prediction).
    pub fn simulated(
        name: String,
        target_c: f64,
        pit: Vec<(i64, Option<f64>)>,
        meat: Vec<(i64, Option<f64>)>,
    ) -> Self {
        Self {
            name,
            meat,
            pit,
            target_c: Some(target_c),
            vendor: Vec::new(),
        }
    }
}

/// Reads a heat-ledger CSV (`epoch_s,sensor,temp_c`, empty = no probe) or a Combustion Inc
/// CSV export, by its header.
pub fn parse_cook_file(name: &str, text: &str) -> Result<CookLog, EvalError> {
    if text.starts_with("Combustion Inc.") || text.contains("\nTimestamp,") {
        parse_combustion(name, text)
    } else if text.starts_with("epoch_s,sensor,temp_c") {
        parse_heat_ledger(name, text)
    } else {
        Err(format_error(
            name,
            "neither a heat-ledger CSV (epoch_s,sensor,temp_c) nor a Combustion Inc export",
        ))
    }
}

/// Reads a heat-ledger CSV. With two sensors the hotter one (by median) is the pit.
pub fn parse_heat_ledger(name: &str, text: &str) -> Result<CookLog, EvalError> {
    let mut sensors: BTreeMap<String, Vec<(i64, Option<f64>)>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let [epoch, sensor, temp] = cols[..] else {
            return Err(format_error(
                name,
                format!("line {}: expected 3 columns", n + 1),
            ));
        };
        let epoch: i64 = epoch
            .trim()
            .parse()
            .map_err(|_| format_error(name, format!("line {}: bad epoch {epoch:?}", n + 1)))?;
        let temp = match temp.trim() {
            "" => None,
            t => Some(t.parse::<f64>().map_err(|_| {
                format_error(name, format!("line {}: bad temperature {t:?}", n + 1))
            })?),
        };
        sensors
            .entry(sensor.trim().to_owned())
            .or_default()
            .push((epoch * 1_000, temp));
    }
    let median = |s: &[(i64, Option<f64>)]| {
        let mut v: Vec<f64> = s.iter().filter_map(|(_, t)| *t).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NEG_INFINITY)
    };
    let mut series: Vec<Vec<(i64, Option<f64>)>> = sensors.into_values().collect();
    series.sort_by(|a, b| median(a).total_cmp(&median(b)));
    let (meat, pit) = match series.len() {
        1 => (series.remove(0), Vec::new()),
        2 => {
            let pit = series.remove(1);
            (series.remove(0), pit)
        }
        n => return Err(format_error(name, format!("{n} sensors; expected 1 or 2"))),
    };
    Ok(CookLog {
        name: name.to_owned(),
        meat,
        pit,
        target_c: None,
        vendor: Vec::new(),
    })
}

/// Reads a Combustion Inc CSV export: metadata lines, a blank line, then a header starting
/// `Timestamp` (seconds since the session start). The food is `VirtualCoreTemperature`
/// (else `T1`), the pit `VirtualAmbientTemperature` (else `T8`); `PredictionSetPoint` is
/// the target and `PredictionValueSeconds` the probe's own prediction.
pub fn parse_combustion(name: &str, text: &str) -> Result<CookLog, EvalError> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .by_ref()
        .find(|(_, l)| l.starts_with("Timestamp,"))
        .ok_or_else(|| format_error(name, "no Timestamp header"))?
        .1;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |n: &str| cols.iter().position(|c| *c == n);
    let meat_col = col("VirtualCoreTemperature")
        .or_else(|| col("T1"))
        .ok_or_else(|| format_error(name, "no VirtualCoreTemperature or T1 column"))?;
    let pit_col = col("VirtualAmbientTemperature").or_else(|| col("T8"));
    let set_col = col("PredictionSetPoint");
    let pred_col = col("PredictionValueSeconds");
    let state_col = col("PredictionState");
    let mut log = CookLog {
        name: name.to_owned(),
        ..CookLog::default()
    };
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |i: Option<usize>| i.and_then(|i| f.get(i)).and_then(|v| v.parse::<f64>().ok());
        let Some(seconds) = num(Some(0)) else {
            return Err(format_error(name, format!("line {}: bad timestamp", n + 1)));
        };
        let t = (seconds * 1_000.0).round() as i64;
        log.meat.push((t, num(Some(meat_col))));
        if pit_col.is_some() {
            log.pit.push((t, num(pit_col)));
        }
        if let Some(set) = num(set_col).filter(|s| *s > 0.0) {
            log.target_c = Some(set);
        }
        let predicting = state_col
            .and_then(|i| f.get(i))
            .is_none_or(|s| s.contains("Predicting"));
        if let Some(p) = num(pred_col).filter(|p| predicting && *p >= 0.0 && *p < 131_071.0) {
            log.vendor.push((t, p));
        }
    }
    if log.meat.iter().all(|(_, t)| t.is_none()) {
        return Err(format_error(name, "no food temperatures"));
    }
    Ok(log)
}

/// What happened in a cook.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    /// Target, °C.
    pub target_c: f64,
    /// Start, epoch ms.
    pub start_ms: i64,
    /// Done, epoch ms.
    pub done_ms: i64,
}

fn rolling_median(meat: &[(i64, Option<f64>)]) -> Vec<(i64, f64)> {
    let plugged: Vec<(i64, f64)> = meat
        .iter()
        .filter_map(|(t, v)| v.map(|v| (*t, v)))
        .collect();
    let mut out = Vec::with_capacity(plugged.len());
    let mut from = 0;
    for (i, (t, _)) in plugged.iter().enumerate() {
        while plugged[from].0 <= t - 300_000 {
            from += 1;
        }
        let mut w: Vec<f64> = plugged[from..=i].iter().map(|(_, v)| *v).collect();
        w.sort_by(f64::total_cmp);
        out.push((*t, w[w.len() / 2]));
    }
    out
}

/// The truth of a cook (see the module docs); `None` when it never got going.
pub fn truth(log: &CookLog) -> Option<Truth> {
    let start_ms = log.meat.iter().find(|(_, v)| v.is_some_and(|v| v > 0.5))?.0;
    let medians: Vec<(i64, f64)> = rolling_median(&log.meat)
        .into_iter()
        .filter(|(t, _)| *t >= start_ms)
        .collect();
    let target_c = log.target_c.unwrap_or_else(|| {
        medians
            .iter()
            .map(|(_, v)| *v)
            .fold(f64::NEG_INFINITY, f64::max)
            - 1.0
    });
    // Done: the first reading at the target that is no spike — nothing in the two minutes
    // after it falls more than 2 °C below the target.
    let plugged: Vec<(i64, f64)> = log
        .meat
        .iter()
        .filter(|(t, _)| *t >= start_ms)
        .filter_map(|(t, v)| v.map(|v| (*t, v)))
        .collect();
    let done_ms = plugged
        .iter()
        .enumerate()
        .find(|(i, (t, v))| {
            *v >= target_c
                && plugged[i + 1..]
                    .iter()
                    .take_while(|(u, _)| *u <= t + 120_000)
                    .all(|(_, w)| *w >= target_c - 2.0)
        })?
        .1
        .0;
    (done_ms > start_ms).then_some(Truth {
        target_c,
        start_ms,
        done_ms,
    })
}

/// The scores of one cook.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// Cook name.
    pub name: String,
    /// Its truth.
    pub truth: Truth,
    /// Emberline's relative error at each progress point.
    pub emberline: [f64; 3],
    /// Linear extrapolation's.
    pub linear: [f64; 3],
    /// The thermometer's own, when the log has it.
    pub vendor: Option<[f64; 3]>,
    /// Whether the truth lay inside Emberline's 80 % interval, per point.
    pub covered: [bool; 3],
    /// Whether Emberline flagged a stall at some point of the cook.
    pub stall_flagged: bool,
}

/// Replays a cook through the processor's fold with the built-in parameters and scores it.
pub fn evaluate(log: &CookLog) -> Result<Scored, EvalError> {
    evaluate_with(log, &ModelParams::default())
}

/// Replays a cook through the processor's fold with `params` and scores it.
pub fn evaluate_with(log: &CookLog, params: &ModelParams) -> Result<Scored, EvalError> {
    let truth = truth_of(log)?;
    let estimates = replay(log, truth.target_c, params);
    Ok(score(log, truth, &estimates))
}

/// The truth of a cook, or why it cannot be scored.
pub(crate) fn truth_of(log: &CookLog) -> Result<Truth, EvalError> {
    truth(log)
        .ok_or_else(|| format_error(&log.name, "the food probe never rose to a steady maximum"))
}

/// Scores the estimates the fold made for a cook against its truth.
pub(crate) fn score(log: &CookLog, truth: Truth, estimates: &[(i64, Estimate)]) -> Scored {
    let stall_flagged = estimates.iter().any(|(_, e)| e.stall);
    let mut scored = Scored {
        name: log.name.clone(),
        truth,
        emberline: [f64::INFINITY; 3],
        linear: [f64::INFINITY; 3],
        vendor: (!log.vendor.is_empty()).then_some([f64::INFINITY; 3]),
        covered: [false; 3],
        stall_flagged,
    };
    for (i, p) in PROGRESS.iter().enumerate() {
        let at = truth.start_ms + ((truth.done_ms - truth.start_ms) as f64 * p) as i64;
        let remaining = (truth.done_ms - at) as f64 / 1_000.0;
        let error = |predicted: Option<f64>| {
            predicted.map_or(f64::INFINITY, |s| (s - remaining).abs() / remaining)
        };
        let latest = estimates.iter().take_while(|(t, _)| *t <= at).last();
        if let Some((_, e)) = latest {
            scored.emberline[i] = error(e.remaining_s);
            scored.covered[i] =
                e.low_s.is_some_and(|l| l <= remaining) && e.high_s.is_none_or(|h| remaining <= h);
        }
        scored.linear[i] = error(linear(&log.meat, at, truth.target_c));
        if let Some(v) = &mut scored.vendor {
            let last = log.vendor.iter().take_while(|(t, _)| *t <= at).last();
            v[i] = error(last.map(|(_, s)| *s));
        }
    }
    scored
}

/// Every estimate the fold made for the food probe, by event time.
fn replay(log: &CookLog, target_c: f64, params: &ModelParams) -> Vec<(i64, Estimate)> {
    replay_on(log, target_c, params, &OnDevice::default()).estimates
}

/// The device a replayed cook runs on: what it learnt from its earlier cooks, and what the
/// cook names.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OnDevice<'a> {
    /// The device's profile (`None`: a device with no completed cook).
    pub(crate) profile: Option<&'a SmokerProfile>,
    /// The meat the cook names.
    pub(crate) meat: Option<&'a str>,
    /// Its weight, kg.
    pub(crate) weight_kg: Option<f64>,
}

/// A replay's estimates, and what the cook taught the device when it completed.
pub(crate) struct Replayed {
    pub(crate) estimates: Vec<(i64, Estimate)>,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) prior: Option<CookPrior>,
}

/// Replays a cook on a device through the processor's fold.
pub(crate) fn replay_on(
    log: &CookLog,
    target_c: f64,
    params: &ModelParams,
    device: &OnDevice<'_>,
) -> Replayed {
    let first = log
        .meat
        .iter()
        .chain(&log.pit)
        .map(|(t, _)| *t)
        .min()
        .unwrap_or(0);
    let mut brain = CookBrain::default();
    brain.apply_with(
        &CookInput::Registered(DeviceRegistered {
            device_id: DEVICE.into(),
            event_time: first,
            tenant: "eval".into(),
            model: None,
            name: log.name.clone(),
            probe_labels: [(PIT.into(), "Pit".into()), (MEAT.into(), "Food".into())].into(),
            source: "eval".into(),
        }),
        params,
    );
    if let (Some(profile), Some(dev)) = (device.profile, brain.devices.get_mut(DEVICE)) {
        dev.profile = profile.clone();
    }
    brain.apply_with(
        &CookInput::CookStarted(CookStarted {
            cook_id: "eval".into(),
            device_id: DEVICE.into(),
            event_time: first,
            what: None,
            targets_c: [(MEAT.into(), target_c)].into(),
            pit_min_c: None,
            pit_max_c: None,
            meat: device.meat.map(str::to_owned),
            weight_kg: device.weight_kg,
            serve_at_ms: None,
            rest_min: None,
        }),
        params,
    );
    let mut readings: Vec<(i64, u8, Option<f64>)> = log
        .pit
        .iter()
        .map(|(t, v)| (*t, 0, *v))
        .chain(log.meat.iter().map(|(t, v)| (*t, 1, *v)))
        .collect();
    readings.sort_by_key(|(t, which, _)| (*t, *which));
    let mut estimates = Vec::new();
    for (t, which, temp) in readings {
        let probe = if which == 0 { PIT } else { MEAT };
        brain.apply_with(
            &CookInput::Reading(ProbeReading {
                device_id: DEVICE.into(),
                probe_id: probe.into(),
                event_time: t,
                received_time: t,
                temperature_c: temp,
                source: "eval".into(),
            }),
            params,
        );
        if which == 1
            && let Some(e) = brain
                .devices
                .get(DEVICE)
                .and_then(|d| d.probes.get(MEAT))
                .and_then(|p| p.estimate.clone())
        {
            estimates.push((t, e));
        }
    }
    let dev = brain.devices.get(DEVICE);
    Replayed {
        estimates,
        outcome: dev
            .and_then(|d| d.probes.get(MEAT))
            .and_then(|p| p.observed.outcome()),
        prior: dev
            .and_then(|d| d.cook.as_ref())
            .and_then(|c| c.prior.clone()),
    }
}

/// Linear extrapolation over the last 10 minutes of raw readings before `at`.
fn linear(meat: &[(i64, Option<f64>)], at: i64, target_c: f64) -> Option<f64> {
    let window: Vec<(f64, f64)> = meat
        .iter()
        .filter(|(t, _)| *t <= at && *t > at - LINEAR_WINDOW_MS)
        .filter_map(|(t, v)| v.map(|v| ((t - at) as f64 / 1_000.0, v)))
        .collect();
    if window.len() < 2 {
        return None;
    }
    let n = window.len() as f64;
    let mx = window.iter().map(|(x, _)| x).sum::<f64>() / n;
    let my = window.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = window.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = window.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let now = my - slope * mx;
    if now >= target_c {
        return Some(0.0);
    }
    (slope > 0.0).then(|| (target_c - now) / slope)
}

/// The cook a file belongs to: its name without the extension and without a trailing
/// `_p<digits>` — the files of one cook's several probes (`tempfit_brisket_p1.csv`,
/// `tempfit_brisket_p2.csv`) are one cook, held out together.
pub fn cook_key(name: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    match stem.rsplit_once("_p") {
        Some((cook, n))
            if !cook.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            cook.to_owned()
        }
        _ => stem.to_owned(),
    }
}

/// Progress points the calibration samples (10 % to 90 %, every 5 %).
const CALIBRATION_POINTS: usize = 17;
/// Effective-asymptote margins tried, °C.
const MARGINS_C: [f64; 6] = [10.0, 15.0, 20.0, 25.0, 35.0, 50.0];
/// Two-sided miss rate of the interval: each tail misses half of it.
const MISS: f64 = 0.2;

/// One cook's replays at each margin: (log residual `ln(true / predicted)`, sigma) per
/// calibration point with an estimate.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Per margin of [`MARGINS_C`].
    per_margin: Vec<Vec<(f64, f64, f64)>>,
}

/// Replays a cook at every margin and keeps what the calibration reads.
pub fn calibration_samples(log: &CookLog) -> Option<Samples> {
    let truth = truth(log)?;
    let per_margin = MARGINS_C
        .iter()
        .map(|m| {
            let params = ModelParams {
                asymptote_margin_c: *m,
                calibration: Calibration::default(),
            };
            let estimates = replay(log, truth.target_c, &params);
            (1..=CALIBRATION_POINTS)
                .filter_map(|j| {
                    let p = 0.05 + 0.05 * j as f64;
                    let at = truth.start_ms + ((truth.done_ms - truth.start_ms) as f64 * p) as i64;
                    let remaining = (truth.done_ms - at) as f64 / 1_000.0;
                    let (_, e) = estimates.iter().take_while(|(t, _)| *t <= at).last()?;
                    let predicted = e.remaining_s?;
                    let sigma = e.sigma.filter(|s| *s > 0.0)?;
                    let r = ((remaining + LOG_OFFSET_S) / (predicted + LOG_OFFSET_S)).ln();
                    Some((p, r, sigma))
                })
                .collect()
        })
        .collect();
    Some(Samples { per_margin })
}

fn weighted_quantile(mut v: Vec<(f64, f64)>, q: f64) -> f64 {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|x| x.1).sum();
    let mut cum = 0.0;
    for (x, w) in &v {
        cum += w;
        if cum >= q * total {
            return *x;
        }
    }
    v.last().map_or(0.0, |x| x.0)
}

/// Fits the model parameters on the given cooks (each a cook key and its files' samples):
/// the effective-asymptote margin with the least mean (over cooks) median absolute log
/// error, then, at that margin, each cook's own 10th and 90th percentiles of the normalised
/// residual (its files and points share its weight), and over cooks the split conformal
/// bounds of those (`conformal_over_cooks`): a cook unlike the others — the next user's
/// smoker — is the unit the interval must hold for, not a point of a cook already seen.
pub fn fit_params(cooks: &BTreeMap<String, Vec<&Samples>>) -> ModelParams {
    let floor = Calibration::default().sigma_floor;
    if cooks.is_empty() {
        return ModelParams::default();
    }
    let loss = |m: usize| -> f64 {
        cooks
            .values()
            .map(|files| {
                let v: Vec<f64> = files
                    .iter()
                    .flat_map(|s| s.per_margin[m].iter())
                    .filter(|(p, ..)| (0.2..=0.8).contains(p))
                    .map(|(_, r, _)| r.abs())
                    .collect();
                median(v)
            })
            .filter(|l| l.is_finite())
            .sum::<f64>()
    };
    let best = (0..MARGINS_C.len())
        .min_by(|a, b| loss(*a).total_cmp(&loss(*b)))
        .unwrap_or(0);
    let mut lows = Vec::new();
    let mut highs = Vec::new();
    for files in cooks.values() {
        let z: Vec<(f64, f64)> = files
            .iter()
            .flat_map(|s| s.per_margin[best].iter())
            .map(|(_, r, sigma)| (r / sigma.max(floor), 1.0))
            .collect();
        if !z.is_empty() {
            lows.push(weighted_quantile(z.clone(), MISS / 2.0));
            highs.push(weighted_quantile(z, 1.0 - MISS / 2.0));
        }
    }
    let default = Calibration::default();
    let (q_low, q_high) =
        conformal_over_cooks(lows, highs).unwrap_or((default.q_low, default.q_high));
    ModelParams {
        asymptote_margin_c: MARGINS_C[best],
        calibration: Calibration {
            sigma_floor: floor,
            q_low,
            q_high,
        },
    }
}

/// Split conformal over cooks, the exchangeable units, from each cook's own low and high
/// percentile: the bounds the next cook's own percentiles stay within with probability
/// `1 - MISS / 2` each — the ceil((n + 1)(1 - MISS / 2))-th of n, with the finite-sample
/// correction that makes it the extreme while there are fewer than nine cooks.
fn conformal_over_cooks(mut lows: Vec<f64>, mut highs: Vec<f64>) -> Option<(f64, f64)> {
    if lows.is_empty() || lows.len() != highs.len() {
        return None;
    }
    lows.sort_by(f64::total_cmp);
    highs.sort_by(|a, b| b.total_cmp(a));
    let n = highs.len() as f64;
    let rank = ((n + 1.0) * (1.0 - MISS / 2.0)).ceil() as usize;
    let from_end = highs.len().saturating_sub(rank);
    Some((lows[from_end], highs[from_end]))
}

/// Leave-one-cook-out: for every cook key among `names`, the indices of the files it is
/// fitted on — every file of another cook, none of its own.
pub fn loco_folds(names: &[&str]) -> BTreeMap<String, Vec<usize>> {
    let keys: Vec<String> = names.iter().map(|n| cook_key(n)).collect();
    keys.iter()
        .map(|k| {
            let train = (0..names.len()).filter(|&i| keys[i] != *k).collect();
            (k.clone(), train)
        })
        .collect()
}

/// The recorded cooks scored leave-one-cook-out (each with parameters fitted on the other
/// cooks only), and the parameters fitted on all of them (for cooks outside the set, such
/// as simulated ones, and the built-in defaults).
pub fn evaluate_loco(logs: &[CookLog]) -> (Vec<Result<Scored, EvalError>>, ModelParams) {
    let names: Vec<&str> = logs.iter().map(|l| l.name.as_str()).collect();
    let samples: Vec<Option<Samples>> = logs.iter().map(calibration_samples).collect();
    let pool = |train: &[usize]| -> BTreeMap<String, Vec<&Samples>> {
        let mut cooks: BTreeMap<String, Vec<&Samples>> = BTreeMap::new();
        for &i in train {
            if let Some(s) = &samples[i] {
                cooks.entry(cook_key(names[i])).or_default().push(s);
            }
        }
        cooks
    };
    let folds = loco_folds(&names);
    let fitted: BTreeMap<&String, ModelParams> = folds
        .iter()
        .map(|(k, train)| (k, fit_params(&pool(train))))
        .collect();
    let scored = logs
        .iter()
        .map(|log| {
            let key = cook_key(&log.name);
            let params = fitted.get(&key).cloned().unwrap_or_default();
            evaluate_with(log, &params)
        })
        .collect();
    let all: Vec<usize> = (0..logs.len()).collect();
    (scored, fit_params(&pool(&all)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(super) fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.0} %", v * 100.0)
    } else if v.is_nan() {
        "–".to_owned()
    } else {
        "no estimate".to_owned()
    }
}

/// The median error of a set of cooks at each progress point, per predictor:
/// (Emberline, linear, vendor).
pub fn medians(rows: &[&Scored]) -> ([f64; 3], [f64; 3], Option<[f64; 3]>) {
    let col = |f: &dyn Fn(&Scored) -> f64| median(rows.iter().map(|r| f(r)).collect());
    let e = [0, 1, 2].map(|i| col(&|r| r.emberline[i]));
    let l = [0, 1, 2].map(|i| col(&|r| r.linear[i]));
    let vendor_rows: Vec<&Scored> = rows
        .iter()
        .copied()
        .filter(|r| r.vendor.is_some())
        .collect();
    let v = (!vendor_rows.is_empty()).then(|| {
        [0, 1, 2].map(|i| {
            median(
                vendor_rows
                    .iter()
                    .filter_map(|r| r.vendor.map(|v| v[i]))
                    .collect(),
            )
        })
    });
    (e, l, v)
}

/// The report: one row per cook, then the medians per group, as a Markdown table.
pub fn report(groups: &[(&str, Vec<Scored>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| cook | target | span | stall | Emberline 25/50/75 % | linear (last 10 min) 25/50/75 % | thermometer 25/50/75 % | truth in 80 % interval |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let three = |v: [f64; 3]| format!("{} / {} / {}", pct(v[0]), pct(v[1]), pct(v[2]));
    for (group, rows) in groups {
        for r in rows {
            let span_h = (r.truth.done_ms - r.truth.start_ms) as f64 / 3_600_000.0;
            let covered = r.covered.iter().filter(|c| **c).count();
            let _ = writeln!(
                out,
                "| {} | {:.1} °C | {span_h:.2} h | {} | {} | {} | {} | {covered}/3 |",
                r.name,
                r.truth.target_c,
                if r.stall_flagged { "flagged" } else { "–" },
                three(r.emberline),
                three(r.linear),
                r.vendor.map_or_else(|| "–".to_owned(), three),
            );
        }
        let refs: Vec<&Scored> = rows.iter().collect();
        if refs.is_empty() {
            continue;
        }
        let (e, l, v) = medians(&refs);
        let covered: usize = rows
            .iter()
            .map(|r| r.covered.iter().filter(|c| **c).count())
            .sum();
        let _ = writeln!(
            out,
            "| **median, {group} ({} cooks)** | | | | **{}** | **{}** | {} | {covered}/{} |",
            rows.len(),
            three(e),
            three(l),
            v.map_or_else(|| "–".to_owned(), three),
            rows.len() * 3,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_ledger_files_split_pit_from_food_by_their_medians() {
        let text =
            "epoch_s,sensor,temp_c\n100,1,150.0\n100,2,\n110,1,151.0\n110,2,20.5\n120,2,21.0\n";
        let log = parse_cook_file("x", text).expect("parses");
        assert_eq!(log.pit, [(100_000, Some(150.0)), (110_000, Some(151.0))]);
        assert_eq!(
            log.meat,
            [
                (100_000, None),
                (110_000, Some(20.5)),
                (120_000, Some(21.0))
            ]
        );
        assert!(parse_cook_file("y", "epoch_s,sensor,temp_c\n1,2,abc\n").is_err());
        assert!(parse_cook_file("z", "time,temp\n").is_err());
    }

    #[test]
    fn combustion_exports_give_food_pit_target_and_the_probe_prediction() {
        let text = "Combustion Inc. Probe Data\nCSV version: 4\nSample Period: 5000\n\n\
Timestamp,SessionID,SequenceNumber,T1,T2,T3,T4,T5,T6,T7,T8,VirtualCoreTemperature,VirtualSurfaceTemperature,VirtualAmbientTemperature,EstimatedCoreTemperature,PredictionSetPoint,VirtualCoreSensor,VirtualSurfaceSensor,VirtualAmbientSensor,PredictionState,PredictionMode,PredictionType,PredictionValueSeconds\n\
0.000,1,0,19,19,19,19,20,20,20,20,19.5,20,105,19,63,T1,T4,T7,Probe Inserted,TimeToRemoval,None,131071\n\
5.000,1,1,20,20,20,20,21,21,21,21,20.0,21,106,20,63,T1,T4,T7,Predicting,TimeToRemoval,None,3600\n";
        let log = parse_cook_file("c", text).expect("parses");
        assert_eq!(log.meat, [(0, Some(19.5)), (5_000, Some(20.0))]);
        assert_eq!(log.pit, [(0, Some(105.0)), (5_000, Some(106.0))]);
        assert_eq!(log.target_c, Some(63.0));
        assert_eq!(log.vendor, [(5_000, 3600.0)]);
    }

    /// Newton heating from 5 °C toward `asym` at rate constant `k` (1/s), a reading every
    /// `every_s`, until `until_s`.
    fn newton_series(asym: f64, k: f64, every_s: usize, until_s: usize) -> Vec<(i64, Option<f64>)> {
        (0..until_s)
            .step_by(every_s)
            .map(|s| {
                let t = 1_700_000_000_000 + s as i64 * 1_000;
                (t, Some(asym - (asym - 5.0) * (-(k * s as f64)).exp()))
            })
            .collect()
    }

    #[test]
    fn the_interval_covers_a_new_cook_like_the_worst_of_few_and_narrows_with_more() {
        // Five cooks: the next one is covered only by the most extreme of their percentiles.
        let lows = vec![-1.0, -3.0, -2.0, -0.5, -1.5];
        let highs = vec![1.0, 2.0, 4.0, 0.5, 1.5];
        assert_eq!(conformal_over_cooks(lows, highs), Some((-3.0, 4.0)));
        // Nineteen: the 18th of 19, no longer the extreme.
        let highs: Vec<f64> = (1..=19).map(f64::from).collect();
        let lows: Vec<f64> = highs.iter().map(|h| -h).collect();
        assert_eq!(conformal_over_cooks(lows, highs), Some((-18.0, 18.0)));
        assert_eq!(conformal_over_cooks(Vec::new(), Vec::new()), None);
    }

    #[test]
    fn cook_keys_group_the_probes_of_one_cook_and_nothing_else() {
        assert_eq!(cook_key("tempfit_brisket_p1.csv"), "tempfit_brisket");
        assert_eq!(cook_key("tempfit_brisket_p12.csv"), "tempfit_brisket");
        assert_eq!(cook_key("tempfit_pork.csv"), "tempfit_pork");
        assert_eq!(cook_key("bbq-pork-rubs.csv"), "bbq-pork-rubs");
        assert_eq!(cook_key("pulled_pork.csv"), "pulled_pork");
        assert_eq!(cook_key("a_p.csv"), "a_p");
    }

    #[test]
    fn leave_one_cook_out_never_fits_on_the_scored_cook() {
        let names = ["b_p1.csv", "b_p2.csv", "c.csv", "d_p1.csv", "b_p3.csv"];
        let folds = loco_folds(&names);
        assert_eq!(folds.len(), 3);
        for (key, train) in &folds {
            for (i, name) in names.iter().enumerate() {
                // A file is in the fold's training set exactly when it is of another cook.
                assert_eq!(train.contains(&i), cook_key(name) != *key, "{key}: {name}");
            }
        }
        assert_eq!(folds["b"], [2, 3]);

        // And the scores follow the folds: a cook unlike the others changes the parameters
        // fitted on all, but not those its own score used, which equal a fit without it.
        let cook = |name: &str, asym: f64, k: f64| CookLog {
            name: name.into(),
            meat: newton_series(asym, k, 30, 30_000),
            ..CookLog::default()
        };
        let logs = vec![
            cook("x.csv", 120.0, 1.0 / 4_000.0),
            cook("y.csv", 110.0, 1.0 / 5_000.0),
            cook("z.csv", 200.0, 1.0 / 9_000.0),
        ];
        let (scored, _) = evaluate_loco(&logs);
        let without_z = evaluate_loco(&logs[..2]).1;
        let direct = evaluate_with(&logs[2], &without_z).expect("scored");
        assert_eq!(scored[2].as_ref().expect("scored"), &direct);
    }

    #[test]
    fn a_cook_without_a_pit_probe_has_an_estimate_after_fifteen_minutes_of_heating() {
        let log = CookLog {
            name: "no pit".into(),
            meat: newton_series(110.0, 1.0 / 6_000.0, 20, 20_000),
            target_c: Some(85.0),
            ..CookLog::default()
        };
        let start = log.meat[0].0;
        let estimates = replay(&log, 85.0, &ModelParams::default());
        let after = estimates
            .iter()
            .filter(|(t, _)| *t >= start + 15 * 60_000 && *t < start + 3 * 3_600_000);
        for (t, e) in after {
            assert!(
                e.remaining_s.is_some(),
                "none at {} min",
                (t - start) / 60_000
            );
            assert!(
                e.low_s <= e.remaining_s && e.remaining_s <= e.high_s,
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_probe_pulled_and_pushed_back_keeps_its_cook_and_its_estimate() {
        // A pit at 120 °C; the meat heats; an hour in, the probe is out of the food for ten
        // minutes (reading 20 °C, the air) and then back in.
        let k = 1.0 / 5_000.0;
        let mut log = CookLog {
            name: "pulled".into(),
            target_c: Some(80.0),
            ..CookLog::default()
        };
        let start = 1_700_000_000_000;
        let out = 3_600..4_200;
        for s in (0..9_000).step_by(10) {
            let t = start + s * 1_000;
            let meat = 120.0 - 115.0 * (-(k * s as f64)).exp();
            log.pit.push((t, Some(120.0)));
            log.meat
                .push((t, Some(if out.contains(&s) { 20.0 } else { meat })));
        }
        let estimates = replay(&log, 80.0, &ModelParams::default());
        let at = |s: i64| {
            estimates
                .iter()
                .take_while(|(t, _)| *t <= start + s * 1_000)
                .last()
                .map(|(_, e)| e.clone())
                .expect("an estimate")
        };
        let truth_at = |s: i64| ((120.0f64 - 5.0) / (120.0 - 80.0)).ln() / k - s as f64;
        // Out of the food and just back: the estimate carries on, and after it the fit is
        // the one from before, not a new cook's.
        for s in [3_700, 4_100, 4_500, 5_000] {
            let e = at(s).remaining_s.expect("an estimate");
            let truth = truth_at(s);
            assert!((e - truth).abs() < 0.15 * truth, "{s}: {e} vs {truth}");
        }
        let brain_like_new = estimates
            .iter()
            .filter(|(t, _)| *t > start + 4_200_000)
            .any(|(_, e)| e.remaining_s.is_none());
        assert!(!brain_like_new);
    }

    #[test]
    fn exact_newton_cooks_score_near_zero_and_linear_does_not() {
        // 5 → 75 °C toward a 120 °C pit, k = 1/4000 s, a reading every 10 s.
        let k = 1.0 / 4_000.0;
        let mut log = CookLog {
            name: "newton".into(),
            target_c: Some(75.0),
            ..CookLog::default()
        };
        for s in (0..10_000).step_by(10) {
            let t = s as i64 * 1_000;
            log.pit.push((t, Some(120.0)));
            log.meat
                .push((t, Some(120.0 - 115.0 * (-(k * s as f64)).exp())));
        }
        let scored = evaluate(&log).expect("scored");
        for i in 0..3 {
            assert!(scored.emberline[i] < 0.05, "{:?}", scored.emberline);
            assert!(scored.linear[i] > scored.emberline[i], "{scored:?}");
        }
        assert!(!scored.stall_flagged);
    }
}
