//! The notifier: enqueue from `alerts`, deliver from the outbox.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use emberline_common::clock::now_ms;
use emberline_log::{EventLog, topics};
use emberline_schemas::events::{AlertCleared, AlertRaised};
use emberline_schemas::{CodecError, EventCodec, EventKind};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::channel::deliver;
use crate::config::{ChannelConfig, ChannelKind, NotifyConfig};
use crate::error::NotifyError;
use crate::notice::Notice;
use crate::outbox::Outbox;

/// Checks the channels before anything is sent: unique names, URLs and addresses that parse.
fn validate(config: &NotifyConfig) -> Result<(), NotifyError> {
    let mut names = HashSet::new();
    for c in &config.channels {
        if !names.insert(c.name.as_str()) {
            return Err(NotifyError::Config {
                channel: c.name.clone(),
                reason: "every channel needs a name of its own".into(),
            });
        }
        validate_channel(c)?;
    }
    Ok(())
}

/// Checks one channel: a name, and URLs and addresses that parse. The reason names the
/// field at fault first (`url: …`), for forms that show it next to the field.
pub fn validate_channel(c: &ChannelConfig) -> Result<(), NotifyError> {
    let bad = |reason: String| NotifyError::Config {
        channel: c.name.clone(),
        reason,
    };
    if c.name.trim().is_empty() {
        return Err(bad("name: every channel needs a name".into()));
    }
    match &c.kind {
        ChannelKind::Webhook { url, .. } | ChannelKind::Ntfy { url, .. } => {
            let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("url: {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad(format!("url: {url:?} is not http(s)")));
            }
        }
        ChannelKind::Sms {
            api_url,
            account_sid,
            auth_token,
            from,
            to,
        } => {
            let parsed = reqwest::Url::parse(api_url)
                .map_err(|e| bad(format!("api_url: {api_url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad(format!("api_url: {api_url:?} is not http(s)")));
            }
            if account_sid.is_empty() || !account_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad("account_sid: letters and digits (AC…)".into()));
            }
            let phone = |n: &str| {
                n.strip_prefix('+').is_some_and(|d| {
                    (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit())
                })
            };
            if !phone(to) {
                return Err(bad(format!(
                    "to: {to:?} is not a phone number in international form (+15005550006)"
                )));
            }
            if from.is_empty() {
                return Err(bad("from: the sending number or messaging service".into()));
            }
            if auth_token.is_empty() {
                return Err(bad("secret: the account's auth token".into()));
            }
        }
        ChannelKind::Email {
            smtp_url, from, to, ..
        } => {
            if !(smtp_url.starts_with("smtp://") || smtp_url.starts_with("smtps://")) {
                return Err(bad(format!(
                    "smtp_url: {smtp_url:?} is not smtp:// or smtps://"
                )));
            }
            if to.is_empty() {
                return Err(bad("to: an email channel needs at least one address".into()));
            }
            from.parse::<lettre::message::Mailbox>()
                .map_err(|e| bad(format!("from: address {from:?}: {e}")))?;
            for a in to {
                a.parse::<lettre::message::Mailbox>()
                    .map_err(|e| bad(format!("to: address {a:?}: {e}")))?;
            }
        }
    }
    Ok(())
}

/// Sends a test notification through `channel` now (no outbox, no retry): what a user's
/// "test" button does. The error says what the channel's server answered.
pub async fn send_test(channel: &ChannelConfig, timeout: Duration) -> Result<(), NotifyError> {
    validate_channel(channel)?;
    let http = emberline_common::http::client(timeout).map_err(|e| NotifyError::Config {
        channel: channel.name.clone(),
        reason: e.to_string(),
    })?;
    let now = now_ms();
    let notice = Notice {
        delivery_id: format!("test/{}/{now}", channel.name),
        alert_id: "test".into(),
        kind: "test".into(),
        device_id: "emberline".into(),
        probe_id: None,
        raised: true,
        repeat: 0,
        time_ms: now,
        value: None,
        threshold: None,
        message: format!(
            "Test notification from Emberline to channel {:?}: it works.",
            channel.name
        ),
    };
    deliver(channel, &notice, &http, timeout)
        .await
        .map_err(|e| NotifyError::Config {
            channel: channel.name.clone(),
            reason: format!("the test notification failed: {}", e.0),
        })
}

