//! Compiles `proto/*.proto` with protox (pure Rust, no `protoc`) and generates prost code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/agent_v1.proto", "proto/aiserver_v1.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        // Every `bytes` field is a `bytes::Bytes`, so decoding from a `Bytes` buffer hands out
        // checkpoints and blobs zero-copy.
        .bytes(["."])
        .compile_fds(fds)?;
    Ok(())
}
