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
