//! `QueryService/Sql` through a real gRPC client against `emberline up` with two tenants:
//! each caller's answers hold only their own devices (whatever the query asks), results
//! arrive as Arrow IPC a reader decodes, mistakes are `INVALID_ARGUMENT`, and a query past
//! its memory or time bound fails with a message naming the bound while the gateway goes on
//! answering other calls.
#![allow(clippy::print_stderr)]

mod support;

use std::time::Duration;

use emberline_analytics::datafusion::arrow::array::{AsArray as _, RecordBatch};
use emberline_analytics::datafusion::arrow::datatypes::{Float64Type, Int64Type};
use emberline_analytics::datafusion::arrow::ipc::reader::StreamReader;
use emberline_proto::v1::auth_service_client::AuthServiceClient;
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::query_service_client::QueryServiceClient;
use emberline_proto::v1::{
    GetLatestRequest, ListDevicesRequest, SignInRequest, SqlRequest, SqlResponse,
};
use support::roles::Role;
use support::{PATIENCE, eventually, free_port};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const PASSWORD: &str = "grill-master-9";

fn config(home: std::net::SocketAddr, acme: std::net::SocketAddr) -> String {
    format!(
        r#"[[sources]]
kind = "http_push"
name = "home-push"
listen = "{home}"
tokens = {{ grill = "home-grill" }}

[[sources]]
kind = "http_push"
name = "acme-push"
tenant = "acme"
listen = "{acme}"
tokens = {{ grill = "acme-grill", smoker = "acme-smoker" }}

[gateway.sql]
timeout_s = 4
memory_mib = 4
"#
    )
}

/// Pushes 60 readings of two probes, every one inside `band`.
async fn push(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    device: &str,
    token: &str,
    band: &std::ops::Range<f64>,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut readings = Vec::new();
    for i in 0..60 {
        for (p, probe) in ["pit", "meat-1"].iter().enumerate() {
            let value = band.start + 1.0 + p as f64 * 2.0 + f64::from(i) * 0.05;
            readings.push(serde_json::json!({
                "probe_id": probe, "value": value, "time": now - (60 - i64::from(i)) * 1000
            }));
        }
    }
    let (status, answer) = support::push::push(http, addr, device, token, readings).await;
    assert_eq!(status, 200, "{answer}");
}

/// Runs `query` as the holder of `token`: the batches, or the error.
async fn sql(
    channel: &Channel,
    token: &str,
    query: &str,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let mut stream = QueryServiceClient::new(channel.clone())
        .sql(support::bearer(
            token,
            SqlRequest {
                query: query.into(),
            },
        ))
        .await?
        .into_inner();
    let mut batches = Vec::new();
    while let Some(message) = stream.next().await {
        let SqlResponse { arrow_ipc, rows } = message?;
        let reader = StreamReader::try_new(std::io::Cursor::new(arrow_ipc), None)
            .expect("an Arrow IPC stream");
        for batch in reader {
            let batch = batch.expect("a record batch");
            assert_eq!(batch.num_rows() as u64, rows);
            batches.push(batch);
        }
    }
    Ok(batches)
}

