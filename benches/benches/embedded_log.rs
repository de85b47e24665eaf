//! The embedded log: durable (fsynced) appends of 1 000 readings per batch and of single
//! readings, and sequential reads, so the cost per record and per commit are both visible.
//!
//! Run: `cargo bench -p emberline-benches --bench embedded_log`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use emberline_benches::{embedded, sample_reading};
use emberline_log::{EventLog, NewRecord, topics};

fn embedded_log(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (log, codec) = rt.block_on(embedded(dir.path(), 4)).expect("setup");
    let value = codec.encode(&sample_reading()).expect("encode");
    let batch = |n: usize| -> Vec<NewRecord> {
        (0..n)
            .map(|i| NewRecord {
                key: format!("sim-{}", i % 8).into_bytes(),
                value: value.clone(),
                timestamp_ms: 1_790_000_000_000 + i as i64,
            })
            .collect()
    };
    let mut group = c.benchmark_group("embedded_log");
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("append/batch_of_1000", |b| {
        b.iter(|| {
            rt.block_on(log.append(topics::PROBE_READINGS, batch(1_000)))
                .expect("append")
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("append/single", |b| {
        b.iter(|| {
            rt.block_on(log.append(topics::PROBE_READINGS, batch(1)))
                .expect("append")
        })
    });
    // Reads: a partition filled above, read from the start in batches of 4 096.
    let end = rt
        .block_on(log.end_offset(topics::PROBE_READINGS, 0))
        .expect("end");
    let to_read = end.min(100_000);
    group.throughput(Throughput::Elements(to_read));
    group.bench_function("read/partition", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut reader = log
                    .reader(topics::PROBE_READINGS, 0, 0)
                    .await
                    .expect("reader");
                let mut n = 0u64;
                while n < to_read {
                    n += reader
                        .next_batch(4_096, Duration::ZERO)
                        .await
                        .expect("read")
                        .len() as u64;
                }
                n
            })
        })
    });
    group.finish();
}

criterion_group!(benches, embedded_log);
criterion_main!(benches);
