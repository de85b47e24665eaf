//! Pits that behave differently: the temperature of the air around the meat over a cook.

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::smoker::SmokerTraits;

/// How a simulated pit holds its temperature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PitKind {
    /// An ideal pit at the set point from the first reading, with noise and a lid-open dip
    /// about every 45 minutes (the simulator's original pit).
    #[default]
    Steady,
    /// A charcoal kettle: warms up from the ambient temperature, then drifts down as the
    /// charcoal burns until the cook adds more; the lid is opened often (deep, slow dips).
    Kettle,
    /// A stick-burning offset: slow to warm up, then a saw-tooth — a flare when a split goes
    /// on every 45–90 minutes, a sag of 15 °C or more before the next one.
    Offset,
    /// A pellet grill: warms up quickly, then its controller holds the set point within
    /// ±3 °C; the lid stays shut.
    Pellet,
    /// Each device's own kind, one of the three above, from its hidden parameters.
    Mixed,
}

impl PitKind {
    /// The kind a device uses: `Mixed` becomes the smoker's own.
    pub(crate) fn resolve(self, traits: &SmokerTraits) -> PitKind {
        if self == PitKind::Mixed {
            traits.pit
        } else {
            self
        }
    }

    /// Its name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            PitKind::Steady => "steady",
            PitKind::Kettle => "kettle",
            PitKind::Offset => "offset",
            PitKind::Pellet => "pellet",
            PitKind::Mixed => "mixed",
        }
    }
}

/// A pit over one cook.
#[derive(Clone, Debug)]
pub(crate) struct Pit {
    kind: PitKind,
    setpoint_c: f64,
    /// The air temperature the fire is heading for, before lid-open dips, °C.
    lagged_c: f64,
    /// Depth of the current lid-open dip, °C.
    dip_c: f64,
    /// Warming up from the ambient temperature until near the set point.
    ramping: bool,
    ramp_s: f64,
    lid_opens_per_s: f64,
    /// Kettle: °C below the set point the burning charcoal has fallen, and when the cook
    /// adds more.
    drift_c: f64,
    drift_per_s: f64,
    refuel_at_drift_c: f64,
    /// Offset: seconds since the last split, when the next goes on, and its flare.
    since_split_s: f64,
    next_split_s: f64,
    flare_c: f64,
    sag_c: f64,
    refuel_minutes: f64,
    /// Pellet: seconds into the controller's cycle and its period.
    elapsed_s: f64,
    cycle_s: f64,
    rng: Rng,
}

impl Pit {
    /// A pit lit at the start of a cook on a day at `ambient_c`.
    pub(crate) fn new(
        kind: PitKind,
        setpoint_c: f64,
        ambient_c: f64,
        traits: &SmokerTraits,
        mut rng: Rng,
    ) -> Self {
        let ramping = kind != PitKind::Steady;
        let lid_opens_per_hour = match kind {
            PitKind::Kettle => 1.5 * traits.lid_opens_per_hour,
            PitKind::Offset => 0.2 * traits.lid_opens_per_hour,
            PitKind::Pellet => 0.0,
            PitKind::Steady | PitKind::Mixed => traits.lid_opens_per_hour,
        };
        let refuel_at_drift_c = rng.range(12.0, 25.0);
        let first_split = rng.range(0.8, 1.2) * traits.refuel_minutes * 60.0;
        Self {
            kind,
            setpoint_c,
            lagged_c: if ramping { ambient_c } else { setpoint_c },
            dip_c: 0.0,
            ramping,
            // Time constant of warming up: a pellet's fan and auger are quick, an offset's
            // mass of steel slow.
            ramp_s: traits.ramp_scale
                * 60.0
                * match kind {
                    PitKind::Pellet => 5.0,
                    PitKind::Kettle => 10.0,
                    _ => 18.0,
                },
            lid_opens_per_s: lid_opens_per_hour / 3_600.0,
            drift_c: 0.0,
            drift_per_s: 0.35 * traits.sag_c_per_hour / 3_600.0,
            refuel_at_drift_c,
            since_split_s: 0.0,
            next_split_s: first_split,
            flare_c: rng.range(8.0, 20.0),
            sag_c: traits.sag_c_per_hour,
            refuel_minutes: traits.refuel_minutes,
            elapsed_s: 0.0,
            cycle_s: rng.range(600.0, 960.0),
            rng,
        }
    }

