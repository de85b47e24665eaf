//! What the pit and each food probe are doing: pure detectors over event time.
//!
//! **Pit** ([`PitTracker`]): *heating* (coming up to temperature), *holding* a level, *lid
//! open* (a sharp drop from the recent maximum, recovering within minutes) and *fire out*
//! (falling steadily for [`FIRE_OUT_AFTER_MS`] and well below the level it held).
//!
//! **Food probe** ([`ProbeTracker`]): *idle* (plugged in, not rising), *heating*, *stall*
//! (rate near zero in the evaporative band while the pit holds, for
//! [`STALL_CONFIRM_MS`]), *done* (at or above the target) and *probe out* (unplugged, or
//! falling fast toward ambient from its peak).
//!
//! The one windowed statistic, the pit's maximum over the last [`DROP_WINDOW_MS`], is kept
//! in a monotonic deque; a test checks the detectors against a version that rescans the
//! whole history at every reading.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How far back the pit's recent maximum reaches.
pub const DROP_WINDOW_MS: i64 = 180_000;
/// A pit this far below its recent maximum, and below its level, has had its lid opened.
pub const LID_DROP_C: f64 = 8.0;
/// A pit falling for this long, well below its level, has lost its fire.
pub const FIRE_OUT_AFTER_MS: i64 = 600_000;
/// A stall must last this long before it is flagged.
pub const STALL_CONFIRM_MS: i64 = 600_000;
/// The evaporative band, Celsius.
pub const STALL_BAND_C: (f64, f64) = (55.0, 82.0);

/// What the pit is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PitPhase {
    /// No pit reading yet.
    #[default]
    Unknown,
    /// Coming up to temperature.
    Heating,
    /// Holding a level.
    Holding,
    /// A sharp drop: the lid is open.
    LidOpen,
    /// Falling steadily: the fire is dying or out.
    FireOut,
}

impl PitPhase {
    /// The name used in events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PitPhase::Unknown => "none",
            PitPhase::Heating => "heating",
            PitPhase::Holding => "holding",
            PitPhase::LidOpen => "lid_open",
            PitPhase::FireOut => "fire_out",
        }
    }
}

/// Per-pit state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PitTracker {
    /// Current phase.
    pub phase: PitPhase,
    /// The level the pit holds, Celsius, once it has held one.
    pub hold_c: Option<f64>,
    /// Smoothed pit temperature, Celsius.
    pub smoothed_c: Option<f64>,
    /// When the smoothed temperature began falling without a break.
    falling_since: Option<i64>,
    /// Last event time seen.
    last_time: Option<i64>,
    /// (time, reading) candidates for the window maximum, readings strictly decreasing.
    maxima: VecDeque<(i64, f64)>,
}

/// Windowed figures the pit rules read; [`PitTracker`] computes them incrementally.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PitInputs {
    time: i64,
    raw_c: f64,
    smoothed_c: f64,
    rate_c_per_min: Option<f64>,
    recent_max_c: f64,
}

impl PitTracker {
    /// Applies one pit reading with its trend; returns the phase after it.
    pub fn update(
        &mut self,
        time: i64,
        raw_c: f64,
        smoothed_c: f64,
        rate_c_per_min: Option<f64>,
    ) -> PitPhase {
        let newest = self.last_time.map_or(time, |t| t.max(time));
        if time > newest - DROP_WINDOW_MS {
            // Entries are in time order with strictly decreasing readings; a late reading is
            // placed by its time and drops the older, lower entries it dominates.
            let at = self.maxima.partition_point(|(t, _)| *t <= time);
            if self.maxima.get(at).is_none_or(|(_, v)| *v < raw_c) {
                let mut start = at;
                while start > 0 && self.maxima[start - 1].1 <= raw_c {
                    start -= 1;
                }
                self.maxima.drain(start..at);
                self.maxima.insert(start, (time, raw_c));
            }
        }
        while self
            .maxima
            .front()
            .is_some_and(|(t, _)| *t <= newest - DROP_WINDOW_MS)
        {
            self.maxima.pop_front();
        }
        let recent_max_c = self.maxima.front().map_or(f64::NEG_INFINITY, |(_, v)| *v);
        self.step(PitInputs {
            time,
            raw_c,
            smoothed_c,
            rate_c_per_min,
            recent_max_c,
        })
    }

