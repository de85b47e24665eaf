//! `emberline sql` and `emberline export` as a user runs them, on a data directory holding
//! a sample log (every event type, several tenants, records of older schema versions): the
//! answers agree with the records read through the `EventLog` API, an export reads back
//! with the same rows, and mistakes are one-line errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use emberline_analytics::TABLES;
use emberline_analytics::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use emberline_analytics::testsuite::{
    Cell, Cells, DEVICES, READING_EVERY_MS, T0, batch_rows, expected_rows, write_sample,
};

/// The default `log.partitions`, so the binary finds the topics as it would create them.
const PARTITIONS: u32 = 4;

fn emberline(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("emberline.toml");
    std::fs::write(&config, "").expect("config");
    Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .expect("run emberline")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "emberline failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

fn text(row: &Cells, column: &str) -> String {
    match row.get(column) {
        Some(Cell::S(s)) => s.clone(),
        other => panic!("{column} is {other:?}"),
    }
}

/// The oracle's rows of every table, read before the test process lets go of the log.
async fn sample(dir: &Path) -> BTreeMap<&'static str, Vec<Cells>> {
    let sample = write_sample(&dir.join("data"), PARTITIONS).await;
    let mut tables = BTreeMap::new();
    for def in &TABLES {
        tables.insert(
            def.name,
            expected_rows(sample.log.as_ref(), &sample.codec, def).await,
        );
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_answers_from_the_log_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = sample(dir.path()).await;

    // Row counts of every table, as CSV.
    for (name, rows) in &tables {
        let out = stdout_of(&emberline(
            dir.path(),
            &[
                "sql",
                &format!("SELECT count(*) AS n FROM {name}"),
                "--format",
                "csv",
            ],
        ));
        assert_eq!(out, format!("n\n{}\n", rows.len()), "{name}");
    }

    // Per probe: readings and the hottest one, against the oracle.
    let mut want: BTreeMap<(String, String), (usize, Option<f64>)> = BTreeMap::new();
    for r in &tables["probe_readings"] {
        let slot = want
            .entry((text(r, "device_id"), text(r, "probe_id")))
            .or_default();
        slot.0 += 1;
        if let Some(Cell::F(t)) = r.get("temperature_c") {
            slot.1 = Some(slot.1.map_or(*t, |m: f64| m.max(*t)));
        }
    }
    let out = stdout_of(&emberline(
        dir.path(),
        &[
            "sql",
            "SELECT device_id, probe_id, count(*) AS n, max(temperature_c) AS hottest \
             FROM probe_readings GROUP BY device_id, probe_id ORDER BY device_id, probe_id",
            "--format",
            "json",
        ],
    ));
    let got: BTreeMap<(String, String), (usize, Option<f64>)> = out
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            (
                (
                    v["device_id"].as_str().expect("device").to_owned(),
                    v["probe_id"].as_str().expect("probe").to_owned(),
                ),
                (
                    v["n"].as_u64().expect("n") as usize,
                    v.get("hottest").and_then(serde_json::Value::as_f64),
                ),
            )
        })
        .collect();
    // JSON prints doubles to about 16 digits: equal within that.
    assert_eq!(got.len(), want.len());
    for ((gk, (gn, gt)), (wk, (wn, wt))) in got.iter().zip(&want) {
        assert_eq!((gk, gn), (wk, wn));
        match (gt, wt) {
            (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-12 * w.abs(), "{gk:?}: {g} {w}"),
            (g, w) => assert_eq!(g, w, "{gk:?}"),
        }
    }

    // The default format is an aligned table with a header.
    let cooks = tables["cook_commands"]
        .iter()
        .filter(|r| text(r, "event_type") == "CookStarted")
        .count();
    let out = stdout_of(&emberline(
        dir.path(),
        &["sql", "SELECT count(*) AS cooks FROM cooks"],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[1].contains("| cooks |"), "{out}");
    assert!(lines[3].contains(&format!("| {cooks:<5} |")), "{out}");

    // Parquet goes to a file.
    let file = dir.path().join("alerts.parquet");
    stdout_of(&emberline(
        dir.path(),
        &[
            "sql",
            "SELECT * FROM alerts ORDER BY log_partition, log_offset",
            "--format",
            "parquet",
            "--output",
            file.to_str().expect("path"),
        ],
    ));
    let batches: Vec<_> =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("batches");
    assert_eq!(batch_rows(&batches), tables["alerts"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_a_devices_readings_that_read_back_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = sample(dir.path()).await;
    let device = DEVICES[3];
    let (from, to) = (T0 + 20 * READING_EVERY_MS, T0 + 40 * READING_EVERY_MS);
    let want: Vec<Cells> = tables["probe_readings"]
        .iter()
        .filter(|r| text(r, "device_id") == device)
        .filter(|r| matches!(r.get("event_time"), Some(Cell::I(t)) if (from..to).contains(t)))
        .cloned()
        .collect();
    assert!(!want.is_empty());
    let rfc3339 = |ms: i64| {
        let (s, ms) = (ms / 1_000, ms % 1_000);
        // Through the shell's `date`: an independent formatter.
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{s}"), "+%Y-%m-%dT%H:%M:%S"])
            .output()
            .expect("date");
        format!("{}.{ms:03}Z", String::from_utf8_lossy(&out.stdout).trim())
    };
    let file = dir.path().join("export.parquet");
    let out = stdout_of(&emberline(
        dir.path(),
        &[
            "export",
            "--device",
            device,
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
            "--format",
            "parquet",
            "--output",
            file.to_str().expect("path"),
        ],
    ));
    assert!(out.contains(&format!("{} readings", want.len())), "{out}");
    let batches: Vec<_> =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("batches");
    assert_eq!(batch_rows(&batches), want);

    // CSV too: a header and one line per reading.
    let csv = dir.path().join("export.csv");
    stdout_of(&emberline(
        dir.path(),
        &[
            "export",
            "--device",
            device,
            "--format",
            "csv",
            "--output",
            csv.to_str().expect("path"),
        ],
    ));
    let all = tables["probe_readings"]
        .iter()
        .filter(|r| text(r, "device_id") == device)
        .count();
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(text.lines().count(), all + 1);
    assert!(text.starts_with("log_partition,log_offset,tenant,device_id,probe_id,"));
}

/// The rows of `path`, a Parquet file.
fn parquet_rows(path: &Path) -> Vec<Cells> {
    let batches: Vec<_> =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("batches");
    batch_rows(&batches)
}

fn int(row: &Cells, column: &str) -> i64 {
    match row.get(column) {
        Some(Cell::I(i)) => *i,
        other => panic!("{column} is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_cook_writes_its_devices_rows_from_start_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = sample(dir.path()).await;
    let commands = &tables["cook_commands"];
    fn of_kind<'a>(commands: &'a [Cells], kind: &'a str) -> impl Iterator<Item = &'a Cells> {
        commands
            .iter()
            .filter(move |c| text(c, "event_type") == kind)
    }
    let (mut checked, mut narrower) = ((0, 0), 0);
    for start in of_kind(commands, "CookStarted") {
        let (cook, device) = (text(start, "cook_id"), text(start, "device_id"));
        let end = of_kind(commands, "CookEnded")
            .filter(|e| text(e, "cook_id") == cook && text(e, "device_id") == device)
            .map(|e| int(e, "event_time"))
            .max();
        let during = |t: i64| t >= int(start, "event_time") && end.is_none_or(|e| t <= e);
        for (what, table) in [
            ("readings", "probe_readings"),
            ("predictions", "predictions"),
            ("alerts", "alerts"),
        ] {
            let want: Vec<Cells> = tables[table]
                .iter()
                .filter(|r| text(r, "device_id") == device && during(int(r, "event_time")))
                .cloned()
                .collect();
            let file = dir.path().join(format!("{what}.parquet"));
            let out = stdout_of(&emberline(
                dir.path(),
                &[
                    "export",
                    "--cook",
                    &cook,
                    "--what",
                    what,
                    "--format",
                    "parquet",
                    "--output",
                    file.to_str().expect("path"),
                ],
            ));
            assert!(
                out.contains(&format!("{} ", want.len())) && out.contains(&cook),
                "{out}"
            );
            assert_eq!(parquet_rows(&file), want, "{cook} {what}");
            if what == "readings" {
                let all = tables[table]
                    .iter()
                    .filter(|r| text(r, "device_id") == device)
                    .count();
                narrower += usize::from(want.len() < all);
            }
        }
        if end.is_some() {
            checked.0 += 1
        } else {
            checked.1 += 1
        }
    }
    assert!(
        checked.0 > 0 && checked.1 > 0,
        "ended and running cooks: {checked:?}"
    );
    assert!(narrower > 0, "a cook that leaves readings out");

    let out = emberline(
        dir.path(),
        &[
            "export",
            "--cook",
            "no-such-cook",
            "--format",
            "csv",
            "--output",
            "x.csv",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no cook \"no-such-cook\""), "{err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_without_a_query_runs_the_statements_it_is_given_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = sample(dir.path()).await;
    let config = dir.path().join("emberline.toml");
    std::fs::write(&config, "").expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("sql")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run emberline sql");
    // Two statements on one line, a mistake, one over two lines, and one without its `;`.
    let input = "SELECT count(*) AS cooks FROM cooks; SELECT count(*) AS alerts FROM alerts;\n\
                 SELECT nope FROM trends;\n\
                 SELECT count(*) AS readings\n  FROM probe_readings;\n\
                 SELECT count(*) AS history FROM alerts_history";
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cooks = tables["cook_commands"]
        .iter()
        .filter(|c| text(c, "event_type") == "CookStarted")
        .count();
    let raised_first = tables["alerts"]
        .iter()
        .filter(|a| text(a, "event_type") == "AlertRaised" && int(a, "repeat") == 0)
        .count();
    for (column, n) in [
        ("cooks", cooks),
        ("alerts", tables["alerts"].len()),
        ("readings", tables["probe_readings"].len()),
        ("history", raised_first),
    ] {
        let at = stdout
            .find(&format!("| {column}"))
            .unwrap_or_else(|| panic!("no {column} table in:\n{stdout}"));
        let value = stdout[at..].lines().nth(2).and_then(|l| {
            l.trim_matches(|c| c == '|' || c == ' ')
                .parse::<usize>()
                .ok()
        });
        assert_eq!(value, Some(n), "{column}:\n{stdout}");
    }
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("nope"), "{stderr}");
    assert_eq!(stderr.matches("(1 row, ").count(), 4, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    sample(dir.path()).await;
    for (query, says) in [
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELEC 1", "SELEC"),
        ("SELECT nope FROM trends", "nope"),
        ("CREATE TABLE t AS SELECT 1", "not supported"),
    ] {
        let out = emberline(dir.path(), &["sql", query]);
        assert!(!out.status.success(), "{query} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{query}:\n{err}");
        assert!(lines[0].starts_with("error: "), "{query}:\n{err}");
        assert!(lines[0].contains(says), "{query}:\n{err}");
        assert!(!err.contains("panicked"), "{query}:\n{err}");
    }

    // While another process holds the embedded log, sql says why it cannot run.
    let held = emberline_log::EmbeddedLog::open(&dir.path().join("data").join("log.redb"))
        .expect("hold the log");
    let out = emberline(dir.path(), &["sql", "SELECT 1"]);
    drop(held);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run while `emberline up`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The `emberline sql` command lines of the README's Analytics section (continuation
/// lines joined).
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Analytics\n")
        .expect("an Analytics section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut current = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let command = std::mem::take(&mut current);
                if command.starts_with("emberline sql ") {
                    commands.push(command);
                }
            }
        }
    }
    commands
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_example_queries_run_and_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    sample(dir.path()).await;
    let config = dir.path().join("emberline.toml");
    std::fs::write(&config, "").expect("config");
    let queries = readme_queries();
    assert!(queries.len() >= 5, "{queries:?}");
    for command in queries {
        // Through the shell, as a reader would paste it.
        let line = command.replacen(
            "emberline ",
            "\"$EMBERLINE\" --config \"$CONFIG\" --data-dir \"$DATA\" ",
            1,
        );
        let out = Command::new("sh")
            .args(["-c", &line])
            .env("EMBERLINE", env!("CARGO_BIN_EXE_emberline"))
            .env("CONFIG", &config)
            .env("DATA", dir.path().join("data"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("sh");
        let text = stdout_of(&out);
        // A header and at least one row, in either the table or the CSV form.
        let rows = text
            .lines()
            .filter(|l| !l.starts_with('+') && !l.trim().is_empty())
            .count();
        assert!(rows >= 2, "{command}:\n{text}");
    }
}

/// The python with pyarrow the test command provides (`EMBERLINE_TEST_PYTHON`); `None`
/// (the test skipped) when there is none, unless `EMBERLINE_REQUIRE_PYTHON=1`.
fn python_with_pyarrow() -> Option<String> {
    match std::env::var("EMBERLINE_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var("EMBERLINE_REQUIRE_PYTHON").as_deref() == Ok("1") => {
            panic!("EMBERLINE_REQUIRE_PYTHON=1 but EMBERLINE_TEST_PYTHON names no python")
        }
        _ => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipped: EMBERLINE_TEST_PYTHON (a python with pyarrow) is not set");
            }
            None
        }
    }
}

/// What pyarrow reads back, summed up the same way on both sides.
#[derive(Debug, PartialEq)]
struct Summary {
    rows: usize,
    nulls: usize,
    first: i64,
    last: i64,
    probes: Vec<String>,
    devices: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_hour_cook_exported_to_parquet_reads_back_in_pyarrow_with_the_same_rows() {
    use emberline_ingest::{Simulator, SimulatorConfig};
    use emberline_log::{EmbeddedLog, EventLog, NewRecord, topics};
    use emberline_schemas::events::{CookEnded, CookStarted};
    use emberline_schemas::{EmbeddedRegistry, EventCodec};

    let Some(python) = python_with_pyarrow() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    // One 4-probe grill at 1 Hz for 12 h and 10 minutes; the cook is the 12 h after the
    // first 10 minutes.
    let log = EmbeddedLog::open(&dir.path().join("data").join("log.redb")).expect("log");
    let registry = EmbeddedRegistry::shared(log.handle());
    let codec = EventCodec::connect(std::sync::Arc::new(registry))
        .await
        .expect("codec");
    for topic in topics::ALL {
        log.ensure_topic(topic, PARTITIONS).await.expect("topic");
    }
    let t0 = 1_790_000_000_000i64;
    let (start, end) = (t0 + 600_000, t0 + 600_000 + 12 * 3_600_000);
    let mut sim = Simulator::new(
        SimulatorConfig {
            devices: 1,
            probes: 4,
            ..SimulatorConfig::default()
        },
        t0,
    );
    let (mut temps, mut want) = (
        Vec::new(),
        Summary {
            rows: 0,
            nulls: 0,
            first: i64::MAX,
            last: i64::MIN,
            probes: Vec::new(),
            devices: Vec::new(),
        },
    );
    let mut device = String::new();
    let mut pending = Vec::new();
    for _ in 0..(12 * 3_600 + 600 + 60) {
        for r in sim.tick(None) {
            if (start..=end).contains(&r.event_time) {
                want.rows += 1;
                want.first = want.first.min(r.event_time);
                want.last = want.last.max(r.event_time);
                match r.temperature_c {
                    Some(t) => temps.push(t),
                    None => want.nulls += 1,
                }
                if !want.probes.contains(&r.probe_id) {
                    want.probes.push(r.probe_id.clone());
                }
            }
            device.clone_from(&r.device_id);
            pending.push(NewRecord {
                key: r.device_id.as_bytes().to_vec(),
                value: codec.encode(&r).expect("encode"),
                timestamp_ms: r.event_time,
            });
        }
        if pending.len() >= 4_000 {
            log.append(topics::PROBE_READINGS, std::mem::take(&mut pending))
                .await
                .expect("append");
        }
    }
    log.append(topics::PROBE_READINGS, pending)
        .await
        .expect("append");
    want.probes.sort();
    want.devices = vec![device.clone()];
    let commands = vec![
        NewRecord {
            key: device.as_bytes().to_vec(),
            value: codec
                .encode(&CookStarted {
                    cook_id: "overnight".into(),
                    device_id: device.clone(),
                    event_time: start,
                    what: Some("brisket".into()),
                    targets_c: BTreeMap::new(),
                    pit_min_c: None,
                    pit_max_c: None,
                    meat: Some("brisket".into()),
                    weight_kg: Some(6.0),
                    serve_at_ms: None,
                    rest_min: None,
                })
                .expect("encode"),
            timestamp_ms: start,
        },
        NewRecord {
            key: device.as_bytes().to_vec(),
            value: codec
                .encode(&CookEnded {
                    cook_id: "overnight".into(),
                    device_id: device.clone(),
                    event_time: end,
                })
                .expect("encode"),
            timestamp_ms: end,
        },
    ];
    log.append(topics::COOK_COMMANDS, commands)
        .await
        .expect("append");
    // The registry in the codec holds the log's file too: let go of both.
    drop((log, codec));
    assert!(want.rows >= 4 * 12 * 3_600, "{}", want.rows);

    let file = dir.path().join("overnight.parquet");
    let out = stdout_of(&emberline(
        dir.path(),
        &[
            "export",
            "--cook",
            "overnight",
            "--format",
            "parquet",
            "--output",
            file.to_str().expect("path"),
        ],
    ));
    assert!(out.contains(&format!("{} readings", want.rows)), "{out}");
    // pyarrow's own reader, as a user's notebook would read it.
    let script = "import json, sys\n\
                  import pyarrow.parquet as pq\n\
                  t = pq.read_table(sys.argv[1])\n\
                  temps = t.column('temperature_c').to_pylist()\n\
                  times = t.column('event_time').cast('int64').to_pylist()\n\
                  print(json.dumps({'rows': t.num_rows, 'nulls': temps.count(None),\n\
                    'sum': sum(x for x in temps if x is not None),\n\
                    'first': min(times), 'last': max(times),\n\
                    'probes': sorted(set(t.column('probe_id').to_pylist())),\n\
                    'devices': sorted(set(t.column('device_id').to_pylist()))}))\n";
    let read = Command::new(&python)
        .args(["-c", script])
        .arg(&file)
        .output()
        .expect("run python");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&read.stdout).expect("json");
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("text").to_owned())
            .collect()
    };
    let got = Summary {
        rows: v["rows"].as_u64().expect("rows") as usize,
        nulls: v["nulls"].as_u64().expect("nulls") as usize,
        first: v["first"].as_i64().expect("first"),
        last: v["last"].as_i64().expect("last"),
        probes: strings("probes"),
        devices: strings("devices"),
    };
    assert_eq!(got, want);
    let sum: f64 = temps.iter().sum();
    let read_sum = v["sum"].as_f64().expect("sum");
    assert!(
        (read_sum - sum).abs() <= 1e-9 * sum.abs(),
        "sum of temperatures {read_sum} read back, {sum} written"
    );
}
