//! Encoding events and appending them to the log, with retries.

use std::sync::Arc;
use std::time::Duration;

use emberline_log::{EventLog, NewRecord, Position, topics};
use emberline_schemas::events::{DeviceRegistered, DeviceStatus, ProbeReading};
use emberline_schemas::{Event, EventCodec};
use tokio_util::sync::CancellationToken;

use crate::{Backoff, IngestError};

/// Where sources put their events.
#[derive(Clone)]
pub struct EventSink {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    shutdown: CancellationToken,
}

/// An event with the device id it is keyed by.
trait Keyed: Event {
    fn device_id(&self) -> &str;
    fn event_time(&self) -> i64;
}

macro_rules! keyed {
    ($($ty:ty),*) => {$(
        impl Keyed for $ty {
            fn device_id(&self) -> &str { &self.device_id }
            fn event_time(&self) -> i64 { self.event_time }
        }
    )*};
}
keyed!(ProbeReading, DeviceStatus, DeviceRegistered);

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
        }
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
            records.push(NewRecord {
                key: event.device_id().as_bytes().to_vec(),
                value: self.codec.encode(event)?,
                timestamp_ms: event.event_time(),
            });
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            match self.log.append(topic, records.clone()).await {
                Ok(positions) => return Ok(positions),
                Err(e) => {
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
