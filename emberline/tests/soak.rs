//! Soak: `emberline up` with 50 simulated grills at 10× for 30 minutes (by default), its
//! resident memory and open files sampled every 10 s. After the warm-up (the first third)
//! both must be flat: the least-squares slope of RSS at most 512 KiB per minute (15 MiB
//! over the default run, where a leak of one buffer per reading would be gigabytes), and of
//! open files at most 0.1 per minute (a descriptor leaked per request or per reconnect
//! shows as many per minute).
//!
//! The process's own heap figures are sampled too, from its `/metrics`
//! (`emberline_memory_allocated_bytes`: what it holds; `…_resident_bytes`: what the
//! allocator keeps), and the held heap must be as flat: RSS alone cannot tell a leak from
//! an allocator keeping freed pages.
//!
//! Ignored by default; `./scripts/test --soak` runs it. `EMBERLINE_SOAK_MINUTES`,
//! `EMBERLINE_SOAK_DEVICES` and `EMBERLINE_SOAK_SPEEDUP` change the run (a 3-minute run
//! checks the test itself).
#![allow(clippy::print_stderr)]

mod support;

use std::time::{Duration, Instant};

use support::answers::answers;
use support::{PATIENCE, Up, free_port};

/// Largest RSS slope after warm-up, KiB per minute.
const MAX_RSS_KIB_PER_MIN: f64 = 512.0;
/// Largest open-files slope after warm-up, per minute.
const MAX_FILES_PER_MIN: f64 = 0.1;
/// Time between samples.
const EVERY: Duration = Duration::from_secs(10);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The Prometheus text at `http://{ops}/metrics`.
async fn scrape(client: &reqwest::Client, ops: std::net::SocketAddr) -> Option<String> {
    client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The sum of a family's samples in `text` (all label sets), KiB; `None` when absent.
fn family_kib(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse::<f64>().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / 1024.0)
}

/// The held heap, the allocator's resident pages and the stores' caches in `text`, KiB.
fn figures(text: &str) -> Option<(f64, f64, f64)> {
    Some((
        family_kib(text, "emberline_memory_allocated_bytes")?,
        family_kib(text, "emberline_memory_resident_bytes")?,
        family_kib(text, "emberline_store_cache_bytes")?,
    ))
}

#[test]
fn families_sum_over_their_label_sets() {
    let text = "# TYPE a gauge\na_bytes{store=\"log\"} 1024\na_bytes{store=\"projections\"} 2048\nb_bytes 4096\n";
    assert_eq!(family_kib(text, "a_bytes"), Some(3.0));
    assert_eq!(family_kib(text, "b_bytes"), Some(4.0));
    assert_eq!(family_kib(text, "c_bytes"), None);
}

fn open_files(pid: u32) -> Option<f64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64)
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

