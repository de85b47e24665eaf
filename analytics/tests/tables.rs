//! Every table against the oracle: the rows a query returns equal the records read through
//! the `EventLog` API (same count, same values), including records written with older schema
//! versions, on the embedded log and on Kafka (when `EMBERLINE_TEST_KAFKA` names a broker);
//! the device filter reads one partition and a time range only the batches that hold it;
//! the views (`cooks`, `cook_readings`,
//! `alerts_history`) and the readings export agree with the log; bad SQL is an error, not a
//! panic.

use std::collections::BTreeMap;
use std::sync::Arc;

use emberline_analytics::datafusion::execution::context::SessionConfig;
use emberline_analytics::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use emberline_analytics::datafusion::physical_plan::ExecutionPlan;
use emberline_analytics::testsuite::{
    Cell, Cells, DEVICES, PROBES, READING_EVERY_MS, READINGS_PER_PROBE, Sample, T0, batch_rows,
    expected_rows, query_rows, write_sample, write_sample_to,
};
use emberline_analytics::{Analytics, Format, TABLES, table, write_stream};
use emberline_log::{
    EventLog, KafkaLog, LogError, NewRecord, PartitionReader, Position, Record, RedbDatabase,
    partition_for,
};
use emberline_schemas::EmbeddedRegistry;

const PARTITIONS: u32 = 3;

/// The sample on Kafka, in topics of this run's own prefix, when a broker is configured.
async fn on_kafka(dir: &std::path::Path) -> Option<Sample> {
    let mut config = emberline_log::conformance::kafka_from_env()?;
    config.topic_prefix = format!("analytics-{}.", emberline_common::clock::now_nanos());
    let log = KafkaLog::connect(config).expect("connect to Kafka");
    let db = RedbDatabase::create(dir.join("registry.redb")).expect("registry file");
    let registry = EmbeddedRegistry::new(Arc::new(db));
    Some(write_sample_to(Arc::new(log), registry, PARTITIONS).await)
}

async fn rows(analytics: &Analytics, sql: &str) -> Vec<Cells> {
    query_rows(analytics, sql).await
}

fn text(row: &Cells, column: &str) -> String {
    match row.get(column) {
        Some(Cell::S(s)) => s.clone(),
        other => panic!("{column} is {other:?} in {row:?}"),
    }
}

