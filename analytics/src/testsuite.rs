//! Test helpers (feature `testsuite`): a sample log and an oracle for every table.
//!
//! [`write_sample`] writes a log with every event type of every topic through the real codec
//! — several tenants, unplugged probes, optional fields both set and not, the processor's
//! clock ticks, both shapes of dead letter, and records written with older versions of the
//! `ProbeReading` and `CookStarted` schemas (registered before the current ones, so they are
//! version 1 in the registry).
//!
//! [`expected_rows`] is the oracle: it reads a topic through the `EventLog` API, decodes
//! each record with the codec, and turns the event into cells generically — through its
//! serde form, field name by field name — rather than with the tables' own code.
//! [`batch_rows`] turns query results into the same cells, so the two compare directly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use emberline_common::tenant;
use emberline_log::{EmbeddedLog, EventLog, NewRecord, topics};
use emberline_schemas::events::{
    AlertAcknowledged, AlertCleared, AlertRaised, AlertRuleSet, ClockTick, CookEnded,
    CookNoteAdded, CookStarted, DeviceRegistered, DeviceRemoved, DeviceStatus, PredictionUpdated,
    ProbeReading, TargetSet, TrendUpdated,
};
use emberline_schemas::{EmbeddedRegistry, Event, EventCodec, EventKind, SchemaRegistry, wire};

use crate::TableDef;

/// One cell of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Text.
    S(String),
    /// An integer (timestamps as epoch ms).
    I(i64),
    /// A double.
    F(f64),
    /// A boolean.
    B(bool),
}

/// A row: column name to cell, null cells left out.
pub type Cells = BTreeMap<String, Cell>;

/// The first event time of the sample, epoch ms.
pub const T0: i64 = 1_764_500_000_000;
/// Devices of the sample (qualified ids: two of the default tenant, then other tenants').
pub const DEVICES: [&str; 5] = [
    "sim-1",
    "grill-2",
    "acme/smoker-3",
    "acme/kettle-4",
    "x.y@z/pit-5",
];
/// Probes of every device.
pub const PROBES: [&str; 3] = ["pit", "p1", "p2"];
/// Readings per probe of each device (current schema).
pub const READINGS_PER_PROBE: usize = 60;
/// Time between a probe's readings, ms.
pub const READING_EVERY_MS: i64 = 5_000;

/// `ProbeReading` before `temperature_c` existed.
const OLD_PROBE_READING: &str = r#"{
  "type": "record", "name": "ProbeReading", "namespace": "emberline.events",
  "fields": [
    {"name": "device_id", "type": "string"},
    {"name": "probe_id", "type": "string"},
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "received_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "source", "type": "string"}
  ]
}"#;

/// `CookStarted` before a cook carried its plan.
const OLD_COOK_STARTED: &str = r#"{
  "type": "record", "name": "CookStarted", "namespace": "emberline.events",
  "fields": [
    {"name": "cook_id", "type": "string"},
    {"name": "device_id", "type": "string"},
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "what", "type": ["null", "string"], "default": null},
    {"name": "targets_c", "type": {"type": "map", "values": "double"}, "default": {}},
    {"name": "pit_min_c", "type": ["null", "double"], "default": null},
    {"name": "pit_max_c", "type": ["null", "double"], "default": null}
  ]
}"#;

/// The sample log, open.
pub struct Sample {
    /// The log.
    pub log: Arc<dyn EventLog>,
    /// The codec it was written with.
    pub codec: Arc<EventCodec>,
    /// Ids the old `ProbeReading` and `CookStarted` schemas were registered with.
    pub old_schema_ids: [u32; 2],
}

/// A small deterministic generator (xorshift), so the sample varies without a seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Opens (creating) the embedded log `dir/log.redb` with the registry in the same file, as
/// `emberline` does, with `partitions` partitions per topic, and writes the sample.
pub async fn write_sample(dir: &Path, partitions: u32) -> Sample {
    let log = EmbeddedLog::open(&dir.join("log.redb")).expect("open log");
    let registry = EmbeddedRegistry::shared(log.handle());
    write_sample_to(Arc::new(log), registry, partitions).await
}

