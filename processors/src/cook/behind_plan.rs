//! `behind_plan`: a cook started with a serving time is re-checked against it live.
//!
//! The food probes' current predictions (the probes with a target, not the pit) say when
//! the meat will be done; with the planned rest after it, the meal is ready at
//! `done + rest`. How late that is — for the food probe running latest — is recorded at
//! most once a minute after the first [`SETTLE_MS`] of the cook (a prediction made before
//! the meat has really started heating says little), and the rule watches the lower
//! quartile of the last [`WINDOW_MS`] of it, once that spans [`MIN_SPAN_MS`]: the meal
//! must have looked late for three quarters of the hour, so a pit that sags for twenty
//! minutes, or a prediction that jumps for a few readings, does not raise it. When that
//! is later than `serve_at` by more than [`TOLERANCE_MIN`] for [`HOLD_MS`], the
//! implicit rule `plan/<device>` raises once; it clears when the cook is back within half
//! the tolerance. It is an ordinary rule for the state machine in [`super::alerts`]
//! (hysteresis, minimum duration, one raise per episode, no repeats).
//!
//! The alert says by how much and what to do: the pit that would catch up, from the
//! planner's physics ([`super::plan::hours_from`]) scaled to how this cook is actually
//! going (the live prediction over what the planner says for the current pit), or just
//! "raise the pit" when that cannot be worked out. Everything is a function of the fold's
//! state: no clock.

use emberline_schemas::events::CookStarted;
use serde::{Deserialize, Serialize};

use super::alerts::{Rule, RuleKind};
use super::intel::{DeviceIntel, is_pit_probe};
use super::plan::{Cut, FRIDGE_C, PlanRequest, hours_from};

/// How late the meal may run before the alert, minutes.
pub const TOLERANCE_MIN: f64 = 20.0;
/// How long it must run that late before the alert, ms.
pub const HOLD_MS: i64 = 15 * 60_000;
/// Predictions in the cook's first this long are not recorded, ms.
pub const SETTLE_MS: i64 = 45 * 60_000;
/// The median is over this much of the latest predictions (event time), ms.
pub const WINDOW_MS: i64 = 60 * 60_000;
/// The recorded predictions must span this long before they count, ms.
pub const MIN_SPAN_MS: i64 = 30 * 60_000;
/// At most one recorded prediction per this long, ms.
const RECORD_EVERY_MS: i64 = 60_000;
/// The hottest pit the alert suggests, °C.
const MAX_SUGGESTED_PIT_C: f64 = 175.0;
/// Suggested pits are multiples of this, °C.
const PIT_STEP_C: f64 = 5.0;

/// What a cook was planned for, kept while it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookPlan {
    /// When the meal is served, epoch ms.
    pub serve_at_ms: i64,
    /// The rest between pulling and serving, minutes.
    pub rest_min: f64,
    /// The cut, from the cook's `meat` (else its `what`).
    pub cut: Cut,
    /// Weight, kg, when the cook said.
    pub weight_kg: Option<f64>,
    /// When the cook started, epoch ms.
    pub started_ms: i64,
    /// Recent (event time, minutes late) of the food probe running latest, oldest first.
    pub recent: Vec<(i64, f64)>,
}

impl CookPlan {
    /// The plan of a cook that names a serving time.
    pub fn of(c: &CookStarted) -> Option<CookPlan> {
        let serve_at_ms = c.serve_at_ms?;
        let cut = c
            .meat
            .as_deref()
            .or(c.what.as_deref())
            .map_or(Cut::Other, Cut::from_words);
        Some(CookPlan {
            serve_at_ms,
            rest_min: c
                .rest_min
                .filter(|r| r.is_finite() && *r >= 0.0)
                .unwrap_or_else(|| cut.usual_rest_min()),
            cut,
            weight_kg: c.weight_kg.filter(|w| w.is_finite() && *w > 0.0),
            started_ms: c.event_time,
            recent: Vec::new(),
        })
    }

    /// A weight for the physics when the cook did not name one: a usual piece of the cut.
    fn weight_or_usual(&self) -> f64 {
        self.weight_kg.unwrap_or(match self.cut {
            Cut::Brisket => 5.5,
            Cut::PorkShoulder => 4.0,
            Cut::Chicken | Cut::Roast => 1.8,
            Cut::Other => 3.0,
        })
    }
}

/// The implicit rule of a cook with a serving time.
pub fn implicit_rule(dev: &DeviceIntel) -> Option<Rule> {
    let cook = dev.cook.as_ref()?;
    cook.plan.as_ref()?;
    Some(Rule {
        id: format!("plan/{}", dev.device_id),
        kind: RuleKind::BehindPlan,
        probe_id: None,
        cook_id: Some(cook.cook_id.clone()),
        threshold: Some(TOLERANCE_MIN),
        low: None,
        high: None,
        for_ms: HOLD_MS,
        hysteresis: TOLERANCE_MIN / 2.0,
        repeat_every_ms: None,
        label: None,
    })
}

