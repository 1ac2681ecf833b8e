//! Generated code for the `redisha.v1` gRPC package.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("redisha.v1");

    /// Encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("redisha_descriptor");
}

pub use v1::*;
