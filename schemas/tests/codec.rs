//! Codec properties: every event round-trips, the schema-aware writer (and the hand-written
//! bodies of the hot events) agrees byte for byte with apache-avro's `Value` writer, the
//! hand-written readers read damaged bytes as the schema reader does, bad bytes give typed errors (never a panic), old data
//! stays readable after a compatible evolution, and incompatible changes are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use emberline_schemas::events::*;
use emberline_schemas::{
    CodecError, EmbeddedRegistry, Event, EventCodec, RegistryError, SchemaRegistry, wire,
};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

struct Fixture {
    _dir: tempfile::TempDir,
    registry: EmbeddedRegistry,
    codec: EventCodec,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("r.redb")).expect("db");
    let registry = EmbeddedRegistry::new(Arc::new(db));
    let codec = runtime()
        .block_on(EventCodec::connect(Arc::new(registry.clone())))
        .expect("codec");
    Fixture {
        _dir: dir,
        registry,
        codec,
    }
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}
fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL
}
fn labels<V: std::fmt::Debug + Clone>(
    v: impl Strategy<Value = V>,
) -> impl Strategy<Value = BTreeMap<String, V>> {
    prop::collection::btree_map(text(), v, 0..4)
}

prop_compose! {
    fn probe_reading()(device_id in text(), probe_id in text(), event_time in any::<i64>(), received_time in any::<i64>(),
        temperature_c in prop::option::of(finite()), source in text()) -> ProbeReading {
        ProbeReading { device_id, probe_id, event_time, received_time, temperature_c, source }
    }
}
prop_compose! {
    fn device_status()(device_id in text(), event_time in any::<i64>(), received_time in any::<i64>(), online in any::<bool>(),
        battery_percent in prop::option::of(finite()), signal_dbm in prop::option::of(any::<i32>()),
        firmware in prop::option::of(text()), source in text(), note in prop::option::of(text()), attributes in labels(text())) -> DeviceStatus {
        DeviceStatus { device_id, event_time, received_time, online, battery_percent, signal_dbm, firmware, source, note, attributes }
    }
}
prop_compose! {
    fn device_registered()(device_id in text(), event_time in any::<i64>(), tenant in text(), model in prop::option::of(text()),
        name in text(), probe_labels in labels(text()), source in text()) -> DeviceRegistered {
        DeviceRegistered { device_id, event_time, tenant, model, name, probe_labels, source }
    }
}
prop_compose! {
    fn cook_started()(cook_id in text(), device_id in text(), event_time in any::<i64>(), what in prop::option::of(text()),
        targets_c in labels(finite()), pit_min_c in prop::option::of(finite()), pit_max_c in prop::option::of(finite()),
        meat in prop::option::of(text()), weight_kg in prop::option::of(finite()), serve_at_ms in prop::option::of(any::<i64>()), rest_min in prop::option::of(finite())) -> CookStarted {
        CookStarted { cook_id, device_id, event_time, what, targets_c, pit_min_c, pit_max_c, meat, weight_kg, serve_at_ms, rest_min }
    }
}
prop_compose! {
    fn target_set()(cook_id in text(), device_id in text(), event_time in any::<i64>(), probe_id in text(),
        target_c in prop::option::of(finite())) -> TargetSet {
        TargetSet { cook_id, device_id, event_time, probe_id, target_c }
    }
}
prop_compose! {
    fn cook_ended()(cook_id in text(), device_id in text(), event_time in any::<i64>()) -> CookEnded {
        CookEnded { cook_id, device_id, event_time }
    }
}
prop_compose! {
    fn trend_updated()(device_id in text(), probe_id in text(), event_time in any::<i64>(), temperature_c in finite(),
        smoothed_c in finite(), rate_c_per_min in prop::option::of(finite()), min_c in finite(), max_c in finite(),
        window_ms in any::<i64>(), samples in any::<i32>(), source_offset in any::<i64>()) -> TrendUpdated {
        TrendUpdated { device_id, probe_id, event_time, temperature_c, smoothed_c, rate_c_per_min, min_c, max_c, window_ms, samples, source_offset }
    }
}
prop_compose! {
    fn device_removed()(device_id in text(), event_time in any::<i64>(), reason in prop::option::of(text())) -> DeviceRemoved {
        DeviceRemoved { device_id, event_time, reason }
    }
}

