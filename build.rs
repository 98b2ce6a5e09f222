//! Compiles the protos in `proto/` with the pure-Rust `protox` compiler (no
//! system `protoc` needed), generates the tonic services and writes the file
//! descriptor sets that server reflection serves: one for the scheduling
//! service, one for the stand-in core Aria service, and one for
//! `google.rpc.Status` and its error details (vendored under
//! `proto/google/rpc/`; the Rust types come from `tonic-types`).

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "aria/allegro/scheduling/v1/common.proto",
    "aria/allegro/scheduling/v1/job_catalogue.proto",
    "aria/allegro/scheduling/v1/job_schedule_config.proto",
    "aria/allegro/scheduling/v1/execution.proto",
    "aria/allegro/scheduling/v1/access.proto",
    "aria/core/v1/core_sync.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    // Each server reflects only its own packages (and the well-known types
    // they import), so `grpcurl list` shows what it really serves.
    let only = |keep: &dyn Fn(&str) -> bool| prost_types::FileDescriptorSet {
        file: fds
            .file
            .iter()
            .filter(|f| f.package().starts_with("google.") || keep(f.package()))
            .cloned()
            .collect(),
    };
    let scheduling = only(&|p| p.starts_with("aria.allegro."));
    let core = only(&|p| p.starts_with("aria.core."));
    std::fs::write(
        out_dir.join("allegro_descriptor.bin"),
        scheduling.encode_to_vec(),
    )?;
    std::fs::write(out_dir.join("core_descriptor.bin"), core.encode_to_vec())?;
    let google_rpc = protox::compile(
        ["google/rpc/status.proto", "google/rpc/error_details.proto"],
        ["proto"],
    )?;
    std::fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        google_rpc.encode_to_vec(),
    )?;
    // The scheduling services answer undecodable requests with
    // INVALID_ARGUMENT (their own codec); the core Aria interface keeps
    // tonic's codec.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .codec_path("crate::scheduling::api::codec::StrictCodec")
        .compile_fds(scheduling)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_fds(core)?;
    Ok(())
}
