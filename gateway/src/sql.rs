//! `QueryService/Sql`: SQL over the caller's tenant's log.
//!
//! The gateway checks the caller (the method needs `Read`, and a share link may not call
//! it), takes their tenant, and hands the query to a [`SqlEngine`]; the binary provides one
//! over DataFusion (`emberline_analytics`), so this crate links no query engine and its tests
//! stay small. The engine owns the bounds (time, memory, result size, how many run at once)
//! and runs queries away from the threads that answer other calls; this module only turns
//! its answers and errors into gRPC ones.

use std::pin::Pin;

use emberline_proto::v1::query_service_server::QueryService;
use emberline_proto::v1::{SqlRequest, SqlResponse};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use crate::Gateway;
use crate::tenancy::Tenant;

/// One batch of a result, as an Arrow IPC stream (the schema and the batch).
#[derive(Clone, Debug)]
pub struct SqlBatch {
    /// The encoded stream.
    pub arrow_ipc: Vec<u8>,
    /// Rows in the batch.
    pub rows: u64,
}

/// A result, batch by batch.
pub type SqlStream = BoxStream<'static, Result<SqlBatch, SqlError>>;

/// Why a query gave no (more) answer. Each message is one line, meant for the caller.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query is not valid SQL, names an unknown table or column, or is not a query.
    #[error("{0}")]
    Invalid(String),
    /// It needed more memory, or its result more room, than a query may have.
    #[error("{0}")]
    TooLarge(String),
    /// It ran longer than a query may.
    #[error("{0}")]
    TimedOut(String),
    /// Too many queries are running; try again.
    #[error("{0}")]
    Busy(String),
    /// Reading the log failed.
    #[error("{0}")]
    Failed(String),
}

impl From<SqlError> for Status {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Invalid(m) => Status::invalid_argument(m),
            SqlError::TooLarge(m) => Status::resource_exhausted(m),
            SqlError::TimedOut(m) => Status::deadline_exceeded(m),
            SqlError::Busy(m) => Status::unavailable(m),
            SqlError::Failed(m) => Status::internal(m),
        }
    }
}

/// Runs SQL for one tenant.
#[tonic::async_trait]
pub trait SqlEngine: Send + Sync + 'static {
    /// Plans `query` over `tenant`'s data and streams its result; a planning error (bad SQL,
    /// an unknown table) is returned here, a failure while running ends the stream.
    async fn run(&self, tenant: &str, query: &str) -> Result<SqlStream, SqlError>;
}

type SqlAnswer = Pin<Box<dyn Stream<Item = Result<SqlResponse, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for Gateway {
    type SqlStream = SqlAnswer;

    async fn sql(&self, request: Request<SqlRequest>) -> Result<Response<SqlAnswer>, Status> {
        let tenant = Tenant::of(&request)?;
        let Some(engine) = &self.sql else {
            return Err(Status::unimplemented(
                "this gateway runs no SQL engine (run `emberline sql` where the log is)",
            ));
        };
        let query = request.into_inner().query;
        if query.trim().is_empty() {
            return Err(Status::invalid_argument("query: empty"));
        }
        let result = engine.run(tenant.name(), &query).await?;
        let shutdown = self.shutdown.clone();
        let answers = result
            .map(|batch| {
                batch
                    .map(|b| SqlResponse {
                        arrow_ipc: b.arrow_ipc,
                        rows: b.rows,
                    })
                    .map_err(Status::from)
            })
            .take_until(async move { shutdown.cancelled().await });
        Ok(Response::new(Box::pin(answers)))
    }
}
