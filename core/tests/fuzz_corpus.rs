//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the fuzz target bodies
//! on the stable toolchain, so every input that once found a bug stays a regression test.

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/targets.rs"]
mod targets;

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/conversations.rs"]
mod conversations;

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/render.rs"]
mod render;

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/script.rs"]
mod script;

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        run(&data);
        n += 1;
    }
    assert!(n > 0, "corpus for {target} is empty");
}

#[test]
fn envelope_corpus_replays_without_a_finding() {
    replay("envelope", targets::envelope);
}

#[test]
fn end_stream_corpus_replays_without_a_finding() {
    replay("end_stream", targets::end_stream);
}

#[test]
fn agent_server_message_corpus_replays_without_a_finding() {
    replay("agent_server_message", targets::agent_server_message);
}

#[test]
fn bidi_append_corpus_replays_without_a_finding() {
    replay("bidi_append", targets::bidi_append);
}

#[test]
fn anthropic_request_corpus_replays_without_a_finding() {
    replay("anthropic_request", targets::anthropic_request);
}

#[test]
fn openai_request_corpus_replays_without_a_finding() {
    replay("openai_request", targets::openai_request);
}

#[test]
fn conversations_corpus_replays_without_a_finding() {
    replay("conversations", targets::conversations);
}

#[test]
fn render_round_trip_corpus_replays_without_a_finding() {
    replay("render_round_trip", targets::render_round_trip);
}
