//! `PlannerService/Plan`: the cook planner (`emberline_processors::cook::plan`) behind gRPC.
//! A pure computation on the request: no store, no log.

use emberline_processors::cook::plan::{Cut, FRIDGE_C, Plan, PlanError, PlanRequest, plan};
use emberline_proto::v1::planner_service_server::PlannerService;
use emberline_proto::v1::{PlanRequest as PlanRpc, PlanResponse, TimeRange};
use tonic::{Request, Response, Status};

use crate::Gateway;

/// Minutes from lighting a smoker to a steady pit, when the request does not say.
const WARMUP_MIN: f64 = 45.0;

fn range(r: emberline_processors::cook::plan::TimeRange) -> TimeRange {
    TimeRange {
        earliest_ms: r.earliest_ms,
        likely_ms: r.likely_ms,
        latest_ms: r.latest_ms,
    }
}

/// The planner's request from the RPC's, with the cut's usual values for what is absent.
pub(crate) fn request(r: &PlanRpc) -> Result<PlanRequest, Status> {
    if r.meat.trim().is_empty() {
        return Err(Status::invalid_argument(
            "meat is empty: say what is cooking (e.g. \"pork shoulder\")",
        ));
    }
    let cut = Cut::from_words(&r.meat);
    Ok(PlanRequest {
        serve_at_ms: r.serve_at_ms,
        cut,
        weight_kg: r.weight_kg,
        target_c: r.target_c.unwrap_or_else(|| cut.usual_target_c()),
        rest_min: r.rest_min.unwrap_or_else(|| cut.usual_rest_min()),
        pit_c: r.pit_c.unwrap_or_else(|| cut.usual_pit_c()),
        start_c: r.start_c.unwrap_or(FRIDGE_C),
        wrap: r.wrap,
        warmup_min: r.warmup_min.unwrap_or(WARMUP_MIN),
    })
}

fn response(request: &PlanRequest, p: Plan) -> PlanResponse {
    PlanResponse {
        light_at_ms: p.light_at_ms,
        put_on_at_ms: p.put_on_at_ms,
        stall: p.stall.map(range),
        wrap_at: p.wrap_at.map(range),
        pull_at: Some(range(p.pull_at)),
        serve_at_ms: request.serve_at_ms,
        cut: request.cut.name().to_owned(),
        target_c: request.target_c,
        pit_c: request.pit_c,
        rest_min: request.rest_min,
        cook_hours_fast: p.cook_hours.0,
        cook_hours_usual: p.cook_hours.1,
        cook_hours_slow: p.cook_hours.2,
        based_on: format!("typical {}s", request.cut.name().replace('_', " ")),
    }
}

#[tonic::async_trait]
impl PlannerService for Gateway {
    async fn plan(&self, request: Request<PlanRpc>) -> Result<Response<PlanResponse>, Status> {
        let asked = request.into_inner();
        let planned = self::request(&asked)?;
        match plan(&planned) {
            Ok(p) => Ok(Response::new(response(&planned, p))),
            Err(e @ (PlanError::OutOfRange { .. } | PlanError::PitTooCool { .. })) => {
                Err(Status::invalid_argument(e.to_string()))
            }
        }
    }
}
