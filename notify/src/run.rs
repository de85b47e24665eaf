//! The notifier: enqueue from `alerts`, deliver from the outbox.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use emberline_common::clock::now_ms;
use emberline_log::{EventLog, topics};
use emberline_schemas::events::{AlertCleared, AlertRaised};
use emberline_schemas::{CodecError, EventCodec, EventKind};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::channel::deliver;
use crate::config::{ChannelKind, NotifyConfig};
use crate::error::NotifyError;
use crate::notice::Notice;
use crate::outbox::Outbox;

/// Checks the channels before anything is sent: unique names, URLs and addresses that parse.
fn validate(config: &NotifyConfig) -> Result<(), NotifyError> {
    let mut names = HashSet::new();
    for c in &config.channels {
        let bad = |reason: String| NotifyError::Config {
            channel: c.name.clone(),
            reason,
        };
        if c.name.is_empty() || !names.insert(c.name.as_str()) {
            return Err(bad("every channel needs a name of its own".into()));
        }
        match &c.kind {
            ChannelKind::Webhook { url, .. } | ChannelKind::Ntfy { url, .. } => {
                let parsed =
                    reqwest::Url::parse(url).map_err(|e| bad(format!("url {url:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad(format!("url {url:?} is not http(s)")));
                }
            }
            ChannelKind::Email {
                smtp_url, from, to, ..
            } => {
                if !(smtp_url.starts_with("smtp://") || smtp_url.starts_with("smtps://")) {
                    return Err(bad(format!(
                        "smtp_url {smtp_url:?} is not smtp:// or smtps://"
                    )));
                }
                if to.is_empty() {
                    return Err(bad(
                        "an email channel needs at least one address in `to`".into()
                    ));
                }
                for a in std::iter::once(from).chain(to) {
                    a.parse::<lettre::message::Mailbox>()
                        .map_err(|e| bad(format!("address {a:?}: {e}")))?;
                }
            }
        }
    }
    Ok(())
}

/// Runs until shut down: every alert record the channels want goes into the outbox, and
/// the outbox is delivered with retries.
pub async fn run_notifier(
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    config: NotifyConfig,
    outbox: Outbox,
    shutdown: CancellationToken,
) -> Result<(), NotifyError> {
    validate(&config)?;
    let config = Arc::new(config);
    let wake = Arc::new(Notify::new());
    let partitions = log.partitions(topics::ALERTS).await?;
    let positions = outbox.positions()?;
    let mut tasks = JoinSet::new();
    for partition in 0..partitions {
        let enqueue = Enqueue {
            log: log.clone(),
            codec: codec.clone(),
            config: config.clone(),
            outbox: outbox.clone(),
            partition,
            from: positions.get(&partition).copied().unwrap_or(0),
            wake: wake.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.spawn(enqueue.run());
    }
    tasks.spawn(deliver_loop(config, outbox, wake, shutdown.clone()));
    tracing::info!(partitions, ?positions, "notifier starting");
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shutdown.cancel();
                result = result.and(Err(e));
            }
            Err(e) => {
                shutdown.cancel();
                result = result.and(Err(NotifyError::Outbox(
                    format!("a notifier task failed: {e}").into(),
                )));
            }
        }
    }
    result
}

/// Reads one partition of `alerts` into the outbox.
struct Enqueue {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    config: Arc<NotifyConfig>,
    outbox: Outbox,
    partition: u32,
    from: u64,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Enqueue {
    async fn run(self) -> Result<(), NotifyError> {
        let mut reader = self
            .log
            .reader(topics::ALERTS, self.partition, self.from)
            .await?;
        loop {
            let records = tokio::select! {
                r = reader.next_batch(256, Duration::from_secs(5)) => r?,
                () = self.shutdown.cancelled() => return Ok(()),
            };
            let Some(last) = records.last().map(|r| r.offset) else {
                continue;
            };
            let mut entries = Vec::new();
            for record in &records {
                let notice = match self.notice(&record.value).await {
                    Ok(Some(n)) => n,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(partition = self.partition, offset = record.offset, error = %e, "an alert record could not be read; it is not notified");
                        continue;
                    }
                };
                for channel in self
                    .config
                    .channels
                    .iter()
                    .filter(|c| c.wants(&notice.device_id))
                {
                    entries.push((channel.name.clone(), notice.clone()));
                }
            }
            let added = self
                .outbox
                .enqueue(self.partition, last + 1, &entries, now_ms())?;
            if added > 0 {
                self.wake.notify_one();
            }
        }
    }

    async fn notice(&self, bytes: &[u8]) -> Result<Option<Notice>, CodecError> {
        let kind = self.codec.kind_of_learning(bytes).await?;
        Ok(match kind {
            Some(EventKind::AlertRaised) => Some(Notice::raised(
                &self.codec.decode::<AlertRaised>(bytes).await?,
            )),
            Some(EventKind::AlertCleared) if self.config.notify_cleared => Some(Notice::cleared(
                &self.codec.decode::<AlertCleared>(bytes).await?,
            )),
            _ => None,
        })
    }
}

/// Attempts due entries; sleeps until the next is due or something is enqueued.
async fn deliver_loop(
    config: Arc<NotifyConfig>,
    outbox: Outbox,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<(), NotifyError> {
    let timeout = Duration::from_millis(config.timeout_ms.max(1));
    let http = emberline_common::http::client(timeout).map_err(|e| NotifyError::Config {
        channel: "*".into(),
        reason: e.to_string(),
    })?;
    loop {
        let woken = wake.notified();
        let (due, next) = outbox.due(now_ms())?;
        for entry in due {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let Some(channel) = config.channels.iter().find(|c| c.name == entry.channel) else {
                // A channel removed from the configuration: its entries wait for it to return.
                continue;
            };
            // An attempt under way is finished and recorded even when shutdown comes (it is
            // bounded by the timeout): abandoning it after the receiver took it would send it
            // again on restart.
            let outcome = deliver(channel, &entry.notice, &http, timeout).await;
            let now = now_ms();
            match outcome {
                Ok(()) => {
                    delivered(channel.kind.name(), "delivered");
                    tracing::info!(channel = %channel.name, delivery = %entry.notice.delivery_id, attempts = entry.attempts + 1, "notification delivered");
                    outbox.record(&entry, now, Ok(()))?;
                }
                Err(e) => {
                    delivered(channel.kind.name(), "failed");
                    let delay = retry_delay(&config, entry.attempts);
                    tracing::warn!(channel = %channel.name, delivery = %entry.notice.delivery_id, attempt = entry.attempts + 1, error = %e, retry_in_ms = delay, "notification failed; will retry");
                    outbox.record(&entry, now, Err((e.0, now + delay as i64)))?;
                }
            }
        }
        let wait = next.map_or(Duration::from_secs(1), |n| {
            Duration::from_millis((n - now_ms()).clamp(0, 1_000) as u64)
        });
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Counts one delivery attempt to a channel of `kind` by its `result`.
fn delivered(kind: &'static str, result: &'static str) {
    metrics::counter!(
        "emberline_notify_deliveries_total",
        "channel_kind" => kind,
        "result" => result
    )
    .increment(1);
}

/// Exponential backoff: the first retry after `retry_initial_ms`, doubling to `retry_max_ms`.
fn retry_delay(config: &NotifyConfig, attempts: u32) -> u64 {
    config
        .retry_initial_ms
        .saturating_mul(1u64 << attempts.min(30))
        .min(config.retry_max_ms)
}