/// (device, readings, coldest, hottest) rows of a per-device summary.
fn summary(batches: &[RecordBatch]) -> Vec<(String, i64, f64, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let devices = b.column(0).as_string::<i32>();
        let counts = b.column(1).as_primitive::<Int64Type>();
        let low = b.column(2).as_primitive::<Float64Type>();
        let high = b.column(3).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                devices.value(i).to_owned(),
                counts.value(i),
                low.value(i),
                high.value(i),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_queries_only_its_own_log_within_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let identities = emberline_auth::store::IdentityStore::file(&data);
    for (name, tenant) in [("pat", "default"), ("ace", "acme")] {
        emberline_auth::users::add(
            &identities,
            emberline_auth::users::NewUser {
                name,
                password: PASSWORD,
                role: emberline_auth::Role::Viewer,
                tenant,
            },
            false,
        )
        .await
        .expect("user");
    }
    let (home_push, acme_push, grpc) = (free_port(), free_port(), free_port());
    let config_path = dir.path().join("emberline.toml");
    std::fs::write(&config_path, config(home_push, acme_push)).expect("config");
    let mut up = Role::start(
        "up",
        &config_path,
        &data,
        &[
            "up",
            "--grpc-addr",
            &grpc.to_string(),
            "--web-addr",
            "127.0.0.1:0",
        ],
        &[("EMBERLINE__AUTH__MODE", "password".to_owned())],
    );
    up.ready().await;
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut tokens = Vec::new();
    for user in ["pat", "ace"] {
        tokens.push(
            AuthServiceClient::new(channel.clone())
                .sign_in(SignInRequest {
                    user: user.into(),
                    password: PASSWORD.into(),
                    cookie: false,
                })
                .await
                .expect("sign in")
                .into_inner()
                .access_token,
        );
    }
    let (pat, ace) = (tokens[0].as_str(), tokens[1].as_str());
    emberline_common::http::install_crypto_provider();
    let http = reqwest::Client::new();
    let (home_band, acme_band) = (40.0..60.0, 140.0..160.0);
    push(&http, home_push, "grill", "home-grill", &home_band).await;
    push(&http, acme_push, "grill", "acme-grill", &acme_band).await;
    push(&http, acme_push, "smoker", "acme-smoker", &acme_band).await;

    // Without a token: refused before any engine runs.
    let refused = QueryServiceClient::new(channel.clone())
        .sql(SqlRequest {
            query: "SELECT 1".into(),
        })
        .await
        .expect_err("anonymous");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Each tenant's summary holds its own devices only, however the query is written:
    // another tenant's rows are not there to be found, by device, by tenant, or at all.
    let query = "SELECT device_id, count(*) AS n, min(temperature_c) AS low, \
                 max(temperature_c) AS high FROM probe_readings GROUP BY device_id \
                 ORDER BY device_id";
    let want = |devices: &[&str], band: &std::ops::Range<f64>| -> Vec<(String, i64, f64, f64)> {
        devices
            .iter()
            .map(|d| {
                (
                    d.to_string(),
                    120,
                    band.start + 1.0,
                    band.start + 3.0 + 59.0 * 0.05,
                )
            })
            .collect()
    };
    let mine = eventually(
        "both tenants' readings in the log",
        PATIENCE,
        Duration::from_millis(200),
        || async {
            let home = summary(&sql(&channel, pat, query).await.map_err(|e| e.to_string())?);
            let acme = summary(&sql(&channel, ace, query).await.map_err(|e| e.to_string())?);
            let counted = |rows: &[(String, i64, f64, f64)]| rows.iter().map(|r| r.1).sum::<i64>();
            if counted(&home) == 120 && counted(&acme) == 240 {
                Ok((home, acme))
            } else {
                Err(format!("{home:?} {acme:?}"))
            }
        },
    )
    .await;
    let close = |got: &[(String, i64, f64, f64)], want: &[(String, i64, f64, f64)]| {
        got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                g.0 == w.0 && g.1 == w.1 && (g.2 - w.2).abs() < 1e-9 && (g.3 - w.3).abs() < 1e-9
            })
    };
    assert!(
        close(&mine.0, &want(&["grill"], &home_band)),
        "{:?}",
        mine.0
    );
    assert!(
        close(&mine.1, &want(&["acme/grill", "acme/smoker"], &acme_band)),
        "{:?}",
        mine.1
    );
    for probe in [
        "SELECT count(*) AS n FROM probe_readings WHERE tenant = 'default'",
        "SELECT count(*) AS n FROM probe_readings WHERE device_id = 'grill'",
        "SELECT count(*) AS n FROM cook_readings WHERE tenant <> 'acme'",
        "SELECT count(*) AS n FROM device_events WHERE tenant = 'default'",
    ] {
        let batches = sql(&channel, ace, probe).await.expect(probe);
        let n: i64 = batches
            .iter()
            .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
            .sum();
        assert_eq!(n, 0, "acme sees another tenant's rows with {probe}");
    }

    // Mistakes are INVALID_ARGUMENT saying what is wrong.
    for (query, says) in [
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELEC 1", "SELEC"),
        ("CREATE TABLE t AS SELECT 1", "not supported"),
        ("  ", "empty"),
    ] {
        let e = sql(&channel, pat, query).await.expect_err(query);
        assert_eq!(e.code(), Code::InvalidArgument, "{query}: {e:?}");
        assert!(e.message().contains(says), "{query}: {}", e.message());
    }

    // A query past its memory fails naming the bound; one past its time too — and while it
    // runs, the gateway answers other calls.
    let huge = "SELECT a.*, b.*, c.* FROM probe_readings a CROSS JOIN probe_readings b \
                CROSS JOIN probe_readings c ORDER BY a.temperature_c + b.temperature_c \
                + c.temperature_c";
    let e = sql(&channel, pat, huge).await.expect_err("over its memory");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("gateway.sql.memory_mib"),
        "{}",
        e.message()
    );

    // 120^5 rows to sum: more than any build gets through in the bound. Each cross join
    // holds its small left side and streams its right, so it needs little memory.
    let long = "SELECT sum(a.temperature_c * x.t) FROM probe_readings a CROSS JOIN ( \
                SELECT b.temperature_c * y.t AS t FROM probe_readings b CROSS JOIN ( \
                SELECT c.temperature_c * z.t AS t FROM probe_readings c CROSS JOIN ( \
                SELECT d.temperature_c * e.temperature_c AS t \
                FROM probe_readings d CROSS JOIN probe_readings e) z) y) x";
    let running = tokio::spawn({
        let (channel, token) = (channel.clone(), pat.to_owned());
        async move { sql(&channel, &token, long).await }
    });
    let mut devices = DeviceServiceClient::new(channel.clone());
    let listed = devices
        .list_devices(support::bearer(pat, ListDevicesRequest::default()))
        .await
        .expect("devices while a query runs")
        .into_inner()
        .devices;
    assert_eq!(listed.len(), 1);
    devices
        .get_latest(support::bearer(
            pat,
            GetLatestRequest {
                device_id: "grill".into(),
            },
        ))
        .await
        .expect("latest while a query runs");
    let e = running.await.expect("task").expect_err("past its time");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        e.message().contains("gateway.sql.timeout_s"),
        "{}",
        e.message()
    );

    // And afterwards it answers queries as before.
    let again = summary(&sql(&channel, pat, query).await.expect("a query after"));
    assert!(close(&again, &want(&["grill"], &home_band)), "{again:?}");
    up.interrupt();
}
