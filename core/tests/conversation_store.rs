//! The conversation store on its own, with hand-built checkpoints and simulated time: the
//! replay decision, blob pruning along the §5.3 graph, the entry encoding, LRU and TTL bounds,
//! loading after a restart, and client isolation.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_core::chat::{ChatMessage, ChatRequest, Part, ReplyEvent, RequestMetadata, Role};
use cursorpool_core::conversation::{
    Completed, ConversationKey, ConversationStorage, ConversationStore, Entry, EntryDecodeError,
    FallbackReason, MemoryStorage, Plan, Recorded, ReplyRecorder, StoreConfig, Transcript,
};
use cursorpool_core::turn::{BlobStore, blob_id};
use cursorpool_proto::agent_v1 as pb;
use prost::Message as _;

#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary origin for simulated time; the clock is never read again"
)]
fn epoch() -> Instant {
    Instant::now()
}

const MINUTE: Duration = Duration::from_secs(60);

fn user(t: &str) -> ChatMessage {
    ChatMessage {
        role: Role::User,
        content: vec![Part::Text(t.to_owned())],
    }
}

fn assistant(t: &str) -> ChatMessage {
    ChatMessage {
        role: Role::Assistant,
        content: vec![Part::Text(t.to_owned())],
    }
}

fn request(session: &str, messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        model: "m".to_owned(),
        messages,
        metadata: RequestMetadata {
            user_id: None,
            session_id: Some(session.to_owned()),
        },
        ..ChatRequest::default()
    }
}

/// A checkpoint with one agent turn per text (user message → text blob, one assistant step),
/// its blobs stored in `blobs`.
fn checkpoint(blobs: &mut BlobStore, turns: &[&str]) -> Bytes {
    let id = |b: [u8; 32]| Bytes::copy_from_slice(&b);
    let mut turn_ids = Vec::new();
    for t in turns {
        let text = blobs.insert(Bytes::from(t.as_bytes().to_vec()));
        let user = pb::UserMessage {
            text_blob_id: Some(id(text)),
            ..Default::default()
        };
        let user = blobs.insert(Bytes::from(user.encode_to_vec()));
        let step = pb::ConversationStep {
            message: Some(pb::conversation_step::Message::AssistantMessage(
                pb::AssistantMessage {
                    text: format!("answer to {t}"),
                },
            )),
        };
        let step = blobs.insert(Bytes::from(step.encode_to_vec()));
        let turn = pb::ConversationTurnStructure {
            turn: Some(
                pb::conversation_turn_structure::Turn::AgentConversationTurn(
                    pb::AgentConversationTurnStructure {
                        user_message: id(user),
                        steps: vec![id(step)],
                        ..Default::default()
                    },
                ),
            ),
        };
        turn_ids.push(id(blobs.insert(Bytes::from(turn.encode_to_vec()))));
    }
    let state = pb::ConversationStateStructure {
        turns: turn_ids,
        ..Default::default()
    };
    Bytes::from(state.encode_to_vec())
}

/// Records a one-turn conversation `session` of client `client` on `account`.
fn record_one(
    store: &mut ConversationStore,
    client: &str,
    session: &str,
    account: &str,
    now: Instant,
) -> (ConversationKey, ChatRequest, Recorded) {
    let req = request(session, vec![user(&format!("{session} first"))]);
    let key = ConversationKey::for_request(&req, client);
    let mut blobs = BlobStore::new();
    let cp = checkpoint(&mut blobs, &[&format!("{session} first")]);
    let reply = [assistant("hello")];
    let r = store.record(
        &key,
        Completed {
            account,
            request: &req,
            reply: &reply,
            checkpoint: &cp,
            blobs: &blobs,
        },
        now,
    );
    (key, req, r)
}

/// `req` followed by the recorded reply and a new question.
fn follow_up(req: &ChatRequest, question: &str) -> ChatRequest {
    let mut next = req.clone();
    next.messages.push(assistant("hello"));
    next.messages.push(user(question));
    next
}

