//! Single simulated cooks for evaluations and planners: one meat probe, one pit probe, in
//! simulated time as fast as the caller reads them, and sets of them — a variety suite over
//! cuts, pits and both physical models, and several cooks of one smoker.

use super::cook::{Cook, CookSpec};
use super::meat::{HeatModel, MeatKind};
use super::pit::PitKind;
use super::rng::{Rng, stream};
use super::smoker::SmokerTraits;

/// One simulated cook, fully determined by its fields. Start from [`CookScenario::new`] and
/// change what matters; [`CookScenario::samples`] runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct CookScenario {
    /// Name for a report.
    pub name: String,
    /// The seed: with `device_id` it picks the smoker's hidden parameters
    /// ([`SmokerTraits::for_device`]), with `cook_number` too everything else.
    pub seed: u64,
    /// The smoker.
    pub device_id: String,
    /// Which cook of that smoker: other numbers are other cooks on the same smoker.
    pub cook_number: u32,
    /// What is cooking (`Mixed`: drawn from the seed).
    pub meat: MeatKind,
    /// The physical model heating it (`Generic` meat always uses its own Newton model).
    pub model: HeatModel,
    /// Its weight, kg; `None` draws a usual weight for the cut.
    pub weight_kg: Option<f64>,
    /// How the pit behaves (`Mixed`: the smoker's own kind).
    pub pit: PitKind,
    /// Pit set point, °C.
    pub pit_setpoint_c: f64,
    /// Wrap when the meat probe first reads this, °C.
    pub wrap_at_c: Option<f64>,
    /// Where the probe sits: share of the half-thickness from the centre (0 = centre, 1 =
    /// surface); `None` is the smoker's habit.
    pub probe_off_centre: Option<f64>,
    /// Bluetooth gaps (no samples at all for 1–10 minutes, at the smoker's rate).
    pub bluetooth_gaps: bool,
    /// The probe pulled out for 1–4 minutes about every 3 h and pushed back in elsewhere.
    pub probe_pulls: bool,
    /// Whether a pit probe reports (else `pit_c` is always `None`).
    pub pit_probe: bool,
    /// Where the meat is done, °C.
    pub target_c: f64,
    /// Time between samples, ms.
    pub interval_ms: u64,
    /// Event time of the start (meat on, pit lit), epoch ms.
    pub start_ms: i64,
    /// The cook stops after this long even if the meat never gets there, ms.
    pub limit_ms: i64,
}

/// One sample of a simulated cook.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CookSample {
    /// Event time, epoch ms.
    pub event_time_ms: i64,
    /// What the meat probe reads, °C (noise, placement, a pulled probe and all).
    pub meat_c: f64,
    /// What the pit probe reads, °C, when the scenario has one.
    pub pit_c: Option<f64>,
    /// The truth: the centre of the thickest part, °C.
    pub core_c: f64,
    /// The truth: the air around the meat, °C.
    pub true_pit_c: f64,
}

/// The samples of a cook, as an iterator (ends at the scenario's limit). Bluetooth gaps are
/// missing samples.
#[derive(Clone, Debug)]
pub struct CookSamples {
    cook: Cook,
    now_ms: i64,
    end_ms: i64,
    interval_ms: u64,
    pit_probe: bool,
}

impl Iterator for CookSamples {
    type Item = CookSample;

    fn next(&mut self) -> Option<CookSample> {
        let dt = self.interval_ms as f64 / 1_000.0;
        loop {
            self.now_ms += self.interval_ms as i64;
            if self.now_ms > self.end_ms {
                return None;
            }
            let step = self.cook.step(dt);
            if step.in_gap {
                continue;
            }
            return Some(CookSample {
                event_time_ms: self.now_ms,
                meat_c: step.meat_readings_c[0],
                pit_c: self.pit_probe.then_some(step.pit_reading_c),
                core_c: step.cores_c[0],
                true_pit_c: step.pit_c,
            });
        }
    }
}

/// A whole simulated cook, shaped like a recorded one.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedCook {
    /// The scenario's name.
    pub name: String,
    /// Its target, °C.
    pub target_c: f64,
    /// Meat probe: (epoch ms, °C).
    pub meat: Vec<(i64, Option<f64>)>,
    /// Pit probe: (epoch ms, °C); empty without a pit probe.
    pub pit: Vec<(i64, Option<f64>)>,
    /// The true centre temperature at each meat sample.
    pub core: Vec<(i64, f64)>,
    /// When the centre reached the target, if it did.
    pub core_done_ms: Option<i64>,
    /// The smoker's hidden parameters.
    pub smoker: SmokerTraits,
    /// The piece's weight, kg (what a user would give the cook).
    pub weight_kg: Option<f64>,
}

impl CookScenario {
    /// A usual cook of `meat` on a `pit` for `seed`: the cut's usual pit temperature and
    /// target, device `smoker-1`, cook 0, a sample every 30 s, no wrap, a pit probe, at most
    /// 30 hours.
    pub fn new(meat: MeatKind, pit: PitKind, seed: u64) -> Self {
        let mut rng = Rng::derived(seed, &[stream::SCENARIO]);
        let resolved = meat.resolve(&mut rng);
        Self {
            name: format!("{} on a {} pit, seed {seed}", resolved.name(), pit.name()),
            seed,
            device_id: "smoker-1".to_owned(),
            cook_number: 0,
            meat: resolved,
            model: HeatModel::Conduction,
            weight_kg: None,
            pit,
            pit_setpoint_c: resolved.typical_pit_c(rng.unit()),
            wrap_at_c: None,
            probe_off_centre: None,
            bluetooth_gaps: false,
            probe_pulls: false,
            pit_probe: true,
            target_c: resolved.typical_target_c(),
            interval_ms: 30_000,
            start_ms: 1_800_000_000_000,
            limit_ms: 30 * 3_600_000,
        }
    }

