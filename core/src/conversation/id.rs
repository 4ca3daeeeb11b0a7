//! Conversation ids: which client conversation a request continues, and the UUID Cursor gets as
//! `AgentRunRequest.conversation_id`.
//!
//! A [`ConversationKey`] is stable across the requests of one client conversation and never
//! shared between two clients. It is derived from, in order of preference:
//!
//! 1. the **session id** ([`RequestMetadata::session_id`]): Claude Code's `session_id` inside
//!    the `metadata.user_id` JSON, or the `X-Claude-Code-Session-Id` / `X-Session-Id` header
//!    (the API front folds all of them into that one field, see `api::metadata`);
//! 2. the **user id** ([`RequestMetadata::user_id`]): OpenAI's `user`, or an Anthropic
//!    `metadata.user_id` that carries no session;
//! 3. the **system prompt** with its volatile parts removed ([`stable_system_text`]: Claude
//!    Code's billing header changes `cch=…;` on every request and ends `cc_version` with a
//!    fingerprint).
//!
//! Each is combined with the **first user message** (normalized like the transcript
//! fingerprint, so text-block boundaries and whitespace do not matter): Claude Code's side
//! requests (the title request) and its subagents share the session id of the main
//! conversation but start with their own first message; without it they would all map to one
//! conversation and keep replacing each other's checkpoint. The first message of a
//! conversation never changes (Claude Code resends history verbatim), except after `/compact`,
//! which starts a new history anyway.
//!
//! Every key is **salted with the client's API key**: it holds a SHA-256 tag of the key (never
//! the key itself), and the id is a hash over that tag, so the same session id sent with two API
//! keys gives two unrelated conversations. The id is the first 16 bytes of a SHA-256, formatted
//! as a version-8 UUID (RFC 9562 "custom") by [`crate::ids::format_uuid`].

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

use super::transcript::message_digest;
use crate::chat::{ChatRequest, RequestMetadata, Role};
use crate::ids::format_uuid;

/// The first line of Claude Code's billing block (`system[0].text`, spec `claude-code-client`
/// §5).
const BILLING_PREFIX: &str = "x-anthropic-billing-header:";

/// Identifies one client's conversation: the client (by a hash of its API key) and the
/// conversation id. Everything the conversation store holds is keyed by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationKey {
    /// SHA-256 tag of the client's API key.
    client: [u8; 32],
    /// The conversation id, version and variant bits already stamped.
    uuid: [u8; 16],
}

/// What a [`ConversationKey`] was derived from (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdBasis {
    /// The client's session id.
    Session,
    /// The client's user id (OpenAI `user`).
    User,
    /// The system prompt without its volatile parts.
    SystemPrompt,
}

impl ConversationKey {
    /// The key of the conversation `req` belongs to, for the client whose API key is
    /// `client_key` (see the module docs).
    pub fn for_request(req: &ChatRequest, client_key: &str) -> Self {
        let client = client_tag(client_key);
        let (basis, value) = match basis_of(&req.metadata) {
            (basis, Some(s)) => (basis, Cow::Borrowed(s)),
            (basis, None) => (basis, Cow::Owned(stable_system_prompt(&req.system))),
        };
        let first_user = req
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(message_digest)
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"cursorpool conversation id v1\0");
        h.update(client);
        h.update([basis as u8]);
        h.update((value.len() as u64).to_be_bytes());
        h.update(value.as_bytes());
        h.update(first_user);
        let digest = h.finalize();
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&digest[..16]);
        uuid[6] = (uuid[6] & 0x0f) | 0x80;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        Self { client, uuid }
    }

    /// The conversation id as Cursor expects it: a lowercase hyphenated UUID (version 8).
    pub fn id(&self) -> String {
        format_uuid(self.uuid, 8)
    }

    /// Whether this key belongs to the client with API key `client_key`.
    pub fn belongs_to(&self, client_key: &str) -> bool {
        self.client == client_tag(client_key)
    }

    /// The raw parts, for the entry encoding.
    pub(crate) fn to_parts(self) -> ([u8; 32], [u8; 16]) {
        (self.client, self.uuid)
    }

    /// A key from its raw parts (decoding a stored entry).
    pub(crate) fn from_parts(client: [u8; 32], uuid: [u8; 16]) -> Self {
        Self { client, uuid }
    }
}

