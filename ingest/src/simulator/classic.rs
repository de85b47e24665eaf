//! The simulator's original grill, kept exactly: a steady pit with lid-open dips and meat
//! heated by Newton's law with an evaporative stall, every device drawing from one shared
//! stream in a fixed order. The default settings run it, so a seed gives the same readings
//! it always gave.

use super::rng::Rng;

/// Where evaporative cooling sets in, °C, and how sharply.
const STALL_ONSET_C: f64 = 62.0;
const STALL_SHARPNESS_C: f64 = 1.0;
/// Share of the heat flow that evaporation absorbs while the surface is fully moist.
const STALL_DEPTH: f64 = 0.97;
/// Seconds of full evaporation that dry the surface.
const DRYING_S: f64 = 3.0 * 3_600.0;

#[derive(Clone, Debug)]
struct Meat {
    temp_c: f64,
    /// Newton coefficient, 1/s.
    k: f64,
    /// Surface moisture left, 1 → 0; drives the stall.
    moisture: f64,
    /// Simulated milliseconds left unplugged.
    unplugged_ms: i64,
}

/// One classic grill.
#[derive(Clone, Debug)]
pub(crate) struct Grill {
    pit_c: f64,
    /// Current depth of a lid-open dip, °C below the set point.
    dip_c: f64,
    meats: Vec<Meat>,
}

impl Grill {
    /// A grill with `meat_probes` pieces, drawn from the shared stream.
    pub(crate) fn new(setpoint_c: f64, meat_probes: u32, rng: &mut Rng) -> Self {
        let meats = (0..meat_probes)
            .map(|_| Meat {
                temp_c: 3.0 + 3.0 * rng.unit(),
                // Time constant 2–3.5 h: bigger cuts heat more slowly.
                k: 1.0 / ((2.0 + 1.5 * rng.unit()) * 3_600.0),
                moisture: 1.0,
                unplugged_ms: 0,
            })
            .collect();
        Self {
            pit_c: setpoint_c,
            dip_c: 0.0,
            meats,
        }
    }

    /// Advances one interval: the pit reading, then each meat probe's (none while
    /// unplugged).
    pub(crate) fn step(
        &mut self,
        setpoint_c: f64,
        interval_ms: u64,
        rng: &mut Rng,
    ) -> (f64, Vec<Option<f64>>) {
        let dt = interval_ms as f64 / 1_000.0;
        // Lid opens about once per simulated 45 min; a dip of 25–45 °C recovering with a
        // 90 s time constant.
        if rng.unit() < dt / 2_700.0 {
            self.dip_c = 25.0 + 20.0 * rng.unit();
        }
        self.dip_c *= (-dt / 90.0).exp();
        self.pit_c = setpoint_c - self.dip_c + 1.5 * rng.normal();
        let pit_c = self.pit_c;
        let meats = self
            .meats
            .iter_mut()
            .map(|meat| {
                // Evaporation sets in above the onset and absorbs most of the heat flow while
                // the surface is moist: the stall. It ends as the surface dries.
                let onset =
                    1.0 / (1.0 + (-(meat.temp_c - STALL_ONSET_C) / STALL_SHARPNESS_C).exp());
                let drive = meat.k * (pit_c - meat.temp_c);
                // The surface stays wet until the last fifth of its moisture is gone.
                let wet = (meat.moisture / 0.2).min(1.0);
                let evaporation = STALL_DEPTH * drive.max(0.0) * onset * wet;
                meat.temp_c += (drive - evaporation) * dt;
                meat.moisture = (meat.moisture - onset * dt / DRYING_S).max(0.0);
                let dt_ms = interval_ms as i64;
                if meat.unplugged_ms > 0 {
                    meat.unplugged_ms -= dt_ms;
                } else if rng.unit() < dt / 7_200.0 {
                    // Unplugged for 10–60 s (at least one reading).
                    meat.unplugged_ms = ((10.0 + rng.unit() * 50.0) * 1_000.0) as i64;
                }
                (meat.unplugged_ms <= 0)
                    .then(|| ((meat.temp_c + 0.05 * rng.normal()) * 10.0).round() / 10.0)
            })
            .collect();
        (pit_c, meats)
    }
}
