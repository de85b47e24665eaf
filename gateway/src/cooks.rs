//! Cook sessions: start, note, end, list and fetch cooks; targets within them.
//!
//! Starting, noting and ending append `CookStarted`, `CookNoteAdded` and `CookEnded` to
//! `cook.commands`; the device projector folds them into sessions. A cook id is the device id
//! and the start time, so it is known at once, before the projection catches up.

use std::collections::BTreeMap;

use emberline_log::topics;
use emberline_projections::CookSession;
use emberline_proto::v1::cook_service_server::CookService;
use emberline_proto::v1::{
    AddNoteRequest, AddNoteResponse, Cook, CookNote, EndCookRequest, EndCookResponse,
    GetCookRequest, GetCookResponse, ListCooksRequest, ListCooksResponse, ProbeHistory,
    SetTargetRequest, SetTargetResponse, StartCookRequest, StartCookResponse,
};
use emberline_schemas::events::{CookEnded, CookNoteAdded, CookStarted};
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::commands::TARGET_RANGE_C;
use crate::queries::history_to_proto;
use crate::status::to_status;
use crate::tenancy::Tenant;
use emberline_common::clock::now_ms;

/// Longest "what is cooking", characters.
const MAX_WHAT: usize = 200;
/// Longest note, characters.
const MAX_NOTE: usize = 2_000;
/// Most readings returned per probe of a cook.
const MAX_POINTS: usize = 100_000;
/// Weights a cook may name, kg (the planner's range).
const WEIGHT_KG: std::ops::RangeInclusive<f64> = 0.2..=30.0;
/// Rests a cook may plan, minutes.
const REST_MIN: std::ops::RangeInclusive<f64> = 0.0..=360.0;
/// How far ahead a cook may plan to serve, ms.
const SERVE_WITHIN_MS: i64 = 7 * 24 * 3_600_000;

/// The plan fields of a `StartCook`, checked: (meat, weight, serve at, rest).
type PlanFields = (Option<String>, Option<f64>, Option<i64>, Option<f64>);

fn check_plan(r: &StartCookRequest, now_ms: i64) -> Result<PlanFields, Status> {
    let meat = match r.meat.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            return Err(Status::invalid_argument(
                "meat is empty: name the meat (e.g. \"pork shoulder\") or leave it out",
            ));
        }
        Some(m) if m.chars().count() > MAX_WHAT => {
            return Err(Status::invalid_argument(format!(
                "meat is longer than {MAX_WHAT} characters"
            )));
        }
        Some(m) => Some(m.to_owned()),
    };
    if let Some(w) = r.weight_kg
        && !(w.is_finite() && WEIGHT_KG.contains(&w))
    {
        return Err(Status::invalid_argument(format!(
            "weight_kg {w} is outside {}…{} kg",
            WEIGHT_KG.start(),
            WEIGHT_KG.end()
        )));
    }
    if let Some(rest) = r.rest_min
        && !(rest.is_finite() && REST_MIN.contains(&rest))
    {
        return Err(Status::invalid_argument(format!(
            "rest_min {rest} is outside {}…{} minutes",
            REST_MIN.start(),
            REST_MIN.end()
        )));
    }
    if let Some(at) = r.serve_at_ms {
        if at <= now_ms {
            return Err(Status::invalid_argument(format!(
                "serve_at_ms {at} is not in the future (now is {now_ms})"
            )));
        }
        if at - now_ms > SERVE_WITHIN_MS {
            return Err(Status::invalid_argument(format!(
                "serve_at_ms {at} is more than 7 days ahead (now is {now_ms})"
            )));
        }
    }
    Ok((meat, r.weight_kg, r.serve_at_ms, r.rest_min))
}

/// A cook as the API answers it; `device_id` is the caller's id of the device.
fn cook_to_proto(c: CookSession, device_id: String) -> Cook {
    Cook {
        cook_id: c.cook_id,
        device_id,
        what: c.what.unwrap_or_default(),
        started_ms: c.started_time,
        ended_ms: c.ended_time,
        targets_c: c.targets_c.into_iter().collect(),
        pit_min_c: c.pit_min_c,
        pit_max_c: c.pit_max_c,
        meat: c.meat,
        weight_kg: c.weight_kg,
        serve_at_ms: c.serve_at_ms,
        rest_min: c.rest_min,
        notes: c
            .notes
            .into_iter()
            .map(|n| CookNote {
                time_ms: n.time,
                text: n.text,
            })
            .collect(),
    }
}

fn check_temperature(what: &str, t: f64) -> Result<(), Status> {
    if t.is_finite() && TARGET_RANGE_C.contains(&t) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{what} {t} °C is outside {}…{} °C",
            TARGET_RANGE_C.start(),
            TARGET_RANGE_C.end()
        )))
    }
}

impl Gateway {
    /// The tenant's cook `cook_id` (another tenant's is `NOT_FOUND`, as a missing one).
    pub(crate) async fn existing_cook(
        &self,
        tenant: &Tenant,
        cook_id: &str,
    ) -> Result<CookSession, Status> {
        if cook_id.is_empty() {
            return Err(Status::invalid_argument("cook_id is required"));
        }
        self.store
            .cook(cook_id)
            .await
            .map_err(to_status)?
            .filter(|c| tenant.sees_cook(c))
            .ok_or_else(|| Status::not_found(format!("no cook {cook_id:?}")))
    }

    /// For a share link's caller, the time window of its cook (readings outside it are
    /// not theirs to see); `None` for everyone else.
    pub(crate) async fn share_window(&self, tenant: &Tenant) -> Result<Option<(i64, i64)>, Status> {
        let Some(cook_id) = tenant.shared_cook() else {
            return Ok(None);
        };
        let cook = self.existing_cook(tenant, cook_id).await?;
        Ok(Some(Tenant::window(&cook)))
    }
}

