//! Decoding a realistic upstream stream: many small text deltas and token deltas, heartbeats,
//! and a few large checkpoints, fed in 16 KiB transport chunks. Reported beside a plain copy of
//! the same bytes (the floor) in the same run: `cargo bench -p cursorpool-core --bench decode`.

use bytes::{Bytes, BytesMut};
use cursorpool_core::connect::envelope::{self, EnvelopeDecoder, Frame};
use cursorpool_core::update::decode_server_message;
use cursorpool_proto::agent_v1::{
    AgentServerMessage, HeartbeatUpdate, InteractionUpdate, TextDeltaUpdate, TokenDeltaUpdate,
    TurnEndedUpdate, agent_server_message, interaction_update,
};
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn update(m: interaction_update::Message) -> AgentServerMessage {
    AgentServerMessage {
        message: Some(agent_server_message::Message::InteractionUpdate(
            InteractionUpdate { message: Some(m) },
        )),
    }
}

/// The stream as it arrives on the wire, and how many frames it holds.
fn realistic_stream() -> (Bytes, usize) {
    let mut buf = BytesMut::new();
    let mut frames = 0;
    let mut push = |m: &AgentServerMessage, buf: &mut BytesMut| {
        envelope::encode_proto(m, buf).expect("fits");
        frames += 1;
    };
    let words = [
        "The ",
        "answer ",
        "is ",
        "forty-two, ",
        "because ",
        "the ",
        "sim ",
        "says so. ",
    ];
    for i in 0..4000 {
        let text = words[i % words.len()].repeat(1 + i % 3);
        push(
            &update(interaction_update::Message::TextDelta(TextDeltaUpdate {
                text,
            })),
            &mut buf,
        );
        if i % 10 == 0 {
            push(
                &update(interaction_update::Message::TokenDelta(TokenDeltaUpdate {
                    tokens: 7,
                })),
                &mut buf,
            );
        }
        if i % 200 == 0 {
            push(
                &update(interaction_update::Message::Heartbeat(HeartbeatUpdate {})),
                &mut buf,
            );
        }
        if i % 1500 == 0 {
            // A large checkpoint: 256 KiB of opaque state.
            let state: Vec<u8> = (0..256 * 1024).map(|j| (j * 31 % 251) as u8).collect();
            push(
                &AgentServerMessage {
                    message: Some(agent_server_message::Message::ConversationCheckpointUpdate(
                        Bytes::from(state),
                    )),
                },
                &mut buf,
            );
        }
    }
    push(
        &update(interaction_update::Message::TurnEnded(TurnEndedUpdate {
            input_tokens: Some(1200),
            output_tokens: Some(4000),
            ..Default::default()
        })),
        &mut buf,
    );
    envelope::encode_end_stream(b"{}", &mut buf).expect("fits");
    (buf.freeze(), frames + 1)
}

const CHUNK: usize = 16 * 1024;

/// The floor: copying the same bytes chunk by chunk into a growing buffer.
#[divan::bench]
fn memcpy_floor(b: Bencher<'_, '_>) {
    let (stream, _) = realistic_stream();
    b.counter(BytesCount::new(stream.len())).bench(|| {
        let mut out = BytesMut::with_capacity(CHUNK);
        for c in stream.chunks(CHUNK) {
            out.extend_from_slice(black_box(c));
            if out.len() > 4 * CHUNK {
                out.clear();
            }
        }
        black_box(out.len())
    });
}

/// Envelope framing only.
#[divan::bench]
fn envelope_decode(b: Bencher<'_, '_>) {
    let (stream, frames) = realistic_stream();
    b.counter(BytesCount::new(stream.len()))
        .counter(ItemsCount::new(frames))
        .bench(|| {
            let mut d = EnvelopeDecoder::default();
            let mut n = 0;
            for c in stream.chunks(CHUNK) {
                d.handle_bytes(black_box(c));
                while let Some(f) = d.poll_frame().expect("valid") {
                    n += usize::from(matches!(f, Frame::Message(_)));
                }
            }
            black_box(n)
        });
}

/// Envelope framing plus decoding every message into a typed event.
#[divan::bench]
fn envelope_and_update_decode(b: Bencher<'_, '_>) {
    let (stream, frames) = realistic_stream();
    b.counter(BytesCount::new(stream.len()))
        .counter(ItemsCount::new(frames))
        .bench(|| {
            let mut d = EnvelopeDecoder::default();
            let mut n = 0;
            for c in stream.chunks(CHUNK) {
                d.handle_bytes(black_box(c));
                while let Some(f) = d.poll_frame().expect("valid") {
                    if let Frame::Message(p) = f {
                        black_box(decode_server_message(p).expect("valid"));
                        n += 1;
                    }
                }
            }
            black_box(n)
        });
}
