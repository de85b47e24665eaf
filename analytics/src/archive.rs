//! The archive: records the embedded log's retention removes, kept as Parquet files that
//! the tables read together with the live log.
//!
//! The embedded log removes records older than `log.retention_days`, so the live log stays
//! small. With an archive, retention first copies what it is about to remove into Parquet
//! files, partitioned by day and device, and the tables ([`LogTable`](crate::LogTable)) read
//! the archive and the live log as one: a year of cooks stays queryable, and the files are
//! plain Parquet any other tool reads.
//!
//! ## Layout (under the archive directory)
//!
//! * `<topic>/day=YYYY-MM-DD/device=<device>/p<partition>-<from>-<to>-<hash>.parquet`: the
//!   rows, with the table's own columns, of one device on one day (UTC, by the table's time
//!   column) among offsets `from..to` of a partition. The device id is percent-encoded (a
//!   long one shortened with its hash); the hash of the id in the file name keeps two ids
//!   that differ only in case apart on file systems that ignore case. Each file is written
//!   as `….parquet.partial`, fsynced and renamed.
//! * `<topic>/raw/p<partition>-<from>-<to>.parquet`: the records of that range that make no
//!   row (not decodable, or not the table's kind), as the log held them — partition,
//!   offset, time, key and value bytes — so nothing the log held is lost.
//! * `<topic>/manifest.jsonl`: one line per archived range naming its files, appended and
//!   fsynced after the files are. A file no line names is not part of the archive.
//!
//! ## Archiving ([`expire`])
//!
//! Per partition: the offset below which every batch has expired
//! ([`EmbeddedLog::expired_before`]); the offsets from where the partition's archive ends
//! (or the log starts) up to it, in ranges of at most [`RANGE_RECORDS`], each written (files
//! fsynced, then its manifest line) and then deleted from the log. A crash between the two
//! leaves a range in both places; the tables read a partition's live records only from
//! where its archive ends, so no row appears twice, and the next round deletes it. A crash
//! before the manifest line leaves files no line names, which the next round overwrites or
//! ignores. Only the topics that are tables are archived; other topics expire as before.
//! A partition whose archive reaches past the log's end was archived from another log (an
//! older backup restored): it is neither archived nor expired, and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
    UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use emberline_log::{EmbeddedLog, EventLog, Record, topics};
use emberline_schemas::EventCodec;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::provider::{Rejects, read_range};
use crate::tables::{DEVICE_COLUMN, TABLES, TableDef};
use crate::{AnalyticsError, PARQUET_ROW_GROUP_ROWS};

/// Records archived (and then deleted from the log) per step: what one step holds in memory.
pub const RANGE_RECORDS: u64 = 100_000;
const MANIFEST: &str = "manifest.jsonl";
/// Rows per batch read back from an archive file.
const READ_ROWS: usize = 8192;

/// One archived offset range of a partition, as its manifest line says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedRange {
    /// The log partition.
    pub partition: u32,
    /// First offset archived.
    pub from: u64,
    /// One past the last offset archived.
    pub to: u64,
    /// The row files, one per day and device.
    pub files: Vec<ArchivedFile>,
    /// The records that make no row, when there were any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<ArchivedRaw>,
}

/// One Parquet file of rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedFile {
    /// Path under the topic's directory.
    pub path: String,
    /// Its device.
    pub device: String,
    /// Rows in it.
    pub rows: u64,
    /// Its oldest and newest row time (epoch ms, the table's time column).
    pub min_ms: i64,
    /// See `min_ms`.
    pub max_ms: i64,
}

/// The records of a range that make no row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedRaw {
    /// Path under the topic's directory.
    pub path: String,
    /// Records in it.
    pub records: u64,
}

/// The archive directory (see the module docs).
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    /// Each topic's manifest as last read.
    manifests: Mutex<BTreeMap<String, ReadManifest>>,
}

/// A manifest's ranges and the file length they were read at.
type ReadManifest = (u64, Arc<Vec<ArchivedRange>>);

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AnalyticsError {
    let path = path.to_owned();
    move |e| AnalyticsError::Archive {
        action,
        path,
        source: Box::new(e),
    }
}

