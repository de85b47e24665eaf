//! The cook planner: "serve at 18:00, pork shoulder, 4 kg, 95 °C, rest 1 h, pit 120 °C" →
//! when to light the smoker, when the meat goes on, when the stall likely starts and when
//! to wrap, and when to pull — each with a range.
//!
//! The same physics the predictor fits, run forwards from priors instead of fitted values:
//! the meat heats toward the pit by Newton's law, `dT/dt = k (P − T)`, with the evaporative
//! stall holding it near [`STALL_START_C`] for a while in a low-and-slow pit. Priors, from
//! what pitmasters' rules of thumb say (brisket at 120 °C: 1–1.5 h per pound; pork shoulder
//! 1.5–2 h per pound; a 1.8 kg chicken at 180 °C: about 1.5 h):
//!
//! * `k` at 1 kg is [`K_1KG_PER_H`], times a shape factor (a flat brisket heats faster than
//!   a round shoulder), falling with the square root of the weight (between a lumped body's
//!   cube root and pure conduction's two-thirds power); uncertain by ±[`K_SPREAD`] (the range
//!   uses both ends).
//! * The stall lasts a cut's usual hours, longer for a heavier piece, shorter in a hotter pit,
//!   none above [`ROASTING_PIT_C`]; a wrap cuts it to a fraction.
//!
//! The plan is made on the long side: the meat goes on early enough that even the slow end
//! of the range is done by serving time less the rest. A cook that runs fast rests longer,
//! wrapped and held warm, which big cuts take well; a slow one cannot be hurried. Everything
//! is a function of the request: no clock, no randomness.

use serde::{Deserialize, Serialize};

/// Where the evaporative stall sets in, °C (the meat's surface nears the wet-bulb temperature).
pub const STALL_START_C: f64 = 65.0;
/// Newton coefficient of a 1 kg piece of cylindrical shape, per hour.
pub const K_1KG_PER_H: f64 = 0.40;
/// Relative uncertainty of `k` at either end of the range.
pub const K_SPREAD: f64 = 0.3;
/// Pits at or above this roast rather than smoke: no visible stall.
pub const ROASTING_PIT_C: f64 = 150.0;
/// A wrap leaves this share of the stall.
const WRAPPED_STALL_SHARE: f64 = 0.35;
/// A stall is worth wrapping through once it has held this long, hours.
const WRAP_AFTER_STALL_H: f64 = 1.0;
/// Meat from the fridge, °C.
pub const FRIDGE_C: f64 = 4.0;

/// A cut the planner knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// Beef brisket: a flat slab, long stall.
    Brisket,
    /// Pork shoulder (butt): a round lump, long stall.
    PorkShoulder,
    /// Whole or spatchcocked chicken (turkey is a big chicken).
    Chicken,
    /// A beef, pork or lamb roast.
    Roast,
    /// Anything else: a middle-of-the-road piece.
    Other,
}

impl Cut {
    /// Every cut with its canonical name.
    pub const NAMES: [(Cut, &'static str); 5] = [
        (Cut::Brisket, "brisket"),
        (Cut::PorkShoulder, "pork_shoulder"),
        (Cut::Chicken, "chicken"),
        (Cut::Roast, "roast"),
        (Cut::Other, "other"),
    ];

    /// The cut a user's words name (`"Pork butt"`, `"pulled pork"`, `"brisket flat"`, …).
    pub fn from_words(words: &str) -> Cut {
        let w = words.to_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| w.contains(n));
        if has(&["brisket"]) {
            Cut::Brisket
        } else if has(&["shoulder", "butt", "pulled pork", "pork_shoulder"]) {
            Cut::PorkShoulder
        } else if has(&["chicken", "turkey", "poultry", "hen"]) {
            Cut::Chicken
        } else if has(&["roast", "rib", "loin", "leg", "lamb", "tenderloin"]) {
            Cut::Roast
        } else {
            Cut::Other
        }
    }

