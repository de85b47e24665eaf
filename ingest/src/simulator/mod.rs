//! A physics-based grill simulator: a source for demos, tests and load, and single simulated
//! cooks for evaluating predictions.
//!
//! **The original grill** (the defaults: `meat = "generic"`, `pit = "steady"`, none of the
//! other variety keys). Each simulated device has a pit probe and `probes - 1`
//! meat probes. The pit holds a set point with noise and now and then a lid-open dip (a
//! sudden drop that recovers exponentially). Meat heats toward the pit by Newton's law,
//! `dT/dt = k (T_pit - T)`, minus evaporative cooling that sets in above about 62 °C and
//! absorbs almost all of the heat flow while the surface is wet — the *stall*: a plateau of
//! two hours or more in the mid-60s — until the surface dries and the temperature climbs
//! again. Meat probes are occasionally unplugged for 10–60 s (readings with no temperature)
//! and plugged back in. Everything random comes from one seeded generator in a fixed order,
//! so a seed and a start time determine every reading.
//!
//! **Variety** (any other setting): cuts of different size and shape heated by one of two
//! physical models ([`meat`]: a size-aware lumped model or 1-D conduction, both with a stall
//! from surface evaporation), pits that ramp up, drift, sag and get refuelled ([`pit`]),
//! wraps, probes off-centre, noisy, pulled out and pushed back in, Bluetooth gaps with no
//! readings at all ([`CookScenario`]). Each device is a smoker with hidden parameters of its
//! own ([`SmokerTraits`], from the seed and the device id alone) and each of its cooks
//! (`cook_number`) draws from streams of its own, so one setting never shifts another's
//! numbers. [`CookScenario`], [`variety_suite`] and [`smoker_cooks`] give single cooks for
//! evaluations and planners.
//!
//! In real-time mode ticks follow the wall clock; otherwise [`Simulator::tick`] can be
//! driven as fast as the caller likes (benchmarks, tests).

mod classic;
mod cook;
pub mod meat;
pub mod pit;
mod rng;
mod scenario;
mod smoker;

use std::time::Duration;

use async_trait::async_trait;
use emberline_schemas::events::{CookStarted, DeviceRegistered, DeviceStatus, ProbeReading};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{EventSink, IngestError, Source};
use cook::{Cook, CookSpec};
use emberline_common::clock::now_ms;
pub use meat::{HeatModel, MeatKind};
pub use pit::PitKind;
use rng::Rng;
pub use scenario::{
    CookSample, CookSamples, CookScenario, SimulatedCook, smoker_cooks, variety_suite,
};
pub use smoker::SmokerTraits;

/// One time series of a probe: (event time ms, temperature °C or none).
pub type Series = Vec<(i64, Option<f64>)>;

/// One cook of the classic simulator (its defaults: pit 120 °C, one food probe, a reading
/// every 10 s from 2027-01-15 08:00 UTC) for `seed`, until the food passes `target_c` by a
/// degree or `limit_ms` of cook time: the pit's and the food's series. What prediction
/// scoring replays.
pub fn classic_cook(seed: u64, target_c: f64, limit_ms: i64) -> (Series, Series) {
    let config = SimulatorConfig {
        devices: 1,
        probes: 2,
        seed,
        interval_ms: 10_000,
        ..SimulatorConfig::default()
    };
    let start = 1_800_000_000_000;
    let mut sim = Simulator::new(config, start);
    let (mut pit, mut meat) = (Vec::new(), Vec::new());
    while sim.now_ms() < start + limit_ms {
        let mut done = false;
        for r in sim.tick(None) {
            let point = (r.event_time, r.temperature_c);
            if r.probe_id == "pit" {
                pit.push(point);
            } else {
                done |= r.temperature_c.is_some_and(|t| t > target_c + 1.0);
                meat.push(point);
            }
        }
        if done {
            break;
        }
    }
    (pit, meat)
}

