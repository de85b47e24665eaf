//! The varied simulator's physics: cuts cook in the times real ones do, pits behave as
//! their kind does, wraps end stalls, probes and radios misbehave, smokers keep their hidden
//! parameters, and a seed determines everything.

use emberline_ingest::simulator::{
    CookSample, CookScenario, HeatModel, MeatKind, PitKind, SmokerTraits, smoker_cooks,
    variety_suite,
};
use emberline_ingest::{Simulator, SimulatorConfig};

const MODELS: [HeatModel; 2] = [HeatModel::Conduction, HeatModel::Lumped];

fn scenario(meat: MeatKind, pit: PitKind, setpoint_c: f64, seed: u64) -> CookScenario {
    let mut s = CookScenario::new(meat, pit, seed);
    s.pit_setpoint_c = setpoint_c;
    s.interval_ms = 60_000;
    s
}

fn hours(s: &CookScenario, ms: i64) -> f64 {
    (ms - s.start_ms) as f64 / 3_600_000.0
}

/// Hours until the true centre reaches `c`.
fn hours_to_core(s: &CookScenario, samples: &[CookSample], c: f64) -> Option<f64> {
    samples
        .iter()
        .find(|x| x.core_c >= c)
        .map(|x| hours(s, x.event_time_ms))
}

/// Hours the meat probe spends on a plateau in `band`: one-minute samples starting an hour
/// over which it rises less than 3 °C.
fn plateau_hours(samples: &[CookSample], band: std::ops::Range<f64>) -> f64 {
    samples
        .windows(61)
        .filter(|w| band.contains(&w[0].meat_c) && w[60].meat_c - w[0].meat_c < 3.0)
        .count() as f64
        / 60.0
}

#[test]
fn a_chicken_at_180_c_is_done_in_one_to_two_and_a_half_hours_without_a_stall() {
    for model in MODELS {
        for seed in 1..=6 {
            let mut s = scenario(MeatKind::Chicken, PitKind::Pellet, 180.0, seed);
            s.model = model;
            let samples: Vec<_> = s.samples().take(4 * 60).collect();
            let done = hours_to_core(&s, &samples, 74.0).expect("done in 4 h");
            assert!(
                (1.0..=2.5).contains(&done),
                "{model:?} seed {seed}: {done:.2} h"
            );
            let until_done: Vec<_> = samples
                .iter()
                .copied()
                .filter(|x| x.core_c < 74.0)
                .collect();
            let plateau = plateau_hours(&until_done, 20.0..74.0);
            assert!(
                plateau == 0.0,
                "{model:?} seed {seed}: stalled {plateau:.2} h"
            );
        }
    }
}

#[test]
fn a_brisket_at_120_c_takes_8_to_16_hours_with_an_hour_or_more_of_stall_in_the_60s() {
    for model in MODELS {
        for seed in 1..=6 {
            let mut s = scenario(MeatKind::Brisket, PitKind::Pellet, 120.0, seed);
            s.model = model;
            let samples: Vec<_> = s.samples().take(20 * 60).collect();
            let done = hours_to_core(&s, &samples, 93.0).expect("done in 20 h");
            assert!(
                (8.0..=16.0).contains(&done),
                "{model:?} seed {seed}: {done:.2} h"
            );
            let plateau = plateau_hours(&samples, 60.0..75.0);
            assert!(
                plateau >= 1.0,
                "{model:?} seed {seed}: stall {plateau:.2} h"
            );
            // Before the stall it climbs much faster than that.
            let early = samples
                .windows(61)
                .find(|w| w[0].meat_c > 20.0)
                .map(|w| w[60].meat_c - w[0].meat_c);
            assert!(early.is_some_and(|r| r > 6.0), "early rise {early:?}");
        }
    }
}

