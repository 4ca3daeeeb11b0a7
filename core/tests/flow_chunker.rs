//! The DATA chunker: pieces never exceed the granted capacity nor the peer's max frame size,
//! and the bytes arrive whole, in order, without copies.

use bytes::Bytes;
use cursorpool_core::flow::chunker::{
    Chunker, DEFAULT_MAX_FRAME_SIZE, JOIN_LIMIT, MAX_MAX_FRAME_SIZE,
};
use cursorpool_core::flow::window::{
    DEFAULT_INITIAL_WINDOW_SIZE, ErrorCode, Fault, FlowError, MAX_WINDOW_SIZE, SendWindow,
};
use proptest::prelude::*;

const MIB: usize = 1 << 20;
const KIB16: u32 = 16 * 1024;

fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn one_mib_message_through_16k_initial_window_with_16k_updates_arrives_whole() {
    let message = pattern(MIB);
    let mut window = SendWindow::new(KIB16).unwrap();
    window.open_stream(1).unwrap();
    let mut chunker = Chunker::new();
    chunker.push(message.clone());

    let mut received = Vec::with_capacity(MIB);
    let mut granted = u64::from(KIB16);
    let mut updates = 0;
    while !chunker.is_empty() {
        while let Some(chunk) = chunker.poll_chunk_within(&mut window, 1).unwrap() {
            assert!(chunk.len() <= 16_384, "chunk of {} bytes", chunk.len());
            received.extend_from_slice(&chunk);
            assert!(
                received.len() as u64 <= granted,
                "sent more than the peer allowed"
            );
        }
        assert_eq!(
            window.capacity(1),
            0,
            "blocked only when the window is spent"
        );
        // The peer read what we sent and reopens both windows by 16 KiB.
        window.handle_window_update(1, KIB16).unwrap();
        window.handle_window_update(0, KIB16).unwrap();
        granted += u64::from(KIB16);
        updates += 1;
    }
    assert_eq!(received.len(), MIB);
    assert!(received == message, "bytes arrive whole and in order");
    assert_eq!(updates, MIB / KIB16 as usize, "one update per 16 KiB sent");
}

#[test]
fn h2_adapter_loop_reserve_grant_poll_releases_whole_message() {
    let message = pattern(300_000);
    let mut window = SendWindow::granted();
    window.open_stream(1).unwrap();
    let mut chunker = Chunker::new();
    chunker.push(message.clone());
    chunker.set_max_frame_size(20_000).unwrap();

    // h2 grants in uneven slices as connection capacity frees up; it reports totals.
    let mut assigned_total = 0u32;
    let mut received = Vec::new();
    for slice in [65_535u32, 1, 0, 16_384, 100_000, 200_000] {
        let wanted = chunker.pending_len();
        assert_eq!(wanted, message.len() - received.len());
        assigned_total += slice;
        window.handle_capacity_assigned(1, assigned_total).unwrap();
        while let Some(chunk) = chunker.poll_chunk_within(&mut window, 1).unwrap() {
            assert!(chunk.len() <= 20_000);
            assigned_total -= chunk.len() as u32; // h2's send_data subtracts the same
            received.extend_from_slice(&chunk);
        }
        assert!(chunker.is_empty() || window.capacity(1) == 0);
    }
    assert!(chunker.is_empty());
    assert!(received == message);
}

#[test]
fn capacity_zero_releases_nothing() {
    let mut chunker = Chunker::new();
    chunker.push(pattern(100));
    assert_eq!(chunker.poll_chunk(0), None);
    assert_eq!(chunker.pending_len(), 100);
}

#[test]
fn nothing_pushed_releases_nothing_whatever_the_capacity() {
    let mut chunker = Chunker::new();
    assert!(chunker.is_empty());
    assert_eq!(chunker.poll_chunk(u32::MAX), None);
    chunker.push(Bytes::new());
    assert!(chunker.is_empty(), "empty pushes are dropped");
    assert_eq!(chunker.poll_chunk(u32::MAX), None);
}

#[test]
fn initial_window_zero_releases_nothing_until_window_update() {
    let mut window = SendWindow::new(0).unwrap();
    window.open_stream(1).unwrap();
    let mut chunker = Chunker::new();
    chunker.push(pattern(10));
    assert_eq!(chunker.poll_chunk_within(&mut window, 1), Ok(None));
    window.handle_window_update(1, 4).unwrap();
    let chunk = chunker.poll_chunk_within(&mut window, 1).unwrap().unwrap();
    assert_eq!(chunk.len(), 4);
    assert_eq!(window.capacity(1), 0);
    assert_eq!(chunker.pending_len(), 6);
}

#[test]
fn closed_stream_releases_nothing() {
    let mut window = SendWindow::default();
    let mut chunker = Chunker::new();
    chunker.push(pattern(10));
    assert_eq!(chunker.poll_chunk_within(&mut window, 7), Ok(None));
    assert_eq!(chunker.pending_len(), 10);
}

