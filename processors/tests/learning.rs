//! Learning from the user's own cooks, end to end: simulated smokers, each with its own
//! hidden parameters, cook several times in a row; each cook is predicted from what the
//! smoker's earlier cooks taught only. Over several smokers the later cooks (the third on)
//! must be predicted better than the same cooks without learning, and better than a cook
//! with nothing learnt — what every first cook gets — over all the smokers' cooks.
//! The smokers here are not the ones `emberline eval-predictions --learning` reports.

use emberline_ingest::simulator::{MeatKind, SimulatedCook, smoker_cooks};
use emberline_processors::cook::forecast::ModelParams;
use emberline_processors::cook::intel::{CookBrain, CookInput, CookOutput};
use emberline_processors::cook::learning::{
    CookResult, DeviceCook, by_cook_index, evaluate_device, later_cooks,
};
use emberline_schemas::events::{CookEnded, CookStarted, DeviceRegistered, ProbeReading};

/// `count` cooks of the smoker `seed`, each naming its meat and weight.
fn smoker(seed: u64, meat: MeatKind, count: u32) -> Vec<DeviceCook> {
    let device = format!("test-smoker-{seed}");
    smoker_cooks(seed, &device, meat, count)
        .iter()
        .map(|scenario| {
            let cook = scenario.run();
            DeviceCook::simulated(
                cook.name,
                scenario.meat.name(),
                cook.weight_kg,
                cook.target_c,
                cook.pit,
                cook.meat,
            )
        })
        .collect()
}

#[test]
fn later_cooks_of_a_smoker_are_predicted_better_than_with_nothing_learnt() {
    let meats = [
        MeatKind::Chicken,
        MeatKind::Roast,
        MeatKind::PorkShoulder,
        MeatKind::Brisket,
    ];
    let devices: Vec<Vec<CookResult>> = (21..=36u64)
        .zip(meats.iter().cycle())
        .map(|(seed, meat)| {
            let (results, skipped) =
                evaluate_device(&smoker(seed, *meat, 5), &ModelParams::default());
            assert!(skipped.is_empty(), "seed {seed}: {skipped:?}");
            assert_eq!(results.len(), 5, "seed {seed}");
            results
        })
        .collect();
    // The first cook has nothing to learn from: both replays are the same.
    for d in &devices {
        assert_eq!(d[0].learnt, d[0].plain, "{}", d[0].name);
        assert_eq!(d[0].based_on, None);
        assert!(
            d[1].based_on
                .as_deref()
                .is_some_and(|b| b.contains("your last"))
        );
    }

    let (first, first_plain, n) = by_cook_index(&devices, 0);
    assert_eq!((first, n), (first_plain, devices.len()));
    // What a cook gets with nothing learnt — every device's first cook — over all the
    // smokers' cooks (the simulator's cook 0 of each smoker happens to be an easier one, so
    // the first cooks alone are a poor yardstick: see the report's no-learning column).
    let (_, as_first, all) = later_cooks(&devices, 0);
    assert_eq!(all, devices.len() * 5);
    let (later, later_plain, cooks) = later_cooks(&devices, 2);
    assert_eq!(cooks, devices.len() * 3);
    assert!(
        later < later_plain,
        "later cooks {later:.3} vs the same without learning {later_plain:.3} (median error at 50 %)"
    );
    assert!(
        later < as_first,
        "later cooks {later:.3} vs a cook with nothing learnt {as_first:.3}"
    );
}

