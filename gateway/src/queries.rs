//! Query RPCs, answered from the projection store.

use emberline_proto::v1::device_service_server::DeviceService;
use emberline_proto::v1::reading_service_server::ReadingService;
use emberline_proto::v1::{
    DeleteDeviceRequest, DeleteDeviceResponse, Device, DeviceUpdate, GetHistoryRequest,
    GetHistoryResponse, GetLatestRequest, GetLatestResponse, HistoryPoint, HistoryStep,
    ListDevicesRequest, ListDevicesResponse, ProbeState, SubscribeDevicesRequest, Trend,
};
use std::collections::BTreeMap;
use tokio_stream::wrappers::ReceiverStream;

use emberline_projections::{DeviceInfo, DeviceSummary};
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::status::to_status;
use crate::tenancy::Tenant;

/// Largest history answer, points.
const MAX_HISTORY_POINTS: usize = 100_000;
/// The shortest and longest step a summarised history may ask for: a second, a day.
const MIN_HISTORY_STEP_MS: u32 = 1_000;
const MAX_HISTORY_STEP_MS: u32 = 86_400_000;

/// Response header of `GetHistory` when the range reaches before the retained history: the
/// epoch ms history is kept from (points before it have expired).
pub const HISTORY_RETAINED_FROM_HEADER: &str = "emberline-history-retained-from-ms";

fn device_to_proto(
    info: DeviceInfo,
    summary: Option<&DeviceSummary>,
    probe_ids: Vec<String>,
) -> Device {
    Device {
        name: info.name.unwrap_or_else(|| info.device_id.clone()),
        removed: info.removed_time.is_some(),
        device_id: info.device_id,
        probe_count: summary.map_or(0, |s| s.probes),
        last_event_time_ms: summary.map_or(0, |s| s.last_event_time),
        last_received_time_ms: summary.map_or(0, |s| s.last_received_time),
        model: info.model,
        probe_ids,
        probe_labels: info.probe_labels.into_iter().collect(),
        online: info.online,
        battery_percent: info.battery_percent,
        signal_dbm: info.signal_dbm,
        firmware: info.firmware,
        status_time_ms: info.status_time.unwrap_or(0),
        targets_c: info.targets_c.into_iter().collect(),
        cook_id: info.cook_id,
        status_note: info.status_note,
        attributes: info.attributes.into_iter().collect(),
    }
}

pub(crate) fn history_to_proto(p: emberline_projections::HistoryPoint) -> HistoryPoint {
    HistoryPoint {
        event_time_ms: p.event_time,
        received_time_ms: p.received_time,
        temperature_c: p.temperature_c,
    }
}

fn step_to_proto(s: emberline_projections::HistoryStep) -> HistoryStep {
    HistoryStep {
        start_ms: s.start,
        readings: s.readings,
        mean_c: s.mean_c,
        min_c: s.min_c,
        max_c: s.max_c,
    }
}

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

impl Gateway {
    /// Every device of `tenant` as `ListDevices` answers: ordered by id, under the caller's
    /// ids, removed ones only if asked.
    pub(crate) async fn describe_devices(
        &self,
        tenant: &Tenant,
        include_removed: bool,
    ) -> Result<Vec<Device>, Status> {
        let mut summaries = self.store.devices().await.map_err(to_status)?;
        summaries.retain(|s| tenant.owns(&s.device_id));
        let mut infos: BTreeMap<String, DeviceInfo> = self
            .store
            .device_infos()
            .await
            .map_err(to_status)?
            .into_iter()
            .filter(|i| tenant.owns(&i.device_id))
            .map(|i| (i.device_id.clone(), i))
            .collect();
        let mut devices = Vec::new();
        for summary in summaries {
            let info = infos
                .remove(&summary.device_id)
                .unwrap_or_else(|| DeviceInfo::new(&summary.device_id));
            let probe_ids = self
                .store
                .latest(&summary.device_id)
                .await
                .map_err(to_status)?
                .into_iter()
                .map(|p| p.probe_id)
                .collect();
            devices.push(device_to_proto(info, Some(&summary), probe_ids));
        }
        // Registered devices that have not sent a reading yet.
        devices.extend(
            infos
                .into_values()
                .map(|info| device_to_proto(info, None, Vec::new())),
        );
        for d in &mut devices {
            self.apply_names(d);
        }
        devices
            .retain_mut(|d| (include_removed || !d.removed) && tenant.unqualify(&mut d.device_id));
        devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(devices)
    }

    /// One device (qualified id) as `ListDevices` describes it, removed or not, still under
    /// its qualified id; `None` when Emberline knows nothing of it.
    pub(crate) async fn describe_device(&self, device_id: &str) -> Result<Option<Device>, Status> {
        let info = self.store.device_info(device_id).await.map_err(to_status)?;
        let latest = self.store.latest(device_id).await.map_err(to_status)?;
        // What `devices()` sums up from the same rows.
        let summary = (!latest.is_empty()).then(|| DeviceSummary {
            device_id: device_id.to_owned(),
            probes: u32::try_from(latest.len()).unwrap_or(u32::MAX),
            last_event_time: latest.iter().map(|p| p.event_time).max().unwrap_or(0),
            last_received_time: latest.iter().map(|p| p.received_time).max().unwrap_or(0),
        });
        if info.is_none() && summary.is_none() {
            return Ok(None);
        }
        let info = info.unwrap_or_else(|| DeviceInfo::new(device_id));
        let probe_ids = latest.into_iter().map(|p| p.probe_id).collect();
        let mut device = device_to_proto(info, summary.as_ref(), probe_ids);
        self.apply_names(&mut device);
        Ok(Some(device))
    }