/// Writes the sample to `log` (any backend), registering schemas with `registry`.
pub async fn write_sample_to(
    log: Arc<dyn EventLog>,
    registry: EmbeddedRegistry,
    partitions: u32,
) -> Sample {
    for topic in topics::ALL {
        log.ensure_topic(topic, partitions).await.expect("topic");
    }
    // Older versions first, as an existing install would have them.
    let old_reading = Schema::parse_str(OLD_PROBE_READING).expect("old schema");
    let old_cook = Schema::parse_str(OLD_COOK_STARTED).expect("old schema");
    let old_reading_id = registry
        .register(ProbeReading::FULL_NAME, &old_reading)
        .await
        .expect("register");
    let old_cook_id = registry
        .register(CookStarted::FULL_NAME, &old_cook)
        .await
        .expect("register");
    let codec = Arc::new(
        EventCodec::connect(Arc::new(registry))
            .await
            .expect("codec"),
    );
    assert_ne!(
        codec.schema_id(EventKind::ProbeReading),
        Some(old_reading_id)
    );
    assert_ne!(codec.schema_id(EventKind::CookStarted), Some(old_cook_id));

    let mut w = Writer {
        log: log.clone(),
        codec: codec.clone(),
        rng: Rng(0x5eed_1e55_f00d_cafe),
    };
    for (i, device) in DEVICES.iter().enumerate() {
        w.device(i, device).await;
    }
    // Records written by older schema versions.
    let old = Avro::Record(vec![
        ("device_id".into(), Avro::String(DEVICES[0].into())),
        ("probe_id".into(), Avro::String("legacy".into())),
        ("event_time".into(), Avro::TimestampMillis(T0 - 60_000)),
        ("received_time".into(), Avro::TimestampMillis(T0 - 59_000)),
        ("source".into(), Avro::String("old-firmware".into())),
    ]);
    w.raw(
        topics::PROBE_READINGS,
        DEVICES[0],
        T0 - 60_000,
        framed(&old_reading, old_reading_id, old),
    )
    .await;
    let old = Avro::Record(vec![
        ("cook_id".into(), Avro::String("old-cook".into())),
        ("device_id".into(), Avro::String(DEVICES[1].into())),
        ("event_time".into(), Avro::TimestampMillis(T0 - 3_600_000)),
        (
            "what".into(),
            Avro::Union(1, Box::new(Avro::String("ribs".into()))),
        ),
        (
            "targets_c".into(),
            Avro::Map([("p1".to_string(), Avro::Double(93.0))].into()),
        ),
        ("pit_min_c".into(), Avro::Union(0, Box::new(Avro::Null))),
        (
            "pit_max_c".into(),
            Avro::Union(1, Box::new(Avro::Double(120.0))),
        ),
    ]);
    w.raw(
        topics::COOK_COMMANDS,
        DEVICES[1],
        T0 - 3_600_000,
        framed(&old_cook, old_cook_id, old),
    )
    .await;
    // The processor's clock ticks: in every partition of cook.commands, not commands.
    let tick = codec
        .encode(&ClockTick {
            event_time: T0 + 1,
            source: "processor".into(),
            wall_jump_ms: None,
        })
        .expect("encode");
    for p in 0..partitions {
        log.append_to(
            topics::COOK_COMMANDS,
            p,
            vec![NewRecord {
                key: b"clock".to_vec(),
                value: tick.clone(),
                timestamp_ms: T0 + 1,
            }],
        )
        .await
        .expect("tick");
    }
    // Dead letters of both shapes: a rejected reading from ingest, an undecodable record
    // from a processor.
    let ingest = serde_json::json!({
        "source": "http",
        "device_id": "acme/smoker-3",
        "probe_id": "p1",
        "reason": "temperature out of range: 900",
        "received_time": T0 + 5,
        "payload": "{\"t\": 900}",
    });
    w.raw(
        topics::DEAD_LETTER,
        "acme/smoker-3",
        T0 + 5,
        ingest.to_string().into_bytes(),
    )
    .await;
    let processor = serde_json::json!({
        "topic": "probe.readings",
        "partition": 1,
        "offset": 17,
        "consumer": "trends",
        "reason": "unknown schema id 999",
        "payload_hex": "00000003e7",
    });
    w.raw(
        topics::DEAD_LETTER,
        "grill-2",
        T0 + 6,
        processor.to_string().into_bytes(),
    )
    .await;
    Sample {
        log,
        codec,
        old_schema_ids: [old_reading_id, old_cook_id],
    }
}

