//! Meat: what is cooking, its size and shape, and the heat that flows into it.
//!
//! Two physical models, so that a predictor is never judged only on the world it was tuned
//! on:
//!
//! - **Lumped** ([`HeatModel::Lumped`]): one temperature for the whole piece (its surface
//!   too), heated by Newton's law through a coefficient `U·A / (m·c)` that follows from its
//!   size and shape — `A/V = g/L` (slab g = 1, cylinder 2, sphere 3, `L` the
//!   half-thickness) and `1/U = 1/h + L/((g+2)·k)`, the convective film in series with the
//!   conduction inside. A probe off-centre reads the quasi-steady profile between that
//!   temperature and the surface's.
//! - **Conduction** ([`HeatModel::Conduction`]): one-dimensional heat conduction in a slab,
//!   a cylinder or a sphere (12 shells, explicit finite volumes), heated by convection at
//!   the surface. The centre lags behind the surface: the curve starts slowly, bends
//!   differently from Newton's and the stall reaches the centre smoothed and late.
//!
//! In both, the *stall* is evaporation at the surface: water evaporates at a rate set by
//! the difference between its vapour pressure at the surface temperature (Magnus formula)
//! and that of the pit air (its dew point), `q_e = h · 0.622 λ/(c_air p) · (p_sat(T_s) −
//! p_v)` (Lewis relation). It holds the surface near the wet-bulb temperature (60–70 °C)
//! until the water a cut can give at its surface (kg/m²) is gone. A wrap (foil) stops the
//! evaporation — the stall ends at once, the heating rate jumps — and costs a little
//! convection.

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::smoker::SmokerTraits;

/// What is cooking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeatKind {
    /// The simulator's original cut: Newton's law with a time constant of 2–3.5 h and a
    /// stall of two hours or more in the mid-60s, whatever its size.
    #[default]
    Generic,
    /// A whole packer brisket, 5–7 kg: a slab 6–9 cm thick; 10–14 h at 110–125 °C with a
    /// stall of 1–5 h.
    Brisket,
    /// A bone-in pork shoulder, 3.5–5 kg: a rounded block; 8–12 h at 110–125 °C, a long
    /// stall.
    PorkShoulder,
    /// A chicken, 1.3–2.2 kg, whole (a cylinder) or spatchcocked (a slab): 1–2 h at
    /// 160–200 °C, little or no stall.
    Chicken,
    /// A beef or pork loin roast, 1–2.5 kg: a cylinder; 1–3 h.
    Roast,
    /// Each device (and cook) one of the four above.
    Mixed,
}

impl MeatKind {
    /// The four real cuts.
    pub const CUTS: [MeatKind; 4] = [
        MeatKind::Brisket,
        MeatKind::PorkShoulder,
        MeatKind::Chicken,
        MeatKind::Roast,
    ];

    /// Its name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            MeatKind::Generic => "generic",
            MeatKind::Brisket => "brisket",
            MeatKind::PorkShoulder => "pork_shoulder",
            MeatKind::Chicken => "chicken",
            MeatKind::Roast => "roast",
            MeatKind::Mixed => "mixed",
        }
    }

    /// `Mixed` becomes one of the cuts, drawn from `rng`.
    pub(crate) fn resolve(self, rng: &mut Rng) -> MeatKind {
        if self == MeatKind::Mixed {
            Self::CUTS[(rng.next_u64() % 4) as usize]
        } else {
            self
        }
    }

    /// Where it is usually done, °C.
    pub fn typical_target_c(self) -> f64 {
        match self {
            MeatKind::Chicken => 74.0,
            MeatKind::Roast => 60.0,
            MeatKind::PorkShoulder => 95.0,
            MeatKind::Brisket | MeatKind::Generic | MeatKind::Mixed => 93.0,
        }
    }

    /// The pit temperature it is usually cooked at, °C: somewhere in its usual range.
    pub fn typical_pit_c(self, rng_unit: f64) -> f64 {
        let (lo, hi) = match self {
            MeatKind::Chicken => (160.0, 200.0),
            MeatKind::Roast => (120.0, 160.0),
            MeatKind::PorkShoulder => (110.0, 125.0),
            MeatKind::Brisket => (115.0, 125.0),
            MeatKind::Generic | MeatKind::Mixed => (120.0, 120.0),
        };
        (lo + (hi - lo) * rng_unit).round()
    }

    /// The usual weight range, kg.
    fn weight_range_kg(self) -> (f64, f64) {
        match self {
            MeatKind::Brisket => (5.0, 7.0),
            MeatKind::PorkShoulder => (3.5, 5.0),
            MeatKind::Chicken => (1.3, 2.2),
            MeatKind::Roast => (1.0, 2.5),
            MeatKind::Generic | MeatKind::Mixed => (4.0, 4.0),
        }
    }
}