    /// Its canonical name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("other", |(_, n)| n)
    }

    /// Where it is usually done, °C.
    pub fn usual_target_c(self) -> f64 {
        match self {
            Cut::Brisket => 93.0,
            Cut::PorkShoulder => 95.0,
            Cut::Chicken => 74.0,
            Cut::Roast => 60.0,
            Cut::Other => 75.0,
        }
    }

    /// The pit it is usually cooked in, °C.
    pub fn usual_pit_c(self) -> f64 {
        match self {
            Cut::Brisket | Cut::PorkShoulder => 120.0,
            Cut::Chicken => 180.0,
            Cut::Roast => 140.0,
            Cut::Other => 135.0,
        }
    }

    /// Its usual rest, minutes.
    pub fn usual_rest_min(self) -> f64 {
        match self {
            Cut::Brisket | Cut::PorkShoulder => 60.0,
            Cut::Chicken => 15.0,
            Cut::Roast => 20.0,
            Cut::Other => 30.0,
        }
    }

    /// Shape factor of `k` (surface for the mass, relative to a cylinder).
    fn shape(self) -> f64 {
        match self {
            Cut::Brisket => 1.15,
            Cut::PorkShoulder => 0.85,
            Cut::Chicken | Cut::Roast | Cut::Other => 1.0,
        }
    }

    /// Usual stall of a piece of `reference_kg`, hours: (short, usual, long).
    fn stall_h(self) -> ((f64, f64, f64), f64) {
        match self {
            Cut::Brisket => ((1.0, 2.5, 5.0), 5.5),
            Cut::PorkShoulder => ((1.0, 2.0, 4.5), 4.0),
            Cut::Chicken => ((0.0, 0.3, 1.0), 1.8),
            Cut::Roast => ((0.0, 0.5, 1.5), 1.8),
            Cut::Other => ((0.0, 1.0, 3.0), 3.0),
        }
    }
}

/// What the user asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// When the meal is served, epoch ms.
    pub serve_at_ms: i64,
    /// The cut.
    pub cut: Cut,
    /// Weight, kg.
    pub weight_kg: f64,
    /// Done temperature, °C.
    pub target_c: f64,
    /// Rest between pulling and serving, minutes.
    pub rest_min: f64,
    /// Pit temperature, °C.
    pub pit_c: f64,
    /// Meat temperature when it goes on, °C.
    pub start_c: f64,
    /// Whether it will be wrapped through the stall.
    pub wrap: bool,
    /// Minutes the smoker needs from lighting to a steady pit.
    pub warmup_min: f64,
}

/// A time with its range, epoch ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// The fast end.
    pub earliest_ms: i64,
    /// The usual case.
    pub likely_ms: i64,
    /// The slow end.
    pub latest_ms: i64,
}

/// The plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// When to light the smoker.
    pub light_at_ms: i64,
    /// When the meat goes on.
    pub put_on_at_ms: i64,
    /// When the stall likely begins (`None`: no stall expected).
    pub stall: Option<TimeRange>,
    /// When to wrap (only when wrapping).
    pub wrap_at: Option<TimeRange>,
    /// When the meat reaches its target and comes off.
    pub pull_at: TimeRange,
    /// Hours on the smoker: (fast, usual, slow).
    pub cook_hours: (f64, f64, f64),
}

/// Why a request cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// A value outside what a cook can be.
    #[error("{what} {value} is outside {lo}…{hi}")]
    OutOfRange {
        /// The field.
        what: &'static str,
        /// Its value.
        value: f64,
        /// Lowest allowed.
        lo: f64,
        /// Highest allowed.
        hi: f64,
    },
    /// The pit cannot bring the meat to its target.
    #[error(
        "a pit at {pit_c} °C cannot bring meat to {target_c} °C: it must be at least 10 °C hotter"
    )]
    PitTooCool {
        /// Pit, °C.
        pit_c: f64,
        /// Target, °C.
        target_c: f64,
    },
}

fn check(what: &'static str, value: f64, lo: f64, hi: f64) -> Result<(), PlanError> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(PlanError::OutOfRange {
            what,
            value,
            lo,
            hi,
        })
    }
}

/// Hours for meat at `from_c` to reach `to_c` in a pit at `pit_c`, by Newton's law.
fn heating_h(k_per_h: f64, pit_c: f64, from_c: f64, to_c: f64) -> f64 {
    if to_c <= from_c {
        0.0
    } else {
        ((pit_c - from_c) / (pit_c - to_c)).ln() / k_per_h
    }
}

/// Stall hours of `request` at the (short, usual, long) ends.
fn stall_h(request: &PlanRequest) -> (f64, f64, f64) {
    if request.target_c <= STALL_START_C || request.start_c >= STALL_START_C {
        return (0.0, 0.0, 0.0);
    }
    let ((short, usual, long), reference_kg) = request.cut.stall_h();
    // A heavier piece holds more water; a hotter pit drives it off faster, and roasting
    // heat leaves no plateau to speak of.
    let weight = (request.weight_kg / reference_kg).sqrt();
    let heat = ((ROASTING_PIT_C - request.pit_c) / (ROASTING_PIT_C - 110.0)).clamp(0.0, 1.0);
    let wrap = if request.wrap {
        WRAPPED_STALL_SHARE
    } else {
        1.0
    };
    let scale = weight * heat * wrap;
    (short * scale, usual * scale, long * scale)
}

