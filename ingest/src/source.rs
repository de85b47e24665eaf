//! The [`Source`] trait: anything that produces events for the log.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{EventSink, IngestError};

/// A producer of events: a thermometer cloud, a local device, the simulator.
///
/// Contract: `run` delivers every event it accepts through the sink (which retries appends),
/// returns `Ok(())` once `shutdown` is cancelled and its accepted events are appended, and
/// returns an error only for failures it cannot retry (bad configuration).
#[async_trait]
pub trait Source: Send {
    /// A name for logs and metrics, e.g. `simulator`.
    fn name(&self) -> &str;

    /// Runs until `shutdown` is cancelled.
    async fn run(
        &mut self,
        sink: EventSink,
        shutdown: CancellationToken,
    ) -> Result<(), IngestError>;
}

/// Runs `source` with tracing around it.
pub async fn run_source(
    mut source: Box<dyn Source>,
    sink: EventSink,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let name = source.name().to_owned();
    tracing::info!(source = %name, "source starting");
    let running = crate::metrics::Running::start(&name);
    let result = source.run(sink, shutdown).await;
    drop(running);
    match &result {
        Ok(()) => tracing::info!(source = %name, "source stopped"),
        Err(e) => tracing::error!(source = %name, error = %e, "source failed"),
    }
    result
}
