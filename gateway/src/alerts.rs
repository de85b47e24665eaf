//! Predictions and alerts: queries from projections, subscriptions from `derived.predictions`
//! and `alerts`, and the alert commands (rules, acknowledgements, snoozes) appended to
//! `cook.commands` for the cook processor.

use emberline_log::topics;
use emberline_projections::{AlertRecord, AlertRuleRecord, ProbePrediction};
use emberline_proto::v1::alert_service_server::AlertService;
use emberline_proto::v1::prediction_service_server::PredictionService;
use emberline_proto::v1::{
    AcknowledgeAlertRequest, AcknowledgeAlertResponse, Alert, AlertEvent, AlertRule,
    DeleteAlertRuleRequest, DeleteAlertRuleResponse, ListAlertRulesRequest, ListAlertRulesResponse,
    ListAlertsRequest, ListAlertsResponse, ListPredictionsRequest, ListPredictionsResponse,
    Prediction, PredictionEvent, SetAlertRuleRequest, SetAlertRuleResponse, SnoozeAlertRequest,
    SnoozeAlertResponse, SubscribeAlertsRequest, SubscribePredictionsRequest,
};
use emberline_schemas::events::{
    AlertAcknowledged, AlertCleared, AlertRaised, AlertRuleSet, PredictionUpdated,
};
use emberline_schemas::{CodecError, EventCodec, EventKind};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::status::to_status;
use crate::subscriptions::{Tail, Tailed};
use crate::tenancy::Tenant;
use emberline_common::clock::now_ms;

/// Longest snooze, minutes.
const MAX_SNOOZE_MIN: u32 = 1_440;
/// Shortest repeat interval, seconds.
const MIN_REPEAT_S: f64 = 30.0;
/// Longest minimum duration, seconds.
const MAX_FOR_S: f64 = 86_400.0;

fn prediction_to_proto(p: ProbePrediction) -> Prediction {
    Prediction {
        device_id: p.device_id,
        probe_id: p.probe_id,
        cook_id: p.cook_id,
        event_time_ms: p.event_time,
        temperature_c: p.temperature_c,
        target_c: p.target_c,
        pit_c: p.pit_c,
        remaining_s: p.remaining_s,
        low_s: p.low_s,
        high_s: p.high_s,
        done_at_ms: p.done_at,
        stall: p.stall,
        phase: p.phase,
        pit_phase: p.pit_phase,
        method: p.method,
        based_on: p.based_on,
    }
}

fn alert_to_proto(a: AlertRecord) -> Alert {
    Alert {
        active: a.is_active(),
        alert_id: a.alert_id,
        rule_id: a.rule_id,
        kind: a.kind,
        device_id: a.device_id,
        probe_id: a.probe_id,
        cook_id: a.cook_id,
        raised_ms: a.raised_time,
        last_raised_ms: a.last_raised_time,
        repeats: a.repeats,
        value: a.value,
        threshold: a.threshold,
        message: a.message,
        cleared_ms: a.cleared_time,
        cleared_reason: a.cleared_reason,
        acknowledged_ms: a.acknowledged_time,
        snoozed_until_ms: a.snoozed_until,
    }
}

fn rule_to_proto(r: AlertRuleRecord) -> AlertRule {
    AlertRule {
        rule_id: r.rule_id,
        device_id: r.device_id,
        probe_id: r.probe_id,
        cook_id: r.cook_id,
        kind: r.kind,
        threshold: r.threshold,
        low: r.low,
        high: r.high,
        for_s: r.for_s,
        hysteresis: Some(r.hysteresis),
        repeat_every_s: r.repeat_every_s,
        label: r.label,
        notify: Vec::new(),
    }
}