impl Archive {
    /// The archive in `dir`, created when missing.
    pub fn open(dir: &Path) -> Result<Self, AnalyticsError> {
        std::fs::create_dir_all(dir).map_err(io_error("creating the archive directory", dir))?;
        Ok(Self {
            dir: dir.to_owned(),
            manifests: Mutex::new(BTreeMap::new()),
        })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of `topic`'s files.
    pub fn topic_dir(&self, topic: &str) -> PathBuf {
        self.dir.join(topic)
    }

    /// Every range archived from `topic`, oldest first per partition. Re-read when the
    /// manifest has grown since the last call.
    pub fn ranges(&self, topic: &str) -> Result<Arc<Vec<ArchivedRange>>, AnalyticsError> {
        let path = self.topic_dir(topic).join(MANIFEST);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error("reading the archive manifest", &path)(e)),
        };
        let mut cache = self
            .manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((read_at, ranges)) = cache.get(topic)
            && *read_at == len
        {
            return Ok(ranges.clone());
        }
        let ranges = Arc::new(if len == 0 {
            Vec::new()
        } else {
            let text =
                std::fs::read(&path).map_err(io_error("reading the archive manifest", &path))?;
            parse_manifest(&text, &path)
        });
        cache.insert(topic.to_owned(), (len, ranges.clone()));
        Ok(ranges)
    }

    /// One past the last offset of `partition` of `topic` archived, `None` when none was.
    pub fn archived_to(&self, topic: &str, partition: u32) -> Result<Option<u64>, AnalyticsError> {
        Ok(self
            .ranges(topic)?
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.to)
            .max())
    }

    /// Copies offsets `range` of `partition` of `def`'s topic from `log` into the archive:
    /// the rows as files per day and device, the records that make no row as they are, and
    /// the manifest line naming them, each fsynced. Fails, writing no manifest line, unless
    /// every offset of the range is in a file.
    pub async fn archive_range(
        &self,
        def: &'static TableDef,
        log: Arc<dyn EventLog>,
        codec: Arc<EventCodec>,
        partition: u32,
        range: std::ops::Range<u64>,
    ) -> Result<ArchivedRange, AnalyticsError> {
        let rejects = Rejects::default();
        let mut stream = read_range(def, log, codec, partition, range.clone(), rejects.clone());
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        drop(stream);
        let raw = std::mem::take(&mut *rejects.lock().unwrap_or_else(PoisonError::into_inner));
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let expected = range.end - range.start;
        if (rows + raw.len()) as u64 != expected {
            return Err(AnalyticsError::ArchiveIncomplete {
                topic: def.topic,
                partition,
                from: range.start,
                to: range.end,
                read: (rows + raw.len()) as u64,
            });
        }
        let dir = self.topic_dir(def.topic);
        let archived = tokio::task::spawn_blocking(move || {
            let archived = write_range(&dir, def, partition, range, &batches, &raw)?;
            append_manifest(&dir, &archived)?;
            Ok::<_, AnalyticsError>(archived)
        })
        .await
        .map_err(|e| AnalyticsError::Archive {
            action: "writing archive files",
            path: self.topic_dir(def.topic),
            source: e.into(),
        })??;
        // Read again on the next call, whatever the manifest's length.
        self.manifests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(def.topic);
        Ok(archived)
    }
}

/// The manifest's ranges; a torn last line (a crash while appending) is not a range.
fn parse_manifest(text: &[u8], path: &Path) -> Vec<ArchivedRange> {
    let mut out = Vec::new();
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<ArchivedRange>(line) {
            Ok(range) => out.push(range),
            Err(e) => tracing::warn!(
                path = %path.display(),
                line = n + 1,
                error = %e,
                "archive manifest line does not parse; the files it named are left out"
            ),
        }
    }
    out
}

