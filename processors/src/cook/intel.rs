//! The cook fold: what one input does to a device's cook state, and what it emits.
//!
//! [`CookBrain::apply`] takes inputs in the processor's merged order and returns the
//! predictions and alert transitions they cause. It is pure — no clock, no I/O — so the
//! processor, the replay test and `emberline eval-predictions` all run exactly this code.

use std::collections::{BTreeMap, BTreeSet};

use emberline_schemas::events::{
    AlertAcknowledged, AlertCleared, AlertRaised, AlertRuleSet, ClockTick, CookEnded, CookStarted,
    DeviceRegistered, DeviceRemoved, DeviceStatus, PredictionUpdated, ProbeReading, TargetSet,
};
use serde::{Deserialize, Serialize};

use super::alerts::{Rule, RuleKind, RuleState, Status, Transition};
use super::forecast::{ForecastInputs, ForecastPrior, Forecaster, ModelParams, PitRecent};
use super::learn::{CookPrior, Observed, ObservedReading, Priors, SmokerProfile};
use super::phase::{PitPhase, PitTracker, ProbeInputs, ProbePhase, ProbeTracker};
use super::predict::{Estimate, PredictInputs, Predictor, STALL_PLATEAU_C, STALL_PRIOR_S};
use crate::trend::{TrendFigures, TrendState};

/// A prediction is re-emitted at most this often per probe (event time), unless its phase,
/// stall flag or target changes.
pub const PREDICTION_EVERY_MS: i64 = 60_000;

/// One input of the cook processor.
#[derive(Clone, Debug, PartialEq)]
pub enum CookInput {
    /// A probe reading.
    Reading(ProbeReading),
    /// Device health.
    Status(DeviceStatus),
    /// A device's registration (names and labels: which probe is the pit).
    Registered(DeviceRegistered),
    /// A device was removed: its rules' episodes end.
    Removed(DeviceRemoved),
    /// A cook began.
    CookStarted(CookStarted),
    /// A target changed.
    TargetSet(TargetSet),
    /// A cook ended.
    CookEnded(CookEnded),
    /// An alert rule was set or removed.
    RuleSet(AlertRuleSet),
    /// An alert was acknowledged or snoozed.
    Acknowledged(AlertAcknowledged),
    /// Time passed.
    Tick(ClockTick),
}

impl CookInput {
    /// The device it concerns (`None`: all of them).
    pub fn device_id(&self) -> Option<&str> {
        Some(match self {
            CookInput::Reading(e) => &e.device_id,
            CookInput::Status(e) => &e.device_id,
            CookInput::Registered(e) => &e.device_id,
            CookInput::Removed(e) => &e.device_id,
            CookInput::CookStarted(e) => &e.device_id,
            CookInput::TargetSet(e) => &e.device_id,
            CookInput::CookEnded(e) => &e.device_id,
            CookInput::RuleSet(e) => &e.device_id,
            CookInput::Acknowledged(e) => &e.device_id,
            CookInput::Tick(_) => return None,
        })
    }

    /// The server-side time it happened: the merge order and the clock of time-based rules.
    pub fn merge_time(&self) -> i64 {
        match self {
            CookInput::Reading(e) => e.received_time,
            CookInput::Status(e) => e.received_time,
            CookInput::Registered(e) => e.event_time,
            CookInput::Removed(e) => e.event_time,
            CookInput::CookStarted(e) => e.event_time,
            CookInput::TargetSet(e) => e.event_time,
            CookInput::CookEnded(e) => e.event_time,
            CookInput::RuleSet(e) => e.event_time,
            CookInput::Acknowledged(e) => e.event_time,
            CookInput::Tick(e) => e.event_time,
        }
    }
}

/// One output.
#[derive(Clone, Debug, PartialEq)]
pub enum CookOutput {
    /// For `derived.predictions`.
    Prediction(PredictionUpdated),
    /// For `alerts`.
    Raised(AlertRaised),
    /// For `alerts`.
    Cleared(AlertCleared),
}

