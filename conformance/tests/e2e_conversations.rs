//! Conversations through the running proxy: every follow-up continues the same Cursor
//! conversation from its stored checkpoint and sends only the new content, tool loops included,
//! while other clients and other sessions never share it.

use cursorpool_conformance as support;

use serde_json::{Value, json};
use support::{Client, Harness, Options, bounded};

fn tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}
    }])
}

fn request(messages: &[Value], session: &str) -> Value {
    json!({
        "model": "claude-sonnet-5",
        "max_tokens": 1024,
        "system": "You are helpful.",
        "tools": tools(),
        "metadata": {"user_id": json!({"device_id": "d", "account_uuid": "", "session_id": session}).to_string()},
        "messages": messages,
    })
}

/// Sends the conversation, appends the assistant's reply to it, returns the reply's text.
async fn turn(h: &Harness, messages: &mut Vec<Value>, session: &str) -> (String, Value) {
    let r = h.anthropic(&request(messages, session)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let content = body["content"].clone();
    messages.push(json!({"role": "assistant", "content": content}));
    let text = content
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect::<String>();
    (text, body)
}

async fn follow_ups_replay_the_checkpoint_with_only_the_new_message_tool_loops_included() {
    bounded(async {
        let h = Harness::start_default().await;
        let session = "0b6f9a3e-conversation-a";
        let mut messages = vec![json!({"role": "user", "content": "first question"})];
        let (text, _) = turn(&h, &mut messages, session).await;
        assert!(text.contains("user turns: 1;"), "{text}");
        assert_eq!(h.counters().total.resumed_runs, 0);

        messages.push(json!({"role": "user", "content": "second question"}));
        let (text, _) = turn(&h, &mut messages, session).await;
        let t = h.counters().total;
        assert_eq!((t.runs, t.resumed_runs, t.replayed_checkpoints), (2, 1, 1));
        // Only the new message went upstream, and the model still saw the first turn.
        assert!(
            text.contains("last user message: \"second question\""),
            "{text}"
        );
        assert!(text.contains("user turns: 2;"), "{text}");
        assert!(text.contains("first question"), "{text}");

        messages.push(json!({"role": "user", "content": "call get_weather({\"city\":\"Oslo\"})"}));
        let (_, body) = turn(&h, &mut messages, session).await;
        assert_eq!(body["stop_reason"], "tool_use");
        let call = body["content"]
            .as_array()
            .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
            .cloned()
            .expect("a tool call");
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "Oslo: 3°C, snow"}
        ]}));
        let (text, _) = turn(&h, &mut messages, session).await;
        assert!(text.contains("Oslo: 3°C, snow"), "{text}");
        let t = h.counters().total;
        // The tool result resumed the parked run: still three runs, the third a replay.
        assert_eq!((t.runs, t.resumed_runs, t.tool_results_answered), (3, 2, 1));

        messages.push(json!({"role": "user", "content": "fourth question"}));
        let (text, _) = turn(&h, &mut messages, session).await;
        let t = h.counters().total;
        assert_eq!((t.runs, t.resumed_runs, t.replayed_checkpoints), (4, 3, 3));
        assert!(
            text.contains("last user message: \"fourth question\""),
            "{text}"
        );
        assert!(text.contains("user turns: 4;"), "{text}");
        assert!(text.contains("tool results: 1"), "{text}");
        assert_eq!(h.counters().total.blobs_missing, 0);
        assert_eq!(h.app.conversations_len(), 1);
        h.shutdown().await;
    })
    .await;
}