/// Settings of the simulator source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// The tenant whose devices these are (`default` for a single household).
    pub tenant: String,
    /// Number of simulated devices.
    pub devices: u32,
    /// Probes per device (the first is the pit probe); at least 1.
    pub probes: u32,
    /// Seed of the random generator.
    pub seed: u64,
    /// Time between readings of a probe, ms.
    pub interval_ms: u64,
    /// Pit set point, °C.
    pub pit_setpoint_c: f64,
    /// Simulated seconds per real second (1 = real time). Speeds up a demo cook.
    pub speedup: u32,
    /// When set, a new simulated cook comes with a cook session on each device, its meat
    /// probes aimed at this temperature (°C) — as a user would start one — so predictions
    /// and the target-reached alert show at once. A resumed cook starts none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cook_target_c: Option<f64>,
    /// What is cooking; each meat probe is in a piece of its own.
    #[serde(skip_serializing_if = "is_default")]
    pub meat: MeatKind,
    /// The physical model heating the cuts (not the generic one).
    #[serde(skip_serializing_if = "is_default")]
    pub model: HeatModel,
    /// How the pit behaves.
    #[serde(skip_serializing_if = "is_default")]
    pub pit: PitKind,
    /// Weight of each piece, kg; unset draws a usual weight for the cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_kg: Option<f64>,
    /// Wrap the meat when the first meat probe reads this, °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrap_at_c: Option<f64>,
    /// Where the probes sit: share of the half-thickness from the centre of the thickest
    /// part (0) to the surface (1); unset is each smoker's habit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_off_centre: Option<f64>,
    /// Bluetooth gaps: a device sends nothing for 1–10 minutes now and then.
    #[serde(skip_serializing_if = "is_default")]
    pub bluetooth_gaps: bool,
    /// Meat probes are pulled out for 1–4 minutes about every 3 hours and pushed back in
    /// somewhere else.
    #[serde(skip_serializing_if = "is_default")]
    pub probe_pulls: bool,
    /// Which cook of each smoker this is: another number is another cook on the same
    /// smokers (same hidden parameters, other pieces of meat, noise and gaps).
    #[serde(skip_serializing_if = "is_default")]
    pub cook_number: u32,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            tenant: emberline_common::tenant::DEFAULT_TENANT.into(),
            devices: 1,
            probes: 4,
            seed: 42,
            interval_ms: 1_000,
            pit_setpoint_c: 120.0,
            speedup: 1,
            cook_target_c: None,
            meat: MeatKind::Generic,
            model: HeatModel::Conduction,
            pit: PitKind::Steady,
            weight_kg: None,
            wrap_at_c: None,
            probe_off_centre: None,
            bluetooth_gaps: false,
            probe_pulls: false,
            cook_number: 0,
        }
    }
}

impl SimulatorConfig {
    /// Whether these settings run the original grill (every variety key at its default),
    /// whose readings for a seed never change.
    pub fn is_classic(&self) -> bool {
        let varieties = Self {
            devices: self.devices,
            probes: self.probes,
            seed: self.seed,
            interval_ms: self.interval_ms,
            pit_setpoint_c: self.pit_setpoint_c,
            speedup: self.speedup,
            cook_target_c: self.cook_target_c,
            ..Self::default()
        };
        *self == varieties
    }

    /// The checks `run` makes, as an error naming the setting.
    fn validate(&self) -> Result<(), String> {
        if self.interval_ms == 0 || self.speedup == 0 {
            return Err("interval_ms and speedup must be at least 1".into());
        }
        if let Some(w) = self.weight_kg
            && !(0.2..=20.0).contains(&w)
        {
            return Err(format!("weight_kg = {w}: must be 0.2–20 kg"));
        }
        if let Some(p) = self.probe_off_centre
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("probe_off_centre = {p}: must be 0–1"));
        }
        Ok(())
    }
}

/// What runs on one device.
#[derive(Clone, Debug)]
enum World {
    Classic(classic::Grill),
    Varied(Box<Cook>),
}

#[derive(Clone, Debug)]
struct Device {
    id: String,
    battery: f64,
    world: World,
}

/// The simulator state.
#[derive(Clone, Debug)]
pub struct Simulator {
    config: SimulatorConfig,
    /// The original grill's shared stream.
    rng: Rng,
    devices: Vec<Device>,
    /// Simulated time of the next tick, epoch ms.
    now_ms: i64,
    ticks: u64,
}