/// A probe's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeIntel {
    /// Rolling trend (the trend processor's code).
    pub trend: TrendState,
    /// Phase.
    pub tracker: ProbeTracker,
    /// Time-to-target fit (Newton's law with the stall).
    pub predictor: Predictor,
    /// The blend of forecasters the estimate comes from.
    #[serde(default)]
    pub forecaster: Forecaster,
    /// Latest figures.
    pub figures: Option<TrendFigures>,
    /// Event time of the latest reading.
    pub event_time: Option<i64>,
    /// Server time of the latest reading with a temperature.
    pub last_plugged_seen: Option<i64>,
    /// Latest estimate.
    pub estimate: Option<Estimate>,
    /// What this cook has shown so far, for the device's profile when it completes.
    #[serde(default)]
    pub observed: Observed,
    /// (event time, phase, stall, target) of the last emitted prediction.
    last_emitted: Option<(i64, ProbePhase, bool, u64)>,
}

impl ProbeIntel {
    /// A probe whose rates come from [`TrendState`], starting its cook from `prior`.
    fn for_trend(prior: Option<&CookPrior>) -> Self {
        let mut probe = Self::default();
        probe.start_cook(prior);
        probe
    }

    /// Starts the fits of a new cook afresh (the last cook's meat is not this one's), from
    /// what the device's earlier cooks taught.
    fn start_cook(&mut self, prior: Option<&CookPrior>) {
        // The trend's rate is a regression over its whole window, centred half a window
        // back; its smoothed temperature averages the last SMOOTHING_MS.
        let lag_ms = (crate::trend::WINDOW_MS - crate::trend::SMOOTHING_MS) / 2;
        self.predictor = Predictor::with_rate_lag(lag_ms as f64 / 60_000.0);
        self.forecaster = Forecaster::default();
        // The learnt bias and, without a pit probe, the learnt asymptote. The learnt stall
        // and heating coefficient stay in the profile (see `learn`): fed to the predictor
        // they made the simulated smokers' predictions worse.
        if let Some(p) = prior {
            self.forecaster.prior = ForecastPrior {
                margin_c: Some(p.margin_c),
                bias: p.bias,
            };
        }
        self.observed = Observed::default();
        self.estimate = None;
    }
}

/// The cook in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveCook {
    /// Cook id.
    pub cook_id: String,
    /// Pit band.
    pub pit_min_c: Option<f64>,
    /// Pit band.
    pub pit_max_c: Option<f64>,
    /// What it was planned for (serving time, rest, cut), when it named a serving time.
    #[serde(default)]
    pub plan: Option<super::behind_plan::CookPlan>,
    /// The meat it named.
    #[serde(default)]
    pub meat: Option<String>,
    /// Its weight, kg, when it named it.
    #[serde(default)]
    pub weight_kg: Option<f64>,
    /// What it started from: the device's earlier cooks.
    #[serde(default)]
    pub prior: Option<CookPrior>,
}

/// A device's cook state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceIntel {
    /// Device id.
    pub device_id: String,
    /// Probe labels from the registration.
    pub labels: BTreeMap<String, String>,
    /// The pit.
    pub pit: PitTracker,
    /// The pit's recent readings, for its forecast.
    #[serde(default)]
    pub pit_recent: PitRecent,
    /// Probes.
    pub probes: BTreeMap<String, ProbeIntel>,
    /// The cook in progress.
    pub cook: Option<ActiveCook>,
    /// Targets in force.
    pub targets_c: BTreeMap<String, f64>,
    /// Rules the user set.
    pub rules: BTreeMap<String, Rule>,
    /// Every rule's state, implicit rules included.
    pub rule_states: BTreeMap<String, RuleState>,
    /// Latest battery charge.
    pub battery_percent: Option<f64>,
    /// Whether the source last said it is online.
    pub online: bool,
    /// Server time the device was last heard from.
    pub last_seen: Option<i64>,
    /// What its completed cooks taught.
    #[serde(default)]
    pub profile: SmokerProfile,
}

/// Whether a probe is the pit (ambient) probe, by its id or label.
pub fn is_pit_probe(probe_id: &str, label: Option<&str>) -> bool {
    let words = [
        "pit", "ambient", "grill", "smoker", "oven", "chamber", "grate",
    ];
    // Asked several times per reading: compared in place, without a lowercased copy.
    let matches = |s: &str| {
        words.iter().any(|w| {
            s.as_bytes()
                .windows(w.len())
                .any(|part| part.eq_ignore_ascii_case(w.as_bytes()))
        })
    };
    matches(probe_id) || label.is_some_and(matches)
}

impl DeviceIntel {
    fn new(device_id: &str) -> Self {
        Self {
            device_id: device_id.to_owned(),
            online: true,
            ..Self::default()
        }
    }

