//! JSON plumbing shared by both parsers: the pre-checks on a client body (UTF-8, nesting),
//! serde errors turned into [`ClientError`]s that name the JSON path of the problem, and the
//! "a string or an array" shape both APIs use everywhere.
//!
//! Paths of serde errors: serde_json reports *where* it stopped (line and byte column), not
//! *what* it was reading. [`path_at`] recovers the path with one linear scan of the body up to
//! that offset, so the fast typed deserialization needs no path bookkeeping and the cost is
//! paid only on the error path. serde_json stops right after the offending value for type,
//! value and custom errors (or at its first byte for a map or sequence of the wrong type), and
//! right after the closing brace for a missing field, so "the innermost value spanning the
//! offset" is the value at fault.

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde_json::error::Category;

use super::ParseLimits;
use super::error::{ClientError, MAX_MESSAGE_CHARS, MAX_PATH_CHARS, clip};
use crate::connect::error::{decode_base64_tolerant, nesting_exceeds};

/// The deepest nesting serde_json itself accepts (it refuses the 128th nested container).
const SERDE_JSON_MAX_DEPTH: usize = 127;

/// Checks that `body` is UTF-8, nests at most `limits.max_depth` levels and is a JSON object
/// (serde would also take a struct from an array), without building anything; returns it as
/// text.
pub(crate) fn body_text<'a>(body: &'a [u8], limits: &ParseLimits) -> Result<&'a str, ClientError> {
    let text = std::str::from_utf8(body).map_err(|e| ClientError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    if nesting_exceeds(body, limits.max_depth) {
        return Err(ClientError::TooDeep {
            limit: limits.max_depth,
        });
    }
    match text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .bytes()
        .next()
    {
        Some(b'{') => Ok(text),
        Some(_) => Err(ClientError::invalid(
            "",
            "request body must be a JSON object",
        )),
        None => Err(ClientError::invalid("", "request body is empty")),
    }
}

/// Deserializes `text` (already checked by [`body_text`]), borrowing from it where the target
/// type allows. Errors name the JSON path of the offending value.
pub(crate) fn from_text<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ClientError> {
    serde_json::from_str(text).map_err(|e| client_error(text, &e))
}

fn client_error(text: &str, e: &serde_json::Error) -> ClientError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let message = match full.strip_suffix(&format!(" at line {line} column {column}")) {
        Some(m) => m.to_owned(),
        None => full,
    };
    if message == "recursion limit exceeded" {
        return ClientError::TooDeep {
            limit: SERDE_JSON_MAX_DEPTH,
        };
    }
    let path = path_at(text, offset_of(text.as_bytes(), line, column));
    match e.classify() {
        Category::Data => ClientError::invalid(path, message),
        Category::Syntax | Category::Eof | Category::Io => ClientError::Syntax {
            path: clip(path, MAX_PATH_CHARS),
            message: clip(message, MAX_MESSAGE_CHARS),
            line,
            column,
        },
    }
}

/// The byte offset of serde_json's (1-based line, byte column) position.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> usize {
    if line <= 1 {
        return column.min(bytes.len());
    }
    let mut seen = 1;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == line {
                return (i + 1 + column).min(bytes.len());
            }
        }
    }
    bytes.len()
}

/// One step of a JSON path.
#[derive(Clone, Copy, Debug)]
enum Seg {
    /// An object key: the byte range of the key's string token, quotes included.
    Key(usize, usize),
    /// An array index.
    Index(usize),
}

/// An open container while scanning.
#[derive(Debug)]
struct Frame {
    object: bool,
    /// Index of the current element (arrays).
    index: usize,
    /// The current key's token (objects).
    key: Option<(usize, usize)>,
    expecting_key: bool,
    /// This container's own step in its parent (none for the root).
    seg: Option<Seg>,
}

impl Frame {
    /// The step of the value that starts now inside this container.
    fn value_seg(&self) -> Option<Seg> {
        if self.object {
            self.key.map(|(a, b)| Seg::Key(a, b))
        } else {
            Some(Seg::Index(self.index))
        }
    }
}