#[test]
fn replay_needs_the_same_account_and_an_exact_prefix_with_something_new() {
    let t0 = epoch();
    let mut store = ConversationStore::new(StoreConfig::default());
    let (key, req, _) = record_one(&mut store, "sk-1", "s1", "a", t0);

    let next = follow_up(&req, "second");
    let Plan::Replay(r) = store.plan(&key, &next, "a", t0) else {
        panic!("replay expected");
    };
    assert_eq!(r.new_messages, 2..3);
    assert_eq!(r.input.text, "second");
    assert_eq!(
        r.conversation_state,
        store.storage().iter().next().unwrap().checkpoint()
    );
    assert_eq!(
        r.pre_fetched_blobs.len(),
        4,
        "turn, user message, text, step"
    );

    let fallback = |store: &mut ConversationStore, req: &ChatRequest, account: &str| match store
        .plan(&key, req, account, t0)
    {
        Plan::Fallback(reason) => reason,
        Plan::Replay(_) => panic!("fallback expected"),
    };
    assert_eq!(
        fallback(&mut store, &next, "b"),
        FallbackReason::OtherAccount {
            stored: "a".to_owned()
        }
    );
    let mut edited = next.clone();
    edited.messages[1] = assistant("HELLO");
    assert_eq!(
        fallback(&mut store, &edited, "a"),
        FallbackReason::PrefixMismatch
    );
    assert_eq!(
        fallback(&mut store, &req, "a"),
        FallbackReason::PrefixMismatch,
        "shorter than the covered transcript"
    );
    let mut resent = req.clone();
    resent.messages.push(assistant("hello"));
    assert_eq!(
        fallback(&mut store, &resent, "a"),
        FallbackReason::NothingNew
    );
    let other = request("s2", vec![user("s2 first")]);
    let other_key = ConversationKey::for_request(&other, "sk-1");
    assert!(matches!(
        store.plan(&other_key, &other, "a", t0),
        Plan::Fallback(FallbackReason::NoEntry)
    ));
}

#[test]
fn a_client_never_gets_another_clients_entry_even_with_the_same_session() {
    let t0 = epoch();
    let mut store = ConversationStore::new(StoreConfig::default());
    let (alice, req, _) = record_one(&mut store, "sk-alice", "shared", "a", t0);
    let next = follow_up(&req, "second");
    let bob = ConversationKey::for_request(&next, "sk-bob");
    assert_ne!(alice, bob);
    assert_eq!(alice, ConversationKey::for_request(&next, "sk-alice"));
    assert!(matches!(
        store.plan(&bob, &next, "a", t0),
        Plan::Fallback(FallbackReason::NoEntry)
    ));
    assert!(store.account(&bob, t0).is_none());
    assert_eq!(store.account(&alice, t0), Some("a"));
}

#[test]
fn record_keeps_exactly_the_blobs_the_checkpoint_reaches() {
    let t0 = epoch();
    let mut store = ConversationStore::new(StoreConfig::default());
    let req = request("s", vec![user("q")]);
    let key = ConversationKey::for_request(&req, "sk");
    let mut blobs = BlobStore::new();
    // An older state (superseded turn) and an unrelated blob: not reachable.
    let _old = checkpoint(&mut blobs, &["superseded"]);
    blobs.insert(Bytes::from_static(b"unrelated"));
    // A nested state referenced from a user message is reachable and walked.
    let mut nested_blobs = BlobStore::new();
    let nested = checkpoint(&mut nested_blobs, &["nested"]);
    for (_, b) in nested_blobs.iter() {
        blobs.insert(b.clone());
    }
    let nested_id = blobs.insert(nested);
    let cp_blobs_before = blobs.len();
    let mut tmp = BlobStore::new();
    let cp = checkpoint(&mut tmp, &["q"]);
    for (_, b) in tmp.iter() {
        blobs.insert(b.clone());
    }
    let mut state = pb::ConversationStateStructure::decode(cp).expect("state");
    let extra_user = pb::UserMessage {
        text: "inline".to_owned(),
        conversation_state_blob_id: Bytes::copy_from_slice(&nested_id),
        ..Default::default()
    };
    let extra_user = blobs.insert(Bytes::from(extra_user.encode_to_vec()));
    let extra_turn = pb::ConversationTurnStructure {
        turn: Some(
            pb::conversation_turn_structure::Turn::AgentConversationTurn(
                pb::AgentConversationTurnStructure {
                    user_message: Bytes::copy_from_slice(&extra_user),
                    ..Default::default()
                },
            ),
        ),
    };
    state.turns.push(Bytes::copy_from_slice(
        &blobs.insert(Bytes::from(extra_turn.encode_to_vec())),
    ));
    let cp = Bytes::from(state.encode_to_vec());
    assert_eq!(blobs.len(), cp_blobs_before + 4 + 2);

    store.record(
        &key,
        Completed {
            account: "a",
            request: &req,
            reply: &[],
            checkpoint: &cp,
            blobs: &blobs,
        },
        t0,
    );
    let entry = store.storage().get(&key).expect("entry");
    // q's turn (4 blobs) + extra turn + extra user + nested state + nested's 4 blobs.
    assert_eq!(entry.blobs().len(), 4 + 2 + 1 + 4);
    assert!(entry.blobs().get(&blob_id(b"unrelated")).is_none());
    assert!(entry.blobs().get(&blob_id(b"superseded")).is_none());
    assert!(entry.blobs().get(&blob_id(b"nested")).is_some());
    assert_eq!(entry.checkpoint(), &cp, "byte-for-byte");
    assert_eq!(store.bytes(), entry.bytes());
}

