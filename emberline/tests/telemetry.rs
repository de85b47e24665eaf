//! Spans reach an OpenTelemetry collector: `emberline up` with `telemetry.otlp_endpoint`
//! pointing at a local OTLP/gRPC receiver (this test's own tonic server speaking the
//! collector protocol) exports the path of readings — `append`, `process`, `project`,
//! `deliver`, each naming the records' topic, partition and offset — and a span per RPC,
//! under the service name `emberline-up`. And `--log-format json` writes JSON lines.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{GetLatestRequest, StartFrom, SubscribeTrendsRequest};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use support::{PATIENCE, Up, eventually, free_port};
use tokio_stream::StreamExt;

/// A span as received: its service, name and attributes (values as text).
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(Received {
                        service: service.clone(),
                        name: span.name,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_the_reading_path_and_of_rpcs_reach_the_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{otlp}");
    let up = Up::start_with(
        dir.path(),
        free_port(),
        &[
            ("EMBERLINE__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("EMBERLINE_LOG_FORMAT", "json"),
            // RUST_LOG filters spans too: the reading path's spans are at info.
            ("RUST_LOG", "info"),
        ],
    );
    let channel = up.channel().await;
    up.wait_for_device("sim-1").await;
    // An RPC (its answer does not matter here: a device may have no reading projected yet).
    let _ = DeviceServiceClient::new(channel.clone())
        .get_latest(GetLatestRequest {
            device_id: "sim-1".into(),
        })
        .await;
    let mut trends = TrendServiceClient::new(channel)
        .subscribe_trends(SubscribeTrendsRequest {
            device_id: "sim-1".into(),
            resume: Default::default(),
            start: StartFrom::Latest as i32,
        })
        .await
        .expect("subscribe")
        .into_inner();
    let first = trends.next().await.expect("a trend update").expect("ok");
    assert_eq!(first.device_id, "sim-1");

    // Every kind of span arrives, named by where its records are.
    let seen = |name: &'static str, check: fn(&Received) -> bool| {
        let spans = collector.spans.clone();
        move || -> Result<(), String> {
            let spans = spans.lock().expect("lock");
            if spans.iter().any(|s| s.name == name && check(s)) {
                return Ok(());
            }
            let mut names: BTreeMap<&str, usize> = BTreeMap::new();
            for s in spans.iter() {
                *names.entry(s.name.as_str()).or_default() += 1;
            }
            let example = spans.iter().find(|s| s.name == name);
            Err(format!(
                "spans so far {names:?}; a {name} span: {example:?}"
            ))
        }
    };
    let positioned = |s: &Received| {
        s.attributes.contains_key("partition") && s.attributes.contains_key("offset")
    };
    for (name, check) in [
        (
            "append",
            (|s: &Received| {
                s.attributes.get("topic").map(String::as_str) == Some("probe.readings")
                    && s.attributes.contains_key("partition")
                    && s.attributes.contains_key("offset")
            }) as fn(&Received) -> bool,
        ),
        ("process", |s| {
            s.attributes.get("topic").map(String::as_str) == Some("probe.readings")
                && s.attributes.contains_key("partition")
                && s.attributes.contains_key("offset")
        }),
        ("project", |s| {
            s.attributes.contains_key("partition") && s.attributes.contains_key("offset")
        }),
        ("deliver", |s| {
            s.attributes.get("topic").map(String::as_str) == Some("derived.trends")
                && s.attributes.contains_key("partition")
                && s.attributes.contains_key("offset")
        }),
        ("rpc", |s| {
            s.attributes
                .get("method")
                .is_some_and(|m| m == "/emberline.v1.DeviceService/GetLatest")
        }),
    ] {
        let check = seen(name, check);
        eventually(
            &format!("a {name} span at the collector"),
            PATIENCE,
            Duration::from_millis(200),
            || {
                let result = check();
                async move { result }
            },
        )
        .await;
    }
    let spans = collector.spans.lock().expect("lock").clone();
    assert!(
        spans.iter().all(|s| s.service == "emberline-up"),
        "{:?}",
        spans.first()
    );
    assert!(spans.iter().filter(|s| s.name == "append").all(positioned));
    drop(trends);
    up.interrupt();
    server.abort();
}

#[test]
fn log_lines_are_json_with_log_format_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("old.toml");
    // The deprecated section makes the loader warn before the roles' subscriber exists.
    std::fs::write(&config, "[simulator]\nenabled = true\n").expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_emberline"))
        .args(["--log-format", "json", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["process", "--catch-up"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run emberline process --catch-up");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("[simulator] section is deprecated"))),
        "{stderr}"
    );
    assert!(lines.len() > 1, "{stderr}");
}
