//! Code generated from `proto/` by `build.rs`.

/// The `aria.allegro.scheduling.v1` package: messages, clients and servers.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("aria.allegro.scheduling.v1");
}

/// Encoded file descriptor set of every proto of this service, served by
/// reflection so `grpcurl list` and `describe` work without the files.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/allegro_descriptor.bin"));
