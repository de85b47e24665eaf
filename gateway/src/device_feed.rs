//! `DeviceService/SubscribeDevices`: every device's description, then each change to one.
//!
//! A device's description comes from three places: the device projector folds
//! `device.events` and `cook.commands` into it, the settings hold the names its users gave
//! it, and its probes are those the trend processor has seen readings of. A subscription
//! follows all three from the moment it opens — both topics and `derived.trends` through the
//! gateway's shared tails ([`crate::tail_hub`]), the names through the settings' watch —
//! and only then reads the snapshot, so no change falls between the two.
//!
//! A record names a device before the projections hold what it changes. So a change waits
//! until the projections' applied position of its record's partition has passed it, then
//! the device is read as `ListDevices` reads it and sent if it differs from what this
//! subscriber last got. Changes that arrive together are waited for and read together. The
//! client never needs to re-read, and never sees the same description twice.
//!
//! ```text
//!  device.events ─┐
//!  cook.commands ─┼─► (device, position to wait for) ─► wait until applied ─► read ─► send if changed
//!  derived.trends ┤       (a trend: only a probe not seen yet)
//!  settings names ┘       (a name: nothing to wait for)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use emberline_log::topics;
use emberline_processors::devices::{DeviceDecodeError, DeviceEvent};
use emberline_proto::v1::{Device, DeviceUpdate, TrendEvent};
use emberline_schemas::{CodecError, EventCodec};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};

use crate::Gateway;
use crate::status::to_status;
use crate::subscriptions::{Tailed, partitions_holding, recheck_credential};
use crate::tenancy::Tenant;

/// Changes waiting to be read per subscription before its followers wait.
const BUFFER: usize = 1_024;
/// Most changes taken together into one wait and one update.
const GATHER: usize = 256;
/// The first and the longest pause between two looks at the projections' applied
/// positions while a change waits for them.
const APPLIED_POLL: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(250));

/// A record of `device.events` or `cook.commands`, reduced to the device it concerns.
#[derive(Clone, Debug)]
pub(crate) struct DeviceRecord {
    /// `None` for records that describe no device (alert rules, clock ticks, records of
    /// another type, which the device projector dead-letters).
    device_id: Option<String>,
}

#[tonic::async_trait]
impl Tailed for DeviceRecord {
    async fn decode(
        codec: &EventCodec,
        _partition: u32,
        _offset: u64,
        bytes: &[u8],
    ) -> Result<Self, CodecError> {
        let event = match DeviceEvent::decode(codec, bytes).await {
            Ok(event) => event,
            Err(DeviceDecodeError::NotADeviceEvent(_)) => None,
            Err(DeviceDecodeError::Codec(e)) => return Err(e),
        };
        Ok(DeviceRecord {
            device_id: event.map(|e| e.device_id().to_owned()),
        })
    }

    fn device_id_mut(&mut self) -> Option<&mut String> {
        self.device_id.as_mut()
    }

    fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// Not asked: the device feed is bounded by no time window.
    fn event_time_ms(&self) -> i64 {
        0
    }
}

/// What the followers send the subscription's loop: a change, or why one of them cannot
/// go on (the stream then ends with it, and its client's next subscription starts from a
/// snapshot, so nothing is lost).
type Changes = mpsc::Sender<Result<Change, Status>>;

