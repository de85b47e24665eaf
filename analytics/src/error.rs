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
    /// Reading or writing the archive failed.
    #[error("{action} {}", path.display())]
    Archive {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Archiving a range read fewer records than it holds; it was not archived (nor deleted).
    #[error(
        "archiving offsets {from}..{to} of {topic} partition {partition}: the log returned {read} \
         records; the range stays in the log"
    )]
    ArchiveIncomplete {
        /// The topic.
        topic: &'static str,
        /// The partition.
        partition: u32,
        /// First offset.
        from: u64,
        /// One past the last.
        to: u64,
        /// Records read.
        read: u64,
    },
    /// The archive names offsets past the log's end: it was written from another log.
    #[error(
        "the archive of {topic} partition {partition} reaches offset {archived}, past the \
         log's end {end}: it was written from another log (an older backup restored, or the \
         log file removed); move the archive directory aside to archive this log anew"
    )]
    ForeignArchive {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Where the archive ends.
        archived: u64,
        /// Where the log ends.
        end: u64,
    },
    /// Retention moved records out of the live log while a query read them.
    #[error(
        "records of {topic} partition {partition} from offset {offset} were archived while \
         the query ran; run it again"
    )]
    ExpiredDuringQuery {
        /// The topic.
        topic: &'static str,
        /// The partition.
        partition: u32,
        /// Where the query was reading.
        offset: u64,
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