    fn pit_probe(&self) -> Option<&str> {
        self.probes
            .keys()
            .map(String::as_str)
            .find(|p| is_pit_probe(p, self.labels.get(*p).map(String::as_str)))
    }

    /// The pit level food heats toward: the held level, else the smoothed pit.
    fn pit_level(&self) -> Option<f64> {
        self.pit_probe()?;
        match self.pit.phase {
            PitPhase::Holding | PitPhase::LidOpen => self.pit.hold_c.or(self.pit.smoothed_c),
            _ => self.pit.smoothed_c,
        }
    }

    /// The wall clock jumped `jump` ms forward when it read `before`: every time stamped
    /// before the jump that a duration is measured from (last heard, last plugged, a rule
    /// pending or raised) moves forward with it, so the jump counts as neither silence nor
    /// time held. A clock set right on a grill's small computer must not call every device
    /// offline.
    fn discount_jump(&mut self, before: i64, jump: i64) {
        let shift = |t: &mut i64| {
            if *t < before {
                *t += jump;
            }
        };
        if let Some(t) = &mut self.last_seen {
            shift(t);
        }
        for probe in self.probes.values_mut() {
            if let Some(t) = &mut probe.last_plugged_seen {
                shift(t);
            }
        }
        for state in self.rule_states.values_mut() {
            match &mut state.status {
                Status::Pending { since } => shift(since),
                Status::Active { last_raised, .. } => shift(last_raised),
                Status::Idle => {}
            }
        }
    }

    /// Every rule in force, in a fixed order: the user's, plus target reached per target and
    /// fire out when a cook runs on a device with a pit. With `only_probe`, just that probe's
    /// and the device-wide ones (what one reading can change).
    fn rules_in_force(&self, only_probe: Option<&str>) -> Vec<Rule> {
        let concerns = |probe: Option<&str>| match (only_probe, probe) {
            (Some(only), Some(probe)) => only == probe,
            _ => true,
        };
        let mut rules: Vec<Rule> = self
            .rules
            .values()
            .filter(|r| concerns(r.probe_id.as_deref()))
            .cloned()
            .collect();
        for probe in self.targets_c.keys().filter(|p| concerns(Some(p))) {
            rules.push(Rule {
                id: format!("target/{}/{probe}", self.device_id),
                kind: RuleKind::TargetReached,
                probe_id: Some(probe.clone()),
                cook_id: self.cook.as_ref().map(|c| c.cook_id.clone()),
                threshold: None,
                low: None,
                high: None,
                for_ms: 0,
                hysteresis: 2.0,
                repeat_every_ms: None,
                label: None,
            });
        }
        if self.cook.is_some() && self.pit_probe().is_some() {
            rules.push(Rule {
                id: format!("fire/{}", self.device_id),
                kind: RuleKind::FireOut,
                probe_id: None,
                cook_id: self.cook.as_ref().map(|c| c.cook_id.clone()),
                threshold: None,
                low: None,
                high: None,
                for_ms: 0,
                hysteresis: 0.0,
                repeat_every_ms: None,
                label: None,
            });
        }
        rules.extend(super::behind_plan::implicit_rule(self));
        rules
    }
}

/// State of the whole processor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CookBrain {
    /// Processor time: the latest merge time seen.
    pub now: i64,
    /// Inputs applied so far; each output carries the position of the input behind it.
    pub seq: u64,
    /// Devices.
    pub devices: BTreeMap<String, DeviceIntel>,
    /// The time of the last tick that reported a wall-clock jump, so the same tick read
    /// from several partitions counts once.
    #[serde(default)]
    pub jump_tick: Option<i64>,
}

impl CookBrain {
    /// Applies one input; returns what it emits and which devices changed.
    pub fn apply(&mut self, input: &CookInput) -> (Vec<CookOutput>, BTreeSet<String>) {
        self.apply_with(input, &ModelParams::default())
    }