/// A device whose description may have changed.
struct Change {
    /// Qualified id.
    device_id: String,
    /// The projections must have applied this (topic, partition, offset) first.
    after: Option<(&'static str, u32, u64)>,
}

impl Gateway {
    /// Streams `tenant`'s devices (or the one `device`, qualified): a snapshot, then changes.
    pub(crate) async fn device_feed(
        &self,
        tenant: Tenant,
        device: Option<String>,
        credential: Option<crate::auth::Credential>,
    ) -> Result<Response<ReceiverStream<Result<DeviceUpdate, Status>>>, Status> {
        let (changes_tx, changes) = mpsc::channel(BUFFER);
        // Probes already described: a trend of one of them changes no description.
        let seen: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
        for topic in [topics::DEVICE_EVENTS, topics::COOK_COMMANDS] {
            self.follow_records::<DeviceRecord>(topic, &device, &tenant, &changes_tx, |r, p, o| {
                let device_id = r.device_id?;
                Some(Change {
                    device_id,
                    after: Some((topic, p, o)),
                })
            })
            .await?;
        }
        let known = seen.clone();
        self.follow_records::<TrendEvent>(
            topics::DERIVED_TRENDS,
            &device,
            &tenant,
            &changes_tx,
            move |t, partition, _| {
                let mut known = known.lock().unwrap_or_else(PoisonError::into_inner);
                if !known.insert((t.device_id.clone(), t.probe_id.clone())) {
                    return None;
                }
                // The trend is appended before its projection batch: wait for the reading.
                Some(Change {
                    device_id: t.device_id,
                    after: Some((topics::PROBE_READINGS, partition, t.source_offset)),
                })
            },
        )
        .await?;
        self.follow_names(&device, &tenant, changes_tx);

        // One device is read alone, not picked out of every device's description.
        let devices: Vec<Device> = match &device {
            None => self.describe_devices(&tenant, false).await?,
            Some(id) => self
                .describe_device(id)
                .await?
                .filter(|d| !d.removed)
                .into_iter()
                .filter_map(|mut d| tenant.unqualify(&mut d.device_id).then_some(d))
                .collect(),
        };
        // What this subscriber holds, by qualified id, as it was sent (under its own ids).
        let mut sent: HashMap<String, Device> = HashMap::new();
        {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            for d in &devices {
                let id = qualified(&tenant, &d.device_id);
                for probe in &d.probe_ids {
                    seen.insert((id.clone(), probe.clone()));
                }
                sent.insert(id, d.clone());
            }
        }

        let (tx, rx) = mpsc::channel(16);
        tx.send(Ok(DeviceUpdate {
            snapshot: true,
            devices,
        }))
        .await
        .map_err(|_| Status::cancelled("the client went away"))?;
        if let Some(credential) = credential {
            recheck_credential(credential, tx.clone(), self.shutdown.clone());
        }
        let gateway = self.clone();
        let open = crate::metrics::OpenSubscription::open(topics::DEVICE_EVENTS);
        tokio::spawn(async move {
            let _open = open;
            gateway.send_changes(tenant, changes, sent, tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Follows every partition of `topic` that can hold `device` (all, without one) from its
    /// end, and sends what `change` makes of each record of the tenant's devices.
    async fn follow_records<E: Tailed>(
        &self,
        topic: &'static str,
        device: &Option<String>,
        tenant: &Tenant,
        changes: &Changes,
        change: impl Fn(E, u32, u64) -> Option<Change> + Send + Sync + 'static,
    ) -> Result<(), Status> {
        let partitions = self.log.partitions(topic).await.map_err(to_status)?;
        let change = Arc::new(change);
        for partition in partitions_holding(device.as_deref(), partitions) {
            let end = self
                .log
                .end_offset(topic, partition)
                .await
                .map_err(to_status)?;
            let mut follower = self.tails.follow::<E>(topic, partition, end).await?;
            let (changes, tenant, change) = (changes.clone(), tenant.clone(), change.clone());
            let filter = device.clone();
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                let wanted = move |e: &E| {
                    e.device_id().is_some_and(|id| {
                        filter.as_deref().is_none_or(|d| d == id) && tenant.owns(id)
                    })
                };
                loop {
                    let next = tokio::select! {
                        n = follower.next(&wanted) => n,
                        () = changes.closed() => return,
                        () = shutdown.cancelled() => return,
                    };
                    let (offset, event) = match next {
                        Ok(next) => next,
                        Err(status) => {
                            let _ = changes.send(Err(status)).await;
                            return;
                        }
                    };
                    if let Some(c) = change(event, partition, offset)
                        && changes.send(Ok(c)).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
        Ok(())
    }

    /// Sends a change for every device of the tenant whose names change in the settings.
    fn follow_names(&self, device: &Option<String>, tenant: &Tenant, changes: Changes) {
        let Some(settings) = &self.settings else {
            return;
        };
        let mut names = settings.live_names();
        let (device, tenant) = (device.clone(), tenant.clone());
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut before = names.borrow_and_update().clone();
            loop {
                tokio::select! {
                    r = names.changed() => if r.is_err() { return },
                    () = changes.closed() => return,
                    () = shutdown.cancelled() => return,
                }
                let now = names.borrow_and_update().clone();
                let renamed: BTreeSet<&String> = before
                    .keys()
                    .chain(now.keys())
                    .filter(|id| before.get(*id) != now.get(*id))
                    .filter(|id| device.as_ref().is_none_or(|d| d == *id) && tenant.owns(id))
                    .collect();
                for id in renamed {
                    let change = Change {
                        device_id: id.clone(),
                        after: None,
                    };
                    if changes.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
                before = now;
            }
        });
    }

    /// The subscription's loop: gathers changes, waits for the projections to hold them,
    /// and sends each changed device once.
    async fn send_changes(
        &self,
        tenant: Tenant,
        mut changes: mpsc::Receiver<Result<Change, Status>>,
        mut sent: HashMap<String, Device>,
        tx: mpsc::Sender<Result<DeviceUpdate, Status>>,
    ) {
        loop {
            let first = tokio::select! {
                c = changes.recv() => c,
                () = tx.closed() => return,
                () = self.shutdown.cancelled() => return,
            };
            let Some(first) = first else { return };
            let mut gathered = vec![first];
            while gathered.len() < GATHER
                && let Ok(c) = changes.try_recv()
            {
                gathered.push(c);
            }
            let mut waits: BTreeMap<(&'static str, u32), u64> = BTreeMap::new();
            let mut ids = BTreeSet::new();
            for c in gathered {
                let c = match c {
                    Ok(c) => c,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if let Some((topic, partition, offset)) = c.after {
                    let at = waits.entry((topic, partition)).or_default();
                    *at = (*at).max(offset);
                }
                ids.insert(c.device_id);
            }
            let applied = tokio::select! {
                r = self.wait_applied(&waits) => r,
                () = tx.closed() => return,
                () = self.shutdown.cancelled() => return,
            };
            let update = match applied {
                Ok(()) => self.changed_devices(&tenant, ids, &mut sent).await,
                Err(e) => Err(e),
            };
            match update {
                Ok(devices) if devices.is_empty() => {}
                Ok(devices) => {
                    let update = DeviceUpdate {
                        snapshot: false,
                        devices,
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
    }

    /// Returns once the projections have applied every (topic, partition) up to and
    /// including its offset. Polls the store's applied positions, more slowly the longer
    /// it waits (they move as soon as the processors catch up).
    async fn wait_applied(&self, waits: &BTreeMap<(&'static str, u32), u64>) -> Result<(), Status> {
        let mut pause = APPLIED_POLL.0;
        for (&(topic, partition), &offset) in waits {
            loop {
                let applied = self
                    .store
                    .applied_positions(topic)
                    .await
                    .map_err(to_status)?;
                if applied.get(&partition).is_some_and(|next| *next > offset) {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(APPLIED_POLL.1);
            }
        }
        Ok(())
    }

    /// The devices of `ids` (qualified) whose description differs from what was `sent`, as
    /// the caller names them; `sent` learns them.
    async fn changed_devices(
        &self,
        tenant: &Tenant,
        ids: BTreeSet<String>,
        sent: &mut HashMap<String, Device>,
    ) -> Result<Vec<Device>, Status> {
        let mut out = Vec::new();
        for id in ids {
            let Some(mut device) = self.describe_device(&id).await? else {
                continue;
            };
            if !tenant.unqualify(&mut device.device_id) {
                continue;
            }
            match sent.get(&id) {
                // A device removed before this subscription began is news to no one.
                None if device.removed => continue,
                Some(before) if *before == device => continue,
                _ => {}
            }
            sent.insert(id, device.clone());
            out.push(device);
        }
        Ok(out)
    }
}

/// The qualified id of the caller's `device_id`.
fn qualified(tenant: &Tenant, device_id: &str) -> String {
    tenant
        .device(device_id)
        .unwrap_or_else(|_| device_id.to_owned())
}
