//! Errors to gRPC statuses, in one place: the code comes from the error's
//! [`ErrorKind`](emberline_common::ErrorKind) (a caller's mistake, a missing thing, a
//! conflict, a dependency down, corrupt data, a bug), the message from the error and its
//! causes.

use emberline_common::Classify;
use emberline_common::error::chain;
use tonic::{Code, Status};

/// The status for `e`: its kind's code, and the error with its causes as the message.
pub(crate) fn to_status<E>(e: E) -> Status
where
    E: Classify + std::error::Error + 'static,
{
    Status::new(Code::from(e.kind().grpc_code()), chain(&e))
}

#[cfg(test)]
mod tests {
    use emberline_common::ErrorKind;
    use emberline_log::LogError;
    use emberline_projections::ProjectionError;
    use emberline_schemas::{CodecError, RegistryError};

    use super::*;

    fn io(msg: &str) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(std::io::Error::other(msg.to_owned()))
    }

    #[test]
    fn each_kind_gets_its_own_code_and_the_message_keeps_the_cause() {
        let cases: Vec<(Status, Code)> = vec![
            (
                to_status(CodecError::BadMagic { found: 7 }),
                Code::InvalidArgument,
            ),
            (
                to_status(RegistryError::InvalidSchema("x".into())),
                Code::InvalidArgument,
            ),
            (
                to_status(LogError::UnknownTopic("t".into())),
                Code::NotFound,
            ),
            (
                to_status(RegistryError::UnknownSubject("s".into())),
                Code::NotFound,
            ),
            (
                to_status(ProjectionError::Fenced { partition: 3 }),
                Code::Aborted,
            ),
            (
                to_status(LogError::InUse {
                    path: "/d/log.redb".into(),
                }),
                Code::Aborted,
            ),
            (
                to_status(LogError::Storage {
                    action: "appending",
                    source: io("disk full"),
                }),
                Code::Unavailable,
            ),
            (
                to_status(ProjectionError::Corrupt {
                    table: "latest",
                    reason: "eof".into(),
                }),
                Code::DataLoss,
            ),
            (
                to_status(ProjectionError::Invalid("bug".into())),
                Code::Internal,
            ),
        ];
        for (status, code) in &cases {
            assert_eq!(status.code(), *code, "{status:?}");
        }
        let covered: std::collections::BTreeSet<i32> =
            cases.iter().map(|(_, c)| *c as i32).collect();
        assert!(
            ErrorKind::ALL
                .iter()
                .all(|k| covered.contains(&k.grpc_code()))
        );
        assert!(
            cases[6].0.message().contains("disk full"),
            "{}",
            cases[6].0.message()
        );
    }
}
