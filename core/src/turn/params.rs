//! What a [`super::Turn`] starts from: the pieces of the chat request, the conversation's
//! state and blobs, the model mapping, timing configuration and the upstream framing.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;

use super::blobs::BlobStore;
use super::framing::Framing;
use super::prompt::{self, RunInput};
use crate::chat::{ApiKind, ChatRequest, ToolChoice, ToolSpec};
use crate::ids::IdSource;

/// Client model names → Cursor model ids: exact entries, else a default (`"default"` = Cursor's
/// Auto).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMap {
    /// Exact client model name → Cursor model id.
    pub entries: BTreeMap<String, String>,
    /// The Cursor model id for every other name.
    pub default: String,
}

impl Default for ModelMap {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            default: "default".to_owned(),
        }
    }
}

impl ModelMap {
    /// The Cursor model id for the client's model name.
    pub fn resolve(&self, client_model: &str) -> &str {
        self.entries.get(client_model).unwrap_or(&self.default)
    }
}

/// The default `RequestContext.env`, built once: every request's config starts from it.
static DEFAULT_ENV: LazyLock<Arc<pb::RequestContextEnv>> = LazyLock::new(|| {
    Arc::new(pb::RequestContextEnv {
        os_version: "cursorpool (API proxy; no local machine)".to_owned(),
        shell: "none".to_owned(),
        time_zone: "UTC".to_owned(),
        ..Default::default()
    })
});

/// The default reason a built-in tool is refused.
static DEFAULT_REFUSAL: LazyLock<Arc<str>> = LazyLock::new(|| {
    Arc::from(
        "This client has no local machine: built-in tools are unavailable. \
         Use the provided tools instead.",
    )
});

/// Timing and fixed answers of a turn. The defaults follow the SDK (§6.5) and issue 4.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnConfig {
    /// `client_heartbeat{}` period, from the start of the run to its end (SDK: 5 s).
    pub heartbeat_interval: Duration,
    /// `exec_client_control_message.heartbeat{id}` period for each tool call the client is
    /// executing (SDK: 3 s).
    pub exec_heartbeat_interval: Duration,
    /// No upstream byte for this long fails the run as stalled (default 90 s).
    pub stall_timeout: Duration,
    /// Tool calls arriving within this long of each other belong to one batch (default 150 ms):
    /// when it elapses without another call, the batch goes to the client.
    pub tool_batch_quiet: Duration,
    /// A `Ping` goes downstream when nothing else was sent for this long (default 10 s).
    pub ping_interval: Duration,
    /// `RequestContext.env`: what the model is told about the (absent) local machine. Shared:
    /// every turn starts from a copy of the config.
    pub env: Arc<pb::RequestContextEnv>,
    /// The reason given when a built-in tool (shell, read, …) is refused.
    pub refusal_reason: Arc<str>,
    /// Largest upstream frame accepted (see [`crate::connect::envelope`]).
    pub max_frame_len: u32,
    /// Most bytes of a non-200 response body kept for its classification.
    pub max_error_body: usize,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            exec_heartbeat_interval: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(90),
            tool_batch_quiet: Duration::from_millis(150),
            ping_interval: Duration::from_secs(10),
            env: Arc::clone(&DEFAULT_ENV),
            refusal_reason: Arc::clone(&DEFAULT_REFUSAL),
            max_frame_len: crate::connect::envelope::DEFAULT_MAX_FRAME_LEN,
            max_error_body: 64 * 1024,
        }
    }
}

/// What shapes one downstream reply. Set per client request: a resumed turn takes the options of
/// the request that carried the tool results ([`super::Turn::set_reply_options`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyOptions {
    /// Which API the client speaks (the reply id prefix: `msg_` or `chatcmpl-`).
    pub api: ApiKind,
    /// The model name reported back (the one the client asked for).
    pub model: String,
    /// The client's output-token bound.
    pub max_tokens: Option<u32>,
    /// Strings that end the reply when generated.
    pub stop_sequences: Vec<String>,
}

impl ReplyOptions {
    /// The options of `req`.
    pub fn from_chat(req: &ChatRequest, api: ApiKind) -> Self {
        Self {
            api,
            model: req.model.clone(),
            max_tokens: req.max_tokens,
            stop_sequences: req.stop_sequences.clone(),
        }
    }
}

