//! End-to-end driver: the simulator writes N readings into an embedded log (batched per
//! tick), then the trend processor catches up — log read, decode, timely exchange, trend,
//! derived append, projection writes — and the driver prints events per second for each
//! stage and the peak memory.
//!
//! Run: `cargo run --release -p emberline-benches --bin e2e -- [devices] [ticks] [workers]
//! [--kafka BOOTSTRAP]` (defaults: 100 devices × 4 probes × 500 ticks = 200 000 readings,
//! 2 workers).
//!
//! With `--kafka`, the readings go to a Kafka-protocol broker instead (topics under a
//! prefix of their own, 8 partitions), and before the processor runs, a bare rdkafka
//! consumer reads them all once: the ratio of the two rates is the Kafka backend's goal
//! (processing at ≥ 0.8 × what the consumer alone reads). The projections stay embedded.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use emberline_benches::{embedded, peak_rss_kib};
use emberline_ingest::{Simulator, SimulatorConfig};
use emberline_log::{EventLog, KafkaConfig, KafkaLog, NewRecord, topics};
use emberline_processors::{Mode, TrendConfig, run_trends};
use emberline_projections::{EmbeddedStore, ProjectionStore};
use tokio_util::sync::CancellationToken;

/// The command line: three positional numbers and an optional `--kafka BOOTSTRAP`.
struct Args {
    numbers: Vec<String>,
    kafka: Option<String>,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut out = Args {
            numbers: Vec::new(),
            kafka: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--kafka" => {
                    out.kafka = Some(args.next().context("--kafka needs a bootstrap address")?)
                }
                "--help" | "-h" => {
                    tracing::info!("e2e [devices] [ticks] [workers] [--kafka BOOTSTRAP]");
                    std::process::exit(0);
                }
                _ => out.numbers.push(arg),
            }
        }
        Ok(out)
    }

    /// Positional number `n` (from 0), or `default`.
    fn number(&self, n: usize, default: u64) -> anyhow::Result<u64> {
        match self.numbers.get(n) {
            Some(v) => v
                .parse()
                .with_context(|| format!("argument {}: {v:?} is not a number", n + 1)),
            None => Ok(default),
        }
    }
}

/// Reads every record of `topic` (all `partitions`, from offset 0) with one bare rdkafka
/// consumer, touching each payload, and returns how long it took.
fn consume_alone(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    expected: u64,
) -> anyhow::Result<std::time::Duration> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "emberline.bench.consume-alone")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let (mut count, mut bytes) = (0u64, 0u64);
    while count < expected {
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "the bare consumer read {count} of {expected} records in 10 minutes"
        );
        if let Some(message) = consumer.poll(std::time::Duration::from_millis(100)) {
            let message = message?;
            bytes += message.payload().map_or(0, |p| p.len() as u64);
            count += 1;
        }
    }
    let elapsed = started.elapsed();
    tracing::debug!(count, bytes, "bare consumer done");
    Ok(elapsed)
}

