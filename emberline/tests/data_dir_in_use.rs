//! A user's mistake at start-up reads as one: a second process on a data directory that a
//! running one holds says so in at most three lines, naming the directory and what to do,
//! with no backtrace.

mod support;

use std::process::{Command, Stdio};

use support::roles::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_data_directory_says_what_to_do_in_three_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("emberline.toml");
    std::fs::write(&config, "").expect("config");
    let data = dir.path().join("data");
    let grpc = support::free_port().to_string();
    let web = support::free_port().to_string();
    let mut first = Role::start(
        "first",
        &config,
        &data,
        &["gateway", "--grpc-addr", &grpc, "--web-addr", &web],
        &[],
    );
    first.ready().await;

    let second = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "gateway",
            "--grpc-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
        ])
        .env("EMBERLINE__OPS__ADDR", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .expect("run the second gateway");
    first.interrupt();

    assert!(!second.status.success(), "the second gateway started");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() <= 3, "{} lines:\n{text}", lines.len());
    assert!(
        text.contains(&data.display().to_string()),
        "does not name the directory:\n{text}"
    );
    assert!(
        text.contains("in use by another Emberline process"),
        "{text}"
    );
    assert!(
        text.contains("--data-dir"),
        "does not say what to do:\n{text}"
    );
    assert!(
        !text.contains("backtrace") && !text.contains("panicked"),
        "{text}"
    );
}
