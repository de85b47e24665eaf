//! What every adapter's readings go through before the log: unit normalisation, validation
//! and de-duplication — in one place, so no adapter can skip it.
//!
//! An adapter turns its payload into [`RawReading`]s (value in the device's unit, the
//! device's own time if it has one, the raw bytes it came from). [`Gate::admit`] returns the
//! [`ProbeReading`]s to append and the [`Rejected`] ones, each with a reason and its raw
//! payload, for the `dead-letter` topic. Nothing is dropped silently: a repeat of a reading
//! already admitted is the only thing discarded, and it is counted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use emberline_schemas::events::ProbeReading;
use serde::{Deserialize, Serialize};

/// Temperatures Emberline accepts, Celsius. Outside is a broken probe or a parsing mistake.
pub const VALID_RANGE_C: std::ops::RangeInclusive<f64> = -50.0..=1_000.0;

/// Values thermometers send for "no probe" instead of leaving the field out.
const SENTINELS: [f64; 6] = [-300.0, -999.0, -999.9, 999.9, 3_276.7, -3_276.8];

/// How far in the future a device's clock may be, ms (a day).
const MAX_FUTURE_MS: i64 = 24 * 3_600 * 1_000;

/// The unit a device reports in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// Celsius.
    #[default]
    #[serde(alias = "c", alias = "celsius")]
    C,
    /// Fahrenheit.
    #[serde(alias = "f", alias = "fahrenheit")]
    F,
    /// Kelvin.
    #[serde(alias = "k", alias = "kelvin")]
    K,
}

impl Unit {
    /// `v` in this unit, in Celsius.
    pub fn to_celsius(self, v: f64) -> f64 {
        match self {
            Unit::C => v,
            Unit::F => (v - 32.0) * 5.0 / 9.0,
            Unit::K => v - 273.15,
        }
    }
}

/// A reading as an adapter read it, before validation.
#[derive(Clone, Debug, PartialEq)]
pub struct RawReading {
    /// Device id (stable, from the source).
    pub device_id: String,
    /// Probe id within the device.
    pub probe_id: String,
    /// The device's own time of the measurement, epoch ms, when it says.
    pub device_time_ms: Option<i64>,
    /// The value in `unit`; `None` when the device says the probe is unplugged.
    pub value: Option<f64>,
    /// Unit of `value`.
    pub unit: Unit,
    /// The bytes it came from (kept with a rejection).
    pub raw: Vec<u8>,
}

/// Why a reading was not admitted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The value is NaN or infinite.
    #[error("the value is not a number")]
    NotANumber,
    /// The value is a known "no probe" sentinel.
    #[error("{0} is a no-probe sentinel value")]
    Sentinel(f64),
    /// Outside −50…1000 °C after unit conversion.
    #[error("{celsius:.1} °C is outside -50…1000 °C")]
    OutOfRange {
        /// The value, Celsius.
        celsius: f64,
    },
    /// The device's time is more than a day ahead of the receive time.
    #[error("the device time is {ahead_s} s in the future")]
    FromTheFuture {
        /// Seconds ahead.
        ahead_s: i64,
    },
    /// The device's time is older than the log keeps.
    #[error("the device time is {age_s} s old, older than the {retention_s} s retention")]
    TooOld {
        /// Age, seconds.
        age_s: i64,
        /// Retention, seconds.
        retention_s: i64,
    },
    /// An id is empty or absurdly long.
    #[error("the {0} is empty or longer than 200 bytes")]
    BadId(&'static str),
    /// A device id contains '/', which separates a tenant from its device ids.
    #[error("the device id contains '/' (it separates tenants from device ids)")]
    SlashInDeviceId,
    /// The payload could not be read at all (adapters use this for parse errors).
    #[error("malformed payload: {0}")]
    Malformed(String),
}

impl Rejection {
    /// A fixed word for the reason, for metrics labels (the message holds the details).
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::NotANumber => "not_a_number",
            Rejection::Sentinel(_) => "sentinel",
            Rejection::OutOfRange { .. } => "out_of_range",
            Rejection::FromTheFuture { .. } => "from_the_future",
            Rejection::TooOld { .. } => "too_old",
            Rejection::BadId(_) | Rejection::SlashInDeviceId => "bad_id",
            Rejection::Malformed(_) => "malformed",
        }
    }
}

/// A reading refused, with everything needed to understand it later.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// Device id, when known.
    pub device_id: String,
    /// Probe id, when known.
    pub probe_id: String,
    /// Why.
    pub reason: Rejection,
    /// The raw payload.
    pub raw: Vec<u8>,
}

/// What one [`Gate::admit`] call decided.
#[derive(Debug, Default, PartialEq)]
pub struct Admitted {
    /// Readings to append.
    pub readings: Vec<ProbeReading>,
    /// Readings for the dead-letter topic.
    pub rejected: Vec<Rejected>,
    /// Repeats of readings already admitted, discarded.
    pub duplicates: usize,
}