/// Checks a rule for what the processor needs to evaluate it; the message says what to fix.
fn validate_rule(r: &AlertRule) -> Result<(), String> {
    if r.device_id.is_empty() {
        return Err("device_id: required".into());
    }
    let kind = r.kind.as_str();
    if !AlertRuleSet::KINDS.contains(&kind) {
        return Err(format!(
            "kind: unknown kind {kind:?}; one of {}",
            AlertRuleSet::KINDS.join(", ")
        ));
    }
    let device_rule = AlertRuleSet::DEVICE_KINDS.contains(&kind);
    if !device_rule && r.probe_id.as_deref().is_none_or(str::is_empty) {
        return Err(format!("probe_id: a {kind} rule needs a probe"));
    }
    let finite = |name: &str, v: Option<f64>| match v {
        Some(v) if !v.is_finite() => Err(format!("{name}: must be a finite number")),
        _ => Ok(()),
    };
    finite("threshold", r.threshold)?;
    finite("low", r.low)?;
    finite("high", r.high)?;
    match kind {
        "outside_band" => match (r.low, r.high) {
            (Some(l), Some(h)) if l < h => {}
            (None, None) => return Err("low: an outside_band rule needs low and/or high".into()),
            (Some(_), Some(_)) => return Err("low: must be below high".into()),
            _ => {}
        },
        "fire_out" | "target_reached" => {}
        _ if r.threshold.is_none() => {
            return Err(format!("threshold: a {kind} rule needs a threshold"));
        }
        _ => {}
    }
    if !(r.for_s.is_finite() && (0.0..=MAX_FOR_S).contains(&r.for_s)) {
        return Err(format!("for_s: must be between 0 and {MAX_FOR_S} s"));
    }
    if r.hysteresis.is_some_and(|h| !(h.is_finite() && h >= 0.0)) {
        return Err("hysteresis: must be zero or more".into());
    }
    if r.repeat_every_s
        .is_some_and(|s| !(s.is_finite() && s >= MIN_REPEAT_S))
    {
        return Err(format!("repeat_every_s: must be at least {MIN_REPEAT_S} s"));
    }
    if r.notify.len() > 1 && r.repeat_every_s.is_none() {
        return Err(
            "repeat_every_s: escalating to a next channel needs how long to wait for an \
             acknowledgement"
                .into(),
        );
    }
    Ok(())
}

impl Gateway {
    /// The tenant's active alert `alert_id` (another tenant's is `NOT_FOUND`).
    async fn active_alert(&self, tenant: &Tenant, alert_id: &str) -> Result<AlertRecord, Status> {
        if alert_id.is_empty() {
            return Err(Status::invalid_argument("alert_id is required"));
        }
        let alert = self
            .store
            .alert(alert_id)
            .await
            .map_err(to_status)?
            .filter(|a| tenant.owns(&a.device_id))
            .ok_or_else(|| Status::not_found(format!("no alert {alert_id:?}")))?;
        if !alert.is_active() {
            return Err(Status::failed_precondition(format!(
                "alert {alert_id:?} has cleared"
            )));
        }
        Ok(alert)
    }

    async fn acknowledge(
        &self,
        alert: &AlertRecord,
        snooze_until: Option<i64>,
    ) -> Result<(), Status> {
        let event_time = now_ms();
        let event = AlertAcknowledged {
            alert_id: alert.alert_id.clone(),
            device_id: alert.device_id.clone(),
            event_time,
            snooze_until,
        };
        self.append_command(topics::COOK_COMMANDS, &alert.device_id, &event, event_time)
            .await?;
        Ok(())
    }
}

#[tonic::async_trait]
impl AlertService for Gateway {
    type SubscribeAlertsStream = ReceiverStream<Result<AlertEvent, Status>>;

