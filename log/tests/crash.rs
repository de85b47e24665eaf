//! An acknowledged append to the embedded log survives `kill -9` of the appending process.
//!
//! The test re-runs its own binary as a child (`EMBERLINE_CRASH_CHILD` names the data
//! file). The child appends batches forever and prints each acknowledged position; the
//! parent kills it with SIGKILL mid-stream, reopens the log and checks every acknowledged
//! record is there, intact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use emberline_log::{EmbeddedLog, EventLog, NewRecord, conformance::read_to_end};

const TOPIC: &str = "crash";

fn value(batch: u64, i: u64) -> Vec<u8> {
    format!("batch {batch} record {i}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_kill_9() {
    if let Ok(path) = std::env::var("EMBERLINE_CRASH_CHILD") {
        child(&path).await;
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "acknowledged_appends_survive_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EMBERLINE_CRASH_CHILD", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked: Vec<(u64, u64)> = Vec::new(); // (batch, last offset)
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("acked ") {
            let mut parts = rest.split(' ').map(|p| p.parse::<u64>().expect("number"));
            acked.push((parts.next().expect("batch"), parts.next().expect("offset")));
            if acked.len() == 40 {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(
        acked.len(),
        40,
        "the child stopped before 40 acknowledged appends"
    );

    let log = EmbeddedLog::open(&path).expect("reopen after kill -9");
    let records = read_to_end(&log, TOPIC, 0, 0).await.expect("read");
    let (last_batch, last_offset) = *acked.last().expect("acked");
    assert!(
        records.len() as u64 > last_offset,
        "{} records, but offset {last_offset} was acknowledged",
        records.len()
    );
    for (offset, record) in records.iter().enumerate() {
        let (batch, i) = (offset as u64 / 50, offset as u64 % 50);
        assert_eq!(record.value, value(batch, i), "record at offset {offset}");
    }
    assert!(records.len() as u64 / 50 > last_batch);
}

/// Appends 50-record batches until killed, printing each acknowledged batch.
async fn child(path: &str) {
    let log = EmbeddedLog::open(std::path::Path::new(path)).expect("open");
    log.ensure_topic(TOPIC, 1).await.expect("topic");
    for batch in 0u64.. {
        let records = (0..50)
            .map(|i| NewRecord {
                key: b"k".to_vec(),
                value: value(batch, i),
                timestamp_ms: 1_700_000_000_000,
            })
            .collect();
        let positions = log.append(TOPIC, records).await.expect("append");
        let last = positions.last().expect("positions").offset;
        #[allow(clippy::print_stdout)]
        {
            println!("acked {batch} {last}");
        }
    }
}
