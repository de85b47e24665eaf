//! `emberline watch`: print live trend updates from a gateway, resuming after disconnects.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use emberline_common::Backoff;
use emberline_proto::v1::trend_service_client::TrendServiceClient;
use emberline_proto::v1::{StartFrom, SubscribeTrendsRequest};
use tokio_stream::StreamExt;

/// Streams updates to stdout until Ctrl-C; reconnects with backoff and resumes exactly
/// after the last update printed.
pub(crate) async fn watch(
    addr: String,
    device: Option<String>,
    from_start: bool,
    token: Option<String>,
) -> Result<()> {
    let authorization = token
        .map(|t| format!("Bearer {t}").parse::<tonic::metadata::MetadataValue<_>>())
        .transpose()
        .context("the token has characters a header cannot carry")?;
    let url = if addr.starts_with("http") {
        addr
    } else {
        format!("http://{addr}")
    };
    let mut resume: HashMap<u32, u64> = HashMap::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = async {
            let mut client = TrendServiceClient::connect(url.clone())
                .await
                .with_context(|| format!("connecting to {url}"))?;
            let start = if from_start {
                StartFrom::Earliest
            } else {
                StartFrom::Latest
            };
            let request = SubscribeTrendsRequest {
                device_id: device.clone().unwrap_or_default(),
                resume: resume.clone(),
                start: start as i32,
            };
            let mut request = tonic::Request::new(request);
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            let response = client.subscribe_trends(request).await?;
            // A break before the first update resumes from where this stream started.
            emberline_proto::start_offsets::seed(&mut resume, response.metadata());
            let mut stream = response.into_inner();
            while let Some(event) = stream.next().await {
                let e = event?;
                resume.insert(e.partition, e.offset + 1);
                let rate = e
                    .trend
                    .as_ref()
                    .and_then(|t| t.rate_c_per_min)
                    .map_or_else(|| "    —".to_owned(), |r| format!("{r:+5.2}"));
                let smoothed = e.trend.as_ref().map_or(e.temperature_c, |t| t.smoothed_c);
                #[allow(clippy::print_stdout)]
                {
                    println!(
                        "{} UTC  {:<10} {:<8} {:6.1} °C  smoothed {:6.1} °C  {} °C/min",
                        time_of_day(e.event_time_ms),
                        e.device_id,
                        e.probe_id,
                        e.temperature_c,
                        smoothed,
                        rate
                    );
                }
            }
            anyhow::Ok(())
        };
        let delay = backoff.next_delay();
        tokio::select! {
            result = attempt => {
                if let Err(e) = result {
                    if let Some(status) = e.downcast_ref::<tonic::Status>()
                        && matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
                    {
                        anyhow::bail!(
                            "the gateway refused: {} (pass an API token with --token or \
                             EMBERLINE_TOKEN; `emberline token create watch --scope read` makes one)",
                            status.message()
                        );
                    }
                    tracing::warn!(error = %format!("{e:#}"), ?delay, "stream interrupted; reconnecting");
                } else {
                    tracing::warn!(?delay, "stream ended; reconnecting");
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        tokio::time::sleep(delay).await;
    }
}

/// `HH:MM:SS` (UTC) of an epoch-millisecond time.
fn time_of_day(ms: i64) -> String {
    let secs = ms.div_euclid(1_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3_600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_of_day_is_utc_wall_time() {
        assert_eq!(super::time_of_day(0), "00:00:00");
        assert_eq!(super::time_of_day(1_795_764_387_840), "07:26:27");
        assert_eq!(super::time_of_day(-1_000), "23:59:59");
    }
}
