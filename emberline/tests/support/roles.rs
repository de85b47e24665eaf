//! Running single roles of the real binary as separate processes, each with its own data
//! directory and operations endpoint, and waiting for them as an orchestrator would
//! (`GET /readyz`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{PATIENCE, free_port};

/// The start of a configuration for roles run apart on a Kafka-protocol broker: the log
/// with `partitions` partitions and topics named with `prefix`, the registry at `registry`
/// and one processor worker ticking every `tick_interval_s`. Callers append their sections.
pub fn kafka_roles_config(
    partitions: u32,
    bootstrap: &str,
    prefix: &str,
    registry: impl std::fmt::Display,
    tick_interval_s: u32,
) -> String {
    format!(
        r#"
[log]
backend = "kafka"
partitions = {partitions}

[log.kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "{prefix}"
group_session_timeout_ms = 6000

[registry]
url = "http://{registry}"

[processor]
workers = 1
tick_interval_s = {tick_interval_s}
"#
    )
}

/// Every record of `partition` of `topic` from the start up to `end` (records appended
/// meanwhile are left out).
pub async fn read_until(
    log: &dyn emberline_log::EventLog,
    topic: &str,
    partition: u32,
    end: u64,
) -> Vec<emberline_log::Record> {
    let mut reader = log.reader(topic, partition, 0).await.expect("reader");
    let mut out = Vec::new();
    while reader.position() < end {
        out.extend(
            reader
                .next_batch(4_096, PATIENCE)
                .await
                .expect("read")
                .into_iter()
                .filter(|r| r.offset < end),
        );
    }
    out
}

/// One role running as its own OS process.
pub struct Role {
    pub name: String,
    pub child: Child,
    pub ops: SocketAddr,
    pub data_dir: PathBuf,
    /// Every line the process has logged.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Role {
    /// Starts `emberline --config <config> --data-dir <data_dir> <args…>` with its ops
    /// endpoint on a free port and `env` added.
    pub fn start(
        name: &str,
        config: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let ops = free_port();
        std::fs::create_dir_all(data_dir).expect("data dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_emberline"))
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("EMBERLINE__OPS__ADDR", ops.to_string())
            // Unsigned calls on loopback; access checks have their own tests.
            .env("EMBERLINE__AUTH__MODE", "none")
            .env(
                "RUST_LOG",
                "warn,emberline=info,emberline_processors=info,emberline_gateway=info",
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tag, kept) = (name.to_owned(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if let Ok(mut l) = kept.lock() {
                    l.push(line);
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            ops,
            data_dir: data_dir.to_owned(),
            lines,
        }
    }

    /// Starts the registry role, serving on `addr`.
    pub fn registry(config: &Path, data_dir: &Path, addr: SocketAddr) -> Self {
        Self::start(
            "registry",
            config,
            data_dir,
            &["registry", "--addr", &addr.to_string()],
            &[],
        )
    }

    /// Starts a gateway role answering gRPC on `grpc` (its web UI on a free port).
    pub fn gateway(name: &str, config: &Path, data_dir: &Path, grpc: SocketAddr) -> Self {
        Self::start(
            name,
            config,
            data_dir,
            &["gateway"],
            &[
                ("EMBERLINE__GATEWAY__GRPC_ADDR", grpc.to_string()),
                // Port 0: the web UI is not what these tests use, and a port picked free
                // beforehand can be taken by another process before the gateway binds it.
                ("EMBERLINE__GATEWAY__WEB_ADDR", "127.0.0.1:0".to_owned()),
            ],
        )
    }

    /// Waits until `GET /readyz` answers 200 (panics if the process exits first).
    pub async fn ready(&mut self) {
        emberline_common::http::install_crypto_provider();
        let url = format!("http://{}/readyz", self.ops);
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status} before it was ready", self.name);
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never became ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resident memory of the process, KiB (Linux), for reports.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// `kill -9`.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Ctrl-C, and waits for a clean exit.
    pub fn interrupt(&mut self) {
        super::interrupt(&mut self.child, &self.name);
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