impl fmt::Debug for ConversationKey {
    /// The id and a short prefix of the client tag (never the API key: it is not stored).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConversationKey({} client {})",
            self.id(),
            crate::ids::hex_lower(&self.client[..4])
        )
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// What the key of a request with this metadata is derived from.
pub fn id_basis(metadata: &RequestMetadata) -> IdBasis {
    basis_of(metadata).0
}

fn basis_of(metadata: &RequestMetadata) -> (IdBasis, Option<&str>) {
    if let Some(s) = usable(&metadata.session_id) {
        (IdBasis::Session, Some(s))
    } else if let Some(u) = usable(&metadata.user_id) {
        (IdBasis::User, Some(u))
    } else {
        (IdBasis::SystemPrompt, None)
    }
}

/// A non-blank value.
fn usable(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.trim().is_empty())
}

/// The SHA-256 tag of a client API key (domain-separated from every other hash here).
fn client_tag(client_key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"cursorpool client key v1\0");
    h.update(client_key.as_bytes());
    h.finalize().into()
}

/// The system prompt pieces with their volatile parts removed ([`stable_system_text`]) and
/// blank pieces dropped, joined by blank lines.
pub fn stable_system_prompt(system: &[String]) -> String {
    let pieces: Vec<Cow<'_, str>> = system
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| stable_system_text(s))
        .collect();
    pieces.join("\n\n")
}

/// One system text with the volatile parts of Claude Code's billing header removed: on every
/// line starting with `x-anthropic-billing-header:`, the `cch=…` field (a hash of the request
/// body, different on every request) is dropped and `cc_version=<version>.<fp>` loses its
/// `.<fp>` suffix (1–8 hex digits after a `major.minor.patch` version). Other text is returned
/// unchanged (borrowed).
pub fn stable_system_text(text: &str) -> Cow<'_, str> {
    if !text.contains(BILLING_PREFIX) {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text
        .split('\n')
        .map(
            |line| match line.trim_start().strip_prefix(BILLING_PREFIX) {
                Some(fields) => Cow::Owned(stable_billing_line(fields)),
                None => Cow::Borrowed(line),
            },
        )
        .collect();
    Cow::Owned(lines.join("\n"))
}

fn stable_billing_line(fields: &str) -> String {
    let kept: Vec<String> = fields
        .split(';')
        .map(str::trim)
        .filter(|f| !f.is_empty() && !f.starts_with("cch="))
        .map(|f| match f.strip_prefix("cc_version=") {
            Some(v) => format!("cc_version={}", without_fingerprint(v)),
            None => f.to_owned(),
        })
        .collect();
    format!("{BILLING_PREFIX} {};", kept.join("; "))
}

/// `2.1.197.1c0` → `2.1.197`; anything else unchanged.
fn without_fingerprint(version: &str) -> &str {
    match version.rsplit_once('.') {
        Some((v, fp))
            if v.matches('.').count() >= 2
                && (1..=8).contains(&fp.len())
                && fp.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            v
        }
        _ => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_volatile_parts_are_removed() {
        let a = "x-anthropic-billing-header: cc_version=2.1.197.3f2; cc_entrypoint=sdk-cli; \
                 cch=df784;";
        let b = "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=sdk-cli;";
        assert_eq!(stable_system_text(a), stable_system_text(b));
        assert_eq!(
            stable_system_text(a),
            "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=sdk-cli;"
        );
        assert!(matches!(
            stable_system_text("plain"),
            Cow::Borrowed("plain")
        ));
        assert_eq!(without_fingerprint("2.1"), "2.1");
        assert_eq!(without_fingerprint("2.1.197"), "2.1.197");
        assert_eq!(without_fingerprint("2.1.197.xyz"), "2.1.197.xyz");
    }
}