#[test]
fn a_pork_shoulder_at_110_to_125_c_takes_8_to_14_hours() {
    for (seed, setpoint) in [(1, 110.0), (2, 115.0), (3, 120.0), (4, 125.0)] {
        let s = scenario(MeatKind::PorkShoulder, PitKind::Pellet, setpoint, seed);
        let samples: Vec<_> = s.samples().take(20 * 60).collect();
        let done = hours_to_core(&s, &samples, 95.0).expect("done in 20 h");
        assert!((8.0..=14.0).contains(&done), "seed {seed}: {done:.2} h");
    }
}

#[test]
fn a_roast_is_done_in_one_to_three_hours() {
    for seed in 1..=6 {
        let s = scenario(MeatKind::Roast, PitKind::Pellet, 140.0, seed);
        let samples: Vec<_> = s.samples().take(5 * 60).collect();
        let done = hours_to_core(&s, &samples, 60.0).expect("done in 5 h");
        assert!((1.0..=3.0).contains(&done), "seed {seed}: {done:.2} h");
    }
}

#[test]
fn a_heavier_piece_of_the_same_cut_takes_longer() {
    for model in MODELS {
        let time = |kg: f64| {
            let mut s = scenario(MeatKind::PorkShoulder, PitKind::Pellet, 120.0, 3);
            s.model = model;
            s.weight_kg = Some(kg);
            let samples: Vec<_> = s.samples().take(24 * 60).collect();
            hours_to_core(&s, &samples, 90.0).expect("done")
        };
        let (small, large) = (time(2.5), time(5.0));
        assert!(
            large > small + 1.0,
            "{model:?}: 2.5 kg {small:.2} h, 5 kg {large:.2} h"
        );
    }
}

#[test]
fn conduction_lags_at_the_centre_where_the_lumped_piece_heats_fastest_at_once() {
    // Newton's law heats fastest at the start; with conduction the centre first waits for
    // the heat to arrive, so its fastest rise comes later.
    let fastest_hour = |model| {
        let mut s = scenario(MeatKind::Brisket, PitKind::Steady, 120.0, 5);
        s.model = model;
        let cores: Vec<f64> = s.samples().take(4 * 60).map(|x| x.core_c).collect();
        (0..cores.len() - 10)
            .max_by(|&a, &b| (cores[a + 10] - cores[a]).total_cmp(&(cores[b + 10] - cores[b])))
            .map(|i| i as f64 / 60.0)
            .expect("samples")
    };
    let lumped = fastest_hour(HeatModel::Lumped);
    let conduction = fastest_hour(HeatModel::Conduction);
    assert!(lumped < 0.25, "lumped fastest at {lumped:.2} h");
    assert!(conduction > 0.5, "conduction fastest at {conduction:.2} h");
}

#[test]
fn a_pellet_pit_holds_within_5_c_of_its_set_point_after_warming_up() {
    for seed in 1..=8 {
        let s = scenario(MeatKind::Brisket, PitKind::Pellet, 120.0, seed);
        let pits: Vec<(f64, f64)> = s
            .samples()
            .take(8 * 60)
            .map(|x| (hours(&s, x.event_time_ms), x.pit_c.expect("pit probe")))
            .collect();
        assert!(pits[0].1 < 60.0, "seed {seed}: starts cold: {:?}", pits[0]);
        for (h, pit) in pits.iter().filter(|(h, _)| *h >= 1.0) {
            assert!((pit - 120.0).abs() <= 5.0, "seed {seed}: {pit} at {h:.2} h");
        }
    }
}

#[test]
fn an_offset_pit_sags_15_c_or_more_between_splits_and_flares_after_them() {
    for seed in 1..=8 {
        let s = scenario(MeatKind::PorkShoulder, PitKind::Offset, 120.0, seed);
        let pits: Vec<(f64, f64)> = s
            .samples()
            .take(6 * 60)
            .map(|x| (hours(&s, x.event_time_ms), x.pit_c.expect("pit probe")))
            .collect();
        let warm: Vec<f64> = pits
            .iter()
            .filter(|(h, _)| *h >= 1.5)
            .map(|p| p.1)
            .collect();
        let (low, high) = warm
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &p| (l.min(p), h.max(p)));
        assert!(low <= 105.0, "seed {seed}: never sagged, lowest {low}");
        assert!(high >= 125.0, "seed {seed}: never flared, highest {high}");
        assert!(pits[0].1 < 60.0, "seed {seed}: starts cold");
    }
}

