//! `emberline eval-predictions`: score the cook processor's predictions on recorded and
//! simulated cooks (see `emberline_processors::cook::eval`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use std::collections::BTreeMap;

use emberline_ingest::simulator::{MeatKind, smoker_cooks, variety_suite};
use emberline_processors::cook::eval::{
    CookLog, Scored, cook_key, evaluate_loco, evaluate_with, parse_cook_file, report,
};
use emberline_processors::cook::forecast::ModelParams;
use emberline_processors::cook::learning::{
    CookResult, DeviceCook, evaluate_device, learning_report,
};

/// Simulated cooks run at most this long, ms.
const SIMULATION_LIMIT_MS: i64 = 24 * 3_600_000;

/// Evaluates `files` and `simulated` simulator cooks; returns the Markdown report.
///
/// The recorded cooks are scored leave-one-cook-out: each with model parameters (the
/// effective-asymptote margin and the interval calibration) fitted on the other cooks only.
/// The files of one cook's probes are one cook: a file's cook is its name without the
/// extension and a trailing `_p<N>` ([`cook_key`]). Simulated cooks are scored with the
/// parameters fitted on all the recorded cooks (the built-in ones when there are none): the
/// classic simulator's cooks, and the variety suite's twelve cooks of other cuts, pits and heat
/// models, on which nothing was tuned.
///
/// With `learning`, the learning evaluation follows ([`learning_section`]).
pub(crate) fn run(
    files: &[PathBuf],
    simulated: u32,
    target_c: f64,
    learning: bool,
) -> Result<String> {
    let mut logs = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        logs.push(parse_cook_file(&name, &text)?);
        tracing::info!(file = %path.display(), "read");
    }
    let (results, fitted_on_all) = evaluate_loco(&logs);
    let mut recorded = Vec::new();
    for result in results {
        match result {
            Ok(scored) => recorded.push(scored),
            Err(e) => {
                tracing::warn!(error = %e, "cook skipped");
                skipped.push(e.to_string());
            }
        }
    }
    let sim_params = if logs.is_empty() {
        ModelParams::default()
    } else {
        fitted_on_all.clone()
    };
    let mut simulated_rows: Vec<Scored> = Vec::new();
    for seed in 1..=u64::from(simulated) {
        let log = simulated_cook(seed, target_c);
        simulated_rows.push(evaluate_with(&log, &sim_params)?);
        tracing::info!(seed, "simulated cook evaluated");
    }
    // Cooks from other physics (other cuts, pits and heat models, wraps, gaps, pulled probes,
    // no pit probe): the model was not tuned on them, so they say how it generalises.
    let mut variety_rows: Vec<Scored> = Vec::new();
    for scenario in variety_suite() {
        let cook = scenario.run();
        let log = CookLog::simulated(cook.name, cook.target_c, cook.pit, cook.meat);
        match evaluate_with(&log, &sim_params) {
            Ok(scored) => variety_rows.push(scored),
            Err(e) => {
                tracing::warn!(error = %e, "simulated cook skipped");
                skipped.push(e.to_string());
            }
        }
    }
    let cooks: std::collections::BTreeSet<String> =
        logs.iter().map(|l| cook_key(&l.name)).collect();
    let mut out = report(&[
        ("recorded", recorded),
        ("simulated", simulated_rows),
        ("simulated, other physics", variety_rows),
    ]);
    if !logs.is_empty() {
        let c = &fitted_on_all.calibration;
        out.push_str(&format!(
            "\nRecorded cooks are scored leave-one-cook-out: each with parameters fitted on the \
             other cooks only ({} files, {} cooks: a file's cook is its name less a trailing \
             `_pN`). Fitted on all of them: effective-asymptote margin {:.0} °C, interval \
             quantiles {:.2} / {:.2} sigma.\n",
            logs.len(),
            cooks.len(),
            fitted_on_all.asymptote_margin_c,
            c.q_low,
            c.q_high,
        ));
    }
    for reason in skipped {
        out.push_str(&format!("\nSkipped: {reason}\n"));
    }
    if learning {
        out.push_str(&learning_section(&logs, &sim_params));
    }
    Ok(out)
}

/// Simulated smokers of the learning evaluation: seeds, each its own smoker.
const LEARNING_SMOKERS: std::ops::RangeInclusive<u64> = 1..=8;
/// Cooks per simulated smoker.
const LEARNING_COOKS: u32 = 6;