    /// [`CookBrain::apply`] with model parameters other than the built-in ones (the
    /// evaluation's, fitted leaving the scored cook out).
    pub fn apply_with(
        &mut self,
        input: &CookInput,
        params: &ModelParams,
    ) -> (Vec<CookOutput>, BTreeSet<String>) {
        self.seq += 1;
        let mut changed = BTreeSet::new();
        if let CookInput::Tick(tick) = input
            && let Some(jump) = tick.wall_jump_ms.filter(|j| *j > 0)
            && self.jump_tick != Some(tick.event_time)
        {
            self.jump_tick = Some(tick.event_time);
            for dev in self.devices.values_mut() {
                dev.discount_jump(tick.event_time - jump, jump);
                changed.insert(dev.device_id.clone());
            }
        }
        self.now = self.now.max(input.merge_time());
        let seq = self.seq as i64;
        let now = self.now;
        let mut out = Vec::new();
        let Some(device_id) = input.device_id() else {
            // Time passed: time-based rules of every device.
            for dev in self.devices.values_mut() {
                if evaluate_rules(dev, now, seq, Scope::Time, &mut out) {
                    changed.insert(dev.device_id.clone());
                }
            }
            return (out, changed);
        };
        let dev = self
            .devices
            .entry(device_id.to_owned())
            .or_insert_with(|| DeviceIntel::new(device_id));
        changed.insert(device_id.to_owned());
        let mut probe_touched = None;
        match input {
            CookInput::Reading(r) => {
                dev.last_seen = Some(dev.last_seen.map_or(now, |t| t.max(r.received_time)));
                apply_reading(dev, r, now, params);
                probe_touched = Some(r.probe_id.clone());
            }
            CookInput::Status(s) => {
                dev.last_seen = Some(dev.last_seen.map_or(now, |t| t.max(s.received_time)));
                dev.online = s.online;
                if s.battery_percent.is_some() {
                    dev.battery_percent = s.battery_percent;
                }
            }
            CookInput::Registered(r) => dev.labels = r.probe_labels.clone(),
            CookInput::Removed(_) => end_all(dev, now, seq, "device removed", &mut out),
            CookInput::CookStarted(c) => {
                end_all(dev, now, seq, "a new cook started", &mut out);
                learn_from_cook(dev);
                let meat = c.meat.clone().or_else(|| c.what.clone());
                let prior =
                    dev.profile
                        .prior_for(meat.as_deref(), c.weight_kg, &built_in_priors(params));
                let pit = dev.pit_probe().map(str::to_owned);
                for (id, probe) in &mut dev.probes {
                    if pit.as_deref() != Some(id.as_str()) {
                        probe.start_cook(Some(&prior));
                    }
                }
                dev.cook = Some(ActiveCook {
                    cook_id: c.cook_id.clone(),
                    pit_min_c: c.pit_min_c,
                    pit_max_c: c.pit_max_c,
                    plan: super::behind_plan::CookPlan::of(c),
                    meat,
                    weight_kg: c.weight_kg,
                    prior: Some(prior),
                });
                dev.targets_c = c.targets_c.clone();
                dev.rules.retain(|_, r| r.cook_id.is_none());
            }
            CookInput::TargetSet(t) => {
                match t.target_c {
                    Some(v) => dev.targets_c.insert(t.probe_id.clone(), v),
                    None => dev.targets_c.remove(&t.probe_id),
                };
                probe_touched = Some(t.probe_id.clone());
            }
            CookInput::CookEnded(c) => {
                if dev.cook.as_ref().is_some_and(|k| k.cook_id == c.cook_id) {
                    end_all(dev, now, seq, "cook ended", &mut out);
                    learn_from_cook(dev);
                    dev.cook = None;
                    dev.targets_c.clear();
                    dev.rules
                        .retain(|_, r| r.cook_id.as_deref() != Some(&c.cook_id));
                }
            }
            CookInput::RuleSet(r) => set_rule(dev, r, now, seq, &mut out),
            CookInput::Acknowledged(a) => {
                if let Some((rule_id, episode)) = a.alert_id.rsplit_once('#')
                    && let Ok(episode) = episode.parse::<u32>()
                    && let Some(state) = dev.rule_states.get_mut(rule_id)
                {
                    state.acknowledge(episode, a.snooze_until);
                }
            }
            CookInput::Tick(_) => {}
        }
        if let Some(probe) = &probe_touched
            && let Some(p) = emit_prediction(dev, probe, seq)
        {
            out.push(CookOutput::Prediction(p));
        }
        super::behind_plan::track(dev, probe_touched.as_deref());
        let scope = match input {
            CookInput::Reading(r) => Scope::Probe(&r.probe_id),
            _ => Scope::All,
        };
        evaluate_rules(dev, now, seq, scope, &mut out);
        (out, changed)
    }
}

