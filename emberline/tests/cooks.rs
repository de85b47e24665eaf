//! End-to-end: cook sessions through the gateway of a real `emberline up` — start, target,
//! note, end, list and fetch with readings — and the refusals.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::{
    AddNoteRequest, Cook, EndCookRequest, GetCookRequest, ListCooksRequest, SetTargetRequest,
    StartCookRequest,
};
use support::{PATIENCE, Up, free_port};
use tonic::Code;
use tonic::transport::Channel;

/// Waits until the cook's projection satisfies `ok` (the processor folds commands shortly
/// after they are appended).
async fn cook_when(
    client: &mut CookServiceClient<Channel>,
    device: &str,
    ok: impl Fn(&Cook) -> bool,
) -> Cook {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let cooks = client
            .list_cooks(ListCooksRequest {
                device_id: device.into(),
            })
            .await
            .expect("list")
            .into_inner()
            .cooks;
        if let Some(cook) = cooks.into_iter().find(&ok) {
            return cook;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cook never reached the expected state"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cook_is_started_targeted_noted_ended_and_fetched_with_its_readings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path(), free_port());
    let mut cooks = CookServiceClient::new(up.channel().await);
    let start =
        |what: &str, targets: &[(&str, f64)], pit: (Option<f64>, Option<f64>)| StartCookRequest {
            device_id: "sim-1".into(),
            what: what.into(),
            targets_c: targets
                .iter()
                .map(|(p, t)| ((*p).to_owned(), *t))
                .collect::<HashMap<_, _>>(),
            pit_min_c: pit.0,
            pit_max_c: pit.1,
            meat: None,
            weight_kg: None,
            serve_at_ms: None,
            rest_min: None,
        };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let serve_at_ms = now_ms + 10 * 3_600_000;
    let planned = |meat: Option<&str>, weight: f64, serve_at: i64, rest: f64| StartCookRequest {
        meat: meat.map(str::to_owned),
        weight_kg: Some(weight),
        serve_at_ms: Some(serve_at),
        rest_min: Some(rest),
        ..start("Brisket", &[("meat-1", 93.0)], (Some(105.0), Some(125.0)))
    };

    // Refusals first: nothing is appended for them.
    for (request, code) in [
        (
            start("x", &[("meat-1", 600.0)], (None, None)),
            Code::InvalidArgument,
        ),
        (
            start("x", &[], (Some(125.0), Some(105.0))),
            Code::InvalidArgument,
        ),
        (
            StartCookRequest {
                device_id: "nope".into(),
                ..start("x", &[], (None, None))
            },
            Code::NotFound,
        ),
        // A plan outside what a cook can be, each field on its own.
        (
            planned(Some("brisket"), 0.1, serve_at_ms, 60.0),
            Code::InvalidArgument,
        ),
        (
            planned(Some("brisket"), 5.0, serve_at_ms, 400.0),
            Code::InvalidArgument,
        ),
        (
            planned(Some("brisket"), 5.0, now_ms - 60_000, 60.0),
            Code::InvalidArgument,
        ),
        (
            planned(Some("brisket"), 5.0, now_ms + 8 * 24 * 3_600_000, 60.0),
            Code::InvalidArgument,
        ),
        (
            planned(Some("  "), 5.0, serve_at_ms, 60.0),
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(
            cooks.start_cook(request).await.expect_err("refused").code(),
            code
        );
    }

    // A cook needs a device Emberline knows: wait for the simulator's registration.
    up.wait_for_device("sim-1").await;
    let cook_id = cooks
        .start_cook(planned(Some(" brisket flat "), 5.5, serve_at_ms, 60.0))
        .await
        .expect("start")
        .into_inner()
        .cook_id;
    let cook = cook_when(&mut cooks, "sim-1", |c| c.cook_id == cook_id).await;
    assert_eq!(
        (cook.what.as_str(), cook.ended_ms, cook.pit_min_c),
        ("Brisket", None, Some(105.0))
    );
    // The plan it was started with comes back, through the log and the projection.
    let fetched = cooks
        .get_cook(GetCookRequest {
            cook_id: cook_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .cook
        .expect("the cook");
    assert_eq!(
        (
            fetched.meat.as_deref(),
            fetched.weight_kg,
            fetched.serve_at_ms,
            fetched.rest_min
        ),
        (
            Some("brisket flat"),
            Some(5.5),
            Some(serve_at_ms),
            Some(60.0)
        )
    );
    assert_eq!(
        (cook.meat, cook.weight_kg, cook.serve_at_ms, cook.rest_min),
        (
            fetched.meat.clone(),
            fetched.weight_kg,
            fetched.serve_at_ms,
            fetched.rest_min
        ),
        "ListCooks and GetCook agree"
    );
    let second = cooks
        .start_cook(start("Ribs", &[], (None, None)))
        .await
        .expect_err("one cook at a time");
    assert_eq!(second.code(), Code::FailedPrecondition);

    cooks
        .set_target(SetTargetRequest {
            device_id: "sim-1".into(),
            probe_id: "meat-2".into(),
            target_c: Some(70.0),
        })
        .await
        .expect("target");
    cooks
        .add_note(AddNoteRequest {
            cook_id: cook_id.clone(),
            text: "  wrapped in paper ".into(),
        })
        .await
        .expect("note");
    assert_eq!(
        cooks
            .add_note(AddNoteRequest {
                cook_id: cook_id.clone(),
                text: " ".into()
            })
            .await
            .expect_err("empty")
            .code(),
        Code::InvalidArgument
    );
    let cook = cook_when(&mut cooks, "sim-1", |c| {
        c.cook_id == cook_id && c.targets_c.len() == 2 && !c.notes.is_empty()
    })
    .await;
    assert_eq!(cook.targets_c.get("meat-2"), Some(&70.0));
    assert_eq!(cook.notes[0].text, "wrapped in paper");

    // Let the simulated grill report during the cook.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while cooks
        .get_cook(GetCookRequest {
            cook_id: cook_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .probes
        .iter()
        .find(|p| p.probe_id == "pit")
        .is_none_or(|p| p.points.len() < 2)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no readings during the cook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cooks
        .end_cook(EndCookRequest {
            cook_id: cook_id.clone(),
        })
        .await
        .expect("end");
    let cook = cook_when(&mut cooks, "sim-1", |c| {
        c.cook_id == cook_id && c.ended_ms.is_some()
    })
    .await;
    assert_eq!(
        cooks
            .end_cook(EndCookRequest {
                cook_id: cook_id.clone()
            })
            .await
            .expect_err("twice")
            .code(),
        Code::FailedPrecondition
    );
    let got = cooks
        .get_cook(GetCookRequest {
            cook_id: cook_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let (start_ms, end_ms) = (cook.started_ms, cook.ended_ms.expect("ended"));
    let pit = got
        .probes
        .iter()
        .find(|p| p.probe_id == "pit")
        .expect("the pit's readings");
    assert!(
        pit.points
            .iter()
            .all(|p| (start_ms..=end_ms).contains(&p.event_time_ms)),
        "readings outside the cook"
    );
    assert!(pit.points.len() >= 2, "the cook's readings are returned");
    assert_eq!(
        cooks
            .get_cook(GetCookRequest {
                cook_id: "missing".into()
            })
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );
    // A new cook may start once the last one ended.
    cooks
        .start_cook(start("Ribs", &[], (None, None)))
        .await
        .expect("a second cook after the first ended");
    up.interrupt();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cook_is_planned_backwards_from_serving_time_and_impossible_plans_are_refused() {
    use emberline_proto::v1::PlanRequest;
    use emberline_proto::v1::planner_service_client::PlannerServiceClient;

    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path(), free_port());
    let mut planner = PlannerServiceClient::new(up.channel().await);
    let serve = 1_800_000_000_000;
    let ask = |meat: &str, pit: Option<f64>| PlanRequest {
        serve_at_ms: serve,
        meat: meat.into(),
        weight_kg: 4.0,
        target_c: None,
        rest_min: Some(60.0),
        pit_c: pit,
        start_c: None,
        wrap: true,
        warmup_min: Some(30.0),
    };
    let plan = planner
        .plan(ask("Pork butt, bone in", Some(120.0)))
        .await
        .expect("plan")
        .into_inner();
    assert_eq!(plan.cut, "pork_shoulder");
    assert_eq!(plan.target_c, 95.0, "the cut's usual target");
    assert_eq!(plan.based_on, "typical pork shoulders");
    let pull = plan.pull_at.expect("pull time");
    let stall = plan.stall.expect("a shoulder at 120 °C stalls");
    let wrap = plan.wrap_at.expect("wrapping was asked for");
    assert_eq!(
        pull.latest_ms,
        serve - 3_600_000,
        "done by the start of the rest"
    );
    assert_eq!(plan.light_at_ms, plan.put_on_at_ms - 30 * 60_000);
    assert!(plan.put_on_at_ms < stall.likely_ms && stall.likely_ms < wrap.likely_ms);
    assert!(wrap.likely_ms < pull.earliest_ms && pull.earliest_ms < pull.likely_ms);
    let hours = (pull.latest_ms - plan.put_on_at_ms) as f64 / 3_600_000.0;
    assert!((hours - plan.cook_hours_slow).abs() < 0.01, "{hours}");

    // A roast in a hot oven: no stall.
    let roast = planner
        .plan(ask("prime rib", Some(180.0)))
        .await
        .expect("plan")
        .into_inner();
    assert_eq!(roast.stall, None);
    assert!(roast.cook_hours_usual < plan.cook_hours_usual);

    for (request, needle) in [
        (ask("brisket", Some(60.0)), "pit_c"),
        (ask("brisket", Some(95.0)), "at least 10 °C hotter"),
        (ask("", None), "meat is empty"),
        (
            PlanRequest {
                weight_kg: 0.0,
                ..ask("brisket", None)
            },
            "weight_kg",
        ),
    ] {
        let refused = planner.plan(request).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(needle), "{}", refused.message());
    }
}
