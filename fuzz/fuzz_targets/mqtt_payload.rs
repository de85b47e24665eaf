//! MQTT payloads (plain numbers and JSON with nested, time and unit fields) and topics,
//! through the parser and the validation gate.
#![no_main]

use emberline_ingest::mqtt::{PayloadFormat, TopicMapping, parse_message};
use emberline_ingest::validate::Gate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: format; then a topic up to the first newline; the rest is the payload.
    let Some((&mode, rest)) = data.split_first() else { return };
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let topic = String::from_utf8_lossy(&rest[..split]);
    let payload = rest.get(split + 1..).unwrap_or_default();
    let mapping = TopicMapping {
        filter: "#".into(),
        device: "{0}".into(),
        probe: "probe-{1}".into(),
        format: if mode & 1 == 0 { PayloadFormat::Number } else { PayloadFormat::Json },
        value_field: "t.value".into(),
        time_field: Some("ts".into()),
        unit_field: Some("unit".into()),
        ..TopicMapping::default()
    };
    if let Ok(raw) = parse_message(&mapping, &topic, payload) {
        let mut gate = Gate::new("fuzz", 30 * 86_400_000);
        let out = gate.admit(vec![raw], 1_795_000_000_000);
        assert_eq!(out.readings.len() + out.rejected.len() + out.duplicates, 1);
    }
});