/// The priors a device's profile shrinks toward: the predictor's stall and the model's
/// asymptote margin.
fn built_in_priors(params: &ModelParams) -> Priors {
    Priors {
        stall_s: STALL_PRIOR_S,
        stall_c: STALL_PLATEAU_C,
        margin_c: params.asymptote_margin_c,
    }
}

/// The cook in progress is over: what its food probes that reached their targets showed goes
/// into the device's profile, once.
fn learn_from_cook(dev: &mut DeviceIntel) {
    let Some(cook) = &dev.cook else {
        return;
    };
    let pit = dev.pit_probe().map(str::to_owned);
    let outcomes: Vec<_> = dev
        .probes
        .iter()
        .filter(|(id, _)| pit.as_deref() != Some(id.as_str()))
        .filter_map(|(_, p)| p.observed.outcome())
        .collect();
    let (meat, weight_kg) = (cook.meat.clone(), cook.weight_kg);
    dev.profile.learn(meat.as_deref(), weight_kg, &outcomes);
    for probe in dev.probes.values_mut() {
        probe.observed = Observed::default();
    }
}

fn apply_reading(dev: &mut DeviceIntel, r: &ProbeReading, now: i64, params: &ModelParams) {
    let is_pit = is_pit_probe(&r.probe_id, dev.labels.get(&r.probe_id).map(String::as_str));
    let prior = dev.cook.as_ref().and_then(|c| c.prior.as_ref());
    let probe = dev
        .probes
        .entry(r.probe_id.clone())
        .or_insert_with(|| ProbeIntel::for_trend(prior));
    let figures = probe.trend.update(r.event_time, r.temperature_c);
    probe.event_time = Some(
        probe
            .event_time
            .map_or(r.event_time, |t| t.max(r.event_time)),
    );
    if r.temperature_c.is_some() {
        probe.last_plugged_seen = Some(now);
    }
    if figures.is_none() && r.temperature_c.is_some() {
        return; // a reading too late to count
    }
    probe.figures = figures.clone();
    if is_pit {
        if let Some(f) = &figures
            && let Some(raw) = r.temperature_c
        {
            dev.pit
                .update(r.event_time, raw, f.smoothed_c, f.rate_c_per_min);
            dev.pit_recent.add(r.event_time, raw);
        }
        let phase = if r.temperature_c.is_some() {
            ProbePhase::Heating
        } else {
            ProbePhase::ProbeOut
        };
        if let Some(p) = dev.probes.get_mut(&r.probe_id) {
            p.tracker.phase = phase;
        }
        return;
    }
    let pit_c = dev.pit_level();
    let pit_forecast_c = dev
        .pit_probe()
        .and_then(|_| dev.pit_recent.forecast(r.event_time));
    let pit_steady = dev.pit.is_steady();
    // A pit that has settled (holding, or dipping with the lid open): not one still coming up.
    let pit_holding = matches!(dev.pit.phase, PitPhase::Holding | PitPhase::LidOpen);
    let target_c = dev.targets_c.get(&r.probe_id).copied();
    let Some(probe) = dev.probes.get_mut(&r.probe_id) else {
        return;
    };
    let expected = probe_expected_rate(probe, pit_c);
    let phase = probe.tracker.update(ProbeInputs {
        time: r.event_time,
        smoothed_c: figures.as_ref().map(|f| f.smoothed_c),
        rate_c_per_min: figures.as_ref().and_then(|f| f.rate_c_per_min),
        expected_rate_c_per_min: expected,
        target_c,
        pit_steady,
    });
    probe.estimate = match (target_c, &figures) {
        (Some(target_c), Some(f)) => {
            let reading = PredictInputs {
                time: r.event_time,
                temp_c: f.smoothed_c,
                rate_c_per_min: f.rate_c_per_min,
                pit_c,
                pit_steady,
                pit_holding,
                phase,
                target_c,
            };
            probe.predictor.update(reading);
            let estimate = probe.forecaster.update(
                ForecastInputs {
                    reading,
                    newton: &probe.predictor,
                    pit_forecast_c,
                },
                params,
            );
            let unbiased = probe.forecaster.unbiased_remaining_s(&estimate);
            probe.observed.record(ObservedReading {
                time: r.event_time,
                temp_c: f.smoothed_c,
                phase,
                target_c,
                pit_c,
                k: probe.predictor.k(),
                remaining_s: unbiased,
            });
            Some(estimate)
        }
        // Unplugged: the last estimate, aged, until it is back.
        (Some(_), None) => Some(probe.forecaster.out(r.event_time)),
        (None, _) => None,
    };
}