#[test]
fn max_frame_size_bounds_rejected_with_typed_error() {
    let mut chunker = Chunker::new();
    assert_eq!(chunker.max_frame_size(), DEFAULT_MAX_FRAME_SIZE);
    for bad in [
        0,
        1,
        DEFAULT_MAX_FRAME_SIZE - 1,
        MAX_MAX_FRAME_SIZE + 1,
        u32::MAX,
    ] {
        let err = chunker.set_max_frame_size(bad).unwrap_err();
        assert_eq!(err, FlowError::InvalidMaxFrameSize { value: bad });
        assert_eq!(err.code(), ErrorCode::ProtocolError);
        assert_eq!(err.fault(), Fault::Peer);
        assert_eq!(
            chunker.max_frame_size(),
            DEFAULT_MAX_FRAME_SIZE,
            "value kept"
        );
    }
    chunker.set_max_frame_size(MAX_MAX_FRAME_SIZE).unwrap();
    assert_eq!(chunker.max_frame_size(), MAX_MAX_FRAME_SIZE);
    chunker.set_max_frame_size(DEFAULT_MAX_FRAME_SIZE).unwrap();
    assert_eq!(chunker.max_frame_size(), DEFAULT_MAX_FRAME_SIZE);
}

#[test]
fn larger_max_frame_size_allows_larger_chunks() {
    let mut chunker = Chunker::new();
    chunker.set_max_frame_size(MAX_MAX_FRAME_SIZE).unwrap();
    chunker.push(pattern(MIB));
    assert_eq!(
        chunker.poll_chunk(MAX_WINDOW_SIZE).map(|c| c.len()),
        Some(MIB)
    );
}

#[test]
fn released_chunks_are_slices_of_pushed_bytes_not_copies() {
    let message = pattern(50_000);
    let range = message.as_ptr_range();
    let mut chunker = Chunker::new();
    chunker.push(message.clone());
    let mut offset = 0;
    while let Some(chunk) = chunker.poll_chunk(10_000) {
        assert_eq!(
            chunk.as_ptr(),
            message[offset..].as_ptr(),
            "shares the pushed buffer"
        );
        assert!(range.contains(&chunk.as_ptr()));
        offset += chunk.len();
    }
    assert_eq!(offset, message.len());
}

#[test]
fn small_pushes_waiting_together_leave_as_one_chunk() {
    let mut chunker = Chunker::new();
    chunker.push(Bytes::from_static(b"abc"));
    chunker.push(Bytes::from_static(b"defgh"));
    assert_eq!(chunker.pending_len(), 8);
    assert_eq!(chunker.poll_chunk(100).as_deref(), Some(&b"abcdefgh"[..]));
    assert!(chunker.is_empty());
    // A capacity cut still splits them, in order.
    chunker.push(Bytes::from_static(b"abc"));
    chunker.push(Bytes::from_static(b"defgh"));
    assert_eq!(chunker.poll_chunk(5).as_deref(), Some(&b"abcde"[..]));
    assert_eq!(chunker.pending_len(), 3);
    assert_eq!(chunker.poll_chunk(100).as_deref(), Some(&b"fgh"[..]));
    assert!(chunker.is_empty());
}

#[test]
fn a_chunk_never_spans_a_large_push() {
    let big = pattern(JOIN_LIMIT + 1);
    let mut chunker = Chunker::new();
    chunker.push(Bytes::from_static(b"ack"));
    chunker.push(big.clone());
    chunker.push(Bytes::from_static(b"heartbeat"));
    assert_eq!(chunker.poll_chunk(100_000).as_deref(), Some(&b"ack"[..]));
    let chunk = chunker.poll_chunk(100_000).expect("the large push");
    assert_eq!(
        chunk.as_ptr(),
        big.as_ptr(),
        "sent from its own buffer, not copied"
    );
    assert_eq!(chunk.len(), big.len());
    assert_eq!(
        chunker.poll_chunk(100_000).as_deref(),
        Some(&b"heartbeat"[..])
    );
    assert!(chunker.is_empty());
}

#[test]
fn settings_decrease_mid_message_stops_sends_until_window_positive() {
    let mut window = SendWindow::new(DEFAULT_INITIAL_WINDOW_SIZE).unwrap();
    window.open_stream(1).unwrap();
    let mut chunker = Chunker::new();
    chunker.push(pattern(100_000));
    let mut sent = 0;
    while let Some(chunk) = chunker.poll_chunk_within(&mut window, 1).unwrap() {
        sent += chunk.len();
    }
    assert_eq!(sent, DEFAULT_INITIAL_WINDOW_SIZE as usize);
    window.handle_settings_initial_window(16_384).unwrap();
    assert!(window.stream_window(1).unwrap().size() < 0);
    window.handle_window_update(0, 100_000).unwrap();
    window.handle_window_update(1, 49_151).unwrap();
    assert_eq!(
        chunker.poll_chunk_within(&mut window, 1),
        Ok(None),
        "window at zero"
    );
    window.handle_window_update(1, 1).unwrap();
    assert_eq!(
        chunker
            .poll_chunk_within(&mut window, 1)
            .unwrap()
            .map(|c| c.len()),
        Some(1)
    );
}

