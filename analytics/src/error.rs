//! The crate's error type.

use emberline_log::LogError;
use emberline_schemas::CodecError;

/// What went wrong reading the log as tables or writing query results.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The log could not be read.
    #[error("reading the log")]
    Log(#[from] LogError),
    /// A record did not decode with its writer schema.
    #[error("decoding a record")]
    Codec(#[from] CodecError),
    /// A dead-letter record is not the JSON document it should be.
    #[error("dead-letter record at offset {offset} is not a JSON object: {reason}")]
    DeadLetter {
        /// Its offset.
        offset: u64,
        /// Why it does not parse.
        reason: String,
    },
    /// Building a record batch failed (a table definition does not match its rows).
    #[error("building a record batch")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Planning or running a query failed (bad SQL, an unknown table or column, …).
    #[error("running the query")]
    Query(#[source] datafusion::error::DataFusionError),
    /// No cook has this id.
    #[error("no cook {cook:?} in the log")]
    NoSuchCook {
        /// The id asked for.
        cook: String,
    },
    /// Several devices have a cook of this id: the caller must name the device.
    #[error("cook {cook:?} is on several devices ({devices}): name the device too")]
    AmbiguousCook {
        /// The id asked for.
        cook: String,
        /// The devices, comma-separated.
        devices: String,
    },
    /// Writing the results failed.
    #[error("writing {format} output")]
    Write {
        /// The output format.
        format: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<datafusion::error::DataFusionError> for AnalyticsError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        AnalyticsError::Query(e)
    }
}