    /// The transition rules, given the windowed figures.
    fn step(&mut self, i: PitInputs) -> PitPhase {
        let dt_ms = self.last_time.map_or(0, |t| (i.time - t).max(0));
        self.last_time = Some(self.last_time.map_or(i.time, |t| t.max(i.time)));
        self.smoothed_c = Some(i.smoothed_c);
        let rate = i.rate_c_per_min.unwrap_or(0.0);
        if rate < -0.2 {
            self.falling_since.get_or_insert(i.time);
        } else {
            self.falling_since = None;
        }
        let falling_for = self.falling_since.map_or(0, |s| i.time - s);
        self.phase = match (self.phase, self.hold_c) {
            (_, None) => {
                if i.smoothed_c > 60.0 && i.rate_c_per_min.is_some_and(|r| r.abs() < 0.5) {
                    self.hold_c = Some(i.smoothed_c);
                    PitPhase::Holding
                } else {
                    PitPhase::Heating
                }
            }
            (PitPhase::LidOpen, Some(hold)) => {
                if i.raw_c >= hold - 5.0 {
                    PitPhase::Holding
                } else if falling_for >= FIRE_OUT_AFTER_MS && i.smoothed_c < hold - 15.0 {
                    PitPhase::FireOut
                } else {
                    PitPhase::LidOpen
                }
            }
            (PitPhase::FireOut, Some(hold)) => {
                if i.smoothed_c >= hold - 5.0 {
                    PitPhase::Holding
                } else if rate > 1.0 {
                    PitPhase::Heating
                } else {
                    PitPhase::FireOut
                }
            }
            (PitPhase::Heating, Some(hold)) => {
                if rate.abs() < 0.5 && i.smoothed_c > 60.0 {
                    // Settled at a new level (the cook turned the pit up or down).
                    if (i.smoothed_c - hold).abs() > 10.0 {
                        self.hold_c = Some(i.smoothed_c);
                    }
                    PitPhase::Holding
                } else {
                    PitPhase::Heating
                }
            }
            (_, Some(hold)) => {
                if i.raw_c < hold - 10.0 && i.recent_max_c - i.raw_c > LID_DROP_C {
                    PitPhase::LidOpen
                } else if falling_for >= FIRE_OUT_AFTER_MS && i.smoothed_c < hold - 10.0 {
                    PitPhase::FireOut
                } else if rate > 0.3 && i.smoothed_c > hold + 10.0 {
                    // Rising past the level it held: going to a new one.
                    PitPhase::Heating
                } else {
                    // Follow a slowly drifting level (15 min time constant), not a fall.
                    if (i.smoothed_c - hold).abs() < 10.0 && rate.abs() < 0.2 {
                        let w = (dt_ms as f64 / 900_000.0).min(1.0);
                        self.hold_c = Some(hold + (i.smoothed_c - hold) * w);
                    }
                    PitPhase::Holding
                }
            }
        };
        self.phase
    }

    /// Whether the pit heats the food as usual: not a lid-open dip or a dying fire, where the
    /// food lags the pit and a flat food probe is not a stall.
    pub fn is_steady(&self) -> bool {
        !matches!(self.phase, PitPhase::LidOpen | PitPhase::FireOut)
    }
}

/// What a food probe is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbePhase {
    /// Plugged in, not rising.
    #[default]
    Idle,
    /// Rising.
    Heating,
    /// In the evaporative stall.
    Stall,
    /// At or above its target.
    Done,
    /// Unplugged or pulled out of the food.
    ProbeOut,
}