fn framed(schema: &Schema, id: u32, record: Avro) -> Vec<u8> {
    let mut out = Vec::new();
    wire::start_frame(id, &mut out);
    out.extend(
        GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| w.write_value_to_vec(record))
            .expect("write old record"),
    );
    out
}

struct Writer {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    rng: Rng,
}

impl Writer {
    async fn raw(&self, topic: &str, key: &str, time: i64, value: Vec<u8>) {
        self.log
            .append(
                topic,
                vec![NewRecord {
                    key: key.as_bytes().to_vec(),
                    value,
                    timestamp_ms: time,
                }],
            )
            .await
            .expect("append");
    }

    async fn put<E: Event>(&self, topic: &str, device: &str, time: i64, events: &[E]) {
        self.put_stamped(topic, device, events, |_| time).await;
    }

    /// Appends `events`, each stamped with `time_of` it (as writers stamp a record with its
    /// event's time).
    async fn put_stamped<E: Event>(
        &self,
        topic: &str,
        device: &str,
        events: &[E],
        time_of: impl Fn(&E) -> i64,
    ) {
        let records = events
            .iter()
            .map(|e| NewRecord {
                key: device.as_bytes().to_vec(),
                value: self.codec.encode(e).expect("encode"),
                timestamp_ms: time_of(e),
            })
            .collect();
        self.log.append(topic, records).await.expect("append");
    }

