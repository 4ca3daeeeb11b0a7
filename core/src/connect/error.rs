//! Connect errors: the `{code, message, details}` triple carried by end-stream trailers and
//! unary error bodies (spec §4.1, §4.3), and Cursor's `aiserver.v1.ErrorDetails` inside it
//! (spec §4.5).
//!
//! Parsing is tolerant where the protocol is loose (base64 with or without padding, standard
//! or URL-safe alphabet; unknown keys ignored; an unrecognised code string becomes the
//! context's default code) and strict where a wrong shape means we could misread the failure
//! (an `error` that is not an object, a missing or non-string `code`, malformed `details`):
//! those are typed [`ErrorJsonError`]s, never panics.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use cursorpool_proto::aiserver_v1::ErrorDetails;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use prost::Message as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::code::Code;

/// The detail type name Cursor uses for its structured error payload.
pub const CURSOR_ERROR_DETAILS_TYPE: &str = "aiserver.v1.ErrorDetails";

/// Deepest JSON nesting accepted in an error body or end-stream trailer. A real trailer nests
/// about six levels (`error.details[].debug.details.additionalInfo`); anything past this is
/// rejected by a linear pre-scan before serde_json builds a tree (serde_json's own limit of
/// 128 stays as a backstop).
pub const MAX_JSON_DEPTH: usize = 64;

/// Longest upstream-controlled text (an unknown code string, a non-JSON body) echoed into a
/// message, in characters. Keeps log lines and client-visible errors bounded.
const MAX_ECHO_CHARS: usize = 200;

/// Base64 decoders: padding optional, trailing bits tolerated (connect-es is that lenient).
const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

/// A Connect error as it travels in JSON. `Display` is connect-es's `"[code] message"`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("[{code}] {message}")]
pub struct ConnectError {
    /// The Connect code.
    pub code: Code,
    /// The server's message; Cursor often sends the literal `"Error"` and puts the useful text
    /// in the details (see [`ConnectError::user_message`]).
    pub message: String,
    /// Typed, protobuf-encoded details, in wire order.
    pub details: Vec<ErrorDetail>,
}

/// One entry of `details[]`: a protobuf message named by its fully-qualified type.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorDetail {
    /// Fully-qualified protobuf type name, e.g. `aiserver.v1.ErrorDetails`.
    pub type_name: String,
    /// The serialized message (base64 on the wire).
    pub value: Bytes,
    /// Optional informational JSON form of the same detail (Cursor sends one, observed).
    pub debug: Option<Value>,
}

/// Why a JSON error object could not be read. All variants are the upstream's fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorJsonError {
    /// The error is not a JSON object (e.g. `null`, a string, an array).
    #[error("error is {found}, expected an object")]
    NotAnObject {
        /// JSON kind that was found.
        found: &'static str,
    },
    /// The object has no `code` (or `"code": null`), e.g. `{}`.
    #[error("error has no code")]
    MissingCode,
    /// `code` is present but not a string.
    #[error("error code is {found}, expected a string")]
    CodeNotString {
        /// JSON kind that was found.
        found: &'static str,
    },
    /// `message` is present, not null, and not a string.
    #[error("error message is {found}, expected a string")]
    MessageNotString {
        /// JSON kind that was found.
        found: &'static str,
    },
    /// `details` is present, not null, and not an array.
    #[error("error details is {found}, expected an array")]
    DetailsNotArray {
        /// JSON kind that was found.
        found: &'static str,
    },
    /// `details[index]` is not an object.
    #[error("error detail {index} is not an object")]
    DetailNotObject {
        /// Position in `details`.
        index: usize,
    },
    /// `details[index].type` is missing or not a string.
    #[error("error detail {index} has no string type")]
    DetailTypeNotString {
        /// Position in `details`.
        index: usize,
    },
    /// `details[index].value` is missing or not a string.
    #[error("error detail {index} has no string value")]
    DetailValueNotString {
        /// Position in `details`.
        index: usize,
    },
    /// `details[index].value` is not base64 in either alphabet.
    #[error("error detail {index} value is not base64")]
    DetailValueNotBase64 {
        /// Position in `details`.
        index: usize,
    },
}

impl ConnectError {
    /// An error with no details.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ConnectError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Appends `d` as an `aiserver.v1.ErrorDetails` detail, with the informational `debug`
    /// JSON Cursor attaches (so a simulated backend looks like the real one).
    pub fn with_cursor_details(mut self, d: &ErrorDetails) -> Self {
        self.details.push(ErrorDetail {
            type_name: CURSOR_ERROR_DETAILS_TYPE.to_owned(),
            value: Bytes::from(d.encode_to_vec()),
            debug: Some(cursor_details_debug(d)),
        });
        self
    }

