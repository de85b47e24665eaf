//! Encoding events and appending them to the log, with retries.

use std::sync::Arc;
use std::time::Duration;

use emberline_log::{EventLog, NewRecord, Position, topics};
use emberline_schemas::events::{CookStarted, DeviceRegistered, DeviceStatus, ProbeReading};
use emberline_schemas::{Event, EventCodec};
use tokio_util::sync::CancellationToken;

use crate::IngestError;
use crate::validate::{Admitted, Rejected};
use emberline_common::{Backoff, tenant};

/// Where sources put their events.
#[derive(Clone)]
pub struct EventSink {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    shutdown: CancellationToken,
    /// Why the last append failed, until one succeeds (shared by the sink's clones).
    failing: Arc<std::sync::Mutex<Option<String>>>,
    /// Whose devices the events are.
    tenant: String,
}

/// An event with the device id it is keyed by.
trait Keyed: Event + Clone {
    fn device_id(&self) -> &str;
    fn set_device_id(&mut self, id: String);
    fn event_time(&self) -> i64;
}

macro_rules! keyed {
    ($($ty:ty),*) => {$(
        impl Keyed for $ty {
            fn device_id(&self) -> &str { &self.device_id }
            fn set_device_id(&mut self, id: String) { self.device_id = id; }
            fn event_time(&self) -> i64 { self.event_time }
        }
    )*};
}
keyed!(ProbeReading, DeviceStatus, DeviceRegistered, CookStarted);

impl EventSink {
    /// A sink appending to `log`, giving up retries once `shutdown` is cancelled.
    pub fn new(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            log,
            codec,
            shutdown,
            failing: Arc::default(),
            tenant: tenant::DEFAULT_TENANT.to_owned(),
        }
    }

    /// The same sink, appending for `tenant`: every device id it writes is qualified with
    /// the tenant (see [`emberline_common::tenant`]).
    pub fn for_tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.to_owned();
        self
    }

    /// Why appends are failing (the last failure, with its causes), or `None` when the last
    /// append succeeded: for a source that must answer a client before the retries end.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_failing(&self, reason: Option<String>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// Appends readings to `probe.readings`; returns their positions once durable.
    pub async fn readings(&self, readings: &[ProbeReading]) -> Result<Vec<Position>, IngestError> {
        self.append(topics::PROBE_READINGS, readings).await
    }

    /// Appends device status events to `device.events`.
    pub async fn statuses(&self, statuses: &[DeviceStatus]) -> Result<Vec<Position>, IngestError> {
        self.append(topics::DEVICE_EVENTS, statuses).await
    }

    /// Appends device registrations to `device.events`.
    pub async fn registrations(
        &self,
        registrations: &[DeviceRegistered],
    ) -> Result<Vec<Position>, IngestError> {
        self.append(topics::DEVICE_EVENTS, registrations).await
    }

    /// Appends cook commands to `cook.commands` (the simulator starts its simulated cook so).
    pub async fn cooks_started(&self, cooks: &[CookStarted]) -> Result<Vec<Position>, IngestError> {
        self.append(topics::COOK_COMMANDS, cooks).await
    }

    /// Appends what a [`Gate`](crate::validate::Gate) admitted and sends what it rejected
    /// to `dead-letter`, each with its reason and raw payload.
    pub async fn deliver(
        &self,
        source: &str,
        admitted: &Admitted,
        received_ms: i64,
    ) -> Result<(), IngestError> {
        self.readings(&admitted.readings).await?;
        self.dead_letters(source, &admitted.rejected, received_ms)
            .await
    }

    /// Sends rejected readings (or whole unreadable payloads) to `dead-letter`.
    pub async fn dead_letters(
        &self,
        source: &str,
        rejected: &[Rejected],
        received_ms: i64,
    ) -> Result<(), IngestError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let records: Vec<NewRecord> = rejected
            .iter()
            .map(|r| {
                let payload = match std::str::from_utf8(&r.raw) {
                    Ok(text) => serde_json::json!({ "payload": text }),
                    Err(_) => serde_json::json!({
                        "payload_hex": r.raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    }),
                };
                let device = tenant::qualify(&self.tenant, &r.device_id);
                let mut body = serde_json::json!({
                    "source": source,
                    "device_id": device,
                    "probe_id": r.probe_id,
                    "reason": r.reason.to_string(),
                    "received_time": received_ms,
                });
                if let (Some(body), Some(payload)) = (body.as_object_mut(), payload.as_object()) {
                    body.extend(payload.clone());
                }
                NewRecord {
                    key: device.into_bytes(),
                    value: body.to_string().into_bytes(),
                    timestamp_ms: received_ms.max(1),
                }
            })
            .collect();
        tracing::warn!(source, count = records.len(), first = %rejected[0].reason, "readings rejected; sent to the dead-letter topic");
        self.append_records(topics::DEAD_LETTER, records).await?;
        Ok(())
    }

    async fn append<E: Keyed>(
        &self,
        topic: &str,
        events: &[E],
    ) -> Result<Vec<Position>, IngestError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            if event.device_id().contains(tenant::SEPARATOR) {
                // It would read as another tenant's device. Readings with such ids are
                // dead-lettered by the gate; this is a registration or a status.
                tracing::warn!(
                    device = event.device_id(),
                    "a device id with '/' is not accepted; event skipped"
                );
                continue;
            }
            let value = if self.tenant == tenant::DEFAULT_TENANT {
                self.codec.encode(event)?
            } else {
                let mut qualified = event.clone();
                qualified.set_device_id(tenant::qualify(&self.tenant, event.device_id()));
                self.codec.encode(&qualified)?
            };
            records.push(NewRecord {
                key: tenant::qualify(&self.tenant, event.device_id()).into_bytes(),
                value,
                timestamp_ms: event.event_time(),
            });
        }
        self.append_records(topic, records).await
    }

    /// Appends `records`, retrying until they are durable. The `append` span carries where
    /// they landed: the partition and offset of the first and the last record.
    #[tracing::instrument(
        name = "append",
        skip_all,
        fields(
            topic = %topic,
            records = records.len(),
            partition = tracing::field::Empty,
            offset = tracing::field::Empty,
            last_partition = tracing::field::Empty,
            last_offset = tracing::field::Empty,
        )
    )]
    async fn append_records(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Position>, IngestError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            match self.log.append(topic, records.clone()).await {
                Ok(positions) => {
                    self.set_failing(None);
                    let span = tracing::Span::current();
                    if let (Some(first), Some(last)) = (positions.first(), positions.last()) {
                        span.record("partition", first.partition);
                        span.record("offset", first.offset);
                        span.record("last_partition", last.partition);
                        span.record("last_offset", last.offset);
                    }
                    return Ok(positions);
                }
                Err(e) => {
                    self.set_failing(Some(emberline_common::error::chain(&e)));
                    let delay = backoff.next_delay();
                    tracing::warn!(topic, events = records.len(), error = %e, ?delay, "append failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.shutdown.cancelled() => {
                            return Err(IngestError::ShutDown { pending: records.len() });
                        }
                    }
                }
            }
        }
    }
}
