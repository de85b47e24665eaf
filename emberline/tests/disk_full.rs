//! A full disk loses nothing and heals by itself.
//!
//! `emberline up` runs with its data directory on a small tmpfs and an HTTP push source,
//! whose 2xx answer means the readings are durable in the log. A pusher sends readings
//! with distinct event times and keeps each acknowledged one; midway a filler file takes
//! all free space. Then: pushes must be refused with 503 and a reason naming the failure
//! (the pusher retries, as a device would); once the filler is deleted ingest must resume
//! by itself (the time it takes is printed as `MEASURED: disk-full recovery …`); and after a
//! restart every acknowledged reading must be in the projections' history.
//!
//! Needs root for `mount`: skipped with a message otherwise, unless
//! `EMBERLINE_REQUIRE_MOUNT=1` (the test script sets it), which makes that a failure.
#![allow(clippy::print_stderr, clippy::print_stdout)]

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use support::{PATIENCE, Up, eventually, free_port, history};

const DEVICE: &str = "smoker";
const TOKEN: &str = "disk-full-test-token";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a `size` tmpfs, or `None` (after saying why) when this process may not.
    fn mount(size: &str) -> Option<Tmpfs> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let required = std::env::var("EMBERLINE_REQUIRE_MOUNT").as_deref() == Ok("1");
        if !root {
            assert!(
                !required,
                "EMBERLINE_REQUIRE_MOUNT=1 but the tests do not run as root"
            );
            eprintln!(
                "skipped: mounting a size-limited tmpfs needs root (set EMBERLINE_REQUIRE_MOUNT=1 to make this a failure)"
            );
            return None;
        }
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Some(Tmpfs {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes zeros into `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                break;
            }
        }
    }
    // Small writes too, so not even a page is left.
    while let Ok(n) = file.write(&[0u8; 512]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

fn config(dir: &Path, push: std::net::SocketAddr) -> PathBuf {
    let path = dir.join("disk-full.toml");
    std::fs::write(&path, support::push::source(push, DEVICE, TOKEN)).expect("config");
    path
}

/// One push of readings at `times` (ms); the status and the answer's text.
async fn push(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    times: &[i64],
) -> (u16, String) {
    let readings: Vec<_> = times
        .iter()
        .map(|t| serde_json::json!({"probe_id": "meat", "value": 20.0 + (*t % 1000) as f64 / 100.0, "time": t}))
        .collect();
    support::push::push(client, addr, DEVICE, TOKEN, readings).await
}

/// What the pusher saw.
#[derive(Default)]
struct Pushed {
    acknowledged: BTreeSet<i64>,
    refusals: Vec<(u16, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_a_reason_loses_nothing_and_heals_by_itself() {
    let Some(tmpfs) = Tmpfs::mount("32m") else {
        return;
    };
    emberline_common::http::install_crypto_provider();
    let outside = tempfile::tempdir().expect("tempdir");
    let push_addr = free_port();
    let config = config(outside.path(), push_addr);
    let env = [("EMBERLINE_CONFIG", config.to_str().expect("utf-8 path"))];
    let up = Up::start_with(&tmpfs.dir, free_port(), &env);
    up.channel().await;
    let client = reqwest::Client::new();
    // Event times a minute apart from an hour ago, 50 per push: distinct, in the past.
    let base = emberline_common::clock::now_ms() - 3_600_000;
    let mut next = 0i64;
    let mut batch = |n: i64| {
        let times: Vec<i64> = (next..next + n).map(|i| base + i * 10).collect();
        next += n;
        times
    };
    let mut pushed = Pushed::default();
    // 1. Healthy: a few pushes are taken.
    eventually(
        "the push source answers",
        PATIENCE,
        Duration::from_millis(100),
        || {
            let client = client.clone();
            async move {
                match push(&client, push_addr, &[]).await {
                    (0, e) => Err(e),
                    _ => Ok(()),
                }
            }
        },
    )
    .await;
    for _ in 0..5 {
        let times = batch(50);
        let (status, text) = push(&client, push_addr, &times).await;
        assert_eq!(status, 200, "healthy push: {text}");
        pushed.acknowledged.extend(times);
    }
    // 2. Fill the disk, and keep pushing until the log refuses.
    let filler = tmpfs.dir.join("filler");
    let filled = fill(&filler);
    eprintln!("filler took {filled} bytes");
    let refused_at = tokio::time::Instant::now() + PATIENCE;
    let mut pending: Vec<i64> = Vec::new();
    loop {
        assert!(
            tokio::time::Instant::now() < refused_at,
            "the log never refused an append on a full disk"
        );
        if pending.is_empty() {
            pending = batch(200);
        }
        let (status, text) = push(&client, push_addr, &pending).await;
        match status {
            200 => pushed.acknowledged.extend(std::mem::take(&mut pending)),
            _ => {
                pushed.refusals.push((status, text));
                break;
            }
        }
    }
    let (status, reason) = pushed.refusals[0].clone();
    eprintln!("refused with {status}: {reason}");
    assert!(status == 503 || status == 507, "{status}: {reason}");
    assert!(
        reason.contains("No space left on device") || reason.contains("storage"),
        "the refusal must say why: {reason}"
    );
    // A device keeps retrying while the disk stays full: still refused, never a 5xx crash.
    let (status, text) = push(&client, push_addr, &pending).await;
    assert!(
        status == 503 || status == 507 || status == 200,
        "{status}: {text}"
    );
    if status == 200 {
        pushed.acknowledged.extend(std::mem::take(&mut pending));
    }
    // 3. Free the space; ingest must resume by itself.
    std::fs::remove_file(&filler).expect("delete the filler");
    let freed = Instant::now();
    let recovered = eventually(
        "ingest resumes after the space is freed",
        PATIENCE,
        Duration::from_millis(50),
        || {
            let client = client.clone();
            let times = if pending.is_empty() {
                batch(50)
            } else {
                pending.clone()
            };
            pending = times.clone();
            async move {
                match push(&client, push_addr, &times).await {
                    (200, _) => Ok(times),
                    (status, text) => Err(format!("{status}: {text}")),
                }
            }
        },
    )
    .await;
    let recovery = freed.elapsed();
    pushed.acknowledged.extend(recovered);
    println!(
        "MEASURED: disk-full recovery {:.2} s from deleting the filler to the next acknowledged push",
        recovery.as_secs_f64()
    );
    for _ in 0..5 {
        let times = batch(50);
        let (status, text) = push(&client, push_addr, &times).await;
        assert_eq!(status, 200, "after recovery: {text}");
        pushed.acknowledged.extend(times);
    }
    // 4. Restart on the same files: everything acknowledged is there, nothing is corrupt.
    up.interrupt();
    let up = Up::start_with(&tmpfs.dir, free_port(), &env);
    let readings = ReadingServiceClient::new(up.channel().await);
    let expected = pushed.acknowledged.clone();
    let (first, last) = (
        *expected.first().expect("some"),
        *expected.last().expect("some"),
    );
    eventually(
        "every acknowledged reading is in the history after a restart",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let mut readings = readings.clone();
            let expected = expected.clone();
            async move {
                let points = history(&mut readings, DEVICE, "meat", first, last + 1)
                    .await
                    .map_err(|e| e.to_string())?;
                let have: BTreeSet<i64> = points.iter().map(|p| p.event_time_ms).collect();
                let missing: Vec<_> = expected.difference(&have).take(5).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {} missing, e.g. {missing:?}",
                        expected.difference(&have).count(),
                        expected.len()
                    ))
                }
            }
        },
    )
    .await;
    eprintln!(
        "{} readings acknowledged, {} refusals, all readable after a restart",
        pushed.acknowledged.len(),
        pushed.refusals.len()
    );
    up.interrupt();
}
