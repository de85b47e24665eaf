//! [`LogTable`]: one topic of the log as a DataFusion table.
//!
//! A scan reads each selected partition of the topic as one DataFusion partition, so
//! partitions are read (and decoded) in parallel, from the partition's start offset up to
//! the end offset it had when the scan was planned: a query sees a consistent snapshot and
//! never waits for records appended after it started.
//!
//! What is pushed down (decides what is read at all):
//!
//! * `device_id = 'x'` and `device_id IN ('x', 'y')`: only the partitions
//!   [`partition_for`] gives for those keys are read, since a device's records all live in
//!   its partition, and in them records keyed with another device are not decoded. The
//!   filter is *inexact*: DataFusion still filters the rows.
//! * `log_partition = n` and `log_partition IN (…)`: only those partitions (exact).
//! * Time ranges on the table's time column (`event_time`; `record_time` of `dead_letter`):
//!   `<`, `<=`, `>`, `>=` and `BETWEEN` against a timestamp. Each selected partition is read
//!   only over the offset ranges the log's time index names for that range
//!   ([`EventLog::time_ranges`]: the embedded log keeps one per batch; without one the whole
//!   partition is read), and records whose log timestamp is outside the range are not
//!   decoded. This holds because every writer stamps a record with its event's time, the
//!   contract the log's retention also keys on. Inexact: DataFusion still filters the rows.
//! * Several such conditions joined by `AND` select the intersection.
//!
//! What is not pushed down: `OR` across columns, and predicates on any other column.
//! `LIMIT` stops each partition's reader once it has produced enough rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use emberline_common::tenant::split;
use emberline_log::{EventLog, PartitionReader, partition_for};
use emberline_schemas::{CodecError, EventCodec, EventKind};
use futures::StreamExt as _;

use crate::AnalyticsError;
use crate::archive::{Archive, ArchiveScan, ArchivedRange};
use crate::columns::{BatchBuilder, schema};
use crate::tables::{DEVICE_COLUMN, Decode, PARTITION_COLUMN, TableDef, dead_letter};

/// Rows per record batch.
const BATCH_ROWS: usize = 8192;
/// Records asked of the log per read.
const READ_RECORDS: usize = 4096;
/// How long one read waits for records known to exist (a Kafka fetch in flight).
const READ_WAIT: Duration = Duration::from_secs(10);

/// One topic as a table (see the module docs).
pub struct LogTable {
    def: &'static TableDef,
    schema: SchemaRef,
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    tenant: Option<Arc<str>>,
    archive: Option<Arc<Archive>>,
}

impl std::fmt::Debug for LogTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTable").field("def", &self.def).finish()
    }
}

impl LogTable {
    /// The table `def` over `log`, decoding with `codec`.
    pub fn new(def: &'static TableDef, log: Arc<dyn EventLog>, codec: Arc<EventCodec>) -> Self {
        Self {
            def,
            schema: schema(def.columns),
            log,
            codec,
            tenant: None,
            archive: None,
        }
    }

