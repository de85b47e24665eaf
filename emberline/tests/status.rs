//! `emberline status` reads a data directory's stores while `emberline up` runs on it and
//! after any Emberline command has stopped: every command closes its stores cleanly, so
//! the next process opens them without a repair (which reads and checks the whole file,
//! and which a read-only open such as `status` cannot do at all).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::Up;

/// `emberline status` on `data`: its output, which must be a success.
fn status(data: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--data-dir")
        .arg(data)
        .arg("status")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run emberline status");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "status failed:\n{text}");
    text
}

/// Asserts that `report` read both stores: each section lists what the store holds.
fn assert_both_stores_read(report: &str, after: &str) {
    assert!(
        !report.contains("cannot read it"),
        "after {after}, a store could not be read:\n{report}"
    );
    let log = report
        .split("\nlog (log.redb)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("after {after}, no log section:\n{report}"));
    assert!(
        log.trim_start().starts_with("topic") && log.contains("probe.readings"),
        "after {after}, the log's topics are not listed:\n{report}"
    );
    let projections = report
        .split("\nprojections (projections.redb)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("after {after}, no projections section:\n{report}"));
    assert!(
        projections.trim_start().starts_with("table"),
        "after {after}, the projection tables are not listed:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_stores_while_up_runs_after_it_stops_and_after_a_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let up = Up::start(&data, support::free_port());
    let _ = up.channel().await;
    assert_both_stores_read(&status(&data), "`emberline up` started");
    up.interrupt();
    assert_both_stores_read(&status(&data), "`emberline up` stopped on Ctrl-C");

    let sql = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "sql",
            "--format",
            "csv",
            "--",
            "SELECT count(*) AS n FROM probe_readings",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run emberline sql");
    assert!(
        sql.status.success(),
        "{}",
        String::from_utf8_lossy(&sql.stderr)
    );
    assert!(
        String::from_utf8_lossy(&sql.stdout).starts_with("n\n"),
        "{}",
        String::from_utf8_lossy(&sql.stdout)
    );
    assert_both_stores_read(&status(&data), "`emberline sql`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_status_says_what_happened_and_the_next_start_repairs_the_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let up = Up::start(&data, support::free_port());
    let _ = up.channel().await;
    up.kill_9();
    let report = status(&data);
    for store in ["log.redb", "projections.redb"] {
        let line = report
            .lines()
            .find(|l| l.contains("cannot read it") && l.contains(store))
            .unwrap_or_else(|| panic!("{store} is reported as readable after kill -9:\n{report}"));
        assert!(
            line.contains("not closed cleanly") && line.contains("emberline up"),
            "does not say why, nor what repairs it:\n{report}"
        );
    }

    let up = Up::start(&data, support::free_port());
    let _ = up.channel().await;
    up.interrupt();
    assert_both_stores_read(&status(&data), "a restart after kill -9 and a Ctrl-C");
}
