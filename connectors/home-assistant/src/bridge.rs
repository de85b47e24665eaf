//! The connector's loop: gateway in, MQTT out, target commands back.
//!
//! It keeps the *desired* retained state of every topic it owns (discovery configs,
//! availability, states) and sends only changes; after any (re)connection to the broker, or
//! when Home Assistant announces itself online, it sends all of it again. Trend updates
//! arrive by subscription; device descriptions (names, battery, targets, removals),
//! predictions and alerts are re-read as soon as their subscriptions say something changed
//! — again, a little later each time, until the re-read shows what was pushed — and so is
//! a device a trend names before it has been described. Everything is also re-read whenever
//! the trend subscription (re)opens. Nothing is re-read on a timer; the only clock is the
//! one that marks probes stale when their readings stop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use emberline_common::clock::now_ms;

use emberline_proto::v1::{
    Device, GetHistoryRequest, GetLatestRequest, ListAlertRulesRequest, ListAlertsRequest,
    ListDevicesRequest, ListPredictionsRequest, Prediction, ProbeState, SetTargetRequest,
    TrendEvent,
};
use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoints;
use crate::config::HomeAssistantConfig;
use crate::discovery::{DeviceShape, Discovery, MAX_TARGET_C, ProbeShape};
use crate::mqtt::{self, MqttEvent};
use crate::throttle::Throttle;
use crate::topics::{Topics, safe_id};
use crate::upstream::{self, Expect, Feed, Upstream};
use crate::{ConnectorError, format, freshness};

/// A probe as the connector last saw it.
#[derive(Clone, Debug, Default)]
struct ProbeView {
    temperature_c: Option<f64>,
    rate_c_per_min: Option<f64>,
    event_time_ms: i64,
    /// When a reading of it last reached Emberline (wall clock, ms).
    received_ms: i64,
    /// Usual gap between its readings, ms (learned).
    interval_ms: Option<f64>,
}

/// A device being bridged.
#[derive(Clone, Debug)]
struct DeviceView {
    device: Device,
    probes: BTreeMap<String, ProbeView>,
    /// Alert kinds with a binary sensor, and whether one of each is active.
    alerts: BTreeMap<String, bool>,
}

/// Most pushed changes waiting to show in a re-read; beyond, they are re-read once only.
const MAX_EXPECTED: usize = 4_096;

/// Alert kinds every device has a binary sensor for: the rules Emberline implies (targets
/// imply target reached, a cook with a pit implies fire out). Users' rules add theirs.
const IMPLIED_ALERT_KINDS: [&str; 2] = ["target_reached", "fire_out"];