    async fn device(&mut self, i: usize, device: &str) {
        let t = |s: i64| T0 + s * 1_000 + i as i64;
        let (owner, _) = tenant::split(device);
        let mut labels = BTreeMap::new();
        labels.insert("p1".to_owned(), format!("brisket {i}"));
        self.put(
            topics::DEVICE_EVENTS,
            device,
            t(0),
            &[DeviceRegistered {
                device_id: device.into(),
                event_time: t(0),
                tenant: owner.into(),
                model: i.is_multiple_of(2).then(|| "Signals".to_owned()),
                name: format!("Smoker {i}"),
                probe_labels: labels,
                source: "sim".into(),
            }],
        )
        .await;
        let mut statuses = Vec::new();
        for k in 0..3 {
            let mut attributes = BTreeMap::new();
            if self.rng.chance(0.5) {
                attributes.insert("upload_s".to_owned(), format!("{}", 5 + k));
            }
            statuses.push(DeviceStatus {
                device_id: device.into(),
                event_time: t(k * 60),
                received_time: t(k * 60) + 250,
                online: k != 2 || i.is_multiple_of(2),
                battery_percent: self.rng.chance(0.7).then(|| 100.0 - self.rng.unit() * 50.0),
                signal_dbm: self
                    .rng
                    .chance(0.6)
                    .then(|| -40 - (self.rng.next() % 50) as i32),
                firmware: self.rng.chance(0.5).then(|| format!("1.{k}.{i}")),
                source: "sim".into(),
                note: (k == 2).then(|| "battery low".to_owned()),
                attributes,
            });
        }
        self.put(topics::DEVICE_EVENTS, device, t(0), &statuses)
            .await;

        let cook = format!("cook-{i}");
        let mut targets = BTreeMap::new();
        targets.insert("p1".to_owned(), 90.0 + i as f64);
        if i % 2 == 1 {
            targets.insert("p2".to_owned(), 70.5);
        }
        let plan = i.is_multiple_of(2);
        self.put(
            topics::COOK_COMMANDS,
            device,
            t(1),
            &[CookStarted {
                cook_id: cook.clone(),
                device_id: device.into(),
                event_time: t(1),
                what: (i != 3).then(|| format!("pork shoulder {i}")),
                targets_c: targets,
                pit_min_c: plan.then_some(105.0),
                pit_max_c: plan.then_some(125.0),
                meat: plan.then(|| "pork_shoulder".to_owned()),
                weight_kg: plan.then_some(3.5 + i as f64),
                serve_at_ms: plan.then_some(t(36_000)),
                rest_min: plan.then_some(45.0),
            }],
        )
        .await;

        let mut readings = Vec::new();
        let mut trends = Vec::new();
        for k in 0..READINGS_PER_PROBE {
            for (p, probe) in PROBES.iter().enumerate() {
                let time = T0 + k as i64 * READING_EVERY_MS + p as i64;
                let unplugged = self.rng.chance(0.08);
                let temp = 20.0 + k as f64 * 1.5 + self.rng.unit();
                readings.push(ProbeReading {
                    device_id: device.into(),
                    probe_id: (*probe).into(),
                    event_time: time,
                    received_time: time + 40,
                    temperature_c: (!unplugged).then_some(temp),
                    source: "sim".into(),
                });
                if !unplugged && k % 4 == 0 {
                    trends.push(TrendUpdated {
                        device_id: device.into(),
                        probe_id: (*probe).into(),
                        event_time: time,
                        temperature_c: temp,
                        smoothed_c: temp - 0.25,
                        rate_c_per_min: (k > 0).then_some(1.5 * 12.0),
                        min_c: temp - 1.0,
                        max_c: temp + 0.5,
                        window_ms: 60_000,
                        samples: (k.min(12) + 1) as i32,
                        source_offset: (k * PROBES.len() + p) as i64,
                    });
                }
            }
        }
        // Several appends, so the log holds several batches.
        for chunk in readings.chunks(50) {
            self.put_stamped(topics::PROBE_READINGS, device, chunk, |r| r.event_time)
                .await;
        }
        self.put_stamped(topics::DERIVED_TRENDS, device, &trends, |t| t.event_time)
            .await;

        let predictions: Vec<PredictionUpdated> = (0..5)
            .map(|k| {
                let open = k < 3;
                PredictionUpdated {
                    device_id: device.into(),
                    probe_id: "p1".into(),
                    cook_id: if k == 0 { String::new() } else { cook.clone() },
                    event_time: t(60 * k),
                    temperature_c: 30.0 + k as f64,
                    target_c: 90.0 + i as f64,
                    pit_c: (k != 1).then_some(110.0),
                    remaining_s: open.then_some(3_600.0 - k as f64 * 100.0),
                    low_s: open.then_some(3_000.0),
                    high_s: (k == 0).then_some(4_000.0),
                    done_at: open.then_some(t(3_600)),
                    stall: k == 2 || k == 3,
                    phase: if k == 2 || k == 3 { "stall" } else { "rising" }.into(),
                    pit_phase: "steady".into(),
                    method: "physics".into(),
                    source_seq: k,
                    based_on: (k == 4).then(|| "your last 3 pork shoulders".to_owned()),
                }
            })
            .collect();
        self.put_stamped(topics::DERIVED_PREDICTIONS, device, &predictions, |p| {
            p.event_time
        })
        .await;

        let rule = format!("rule-{i}");
        self.put(
            topics::COOK_COMMANDS,
            device,
            t(2),
            &[AlertRuleSet {
                rule_id: rule.clone(),
                device_id: device.into(),
                event_time: t(2),
                probe_id: Some("pit".into()),
                cook_id: Some(cook.clone()),
                kind: "outside_band".into(),
                threshold: None,
                low: Some(105.0),
                high: Some(125.0),
                for_s: 30.0,
                hysteresis: 2.0,
                repeat_every_s: i.is_multiple_of(2).then_some(600.0),
                enabled: i != 4,
                label: (i == 1).then(|| "pit band".to_owned()),
            }],
        )
        .await;
        self.put(
            topics::COOK_COMMANDS,
            device,
            t(3),
            &[TargetSet {
                cook_id: cook.clone(),
                device_id: device.into(),
                event_time: t(3),
                probe_id: "p2".into(),
                target_c: (i != 2).then_some(68.0),
            }],
        )
        .await;
        let alert = format!("{rule}#1");
        // Raised, and on even devices raised again for want of an acknowledgement.
        let raises = if i.is_multiple_of(2) { 2 } else { 1 };
        let raised: Vec<AlertRaised> = (0..raises)
            .map(|repeat| AlertRaised {
                alert_id: alert.clone(),
                rule_id: rule.clone(),
                kind: "outside_band".into(),
                device_id: device.into(),
                probe_id: Some("pit".into()),
                cook_id: (i != 0).then(|| cook.clone()),
                event_time: t(120 + 5 * i64::from(repeat)),
                value: Some(99.5 - f64::from(repeat)),
                threshold: None,
                message: format!("pit at 99.5 °C on {device}"),
                repeat,
                source_seq: 7 + i64::from(repeat),
            })
            .collect();
        self.put(topics::ALERTS, device, t(120), &raised).await;
        self.put(
            topics::COOK_COMMANDS,
            device,
            t(130),
            &[AlertAcknowledged {
                alert_id: alert.clone(),
                device_id: device.into(),
                event_time: t(130),
                snooze_until: (i % 2 == 1).then_some(t(1_000)),
            }],
        )
        .await;
        if i != 1 {
            self.put(
                topics::ALERTS,
                device,
                t(300),
                &[AlertCleared {
                    alert_id: alert,
                    rule_id: rule,
                    kind: "outside_band".into(),
                    device_id: device.into(),
                    probe_id: Some("pit".into()),
                    event_time: t(300),
                    value: (i != 2).then_some(110.0),
                    reason: "back in band".into(),
                    source_seq: 9,
                }],
            )
            .await;
        }
        self.put(
            topics::COOK_COMMANDS,
            device,
            t(200),
            &[CookNoteAdded {
                cook_id: cook.clone(),
                device_id: device.into(),
                event_time: t(200),
                text: format!("wrapped at {}", 60 + i),
            }],
        )
        .await;
        // Even devices' cooks end; odd ones are still running.
        if i.is_multiple_of(2) {
            self.put(
                topics::COOK_COMMANDS,
                device,
                t(7_200 + 60 * i as i64),
                &[CookEnded {
                    cook_id: cook,
                    device_id: device.into(),
                    event_time: t(7_200 + 60 * i as i64),
                }],
            )
            .await;
        }
        if i == 4 {
            self.put(
                topics::DEVICE_EVENTS,
                device,
                t(8_000),
                &[DeviceRemoved {
                    device_id: device.into(),
                    event_time: t(8_000),
                    reason: Some("sold the grill".into()),
                }],
            )
            .await;
        }
    }
}

