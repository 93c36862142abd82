//! The SNI hash: 64-bit FNV-1a over the ASCII-lower-cased host name.
//!
//! FNV-1a is chosen because the XDP program must hash byte by byte while it
//! walks the packet, under a verifier-bounded loop: a streaming hash with one
//! multiply per byte and no tables is what fits there. Userspace and the XDP
//! program both go through [`step`], so the two can never disagree.

/// The FNV-1a 64-bit offset basis: the hash of the empty name.
pub const INIT: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Feeds one byte of the host name into the hash, lower-casing ASCII letters.
#[inline(always)]
pub const fn step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte.to_ascii_lowercase() as u64).wrapping_mul(PRIME)
}

/// Hashes a whole host name (as sent in the SNI: no trailing dot).
pub const fn hash(name: &[u8]) -> u64 {
    let mut h = INIT;
    let mut i = 0;
    while i < name.len() {
        h = step(h, name[i]);
        i += 1;
    }
    h
}

/// The hash of `*` alone: where the XDP program starts the wildcard hash of a
/// name before feeding it the name's tail from the first dot.
pub const WILDCARD_INIT: u64 = step(INIT, b'*');

/// The key under which a name is found by a wildcard route: the hash of `*`
/// followed by the name from its first dot (`shop.example.com` ->
/// `*.example.com`). `None` for a name without a dot, which no wildcard covers.
///
/// The XDP program computes the same value in the one pass that computes
/// [`hash`], so a wildcard route costs one extra map lookup and no second walk.
pub const fn wildcard_hash(name: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'.' {
            let mut h = WILDCARD_INIT;
            while i < name.len() {
                h = step(h, name[i]);
                i += 1;
            }
            return Some(h);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published FNV-1a 64 vectors (lower-case input, so lower-casing is a no-op).
    #[test]
    fn matches_fnv1a_reference_vectors() {
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn is_case_insensitive() {
        assert_eq!(hash(b"MyStore.Example.COM"), hash(b"mystore.example.com"));
        assert_ne!(hash(b"mystore.example.com"), hash(b"mystore.example.org"));
    }

    /// A wildcard route `*.example.com` is keyed by the plain hash of its text;
    /// a name one label below it must produce that key.
    #[test]
    fn wildcard_hash_is_the_hash_of_star_and_the_tail() {
        assert_eq!(
            wildcard_hash(b"shop.example.com"),
            Some(hash(b"*.example.com"))
        );
        assert_eq!(
            wildcard_hash(b"SHOP.Example.com"),
            Some(hash(b"*.example.com"))
        );
        assert_eq!(
            wildcard_hash(b"a.b.example.com"),
            Some(hash(b"*.b.example.com"))
        );
        assert_eq!(wildcard_hash(b"localhost"), None);
        assert_eq!(WILDCARD_INIT, hash(b"*"));
        // Published-style vector pinned here so both sides catch a change.
        assert_eq!(hash(b"*.example.com"), 0x3b6d_46e9_8545_5aca);
    }
}
