//! The cook planner against cooks simulated by another model than its own: plan, then run
//! the simulated cook from the planned start, and the meat should reach its target within
//! the plan's range.
#![allow(clippy::print_stderr)]

use emberline_ingest::simulator::{CookScenario, MeatKind, PitKind};
use emberline_processors::cook::plan::{Cut, FRIDGE_C, PlanRequest, plan};

const SERVE: i64 = 1_800_000_000_000 + 30 * 3_600_000;

fn cut_of(meat: MeatKind) -> Cut {
    Cut::from_words(meat.name())
}

/// First time the meat probe reads the target, ms.
fn done_ms(scenario: &CookScenario) -> Option<i64> {
    scenario
        .samples()
        .find(|s| s.meat_c >= scenario.target_c)
        .map(|s| s.event_time_ms)
}

#[test]
fn simulated_cooks_started_as_planned_are_done_within_the_plans_range() {
    let mut inside = 0;
    let mut total = 0;
    for meat in MeatKind::CUTS {
        for seed in 1..=6 {
            let mut scenario = CookScenario::new(meat, PitKind::Pellet, seed);
            let cut = cut_of(meat);
            let weight = [0.6, 0.8, 1.0, 1.2, 1.4, 1.6][seed as usize - 1]
                * match cut {
                    Cut::Brisket => 5.5,
                    Cut::PorkShoulder => 4.0,
                    Cut::Chicken => 1.7,
                    _ => 1.6,
                };
            scenario.weight_kg = Some(weight);
            let request = PlanRequest {
                serve_at_ms: SERVE,
                cut,
                weight_kg: weight,
                target_c: scenario.target_c,
                rest_min: cut.usual_rest_min(),
                pit_c: scenario.pit_setpoint_c,
                start_c: FRIDGE_C,
                wrap: false,
                warmup_min: 30.0,
            };
            let p = plan(&request).expect("plan");
            scenario.start_ms = p.put_on_at_ms;
            scenario.limit_ms = 40 * 3_600_000;
            let done = done_ms(&scenario).expect("the simulated cook finishes");
            let ok = (p.pull_at.earliest_ms..=p.pull_at.latest_ms).contains(&done);
            let h = |t: i64| (t - p.put_on_at_ms) as f64 / 3_600_000.0;
            eprintln!(
                "{} {weight:.1} kg pit {}: done after {:.1} h, plan {:.1}/{:.1}/{:.1} h {}",
                scenario.name,
                scenario.pit_setpoint_c,
                h(done),
                p.cook_hours.0,
                p.cook_hours.1,
                p.cook_hours.2,
                if ok { "inside" } else { "OUTSIDE" }
            );
            inside += usize::from(ok);
            total += 1;
        }
    }
    eprintln!("{inside} of {total} inside the plan's range");
    assert!(
        inside * 10 >= total * 8,
        "{inside} of {total} inside the plan's range"
    );
}
