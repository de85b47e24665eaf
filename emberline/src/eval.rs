//! `emberline eval-predictions`: score the cook processor's predictions on recorded and
//! simulated cooks (see `emberline_processors::cook::eval`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use emberline_ingest::simulator::variety_suite;
use emberline_processors::cook::eval::{
    CookLog, Scored, cook_key, evaluate_loco, evaluate_with, parse_cook_file, report,
};
use emberline_processors::cook::forecast::ModelParams;

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
pub(crate) fn run(files: &[PathBuf], simulated: u32, target_c: f64) -> Result<String> {
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
    Ok(out)
}

/// A simulated brisket-style cook (pit 120 °C, one food probe), until the food passes the
/// target by a degree.
pub(crate) fn simulated_cook(seed: u64, target_c: f64) -> CookLog {
    let (pit, meat) =
        emberline_ingest::simulator::classic_cook(seed, target_c, SIMULATION_LIMIT_MS);
    CookLog::simulated(format!("simulated seed {seed}"), target_c, pit, meat)
}
