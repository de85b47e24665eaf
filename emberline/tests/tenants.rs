//! Two tenants in one `emberline up`, each with its own HTTP push source and a device
//! called `grill` (and one more for the second tenant): random operations of both — queries,
//! commands on their own and on the other's ids, cooks, rules, subscriptions, notification
//! channels and device names set up in the Settings — and every
//! answer is checked to be the caller's: its device ids are the caller's and its
//! temperatures lie in the band only the caller's devices report.
#![allow(clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use emberline_proto::v1::alert_service_client::AlertServiceClient;
use emberline_proto::v1::cook_service_client::CookServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::prediction_service_client::PredictionServiceClient;
use emberline_proto::v1::reading_service_client::ReadingServiceClient;
use emberline_proto::v1::settings_service_client::SettingsServiceClient;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{
    AlertRule, EndCookRequest, GetCookRequest, GetHistoryRequest, GetLatestRequest,
    ListAlertRulesRequest, ListAlertsRequest, ListChannelsRequest, ListCooksRequest,
    ListDevicesRequest, ListPredictionsRequest, NotificationChannel, RenameDeviceRequest,
    SetAlertRuleRequest, SetChannelRequest, SetTargetRequest, StartCookRequest, StartFrom,
    SubscribeTrendsRequest, TestChannelRequest,
};
use support::two_tenants::{self, TENANTS};
use support::{PATIENCE, eventually};
use tokio_stream::StreamExt;
use tonic::{Code, Request};

/// Temperatures checked, so a run that checked nothing fails.
static CHECKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One tenant as the test sees it.
struct Tenant {
    name: &'static str,
    devices: &'static [&'static str],
    /// Every temperature its devices report lies in this band, and no other tenant's does.
    band: std::ops::Range<f64>,
    token: String,
    cooks: BTreeSet<String>,
}

impl Tenant {
    fn owns(&self, device: &str) -> bool {
        self.devices.contains(&device)
    }

    fn check_temperature(&self, t: impl Into<Option<f64>>, what: &str) {
        if let Some(t) = t.into() {
            CHECKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert!(
                self.band.contains(&t),
                "{} got {t} °C in {what}: another tenant's",
                self.name
            );
        }
    }

    fn check_device(&self, device: &str, what: &str) {
        assert!(
            self.owns(device),
            "{} got device {device:?} in {what}",
            self.name
        );
    }

    fn request<T>(&self, message: T) -> Request<T> {
        support::bearer(&self.token, message)
    }
}