impl Simulator {
    /// A simulator whose first tick is at `start_ms`.
    pub fn new(config: SimulatorConfig, start_ms: i64) -> Self {
        let mut rng = Rng(config.seed);
        let meat_probes = config.probes.max(1) - 1;
        let classic = config.is_classic();
        let spec = CookSpec {
            meat: config.meat,
            model: config.model,
            weight_kg: config.weight_kg,
            pit: config.pit,
            pit_setpoint_c: config.pit_setpoint_c,
            wrap_at_c: config.wrap_at_c,
            probe_off_centre: config.probe_off_centre,
            bluetooth_gaps: config.bluetooth_gaps,
            probe_pulls: config.probe_pulls,
            meat_probes: meat_probes as usize,
        };
        let devices = (0..config.devices)
            .map(|d| {
                let id = format!("sim-{}", d + 1);
                let world = if classic {
                    World::Classic(classic::Grill::new(
                        config.pit_setpoint_c,
                        meat_probes,
                        &mut rng,
                    ))
                } else {
                    let traits = SmokerTraits::for_device(config.seed, &id);
                    World::Varied(Box::new(Cook::new(
                        config.seed,
                        &id,
                        config.cook_number,
                        &traits,
                        &spec,
                    )))
                };
                Device {
                    id,
                    battery: 100.0,
                    world,
                }
            })
            .collect();
        Self {
            config,
            rng,
            devices,
            now_ms: start_ms,
            ticks: 0,
        }
    }

    /// Device ids, in order.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|d| d.id.as_str())
    }

    /// Probe ids of every device: `pit`, then `meat-1`, `meat-2`, ….
    pub fn probe_ids(&self) -> Vec<String> {
        let mut ids = vec!["pit".to_owned()];
        ids.extend((1..self.config.probes.max(1)).map(|i| format!("meat-{i}")));
        ids
    }

    /// Simulated time of the next tick, epoch ms.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Registration events for every device.
    pub fn registrations(&self) -> Vec<DeviceRegistered> {
        let probes = self.probe_ids();
        self.devices
            .iter()
            .enumerate()
            .map(|(i, d)| DeviceRegistered {
                device_id: d.id.clone(),
                event_time: self.now_ms,
                tenant: "local".into(),
                model: Some("Emberline simulator".into()),
                name: format!("Simulated grill {}", i + 1),
                probe_labels: probes
                    .iter()
                    .map(|p| {
                        let label = if p == "pit" {
                            "Pit".to_owned()
                        } else {
                            p.replace("meat-", "Meat ")
                        };
                        (p.clone(), label)
                    })
                    .collect(),
                source: "simulator".into(),
            })
            .collect()
    }

    /// Status of every device now.
    pub fn statuses(&self, received_ms: i64) -> Vec<DeviceStatus> {
        self.devices
            .iter()
            .map(|d| DeviceStatus {
                device_id: d.id.clone(),
                event_time: self.now_ms,
                received_time: received_ms,
                online: true,
                battery_percent: Some((d.battery * 10.0).round() / 10.0),
                signal_dbm: Some(-55),
                firmware: Some("sim-1".into()),
                source: "simulator".into(),
                note: None,
                attributes: [(
                    "simulator.interval_ms".to_owned(),
                    self.config.interval_ms.to_string(),
                )]
                .into(),
            })
            .collect()
    }

    /// One `CookStarted` per device, begun at the simulator's start, every meat probe aimed
    /// at `target_c`.
    pub fn cook_commands(&self, target_c: f64) -> Vec<CookStarted> {
        let probes = self.probe_ids();
        self.devices
            .iter()
            .map(|d| CookStarted {
                cook_id: format!("sim-{}-{}", self.now_ms, d.id),
                device_id: d.id.clone(),
                event_time: self.now_ms,
                what: Some(match &d.world {
                    World::Classic(_) => "Simulated brisket".into(),
                    World::Varied(cook) => format!(
                        "Simulated {}{} on a {} pit",
                        cook.meat().name().replace('_', " "),
                        cook.weight_kg()
                            .map(|w| format!(" ({w:.1} kg)"))
                            .unwrap_or_default(),
                        cook.pit_kind().name()
                    ),
                }),
                targets_c: probes
                    .iter()
                    .filter(|p| p.as_str() != "pit")
                    .map(|p| (p.clone(), target_c))
                    .collect(),
                pit_min_c: None,
                pit_max_c: None,
                meat: None,
                weight_kg: None,
                serve_at_ms: None,
                rest_min: None,
            })
            .collect()
    }

    /// Runs the simulation forward, without producing readings, until the next tick is at or
    /// after `until_ms`: a restarted simulator continues its cook where it would be now
    /// (the time it was down is a gap in the data, as with a real thermometer).
    pub fn skip_to(&mut self, until_ms: i64) {
        while self.now_ms < until_ms {
            self.tick(None);
        }
    }

    /// Advances one interval and returns the readings taken at the new time; `received_ms`
    /// is stamped as the receive time (pass the event time for fully deterministic output).
    /// A device in a Bluetooth gap sends nothing.
    pub fn tick(&mut self, received_ms: Option<i64>) -> Vec<ProbeReading> {
        let dt = self.config.interval_ms as f64 / 1_000.0;
        let now = self.now_ms;
        let received = received_ms.unwrap_or(now);
        let probes = self.probe_ids();
        let mut out = Vec::with_capacity(self.devices.len() * probes.len());
        for device in &mut self.devices {
            let (pit, meats) = match &mut device.world {
                World::Classic(grill) => {
                    let (pit, meats) = grill.step(
                        self.config.pit_setpoint_c,
                        self.config.interval_ms,
                        &mut self.rng,
                    );
                    (Some(pit), meats)
                }
                World::Varied(cook) => {
                    let step = cook.step(dt);
                    if step.in_gap {
                        (None, Vec::new())
                    } else {
                        (
                            Some(step.pit_reading_c),
                            step.meat_readings_c.into_iter().map(Some).collect(),
                        )
                    }
                }
            };
            device.battery = (device.battery - dt / 36_000.0).max(0.0);
            if let Some(pit) = pit {
                out.push(reading(&device.id, &probes[0], now, received, Some(pit)));
            }
            for (probe, temp) in probes[1..].iter().zip(meats) {
                out.push(reading(&device.id, probe, now, received, temp));
            }
        }
        self.now_ms += self.config.interval_ms as i64;
        self.ticks += 1;
        out
    }
}