prop_compose! {
    fn cook_note_added()(cook_id in text(), device_id in text(), event_time in any::<i64>(), text in text()) -> CookNoteAdded {
        CookNoteAdded { cook_id, device_id, event_time, text }
    }
}

prop_compose! {
    fn prediction_updated()(device_id in text(), probe_id in text(), cook_id in text(), event_time in any::<i64>(),
        temperature_c in finite(), target_c in finite(), pit_c in prop::option::of(finite()),
        remaining_s in prop::option::of(finite()), low_s in prop::option::of(finite()), high_s in prop::option::of(finite()),
        done_at in prop::option::of(any::<i64>()), stall in any::<bool>(), phase in text(), pit_phase in text(),
        method in text(), source_seq in any::<i64>(), based_on in prop::option::of(text())) -> PredictionUpdated {
        PredictionUpdated { device_id, probe_id, cook_id, event_time, temperature_c, target_c, pit_c, remaining_s,
            low_s, high_s, done_at, stall, phase, pit_phase, method, source_seq, based_on }
    }
}

prop_compose! {
    fn alert_rule_set()(rule_id in text(), device_id in text(), event_time in any::<i64>(),
        probe_id in prop::option::of(text()), cook_id in prop::option::of(text()), kind in text(),
        threshold in prop::option::of(finite()), low in prop::option::of(finite()), high in prop::option::of(finite()),
        for_s in finite(), hysteresis in finite(), repeat_every_s in prop::option::of(finite()), enabled in any::<bool>(),
        label in prop::option::of(text())) -> AlertRuleSet {
        AlertRuleSet { rule_id, device_id, event_time, probe_id, cook_id, kind, threshold, low, high, for_s,
            hysteresis, repeat_every_s, enabled, label }
    }
}

prop_compose! {
    fn alert_events()(alert_id in text(), rule_id in text(), kind in text(), device_id in text(),
        probe_id in prop::option::of(text()), cook_id in prop::option::of(text()), event_time in any::<i64>(),
        value in prop::option::of(finite()), threshold in prop::option::of(finite()), message in text(),
        repeat in any::<i32>(), source_seq in any::<i64>(), snooze_until in prop::option::of(any::<i64>()))
        -> (AlertRaised, AlertCleared, AlertAcknowledged, ClockTick) {
        (
            AlertRaised { alert_id: alert_id.clone(), rule_id: rule_id.clone(), kind: kind.clone(),
                device_id: device_id.clone(), probe_id: probe_id.clone(), cook_id, event_time, value, threshold,
                message: message.clone(), repeat, source_seq },
            AlertCleared { alert_id: alert_id.clone(), rule_id, kind, device_id: device_id.clone(), probe_id,
                event_time, value, reason: message.clone(), source_seq },
            AlertAcknowledged { alert_id, device_id, event_time, snooze_until },
            ClockTick { event_time, source: message, wall_jump_ms: snooze_until },
        )
    }
}