/// A small deterministic generator: the same seed gives the same operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_of_one_tenant_ever_holds_the_others_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = two_tenants::start(
        dir.path(),
        emberline_auth::Role::Owner,
        "[processor]\ntick_interval_s = 1",
    )
    .await;
    two_tenants::push_all(&running).await;
    let two_tenants::TwoTenants {
        mut up,
        channel,
        tokens,
        ..
    } = running;

    let mut tenants = [
        Tenant {
            name: "default",
            devices: &["grill"],
            band: TENANTS[0].2.clone(),
            token: String::new(),
            cooks: BTreeSet::new(),
        },
        Tenant {
            name: "acme",
            devices: &["grill", "smoker"],
            band: TENANTS[1].2.clone(),
            token: String::new(),
            cooks: BTreeSet::new(),
        },
    ];
    for (t, token) in tenants.iter_mut().zip(tokens) {
        t.token = token;
    }

    // Both tenants see all of their devices' probes projected before the operations start.
    for t in &tenants {
        let devices = DeviceServiceClient::new(channel.clone());
        eventually(
            &format!("{}'s devices projected", t.name),
            PATIENCE,
            Duration::from_millis(100),
            || {
                let mut devices = devices.clone();
                async move {
                    let listed = devices
                        .list_devices(t.request(ListDevicesRequest::default()))
                        .await
                        .map_err(|e| e.to_string())?
                        .into_inner()
                        .devices;
                    let full = listed.iter().filter(|d| d.probe_count == 2).count();
                    (full == t.devices.len())
                        .then_some(())
                        .ok_or(format!("{listed:?}"))
                }
            },
        )
        .await;
    }

    // A cook of each tenant's grill to begin with, so every seed has cooks of both to
    // look for across tenants.
    for t in &mut tenants {
        let cook = CookServiceClient::new(channel.clone())
            .start_cook(t.request(StartCookRequest {
                device_id: "grill".into(),
                what: "brisket".into(),
                ..StartCookRequest::default()
            }))
            .await
            .expect("a first cook")
            .into_inner()
            .cook_id;
        t.cooks.insert(cook);
    }

    let seed = 0x5eed_u64 ^ u64::from(std::process::id());
    eprintln!("operations from seed {seed}");
    let mut rng = Rng(seed | 1);
    let names = [
        "grill",
        "smoker",
        "acme/grill",
        "default/grill",
        "acme/smoker",
        "",
    ];
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let mut trend_events = 0u32;
    // 13 kinds of operation; the 11 that check temperatures keep about 300 steps.
    for step in 0..360 {
        let who = (rng.next() % 2) as usize;
        let device = *rng.pick(&names);
        let op = rng.next() % 13;
        let t = &tenants[who];
        let other = &tenants[1 - who];
        let what = format!("step {step}: {} op {op} on {device:?}", t.name);
        let own = t.owns(device);
        match op {
            0 => {
                let listed = DeviceServiceClient::new(channel.clone())
                    .list_devices(t.request(ListDevicesRequest {
                        include_removed: true,
                    }))
                    .await
                    .expect(&what)
                    .into_inner()
                    .devices;
                for d in listed {
                    t.check_device(&d.device_id, &what);
                }
            }
            1 => {
                let got = DeviceServiceClient::new(channel.clone())
                    .get_latest(t.request(GetLatestRequest {
                        device_id: device.into(),
                    }))
                    .await;
                match got {
                    Ok(r) => {
                        assert!(own, "{what}: answered for a device not the caller's");
                        for p in r.into_inner().probes {
                            t.check_device(&p.device_id, &what);
                            t.check_temperature(p.temperature_c, &what);
                        }
                    }
                    Err(s) => assert!(
                        !own && matches!(s.code(), Code::NotFound | Code::InvalidArgument),
                        "{what}: {s:?}"
                    ),
                }
            }
            2 => {
                let got = ReadingServiceClient::new(channel.clone())
                    .get_history(t.request(GetHistoryRequest {
                        device_id: device.into(),
                        probe_id: "pit".into(),
                        from_ms: 0,
                        to_ms: i64::MAX,
                        limit: 0,
                        step_ms: 0,
                    }))
                    .await;
                match got {
                    Ok(r) => {
                        for p in r.into_inner().points {
                            t.check_temperature(p.temperature_c, &what);
                        }
                    }
                    Err(s) => assert!(!own, "{what}: {s:?}"),
                }
            }
            3 => {
                let got = CookServiceClient::new(channel.clone())
                    .start_cook(t.request(StartCookRequest {
                        device_id: device.into(),
                        what: "brisket".into(),
                        ..StartCookRequest::default()
                    }))
                    .await;
                match got {
                    Ok(r) => {
                        assert!(own, "{what}: a cook started on a device not the caller's");
                        let id = r.into_inner().cook_id;
                        tenants[who].cooks.insert(id);
                    }
                    Err(s) => assert!(
                        !own || s.code() == Code::FailedPrecondition,
                        "{what}: {s:?}"
                    ),
                }
            }
            4 | 5 => {
                // Someone's cook: the caller's own, or the other tenant's.
                let pool: Vec<String> = if op == 4 { &t.cooks } else { &other.cooks }
                    .iter()
                    .cloned()
                    .collect();
                let Some(cook_id) = pool.get((rng.next() % pool.len().max(1) as u64) as usize)
                else {
                    continue;
                };
                let mut cooks = CookServiceClient::new(channel.clone());
                let got = cooks
                    .get_cook(t.request(GetCookRequest {
                        cook_id: cook_id.clone(),
                    }))
                    .await;
                if op == 5 {
                    let s = got.expect_err(&what);
                    assert_eq!(s.code(), Code::NotFound, "{what}: the other's cook");
                    let end = cooks
                        .end_cook(t.request(EndCookRequest {
                            cook_id: cook_id.clone(),
                        }))
                        .await
                        .expect_err(&what);
                    assert_eq!(
                        end.code(),
                        Code::NotFound,
                        "{what}: ending the other's cook"
                    );
                } else if let Ok(r) = got {
                    let r = r.into_inner();
                    let cook = r.cook.expect("cook");
                    t.check_device(&cook.device_id, &what);
                    for p in r.probes.iter().flat_map(|p| &p.points) {
                        t.check_temperature(p.temperature_c, &what);
                    }
                    if rng.next().is_multiple_of(2) {
                        let _ = cooks
                            .end_cook(t.request(EndCookRequest {
                                cook_id: cook_id.clone(),
                            }))
                            .await;
                    }
                }
            }
            6 => {
                let listed = CookServiceClient::new(channel.clone())
                    .list_cooks(t.request(ListCooksRequest {
                        device_id: String::new(),
                    }))
                    .await
                    .expect(&what)
                    .into_inner()
                    .cooks;
                for c in listed {
                    t.check_device(&c.device_id, &what);
                    assert!(
                        !other.cooks.contains(&c.cook_id),
                        "{what}: the other's cook listed"
                    );
                }
            }
            7 => {
                let got = CookServiceClient::new(channel.clone())
                    .set_target(t.request(SetTargetRequest {
                        device_id: device.into(),
                        probe_id: "meat-1".into(),
                        target_c: Some(95.0),
                    }))
                    .await;
                assert_eq!(got.is_ok(), own, "{what}: {got:?}");
            }
            8 => {
                let got = AlertServiceClient::new(channel.clone())
                    .set_alert_rule(t.request(SetAlertRuleRequest {
                        rule: Some(AlertRule {
                            device_id: device.into(),
                            probe_id: Some("pit".into()),
                            kind: "above".into(),
                            threshold: Some(t.band.start),
                            ..AlertRule::default()
                        }),
                    }))
                    .await;
                assert_eq!(got.is_ok(), own, "{what}: {got:?}");
            }
            9 => {
                let mut alerts = AlertServiceClient::new(channel.clone());
                let rules = alerts
                    .list_alert_rules(t.request(ListAlertRulesRequest::default()))
                    .await
                    .expect(&what)
                    .into_inner()
                    .rules;
                for r in rules {
                    t.check_device(&r.device_id, &what);
                }
                let raised = alerts
                    .list_alerts(t.request(ListAlertsRequest::default()))
                    .await
                    .expect(&what)
                    .into_inner()
                    .alerts;
                for a in raised {
                    t.check_device(&a.device_id, &what);
                    if let Some(v) = a.value {
                        t.check_temperature(v, &what);
                    }
                }
                let predictions = PredictionServiceClient::new(channel.clone())
                    .list_predictions(t.request(ListPredictionsRequest::default()))
                    .await
                    .expect(&what)
                    .into_inner()
                    .predictions;
                for p in predictions {
                    t.check_device(&p.device_id, &what);
                    t.check_temperature(p.temperature_c, &what);
                }
            }
            11 => {
                // Settings: each tenant's channels and only those; the other's by name is
                // nothing.
                let mut settings = SettingsServiceClient::new(channel.clone());
                settings
                    .set_channel(t.request(SetChannelRequest {
                        channel: Some(NotificationChannel {
                            name: format!("{}-hook", t.name),
                            kind: "webhook".into(),
                            ..NotificationChannel::default()
                        }),
                        url: format!("http://127.0.0.1:9/{}", t.name),
                        ..SetChannelRequest::default()
                    }))
                    .await
                    .expect(&what);
                let listed = settings
                    .list_channels(t.request(ListChannelsRequest {}))
                    .await
                    .expect(&what)
                    .into_inner()
                    .channels;
                assert!(
                    listed.iter().all(|c| c.name.starts_with(t.name)),
                    "{what}: {listed:?}"
                );
                let theirs = settings
                    .test_channel(t.request(TestChannelRequest {
                        name: format!("{}-hook", other.name),
                    }))
                    .await
                    .expect_err(&what);
                assert_eq!(theirs.code(), Code::NotFound, "{what}: {theirs:?}");
            }
            12 => {
                // Names: a device of one's own may be renamed; a rename never shows to the
                // other tenant.
                let got = SettingsServiceClient::new(channel.clone())
                    .rename_device(t.request(RenameDeviceRequest {
                        device_id: device.into(),
                        name: format!("{} renamed {step}", t.name),
                        ..RenameDeviceRequest::default()
                    }))
                    .await;
                assert_eq!(got.is_ok(), own, "{what}: {got:?}");
                let listed = DeviceServiceClient::new(channel.clone())
                    .list_devices(t.request(ListDevicesRequest::default()))
                    .await
                    .expect(&what)
                    .into_inner()
                    .devices;
                for d in listed {
                    t.check_device(&d.device_id, &what);
                    assert!(
                        !d.name.starts_with(&format!("{} renamed", other.name)),
                        "{what}: the other's name on {d:?}"
                    );
                }
            }
            _ => {
                let filter = if own || device.is_empty() { device } else { "" };
                let mut stream = TrendServiceClient::new(channel.clone())
                    .subscribe_trends(t.request(SubscribeTrendsRequest {
                        device_id: filter.into(),
                        resume: Default::default(),
                        start: StartFrom::Earliest as i32,
                    }))
                    .await
                    .expect(&what)
                    .into_inner();
                // Everything in the log so far: both tenants' trends are there, and only
                // the caller's may come out.
                for _ in 0..40 {
                    let Ok(Some(event)) =
                        tokio::time::timeout(Duration::from_secs(2), stream.next()).await
                    else {
                        break;
                    };
                    let event = event.expect(&what);
                    trend_events += 1;
                    t.check_device(&event.device_id, &what);
                    t.check_temperature(event.temperature_c, &what);
                }
            }
        }
        *counts
            .entry(
                [
                    "list",
                    "latest",
                    "history",
                    "start",
                    "own cook",
                    "other's cook",
                    "cooks",
                    "target",
                    "rule",
                    "alerts",
                    "trends",
                    "channels",
                    "names",
                ][op as usize],
            )
            .or_default() += 1;
    }
    // Rule ids are chosen by clients: the same id from both tenants makes two rules, and
    // neither overwrites the other's.
    for t in &tenants {
        AlertServiceClient::new(channel.clone())
            .set_alert_rule(t.request(SetAlertRuleRequest {
                rule: Some(AlertRule {
                    rule_id: "same-id".into(),
                    device_id: "grill".into(),
                    probe_id: Some("pit".into()),
                    kind: "above".into(),
                    threshold: Some(t.band.end),
                    ..AlertRule::default()
                }),
            }))
            .await
            .expect("set a rule with a chosen id");
    }
    for t in &tenants {
        let alerts = AlertServiceClient::new(channel.clone());
        eventually(
            &format!("{}'s own rule same-id", t.name),
            PATIENCE,
            Duration::from_millis(100),
            || {
                let mut alerts = alerts.clone();
                async move {
                    let rules = alerts
                        .list_alert_rules(t.request(ListAlertRulesRequest::default()))
                        .await
                        .map_err(|e| e.to_string())?
                        .into_inner()
                        .rules;
                    let same: Vec<_> = rules
                        .iter()
                        .filter(|r| r.rule_id.ends_with("same-id"))
                        .collect();
                    match same.as_slice() {
                        [one] if one.threshold == Some(t.band.end) => Ok(()),
                        _ => Err(format!("{same:?}")),
                    }
                }
            },
        )
        .await;
    }
    let checked = CHECKED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "operations: {counts:?}; {checked} temperatures and {trend_events} trend events checked"
    );
    assert!(
        checked > 1_000 && trend_events > 100,
        "too little was checked"
    );
    assert!(
        counts.len() >= 10,
        "most kinds of operation ran: {counts:?}"
    );
    assert!(
        tenants.iter().all(|t| !t.cooks.is_empty()),
        "both tenants started cooks"
    );
    up.interrupt();
}