impl ProbePhase {
    /// The name used in events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbePhase::Idle => "idle",
            ProbePhase::Heating => "heating",
            ProbePhase::Stall => "stall",
            ProbePhase::Done => "done",
            ProbePhase::ProbeOut => "probe_out",
        }
    }
}

/// Per-probe phase state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeTracker {
    /// Current phase.
    pub phase: ProbePhase,
    /// Highest smoothed temperature since plugged in.
    pub peak_c: Option<f64>,
    /// When the probe was plugged in (first reading after none).
    pub plugged_at: Option<i64>,
    /// When it started rising.
    pub rising_since: Option<i64>,
    /// When it was unplugged.
    pub unplugged_at: Option<i64>,
    /// When the stall began (confirmed or candidate).
    pub stall_since: Option<i64>,
    /// Why it is out: unplugged (no readings) or pulled (falling toward ambient).
    pulled: bool,
    /// The phase before it went out, restored when it comes back soon.
    before_out: ProbePhase,
    /// The latest temperature read while the probe behaved like one in food (no spike, no
    /// fast fall): the level a re-inserted probe comes back to.
    #[serde(default)]
    pub food_level_c: Option<f64>,
}

/// A probe back within this much of its level before it went out is back in the same food
/// (re-inserted, perhaps a little off its old spot), however long it was out.
pub const REINSERT_WITHIN_C: f64 = 15.0;
/// Food does not heat faster than this, °C per minute; a probe that does is in the air or on
/// the grate (an insertion spike, a probe lying on the fire).
pub const FOOD_RATE_MAX_C_PER_MIN: f64 = 15.0;

/// A probe back within this long continues where it was (a loose plug, a moved probe).
pub const REPLUG_GRACE_MS: i64 = 600_000;
/// A pulled probe that comes back well below its old level and climbs after being out this
/// long is in new food (a new cook on the same probe).
pub const NEW_FOOD_AFTER_MS: i64 = 3_600_000;

/// What the probe rules read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeInputs {
    /// Event time.
    pub time: i64,
    /// Smoothed temperature, or `None` when unplugged.
    pub smoothed_c: Option<f64>,
    /// Rate of rise, Celsius per minute.
    pub rate_c_per_min: Option<f64>,
    /// The rate Newton's law expects now, when known.
    pub expected_rate_c_per_min: Option<f64>,
    /// Target, Celsius.
    pub target_c: Option<f64>,
    /// The pit holds (a flat meat is not a stall while the lid is open).
    pub pit_steady: bool,
}