/// Appends `range`'s line to the manifest in `dir`, after cutting a torn last line, fsynced.
fn append_manifest(dir: &Path, range: &ArchivedRange) -> Result<(), AnalyticsError> {
    let path = dir.join(MANIFEST);
    let failed = || io_error("appending to the archive manifest", &path);
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed())?;
    let mut len = file.metadata().map_err(failed())?.len();
    let mut line = Vec::new();
    // Only the last byte is read, unless the last line lacks its newline (after a crash).
    let mut last = [0u8; 1];
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1)).map_err(failed())?;
        file.read_exact(&mut last).map_err(failed())?;
    }
    if len > 0 && last[0] != b'\n' {
        // A last line without its newline: a range when it parses (as readers take it),
        // torn by a crash otherwise, and cut.
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(failed())?;
        file.read_to_end(&mut text).map_err(failed())?;
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if serde_json::from_slice::<ArchivedRange>(&text[keep..]).is_ok() {
            line.push(b'\n');
        } else {
            file.set_len(keep as u64).map_err(failed())?;
            len = keep as u64;
        }
    }
    file.seek(SeekFrom::End(0)).map_err(failed())?;
    line.extend(serde_json::to_vec(range).map_err(|e| failed()(std::io::Error::other(e)))?);
    line.push(b'\n');
    let written = file.write_all(&line).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Not durably named: take the line back, so no later round counts the range as
        // archived (and deletes it) on the strength of a line that may not survive a crash.
        let _ = file.set_len(len).and_then(|()| file.sync_all());
        return Err(failed()(e));
    }
    if !existed {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), AnalyticsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing an archive directory", dir))
}

/// Longest device path component: well within any file system's 255-byte names.
const MAX_COMPONENT: usize = 80;

/// A device id as a path component: letters, digits, `-`, `_` and `.` as they are (a leading
/// `.` encoded), everything else `%XX`; past [`MAX_COMPONENT`] bytes, a prefix and the id's
/// hash (the manifest holds the id itself).
fn path_component(device: &str) -> String {
    let encoded = encode_component(device);
    if encoded.len() <= MAX_COMPONENT {
        return encoded;
    }
    format!(
        "{}~{:016x}",
        &encoded[..MAX_COMPONENT - 17],
        fnv1a(device.as_bytes())
    )
}

/// FNV-1a, 64 bits: a stable hash of a device id for file names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn encode_component(device: &str) -> String {
    let mut out = String::with_capacity(device.len());
    for (i, b) in device.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

fn day_of(ms: i64) -> String {
    timestamp_ms_to_datetime(ms).map_or_else(|| "unknown".to_owned(), |t| t.date().to_string())
}

fn parquet_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
        .build()
}

/// Writes `batch` to `path` as Parquet, fsynced.
fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), AnalyticsError> {
    let parquet = |e: datafusion::parquet::errors::ParquetError| AnalyticsError::Archive {
        action: "writing an archive file",
        path: path.to_owned(),
        source: Box::new(e),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_error("creating an archive directory", parent))?;
    }
    // Written whole under another name, then renamed: a file under its own name is
    // complete, whatever a crash interrupts.
    let partial = path.with_extension("parquet.partial");
    let file = File::create(&partial).map_err(io_error("creating an archive file", &partial))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(parquet_props())).map_err(parquet)?;
    writer.write(batch).map_err(parquet)?;
    let file = writer.into_inner().map_err(parquet)?;
    file.sync_all()
        .map_err(io_error("syncing an archive file", &partial))?;
    std::fs::rename(&partial, path).map_err(io_error("naming an archive file", path))
}

/// The schema of the records that make no row.
fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("log_partition", DataType::Int32, false),
        Field::new("log_offset", DataType::Int64, false),
        Field::new(
            "record_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("key", DataType::Binary, false),
        Field::new("value", DataType::Binary, false),
    ]))
}

