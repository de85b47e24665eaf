//! Errors of the processors.

use emberline_common::{Classify, ErrorKind};
use emberline_log::LogError;
use emberline_projections::ProjectionError;
use emberline_schemas::CodecError;

/// Why a processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The log failed.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// The projection store failed.
    #[error("projection store: {0}")]
    Projection(#[from] ProjectionError),
    /// A derived record could not be encoded or read back.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// The input and output topics disagree on partitioning.
    #[error(
        "{output} has {output_partitions} partitions but {input} has {input_partitions}; they must match"
    )]
    PartitionMismatch {
        /// Input topic.
        input: String,
        /// Its partitions.
        input_partitions: u32,
        /// Output topic.
        output: String,
        /// Its partitions.
        output_partitions: u32,
    },
    /// The dataflow could not start or a worker failed.
    #[error("dataflow: {0}")]
    Dataflow(String),
}

impl ProcessorError {
    /// Whether another process has claimed the partition: stop, do not retry.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Projection(ProjectionError::Fenced { .. }))
    }
}

impl Classify for ProcessorError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProcessorError::Log(e) => e.kind(),
            ProcessorError::Projection(e) => e.kind(),
            ProcessorError::Codec(e) => e.kind(),
            ProcessorError::PartitionMismatch { .. } => ErrorKind::InvalidInput,
            ProcessorError::Dataflow(_) => ErrorKind::Internal,
        }
    }
}