/// Plans `request` (see the module docs).
pub fn plan(request: &PlanRequest) -> Result<Plan, PlanError> {
    check("weight_kg", request.weight_kg, 0.2, 30.0)?;
    check("target_c", request.target_c, 40.0, 100.0)?;
    check("pit_c", request.pit_c, 80.0, 320.0)?;
    check("rest_min", request.rest_min, 0.0, 360.0)?;
    check("start_c", request.start_c, -20.0, 40.0)?;
    check("warmup_min", request.warmup_min, 0.0, 180.0)?;
    if request.pit_c < request.target_c + 10.0 {
        return Err(PlanError::PitTooCool {
            pit_c: request.pit_c,
            target_c: request.target_c,
        });
    }
    let k = K_1KG_PER_H * request.cut.shape() / request.weight_kg.sqrt();
    // (fast, usual, slow) ends: the fast end has the high k and the short stall.
    let ks = [k * (1.0 + K_SPREAD), k, k * (1.0 - K_SPREAD)];
    let (short, usual, long) = stall_h(request);
    let stalls = [short, usual, long];
    let stalls_at = request.target_c > STALL_START_C && usual > 0.0;
    let to_stall = |k: f64| {
        if stalls_at {
            heating_h(k, request.pit_c, request.start_c, STALL_START_C)
        } else {
            0.0
        }
    };
    let hours: Vec<f64> = ks
        .iter()
        .zip(stalls)
        .map(|(&k, stall)| {
            if stalls_at {
                to_stall(k) + stall + heating_h(k, request.pit_c, STALL_START_C, request.target_c)
            } else {
                heating_h(k, request.pit_c, request.start_c, request.target_c)
            }
        })
        .collect();
    let ms = |h: f64| (h * 3_600_000.0).round() as i64;
    let pull_latest = request.serve_at_ms - ms(request.rest_min / 60.0);
    let put_on = pull_latest - ms(hours[2]);
    let range = |h: [f64; 3]| TimeRange {
        earliest_ms: put_on + ms(h[0]),
        likely_ms: put_on + ms(h[1]),
        latest_ms: put_on + ms(h[2]),
    };
    let stall = stalls_at.then(|| range([to_stall(ks[0]), to_stall(ks[1]), to_stall(ks[2])]));
    let wrap_at = stall.filter(|_| request.wrap).map(|s| {
        let after = ms(WRAP_AFTER_STALL_H.min(usual));
        TimeRange {
            earliest_ms: s.earliest_ms + after,
            likely_ms: s.likely_ms + after,
            latest_ms: s.latest_ms + after,
        }
    });
    Ok(Plan {
        light_at_ms: put_on - ms(request.warmup_min / 60.0),
        put_on_at_ms: put_on,
        stall,
        wrap_at,
        pull_at: range([hours[0], hours[1], hours[2]]),
        cook_hours: (hours[0], hours[1], hours[2]),
    })
}

