//! Replay determinism of the processor role: the same log processed twice, and once killed
//! with SIGKILL half-way and restarted, gives identical `derived.*` and `alerts` topics and
//! identical projections — trends, devices, cooks, phases, predictions, alert episodes.
#![allow(clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use emberline_ingest::testing::embedded_log;
use emberline_ingest::{Simulator, SimulatorConfig};
use emberline_log::conformance::read_to_end;
use emberline_log::{EventLog, NewRecord, topics};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use emberline_schemas::Event;
use emberline_schemas::events::{AlertRuleSet, ClockTick, CookStarted, DeviceStatus, ProbeReading};

const START: i64 = 1_790_000_000_000;
const HOURS: i64 = 8;

fn record<E: Event>(codec: &emberline_schemas::EventCodec, key: &str, e: &E, t: i64) -> NewRecord {
    NewRecord {
        key: key.as_bytes().to_vec(),
        value: codec.encode(e).expect("encode"),
        timestamp_ms: t,
    }
}

fn rule(
    id: &str,
    device: &str,
    probe: Option<&str>,
    kind: &str,
    threshold: f64,
    for_s: f64,
) -> AlertRuleSet {
    AlertRuleSet {
        rule_id: id.into(),
        device_id: device.into(),
        event_time: START,
        probe_id: probe.map(str::to_owned),
        cook_id: None,
        kind: kind.into(),
        threshold: Some(threshold),
        low: None,
        high: None,
        for_s,
        hysteresis: 1.0,
        repeat_every_s: Some(1_800.0),
        enabled: true,
        label: None,
    }
}

/// Eight hours of two simulated grills with a cook, alert rules of every time-based and
/// value-based sort, statuses, clock ticks, and a 20-minute silence of one grill.
async fn write_log(dir: &Path) {
    let (log, codec) = embedded_log(dir, 4).await.expect("log");
    let config = SimulatorConfig {
        devices: 2,
        probes: 3,
        interval_ms: 15_000,
        ..SimulatorConfig::default()
    };
    let mut sim = Simulator::new(config, START);
    let mut commands = Vec::new();
    let mut events = Vec::new();
    for r in sim.registrations() {
        events.push(record(&codec, &r.device_id.clone(), &r, START));
    }
    for device in ["sim-1", "sim-2"] {
        let cook = CookStarted {
            cook_id: format!("cook-{device}"),
            device_id: device.into(),
            event_time: START,
            what: Some("brisket".into()),
            targets_c: [("meat-1".to_owned(), 93.0), ("meat-2".to_owned(), 80.0)].into(),
            pit_min_c: Some(105.0),
            pit_max_c: Some(135.0),
            meat: None,
            weight_kg: None,
            serve_at_ms: None,
            rest_min: None,
        };
        commands.push(record(&codec, device, &cook, START));
        for r in [
            rule(
                &format!("{device}-hot"),
                device,
                Some("pit"),
                "above",
                122.0,
                0.0,
            ),
            rule(
                &format!("{device}-cold"),
                device,
                Some("pit"),
                "below",
                100.0,
                30.0,
            ),
            rule(
                &format!("{device}-out"),
                device,
                Some("meat-1"),
                "probe_disconnected",
                20.0,
                0.0,
            ),
            rule(
                &format!("{device}-battery"),
                device,
                None,
                "battery_below",
                99.6,
                0.0,
            ),
            rule(
                &format!("{device}-offline"),
                device,
                None,
                "device_offline",
                300.0,
                0.0,
            ),
            rule(
                &format!("{device}-soon"),
                device,
                Some("meat-2"),
                "predicted_done_within",
                30.0,
                0.0,
            ),
        ] {
            commands.push(record(&codec, device, &r, START));
        }
    }
    log.append(topics::COOK_COMMANDS, commands)
        .await
        .expect("append");
    log.append(topics::DEVICE_EVENTS, events)
        .await
        .expect("append");
    let silent = (START + 3 * 3_600_000)..(START + 3 * 3_600_000 + 1_200_000);
    let mut tick = 0;
    while sim.now_ms() < START + HOURS * 3_600_000 {
        let now = sim.now_ms();
        let readings: Vec<ProbeReading> = sim
            .tick(None)
            .into_iter()
            .filter(|r| !(r.device_id == "sim-2" && silent.contains(&r.event_time)))
            .collect();
        let records = readings
            .iter()
            .map(|r| record(&codec, &r.device_id, r, r.event_time))
            .collect();
        log.append(topics::PROBE_READINGS, records)
            .await
            .expect("append");
        tick += 1;
        if tick % 4 == 0 {
            let t = ClockTick {
                event_time: now,
                source: "test".into(),
                wall_jump_ms: None,
            };
            log.append(
                topics::COOK_COMMANDS,
                vec![record(&codec, "clock", &t, now)],
            )
            .await
            .expect("append");
        }
        if tick % 240 == 0 {
            let statuses: Vec<DeviceStatus> = sim.statuses(now);
            let records = statuses
                .iter()
                .map(|s| record(&codec, &s.device_id, s, now))
                .collect();
            log.append(topics::DEVICE_EVENTS, records)
                .await
                .expect("append");
        }
    }
}