/// One step of a chunker's life.
#[derive(Debug, Clone)]
enum Step {
    Push(Vec<u8>),
    Grant(u32),
    MaxFrame(u32),
    /// Poll with the remaining grant, capped by this per-call limit.
    Poll(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40_000).prop_map(Step::Push),
        (0u32..70_000).prop_map(Step::Grant),
        prop_oneof![
            DEFAULT_MAX_FRAME_SIZE..=40_000,
            Just(MAX_MAX_FRAME_SIZE),
            any::<u32>(),
        ]
        .prop_map(Step::MaxFrame),
        prop_oneof![0u32..20_000, Just(u32::MAX)].prop_map(Step::Poll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn released_bytes_never_exceed_capacity_or_max_frame_and_equal_pushed_bytes_in_order(
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        let mut chunker = Chunker::new();
        let (mut pushed, mut released) = (Vec::new(), Vec::new());
        let (mut granted, mut spent) = (0u64, 0u64);
        for step in steps {
            match step {
                Step::Push(bytes) => {
                    pushed.extend_from_slice(&bytes);
                    chunker.push(bytes.into());
                }
                Step::Grant(n) => granted += u64::from(n),
                Step::MaxFrame(n) => {
                    let before = chunker.max_frame_size();
                    let valid = (DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&n);
                    prop_assert_eq!(chunker.set_max_frame_size(n).is_ok(), valid);
                    prop_assert_eq!(chunker.max_frame_size(), if valid { n } else { before });
                }
                Step::Poll(limit) => {
                    let capacity = u32::try_from(granted - spent).unwrap_or(u32::MAX).min(limit);
                    let queued = chunker.pending_len();
                    match chunker.poll_chunk(capacity) {
                        Some(chunk) => {
                            prop_assert!(!chunk.is_empty());
                            prop_assert!(chunk.len() as u64 <= u64::from(capacity));
                            prop_assert!(chunk.len() as u64 <= u64::from(chunker.max_frame_size()));
                            spent += chunk.len() as u64;
                            released.extend_from_slice(&chunk);
                        }
                        None => prop_assert!(capacity == 0 || queued == 0),
                    }
                }
            }
            prop_assert!(spent <= granted, "cumulative release within cumulative grant");
            prop_assert_eq!(chunker.pending_len(), pushed.len() - released.len());
            prop_assert!(pushed.starts_with(&released), "released bytes are a prefix, in order");
        }
        while let Some(chunk) = chunker.poll_chunk(u32::MAX) {
            prop_assert!(chunk.len() as u64 <= u64::from(chunker.max_frame_size()));
            released.extend_from_slice(&chunk);
        }
        prop_assert!(chunker.is_empty());
        prop_assert!(released == pushed, "concatenation equals the pushed bytes");
    }

    #[test]
    fn chunker_driving_a_send_window_never_overdraws_stream_or_connection(
        initial in 0u32..40_000,
        pushes in proptest::collection::vec(1usize..30_000, 1..6),
        events in proptest::collection::vec((0u8..4, 1u32..30_000), 0..60),
    ) {
        let mut window = SendWindow::new(initial).unwrap();
        window.open_stream(1).unwrap();
        let mut chunker = Chunker::new();
        let mut pushed = Vec::new();
        for len in pushes {
            let bytes = pattern(len);
            pushed.extend_from_slice(&bytes);
            chunker.push(bytes);
        }
        // Independent model of the RFC arithmetic.
        let (mut stream, mut connection) = (i64::from(initial), i64::from(DEFAULT_INITIAL_WINDOW_SIZE));
        let mut current_initial = i64::from(initial);
        let mut released = Vec::new();
        for (kind, n) in events {
            match kind {
                0 => { window.handle_window_update(1, n).unwrap(); stream += i64::from(n); }
                1 => { window.handle_window_update(0, n).unwrap(); connection += i64::from(n); }
                2 => {
                    window.handle_settings_initial_window(n).unwrap();
                    stream += i64::from(n) - current_initial;
                    current_initial = i64::from(n);
                }
                _ => {
                    while let Some(chunk) = chunker.poll_chunk_within(&mut window, 1).unwrap() {
                        let len = chunk.len() as i64;
                        prop_assert!(len <= stream.min(connection), "never beyond either window");
                        prop_assert!(len <= i64::from(DEFAULT_MAX_FRAME_SIZE));
                        stream -= len;
                        connection -= len;
                        released.extend_from_slice(&chunk);
                    }
                    prop_assert!(chunker.is_empty() || stream <= 0 || connection <= 0,
                        "stops only when done or a window is spent");
                }
            }
            prop_assert_eq!(window.stream_window(1).map(|w| i64::from(w.size())), Some(stream));
            prop_assert_eq!(window.connection_window().map(|w| i64::from(w.size())), Some(connection));
            prop_assert!(pushed.starts_with(&released));
        }
    }
}

#[test]
fn debug_output_shows_sizes_not_queued_bytes() {
    let mut chunker = Chunker::new();
    chunker.push(Bytes::from_static(b"secret prompt text"));
    let debug = format!("{chunker:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("18"), "{debug}");
}