fn raw_batch(records: &[Record]) -> Result<RecordBatch, AnalyticsError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            records
                .iter()
                .map(|r| i32::try_from(r.partition).unwrap_or(i32::MAX)),
        )),
        Arc::new(Int64Array::from_iter_values(
            records
                .iter()
                .map(|r| i64::try_from(r.offset).unwrap_or(i64::MAX)),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(records.iter().map(|r| r.timestamp_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(BinaryArray::from_iter_values(
            records.iter().map(|r| r.key.as_slice()),
        )),
        Arc::new(BinaryArray::from_iter_values(
            records.iter().map(|r| r.value.as_slice()),
        )),
    ];
    Ok(RecordBatch::try_new(raw_schema(), columns)?)
}

/// Writes one range's files under `dir` (the topic's directory); returns its manifest line.
fn write_range(
    dir: &Path,
    def: &'static TableDef,
    partition: u32,
    range: std::ops::Range<u64>,
    batches: &[RecordBatch],
    raw: &[Record],
) -> Result<ArchivedRange, AnalyticsError> {
    let name = format!("p{partition}-{}-{}.parquet", range.start, range.end);
    // The archive's root, which holds a topic directory made by this range.
    let root = dir.parent().map(Path::to_owned);
    let mut files = Vec::new();
    let mut dirs = BTreeSet::new();
    if let Some(first) = batches.first() {
        let all = concat_batches(&first.schema(), batches)?;
        let times = column::<TimestampMillisecondArray>(&all, def.time_column())?;
        let devices = column::<StringArray>(&all, DEVICE_COLUMN)?;
        let mut groups: BTreeMap<(String, &str), Vec<u32>> = BTreeMap::new();
        for row in 0..all.num_rows() {
            let day = day_of(times.value(row));
            let device = if devices.is_null(row) {
                ""
            } else {
                devices.value(row)
            };
            groups
                .entry((day, device))
                .or_default()
                .push(u32::try_from(row).unwrap_or(u32::MAX));
        }
        for ((day, device), rows) in groups {
            let batch = take_record_batch(&all, &UInt32Array::from(rows))?;
            let group_times = column::<TimestampMillisecondArray>(&batch, def.time_column())?;
            // The device's hash in the file name too: on a file system that ignores case,
            // `Grill` and `grill` share a directory but never a file.
            let path = format!(
                "day={day}/device={}/p{partition}-{}-{}-{:08x}.parquet",
                path_component(device),
                range.start,
                range.end,
                fnv1a(device.as_bytes()) as u32
            );
            let full = dir.join(&path);
            write_parquet(&full, &batch)?;
            if let Some(parent) = full.parent() {
                dirs.insert(parent.to_owned());
                if let Some(day_dir) = parent.parent() {
                    dirs.insert(day_dir.to_owned());
                }
            }
            files.push(ArchivedFile {
                path,
                device: device.to_owned(),
                rows: batch.num_rows() as u64,
                min_ms: group_times.iter().flatten().min().unwrap_or(i64::MIN),
                max_ms: group_times.iter().flatten().max().unwrap_or(i64::MAX),
            });
        }
    }
    let raw = if raw.is_empty() {
        None
    } else {
        let path = format!("raw/{name}");
        let full = dir.join(&path);
        write_parquet(&full, &raw_batch(raw)?)?;
        dirs.insert(dir.join("raw"));
        Some(ArchivedRaw {
            path,
            records: raw.len() as u64,
        })
    };
    dirs.insert(dir.to_owned());
    dirs.extend(root);
    for d in dirs {
        sync_dir(&d)?;
    }
    Ok(ArchivedRange {
        partition,
        from: range.start,
        to: range.end,
        files,
        raw,
    })
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, AnalyticsError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            AnalyticsError::Arrow(datafusion::arrow::error::ArrowError::SchemaError(format!(
                "archive: column {name} missing or of another type"
            )))
        })
}

/// Reading archive files of one partition as one stream of a table's rows.
pub(crate) struct ArchiveScan {
    pub(crate) schema: SchemaRef,
    pub(crate) files: Vec<PathBuf>,
}

impl std::fmt::Debug for ArchiveScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveScan")
            .field("files", &self.files.len())
            .finish()
    }
}

impl PartitionStream for ArchiveScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // Parquet is read on a blocking thread, a couple of batches ahead of the query.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let (schema, files) = (self.schema.clone(), self.files.clone());
        tokio::task::spawn_blocking(move || {
            for path in files {
                let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
                    DataFusionError::External(Box::new(AnalyticsError::Archive {
                        action: "reading an archive file",
                        path: path.clone(),
                        source: e,
                    }))
                };
                let reader = File::open(&path)
                    .map_err(|e| failed(e.into()))
                    .and_then(|file| {
                        ParquetRecordBatchReaderBuilder::try_new(file)
                            .and_then(|b| {
                                // Only the columns the query reads (by name: an older file
                                // may lack some, which read as null).
                                let wanted = ProjectionMask::columns(
                                    b.parquet_schema(),
                                    schema.fields().iter().map(|f| f.name().as_str()),
                                );
                                b.with_projection(wanted).with_batch_size(READ_ROWS).build()
                            })
                            .map_err(|e| failed(e.into()))
                    });
                let reader = match reader {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                for batch in reader {
                    let batch = batch
                        .map_err(|e| failed(e.into()))
                        .and_then(|b| as_table(&schema, &b).map_err(|e| failed(e.into())));
                    let stop = batch.is_err();
                    if tx.blocking_send(batch).is_err() || stop {
                        return;
                    }
                }
            }
        });
        let stream = tokio_stream_of(rx);
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// `batch` (read from a file an older release may have written) with the table's columns:
/// by name, a column the file lacks null.
fn as_table(
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => column.clone(),
            None => datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    // The row count says how many rows a batch of no column holds (`count(*)`).
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

fn tokio_stream_of(
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
) -> impl futures::Stream<Item = Result<RecordBatch, DataFusionError>> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

/// What a round of retention did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Rows written to the archive.
    pub archived_rows: u64,
    /// Records written to the archive as they were (they make no row).
    pub archived_raw: u64,
    /// Records deleted from the log.
    pub removed: u64,
    /// Partitions that could not be expired (logged; tried again next round).
    pub failed: u32,
}