#[test]
fn an_entry_round_trips_through_its_encoding() {
    let t0 = epoch();
    let mut store = ConversationStore::new(StoreConfig::default());
    let (key, _, _) = record_one(&mut store, "sk-1", "s1", "account-a", t0);
    let entry = store.storage().get(&key).expect("entry");
    let encoded = entry.encode();
    let decoded = Entry::decode(&Bytes::from(encoded.clone())).expect("decodes");
    assert_eq!(decoded.key(), entry.key());
    assert_eq!(decoded.account(), "account-a");
    assert_eq!(decoded.transcript(), entry.transcript());
    assert_eq!(decoded.checkpoint(), entry.checkpoint());
    let mut a: Vec<_> = entry.blobs().iter().collect();
    let mut b: Vec<_> = decoded.blobs().iter().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(decoded.bytes(), entry.bytes());
    assert_eq!(decoded.encode(), encoded, "deterministic");
    eprintln!(
        "conversation entry: {} bytes encoded, {} bytes accounted",
        encoded.len(),
        entry.bytes()
    );
}

#[test]
fn decoding_rejects_truncated_and_foreign_bytes() {
    let t0 = epoch();
    let mut store = ConversationStore::new(StoreConfig::default());
    let (key, _, _) = record_one(&mut store, "sk-1", "s1", "a", t0);
    let encoded = store.storage().get(&key).expect("entry").encode();
    for n in 0..encoded.len() {
        let cut = Bytes::copy_from_slice(&encoded[..n]);
        assert!(Entry::decode(&cut).is_err(), "prefix of {n} bytes");
    }
    let mut bad = encoded.clone();
    bad[0] = b'X';
    assert_eq!(
        Entry::decode(&Bytes::from(bad)).err(),
        Some(EntryDecodeError::BadMagic)
    );
    let mut bad = encoded.clone();
    bad[4] = 9;
    assert_eq!(
        Entry::decode(&Bytes::from(bad)).err(),
        Some(EntryDecodeError::UnsupportedVersion(9))
    );
    let mut long = encoded.clone();
    long.push(0);
    assert_eq!(
        Entry::decode(&Bytes::from(long)).err(),
        Some(EntryDecodeError::TrailingBytes(1))
    );
}

#[test]
fn a_store_loaded_after_a_restart_replays_and_respects_its_budget() {
    let t0 = epoch();
    let mut store = ConversationStore::new(StoreConfig::default());
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(record_one(&mut store, "sk-1", &format!("s{i}"), "a", t0));
    }
    let per_entry = store.bytes() / 10;
    let files: Vec<Vec<u8>> = store.storage().iter().map(Entry::encode).collect();
    drop(store);

    let t1 = t0 + 10 * MINUTE;
    let load = |budget: usize| {
        let storage: MemoryStorage = files
            .iter()
            .map(|f| Entry::decode(&Bytes::copy_from_slice(f)).expect("decodes"))
            .collect();
        ConversationStore::with_storage(
            storage,
            StoreConfig {
                max_bytes: budget,
                ..StoreConfig::default()
            },
            t1,
        )
    };
    let mut restarted = load(usize::MAX);
    assert_eq!(restarted.len(), 10);
    // Loaded entries count as used at load time.
    assert_eq!(
        restarted.poll_timeout(),
        Some(t1 + StoreConfig::default().ttl)
    );
    let (key, req, _) = &keys[3];
    assert!(matches!(
        restarted.plan(key, &follow_up(req, "again"), "a", t1),
        Plan::Replay(_)
    ));
    let small = load(per_entry * 4 + per_entry / 2);
    assert_eq!(small.len(), 4);
    assert!(small.bytes() <= per_entry * 4 + per_entry / 2);
}