/// Which physical model heats the meat (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeatModel {
    /// One-dimensional conduction inside the piece.
    #[default]
    Conduction,
    /// One temperature, Newton's law with a coefficient from size and shape.
    Lumped,
}

impl HeatModel {
    /// Its name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            HeatModel::Conduction => "conduction",
            HeatModel::Lumped => "lumped",
        }
    }
}

/// Shells of the conduction model.
const SHELLS: usize = 12;
/// Density of meat, kg/m³.
const DENSITY: f64 = 1_050.0;
/// Latent heat of evaporation of water near 65 °C, J/kg.
const LATENT_HEAT: f64 = 2.35e6;
/// `0.622 λ / (c_air · p_atm)`: kelvins of convective driving force per pascal of vapour
/// pressure difference (Lewis relation).
const EVAPORATION_K_PER_PA: f64 = 0.622 * LATENT_HEAT / (1_006.0 * 101_325.0);
/// Share of the evaporation a wrap lets through (foil keeps the vapour in: the air inside
/// is saturated and the water condenses back), and of the convection.
const WRAPPED_EVAPORATION: f64 = 0.0;
const WRAPPED_CONVECTION: f64 = 0.9;

/// Saturation vapour pressure of water, Pa (Magnus).
fn p_sat(t_c: f64) -> f64 {
    610.94 * (17.625 * t_c / (t_c + 243.04)).exp()
}

/// Geometry: 0 slab, 1 cylinder, 2 sphere (the exponent of the radius in a shell's area).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Slab,
    Cylinder,
    Sphere,
}

impl Shape {
    fn exponent(self) -> i32 {
        match self {
            Shape::Slab => 0,
            Shape::Cylinder => 1,
            Shape::Sphere => 2,
        }
    }
}

#[derive(Clone, Debug)]
enum Thermal {
    /// The original model: Newton coefficient (1/s), moisture 1 → 0.
    Generic {
        t: f64,
        k: f64,
        moisture: f64,
    },
    Lumped {
        t: f64,
    },
    /// Shell temperatures from the centre out.
    Conduction {
        shells: Vec<f64>,
    },
}

/// One piece of meat on the grate.
#[derive(Clone, Debug)]
pub(crate) struct Piece {
    kind: MeatKind,
    weight_kg: f64,
    shape: Shape,
    /// Half-thickness (slab) or radius, m.
    half_m: f64,
    /// Convective and radiant heat-transfer coefficient at 120 °C, W/m²K.
    h: f64,
    conductivity: f64,
    heat_capacity: f64,
    /// Water the surface can still give off, kg/m², and what it started with.
    water: f64,
    water0: f64,
    dew_point_c: f64,
    wrapped: bool,
    thermal: Thermal,
}

/// Where the original model's evaporation sets in, °C, and how sharply.
const STALL_ONSET_C: f64 = 62.0;
const STALL_SHARPNESS_C: f64 = 1.0;
/// Share of the heat flow that evaporation absorbs while the surface is fully moist.
const STALL_DEPTH: f64 = 0.97;
/// Seconds of full evaporation that dry the surface.
const DRYING_S: f64 = 3.0 * 3_600.0;

