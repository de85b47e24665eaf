//! Analytics benchmark, generation step: writes a data directory that `emberline` opens as
//! its own, full of simulated readings, for `benches/analytics/run` to time `emberline
//! rebuild`, a Parquet export and three SQL queries on (beside DuckDB over the export).
//!
//! The driver
//!
//! 1. creates `<out>/data/log.redb` as `emberline up` does on the embedded backend: the log,
//!    the schema registry in the same file (no `registry.url`), and every topic with
//!    `--partitions` partitions (the configuration's `log.partitions`, default 4);
//! 2. appends one `CookStarted` per device on the cook-commands topic, keyed by the device as
//!    the gateway keys commands, so every device has a cook;
//! 3. runs the simulator (the classic grill, `--interval-ms` between readings) for
//!    `--ticks` ticks, encoding every reading with the codec on the log's registry and
//!    appending `--batch-ticks` ticks per append;
//! 4. appends one `CookEnded` per device at the last reading's time;
//! 5. writes `<out>/emberline.toml`, a configuration whose `data_dir` is `<out>/data`, with
//!    log retention off (the readings are dated in the past and must all stay).
//!
//! It prints the readings written, the time taken and the log's size.
//!
//! Run: `cargo run --release -p emberline-benches --bin analytics -- --out DIR [--devices N]
//! [--ticks N]` (defaults: 1 000 devices × 4 probes × 2 500 ticks = 10 M readings).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use emberline_benches::embedded;
use emberline_ingest::{Simulator, SimulatorConfig};
use emberline_log::{EventLog, NewRecord, topics};
use emberline_schemas::EventCodec;
use emberline_schemas::events::CookEnded;

/// 2026-09-21T18:00:00Z: the simulated cooks run past midnight, so the readings span two
/// UTC days.
const START_MS: i64 = 1_790_013_600_000;

const HELP: &str = "\
Generates the analytics benchmark's data directory (see benches/README.md).

Usage: analytics --out DIR [options]

Options:
  --out DIR             where to write DIR/data (the data directory) and DIR/emberline.toml;
                        DIR/data must not exist yet
  --devices N           simulated devices, 4 probes each (default 1000)
  --ticks N             readings per probe (default 2500)
  --interval-ms N       simulated time between readings of a probe (default 10000)
  --batch-ticks N       ticks appended per log append (default 5)
  --partitions N        partitions per topic, as log.partitions (default 4)
  --target-c T          target of the cooks' meat probes, °C (default 93)
  -h, --help            print this help
";

fn num<T: std::str::FromStr>(flag: &str, v: String) -> anyhow::Result<T> {
    v.parse()
        .map_err(|_| anyhow::anyhow!("{flag} {v:?}: not a number"))
}

struct Args {
    out: PathBuf,
    devices: u32,
    ticks: u64,
    interval_ms: u64,
    batch_ticks: u64,
    partitions: u32,
    target_c: f64,
}

impl Args {
    /// Parsed from the command line; `None` when help was asked for.
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut out = None;
        let mut args = Self {
            out: PathBuf::new(),
            devices: 1_000,
            ticks: 2_500,
            interval_ms: 10_000,
            batch_ticks: 5,
            partitions: 4,
            target_c: 93.0,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            let mut value = || {
                it.next()
                    .with_context(|| format!("{flag} needs a value (see --help)"))
            };
            match flag.as_str() {
                "--out" => out = Some(PathBuf::from(value()?)),
                "--devices" => args.devices = num(&flag, value()?)?,
                "--ticks" => args.ticks = num(&flag, value()?)?,
                "--interval-ms" => args.interval_ms = num(&flag, value()?)?,
                "--batch-ticks" => args.batch_ticks = num(&flag, value()?)?,
                "--partitions" => args.partitions = num(&flag, value()?)?,
                "--target-c" => args.target_c = num(&flag, value()?)?,
                other => bail!("unknown argument {other:?} (see --help)"),
            }
        }
        args.out = out.context("--out DIR is required (see --help)")?;
        if args.devices == 0 || args.ticks == 0 || args.interval_ms == 0 || args.partitions == 0 {
            bail!("--devices, --ticks, --interval-ms and --partitions must be at least 1");
        }
        args.batch_ticks = args.batch_ticks.max(1);
        Ok(Some(args))
    }
}

