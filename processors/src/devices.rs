//! The device projector: folds `device.events` and `cook.commands` into one [`DeviceInfo`]
//! per device — names and probe labels, health, the probes' targets, removal.
//!
//! ```text
//!  device.events  p0..pn ─┐
//!  cook.commands  p0..pn ─┴─► one fold loop: load info, apply events in log order,
//!                             write infos + applied positions in one projection batch
//! ```
//!
//! The fold is keyed by device and both topics are keyed by device id, so a device's events
//! arrive in log order per topic. The two topics touch disjoint fields of an info (commands
//! only targets and the cook, device events the rest), so the result does not depend on how
//! reads of the two topics interleave: a replay gives the same projections. Applied
//! positions are written with the infos, so a restart resumes exactly after the last batch.
//! This needs no exchange and no timely worker: one async loop keeps up with any realistic
//! rate of device events (they arrive per minute, not per second).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use emberline_log::{EventLog, topics};
use emberline_projections::{CookNote, CookSession, DeviceInfo, ProjectionBatch, ProjectionStore};
use emberline_schemas::events::{
    CookEnded, CookNoteAdded, CookStarted, DeviceRegistered, DeviceRemoved, DeviceStatus, TargetSet,
};
use emberline_schemas::{CodecError, EventCodec, EventKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ProcessorError;
use crate::partition_feed::{Chunk, InputEvent, Mode, PartitionFeed, RunStats, end_for};
use crate::projection_writer::ProjectionWriter;

/// The name the projector reads under, as its dead-letter records give it.
const CONSUMER: &str = "processor.devices";
/// Most records read from one partition at a time.
const BATCH_SIZE: usize = 1_024;

/// The topics the projector reads.
pub const DEVICE_INPUTS: [&str; 2] = [topics::DEVICE_EVENTS, topics::COOK_COMMANDS];

/// An event that changes a device's description.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceEvent {
    /// A source registered the device (and un-removes it).
    Registered(DeviceRegistered),
    /// Its health changed.
    Status(DeviceStatus),
    /// A user removed it.
    Removed(DeviceRemoved),
    /// A cook began, with its targets.
    CookStarted(CookStarted),
    /// A probe's target changed.
    TargetSet(TargetSet),
    /// A cook ended: its targets no longer apply.
    CookEnded(CookEnded),
    /// A note on a cook.
    NoteAdded(CookNoteAdded),
}

impl DeviceEvent {
    /// The device it concerns.
    pub fn device_id(&self) -> &str {
        match self {
            DeviceEvent::Registered(e) => &e.device_id,
            DeviceEvent::Status(e) => &e.device_id,
            DeviceEvent::Removed(e) => &e.device_id,
            DeviceEvent::CookStarted(e) => &e.device_id,
            DeviceEvent::TargetSet(e) => &e.device_id,
            DeviceEvent::CookEnded(e) => &e.device_id,
            DeviceEvent::NoteAdded(e) => &e.device_id,
        }
    }

    /// The cook it concerns, if any.
    pub fn cook_id(&self) -> Option<&str> {
        match self {
            DeviceEvent::CookStarted(e) => Some(&e.cook_id),
            DeviceEvent::TargetSet(e) if !e.cook_id.is_empty() => Some(&e.cook_id),
            DeviceEvent::CookEnded(e) => Some(&e.cook_id),
            DeviceEvent::NoteAdded(e) => Some(&e.cook_id),
            _ => None,
        }
    }

