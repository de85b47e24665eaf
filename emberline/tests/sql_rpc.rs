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
use emberline_proto::v1::device_service_client::DeviceServiceClient;
use emberline_proto::v1::query_service_client::QueryServiceClient;
use emberline_proto::v1::{GetLatestRequest, ListDevicesRequest, SqlRequest, SqlResponse};
use support::two_tenants::{self, TENANTS};
use support::{PATIENCE, eventually};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

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
    let running = two_tenants::start(
        dir.path(),
        emberline_auth::Role::Viewer,
        "[gateway.sql]\ntimeout_s = 4\nmemory_mib = 4",
    )
    .await;
    two_tenants::push_all(&running).await;
    let two_tenants::TwoTenants {
        mut up,
        channel,
        tokens,
        ..
    } = running;
    let (pat, ace) = (tokens[0].as_str(), tokens[1].as_str());
    let (home_band, acme_band) = (TENANTS[0].2.clone(), TENANTS[1].2.clone());

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
