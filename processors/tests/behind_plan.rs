//! `behind_plan` on simulated cooks: a pork shoulder on a sagging offset pit, started with a
//! serving time the planner says is too early, raises exactly one `behind_plan` alert (no
//! storm while the pit saw-tooths and the prediction wavers); the same cook with a generous
//! serving time raises none.
#![allow(clippy::print_stderr)]

use emberline_ingest::simulator::{CookScenario, MeatKind, PitKind};
use emberline_processors::cook::intel::{CookBrain, CookInput, CookOutput};
use emberline_processors::cook::plan::{Cut, FRIDGE_C, PlanRequest, plan};
use emberline_schemas::events::{AlertRaised, CookStarted, ProbeReading};

const START: i64 = 1_800_000_000_000;
const DEVICE: &str = "smoker-1";
const WEIGHT_KG: f64 = 4.0;
const REST_MIN: f64 = 60.0;

fn scenario(seed: u64) -> CookScenario {
    let mut s = CookScenario::new(MeatKind::PorkShoulder, PitKind::Offset, seed);
    s.weight_kg = Some(WEIGHT_KG);
    s.start_ms = START;
    s.limit_ms = 30 * 3_600_000;
    s
}

/// The planner's cook hours (fast, usual, slow) for the scenario.
fn planned_hours(s: &CookScenario) -> (f64, f64, f64) {
    plan(&PlanRequest {
        serve_at_ms: START + 48 * 3_600_000,
        cut: Cut::PorkShoulder,
        weight_kg: WEIGHT_KG,
        target_c: s.target_c,
        rest_min: REST_MIN,
        pit_c: s.pit_setpoint_c,
        start_c: FRIDGE_C,
        wrap: false,
        warmup_min: 0.0,
    })
    .expect("plan")
    .cook_hours
}

/// Runs the cook through the fold from a start with `serve_at_ms`; every behind_plan
/// transition (raised: true) and the cook's hours to target.
fn run(s: &CookScenario, serve_at_ms: i64) -> (Vec<AlertRaised>, usize, f64) {
    let mut brain = CookBrain::default();
    let mut raised = Vec::new();
    let mut cleared = 0;
    let mut collect = |outputs: Vec<CookOutput>| {
        for o in outputs {
            match o {
                CookOutput::Raised(r) if r.kind == "behind_plan" => raised.push(r),
                CookOutput::Cleared(c) if c.kind == "behind_plan" => cleared += 1,
                _ => {}
            }
        }
    };
    let start = CookStarted {
        cook_id: "cook-1".into(),
        device_id: DEVICE.into(),
        event_time: START,
        what: Some("Pork shoulder".into()),
        targets_c: [("meat-1".to_string(), s.target_c)].into(),
        pit_min_c: None,
        pit_max_c: None,
        meat: Some("pork shoulder".into()),
        weight_kg: Some(WEIGHT_KG),
        serve_at_ms: Some(serve_at_ms),
        rest_min: Some(REST_MIN),
    };
    collect(brain.apply(&CookInput::CookStarted(start)).0);
    let reading = |probe: &str, t: i64, c: f64| {
        CookInput::Reading(ProbeReading {
            device_id: DEVICE.into(),
            probe_id: probe.into(),
            event_time: t,
            received_time: t,
            temperature_c: Some(c),
            source: "sim".into(),
        })
    };
    let mut done_h = f64::NAN;
    for sample in s.samples() {
        if let Some(pit) = sample.pit_c {
            collect(brain.apply(&reading("pit", sample.event_time_ms, pit)).0);
        }
        collect(
            brain
                .apply(&reading("meat-1", sample.event_time_ms, sample.meat_c))
                .0,
        );
        if sample.meat_c > s.target_c + 1.0 {
            done_h = (sample.event_time_ms - START) as f64 / 3_600_000.0;
            break;
        }
    }
    (raised, cleared, done_h)
}

#[test]
fn a_cook_served_too_early_raises_behind_plan_once_and_a_generous_one_never() {
    for seed in 1..=4 {
        let s = scenario(seed);
        let (fast, usual, slow) = planned_hours(&s);
        let hours = |h: f64| (h * 3_600_000.0) as i64;
        let rest = hours(REST_MIN / 60.0);

        // Served when even the fast end of the plan could not be rested in time.
        let early = START + hours(fast * 0.6) + rest;
        let (raised, cleared, done_h) = run(&s, early);
        eprintln!(
            "seed {seed}: plan {fast:.1}/{usual:.1}/{slow:.1} h, done after {done_h:.1} h; \
             early serve: {} raised, {cleared} cleared: {:?}",
            raised.len(),
            raised.iter().map(|r| &r.message).collect::<Vec<_>>()
        );
        assert!(done_h.is_finite(), "seed {seed}: the cook never finished");
        assert_eq!(raised.len(), 1, "seed {seed}: {raised:?}");
        assert_eq!(cleared, 0, "seed {seed}: it never catches up");
        let alert = &raised[0];
        assert_eq!(alert.repeat, 0);
        assert_eq!(alert.cook_id.as_deref(), Some("cook-1"));
        let late = alert.value.expect("how late");
        assert!(late > 20.0, "seed {seed}: raised only {late:.0} min late");
        assert!(
            alert.message.contains(" late for ") && alert.message.contains("raise the pit"),
            "{}",
            alert.message
        );
        // The alert came while there was still time to act: before the planned pull.
        assert!(
            alert.event_time < early - rest,
            "seed {seed}: too late to help"
        );

        // Served an hour after the slow end of the plan (or the cook's own end), rest on top.
        let generous = START + hours(slow.max(done_h) + 1.0) + rest;
        let (raised, cleared, _) = run(&s, generous);
        eprintln!(
            "seed {seed}: generous serve: {} raised, {cleared} cleared",
            raised.len()
        );
        assert!(raised.is_empty(), "seed {seed}: {raised:?}");
    }
}