/// Recent event times remembered per probe for de-duplication.
const REMEMBERED: usize = 256;

/// The event times a gate remembers per (device, probe), shareable so that a source
/// restarted with new settings (see [`crate::live`]) does not admit again what its previous
/// run admitted.
pub type Remembered = Arc<Mutex<HashMap<(String, String), VecDeque<i64>>>>;

/// Validation and de-duplication for one source.
#[derive(Debug)]
pub struct Gate {
    source: String,
    retention_ms: i64,
    seen: Remembered,
}

impl Gate {
    /// A gate for `source` (its name goes on every reading) with the log's retention.
    pub fn new(source: &str, retention_ms: i64) -> Self {
        Self::remembering(source, retention_ms, Remembered::default())
    }

    /// A gate that remembers in `seen`, which another gate may have filled (or fill later).
    pub fn remembering(source: &str, retention_ms: i64, seen: Remembered) -> Self {
        Self {
            source: source.to_owned(),
            retention_ms,
            seen,
        }
    }

    /// Validates `raw` received at `received_ms`. A reading without a device time gets the
    /// receive time. Out-of-order readings are admitted with their own event time.
    pub fn admit(&mut self, raw: Vec<RawReading>, received_ms: i64) -> Admitted {
        let mut out = Admitted::default();
        let mut remembered = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for r in raw {
            match self.check(&r, received_ms) {
                Err(reason) => out.rejected.push(Rejected {
                    device_id: r.device_id,
                    probe_id: r.probe_id,
                    reason,
                    raw: r.raw,
                }),
                Ok((event_time, temperature_c)) => {
                    let key = (r.device_id.clone(), r.probe_id.clone());
                    let seen = remembered.entry(key).or_default();
                    if seen.contains(&event_time) {
                        out.duplicates += 1;
                        continue;
                    }
                    if seen.len() == REMEMBERED {
                        seen.pop_front();
                    }
                    seen.push_back(event_time);
                    out.readings.push(ProbeReading {
                        device_id: r.device_id,
                        probe_id: r.probe_id,
                        event_time,
                        received_time: received_ms,
                        temperature_c,
                        source: self.source.clone(),
                    });
                }
            }
        }
        out
    }

    /// Forgets `readings` it admitted whose delivery failed, so that the same readings sent
    /// again are admitted again instead of discarded as repeats of something never stored.
    pub fn forget(&mut self, readings: &[ProbeReading]) {
        let mut remembered = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for r in readings {
            if let Some(seen) = remembered.get_mut(&(r.device_id.clone(), r.probe_id.clone())) {
                seen.retain(|t| *t != r.event_time);
            }
        }
    }

