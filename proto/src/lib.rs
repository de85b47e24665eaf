//! Generated tonic/prost code for the `emberline.v1` gRPC API, and its file descriptor set
//! (for server reflection). Nothing else lives here: the `.proto` files are the source.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// The `emberline.v1` package.
pub mod v1 {
    tonic::include_proto!("emberline.v1");
}

/// The encoded file descriptor set of every `.proto` in this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("emberline_descriptor");