    /// Appends an arbitrary detail.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Self {
        self.details.push(detail);
        self
    }

    /// The first `aiserver.v1.ErrorDetails` detail that decodes. Undecodable ones are skipped:
    /// a broken detail must not hide the error itself. A type-URL form
    /// (`type.googleapis.com/aiserver.v1.ErrorDetails`) is accepted too.
    pub fn cursor_details(&self) -> Option<ErrorDetails> {
        self.details
            .iter()
            .filter(|d| is_cursor_details_type(&d.type_name))
            .find_map(|d| ErrorDetails::decode(&d.value[..]).ok())
    }

    /// The text to show a user (spec §4.5): `"<title> <detail>"` when the Cursor details carry
    /// both. When only one of them is set and the message is a placeholder (empty or the
    /// literal `"Error"` Cursor uses), that one is more useful than the placeholder and wins.
    /// Otherwise the message; an empty message falls back to the code's name.
    pub fn user_message(&self) -> String {
        if let Some(custom) = self.cursor_details().and_then(|d| d.details) {
            let (title, detail) = (custom.title.as_str(), custom.detail.as_str());
            let placeholder = self.message.is_empty() || self.message == "Error";
            match (title.is_empty(), detail.is_empty()) {
                (false, false) => return format!("{title} {detail}"),
                (false, true) if placeholder => return title.to_owned(),
                (true, false) if placeholder => return detail.to_owned(),
                _ => {}
            }
        }
        if self.message.is_empty() {
            self.code.as_str().to_owned()
        } else {
            self.message.clone()
        }
    }

    /// The Connect JSON form: `{"code","message","details":[{"type","value","debug"?}]}`.
    /// `details` is left out when empty; values are standard base64 with padding.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.wire()).expect("strings and JSON values always serialize")
    }

    /// The body of a unary error response: the JSON of [`ConnectError::to_json`], with keys in
    /// the conventional order `code`, `message`, `details`.
    pub fn to_unary_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.wire()).expect("strings and JSON values always serialize")
    }

    /// Reads a JSON error object (the value of an end-stream `error`). An unrecognised code
    /// string becomes [`Code::Unknown`] (as in connect-es) and the original string is kept at
    /// the end of the message, e.g. `Error (upstream code "teapot")`, so logs still show it.
    pub fn from_json(value: &Value) -> Result<ConnectError, ErrorJsonError> {
        Self::from_json_with_default(value, Code::Unknown)
    }

    /// Reads a unary error body if it is Connect JSON with a string `code`. `None` when it is
    /// anything else (HTML from a load balancer, empty, a bare `{"message":…}`).
    pub fn parse_unary_body(body: &[u8]) -> Option<ConnectError> {
        Self::parse_unary_body_with_default(body, Code::Unknown)
    }

    /// The error a unary call (or a stream's non-200 status) failed with. Connect JSON is used
    /// when present, an unrecognised code string falling back to the status's code; otherwise
    /// the code comes from the connect-es status table ([`Code::from_http_status`]) and the
    /// message from a JSON `message`/`error.message` if there is one, else from a bounded,
    /// whitespace-collapsed snippet of the body (`"HTTP 502: <snippet>"`).
    pub fn from_unary(status: u16, body: &[u8]) -> ConnectError {
        let default = Code::from_http_status(status);
        match Self::parse_unary_body_with_default(body, default) {
            Some(e) => e,
            None => ConnectError::new(default, fallback_message(status, body)),
        }
    }

    fn parse_unary_body_with_default(body: &[u8], default: Code) -> Option<ConnectError> {
        let value = parse_json_bounded(body).ok()?;
        Self::from_json_with_default(&value, default).ok()
    }

    pub(crate) fn from_json_with_default(
        value: &Value,
        default: Code,
    ) -> Result<ConnectError, ErrorJsonError> {
        let obj = value.as_object().ok_or(ErrorJsonError::NotAnObject {
            found: json_kind(value),
        })?;
        let raw_code = match obj.get("code") {
            None | Some(Value::Null) => return Err(ErrorJsonError::MissingCode),
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(ErrorJsonError::CodeNotString {
                    found: json_kind(other),
                });
            }
        };
        let mut message = match obj.get("message") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(ErrorJsonError::MessageNotString {
                    found: json_kind(other),
                });
            }
        };
        let code =
            match Code::parse(raw_code).or_else(|| Code::parse(&raw_code.to_ascii_lowercase())) {
                Some(code) => code,
                None => {
                    let shown = truncate_chars(raw_code, MAX_ECHO_CHARS);
                    if !message.is_empty() {
                        message.push(' ');
                    }
                    message.push_str(&format!("(upstream code {shown:?})"));
                    default
                }
            };
        let details = match obj.get("details") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| parse_detail(index, item))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ErrorJsonError::DetailsNotArray {
                    found: json_kind(other),
                });
            }
        };
        Ok(ConnectError {
            code,
            message,
            details,
        })
    }

    pub(crate) fn wire(&self) -> WireError<'_> {
        WireError {
            code: self.code.as_str(),
            message: &self.message,
            details: self
                .details
                .iter()
                .map(|d| WireDetail {
                    type_name: &d.type_name,
                    value: B64_STANDARD_PADDED.encode(&d.value),
                    debug: d.debug.as_ref(),
                })
                .collect(),
        }
    }
}

/// Standard alphabet *with* padding for encoding, matching the spec's Appendix C example.
const B64_STANDARD_PADDED: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Serialization view of a [`ConnectError`]; field order is the JSON key order.
#[derive(Debug, Serialize)]
pub(crate) struct WireError<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<WireDetail<'a>>,
}

