//! `emberline sql` and `emberline export`: the log as tables, from the command line.
//!
//! Both open the configured log the way every role does (`roles::open_log`: the embedded
//! log in the data directory, or Kafka with its schema registry) and query it through
//! `emberline_analytics`. They read the whole log of every tenant: they are tools for whoever
//! runs the installation, not for its users (a per-tenant query service is still to come).
//!
//! They never run log retention, even when it is configured: old records stay for the
//! process that owns the deployment to remove.
//!
//! The embedded log is one file that one process holds at a time, so on the embedded backend
//! these commands cannot run while `emberline up` (or another role) holds the data
//! directory; they say so. On Kafka they run beside everything else.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use emberline_analytics::datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use emberline_analytics::datafusion::execution::context::SessionConfig;
use emberline_analytics::{Analytics, AnalyticsError, Format, write_stream};
use emberline_log::LogError;

use crate::config::Config;
use crate::roles::{self, SchemaIds};

/// `emberline sql`.
#[derive(Args, Debug)]
pub(crate) struct SqlArgs {
    /// The query (DataFusion SQL). Tables: probe_readings, device_events, cook_commands,
    /// trends, predictions, alerts, dead_letter; views: cooks, cook_readings,
    /// alerts_history. Without one, an interactive prompt (statements end with `;`; history
    /// in `<data_dir>/sql_history`), or, with standard input not a terminal, the statements
    /// read from it.
    query: Option<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    format: SqlFormat,
    /// Write the result to this file instead of standard output (required for parquet).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Output formats of `emberline sql`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum SqlFormat {
    /// An aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Json,
    /// Parquet (needs --output).
    Parquet,
}

impl From<SqlFormat> for Format {
    fn from(f: SqlFormat) -> Self {
        match f {
            SqlFormat::Table => Format::Table,
            SqlFormat::Csv => Format::Csv,
            SqlFormat::Json => Format::Json,
            SqlFormat::Parquet => Format::Parquet,
        }
    }
}

/// `emberline export`.
#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// What to export.
    #[arg(long, value_enum, default_value_t = ExportWhat::Readings)]
    what: ExportWhat,
    /// The device, as the log names it (`grill-1`, or `tenant/grill-1` for another tenant's).
    #[arg(long, required_unless_present = "cook")]
    device: Option<String>,
    /// A cook, by id: its device's rows from the cook's start to its end (to now while it
    /// runs). With --device when several devices have a cook of that id.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    cook: Option<String>,
    /// Rows at or after this time (RFC 3339, e.g. 2026-05-01T12:00:00Z).
    #[arg(long)]
    from: Option<String>,
    /// Rows before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// File format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The file to write.
    #[arg(long, short)]
    output: PathBuf,
}

/// What `emberline export` writes: one table of the log.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ExportWhat {
    /// Probe readings (`probe_readings`).
    Readings,
    /// Rolling trends (`trends`).
    Trends,
    /// Cook-time predictions (`predictions`).
    Predictions,
    /// Alerts raised and cleared (`alerts`).
    Alerts,
}

impl ExportWhat {
    fn table(self) -> &'static str {
        match self {
            ExportWhat::Readings => "probe_readings",
            ExportWhat::Trends => "trends",
            ExportWhat::Predictions => "predictions",
            ExportWhat::Alerts => "alerts",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ExportWhat::Readings => "readings",
            ExportWhat::Trends => "trends",
            ExportWhat::Predictions => "predictions",
            ExportWhat::Alerts => "alert events",
        }
    }
}

/// File formats of `emberline export`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ExportFormat {
    /// Parquet.
    Parquet,
    /// CSV with a header.
    Csv,
}

/// Runs `emberline sql`.
pub(crate) async fn sql(config: &Config, args: SqlArgs) -> Result<()> {
    let format = Format::from(args.format);
    if format == Format::Parquet && args.output.is_none() {
        bail!("--format parquet writes a file: give it with --output FILE");
    }
    let analytics = open(config, "sql", SessionConfig::new()).await?;
    let Some(query) = &args.query else {
        if args.output.is_some() || !matches!(args.format, SqlFormat::Table) {
            bail!("--format and --output go with a query given on the command line");
        }
        return crate::sql_prompt::run(&analytics, &config.data_dir()?).await;
    };
    let df = analytics.query(query).await.map_err(one_line)?;
    let stream = df
        .execute_stream()
        .await
        .map_err(|e| one_line(AnalyticsError::from(e)))?;
    match &args.output {
        Some(path) => {
            let rows = write_stream(stream, format, create(path)?)
                .await
                .map_err(one_line)?;
            tracing::info!(rows, file = %path.display(), "query result written");
        }
        None => {
            write_stream(stream, format, BufWriter::new(std::io::stdout()))
                .await
                .map_err(one_line)?;
        }
    }
    Ok(())
}

