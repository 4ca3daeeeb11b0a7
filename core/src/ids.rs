//! Identifiers from a seeded generator: UUIDs for request and conversation ids, and opaque ids
//! for replies. The core never reads entropy; an adapter seeds [`IdSource`] once at start
//! (tests seed it with a constant and get the same ids every run).

/// A SplitMix64 stream: tiny, fast, and statistically fine for ids (not for secrets).
#[derive(Debug, Clone)]
pub struct IdSource {
    state: u64,
}

impl IdSource {
    /// A generator whose output is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random (version 4, variant 1) UUID, lowercase and hyphenated, as Cursor expects.
    pub fn uuid_v4(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        format_uuid(b, 4)
    }

    /// An opaque id with a prefix, e.g. `msg_01a2…` (24 hex digits after the prefix).
    pub fn prefixed(&mut self, prefix: &str) -> String {
        let a = self.next_u64();
        let b = self.next_u64() >> 32;
        format!("{prefix}{a:016x}{b:08x}")
    }
}

/// Formats 16 bytes as a UUID, stamping the given version and the RFC 4122 variant.
pub fn format_uuid(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    for (bytes, at) in [(0..4, 0), (4..6, 9), (6..8, 14), (8..10, 19), (10..16, 24)] {
        let end = at + 2 * bytes.len();
        // Cannot fail: the output span is exactly twice the input's length.
        let _ = hex::encode_to_slice(&b[bytes], &mut out[at..end]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `bytes` as lowercase hex. `hex::encode` builds its string a `char` at a time; this writes
/// the digits in one pass (ids and hashes are formatted on every request).
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut out = vec![0u8; 2 * bytes.len()];
    // Cannot fail: the output is exactly twice the input's length.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_ids() {
        let mut a = IdSource::new(7);
        let mut b = IdSource::new(7);
        assert_eq!(a.uuid_v4(), b.uuid_v4());
        assert_eq!(a.prefixed("msg_"), b.prefixed("msg_"));
    }

    #[test]
    fn uuids_are_version_4_rfc_variant_and_well_formed() {
        let mut s = IdSource::new(1);
        for _ in 0..100 {
            let u = s.uuid_v4();
            assert_eq!(u.len(), 36);
            assert_eq!(&u[14..15], "4");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
            assert_eq!(u.matches('-').count(), 4);
        }
    }

    #[test]
    fn a_uuid_groups_its_bytes_8_4_4_4_12_with_version_and_variant_stamped() {
        let bytes: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            format_uuid(bytes, 4),
            "00010203-0405-4607-8809-0a0b0c0d0e0f"
        );
        assert_eq!(
            format_uuid([0xff; 16], 7),
            "ffffffff-ffff-7fff-bfff-ffffffffffff"
        );
    }

    #[test]
    fn hex_lower_matches_the_hex_crate() {
        for bytes in [&[][..], &[0x00], &[0xab, 0xcd, 0xef, 0x01], &[0xff; 33]] {
            assert_eq!(hex_lower(bytes), hex::encode(bytes));
        }
    }
}