/// Hours from a meat at `from_c` (perhaps mid-cook, past the fridge) to the request's target
/// in its pit: (fast, usual, slow), by the same physics as [`plan`]. `None` when the pit
/// cannot bring the meat to the target (less than 10 °C hotter) or the request is out of
/// range.
pub fn hours_from(request: &PlanRequest, from_c: f64) -> Option<(f64, f64, f64)> {
    let ok = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v);
    if !(ok(request.weight_kg, 0.2, 30.0)
        && ok(request.target_c, 40.0, 100.0)
        && ok(request.pit_c, 80.0, 320.0)
        && ok(from_c, -20.0, 100.0))
        || request.pit_c < request.target_c + 10.0
    {
        return None;
    }
    let from = PlanRequest {
        start_c: from_c,
        ..request.clone()
    };
    let k = K_1KG_PER_H * request.cut.shape() / request.weight_kg.sqrt();
    let ks = [k * (1.0 + K_SPREAD), k, k * (1.0 - K_SPREAD)];
    let (short, usual, long) = stall_h(&from);
    let hours = |k: f64, stall: f64| {
        if usual > 0.0 {
            heating_h(k, request.pit_c, from_c, STALL_START_C)
                + stall
                + heating_h(k, request.pit_c, STALL_START_C, request.target_c)
        } else {
            heating_h(k, request.pit_c, from_c, request.target_c)
        }
    };
    Some((hours(ks[0], short), hours(ks[1], usual), hours(ks[2], long)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVE: i64 = 1_800_000_000_000;

    fn request(cut: Cut, weight_kg: f64) -> PlanRequest {
        PlanRequest {
            serve_at_ms: SERVE,
            cut,
            weight_kg,
            target_c: cut.usual_target_c(),
            rest_min: cut.usual_rest_min(),
            pit_c: cut.usual_pit_c(),
            start_c: FRIDGE_C,
            wrap: false,
            warmup_min: 45.0,
        }
    }

    #[test]
    fn the_plan_runs_backwards_from_serving_in_order() {
        let p = plan(&request(Cut::PorkShoulder, 4.0)).expect("plan");
        let stall = p.stall.expect("a shoulder stalls");
        assert!(p.light_at_ms < p.put_on_at_ms);
        assert!(p.put_on_at_ms < stall.earliest_ms);
        assert!(stall.latest_ms < p.pull_at.earliest_ms);
        assert!(p.pull_at.earliest_ms < p.pull_at.likely_ms);
        assert!(p.pull_at.likely_ms < p.pull_at.latest_ms);
        // Planned on the long side: the slow end is done exactly when the rest must begin.
        assert_eq!(p.pull_at.latest_ms, SERVE - 3_600_000);
        let (fast, usual, slow) = p.cook_hours;
        assert!((6.0..10.0).contains(&fast), "{fast}");
        assert!((9.0..14.0).contains(&usual), "{usual}");
        assert!((12.0..20.0).contains(&slow), "{slow}");
    }

    #[test]
    fn heavier_cooler_and_unwrapped_take_longer() {
        let base = plan(&request(Cut::Brisket, 5.0))
            .expect("plan")
            .cook_hours
            .1;
        let heavier = plan(&request(Cut::Brisket, 7.0))
            .expect("plan")
            .cook_hours
            .1;
        let mut cool = request(Cut::Brisket, 5.0);
        cool.pit_c = 107.0;
        let cooler = plan(&cool).expect("plan").cook_hours.1;
        let mut wrapped = request(Cut::Brisket, 5.0);
        wrapped.wrap = true;
        let wrapped = plan(&wrapped).expect("plan");
        assert!(heavier > base && cooler > base && wrapped.cook_hours.1 < base);
        assert!(wrapped.wrap_at.is_some());
    }

    #[test]
    fn a_hot_chicken_has_no_stall_and_takes_hours_not_a_day() {
        let p = plan(&request(Cut::Chicken, 1.8)).expect("plan");
        assert_eq!(p.stall, None);
        let (fast, usual, slow) = p.cook_hours;
        assert!(
            fast > 0.8 && usual < 2.5 && slow < 3.5,
            "{:?}",
            p.cook_hours
        );
    }

    #[test]
    fn impossible_requests_say_why() {
        let mut r = request(Cut::Roast, 2.0);
        r.pit_c = 65.0;
        assert!(matches!(
            plan(&r),
            Err(PlanError::OutOfRange { what: "pit_c", .. })
        ));
        r = request(Cut::Brisket, 5.0);
        r.pit_c = 95.0;
        assert!(matches!(plan(&r), Err(PlanError::PitTooCool { .. })));
        r = request(Cut::Roast, f64::NAN);
        assert!(plan(&r).is_err());
    }

    #[test]
    fn hours_from_the_fridge_are_the_plans_and_a_hotter_pit_takes_fewer() {
        let r = request(Cut::PorkShoulder, 4.0);
        let p = plan(&r).expect("plan");
        assert_eq!(hours_from(&r, FRIDGE_C), Some(p.cook_hours));
        let half_way = hours_from(&r, 70.0).expect("hours").1;
        assert!(half_way < p.cook_hours.1 / 2.0, "{half_way}");
        let hotter = hours_from(
            &PlanRequest {
                pit_c: 140.0,
                ..r.clone()
            },
            70.0,
        )
        .expect("hours")
        .1;
        assert!(hotter < half_way, "{hotter} vs {half_way}");
        assert_eq!(hours_from(&PlanRequest { pit_c: 100.0, ..r }, 70.0), None);
    }

    #[test]
    fn words_name_cuts() {
        assert_eq!(Cut::from_words("Pork butt, bone in"), Cut::PorkShoulder);
        assert_eq!(Cut::from_words("brisket flat"), Cut::Brisket);
        assert_eq!(Cut::from_words("Spatchcock turkey"), Cut::Chicken);
        assert_eq!(Cut::from_words("prime rib"), Cut::Roast);
        assert_eq!(Cut::from_words("tofu"), Cut::Other);
        for (cut, name) in Cut::NAMES {
            assert_eq!(Cut::from_words(name), cut, "{name}");
        }
    }
}
