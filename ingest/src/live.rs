//! Sources whose settings change while Emberline runs (the accounts added in the web UI):
//! [`run_live_sources`] starts, restarts and stops them as the set changes, without a
//! process restart.
//!
//! Nothing is lost or appended twice across a change: a source being replaced is stopped
//! first, and stopping waits until every reading it accepted is in the log; its successor
//! then remembers what it admitted (the [`Remembered`] event times of the same name), so
//! the first poll's answer — the cloud's latest readings, which the old run may already
//! have appended — admits only what is new. A source that fails (settings its cloud
//! refuses at start) is reported in its status and tried again when its settings change.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cloud::CloudPoller;
use crate::cloud::fireboard::Fireboard;
use crate::cloud::meater::Meater;
use crate::cloud::thermoworks::Thermoworks;
use crate::metrics::status;
use crate::mqtt::MqttSource;
use crate::validate::Remembered;
use crate::{EventSink, IngestError, Source, SourceConfig, run_source};

struct Running {
    config: SourceConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn name_of(config: &SourceConfig) -> String {
    match config {
        SourceConfig::Thermoworks(c) => c.name.clone(),
        SourceConfig::Meater(c) => c.name.clone(),
        SourceConfig::Fireboard(c) => c.name.clone(),
        SourceConfig::Mqtt(c) => c.name.clone(),
        SourceConfig::HttpPush(c) => format!("http_push/{}", c.listen),
        SourceConfig::Simulator(_) => "simulator".to_owned(),
    }
}

/// The source for `config`, remembering its admitted readings in `remembered`.
fn build(config: &SourceConfig, remembered: Remembered) -> Result<Box<dyn Source>, IngestError> {
    let refused = |e: crate::cloud::CloudError| IngestError::Config {
        source_name: name_of(config),
        reason: e.to_string(),
    };
    Ok(match config {
        SourceConfig::Thermoworks(c) => Box::new(
            CloudPoller::new(
                Thermoworks::new(c.clone()).map_err(refused)?,
                c.retention_days,
            )
            .remembering(remembered),
        ),
        SourceConfig::Meater(c) => Box::new(
            CloudPoller::new(Meater::new(c.clone()).map_err(refused)?, c.retention_days)
                .remembering(remembered),
        ),
        SourceConfig::Fireboard(c) => Box::new(
            CloudPoller::new(
                Fireboard::new(c.clone()).map_err(refused)?,
                c.retention_days,
            )
            .remembering(remembered),
        ),
        SourceConfig::Mqtt(c) => Box::new(MqttSource::new(c.clone()).remembering(remembered)),
        other => other.build(emberline_common::clock::now_ms())?,
    })
}

/// Runs the sources `configs` holds, following its changes, until `shutdown`; then stops
/// them all, each after its accepted readings are appended. Each writes through `sink`
/// for its tenant; the sink's own shutdown, not a source's stop, ends its retries, so a
/// source stopped for new settings still appends everything it accepted.
pub async fn run_live_sources(
    mut configs: watch::Receiver<Arc<Vec<SourceConfig>>>,
    sink: EventSink,
    shutdown: CancellationToken,
) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut remembered: HashMap<String, Remembered> = HashMap::new();
    loop {
        let wanted: HashMap<String, SourceConfig> = configs
            .borrow_and_update()
            .iter()
            .map(|c| (name_of(c), c.clone()))
            .collect();
        let changed: Vec<String> = running
            .iter()
            .filter(|(name, r)| wanted.get(*name) != Some(&r.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in changed {
            if let Some(r) = running.remove(&name) {
                stop(&name, r).await;
            }
        }
        for (name, config) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let memory = remembered.entry(name.clone()).or_default().clone();
            match build(&config, memory) {
                Ok(source) => {
                    let stop = shutdown.child_token();
                    let sink = sink.clone().for_tenant(config.tenant());
                    let (n, s) = (name.clone(), stop.clone());
                    status::running(&name, true);
                    let task = tokio::spawn(async move {
                        if let Err(e) = run_source(source, sink, s).await {
                            status::failed(&n, &e.to_string());
                        }
                        status::running(&n, false);
                    });
                    running.insert(name, Running { config, stop, task });
                }
                Err(e) => {
                    tracing::error!(source = %name, error = %e, "a source set up while running cannot start; it waits for new settings");
                    status::failed(&name, &e.to_string());
                    status::running(&name, false);
                    // Remembered as running, so the same settings are not tried again.
                    running.insert(
                        name,
                        Running {
                            config,
                            stop: CancellationToken::new(),
                            task: tokio::spawn(async {}),
                        },
                    );
                }
            }
        }
        tokio::select! {
            changed = configs.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
    }
    for (name, r) in running.drain() {
        stop(&name, r).await;
    }
}

async fn stop(name: &str, r: Running) {
    r.stop.cancel();
    if let Err(e) = r.task.await {
        tracing::error!(source = %name, error = %e, "a source ended abnormally");
    }
    tracing::info!(source = %name, "source stopped for new settings");
}
