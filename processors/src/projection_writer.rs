//! Writing through a failing store or log: every processor's projection batches (and the
//! trend sink's appends) are retried with backoff until they work, until another process
//! owns the partition, or until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use emberline_common::Backoff;
use emberline_projections::{ProjectionBatch, ProjectionStore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::ProcessorError;

/// The first wait after a failure; it doubles (with jitter) up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Applies one processor's projection batches to the store, retrying failures.
pub(crate) struct ProjectionWriter {
    store: Arc<dyn ProjectionStore>,
    /// The projection written, as the logs name it ("device", "cook", "trend").
    projection: &'static str,
}

impl ProjectionWriter {
    /// A writer of `projection` into `store`.
    pub(crate) fn new(store: Arc<dyn ProjectionStore>, projection: &'static str) -> Self {
        Self { store, projection }
    }

    /// Applies `batch`. `false` when it was not applied: another process owns the partition
    /// now, or shutdown came while the store was failing (the batch is redone on restart).
    pub(crate) async fn apply(&self, batch: ProjectionBatch, shutdown: &CancellationToken) -> bool {
        // The `project` span names the input positions this batch makes durable: the
        // partition and the next offset covered of its (first) input.
        let span = tracing::info_span!(
            "project",
            projection = self.projection,
            topic = batch.applied.first().map(|a| a.0.as_str()),
            partition = batch.applied.first().map(|a| a.1),
            offset = batch.applied.first().map(|a| a.2),
            inputs = batch.applied.len(),
            history = batch.history.len(),
        );
        self.write(vec![batch], shutdown).instrument(span).await
    }

    /// Applies `batches` (of several partitions) together where the store can; `false` as
    /// for [`apply`](Self::apply).
    pub(crate) async fn apply_all(
        &self,
        batches: Vec<ProjectionBatch>,
        shutdown: &CancellationToken,
    ) -> bool {
        let span = tracing::info_span!(
            "project",
            projection = self.projection,
            batches = batches.len(),
            history = batches.iter().map(|b| b.history.len()).sum::<usize>(),
        );
        self.write(batches, shutdown).instrument(span).await
    }

    async fn write(&self, batches: Vec<ProjectionBatch>, shutdown: &CancellationToken) -> bool {
        let what = format!("applying the {} projections", self.projection);
        let writes: Vec<_> = batches
            .iter()
            .map(|b| crate::metrics::ProjectionWrite::start(self.projection, b))
            .collect();
        let batches = Arc::new(batches);
        let applied = retry(&what, shutdown, || async {
            self.store
                .apply_all(Arc::clone(&batches))
                .await
                .map_err(ProcessorError::from)
        })
        .await
        .is_some();
        if applied {
            writes
                .into_iter()
                .for_each(crate::metrics::ProjectionWrite::done);
        }
        applied
    }
}

/// Runs `op` until it succeeds, backing off between failures. `None` when it never did:
/// the partition has a new owner (never write over it), or shutdown was requested.
pub(crate) async fn retry<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProcessorError>>,
{
    let mut backoff = Backoff::new(FIRST_DELAY, MAX_DELAY);
    loop {
        match op().await {
            Ok(v) => return Some(v),
            Err(e) if e.is_fenced() => {
                tracing::warn!(error = %e, "{what} refused: the partition has a new owner; stopping");
                return None;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!(error = %e, ?delay, "{what} failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => {
                        tracing::warn!("{what} abandoned at shutdown; it will be redone on restart");
                        return None;
                    }
                }
            }
        }
    }
}
