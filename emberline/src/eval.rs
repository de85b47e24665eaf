//! `emberline eval-predictions`: score the cook processor's predictions on recorded and
//! simulated cooks (see `emberline_processors::cook::eval`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use emberline_ingest::{Simulator, SimulatorConfig};
use emberline_processors::cook::eval::{CookLog, Scored, evaluate, parse_cook_file, report};

/// Simulated cooks run at most this long, ms.
const SIMULATION_LIMIT_MS: i64 = 24 * 3_600_000;

/// Evaluates `files` and `simulated` simulator cooks; returns the Markdown report.
pub(crate) fn run(files: &[PathBuf], simulated: u32, target_c: f64) -> Result<String> {
    let mut recorded = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let log = parse_cook_file(&name, &text)?;
        match evaluate(&log) {
            Ok(scored) => recorded.push(scored),
            Err(e) => {
                tracing::warn!(error = %e, "cook skipped");
                skipped.push(e.to_string());
            }
        }
        tracing::info!(file = %path.display(), "evaluated");
    }
    let mut simulated_rows: Vec<Scored> = Vec::new();
    for seed in 1..=u64::from(simulated) {
        let log = simulated_cook(seed, target_c);
        simulated_rows.push(evaluate(&log)?);
        tracing::info!(seed, "simulated cook evaluated");
    }
    let mut out = report(&[("recorded", recorded), ("simulated", simulated_rows)]);
    for reason in skipped {
        out.push_str(&format!("\nSkipped: {reason}\n"));
    }
    Ok(out)
}

/// A simulated brisket-style cook (pit 120 °C, one food probe), until the food passes the
/// target by a degree.
pub(crate) fn simulated_cook(seed: u64, target_c: f64) -> CookLog {
    let config = SimulatorConfig {
        devices: 1,
        probes: 2,
        seed,
        interval_ms: 10_000,
        ..SimulatorConfig::default()
    };
    let start = 1_800_000_000_000;
    let mut sim = Simulator::new(config, start);
    let mut log = CookLog {
        name: format!("simulated seed {seed}"),
        target_c: Some(target_c),
        ..CookLog::default()
    };
    while sim.now_ms() < start + SIMULATION_LIMIT_MS {
        let mut done = false;
        for r in sim.tick(None) {
            let point = (r.event_time, r.temperature_c);
            if r.probe_id == "pit" {
                log.pit.push(point);
            } else {
                done |= r.temperature_c.is_some_and(|t| t > target_c + 1.0);
                log.meat.push(point);
            }
        }
        if done {
            break;
        }
    }
    log
}
