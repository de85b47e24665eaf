//! Mapping internal errors to precise gRPC status codes.

use emberline_log::LogError;
use emberline_projections::ProjectionError;
use tonic::Status;

/// Storage or log failures are `UNAVAILABLE` (worth a retry) unless the request named
/// something that does not exist.
pub(crate) fn from_log(e: LogError) -> Status {
    match e {
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            Status::not_found(e.to_string())
        }
        LogError::Corrupt { .. } => Status::data_loss(e.to_string()),
        _ => Status::unavailable(e.to_string()),
    }
}

pub(crate) fn from_projection(e: ProjectionError) -> Status {
    match e {
        ProjectionError::Corrupt { .. } => Status::data_loss(e.to_string()),
        _ => Status::unavailable(e.to_string()),
    }
}