/// What Newton's law expects the rate to be now, °C per minute, from the probe's own fit.
fn probe_expected_rate(probe: &ProbeIntel, pit_c: Option<f64>) -> Option<f64> {
    let f = probe.figures.as_ref()?;
    let pit = pit_c?;
    let k = probe.predictor.k()?;
    Some(k * (pit - f.smoothed_c) * 60.0)
}

fn emit_prediction(dev: &mut DeviceIntel, probe_id: &str, seq: i64) -> Option<PredictionUpdated> {
    let target_c = *dev.targets_c.get(probe_id)?;
    let pit_c = dev.pit_level();
    let pit_phase = dev.pit.phase;
    let cook_id = dev
        .cook
        .as_ref()
        .map(|c| c.cook_id.clone())
        .unwrap_or_default();
    let based_on = dev
        .cook
        .as_ref()
        .and_then(|c| c.prior.as_ref())
        .and_then(CookPrior::based_on);
    let probe = dev.probes.get_mut(probe_id)?;
    let estimate = probe.estimate.clone()?;
    let figures = probe.figures.clone()?;
    let event_time = probe.event_time?;
    let phase = probe.tracker.phase;
    let key = (event_time, phase, estimate.stall, target_c.to_bits());
    let due = match probe.last_emitted {
        None => true,
        Some((t, ph, st, tg)) => {
            event_time - t >= PREDICTION_EVERY_MS
                || ph != phase
                || st != estimate.stall
                || tg != key.3
        }
    };
    if !due {
        return None;
    }
    probe.last_emitted = Some(key);
    let done_at = estimate
        .remaining_s
        .map(|s| event_time + (s * 1_000.0).round() as i64);
    Some(PredictionUpdated {
        device_id: dev.device_id.clone(),
        probe_id: probe_id.to_owned(),
        cook_id,
        event_time,
        temperature_c: figures.smoothed_c,
        target_c,
        pit_c,
        remaining_s: estimate.remaining_s,
        low_s: estimate.low_s,
        high_s: estimate.high_s,
        done_at,
        stall: estimate.stall,
        phase: phase.as_str().to_owned(),
        pit_phase: pit_phase.as_str().to_owned(),
        method: estimate.method.clone(),
        source_seq: seq,
        based_on,
    })
}

fn set_rule(
    dev: &mut DeviceIntel,
    r: &AlertRuleSet,
    now: i64,
    seq: i64,
    out: &mut Vec<CookOutput>,
) {
    // Disabled, or of a kind this version does not evaluate: the rule goes.
    let Some(kind) = RuleKind::parse(&r.kind).filter(|_| r.enabled) else {
        if let Some(old) = dev.rules.remove(&r.rule_id)
            && let Some(state) = dev.rule_states.get_mut(&r.rule_id)
            && let Some(Transition::Clear { episode }) = state.end()
        {
            out.push(cleared(dev, &old, episode, now, None, "rule removed", seq));
        }
        return;
    };
    let rule = Rule {
        id: r.rule_id.clone(),
        kind,
        probe_id: r.probe_id.clone(),
        cook_id: r.cook_id.clone(),
        threshold: r.threshold,
        low: r.low,
        high: r.high,
        for_ms: (r.for_s.max(0.0) * 1_000.0) as i64,
        hysteresis: r.hysteresis,
        repeat_every_ms: r.repeat_every_s.map(|s| (s.max(0.0) * 1_000.0) as i64),
        label: r.label.clone(),
    };
    dev.rules.insert(rule.id.clone(), rule);
}

/// Ends every active episode of the device (cook ended, device removed).
fn end_all(dev: &mut DeviceIntel, now: i64, seq: i64, reason: &str, out: &mut Vec<CookOutput>) {
    let rules = dev.rules_in_force(None);
    for rule in &rules {
        if let Some(state) = dev.rule_states.get_mut(&rule.id)
            && let Some(Transition::Clear { episode }) = state.end()
        {
            let c = cleared(dev, rule, episode, now, None, reason, seq);
            out.push(c);
        }
    }
}

/// Which rules an input can affect.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// A reading: that probe's rules and the device's.
    Probe(&'a str),
    /// Anything else about the device: all its rules.
    All,
    /// Time passed: what time alone changes (quiet devices and probes, repeats, snoozes).
    Time,
}

