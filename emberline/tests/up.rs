//! End-to-end: the real `emberline up` binary, driven through real gRPC, grpc-web and
//! reflection clients; then killed with SIGKILL and restarted on the same data directory.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::Arc;

use emberline_log::{EventLog, conformance::read_to_end, topics};
use emberline_processors::{Mode, TrendConfig, catch_up, run_devices};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{
    GetHistoryRequest, GetLatestRequest, ListDevicesRequest, StartFrom, SubscribeTrendsRequest,
    TrendEvent,
};
use emberline_schemas::events::ProbeReading;
use tokio_stream::StreamExt;

mod support;

use support::{PATIENCE, Up, free_port};

/// One device's updates, across any restarts: one partition, consecutive offsets (no gap,
/// no repeat) and strictly increasing source readings (no trend twice).
fn assert_continuous(events: &[TrendEvent]) {
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].partition, pair[0].partition,
            "one device, one partition"
        );
        assert_eq!(
            pair[1].offset,
            pair[0].offset + 1,
            "gap or repeat in the stream"
        );
        assert!(
            pair[1].source_offset > pair[0].source_offset,
            "trend repeated for one reading"
        );
    }
}

async fn take_events(stream: &mut tonic::Streaming<TrendEvent>, n: usize) -> Vec<TrendEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("no update in time");
        out.push(next.expect("stream ended").expect("stream error"));
    }
    out
}

