//! Generates the tonic/prost code from `emberline/v1/*.proto` with the protoc that the
//! `protoc-bin-vendored` crate ships, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("emberline_descriptor.bin"))
        .compile_with_config(config, &["emberline/v1/emberline.proto"], &["."])?;
    println!("cargo:rerun-if-changed=emberline/v1/emberline.proto");
    Ok(())
}
