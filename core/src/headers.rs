//! The request headers of every upstream call (spec §3.1), built here so that no adapter decides
//! them: which headers a streaming `Run`/`RunSSE`, a `BidiAppend` or a unary call carries, and
//! their values.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Paths of the RPCs cursorpool calls (spec §2.2).
pub mod path {
    /// Bidirectional run over HTTP/2.
    pub const RUN: &str = "/agent.v1.AgentService/Run";
    /// Server-streaming half of the HTTP/1.1 pairing.
    pub const RUN_SSE: &str = "/agent.v1.AgentService/RunSSE";
    /// Client-to-server half of the HTTP/1.1 pairing.
    pub const BIDI_APPEND: &str = "/aiserver.v1.BidiService/BidiAppend";
    /// Model catalogue.
    pub const GET_USABLE_MODELS: &str = "/agent.v1.AgentService/GetUsableModels";
    /// Transport hints (`http2_config`).
    pub const GET_SERVER_CONFIG: &str = "/aiserver.v1.ServerConfigService/GetServerConfig";
}

/// How cursorpool presents itself upstream. The version matters: too old a client version can
/// be refused with `ERROR_OUTDATED_CLIENT` (spec §3.1), so it is configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// `x-cursor-client-version`, e.g. `cli-2026.01.09-231024f`.
    pub client_version: String,
    /// `x-cursor-client-type`, `cli` like Cursor's own CLI.
    pub client_type: String,
    /// `x-ghost-mode`: privacy mode (`true` unless the account allows training).
    pub ghost_mode: bool,
}

impl Default for ClientIdentity {
    fn default() -> Self {
        Self {
            client_version: "cli-2026.01.09-231024f".to_owned(),
            client_type: "cli".to_owned(),
            ghost_mode: true,
        }
    }
}

/// Which call the headers are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `Run` over HTTP/2 (enveloped stream both ways).
    Run,
    /// `RunSSE` (enveloped response stream, one-envelope request).
    RunSse,
    /// `BidiAppend` (unary, same request id as its `RunSSE`).
    BidiAppend,
    /// Any other unary call.
    Unary,
}

/// Everything that varies per call.
#[derive(Debug, Clone, Copy)]
pub struct CallHeaders<'a> {
    /// The account's access token (never logged).
    pub access_token: &'a str,
    /// `x-request-id`: a fresh UUID per attempt (and the `RunSSE` request id).
    pub request_id: &'a str,
    /// `x-original-request-id`: the first attempt's id when this is a retry.
    pub original_request_id: Option<&'a str>,
    /// Which call.
    pub kind: CallKind,
}

/// Why headers could not be built: a token or id with bytes a header cannot carry (the
/// credential file is corrupt, not the client's request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} contains bytes not allowed in an HTTP header")]
pub struct InvalidHeaderValue(pub &'static str);

fn value(v: &str, what: &'static str) -> Result<HeaderValue, InvalidHeaderValue> {
    HeaderValue::from_str(v).map_err(|_| InvalidHeaderValue(what))
}

/// The headers for one upstream call, as Cursor's own client sends them (spec §3.1).
pub fn build(
    identity: &ClientIdentity,
    call: CallHeaders<'_>,
) -> Result<HeaderMap, InvalidHeaderValue> {
    let mut h = HeaderMap::with_capacity(12);
    let streaming = matches!(call.kind, CallKind::Run | CallKind::RunSse);
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(if streaming {
            "application/connect+proto"
        } else {
            "application/proto"
        }),
    );
    h.insert(
        HeaderName::from_static("connect-protocol-version"),
        HeaderValue::from_static("1"),
    );
    if streaming {
        h.insert(
            HeaderName::from_static("connect-accept-encoding"),
            HeaderValue::from_static("gzip"),
        );
    } else {
        h.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static("connect-es/1.6.1"),
    );
    let mut auth = value(&format!("Bearer {}", call.access_token), "access token")?;
    auth.set_sensitive(true);
    h.insert(http::header::AUTHORIZATION, auth);
    h.insert(
        HeaderName::from_static("x-cursor-client-version"),
        value(&identity.client_version, "client version")?,
    );
    h.insert(
        HeaderName::from_static("x-cursor-client-type"),
        value(&identity.client_type, "client type")?,
    );
    h.insert(
        HeaderName::from_static("x-ghost-mode"),
        HeaderValue::from_static(if identity.ghost_mode { "true" } else { "false" }),
    );
    h.insert(
        HeaderName::from_static("x-request-id"),
        value(call.request_id, "request id")?,
    );
    if call.kind != CallKind::Unary {
        h.insert(
            HeaderName::from_static("x-original-request-id"),
            value(
                call.original_request_id.unwrap_or(call.request_id),
                "request id",
            )?,
        );
    }
    if matches!(call.kind, CallKind::RunSse | CallKind::BidiAppend) {
        h.insert(
            HeaderName::from_static("x-cursor-streaming"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: CallKind) -> HeaderMap {
        build(
            &ClientIdentity::default(),
            CallHeaders {
                access_token: "tok",
                request_id: "r1",
                original_request_id: None,
                kind,
            },
        )
        .expect("valid")
    }

    #[test]
    fn run_carries_the_streaming_connect_headers_and_a_sensitive_bearer() {
        let h = call(CallKind::Run);
        assert_eq!(h["content-type"], "application/connect+proto");
        assert_eq!(h["connect-protocol-version"], "1");
        assert_eq!(h["authorization"], "Bearer tok");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["x-request-id"], "r1");
        assert_eq!(h["x-original-request-id"], "r1");
        assert!(!h.contains_key("x-cursor-streaming"));
    }

    #[test]
    fn http1_pairing_calls_are_marked_streaming_and_appends_are_unary_proto() {
        assert_eq!(call(CallKind::RunSse)["x-cursor-streaming"], "true");
        let append = call(CallKind::BidiAppend);
        assert_eq!(append["x-cursor-streaming"], "true");
        assert_eq!(append["content-type"], "application/proto");
    }

    #[test]
    fn a_token_with_a_newline_is_refused_not_sent() {
        let err = build(
            &ClientIdentity::default(),
            CallHeaders {
                access_token: "a\nb",
                request_id: "r",
                original_request_id: None,
                kind: CallKind::Run,
            },
        );
        assert_eq!(err, Err(InvalidHeaderValue("access token")));
    }
}