/// Evaluates the rules in `scope`. Returns whether anything was emitted.
fn evaluate_rules(
    dev: &mut DeviceIntel,
    now: i64,
    seq: i64,
    scope: Scope<'_>,
    out: &mut Vec<CookOutput>,
) -> bool {
    let before = out.len();
    let only_probe = match scope {
        Scope::Probe(p) => Some(p),
        Scope::All | Scope::Time => None,
    };
    for rule in dev.rules_in_force(only_probe) {
        // A reading's rules are already only its probe's and the device's.
        let relevant = match (scope, &rule.probe_id) {
            (Scope::Probe(_) | Scope::All, _) => true,
            (Scope::Time, _) => {
                matches!(
                    rule.kind,
                    RuleKind::ProbeDisconnected | RuleKind::DeviceOffline
                ) || matches!(
                    dev.rule_states.get(&rule.id).map(|s| &s.status),
                    Some(Status::Active { .. })
                )
            }
        };
        if !relevant {
            continue;
        }
        let Some((value, threshold)) = observe(dev, &rule, now) else {
            continue;
        };
        let state = dev.rule_states.entry(rule.id.clone()).or_default();
        match state.step(&rule, now, value, threshold) {
            Some(Transition::Raise { episode, repeat }) => {
                out.push(raised(
                    dev, &rule, episode, repeat, now, value, threshold, seq,
                ));
            }
            Some(Transition::Clear { episode }) => {
                let c = cleared(dev, &rule, episode, now, value, "back to normal", seq);
                out.push(c);
            }
            None => {}
        }
    }
    out.len() > before
}

/// The value a rule watches now, and its threshold; `None` when the rule cannot apply.
fn observe(dev: &DeviceIntel, rule: &Rule, now: i64) -> Option<(Option<f64>, f64)> {
    let probe = rule.probe_id.as_deref().and_then(|p| dev.probes.get(p));
    let smoothed = probe.and_then(|p| p.figures.as_ref()).map(|f| f.smoothed_c);
    let plugged = probe.is_some_and(|p| p.tracker.phase != ProbePhase::ProbeOut);
    let temp = smoothed.filter(|_| plugged);
    let threshold = rule.threshold.unwrap_or(0.0);
    Some(match rule.kind {
        RuleKind::Above | RuleKind::Below | RuleKind::OutsideBand => (temp, threshold),
        RuleKind::RateAbove | RuleKind::RateBelow => (
            probe
                .filter(|_| plugged)
                .and_then(|p| p.figures.as_ref())
                .and_then(|f| f.rate_c_per_min),
            threshold,
        ),
        RuleKind::ProbeDisconnected => {
            let last = probe.and_then(|p| p.last_plugged_seen)?;
            (Some((now - last) as f64 / 1_000.0), threshold)
        }
        RuleKind::BatteryBelow => (dev.battery_percent, threshold),
        RuleKind::DeviceOffline => {
            let last = dev.last_seen?;
            let quiet = (now - last) as f64 / 1_000.0;
            (
                Some(if dev.online {
                    quiet
                } else {
                    quiet.max(threshold)
                }),
                threshold,
            )
        }
        RuleKind::FireOut => (
            dev.pit
                .smoothed_c
                .map(|_| f64::from(u8::from(dev.pit.phase == PitPhase::FireOut))),
            0.5,
        ),
        RuleKind::TargetReached => {
            let target = rule.threshold.or_else(|| {
                rule.probe_id
                    .as_deref()
                    .and_then(|p| dev.targets_c.get(p).copied())
            })?;
            (temp, target)
        }
        RuleKind::PredictedDoneWithin => (
            probe
                .and_then(|p| p.estimate.as_ref())
                .and_then(|e| e.remaining_s)
                .map(|s| s / 60.0),
            threshold,
        ),
        RuleKind::BehindPlan => (super::behind_plan::observe(dev, rule)?, threshold),
    })
}