#[test]
fn a_kettle_warms_up_then_drifts_down_until_refuelled() {
    for seed in 1..=6 {
        let s = scenario(MeatKind::Brisket, PitKind::Kettle, 120.0, seed);
        let trues: Vec<(f64, f64)> = s
            .samples()
            .take(8 * 60)
            .map(|x| (hours(&s, x.event_time_ms), x.true_pit_c))
            .collect();
        assert!(trues[0].1 < 60.0, "seed {seed}: starts cold");
        let near_set = trues.iter().find(|(_, p)| *p > 115.0).map(|p| p.0);
        assert!(
            near_set.is_some_and(|h| h < 1.5),
            "seed {seed}: warm at {near_set:?}"
        );
        // Below the set point by 10 °C or more for at least half an hour in all (burn-down,
        // lid openings), and refuelled: back above 115 °C after that.
        let low = trues.iter().filter(|(h, p)| *h > 1.0 && *p < 110.0).count();
        assert!(low >= 30, "seed {seed}: {low} minutes low");
        let last_low = trues.iter().rev().find(|(_, p)| *p < 110.0).expect("low").0;
        let first_low = trues
            .iter()
            .find(|(h, p)| *h > 1.0 && *p < 110.0)
            .expect("low")
            .0;
        assert!(
            trues
                .iter()
                .any(|(h, p)| *h > first_low && *h < last_low && *p > 115.0),
            "seed {seed}: never refuelled"
        );
    }
}

#[test]
fn a_wrap_ends_the_stall_early() {
    for model in MODELS {
        for seed in 1..=4 {
            let mut unwrapped = scenario(MeatKind::Brisket, PitKind::Pellet, 120.0, seed);
            unwrapped.model = model;
            unwrapped.probe_off_centre = Some(0.0);
            let mut wrapped = unwrapped.clone();
            wrapped.wrap_at_c = Some(60.0);
            let run = |s: &CookScenario| {
                let samples: Vec<_> = s.samples().take(20 * 60).collect();
                (
                    plateau_hours(&samples, 60.0..75.0),
                    hours_to_core(s, &samples, 93.0).expect("done"),
                )
            };
            let ((stall_u, done_u), (stall_w, done_w)) = (run(&unwrapped), run(&wrapped));
            assert!(
                stall_w + 0.5 < stall_u && done_w + 0.5 < done_u,
                "{model:?} seed {seed}: stall {stall_u:.2} → {stall_w:.2} h, \
                 done {done_u:.2} → {done_w:.2} h"
            );
        }
    }
}

#[test]
fn a_probe_off_centre_reads_ahead_of_the_core() {
    for model in MODELS {
        let mut centre = scenario(MeatKind::Roast, PitKind::Pellet, 140.0, 2);
        centre.model = model;
        centre.probe_off_centre = Some(0.0);
        let mut off = centre.clone();
        off.probe_off_centre = Some(0.6);
        let at_hour = |s: &CookScenario| s.samples().nth(59).expect("an hour");
        let (c, o) = (at_hour(&centre), at_hour(&off));
        assert!((c.meat_c - c.core_c).abs() < 1.5, "{model:?}: {c:?}");
        assert!(o.meat_c > o.core_c + 3.0, "{model:?}: {o:?}");
        assert_eq!(
            c.core_c, o.core_c,
            "placement changes the reading, not the meat"
        );
    }
}