async fn two_sessions_and_two_clients_never_share_a_conversation() {
    bounded(async {
        let h = Harness::start(Options::default()).await;
        let mut a = vec![json!({"role": "user", "content": "hello"})];
        let mut b = a.clone();
        turn(&h, &mut a, "session-a").await;
        turn(&h, &mut b, "session-b").await;
        a.push(json!({"role": "user", "content": "only in a"}));
        let (text_a, _) = turn(&h, &mut a, "session-a").await;
        b.push(json!({"role": "user", "content": "only in b"}));
        let (text_b, _) = turn(&h, &mut b, "session-b").await;
        assert!(
            text_a.contains("user turns: 2;") && !text_a.contains("only in b"),
            "{text_a}"
        );
        assert!(
            text_b.contains("user turns: 2;") && !text_b.contains("only in a"),
            "{text_b}"
        );
        assert_eq!(h.app.conversations_len(), 2);

        // Another client key with the same session id starts its own conversation.
        let mut other = vec![json!({"role": "user", "content": "hello"})];
        let mut client = Client::connect(h.addr).await;
        let r = client
            .send(
                "POST",
                "/v1/messages",
                &[
                    ("content-type", "application/json"),
                    ("anthropic-version", "2023-06-01"),
                    ("x-api-key", "a-different-client-key"),
                ],
                request(&other, "session-a").to_string().into(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        other.push(json!({"role": "assistant", "content": r.json()["content"].clone()}));
        assert_eq!(h.app.conversations_len(), 3);
        assert_eq!(h.counters().total.resumed_runs, 2);
        h.shutdown().await;
    })
    .await;
}

async fn an_exhausted_account_moves_the_conversation_with_its_whole_history_then_checkpoints_resume()
 {
    use cursorpool_sim::model::Quota;
    bounded(async {
        let mut opts = Options::with_accounts(&["a", "b"]);
        opts.accounts[0].1 = Quota {
            requests: Some(2),
            tokens: None,
        };
        let h = Harness::start(opts).await;
        let session = "migrating-session";
        let mut messages = vec![json!({"role": "user", "content": "first question"})];
        turn(&h, &mut messages, session).await;
        messages.push(json!({"role": "user", "content": "second question"}));
        turn(&h, &mut messages, session).await;
        assert_eq!(h.account("a").resumed_runs, 1, "turn 2 replayed on a");

        // Account a is out of quota: the turn moves to b, invisibly, with everything so far.
        messages.push(json!({"role": "user", "content": "third question"}));
        let (text, _) = turn(&h, &mut messages, session).await;
        // The sim echoes the start of what it got (it cuts long echoes): the whole history,
        // earlier answers included, flattened into one message.
        assert!(
            text.contains("last user message: \"<conversation_history>"),
            "{text}"
        );
        for earlier in ["first question", "second question", "Hope this helps."] {
            assert!(text.contains(earlier), "{earlier} reached b: {text}");
        }
        let b = h.account("b");
        assert_eq!(
            (b.runs, b.resumed_runs),
            (1, 0),
            "a fresh state on b: {b:?}"
        );

        // From then on b's own checkpoints carry the conversation.
        messages.push(json!({"role": "user", "content": "fourth question"}));
        let (text, _) = turn(&h, &mut messages, session).await;
        assert!(
            text.contains("last user message: \"fourth question\""),
            "{text}"
        );
        let b = h.account("b");
        assert_eq!((b.runs, b.resumed_runs, b.replayed_checkpoints), (2, 1, 1));
        assert_eq!(h.account("a").runs, 3, "a was tried once more and refused");
        h.shutdown().await;
    })
    .await;
}

async fn an_expired_checkpoint_falls_back_to_the_whole_history_without_error() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(|c| c.conversations.ttl = std::time::Duration::ZERO),
            ..Options::default()
        })
        .await;
        let mut messages = vec![json!({"role": "user", "content": "first question"})];
        turn(&h, &mut messages, "expiring").await;
        messages.push(json!({"role": "user", "content": "second question"}));
        let (text, _) = turn(&h, &mut messages, "expiring").await;
        assert!(
            text.contains("first question") && text.contains("second question"),
            "{text}"
        );
        assert_eq!(h.counters().total.resumed_runs, 0);
        h.shutdown().await;
    })
    .await;
}

