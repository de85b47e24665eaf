//! The learning evaluation: does a device's prediction get better as it learns from the
//! user's own cooks?
//!
//! A device's cooks are replayed in time order through the processor's fold. Each cook is
//! predicted twice: starting from the profile learnt from the device's *earlier* cooks only
//! ([`super::learn`]) — the cook itself and later ones are never seen — and from nothing
//! (the same replay with an empty profile: "no learning"). Then what the cook taught goes
//! into the profile for the next one. A cook's several probes are predicted from the same
//! profile and teach it together, as one cook. Scores are those of [`super::eval`]: the
//! relative error of the remaining time at 25, 50 and 75 % of the cook.
//!
//! The model parameters (asymptote margin, interval calibration) are the caller's: the
//! evaluation measures what the per-device profile adds to them.

use std::fmt::Write as _;

use super::eval::{CookLog, EvalError, OnDevice, pct, replay_on, score, truth_of};
use super::forecast::ModelParams;
use super::learn::SmokerProfile;

/// One cook of a device: its probes' logs and what the cook names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceCook {
    /// Name for the report.
    pub name: String,
    /// One log per food probe (each may carry the pit probe too).
    pub probes: Vec<CookLog>,
    /// The meat the cook names.
    pub meat: Option<String>,
    /// Its weight, kg, when the cook names it.
    pub weight_kg: Option<f64>,
}

impl DeviceCook {
    /// A simulated cook of one food probe that names its meat and weight.
    pub fn simulated(
        name: String,
        meat: &str,
        weight_kg: Option<f64>,
        target_c: f64,
        pit: Vec<(i64, Option<f64>)>,
        food: Vec<(i64, Option<f64>)>,
    ) -> Self {
        Self {
            probes: vec![CookLog::simulated(name.clone(), target_c, pit, food)],
            name,
            meat: Some(meat.to_owned()),
            weight_kg,
        }
    }
}

/// How one cook of a device was predicted.
#[derive(Clone, Debug, PartialEq)]
pub struct CookResult {
    /// The cook's name.
    pub name: String,
    /// Median over its probes of the relative error at 25/50/75 %, learning.
    pub learnt: [f64; 3],
    /// The same without learning.
    pub plain: [f64; 3],
    /// What the prediction said it was based on ("based on your last 2 briskets").
    pub based_on: Option<String>,
}

/// Replays a device's cooks (in time order) with and without learning; a cook that cannot
/// be scored (its probe never reached a steady maximum) is left out and teaches nothing.
pub fn evaluate_device(
    cooks: &[DeviceCook],
    params: &ModelParams,
) -> (Vec<CookResult>, Vec<EvalError>) {
    let mut profile = SmokerProfile::default();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for cook in cooks {
        let on_device = OnDevice {
            profile: Some(&profile),
            meat: cook.meat.as_deref(),
            weight_kg: cook.weight_kg,
        };
        let fresh = OnDevice {
            profile: None,
            ..on_device
        };
        let mut learnt = Vec::new();
        let mut plain = Vec::new();
        let mut outcomes = Vec::new();
        let mut based_on = None;
        for log in &cook.probes {
            let truth = match truth_of(log) {
                Ok(t) => t,
                Err(e) => {
                    skipped.push(e);
                    continue;
                }
            };
            let with = replay_on(log, truth.target_c, params, &on_device);
            let without = replay_on(log, truth.target_c, params, &fresh);
            learnt.push(score(log, truth, &with.estimates).emberline);
            plain.push(score(log, truth, &without.estimates).emberline);
            outcomes.extend(with.outcome);
            based_on = with.prior.and_then(|p| p.based_on());
        }
        if learnt.is_empty() {
            continue;
        }
        results.push(CookResult {
            name: cook.name.clone(),
            learnt: per_point_median(&learnt),
            plain: per_point_median(&plain),
            based_on,
        });
        profile.learn(cook.meat.as_deref(), cook.weight_kg, &outcomes);
    }
    (results, skipped)
}

fn per_point_median(rows: &[[f64; 3]]) -> [f64; 3] {
    [0, 1, 2].map(|i| median(rows.iter().map(|r| r[i]).collect()))
}

/// The median (of finite and infinite errors alike); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Over several devices, the median error at 50 % of each device's `index`-th cook
/// (from 0): (learning, no learning, devices).
pub fn by_cook_index(devices: &[Vec<CookResult>], index: usize) -> (f64, f64, usize) {
    let rows: Vec<&CookResult> = devices.iter().filter_map(|d| d.get(index)).collect();
    (
        median(rows.iter().map(|r| r.learnt[1]).collect()),
        median(rows.iter().map(|r| r.plain[1]).collect()),
        rows.len(),
    )
}

/// Over several devices, the median error at 50 % of every cook from the `from`-th on:
/// (learning, no learning, cooks).
pub fn later_cooks(devices: &[Vec<CookResult>], from: usize) -> (f64, f64, usize) {
    let rows: Vec<&CookResult> = devices.iter().flat_map(|d| d.iter().skip(from)).collect();
    (
        median(rows.iter().map(|r| r.learnt[1]).collect()),
        median(rows.iter().map(|r| r.plain[1]).collect()),
        rows.len(),
    )
}

/// The learning report: per group of devices, the median error at 50 % by cook index,
/// learning beside no learning; then each device's cooks.
pub fn learning_report(groups: &[(&str, Vec<Vec<CookResult>>)]) -> String {
    let mut out = String::new();
    let longest = groups
        .iter()
        .flat_map(|(_, d)| d.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    let _ = write!(out, "| cook on the device |");
    for (name, devices) in groups {
        let _ = write!(
            out,
            " {name} ({} devices): learnt | no learning |",
            devices.len()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|{}", "---|---|".repeat(groups.len()));
    for index in 0..longest {
        let _ = write!(out, "| {} |", index + 1);
        for (_, devices) in groups {
            let (l, p, n) = by_cook_index(devices, index);
            if n == 0 {
                let _ = write!(out, " | |");
            } else {
                let _ = write!(out, " {} | {} |", pct(l), pct(p));
            }
        }
        let _ = writeln!(out);
    }
    let _ = write!(out, "| **3rd on** |");
    for (_, devices) in groups {
        let (l, p, n) = later_cooks(devices, 2);
        if n == 0 {
            let _ = write!(out, " | |");
        } else {
            let _ = write!(out, " **{}** | {} |", pct(l), pct(p));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "\nMedian relative error of the remaining time at 50 % of the cook (over the group's \
         devices; a cook with several probes counts as the median of its probes).\n"
    );
    let _ = writeln!(
        out,
        "| device cook | learnt 25/50/75 % | no learning 25/50/75 % | started from |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    let three = |v: [f64; 3]| format!("{} / {} / {}", pct(v[0]), pct(v[1]), pct(v[2]));
    for (_, devices) in groups {
        for cook in devices.iter().flatten() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cook.name,
                three(cook.learnt),
                three(cook.plain),
                cook.based_on.as_deref().unwrap_or("nothing learnt yet"),
            );
        }
    }
    out
}
