//! Conversations driven like Claude Code against the in-process sim: every request resends the
//! whole history; the proxy replays the stored checkpoint with only the new content, or falls
//! back to flattening when it cannot (new conversation, other account, expiry, edited history),
//! and a restart continues from the persisted entries. The sim's counters and its answers
//! (`user turns: N`, `previous user messages: […]`) prove what reached Cursor.

mod conversation_support;
mod turn_support;

use std::time::Duration;

use conversation_support::*;
use cursorpool_core::chat::{ChatMessage, Part, Role};
use cursorpool_core::conversation::{ConversationKey, FallbackReason, Recorded, StoreConfig};

/// The text of user turn `n`; every third turn makes the model call `Read`.
fn question(n: usize) -> String {
    if n % 3 == 2 {
        format!(r#"question {n}: call Read({{"path":"f{n}.txt"}})"#)
    } else {
        format!("question {n}: tell me more")
    }
}

/// One user turn: the question, and when the model calls tools, their results (which resume
/// the parked run). Returns the exchange of the question and the final answer text.
fn user_turn(proxy: &mut Proxy, client: &mut Client, n: usize) -> (Exchange, String) {
    say(proxy, client, &question(n))
}

/// Sends `text` and answers every tool call with `contents of <path>`, as Claude Code would.
fn say(proxy: &mut Proxy, client: &mut Client, text: &str) -> (Exchange, String) {
    let req = client.say(text);
    let ex = proxy.handle(client, &req);
    client.hear(&ex);
    let mut last = ex.clone();
    while !last.tool_calls.is_empty() {
        let results: Vec<(String, String)> = last
            .tool_calls
            .iter()
            .map(|(id, _)| (id.clone(), tool_output(client, id)))
            .collect();
        let req = client.answer(&results);
        last = proxy.handle(client, &req);
        assert_eq!(last.route, Route::Resumed, "{text}");
        client.hear(&last);
    }
    assert!(
        matches!(last.recorded, Some(Recorded::Stored { .. })),
        "{text}: {:?}",
        last.recorded
    );
    (ex, last.text)
}

/// `contents of <path>` for the tool call `id` in the client's transcript.
fn tool_output(client: &Client, id: &str) -> String {
    let path = client
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .find_map(|p| match p {
            Part::ToolUse { id: i, input, .. } if i == id => input
                .get("path")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    format!("contents of {path}")
}

#[test]
fn a_ten_turn_conversation_with_tool_calls_replays_each_checkpoint_with_only_the_new_message() {
    let mut proxy = Proxy::new(StoreConfig::default());
    let mut client = Client::new("sk-alice", Some("6f1c2e7a-4b3d-4e5f-9a8b-0c1d2e3f4a5b"));
    let mut tool_results = 0;
    let mut conversation_id = None;
    for n in 1..=10 {
        let question_at = client.messages.len();
        let stored = proxy
            .store
            .storage()
            .iter()
            .next()
            .map(|e| e.checkpoint().clone());
        let (ex, answer) = user_turn(&mut proxy, &mut client, n);
        let run_text = ex.run_text.clone().expect("a new run per user turn");
        // One Cursor conversation id for the whole session.
        let id = ex.run_conversation_id.clone().expect("conversation id");
        assert_eq!(conversation_id.get_or_insert(id.clone()), &id);
        if n == 1 {
            assert_eq!(ex.route, Route::Fallback(FallbackReason::NoEntry));
            assert_eq!(ex.run_state.as_deref(), Some(&[][..]));
        } else {
            // The checkpoint is replayed and the run carries only the new message.
            let new = question_at..question_at + 1;
            assert_eq!(ex.route, Route::Replayed(new), "turn {n}");
            assert_eq!(
                ex.run_state, stored,
                "turn {n}: the last checkpoint, byte-for-byte"
            );
            assert_eq!(run_text, question(n), "turn {n}");
            for earlier in 1..n {
                assert!(!run_text.contains(&format!("question {earlier}:")));
                assert!(!run_text.contains(&format!("contents of f{earlier}")));
            }
        }
        let c = proxy.counters("a");
        assert_eq!(c.runs, n as u64, "turn {n}: one run per user turn");
        assert_eq!(c.resumed_runs, n as u64 - 1, "turn {n}");
        assert_eq!(c.replayed_checkpoints, n as u64 - 1, "turn {n}");
        assert_eq!(c.blobs_missing, 0, "turn {n}");
        // The model saw every earlier turn and tool result.
        if !ex.tool_calls.is_empty() {
            tool_results += 1;
            let result = format!("result of cursorpool-Read: contents of f{n}.txt");
            assert!(answer.contains(&result), "{answer}");
        }
        let head = format!("user turns: {n}; tool results: {tool_results}; ");
        assert!(answer.starts_with(&head), "turn {n}: {answer}");
        for earlier in 1..n {
            assert!(
                answer.contains(&format!("\"question {earlier}:")),
                "turn {n} must remember turn {earlier}: {answer}"
            );
        }
    }
    assert_eq!(tool_results, 3);
    assert_eq!(proxy.store.len(), 1);
    assert_eq!(proxy.counters("a").runs, 10);
    assert_eq!(proxy.counters("a").tool_calls_issued, 3);
}

#[test]
fn two_clients_with_the_same_first_message_and_different_api_keys_never_share_a_conversation() {
    let mut proxy = Proxy::new(StoreConfig::default());
    // No session ids: both keys derive from the same system prompt and first message.
    let mut alice = Client::new("sk-alice", None);
    let mut bob = Client::new("sk-bob", None);
    let a1 = alice.say("hello there");
    let b1 = bob.say("hello there");
    assert_ne!(
        ConversationKey::for_request(&a1, "sk-alice").id(),
        ConversationKey::for_request(&b1, "sk-bob").id()
    );
    let ex = proxy.handle(&alice, &a1);
    alice.hear(&ex);
    // Bob's identical request does not find Alice's checkpoint.
    let ex = proxy.handle(&bob, &b1);
    assert_eq!(ex.route, Route::Fallback(FallbackReason::NoEntry));
    bob.hear(&ex);
    // Even a client sending another client's session id gets its own conversation.
    let mut mallory = Client::new("sk-mallory", Some("alice-session"));
    let mut alice2 = Client::new("sk-alice", Some("alice-session"));
    let req = alice2.say("hello there");
    let ex = proxy.handle(&alice2, &req);
    alice2.hear(&ex);
    let req = mallory.say("hello there");
    let ex = proxy.handle(&mallory, &req);
    assert_eq!(ex.route, Route::Fallback(FallbackReason::NoEntry));
    mallory.hear(&ex);

    for round in 2..=4 {
        for (client, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
            let req = client.say(&format!("{name} round {round}"));
            let ex = proxy.handle(client, &req);
            assert!(
                matches!(ex.route, Route::Replayed(_)),
                "{name}: {:?}",
                ex.route
            );
            let other = if name == "alice" { "bob" } else { "alice" };
            assert!(
                ex.text.contains(&format!("user turns: {round};")),
                "{}",
                ex.text
            );
            assert!(!ex.text.contains(other), "{name} saw {other}: {}", ex.text);
            for earlier in 2..round {
                assert!(ex.text.contains(&format!("\"{name} round {earlier}\"")));
            }
            client.hear(&ex);
        }
    }
    assert_eq!(proxy.store.len(), 4);
    assert_eq!(proxy.counters("a").replayed_checkpoints, 6);
}

#[test]
fn two_sessions_with_the_same_key_and_different_session_ids_never_mix() {
    let mut proxy = Proxy::new(StoreConfig::default());
    let mut one = Client::new("sk-team", Some("session-one"));
    let mut two = Client::new("sk-team", Some("session-two"));
    for round in 1..=4 {
        for (client, name) in [(&mut one, "one"), (&mut two, "two")] {
            // The same first message in both sessions.
            let t = if round == 1 {
                "hi".to_owned()
            } else {
                format!("{name} round {round}")
            };
            let req = client.say(&t);
            let ex = proxy.handle(client, &req);
            if round == 1 {
                assert_eq!(ex.route, Route::Fallback(FallbackReason::NoEntry), "{name}");
            } else {
                assert!(matches!(ex.route, Route::Replayed(_)), "{name}");
            }
            let other = if name == "one" { "two" } else { "one" };
            assert!(
                ex.text.contains(&format!("user turns: {round};")),
                "{}",
                ex.text
            );
            assert!(
                !ex.text.contains(&format!("\"{other} round")),
                "{}",
                ex.text
            );
            client.hear(&ex);
        }
    }
    assert_eq!(proxy.store.len(), 2);
}

#[test]
fn an_account_change_falls_back_to_the_flattened_history_then_checkpoints_on_the_new_account() {
    let mut proxy = Proxy::new(StoreConfig::default());
    let mut client = Client::new("sk-alice", Some("session-1"));
    for n in 1..=3 {
        user_turn(&mut proxy, &mut client, n);
    }
    let before_a = proxy.counters("a");

    // Account a is gone (exhausted): the conversation moves to b.
    proxy.use_account("b");
    let (ex, answer) = user_turn(&mut proxy, &mut client, 4);
    assert_eq!(
        ex.route,
        Route::Fallback(FallbackReason::OtherAccount {
            stored: "a".to_owned()
        })
    );
    assert_eq!(
        ex.run_state.as_deref(),
        Some(&[][..]),
        "no checkpoint of a on b"
    );
    let run_text = ex.run_text.expect("run");
    for earlier in 1..=3 {
        assert!(run_text.contains(&question(earlier)), "{run_text}");
    }
    assert!(
        run_text.contains("contents of f2.txt"),
        "tool results flattened too"
    );
    assert!(
        run_text.contains("result of cursorpool-Read"),
        "assistant text kept"
    );
    assert!(run_text.ends_with(&question(4)), "{run_text}");
    assert!(answer.starts_with("user turns: 1;"), "{answer}");
    let b = proxy.counters("b");
    assert_eq!((b.runs, b.resumed_runs), (1, 0));

    // The next turns replay b's checkpoints.
    for n in 5..=6 {
        let (ex, answer) = user_turn(&mut proxy, &mut client, n);
        assert!(matches!(ex.route, Route::Replayed(_)), "{:?}", ex.route);
        assert_eq!(ex.run_text.as_deref(), Some(question(n).as_str()));
        assert!(
            answer.starts_with(&format!("user turns: {};", n - 3)),
            "{answer}"
        );
    }
    let b = proxy.counters("b");
    assert_eq!((b.runs, b.replayed_checkpoints, b.blobs_missing), (3, 2, 0));
    assert_eq!(proxy.counters("a"), before_a, "nothing more went to a");
    assert_eq!(
        proxy.store.account(&key_of(&mut client), proxy.now()),
        Some("b")
    );
}

fn key_of(client: &mut Client) -> ConversationKey {
    let req = client.request();
    ConversationKey::for_request(&req, &client.api_key)
}

#[test]
fn an_expired_entry_falls_back_without_error() {
    let ttl = Duration::from_secs(30 * 60);
    let mut proxy = Proxy::new(StoreConfig {
        ttl,
        ..StoreConfig::default()
    });
    let mut lazy = Client::new("sk-alice", Some("lazy"));
    let mut swept = Client::new("sk-alice", Some("swept"));
    user_turn(&mut proxy, &mut lazy, 1);
    user_turn(&mut proxy, &mut swept, 1);
    let recorded_at = proxy.now();
    assert_eq!(proxy.store.poll_timeout(), Some(recorded_at + ttl));

    // Just before the TTL the entry is still replayed (and the use renews it).
    proxy.advance(ttl - Duration::from_secs(1));
    let (ex, _) = user_turn(&mut proxy, &mut lazy, 2);
    assert!(matches!(ex.route, Route::Replayed(_)));

    // The swept conversation expires at its deadline.
    proxy.advance(Duration::from_secs(1));
    let now = proxy.now();
    assert_eq!(proxy.store.poll_timeout(), Some(now));
    assert_eq!(proxy.store.expire(now), 1);
    assert_eq!(proxy.store.len(), 1);
    let (ex, answer) = user_turn(&mut proxy, &mut swept, 2);
    assert_eq!(ex.route, Route::Fallback(FallbackReason::NoEntry));
    assert!(ex.run_text.expect("run").contains(&question(1)));
    assert!(answer.starts_with("user turns: 1;"), "{answer}");

    // The lazy one expires without a sweep: the plan notices.
    proxy.advance(ttl);
    let (ex, answer) = user_turn(&mut proxy, &mut lazy, 3);
    assert_eq!(ex.route, Route::Fallback(FallbackReason::Expired));
    let run_text = ex.run_text.expect("run");
    assert!(run_text.contains(&question(1)) && run_text.contains(&question(2)));
    assert!(answer.starts_with("user turns: 1;"), "{answer}");
    // …and checkpoints resume after the fallback.
    let (ex, _) = user_turn(&mut proxy, &mut lazy, 4);
    assert!(matches!(ex.route, Route::Replayed(_)));
    assert_eq!(proxy.counters("a").errors.len(), 0);
}

#[test]
fn edited_or_compacted_history_falls_back_to_flattening() {
    let mut proxy = Proxy::new(StoreConfig::default());
    let mut client = Client::new("sk-alice", Some("session-1"));
    for n in 1..=3 {
        user_turn(&mut proxy, &mut client, n);
    }
    // The user rewinds and edits an earlier answer of the model.
    let mut edited = client.clone();
    let i = edited
        .messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .expect("an assistant message");
    edited.messages[i].content = vec![text("something else entirely")];
    let (ex, _) = say(&mut proxy, &mut edited, "question 4: after the edit");
    assert_eq!(ex.route, Route::Fallback(FallbackReason::PrefixMismatch));
    let run_text = ex.run_text.clone().expect("run");
    assert!(run_text.contains("something else entirely") && run_text.contains(&question(1)));
    // The fallback's checkpoint is recorded: the edited conversation replays from now on.
    let (ex, answer) = say(&mut proxy, &mut edited, "question 5: go on");
    assert!(matches!(ex.route, Route::Replayed(_)), "{:?}", ex.route);
    assert_eq!(ex.run_text.as_deref(), Some("question 5: go on"));
    // Cursor's conversation: the flattened turn 4, then this one.
    assert!(answer.starts_with("user turns: 2;"), "{answer}");

    // History cut short (same first message, the middle replaced by a summary).
    let mut cut = Client::new("sk-alice", Some("session-1"));
    cut.messages = vec![edited.messages[0].clone()];
    let (ex, _) = say(&mut proxy, &mut cut, "summary: we read files; question 6");
    assert_eq!(ex.route, Route::Fallback(FallbackReason::PrefixMismatch));

    // Claude Code's `/compact`: the summary becomes the first message, a new conversation.
    let mut compacted = Client::new("sk-alice", Some("session-1"));
    let (ex, _) = say(
        &mut proxy,
        &mut compacted,
        "summary of the conversation so far",
    );
    assert_eq!(ex.route, Route::Fallback(FallbackReason::NoEntry));
    assert!(proxy.counters("a").errors.is_empty());
}

#[test]
fn claude_code_echo_variations_still_replay() {
    let mut proxy = Proxy::new(StoreConfig::default());
    let mut client = Client::new("sk-alice", Some("session-1"));
    let first = ChatMessage {
        role: Role::User,
        content: vec![
            text("<system-reminder>\ntoday is 2026-05-14\n</system-reminder>\n\n"),
            text("question 1: tell me more"),
        ],
    };
    client.messages.push(first);
    let req = client.request();
    let ex = proxy.handle(&client, &req);
    client.hear(&ex);
    // Next request: the old prompt collapsed to one string, the reply echoed with a signed
    // thinking block first, a mid-conversation system note appended.
    client.messages[0].content = vec![text(
        "<system-reminder>\ntoday is 2026-05-14\n</system-reminder>\nquestion 1: tell me more",
    )];
    client.messages[1].content.insert(
        0,
        Part::Thinking {
            text: "hmm".to_owned(),
            signature: Some("sig".to_owned()),
        },
    );
    client.messages.push(ChatMessage {
        role: Role::System,
        content: vec![text("skills: changelog")],
    });
    let req = client.say("question 2: tell me more");
    let ex = proxy.handle(&client, &req);
    assert_eq!(ex.route, Route::Replayed(2..4));
    let run_text = ex.run_text.expect("run");
    assert!(
        run_text.contains("<system>\nskills: changelog\n</system>"),
        "{run_text}"
    );
    assert!(run_text.ends_with("question 2: tell me more"));
    assert!(!run_text.contains("question 1"));
    assert!(ex.text.starts_with("user turns: 2;"), "{}", ex.text);
}

#[test]
fn a_restart_continues_from_the_stored_checkpoint() {
    let mut proxy = Proxy::new(StoreConfig::default());
    let mut client = Client::new("sk-alice", Some("session-1"));
    for n in 1..=3 {
        user_turn(&mut proxy, &mut client, n);
    }
    let bytes = proxy.store.bytes();
    assert_eq!(proxy.restart(), 1);
    assert_eq!((proxy.store.len(), proxy.store.bytes()), (1, bytes));

    let (ex, answer) = user_turn(&mut proxy, &mut client, 4);
    assert!(matches!(ex.route, Route::Replayed(_)), "{:?}", ex.route);
    assert_eq!(ex.run_text.as_deref(), Some(question(4).as_str()));
    assert!(
        answer.starts_with("user turns: 4; tool results: 1;"),
        "{answer}"
    );
    let c = proxy.counters("a");
    assert_eq!((c.replayed_checkpoints, c.blobs_missing), (3, 0));
    // A tool call right after another restart still works (the results go to the parked run).
    proxy.restart();
    let (ex, answer) = user_turn(&mut proxy, &mut client, 5);
    assert!(matches!(ex.route, Route::Replayed(_)));
    assert!(
        answer.starts_with("user turns: 5; tool results: 2;"),
        "{answer}"
    );
}

#[test]
fn ten_thousand_conversations_stay_within_the_byte_budget() {
    const CONVERSATIONS: usize = 10_000;
    let budget = 32 * 1024 * 1024;
    let mut proxy = Proxy::new(StoreConfig {
        max_bytes: budget,
        ..StoreConfig::default()
    });
    for i in 0..CONVERSATIONS {
        if i % 500 == 0 {
            // A fresh Cursor now and then keeps the rig's request ids short.
            proxy.rig = None;
        }
        let mut client = Client::new(&format!("sk-{}", i % 7), Some(&format!("session-{i}")));
        let req = client.say(&format!("conversation {i}: hello"));
        let ex = proxy.handle(&client, &req);
        assert!(matches!(ex.recorded, Some(Recorded::Stored { .. })));
    }
    let (len, bytes) = (proxy.store.len(), proxy.store.bytes());
    assert_eq!(len, CONVERSATIONS);
    assert!(bytes <= budget, "{bytes} > {budget}");
    eprintln!(
        "conversation store: {len} one-turn conversations in {bytes} bytes = {} bytes per \
         conversation (budget {budget})",
        bytes / len
    );

    // A budget for about 1,000 of them keeps the most recently used ones.
    let small_budget = bytes / len * 1_000;
    let mut small = Proxy::new(StoreConfig {
        max_bytes: small_budget,
        ..StoreConfig::default()
    });
    let mut clients = Vec::new();
    for i in 0..2_000 {
        let mut client = Client::new("sk-small", Some(&format!("session-{i}")));
        let req = client.say(&format!("conversation {i}: hello"));
        let ex = small.handle(&client, &req);
        client.hear(&ex);
        clients.push(client);
    }
    assert!(small.store.bytes() <= small_budget);
    assert!(
        (900..=1_000).contains(&small.store.len()),
        "{}",
        small.store.len()
    );
    let newest = clients.last_mut().expect("client");
    let req = newest.say("still there?");
    assert!(matches!(
        small.handle(newest, &req).route,
        Route::Replayed(_)
    ));
    let oldest = clients.first_mut().expect("client");
    let req = oldest.say("still there?");
    assert_eq!(
        small.handle(oldest, &req).route,
        Route::Fallback(FallbackReason::NoEntry)
    );
}

#[test]
fn a_ten_turn_conversation_entry_holds_only_reachable_blobs() {
    let mut proxy = Proxy::new(StoreConfig::default());
    let mut client = Client::new("sk-alice", Some("session-1"));
    for n in 1..=10 {
        user_turn(&mut proxy, &mut client, n);
    }
    let entry = proxy.store.storage().iter().next().expect("entry").clone();
    let turn_blobs = proxy.rig.as_ref().expect("rig").turn.blobs().len();
    assert!(entry.blobs().len() <= turn_blobs);
    // Every kept blob is needed: the next replay pre-fetches all of them and misses none.
    let prefetch = entry.blobs().prefetch_for(entry.checkpoint());
    assert_eq!(prefetch.len(), entry.blobs().len());
    eprintln!(
        "conversation store: a 10-turn conversation with 3 tool calls is {} bytes ({} blobs, \
         checkpoint {} bytes)",
        entry.bytes(),
        entry.blobs().len(),
        entry.checkpoint().len()
    );
}
