//! The engine behind the gateway's `QueryService/Sql`: DataFusion over the log
//! (`emberline_analytics`), one session per query that sees only the caller's tenant.
//!
//! Bounds (`[gateway.sql]`, [`SqlLimits`]): at most `concurrent` queries run at once (more
//! wait up to [`QUEUE_WAIT`] for a turn, then are refused as busy); each runs on a runtime of
//! its own `threads`, so a heavy query never slows the threads that answer other calls; it
//! holds at most `memory_mib` in joins, sorts and aggregations (its memory pool; nothing
//! spills to disk); its result is at most `max_result_mib` of Arrow IPC; and it ends after
//! `timeout_s`. Past a bound the query fails with a message naming the bound; the client's
//! cancel (a dropped stream) ends it too.

use std::sync::Arc;
use std::time::Duration;

use emberline_analytics::datafusion::arrow::ipc::writer::StreamWriter;
use emberline_analytics::datafusion::arrow::record_batch::RecordBatch;
use emberline_analytics::datafusion::error::DataFusionError;
use emberline_analytics::datafusion::execution::context::SessionConfig;
use emberline_analytics::datafusion::execution::disk_manager::{
    DiskManagerBuilder, DiskManagerMode,
};
use emberline_analytics::datafusion::execution::memory_pool::GreedyMemoryPool;
use emberline_analytics::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use emberline_analytics::{Analytics, AnalyticsError, Archive};
use emberline_gateway::sql::{SqlBatch, SqlEngine, SqlError, SqlStream};
use emberline_log::EventLog;
use emberline_schemas::EventCodec;
use futures::StreamExt as _;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::SqlLimits;

/// Longest a query waits for a turn before it is refused as busy.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// DataFusion over the log, for the gateway (see the module docs).
pub(crate) struct LogSql {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    archive: Option<Arc<Archive>>,
    limits: SqlLimits,
    turns: Arc<Semaphore>,
    runtime: QueryRuntime,
}

/// The queries' own runtime; shut down in the background when the engine goes, as a
/// runtime may not be dropped inside another.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl LogSql {
    /// An engine over `log` (and `archive`, when given) with `limits`.
    pub(crate) fn new(
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        archive: Option<Arc<Archive>>,
        limits: SqlLimits,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_name("emberline-sql")
            .enable_all()
            .build()?;
        Ok(Self {
            log,
            codec,
            archive,
            turns: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            limits,
            runtime: QueryRuntime(Some(runtime)),
        })
    }

    fn handle(&self) -> Result<tokio::runtime::Handle, SqlError> {
        self.runtime
            .0
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| SqlError::Failed("the SQL engine has stopped".into()))
    }
}

#[tonic::async_trait]
impl SqlEngine for LogSql {
    async fn run(&self, tenant: &str, query: &str) -> Result<SqlStream, SqlError> {
        let turn = tokio::time::timeout(QUEUE_WAIT, self.turns.clone().acquire_owned())
            .await
            .map_err(|_| {
                SqlError::Busy(format!(
                    "{} queries are running already; try again shortly",
                    self.limits.concurrent
                ))
            })?
            .map_err(|_| SqlError::Failed("the SQL engine has stopped".into()))?;
        let limits = self.limits.clone();
        let (log, codec, archive) = (self.log.clone(), self.codec.clone(), self.archive.clone());
        let (tenant, query) = (tenant.to_owned(), query.to_owned());
        let (planned_tx, planned_rx) = oneshot::channel();
        let (batches_tx, batches_rx) = mpsc::channel(2);
        self.handle()?.spawn(async move {
            let _turn = turn;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(limits.timeout_s);
            let mut planned = Some(planned_tx);
            let work = execute(
                Source {
                    log,
                    codec,
                    archive,
                },
                &limits,
                &tenant,
                &query,
                &mut planned,
                &batches_tx,
            );
            let failure = match tokio::time::timeout_at(deadline, work).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(_) => SqlError::TimedOut(format!(
                    "the query ran longer than {} s (gateway.sql.timeout_s): narrow it with a \
                     time range or a device",
                    limits.timeout_s
                )),
            };
            tracing::debug!(error = %failure, "SQL query failed");
            match planned.take() {
                Some(planned) => {
                    let _ = planned.send(Err(failure));
                }
                None => {
                    let _ = batches_tx.send(Err(failure)).await;
                }
            }
        });
        match planned_rx.await {
            Ok(Ok(())) => Ok(ReceiverStream::new(batches_rx).boxed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SqlError::Failed("the query stopped before it began".into())),
        }
    }
}

/// What a query reads.
struct Source {
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    archive: Option<Arc<Archive>>,
}

/// Plans `query` (answering `planned` once it runs) and sends its batches.
async fn execute(
    source: Source,
    limits: &SqlLimits,
    tenant: &str,
    query: &str,
    planned: &mut Option<oneshot::Sender<Result<(), SqlError>>>,
    batches: &mpsc::Sender<Result<SqlBatch, SqlError>>,
) -> Result<(), SqlError> {
    let memory = usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(GreedyMemoryPool::new(memory)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| classify(limits, AnalyticsError::from(e)))?;
    let config = SessionConfig::new().with_target_partitions(limits.threads.max(1));
    let Source {
        log,
        codec,
        archive,
    } = source;
    let analytics = Analytics::of_tenant(log, codec, archive, config, runtime, tenant)
        .await
        .map_err(|e| classify(limits, e))?;
    let df = analytics
        .query(query)
        .await
        .map_err(|e| classify(limits, e))?;
    let mut stream = df
        .execute_stream()
        .await
        .map_err(|e| classify(limits, AnalyticsError::from(e)))?;
    if let Some(planned) = planned.take() {
        let _ = planned.send(Ok(()));
    }
    let most = limits.max_result_mib.saturating_mul(1 << 20);
    let mut sent = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| classify(limits, AnalyticsError::from(e)))?;
        if batch.num_rows() == 0 {
            continue;
        }
        let arrow_ipc = encode(&batch).map_err(|e| classify(limits, e))?;
        sent += arrow_ipc.len() as u64;
        if sent > most {
            return Err(SqlError::TooLarge(format!(
                "the result is larger than {} MiB (gateway.sql.max_result_mib): add LIMIT, \
                 aggregate, or use `emberline export`",
                limits.max_result_mib
            )));
        }
        let rows = batch.num_rows() as u64;
        if batches
            .send(Ok(SqlBatch { arrow_ipc, rows }))
            .await
            .is_err()
        {
            // The caller went away.
            return Ok(());
        }
    }
    Ok(())
}

/// `batch` as an Arrow IPC stream of its own.
fn encode(batch: &RecordBatch) -> Result<Vec<u8>, AnalyticsError> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The gRPC-facing kind of a query's failure, with a one-line message.
fn classify(limits: &SqlLimits, e: AnalyticsError) -> SqlError {
    let text = crate::analytics::one_line_text(&e);
    let root = match &e {
        AnalyticsError::Query(q) => Some(q.find_root()),
        _ => None,
    };
    match root {
        Some(DataFusionError::ResourcesExhausted(_)) => SqlError::TooLarge(format!(
            "the query needs more than {} MiB (gateway.sql.memory_mib): narrow it with a time \
             range or a device: {text}",
            limits.memory_mib
        )),
        Some(
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_),
        ) => SqlError::Invalid(text),
        _ => SqlError::Failed(text),
    }
}
