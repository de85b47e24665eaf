//! `emberline backup` while `emberline up` runs, and `emberline restore`: the restored
//! directory answers every query as a replay of the restored log does, and its log holds
//! at least every reading its projections cover.
#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::{AlertRule, ListAlertsRequest, SetAlertRuleRequest};
use support::answers::{answers, logged_readings, projected};
use support::roles::Role;
use support::{PATIENCE, Up, eventually, free_port};

const CONFIG: &str = r#"
[[sources]]
kind = "simulator"
devices = 2
probes = 3
interval_ms = 1000
speedup = 20
cook_target_c = 93.0

[processor]
tick_interval_s = 1
"#;

fn emberline(config: &Path, data_dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_emberline"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run emberline");
    eprintln!(
        "[emberline {}] {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn gateway(config: &Path, dir: &Path, name: &str) -> (Role, std::net::SocketAddr) {
    let grpc = free_port();
    (Role::gateway(name, config, dir, grpc), grpc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_up_runs_restores_to_answers_equal_to_a_replay_of_its_log() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("emberline.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let quiet = root.path().join("quiet.toml");
    std::fs::write(&quiet, "sources = []\n").expect("config");
    let live = root.path().join("live");
    let ops = free_port();
    let ops_env = [("EMBERLINE__OPS__ADDR", ops.to_string())];
    let config_text = config.display().to_string();
    let up = Up::start_with(
        &live,
        free_port(),
        &[
            ("EMBERLINE_CONFIG", config_text.as_str()),
            ("EMBERLINE__OPS__ADDR", &ops.to_string()),
        ],
    );
    up.wait_for_device("sim-2").await;
    // A rule that fires within seconds, so alerts are part of what is backed up. Not at
    // once: an alert raised by the command itself takes the pit reading the live merge had
    // folded last, and a reading received just before the command may still be on its way
    // (following a live log the merge goes by arrival: processors/src/cook/run.rs), so a
    // replay could raise it with the reading before. Held for 5 s, it is raised on an input
    // by then, with every earlier reading folded in either order.
    let mut alerts = AlertServiceClient::new(up.channel().await);
    alerts
        .set_alert_rule(SetAlertRuleRequest {
            rule: Some(AlertRule {
                device_id: "sim-1".into(),
                probe_id: Some("pit".into()),
                kind: "above".into(),
                threshold: Some(50.0),
                for_s: 5.0,
                ..Default::default()
            }),
        })
        .await
        .expect("set rule");
    eventually(
        "an alert and a few hundred readings",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let mut alerts = alerts.clone();
            async move {
                let n = alerts
                    .list_alerts(ListAlertsRequest::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .alerts
                    .len();
                let history = answers(up.grpc).await.points.len();
                if n > 0 && history > 300 {
                    Ok(())
                } else {
                    Err(format!("{n} alerts, {history} history points"))
                }
            }
        },
    )
    .await;

    // Without the token the endpoint refuses.
    emberline_common::http::install_crypto_provider();
    let refused = reqwest::Client::new()
        .post(format!("http://{ops}/backup"))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 401);

    let backup = root.path().join("emberline.backup");
    let took = Instant::now();
    let out = emberline(
        &config,
        &live,
        &["backup", &backup.display().to_string()],
        &ops_env,
    );
    let took = took.elapsed();
    assert!(out.status.success(), "backup failed");
    let size = std::fs::metadata(&backup).expect("the backup").len();
    eprintln!("MEASURED: backup of a running `up` ({size} bytes) took {took:?}");
    // `up` carries on after the backup: more history arrives.
    let before = answers(up.grpc).await.points.len();
    eventually(
        "more readings after the backup",
        PATIENCE,
        Duration::from_millis(200),
        || async {
            let now = answers(up.grpc).await.points.len();
            if now > before {
                Ok(())
            } else {
                Err(format!("{now} points, {before} before"))
            }
        },
    )
    .await;
    up.interrupt();

    let restored = root.path().join("restored");
    let out = emberline(
        &quiet,
        &restored,
        &["restore", &backup.display().to_string()],
        &[],
    );
    assert!(out.status.success(), "restore failed");
    let again = emberline(
        &quiet,
        &restored,
        &["restore", &backup.display().to_string()],
        &[],
    );
    assert!(
        !again.status.success(),
        "a restore into a non-empty directory succeeded"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The log covers at least what the projections applied, reading by reading.
    let keys = ["probe.readings", "cook/probe.readings"];
    let (applied, points) = projected(&restored, &keys).await;
    let (logged, ends) = logged_readings(&restored).await;
    for key in keys {
        for (p, next) in &applied[key] {
            assert!(
                *next <= ends[p],
                "projections applied {key} partition {p} up to {next}, the restored log ends at {}",
                ends[p]
            );
        }
        assert!(!applied[key].is_empty(), "nothing applied under {key}");
    }
    let missing: Vec<_> = points.iter().filter(|p| !logged.contains_key(*p)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} history points are not in the restored log, e.g. {:?}",
        missing.len(),
        points.len(),
        missing.first()
    );

    // Replay the restored log alone into empty projections, and bring the restored
    // projections up to the same log end.
    let replay = root.path().join("replay");
    std::fs::create_dir_all(&replay).expect("dir");
    std::fs::copy(restored.join("log.redb"), replay.join("log.redb")).expect("copy the log");
    for dir in [&restored, &replay] {
        let out = emberline(&quiet, dir, &["process", "--catch-up"], &[]);
        assert!(out.status.success(), "catch-up in {} failed", dir.display());
    }
    let (mut restored_gateway, restored_grpc) = gateway(&quiet, &restored, "restored-gateway");
    let (mut replay_gateway, replay_grpc) = gateway(&quiet, &replay, "replay-gateway");
    restored_gateway.ready().await;
    replay_gateway.ready().await;
    let from_backup = answers(restored_grpc).await;
    let from_replay = answers(replay_grpc).await;
    assert_eq!(
        from_backup,
        from_replay,
        "{}",
        from_backup.difference(&from_replay)
    );
    // The comparison means something only with every kind of answer in it.
    assert_eq!(from_backup.devices.len(), 2);
    assert!(from_backup.points.len() >= points.len());
    assert!(!from_backup.cooks.is_empty());
    assert!(!from_backup.predictions.is_empty());
    assert!(!from_backup.alerts.is_empty());
    restored_gateway.interrupt();
    replay_gateway.interrupt();
}