    /// Decodes any event of the two input topics, learning unseen writer schemas. Events of
    /// known kinds that do not describe a device (alert rules, clock ticks) are `None`.
    pub async fn decode(
        codec: &EventCodec,
        payload: &[u8],
    ) -> Result<Option<Self>, DeviceDecodeError> {
        let kind = codec.kind_of_learning(payload).await?;
        Ok(Some(match kind {
            Some(EventKind::AlertRuleSet | EventKind::AlertAcknowledged | EventKind::ClockTick) => {
                return Ok(None);
            }
            Some(EventKind::DeviceRegistered) => {
                DeviceEvent::Registered(codec.decode(payload).await?)
            }
            Some(EventKind::DeviceStatus) => DeviceEvent::Status(codec.decode(payload).await?),
            Some(EventKind::DeviceRemoved) => DeviceEvent::Removed(codec.decode(payload).await?),
            Some(EventKind::CookStarted) => DeviceEvent::CookStarted(codec.decode(payload).await?),
            Some(EventKind::TargetSet) => DeviceEvent::TargetSet(codec.decode(payload).await?),
            Some(EventKind::CookEnded) => DeviceEvent::CookEnded(codec.decode(payload).await?),
            Some(EventKind::CookNoteAdded) => DeviceEvent::NoteAdded(codec.decode(payload).await?),
            other => {
                return Err(DeviceDecodeError::NotADeviceEvent(
                    other.map_or("an unknown record", |k| k.full_name()),
                ));
            }
        }))
    }
}

impl InputEvent for DeviceEvent {
    type Error = DeviceDecodeError;

    async fn decode(codec: &EventCodec, payload: &[u8]) -> Result<Option<Self>, Self::Error> {
        DeviceEvent::decode(codec, payload).await
    }
}