    fn check(&self, r: &RawReading, received_ms: i64) -> Result<(i64, Option<f64>), Rejection> {
        for (what, id) in [("device id", &r.device_id), ("probe id", &r.probe_id)] {
            if id.is_empty() || id.len() > 200 {
                return Err(Rejection::BadId(what));
            }
        }
        if r.device_id.contains(emberline_common::tenant::SEPARATOR) {
            return Err(Rejection::SlashInDeviceId);
        }
        let event_time = r.device_time_ms.unwrap_or(received_ms);
        if event_time - received_ms > MAX_FUTURE_MS {
            return Err(Rejection::FromTheFuture {
                ahead_s: (event_time - received_ms) / 1_000,
            });
        }
        if received_ms - event_time > self.retention_ms || event_time <= 0 {
            return Err(Rejection::TooOld {
                age_s: (received_ms - event_time) / 1_000,
                retention_s: self.retention_ms / 1_000,
            });
        }
        let Some(value) = r.value else {
            return Ok((event_time, None));
        };
        if !value.is_finite() {
            return Err(Rejection::NotANumber);
        }
        if SENTINELS.iter().any(|s| (value - s).abs() < 1e-9) {
            return Err(Rejection::Sentinel(value));
        }
        let celsius = r.unit.to_celsius(value);
        if !VALID_RANGE_C.contains(&celsius) {
            return Err(Rejection::OutOfRange { celsius });
        }
        Ok((event_time, Some(celsius)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_790_000_000_000;
    const DAY: i64 = 86_400_000;

    fn raw(value: Option<f64>, unit: Unit, time: Option<i64>) -> RawReading {
        RawReading {
            device_id: "d".into(),
            probe_id: "p".into(),
            device_time_ms: time,
            value,
            unit,
            raw: b"{}".to_vec(),
        }
    }

    fn one(gate: &mut Gate, r: RawReading) -> Result<ProbeReading, Rejection> {
        let mut out = gate.admit(vec![r], NOW);
        match (out.readings.pop(), out.rejected.pop()) {
            (Some(r), None) => Ok(r),
            (None, Some(r)) => Err(r.reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_device_id_with_a_slash_is_refused_it_would_name_a_tenant() {
        let mut g = Gate::new("test", 30 * DAY);
        let mut r = raw(Some(50.0), Unit::C, None);
        r.device_id = "acme/grill".into();
        assert_eq!(one(&mut g, r), Err(Rejection::SlashInDeviceId));
    }

    #[test]
    fn units_are_normalised_and_bad_values_refused_with_a_reason() {
        let mut g = Gate::new("test", 30 * DAY);
        let r = one(&mut g, raw(Some(212.0), Unit::F, Some(NOW - 5))).expect("ok");
        assert_eq!(
            (r.temperature_c, r.event_time, r.received_time),
            (Some(100.0), NOW - 5, NOW)
        );
        assert_eq!(r.source, "test");
        let r = one(&mut g, raw(Some(373.15), Unit::K, None)).expect("ok");
        assert!((r.temperature_c.expect("value") - 100.0).abs() < 1e-9);
        assert_eq!(r.event_time, NOW, "no device time: the receive time");
        assert_eq!(
            one(&mut g, raw(Some(f64::NAN), Unit::C, Some(1 + NOW))),
            Err(Rejection::NotANumber)
        );
        assert_eq!(
            one(&mut g, raw(Some(-300.0), Unit::C, Some(2 + NOW))),
            Err(Rejection::Sentinel(-300.0))
        );
        assert!(matches!(
            one(&mut g, raw(Some(1_200.0), Unit::C, Some(3 + NOW))),
            Err(Rejection::OutOfRange { .. })
        ));
        assert!(matches!(
            one(&mut g, raw(Some(-60.0), Unit::C, Some(4 + NOW))),
            Err(Rejection::OutOfRange { .. })
        ));
        assert!(matches!(
            one(&mut g, raw(Some(50.0), Unit::C, Some(NOW + 2 * DAY))),
            Err(Rejection::FromTheFuture { ahead_s: 172_800 })
        ));
        assert!(matches!(
            one(&mut g, raw(Some(50.0), Unit::C, Some(NOW - 31 * DAY))),
            Err(Rejection::TooOld { .. })
        ));
        let unplugged =
            one(&mut g, raw(None, Unit::C, Some(NOW - 9))).expect("unplugged is a reading");
        assert_eq!(unplugged.temperature_c, None);
    }

    #[test]
    fn forgotten_readings_are_admitted_again() {
        let mut gate = Gate::new("test", i64::MAX / 2);
        let first = gate.admit(vec![raw(Some(20.0), Unit::C, Some(1_000))], 2_000);
        assert_eq!(first.readings.len(), 1);
        gate.forget(&first.readings);
        let again = gate.admit(vec![raw(Some(20.0), Unit::C, Some(1_000))], 3_000);
        assert_eq!((again.readings.len(), again.duplicates), (1, 0));
        let repeat = gate.admit(vec![raw(Some(20.0), Unit::C, Some(1_000))], 4_000);
        assert_eq!((repeat.readings.len(), repeat.duplicates), (0, 1));
    }

    #[test]
    fn repeats_are_dropped_and_late_readings_kept() {
        let mut g = Gate::new("test", 30 * DAY);
        let batch = vec![
            raw(Some(50.0), Unit::C, Some(NOW - 1_000)),
            raw(Some(50.0), Unit::C, Some(NOW - 1_000)),
            raw(Some(49.0), Unit::C, Some(NOW - 2_000)),
        ];
        let out = g.admit(batch.clone(), NOW);
        assert_eq!(out.readings.len(), 2);
        assert_eq!(out.duplicates, 1);
        let again = g.admit(batch, NOW + 10);
        assert!(again.readings.is_empty());
        assert_eq!(again.duplicates, 3);
    }

    proptest! {
        /// Whatever comes in is admitted or rejected — never both, never lost — and what is
        /// admitted is in range.
        #[test]
        fn every_reading_is_admitted_rejected_or_a_counted_repeat(
            values in prop::collection::vec((prop::option::of(any::<f64>()), 0u8..3, prop::option::of(-40 * DAY..2 * DAY)), 0..50),
        ) {
            let mut g = Gate::new("p", 30 * DAY);
            let raws: Vec<RawReading> = values.iter().map(|(v, u, t)| raw(*v, [Unit::C, Unit::F, Unit::K][*u as usize], t.map(|t| NOW + t))).collect();
            let n = raws.len();
            let out = g.admit(raws, NOW);
            prop_assert_eq!(out.readings.len() + out.rejected.len() + out.duplicates, n);
            for r in &out.readings {
                if let Some(c) = r.temperature_c {
                    prop_assert!(VALID_RANGE_C.contains(&c));
                }
            }
            for r in &out.rejected {
                prop_assert!(!r.reason.to_string().is_empty());
            }
        }
    }
}