/// Which event types each table holds, written out independently of the tables' code.
fn kinds_of(table: &str) -> (&'static [EventKind], bool) {
    use EventKind as K;
    match table {
        "probe_readings" => (&[K::ProbeReading], false),
        "device_events" => (
            &[K::DeviceStatus, K::DeviceRegistered, K::DeviceRemoved],
            true,
        ),
        "cook_commands" => (
            &[
                K::CookStarted,
                K::TargetSet,
                K::CookEnded,
                K::CookNoteAdded,
                K::AlertRuleSet,
                K::AlertAcknowledged,
            ],
            true,
        ),
        "trends" => (&[K::TrendUpdated], false),
        "predictions" => (&[K::PredictionUpdated], false),
        "alerts" => (&[K::AlertRaised, K::AlertCleared], true),
        _ => (&[], false),
    }
}

/// An event's serde form.
async fn event_json(codec: &EventCodec, kind: EventKind, payload: &[u8]) -> serde_json::Value {
    macro_rules! as_json {
        ($($ty:ident),*) => {
            match kind {
                $(EventKind::$ty => serde_json::to_value(
                    codec.decode::<$ty>(payload).await.expect("decodes"),
                ),)*
                EventKind::ClockTick => serde_json::to_value(
                    codec.decode::<ClockTick>(payload).await.expect("decodes"),
                ),
            }
        };
    }
    as_json!(
        ProbeReading,
        DeviceStatus,
        DeviceRegistered,
        CookStarted,
        TargetSet,
        CookEnded,
        TrendUpdated,
        DeviceRemoved,
        CookNoteAdded,
        PredictionUpdated,
        AlertRuleSet,
        AlertAcknowledged,
        AlertRaised,
        AlertCleared
    )
    .expect("serialises")
}

fn json_cell(value: &serde_json::Value) -> Option<Cell> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(Cell::B(*b)),
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Cell::I(i),
            None => Cell::F(n.as_f64().expect("a number")),
        }),
        serde_json::Value::String(s) => Some(Cell::S(s.clone())),
        other => Some(Cell::S(other.to_string())),
    }
}