/// Why a record of an input topic is not a device event.
#[derive(Debug, thiserror::Error)]
pub enum DeviceDecodeError {
    /// The bytes do not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The record decodes but is of another type.
    #[error("{0} does not describe a device")]
    NotADeviceEvent(&'static str),
}

/// Applies one event to a device's description. Events of one topic must come in log order.
pub fn apply(info: &mut DeviceInfo, event: &DeviceEvent) {
    match event {
        DeviceEvent::Registered(r) => {
            info.name = Some(r.name.clone());
            info.model = r.model.clone();
            info.tenant = Some(r.tenant.clone());
            info.source = Some(r.source.clone());
            info.probe_labels = r.probe_labels.clone();
            info.registered_time = Some(r.event_time);
            info.removed_time = None;
        }
        DeviceEvent::Status(s) => {
            // A status delayed in transit must not overwrite a newer one.
            if info.status_time.is_none_or(|t| s.event_time >= t) {
                info.online = Some(s.online);
                info.battery_percent = s.battery_percent;
                info.signal_dbm = s.signal_dbm;
                info.firmware = s.firmware.clone();
                info.status_time = Some(s.event_time);
                info.status_note = s.note.clone();
                info.attributes = s.attributes.clone();
            }
        }
        DeviceEvent::Removed(r) => info.removed_time = Some(r.event_time),
        DeviceEvent::CookStarted(c) => {
            info.cook_id = Some(c.cook_id.clone());
            info.targets_c = c.targets_c.clone();
        }
        DeviceEvent::TargetSet(t) => match t.target_c {
            Some(target) => {
                info.targets_c.insert(t.probe_id.clone(), target);
            }
            None => {
                info.targets_c.remove(&t.probe_id);
            }
        },
        DeviceEvent::CookEnded(c) => {
            if info.cook_id.as_deref() == Some(c.cook_id.as_str()) {
                info.cook_id = None;
                info.targets_c.clear();
            }
        }
        DeviceEvent::NoteAdded(_) => {}
    }
}

/// Applies one event to the cook it concerns: a start creates it, a target, a note or the
/// end changes it. `cook` is the stored cook (`None` when unknown); returns the new one.
pub fn apply_to_cook(cook: Option<CookSession>, event: &DeviceEvent) -> Option<CookSession> {
    match event {
        DeviceEvent::CookStarted(c) => Some(CookSession {
            cook_id: c.cook_id.clone(),
            device_id: c.device_id.clone(),
            what: c.what.clone(),
            started_time: c.event_time,
            ended_time: None,
            targets_c: c.targets_c.clone(),
            pit_min_c: c.pit_min_c,
            pit_max_c: c.pit_max_c,
            notes: Vec::new(),
            meat: c.meat.clone(),
            weight_kg: c.weight_kg,
            serve_at_ms: c.serve_at_ms,
            rest_min: c.rest_min,
        }),
        DeviceEvent::TargetSet(t) => cook.map(|mut c| {
            match t.target_c {
                Some(v) => c.targets_c.insert(t.probe_id.clone(), v),
                None => c.targets_c.remove(&t.probe_id),
            };
            c
        }),
        DeviceEvent::NoteAdded(n) => cook.map(|mut c| {
            c.notes.push(CookNote {
                time: n.event_time,
                text: n.text.clone(),
            });
            c
        }),
        DeviceEvent::CookEnded(e) => cook.map(|mut c| {
            // Both times are the gateway's wall clock: one set back between start and end
            // (an NTP step, a hand-set clock) must not make the cook last less than nothing.
            c.ended_time.get_or_insert(e.event_time.max(c.started_time));
            c
        }),
        _ => cook,
    }
}

/// Folds the device topics into projections until shut down ([`Mode::Follow`]) or until
/// the ends seen at start are applied ([`Mode::CatchUp`]).
pub async fn run_devices(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    codec: Arc<EventCodec>,
    mode: Mode,
    shutdown: CancellationToken,
) -> Result<RunStats, ProcessorError> {
    run_devices_on(log, store, codec, mode, shutdown, None).await
}

/// [`run_devices`] on the input partitions in `owned` only (a consumer group's share);
/// `None`: all of them.
pub async fn run_devices_on(
    log: Arc<dyn EventLog>,
    store: Arc<dyn ProjectionStore>,
    codec: Arc<EventCodec>,
    mode: Mode,
    shutdown: CancellationToken,
    owned: Option<&BTreeSet<u32>>,
) -> Result<RunStats, ProcessorError> {
    let (tx, mut rx) = mpsc::channel::<Result<Chunk<DeviceEvent>, ProcessorError>>(16);
    let mut feeds = Vec::new();
    for topic in DEVICE_INPUTS {
        let partitions = log.partitions(topic).await?;
        let applied = store.applied_positions(topic).await?;
        for partition in (0..partitions).filter(|p| owned.is_none_or(|o| o.contains(p))) {
            let feed = PartitionFeed {
                log: log.clone(),
                codec: codec.clone(),
                consumer: CONSUMER.into(),
                topic: topic.into(),
                partition,
                from: applied.get(&partition).copied().unwrap_or(0),
                until: end_for(log.as_ref(), mode, topic, partition).await?,
                batch_size: BATCH_SIZE,
                wake: None,
                shutdown: shutdown.clone(),
            };
            feeds.push(tokio::spawn(feed.run(tx.clone())));
        }
    }
    drop(tx);

    let mut infos: HashMap<String, DeviceInfo> = store
        .device_infos()
        .await?
        .into_iter()
        .map(|i| (i.device_id.clone(), i))
        .collect();
    let writer = ProjectionWriter::new(store.clone(), "device");
    let mut stats = RunStats::default();
    let result = loop {
        let chunk = tokio::select! {
            chunk = rx.recv() => chunk,
            () = shutdown.cancelled() => break Ok(()),
        };
        let chunk = match chunk {
            None => break Ok(()),
            Some(Err(e)) => break Err(e),
            Some(Ok(chunk)) => chunk,
        };
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut cooks_changed: BTreeMap<String, CookSession> = BTreeMap::new();
        for event in chunk.records.iter().filter_map(|r| r.input.event()) {
            if let Some(cook_id) = event.cook_id() {
                let current = match cooks_changed.remove(cook_id) {
                    Some(c) => Some(c),
                    None => store.cook(cook_id).await?,
                };
                if let Some(next) = apply_to_cook(current, event) {
                    cooks_changed.insert(cook_id.to_owned(), next);
                }
            }
            let id = event.device_id();
            let info = infos
                .entry(id.to_owned())
                .or_insert_with(|| DeviceInfo::new(id));
            apply(info, event);
            changed.insert(id.to_owned());
        }
        crate::metrics::consumed("devices", &chunk);
        for record in &chunk.records {
            stats.count(&record.input);
        }
        let batch = ProjectionBatch {
            devices: changed
                .iter()
                .filter_map(|id| infos.get(id).cloned())
                .collect(),
            cooks: cooks_changed.into_values().collect(),
            applied: vec![(
                chunk.topic.to_string(),
                chunk.partition,
                chunk.next_offset(),
            )],
            ..Default::default()
        };
        if !writer.apply(batch, &shutdown).await {
            break Ok(()); // shut down while the store was failing: replayed on restart
        }
    };
    for feed in feeds {
        feed.abort();
    }
    result.map(|()| stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(t: i64, battery: f64) -> DeviceEvent {
        DeviceEvent::Status(DeviceStatus {
            device_id: "d".into(),
            event_time: t,
            received_time: t,
            online: true,
            battery_percent: Some(battery),
            signal_dbm: None,
            firmware: None,
            source: "test".into(),
            note: None,
            attributes: BTreeMap::new(),
        })
    }

    fn target(probe: &str, target_c: Option<f64>) -> DeviceEvent {
        DeviceEvent::TargetSet(TargetSet {
            cook_id: String::new(),
            device_id: "d".into(),
            event_time: 1,
            probe_id: probe.into(),
            target_c,
        })
    }

    #[test]
    fn a_late_status_does_not_overwrite_a_newer_one() {
        let mut info = DeviceInfo::new("d");
        apply(&mut info, &status(2_000, 50.0));
        apply(&mut info, &status(1_000, 90.0));
        assert_eq!(info.battery_percent, Some(50.0));
        assert_eq!(info.status_time, Some(2_000));
    }

    #[test]
    fn targets_are_set_cleared_and_dropped_when_the_cook_ends() {
        let mut info = DeviceInfo::new("d");
        apply(
            &mut info,
            &DeviceEvent::CookStarted(CookStarted {
                cook_id: "c1".into(),
                device_id: "d".into(),
                event_time: 1,
                what: None,
                targets_c: BTreeMap::from([("meat-1".into(), 90.0)]),
                pit_min_c: None,
                pit_max_c: None,
                meat: None,
                weight_kg: None,
                serve_at_ms: None,
                rest_min: None,
            }),
        );
        apply(&mut info, &target("meat-2", Some(70.0)));
        apply(&mut info, &target("meat-1", None));
        assert_eq!(info.targets_c, BTreeMap::from([("meat-2".into(), 70.0)]));
        let ended = |cook: &str| {
            DeviceEvent::CookEnded(CookEnded {
                cook_id: cook.into(),
                device_id: "d".into(),
                event_time: 2,
            })
        };
        apply(&mut info, &ended("another cook"));
        assert_eq!(info.targets_c.len(), 1);
        apply(&mut info, &ended("c1"));
        assert!(info.targets_c.is_empty());
        assert_eq!(info.cook_id, None);
    }

    #[test]
    fn a_removed_device_returns_when_its_source_registers_it_again() {
        let mut info = DeviceInfo::new("d");
        apply(
            &mut info,
            &DeviceEvent::Removed(DeviceRemoved {
                device_id: "d".into(),
                event_time: 5,
                reason: None,
            }),
        );
        assert!(info.is_removed());
        apply(
            &mut info,
            &DeviceEvent::Registered(DeviceRegistered {
                device_id: "d".into(),
                event_time: 1,
                tenant: "t".into(),
                model: None,
                name: "Grill".into(),
                probe_labels: BTreeMap::from([("pit".into(), "Pit".into())]),
                source: "test".into(),
            }),
        );
        assert!(!info.is_removed());
        assert_eq!(info.name.as_deref(), Some("Grill"));
    }

    #[test]
    fn a_cook_ended_by_a_clock_set_back_ends_when_it_started() {
        let started = DeviceEvent::CookStarted(CookStarted {
            cook_id: "c".into(),
            device_id: "d".into(),
            event_time: 10_000,
            what: None,
            targets_c: BTreeMap::new(),
            pit_min_c: None,
            pit_max_c: None,
            meat: None,
            weight_kg: None,
            serve_at_ms: None,
            rest_min: None,
        });
        let ended = |event_time| {
            DeviceEvent::CookEnded(CookEnded {
                cook_id: "c".into(),
                device_id: "d".into(),
                event_time,
            })
        };
        let cook = apply_to_cook(None, &started);
        let early = apply_to_cook(cook.clone(), &ended(10_000 - 3_600_000)).expect("the cook");
        assert_eq!(early.ended_time, Some(10_000));
        let later = apply_to_cook(cook, &ended(12_000)).expect("the cook");
        assert_eq!(later.ended_time, Some(12_000));
    }
}