#[test]
fn bluetooth_gaps_drop_whole_minutes_of_samples() {
    let mut s = scenario(MeatKind::Brisket, PitKind::Pellet, 120.0, 4);
    s.interval_ms = 10_000;
    s.bluetooth_gaps = true;
    let times: Vec<i64> = s
        .samples()
        .take_while(|x| x.event_time_ms < s.start_ms + 10 * 3_600_000)
        .map(|x| x.event_time_ms)
        .collect();
    let longest = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("samples");
    assert!(longest >= 60_000, "longest gap {longest} ms");
    assert!(times.len() > 3_000, "mostly there: {}", times.len());
}

#[test]
fn a_pulled_probe_reads_the_air_then_the_meat_again() {
    let mut s = scenario(MeatKind::PorkShoulder, PitKind::Pellet, 120.0, 6);
    s.probe_pulls = true;
    s.interval_ms = 10_000;
    let samples: Vec<_> = s.samples().take(6 * 360 * 3).collect();
    // A pull: the reading falls 10 °C or more below the core while the core keeps rising.
    let pulled = samples
        .iter()
        .position(|x| x.core_c > 40.0 && x.meat_c < x.core_c - 10.0)
        .expect("a pull in 18 hours");
    let back = samples[pulled..]
        .iter()
        .position(|x| (x.meat_c - x.core_c).abs() < 5.0)
        .expect("pushed back in");
    assert!(back <= 6 * 6, "back after {back} samples");
}

#[test]
fn a_seed_determines_every_sample_and_every_reading() {
    for s in variety_suite() {
        let a: Vec<_> = s.samples().take(500).collect();
        let b: Vec<_> = s.samples().take(500).collect();
        assert_eq!(a, b, "{}", s.name);
        let other = CookScenario {
            seed: s.seed + 100,
            ..s.clone()
        };
        let c: Vec<_> = other.samples().take(500).collect();
        assert_ne!(a, c, "{}", s.name);
    }
    let config = SimulatorConfig {
        devices: 3,
        meat: MeatKind::Mixed,
        pit: PitKind::Mixed,
        bluetooth_gaps: true,
        probe_pulls: true,
        wrap_at_c: Some(65.0),
        interval_ms: 30_000,
        ..SimulatorConfig::default()
    };
    let run = |config: SimulatorConfig| {
        let mut sim = Simulator::new(config, 1_800_000_000_000);
        (0..2_000).flat_map(|_| sim.tick(None)).collect::<Vec<_>>()
    };
    assert_eq!(run(config.clone()), run(config.clone()));
    assert_ne!(
        run(config.clone()),
        run(SimulatorConfig { seed: 7, ..config })
    );
}

#[test]
fn the_variety_suite_spans_every_cut_pit_and_model_and_every_cook_finishes() {
    let suite = variety_suite();
    assert_eq!(suite.len(), 12);
    for meat in MeatKind::CUTS {
        assert!(
            suite.iter().filter(|s| s.meat == meat).count() >= 3,
            "{meat:?}"
        );
    }
    for pit in [PitKind::Kettle, PitKind::Offset, PitKind::Pellet] {
        assert!(suite.iter().any(|s| s.pit == pit), "{pit:?}");
    }
    for model in MODELS {
        assert!(suite.iter().any(|s| s.model == model), "{model:?}");
    }
    assert!(suite.iter().any(|s| s.wrap_at_c.is_some()));
    assert!(suite.iter().any(|s| !s.pit_probe));
    for s in &suite {
        let cook = s.run();
        let last = cook.meat.last().expect("samples");
        assert!(
            last.1.is_some_and(|t| t > s.target_c),
            "{} never got there",
            s.name
        );
        assert_eq!(cook.pit.is_empty(), !s.pit_probe, "{}", s.name);
        assert!(
            hours(s, last.0) < 24.0,
            "{} took {:.1} h",
            s.name,
            hours(s, last.0)
        );
    }
}

