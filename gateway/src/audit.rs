//! The audit trail in the log: security events appended to the `audit` topic (JSON, keyed
//! by tenant, so a tenant's events keep their order), and `AuditService`, which reads them
//! back for a tenant's owners.
//!
//! Events are handed over without blocking the call that caused them and appended in
//! batches by one task, retried with backoff while the log refuses them. At most
//! [`PENDING`] wait; beyond that an event is dropped with an error line (the `audit` log
//! target has every event regardless).

use std::sync::Arc;
use std::time::Duration;

use emberline_auth::{AuditEvent, AuditSink};
use emberline_common::Backoff;
use emberline_log::{EventLog, NewRecord, topics};
use emberline_proto::v1::audit_service_server::AuditService;
use emberline_proto::v1::{AuditEntry, ListAuditEventsRequest, ListAuditEventsResponse};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::auth::caller_of;
use crate::status::to_status;

/// Events waiting to be appended, at most.
const PENDING: usize = 10_000;
/// Largest answer.
const MAX_LIMIT: u32 = 1_000;
/// How long reading the trail may wait for the log.
const READ_PATIENCE: Duration = Duration::from_secs(10);

/// Appends security events to the log.
struct LogAudit {
    tx: mpsc::Sender<AuditEvent>,
}

impl AuditSink for LogAudit {
    fn record(&self, event: AuditEvent) {
        if let Err(e) = self.tx.try_send(event) {
            tracing::error!(error = %e, "audit event not appended: too many waiting");
        }
    }
}

/// The record of `event` in the `audit` topic: JSON, keyed by tenant.
pub fn audit_record(event: &AuditEvent) -> Option<NewRecord> {
    Some(NewRecord {
        key: event.tenant.as_bytes().to_vec(),
        value: serde_json::to_vec(event).ok()?,
        timestamp_ms: event.time_ms.max(1),
    })
}

/// A sink appending to `log`'s `audit` topic until `shutdown` (what waits then is appended
/// first).
pub fn audit_log(log: Arc<dyn EventLog>, shutdown: CancellationToken) -> Arc<dyn AuditSink> {
    let (tx, mut rx) = mpsc::channel::<AuditEvent>(PENDING);
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                e = rx.recv() => e,
                () = shutdown.cancelled() => rx.try_recv().ok(),
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < 256
                && let Ok(more) = rx.try_recv()
            {
                batch.push(more);
            }
            let records: Vec<NewRecord> = batch.iter().filter_map(audit_record).collect();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
            loop {
                match log.append(topics::AUDIT, records.clone()).await {
                    Ok(_) => break,
                    Err(e) if shutdown.is_cancelled() => {
                        tracing::error!(error = %e, events = records.len(), "audit events not appended at shutdown");
                        break;
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, ?delay, "appending audit events failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    });
    Arc::new(LogAudit { tx })
}

fn entry(e: AuditEvent) -> AuditEntry {
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    AuditEntry {
        time_ms: e.time_ms,
        kind,
        actor: e.actor,
        subject: e.subject,
        address: e.address,
    }
}

#[tonic::async_trait]
impl AuditService for Gateway {
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => n.min(MAX_LIMIT),
        } as usize;
        let partitions = self
            .log
            .partitions(topics::AUDIT)
            .await
            .map_err(to_status)?;
        let mut events = Vec::new();
        for partition in 0..partitions {
            let end = self
                .log
                .end_offset(topics::AUDIT, partition)
                .await
                .map_err(to_status)?;
            let start = self
                .log
                .start_offset(topics::AUDIT, partition)
                .await
                .map_err(to_status)?;
            let mut reader = self
                .log
                .reader(topics::AUDIT, partition, start)
                .await
                .map_err(to_status)?;
            // Records below `end` exist; a Kafka reader may take a moment to fetch them.
            let deadline = tokio::time::Instant::now() + READ_PATIENCE;
            while reader.position() < end {
                let batch = reader
                    .next_batch(1_024, Duration::from_millis(500))
                    .await
                    .map_err(to_status)?;
                if batch.is_empty() && tokio::time::Instant::now() >= deadline {
                    return Err(Status::unavailable(
                        "the audit topic did not answer in time; try again",
                    ));
                }
                for record in batch.into_iter().filter(|r| r.offset < end) {
                    let Ok(event) = serde_json::from_slice::<AuditEvent>(&record.value) else {
                        continue;
                    };
                    if event.tenant == caller.tenant && event.time_ms >= r.since_ms {
                        events.push(event);
                    }
                }
            }
        }
        events.sort_by_key(|e| e.time_ms);
        let skip = events.len().saturating_sub(limit);
        Ok(Response::new(ListAuditEventsResponse {
            events: events.into_iter().skip(skip).map(entry).collect(),
        }))
    }
}