impl ProbeTracker {
    /// Applies one reading; returns the phase after it.
    pub fn update(&mut self, i: ProbeInputs) -> ProbePhase {
        let rate = i.rate_c_per_min.unwrap_or(0.0);
        let Some(t) = i.smoothed_c else {
            self.go_out(i.time, false);
            return self.phase;
        };
        if self.phase == ProbePhase::ProbeOut {
            // Back in the same food: within reach of where it was before it went out. A
            // pulled probe re-inserted climbs back to that level quickly; until it does it is
            // still out (its readings say nothing about the food).
            let back = self.food_level_c.is_some_and(|l| {
                t >= l - REINSERT_WITHIN_C && rate.abs() < FOOD_RATE_MAX_C_PER_MIN
            });
            let long_out = self
                .unplugged_at
                .is_none_or(|u| i.time - u >= NEW_FOOD_AFTER_MS);
            if self.pulled && !back && (rate < 0.1 || !long_out) {
                return self.phase; // still out of the food, or climbing back into it
            }
            let soon = self
                .unplugged_at
                .is_some_and(|u| i.time - u < REPLUG_GRACE_MS);
            if back || (soon && !self.pulled) {
                self.phase = self.before_out;
            } else {
                self.phase = ProbePhase::Idle;
                self.peak_c = None;
                self.plugged_at = None;
                self.rising_since = None;
                self.stall_since = None;
            }
            self.unplugged_at = None;
            self.pulled = false;
        }
        if self.plugged_at.is_none() {
            self.plugged_at = Some(i.time);
        }
        let peak = self.peak_c.map_or(t, |p| p.max(t));
        self.peak_c = Some(peak);
        // Pulled out of the food: falling fast, well below its peak; or reading what no food
        // does (a spike far faster than food heats).
        if (rate < -2.0 && t < peak - 10.0) || rate > FOOD_RATE_MAX_C_PER_MIN {
            self.go_out(i.time, true);
            return self.phase;
        }
        if rate.abs() < FOOD_RATE_MAX_C_PER_MIN / 3.0 {
            self.food_level_c = Some(t);
        }
        if let Some(target) = i.target_c
            && (t >= target || (self.phase == ProbePhase::Done && t >= target - 2.0))
        {
            self.phase = ProbePhase::Done;
            self.stall_since = None;
            return self.phase;
        }
        if rate >= 0.1 {
            self.rising_since.get_or_insert(i.time);
        }
        let in_band = (STALL_BAND_C.0..=STALL_BAND_C.1).contains(&t);
        let flat_limit = i
            .expected_rate_c_per_min
            .map_or(0.08, |e| (0.3 * e).clamp(0.03, 0.15));
        let flat = rate < flat_limit;
        let stalled = in_band && flat && i.pit_steady && self.rising_since.is_some();
        if stalled {
            self.stall_since.get_or_insert(i.time);
        } else if self.phase != ProbePhase::Stall || !in_band || rate > 2.0 * flat_limit {
            // A confirmed stall ends only once the meat clearly climbs again (or the pit
            // falters, which the pit phase reports instead).
            self.stall_since = None;
        }
        self.phase = match self.stall_since {
            Some(since) if i.time - since >= STALL_CONFIRM_MS => ProbePhase::Stall,
            _ if self.phase == ProbePhase::Stall && self.stall_since.is_some() => ProbePhase::Stall,
            _ if self.rising_since.is_some() => ProbePhase::Heating,
            _ => ProbePhase::Idle,
        };
        self.phase
    }
}

