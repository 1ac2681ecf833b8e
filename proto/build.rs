//! Generates the gRPC code at build time. Uses the protoc shipped by
//! `protoc-bin-vendored` unless `PROTOC` is set, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY-free: build scripts are single threaded; tonic-build reads PROTOC.
        std::env::set_var("PROTOC", protoc);
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_build::configure()
        .file_descriptor_set_path(out.join("redisha_descriptor.bin"))
        .compile_protos(&["proto/redisha/v1/redisha.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