    async fn set_alert_rule(
        &self,
        request: Request<SetAlertRuleRequest>,
    ) -> Result<Response<SetAlertRuleResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let mut rule = request
            .into_inner()
            .rule
            .ok_or_else(|| Status::invalid_argument("rule is required"))?;
        validate_rule(&rule).map_err(Status::invalid_argument)?;
        rule.device_id = tenant.device(&rule.device_id)?;
        self.known_device(&rule.device_id).await?;
        let route = std::mem::take(&mut rule.notify);
        let settings = match (&self.settings, route.is_empty()) {
            (Some(settings), _) => {
                settings
                    .check_route(tenant.name(), &route)
                    .map_err(crate::settings::status)?;
                Some(settings.clone())
            }
            (None, true) => None,
            (None, false) => {
                return Err(Status::failed_precondition(
                    "notify: routes are kept in the settings, which this gateway does not keep",
                ));
            }
        };
        let event_time = now_ms();
        let rule_id = if rule.rule_id.is_empty() {
            format!("{}-{}-{event_time}", rule.device_id, rule.kind)
        } else {
            // Rule ids are one namespace across tenants: a caller's own id is qualified
            // with their tenant, so it can never name (and overwrite) another tenant's.
            tenant.rule_id(&rule.rule_id)?
        };
        let event = AlertRuleSet {
            rule_id: rule_id.clone(),
            device_id: rule.device_id.clone(),
            event_time,
            probe_id: rule.probe_id.filter(|p| !p.is_empty()),
            cook_id: rule.cook_id.filter(|c| !c.is_empty()),
            kind: rule.kind,
            threshold: rule.threshold,
            low: rule.low,
            high: rule.high,
            for_s: rule.for_s,
            hysteresis: rule.hysteresis.unwrap_or(1.0),
            repeat_every_s: rule.repeat_every_s,
            enabled: true,
            label: rule.label.filter(|l| !l.is_empty()),
        };
        // The route first: an alert the new rule raises finds it in place.
        if let Some(settings) = settings {
            settings
                .set_route(tenant.name(), &rule_id, &route, event_time)
                .await
                .map_err(crate::settings::status)?;
        }
        self.append_command(topics::COOK_COMMANDS, &rule.device_id, &event, event_time)
            .await?;
        tracing::info!(rule_id, device_id = %rule.device_id, kind = %event.kind, "alert rule set");
        Ok(Response::new(SetAlertRuleResponse { rule_id }))
    }

    async fn delete_alert_rule(
        &self,
        request: Request<DeleteAlertRuleRequest>,
    ) -> Result<Response<DeleteAlertRuleResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let mut r = request.into_inner();
        if r.device_id.is_empty() || r.rule_id.is_empty() {
            return Err(Status::invalid_argument(
                "device_id and rule_id are required",
            ));
        }
        r.device_id = tenant.device(&r.device_id)?;
        let rules = self
            .store
            .alert_rules(Some(&r.device_id))
            .await
            .map_err(to_status)?;
        let Some(rule) = rules.into_iter().find(|x| x.rule_id == r.rule_id) else {
            return Err(Status::not_found(format!(
                "no rule {:?} on device {:?}",
                r.rule_id, r.device_id
            )));
        };
        let event_time = now_ms();
        let event = AlertRuleSet {
            rule_id: rule.rule_id,
            device_id: rule.device_id,
            event_time,
            probe_id: rule.probe_id,
            cook_id: rule.cook_id,
            kind: rule.kind,
            threshold: None,
            low: None,
            high: None,
            for_s: 0.0,
            hysteresis: 0.0,
            repeat_every_s: None,
            enabled: false,
            label: None,
        };
        self.append_command(topics::COOK_COMMANDS, &r.device_id, &event, event_time)
            .await?;
        if let Some(settings) = &self.settings
            && !settings.route_of(tenant.name(), &r.rule_id).is_empty()
        {
            settings
                .set_route(tenant.name(), &r.rule_id, &[], event_time)
                .await
                .map_err(crate::settings::status)?;
        }
        Ok(Response::new(DeleteAlertRuleResponse {}))
    }

    async fn list_alert_rules(
        &self,
        request: Request<ListAlertRulesRequest>,
    ) -> Result<Response<ListAlertRulesResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let device = tenant.filter(&request.into_inner().device_id)?;
        let rules = self
            .store
            .alert_rules(device.as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListAlertRulesResponse {
            rules: rules
                .into_iter()
                .map(rule_to_proto)
                .filter_map(|mut r| tenant.unqualify(&mut r.device_id).then_some(r))
                .map(|mut r| {
                    if let Some(settings) = &self.settings {
                        r.notify = settings.route_of(tenant.name(), &r.rule_id);
                    }
                    r
                })
                .collect(),
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let r = request.into_inner();
        let device = tenant.filter(&r.device_id)?;
        let alerts = self
            .store
            .alerts(device.as_deref(), r.active_only)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListAlertsResponse {
            alerts: alerts
                .into_iter()
                .map(alert_to_proto)
                .filter(|a| tenant.sees_cook_id(a.cook_id.as_deref()))
                .filter_map(|mut a| tenant.unqualify(&mut a.device_id).then_some(a))
                .collect(),
        }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<AcknowledgeAlertRequest>,
    ) -> Result<Response<AcknowledgeAlertResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let alert = self
            .active_alert(&tenant, &request.into_inner().alert_id)
            .await?;
        self.acknowledge(&alert, None).await?;
        Ok(Response::new(AcknowledgeAlertResponse {}))
    }

    async fn snooze_alert(
        &self,
        request: Request<SnoozeAlertRequest>,
    ) -> Result<Response<SnoozeAlertResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let r = request.into_inner();
        if !(1..=MAX_SNOOZE_MIN).contains(&r.minutes) {
            return Err(Status::invalid_argument(format!(
                "minutes must be between 1 and {MAX_SNOOZE_MIN}"
            )));
        }
        let alert = self.active_alert(&tenant, &r.alert_id).await?;
        let until = now_ms() + i64::from(r.minutes) * 60_000;
        self.acknowledge(&alert, Some(until)).await?;
        Ok(Response::new(SnoozeAlertResponse {
            snoozed_until_ms: until,
        }))
    }

    async fn subscribe_alerts(
        &self,
        request: Request<SubscribeAlertsRequest>,
    ) -> Result<Response<Self::SubscribeAlertsStream>, Status> {
        let tenant = Tenant::of(&request)?;
        let credential = crate::auth::Credential::of(&request);
        let r = request.into_inner();
        let tail = Tail {
            credential,
            device_id: tenant.filter(&r.device_id)?,
            window: self.share_window(&tenant).await?,
            tenant,
            resume: r.resume,
            start: r.start,
        };
        self.tail(topics::ALERTS, tail).await
    }
}

