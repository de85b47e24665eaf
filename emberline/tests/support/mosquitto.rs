//! A Mosquitto broker for tests: Debian's `mosquitto`, started (and killed, and restarted)
//! on a loopback port.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{PATIENCE, free_port};

/// The broker binary, or `None` (skip) when it is not installed — unless
/// `EMBERLINE_REQUIRE_MOSQUITTO=1`, which makes that a failure.
pub fn mosquitto_binary() -> Option<PathBuf> {
    let candidate = std::env::var_os("EMBERLINE_TEST_MOSQUITTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"));
    if candidate.exists() {
        return Some(candidate);
    }
    assert!(
        std::env::var("EMBERLINE_REQUIRE_MOSQUITTO").as_deref() != Ok("1"),
        "mosquitto not found at {} but EMBERLINE_REQUIRE_MOSQUITTO=1",
        candidate.display()
    );
    eprintln!("SKIP: mosquitto not installed (apt-get install mosquitto)");
    None
}

/// A Mosquitto broker on a loopback port, without persistence: a restart forgets every
/// retained message, the hardest case for the connector.
pub struct Broker {
    binary: PathBuf,
    pub dir: tempfile::TempDir,
    /// The anonymous plain-MQTT listener.
    pub port: u16,
    /// More configuration (other listeners).
    extra: String,
    child: Option<Child>,
}

impl Broker {
    pub fn start(binary: PathBuf) -> Self {
        Self::start_with(binary, tempfile::tempdir().expect("tempdir"), String::new())
    }

    /// A broker whose config also holds `extra` (files it names live in `dir`).
    pub fn start_with(binary: PathBuf, dir: tempfile::TempDir, extra: String) -> Self {
        let port = free_port().port();
        let mut broker = Self {
            binary,
            dir,
            port,
            extra,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings true\npersistence false\nlistener {} 127.0.0.1\nallow_anonymous true\n{}",
                self.port, self.extra
            ),
        )
        .expect("write conf");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        // Ready when the port accepts connections.
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