/// Alert routes: a rule id to the channels (by name) its alerts go to, in escalation order.
pub type Routes = std::collections::HashMap<String, Vec<String>>;

/// The names of the channels among `channels` that `notice` goes to. Without a route for
/// its rule: every channel that wants the device. With one: a raise goes to the route's
/// channel for its repeat (the first raise to the first, each raise again for want of an
/// acknowledgement to the next, the last keeping the rest), and a clear to every channel
/// of the route; a routed channel that no longer exists is left out.
pub fn targets(notice: &Notice, channels: &[ChannelConfig], routes: &Routes) -> Vec<String> {
    let rule = notice
        .alert_id
        .rsplit_once('#')
        .map_or(notice.alert_id.as_str(), |(rule, _)| rule);
    let wanted = |name: &str| {
        channels
            .iter()
            .any(|c| c.name == name && c.wants(&notice.device_id))
    };
    match routes.get(rule).filter(|r| !r.is_empty()) {
        None => channels
            .iter()
            .filter(|c| c.wants(&notice.device_id))
            .map(|c| c.name.clone())
            .collect(),
        Some(route) if notice.raised => {
            let level = usize::try_from(notice.repeat.max(0))
                .unwrap_or(usize::MAX)
                .min(route.len() - 1);
            route[level..=level]
                .iter()
                .filter(|n| wanted(n))
                .cloned()
                .collect()
        }
        Some(route) => route.iter().filter(|n| wanted(n)).cloned().collect(),
    }
}

/// The channels alerts go to: those of the configuration file, fixed, and those set up
/// while running (the web UI's), which may change at any time; and the rules' routes.
#[derive(Clone)]
struct Channels {
    file: Arc<Vec<ChannelConfig>>,
    added: watch::Receiver<Arc<Vec<ChannelConfig>>>,
    routes: watch::Receiver<Arc<Routes>>,
}

impl Channels {
    /// Every channel now.
    fn now(&self) -> Vec<ChannelConfig> {
        let added = self.added.borrow().clone();
        self.file.iter().chain(added.iter()).cloned().collect()
    }
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
    let (_fixed, none) = watch::channel(Arc::new(Vec::new()));
    run_notifier_with(log, codec, config, none, outbox, shutdown).await
}

/// [`run_notifier`], with channels `added` besides the configuration's, which may change
/// while it runs: an alert goes to the channels there are when it is read, and an entry
/// waiting for a channel that was removed waits until it returns. Added channels with a
/// name of the configuration's, or that do not validate, are left out (with an error line);
/// the writer of the set is expected to have refused them.
pub async fn run_notifier_with(
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    config: NotifyConfig,
    added: watch::Receiver<Arc<Vec<ChannelConfig>>>,
    outbox: Outbox,
    shutdown: CancellationToken,
) -> Result<(), NotifyError> {
    let (_fixed, none) = watch::channel(Arc::new(Routes::new()));
    run_notifier_routed(log, codec, config, added, none, outbox, shutdown).await
}