#[tonic::async_trait]
impl PredictionService for Gateway {
    type SubscribePredictionsStream = ReceiverStream<Result<PredictionEvent, Status>>;

    async fn list_predictions(
        &self,
        request: Request<ListPredictionsRequest>,
    ) -> Result<Response<ListPredictionsResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let device = tenant.filter(&request.into_inner().device_id)?;
        let predictions = self
            .store
            .predictions(device.as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListPredictionsResponse {
            predictions: predictions
                .into_iter()
                .map(prediction_to_proto)
                .filter(|p| tenant.sees_cook_id(p.cook_id.as_deref()))
                .filter_map(|mut p| tenant.unqualify(&mut p.device_id).then_some(p))
                .collect(),
        }))
    }

    async fn subscribe_predictions(
        &self,
        request: Request<SubscribePredictionsRequest>,
    ) -> Result<Response<Self::SubscribePredictionsStream>, Status> {
        let tenant = Tenant::of(&request)?;
        let credential = crate::auth::Credential::of(&request);
        let r = request.into_inner();
        let tail = Tail {
            credential,
            device_id: tenant.filter(&r.device_id)?,
            window: self.share_window(&tenant).await?,
            tenant,
            resume: r.resume,
            start: r.start,
        };
        self.tail(topics::DERIVED_PREDICTIONS, tail).await
    }
}