/// Runs the connector until `shutdown`. `data_dir` holds its subscription position unless
/// the config names a `state_dir`.
pub async fn run(
    config: HomeAssistantConfig,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), ConnectorError> {
    config.validate()?;
    let Some(mqtt_config) = config.mqtt.clone() else {
        return Err(ConnectorError::Config(
            "home_assistant.mqtt.url is not set: nothing to connect to".into(),
        ));
    };
    let topics = Topics::new(
        &config.discovery_prefix,
        &config.base_topic,
        &mqtt_config.client_id,
    );
    let state_dir = config
        .state_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("home-assistant"));
    let mut checkpoints = Checkpoints::new(state_dir.join(format!(
        "positions-{}.json",
        safe_id(&mqtt_config.client_id)
    )));
    let resume = checkpoints.load();
    let upstream = Upstream::new(
        &config.gateway_url,
        config.token.as_ref(),
        config.gateway_ca_file.as_deref(),
    )?;
    let mut connection = mqtt::start(
        &mqtt_config,
        &topics.bridge_availability(),
        shutdown.clone(),
    )?;
    let mut feed = upstream::subscribe(
        &upstream,
        &config.gateway_url,
        resume.clone(),
        shutdown.clone(),
    );
    let mut changes = upstream::watch_changes(&upstream, &config.gateway_url, shutdown.clone());
    tracing::info!(gateway = %config.gateway_url, broker = %mqtt_config.url, resumed = !resume.is_empty(), "Home Assistant connector starting");

    let mut bridge = Bridge {
        discovery: Discovery::new(&config, topics.clone()),
        throttle: Throttle::new(config.min_state_interval()),
        topics,
        config,
        client: connection.client.clone(),
        upstream,
        connected: false,
        retained: BTreeMap::new(),
        devices: BTreeMap::new(),
        cleared: HashSet::new(),
        positions: resume.into_iter().collect(),
        checkpoints,
        refusal_logged: false,
        expected: Vec::new(),
        read_predictions: HashMap::new(),
        read_active: HashMap::new(),
    };
    if bridge.config.refresh_interval_ms.is_some() {
        tracing::warn!(
            "home_assistant.refresh_interval_ms is no longer used: the gateway pushes device \
             changes, predictions and alerts; remove it from the configuration"
        );
    }
    let mut staleness = tokio::time::interval(STALENESS_CHECK);
    staleness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoint = tokio::time::interval(Duration::from_secs(2));
    checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh_soon: Option<tokio::time::Instant> = None;
    loop {
        let throttle_due = bridge
            .throttle
            .next_due()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = connection.events.recv() => match event {
                Some(event) => bridge.on_mqtt(event, &mut refresh_soon).await,
                None => break,
            },
            item = feed.recv() => match item {
                Some(Feed::Subscribed) => bridge.refresh().await,
                Some(Feed::Update(event)) => {
                    if !bridge.on_update(event) {
                        refresh_now(&mut refresh_soon);
                    }
                }
                Some(Feed::Lost(reason)) => {
                    tracing::warn!(%reason, "gateway subscription lost; re-opening");
                    // A read says why, if the gateway refuses the connector's token.
                    bridge.refresh().await;
                }
                None => break,
            },
            Some(expect) = changes.recv() => {
                bridge.expect(expect);
                refresh_now(&mut refresh_soon);
            }
            _ = staleness.tick() => bridge.check_staleness(),
            () = sleep_until(refresh_soon) => {
                refresh_soon = None;
                bridge.refresh().await;
                if let Some(again) = bridge.look_again() {
                    refresh_soon = Some(tokio::time::Instant::now() + again);
                }
            }
            () = sleep_until(throttle_due) => bridge.flush_due(),
            _ = checkpoint.tick() => bridge.send_checkpoint(),
        }
    }
    bridge.goodbye().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.task).await;
    tracing::info!("Home Assistant connector stopped");
    Ok(())
}

/// How long a pushed change waits for others to join it before the re-read.
const CHANGE_SETTLE: Duration = Duration::from_millis(100);
/// How many more re-reads a pushed change gets to show up in, each after twice the wait
/// of the one before (100 ms … 6.4 s): processors that far behind are stopped, and their
/// restart pushes everything again.
const LOOKS: u32 = 6;
/// How often probes are checked for readings that stopped (no gateway call).
const STALENESS_CHECK: Duration = Duration::from_secs(1);

