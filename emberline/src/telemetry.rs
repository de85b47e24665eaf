//! Logs and traces: the `tracing` subscriber of every role.
//!
//! * Log lines on standard error, as text (coloured on a terminal) or, with
//!   `--log-format json`, one JSON object a line for log collectors.
//! * `RUST_LOG` (default `info`) filters both: what it leaves out is neither logged nor
//!   exported. (One filter for the whole subscriber: a per-layer filter here silently
//!   dropped some events of spawned tasks.)
//! * With `telemetry.otlp_endpoint` set, spans also go to an OpenTelemetry collector over
//!   OTLP/gRPC: the path of a reading (`append` → `process` → `project` → `deliver`, each
//!   with the records' topic, partition and offsets as fields) and every RPC.
//!
//! OpenTelemetry's batch processor exports from its own thread, where no Tokio reactor
//! runs, and the OTLP/gRPC exporter (tonic) needs one: [`OnOwnRuntime`] gives the exporter a
//! small runtime of its own, so exports neither panic nor borrow the roles' runtime.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde::{Deserialize, Serialize};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// `[telemetry]`: where spans go.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TelemetryConfig {
    /// An OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; unset = no span export.
    pub(crate) otlp_endpoint: Option<String>,
    /// The `service.name` spans carry; default `emberline-<role>`.
    pub(crate) service_name: Option<String>,
}

/// Keeps the span exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops the exporter. Call outside any Tokio runtime.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing the last spans to the collector failed");
        }
    }
}

/// A subscriber writing log lines only, for what runs before the configuration is read
/// (its warnings must show in the chosen format too).
pub(crate) fn logs_only(format: LogFormat) -> tracing::Dispatch {
    tracing::Dispatch::new(subscriber(
        filter(),
        vec![line_layer(format, std::io::stderr)],
    ))
}

/// `layers` behind `filter`: the one composition every subscriber here uses.
fn subscriber(filter: EnvFilter, layers: Vec<BoxedLayer>) -> Layered<Vec<BoxedLayer>, Filtered> {
    tracing_subscriber::registry().with(filter).with(layers)
}

/// The registry behind the `RUST_LOG` filter: every other layer sits on top of it, so what
/// the filter leaves out reaches none of them. (In a `Vec` beside the other layers a filter
/// only adds its own interest to theirs, and the line writer's "everything" won.)
type Filtered = Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// The `RUST_LOG` filter, default `info`.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The line writer in `format`, on `writer` (standard error outside tests).
fn line_layer<W>(format: LogFormat, writer: W) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(writer)
            .boxed(),
    }
}

/// Installs the process's subscriber: log lines in `format`, and spans to the collector
/// when `config.otlp_endpoint` is set (`role` names the service then).
pub(crate) fn init(format: LogFormat, config: &TelemetryConfig, role: &str) -> Result<Telemetry> {
    let mut layers = vec![line_layer(format, std::io::stderr)];
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            let service = config
                .service_name
                .clone()
                .unwrap_or_else(|| format!("emberline-{role}"));
            Some(otlp_provider(endpoint, service)?)
        }
        None => None,
    };
    if let Some(p) = &provider {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("emberline"))
                .boxed(),
        );
    }
    subscriber(filter(), layers)
        .try_init()
        .context("installing the log subscriber")?;
    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP");
    }
    Ok(Telemetry { provider })
}

fn otlp_provider(endpoint: &str, service: String) -> Result<SdkTracerProvider> {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("otlp-export")
            .build()
            .context("starting the span exporter's runtime")?,
    );
    let exporter = {
        let _in_runtime = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .with_context(|| format!("telemetry.otlp_endpoint {endpoint}"))?
    };
    Ok(SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build())
        .with_batch_exporter(OnOwnRuntime {
            inner: exporter,
            runtime,
        })
        .build())
}

/// A span exporter run to completion on a runtime of its own (see the module docs).
#[derive(Debug)]
struct OnOwnRuntime<E> {
    inner: E,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl<E: SpanExporter> SpanExporter for OnOwnRuntime<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self.runtime.block_on(self.inner.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the line writer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_under(directives: &str, format: LogFormat) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let lines = subscriber(
            EnvFilter::new(directives),
            vec![line_layer(format, move || writer.clone())],
        );
        tracing::subscriber::with_default(lines, || {
            tracing::debug!("a debug line");
            tracing::info!("an info line");
            tracing::warn!("a warning");
        });
        let bytes = captured.0.lock().expect("capture lock").clone();
        String::from_utf8(bytes).expect("utf-8 lines")
    }

    #[test]
    fn the_filter_keeps_lower_levels_out_of_every_format() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let lines = lines_under("warn", format);
            assert!(lines.contains("a warning"), "{lines}");
            assert!(!lines.contains("an info line"), "{format:?}: {lines}");
            assert!(!lines.contains("a debug line"), "{format:?}: {lines}");
        }
        let lines = lines_under("debug", LogFormat::Text);
        assert!(lines.contains("a debug line"), "{lines}");
    }
}