/// Feeds one simulated cook into `brain` on device `d1` as the processor would: a cook
/// started naming its meat, the readings, and its end. Returns what its last prediction
/// said it was based on.
fn cook_on(
    brain: &mut CookBrain,
    cook_id: &str,
    scenario_cook: &SimulatedCook,
    end_early: bool,
) -> Option<String> {
    let start = scenario_cook.meat[0].0 - 1_000;
    let mut based_on = None;
    let mut send = |brain: &mut CookBrain, input: CookInput| {
        for out in brain.apply(&input).0 {
            if let CookOutput::Prediction(p) = out {
                based_on = Some(p.based_on);
            }
        }
    };
    send(
        brain,
        CookInput::CookStarted(CookStarted {
            cook_id: cook_id.into(),
            device_id: "d1".into(),
            event_time: start,
            what: None,
            targets_c: [("meat".to_owned(), scenario_cook.target_c)].into(),
            pit_min_c: None,
            pit_max_c: None,
            meat: Some("chicken".into()),
            weight_kg: scenario_cook.weight_kg,
            serve_at_ms: None,
            rest_min: None,
        }),
    );
    let mut readings: Vec<(i64, &str, Option<f64>)> = scenario_cook
        .pit
        .iter()
        .map(|(t, v)| (*t, "pit", *v))
        .chain(scenario_cook.meat.iter().map(|(t, v)| (*t, "meat", *v)))
        .collect();
    readings.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let until = if end_early {
        start + 3_600_000
    } else {
        i64::MAX
    };
    let mut end = start;
    for (t, probe, v) in readings.into_iter().filter(|r| r.0 < until) {
        end = t;
        send(
            brain,
            CookInput::Reading(ProbeReading {
                device_id: "d1".into(),
                probe_id: probe.into(),
                event_time: t,
                received_time: t,
                temperature_c: v,
                source: "test".into(),
            }),
        );
    }
    send(
        brain,
        CookInput::CookEnded(CookEnded {
            cook_id: cook_id.into(),
            device_id: "d1".into(),
            event_time: end + 1_000,
        }),
    );
    based_on.flatten()
}

#[test]
fn the_processor_learns_from_a_completed_cook_only_and_starts_the_next_from_it() {
    let cooks: Vec<SimulatedCook> = smoker_cooks(5, "d1", MeatKind::Chicken, 3)
        .iter()
        .map(|s| s.run())
        .collect();
    let mut brain = CookBrain::default();
    brain.apply(&CookInput::Registered(DeviceRegistered {
        device_id: "d1".into(),
        event_time: 0,
        tenant: "t".into(),
        model: None,
        name: "smoker".into(),
        probe_labels: [
            ("pit".to_owned(), "Pit".to_owned()),
            ("meat".to_owned(), "Food".to_owned()),
        ]
        .into(),
        source: "test".into(),
    }));
    // Ended an hour in, before the chicken was done: nothing learnt.
    assert_eq!(cook_on(&mut brain, "c1", &cooks[0], true), None);
    let dev = &brain.devices["d1"];
    assert_eq!(dev.profile.all.cooks, 0, "{:?}", dev.profile);
    // Done: learnt, once, under its meat.
    assert_eq!(cook_on(&mut brain, "c2", &cooks[1], false), None);
    let profile = brain.devices["d1"].profile.clone();
    assert_eq!(profile.all.cooks, 1, "{profile:?}");
    assert_eq!(profile.by_meat["chicken"].cooks, 1);
    assert!(profile.by_meat["chicken"].bias.n > 0.0, "{profile:?}");
    // The next cook starts from it: its prior, and its food probe's forecaster.
    let mut replay = brain.clone();
    assert_eq!(
        cook_on(&mut brain, "c3", &cooks[2], false).as_deref(),
        Some("based on your last chicken"),
        "the predictions say what they learnt from"
    );
    assert_eq!(brain.devices["d1"].profile.all.cooks, 2);
    replay.apply(&CookInput::CookStarted(CookStarted {
        cook_id: "c3".into(),
        device_id: "d1".into(),
        event_time: cooks[2].meat[0].0 - 1_000,
        what: None,
        targets_c: [("meat".to_owned(), cooks[2].target_c)].into(),
        pit_min_c: None,
        pit_max_c: None,
        meat: Some("whole chicken".into()),
        weight_kg: None,
        serve_at_ms: None,
        rest_min: None,
    }));
    let dev = &replay.devices["d1"];
    let prior = dev
        .cook
        .as_ref()
        .and_then(|c| c.prior.clone())
        .expect("a prior");
    assert_eq!((prior.cooks, prior.meat_cooks), (1, 1));
    assert_eq!(
        prior.based_on().as_deref(),
        Some("based on your last chicken")
    );
    assert_ne!(prior.bias, 0.0);
    assert_eq!(dev.probes["meat"].forecaster.prior.bias, prior.bias);
    assert_eq!(
        dev.probes["meat"].estimate, None,
        "the last cook's estimate is gone"
    );
}
