//! The wall clock jumping forward (a grill's small computer setting its clock from the
//! network, an hour of daylight saving done by hand) is not silence: a device heard just
//! before the jump is not called offline, nor its probe disconnected, by the first tick
//! after it. Time that really passes after the jump still counts, so a device that then
//! goes quiet is called offline on time.

use emberline_processors::cook::intel::{CookBrain, CookInput, CookOutput};
use emberline_schemas::events::{AlertRuleSet, ClockTick, ProbeReading};

const T0: i64 = 1_800_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const TICK_MS: i64 = 15_000;
const OFFLINE_S: f64 = 120.0;
const DISCONNECTED_S: f64 = 600.0;

fn rule(id: &str, kind: &str, probe: Option<&str>, threshold_s: f64) -> CookInput {
    CookInput::RuleSet(AlertRuleSet {
        rule_id: id.into(),
        device_id: "grill".into(),
        event_time: T0,
        probe_id: probe.map(Into::into),
        cook_id: None,
        kind: kind.into(),
        threshold: Some(threshold_s),
        low: None,
        high: None,
        for_s: 0.0,
        hysteresis: 0.0,
        repeat_every_s: None,
        enabled: true,
        label: None,
    })
}

fn tick(at: i64, wall_jump_ms: Option<i64>) -> CookInput {
    CookInput::Tick(ClockTick {
        event_time: at,
        source: "processor".into(),
        wall_jump_ms,
    })
}

/// A brain that heard the grill's meat probe at `T0` and then nothing, ticking every
/// 15 s for a minute.
fn heard_then_quiet() -> CookBrain {
    let mut brain = CookBrain::default();
    brain.apply(&rule("offline", "device_offline", None, OFFLINE_S));
    brain.apply(&rule(
        "unplugged",
        "probe_disconnected",
        Some("meat-1"),
        DISCONNECTED_S,
    ));
    brain.apply(&CookInput::Reading(ProbeReading {
        device_id: "grill".into(),
        probe_id: "meat-1".into(),
        event_time: T0,
        received_time: T0,
        temperature_c: Some(40.0),
        source: "sim".into(),
    }));
    for t in (1..=4).map(|n| T0 + n * TICK_MS) {
        assert_eq!(raised(&mut brain, &tick(t, None)), Vec::<String>::new());
    }
    brain
}

/// The kinds of the alerts an input raises.
fn raised(brain: &mut CookBrain, input: &CookInput) -> Vec<String> {
    brain
        .apply(input)
        .0
        .into_iter()
        .filter_map(|o| match o {
            CookOutput::Raised(r) => Some(r.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn a_jump_the_tick_reports_is_not_silence() {
    let mut brain = heard_then_quiet();
    // The next tick, an hour ahead by the moved clock, says so.
    let after = T0 + 5 * TICK_MS + HOUR_MS;
    assert_eq!(
        raised(&mut brain, &tick(after, Some(HOUR_MS))),
        Vec::<String>::new()
    );
    // The same tick read again (from another partition) does not move anything twice.
    assert_eq!(
        raised(&mut brain, &tick(after, Some(HOUR_MS))),
        Vec::<String>::new()
    );
    // Real quiet after the jump still counts: 75 s before it, 45 s after make 120 s.
    let mut offline_at = None;
    for n in 1..=60 {
        let t = after + n * TICK_MS;
        if raised(&mut brain, &tick(t, None)).contains(&"device_offline".to_owned()) {
            offline_at = Some(t);
            break;
        }
    }
    let quiet_s = offline_at.map(|t| (t - HOUR_MS - T0) / 1_000);
    assert_eq!(
        quiet_s,
        Some(120),
        "offline after this much real quiet (None: never)"
    );
}

#[test]
fn the_same_step_unreported_counts_as_silence() {
    // What the tick's report prevents: without it an hour forward is an hour of quiet.
    let mut brain = heard_then_quiet();
    let mut kinds = raised(&mut brain, &tick(T0 + 5 * TICK_MS + HOUR_MS, None));
    kinds.sort();
    assert_eq!(kinds, ["device_offline", "probe_disconnected"]);
}