impl ProbeTracker {
    fn go_out(&mut self, time: i64, pulled: bool) {
        if self.phase != ProbePhase::ProbeOut {
            self.unplugged_at = Some(time);
            self.before_out = self.phase;
        }
        self.pulled |= pulled;
        self.phase = ProbePhase::ProbeOut;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pit detector written out again from its rules, the obvious way: it keeps every
    /// reading and rescans the history at each one (the window's maximum, how long the pit
    /// has been falling, the newest time so far) instead of keeping running figures.
    #[derive(Default)]
    struct SlowPit {
        /// (time, raw reading, rate) of every reading, in arrival order.
        history: Vec<(i64, f64, Option<f64>)>,
        phase: PitPhase,
        hold_c: Option<f64>,
    }

    impl SlowPit {
        fn update(&mut self, time: i64, raw: f64, smoothed: f64, rate: Option<f64>) -> PitPhase {
            let previous_newest = self.history.iter().map(|(t, ..)| *t).max();
            self.history.push((time, raw, rate));
            let newest = previous_newest.map_or(time, |t| t.max(time));
            let recent_max = self
                .history
                .iter()
                .filter(|(t, ..)| *t > newest - DROP_WINDOW_MS)
                .map(|(_, v, _)| *v)
                .fold(f64::NEG_INFINITY, f64::max);
            // Falling without a break: since the first of the trailing run of readings that
            // fall faster than 0.2 °C a minute (a missing rate counts as flat).
            let falling_since = self
                .history
                .iter()
                .rev()
                .take_while(|(_, _, r)| r.unwrap_or(0.0) < -0.2)
                .last()
                .map(|(t, ..)| *t);
            let falling_for = falling_since.map_or(0, |since| time - since);
            let gap_ms = previous_newest.map_or(0, |t| (time - t).max(0));
            let flat_rate = rate.unwrap_or(0.0);
            let Some(hold) = self.hold_c else {
                // Never held a level: it holds once it is hot and its rate is known and flat.
                let settled = smoothed > 60.0 && rate.is_some_and(|r| r.abs() < 0.5);
                if settled {
                    self.hold_c = Some(smoothed);
                }
                self.phase = if settled {
                    PitPhase::Holding
                } else {
                    PitPhase::Heating
                };
                return self.phase;
            };
            let lid_open = raw < hold - 10.0 && recent_max - raw > LID_DROP_C;
            self.phase = if self.phase == PitPhase::LidOpen {
                if raw >= hold - 5.0 {
                    PitPhase::Holding
                } else if falling_for >= FIRE_OUT_AFTER_MS && smoothed < hold - 15.0 {
                    PitPhase::FireOut
                } else {
                    PitPhase::LidOpen
                }
            } else if self.phase == PitPhase::FireOut {
                if smoothed >= hold - 5.0 {
                    PitPhase::Holding
                } else if flat_rate > 1.0 {
                    PitPhase::Heating
                } else {
                    PitPhase::FireOut
                }
            } else if self.phase == PitPhase::Heating {
                if flat_rate.abs() < 0.5 && smoothed > 60.0 {
                    if (smoothed - hold).abs() > 10.0 {
                        self.hold_c = Some(smoothed); // a new level
                    }
                    PitPhase::Holding
                } else {
                    PitPhase::Heating
                }
            } else if lid_open {
                PitPhase::LidOpen
            } else if falling_for >= FIRE_OUT_AFTER_MS && smoothed < hold - 10.0 {
                PitPhase::FireOut
            } else if flat_rate > 0.3 && smoothed > hold + 10.0 {
                PitPhase::Heating
            } else {
                // Holding: the level follows a slow drift, 15 minutes' time constant.
                if (smoothed - hold).abs() < 10.0 && flat_rate.abs() < 0.2 {
                    let weight = (gap_ms as f64 / 900_000.0).min(1.0);
                    self.hold_c = Some(hold + (smoothed - hold) * weight);
                }
                PitPhase::Holding
            };
            self.phase
        }
    }

    fn pit_series() -> impl Strategy<Value = Vec<(i64, f64, f64, Option<f64>)>> {
        prop::collection::vec(
            (
                1_000i64..60_000,
                -40.0f64..40.0,
                prop::option::of(-5.0f64..5.0),
                0u8..10,
            ),
            1..300,
        )
        .prop_map(|steps| {
            let (mut t, mut level) = (0i64, 110.0f64);
            steps
                .into_iter()
                .map(|(dt, jump, rate, late)| {
                    t += dt;
                    level = (level + jump * 0.2).clamp(20.0, 300.0);
                    // Now and then a reading arrives late.
                    let at = if late == 0 { t - 90_000 } else { t };
                    (at, level + jump, level, rate)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_pit_detector_matches_a_full_rescan(series in pit_series()) {
            let mut fast = PitTracker::default();
            let mut slow = SlowPit::default();
            for (i, (t, raw, smoothed, rate)) in series.iter().enumerate() {
                let a = fast.update(*t, *raw, *smoothed, *rate);
                let b = slow.update(*t, *raw, *smoothed, *rate);
                prop_assert_eq!(a, b, "reading {}", i);
                prop_assert_eq!(fast.hold_c, slow.hold_c);
            }
        }

        #[test]
        fn a_probe_never_skips_out_and_back_without_a_reading(
            temps in prop::collection::vec(prop::option::weighted(0.9, (0.0f64..120.0, -3.0f64..3.0)), 1..200),
        ) {
            let mut tracker = ProbeTracker::default();
            for (i, reading) in temps.iter().enumerate() {
                let phase = tracker.update(ProbeInputs {
                    time: i as i64 * 10_000,
                    smoothed_c: reading.map(|(t, _)| t),
                    rate_c_per_min: reading.map(|(_, r)| r),
                    expected_rate_c_per_min: None,
                    target_c: Some(95.0),
                    pit_steady: true,
                });
                // Unplugged is always probe out; done always means at the target or within
                // the 2 °C hysteresis below it.
                match reading {
                    None => prop_assert_eq!(phase, ProbePhase::ProbeOut),
                    Some((t, _)) if phase == ProbePhase::Done => prop_assert!(*t >= 93.0),
                    Some((t, _)) if *t >= 95.0 => prop_assert!(matches!(phase, ProbePhase::Done | ProbePhase::ProbeOut)),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn lid_open_then_recovery_then_fire_out() {
        let mut pit = PitTracker::default();
        let mut t = 0;
        let mut step = |pit: &mut PitTracker, raw: f64, smoothed: f64, rate: f64| {
            t += 10_000;
            pit.update(t, raw, smoothed, Some(rate))
        };
        // Heat up, then hold at 120.
        for i in 0..30 {
            step(&mut pit, 20.0 + i as f64 * 4.0, 20.0 + i as f64 * 4.0, 24.0);
        }
        for _ in 0..30 {
            assert_eq!(step(&mut pit, 120.0, 120.0, 0.0), PitPhase::Holding);
        }
        // Lid opens: a sharp 30 °C drop.
        assert_eq!(step(&mut pit, 90.0, 110.0, -6.0), PitPhase::LidOpen);
        assert_eq!(step(&mut pit, 100.0, 105.0, -3.0), PitPhase::LidOpen);
        assert_eq!(step(&mut pit, 117.0, 112.0, 1.0), PitPhase::Holding);
        for _ in 0..30 {
            step(&mut pit, 120.0, 120.0, 0.0);
        }
        // The fire dies: half a degree a minute, steadily.
        let mut phase = PitPhase::Holding;
        let mut minutes = 0.0;
        for i in 0..180 {
            let v = 120.0 - i as f64 * 0.5 / 6.0;
            phase = step(&mut pit, v, v, -0.5);
            minutes = i as f64 / 6.0;
            if phase == PitPhase::FireOut {
                break;
            }
        }
        assert_eq!(phase, PitPhase::FireOut);
        assert!((10.0..=25.0).contains(&minutes), "after {minutes} min");
    }

    #[test]
    fn a_flat_meat_in_the_band_is_a_stall_after_ten_minutes_and_ends_when_it_climbs() {
        let mut probe = ProbeTracker::default();
        let mut t = 0;
        let mut step = |probe: &mut ProbeTracker, temp: f64, rate: f64| {
            t += 60_000;
            probe.update(ProbeInputs {
                time: t,
                smoothed_c: Some(temp),
                rate_c_per_min: Some(rate),
                expected_rate_c_per_min: Some(0.3),
                target_c: Some(93.0),
                pit_steady: true,
            })
        };
        assert_eq!(step(&mut probe, 20.0, 0.0), ProbePhase::Idle);
        assert_eq!(step(&mut probe, 40.0, 0.5), ProbePhase::Heating);
        for _ in 0..10 {
            assert_eq!(step(&mut probe, 65.0, 0.01), ProbePhase::Heating);
        }
        assert_eq!(step(&mut probe, 65.0, 0.01), ProbePhase::Stall);
        assert_eq!(step(&mut probe, 65.5, 0.1), ProbePhase::Stall);
        assert_eq!(step(&mut probe, 70.0, 0.4), ProbePhase::Heating);
        assert_eq!(step(&mut probe, 93.5, 0.4), ProbePhase::Done);
        assert_eq!(step(&mut probe, 92.0, -0.1), ProbePhase::Done);
        assert_eq!(step(&mut probe, 70.0, -5.0), ProbePhase::ProbeOut);
    }
}