/// Everything a [`super::Turn`] starts from.
#[derive(Debug)]
pub struct TurnParams {
    /// The user message of this run.
    pub input: RunInput,
    /// The caller's system prompt. It goes to `RequestContext.cloud_rule` — the field public
    /// proxies use because plain system messages are not honoured (§6.3) — and not to
    /// `custom_system_prompt`, which the SDK never sends and whose effect on Cursor's own agent
    /// prompt is unverified.
    pub system_prompt: Option<String>,
    /// The client's tools (become `cursorpool-<name>` MCP tools).
    pub tools: Vec<ToolSpec>,
    /// `tools` already made ready (from a [`super::ToolCache`]); used when it was made from
    /// exactly `tools`, else the turn makes its own.
    pub prepared_tools: Option<super::PreparedTools>,
    /// How the client constrains tool use: `None` declares no tools; `Any` / `Tool` add an
    /// instruction to the cloud rule (Cursor has no such switch).
    pub tool_choice: ToolChoice,
    /// The Cursor model id (`requested_model.model_id`).
    pub cursor_model: String,
    /// `requested_model.parameters` as `(id, value)` pairs.
    pub model_parameters: Vec<(String, String)>,
    /// Stable per conversation (`AgentRunRequest.conversation_id`).
    pub conversation_id: String,
    /// The last checkpoint, replayed byte-for-byte; `None` for a new conversation.
    pub conversation_state: Option<Bytes>,
    /// Blobs sent with the run request (see [`BlobStore::prefetch_for`]).
    pub pre_fetched_blobs: Vec<pb::PreFetchedBlob>,
    /// The conversation's blob store.
    pub blobs: BlobStore,
    /// The first reply's options.
    pub reply: ReplyOptions,
    /// Timing and fixed answers.
    pub config: TurnConfig,
    /// Source of reply ids.
    pub ids: IdSource,
    /// How client messages travel upstream.
    pub framing: Framing,
    /// Prompt-token estimate reported at the start of the first reply (never 0) until Cursor
    /// reports its own figure.
    pub input_tokens_estimate: u64,
}

impl TurnParams {
    /// The parameters of a new run for `req`: the user message built by [`prompt::run_input`]
    /// (history flattened), the system prompt, tools and reply options of `req`, the Cursor
    /// model from `models`. State, blobs and config start empty / default; set them on the
    /// result.
    pub fn from_chat(
        req: &ChatRequest,
        api: ApiKind,
        models: &ModelMap,
        conversation_id: String,
        framing: Framing,
        ids: IdSource,
    ) -> Self {
        let input = prompt::run_input(req);
        let system_prompt = prompt::system_prompt(req);
        let schema_chars: usize = req
            .tools
            .iter()
            .map(|t| {
                t.name.len()
                    + t.description.len()
                    + t.input_schema.as_ref().map_or(0, |s| s.as_str().len())
            })
            .sum();
        let chars = input.text.len()
            + system_prompt.as_ref().map_or(0, String::len)
            + schema_chars
            + 4000 * input.images.len();
        Self {
            input_tokens_estimate: prompt::estimate_tokens(chars),
            input,
            system_prompt,
            tools: req.tools.clone(),
            prepared_tools: None,
            tool_choice: req.tool_choice.clone(),
            cursor_model: models.resolve(&req.model).to_owned(),
            model_parameters: Vec::new(),
            conversation_id,
            conversation_state: None,
            pre_fetched_blobs: Vec::new(),
            blobs: BlobStore::new(),
            reply: ReplyOptions::from_chat(req, api),
            config: TurnConfig::default(),
            ids,
            framing,
        }
    }

    /// The cloud rule: the system prompt plus the tool-choice instruction, if any.
    pub(crate) fn cloud_rule(&self) -> Option<String> {
        let instruction = match &self.tool_choice {
            ToolChoice::Auto | ToolChoice::None => None,
            ToolChoice::Any => Some("You must call one of the provided tools.".to_owned()),
            ToolChoice::Tool(name) => Some(format!("You must call the tool `{name}`.")),
        };
        match (self.system_prompt.clone(), instruction) {
            (Some(s), Some(i)) => Some(format!("{s}\n\n{i}")),
            (s, i) => s.or(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_map_resolves_exact_names_else_the_default() {
        let mut m = ModelMap::default();
        m.entries
            .insert("claude-sonnet-4-5".into(), "claude-4.5-sonnet".into());
        assert_eq!(m.resolve("claude-sonnet-4-5"), "claude-4.5-sonnet");
        assert_eq!(m.resolve("gpt-4o"), "default");
    }
}