    /// The air temperature the fire heads for now, °C.
    fn target_c(&self) -> f64 {
        match self.kind {
            PitKind::Kettle => self.setpoint_c - self.drift_c,
            PitKind::Offset => {
                let hours = self.since_split_s / 3_600.0;
                self.setpoint_c
                    + self.flare_c * (-self.since_split_s / 720.0).exp()
                    + self.sag_c * (0.25 - hours.powf(1.5))
            }
            PitKind::Pellet => {
                self.setpoint_c
                    + 1.5 * (std::f64::consts::TAU * self.elapsed_s / self.cycle_s).sin()
            }
            PitKind::Steady | PitKind::Mixed => self.setpoint_c,
        }
    }

    /// Opens the lid for a minute or two (to wrap the meat): a dip of 20–35 °C.
    pub(crate) fn open_lid(&mut self) {
        self.dip_c = self.dip_c.max(self.rng.range(20.0, 35.0));
    }

    /// Advances `dt` seconds; the true air temperature around the meat, °C.
    pub(crate) fn step(&mut self, dt: f64) -> f64 {
        self.elapsed_s += dt;
        if !self.ramping {
            match self.kind {
                PitKind::Kettle => {
                    self.drift_c += self.drift_per_s * dt;
                    if self.drift_c > self.refuel_at_drift_c {
                        // Fresh charcoal: hotter than asked for a while.
                        self.drift_c = -self.rng.range(3.0, 10.0);
                        self.refuel_at_drift_c = self.rng.range(12.0, 25.0);
                    }
                }
                PitKind::Offset => {
                    self.since_split_s += dt;
                    if self.since_split_s >= self.next_split_s {
                        self.since_split_s = 0.0;
                        self.next_split_s = self.rng.range(0.8, 1.2) * self.refuel_minutes * 60.0;
                        self.flare_c = self.rng.range(8.0, 20.0);
                    }
                }
                _ => {}
            }
        }
        if self.rng.unit() < dt * self.lid_opens_per_s {
            let (lo, hi) = if self.kind == PitKind::Kettle {
                (25.0, 50.0)
            } else {
                (20.0, 40.0)
            };
            self.dip_c = self.dip_c.max(self.rng.range(lo, hi));
        }
        let recovery_s = if self.kind == PitKind::Kettle {
            150.0
        } else {
            90.0
        };
        self.dip_c *= (-dt / recovery_s).exp();
        let target = self.target_c();
        let tau = if self.ramping {
            self.ramp_s
        } else {
            match self.kind {
                PitKind::Pellet => 45.0,
                PitKind::Offset => 300.0,
                PitKind::Kettle => 240.0,
                PitKind::Steady | PitKind::Mixed => 0.0,
            }
        };
        self.lagged_c = if tau > 0.0 {
            target + (self.lagged_c - target) * (-dt / tau).exp()
        } else {
            target
        };
        if self.ramping && self.lagged_c > target - 3.0 {
            self.ramping = false;
        }
        self.lagged_c - self.dip_c
    }

    /// What the pit probe reads for a true temperature `true_c`.
    pub(crate) fn reading(&mut self, true_c: f64) -> f64 {
        let noise = match self.kind {
            PitKind::Pellet => 0.6,
            PitKind::Kettle => 1.2,
            _ => 1.5,
        };
        ((true_c + noise * self.rng.normal()) * 10.0).round() / 10.0
    }

    /// The kind this pit is.
    pub(crate) fn kind(&self) -> PitKind {
        self.kind
    }
}