#[test]
fn a_smoker_keeps_its_hidden_parameters_across_its_cooks() {
    let cooks = smoker_cooks(11, "backyard-offset", MeatKind::PorkShoulder, 4);
    assert_eq!(cooks.len(), 4);
    let traits = SmokerTraits::for_device(11, "backyard-offset");
    for (n, s) in cooks.iter().enumerate() {
        assert_eq!(s.smoker(), traits, "cook {n}");
        assert_eq!(s.run().smoker, traits, "cook {n}");
        assert_eq!(s.pit, PitKind::Mixed, "the smoker's own pit");
    }
    // The cooks themselves differ (another piece, other noise) …
    let first: Vec<_> = cooks[0].samples().take(300).collect();
    let second: Vec<_> = cooks[1].samples().take(300).collect();
    assert_ne!(first, second);
    // … and other smokers differ in what is hidden.
    assert_ne!(SmokerTraits::for_device(11, "neighbour"), traits);
    assert_ne!(SmokerTraits::for_device(12, "backyard-offset"), traits);
    // The source's devices are smokers too: the same characteristics whatever cook runs.
    assert_eq!(
        SmokerTraits::for_device(42, "sim-1"),
        SmokerTraits::for_device(42, "sim-1")
    );
    let lows = |cook_number| {
        let mut sim = Simulator::new(
            SimulatorConfig {
                probes: 2,
                pit: PitKind::Mixed,
                meat: MeatKind::Brisket,
                interval_ms: 60_000,
                cook_number,
                ..SimulatorConfig::default()
            },
            0,
        );
        (0..600)
            .flat_map(|_| sim.tick(None))
            .filter(|r| r.probe_id == "pit")
            .filter_map(|r| r.temperature_c)
            .collect::<Vec<_>>()
    };
    assert_ne!(lows(0), lows(1), "another cook");
}

#[test]
fn the_source_runs_varied_cooks_with_their_names_and_gaps() {
    let mut sim = Simulator::new(
        SimulatorConfig {
            devices: 4,
            probes: 3,
            meat: MeatKind::Mixed,
            pit: PitKind::Mixed,
            bluetooth_gaps: true,
            interval_ms: 10_000,
            ..SimulatorConfig::default()
        },
        0,
    );
    let whats: Vec<String> = sim
        .cook_commands(93.0)
        .into_iter()
        .filter_map(|c| c.what)
        .collect();
    assert_eq!(whats.len(), 4);
    assert!(
        whats
            .iter()
            .all(|w| w.starts_with("Simulated ") && w.contains(" pit")),
        "{whats:?}"
    );
    let mut short_ticks = 0;
    for _ in 0..(20 * 360) {
        let readings = sim.tick(None);
        assert!(
            readings.len().is_multiple_of(3),
            "a device sends all its probes or none"
        );
        short_ticks += usize::from(readings.len() < 12);
    }
    assert!(
        short_ticks > 0,
        "no Bluetooth gap in 20 hours on four devices"
    );
}

#[test]
fn a_misspelt_or_unknown_setting_is_an_error_naming_it() {
    let err =
        serde_json::from_str::<SimulatorConfig>(r#"{"meet": "brisket"}"#).expect_err("unknown key");
    assert!(err.to_string().contains("meet"), "{err}");
    let err =
        serde_json::from_str::<SimulatorConfig>(r#"{"meat": "lamb"}"#).expect_err("unknown cut");
    assert!(err.to_string().contains("lamb"), "{err}");
    let ok: SimulatorConfig = serde_json::from_str(
        r#"{"meat": "pork_shoulder", "pit": "offset", "model": "lumped", "weight_kg": 4,
            "wrap_at_c": 68, "probe_off_centre": 0.3, "bluetooth_gaps": true,
            "probe_pulls": true, "cook_number": 2}"#,
    )
    .expect("valid");
    assert_eq!(ok.meat, MeatKind::PorkShoulder);
    assert!(!ok.is_classic());
    assert!(SimulatorConfig::default().is_classic());
}
