//! Conversation ids and transcript fingerprints, from real request bodies: stable across the
//! requests of one conversation (whatever Claude Code changes between them), distinct between
//! clients and sessions.

use cursorpool_core::api::anthropic::parse_messages_request;
use cursorpool_core::api::openai::parse_chat_request;
use cursorpool_core::chat::{ChatRequest, Part, Role};
use cursorpool_core::conversation::id::{id_basis, stable_system_prompt};
use cursorpool_core::conversation::{ConversationKey, IdBasis, Transcript};
use http::HeaderMap;
use serde_json::{Value, json};

const CLAUDE_CODE: &[u8] = include_bytes!("fixtures/claude_code_request.json");
const SESSION: &str = "6f1c2e7a-4b3d-4e5f-9a8b-0c1d2e3f4a5b";

fn fixture() -> Value {
    serde_json::from_slice(CLAUDE_CODE).expect("fixture")
}

fn anthropic(body: &Value, headers: &HeaderMap) -> ChatRequest {
    parse_messages_request(body.to_string().as_bytes(), headers).expect("parses")
}

fn openai(body: &Value, headers: &HeaderMap) -> ChatRequest {
    parse_chat_request(body.to_string().as_bytes(), headers).expect("parses")
}

/// The fixture with its billing block replaced and its messages cut to the first `n`.
fn claude_code(billing: &str, n: usize) -> ChatRequest {
    let mut body = fixture();
    body["system"][0]["text"] = json!(billing);
    let messages = body["messages"].as_array_mut().expect("messages");
    messages.truncate(n);
    anthropic(&body, &HeaderMap::new())
}

fn id(req: &ChatRequest, key: &str) -> String {
    ConversationKey::for_request(req, key).id()
}

#[test]
fn the_same_session_keeps_its_id_across_requests_whose_billing_header_differs() {
    let first = claude_code(
        "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=cli; cch=39343;",
        2,
    );
    let later = claude_code(
        "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=cli; cch=ab9a0;",
        usize::MAX,
    );
    assert_eq!(first.metadata.session_id.as_deref(), Some(SESSION));
    assert_eq!(id_basis(&first.metadata), IdBasis::Session);
    assert_eq!(id(&first, "sk-1"), id(&later, "sk-1"));
}

#[test]
fn different_api_keys_never_share_an_id() {
    let req = claude_code("x-anthropic-billing-header: cc_version=2.1.197.1c0;", 2);
    assert_ne!(id(&req, "sk-alice"), id(&req, "sk-bob"));
    let alice = ConversationKey::for_request(&req, "sk-alice");
    assert!(alice.belongs_to("sk-alice") && !alice.belongs_to("sk-bob"));
    assert_ne!(alice, ConversationKey::for_request(&req, "sk-bob"));
    // The key's debug form carries no API key.
    assert!(!format!("{alice:?}").contains("sk-alice"));
}

#[test]
fn two_sessions_with_the_same_key_get_different_ids() {
    let mut body = fixture();
    let one = anthropic(&body, &HeaderMap::new());
    body["metadata"]["user_id"] = json!(
        r#"{"device_id":"a3","account_uuid":"","session_id":"0b7e1c52-1d2a-4c8e-9f00-5a6b7c8d9e0f"}"#
    );
    let two = anthropic(&body, &HeaderMap::new());
    assert_ne!(id(&one, "sk-1"), id(&two, "sk-1"));
}

#[test]
fn the_session_header_identifies_the_conversation_like_the_user_id_json() {
    let mut body = fixture();
    let from_json = anthropic(&body, &HeaderMap::new());
    body.as_object_mut().expect("object").remove("metadata");
    let mut headers = HeaderMap::new();
    headers.insert("x-claude-code-session-id", SESSION.parse().expect("value"));
    let from_header = anthropic(&body, &headers);
    assert_eq!(id(&from_json, "sk-1"), id(&from_header, "sk-1"));
}

#[test]
fn side_requests_and_subagents_of_a_session_get_their_own_conversation() {
    let main = claude_code(
        "x-anthropic-billing-header: cc_version=2.1.197.1c0;",
        usize::MAX,
    );
    let mut body = fixture();
    body["messages"] =
        json!([{"role": "user", "content": "<session>list the rust files</session>"}]);
    let title = anthropic(&body, &HeaderMap::new());
    assert_eq!(title.metadata.session_id, main.metadata.session_id);
    assert_ne!(id(&main, "sk-1"), id(&title, "sk-1"));
}