/// Encodes through the codec and through apache-avro's `Value` writer; both must agree,
/// and decoding must give the event back.
fn check<E: Event + PartialEq + std::fmt::Debug>(
    f: &Fixture,
    event: &E,
) -> Result<(), TestCaseError> {
    let framed = f
        .codec
        .encode(event)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (id, body) = wire::split(&framed).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(Some(id), f.codec.schema_id(E::KIND));
    let value = apache_avro::to_value(event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let value = value
        .resolve(E::KIND.schema())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let reference = GenericDatumWriter::builder(E::KIND.schema())
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    if body != reference.as_slice() {
        // Avro maps are unordered: the codec writes them in key order (deterministic, so a
        // replay gives identical bytes), apache-avro's `Value` writer in hash order. Only
        // then may the bytes differ — same length, same decoded event.
        prop_assert_eq!(
            body.len(),
            reference.len(),
            "schema-aware and Value writers differ"
        );
        let mut reframed = Vec::new();
        wire::start_frame(id, &mut reframed);
        reframed.extend_from_slice(&reference);
        let via_value: E = f
            .codec
            .decode_cached(&reframed)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            &via_value,
            event,
            "the Value writer's bytes decode differently"
        );
    }
    let back: E = f
        .codec
        .decode_cached(&framed)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, event);
    // Every truncation is a typed error.
    for cut in 0..framed.len() {
        prop_assert!(
            f.codec.decode_cached::<E>(&framed[..cut]).is_err(),
            "truncated at {} decoded",
            cut
        );
    }
    Ok(())
}