/// Bytes of every file under `path`.
fn dir_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Disk at rest per reading: the log, the projection store file, and the history table's
/// share of it (its stored bytes and B-tree overhead).
fn disk_report(dir: &std::path::Path, readings: u64) -> anyhow::Result<String> {
    let store = dir.join("projections.redb");
    let projections = std::fs::metadata(&store)?.len();
    let log = dir_bytes(dir)? - projections;
    let per = |bytes: u64| bytes as f64 / readings as f64;
    let history = match emberline_projections::table_stats_read_only(&store) {
        Ok(tables) => tables
            .into_iter()
            .find(|t| t.table == "proj.history")
            .map_or("none".into(), |t| {
                format!("{:.1} B", per(t.stored_bytes + t.overhead_bytes))
            }),
        Err(e) => format!("unknown: {e}"),
    };
    Ok(format!(
        "disk per reading: log {:.1} B, projection file {:.1} B (history table {history})\n",
        per(log),
        per(projections),
    ))
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse()?;
    let devices = args.number(0, 100)? as u32;
    let ticks = args.number(1, 500)?;
    let workers = args.number(2, 2)? as usize;
    let rt = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let (embedded_log, codec) = rt
        .block_on(embedded(dir.path(), 8))
        .map_err(|e| anyhow::anyhow!(e))?;
    // On Kafka, the readings and trends live on the broker under a prefix of this run;
    // the codec's registry stays in the embedded log (only schema ids cross over).
    let prefix = format!("e2e-{}-{}.", std::process::id(), now_ms());
    let log: Arc<dyn EventLog> = match &args.kafka {
        None => embedded_log.clone(),
        Some(bootstrap) => {
            let mut config = KafkaConfig::new(bootstrap.clone());
            config.topic_prefix = prefix.clone();
            let kafka = KafkaLog::connect(config)?;
            rt.block_on(async {
                for topic in topics::ALL {
                    kafka.ensure_topic(topic, 8).await?;
                }
                anyhow::Ok(())
            })?;
            Arc::new(kafka)
        }
    };
    let config = SimulatorConfig {
        devices,
        probes: 4,
        ..Default::default()
    };
    let mut sim = Simulator::new(config, 1_790_000_000_000);

    let started = Instant::now();
    let mut readings = 0u64;
    rt.block_on(async {
        for _ in 0..ticks {
            let batch = sim.tick(None);
            readings += batch.len() as u64;
            let records = batch
                .iter()
                .map(|r| {
                    Ok(NewRecord {
                        key: r.device_id.as_bytes().to_vec(),
                        value: codec.encode(r)?,
                        timestamp_ms: r.event_time,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            log.append(topics::PROBE_READINGS, records).await?;
        }
        anyhow::Ok(())
    })?;
    let ingest = started.elapsed();
    let alone = match &args.kafka {
        None => None,
        Some(bootstrap) => Some(consume_alone(
            bootstrap,
            &format!("{prefix}{}", topics::PROBE_READINGS),
            8,
            readings,
        )?),
    };

    let store: Arc<dyn ProjectionStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("projections.redb"))?);
    let started = Instant::now();
    let stats = run_trends(
        log.clone(),
        store,
        codec,
        TrendConfig {
            workers,
            ..TrendConfig::default()
        },
        Mode::CatchUp,
        CancellationToken::new(),
        rt.handle().clone(),
    )?;
    let process = started.elapsed();
    anyhow::ensure!(
        stats.records == readings,
        "processed {} of {readings}",
        stats.records
    );
    let rate = |d: std::time::Duration| readings as f64 / d.as_secs_f64();
    let kafka = match alone {
        None => String::new(),
        Some(alone) => format!(
            "bare rdkafka consumer (read every reading once): {alone:.2?}, {:.0} readings/s\n\
             processing / bare consumer: {:.2}\n",
            rate(alone),
            alone.as_secs_f64() / process.as_secs_f64(),
        ),
    };
    let disk = match &args.kafka {
        None => disk_report(dir.path(), readings)?,
        Some(_) => String::new(),
    };
    let report = format!(
        "readings {readings} ({devices} devices x 4 probes x {ticks} ticks), workers {workers}, log {}\n\
         ingest (encode + durable append per tick): {:.2?}, {:.0} readings/s\n\
         process (read, decode, trend, derived append, projections): {:.2?}, {:.0} readings/s\n\
         {kafka}\
         peak RSS: {} MiB\n\
         {disk}",
        if args.kafka.is_some() {
            "kafka"
        } else {
            "embedded"
        },
        ingest,
        rate(ingest),
        process,
        rate(process),
        peak_rss_kib().map_or("unknown".into(), |k| (k / 1024).to_string()),
    );
    #[allow(clippy::print_stdout)]
    {
        print!("{report}");
    }
    Ok(())
}