#[tonic::async_trait]
impl Tailed for PredictionEvent {
    async fn decode(
        codec: &EventCodec,
        partition: u32,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Self, CodecError> {
        let p: PredictionUpdated = codec.decode(bytes).await?;
        Ok(PredictionEvent {
            partition,
            offset,
            prediction: Some(Prediction {
                device_id: p.device_id,
                probe_id: p.probe_id,
                cook_id: (!p.cook_id.is_empty()).then_some(p.cook_id),
                event_time_ms: p.event_time,
                temperature_c: p.temperature_c,
                target_c: p.target_c,
                pit_c: p.pit_c,
                remaining_s: p.remaining_s,
                low_s: p.low_s,
                high_s: p.high_s,
                done_at_ms: p.done_at,
                stall: p.stall,
                phase: p.phase,
                pit_phase: p.pit_phase,
                method: p.method,
                based_on: p.based_on,
            }),
        })
    }

    fn device_id_mut(&mut self) -> Option<&mut String> {
        self.prediction.as_mut().map(|p| &mut p.device_id)
    }

    fn device_id(&self) -> Option<&str> {
        self.prediction.as_ref().map(|p| p.device_id.as_str())
    }

    fn event_time_ms(&self) -> i64 {
        self.prediction.as_ref().map_or(0, |p| p.event_time_ms)
    }

    fn cook_id(&self) -> Option<Option<&str>> {
        Some(self.prediction.as_ref().and_then(|p| p.cook_id.as_deref()))
    }
}

#[tonic::async_trait]
impl Tailed for AlertEvent {
    async fn decode(
        codec: &EventCodec,
        partition: u32,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Self, CodecError> {
        let kind = codec.kind_of_learning(bytes).await?;
        if kind == Some(EventKind::AlertCleared) {
            let c: AlertCleared = codec.decode(bytes).await?;
            return Ok(AlertEvent {
                partition,
                offset,
                raised: false,
                alert_id: c.alert_id,
                rule_id: c.rule_id,
                kind: c.kind,
                device_id: c.device_id,
                probe_id: c.probe_id,
                cook_id: None,
                event_time_ms: c.event_time,
                value: c.value,
                threshold: None,
                message: c.reason,
                repeat: 0,
            });
        }
        let r: AlertRaised = codec.decode(bytes).await?;
        Ok(AlertEvent {
            partition,
            offset,
            raised: true,
            alert_id: r.alert_id,
            rule_id: r.rule_id,
            kind: r.kind,
            device_id: r.device_id,
            probe_id: r.probe_id,
            cook_id: r.cook_id,
            event_time_ms: r.event_time,
            value: r.value,
            threshold: r.threshold,
            message: r.message,
            repeat: r.repeat.max(0) as u32,
        })
    }

    fn device_id_mut(&mut self) -> Option<&mut String> {
        Some(&mut self.device_id)
    }

    fn device_id(&self) -> Option<&str> {
        Some(&self.device_id)
    }

    fn event_time_ms(&self) -> i64 {
        self.event_time_ms
    }

    fn cook_id(&self) -> Option<Option<&str>> {
        Some(self.cook_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: &str) -> AlertRule {
        AlertRule {
            device_id: "d".into(),
            probe_id: Some("p".into()),
            kind: kind.into(),
            threshold: Some(100.0),
            ..AlertRule::default()
        }
    }

    #[test]
    fn rules_are_checked_for_what_their_kind_needs() {
        assert_eq!(validate_rule(&rule("above")), Ok(()));
        assert!(
            validate_rule(&rule("hotter"))
                .expect_err("refused")
                .contains("unknown kind")
        );
        let no_probe = AlertRule {
            probe_id: None,
            ..rule("below")
        };
        assert!(
            validate_rule(&no_probe)
                .expect_err("refused")
                .contains("probe_id")
        );
        let battery = AlertRule {
            probe_id: None,
            ..rule("battery_below")
        };
        assert_eq!(validate_rule(&battery), Ok(()));
        let no_threshold = AlertRule {
            threshold: None,
            ..rule("rate_above")
        };
        assert!(
            validate_rule(&no_threshold)
                .expect_err("refused")
                .contains("threshold")
        );
        let target = AlertRule {
            threshold: None,
            ..rule("target_reached")
        };
        assert_eq!(validate_rule(&target), Ok(()));
        let band = AlertRule {
            low: Some(120.0),
            high: Some(110.0),
            ..rule("outside_band")
        };
        assert!(
            validate_rule(&band)
                .expect_err("refused")
                .contains("below high")
        );
        let nan = AlertRule {
            threshold: Some(f64::NAN),
            ..rule("above")
        };
        assert!(validate_rule(&nan).expect_err("refused").contains("finite"));
        let fast = AlertRule {
            repeat_every_s: Some(5.0),
            ..rule("above")
        };
        assert!(
            validate_rule(&fast)
                .expect_err("refused")
                .contains("repeat_every_s")
        );
    }
}