/// Damages each byte of `event`'s body in turn (to a few telling values and `byte`) and
/// reads it through the codec (the hand-written body, for the events that have one) and
/// through apache-avro's schema reader: both must refuse it, or both read the same event.
fn same_reading_as_the_schema<E: Event + std::fmt::Debug>(
    f: &Fixture,
    event: &E,
    byte: u8,
) -> Result<(), TestCaseError> {
    let framed = f
        .codec
        .encode(event)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let reader = GenericDatumReader::builder(E::KIND.schema())
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for i in wire::HEADER_LEN..framed.len() {
        // Union branches (0, 2 = 1, 4 = 2, 1 = -1), varint ends and continuations, a flip.
        for value in [0, 1, 2, 4, 0x7f, 0x80, 0xff, framed[i] ^ 1, byte] {
            let mut damaged = framed.clone();
            damaged[i] = value;
            let by_codec = f.codec.decode_cached::<E>(&damaged);
            let mut body = &damaged[wire::HEADER_LEN..];
            let by_schema = reader
                .read_deser::<E>(&mut body)
                .ok()
                .filter(|_| body.is_empty());
            // Debug, not PartialEq: a damaged double may read as NaN on both sides.
            prop_assert_eq!(
                format!("{:?}", by_codec.as_ref().ok()),
                format!("{by_schema:?}"),
                "byte {} set to {}: codec {:?}",
                i,
                value,
                by_codec.as_ref().err()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_event_round_trips_and_matches_the_value_writer(
        a in probe_reading(), b in device_status(), c in device_registered(), d in cook_started(),
        e in target_set(), g in cook_ended(), h in trend_updated(), i in device_removed(), j in cook_note_added(),
        k in prediction_updated(), l in alert_rule_set(), m in alert_events(),
    ) {
        let f = fixture();
        check(&f, &a)?;
        check(&f, &b)?;
        check(&f, &c)?;
        check(&f, &d)?;
        check(&f, &e)?;
        check(&f, &g)?;
        check(&f, &h)?;
        check(&f, &i)?;
        check(&f, &j)?;
        check(&f, &k)?;
        check(&f, &l)?;
        check(&f, &m.0)?;
        check(&f, &m.1)?;
        check(&f, &m.2)?;
        check(&f, &m.3)?;
    }

    #[test]
    fn hand_written_bodies_read_damaged_bytes_as_the_schema_reader_does(
        a in probe_reading(), h in trend_updated(), byte in any::<u8>(),
    ) {
        let f = fixture();
        same_reading_as_the_schema(&f, &a, byte)?;
        same_reading_as_the_schema(&f, &h, byte)?;
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), id in 1u32..10) {
        let f = fixture();
        let _ = f.codec.decode_cached::<ProbeReading>(&bytes);
        let _ = f.codec.decode_cached::<TrendUpdated>(&bytes);
        let _ = f.codec.decode_cached::<DeviceRegistered>(&bytes);
        // Garbage behind a real header too.
        let mut framed = Vec::new();
        wire::start_frame(id, &mut framed);
        framed.extend_from_slice(&bytes);
        let _ = f.codec.decode_cached::<ProbeReading>(&framed);
        let _ = f.codec.decode_cached::<DeviceRegistered>(&framed);
    }
}

#[test]
fn header_problems_and_unknown_ids_are_typed() {
    let f = fixture();
    assert!(matches!(
        f.codec.decode_cached::<ProbeReading>(&[0, 0, 0]),
        Err(CodecError::Truncated { len: 3 })
    ));
    assert!(matches!(
        f.codec.decode_cached::<ProbeReading>(&[7, 0, 0, 0, 1, 2]),
        Err(CodecError::BadMagic { found: 7 })
    ));
    assert!(matches!(
        runtime().block_on(f.codec.decode::<ProbeReading>(&[0, 0, 0, 0x27, 0x0f, 2])),
        Err(CodecError::UnknownSchemaId { id: 9999 })
    ));
    let reading = ProbeReading {
        device_id: "d".into(),
        probe_id: "p".into(),
        event_time: 1,
        received_time: 2,
        temperature_c: Some(3.5),
        source: "s".into(),
    };
    let framed = f.codec.encode(&reading).expect("encode");
    assert!(matches!(
        f.codec.decode_cached::<TrendUpdated>(&framed),
        Err(CodecError::WrongType { .. })
    ));
    let mut long = framed.clone();
    long.push(0);
    assert!(matches!(
        f.codec.decode_cached::<ProbeReading>(&long),
        Err(CodecError::TrailingBytes { extra: 1, .. })
    ));
}

/// `ProbeReading` as it might have been before `temperature_c` existed.
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

/// An embedded registry in a fresh file under `dir`.
fn registry_in(dir: &std::path::Path) -> EmbeddedRegistry {
    EmbeddedRegistry::new(Arc::new(
        redb::Database::create(dir.join("r.redb")).expect("db"),
    ))
}

/// `record` written with the (older) writer schema `schema`, registered as `id`, framed as
/// on the log.
fn framed_with(schema: &Schema, id: u32, record: apache_avro::types::Value) -> Vec<u8> {
    let mut framed = Vec::new();
    wire::start_frame(id, &mut framed);
    framed.extend(
        GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| w.write_value_to_vec(record))
            .expect("write"),
    );
    framed
}

#[test]
fn old_data_is_read_after_a_backward_compatible_evolution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry_in(dir.path());
    let rt = runtime();
    let old = Schema::parse_str(OLD_PROBE_READING).expect("old schema");
    let old_id = rt
        .block_on(registry.register(ProbeReading::FULL_NAME, &old))
        .expect("register old");
    // The current schema adds `temperature_c` with a default: accepted as version 2.
    let codec = rt
        .block_on(EventCodec::connect(Arc::new(registry.clone())))
        .expect("codec");
    let new_id = codec.schema_id(EventKind::ProbeReading).expect("id");
    assert_ne!(old_id, new_id);
    let latest = rt
        .block_on(registry.latest(ProbeReading::FULL_NAME))
        .expect("latest");
    assert_eq!((latest.version, latest.id), (2, new_id));
    // Data written with the old schema.
    let record = apache_avro::types::Value::Record(vec![
        (
            "device_id".into(),
            apache_avro::types::Value::String("dev".into()),
        ),
        (
            "probe_id".into(),
            apache_avro::types::Value::String("p1".into()),
        ),
        (
            "event_time".into(),
            apache_avro::types::Value::TimestampMillis(10),
        ),
        (
            "received_time".into(),
            apache_avro::types::Value::TimestampMillis(11),
        ),
        (
            "source".into(),
            apache_avro::types::Value::String("old".into()),
        ),
    ]);
    let framed = framed_with(&old, old_id, record);
    // A fresh codec learns the old schema from the registry and resolves it.
    let fresh = rt
        .block_on(EventCodec::connect(Arc::new(registry)))
        .expect("codec");
    let read: ProbeReading = rt.block_on(fresh.decode(&framed)).expect("old data reads");
    assert_eq!(read.device_id, "dev");
    assert_eq!(read.temperature_c, None);
    assert_eq!((read.event_time, read.received_time), (10, 11));
}