/// Runs `emberline export`.
pub(crate) async fn export(config: &Config, args: ExportArgs) -> Result<()> {
    let mut from = args
        .from
        .as_deref()
        .map(|t| epoch_ms(t, "--from"))
        .transpose()?;
    let mut to = args
        .to
        .as_deref()
        .map(|t| epoch_ms(t, "--to"))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        bail!("--from must be before --to");
    }
    // One target partition: the device's rows leave in the order of its partition.
    let analytics = open(
        config,
        "export",
        SessionConfig::new().with_target_partitions(1),
    )
    .await?;
    let device = match &args.cook {
        Some(cook) => {
            let span = analytics
                .cook_span(cook, args.device.as_deref())
                .await
                .map_err(one_line)?;
            from = Some(span.started_ms);
            // Inclusive of the end, as the `cook_readings` view is.
            to = span.ended_ms.map(|end| end + 1);
            span.device
        }
        None => args
            .device
            .clone()
            .context("--device or --cook says what to export")?,
    };
    let df = analytics
        .device_rows(args.what.table(), &device, from, to)
        .await
        .map_err(one_line)?;
    let stream = df
        .execute_stream()
        .await
        .map_err(|e| one_line(AnalyticsError::from(e)))?;
    let format = match args.format {
        ExportFormat::Parquet => Format::Parquet,
        ExportFormat::Csv => Format::Csv,
    };
    let rows = write_stream(stream, format, create(&args.output)?)
        .await
        .map_err(one_line)?;
    let of = match &args.cook {
        Some(cook) => format!("cook {cook} on {device}"),
        None => device,
    };
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{rows} {} of {of} written to {}",
            args.what.noun(),
            args.output.display()
        );
    }
    Ok(())
}

/// A query session over the configured log.
async fn open(config: &Config, command: &str, session: SessionConfig) -> Result<Analytics> {
    // A query reads; it must not delete. Log retention is the job of the process that runs
    // the deployment (`up`, `ingest`), so opening the log here does not start it.
    let mut config = config.clone();
    config.log.retention_days = 0;
    let parts = match roles::open_log(&config, SchemaIds::Shared).await {
        Ok(parts) => parts,
        Err(e) => {
            let in_use = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<LogError>(), Some(LogError::InUse { .. })));
            if in_use {
                return Err(e.context(format!(
                    "`emberline {command}` reads the embedded log itself, which only one \
                     process can open at a time: it cannot run while `emberline up` (or \
                     another role) holds the data directory"
                )));
            }
            return Err(e);
        }
    };
    Analytics::with_config(
        parts.log.clone(),
        parts.codec.clone(),
        parts.archive.clone(),
        session,
    )
    .await
    .map_err(one_line)
}

/// A query's error as one line: DataFusion's messages span lines ("Valid fields are …"),
/// and a command's error is one `error:` line.
pub(crate) fn one_line(e: AnalyticsError) -> anyhow::Error {
    anyhow::anyhow!(one_line_text(&e))
}

/// An error and its causes on one line, each cause once.
pub(crate) fn one_line_text(e: &AnalyticsError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn create(path: &Path) -> Result<BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::new(file))
}

/// Epoch milliseconds of an RFC 3339 time given as `flag`.
fn epoch_ms(text: &str, flag: &str) -> Result<i64> {
    let nanos = string_to_timestamp_nanos(text)
        .with_context(|| format!("{flag} {text:?} is not an RFC 3339 time"))?;
    Ok(nanos.div_euclid(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_in_utc_or_with_an_offset() {
        assert_eq!(
            epoch_ms("2026-01-01T00:00:00Z", "--from").expect("parses"),
            1_767_225_600_000
        );
        assert_eq!(
            epoch_ms("2026-01-01T01:00:00.5+01:00", "--from").expect("parses"),
            1_767_225_600_500
        );
        assert!(epoch_ms("yesterday", "--from").is_err());
    }
}
