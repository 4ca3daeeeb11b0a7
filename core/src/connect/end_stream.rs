//! The end-stream trailer: the JSON payload of the final envelope (flags `0x02`) of every
//! Connect stream (spec §4.1, §6.6).
//!
//! Accepted: `{}`, `{"metadata":{…}}`, `{"error":{…}}`, `{"error":{…},"metadata":{…}}`; other
//! top-level keys are ignored. Everything else is an [`EndStreamError`] — the upstream's fault —
//! and never a panic. This is stricter than connect-es in one place on purpose:
//! `{"error":null}` and `"metadata":null` are rejected rather than read as success, because a
//! trailer that *mentions* an error but carries none is more likely a broken upstream than a
//! finished turn, and treating it as success would silently truncate the client's answer.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

use super::error::{
    BoundedJsonError, ConnectError, ErrorJsonError, MAX_JSON_DEPTH, WireError, json_kind,
    parse_json_bounded, truncate_chars,
};

/// Longest metadata key echoed into an [`EndStreamError`], in characters.
const MAX_KEY_ECHO_CHARS: usize = 64;

/// A parsed end-stream trailer.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct EndStream {
    /// The error the stream ended with; `None` means success.
    pub error: Option<ConnectError>,
    /// Trailers, in the order parsed (serde_json orders object keys alphabetically). Keys are
    /// kept as sent; look them up with [`EndStream::metadata_value`], which ignores case.
    pub metadata: Vec<(String, Vec<String>)>,
}

/// Why an end-stream payload was rejected. Every variant is the upstream's fault: the caller
/// should treat the stream as failed by a protocol violation (see
/// [`crate::classify::TransportFailure::ProtocolViolation`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndStreamError {
    /// The payload is not JSON (or not UTF-8, or has trailing garbage).
    #[error("end-stream payload is not JSON: {reason}")]
    NotJson {
        /// serde_json's description.
        reason: String,
    },
    /// The payload nests deeper than [`MAX_JSON_DEPTH`]; rejected before parsing.
    #[error("end-stream payload nests deeper than {limit} levels")]
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The payload is JSON but not an object (e.g. `[1,2]`, `null`, `"x"`).
    #[error("end-stream payload is {found}, expected an object")]
    NotAnObject {
        /// JSON kind that was found.
        found: &'static str,
    },
    /// `error` is present but unreadable, including `null` and `{}`.
    #[error("end-stream error is invalid: {0}")]
    InvalidError(#[from] ErrorJsonError),
    /// `metadata` is present but not an object (including `null`).
    #[error("end-stream metadata is {found}, expected an object")]
    MetadataNotAnObject {
        /// JSON kind that was found.
        found: &'static str,
    },
    /// A metadata value is not an array of strings.
    #[error("end-stream metadata {key:?} is not an array of strings")]
    MetadataValueNotStrings {
        /// The offending key (truncated to 64 characters).
        key: String,
    },
}

/// Parses an end-stream payload (the envelope's bytes, already decompressed).
pub fn parse(json: &[u8]) -> Result<EndStream, EndStreamError> {
    let value = parse_json_bounded(json).map_err(|e| match e {
        BoundedJsonError::TooDeep => EndStreamError::TooDeep {
            limit: MAX_JSON_DEPTH,
        },
        BoundedJsonError::Syntax(e) => EndStreamError::NotJson {
            reason: e.to_string(),
        },
    })?;
    let obj = value.as_object().ok_or(EndStreamError::NotAnObject {
        found: json_kind(&value),
    })?;
    let error = match obj.get("error") {
        None => None,
        Some(e) => Some(ConnectError::from_json(e)?),
    };
    let metadata = match obj.get("metadata") {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, values)| parse_metadata_entry(key, values))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(EndStreamError::MetadataNotAnObject {
                found: json_kind(other),
            });
        }
    };
    Ok(EndStream { error, metadata })
}

fn parse_metadata_entry(
    key: &str,
    values: &Value,
) -> Result<(String, Vec<String>), EndStreamError> {
    let not_strings = || EndStreamError::MetadataValueNotStrings {
        key: truncate_chars(key, MAX_KEY_ECHO_CHARS).to_owned(),
    };
    let items = values.as_array().ok_or_else(not_strings)?;
    let strings = items
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(not_strings)?;
    Ok((key.to_owned(), strings))
}

impl EndStream {
    /// Success with no trailers (`{}`).
    pub fn ok() -> Self {
        EndStream::default()
    }

    /// A failed stream with no trailers.
    pub fn from_error(e: ConnectError) -> Self {
        EndStream {
            error: Some(e),
            metadata: Vec::new(),
        }
    }

    /// Adds a trailer value (builder style), appending to an existing key of the same name.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let value = value.into();
        match self
            .metadata
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        {
            Some((_, values)) => values.push(value),
            None => self.metadata.push((key, vec![value])),
        }
        self
    }

    /// Whether the stream ended successfully.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The first value of trailer `key`, compared ignoring ASCII case (trailers are HTTP
    /// header names).
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        metadata_value(&self.metadata, key)
    }

    /// The payload to put in an end-stream envelope: `{}` for success without trailers,
    /// otherwise `{"error":{…},"metadata":{…}}` with empty parts left out. Keys that differ
    /// only in case are merged, so the object never repeats a key.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let wire = WireEndStream {
            error: self.error.as_ref().map(ConnectError::wire),
            metadata: WireMetadata(&self.metadata),
        };
        serde_json::to_vec(&wire).expect("strings and JSON values always serialize")
    }
}

/// The first value of `key` (ASCII case ignored) in a trailer list.
pub fn metadata_value<'a>(metadata: &'a [(String, Vec<String>)], key: &str) -> Option<&'a str> {
    metadata
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .flat_map(|(_, values)| values.iter())
        .map(String::as_str)
        .next()
}

#[derive(Serialize)]
struct WireEndStream<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<WireError<'a>>,
    #[serde(skip_serializing_if = "WireMetadata::is_empty")]
    metadata: WireMetadata<'a>,
}

/// Serializes trailers as a JSON object, merging keys that differ only in case.
struct WireMetadata<'a>(&'a [(String, Vec<String>)]);

impl WireMetadata<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for WireMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut merged: Vec<(&str, Vec<&str>)> = Vec::new();
        for (key, values) in self.0 {
            let values = values.iter().map(String::as_str);
            match merged.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                Some((_, existing)) => existing.extend(values),
                None => merged.push((key, values.collect())),
            }
        }
        let mut map = serializer.serialize_map(Some(merged.len()))?;
        for (key, values) in &merged {
            map.serialize_entry(key, values)?;
        }
        map.end()
    }
}
