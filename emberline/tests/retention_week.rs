//! A simulated week with one day of retention keeps the data directory bounded and answers
//! "expired" for the first days' history.
//!
//! `emberline up` runs with `log.retention_days = 1` and `history.retention_days = 1`, an
//! HTTP push source, and its clock moved a day at a time through
//! `EMBERLINE_CLOCK_OFFSET_FILE`. Each simulated day, one device's two probes report every
//! 30 s of that day (5 760 readings). Retention keys on record and event times, which are
//! the readings' times, so a week goes by in seconds.
//!
//! The bound: redb files never shrink, but pages freed by retention are reused, so the data
//! directory must stay within what holds about three days (one day retained, the day being
//! written, and the one retention has not yet removed): `3 × (size after day 1) + 2 MiB`.
//! Without retention it would grow to about seven times the first day.
//!
//! What retention removes goes to the archive (`<data_dir>/archive`, Parquet, outside that
//! bound): afterwards `emberline sql` still counts every reading of the week, each once.
#![allow(clippy::print_stderr, clippy::print_stdout)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use support::{PATIENCE, Up, eventually, free_port, history};

const DEVICE: &str = "smoker";
const TOKEN: &str = "retention-week-token";
const DAY: i64 = 86_400_000;
const STEP_MS: i64 = 30_000;
const PROBES: [&str; 2] = ["pit", "meat"];

fn config(dir: &Path, push: std::net::SocketAddr) -> PathBuf {
    let path = dir.join("week.toml");
    let text = format!(
        r#"[log]
retention_days = 1
retention_check_interval_s = 1

[history]
retention_days = 1
retention_check_interval_s = 1

{}"#,
        support::push::source(push, DEVICE, TOKEN)
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read data dir")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

async fn push(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    times: &[i64],
) -> (u16, String) {
    let readings: Vec<_> = times
        .iter()
        .flat_map(|t| {
            PROBES.iter().map(move |p| {
                serde_json::json!({"probe_id": p, "value": 100.0 + (*t / STEP_MS % 50) as f64, "time": t})
            })
        })
        .collect();
    support::push::push(client, addr, DEVICE, TOKEN, readings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_with_one_day_of_retention_stays_bounded_and_says_expired() {
    emberline_common::http::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let offset_file = dir.path().join("clock-offset");
    std::fs::write(&offset_file, "0").expect("offset");
    let push_addr = free_port();
    let config = config(dir.path(), push_addr);
    let env = [
        ("EMBERLINE_CONFIG", config.to_str().expect("utf-8")),
        (
            emberline_common::clock::OFFSET_FILE_VAR,
            offset_file.to_str().expect("utf-8"),
        ),
    ];
    let up = Up::start_with(&data, free_port(), &env);
    let readings = ReadingServiceClient::new(up.channel().await);
    let client = reqwest::Client::new();
    // Day d covers [start + d·DAY, start + (d+1)·DAY); the clock is moved to its end.
    let start = emberline_common::clock::now_ms() - DAY;
    let mut first_day_bytes = 0;
    let mut sizes = Vec::new();
    for day in 0..7i64 {
        std::fs::write(&offset_file, (day * DAY).to_string()).expect("move the clock");
        let day_start = start + day * DAY;
        let times: Vec<i64> = (0..DAY / STEP_MS)
            .map(|i| day_start + i * STEP_MS)
            .collect();
        for (i, chunk) in times.chunks(480).enumerate() {
            // The first push of a day waits until the process has read the moved clock:
            // until then its readings are "too far ahead" (422).
            let patience = if i == 0 { PATIENCE } else { Duration::ZERO };
            eventually(
                &format!("day {day} push {i} is taken"),
                patience,
                Duration::from_millis(100),
                || {
                    let client = client.clone();
                    async move {
                        match push(&client, push_addr, chunk).await {
                            (200, _) => Ok(()),
                            (status, text) => Err(format!("{status}: {text}")),
                        }
                    }
                },
            )
            .await;
        }
        // Processed, and (from day 2 on) the day before yesterday expired from the history.
        let last = *times.last().expect("times");
        eventually(
            &format!("day {day} is processed and retention has run"),
            PATIENCE,
            Duration::from_millis(200),
            || {
                let mut readings = readings.clone();
                async move {
                    let points = history(&mut readings, DEVICE, "meat", last, last + 1)
                        .await
                        .map_err(|e| e.to_string())?;
                    if points.is_empty() {
                        return Err("the day's last reading is not in the history yet".into());
                    }
                    if day >= 2 {
                        let old = history(
                            &mut readings,
                            DEVICE,
                            "meat",
                            day_start - 2 * DAY,
                            day_start - DAY,
                        )
                        .await;
                        if old.is_ok() {
                            return Err("two days ago is still in the history".into());
                        }
                    }
                    Ok(())
                }
            },
        )
        .await;
        let bytes = dir_bytes(&data);
        if day == 0 {
            first_day_bytes = bytes;
        }
        eprintln!("day {day}: data directory {bytes} bytes");
        sizes.push(bytes);
    }
    let bound = 3 * first_day_bytes + (2 << 20);
    let largest = *sizes.iter().max().expect("sizes");
    println!(
        "MEASURED: retention week — first day {first_day_bytes} bytes, largest {largest} bytes, bound 3 × first day + 2 MiB = {bound} bytes; per day: {sizes:?}"
    );
    assert!(
        largest <= bound,
        "the data directory grew to {largest} bytes, over the bound {bound}: {sizes:?}"
    );
    // The first days answer "expired", clearly, and the last day is all there.
    let mut readings = readings.clone();
    for day in 0..5 {
        let status = history(
            &mut readings,
            DEVICE,
            "meat",
            start + day * DAY,
            start + (day + 1) * DAY,
        )
        .await
        .expect_err("an expired day must not answer an empty list");
        assert_eq!(
            status.code(),
            tonic::Code::OutOfRange,
            "day {day}: {status:?}"
        );
        assert!(
            status.message().contains("expired"),
            "day {day}: {status:?}"
        );
    }
    // The last day from ten minutes in (its first seconds expire as the real seconds the
    // test takes pass: the cut-off is a day before the moved clock).
    let from = start + 6 * DAY + 600_000;
    let last_day = history(&mut readings, DEVICE, "meat", from, start + 7 * DAY)
        .await
        .expect("the last day");
    assert_eq!(last_day.len() as i64, (DAY - 600_000) / STEP_MS);
    up.interrupt();

    // What retention removed from the log is in the archive (`log.archive`, on by default):
    // SQL still sees every reading of the week, each once.
    let week = 7 * (DAY / STEP_MS) * PROBES.len() as i64;
    let expired = 5 * (DAY / STEP_MS) * PROBES.len() as i64;
    let query = format!(
        "SELECT (SELECT count(*) FROM probe_readings) AS n, \
         (SELECT count(*) FROM (SELECT DISTINCT probe_id, event_time FROM probe_readings)) \
         AS distinct_n, \
         (SELECT count(*) FROM probe_readings WHERE event_time < to_timestamp_millis({})) AS old",
        start + 5 * DAY
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["sql", &query, "--format", "csv"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run emberline sql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("n,distinct_n,old\n{week},{week},{expired}\n"),
    );
    let manifest = data
        .join("archive")
        .join("probe.readings")
        .join("manifest.jsonl");
    let lines = std::fs::read_to_string(&manifest).expect("the archive's manifest");
    assert!(lines.lines().count() > 0, "{lines}");
}