/// Asks for a re-read shortly: unless one is due sooner, in [`CHANGE_SETTLE`] (which a
/// stream of changes does not postpone).
fn refresh_now(refresh_soon: &mut Option<tokio::time::Instant>) {
    let soon = tokio::time::Instant::now() + CHANGE_SETTLE;
    *refresh_soon = Some(refresh_soon.map_or(soon, |at| at.min(soon)));
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The state of a probe's "done at" sensor: an RFC 3339 time (or null) and the details.
fn prediction_state(p: &Prediction) -> serde_json::Value {
    json!({
        "done_at": p.done_at_ms.map(format::rfc3339_ms),
        "remaining_s": p.remaining_s.map(|s| format::round(s, 0)),
        "low_s": p.low_s.map(|s| format::round(s, 0)),
        "high_s": p.high_s.map(|s| format::round(s, 0)),
        "stall": p.stall,
        "phase": p.phase,
        "pit_phase": p.pit_phase,
    })
}

struct Bridge {
    config: HomeAssistantConfig,
    topics: Topics,
    discovery: Discovery,
    throttle: Throttle,
    client: AsyncClient,
    upstream: Upstream,
    connected: bool,
    /// Every retained message the broker should hold, by topic.
    retained: BTreeMap<String, String>,
    devices: BTreeMap<String, DeviceView>,
    /// Removed devices whose entities were cleared in this run.
    cleared: HashSet<String>,
    /// Next offset per partition of the updates received.
    positions: BTreeMap<u32, u64>,
    checkpoints: Checkpoints,
    /// Whether the gateway's refusal was logged (once, not at every refresh).
    refusal_logged: bool,
    /// Pushed changes the re-reads have not shown yet, with the re-reads made since.
    expected: Vec<(Expect, u32)>,
    /// Event time of each (device, probe)'s prediction, as last read.
    read_predictions: HashMap<(String, String), i64>,
    /// Active alerts of each device, as last read.
    read_active: HashMap<String, HashSet<String>>,
}

impl Bridge {
    /// Remembers what a pushed change should show, until a re-read shows it.
    fn expect(&mut self, expect: Expect) {
        if expect != Expect::Anything && self.expected.len() < MAX_EXPECTED {
            self.expected.push((expect, 0));
        }
    }

    /// After a re-read: forgets the changes it showed and says when to read again for the
    /// others (`None`: nothing is missing).
    fn look_again(&mut self) -> Option<Duration> {
        look_again(
            &mut self.expected,
            &self.read_predictions,
            &self.read_active,
        )
    }

    async fn on_mqtt(&mut self, event: MqttEvent, refresh_soon: &mut Option<tokio::time::Instant>) {
        match event {
            MqttEvent::Connected => {
                self.connected = true;
                let subscriptions = [
                    self.topics.ha_status(),
                    self.topics.all_target_commands(),
                    self.topics.checkpoint(),
                ];
                for topic in subscriptions {
                    if let Err(e) = self.client.try_subscribe(&topic, QoS::AtLeastOnce) {
                        tracing::warn!(%topic, error = %e, "cannot subscribe");
                    }
                }
                self.publish_retained(&self.topics.bridge_availability(), "online");
                self.republish_all();
            }
            MqttEvent::Disconnected => {
                self.connected = false;
                self.checkpoints.abandon();
            }
            MqttEvent::Message { topic, payload } => {
                let text = String::from_utf8_lossy(&payload);
                if topic == self.topics.ha_status() {
                    if text.trim() == "online" {
                        tracing::info!(
                            "Home Assistant came online; re-sending discovery and states"
                        );
                        self.republish_all();
                    }
                } else if topic == self.topics.checkpoint() {
                    if let Ok(seq) = text.trim().parse::<u64>()
                        && let Err(e) = self.checkpoints.confirmed(seq)
                    {
                        tracing::warn!(error = %e, "cannot save the subscription position");
                    }
                } else if let Some((device, probe)) = self.topics.parse_target_command(&topic) {
                    let (device, probe) = (device.to_owned(), probe.to_owned());
                    self.on_target_command(&device, &probe, text.trim()).await;
                    *refresh_soon = Some(tokio::time::Instant::now() + Duration::from_millis(100));
                }
            }
        }
    }

    // --- publishing -----------------------------------------------------------------------

    fn send(&self, topic: &str, payload: &str, retain: bool) {
        if !self.connected {
            return;
        }
        let queued =
            self.client
                .try_publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec());
        let result = if queued.is_ok() {
            "queued"
        } else {
            "not_queued"
        };
        metrics::counter!("emberline_ha_publishes_total", "result" => result).increment(1);
        if let Err(e) = queued {
            tracing::warn!(%topic, error = %e, "MQTT publish not queued; it is re-sent on reconnect");
        }
    }

    /// Publishes a retained message if it differs from what the broker holds.
    fn publish_retained(&mut self, topic: &str, payload: &str) {
        if self.retained.get(topic).map(String::as_str) == Some(payload) {
            return;
        }
        self.retained.insert(topic.to_owned(), payload.to_owned());
        self.send(topic, payload, true);
    }

    /// Offers a state through the rate limiter.
    fn publish_state(&mut self, topic: &str, payload: String, position: Option<(u32, u64)>) {
        if self.retained.get(topic) == Some(&payload) {
            return;
        }
        if let Some(payload) = self
            .throttle
            .offer(topic, payload, position, Instant::now())
        {
            self.publish_retained(topic, &payload);
        }
    }

    fn flush_due(&mut self) {
        for (topic, payload) in self.throttle.due(Instant::now()) {
            self.publish_retained(&topic, &payload);
        }
    }

    fn republish_all(&mut self) {
        for (topic, payload) in self.throttle.drain(Instant::now()) {
            self.retained.insert(topic, payload);
        }
        let all: Vec<(String, String)> = self
            .retained
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        for (topic, payload) in all {
            self.send(&topic, &payload, true);
        }
    }

    /// Sends a checkpoint marker for the positions every sent state covers.
    fn send_checkpoint(&mut self) {
        if !self.connected {
            return;
        }
        let mut safe = self.positions.clone();
        for (partition, held) in self.throttle.held_positions() {
            safe.entry(partition)
                .and_modify(|p| *p = (*p).min(held))
                .or_insert(held);
        }
        if let Some(seq) = self.checkpoints.propose(safe) {
            self.send(&self.topics.checkpoint(), &seq.to_string(), false);
        }
    }

    async fn goodbye(&mut self) {
        if self.connected {
            self.flush_due();
            self.send(&self.topics.bridge_availability(), "offline", true);
            let _ = self.client.disconnect().await;
        }
    }

    // --- the gateway ------------------------------------------------------------------------

    /// Applies a trend update; false when it names a device not described yet (a re-read
    /// brings it, with its latest value).
    fn on_update(&mut self, event: TrendEvent) -> bool {
        self.positions.insert(event.partition, event.offset + 1);
        let Some(view) = self.devices.get_mut(&event.device_id) else {
            // A removed device is known: its late updates ask for nothing.
            return self.cleared.contains(&event.device_id);
        };
        // Updates are applied in log order even when older than a value read from the
        // gateway: after a resume they replay what Home Assistant has not seen yet, and the
        // last of them is the newest value again.
        let probe = view.probes.entry(event.probe_id.clone()).or_default();
        probe.interval_ms =
            freshness::learn_interval(probe.interval_ms, probe.event_time_ms, event.event_time_ms);
        probe.temperature_c = Some(event.temperature_c);
        probe.rate_c_per_min = event.trend.as_ref().and_then(|t| t.rate_c_per_min);
        probe.event_time_ms = event.event_time_ms;
        probe.received_ms = probe.received_ms.max(event.event_time_ms);
        let (device, probe_id) = (event.device_id, event.probe_id);
        self.publish_probe(&device, &probe_id, Some((event.partition, event.offset)));
        true
    }

    /// Re-reads every device from the gateway and brings the broker in line.
    async fn refresh(&mut self) {
        let listed = match self
            .upstream
            .devices
            .list_devices(ListDevicesRequest {
                include_removed: true,
            })
            .await
        {
            Ok(r) => {
                self.refusal_logged = false;
                r.into_inner().devices
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                if std::mem::replace(&mut self.refusal_logged, true) {
                    return;
                }
                tracing::warn!(
                    error = %status.message(),
                    "the gateway refused the connector: give it an API token of scope control \
                     (home_assistant.token; `emberline token create \"home assistant\" --scope control`)"
                );
                return;
            }
            Err(status) => {
                tracing::debug!(error = %status.message(), "gateway not reachable; keeping the last known devices");
                return;
            }
        };
        for device in listed {
            if device.removed {
                self.remove(device);
                continue;
            }
            self.cleared.remove(&device.device_id);
            let latest = match self
                .upstream
                .devices
                .get_latest(GetLatestRequest {
                    device_id: device.device_id.clone(),
                })
                .await
            {
                Ok(r) => r.into_inner().probes,
                Err(status) if status.code() == tonic::Code::NotFound => Vec::new(),
                Err(status) => {
                    tracing::debug!(error = %status.message(), "gateway not reachable");
                    return;
                }
            };
            self.describe(device, latest).await;
        }
        self.check_staleness();
    }

    /// Brings one device's entities and states up to date.
    async fn describe(&mut self, device: Device, latest: Vec<ProbeState>) {
        let id = device.device_id.clone();
        let mut view = self.devices.remove(&id).unwrap_or_else(|| DeviceView {
            device: device.clone(),
            probes: BTreeMap::new(),
            alerts: BTreeMap::new(),
        });
        view.alerts = self.alert_kinds(&id).await;
        view.device = device;
        let mut changed = Vec::new();
        for state in latest {
            let is_new = !view.probes.contains_key(&state.probe_id);
            let probe = view.probes.entry(state.probe_id.clone()).or_default();
            if is_new {
                probe.interval_ms = self
                    .history_interval(&id, &state.probe_id, state.event_time_ms)
                    .await;
            }
            if state.event_time_ms > probe.event_time_ms
                || (state.event_time_ms == probe.event_time_ms && probe.received_ms == 0)
            {
                probe.temperature_c = state.temperature_c;
                probe.rate_c_per_min = state.trend.as_ref().and_then(|t| t.rate_c_per_min);
                probe.event_time_ms = state.event_time_ms;
                changed.push(state.probe_id.clone());
            }
            probe.received_ms = probe.received_ms.max(state.received_time_ms);
        }
        for probe in &view.device.probe_ids {
            view.probes.entry(probe.clone()).or_default();
        }
        let shape = self.shape(&view);
        self.devices.insert(id.clone(), view);
        for config in self.discovery.configs(&shape) {
            let payload = config.payload.to_string();
            self.publish_retained(&config.topic, &payload);
        }
        self.publish_device(&id);
        for probe in changed {
            self.publish_probe(&id, &probe, None);
        }
        self.publish_predictions(&id).await;
    }

    /// Alert kinds of a device (implied ones and its rules'), each with whether an alert of
    /// it is active. Unreachable: none active, the implied kinds only.
    async fn alert_kinds(&mut self, device: &str) -> BTreeMap<String, bool> {
        let mut kinds: BTreeMap<String, bool> = IMPLIED_ALERT_KINDS
            .iter()
            .map(|k| ((*k).to_owned(), false))
            .collect();
        let device_id = device.to_owned();
        if let Ok(r) = self
            .upstream
            .alerts
            .list_alert_rules(ListAlertRulesRequest {
                device_id: device_id.clone(),
            })
            .await
        {
            for rule in r.into_inner().rules {
                kinds.entry(rule.kind).or_insert(false);
            }
        }
        if let Ok(r) = self
            .upstream
            .alerts
            .list_alerts(ListAlertsRequest {
                device_id,
                active_only: true,
            })
            .await
        {
            let mut active = HashSet::new();
            for alert in r.into_inner().alerts {
                kinds.insert(alert.kind, true);
                active.insert(alert.alert_id);
            }
            self.read_active.insert(device.to_owned(), active);
        }
        kinds
    }

    /// Publishes each probe's prediction and the device's alert states.
    async fn publish_predictions(&mut self, device: &str) {
        let predictions: Vec<Prediction> = match self
            .upstream
            .predictions
            .list_predictions(ListPredictionsRequest {
                device_id: device.to_owned(),
            })
            .await
        {
            Ok(r) => r.into_inner().predictions,
            Err(_) => return,
        };
        for p in &predictions {
            self.read_predictions
                .insert((device.to_owned(), p.probe_id.clone()), p.event_time_ms);
        }
        let Some(view) = self.devices.get(device) else {
            return;
        };
        let mut out: Vec<(String, String)> = view
            .probes
            .keys()
            .map(|p| {
                let payload = predictions
                    .iter()
                    .find(|x| &x.probe_id == p)
                    .map_or_else(|| json!({"done_at": null}), prediction_state);
                (self.topics.probe_prediction(device, p), payload.to_string())
            })
            .collect();
        out.extend(view.alerts.iter().map(|(kind, on)| {
            (
                self.topics.alert_state(device, kind),
                if *on { "ON" } else { "OFF" }.to_owned(),
            )
        }));
        for (topic, payload) in out {
            self.publish_retained(&topic, &payload);
        }
    }

    /// The usual gap between a probe's recent readings, from its history.
    async fn history_interval(&mut self, device: &str, probe: &str, last_ms: i64) -> Option<f64> {
        let request = GetHistoryRequest {
            device_id: device.to_owned(),
            probe_id: probe.to_owned(),
            from_ms: last_ms.saturating_sub(6 * 3_600 * 1_000),
            to_ms: last_ms.saturating_add(1),
            limit: 0,
            step_ms: 0,
        };
        let points = self
            .upstream
            .readings
            .get_history(request)
            .await
            .ok()?
            .into_inner()
            .points;
        let times: Vec<i64> = points
            .iter()
            .rev()
            .take(21)
            .map(|p| p.event_time_ms)
            .collect();
        let mut gaps: Vec<i64> = times
            .windows(2)
            .map(|w| w[0] - w[1])
            .filter(|g| *g > 0)
            .collect();
        gaps.sort_unstable();
        gaps.get(gaps.len() / 2).map(|g| *g as f64)
    }

    fn shape(&self, view: &DeviceView) -> DeviceShape {
        let d = &view.device;
        DeviceShape {
            device_id: d.device_id.clone(),
            name: d.name.clone(),
            model: d.model.clone(),
            firmware: d.firmware.clone(),
            probes: view
                .probes
                .iter()
                .map(|(id, probe)| ProbeShape {
                    probe_id: id.clone(),
                    label: d
                        .probe_labels
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| id.clone()),
                    expire_after_s: self.expire_after_s(probe),
                })
                .collect(),
            alert_kinds: view.alerts.keys().cloned().collect(),
        }
    }

    fn stale_after_ms(&self, probe: &ProbeView) -> i64 {
        freshness::stale_after_ms(self.config.stale_after_s, probe.interval_ms)
    }

    fn expire_after_s(&self, probe: &ProbeView) -> u64 {
        freshness::expire_after_s(
            self.stale_after_ms(probe),
            self.config.min_state_interval_ms,
        )
    }

    fn publish_device(&mut self, id: &str) {
        let Some(view) = self.devices.get(id) else {
            return;
        };
        let d = &view.device;
        let online = d.online.unwrap_or(true);
        let status = json!({
            "battery": d.battery_percent,
            "signal": d.signal_dbm,
            "firmware": d.firmware,
            "online": online,
        })
        .to_string();
        let unit = self.config.unit;
        let targets: Vec<(String, String)> = view
            .probes
            .keys()
            .map(|p| {
                let value = d.targets_c.get(p).map_or_else(
                    || "None".to_owned(),
                    |t| format::number(unit.from_celsius(*t), 1),
                );
                (self.topics.target_state(id, p), value)
            })
            .collect();
        self.publish_retained(
            &self.topics.device_availability(id),
            if online { "online" } else { "offline" },
        );
        self.publish_retained(&self.topics.device_status(id), &status);
        for (topic, value) in targets {
            self.publish_retained(&topic, &value);
        }
    }

    fn publish_probe(&mut self, device: &str, probe: &str, position: Option<(u32, u64)>) {
        let Some(view) = self.devices.get(device) else {
            return;
        };
        let Some(p) = view.probes.get(probe) else {
            return;
        };
        let unit = self.config.unit;
        let target = view
            .device
            .targets_c
            .get(probe)
            .map(|t| unit.from_celsius(*t));
        let state = json!({
            "temperature": p.temperature_c.map(|t| format::round(unit.from_celsius(t), 2)),
            "rate": p.rate_c_per_min.map(|r| format::round(unit.rate_from_celsius(r), 3)),
            "target": target.map(|t| format::round(t, 1)),
            "event_time": format::rfc3339_ms(p.event_time_ms),
        })
        .to_string();
        let available = p.temperature_c.is_some() && !self.is_stale(p);
        self.publish_state(&self.topics.probe_state(device, probe), state, position);
        self.publish_probe_health(device, probe, available);
    }

    fn is_stale(&self, probe: &ProbeView) -> bool {
        probe.received_ms > 0 && now_ms() - probe.received_ms > self.stale_after_ms(probe)
    }

    fn publish_probe_health(&mut self, device: &str, probe: &str, available: bool) {
        self.publish_retained(
            &self.topics.probe_availability(device, probe),
            if available { "online" } else { "offline" },
        );
        self.publish_retained(
            &self.topics.probe_health(device, probe),
            if available { "OFF" } else { "ON" },
        );
    }

    fn check_staleness(&mut self) {
        let mut verdicts = Vec::new();
        for (id, view) in &self.devices {
            for (probe, p) in &view.probes {
                let available = p.temperature_c.is_some() && !self.is_stale(p);
                verdicts.push((id.clone(), probe.clone(), available));
            }
        }
        for (device, probe, available) in verdicts {
            self.publish_probe_health(&device, &probe, available);
        }
    }

    /// Deletes a removed device's entities (once per run) and forgets it.
    fn remove(&mut self, device: Device) {
        let id = device.device_id.clone();
        let view = self.devices.remove(&id);
        if self.cleared.contains(&id) {
            return;
        }
        let mut view = view.unwrap_or_else(|| DeviceView {
            device: device.clone(),
            probes: BTreeMap::new(),
            alerts: IMPLIED_ALERT_KINDS
                .iter()
                .map(|k| ((*k).to_owned(), false))
                .collect(),
        });
        view.device = device;
        for probe in view
            .device
            .probe_ids
            .iter()
            .chain(view.device.probe_labels.keys())
        {
            view.probes.entry(probe.clone()).or_default();
        }
        let shape = self.shape(&view);
        for topic in self.discovery.removal_topics(&shape) {
            self.throttle.forget(&topic);
            self.retained.remove(&topic);
            self.send(&topic, "", true);
        }
        tracing::info!(device_id = %id, "device removed; its Home Assistant entities are deleted");
        self.cleared.insert(id);
    }

    // --- commands ---------------------------------------------------------------------------

    async fn on_target_command(&mut self, safe_device: &str, safe_probe: &str, payload: &str) {
        let found = self.devices.iter().find_map(|(id, view)| {
            (safe_id(id) == safe_device)
                .then(|| {
                    view.probes
                        .keys()
                        .find(|p| safe_id(p) == safe_probe)
                        .map(|p| (id.clone(), p.clone()))
                })
                .flatten()
        });
        let Some((device, probe)) = found else {
            tracing::warn!(
                device = safe_device,
                probe = safe_probe,
                "target command for an unknown probe ignored"
            );
            return;
        };
        let unit = self.config.unit;
        let target_c = if payload.is_empty() || payload.eq_ignore_ascii_case("none") {
            Ok(None)
        } else {
            match payload.parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    let c = unit.to_celsius(v);
                    if (0.0..=MAX_TARGET_C).contains(&c) {
                        Ok(Some(c))
                    } else {
                        Err(format!(
                            "{payload} {} is outside the allowed range",
                            unit.symbol()
                        ))
                    }
                }
                _ => Err(format!("{payload:?} is not a number")),
            }
        };
        let result = match target_c {
            Ok(target_c) => self
                .upstream
                .cooks
                .set_target(SetTargetRequest {
                    device_id: device.clone(),
                    probe_id: probe.clone(),
                    target_c,
                })
                .await
                .map(|_| target_c)
                .map_err(|s| s.message().to_owned()),
            Err(reason) => Err(reason),
        };
        match result {
            Ok(target_c) => {
                tracing::info!(%device, %probe, ?target_c, "target set from Home Assistant");
            }
            Err(reason) => {
                tracing::warn!(%device, %probe, %reason, "target from Home Assistant refused");
                // Put the entity back to the target in force.
                let topic = self.topics.target_state(&device, &probe);
                let current = self
                    .retained
                    .get(&topic)
                    .cloned()
                    .unwrap_or_else(|| "None".to_owned());
                self.send(&topic, &current, true);
            }
        }
    }
}