/// Encodes `events` keyed by their device, as the gateway appends commands.
fn records<E: emberline_schemas::Event>(
    codec: &EventCodec,
    events: &[E],
    key_time: impl Fn(&E) -> (&str, i64),
) -> anyhow::Result<Vec<NewRecord>> {
    events
        .iter()
        .map(|e| {
            let (device, time) = key_time(e);
            Ok(NewRecord {
                key: device.as_bytes().to_vec(),
                value: codec.encode(e)?,
                timestamp_ms: time,
            })
        })
        .collect()
}

/// The configuration `emberline` is run with: the data directory, retention off.
fn write_config(out: &Path, data: &Path, partitions: u32) -> anyhow::Result<PathBuf> {
    let path = out.join("emberline.toml");
    let data = data
        .to_str()
        .context("the data directory's path is not UTF-8")?;
    let text = format!(
        "# The analytics benchmark's data directory (written by the `analytics` driver).\n\
         data_dir = {data:?}\n\n\
         [log]\n\
         partitions = {partitions}\n\
         # The readings are dated in the past: retention would delete them.\n\
         retention_days = 0\n"
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let Some(args) = Args::parse()? else {
        #[allow(clippy::print_stdout)]
        {
            print!("{HELP}");
        }
        return Ok(());
    };
    let data = args.out.join("data");
    if data.exists() {
        bail!(
            "{} exists: remove it first (the driver writes a new data directory)",
            data.display()
        );
    }
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let data = data.canonicalize()?;
    let rt = tokio::runtime::Runtime::new()?;
    let (log, codec) = rt
        .block_on(embedded(&data, args.partitions))
        .map_err(|e| anyhow::anyhow!(e))
        .context("creating the embedded log")?;
    let config = SimulatorConfig {
        devices: args.devices,
        probes: 4,
        interval_ms: args.interval_ms,
        ..Default::default()
    };
    let mut sim = Simulator::new(config, START_MS);

    let started = Instant::now();
    let mut readings = 0u64;
    let mut last_ms = START_MS;
    rt.block_on(async {
        let cooks = sim.cook_commands(args.target_c);
        let starts = records(&codec, &cooks, |c| (&c.device_id, c.event_time))?;
        log.append(topics::COOK_COMMANDS, starts).await?;

        let mut batch = Vec::new();
        for tick in 1..=args.ticks {
            for r in sim.tick(None) {
                last_ms = r.event_time;
                batch.push(NewRecord {
                    key: r.device_id.as_bytes().to_vec(),
                    value: codec.encode(&r)?,
                    timestamp_ms: r.event_time,
                });
            }
            if tick % args.batch_ticks == 0 || tick == args.ticks {
                readings += batch.len() as u64;
                log.append(topics::PROBE_READINGS, std::mem::take(&mut batch))
                    .await?;
            }
        }

        let ends: Vec<CookEnded> = cooks
            .iter()
            .map(|c| CookEnded {
                cook_id: c.cook_id.clone(),
                device_id: c.device_id.clone(),
                event_time: last_ms,
            })
            .collect();
        let ends = records(&codec, &ends, |c| (&c.device_id, c.event_time))?;
        log.append(topics::COOK_COMMANDS, ends).await?;
        anyhow::Ok(())
    })?;
    let elapsed = started.elapsed();
    drop(log);
    let config = write_config(&args.out, &data, args.partitions)?;

    let report = format!(
        "readings {readings} ({} devices x 4 probes x {} ticks, {} ms apart), {} cooks\n\
         generated in {:.1} s ({:.0} readings/s: simulate, encode, durable append per {} \
         ticks)\n\
         log.redb: {:.0} MiB\n\
         config: {}\n",
        args.devices,
        args.ticks,
        args.interval_ms,
        args.devices,
        elapsed.as_secs_f64(),
        readings as f64 / elapsed.as_secs_f64(),
        args.batch_ticks,
        dir_size(&data) as f64 / f64::from(1u32 << 20),
        config.display(),
    );
    #[allow(clippy::print_stdout)]
    {
        print!("{report}");
    }
    Ok(())
}
