//! Query-ready projections of the log: the [`ProjectionStore`] seam, the embedded store and,
//! with the `scylla` feature, the ScyllaDB store (`ScyllaStore`).
//!
//! Projections are a pure function of the log. Processors write them; the gateway reads them.
//! Contract of every store:
//!
//! * [`ProjectionStore::apply`] writes a [`ProjectionBatch`] — latest values, history points,
//!   processor state and the log positions the batch covers — **atomically and durably**: after
//!   it returns, a crash loses none of it; before, it leaves none of it.
//! * Writes are **idempotent upserts** keyed by what they describe (probe; probe and event
//!   time; state key), and the latest value of a probe only moves forward in (event time,
//!   source offset), so re-applying a batch after a crash changes nothing.
//! * [`ProjectionStore::applied_positions`] tells a processor where to resume: the next offset
//!   per partition of each input topic it has fully applied.
//!
//! This crate knows nothing of the log, Avro or gRPC: it stores plain values.

pub mod downsample;
mod embedded;
mod error;
pub mod history_block;
mod model;
#[cfg(feature = "scylla")]
mod scylla;

#[cfg(any(test, feature = "testsuite"))]
pub mod conformance;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

#[cfg(feature = "scylla")]
pub use self::scylla::{ScyllaConfig, ScyllaStore};
pub use downsample::{Downsampler, HistoryStep};
pub use embedded::{EmbeddedStore, FORMAT_VERSION, TableStats, table_stats_read_only};
pub use error::ProjectionError;
pub use model::{
    AlertRecord, AlertRuleRecord, CookNote, CookSession, DeviceInfo, DeviceSummary, HistoryPoint,
    LatestProbe, ProbePrediction, ProjectionBatch, Trend,
};

/// Query-ready state derived from the log. See the crate docs for the contract.
#[async_trait]
pub trait ProjectionStore: Send + Sync + 'static {
    /// Applies a batch atomically and durably.
    async fn apply(&self, batch: ProjectionBatch) -> Result<(), ProjectionError>;

    /// Applies `batches` in order, each atomically and durably. A store that can commits
    /// them together (the embedded store: one transaction, one sync); by default they are
    /// applied one after another, so a failure may leave the first ones applied — which
    /// applying them again does not change (upserts).
    /// Shared, so that a retry after a failure costs no copy for the stores that need none.
    async fn apply_all(&self, batches: Arc<Vec<ProjectionBatch>>) -> Result<(), ProjectionError> {
        for batch in batches.iter() {
            self.apply(batch.clone()).await?;
        }
        Ok(())
    }

    /// Every device with at least one probe, ordered by device id.
    async fn devices(&self) -> Result<Vec<DeviceSummary>, ProjectionError>;

    /// Every device's description (removed ones included), ordered by device id.
    async fn device_infos(&self) -> Result<Vec<DeviceInfo>, ProjectionError>;

    /// One device's description.
    async fn device_info(&self, device_id: &str) -> Result<Option<DeviceInfo>, ProjectionError>;

    /// Cooks, newest first; only `device`'s when given.
    async fn cooks(&self, device_id: Option<&str>) -> Result<Vec<CookSession>, ProjectionError>;

    /// One cook.
    async fn cook(&self, cook_id: &str) -> Result<Option<CookSession>, ProjectionError>;

    /// Latest reading and trend of every probe of `device`, ordered by probe id.
    async fn latest(&self, device_id: &str) -> Result<Vec<LatestProbe>, ProjectionError>;

    /// The latest prediction of every probe with a target, of one device or all.
    async fn predictions(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<ProbePrediction>, ProjectionError>;

    /// Alert episodes, newest first, of one device or all; only active ones if asked.
    async fn alerts(
        &self,
        device_id: Option<&str>,
        active_only: bool,
    ) -> Result<Vec<AlertRecord>, ProjectionError>;

    /// One alert episode.
    async fn alert(&self, alert_id: &str) -> Result<Option<AlertRecord>, ProjectionError>;

    /// The alert rules users set, of one device or all.
    async fn alert_rules(
        &self,
        device_id: Option<&str>,
    ) -> Result<Vec<AlertRuleRecord>, ProjectionError>;

    /// History of one probe with `from_ms <= event_time < to_ms`, oldest first, at most `limit`.
    async fn history(
        &self,
        device_id: &str,
        probe_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryPoint>, ProjectionError>;

    /// History of one probe with `from_ms <= event_time < to_ms` summarised in steps of
    /// `step_ms` (see [`downsample`]), oldest first, at most `limit` steps. By default the
    /// points are read through [`history`](Self::history) a chunk at a time; a store that
    /// can summarise without materialising every point does.
    async fn history_steps(
        &self,
        device_id: &str,
        probe_id: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryStep>, ProjectionError> {
        const CHUNK: usize = 10_000;
        let mut steps = Downsampler::new(step_ms, limit);
        let mut from = from_ms;
        loop {
            let points = self
                .history(device_id, probe_id, from, to_ms, CHUNK)
                .await?;
            for p in &points {
                if !steps.push(p.event_time, p.temperature_c) {
                    return Ok(steps.finish());
                }
            }
            match points.last() {
                Some(last) if points.len() == CHUNK => from = last.event_time + 1,
                _ => return Ok(steps.finish()),
            }
        }
    }

    /// Next offset per partition of `topic` that the projections fully cover.
    async fn applied_positions(&self, topic: &str) -> Result<BTreeMap<u32, u64>, ProjectionError>;

    /// Processor state stored under `key` by an earlier batch.
    async fn state(&self, key: &str) -> Result<Option<Vec<u8>>, ProjectionError>;

    /// Where history is retained from (epoch ms, event time): points before it may have been
    /// removed by retention, so a query before it must say so rather than answer nothing.
    /// `None` when nothing has expired.
    async fn history_retained_from(&self) -> Result<Option<i64>, ProjectionError> {
        Ok(None)
    }

    /// Every stored entry as (table, key, value) bytes in a stable order, for comparing two
    /// stores (replay determinism checks).
    async fn dump(&self) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>, ProjectionError>;
}
