//! Code generated from `proto/` by `build.rs`.

/// The `aria.allegro.scheduling.v1` package: messages, clients and servers.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("aria.allegro.scheduling.v1");
}

/// The `aria.core.v1` package: the interface to core Aria through which the
/// sync jobs send transactions, and the control service of the stand-in.
pub mod core_v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("aria.core.v1");
}

/// Encoded file descriptor set of the scheduling protos, served by
/// reflection so `grpcurl list` and `describe` work without the files.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/allegro_descriptor.bin"));

/// Encoded file descriptor set of the core Aria protos, served by the
/// stand-in core service's reflection.
pub const CORE_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/core_descriptor.bin"));

/// Encoded file descriptor set of `google/rpc/status.proto` and
/// `google/rpc/error_details.proto` (with the well-known types they import),
/// served by reflection so grpcurl decodes the field violations and error
/// info that refusals carry.
pub const GOOGLE_RPC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));
