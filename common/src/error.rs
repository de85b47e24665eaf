//! What kind of failure an error is, so every API answers it with the precise code.
//!
//! Library errors implement [`Classify`]; the gateway maps an [`ErrorKind`] to a gRPC code
//! and the HTTP endpoints to a status, in one table each ([`ErrorKind::grpc_code`],
//! [`ErrorKind::http_status`]), instead of answering "unavailable" to everything.
//! [`chain`] renders an error with its causes for a log line, a status message or the
//! binary's one-line `error:`.

use std::error::Error;

/// The kind of a failure, from the caller's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller's input is wrong (a bad value, a malformed payload, an invalid schema):
    /// retrying the same request fails the same way.
    InvalidInput,
    /// What the request names does not exist.
    NotFound,
    /// The request conflicts with the current state (an incompatible schema, a partition
    /// another process owns, a data directory in use).
    Conflict,
    /// A dependency is unreachable or failing for now (disk, broker, database): retrying
    /// later may succeed.
    Unavailable,
    /// Stored data cannot be read back: it is corrupt or from a newer version.
    Corrupt,
    /// A bug or an invariant broken inside Emberline.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tables and tests that must cover them all.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Corrupt,
        ErrorKind::Internal,
    ];

    /// The gRPC status code for this kind (numeric, as `tonic::Code` takes it).
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorKind::InvalidInput => 3, // INVALID_ARGUMENT
            ErrorKind::NotFound => 5,     // NOT_FOUND
            ErrorKind::Conflict => 10,    // ABORTED
            ErrorKind::Unavailable => 14, // UNAVAILABLE
            ErrorKind::Corrupt => 15,     // DATA_LOSS
            ErrorKind::Internal => 13,    // INTERNAL
        }
    }

    /// The HTTP status for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Corrupt | ErrorKind::Internal => 500,
        }
    }
}

/// An error that knows its [`ErrorKind`].
pub trait Classify {
    /// The kind of this failure.
    fn kind(&self) -> ErrorKind;
}

/// The error and its causes as one line, `outer: cause: root cause`. A cause whose text the
/// line already holds (an error that prints its source in its own message) is not repeated.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Leaf;
    impl std::fmt::Display for Leaf {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("disk full")
        }
    }
    impl Error for Leaf {}

    #[derive(Debug)]
    struct Wrap(Leaf, bool);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.1 {
                write!(f, "appending failed: {}", self.0)
            } else {
                f.write_str("appending failed")
            }
        }
    }
    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        assert_eq!(chain(&Wrap(Leaf, false)), "appending failed: disk full");
        assert_eq!(chain(&Wrap(Leaf, true)), "appending failed: disk full");
        assert_eq!(chain(&Leaf), "disk full");
    }

    #[test]
    fn every_kind_has_a_distinct_grpc_code_and_a_client_or_server_http_status() {
        use ErrorKind::*;
        let codes: std::collections::BTreeSet<_> =
            ErrorKind::ALL.iter().map(|k| k.grpc_code()).collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        for k in [InvalidInput, NotFound, Conflict] {
            assert!((400..500).contains(&k.http_status()), "{k:?}");
        }
        for k in [Unavailable, Corrupt, Internal] {
            assert!((500..600).contains(&k.http_status()), "{k:?}");
        }
    }
}
