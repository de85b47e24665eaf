//! Helpers shared by the end-to-end tests: running the real binary and waiting for it.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::{GetHistoryRequest, HistoryPoint};
use tonic::transport::Channel;

pub mod answers;
pub mod mosquitto;
pub mod push;
pub mod roles;
pub mod two_tenants;

/// Generous bound for anything that should take a second or two; only reached on failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Checks every `every` until `check` gives `Ok`, for at most `patience`; then fails with
/// `what` and the last reason `check` gave. For waiting on state another process reaches.
pub async fn eventually<T, F, Fut>(
    what: &str,
    patience: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(reason) => assert!(tokio::time::Instant::now() < deadline, "{what}: {reason}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The history of `device`'s `probe` from `from_ms` up to `to_ms`, unlimited, as the
/// gateway behind `readings` answers it.
pub async fn history(
    readings: &mut ReadingServiceClient<Channel>,
    device: &str,
    probe: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<HistoryPoint>, tonic::Status> {
    let answer = readings
        .get_history(GetHistoryRequest {
            device_id: device.into(),
            probe_id: probe.into(),
            from_ms,
            to_ms,
            limit: 0,
            step_ms: 0,
        })
        .await?;
    Ok(answer.into_inner().points)
}

/// `message` as a request carrying `token` as its bearer.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// A loopback port that is free now.
///
/// Picked below the kernel's ephemeral range (32768–60999 by default), so that ports the
/// system hands out on its own — outgoing connections, other tests' `:0` listeners — never
/// take it between this call and the process that binds it. Each test process starts at its
/// own place in the range.
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FROM: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port below the ephemeral range");
        let port = (FROM + (start + n) % SPAN) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("addr");
        }
    }
}

pub struct Up {
    pub child: Child,
    pub grpc: SocketAddr,
    pub web: SocketAddr,
    /// Becomes true when the process logs that gRPC is listening.
    pub ready: tokio::sync::watch::Receiver<bool>,
    /// Every line the process has logged.
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The log line `emberline up` writes once its gRPC port accepts connections.
pub const LISTENING: &str = "gRPC (and grpc-web) listening";

impl Up {
    pub fn start(data_dir: &Path, grpc: SocketAddr) -> Self {
        Self::start_with(data_dir, grpc, &[])
    }

    /// Starts `emberline up` with extra `EMBERLINE__…` configuration.
    pub fn start_with(data_dir: &Path, grpc: SocketAddr, env: &[(&str, &str)]) -> Self {
        Self::start_full(data_dir, grpc, free_port(), env)
    }

    /// Starts `emberline up` with the web UI on `web`.
    pub fn start_full(
        data_dir: &Path,
        grpc: SocketAddr,
        web: SocketAddr,
        env: &[(&str, &str)],
    ) -> Self {
        let registry = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_emberline"))
            .args(["--data-dir", &data_dir.display().to_string(), "up"])
            // Tests start their own cooks unless they ask for the simulated one.
            .env("EMBERLINE__SIMULATOR__START_COOK", "false")
            .env("EMBERLINE__PROCESSOR__TICK_INTERVAL_S", "1")
            .env("RUST_LOG", "warn,emberline_gateway=info")
            // Tests of other things call the API unsigned, on loopback only; the access
            // tests (`auth.rs`) ask for `password`.
            .env("EMBERLINE__AUTH__MODE", "none")
            .envs(env.iter().copied())
            .args([
                "--grpc-addr",
                &grpc.to_string(),
                "--registry-addr",
                &registry.to_string(),
                "--web-addr",
                &web.to_string(),
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn emberline up");
        // Forward the child's log (for failure reports) and watch for the listening line.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, ready) = tokio::sync::watch::channel(false);
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(LISTENING) {
                    let _ = tx.send(true);
                }
                eprintln!("[emberline up] {line}");
                if let Ok(mut l) = kept.lock() {
                    l.push(line);
                }
            }
        });
        Self {
            child,
            grpc,
            web,
            ready,
            lines,
        }
    }

    /// Connects once the process has said its gRPC port is listening.
    pub async fn channel(&self) -> Channel {
        let mut ready = self.ready.clone();
        tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
            .await
            .expect("emberline up did not start listening in time")
            .expect("emberline up exited before listening");
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("url")
            .connect()
            .await
            .expect("connect to a listening gateway")
    }

    /// Waits, as a client would, until the gateway knows `device` (its source's registration
    /// has been projected): commands naming a device are refused before that.
    pub async fn wait_for_device(&self, device: &str) {
        use emberline_proto::v1::ListDevicesRequest;
        use emberline_proto::v1::device_service_client::DeviceServiceClient;
        let mut devices = DeviceServiceClient::new(self.channel().await);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let known = devices
                .list_devices(ListDevicesRequest::default())
                .await
                .expect("list devices")
                .into_inner()
                .devices
                .iter()
                .any(|d| d.device_id == device);
            if known {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{device} was never registered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn interrupt(mut self) {
        interrupt(&mut self.child, "emberline up");
    }

    /// Ctrl-C, and once it has exited, `check` on every line it logged.
    pub fn interrupt_keeping_log(mut self, check: impl FnOnce(&[String])) {
        interrupt(&mut self.child, "emberline up");
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        check(&lines);
    }
}

/// Ctrl-C to `child`, and waits for it to exit cleanly.
pub fn interrupt(child: &mut Child, name: &str) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "{name} exited with {exit} after Ctrl-C");
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
