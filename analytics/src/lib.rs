//! The log as tables: SQL over Emberline's event log with DataFusion, and export.
//!
//! This crate owns "the log as tables":
//!
//! * one DataFusion table per topic ([`TABLES`]: `probe_readings`, `device_events`,
//!   `cook_commands`, `trends`, `predictions`, `alerts`, `dead_letter`), each a
//!   [`LogTable`] reading the topic through the [`EventLog`](emberline_log::EventLog)
//!   trait — so it works on the embedded log and on Kafka alike — and decoding the Avro
//!   records with the schema codec into typed Arrow columns (the `tables` module says which
//!   columns, and the `provider` module what is pushed down into the read);
//! * views built from those tables ([`VIEWS`]: `cooks`, `cook_readings`, `alerts_history`);
//! * a read-only query session over all of them ([`Analytics`]);
//! * the archive: records the embedded log's retention removes, kept as Parquet files by
//!   day and device, which the tables read together with the live log ([`archive`]);
//! * writing results as a table, CSV, JSON lines or Parquet, streaming ([`write_stream`]).
//!
//! It reads the log, never the projections, and knows nothing of gRPC or of how the binary
//! opens the log: callers hand it an `EventLog` and an `EventCodec`.
//!
//! ```no_run
//! # async fn example(
//! #     log: std::sync::Arc<dyn emberline_log::EventLog>,
//! #     codec: std::sync::Arc<emberline_schemas::EventCodec>,
//! # ) -> Result<(), emberline_analytics::AnalyticsError> {
//! use emberline_analytics::{Analytics, Format, write_stream};
//! let analytics = Analytics::new(log, codec).await?;
//! let df = analytics
//!     .query("SELECT probe_id, max(temperature_c) FROM probe_readings GROUP BY probe_id")
//!     .await?;
//! write_stream(df.execute_stream().await?, Format::Table, std::io::stdout()).await?;
//! # Ok(())
//! # }
//! ```

pub mod archive;
mod columns;
mod error;
mod output;
mod provider;
mod session;
mod tables;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use archive::Archive;
pub use datafusion;
pub use error::AnalyticsError;
pub use output::{Format, PARQUET_ROW_GROUP_ROWS, write_stream};
pub use provider::LogTable;
pub use session::{Analytics, CookSpan, VIEWS};
pub use tables::{DEVICE_COLUMN, PARTITION_COLUMN, TABLES, TableDef, table};
