//! Server-sent-event framing and JSON writing into a `BytesMut`, shared by the renderers.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

/// Appends `value` as compact JSON.
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    // Serializing into memory fails only for maps with non-string keys or a failing `Serialize`
    // impl; the types written here are plain structs, strings, numbers and `serde_json::Value`.
    serde_json::to_writer((&mut *out).writer(), value).expect("reply JSON always serializes");
}

/// Appends `event: <name>\ndata: <json>\n\n` (Anthropic's framing).
pub(crate) fn write_event<T: Serialize + ?Sized>(out: &mut BytesMut, name: &str, data: &T) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    write_json(out, data);
    out.put_slice(b"\n\n");
}

/// Appends `data: <json>\n\n` (OpenAI's framing).
pub(crate) fn write_data<T: Serialize + ?Sized>(out: &mut BytesMut, data: &T) {
    out.put_slice(b"data: ");
    write_json(out, data);
    out.put_slice(b"\n\n");
}

/// Appends `s` as a JSON string literal, byte for byte what serde_json writes (`"`, `\\` and
/// control characters escaped; `\b \t \n \f \r` short, the rest `\u00xx`; everything else
/// as is). The renderers' per-token events use it instead of a serde round: runs of plain
/// bytes are copied whole.
pub(crate) fn write_json_str(out: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.put_u8(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => 0,
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        start = i + 1;
        if short == 0 {
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.put_slice(&[b'\\', short]);
        }
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

/// Appends `n` in decimal.
pub(crate) fn write_u32(out: &mut BytesMut, n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut v = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn json_strings_are_written_as_serde_json_writes_them(s in "(?s).{0,40}|[\\x00-\\x20\"\\\\\u{7f}-\u{a0}\u{2028}\u{2029}é😀]{0,20}") {
            let mut out = BytesMut::new();
            write_json_str(&mut out, &s);
            let want = serde_json::to_string(&s).expect("json");
            prop_assert_eq!(&out[..], want.as_bytes());
        }

        #[test]
        fn numbers_are_written_in_decimal(n in any::<u32>()) {
            let mut out = BytesMut::new();
            write_u32(&mut out, n);
            let want = n.to_string();
            prop_assert_eq!(&out[..], want.as_bytes());
        }
    }
}