/// The learning evaluation (see `emberline_processors::cook::learning`) over two worlds:
///
/// * simulated smokers, each with its own hidden parameters ([`smoker_cooks`]), six cooks
///   each; the smokers cycle through pork shoulder, brisket, chicken and roast, and each cook
///   names its meat and weight as a user would;
/// * recorded devices: files named `<device>_<cook>[_pN].csv` (the TempFit cooks:
///   `tempfit_brisket_p1.csv`…) grouped by device, each device's cooks in the order of their
///   first reading, the meat named by the cook's name. A device with a single cook teaches
///   nothing and is left out.
fn learning_section(logs: &[CookLog], params: &ModelParams) -> String {
    let meats = [
        MeatKind::PorkShoulder,
        MeatKind::Brisket,
        MeatKind::Chicken,
        MeatKind::Roast,
    ];
    let simulated: Vec<Vec<CookResult>> = LEARNING_SMOKERS
        .zip(meats.iter().cycle())
        .map(|(seed, meat)| {
            let device = format!("smoker-{seed}");
            let cooks: Vec<DeviceCook> = smoker_cooks(seed, &device, *meat, LEARNING_COOKS)
                .iter()
                .map(|scenario| {
                    let cook = scenario.run();
                    DeviceCook::simulated(
                        cook.name,
                        scenario.meat.name(),
                        cook.weight_kg,
                        cook.target_c,
                        cook.pit,
                        cook.meat,
                    )
                })
                .collect();
            let (results, skipped) = evaluate_device(&cooks, params);
            for e in skipped {
                tracing::warn!(error = %e, "simulated cook skipped");
            }
            results
        })
        .collect();
    let recorded: Vec<Vec<CookResult>> = recorded_devices(logs)
        .into_iter()
        .map(|(device, cooks)| {
            tracing::info!(device, cooks = cooks.len(), "recorded device");
            let (results, skipped) = evaluate_device(&cooks, params);
            for e in skipped {
                tracing::warn!(error = %e, "recorded cook skipped");
            }
            results
        })
        .collect();
    let mut groups = vec![("simulated smokers", simulated)];
    if !recorded.is_empty() {
        groups.push(("recorded", recorded));
    }
    format!(
        "\n## Learning from a device's own cooks\n\n{}",
        learning_report(&groups)
    )
}

/// Recorded files grouped into devices by the part of their cook key before the first `_`,
/// each device's cooks in the order of their first reading; devices with one cook are left
/// out.
fn recorded_devices(logs: &[CookLog]) -> Vec<(String, Vec<DeviceCook>)> {
    let mut devices: BTreeMap<String, BTreeMap<String, Vec<CookLog>>> = BTreeMap::new();
    for log in logs {
        let key = cook_key(&log.name);
        if let Some((device, cook)) = key.split_once('_') {
            devices
                .entry(device.to_owned())
                .or_default()
                .entry(cook.to_owned())
                .or_default()
                .push(log.clone());
        }
    }
    devices
        .into_iter()
        .filter(|(_, cooks)| cooks.len() > 1)
        .map(|(device, cooks)| {
            let first = |probes: &[CookLog]| {
                probes
                    .iter()
                    .flat_map(|l| l.meat.iter().map(|(t, _)| *t))
                    .min()
                    .unwrap_or(i64::MAX)
            };
            let mut cooks: Vec<DeviceCook> = cooks
                .into_iter()
                .map(|(cook, probes)| DeviceCook {
                    name: format!("{device} {cook}"),
                    meat: Some(cook),
                    weight_kg: None,
                    probes,
                })
                .collect();
            cooks.sort_by_key(|c| first(&c.probes));
            (device, cooks)
        })
        .collect()
}

/// A simulated brisket-style cook (pit 120 °C, one food probe), until the food passes the
/// target by a degree.
pub(crate) fn simulated_cook(seed: u64, target_c: f64) -> CookLog {
    let (pit, meat) =
        emberline_ingest::simulator::classic_cook(seed, target_c, SIMULATION_LIMIT_MS);
    CookLog::simulated(format!("simulated seed {seed}"), target_c, pit, meat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str, first_ms: i64) -> CookLog {
        CookLog {
            name: name.to_owned(),
            meat: vec![(first_ms, Some(5.0)), (first_ms + 60_000, Some(6.0))],
            ..CookLog::default()
        }
    }

    #[test]
    fn recorded_files_group_into_devices_with_their_cooks_in_time_order() {
        let logs = [
            log("tempfit_pork.csv", 3_000),
            log("tempfit_brisket_p2.csv", 1_500),
            log("tempfit_turkey_p1.csv", 2_000),
            log("tempfit_brisket_p1.csv", 1_000),
            log("other_ribs.csv", 500),
            log("roast-chicken.csv", 100),
        ];
        let devices = recorded_devices(&logs);
        // `other` has one cook and `roast-chicken` names no device: both left out.
        assert_eq!(devices.len(), 1);
        let (device, cooks) = &devices[0];
        assert_eq!(device, "tempfit");
        let names: Vec<&str> = cooks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["tempfit brisket", "tempfit turkey", "tempfit pork"],
            "by each cook's first reading"
        );
        assert_eq!(
            cooks[0].probes.len(),
            2,
            "the brisket's two probes are one cook"
        );
        assert_eq!(cooks[2].meat.as_deref(), Some("pork"));
    }
}