    /// The smoker's hidden parameters.
    pub fn smoker(&self) -> SmokerTraits {
        SmokerTraits::for_device(self.seed, &self.device_id)
    }

    /// The samples, from the first interval after the start to the limit.
    pub fn samples(&self) -> CookSamples {
        let spec = CookSpec {
            meat: self.meat,
            model: self.model,
            weight_kg: self.weight_kg,
            pit: self.pit,
            pit_setpoint_c: self.pit_setpoint_c,
            wrap_at_c: self.wrap_at_c,
            probe_off_centre: self.probe_off_centre,
            bluetooth_gaps: self.bluetooth_gaps,
            probe_pulls: self.probe_pulls,
            meat_probes: 1,
        };
        let cook = Cook::new(
            self.seed,
            &self.device_id,
            self.cook_number,
            &self.smoker(),
            &spec,
        );
        CookSamples {
            cook,
            now_ms: self.start_ms,
            end_ms: self.start_ms + self.limit_ms,
            interval_ms: self.interval_ms.max(1),
            pit_probe: self.pit_probe,
        }
    }

    /// Runs the cook until the meat probe reads a degree past the target (or the limit).
    pub fn run(&self) -> SimulatedCook {
        let samples = self.samples();
        let mut cook = SimulatedCook {
            name: self.name.clone(),
            target_c: self.target_c,
            meat: Vec::new(),
            pit: Vec::new(),
            core: Vec::new(),
            core_done_ms: None,
            smoker: self.smoker(),
            weight_kg: samples.cook.weight_kg(),
        };
        for s in samples {
            cook.meat.push((s.event_time_ms, Some(s.meat_c)));
            if let Some(pit) = s.pit_c {
                cook.pit.push((s.event_time_ms, Some(pit)));
            }
            cook.core.push((s.event_time_ms, s.core_c));
            if cook.core_done_ms.is_none() && s.core_c >= self.target_c {
                cook.core_done_ms = Some(s.event_time_ms);
            }
            if s.meat_c > self.target_c + 1.0 {
                break;
            }
        }
        cook
    }
}

/// Twelve diverse cooks, the same every time: each cut on each kind of real pit, both
/// physical models, some wrapped, some with Bluetooth gaps, a pulled probe or no pit probe.
/// Seeds 1–12, one smoker each.
pub fn variety_suite() -> Vec<CookScenario> {
    use HeatModel::{Conduction, Lumped};
    use MeatKind::{Brisket, Chicken, PorkShoulder, Roast};
    use PitKind::{Kettle, Offset, Pellet};
    let plan = [
        (Chicken, Kettle, Conduction),
        (Chicken, Pellet, Lumped),
        (Chicken, Offset, Conduction),
        (Roast, Pellet, Conduction),
        (Roast, Kettle, Lumped),
        (Roast, Offset, Conduction),
        (PorkShoulder, Offset, Conduction),
        (PorkShoulder, Pellet, Lumped),
        (PorkShoulder, Kettle, Conduction),
        (Brisket, Offset, Lumped),
        (Brisket, Pellet, Conduction),
        (Brisket, Kettle, Conduction),
    ];
    plan.iter()
        .zip(1u64..)
        .map(|(&(meat, pit, model), seed)| {
            let mut s = CookScenario::new(meat, pit, seed);
            s.model = model;
            s.device_id = format!("suite-{seed}");
            s.bluetooth_gaps = seed % 3 == 0;
            s.probe_pulls = seed % 4 == 1;
            s.pit_probe = seed % 5 != 0;
            if matches!(meat, Brisket | PorkShoulder) && seed % 2 == 0 {
                s.wrap_at_c = Some(62.0);
            }
            s.name = format!(
                "{} {} on a {} pit ({} model{}), seed {seed}",
                if s.wrap_at_c.is_some() {
                    "wrapped"
                } else {
                    "unwrapped"
                },
                meat.name(),
                pit.name(),
                model.name(),
                if s.pit_probe { "" } else { ", no pit probe" },
            );
            s
        })
        .collect()
}

/// `count` cooks of one smoker (`seed`, `device_id`), in order: the same hidden parameters,
/// each cook its own piece of `meat`, pit set point, probe placement and noise.
pub fn smoker_cooks(seed: u64, device_id: &str, meat: MeatKind, count: u32) -> Vec<CookScenario> {
    (0..count)
        .map(|n| {
            let mut rng = Rng::derived(seed, &[stream::SCENARIO, u64::from(n) + 1]);
            let mut s = CookScenario::new(meat, PitKind::Mixed, seed);
            s.device_id = device_id.to_owned();
            s.cook_number = n;
            s.meat = meat.resolve(&mut rng);
            s.pit_setpoint_c = s.meat.typical_pit_c(rng.unit());
            s.target_c = s.meat.typical_target_c();
            s.start_ms += i64::from(n) * 7 * 86_400_000;
            s.name = format!(
                "{device_id} cook {} ({}), seed {seed}",
                n + 1,
                s.meat.name()
            );
            s
        })
        .collect()
}