fn reading(device: &str, probe: &str, now: i64, received: i64, temp: Option<f64>) -> ProbeReading {
    ProbeReading {
        device_id: device.to_owned(),
        probe_id: probe.to_owned(),
        event_time: now,
        received_time: received,
        temperature_c: temp,
        source: "simulator".to_owned(),
    }
}

/// Device status is re-sent this often (ticks).
const STATUS_EVERY_TICKS: u64 = 60;

#[async_trait]
impl Source for Simulator {
    fn name(&self) -> &str {
        "simulator"
    }

    async fn run(
        &mut self,
        sink: EventSink,
        shutdown: CancellationToken,
    ) -> Result<(), IngestError> {
        if let Err(reason) = self.config.validate() {
            return Err(IngestError::Config {
                source_name: "simulator".into(),
                reason,
            });
        }
        // Stopped while the log is failing: what was not appended is simply not produced.
        let stopped = |r: Result<_, IngestError>| match r {
            Ok(_) => Ok(false),
            Err(IngestError::ShutDown { .. }) => Ok(true),
            Err(e) => Err(e),
        };
        // A new cook (not one resumed with `skip_to`) starts its cook session first.
        if let Some(target) = self.config.cook_target_c
            && self.ticks == 0
            && stopped(sink.cooks_started(&self.cook_commands(target)).await)?
        {
            return Ok(());
        }
        if stopped(sink.registrations(&self.registrations()).await)? {
            return Ok(());
        }
        let metrics = crate::metrics::SourceMetrics::new("simulator");
        let real_interval = Duration::from_millis(self.config.interval_ms) / self.config.speedup;
        let mut ticker = tokio::time::interval(real_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            let received = now_ms();
            if self.ticks.is_multiple_of(STATUS_EVERY_TICKS)
                && stopped(sink.statuses(&self.statuses(received)).await)?
            {
                return Ok(());
            }
            let readings = self.tick(Some(received));
            metrics.polled();
            if stopped(sink.readings(&readings).await)? {
                return Ok(());
            }
            metrics.appended(readings.len(), received);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: SimulatorConfig, ticks: usize) -> Vec<ProbeReading> {
        let mut sim = Simulator::new(config, 0);
        (0..ticks).flat_map(|_| sim.tick(None)).collect()
    }

    #[test]
    fn same_seed_same_readings_other_seed_other_readings() {
        let a = run(SimulatorConfig::default(), 500);
        let b = run(SimulatorConfig::default(), 500);
        let c = run(
            SimulatorConfig {
                seed: 7,
                ..Default::default()
            },
            500,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 500 * 4);
    }

    #[test]
    fn meat_heats_toward_the_pit_through_a_stall() {
        // 14 simulated hours at one reading a minute.
        let config = SimulatorConfig {
            probes: 2,
            interval_ms: 60_000,
            ..Default::default()
        };
        let readings = run(config, 14 * 60);
        let meat: Vec<(i64, f64)> = readings
            .iter()
            .filter(|r| r.probe_id == "meat-1")
            .filter_map(|r| r.temperature_c.map(|t| (r.event_time, t)))
            .collect();
        let first = meat.first().expect("readings").1;
        let last = meat.last().expect("readings").1;
        assert!(first < 10.0, "starts cold: {first}");
        assert!(last > 95.0 && last < 125.0, "ends near the pit: {last}");
        // The stall: some hour in which the meat, between 60 and 80 °C, rises under 3 °C.
        let stalled = meat.windows(60).any(|w| {
            let (a, b) = (w[0].1, w[59].1);
            (60.0..80.0).contains(&a) && (b - a).abs() < 3.0
        });
        assert!(stalled, "no stall found");
        // Before the stall it rises faster than that.
        let early_rise = meat
            .windows(60)
            .find(|w| w[0].1 > 20.0)
            .map(|w| w[59].1 - w[0].1);
        assert!(
            early_rise.unwrap_or(0.0) > 10.0,
            "early rise {early_rise:?}"
        );
    }

    #[test]
    fn skipping_ahead_continues_the_same_cook() {
        let config = SimulatorConfig {
            devices: 2,
            ..Default::default()
        };
        let mut continuous = Simulator::new(config.clone(), 0);
        let mut restarted = Simulator::new(config, 0);
        for _ in 0..600 {
            continuous.tick(None);
        }
        restarted.skip_to(599_500);
        assert_eq!(restarted.now_ms(), 600_000);
        assert_eq!(restarted.tick(None), continuous.tick(None));
    }

    #[test]
    fn probes_are_unplugged_and_plugged_back_in() {
        let readings = run(SimulatorConfig::default(), 20 * 3_600);
        let unplugged = readings
            .iter()
            .filter(|r| r.temperature_c.is_none())
            .count();
        assert!(unplugged > 0, "never unplugged");
        assert!(
            readings
                .iter()
                .all(|r| r.probe_id == "pit" || r.probe_id.starts_with("meat-"))
        );
        // Each unplugged spell ends: the last readings of every probe have a temperature.
        let tail = &readings[readings.len() - 4 * 120..];
        for probe in ["meat-1", "meat-2", "meat-3"] {
            assert!(
                tail.iter()
                    .any(|r| r.probe_id == probe && r.temperature_c.is_some())
            );
        }
    }

    #[test]
    fn the_pit_dips_when_the_lid_opens() {
        let readings = run(SimulatorConfig::default(), 6 * 3_600);
        let pit_min = readings
            .iter()
            .filter(|r| r.probe_id == "pit")
            .filter_map(|r| r.temperature_c)
            .fold(f64::MAX, f64::min);
        assert!(
            pit_min < 100.0,
            "no lid-open dip in six hours: min {pit_min}"
        );
    }
}
