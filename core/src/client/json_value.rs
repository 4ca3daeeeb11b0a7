//! JSON text → encoded `google.protobuf.Value`, without building either tree.
//!
//! Tool input schemas are the bulk of a Claude Code request (24 tools, tens of KB) and travel
//! upstream on every run, twice (run request and request context). Parsing them into a
//! `serde_json::Value`, converting that into a `prost_types::Value` and encoding it allocated
//! one node per JSON value three times over; this module writes the protobuf bytes straight
//! from the text in two scans: the first measures every string and container (a protobuf
//! length prefix precedes its content), the second writes.
//!
//! The mapping is the standard one (`null`, `number_value` as a double, `string_value`,
//! `bool_value`, `struct_value`, `list_value`). Object members keep the client's order (a
//! schema's property order is part of how it reads); a duplicate key is written twice and a
//! protobuf map decoder keeps the last, as JSON parsers do. Map entries with an empty key omit
//! the key field, as prost writes them.

use bytes::Bytes;

/// Deepest nesting accepted (the request parsers bound it lower; this keeps the recursion
/// bounded for any caller).
pub const MAX_DEPTH: usize = 256;

/// Why the text could not be encoded. Callers pass JSON a parser already accepted, so this
/// only happens on misuse; it is reported, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonValueError {
    /// Not valid JSON at this byte offset.
    #[error("invalid JSON at byte {0}")]
    Syntax(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Encodes the JSON value `text` as a `google.protobuf.Value` message.
pub fn encode_json_as_value(text: &str) -> Result<Bytes, JsonValueError> {
    let text = text.as_bytes();
    let mut measure = Scanner {
        text,
        at: 0,
        sink: Measure {
            marks: Vec::with_capacity(text.len() / 8),
        },
    };
    let total = measure.document()?;
    let mut write = Scanner {
        text,
        at: 0,
        sink: Write {
            marks: &measure.sink.marks,
            next: 0,
            out: Vec::with_capacity(total),
        },
    };
    write.document()?;
    let out = write.sink.out;
    debug_assert_eq!(out.len(), total);
    Ok(Bytes::from(out))
}

/// Field keys (field number << 3 | wire type) of `Value`, `Struct`, its map entries and
/// `ListValue`.
mod key {
    pub(super) const NULL: u8 = 1 << 3; // varint
    pub(super) const NUMBER: u8 = (2 << 3) | 1; // fixed64
    pub(super) const STRING: u8 = (3 << 3) | 2;
    pub(super) const BOOL: u8 = 4 << 3; // varint
    pub(super) const STRUCT: u8 = (5 << 3) | 2;
    pub(super) const LIST: u8 = (6 << 3) | 2;
    /// `Struct.fields` (a map entry), `ListValue.values`, and a map entry's `key`.
    pub(super) const FIRST: u8 = (1 << 3) | 2;
    /// A map entry's `value`.
    pub(super) const ENTRY_VALUE: u8 = (2 << 3) | 2;
}

fn varint_len(v: usize) -> usize {
    let bits = usize::BITS - (v | 1).leading_zeros();
    (bits as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field's size: key, length prefix, content.
fn delimited(len: usize) -> usize {
    1 + varint_len(len) + len
}

/// What a scan does with what it finds. Measure notes, in document order, the content length
/// of every length-delimited field (known only after its content) and where each string ends;
/// Write reads the same notes back in the same order and writes. One scanner, monomorphized
/// per pass.
trait Sink {
    /// A length-delimited field begins: returns the slot its length goes to (Measure), or
    /// writes its key and recorded length (Write).
    fn open(&mut self, key: u8) -> Result<usize, JsonValueError>;
    /// The content of the field opened at `slot` was `len` bytes long (Measure only).
    fn close(&mut self, slot: usize, len: usize);
    /// Bytes of a fixed-size field.
    fn put(&mut self, bytes: &[u8]);
    /// The string whose opening quote is at `open`: decoded length and the index past it.
    fn string(&mut self, text: &[u8], open: usize) -> Result<(usize, usize), JsonValueError>;
}

struct Measure {
    marks: Vec<usize>,
}

impl Sink for Measure {
    fn open(&mut self, _key: u8) -> Result<usize, JsonValueError> {
        self.marks.push(0);
        Ok(self.marks.len() - 1)
    }

    fn close(&mut self, slot: usize, len: usize) {
        if let Some(m) = self.marks.get_mut(slot) {
            *m = len;
        }
    }

    fn put(&mut self, _bytes: &[u8]) {}

    fn string(&mut self, text: &[u8], open: usize) -> Result<(usize, usize), JsonValueError> {
        let (len, end, escaped) = measure_string(text, open)?;
        self.marks.push(end << 1 | usize::from(escaped));
        Ok((len, end))
    }
}

struct Write<'m> {
    marks: &'m [usize],
    next: usize,
    out: Vec<u8>,
}

impl Write<'_> {
    fn mark(&mut self, at: usize) -> Result<usize, JsonValueError> {
        let m = self.marks.get(self.next).copied();
        self.next += 1;
        // The text is the one Measure scanned: a missing mark would be a bug, reported.
        m.ok_or(JsonValueError::Syntax(at))
    }
}

impl Sink for Write<'_> {
    fn open(&mut self, key: u8) -> Result<usize, JsonValueError> {
        let len = self.mark(0)?;
        self.out.push(key);
        put_varint(&mut self.out, len);
        Ok(0)
    }

    fn close(&mut self, _slot: usize, _len: usize) {}

    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn string(&mut self, text: &[u8], open: usize) -> Result<(usize, usize), JsonValueError> {
        let mark = self.mark(open)?;
        let (end, escaped) = (mark >> 1, mark & 1 == 1);
        let inner = text
            .get(open + 1..end.saturating_sub(1))
            .unwrap_or_default();
        let before = self.out.len();
        if escaped {
            write_unescaped(inner, open + 1, &mut self.out)?;
        } else {
            self.out.extend_from_slice(inner);
        }
        Ok((self.out.len() - before, end))
    }
}