    /// The name and probe labels its users gave the device, over its source's.
    fn apply_names(&self, device: &mut Device) {
        if let Some(names) = self
            .settings
            .as_ref()
            .and_then(|s| s.names_of(&device.device_id))
        {
            names.apply(&mut device.name, &mut device.probe_labels);
        }
    }
}

#[tonic::async_trait]
impl DeviceService for Gateway {
    type SubscribeDevicesStream = ReceiverStream<Result<DeviceUpdate, Status>>;

    async fn subscribe_devices(
        &self,
        request: Request<SubscribeDevicesRequest>,
    ) -> Result<Response<Self::SubscribeDevicesStream>, Status> {
        let tenant = Tenant::of(&request)?;
        let credential = crate::auth::Credential::of(&request);
        let device = tenant.filter(&request.into_inner().device_id)?;
        self.device_feed(tenant, device, credential).await
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let include_removed = request.into_inner().include_removed;
        let devices = self.describe_devices(&tenant, include_removed).await?;
        Ok(Response::new(ListDevicesResponse { devices }))
    }

    async fn delete_device(
        &self,
        request: Request<DeleteDeviceRequest>,
    ) -> Result<Response<DeleteDeviceResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let r = request.into_inner();
        if r.device_id.is_empty() {
            return Err(Status::invalid_argument("device_id is required"));
        }
        self.delete_device(&tenant.device(&r.device_id)?, &r.reason)
            .await?;
        Ok(Response::new(DeleteDeviceResponse {}))
    }

    async fn get_latest(
        &self,
        request: Request<GetLatestRequest>,
    ) -> Result<Response<GetLatestResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let asked = request.into_inner().device_id;
        if asked.is_empty() {
            return Err(Status::invalid_argument("device_id is required"));
        }
        let device_id = tenant.device(&asked)?;
        let mut probes = self.store.latest(&device_id).await.map_err(to_status)?;
        if let Some((from, to)) = self.share_window(&tenant).await? {
            probes.retain(|p| (from..=to).contains(&p.event_time));
        }
        if probes.is_empty() {
            return Err(Status::not_found(format!("no device {asked:?}")));
        }
        Ok(Response::new(GetLatestResponse {
            probes: probes
                .into_iter()
                .map(|p| ProbeState {
                    trend: p.trend.as_ref().map(trend_to_proto),
                    device_id: asked.clone(),
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
        let tenant = Tenant::of(&request)?;
        let r = request.into_inner();
        if r.device_id.is_empty() || r.probe_id.is_empty() {
            return Err(Status::invalid_argument(
                "device_id and probe_id are required",
            ));
        }
        let device_id = tenant.device(&r.device_id)?;
        let mut r = r;
        if let Some((from, to)) = self.share_window(&tenant).await? {
            r.from_ms = r.from_ms.max(from);
            r.to_ms = r.to_ms.min(to.saturating_add(1)).max(r.from_ms);
        }
        if r.step_ms != 0 && !(MIN_HISTORY_STEP_MS..=MAX_HISTORY_STEP_MS).contains(&r.step_ms) {
            return Err(Status::invalid_argument(format!(
                "step_ms {} is outside {MIN_HISTORY_STEP_MS}..={MAX_HISTORY_STEP_MS} \
                 (0 asks for every point)",
                r.step_ms
            )));
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
        // History before the retention's cut-off is gone: a range wholly before it is
        // answered OUT_OF_RANGE saying so, not with an empty list that reads as "no data";
        // a range reaching into it carries the cut-off in the `emberline-history-retained-from-ms`
        // response header.
        let retained_from = self
            .store
            .history_retained_from()
            .await
            .map_err(to_status)?;
        if let Some(from) = retained_from
            && r.to_ms <= from
        {
            return Err(Status::out_of_range(format!(
                "history before {from} ms (epoch) has expired (history.retention_days); \
                 the requested range [{}, {}) lies before it",
                r.from_ms, r.to_ms
            )));
        }
        let mut response = Response::new(if r.step_ms == 0 {
            let points = self
                .store
                .history(&device_id, &r.probe_id, r.from_ms, r.to_ms, limit)
                .await
                .map_err(to_status)?;
            GetHistoryResponse {
                points: points.into_iter().map(history_to_proto).collect(),
                steps: Vec::new(),
            }
        } else {
            let steps = self
                .store
                .history_steps(
                    &device_id,
                    &r.probe_id,
                    r.from_ms,
                    r.to_ms,
                    i64::from(r.step_ms),
                    limit,
                )
                .await
                .map_err(to_status)?;
            GetHistoryResponse {
                points: Vec::new(),
                steps: steps.into_iter().map(step_to_proto).collect(),
            }
        });
        if let Some(from) = retained_from
            && r.from_ms < from
            && let Ok(value) = from.to_string().parse()
        {
            response
                .metadata_mut()
                .insert(HISTORY_RETAINED_FROM_HEADER, value);
        }
        Ok(response)
    }
}