/// One round of retention over the embedded log: records older than `cutoff_ms` are
/// archived (when there is an archive and their topic is a table) and then deleted (see
/// the module docs). A partition that fails is logged, counted in [`Expired::failed`] and
/// left as it is (only what was archived is deleted); the others go on.
pub async fn expire(
    log: &EmbeddedLog,
    codec: &Arc<EventCodec>,
    archive: Option<&Archive>,
    cutoff_ms: i64,
) -> Result<Expired, AnalyticsError> {
    expire_in_ranges(log, codec, archive, cutoff_ms, RANGE_RECORDS).await
}

/// [`expire`], archiving at most `range_records` records per range.
pub async fn expire_in_ranges(
    log: &EmbeddedLog,
    codec: &Arc<EventCodec>,
    archive: Option<&Archive>,
    cutoff_ms: i64,
    range_records: u64,
) -> Result<Expired, AnalyticsError> {
    let mut done = Expired::default();
    let shared: Arc<dyn EventLog> = Arc::new(log.clone());
    for (topic, partitions) in log.topics().await? {
        if topics::KEEP_FOREVER.contains(&topic.as_str()) {
            continue;
        }
        let def = archive.and(TABLES.iter().find(|t| t.topic == topic));
        for partition in 0..partitions {
            let target = Partition {
                log,
                shared: &shared,
                codec,
                archive: archive.zip(def),
                topic: &topic,
                partition,
            };
            if let Err(e) = target
                .expire(cutoff_ms, range_records.max(1), &mut done)
                .await
            {
                done.failed += 1;
                tracing::warn!(
                    topic,
                    partition,
                    error = %emberline_common::error::chain(&e),
                    "could not expire this partition; its unarchived records stay in the log"
                );
            }
        }
    }
    Ok(done)
}

/// Records deleted from the log per write transaction: appends wait for one at most.
const DELETE_RECORDS: u64 = 5_000;

/// One partition that retention works on.
struct Partition<'a> {
    log: &'a EmbeddedLog,
    shared: &'a Arc<dyn EventLog>,
    codec: &'a Arc<EventCodec>,
    archive: Option<(&'a Archive, &'static TableDef)>,
    topic: &'a str,
    partition: u32,
}

impl Partition<'_> {
    async fn expire(
        &self,
        cutoff_ms: i64,
        range_records: u64,
        done: &mut Expired,
    ) -> Result<(), AnalyticsError> {
        let (log, topic, partition) = (self.log, self.topic, self.partition);
        let upto = log.expired_before(topic, partition, cutoff_ms).await?;
        let first = log.start_offset(topic, partition).await?;
        if upto <= first {
            return Ok(());
        }
        if let Some((archive, _)) = self.archive {
            let end = log.end_offset(topic, partition).await?;
            if let Some(archived) = archive.archived_to(topic, partition)?
                && archived > end
            {
                // Offsets past this log's end: the archive was written from another log
                // (a restore of an older backup, a log file removed by hand).
                return Err(AnalyticsError::ForeignArchive {
                    topic: topic.to_owned(),
                    partition,
                    archived,
                    end,
                });
            }
        }
        let mut start = first;
        let mut at = first;
        while at < upto {
            let step = (at + range_records).min(upto);
            if let Some((archive, def)) = self.archive {
                let from = archive.archived_to(topic, partition)?.unwrap_or(0).max(at);
                if from < step {
                    let range = archive
                        .archive_range(
                            def,
                            self.shared.clone(),
                            self.codec.clone(),
                            partition,
                            from..step,
                        )
                        .await?;
                    done.archived_rows += range.files.iter().map(|f| f.rows).sum::<u64>();
                    done.archived_raw += range.raw.as_ref().map_or(0, |r| r.records);
                }
            }
            let mut cut = at;
            while cut < step {
                cut = (cut + DELETE_RECORDS).min(step);
                start = log.delete_before(topic, partition, cut).await?;
            }
            at = step;
        }
        done.removed += start - first;
        tracing::info!(
            topic,
            partition,
            removed = start - first,
            "expired records removed from the log"
        );
        Ok(())
    }
}

