//! Predictions scored on simulated cooks end to end: the classic simulator the model was
//! first tuned on must stay exact, and the variety suite — other cuts, pits and physical
//! models, on which nothing was tuned — must get an estimate for every cook and a median
//! error at half way of at most 25 %.

use emberline_ingest::simulator::{classic_cook, variety_suite};
use emberline_processors::cook::eval::{CookLog, Scored, evaluate, medians};

/// A classic simulated cook (pit 120 °C, one food probe) until the food passes `target_c`.
fn classic(seed: u64, target_c: f64) -> CookLog {
    let (pit, meat) = classic_cook(seed, target_c, 24 * 3_600_000);
    CookLog::simulated(format!("simulated seed {seed}"), target_c, pit, meat)
}

#[test]
fn the_classic_simulator_stays_within_five_percent() {
    let rows: Vec<Scored> = (1..=8)
        .map(|s| evaluate(&classic(s, 93.0)).expect("scored"))
        .collect();
    let refs: Vec<&Scored> = rows.iter().collect();
    let (emberline, linear, _) = medians(&refs);
    for i in 0..3 {
        assert!(emberline[i] <= 0.05, "{emberline:?}");
        assert!(emberline[i] < linear[i], "{emberline:?} vs {linear:?}");
    }
    let covered: usize = rows
        .iter()
        .map(|r| r.covered.iter().filter(|c| **c).count())
        .sum();
    assert!(covered >= 20, "{covered}/24");
}

#[test]
fn cooks_of_other_physics_get_an_estimate_and_a_quarter_at_half_way() {
    let rows: Vec<Scored> = variety_suite()
        .iter()
        .map(|s| {
            let c = s.run();
            evaluate(&CookLog::simulated(c.name, c.target_c, c.pit, c.meat)).expect("scored")
        })
        .collect();
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert!(r.emberline.iter().all(|e| e.is_finite()), "{r:?}");
    }
    let refs: Vec<&Scored> = rows.iter().collect();
    let (emberline, _, _) = medians(&refs);
    assert!(emberline[1] <= 0.25, "{emberline:?}");
}