async fn a_restarted_proxy_continues_the_conversation_from_the_stored_checkpoint() {
    use cursorpool_host::cli;
    use cursorpool_sim::model::SimConfig;
    use cursorpool_sim::server::{ServerConfig, spawn};
    use cursorpool_tokio::app::{App, AppConfig};

    bounded(async {
        let dir = std::env::temp_dir().join(format!(
            "cursorpool-restart-{}-{}",
            std::process::id(),
            cli::seed_from_clock()
        ));
        let sim = spawn(ServerConfig::new(SimConfig::default()))
            .await
            .expect("sim");
        let config = AppConfig {
            upstream_url: sim.base_url(),
            accounts: vec![(
                "default".to_owned(),
                sim.access_token("default").expect("token"),
            )],
            state_dir: Some(dir.clone()),
            ..cli::demo_config()
        };
        // One proxy process's life: serve `turns`, then shut down gracefully.
        async fn life(config: AppConfig, messages: &mut Vec<Value>, question: &str) -> String {
            // A new process: new ids (request ids must not repeat across processes).
            let config = AppConfig {
                seed: cli::seed_from_clock(),
                ..config
            };
            let app = App::new(config, support::platform()).expect("proxy");
            let proxy = support::Proxy::serve(app.clone()).await;
            messages.push(json!({"role": "user", "content": question}));
            let mut client = Client::connect(proxy.addr).await;
            let r = client
                .post(
                    "/v1/messages",
                    request(messages, "restart").to_string().into(),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let content = r.json()["content"].clone();
            messages.push(json!({"role": "assistant", "content": content.clone()}));
            // Let the run's bookkeeping land, then stop like SIGTERM does.
            for _ in 0..200 {
                if app.conversations_len() == 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            proxy.stop().await;
            app.flush();
            content[0]["text"].as_str().unwrap_or_default().to_owned()
        }
        let mut messages = Vec::new();
        life(config.clone(), &mut messages, "before the restart").await;
        let text = life(config, &mut messages, "after the restart").await;
        let t = sim.counters().total;
        assert_eq!((t.runs, t.resumed_runs, t.replayed_checkpoints), (2, 1, 1));
        assert!(text.contains("user turns: 2;"), "{text}");
        assert!(
            text.contains("last user message: \"after the restart\""),
            "{text}"
        );
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

async fn a_configured_history_bound_leaves_out_the_oldest_messages_with_a_marker() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(|c| c.max_history_bytes = Some(120)),
            ..Options::default()
        })
        .await;
        // A conversation the proxy has never seen: the whole history must be re-sent.
        let mut messages = vec![
            json!({"role": "user", "content": format!("ancient {}", "x".repeat(300))}),
            json!({"role": "assistant", "content": "old answer"}),
            json!({"role": "user", "content": "latest question"}),
        ];
        let (text, _) = turn(&h, &mut messages, "bounded").await;
        assert!(text.contains("earlier message(s)"), "{text}");
        assert!(
            text.contains("old answer") && !text.contains("xxxx"),
            "{text}"
        );
        h.shutdown().await;
    })
    .await;
}

async fn a_new_message_instead_of_tool_results_closes_the_parked_run() {
    bounded(async {
        let h = Harness::start_default().await;
        let mut messages =
            vec![json!({"role": "user", "content": "call get_weather({\"city\":\"Rome\"})"})];
        let (_, body) = turn(&h, &mut messages, "abandoning").await;
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(h.app.parked_len(), 1);
        // The user interrupts the tool and asks something else (the tool call stays
        // unanswered in the history, as Claude Code sends it after Esc).
        messages.push(json!({"role": "user", "content": "never mind, something else"}));
        // (The sim's model re-reads the flattened history, where the earlier call request
        // stands, and calls the tool again: a new parked run replaces the abandoned one.)
        let r = h.anthropic(&request(&messages, "abandoning")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(h.app.parked_len(), 1, "only the new run is parked");
        assert_eq!(h.counters().total.runs, 2);
        for _ in 0..200 {
            if h.counters().total.cancels == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            h.counters().total.cancels,
            1,
            "cancelled upstream, not left open"
        );
        h.shutdown().await;
    })
    .await;
}

/// Claude Code sends its next message the moment it has the answer: the checkpoint of that
/// answer must already be stored by then, streamed or not, tool loop or not.
async fn an_answer_is_stored_before_the_client_has_it() {
    bounded(async {
        let h = Harness::start(Options::default()).await;
        for i in 0..20 {
            let session = format!("stored-{i}");
            let mut body = request(
                &[json!({"role": "user", "content": "hello there"})],
                &session,
            );
            if i % 2 == 1 {
                body["stream"] = json!(true);
            }
            let r = h.anthropic(&body).await;
            assert_eq!(r.status, 200, "{}", r.text());
            // No wait: the answer is complete, so its conversation is in the store.
            assert_eq!(h.app.conversations_len(), i + 1, "answer {i}");
        }
        let mut messages =
            vec![json!({"role": "user", "content": "call get_weather({\"city\":\"Oslo\"})"})];
        let (_, body) = turn(&h, &mut messages, "stored-tools").await;
        let call = body["content"]
            .as_array()
            .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
            .cloned()
            .expect("a tool call");
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "Oslo: 3°C, snow"}
        ]}));
        turn(&h, &mut messages, "stored-tools").await;
        assert_eq!(h.app.conversations_len(), 21, "the resumed run's answer");
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    an_answer_is_stored_before_the_client_has_it,
    an_exhausted_account_moves_the_conversation_with_its_whole_history_then_checkpoints_resume,
    follow_ups_replay_the_checkpoint_with_only_the_new_message_tool_loops_included,
    two_sessions_and_two_clients_never_share_a_conversation,
    an_expired_checkpoint_falls_back_to_the_whole_history_without_error,
    a_restarted_proxy_continues_the_conversation_from_the_stored_checkpoint,
    a_configured_history_bound_leaves_out_the_oldest_messages_with_a_marker,
    a_new_message_instead_of_tool_results_closes_the_parked_run,
);