fn process(dir: &Path) -> std::process::Child {
    emberline(dir, &["process", "--catch-up"])
}

/// `emberline <args>` on `dir`, its standard error piped.
fn emberline(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_emberline"))
        .args(["--data-dir", &dir.display().to_string()])
        .args(args)
        .env("RUST_LOG", "warn,emberline_processors::cook::run=debug")
        // The log's readings are from a fixed day long past: retention would remove them
        // while they are processed, and this test is about determinism, not retention.
        .env("EMBERLINE__LOG__RETENTION_DAYS", "0")
        .env("EMBERLINE__HISTORY__RETENTION_DAYS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn emberline")
}

/// Reads `child`'s log until the cook processor has written a batch past input 4 096 (of
/// about 12 000), then kills it with SIGKILL; the input it got to.
fn kill_half_way(mut child: std::process::Child) -> u64 {
    let stderr = child.stderr.take().expect("stderr");
    let mut killed_at = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        eprintln!("[emberline] {line}");
        let seq = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("seq="))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(seq) = seq.filter(|s| *s >= 4_096) {
            child.kill().expect("SIGKILL");
            killed_at = Some(seq);
            break;
        }
    }
    child.wait().expect("reap");
    killed_at.expect("the processor never got half-way")
}

fn run_to_end(dir: &Path) {
    let out = process(dir).wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "emberline process --catch-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A record as compared: partition, offset, key, value, timestamp.
type Row = (u32, u64, Vec<u8>, Vec<u8>, i64);
type Topics = BTreeMap<String, Vec<Row>>;
/// A projection dump: table, key, value.
type Dump = Vec<(String, Vec<u8>, Vec<u8>)>;

/// Every output topic's records and the projections, once the processes are gone.
async fn outputs(dir: &Path) -> (Topics, Dump) {
    let (log, _) = embedded_log(dir, 4).await.expect("log");
    let mut all = Topics::new();
    for topic in [
        topics::DERIVED_TRENDS,
        topics::DERIVED_PREDICTIONS,
        topics::ALERTS,
    ] {
        let mut records = Vec::new();
        for p in 0..log.partitions(topic).await.expect("partitions") {
            for r in read_to_end(log.as_ref(), topic, p, 0).await.expect("read") {
                records.push((p, r.offset, r.key, r.value, r.timestamp_ms));
            }
        }
        all.insert(topic.to_owned(), records);
    }
    drop(log);
    let store = EmbeddedStore::open(&dir.join("projections.redb")).expect("store");
    (all, store.dump().await.expect("dump"))
}

fn same(a: &(Topics, Dump), b: &(Topics, Dump), what: &str) {
    for (topic, records) in &a.0 {
        let other = &b.0[topic];
        assert_eq!(
            records.len(),
            other.len(),
            "{what}: {topic} record counts differ"
        );
        if let Some(i) = records.iter().zip(other).position(|(x, y)| x != y) {
            panic!(
                "{what}: {topic} differs at record {i} (partition {}, offset {})",
                records[i].0, records[i].1
            );
        }
    }
    assert_eq!(a.1.len(), b.1.len(), "{what}: projection sizes differ");
    if let Some((x, _)) = a.1.iter().zip(&b.1).find(|(x, y)| x != y) {
        panic!(
            "{what}: projections differ at {} {}",
            x.0,
            String::from_utf8_lossy(&x.1)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_twice_and_after_a_kill_9_gives_identical_topics_and_projections() {
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    for dir in &dirs {
        write_log(dir.path()).await;
    }
    run_to_end(dirs[0].path());
    run_to_end(dirs[1].path());

    // Kill the third half-way, then finish with a second run.
    let killed_at = kill_half_way(process(dirs[2].path()));
    eprintln!("killed after the batch up to input {killed_at}");
    run_to_end(dirs[2].path());

    let first = outputs(dirs[0].path()).await;
    let second = outputs(dirs[1].path()).await;
    let resumed = outputs(dirs[2].path()).await;
    // The comparison means something only if the cook produced plenty of every kind.
    let alerts = &first.0[topics::ALERTS];
    let predictions = &first.0[topics::DERIVED_PREDICTIONS];
    assert!(predictions.len() > 500, "{} predictions", predictions.len());
    assert!(alerts.len() > 10, "{} alert records", alerts.len());
    let decoded = decode_alert_kinds(dirs[0].path(), alerts).await;
    for kind in [
        "above",
        "below",
        "probe_disconnected",
        "battery_below",
        "device_offline",
        "target_reached",
    ] {
        assert!(
            decoded.iter().any(|k| k == kind),
            "no {kind} alert in {decoded:?}"
        );
    }
    same(&first, &second, "a second run");
    same(&first, &resumed, "a run killed half-way and resumed");
}

async fn decode_alert_kinds(dir: &Path, alerts: &[Row]) -> Vec<String> {
    let (_, codec) = embedded_log(dir, 4).await.expect("log");
    let mut kinds = Vec::new();
    for (_, _, _, value, _) in alerts {
        if codec.kind_of(value).ok().flatten() == Some(emberline_schemas::EventKind::AlertRaised) {
            let r: emberline_schemas::events::AlertRaised =
                codec.decode(value).await.expect("an alert");
            kinds.push(r.kind);
        }
    }
    kinds
}

/// `emberline rebuild` on `dir` to the end: its standard output, or the failure's log.
fn rebuild(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["rebuild"];
    all.extend_from_slice(args);
    let out = emberline(dir, &all).wait_with_output().expect("wait");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_killed_half_way_resumes_to_the_live_projections_and_appends_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path()).await;
    run_to_end(dir.path());
    let live = outputs(dir.path()).await;
    assert!(!live.1.is_empty(), "the live projections are empty");
    // Something the log does not say, which only a rebuild from the log takes away.
    {
        let store = EmbeddedStore::open(&dir.path().join("projections.redb")).expect("store");
        let stray = emberline_projections::ProjectionBatch {
            state: vec![("stray/state".into(), b"not from the log".to_vec())],
            ..Default::default()
        };
        store.apply(stray).await.expect("apply");
    }
    assert_ne!(outputs(dir.path()).await.1, live.1);

    let killed_at = kill_half_way(emberline(dir.path(), &["rebuild"]));
    eprintln!("rebuild killed after the batch up to input {killed_at}");
    let marker = dir.path().join("rebuild.pending");
    assert!(marker.exists(), "a killed rebuild leaves its marker");

    let summary = rebuild(dir.path(), &[]).expect("the resumed rebuild succeeds");
    assert!(
        summary.contains("records appended to the derived topics: 0"),
        "{summary}"
    );
    assert!(!marker.exists(), "a finished rebuild removes its marker");
    same(
        &live,
        &outputs(dir.path()).await,
        "a rebuild killed and resumed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_an_older_format_is_refused_with_the_rebuild_hint_and_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path()).await;
    run_to_end(dir.path());
    let live = outputs(dir.path()).await;
    // A store from before format versions were recorded: the same tables, no version.
    {
        let db = redb::Database::open(dir.path().join("projections.redb")).expect("open");
        let txn = db.begin_write().expect("write");
        {
            let meta: redb::TableDefinition<&str, i64> = redb::TableDefinition::new("proj.meta");
            let mut meta = txn.open_table(meta).expect("meta");
            assert!(
                meta.remove("format_version").expect("remove").is_some(),
                "the store records its format version"
            );
        }
        txn.commit().expect("commit");
    }
    let out = process(dir.path()).wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an old store was opened: {stderr}");
    assert!(
        stderr.contains("format version 1") && stderr.contains("run `emberline rebuild`"),
        "{stderr}"
    );
    // The rebuild itself must not trip over the store it is about to replace.
    rebuild(dir.path(), &[]).expect("the rebuild replaces the old store");
    same(
        &live,
        &outputs(dir.path()).await,
        "a store rebuilt from an old format",
    );
    run_to_end(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_refuses_to_lose_history_the_log_no_longer_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path()).await;
    run_to_end(dir.path());
    {
        let (log, _) = embedded_log(dir.path(), 4).await.expect("log");
        // The two grills' readings are on some of the partitions: cut the first such in half.
        let mut start = 0;
        for p in 0..log
            .partitions(topics::PROBE_READINGS)
            .await
            .expect("partitions")
        {
            let end = log
                .end_offset(topics::PROBE_READINGS, p)
                .await
                .expect("end");
            if end > 0 {
                start = log
                    .delete_before(topics::PROBE_READINGS, p, end / 2)
                    .await
                    .expect("delete the partition's first half");
                break;
            }
        }
        assert!(start > 0, "nothing was deleted");
    }
    let live = outputs(dir.path()).await;

    let refused = rebuild(dir.path(), &[]).expect_err("the rebuild is refused");
    assert!(
        refused.contains("now starts at offset") && refused.contains("--discard-older-history"),
        "{refused}"
    );
    assert!(!dir.path().join("rebuild.pending").exists());
    same(&live, &outputs(dir.path()).await, "a refused rebuild");

    rebuild(dir.path(), &["--discard-older-history"]).expect("an explicit rebuild succeeds");
    let rebuilt = outputs(dir.path()).await;
    assert!(
        rebuilt.1.len() < live.1.len() || rebuilt.1 != live.1,
        "the history of the deleted records is gone"
    );
}