struct Scanner<'t, S> {
    text: &'t [u8],
    at: usize,
    sink: S,
}

impl<S: Sink> Scanner<'_, S> {
    /// The whole text: one value and nothing but whitespace after it. Returns the encoded size.
    fn document(&mut self) -> Result<usize, JsonValueError> {
        let size = self.value(0)?;
        self.skip_ws();
        if self.at != self.text.len() {
            return Err(self.syntax());
        }
        Ok(size)
    }

    fn syntax(&self) -> JsonValueError {
        JsonValueError::Syntax(self.at)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.at).copied()
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonValueError> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// A string field with key `key`: its encoded size.
    fn string_field(&mut self, key: u8) -> Result<usize, JsonValueError> {
        let slot = self.sink.open(key)?;
        let (len, end) = self.sink.string(self.text, self.at)?;
        self.at = end;
        self.sink.close(slot, len);
        Ok(delimited(len))
    }

    /// One JSON value as the content of a `Value` message; returns that content's size.
    fn value(&mut self, depth: usize) -> Result<usize, JsonValueError> {
        if depth > MAX_DEPTH {
            return Err(JsonValueError::TooDeep);
        }
        match self.peek().ok_or_else(|| self.syntax())? {
            b'n' => {
                self.literal(b"null")?;
                self.sink.put(&[key::NULL, 0]);
                Ok(2)
            }
            b't' => {
                self.literal(b"true")?;
                self.sink.put(&[key::BOOL, 1]);
                Ok(2)
            }
            b'f' => {
                self.literal(b"false")?;
                self.sink.put(&[key::BOOL, 0]);
                Ok(2)
            }
            b'"' => self.string_field(key::STRING),
            b'{' => {
                self.at += 1;
                let slot = self.sink.open(key::STRUCT)?;
                let len = self.object(depth)?;
                self.sink.close(slot, len);
                Ok(delimited(len))
            }
            b'[' => {
                self.at += 1;
                let slot = self.sink.open(key::LIST)?;
                let len = self.array(depth)?;
                self.sink.close(slot, len);
                Ok(delimited(len))
            }
            _ => {
                let n = self.number()?;
                if !n.is_finite() {
                    // Out of a double's range: JSON cannot say infinity, and the standard
                    // mapping has `null` for it.
                    self.sink.put(&[key::NULL, 0]);
                    return Ok(2);
                }
                let mut field = [key::NUMBER, 0, 0, 0, 0, 0, 0, 0, 0];
                field[1..].copy_from_slice(&n.to_le_bytes());
                self.sink.put(&field);
                Ok(9)
            }
        }
    }

    /// `Struct` content (after `{`): one map entry per member.
    fn object(&mut self, depth: usize) -> Result<usize, JsonValueError> {
        let mut len = 0;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(0);
        }
        loop {
            let entry = self.sink.open(key::FIRST)?;
            // The key; an empty one is left out (prost's map encoding). Only `""` decodes to
            // the empty string.
            if self.peek() != Some(b'"') {
                return Err(self.syntax());
            }
            let mut entry_len = 0;
            if self.text[self.at..].starts_with(b"\"\"") {
                self.at += 2;
            } else {
                entry_len += self.string_field(key::FIRST)?;
            }
            if self.peek() != Some(b':') {
                return Err(self.syntax());
            }
            self.at += 1;
            let slot = self.sink.open(key::ENTRY_VALUE)?;
            let v = self.value(depth + 1)?;
            self.sink.close(slot, v);
            entry_len += delimited(v);
            self.sink.close(entry, entry_len);
            len += delimited(entry_len);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(len);
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// `ListValue` content (after `[`): one `values` field per element.
    fn array(&mut self, depth: usize) -> Result<usize, JsonValueError> {
        let mut len = 0;
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(0);
        }
        loop {
            let slot = self.sink.open(key::FIRST)?;
            let v = self.value(depth + 1)?;
            self.sink.close(slot, v);
            len += delimited(v);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(len);
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// A JSON number as a double (correctly rounded).
    fn number(&mut self) -> Result<f64, JsonValueError> {
        let start = self.at;
        if self.text.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let digits = |s: &mut Self| {
            let from = s.at;
            while s.text.get(s.at).is_some_and(u8::is_ascii_digit) {
                s.at += 1;
            }
            s.at - from
        };
        match self.text.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.syntax()),
        }
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(self.syntax());
            }
        }
        if let Some(b'e' | b'E') = self.text.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.text.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.syntax());
            }
        }
        let s = std::str::from_utf8(&self.text[start..self.at])
            .map_err(|_| JsonValueError::Syntax(start))?;
        s.parse().map_err(|_| JsonValueError::Syntax(start))
    }
}

