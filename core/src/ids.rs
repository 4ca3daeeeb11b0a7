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
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
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
}
