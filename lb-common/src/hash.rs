//! Hashes both sides compute identically: the flow hash that picks a Maglev
//! slot (in the XDP program, and in tests that predict its choice), and the
//! byte hash lbd derives Maglev permutations from. Both are MurmurHash3
//! (x86, 32-bit): fast, well mixed, and stable across builds and machines, so
//! two LB nodes always agree.

use crate::maps::FlowKey;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Seed of the flow hash. Fixed, so every node maps a flow to the same slot.
pub const FLOW_HASH_SEED: u32 = 0x4c42_5f31; // "LB_1"

#[inline(always)]
const fn mix_word(h: u32, word: u32) -> u32 {
    let k = word.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finalize(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of a flow's 5-tuple (and family). Equals MurmurHash3 of the key's
/// 40 bytes on little-endian machines; written word by word so the BPF
/// verifier sees a short, loop-free sequence.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let mut h = FLOW_HASH_SEED;
    h = mix_word(h, key.src[0]);
    h = mix_word(h, key.src[1]);
    h = mix_word(h, key.src[2]);
    h = mix_word(h, key.src[3]);
    h = mix_word(h, key.dst[0]);
    h = mix_word(h, key.dst[1]);
    h = mix_word(h, key.dst[2]);
    h = mix_word(h, key.dst[3]);
    h = mix_word(h, u32::from(key.sport) | (u32::from(key.dport) << 16));
    h = mix_word(
        h,
        u32::from(key.proto) | (u32::from(key.family) << 8) | (u32::from(key._pad) << 16),
    );
    finalize(h, 40)
}

/// MurmurHash3 (x86, 32-bit) of `data`. Used by lbd for Maglev
/// permutations; host-side only in practice, kept here beside its sibling.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        h = mix_word(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k: u32 = 0;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    finalize(h, data.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_reference_vectors() {
        // Reference values of MurmurHash3_x86_32.
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
    }

    #[test]
    fn flow_hash_equals_murmur_of_key_bytes() {
        let key = FlowKey {
            src: [0x0a00_0001u32.to_be(), 0, 0, 0],
            dst: [0xc612_0064u32.to_be(), 0, 0, 0],
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: 4,
            _pad: 0,
        };
        let bytes: [u8; 40] = unsafe { core::mem::transmute(key) };
        assert_eq!(flow_hash(&key), murmur3_32(&bytes, FLOW_HASH_SEED));
    }
}