/// Forgets the `expected` changes that the re-read (`predictions`, `active`) showed, counts
/// a look for the others and gives up on those looked for [`LOOKS`] times; says when to
/// look again (`None`: nothing is missing).
fn look_again(
    expected: &mut Vec<(Expect, u32)>,
    predictions: &HashMap<(String, String), i64>,
    active: &HashMap<String, HashSet<String>>,
) -> Option<Duration> {
    expected.retain_mut(|(expect, looks)| {
        let shown = match expect {
            Expect::Anything => true,
            Expect::Prediction {
                device,
                probe,
                event_time_ms,
            } => predictions
                .get(&(device.clone(), probe.clone()))
                .is_some_and(|t| t >= event_time_ms),
            Expect::Alert {
                device,
                alert_id,
                active: raised,
            } => active.get(device).is_some_and(|a| a.contains(alert_id)) == *raised,
        };
        *looks += 1;
        if !shown && *looks > LOOKS {
            tracing::debug!(
                ?expect,
                "a pushed change never showed in the projections; giving up on it"
            );
        }
        !shown && *looks <= LOOKS
    });
    let looks = expected.iter().map(|(_, l)| *l).min()?;
    Some(CHANGE_SETTLE * 2u32.pow(looks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(at: i64) -> Expect {
        Expect::Prediction {
            device: "d".into(),
            probe: "p".into(),
            event_time_ms: at,
        }
    }

    fn alert(active: bool) -> Expect {
        Expect::Alert {
            device: "d".into(),
            alert_id: "a".into(),
            active,
        }
    }

    #[test]
    fn a_pushed_change_is_looked_for_until_a_re_read_shows_it_or_six_looks_fail() {
        let mut expected = vec![(prediction(200), 0), (alert(true), 0), (alert(false), 0)];
        let mut predictions = HashMap::from([(("d".to_owned(), "p".to_owned()), 100)]);
        let mut active = HashMap::new();
        // Nothing read yet shows the prediction or the raise; "not active" is shown.
        assert_eq!(
            look_again(&mut expected, &predictions, &active),
            Some(CHANGE_SETTLE * 2)
        );
        assert_eq!(expected, vec![(prediction(200), 1), (alert(true), 1)]);
        // The projections caught up with the prediction (a later one counts too).
        predictions.insert(("d".to_owned(), "p".to_owned()), 250);
        assert_eq!(
            look_again(&mut expected, &predictions, &active),
            Some(CHANGE_SETTLE * 4)
        );
        assert_eq!(expected, vec![(alert(true), 2)]);
        // The alert shows as active: nothing is missing any more.
        active.insert("d".to_owned(), HashSet::from(["a".to_owned()]));
        assert_eq!(look_again(&mut expected, &predictions, &active), None);
        assert!(expected.is_empty());
        // A change that never shows is given up after LOOKS looks, each wait twice as long.
        let mut expected = vec![(prediction(900), 0)];
        let mut waits = Vec::new();
        while let Some(wait) = look_again(&mut expected, &predictions, &active) {
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [200, 400, 800, 1_600, 3_200, 6_400]);
        assert!(expected.is_empty());
    }
}