/// The planner's request for the rest of this cook in a pit at `pit_c`.
fn request(plan: &CookPlan, target_c: f64, pit_c: f64) -> PlanRequest {
    PlanRequest {
        serve_at_ms: plan.serve_at_ms,
        cut: plan.cut,
        weight_kg: plan.weight_or_usual(),
        target_c,
        rest_min: plan.rest_min,
        pit_c,
        start_c: FRIDGE_C,
        wrap: false,
        warmup_min: 0.0,
    }
}

/// The pit level the meat heats toward: the held level, else the smoothed pit.
fn pit_level(dev: &DeviceIntel) -> Option<f64> {
    dev.pit.hold_c.or(dev.pit.smoothed_c)
}

/// Seconds to target at the slow end of the planner's physics, from where the probe is now,
/// in the pit's held level (or the cut's usual pit).
fn physics_slow_s(dev: &DeviceIntel, plan: &CookPlan, probe_id: &str) -> Option<f64> {
    let meat_c = dev.probes.get(probe_id)?.figures.as_ref()?.smoothed_c;
    let target_c = *dev.targets_c.get(probe_id)?;
    let pit_c = pit_level(dev)
        .unwrap_or_else(|| plan.cut.usual_pit_c())
        .max(target_c + 10.0);
    Some(hours_from(&request(plan, target_c, pit_c), meat_c)?.2 * 3_600.0)
}