#[derive(Debug, Serialize)]
struct WireDetail<'a> {
    #[serde(rename = "type")]
    type_name: &'a str,
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    debug: Option<&'a Value>,
}

/// Decodes base64 in the standard or URL-safe alphabet, padding optional.
pub fn decode_base64_tolerant(s: &str) -> Option<Vec<u8>> {
    B64_STANDARD
        .decode(s)
        .or_else(|_| B64_URL_SAFE.decode(s))
        .ok()
}

fn parse_detail(index: usize, item: &Value) -> Result<ErrorDetail, ErrorJsonError> {
    let obj = item
        .as_object()
        .ok_or(ErrorJsonError::DetailNotObject { index })?;
    let type_name = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or(ErrorJsonError::DetailTypeNotString { index })?;
    let value = obj
        .get("value")
        .and_then(Value::as_str)
        .ok_or(ErrorJsonError::DetailValueNotString { index })?;
    let value =
        decode_base64_tolerant(value).ok_or(ErrorJsonError::DetailValueNotBase64 { index })?;
    let debug = obj.get("debug").filter(|v| !v.is_null()).cloned();
    Ok(ErrorDetail {
        type_name: type_name.to_owned(),
        value: Bytes::from(value),
        debug,
    })
}

fn is_cursor_details_type(type_name: &str) -> bool {
    type_name == CURSOR_ERROR_DETAILS_TYPE
        || type_name
            .rsplit_once('/')
            .is_some_and(|(_, name)| name == CURSOR_ERROR_DETAILS_TYPE)
}

/// The protobuf-JSON-like `debug` form Cursor attaches to an `ErrorDetails` detail (observed).
fn cursor_details_debug(d: &ErrorDetails) -> Value {
    let mut out = Map::new();
    let error = match CursorError::try_from(d.error) {
        Ok(e) => Value::from(e.as_str_name()),
        Err(_) => Value::from(d.error),
    };
    out.insert("error".into(), error);
    if let Some(c) = &d.details {
        let mut details = Map::new();
        details.insert("title".into(), Value::from(c.title.as_str()));
        details.insert("detail".into(), Value::from(c.detail.as_str()));
        if let Some(r) = c.is_retryable {
            details.insert("isRetryable".into(), Value::from(r));
        }
        if !c.additional_info.is_empty() {
            let info: Map<String, Value> = c
                .additional_info
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            details.insert("additionalInfo".into(), Value::Object(info));
        }
        out.insert("details".into(), Value::Object(details));
    }
    if let Some(e) = d.is_expected {
        out.insert("isExpected".into(), Value::from(e));
    }
    Value::Object(out)
}

/// Message for a non-200 response without Connect JSON.
fn fallback_message(status: u16, body: &[u8]) -> String {
    if let Ok(Value::Object(obj)) = parse_json_bounded(body) {
        let nested = obj
            .get("error")
            .and_then(|e| e.get("message").or(Some(e)))
            .and_then(Value::as_str);
        if let Some(m) = obj.get("message").and_then(Value::as_str).or(nested)
            && !m.is_empty()
        {
            return truncate_chars(m, MAX_ECHO_CHARS).to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        format!("HTTP {status}")
    } else {
        format!(
            "HTTP {status}: {}",
            truncate_chars(&collapsed, MAX_ECHO_CHARS)
        )
    }
}

/// Why [`parse_json_bounded`] failed.
#[derive(Debug)]
pub(crate) enum BoundedJsonError {
    /// Nesting deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// Not JSON (syntax, encoding, trailing bytes).
    Syntax(serde_json::Error),
}

/// Parses JSON after checking, in one linear pass, that it nests at most [`MAX_JSON_DEPTH`].
pub(crate) fn parse_json_bounded(bytes: &[u8]) -> Result<Value, BoundedJsonError> {
    if nesting_exceeds(bytes, MAX_JSON_DEPTH) {
        return Err(BoundedJsonError::TooDeep);
    }
    serde_json::from_slice(bytes).map_err(BoundedJsonError::Syntax)
}

/// Whether `{`/`[` outside strings nest deeper than `limit`, in one linear pass without
/// allocating. Only a bound: the syntax itself is checked by serde_json afterwards. Shared by
/// every parser of outside JSON (trailers here, client request bodies in `api`). String
/// contents — most of a large request — are skipped eight bytes at a time.
pub fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'"' => match string_end(bytes, i) {
                Some(end) => i = end,
                // An unterminated string holds the rest: no more structure.
                None => return false,
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The index just past the closing quote of the string whose contents start at `i`, honouring
/// backslash escapes; `None` when the string never closes. (`memchr2` scans with SIMD: client
/// text is full of escapes, so runs between stops are short and many.)
fn string_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', bytes.get(i..)?)?;
        if bytes[at] == b'"' {
            return Some(at + 1);
        }
        // A backslash escapes the next byte (a `\uXXXX` escape has no quote in it anyway).
        i = at + 2;
    }
}

/// The JSON kind of `v`, for error messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first `max` characters of `s` (never splits a character).
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}
