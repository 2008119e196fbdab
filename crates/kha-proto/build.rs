//! Compiles proto/ with protox (a pure-Rust protobuf compiler), so building
//! kha needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../proto";
    let files = ["kha/agent/v1/agent.proto", "kha/admin/v1/admin.proto"];
    println!("cargo:rerun-if-changed={root}");
    let fds = protox::compile(files, [root])?;
    tonic_prost_build::configure()
        // Smaller first buffers per stream (src/codec.rs).
        .codec_path("crate::codec::SmallCodec")
        .compile_fds(fds)?;
    Ok(())
}