/// The path (`messages[3].content[0].source`) of the innermost value whose bytes span offset
/// `p`, where a value spans from its first byte through one past its last. Between tokens it is
/// the innermost open container. Tolerates malformed JSON (it only tokenizes).
pub(crate) fn path_at(text: &str, p: usize) -> String {
    let json = text.as_bytes();
    let n = json.len();
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = 0;
    loop {
        while i < n && matches!(json[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        if i >= n || i > p {
            return render_path(text, &frames, None);
        }
        let value_seg = frames.last().and_then(Frame::value_seg);
        match json[i] {
            open @ (b'{' | b'[') => {
                frames.push(Frame {
                    object: open == b'{',
                    index: 0,
                    key: None,
                    expecting_key: open == b'{',
                    seg: value_seg,
                });
                i += 1;
            }
            b'}' | b']' => {
                i += 1;
                if p <= i {
                    return render_path(text, &frames, None);
                }
                frames.pop();
            }
            b'"' => {
                let end = string_end(json, i);
                match frames.last_mut() {
                    Some(f) if f.object && f.expecting_key => {
                        f.key = Some((i, end));
                        f.expecting_key = false;
                        if p <= end {
                            // An error about the key itself (a duplicate field).
                            return render_path(text, &frames, Some(Seg::Key(i, end)));
                        }
                    }
                    _ if p <= end => return render_path(text, &frames, value_seg),
                    _ => {}
                }
                i = end;
            }
            b',' => {
                if let Some(f) = frames.last_mut() {
                    if f.object {
                        f.expecting_key = true;
                        f.key = None;
                    } else {
                        f.index += 1;
                    }
                }
                i += 1;
            }
            b':' => i += 1,
            _ => {
                let end = scalar_end(json, i);
                if p <= end {
                    return render_path(text, &frames, value_seg);
                }
                i = end;
            }
        }
    }
}

/// One past the closing quote of the string starting at `i` (or the end of input).
fn string_end(json: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < json.len() {
        match json[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    json.len()
}

/// One past the last byte of the number or literal starting at `i` (at least `i + 1`).
fn scalar_end(json: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < json.len()
        && !matches!(
            json[j],
            b',' | b'}' | b']' | b'{' | b'[' | b'"' | b':' | b' ' | b'\t' | b'\n' | b'\r'
        )
    {
        j += 1;
    }
    j
}

fn render_path(text: &str, frames: &[Frame], last: Option<Seg>) -> String {
    let mut out = String::new();
    for seg in frames.iter().filter_map(|f| f.seg).chain(last) {
        match seg {
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            Seg::Key(a, b) => push_key(&mut out, &key_text(text, a, b)),
        }
    }
    out
}

/// The key of the string token `text[a..b]`, unescaped.
fn key_text(text: &str, a: usize, b: usize) -> String {
    let token = text.get(a..b).unwrap_or("");
    if let Ok(key) = serde_json::from_str::<String>(token) {
        return key;
    }
    // Unterminated or malformed: the raw contents.
    token
        .trim_start_matches('"')
        .trim_end_matches('"')
        .to_owned()
}

/// Appends `.key`, or `["key"]` when the key is not a plain identifier.
pub(crate) fn push_key(out: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$');
    if plain {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push('[');
        out.push_str(&serde_json::Value::from(key).to_string());
        out.push(']');
    }
}

/// A value the APIs accept either as one string or as an array (`content`, `system`, `stop`).
#[derive(Debug)]
pub(crate) enum StrOrSeq<T> {
    /// The string form.
    Str(String),
    /// The array form.
    Seq(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOrSeq<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOrSeq<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrSeq::Str(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOrSeq::Str(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StrOrSeq::Seq(items))
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// `stop` / `stop_sequences`: every entry non-empty (an empty one would match everywhere).
pub(crate) fn stop_list(
    raw: Option<StrOrSeq<String>>,
    path: &str,
) -> Result<Vec<String>, ClientError> {
    let list = match raw {
        None => return Ok(Vec::new()),
        Some(StrOrSeq::Str(s)) => vec![s],
        Some(StrOrSeq::Seq(v)) => v,
    };
    for (i, s) in list.iter().enumerate() {
        if s.is_empty() {
            return Err(ClientError::invalid(
                format!("{path}[{i}]"),
                "stop sequences must not be empty",
            ));
        }
    }
    Ok(list)
}

/// Checks a `max_tokens`-like bound.
pub(crate) fn output_bound(
    value: u64,
    path: &str,
    limits: &ParseLimits,
) -> Result<u32, ClientError> {
    match u32::try_from(value) {
        Ok(v) if v >= 1 && v <= limits.max_output_tokens => Ok(v),
        _ => Err(ClientError::invalid(
            path,
            format!(
                "must be between 1 and {}, got {value}",
                limits.max_output_tokens
            ),
        )),
    }
}

/// Base64 image data (standard or URL-safe alphabet, padding optional), non-empty.
pub(crate) fn decode_image(data: &str, at: impl Fn() -> String) -> Result<Bytes, ClientError> {
    match decode_base64_tolerant(data) {
        Some(bytes) if !bytes.is_empty() => Ok(Bytes::from(bytes)),
        Some(_) => Err(ClientError::invalid(at(), "image data must not be empty")),
        None => Err(ClientError::invalid(at(), "not valid base64")),
    }
}

/// One declared client tool, checked the same way for both APIs: a name given once, a schema
/// that is an object (or absent). `at` is the JSON path of the tool's name field and
/// `schema_at` of its schema field, for error messages.
pub(crate) fn tool_spec(
    names: &mut std::collections::HashSet<String>,
    name: String,
    at: &str,
    description: Option<String>,
    schema: Option<&serde_json::value::RawValue>,
    schema_at: &str,
) -> Result<crate::chat::ToolSpec, ClientError> {
    if !names.insert(name.clone()) {
        return Err(ClientError::invalid(
            at.to_owned(),
            format!("duplicate tool name {name:?}"),
        ));
    }
    let input_schema = match schema.map(|r| (r, r.get().trim())) {
        None => None,
        Some((_, "null")) => None,
        Some((raw, _)) => match crate::chat::JsonSchema::from_raw(raw) {
            Some(s) => Some(s),
            None => {
                let kind = serde_json::from_str::<serde_json::Value>(raw.get())
                    .map(|v| crate::connect::error::json_kind(&v))
                    .unwrap_or("invalid JSON");
                return Err(ClientError::invalid(
                    schema_at.to_owned(),
                    format!("must be an object, got {kind}"),
                ));
            }
        },
    };
    Ok(crate::chat::ToolSpec {
        name,
        description: description.unwrap_or_default(),
        input_schema,
    })
}

#[cfg(test)]
mod tests {
    use super::path_at;

    /// The path at the first byte after the first occurrence of `marker`.
    fn after(text: &str, marker: &str) -> String {
        let at = text.find(marker).expect("marker") + marker.len();
        path_at(text, at)
    }

    #[test]
    fn the_path_names_the_value_that_ends_at_the_offset() {
        let t = r#"{"a":{"b":[1,{"c":"x"},[true]]},"d":null}"#;
        assert_eq!(after(t, r#""c":"x""#), "a.b[1].c");
        assert_eq!(after(t, "[1"), "a.b[0]");
        assert_eq!(after(t, "true"), "a.b[2][0]");
        assert_eq!(after(t, "null"), "d");
        // After a closing brace: the object it closes.
        assert_eq!(after(t, r#""x"}"#), "a.b[1]");
        // At the first byte of a container: that container.
        assert_eq!(path_at(t, t.find(r#"{"b""#).expect("b")), "a");
        // At the first byte of an element: that element.
        assert_eq!(after(t, r#"{"a":{"b":[1,"#), "a.b[1]");
        // Between tokens: the innermost open container.
        assert_eq!(after(r#"{"a": [1,  2]}"#, "1,"), "a");
        assert_eq!(path_at(t, 0), "");
        assert_eq!(path_at(t, t.len()), "");
    }

    #[test]
    fn keys_are_unescaped_and_quoted_when_not_plain() {
        let t = r#"{"a\"b":{"x y":[{"\u00e9":1}]}}"#;
        assert_eq!(after(t, ":1"), r#"["a\"b"]["x y"][0]["é"]"#);
    }

    #[test]
    fn malformed_input_still_yields_a_path() {
        assert_eq!(after(r#"{"a":[1,"#, "[1,"), "a");
        assert_eq!(after(r#"{"a":"unterminated"#, "unterm"), "a");
        assert_eq!(after("{\"k\":tru}", "tru"), "k");
    }
}
