//! Avro codec cost per event: encode and decode of a `ProbeReading` (43-byte body) and a
//! `TrendUpdated`, through the codec (their bodies are written and read by hand), and the
//! same bodies through apache-avro's schema-driven serde path for comparison.
//!
//! Run: `cargo bench -p emberline-benches --bench codec`

use std::hint::black_box;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use criterion::{Criterion, criterion_group, criterion_main};
use emberline_benches::{embedded, sample_reading};
use emberline_schemas::events::{ProbeReading, TrendUpdated};
use emberline_schemas::{Event, wire};

fn codec(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_log, codec) = rt.block_on(embedded(dir.path(), 1)).expect("setup");
    let reading = sample_reading();
    let bytes = codec.encode(&reading).expect("encode");
    let trend = TrendUpdated {
        device_id: "sim-1".into(),
        probe_id: "meat-1".into(),
        event_time: 1_790_000_000_000,
        temperature_c: 71.4,
        smoothed_c: 71.3,
        rate_c_per_min: Some(0.42),
        min_c: 70.9,
        max_c: 71.6,
        window_ms: 300_000,
        samples: 300,
        source_offset: 123_456,
    };
    let trend_bytes = codec.encode(&trend).expect("encode");
    let mut group = c.benchmark_group("codec");
    group.bench_function("probe_reading/encode", |b| {
        b.iter(|| codec.encode(black_box(&reading)))
    });
    group.bench_function("probe_reading/decode", |b| {
        b.iter(|| codec.decode_cached::<ProbeReading>(black_box(&bytes)))
    });
    group.bench_function("probe_reading/encode+decode", |b| {
        b.iter(|| {
            let bytes = codec.encode(black_box(&reading)).expect("encode");
            codec.decode_cached::<ProbeReading>(&bytes)
        })
    });
    group.bench_function("trend_updated/encode+decode", |b| {
        b.iter(|| {
            let bytes = codec.encode(black_box(&trend)).expect("encode");
            codec.decode_cached::<TrendUpdated>(&bytes)
        })
    });
    // The schema-driven path the hand-written bodies replace.
    let writer = |schema| GenericDatumWriter::builder(schema).build().expect("writer");
    let (reading_writer, trend_writer) = (
        writer(ProbeReading::KIND.schema()),
        writer(TrendUpdated::KIND.schema()),
    );
    let reading_reader = GenericDatumReader::builder(ProbeReading::KIND.schema())
        .build()
        .expect("reader");
    group.bench_function("probe_reading/encode by schema", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(64);
            reading_writer
                .write_ser(&mut buf, black_box(&reading))
                .expect("encode");
            buf
        })
    });
    group.bench_function("probe_reading/decode by schema", |b| {
        b.iter(|| {
            let mut body = &black_box(&bytes)[wire::HEADER_LEN..];
            reading_reader
                .read_deser::<ProbeReading>(&mut body)
                .expect("decode")
        })
    });
    group.bench_function("trend_updated/encode", |b| {
        b.iter(|| codec.encode(black_box(&trend)))
    });
    group.bench_function("trend_updated/encode by schema", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(64);
            trend_writer
                .write_ser(&mut buf, black_box(&trend))
                .expect("encode");
            buf
        })
    });
    group.finish();
    assert_eq!(
        bytes.len() - 5,
        43,
        "the sample reading is the 43-byte body the figures assume"
    );
    let _ = trend_bytes;
}

criterion_group!(benches, codec);
criterion_main!(benches);