impl Piece {
    /// A piece of `kind` (not `Mixed`) of about `weight_kg` (else a usual weight), from the
    /// fridge, on a smoker with `traits`.
    pub(crate) fn new(
        kind: MeatKind,
        model: HeatModel,
        weight_kg: Option<f64>,
        traits: &SmokerTraits,
        rng: &mut Rng,
    ) -> Self {
        let start_c = rng.range(2.0, 7.0);
        let (lo, hi) = kind.weight_range_kg();
        let weight_kg = weight_kg.unwrap_or_else(|| rng.range(lo, hi)).max(0.2);
        let volume = weight_kg / DENSITY;
        let side = volume.cbrt();
        let stretch = rng.range(0.88, 1.15);
        let (shape, half_m, water_range) = match kind {
            MeatKind::Brisket => (Shape::Slab, 0.2 * side * stretch, (3.5, 8.0)),
            MeatKind::PorkShoulder => (
                Shape::Sphere,
                0.68 * (3.0 * volume / (4.0 * std::f64::consts::PI)).cbrt() * stretch,
                (3.0, 8.0),
            ),
            MeatKind::Chicken if rng.unit() < 0.5 => {
                (Shape::Slab, 0.2 * side * stretch, (0.1, 0.3))
            }
            MeatKind::Chicken => (Shape::Cylinder, 0.33 * side * stretch, (0.1, 0.3)),
            MeatKind::Roast => (Shape::Cylinder, 0.4 * side * stretch, (0.25, 0.6)),
            MeatKind::Generic | MeatKind::Mixed => (Shape::Slab, 0.2 * side, (1.0, 1.0)),
        };
        // The lumped piece evaporates at its one temperature, so it spends its water only on
        // the plateau; the conduction model's surface starts hours before its centre stalls.
        let model_share = if model == HeatModel::Lumped {
            0.55
        } else {
            1.0
        };
        let water0 = rng.range(water_range.0, water_range.1) * traits.moisture_scale * model_share;
        let h = rng.range(9.0, 13.0) * traits.heat_transfer_scale;
        let conductivity = rng.range(0.42, 0.5);
        let heat_capacity = match kind {
            MeatKind::Chicken => rng.range(3_200.0, 3_500.0),
            _ => rng.range(3_300.0, 3_700.0),
        };
        let thermal = match (kind, model) {
            (MeatKind::Generic | MeatKind::Mixed, _) => Thermal::Generic {
                t: start_c,
                // Time constant 2–3.5 h.
                k: 1.0 / ((2.0 + 1.5 * rng.unit()) * 3_600.0),
                moisture: 1.0,
            },
            (_, HeatModel::Lumped) => Thermal::Lumped { t: start_c },
            (_, HeatModel::Conduction) => Thermal::Conduction {
                shells: vec![start_c; SHELLS],
            },
        };
        Self {
            kind,
            weight_kg,
            shape,
            half_m,
            h,
            conductivity,
            heat_capacity,
            water: water0,
            water0,
            dew_point_c: traits.dew_point_c,
            wrapped: false,
            thermal,
        }
    }

    /// Which cut it is.
    pub(crate) fn kind(&self) -> MeatKind {
        self.kind
    }

    /// Its weight, kg.
    pub(crate) fn weight_kg(&self) -> f64 {
        self.weight_kg
    }

    /// Wraps it (foil or paper).
    pub(crate) fn wrap(&mut self) {
        self.wrapped = true;
    }

    /// The heat-transfer coefficient at pit temperature `pit_c` (radiation grows with it).
    fn h_at(&self, pit_c: f64) -> f64 {
        let wrap = if self.wrapped {
            WRAPPED_CONVECTION
        } else {
            1.0
        };
        self.h * (1.0 + 0.004 * (pit_c - 120.0)).max(0.5) * wrap
    }

    /// Evaporative heat flux at surface temperature `surface_c`, W/m², given `h`.
    fn evaporation(&self, h: f64, surface_c: f64) -> f64 {
        let wet = (self.water / (0.2 * self.water0)).min(1.0);
        let wrap = if self.wrapped {
            WRAPPED_EVAPORATION
        } else {
            1.0
        };
        let pressure = (p_sat(surface_c) - p_sat(self.dew_point_c)).max(0.0);
        h * EVAPORATION_K_PER_PA * pressure * wet * wrap
    }

    /// Advances `dt` seconds in a pit at `pit_c`.
    pub(crate) fn step(&mut self, pit_c: f64, dt: f64) {
        let rho_c = DENSITY * self.heat_capacity;
        let g = f64::from(self.shape.exponent() + 1);
        match &mut self.thermal {
            Thermal::Generic { t, k, moisture } => {
                let onset = 1.0 / (1.0 + (-(*t - STALL_ONSET_C) / STALL_SHARPNESS_C).exp());
                let drive = *k * (pit_c - *t);
                let wet = (*moisture / 0.2).min(1.0);
                let wrap = if self.wrapped { 0.1 } else { 1.0 };
                let evaporation = STALL_DEPTH * drive.max(0.0) * onset * wet * wrap;
                *t += (drive - evaporation) * dt;
                *moisture = (*moisture - onset * wrap * dt / DRYING_S).max(0.0);
            }
            Thermal::Lumped { .. } => {
                let steps = (dt / 30.0).ceil().max(1.0);
                let sub = dt / steps;
                for _ in 0..steps as usize {
                    let Thermal::Lumped { t } = self.thermal else {
                        unreachable!("lumped")
                    };
                    let h = self.h_at(pit_c);
                    let inside = self.half_m / ((g + 2.0) * self.conductivity);
                    let u = 1.0 / (1.0 / h + inside);
                    let flux = u * (pit_c - t);
                    // One temperature, the surface's too: the stall is in it directly.
                    let evaporation = self.evaporation(h, t);
                    let t = t + (flux - evaporation) * g / self.half_m / rho_c * sub;
                    self.water = (self.water - evaporation / LATENT_HEAT * sub).max(0.0);
                    self.thermal = Thermal::Lumped { t };
                }
            }
            Thermal::Conduction { .. } => self.conduct(pit_c, dt),
        }
    }