/// The rows `table` should have, in partition then offset order: every record of its topic
/// read through the `EventLog` API, decoded with the codec.
pub async fn expected_rows(log: &dyn EventLog, codec: &EventCodec, table: &TableDef) -> Vec<Cells> {
    let (kinds, typed) = kinds_of(table.name);
    let mut rows = Vec::new();
    for partition in 0..log.partitions(table.topic).await.expect("partitions") {
        let end = log.end_offset(table.topic, partition).await.expect("end");
        let mut reader = log.reader(table.topic, partition, 0).await.expect("reader");
        while reader.position() < end {
            let batch = reader
                .next_batch(1_000, Duration::from_secs(5))
                .await
                .expect("read");
            assert!(!batch.is_empty(), "the log stopped short of its end");
            for record in batch {
                let mut row = Cells::new();
                row.insert("log_partition".into(), Cell::I(i64::from(partition)));
                row.insert("log_offset".into(), Cell::I(record.offset as i64));
                let fields = if table.name == "dead_letter" {
                    let doc: serde_json::Value =
                        serde_json::from_slice(&record.value).expect("dead letter is JSON");
                    row.insert("record_time".into(), Cell::I(record.timestamp_ms));
                    row.insert(
                        "document".into(),
                        Cell::S(String::from_utf8(record.value.clone()).expect("utf-8")),
                    );
                    if doc.get("device_id").is_none() {
                        row.insert(
                            "device_id".into(),
                            Cell::S(String::from_utf8(record.key.clone()).expect("utf-8")),
                        );
                    }
                    doc
                } else {
                    let kind = codec
                        .kind_of_learning(&record.value)
                        .await
                        .expect("schema known")
                        .expect("an Emberline event");
                    if !kinds.contains(&kind) {
                        continue;
                    }
                    if typed {
                        let name = kind.full_name().rsplit('.').next().expect("a name");
                        row.insert("event_type".into(), Cell::S(name.to_owned()));
                    }
                    event_json(codec, kind, &record.value).await
                };
                for (field, value) in fields.as_object().expect("an object") {
                    let column = match (table.name, field.as_str()) {
                        ("device_events", "tenant") => "owner",
                        ("dead_letter", "topic") => "origin_topic",
                        ("dead_letter", "partition") => "origin_partition",
                        ("dead_letter", "offset") => "origin_offset",
                        (_, f) => f,
                    };
                    if let Some(cell) = json_cell(value) {
                        row.insert(column.to_owned(), cell);
                    }
                }
                let Some(Cell::S(device)) = row.get("device_id") else {
                    panic!("row without a device id: {row:?}");
                };
                let owner = tenant::split(device).0.to_owned();
                row.insert("tenant".into(), Cell::S(owner));
                rows.push(row);
            }
        }
    }
    rows
}

/// The rows `sql` answers in `analytics`, as cells; panics naming the query on an error.
pub async fn query_rows(analytics: &crate::Analytics, sql: &str) -> Vec<Cells> {
    let batches = analytics
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    batch_rows(&batches)
}

/// The rows of `batches` as cells (timestamps as epoch ms), null cells left out.
pub fn batch_rows(batches: &[RecordBatch]) -> Vec<Cells> {
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        for r in 0..batch.num_rows() {
            let mut row = Cells::new();
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                if column.is_null(r) {
                    continue;
                }
                let cell = match column.data_type() {
                    DataType::Utf8 => Cell::S(column.as_string::<i32>().value(r).to_owned()),
                    DataType::Utf8View => Cell::S(column.as_string_view().value(r).to_owned()),
                    DataType::Int32 => {
                        Cell::I(i64::from(column.as_primitive::<Int32Type>().value(r)))
                    }
                    DataType::Int64 => Cell::I(column.as_primitive::<Int64Type>().value(r)),
                    DataType::Float64 => Cell::F(column.as_primitive::<Float64Type>().value(r)),
                    DataType::Boolean => Cell::B(column.as_boolean().value(r)),
                    DataType::Timestamp(TimeUnit::Millisecond, _) => {
                        Cell::I(column.as_primitive::<TimestampMillisecondType>().value(r))
                    }
                    other => panic!("column {} has type {other}", field.name()),
                };
                row.insert(field.name().clone(), cell);
            }
            rows.push(row);
        }
    }
    rows
}