/// The food probe running latest: (probe id, minutes the meal would be late; negative
/// when early). `None` when no food probe has a prediction yet. A prediction later than
/// the slow end of the planner's physics from where the meat is now counts as that slow
/// end: in the stall of a pit sagging well below its level, the prediction can run a day
/// long for a few hours, which says more about the sag than about the cook.
fn latest(dev: &DeviceIntel, plan: &CookPlan, only: Option<&str>) -> Option<(String, f64)> {
    let rest_ms = plan.rest_min * 60_000.0;
    dev.targets_c
        .keys()
        .filter(|p| only.is_none_or(|o| o == p.as_str()))
        .filter(|p| !is_pit_probe(p, dev.labels.get(*p).map(String::as_str)))
        .filter_map(|p| {
            let probe = dev.probes.get(p)?;
            let predicted_s = probe.estimate.as_ref()?.remaining_s?;
            let remaining_s =
                physics_slow_s(dev, plan, p).map_or(predicted_s, |slow| predicted_s.min(slow));
            let at = probe.event_time? as f64;
            let late_ms = at + remaining_s * 1_000.0 + rest_ms - plan.serve_at_ms as f64;
            Some((p.clone(), late_ms / 60_000.0)).filter(|(_, m)| m.is_finite())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
}

/// Records how late the meal runs after a reading of `probe` (see the module docs).
pub fn track(dev: &mut DeviceIntel, probe: Option<&str>) {
    let Some(probe) = probe.filter(|p| dev.targets_c.contains_key(*p)) else {
        return;
    };
    let Some(plan) = dev.cook.as_ref().and_then(|c| c.plan.as_ref()) else {
        return;
    };
    let Some(at) = dev.probes.get(probe).and_then(|p| p.event_time) else {
        return;
    };
    if at < plan.started_ms + SETTLE_MS {
        return;
    }
    let Some((_, late)) = latest(dev, plan, None) else {
        return;
    };
    let Some(plan) = dev.cook.as_mut().and_then(|c| c.plan.as_mut()) else {
        return;
    };
    match plan.recent.last_mut() {
        // An older reading: the record has moved on.
        Some((t, _)) if at < *t => return,
        // Within the minute: the newest prediction stands for it.
        Some((t, v)) if at - *t < RECORD_EVERY_MS => *v = late,
        _ => plan.recent.push((at, late)),
    }
    let from = at - WINDOW_MS;
    plan.recent.retain(|(t, _)| *t >= from);
}

/// What the rule watches: the lower quartile of the recent minutes late — late for three
/// quarters of the window (`Some(None)`: not enough predictions yet, no evidence); `None`
/// when the cook has no serving time.
pub fn observe(dev: &DeviceIntel, _rule: &Rule) -> Option<Option<f64>> {
    let plan = dev.cook.as_ref()?.plan.as_ref()?;
    let (Some(first), Some(last)) = (plan.recent.first(), plan.recent.last()) else {
        return Some(None);
    };
    if last.0 - first.0 < MIN_SPAN_MS {
        return Some(None);
    }
    let mut lates: Vec<f64> = plan.recent.iter().map(|(_, l)| *l).collect();
    lates.sort_by(f64::total_cmp);
    Some(Some(lates[(lates.len() - 1) / 4]))
}

/// The pit, °C, that would have the meal ready on time, from the planner's physics scaled
/// to this cook; `None` when it cannot be worked out or no pit up to
/// [`MAX_SUGGESTED_PIT_C`] would do.
fn catch_up_pit(dev: &DeviceIntel, plan: &CookPlan, probe_id: &str) -> Option<f64> {
    let probe = dev.probes.get(probe_id)?;
    let meat_c = probe.figures.as_ref()?.smoothed_c;
    let remaining_h = probe.estimate.as_ref()?.remaining_s? / 3_600.0;
    let now = probe.event_time?;
    let target_c = *dev.targets_c.get(probe_id)?;
    let pit_c = pit_level(dev)?;
    let available_h =
        (plan.serve_at_ms as f64 - plan.rest_min * 60_000.0 - now as f64) / 3_600_000.0;
    if !(available_h > 0.0 && remaining_h > 0.0) {
        return None;
    }
    let request = |pit_c: f64| request(plan, target_c, pit_c);
    // How this cook runs against the planner's priors at the pit it has now.
    let planned_now = hours_from(&request(pit_c), meat_c)?.1;
    if planned_now <= 0.0 {
        return None;
    }
    let pace = remaining_h / planned_now;
    let mut candidate = (pit_c / PIT_STEP_C).floor() * PIT_STEP_C + PIT_STEP_C;
    while candidate <= MAX_SUGGESTED_PIT_C {
        if let Some((_, usual, _)) = hours_from(&request(candidate), meat_c)
            && usual * pace <= available_h
        {
            return Some(candidate);
        }
        candidate += PIT_STEP_C;
    }
    None
}

/// `HH:MM` of an epoch-ms time, UTC.
fn clock(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// "40 min", "1 h 05 min".
fn duration(minutes: f64) -> String {
    let m = minutes.round().max(0.0) as i64;
    if m < 60 {
        format!("{m} min")
    } else {
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// The alert's text: by how much, for when, and what to do.
pub fn describe(dev: &DeviceIntel, rule: &Rule, value: Option<f64>) -> String {
    let Some(plan) = dev.cook.as_ref().and_then(|c| c.plan.as_ref()) else {
        return format!("{} is running behind its plan", dev.device_id);
    };
    let latest = latest(dev, plan, rule.probe_id.as_deref());
    let on = latest.as_ref().map_or_else(
        || dev.device_id.clone(),
        |(p, _)| {
            let p = dev.labels.get(p).cloned().unwrap_or_else(|| p.clone());
            format!("{p} on {}", dev.device_id)
        },
    );
    let late = value.or(latest.as_ref().map(|(_, l)| *l)).unwrap_or(0.0);
    let advice = match latest
        .as_ref()
        .and_then(|(p, _)| catch_up_pit(dev, plan, p))
    {
        Some(pit) => format!("raise the pit to {pit:.0} °C"),
        None => "raise the pit".to_owned(),
    };
    format!(
        "{on}: running {} late for {} — {advice} or plan a shorter rest or a later meal",
        duration(late),
        clock(plan.serve_at_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_as_a_cook_says_them() {
        assert_eq!(clock(18 * 3_600_000), "18:00 UTC");
        assert_eq!(clock(1_800_000_000_000), "08:00 UTC");
        assert_eq!(duration(40.2), "40 min");
        assert_eq!(duration(65.0), "1 h 05 min");
    }

    #[test]
    fn a_plan_comes_from_a_start_with_a_serving_time_only() {
        let mut start = CookStarted {
            cook_id: "c".into(),
            device_id: "d".into(),
            event_time: 0,
            what: Some("Pulled pork".into()),
            targets_c: Default::default(),
            pit_min_c: None,
            pit_max_c: None,
            meat: None,
            weight_kg: Some(4.0),
            serve_at_ms: None,
            rest_min: None,
        };
        assert_eq!(CookPlan::of(&start), None);
        start.serve_at_ms = Some(36_000_000);
        let plan = CookPlan::of(&start).expect("a plan");
        assert_eq!(plan.cut, Cut::PorkShoulder, "from what, without meat");
        assert_eq!(plan.rest_min, Cut::PorkShoulder.usual_rest_min());
        start.meat = Some("brisket".into());
        start.rest_min = Some(30.0);
        let plan = CookPlan::of(&start).expect("a plan");
        assert_eq!((plan.cut, plan.rest_min), (Cut::Brisket, 30.0));
    }
}
