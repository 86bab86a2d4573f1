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

/// Hash of a flow's 5-tuple (and family): picks its Maglev slot and its
/// connection-table buckets. MurmurHash3 (on little-endian machines) of
/// 16 bytes for IPv4: the key's words that carry information (its
/// addresses hold zeros in three words each), ports and protocol word; of
/// 24 bytes for IPv6: each address folded to 64 bits (its first half XOR
/// its second: addresses of one /64 stay distinct), ports and protocol
/// word. Four rounds for IPv4, six for IPv6, instead of ten for the whole
/// key. Written word by word so the BPF verifier sees a short, loop-free
/// sequence.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let ports = u32::from(key.sport) | (u32::from(key.dport) << 16);
    let proto = u32::from(key.proto) | (u32::from(key.family) << 8) | (u32::from(key._pad) << 16);
    let mut h = FLOW_HASH_SEED;
    if key.family == crate::consts::AF_INET {
        h = mix_word(h, key.src[0]);
        h = mix_word(h, key.dst[0]);
        h = mix_word(h, ports);
        h = mix_word(h, proto);
        return finalize(h, 16);
    }
    h = mix_word(h, key.src[0] ^ key.src[2]);
    h = mix_word(h, key.src[1] ^ key.src[3]);
    h = mix_word(h, key.dst[0] ^ key.dst[2]);
    h = mix_word(h, key.dst[1] ^ key.dst[3]);
    h = mix_word(h, ports);
    h = mix_word(h, proto);
    finalize(h, 24)
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
    fn flow_hash_equals_murmur_of_the_informative_or_folded_key_bytes() {
        let v4 = FlowKey {
            src: [0x0a00_0001u32.to_be(), 0, 0, 0],
            dst: [0xc612_0064u32.to_be(), 0, 0, 0],
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: crate::consts::AF_INET,
            _pad: 0,
        };
        let bytes: [u8; 40] = unsafe { core::mem::transmute(v4) };
        let mut informative = [0u8; 16];
        informative[..4].copy_from_slice(&bytes[..4]);
        informative[4..8].copy_from_slice(&bytes[16..20]);
        informative[8..].copy_from_slice(&bytes[32..]);
        assert_eq!(flow_hash(&v4), murmur3_32(&informative, FLOW_HASH_SEED));

        let v6 = FlowKey {
            src: [0x2001_0002u32.to_be(), 0, 0, 1u32.to_be()],
            dst: [0x2001_0002u32.to_be(), 0, 0, 0x64u32.to_be()],
            family: crate::consts::AF_INET6,
            ..v4
        };
        let bytes: [u8; 40] = unsafe { core::mem::transmute(v6) };
        let mut folded = [0u8; 24];
        let fold = |a: &[u8]| -> [u8; 8] { core::array::from_fn(|i| a[i] ^ a[8 + i]) };
        folded[..8].copy_from_slice(&fold(&bytes[..16]));
        folded[8..16].copy_from_slice(&fold(&bytes[16..32]));
        folded[16..].copy_from_slice(&bytes[32..]);
        assert_eq!(flow_hash(&v6), murmur3_32(&folded, FLOW_HASH_SEED));
        // Addresses of one /64 stay apart.
        let other = FlowKey {
            src: [0x2001_0002u32.to_be(), 0, 0, 2u32.to_be()],
            ..v6
        };
        assert_ne!(flow_hash(&v6), flow_hash(&other));
    }
}