    /// Explicit finite volumes over the shells, sub-stepped for stability.
    fn conduct(&mut self, pit_c: f64, dt: f64) {
        let rho_c = DENSITY * self.heat_capacity;
        let dx = self.half_m / SHELLS as f64;
        let alpha = self.conductivity / rho_c;
        let stable = 0.12 * dx * dx / alpha;
        let steps = (dt / stable).ceil().max(1.0);
        let sub = dt / steps;
        let m = self.shape.exponent();
        // Face areas and shell volumes, per unit of the missing dimensions.
        let area = |j: usize| (j as f64 * dx).powi(m);
        let volume = |i: usize| {
            let (a, b) = (i as f64 * dx, (i + 1) as f64 * dx);
            (b.powi(m + 1) - a.powi(m + 1)) / f64::from(m + 1)
        };
        let h = self.h_at(pit_c);
        let Thermal::Conduction { shells } = &mut self.thermal else {
            unreachable!("conduction")
        };
        let mut flow = [0.0; SHELLS];
        for _ in 0..steps as usize {
            let surface = shells[SHELLS - 1];
            let wet = (self.water / (0.2 * self.water0)).min(1.0);
            let wrap = if self.wrapped {
                WRAPPED_EVAPORATION
            } else {
                1.0
            };
            let pressure = (p_sat(surface) - p_sat(self.dew_point_c)).max(0.0);
            let evaporation = h * EVAPORATION_K_PER_PA * pressure * wet * wrap;
            for (i, f) in flow.iter_mut().enumerate() {
                let inner = if i == 0 {
                    0.0
                } else {
                    self.conductivity * area(i) * (shells[i - 1] - shells[i]) / dx
                };
                let outer = if i + 1 == SHELLS {
                    area(SHELLS) * (h * (pit_c - shells[i]) - evaporation)
                } else {
                    self.conductivity * area(i + 1) * (shells[i + 1] - shells[i]) / dx
                };
                *f = (inner + outer) / (rho_c * volume(i));
            }
            for (t, f) in shells.iter_mut().zip(&flow) {
                *t += f * sub;
            }
            self.water = (self.water - evaporation / LATENT_HEAT * sub).max(0.0);
        }
    }

    /// The temperature at the centre of the thickest part, °C.
    pub(crate) fn core_c(&self) -> f64 {
        self.at(0.0, None)
    }

    /// The temperature a share `off_centre` of the half-thickness out from the centre (0 =
    /// the centre, 1 = the surface), in a pit at `pit_c` when known.
    pub(crate) fn at(&self, off_centre: f64, pit_c: Option<f64>) -> f64 {
        let off = off_centre.clamp(0.0, 1.0);
        match &self.thermal {
            Thermal::Generic { t, .. } => *t + off * 0.15 * (pit_c.unwrap_or(*t) - *t).max(0.0),
            Thermal::Lumped { t } => {
                // Quasi-steady profile: the surface is warmer by the flux times the inside
                // resistance, and the centre is about the mean.
                let g = f64::from(self.shape.exponent() + 1);
                let h = self.h_at(pit_c.unwrap_or(*t));
                let inside = self.half_m / ((g + 2.0) * self.conductivity);
                let u = 1.0 / (1.0 / h + inside);
                let surface = *t + u * inside * (pit_c.unwrap_or(*t) - *t).max(0.0);
                *t + off * off * (surface - *t)
            }
            Thermal::Conduction { shells } => {
                // Shell centres are at (i + 0.5)·dx.
                let x = (off * SHELLS as f64 - 0.5).clamp(0.0, (SHELLS - 1) as f64);
                let i = (x.floor() as usize).min(SHELLS - 2);
                let w = x - i as f64;
                shells[i] * (1.0 - w) + shells[i + 1] * w
            }
        }
    }
}