/// A subscription's response says where each partition starts (`emberline-start-offsets`),
/// so a client whose stream broke before its first update resumes from there: what was
/// appended meanwhile is delivered, where a new subscription "from now" would skip it.
async fn starts_say_where_a_resume_continues(channel: tonic::transport::Channel) {
    let latest = |resume: BTreeMap<u32, u64>| SubscribeTrendsRequest {
        device_id: String::new(),
        resume: resume.into_iter().collect(),
        start: StartFrom::Latest as i32,
    };
    let mut client = TrendServiceClient::new(channel);
    let first = client
        .subscribe_trends(latest(BTreeMap::new()))
        .await
        .expect("subscribe");
    let header = first
        .metadata()
        .get(emberline_gateway::START_OFFSETS)
        .expect("start offsets header")
        .to_str()
        .expect("ascii")
        .to_owned();
    drop(first); // broken before any update
    let starts: BTreeMap<u32, u64> = header
        .split(',')
        .map(|pair| {
            let (p, o) = pair.split_once('=').expect("partition=offset");
            (p.parse().expect("partition"), o.parse().expect("offset"))
        })
        .collect();
    assert!(!starts.is_empty(), "no partitions in {header:?}");
    // Something is appended after the broken stream started: a later "from now"
    // subscription sees it.
    let mut later = client
        .subscribe_trends(latest(BTreeMap::new()))
        .await
        .expect("subscribe")
        .into_inner();
    let appended = take_events(&mut later, 1).await.remove(0);
    drop(later);
    // Resuming from the starts delivers every partition from its start, so that too.
    let mut resumed = client
        .subscribe_trends(latest(starts.clone()))
        .await
        .expect("resume")
        .into_inner();
    let mut next = starts.clone();
    while next[&appended.partition] <= appended.offset {
        let e = take_events(&mut resumed, 1).await.remove(0);
        assert_eq!(
            Some(&e.offset),
            next.get(&e.partition),
            "a resume from the start offsets skipped or repeated"
        );
        next.insert(e.partition, e.offset + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_reflection_queries_grpc_web_and_live_trends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Up::start(dir.path(), free_port());
    let channel = up.channel().await;

    // A client that knows only reflection finds the services.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut reflection = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = reflection.next().await.expect("answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "emberline.v1.DeviceService",
        "emberline.v1.ReadingService",
        "emberline.v1.TrendService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }

    // Live trend updates for the simulated device.
    let started = std::time::Instant::now();
    let mut trends = TrendServiceClient::new(channel.clone())
        .subscribe_trends(SubscribeTrendsRequest {
            device_id: "sim-1".into(),
            resume: Default::default(),
            start: StartFrom::Latest as i32,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let events = take_events(&mut trends, 10).await;
    eprintln!("10 live trend updates in {:?}", started.elapsed());
    assert!(
        events
            .iter()
            .all(|e| e.device_id == "sim-1" && e.trend.is_some())
    );
    let probes: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.probe_id.as_str()).collect();
    assert!(probes.len() >= 3, "updates from {probes:?}");
    assert_continuous(&events);
    drop(trends);
    starts_say_where_a_resume_continues(channel.clone()).await;

    // Queries answer from projections. The stream runs ahead of them (a round's trends are
    // appended before the batch that projects them) and devices are listed once a projector
    // has seen them: wait, as a client would, until every probe of sim-1 is projected.
    let mut device_client = DeviceServiceClient::new(channel.clone());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let devices = loop {
        let devices = device_client
            .list_devices(ListDevicesRequest::default())
            .await
            .expect("list")
            .into_inner();
        if devices
            .devices
            .iter()
            .any(|d| d.device_id == "sim-1" && d.probe_count == 4)
        {
            break devices;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sim-1's four probes were never projected: {devices:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        devices
            .devices
            .iter()
            .map(|d| d.device_id.as_str())
            .collect::<Vec<_>>(),
        ["sim-1"]
    );
    assert_eq!(devices.devices[0].probe_count, 4);
    let latest = DeviceServiceClient::new(channel.clone())
        .get_latest(GetLatestRequest {
            device_id: "sim-1".into(),
        })
        .await
        .expect("latest")
        .into_inner();
    assert_eq!(
        latest
            .probes
            .iter()
            .map(|p| p.probe_id.as_str())
            .collect::<Vec<_>>(),
        ["meat-1", "meat-2", "meat-3", "pit"]
    );
    let missing = DeviceServiceClient::new(channel.clone())
        .get_latest(GetLatestRequest {
            device_id: "nope".into(),
        })
        .await;
    assert_eq!(
        missing.expect_err("unknown device").code(),
        tonic::Code::NotFound
    );
    let history = ReadingServiceClient::new(channel.clone())
        .get_history(GetHistoryRequest {
            device_id: "sim-1".into(),
            probe_id: "pit".into(),
            from_ms: 0,
            to_ms: i64::MAX,
            limit: 0,
            step_ms: 0,
        })
        .await
        .expect("history")
        .into_inner();
    assert!(!history.points.is_empty());
    assert!(
        history
            .points
            .windows(2)
            .all(|w| w[0].event_time_ms < w[1].event_time_ms)
    );
    // The same points summarised in minutes: a closed range (the simulator appends later
    // event times only), so both answers hold the same points.
    let end = history.points.last().expect("a point").event_time_ms + 1;
    let points = ReadingServiceClient::new(channel.clone())
        .get_history(GetHistoryRequest {
            device_id: "sim-1".into(),
            probe_id: "pit".into(),
            from_ms: 0,
            to_ms: end,
            limit: 0,
            step_ms: 0,
        })
        .await
        .expect("history to the last point")
        .into_inner()
        .points;
    let steps = ReadingServiceClient::new(channel.clone())
        .get_history(GetHistoryRequest {
            device_id: "sim-1".into(),
            probe_id: "pit".into(),
            from_ms: 0,
            to_ms: end,
            limit: 0,
            step_ms: 60_000,
        })
        .await
        .expect("history in steps")
        .into_inner();
    assert!(steps.points.is_empty(), "steps, not points");
    let mut want = emberline_projections::Downsampler::new(60_000, usize::MAX);
    for p in &points {
        want.push(p.event_time_ms, p.temperature_c);
    }
    let want: Vec<_> = want
        .finish()
        .into_iter()
        .map(|s| (s.start, s.readings, s.mean_c, s.min_c, s.max_c))
        .collect();
    let got: Vec<_> = steps
        .steps
        .iter()
        .map(|s| (s.start_ms, s.readings, s.mean_c, s.min_c, s.max_c))
        .collect();
    assert_eq!(got, want, "steps of a minute summarise the stored points");
    let too_fine = ReadingServiceClient::new(channel.clone())
        .get_history(GetHistoryRequest {
            device_id: "sim-1".into(),
            probe_id: "pit".into(),
            from_ms: 0,
            to_ms: end,
            limit: 0,
            step_ms: 10,
        })
        .await;
    assert_eq!(
        too_fine.expect_err("a step under a second").code(),
        tonic::Code::InvalidArgument
    );
    let bad = ReadingServiceClient::new(channel.clone())
        .get_history(GetHistoryRequest {
            device_id: "sim-1".into(),
            probe_id: "pit".into(),
            from_ms: 10,
            to_ms: 5,
            limit: 0,
            step_ms: 0,
        })
        .await;
    assert_eq!(
        bad.expect_err("inverted range").code(),
        tonic::Code::InvalidArgument
    );

    // grpc-web over HTTP/1.1, on the gRPC port and on the web UI's origin: a framed empty
    // ListDevicesRequest.
    for addr in [up.grpc, up.web] {
        emberline_common::http::install_crypto_provider();
        let response = reqwest::Client::new()
            .post(format!(
                "http://{addr}/emberline.v1.DeviceService/ListDevices"
            ))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .expect("grpc-web request");
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.expect("body");
        assert_eq!(body[0], 0, "first frame is data");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("sim-1"),
            "device missing from grpc-web answer"
        );
        assert!(text.contains("grpc-status:0"), "no OK trailer in {text:?}");
    }

    // The web UI: the page (also for client-side routes), assets, and a 404 for a missing one.
    let http = reqwest::Client::new();
    for path in ["/", "/device/sim-1"] {
        let page = http
            .get(format!("http://{}{path}", up.web))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers()["cache-control"], "no-cache");
        let html = page.text().await.expect("html");
        assert!(html.contains("<script type=\"module\""), "{html}");
    }
    let missing = http
        .get(format!("http://{}/assets/missing.js", up.web))
        .send()
        .await
        .expect("missing asset");
    assert_eq!(missing.status(), 404);
    let manifest = http
        .get(format!("http://{}/manifest.webmanifest", up.web))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("manifest");
    assert_eq!(manifest.status(), 200);
    assert_eq!(manifest.headers()["content-encoding"], "gzip");
    assert_eq!(
        manifest.headers()["content-type"],
        "application/manifest+json"
    );
    up.interrupt();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_resume_without_gap_or_repeat_and_match_a_fresh_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let up = Up::start(dir.path(), grpc);
    let channel = up.channel().await;
    let request = |resume: BTreeMap<u32, u64>| SubscribeTrendsRequest {
        device_id: "sim-1".into(),
        resume: resume.into_iter().collect(),
        start: StartFrom::Earliest as i32,
    };
    let mut stream = TrendServiceClient::new(channel)
        .subscribe_trends(request(BTreeMap::new()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = take_events(&mut stream, 24).await;
    up.kill_9();

    // The client resumes from the next offset it expects, per partition.
    let mut resume = BTreeMap::new();
    for e in &seen {
        resume.insert(e.partition, e.offset + 1);
    }
    let up = Up::start(dir.path(), grpc);
    let channel = up.channel().await;
    let mut stream = TrendServiceClient::new(channel)
        .subscribe_trends(request(resume.clone()))
        .await
        .expect("resubscribe")
        .into_inner();
    let after = take_events(&mut stream, 24).await;
    let first = &after[0];
    assert_eq!(
        Some(&first.offset),
        resume.get(&first.partition),
        "resumed at the wrong offset"
    );
    seen.extend(after);
    assert_continuous(&seen);
    up.interrupt();

    // Let the processor finish what the log holds (as a restart would), then compare with
    // a replay of the whole log from offset 0 into an empty store and a fresh topic.
    let (log, codec) = emberline_ingest::testing::embedded_log(dir.path(), 4)
        .await
        .expect("log");
    let live = Arc::new(EmbeddedStore::open(&dir.path().join("projections.redb")).expect("store"));
    let replay = Arc::new(EmbeddedStore::open(&dir.path().join("replay.redb")).expect("store"));
    for (store, output) in [
        (live.clone(), topics::DERIVED_TRENDS),
        (replay.clone(), "replay.trends"),
    ] {
        let config = TrendConfig {
            output_topic: output.into(),
            consumer: format!("check.{output}"),
            ..TrendConfig::default()
        };
        catch_up(log.clone(), store.clone(), codec.clone(), config)
            .await
            .expect("catch up");
        run_devices(
            log.clone(),
            store,
            codec.clone(),
            Mode::CatchUp,
            Default::default(),
        )
        .await
        .expect("device projections");
    }
    // The cook processor follows the live log in arrival order, which a replay need not
    // repeat (its own replay determinism is tested in catch-up mode): leave its part out.
    let not_cook = |(table, key, _): &(String, Vec<u8>, Vec<u8>)| {
        !(table.starts_with("proj.predictions")
            || table.starts_with("proj.alert")
            || key.starts_with(b"cook/"))
    };
    let live_dump: Vec<_> = live
        .dump()
        .await
        .expect("dump")
        .into_iter()
        .filter(not_cook)
        .collect();
    let replay_dump = replay.dump().await.expect("dump");
    assert_eq!(
        live_dump.len(),
        replay_dump.len(),
        "projection sizes differ"
    );
    if let Some((a, b)) = live_dump.iter().zip(&replay_dump).find(|(a, b)| a != b) {
        panic!(
            "projection differs from a fresh replay at {} {}",
            a.0,
            String::from_utf8_lossy(&a.1).replace('\u{0}', "") + &String::from_utf8_lossy(&b.1)
        );
    }
    // Every acknowledged reading is in history, and the derived topic has neither gaps
    // nor repeats: it equals the replay's byte for byte.
    let partitions = log
        .partitions(topics::PROBE_READINGS)
        .await
        .expect("partitions");
    let mut readings = 0;
    for p in 0..partitions {
        for record in read_to_end(log.as_ref(), topics::PROBE_READINGS, p, 0)
            .await
            .expect("read")
        {
            let r: ProbeReading = codec.decode(&record.value).await.expect("reading");
            let h = live
                .history(&r.device_id, &r.probe_id, r.event_time, r.event_time + 1, 1)
                .await
                .expect("history");
            assert_eq!(
                h.len(),
                1,
                "reading at offset {} missing from history",
                record.offset
            );
            assert_eq!(h[0].temperature_c, r.temperature_c);
            readings += 1;
        }
        let live_trends = read_to_end(log.as_ref(), topics::DERIVED_TRENDS, p, 0)
            .await
            .expect("read");
        let replay_trends = read_to_end(log.as_ref(), "replay.trends", p, 0)
            .await
            .expect("read");
        assert_eq!(
            live_trends.len(),
            replay_trends.len(),
            "partition {p}: trend counts differ"
        );
        assert!(
            live_trends
                .iter()
                .zip(&replay_trends)
                .all(|(a, b)| a.value == b.value),
            "partition {p}: trends differ"
        );
    }
    assert!(readings >= 48, "only {readings} readings in the log");
}

/// The same binary on the Kafka backend: `up` with `log.backend = "kafka"` streams live
/// trends from the broker and resumes without gap or repeat after `kill -9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_kafka_streams_and_resumes_after_kill_9() {
    let Some(kafka) = emberline_log::conformance::kafka_from_env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let env = [
        ("EMBERLINE__LOG__BACKEND", "kafka"),
        (
            "EMBERLINE__LOG__KAFKA__BOOTSTRAP_SERVERS",
            kafka.bootstrap_servers.as_str(),
        ),
        ("EMBERLINE__LOG__PARTITIONS", "2"),
    ];
    let request = |resume: BTreeMap<u32, u64>| SubscribeTrendsRequest {
        device_id: "sim-1".into(),
        resume: resume.into_iter().collect(),
        start: StartFrom::Latest as i32,
    };
    let up = Up::start_with(dir.path(), grpc, &env);
    let mut stream = TrendServiceClient::new(up.channel().await)
        .subscribe_trends(request(BTreeMap::new()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = take_events(&mut stream, 12).await;
    up.kill_9();
    let resume: BTreeMap<u32, u64> = seen.iter().map(|e| (e.partition, e.offset + 1)).collect();
    let up = Up::start_with(dir.path(), grpc, &env);
    let mut stream = TrendServiceClient::new(up.channel().await)
        .subscribe_trends(request(resume))
        .await
        .expect("resubscribe")
        .into_inner();
    seen.extend(take_events(&mut stream, 12).await);
    assert_continuous(&seen);
    // Trends stream before their projection batch is written, and the registration is
    // projected apart from them: wait for the listing instead of asking once.
    up.wait_for_device("sim-1").await;
    up.interrupt();
}
