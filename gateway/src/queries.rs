//! Query RPCs, answered from the projection store.

use emberline_proto::v1::device_service_server::DeviceService;
use emberline_proto::v1::reading_service_server::ReadingService;
use emberline_proto::v1::{
    Device, GetHistoryRequest, GetHistoryResponse, GetLatestRequest, GetLatestResponse,
    HistoryPoint, ListDevicesRequest, ListDevicesResponse, ProbeState, Trend,
};
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::status::from_projection;

/// Largest history answer, points.
const MAX_HISTORY_POINTS: usize = 100_000;

pub(crate) fn trend_to_proto(t: &emberline_projections::Trend) -> Trend {
    Trend {
        smoothed_c: t.smoothed_c,
        rate_c_per_min: t.rate_c_per_min,
        min_c: t.min_c,
        max_c: t.max_c,
        window_ms: t.window_ms,
        samples: t.samples,
    }
}

#[tonic::async_trait]
impl DeviceService for Gateway {
    async fn list_devices(
        &self,
        _request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let devices = self.store.devices().await.map_err(from_projection)?;
        Ok(Response::new(ListDevicesResponse {
            devices: devices
                .into_iter()
                .map(|d| Device {
                    device_id: d.device_id,
                    probe_count: d.probes,
                    last_event_time_ms: d.last_event_time,
                    last_received_time_ms: d.last_received_time,
                })
                .collect(),
        }))
    }

    async fn get_latest(
        &self,
        request: Request<GetLatestRequest>,
    ) -> Result<Response<GetLatestResponse>, Status> {
        let device_id = request.into_inner().device_id;
        if device_id.is_empty() {
            return Err(Status::invalid_argument("device_id is required"));
        }
        let probes = self
            .store
            .latest(&device_id)
            .await
            .map_err(from_projection)?;
        if probes.is_empty() {
            return Err(Status::not_found(format!("no device {device_id:?}")));
        }
        Ok(Response::new(GetLatestResponse {
            probes: probes
                .into_iter()
                .map(|p| ProbeState {
                    trend: p.trend.as_ref().map(trend_to_proto),
                    device_id: p.device_id,
                    probe_id: p.probe_id,
                    event_time_ms: p.event_time,
                    received_time_ms: p.received_time,
                    temperature_c: p.temperature_c,
                    source: p.source,
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl ReadingService for Gateway {
    async fn get_history(
        &self,
        request: Request<GetHistoryRequest>,
    ) -> Result<Response<GetHistoryResponse>, Status> {
        let r = request.into_inner();
        if r.device_id.is_empty() || r.probe_id.is_empty() {
            return Err(Status::invalid_argument(
                "device_id and probe_id are required",
            ));
        }
        if r.from_ms > r.to_ms {
            return Err(Status::invalid_argument(format!(
                "from_ms ({}) is after to_ms ({})",
                r.from_ms, r.to_ms
            )));
        }
        let limit = match r.limit as usize {
            0 => MAX_HISTORY_POINTS,
            n => n.min(MAX_HISTORY_POINTS),
        };
        let points = self
            .store
            .history(&r.device_id, &r.probe_id, r.from_ms, r.to_ms, limit)
            .await
            .map_err(from_projection)?;
        Ok(Response::new(GetHistoryResponse {
            points: points
                .into_iter()
                .map(|p| HistoryPoint {
                    event_time_ms: p.event_time,
                    received_time_ms: p.received_time,
                    temperature_c: p.temperature_c,
                })
                .collect(),
        }))
    }
}