#[test]
fn slope_fits_a_line() {
    let xs = [0.0, 1.0, 2.0, 3.0];
    assert!((slope(&xs, &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-9);
    assert!(slope(&xs, &[4.0, 4.0, 4.0, 4.0]).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 30-minute soak: ./scripts/test --soak"]
async fn fifty_grills_for_half_an_hour_keep_memory_and_open_files_flat() {
    let minutes = env_or("EMBERLINE_SOAK_MINUTES", 30);
    let devices = env_or("EMBERLINE_SOAK_DEVICES", 50);
    let speedup = env_or("EMBERLINE_SOAK_SPEEDUP", 10);
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("emberline.toml");
    let ops = free_port();
    std::fs::write(
        &config,
        format!(
            "[ops]\naddr = \"{ops}\"\n\n[[sources]]\nkind = \"simulator\"\ndevices = {devices}\n\
             probes = 4\ninterval_ms = 1000\nspeedup = {speedup}\ncook_target_c = 93.0\n"
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let dir = root.path().join("data");
    let mut up = Up::start_with(&dir, free_port(), &[("EMBERLINE_CONFIG", config.as_str())]);
    up.wait_for_device(&format!("sim-{devices}")).await;
    let pid = up.child.id();
    emberline_common::http::install_crypto_provider();
    let client = reqwest::Client::new();
    // The ops endpoint starts beside the gateway: wait until it reports before sampling.
    let deadline = Instant::now() + PATIENCE;
    while figures(&scrape(&client, ops).await.unwrap_or_default()).is_none() {
        assert!(
            Instant::now() < deadline,
            "no heap or cache figures at http://{ops}/metrics"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let run = Duration::from_secs(minutes * 60);
    let (mut at, mut rss, mut files) = (Vec::new(), Vec::new(), Vec::new());
    let (mut held, mut kept, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    let mut ticker = tokio::time::interval(EVERY);
    while started.elapsed() < run {
        ticker.tick().await;
        if let Ok(Some(status)) = up.child.try_wait() {
            panic!("emberline up exited with {status} during the soak");
        }
        let (Some(r), Some(f)) = (rss_kib(pid), open_files(pid)) else {
            panic!("cannot read /proc/{pid}");
        };
        let minute = started.elapsed().as_secs_f64() / 60.0;
        let text = scrape(&client, ops).await.unwrap_or_default();
        let Some((allocated, resident, caches)) = figures(&text) else {
            panic!("no heap or cache figures at http://{ops}/metrics");
        };
        eprintln!(
            "soak sample: {minute:.2} min rss {r} KiB open files {f} heap held {allocated:.0} KiB \
             kept {resident:.0} KiB store caches {caches:.0} KiB"
        );
        at.push(minute);
        rss.push(r);
        files.push(f);
        held.push(allocated);
        kept.push(resident);
        cached.push(caches);
    }
    // Still working at the end: every device has history.
    let end = tokio::time::timeout(PATIENCE, answers(up.grpc))
        .await
        .expect("the gateway answers at the end");
    assert_eq!(end.devices.len() as u64, devices, "{:?}", end.devices);
    let readings = end.points.len();
    up.interrupt();

    let warm = at.len() / 3;
    assert!(
        at.len() - warm >= 3,
        "too few samples after warm-up: {}",
        at.len()
    );
    let rss_slope = slope(&at[warm..], &rss[warm..]);
    let files_slope = slope(&at[warm..], &files[warm..]);
    let held_slope = slope(&at[warm..], &held[warm..]);
    let kept_slope = slope(&at[warm..], &kept[warm..]);
    let cache_slope = slope(&at[warm..], &cached[warm..]);
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    eprintln!(
        "MEASURED: soak {minutes} min, {devices} devices at {speedup}x, {readings} history points: \
         RSS slope after warm-up {rss_slope:.1} KiB/min (limit {MAX_RSS_KIB_PER_MIN}), \
         from {:.0} to {:.0} KiB, peak {:.0} KiB",
        rss[warm],
        rss[rss.len() - 1],
        max(&rss)
    );
    eprintln!(
        "MEASURED: soak heap held slope after warm-up {held_slope:.1} KiB/min (limit \
         {MAX_RSS_KIB_PER_MIN}), from {:.0} to {:.0} KiB; allocator resident slope \
         {kept_slope:.1} KiB/min, from {:.0} to {:.0} KiB; store caches slope {cache_slope:.1} \
         KiB/min, from {:.0} to {:.0} KiB",
        held[warm],
        held[held.len() - 1],
        kept[warm],
        kept[kept.len() - 1],
        cached[warm],
        cached[cached.len() - 1]
    );
    eprintln!(
        "MEASURED: soak open files slope after warm-up {files_slope:.3}/min (limit {MAX_FILES_PER_MIN}), \
         from {} to {}, peak {}",
        files[warm],
        files[files.len() - 1],
        max(&files)
    );
    assert!(
        rss_slope <= MAX_RSS_KIB_PER_MIN,
        "resident memory grows {rss_slope:.1} KiB/min after warm-up"
    );
    assert!(
        held_slope <= MAX_RSS_KIB_PER_MIN,
        "the heap the process holds grows {held_slope:.1} KiB/min after warm-up"
    );
    assert!(
        files_slope <= MAX_FILES_PER_MIN,
        "open files grow {files_slope:.3}/min after warm-up"
    );
}