fn describe(dev: &DeviceIntel, rule: &Rule, value: Option<f64>, threshold: f64) -> String {
    let probe = rule
        .probe_id
        .as_deref()
        .map(|p| dev.labels.get(p).cloned().unwrap_or_else(|| p.to_owned()));
    let on = probe.map_or_else(
        || dev.device_id.clone(),
        |p| format!("{p} on {}", dev.device_id),
    );
    let v = value.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"));
    let text = match rule.kind {
        RuleKind::Above => format!("{on} is above {threshold:.1} °C ({v} °C)"),
        RuleKind::Below => format!("{on} is below {threshold:.1} °C ({v} °C)"),
        RuleKind::OutsideBand => format!(
            "{on} is outside {:.0}–{:.0} °C ({v} °C)",
            rule.low.unwrap_or(f64::NEG_INFINITY),
            rule.high.unwrap_or(f64::INFINITY)
        ),
        RuleKind::RateAbove => format!("{on} is rising faster than {threshold:.2} °C/min ({v})"),
        RuleKind::RateBelow => format!("{on} is rising slower than {threshold:.2} °C/min ({v})"),
        RuleKind::ProbeDisconnected => format!("{on} has been disconnected for {v} s"),
        RuleKind::BatteryBelow => format!("{on} battery is at {v} %"),
        RuleKind::DeviceOffline => format!("{on} has been offline for {v} s"),
        RuleKind::FireOut => format!("The fire on {on} looks out: the pit keeps falling"),
        RuleKind::TargetReached => format!("{on} reached its target of {threshold:.1} °C ({v} °C)"),
        RuleKind::PredictedDoneWithin => format!("{on} should be done in about {v} min"),
        RuleKind::BehindPlan => super::behind_plan::describe(dev, rule, value),
    };
    match &rule.label {
        Some(label) => format!("{label}: {text}"),
        None => text,
    }
}

#[allow(clippy::too_many_arguments)]
fn raised(
    dev: &DeviceIntel,
    rule: &Rule,
    episode: u32,
    repeat: u32,
    now: i64,
    value: Option<f64>,
    threshold: f64,
    seq: i64,
) -> CookOutput {
    CookOutput::Raised(AlertRaised {
        alert_id: RuleState::alert_id(&rule.id, episode),
        rule_id: rule.id.clone(),
        kind: rule.kind.as_str().to_owned(),
        device_id: dev.device_id.clone(),
        probe_id: rule.probe_id.clone(),
        cook_id: rule
            .cook_id
            .clone()
            .or_else(|| dev.cook.as_ref().map(|c| c.cook_id.clone())),
        event_time: now,
        value,
        threshold: Some(threshold),
        message: describe(dev, rule, value, threshold),
        repeat: repeat as i32,
        source_seq: seq,
    })
}

fn cleared(
    dev: &DeviceIntel,
    rule: &Rule,
    episode: u32,
    now: i64,
    value: Option<f64>,
    reason: &str,
    seq: i64,
) -> CookOutput {
    CookOutput::Cleared(AlertCleared {
        alert_id: RuleState::alert_id(&rule.id, episode),
        rule_id: rule.id.clone(),
        kind: rule.kind.as_str().to_owned(),
        device_id: dev.device_id.clone(),
        probe_id: rule.probe_id.clone(),
        event_time: now,
        value,
        reason: reason.to_owned(),
        source_seq: seq,
    })
}

#[cfg(test)]
mod tests {
    use super::is_pit_probe;

    #[test]
    fn a_pit_probe_is_known_by_id_or_label_in_any_case() {
        // The plain definition: a lowercased copy contains one of the words.
        let oracle = |id: &str, label: Option<&str>| {
            let words = [
                "pit", "ambient", "grill", "smoker", "oven", "chamber", "grate",
            ];
            [Some(id), label]
                .into_iter()
                .flatten()
                .any(|s| words.iter().any(|w| s.to_ascii_lowercase().contains(w)))
        };
        let names = [
            "pit",
            "PIT",
            "Ambient-1",
            "probe-1",
            "meat",
            "Smoker box",
            "Grillé",
            "Größe",
            "ovEN",
            "gr",
            "",
            "chamber 2",
            "GRATE",
            "spit roast",
            "brisket",
        ];
        let mut pits = 0;
        for id in names {
            for label in [None, Some("Brisket"), Some("Kamado Grill"), Some("ofen")] {
                let found = is_pit_probe(id, label);
                assert_eq!(found, oracle(id, label), "{id:?} labelled {label:?}");
                pits += usize::from(found);
            }
        }
        assert!(pits > 0 && pits < names.len() * 4, "both answers occur");
        assert!(is_pit_probe("AMBIENT", None));
        assert!(!is_pit_probe("probe-1", Some("Pork shoulder")));
    }
}