#[test]
fn without_a_session_the_id_comes_from_the_stable_system_prompt_and_the_first_message() {
    let body = |billing: &str, prompt: &str, first: &str| {
        json!({
            "model": "claude-test", "max_tokens": 10,
            "system": [{"type": "text", "text": billing}, {"type": "text", "text": prompt}],
            "messages": [{"role": "user", "content": first}]
        })
    };
    let h = HeaderMap::new();
    let a = anthropic(
        &body(
            "x-anthropic-billing-header: cc_version=2.1.197.3f2; cc_entrypoint=cli; cch=df784;",
            "You are Claude Code.",
            "hi",
        ),
        &h,
    );
    let b = anthropic(
        &body(
            "x-anthropic-billing-header: cc_version=2.1.197.0df; cc_entrypoint=cli; cch=70c50;",
            "You are Claude Code.",
            "hi",
        ),
        &h,
    );
    assert_eq!(id_basis(&a.metadata), IdBasis::SystemPrompt);
    assert_eq!(
        stable_system_prompt(&a.system),
        "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=cli;\n\nYou are Claude Code."
    );
    assert_eq!(id(&a, "sk-1"), id(&b, "sk-1"));
    let other_prompt = anthropic(&body("", "You are someone else.", "hi"), &h);
    let other_first = anthropic(
        &body(
            "x-anthropic-billing-header: cc_version=2.1.197.3f2;",
            "You are Claude Code.",
            "yo",
        ),
        &h,
    );
    assert_ne!(id(&a, "sk-1"), id(&other_prompt, "sk-1"));
    assert_ne!(id(&a, "sk-1"), id(&other_first, "sk-1"));
}

#[test]
fn openai_user_and_session_header_identify_the_conversation() {
    let body = |user: Option<&str>, first: &str| {
        let mut b = json!({
            "model": "gpt-test",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": first}]
        });
        if let Some(u) = user {
            b["user"] = json!(u);
        }
        b
    };
    let h = HeaderMap::new();
    let u1 = openai(&body(Some("user-1"), "hello"), &h);
    assert_eq!(id_basis(&u1.metadata), IdBasis::User);
    assert_ne!(
        id(&u1, "sk-1"),
        id(&openai(&body(Some("user-2"), "hello"), &h), "sk-1")
    );
    // One user's two conversations (different first messages) stay apart.
    assert_ne!(
        id(&u1, "sk-1"),
        id(&openai(&body(Some("user-1"), "other"), &h), "sk-1")
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-session-id", "thread-9".parse().expect("value"));
    let s = openai(&body(None, "hello"), &headers);
    assert_eq!(id_basis(&s.metadata), IdBasis::Session);
    let mut later = body(None, "hello");
    later["messages"].as_array_mut().expect("messages").extend([
        json!({"role": "assistant", "content": "hi!"}),
        json!({"role": "user", "content": "more"}),
    ]);
    assert_eq!(id(&s, "sk-1"), id(&openai(&later, &headers), "sk-1"));
}

#[test]
fn ids_are_lowercase_version_8_uuids() {
    let req = claude_code("", 2);
    let id = id(&req, "sk-1");
    assert_eq!(id.len(), 36);
    assert_eq!(id.matches('-').count(), 4);
    assert_eq!(&id[14..15], "8");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    assert_eq!(id, id.to_lowercase());
    assert_eq!(ConversationKey::for_request(&req, "sk-1").to_string(), id);
}

#[test]
fn the_transcript_fingerprint_ignores_how_claude_code_reserializes_history() {
    let full = claude_code("", usize::MAX);
    let covered = Transcript::of(&full.messages[..6]);
    assert!(covered.is_prefix_of(&full.messages));
    assert_eq!(covered.messages(), 6);

    let mut echoed = full.messages.clone();
    // The first prompt's blocks collapsed into one string.
    let joined: String = echoed[0]
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    echoed[0].content = vec![Part::Text(joined)];
    // Thinking signatures change or vanish; tool input keys come back in another order.
    for m in &mut echoed {
        m.content.retain(|p| !matches!(p, Part::Thinking { .. }));
        for p in &mut m.content {
            if let Part::ToolUse { input, .. } = p {
                let reversed: serde_json::Map<String, Value> =
                    input.clone().into_iter().rev().collect();
                *input = reversed;
            }
        }
    }
    assert!(covered.is_prefix_of(&echoed));

    // Real edits are not ignored.
    let mut edited = full.messages.clone();
    edited[3].content.push(Part::Text("extra".to_owned()));
    assert!(!covered.is_prefix_of(&edited));
    let mut result_edited = full.messages.clone();
    if let Some(Part::ToolResult { content, .. }) = result_edited[3].content.first_mut() {
        content.push(Part::Text("changed".to_owned()));
    }
    assert!(!covered.is_prefix_of(&result_edited));
    let mut role_changed = full.messages.clone();
    role_changed[1].role = Role::User;
    assert!(!covered.is_prefix_of(&role_changed));
    assert!(!covered.is_prefix_of(&full.messages[..5]));
}
