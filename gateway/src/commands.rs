//! Command RPCs: each validates its request against the projections and appends one event.
//!
//! The gateway does not change projections itself; the processors fold the appended event
//! like any other, so a command and a replay of it give the same state.

use emberline_log::{NewRecord, topics};
use emberline_proto::v1::{SetTargetRequest, SetTargetResponse};
use emberline_schemas::Event;
use emberline_schemas::events::{DeviceRemoved, TargetSet};
use tonic::Status;

use crate::Gateway;
use crate::status::to_status;
use crate::tenancy::Tenant;

/// Targets outside this range are refused: no food or pit is meant to reach them.
pub(crate) const TARGET_RANGE_C: std::ops::RangeInclusive<f64> = 0.0..=500.0;

use emberline_common::clock::now_ms;

impl Gateway {
    /// Encodes `event` and appends it to `topic` keyed by `device_id`.
    pub(crate) async fn append_command<E: Event>(
        &self,
        topic: &str,
        device_id: &str,
        event: &E,
        event_time: i64,
    ) -> Result<emberline_log::Position, Status> {
        let value = self.codec.encode(event).map_err(to_status)?;
        let record = NewRecord {
            key: device_id.as_bytes().to_vec(),
            value,
            timestamp_ms: event_time,
        };
        let positions = self
            .log
            .append(topic, vec![record])
            .await
            .map_err(to_status)?;
        positions
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the log returned no position for the command"))
    }

    /// Removes a device, after checking that it exists and is not removed already.
    pub(crate) async fn delete_device(&self, device_id: &str, reason: &str) -> Result<(), Status> {
        if device_id.is_empty() {
            return Err(Status::invalid_argument("device_id is required"));
        }
        let info = self.device_info(device_id).await?;
        let has_readings = !self
            .store
            .latest(device_id)
            .await
            .map_err(to_status)?
            .is_empty();
        match info {
            Some(info) if info.is_removed() => {
                return Err(Status::failed_precondition(format!(
                    "device {device_id:?} is already removed"
                )));
            }
            None if !has_readings => {
                return Err(Status::not_found(format!("no device {device_id:?}")));
            }
            _ => {}
        }
        let event_time = now_ms();
        let event = DeviceRemoved {
            device_id: device_id.to_owned(),
            event_time,
            reason: (!reason.is_empty()).then(|| reason.to_owned()),
        };
        self.append_command(topics::DEVICE_EVENTS, device_id, &event, event_time)
            .await?;
        tracing::info!(device_id, reason, "device removed");
        Ok(())
    }

    /// The device a command names, when Emberline knows it (registered and not removed, or
    /// with readings); `NOT_FOUND` otherwise. Its description, when it has one.
    pub(crate) async fn known_device(
        &self,
        device_id: &str,
    ) -> Result<Option<emberline_projections::DeviceInfo>, Status> {
        let info = self.device_info(device_id).await?;
        let known = info.as_ref().is_some_and(|i| !i.is_removed())
            || !self
                .store
                .latest(device_id)
                .await
                .map_err(to_status)?
                .is_empty();
        if !known {
            return Err(Status::not_found(format!("no device {device_id:?}")));
        }
        Ok(info)
    }

    pub(crate) async fn device_info(
        &self,
        device_id: &str,
    ) -> Result<Option<emberline_projections::DeviceInfo>, Status> {
        self.store.device_info(device_id).await.map_err(to_status)
    }
}

impl Gateway {
    /// `CookService/SetTarget`.
    pub(crate) async fn set_target_command(
        &self,
        tenant: &Tenant,
        mut r: SetTargetRequest,
    ) -> Result<SetTargetResponse, Status> {
        if r.device_id.is_empty() || r.probe_id.is_empty() {
            return Err(Status::invalid_argument(
                "device_id and probe_id are required",
            ));
        }
        r.device_id = tenant.device(&r.device_id)?;
        if let Some(t) = r.target_c
            && !(t.is_finite() && TARGET_RANGE_C.contains(&t))
        {
            return Err(Status::invalid_argument(format!(
                "target {t} °C is outside {}…{} °C",
                TARGET_RANGE_C.start(),
                TARGET_RANGE_C.end()
            )));
        }
        let info = self.device_info(&r.device_id).await?;
        if info.as_ref().is_some_and(|i| i.is_removed()) {
            return Err(Status::not_found(format!(
                "device {:?} was removed",
                r.device_id
            )));
        }
        let probes = self.store.latest(&r.device_id).await.map_err(to_status)?;
        let labelled = info
            .as_ref()
            .is_some_and(|i| i.probe_labels.contains_key(&r.probe_id));
        if !labelled && !probes.iter().any(|p| p.probe_id == r.probe_id) {
            return Err(Status::not_found(format!(
                "device {:?} has no probe {:?}",
                r.device_id, r.probe_id
            )));
        }
        let event_time = now_ms();
        let event = TargetSet {
            cook_id: info.and_then(|i| i.cook_id).unwrap_or_default(),
            device_id: r.device_id.clone(),
            event_time,
            probe_id: r.probe_id.clone(),
            target_c: r.target_c,
        };
        let at = self
            .append_command(topics::COOK_COMMANDS, &r.device_id, &event, event_time)
            .await?;
        tracing::info!(device_id = %r.device_id, probe_id = %r.probe_id, target_c = ?r.target_c, "target set");
        Ok(SetTargetResponse {
            partition: at.partition,
            offset: at.offset,
        })
    }
}