    /// The same table reading `archive` too: the records retention moved there, and of each
    /// partition's live records only those past where its archive ends.
    pub fn with_archive(mut self, archive: Arc<Archive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The same table holding only `tenant`'s records: those whose key (the qualified
    /// device id every writer keys a record with) is one of the tenant's devices. Other
    /// records are skipped before they are decoded, so no filter in a query can reach them.
    pub fn of_tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

#[async_trait]
impl TableProvider for LogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        let time = self.def.time_column();
        Ok(filters
            .iter()
            .map(|f| match selection(f, time) {
                Some(Selection::Devices(_) | Selection::Time(_)) => {
                    TableProviderFilterPushDown::Inexact
                }
                Some(Selection::Partitions(_)) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let topic = self.def.topic;
        let count = self.log.partitions(topic).await.map_err(external)?;
        let mut chosen: BTreeSet<u32> = (0..count).collect();
        let mut times = TimeRange::ALL;
        let mut devices: Option<BTreeSet<String>> = None;
        for filter in filters {
            let keep: BTreeSet<u32> = match selection(filter, self.def.time_column()) {
                Some(Selection::Devices(these)) => {
                    let keep = these
                        .iter()
                        .map(|d| partition_for(d.as_bytes(), count))
                        .collect();
                    let these: BTreeSet<String> = these.into_iter().collect();
                    devices = Some(match devices {
                        Some(before) => before.intersection(&these).cloned().collect(),
                        None => these,
                    });
                    keep
                }
                Some(Selection::Partitions(p)) => p.into_iter().collect(),
                Some(Selection::Time(range)) => {
                    times = times.intersect(range);
                    continue;
                }
                None => continue,
            };
            chosen.retain(|p| keep.contains(p));
        }
        tracing::debug!(table = self.def.name, topic, partitions = ?chosen, ?times, "scan");
        // Only the columns the query reads are built: the others' values are dropped as
        // records are decoded, and not read from archive files.
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let mut streams: Vec<Arc<dyn PartitionStream>> = Vec::with_capacity(chosen.len());
        // Start offsets first, then the archive's manifest: a range retention archives and
        // deletes between the two is then read from the archive.
        let mut starts = BTreeMap::new();
        for &partition in &chosen {
            let start = self
                .log
                .start_offset(topic, partition)
                .await
                .map_err(external)?;
            starts.insert(partition, start);
        }
        let archived = match &self.archive {
            Some(archive) => archive
                .ranges(topic)
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            None => Arc::default(),
        };
        // Records keyed with another device are skipped undecoded. Only for the Avro tables:
        // a dead-letter row names the device its document gives, which may not be its key.
        let keys = match self.def.decode {
            Decode::Avro(_) => devices.clone().map(Arc::new),
            Decode::DeadLetter => None,
        };
        for partition in chosen {
            let files = self.archive_files(&archived, partition, devices.as_ref(), times);
            if !files.is_empty() {
                streams.push(Arc::new(ArchiveScan {
                    schema: projected.clone(),
                    files,
                }));
            }
            // Live records from where the archive ends: a range archived but not yet deleted
            // from the log is read once, from the archive.
            let archived_to = archived
                .iter()
                .filter(|r| r.partition == partition)
                .map(|r| r.to)
                .max()
                .unwrap_or(0);
            let start = starts
                .get(&partition)
                .copied()
                .unwrap_or(0)
                .max(archived_to);
            let end = self
                .log
                .end_offset(topic, partition)
                .await
                .map_err(external)?;
            let ranges: Vec<std::ops::Range<u64>> = if start >= end {
                Vec::new()
            } else if times == TimeRange::ALL {
                std::iter::once(start..end).collect()
            } else {
                match self
                    .log
                    .time_ranges(topic, partition, times.from_ms, times.to_ms)
                    .await
                    .map_err(external)?
                {
                    // The index was read after the end offset: keep to the snapshot.
                    Some(ranges) => ranges
                        .into_iter()
                        .map(|r| r.start.max(start)..r.end.min(end))
                        .filter(|r| !r.is_empty())
                        .collect(),
                    None => std::iter::once(start..end).collect(),
                }
            };
            tracing::debug!(table = self.def.name, partition, ?ranges, "offsets to read");
            if ranges.is_empty() {
                continue;
            }
            streams.push(Arc::new(PartitionScan {
                def: self.def,
                schema: projected.clone(),
                projection: projection.cloned(),
                log: self.log.clone(),
                codec: self.codec.clone(),
                partition,
                ranges,
                times,
                keys: keys.clone(),
                tenant: self.tenant.clone(),
                limit,
            }));
        }
        if streams.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let exec = StreamingTableExec::try_new(
            projected,
            streams,
            None,
            Vec::<LexOrdering>::new(),
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

impl LogTable {
    /// The archive files of `partition` that may hold rows of `devices` in `times` (and of
    /// the tenant, when limited to one).
    fn archive_files(
        &self,
        archived: &[ArchivedRange],
        partition: u32,
        devices: Option<&BTreeSet<String>>,
        times: TimeRange,
    ) -> Vec<std::path::PathBuf> {
        let Some(archive) = &self.archive else {
            return Vec::new();
        };
        let dir = archive.topic_dir(self.def.topic);
        archived
            .iter()
            .filter(|r| r.partition == partition)
            .flat_map(|r| &r.files)
            .filter(|f| devices.is_none_or(|d| d.contains(&f.device)))
            .filter(|f| f.max_ms >= times.from_ms && f.min_ms < times.to_ms)
            .filter(|f| {
                self.tenant
                    .as_deref()
                    .is_none_or(|tenant| split(&f.device).0 == tenant)
            })
            .map(|f| dir.join(&f.path))
            .collect()
    }
}

/// What a pushed-down filter selects.
#[derive(Debug, PartialEq)]
enum Selection {
    /// Rows of these devices (their partitions).
    Devices(Vec<String>),
    /// Rows of these partitions.
    Partitions(Vec<u32>),
    /// Rows whose time is in this range.
    Time(TimeRange),
}

/// `[from_ms, to_ms)` in epoch ms: the times a scan may return.
#[derive(Clone, Copy, Debug, PartialEq)]
struct TimeRange {
    from_ms: i64,
    to_ms: i64,
}

impl TimeRange {
    const ALL: Self = Self {
        from_ms: i64::MIN,
        to_ms: i64::MAX,
    };

    fn intersect(self, other: Self) -> Self {
        Self {
            from_ms: self.from_ms.max(other.from_ms),
            to_ms: self.to_ms.min(other.to_ms),
        }
    }

    fn contains(&self, ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&ms)
    }
}

/// A timestamp literal in epoch ms, rounded down (`floor`) or up; `None` for anything else.
fn epoch_ms(value: &ScalarValue, floor: bool) -> Option<i64> {
    let (v, per_ms) = match value {
        ScalarValue::TimestampSecond(Some(v), _) => return v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => return Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => (*v, 1_000),
        ScalarValue::TimestampNanosecond(Some(v), _) => (*v, 1_000_000),
        _ => return None,
    };
    Some(if floor {
        v.div_euclid(per_ms)
    } else {
        v.div_euclid(per_ms) + i64::from(v.rem_euclid(per_ms) != 0)
    })
}

/// The time range a comparison `column op value` (or `BETWEEN`) on the time column allows,
/// widened to whole milliseconds.
fn time_selection(expr: &Expr, time_column: &str) -> Option<TimeRange> {
    // The column, or the column cast to another timestamp unit (which keeps its order), as
    // comparing with a literal of another unit or time zone plans it.
    let is_time = |e: &Expr| match e {
        Expr::Column(c) => c.name == time_column,
        Expr::Cast(cast) => {
            matches!(cast.field.data_type(), DataType::Timestamp(..))
                && matches!(&*cast.expr, Expr::Column(c) if c.name == time_column)
        }
        _ => false,
    };
    match expr {
        Expr::BinaryExpr(b) => {
            let (op, value) = match (&*b.left, &*b.right) {
                (l, Expr::Literal(v, _)) if is_time(l) => (b.op, v),
                (Expr::Literal(v, _), r) if is_time(r) => (b.op.swap()?, v),
                _ => return None,
            };
            let all = TimeRange::ALL;
            match op {
                Operator::Gt | Operator::GtEq => Some(TimeRange {
                    from_ms: epoch_ms(value, true)?,
                    ..all
                }),
                Operator::Lt => Some(TimeRange {
                    to_ms: epoch_ms(value, false)?,
                    ..all
                }),
                Operator::LtEq => Some(TimeRange {
                    to_ms: epoch_ms(value, false)?.checked_add(1)?,
                    ..all
                }),
                Operator::Eq => {
                    let ms = epoch_ms(value, true)?;
                    Some(TimeRange {
                        from_ms: ms,
                        to_ms: epoch_ms(value, false)?.checked_add(1)?,
                    })
                }
                _ => None,
            }
        }
        Expr::Between(b) if !b.negated && is_time(&b.expr) => match (&*b.low, &*b.high) {
            (Expr::Literal(low, _), Expr::Literal(high, _)) => Some(TimeRange {
                from_ms: epoch_ms(low, true)?,
                to_ms: epoch_ms(high, false)?.checked_add(1)?,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// The selection `expr` makes, if it is a filter this table pushes down; `time_column` is
/// the table's time column.
fn selection(expr: &Expr, time_column: &str) -> Option<Selection> {
    if let Some(range) = time_selection(expr, time_column) {
        return Some(Selection::Time(range));
    }
    let (column, values): (&str, Vec<&ScalarValue>) = match expr {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => match (&*b.left, &*b.right) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                (c.name.as_str(), vec![v])
            }
            _ => return None,
        },
        Expr::InList(list) if !list.negated => {
            let Expr::Column(c) = &*list.expr else {
                return None;
            };
            let values = list
                .list
                .iter()
                .map(|e| match e {
                    Expr::Literal(v, _) => Some(v),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            (c.name.as_str(), values)
        }
        _ => return None,
    };
    match column {
        DEVICE_COLUMN => values
            .into_iter()
            .map(|v| match v {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Selection::Devices),
        PARTITION_COLUMN => values
            .into_iter()
            .map(|v| match v {
                ScalarValue::Int32(Some(n)) => u32::try_from(*n).ok(),
                ScalarValue::Int64(Some(n)) => u32::try_from(*n).ok(),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Selection::Partitions),
        _ => None,
    }
}

/// Every row of offsets `range` of `partition` of `def`'s topic, as a scan reads them (no
/// time, device or tenant filter); records that make no row go to `rejects`.
pub(crate) fn read_range(
    def: &'static TableDef,
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    partition: u32,
    range: std::ops::Range<u64>,
    rejects: Rejects,
) -> SendableRecordBatchStream {
    PartitionScan {
        def,
        schema: schema(def.columns),
        projection: None,
        log,
        codec,
        partition,
        ranges: vec![range],
        times: TimeRange::ALL,
        keys: None,
        tenant: None,
        limit: None,
    }
    .stream(Some(rejects))
}

fn external(e: emberline_log::LogError) -> DataFusionError {
    DataFusionError::External(Box::new(AnalyticsError::Log(e)))
}

/// Reading one partition of a topic into record batches.
struct PartitionScan {
    def: &'static TableDef,
    /// The schema of the batches: the projected columns.
    schema: SchemaRef,
    /// The columns read, as indexes into the table's (all when `None`).
    projection: Option<Vec<usize>>,
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    partition: u32,
    /// The offsets to read, ascending and disjoint, within the snapshot.
    ranges: Vec<std::ops::Range<u64>>,
    /// Records stamped outside it are not decoded.
    times: TimeRange,
    /// When given, records keyed with none of these devices are not decoded.
    keys: Option<Arc<BTreeSet<String>>>,
    /// Only this tenant's records are rows.
    tenant: Option<Arc<str>>,
    limit: Option<usize>,
}

impl std::fmt::Debug for PartitionScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionScan")
            .field("table", &self.def.name)
            .field("partition", &self.partition)
            .field("ranges", &self.ranges)
            .field("times", &self.times)
            .finish()
    }
}

impl PartitionStream for PartitionScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.stream(None)
    }
}

impl PartitionScan {
    /// The rows of this partition's ranges; records that make no row are handed to
    /// `rejects` when given.
    fn stream(&self, rejects: Option<Rejects>) -> SendableRecordBatchStream {
        let mut ranges = self.ranges.iter().rev().cloned().collect::<Vec<_>>();
        let first = ranges.pop().unwrap_or(0..0);
        let state = ScanState {
            def: self.def,
            log: self.log.clone(),
            codec: self.codec.clone(),
            partition: self.partition,
            end: first.end,
            next: first.start,
            ranges,
            times: self.times,
            keys: self.keys.clone(),
            tenant: self.tenant.clone(),
            reader: None,
            batch: BatchBuilder::projected(
                self.def.columns,
                self.schema.clone(),
                self.projection.as_deref(),
            ),
            kinds: Vec::new(),
            left: self.limit.unwrap_or(usize::MAX),
            skipped: 0,
            rejects,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            match state.next_batch().await {
                Ok(Some(batch)) => Some((Ok(batch), state)),
                Ok(None) => None,
                Err(e) => {
                    // End the stream after the error.
                    state.next = state.end;
                    state.ranges.clear();
                    state.left = 0;
                    Some((Err(DataFusionError::External(Box::new(e))), state))
                }
            }
        })
        .fuse();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

struct ScanState {
    def: &'static TableDef,
    log: Arc<dyn EventLog>,
    codec: Arc<EventCodec>,
    partition: u32,
    /// The end of the range being read.
    end: u64,
    next: u64,
    /// The ranges still to read, the next last.
    ranges: Vec<std::ops::Range<u64>>,
    times: TimeRange,
    keys: Option<Arc<BTreeSet<String>>>,
    tenant: Option<Arc<str>>,
    reader: Option<Box<dyn PartitionReader>>,
    batch: BatchBuilder,
    /// The event kind of each writer schema id met so far: a scan meets a handful.
    kinds: Vec<(u32, Option<EventKind>)>,
    left: usize,
    skipped: u64,
    /// Where records that make no row go, when someone keeps them (the archive).
    rejects: Option<Rejects>,
}

/// Records a read found no row in (not the table's kind, or not decodable).
pub(crate) type Rejects = Arc<std::sync::Mutex<Vec<emberline_log::Record>>>;

impl ScanState {
    /// The next batch of rows, or `None` at the end of the snapshot.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, AnalyticsError> {
        while self.left > 0 && self.batch.rows() < BATCH_ROWS {
            if self.next >= self.end {
                // On to the next range, with a reader that starts there.
                let Some(range) = self.ranges.pop() else {
                    break;
                };
                (self.next, self.end) = (range.start, range.end);
                self.reader = None;
                continue;
            }
            let reader = match &mut self.reader {
                Some(r) => r,
                None => self.reader.insert(
                    self.log
                        .reader(self.def.topic, self.partition, self.next)
                        .await?,
                ),
            };
            let want = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
            let records = reader.next_batch(want.min(READ_RECORDS), READ_WAIT).await?;
            if let Some(first) = records.first()
                && first.offset > self.next
            {
                // The reader skipped ahead: retention removed records since the scan was
                // planned (into the archive, which this scan's snapshot does not name).
                let start = self
                    .log
                    .start_offset(self.def.topic, self.partition)
                    .await?;
                if start > self.next {
                    return Err(AnalyticsError::ExpiredDuringQuery {
                        topic: self.def.topic,
                        partition: self.partition,
                        offset: self.next,
                    });
                }
            }
            if records.is_empty() {
                tracing::warn!(
                    topic = self.def.topic,
                    partition = self.partition,
                    at = self.next,
                    end = self.end,
                    "the log returned no records before the end it reported; stopping there"
                );
                self.next = self.end;
                continue;
            }
            for record in records {
                if record.offset >= self.end || self.left == 0 {
                    self.next = self.end;
                    break;
                }
                self.next = record.offset + 1;
                if !self.times.contains(record.timestamp_ms)
                    || !self.keyed(&record)
                    || !self.tenants(&record)
                {
                    continue;
                }
                let wrote = match self.decode(&record).await {
                    // The archive keeps what makes no row as it is; a registry that cannot
                    // be reached now says nothing about the record, so the read fails.
                    Err(AnalyticsError::Codec(CodecError::Registry(e)))
                        if self.rejects.is_some() =>
                    {
                        return Err(AnalyticsError::Codec(CodecError::Registry(e)));
                    }
                    other => other,
                };
                if !matches!(wrote, Ok(true))
                    && let Some(rejects) = &self.rejects
                {
                    rejects
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(record.clone());
                }
                match wrote {
                    Ok(true) => self.left -= 1,
                    Ok(false) => {}
                    Err(reason) => {
                        self.skipped += 1;
                        tracing::warn!(
                            topic = self.def.topic,
                            partition = record.partition,
                            offset = record.offset,
                            %reason,
                            "record does not decode; left out of the table"
                        );
                    }
                }
            }
        }
        if self.batch.rows() == 0 {
            return Ok(None);
        }
        Ok(Some(self.batch.finish()?))
    }

    /// The event kind of `payload`, from the kinds met so far or else the codec.
    async fn kind_of(&mut self, payload: &[u8]) -> Result<Option<EventKind>, AnalyticsError> {
        let (id, _) = emberline_schemas::wire::split(payload)?;
        if let Some((_, kind)) = self.kinds.iter().find(|(known, _)| *known == id) {
            return Ok(*kind);
        }
        let kind = self.codec.kind_of_learning(payload).await?;
        self.kinds.push((id, kind));
        Ok(kind)
    }

    /// Whether `record` is keyed with one of the devices the scan is limited to (any, when
    /// none).
    fn keyed(&self, record: &emberline_log::Record) -> bool {
        self.keys
            .as_deref()
            .is_none_or(|keys| std::str::from_utf8(&record.key).is_ok_and(|key| keys.contains(key)))
    }

    /// Whether `record` belongs to the tenant the scan is limited to (any, when none).
    fn tenants(&self, record: &emberline_log::Record) -> bool {
        self.tenant.as_deref().is_none_or(|tenant| {
            std::str::from_utf8(&record.key).is_ok_and(|key| split(key).0 == tenant)
        })
    }

    /// Writes `record` as a row; `Ok(false)` for a record that is not one of this table's.
    async fn decode(&mut self, record: &emberline_log::Record) -> Result<bool, AnalyticsError> {
        match self.def.decode {
            Decode::Avro(fill) => {
                let Some(kind) = self.kind_of(&record.value).await? else {
                    return Ok(false);
                };
                // The table's decoder decodes before it writes a column, and a row with no
                // column written is no row: a record that fails adds nothing.
                let mut row = self.batch.row();
                Ok(fill(&self.codec, kind, record, &mut row)?)
            }
            Decode::DeadLetter => {
                let mut row = self.batch.row();
                dead_letter(record, &mut row).map_err(|e| AnalyticsError::DeadLetter {
                    offset: record.offset,
                    reason: e.to_string(),
                })?;
                Ok(true)
            }
        }
    }
}