/// `CookStarted` before a cook carried its plan (`meat`, `weight_kg`, `serve_at_ms`,
/// `rest_min`): the schema every cook in an existing log was written with.
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

#[test]
fn a_cook_started_before_plans_existed_reads_with_no_plan() {
    use apache_avro::types::Value;
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry_in(dir.path());
    let rt = runtime();
    let old = Schema::parse_str(OLD_COOK_STARTED).expect("old schema");
    let old_id = rt
        .block_on(registry.register(CookStarted::FULL_NAME, &old))
        .expect("register old");
    // The plan fields all have null defaults: the registry accepts the evolution.
    let codec = rt
        .block_on(EventCodec::connect(Arc::new(registry.clone())))
        .expect("codec");
    let new_id = codec.schema_id(EventKind::CookStarted).expect("id");
    assert_ne!(old_id, new_id);
    let record = Value::Record(vec![
        ("cook_id".into(), Value::String("c1".into())),
        ("device_id".into(), Value::String("dev".into())),
        ("event_time".into(), Value::TimestampMillis(1_000)),
        (
            "what".into(),
            Value::Union(1, Box::new(Value::String("brisket".into()))),
        ),
        (
            "targets_c".into(),
            Value::Map([("p1".to_string(), Value::Double(95.0))].into()),
        ),
        ("pit_min_c".into(), Value::Union(0, Box::new(Value::Null))),
        (
            "pit_max_c".into(),
            Value::Union(1, Box::new(Value::Double(125.0))),
        ),
    ]);
    let framed = framed_with(&old, old_id, record);
    let fresh = rt
        .block_on(EventCodec::connect(Arc::new(registry)))
        .expect("codec");
    let read: CookStarted = rt.block_on(fresh.decode(&framed)).expect("old cook reads");
    assert_eq!(
        read,
        CookStarted {
            cook_id: "c1".into(),
            device_id: "dev".into(),
            event_time: 1_000,
            what: Some("brisket".into()),
            targets_c: [("p1".to_string(), 95.0)].into(),
            pit_min_c: None,
            pit_max_c: Some(125.0),
            meat: None,
            weight_kg: None,
            serve_at_ms: None,
            rest_min: None,
        }
    );
    // And a cook with a plan, written now, keeps it.
    let planned = CookStarted {
        meat: Some("pork_shoulder".into()),
        weight_kg: Some(4.0),
        serve_at_ms: Some(64_800_000),
        rest_min: Some(60.0),
        ..read
    };
    let back: CookStarted = fresh
        .decode_cached(&fresh.encode(&planned).expect("encode"))
        .expect("decode");
    assert_eq!(back, planned);
}

#[test]
fn an_incompatible_change_is_refused() {
    let f = fixture();
    let rt = runtime();
    // A new required field without a default cannot read existing data.
    let mut json: serde_json::Value =
        serde_json::from_str(EventKind::ProbeReading.schema_text()).expect("json");
    json["fields"]
        .as_array_mut()
        .expect("fields")
        .push(serde_json::json!({"name": "calibration", "type": "double"}));
    let incompatible = Schema::parse_str(&json.to_string()).expect("schema");
    assert!(
        !rt.block_on(
            f.registry
                .is_compatible(ProbeReading::FULL_NAME, &incompatible)
        )
        .expect("check")
    );
    let refused = rt.block_on(f.registry.register(ProbeReading::FULL_NAME, &incompatible));
    assert!(
        matches!(refused, Err(RegistryError::Incompatible { version: 1, .. })),
        "{refused:?}"
    );
    // Re-registering the same schema is idempotent.
    let id = f.codec.schema_id(EventKind::ProbeReading).expect("id");
    assert_eq!(
        rt.block_on(
            f.registry
                .register(ProbeReading::FULL_NAME, EventKind::ProbeReading.schema())
        )
        .expect("again"),
        id
    );
    assert_eq!(
        rt.block_on(f.registry.latest(ProbeReading::FULL_NAME))
            .expect("latest")
            .version,
        1
    );
}
