//! A tiny protobuf wire-format reader.
//!
//! prost drops fields it does not know, including unknown members of a `oneof`. The protocol
//! needs some of them back: an exec request naming an exec kind newer than our schema must still
//! be answered (spec §6.2: "unknown field N … never ignore"), and a few newer scalar fields
//! (`TurnEndedUpdate.reasoning_tokens = 5`) are worth reading. This module walks the raw bytes
//! of a message that prost has already accepted and reports field numbers and values; it never
//! allocates and never panics on malformed input (it reports [`WireError`] instead).

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: a string, bytes, packed scalars or an embedded message.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// The raw bytes are not a well-formed protobuf message (or use deprecated groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError;

/// Iterator over the `(field number, value)` pairs of one message, in wire order.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    /// Iterates the top-level fields of the serialized message `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, failed: false }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&byte, rest) = self.buf.split_first().ok_or(WireError)?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u32, WireValue<'a>), WireError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError)?;
        if number == 0 || number > 0x1fff_ffff {
            return Err(WireError);
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError)?;
                WireValue::Len(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(a))
            }
            // 3/4 are deprecated groups (never used by this schema), 6/7 are invalid.
            _ => return Err(WireError),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, WireValue<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }
}

/// Every length-delimited occurrence of `field` in `buf` (an embedded message field may occur
/// several times; protobuf merges them). Stops quietly at the first malformed byte.
pub(crate) fn submessages(buf: &[u8], field: u32) -> impl Iterator<Item = &[u8]> {
    Fields::new(buf)
        .map_while(Result::ok)
        .filter_map(move |(n, v)| match v {
            WireValue::Len(b) if n == field => Some(b),
            _ => None,
        })
}

/// The bytes of the message at `path` (a chain of embedded-message field numbers), taking the
/// last occurrence at each level. `None` when any step is missing.
pub(crate) fn nested<'a>(buf: &'a [u8], path: &[u32]) -> Option<&'a [u8]> {
    path.iter()
        .try_fold(buf, |cur, &field| submessages(cur, field).last())
}

/// The number of the last field in `buf` that is not in `known`, if any. `len_only` restricts
/// the search to length-delimited fields (every `oneof` member of this schema is a message).
pub(crate) fn last_unknown_field(buf: &[u8], known: &[u32], len_only: bool) -> Option<u32> {
    Fields::new(buf)
        .map_while(Result::ok)
        .filter(|(n, v)| !known.contains(n) && (!len_only || matches!(v, WireValue::Len(_))))
        .map(|(n, _)| n)
        .last()
}

/// The last varint value of `field` in `buf`.
pub(crate) fn last_varint(buf: &[u8], field: u32) -> Option<u64> {
    Fields::new(buf)
        .map_while(Result::ok)
        .filter_map(|(n, v)| match v {
            WireValue::Varint(x) if n == field => Some(x),
            _ => None,
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_all_wire_types() {
        // 1: varint 150, 2: "hi", 3: fixed64 1, 4: fixed32 2
        let buf = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0,
            0,
        ];
        let got: Vec<_> = Fields::new(&buf).collect();
        assert_eq!(
            got,
            vec![
                Ok((1, WireValue::Varint(150))),
                Ok((2, WireValue::Len(b"hi"))),
                Ok((3, WireValue::Fixed64(1))),
                Ok((4, WireValue::Fixed32(2))),
            ]
        );
    }

    #[test]
    fn malformed_input_stops_with_an_error() {
        for bad in [
            &[0x12, 0x05, 1][..],
            &[0xff; 11][..],
            &[0x0b][..],
            &[0x00, 0x00][..],
        ] {
            let got: Vec<_> = Fields::new(bad).collect();
            assert_eq!(got.last(), Some(&Err(WireError)), "{bad:02x?}");
        }
    }

    #[test]
    fn finds_nested_and_unknown_fields() {
        // 1: { 14: { 5: 7 } }, 99: {}
        let buf = [0x0a, 0x04, 0x72, 0x02, 0x28, 0x07, 0x9a, 0x06, 0x00];
        assert_eq!(nested(&buf, &[1, 14]), Some(&[0x28, 0x07][..]));
        assert_eq!(
            last_varint(nested(&buf, &[1, 14]).unwrap_or_default(), 5),
            Some(7)
        );
        assert_eq!(last_unknown_field(&buf, &[1], true), Some(99));
        assert_eq!(last_unknown_field(&buf, &[1, 99], true), None);
    }
}
