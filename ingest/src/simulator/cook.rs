//! One varied cook on one device: a pit, a piece of meat per meat probe, and the probes as a
//! cook handles them — placed off-centre, noisy, out of Bluetooth range now and then, pulled
//! out and pushed back in.

use super::meat::{HeatModel, MeatKind, Piece};
use super::pit::{Pit, PitKind};
use super::rng::{Rng, hash_name, stream};
use super::smoker::SmokerTraits;

/// What makes a cook, beyond the smoker it is on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CookSpec {
    pub(crate) meat: MeatKind,
    pub(crate) model: HeatModel,
    pub(crate) weight_kg: Option<f64>,
    pub(crate) pit: PitKind,
    pub(crate) pit_setpoint_c: f64,
    pub(crate) wrap_at_c: Option<f64>,
    pub(crate) probe_off_centre: Option<f64>,
    pub(crate) bluetooth_gaps: bool,
    pub(crate) probe_pulls: bool,
    pub(crate) meat_probes: usize,
}

/// A meat probe as the cook handles it.
#[derive(Clone, Debug)]
struct Probe {
    off_centre: f64,
    /// What the probe's tip is at, °C (it follows the meat, or the air while pulled).
    tip_c: f64,
    /// Seconds left out of the meat.
    pulled_s: f64,
}

/// What the device reports after one step.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Step {
    /// Out of Bluetooth range: nothing reaches the gateway.
    pub(crate) in_gap: bool,
    /// The pit probe's reading and the true pit temperature.
    pub(crate) pit_reading_c: f64,
    pub(crate) pit_c: f64,
    /// Each meat probe's reading, and the true centre of the piece it is in.
    pub(crate) meat_readings_c: Vec<f64>,
    pub(crate) cores_c: Vec<f64>,
}

/// The state of one cook.
#[derive(Clone, Debug)]
pub(crate) struct Cook {
    pit: Pit,
    pit_c: f64,
    pieces: Vec<Piece>,
    probes: Vec<Probe>,
    ambient_c: f64,
    wrap_at_c: Option<f64>,
    wrapped: bool,
    gaps_per_s: f64,
    pulls_per_s: f64,
    gap_s: f64,
    noise_c: f64,
    rng: Rng,
}

impl Cook {
    /// Cook number `cook_number` of the smoker `device_id` under `seed`.
    pub(crate) fn new(
        seed: u64,
        device_id: &str,
        cook_number: u32,
        traits: &SmokerTraits,
        spec: &CookSpec,
    ) -> Self {
        let parts = |s| [s, hash_name(device_id), u64::from(cook_number)];
        let mut meat_rng = Rng::derived(seed, &parts(stream::MEAT));
        let mut probe_rng = Rng::derived(seed, &parts(stream::PROBES));
        let pit_rng = Rng::derived(seed, &parts(stream::PIT));
        let ambient_c = meat_rng.range(5.0, 30.0);
        let kind = spec.meat.resolve(&mut meat_rng);
        let pieces: Vec<Piece> = (0..spec.meat_probes)
            .map(|_| Piece::new(kind, spec.model, spec.weight_kg, traits, &mut meat_rng))
            .collect();
        let probes = pieces
            .iter()
            .map(|p| Probe {
                off_centre: spec
                    .probe_off_centre
                    .unwrap_or_else(|| traits.probe_off_centre * probe_rng.range(0.5, 1.5))
                    .clamp(0.0, 1.0),
                tip_c: p.core_c(),
                pulled_s: 0.0,
            })
            .collect();
        let pit_kind = spec.pit.resolve(traits);
        Self {
            pit: Pit::new(pit_kind, spec.pit_setpoint_c, ambient_c, traits, pit_rng),
            pit_c: if pit_kind == PitKind::Steady {
                spec.pit_setpoint_c
            } else {
                ambient_c
            },
            pieces,
            probes,
            ambient_c,
            wrap_at_c: spec.wrap_at_c,
            wrapped: false,
            gaps_per_s: if spec.bluetooth_gaps {
                traits.gaps_per_hour / 3_600.0
            } else {
                0.0
            },
            pulls_per_s: if spec.probe_pulls {
                1.0 / (3.0 * 3_600.0)
            } else {
                0.0
            },
            gap_s: 0.0,
            noise_c: traits.probe_noise_c,
            rng: probe_rng,
        }
    }

    /// The cut on the grate.
    pub(crate) fn meat(&self) -> MeatKind {
        self.pieces.first().map_or(MeatKind::Generic, Piece::kind)
    }

    /// The first piece's weight, kg.
    pub(crate) fn weight_kg(&self) -> Option<f64> {
        self.pieces.first().map(Piece::weight_kg)
    }

    /// The pit's kind.
    pub(crate) fn pit_kind(&self) -> PitKind {
        self.pit.kind()
    }

    /// Advances `dt` seconds.
    pub(crate) fn step(&mut self, dt: f64) -> Step {
        let pit_c = self.pit_c;
        for piece in &mut self.pieces {
            piece.step(pit_c, dt);
        }
        self.pit_c = self.pit.step(dt);
        let rng = &mut self.rng;
        if self.gap_s > 0.0 {
            self.gap_s -= dt;
        } else if rng.unit() < dt * self.gaps_per_s {
            // Out of range for 1–10 minutes.
            self.gap_s = rng.range(60.0, 600.0);
        }
        let mut meat_readings_c = Vec::with_capacity(self.probes.len());
        for (probe, piece) in self.probes.iter_mut().zip(&self.pieces) {
            let meat_c = piece.at(probe.off_centre, Some(self.pit_c));
            if probe.pulled_s > 0.0 {
                probe.pulled_s -= dt;
                // In the cook's hand: towards the air, 30 s time constant.
                probe.tip_c = self.ambient_c + (probe.tip_c - self.ambient_c) * (-dt / 30.0).exp();
                if probe.pulled_s <= 0.0 {
                    // Pushed back in somewhere else.
                    probe.off_centre = rng.range(0.0, 0.6);
                }
            } else {
                if rng.unit() < dt * self.pulls_per_s {
                    probe.pulled_s = rng.range(60.0, 240.0);
                }
                // The tip settles on the meat around it, 15 s time constant.
                probe.tip_c = meat_c + (probe.tip_c - meat_c) * (-dt / 15.0).exp();
            }
            let reading = probe.tip_c + self.noise_c * rng.normal();
            meat_readings_c.push((reading * 10.0).round() / 10.0);
        }
        if let (Some(at), false) = (self.wrap_at_c, self.wrapped)
            && meat_readings_c.first().is_some_and(|r| *r >= at)
        {
            self.wrapped = true;
            self.pit.open_lid();
            for piece in &mut self.pieces {
                piece.wrap();
            }
        }
        Step {
            in_gap: self.gap_s > 0.0,
            pit_reading_c: self.pit.reading(self.pit_c),
            pit_c: self.pit_c,
            meat_readings_c,
            cores_c: self.pieces.iter().map(Piece::core_c).collect(),
        }
    }
}
