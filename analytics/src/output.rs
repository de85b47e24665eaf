//! Writing query results: an aligned table, CSV, JSON lines or Parquet.
//!
//! CSV, JSON lines and Parquet are written batch by batch as the query produces them, so
//! memory stays bounded whatever the result's size (Parquet buffers one row group,
//! [`PARQUET_ROW_GROUP_ROWS`] rows). The table format has to see every row to align the
//! columns, so it collects the result first: it is for answers, not exports.

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::csv;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt as _;

use crate::AnalyticsError;

/// Rows per Parquet row group: what the Parquet writer holds in memory at most.
pub const PARQUET_ROW_GROUP_ROWS: usize = 64 * 1024;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table with a header.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row, one per line.
    Json,
    /// A Parquet file (Snappy-compressed).
    Parquet,
}

impl Format {
    /// Its name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }
}

fn write_error(
    format: Format,
) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> AnalyticsError {
    move |source| AnalyticsError::Write {
        format: format.name(),
        source,
    }
}

/// Writes the rows of `stream` to `out` as `format`; returns how many rows it wrote.
pub async fn write_stream<W: Write + Send>(
    mut stream: SendableRecordBatchStream,
    format: Format,
    out: W,
) -> Result<u64, AnalyticsError> {
    let schema = stream.schema();
    let failed = write_error(format);
    let mut rows = 0u64;
    match format {
        Format::Table => {
            let mut out = out;
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                batches.push(batch);
            }
            let table = pretty_format_batches_with_schema(schema, &batches)
                .map_err(|e| failed(e.into()))?;
            writeln!(out, "{table}").map_err(|e| failed(e.into()))?;
            out.flush().map_err(|e| failed(e.into()))?;
        }
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new().with_header(true).build(out);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| failed(e.into()))?;
            }
            writer.into_inner().flush().map_err(|e| failed(e.into()))?;
        }
        Format::Json => {
            let mut writer = LineDelimitedWriter::new(out);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| failed(e.into()))?;
            }
            writer.finish().map_err(|e| failed(e.into()))?;
            writer.into_inner().flush().map_err(|e| failed(e.into()))?;
        }
        Format::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
                .build();
            let mut writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))
                .map_err(|e| failed(e.into()))?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| failed(e.into()))?;
            }
            writer.close().map_err(|e| failed(e.into()))?;
        }
    }
    Ok(rows)
}