fn int(row: &Cells, column: &str) -> i64 {
    match row.get(column) {
        Some(Cell::I(i)) => *i,
        other => panic!("{column} is {other:?} in {row:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_holds_exactly_the_records_of_its_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    every_table_matches_the_log(write_sample(dir.path(), PARTITIONS).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_holds_exactly_the_records_of_its_topic_on_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(sample) = on_kafka(dir.path()).await {
        every_table_matches_the_log(sample).await;
    }
}

async fn every_table_matches_the_log(sample: Sample) {
    let analytics = Analytics::new(sample.log.clone(), sample.codec.clone())
        .await
        .expect("session");
    for def in &TABLES {
        let expected = expected_rows(sample.log.as_ref(), &sample.codec, def).await;
        assert!(!expected.is_empty(), "the sample has no {}", def.name);
        let actual = rows(
            &analytics,
            &format!(
                "SELECT * FROM {} ORDER BY log_partition, log_offset",
                def.name
            ),
        )
        .await;
        assert_eq!(actual.len(), expected.len(), "row count of {}", def.name);
        for (a, e) in actual.iter().zip(&expected) {
            assert_eq!(a, e, "a row of {}", def.name);
        }
        // Several partitions hold rows: the table reads them all.
        let partitions: std::collections::BTreeSet<i64> =
            actual.iter().map(|r| int(r, "log_partition")).collect();
        if def.name != "dead_letter" {
            assert!(partitions.len() > 1, "{} rows in one partition", def.name);
        }
    }

    // Records written with the older schemas are rows, their newer fields null.
    let old = rows(
        &analytics,
        "SELECT * FROM probe_readings WHERE source = 'old-firmware'",
    )
    .await;
    assert_eq!(old.len(), 1);
    assert_eq!(text(&old[0], "probe_id"), "legacy");
    assert!(!old[0].contains_key("temperature_c"));
    let old = rows(
        &analytics,
        "SELECT * FROM cook_commands WHERE cook_id = 'old-cook'",
    )
    .await;
    assert_eq!(old.len(), 1);
    assert_eq!(text(&old[0], "what"), "ribs");
    assert!(!old[0].contains_key("meat") && !old[0].contains_key("weight_kg"));

    // Tenants come from the device ids.
    let tenants = rows(
        &analytics,
        "SELECT tenant, count(DISTINCT device_id) AS devices FROM probe_readings \
         GROUP BY tenant ORDER BY tenant",
    )
    .await;
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for d in DEVICES {
        *want
            .entry(emberline_common::tenant::split(d).0.to_owned())
            .or_default() += 1;
    }
    let got: BTreeMap<String, i64> = tenants
        .iter()
        .map(|r| (text(r, "tenant"), int(r, "devices")))
        .collect();
    assert_eq!(got, want);
}

/// The leaf (the table scan) of a physical plan.
fn scan_of(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    let mut node = plan.clone();
    while let Some(child) = node.children().first() {
        node = Arc::clone(child);
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_filter_reads_only_the_devices_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    device_filters_read_their_partitions(write_sample(dir.path(), PARTITIONS).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_filter_reads_only_the_devices_partition_on_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(sample) = on_kafka(dir.path()).await {
        device_filters_read_their_partitions(sample).await;
    }
}

async fn device_filters_read_their_partitions(sample: Sample) {
    let analytics = Analytics::new(sample.log.clone(), sample.codec.clone())
        .await
        .expect("session");
    let def = table("probe_readings").expect("table");
    let all = expected_rows(sample.log.as_ref(), &sample.codec, def).await;
    for device in DEVICES {
        let sql = format!(
            "SELECT * FROM probe_readings WHERE device_id = '{device}' \
             ORDER BY log_partition, log_offset"
        );
        let plan = analytics
            .query(&sql)
            .await
            .expect("plan")
            .create_physical_plan()
            .await
            .expect("physical plan");
        let scan = scan_of(&plan);
        assert_eq!(
            scan.properties().output_partitioning().partition_count(),
            1,
            "{device}: {}",
            emberline_analytics::datafusion::physical_plan::displayable(plan.as_ref()).indent(true)
        );
        let got = rows(&analytics, &sql).await;
        let want: Vec<Cells> = all
            .iter()
            .filter(|r| text(r, "device_id") == device)
            .cloned()
            .collect();
        assert_eq!(got, want, "{device}");
        let partition = i64::from(partition_for(device.as_bytes(), PARTITIONS));
        assert!(got.iter().all(|r| int(r, "log_partition") == partition));
    }
    // Without a device filter every partition is read.
    let plan = analytics
        .query("SELECT * FROM probe_readings")
        .await
        .expect("plan")
        .create_physical_plan()
        .await
        .expect("physical plan");
    assert_eq!(
        scan_of(&plan)
            .properties()
            .output_partitioning()
            .partition_count(),
        PARTITIONS as usize
    );
    // An IN list reads the union of the devices' partitions, and a partition filter reads
    // that partition.
    let got = rows(
        &analytics,
        &format!(
            "SELECT count(*) AS n FROM probe_readings WHERE device_id IN ('{}', '{}')",
            DEVICES[0], DEVICES[2]
        ),
    )
    .await;
    let want = all
        .iter()
        .filter(|r| [DEVICES[0], DEVICES[2]].contains(&text(r, "device_id").as_str()))
        .count();
    assert_eq!(int(&got[0], "n"), want as i64);
    let got = rows(
        &analytics,
        "SELECT count(*) AS n FROM probe_readings WHERE log_partition = 1",
    )
    .await;
    let want = all.iter().filter(|r| int(r, "log_partition") == 1).count();
    assert_eq!(int(&got[0], "n"), want as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooks_view_has_one_row_per_cook_with_its_start_and_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = write_sample(dir.path(), PARTITIONS).await;
    let analytics = Analytics::new(sample.log.clone(), sample.codec.clone())
        .await
        .expect("session");
    let commands = expected_rows(
        sample.log.as_ref(),
        &sample.codec,
        table("cook_commands").expect("table"),
    )
    .await;
    // The oracle: starts and ends by (device, cook).
    let mut want: BTreeMap<(String, String), (Cells, Option<i64>)> = BTreeMap::new();
    for c in commands
        .iter()
        .filter(|c| text(c, "event_type") == "CookStarted")
    {
        let key = (text(c, "device_id"), text(c, "cook_id"));
        want.insert(key, (c.clone(), None));
    }
    for c in commands
        .iter()
        .filter(|c| text(c, "event_type") == "CookEnded")
    {
        let key = (text(c, "device_id"), text(c, "cook_id"));
        let end = int(c, "event_time");
        let slot = &mut want.get_mut(&key).expect("an ended cook started").1;
        *slot = Some(slot.map_or(end, |e: i64| e.max(end)));
    }
    let predictions = expected_rows(
        sample.log.as_ref(),
        &sample.codec,
        table("predictions").expect("table"),
    )
    .await;
    let got = rows(
        &analytics,
        "SELECT * FROM cooks ORDER BY device_id, cook_id",
    )
    .await;
    assert_eq!(got.len(), want.len());
    assert!(want.values().any(|(_, end)| end.is_none()));
    assert!(want.values().any(|(_, end)| end.is_some()));
    for (row, ((device, cook), (start, end))) in got.iter().zip(&want) {
        assert_eq!(
            (&text(row, "device_id"), &text(row, "cook_id")),
            (device, cook)
        );
        let (device, cook) = (device.as_str(), cook.as_str());
        assert_eq!(row.get("started"), start.get("event_time"));
        assert_eq!(row.get("what"), start.get("what"));
        assert_eq!(row.get("targets_c"), start.get("targets_c"));
        assert_eq!(row.get("tenant"), start.get("tenant"));
        assert_eq!(row.get("ended").cloned(), end.map(Cell::I));
        let duration = end.map(|e| Cell::F((e - int(start, "event_time")) as f64 / 60_000.0));
        assert_eq!(row.get("duration_min").cloned(), duration);
        let (stall, pit) = stall_and_pit(&predictions, device, cook);
        assert_eq!(row.get("stall_min").cloned(), stall.map(Cell::F), "{row:?}");
        assert_eq!(row.get("max_pit_c").cloned(), pit.map(Cell::F), "{row:?}");
    }
    assert!(
        got.iter()
            .any(|r| matches!(r.get("stall_min"), Some(Cell::F(m)) if *m > 0.0)),
        "the sample has a cook with a stall"
    );
}

/// The oracle of `cooks.stall_min` and `max_pit_c`: per probe of the cook, first to last
/// prediction in the stall; the longest, and the highest pit.
fn stall_and_pit(predictions: &[Cells], device: &str, cook: &str) -> (Option<f64>, Option<f64>) {
    let mine: Vec<&Cells> = predictions
        .iter()
        .filter(|p| text(p, "device_id") == device && text(p, "cook_id") == cook)
        .collect();
    if mine.is_empty() {
        return (None, None);
    }
    let mut by_probe: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for p in &mine {
        let stalled = by_probe.entry(text(p, "probe_id")).or_default();
        if p.get("stall") == Some(&Cell::B(true)) {
            stalled.push(int(p, "event_time"));
        }
    }
    let stall = by_probe
        .values()
        .map(|times| match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) => (b - a) as f64 / 60_000.0,
            _ => 0.0,
        })
        .fold(0.0, f64::max);
    let pit = mine
        .iter()
        .filter_map(|p| match p.get("pit_c") {
            Some(Cell::F(c)) => Some(*c),
            _ => None,
        })
        .reduce(f64::max);
    (Some(stall), pit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cook_readings_are_the_readings_inside_each_cook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = write_sample(dir.path(), PARTITIONS).await;
    let analytics = Analytics::new(sample.log.clone(), sample.codec.clone())
        .await
        .expect("session");
    let cooks = rows(&analytics, "SELECT * FROM cooks").await;
    let readings = expected_rows(
        sample.log.as_ref(),
        &sample.codec,
        table("probe_readings").expect("table"),
    )
    .await;
    let mut want: Vec<(String, String, String, i64, Option<Cell>, Cell)> = Vec::new();
    for cook in &cooks {
        let (start, end) = (int(cook, "started"), cook.get("ended"));
        for r in readings.iter().filter(|r| {
            let t = int(r, "event_time");
            text(r, "device_id") == text(cook, "device_id")
                && t >= start
                && end.is_none_or(|e| matches!(e, Cell::I(e) if t <= *e))
        }) {
            let t = int(r, "event_time");
            want.push((
                text(cook, "device_id"),
                text(cook, "cook_id"),
                text(r, "probe_id"),
                t,
                r.get("temperature_c").cloned(),
                Cell::F((t - start) as f64 / 60_000.0),
            ));
        }
    }
    want.sort_by(|a, b| (&a.0, &a.1, &a.2, a.3).cmp(&(&b.0, &b.1, &b.2, b.3)));
    assert!(want.len() > 100, "the sample's cooks hold readings");
    let got: Vec<_> = rows(
        &analytics,
        "SELECT * FROM cook_readings ORDER BY device_id, cook_id, probe_id, event_time",
    )
    .await
    .into_iter()
    .map(|r| {
        (
            text(&r, "device_id"),
            text(&r, "cook_id"),
            text(&r, "probe_id"),
            int(&r, "event_time"),
            r.get("temperature_c").cloned(),
            r.get("minutes").cloned().expect("minutes"),
        )
    })
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_history_has_one_row_per_alert_with_its_repeats_ack_and_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = write_sample(dir.path(), PARTITIONS).await;
    let analytics = Analytics::new(sample.log.clone(), sample.codec.clone())
        .await
        .expect("session");
    let oracle = |name| {
        expected_rows(
            sample.log.as_ref(),
            &sample.codec,
            table(name).expect("table"),
        )
    };
    let (alerts, commands) = (oracle("alerts").await, oracle("cook_commands").await);
    let of = |rows: &[Cells], kind: &str, device: &str, alert: &str| -> Vec<Cells> {
        rows.iter()
            .filter(|r| {
                text(r, "event_type") == kind
                    && text(r, "device_id") == device
                    && text(r, "alert_id") == alert
            })
            .cloned()
            .collect()
    };
    let got = rows(
        &analytics,
        "SELECT * FROM alerts_history ORDER BY device_id, alert_id",
    )
    .await;
    let firsts: Vec<&Cells> = alerts
        .iter()
        .filter(|a| text(a, "event_type") == "AlertRaised" && int(a, "repeat") == 0)
        .collect();
    assert_eq!(got.len(), firsts.len());
    let mut repeated = 0;
    for row in &got {
        let (device, alert) = (text(row, "device_id"), text(row, "alert_id"));
        let raises = of(&alerts, "AlertRaised", &device, &alert);
        let first = raises
            .iter()
            .find(|r| int(r, "repeat") == 0)
            .expect("first raise");
        assert_eq!(row.get("raised"), first.get("event_time"));
        assert_eq!(row.get("value"), first.get("value"));
        assert_eq!(row.get("message"), first.get("message"));
        let repeats = raises
            .iter()
            .map(|r| int(r, "repeat"))
            .max()
            .expect("raised");
        assert_eq!(row.get("repeats"), Some(&Cell::I(repeats)));
        repeated += usize::from(repeats > 0);
        let acked = of(&commands, "AlertAcknowledged", &device, &alert)
            .iter()
            .map(|a| int(a, "event_time"))
            .min();
        assert_eq!(row.get("acknowledged").cloned(), acked.map(Cell::I));
        let cleared = of(&alerts, "AlertCleared", &device, &alert);
        let cleared_at = cleared.iter().map(|c| int(c, "event_time")).min();
        assert_eq!(row.get("cleared").cloned(), cleared_at.map(Cell::I));
        assert_eq!(
            row.get("cleared_reason"),
            cleared.first().and_then(|c| c.get("reason"))
        );
        let up = cleared_at.map(|c| Cell::F((c - int(first, "event_time")) as f64 / 60_000.0));
        assert_eq!(row.get("duration_min").cloned(), up);
    }
    assert!(repeated > 0, "the sample repeats an alert");
    assert!(
        got.iter().any(|r| r.get("cleared").is_none()),
        "an alert still up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readings_export_to_parquet_reads_back_with_the_same_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = write_sample(dir.path(), PARTITIONS).await;
    // One target partition: the export keeps the log's order.
    let analytics = Analytics::with_config(
        sample.log.clone(),
        sample.codec.clone(),
        None,
        SessionConfig::new().with_target_partitions(1),
    )
    .await
    .expect("session");
    let all = expected_rows(
        sample.log.as_ref(),
        &sample.codec,
        table("probe_readings").expect("table"),
    )
    .await;
    let device = DEVICES[2];
    let from = T0 + READING_EVERY_MS * 10;
    let to = T0 + READING_EVERY_MS * (READINGS_PER_PROBE as i64 - 10);
    let want: Vec<Cells> = all
        .iter()
        .filter(|r| text(r, "device_id") == device)
        .filter(|r| (from..to).contains(&int(r, "event_time")))
        .cloned()
        .collect();
    assert!(want.len() > PROBES.len() * 10, "{} rows", want.len());

    let file = dir.path().join("readings.parquet");
    let df = analytics
        .readings(device, Some(from), Some(to))
        .await
        .expect("plan");
    let written = write_stream(
        df.execute_stream().await.expect("stream"),
        Format::Parquet,
        std::fs::File::create(&file).expect("create"),
    )
    .await
    .expect("export");
    assert_eq!(written, want.len() as u64);

    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("open"))
            .expect("a parquet file")
            .build()
            .expect("reader");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    assert_eq!(batch_rows(&batches), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_errors_that_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = write_sample(dir.path(), PARTITIONS).await;
    let analytics = Analytics::new(sample.log.clone(), sample.codec.clone())
        .await
        .expect("session");
    let error = |e: emberline_analytics::AnalyticsError| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    let unknown = analytics
        .query("SELECT * FROM no_such_table")
        .await
        .map(|_| ())
        .expect_err("unknown table");
    assert!(error(unknown).contains("no_such_table"));
    let column = analytics
        .query("SELECT no_such_column FROM probe_readings")
        .await
        .map(|_| ())
        .expect_err("unknown column");
    assert!(error(column).contains("no_such_column"));
    assert!(analytics.query("SELEC 1").await.is_err());
    for statement in [
        "CREATE TABLE t AS SELECT 1",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        assert!(
            analytics.query(statement).await.is_err(),
            "{statement} was allowed"
        );
    }
}

/// A log that counts the records its readers return.
struct Counting {
    inner: Arc<dyn EventLog>,
    read: Arc<std::sync::atomic::AtomicU64>,
}

struct CountingReader {
    inner: Box<dyn PartitionReader>,
    read: Arc<std::sync::atomic::AtomicU64>,
}

#[async_trait::async_trait]
impl PartitionReader for CountingReader {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<Record>, LogError> {
        let records = self.inner.next_batch(max, wait).await?;
        self.read
            .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(records)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

#[async_trait::async_trait]
impl EventLog for Counting {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions(topic).await
    }
    async fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, LogError> {
        self.inner.append(topic, records).await
    }
    async fn append_to(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, LogError> {
        self.inner.append_to(topic, partition, records).await
    }
    async fn reader(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>, LogError> {
        Ok(Box::new(CountingReader {
            inner: self.inner.reader(topic, partition, from).await?,
            read: self.read.clone(),
        }))
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner.end_offset(topic, partition).await
    }
    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner.start_offset(topic, partition).await
    }
    async fn time_ranges(
        &self,
        topic: &str,
        partition: u32,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Vec<std::ops::Range<u64>>>, LogError> {
        self.inner
            .time_ranges(topic, partition, from_ms, to_ms)
            .await
    }
    async fn store_positions(
        &self,
        consumer: &str,
        topic: &str,
        positions: &BTreeMap<u32, u64>,
    ) -> Result<(), LogError> {
        self.inner.store_positions(consumer, topic, positions).await
    }
    async fn load_positions(
        &self,
        consumer: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, LogError> {
        self.inner.load_positions(consumer, topic).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_range_reads_only_the_batches_that_hold_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    time_ranges_read_what_they_need(write_sample(dir.path(), PARTITIONS).await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_range_returns_the_same_rows_on_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(sample) = on_kafka(dir.path()).await {
        // Kafka keeps no time index here: the same rows, from a whole read.
        time_ranges_read_what_they_need(sample, false).await;
    }
}

async fn time_ranges_read_what_they_need(sample: Sample, indexed: bool) {
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let log = Arc::new(Counting {
        inner: sample.log.clone(),
        read: read.clone(),
    });
    let analytics = Analytics::new(log, sample.codec.clone())
        .await
        .expect("session");
    let def = table("probe_readings").expect("table");
    let all = expected_rows(sample.log.as_ref(), &sample.codec, def).await;
    let mut total = 0;
    for p in 0..PARTITIONS {
        total += sample.log.end_offset(def.topic, p).await.expect("end");
    }
    let ts = |ms: i64| {
        emberline_analytics::datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    // The last tenth of the sample's readings, then a window in the middle written as
    // BETWEEN, and one bounded on one side only.
    let span = READINGS_PER_PROBE as i64 * READING_EVERY_MS;
    let windows = [
        (T0 + span * 9 / 10, T0 + span),
        (T0 + span / 2, T0 + span / 2 + 3 * READING_EVERY_MS),
        (T0 + span - 2 * READING_EVERY_MS, i64::MAX),
    ];
    for (i, (from, to)) in windows.into_iter().enumerate() {
        let condition = match i {
            1 => format!(
                "event_time BETWEEN TIMESTAMP '{}' AND TIMESTAMP '{}'",
                ts(from),
                ts(to - 1)
            ),
            2 => format!("event_time >= '{}'", ts(from)),
            _ => format!(
                "event_time >= TIMESTAMP '{}' AND event_time < TIMESTAMP '{}'",
                ts(from),
                ts(to)
            ),
        };
        read.store(0, std::sync::atomic::Ordering::Relaxed);
        let got = rows(
            &analytics,
            &format!(
                "SELECT * FROM probe_readings WHERE {condition} \
                 ORDER BY log_partition, log_offset"
            ),
        )
        .await;
        let want: Vec<Cells> = all
            .iter()
            .filter(|r| (from..to).contains(&int(r, "event_time")))
            .cloned()
            .collect();
        assert!(!want.is_empty(), "{condition}");
        assert_eq!(got, want, "{condition}");
        let read = read.load(std::sync::atomic::Ordering::Relaxed);
        if indexed {
            assert!(
                read * 2 < total,
                "{condition}: {read} of {total} records read for {} rows",
                want.len()
            );
        } else {
            assert_eq!(read, total, "{condition}");
        }
    }
}
