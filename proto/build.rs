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
        // The server messages of a stream are moved by value several times per frame: their
        // rare, large variants are boxed so a text or token delta is ~80 bytes, not 312.
        .boxed(".agent.v1.AgentServerMessage.message.exec_server_message")
        .boxed(".agent.v1.AgentServerMessage.message.kv_server_message")
        .boxed(".agent.v1.InteractionUpdate.message.partial_tool_call")
        .boxed(".agent.v1.InteractionUpdate.message.tool_call_started")
        .boxed(".agent.v1.InteractionUpdate.message.tool_call_completed")
        .boxed(".agent.v1.InteractionUpdate.message.user_message_appended")
        .boxed(".agent.v1.InteractionUpdate.message.post_request_prompt")
        .compile_fds(fds)?;
    Ok(())
}