/// Runs [`expire`] every `every` with the cut-off `retention` before the clock, forever;
/// a failed round is logged and tried again at the next.
pub async fn run_retention(
    log: EmbeddedLog,
    codec: Arc<EventCodec>,
    archive: Option<Arc<Archive>>,
    retention: Duration,
    every: Duration,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let cutoff = emberline_common::clock::now_ms() - retention.as_millis() as i64;
        match expire(&log, &codec, archive.as_deref(), cutoff).await {
            Ok(done) if done == Expired::default() => {}
            Ok(done) => tracing::info!(
                removed = done.removed,
                archived_rows = done.archived_rows,
                archived_raw = done.archived_raw,
                cutoff_ms = cutoff,
                "log retention archived and removed expired records"
            ),
            Err(e) => tracing::warn!(
                error = %emberline_common::error::chain(&e),
                "log retention failed; nothing unarchived was removed; trying again later"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_device_ids_become_short_distinct_components() {
        let a = path_component(&"é".repeat(200));
        let b = path_component(&format!("{}x", "é".repeat(200)));
        assert!(
            a.len() <= MAX_COMPONENT && b.len() <= MAX_COMPONENT,
            "{a} {b}"
        );
        assert_ne!(a, b);
        assert!(a.is_ascii());
    }

    #[test]
    fn device_ids_become_safe_path_components() {
        assert_eq!(path_component("grill-1.a_b"), "grill-1.a_b");
        assert_eq!(path_component("acme/grill"), "acme%2Fgrill");
        assert_eq!(path_component("../x"), "%2E.%2Fx");
        assert_eq!(path_component(""), "%00");
        assert_eq!(path_component("a b"), "a%20b");
    }

    #[test]
    fn a_file_from_an_older_release_reads_with_the_tables_columns() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("added", DataType::Utf8, true),
        ]));
        let old = RecordBatch::try_from_iter(vec![(
            "a",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        let read = as_table(&schema, &old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.schema(), schema);
        assert_eq!(read.column(1).null_count(), 2);
    }

    #[test]
    fn a_torn_last_manifest_line_is_no_range() {
        let range = ArchivedRange {
            partition: 1,
            from: 0,
            to: 10,
            files: Vec::new(),
            raw: None,
        };
        let mut text = serde_json::to_vec(&range).unwrap_or_default();
        text.extend_from_slice(b"\n{\"partition\":1,\"fro");
        assert_eq!(parse_manifest(&text, Path::new("m")), vec![range]);
    }

    #[test]
    fn appending_cuts_a_torn_line_first() -> Result<(), AnalyticsError> {
        let dir = std::env::temp_dir().join(format!(
            "emberline-archive-{}",
            emberline_common::clock::now_nanos()
        ));
        std::fs::create_dir_all(&dir).map_err(io_error("test dir", &dir))?;
        let range = |from| ArchivedRange {
            partition: 0,
            from,
            to: from + 5,
            files: Vec::new(),
            raw: None,
        };
        append_manifest(&dir, &range(0))?;
        let path = dir.join(MANIFEST);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_error("test", &path))?;
        file.write_all(b"{\"partition\":0,\"fr")
            .map_err(io_error("test", &path))?;
        append_manifest(&dir, &range(5))?;
        let text = std::fs::read(&path).map_err(io_error("test", &path))?;
        assert_eq!(parse_manifest(&text, &path), vec![range(0), range(5)]);
        std::fs::remove_dir_all(&dir).map_err(io_error("test", &dir))?;
        Ok(())
    }
}