#[test]
fn lru_eviction_and_ttl_keep_the_store_bounded() {
    let t0 = epoch();
    let mut probe = ConversationStore::new(StoreConfig::default());
    let (_, _, Recorded::Stored { bytes: one, .. }) = record_one(&mut probe, "k", "p0", "a", t0)
    else {
        panic!("stored");
    };
    let ttl = 30 * MINUTE;
    let mut store = ConversationStore::new(StoreConfig {
        ttl,
        max_bytes: one * 3,
    });
    assert_eq!(store.poll_timeout(), None);
    let (k0, r0, _) = record_one(&mut store, "k", "s0", "a", t0);
    let (k1, _, _) = record_one(&mut store, "k", "s1", "a", t0 + MINUTE);
    let (k2, _, _) = record_one(&mut store, "k", "s2", "a", t0 + 2 * MINUTE);
    // Using s0 makes s1 the least recently used.
    assert!(matches!(
        store.plan(&k0, &follow_up(&r0, "q"), "a", t0 + 3 * MINUTE),
        Plan::Replay(_)
    ));
    let (k3, _, rec) = record_one(&mut store, "k", "s3", "a", t0 + 4 * MINUTE);
    assert!(
        matches!(rec, Recorded::Stored { evicted: 1, .. }),
        "{rec:?}"
    );
    assert!(store.account(&k1, t0 + 4 * MINUTE).is_none(), "s1 evicted");
    assert_eq!(store.len(), 3);
    assert!(store.bytes() <= one * 3);

    // Expiry in order of last use: s2 first (used at +2 min).
    assert_eq!(store.poll_timeout(), Some(t0 + 2 * MINUTE + ttl));
    assert_eq!(
        store.expire(t0 + 2 * MINUTE + ttl - Duration::from_millis(1)),
        0
    );
    assert_eq!(store.expire(t0 + 2 * MINUTE + ttl), 1);
    assert!(store.account(&k2, t0 + 2 * MINUTE + ttl).is_none());
    assert_eq!(store.poll_timeout(), Some(t0 + 3 * MINUTE + ttl));
    assert_eq!(store.expire(t0 + 10 * ttl), 2);
    assert!(store.is_empty() && store.bytes() == 0 && store.poll_timeout().is_none());
    assert!(!store.remove(&k3));

    // An entry larger than the whole budget is not stored.
    let mut tiny = ConversationStore::new(StoreConfig {
        ttl,
        max_bytes: one / 2,
    });
    let (_, _, rec) = record_one(&mut tiny, "k", "s", "a", t0);
    assert!(matches!(rec, Recorded::TooLarge { .. }));
    assert!(tiny.is_empty());
}

#[test]
fn the_reply_recorder_keeps_the_last_reply_as_the_client_echoes_it() {
    let mut r = ReplyRecorder::new();
    assert!(r.messages().is_empty());
    let start = ReplyEvent::Start {
        id: "msg_1".to_owned(),
        model: "m".to_owned(),
        usage: Default::default(),
    };
    r.handle(&start);
    r.handle(&ReplyEvent::TextDelta("Calling".to_owned()));
    r.handle(&ReplyEvent::ToolCall {
        id: "toolu_1".to_owned(),
        name: "Read".to_owned(),
        input: Default::default(),
    });
    assert_eq!(r.messages()[0].content.len(), 2);
    // The resumed run's reply replaces it.
    r.handle(&start);
    r.handle(&ReplyEvent::ThinkingDelta("hmm".to_owned()));
    r.handle(&ReplyEvent::TextDelta("Done ".to_owned()));
    r.handle(&ReplyEvent::TextDelta("now.".to_owned()));
    assert_eq!(r.messages(), vec![assistant("Done now.")]);
    // What Claude Code echoes (with a signed thinking block) has the same fingerprint.
    let echoed = ChatMessage {
        role: Role::Assistant,
        content: vec![
            Part::Thinking {
                text: "hmm".to_owned(),
                signature: Some("sig".to_owned()),
            },
            Part::Text("Done now.".to_owned()),
        ],
    };
    assert_eq!(Transcript::of(&r.messages()), Transcript::of([&echoed]));
}
