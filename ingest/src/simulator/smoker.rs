//! A smoker's hidden characteristics: what stays the same from one cook to the next on one
//! device, so that several simulated cooks of one smoker share them (the ground truth a
//! "learning from the user's own cooks" evaluation has to find).

use super::pit::PitKind;
use super::rng::{Rng, hash_name, stream};

/// The secret parameters of one smoker, a function of the simulator seed and the device id
/// alone: [`SmokerTraits::for_device`] gives the same values for every cook of that device.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SmokerTraits {
    /// What kind of pit this smoker is (used when the configuration says `pit = "mixed"`).
    pub pit: PitKind,
    /// Multiplies the heat-transfer coefficient between pit air and meat: airflow, the
    /// radiant heat of the fire, where the grate thermometer sits (0.8–1.25).
    pub heat_transfer_scale: f64,
    /// Dew point of the pit air, °C (58–64): with it the wet-bulb temperature, so the
    /// temperature at which this smoker's cooks stall (a water pan raises it).
    pub dew_point_c: f64,
    /// Multiplies the water a cut can give off at its surface: how dry the airflow leaves
    /// the bark, so how long this smoker's stalls last (0.75–1.3).
    pub moisture_scale: f64,
    /// Multiplies the time a pit of its kind takes to warm up from the ambient temperature
    /// (0.7–1.4): how big the fire is lit, how heavy the steel.
    pub ramp_scale: f64,
    /// How fast the fire falls behind once lit, °C per hour: a kettle's slow drift as the
    /// charcoal burns, an offset's sag between splits.
    pub sag_c_per_hour: f64,
    /// Minutes between splits on an offset (the cook's habit, 45–90).
    pub refuel_minutes: f64,
    /// Lid openings per hour on a kettle or a steady pit.
    pub lid_opens_per_hour: f64,
    /// Standard deviation of the probes' noise, °C.
    pub probe_noise_c: f64,
    /// How far from the centre of the thickest part this cook puts a probe, as a share of
    /// the half-thickness (0 = the centre, 1 = the surface).
    pub probe_off_centre: f64,
    /// Bluetooth gaps per hour where this smoker stands.
    pub gaps_per_hour: f64,
}

impl SmokerTraits {
    /// The hidden parameters of `device_id` under `seed`; the same for every cook of it.
    pub fn for_device(seed: u64, device_id: &str) -> Self {
        let mut rng = Rng::derived(seed, &[stream::SMOKER, hash_name(device_id)]);
        let pit = match rng.next_u64() % 3 {
            0 => PitKind::Kettle,
            1 => PitKind::Offset,
            _ => PitKind::Pellet,
        };
        Self {
            pit,
            heat_transfer_scale: rng.range(0.8, 1.25),
            dew_point_c: rng.range(58.0, 64.0),
            moisture_scale: rng.range(0.75, 1.3),
            ramp_scale: rng.range(0.7, 1.4),
            sag_c_per_hour: rng.range(16.0, 26.0),
            refuel_minutes: rng.range(45.0, 90.0),
            lid_opens_per_hour: rng.range(0.5, 2.0),
            probe_noise_c: rng.range(0.05, 0.25),
            probe_off_centre: rng.range(0.0, 0.4),
            gaps_per_hour: rng.range(0.2, 1.0),
        }
    }
}