/// Where the run of plain string bytes starting at `from` ends: the first quote, backslash or
/// control character (`text.len()` when none). Eight bytes at a time.
fn plain_run_end(text: &[u8], mut from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has = |w: u64, b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    while let Some(chunk) = text.get(from..from + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // Bytes below 0x20: subtracting 0x20 borrows into the high bit of a byte < 0x80.
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        if has(w, b'"') | has(w, b'\\') | control != 0 {
            break;
        }
        from += 8;
    }
    while let Some(&b) = text.get(from) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        from += 1;
    }
    from
}

/// Measures the string whose opening quote is at `open`: its decoded length, the index just
/// past its closing quote, and whether it holds an escape.
fn measure_string(text: &[u8], open: usize) -> Result<(usize, usize, bool), JsonValueError> {
    let mut at = open + 1;
    let mut len = 0;
    let mut escaped = false;
    loop {
        let end = plain_run_end(text, at);
        len += end - at;
        at = end;
        match text.get(at) {
            Some(b'"') => return Ok((len, at + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                let (_, n, next) = unescape(text, at + 1)?;
                len += n;
                at = next;
            }
            _ => return Err(JsonValueError::Syntax(at)),
        }
    }
}

/// Appends the decoded `inner` (a string's content, escapes included; `base` is its offset in
/// the text, for errors).
fn write_unescaped(inner: &[u8], base: usize, out: &mut Vec<u8>) -> Result<(), JsonValueError> {
    let mut at = 0;
    while at < inner.len() {
        let end = plain_run_end(inner, at);
        out.extend_from_slice(&inner[at..end]);
        at = end;
        if at < inner.len() {
            // Measure accepted this string: what stops a run here is a backslash.
            let (buf, n, next) =
                unescape(inner, at + 1).map_err(|_| JsonValueError::Syntax(base + at))?;
            out.extend_from_slice(&buf[..n]);
            at = next;
        }
    }
    Ok(())
}

/// The escape whose letter is at `at` (just past a backslash): its UTF-8 bytes, their count,
/// and the index after it. A lone surrogate becomes U+FFFD.
fn unescape(text: &[u8], at: usize) -> Result<([u8; 4], usize, usize), JsonValueError> {
    let c = *text.get(at).ok_or(JsonValueError::Syntax(at))?;
    let mut next = at + 1;
    let ch = match c {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(text, next)?;
            next += 4;
            let code = if (0xD800..0xDC00).contains(&hi) {
                // A high surrogate must be followed by `\u` and a low one.
                match text.get(next..next + 2) {
                    Some(b"\\u") => match hex4(text, next + 2)? {
                        lo @ 0xDC00..0xE000 => {
                            next += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        _ => 0xFFFD,
                    },
                    _ => 0xFFFD,
                }
            } else {
                hi
            };
            char::from_u32(code).unwrap_or('\u{FFFD}')
        }
        _ => return Err(JsonValueError::Syntax(at)),
    };
    let mut buf = [0u8; 4];
    let n = ch.encode_utf8(&mut buf).len();
    Ok((buf, n, next))
}

fn hex4(text: &[u8], at: usize) -> Result<u32, JsonValueError> {
    let digits = text.get(at..at + 4).ok_or(JsonValueError::Syntax(at))?;
    let mut v = 0u32;
    for &d in digits {
        let n = char::from(d)
            .to_digit(16)
            .ok_or(JsonValueError::Syntax(at))?;
        v = v * 16 + n;
    }
    Ok(v)
}