/// [`run_notifier_with`], routing the alerts of rules that have a route in `routes` (see
/// [`targets`]), which may change while it runs.
pub async fn run_notifier_routed(
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    config: NotifyConfig,
    added: watch::Receiver<Arc<Vec<ChannelConfig>>>,
    routes: watch::Receiver<Arc<Routes>>,
    outbox: Outbox,
    shutdown: CancellationToken,
) -> Result<(), NotifyError> {
    validate(&config)?;
    let channels = Channels {
        file: Arc::new(config.channels.clone()),
        added: checked(&config, added, &shutdown),
        routes,
    };
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
            channels: channels.clone(),
            outbox: outbox.clone(),
            partition,
            from: positions.get(&partition).copied().unwrap_or(0),
            wake: wake.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.spawn(enqueue.run());
    }
    tasks.spawn(deliver_loop(
        config,
        channels,
        outbox,
        wake,
        shutdown.clone(),
    ));
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
    channels: Channels,
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
            let channels = self.channels.now();
            let routes = self.channels.routes.borrow().clone();
            for record in &records {
                let notice = match self.notice(&record.value).await {
                    Ok(Some(n)) => n,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(partition = self.partition, offset = record.offset, error = %e, "an alert record could not be read; it is not notified");
                        continue;
                    }
                };
                for channel in targets(&notice, &channels, &routes) {
                    entries.push((channel, notice.clone()));
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
    channels: Channels,
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
        let channels = channels.now();
        for entry in due {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let Some(channel) = channels.iter().find(|c| c.name == entry.channel) else {
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

/// `added` without the channels that clash with the configuration's or do not validate.
fn checked(
    config: &NotifyConfig,
    mut added: watch::Receiver<Arc<Vec<ChannelConfig>>>,
    shutdown: &CancellationToken,
) -> watch::Receiver<Arc<Vec<ChannelConfig>>> {
    let taken: HashSet<String> = config.channels.iter().map(|c| c.name.clone()).collect();
    let keep = move |set: &[ChannelConfig]| -> Arc<Vec<ChannelConfig>> {
        let mut names = HashSet::new();
        Arc::new(
            set.iter()
                .filter(|c| {
                    let ok = !taken.contains(&c.name)
                        && names.insert(c.name.clone())
                        && validate_channel(c).is_ok();
                    if !ok {
                        tracing::error!(channel = %c.name, "a channel set up while running clashes with another or does not validate; it is left out");
                    }
                    ok
                })
                .cloned()
                .collect(),
        )
    };
    let (tx, rx) = watch::channel(keep(&added.borrow_and_update()));
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = added.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let set = keep(&added.borrow_and_update());
                    tracing::info!(channels = set.len(), "notification channels changed");
                    tx.send_replace(set);
                }
                () = shutdown.cancelled() => return,
            }
        }
    });
    rx
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelKind, WebhookFormat};

    fn channel(name: &str, tenant: &str) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            user: None,
            devices: Vec::new(),
            tenant: tenant.into(),
            kind: ChannelKind::Webhook {
                url: format!("http://127.0.0.1:9/{name}"),
                secret: None,
                format: WebhookFormat::Json,
            },
        }
    }

    fn notice(alert_id: &str, raised: bool, repeat: i32) -> Notice {
        Notice {
            delivery_id: format!("{alert_id}/{repeat}"),
            alert_id: alert_id.into(),
            kind: "above".into(),
            device_id: "sim-1".into(),
            probe_id: Some("pit".into()),
            raised,
            repeat,
            time_ms: 0,
            value: Some(1.0),
            threshold: Some(0.0),
            message: "hot".into(),
        }
    }

    #[test]
    fn an_unrouted_alert_goes_to_every_channel_of_its_tenant() {
        let channels = [channel("phone", "default"), channel("b/pager", "b")];
        let to = targets(&notice("r1#1", true, 0), &channels, &Routes::new());
        assert_eq!(to, ["phone"]);
    }

    #[test]
    fn a_routed_alert_escalates_one_channel_per_raise_and_clears_on_all() {
        let channels = [
            channel("phone", "default"),
            channel("pager", "default"),
            channel("other", "default"),
        ];
        let routes = Routes::from([("r1".to_owned(), vec!["phone".into(), "pager".into()])]);
        let raise = |repeat| targets(&notice("r1#3", true, repeat), &channels, &routes);
        assert_eq!(
            raise(0),
            ["phone"],
            "the first raise: the first channel only"
        );
        assert_eq!(raise(1), ["pager"], "unacknowledged: the next");
        assert_eq!(raise(5), ["pager"], "the last keeps the repeats");
        assert_eq!(
            targets(&notice("r1#3", false, 0), &channels, &routes),
            ["phone", "pager"]
        );
        assert_eq!(
            targets(&notice("r2#1", true, 0), &channels, &routes),
            ["phone", "pager", "other"],
            "another rule is not routed"
        );
    }

    #[test]
    fn a_routed_channel_that_is_gone_or_of_another_tenant_is_left_out() {
        let channels = [channel("phone", "default"), channel("b/pager", "b")];
        let routes = Routes::from([("r1".to_owned(), vec!["gone".into(), "b/pager".into()])]);
        assert!(targets(&notice("r1#1", true, 0), &channels, &routes).is_empty());
        assert!(targets(&notice("r1#1", true, 1), &channels, &routes).is_empty());
    }
}
