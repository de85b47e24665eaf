//! ThermoWorks Firestore documents: typed values, RFC 3339 times, channel readings.
#![no_main]

use emberline_ingest::cloud::firestore::{fields, plain, rfc3339_ms};
use emberline_ingest::cloud::thermoworks::channel_reading;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rfc3339_ms(text);
    }
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = plain(&doc);
    let channel = fields(&doc);
    let last = channel.get("lastSeen").and_then(|v| v.as_str()).map(str::to_owned);
    let _ = channel_reading("A1", "1", &channel, last.as_ref());
    let _ = channel_reading("A1", "1", &channel, None);
});