#[tonic::async_trait]
impl CookService for Gateway {
    async fn set_target(
        &self,
        request: Request<SetTargetRequest>,
    ) -> Result<Response<SetTargetResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        Ok(Response::new(
            self.set_target_command(&tenant, request.into_inner())
                .await?,
        ))
    }

    async fn start_cook(
        &self,
        request: Request<StartCookRequest>,
    ) -> Result<Response<StartCookResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let mut r = request.into_inner();
        if r.device_id.is_empty() {
            return Err(Status::invalid_argument("device_id is required"));
        }
        r.device_id = tenant.device(&r.device_id)?;
        if r.what.chars().count() > MAX_WHAT {
            return Err(Status::invalid_argument(format!(
                "what is longer than {MAX_WHAT} characters"
            )));
        }
        for (probe, t) in &r.targets_c {
            check_temperature(&format!("the target of {probe}"), *t)?;
        }
        for t in r.pit_min_c.iter().chain(&r.pit_max_c) {
            check_temperature("the pit band", *t)?;
        }
        if let (Some(lo), Some(hi)) = (r.pit_min_c, r.pit_max_c)
            && lo >= hi
        {
            return Err(Status::invalid_argument(format!(
                "the pit band {lo}…{hi} °C is empty"
            )));
        }
        let (meat, weight_kg, serve_at_ms, rest_min) = check_plan(&r, now_ms())?;
        let info = self.known_device(&r.device_id).await?;
        if let Some(active) = info.and_then(|i| i.cook_id) {
            return Err(Status::failed_precondition(format!(
                "device {:?} already has a cook in progress ({active}); end it first",
                r.device_id
            )));
        }
        let event_time = now_ms();
        let cook_id = format!("{}-{event_time}", r.device_id);
        let event = CookStarted {
            cook_id: cook_id.clone(),
            device_id: r.device_id.clone(),
            event_time,
            what: (!r.what.is_empty()).then_some(r.what),
            targets_c: r.targets_c.into_iter().collect::<BTreeMap<_, _>>(),
            pit_min_c: r.pit_min_c,
            pit_max_c: r.pit_max_c,
            meat,
            weight_kg,
            serve_at_ms,
            rest_min,
        };
        self.append_command(topics::COOK_COMMANDS, &r.device_id, &event, event_time)
            .await?;
        tracing::info!(%cook_id, "cook started");
        Ok(Response::new(StartCookResponse { cook_id }))
    }

    async fn add_note(
        &self,
        request: Request<AddNoteRequest>,
    ) -> Result<Response<AddNoteResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let r = request.into_inner();
        let text = r.text.trim();
        if text.is_empty() || text.chars().count() > MAX_NOTE {
            return Err(Status::invalid_argument(format!(
                "a note needs 1 to {MAX_NOTE} characters"
            )));
        }
        let cook = self.existing_cook(&tenant, &r.cook_id).await?;
        let event_time = now_ms();
        let event = CookNoteAdded {
            cook_id: cook.cook_id,
            device_id: cook.device_id.clone(),
            event_time,
            text: text.to_owned(),
        };
        self.append_command(topics::COOK_COMMANDS, &cook.device_id, &event, event_time)
            .await?;
        Ok(Response::new(AddNoteResponse {}))
    }

    async fn end_cook(
        &self,
        request: Request<EndCookRequest>,
    ) -> Result<Response<EndCookResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let cook = self
            .existing_cook(&tenant, &request.into_inner().cook_id)
            .await?;
        if cook.ended_time.is_some() {
            return Err(Status::failed_precondition(format!(
                "cook {:?} has already ended",
                cook.cook_id
            )));
        }
        let event_time = now_ms();
        let event = CookEnded {
            cook_id: cook.cook_id.clone(),
            device_id: cook.device_id.clone(),
            event_time,
        };
        self.append_command(topics::COOK_COMMANDS, &cook.device_id, &event, event_time)
            .await?;
        tracing::info!(cook_id = %cook.cook_id, "cook ended");
        Ok(Response::new(EndCookResponse {}))
    }

    async fn list_cooks(
        &self,
        request: Request<ListCooksRequest>,
    ) -> Result<Response<ListCooksResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let device = tenant.filter(&request.into_inner().device_id)?;
        let cooks = self
            .store
            .cooks(device.as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListCooksResponse {
            cooks: cooks
                .into_iter()
                .filter(|c| tenant.sees_cook(c))
                .filter_map(|c| {
                    let own = tenant.own(&c.device_id)?;
                    Some(cook_to_proto(c, own))
                })
                .collect(),
        }))
    }

    async fn get_cook(
        &self,
        request: Request<GetCookRequest>,
    ) -> Result<Response<GetCookResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let cook = self
            .existing_cook(&tenant, &request.into_inner().cook_id)
            .await?;
        let to = cook.ended_time.map_or(i64::MAX, |t| t.saturating_add(1));
        let mut probes = Vec::new();
        for latest in self
            .store
            .latest(&cook.device_id)
            .await
            .map_err(to_status)?
        {
            let points = self
                .store
                .history(
                    &cook.device_id,
                    &latest.probe_id,
                    cook.started_time,
                    to,
                    MAX_POINTS,
                )
                .await
                .map_err(to_status)?;
            probes.push(ProbeHistory {
                probe_id: latest.probe_id,
                points: points.into_iter().map(history_to_proto).collect(),
            });
        }
        let own = tenant.own(&cook.device_id).unwrap_or_default();
        Ok(Response::new(GetCookResponse {
            cook: Some(cook_to_proto(cook, own)),
            probes,
        }))
    }
}
