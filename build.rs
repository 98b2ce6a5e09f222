//! Compiles the protos in `proto/` with the pure-Rust `protox` compiler (no
//! system `protoc` needed), generates the tonic services and writes the file
//! descriptor set that server reflection serves.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "aria/allegro/scheduling/v1/common.proto",
    "aria/allegro/scheduling/v1/job_catalogue.proto",
    "aria/allegro/scheduling/v1/job_schedule_config.proto",
    "aria/allegro/scheduling/v1/execution.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(out_dir.join("allegro_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
