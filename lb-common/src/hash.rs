//! Hashes both sides compute identically: the flow hash that picks a Maglev
//! slot (in the XDP program, and in tests that predict its choice), the
//! table hash that places a flow in the connection table (the program and
//! lbd, which read and write that table in place), and the byte hash lbd
//! derives Maglev permutations from. The Maglev hashes are MurmurHash3
//! (x86, 32-bit): fast, well mixed, and stable across builds and machines,
//! so two LB nodes always agree.

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

/// Hash of a flow's 5-tuple (and family): picks its Maglev slot, places
/// it in the half-open table, and (IPv4 only, see `table_hash`) in the
/// connection table. MurmurHash3 (on little-endian machines) of
/// 16 bytes for IPv4: the key's words that carry information (its
/// addresses hold zeros in three words each), ports and protocol word; of
/// 24 bytes for IPv6: each address folded to 64 bits (its first half XOR
/// its second: addresses of one /64 stay distinct), ports and protocol
/// word. Four rounds for IPv4, six for IPv6, instead of ten for the whole
/// key. Written word by word so the BPF verifier sees a short, loop-free
/// sequence.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    if key.family == crate::consts::AF_INET {
        return flow_hash_v4(key);
    }
    flow_hash_v6(key)
}

/// The ports word and the protocol word `flow_hash` mixes.
#[inline(always)]
fn tail_words(key: &FlowKey) -> (u32, u32) {
    let ports = u32::from(key.sport) | (u32::from(key.dport) << 16);
    let proto = u32::from(key.proto) | (u32::from(key.family) << 8) | (u32::from(key._pad) << 16);
    (ports, proto)
}

#[inline(always)]
fn flow_hash_v4(key: &FlowKey) -> u32 {
    let (ports, proto) = tail_words(key);
    let mut h = FLOW_HASH_SEED;
    h = mix_word(h, key.src[0]);
    h = mix_word(h, key.dst[0]);
    h = mix_word(h, ports);
    h = mix_word(h, proto);
    finalize(h, 16)
}

#[inline(always)]
fn flow_hash_v6(key: &FlowKey) -> u32 {
    let (ports, proto) = tail_words(key);
    let mut h = FLOW_HASH_SEED;
    h = mix_word(h, key.src[0] ^ key.src[2]);
    h = mix_word(h, key.src[1] ^ key.src[3]);
    h = mix_word(h, key.dst[0] ^ key.dst[2]);
    h = mix_word(h, key.dst[1] ^ key.dst[3]);
    h = mix_word(h, ports);
    h = mix_word(h, proto);
    finalize(h, 24)
}

/// Hash that places a flow in the connection table (`flow_table`: its
/// two buckets and its tag's fingerprint). For IPv4 it is `flow_hash`
/// (four rounds: cheap, and a flow then needs one hash). For IPv6 it is
/// a cheaper mix than `flow_hash`'s six serial Murmur rounds, because
/// every packet of a tracked flow computes it: the folded addresses and
/// the ports and protocol word each multiplied by their own odd 64-bit
/// constant (three independent multiplies), folded and multiplied once
/// more. Maglev keeps `flow_hash` (the pick must not change between
/// releases or nodes); a flow's entry stores that one.
#[inline(always)]
pub fn table_hash(key: &FlowKey) -> u32 {
    if key.family == crate::consts::AF_INET {
        return flow_hash_v4(key);
    }
    table_hash_v6(key)
}

/// `flow_hash` of a flow whose `table_hash` is `placed`: the same value
/// for IPv4 (computed once), `flow_hash` itself for IPv6.
#[inline(always)]
pub fn flow_hash_after(key: &FlowKey, placed: u32) -> u32 {
    if key.family == crate::consts::AF_INET {
        return placed;
    }
    flow_hash_v6(key)
}

/// Hash of a flow's client address alone (and family): Maglev's input
/// for a VIP with source affinity (`Affinity::Source`), so every
/// connection of one client picks the same slot. MurmurHash3 of the
/// address folded to 64 bits as `flow_hash` folds it (its first half
/// XOR its second: an IPv4 address is its first word, addresses of one
/// IPv6 /64 stay distinct) and the family word: three rounds, on every
/// node the same. Not
/// the VIP's address or port: VIPs with the same backends and table send
/// a client to the same backend. The connection and half-open tables keep
/// placing flows by the whole 5-tuple.
#[inline(always)]
pub fn source_hash(key: &FlowKey) -> u32 {
    let mut h = FLOW_HASH_SEED;
    h = mix_word(h, key.src[0] ^ key.src[2]);
    h = mix_word(h, key.src[1] ^ key.src[3]);
    h = mix_word(h, u32::from(key.family));
    finalize(h, 12)
}

/// The hash by which a VIP with `affinity` (its `VipMeta::affinity`)
/// picks the Maglev slot of the flow of `key`, whose `flow_hash` is
/// `hash`: that hash, or `source_hash` for source affinity. The one rule
/// for the data plane and for lbd's explanation of a flow.
#[inline(always)]
pub fn maglev_hash(affinity: u32, key: &FlowKey, hash: u32) -> u32 {
    if affinity == crate::Affinity::Source as u32 {
        source_hash(key)
    } else {
        hash
    }
}

/// Odd multipliers of `table_hash_v6` (the 64-bit golden ratio and
/// xxHash64's primes).
const T1: u64 = 0x9e37_79b9_7f4a_7c15;
const T2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const T3: u64 = 0x1656_67b1_9e37_79f9;
const T4: u64 = 0x85eb_ca77_c2b2_ae63;

#[inline(always)]
fn table_hash_v6(key: &FlowKey) -> u32 {
    // Each address folded to 64 bits as `flow_hash` folds it (addresses
    // of one /64 stay distinct).
    let fold = |a: &[u32; 4]| (u64::from(a[0] ^ a[2]) << 32) | u64::from(a[1] ^ a[3]);
    let tail = u64::from(key.sport)
        | (u64::from(key.dport) << 16)
        | (u64::from(key.proto) << 32)
        | (u64::from(key.family) << 40);
    let h = (fold(&key.src) ^ u64::from(FLOW_HASH_SEED)).wrapping_mul(T1)
        ^ fold(&key.dst).wrapping_mul(T2)
        ^ tail.wrapping_mul(T3);
    // A product's bit i depends only on its factor's bits up to i: fold
    // the high half down before the last multiply, and its high half
    // into the result, so every input bit reaches every output bit.
    let p = (h ^ (h >> 32)).wrapping_mul(T4);
    (p ^ (p >> 32)) as u32
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
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    #[test]
    fn murmur3_matches_reference_vectors() {
        // Reference values of MurmurHash3_x86_32.
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
    }

    /// A TCP flow 10.0.0.1:40000 -> 198.18.0.100:80.
    fn v4_key() -> FlowKey {
        FlowKey {
            src: [0x0a00_0001u32.to_be(), 0, 0, 0],
            dst: [0xc612_0064u32.to_be(), 0, 0, 0],
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: crate::consts::AF_INET,
            _pad: 0,
        }
    }

    /// The key's bytes as the data plane hashes them.
    fn key_bytes(key: FlowKey) -> [u8; 40] {
        // SAFETY: a repr(C) struct of integers without padding, 40 bytes.
        unsafe { core::mem::transmute(key) }
    }

    #[test]
    fn source_hash_is_murmur_of_the_client_address_and_family_alone() {
        let v4 = v4_key();
        let bytes = key_bytes(v4);
        let mut hashed = [0u8; 12];
        hashed[..4].copy_from_slice(&bytes[..4]);
        hashed[8] = crate::consts::AF_INET;
        assert_eq!(source_hash(&v4), murmur3_32(&hashed, FLOW_HASH_SEED));
        // The other connections of the client, to any VIP, hash the same.
        let other = FlowKey {
            sport: 40001u16.to_be(),
            dst: [0xc612_0065u32.to_be(), 0, 0, 0],
            dport: 443u16.to_be(),
            proto: 17,
            ..v4
        };
        assert_eq!(source_hash(&other), source_hash(&v4));
        assert_ne!(flow_hash(&other), flow_hash(&v4));
        // Another client, or the same bits as an IPv6 address, does not.
        let client = FlowKey {
            src: [0x0a00_0002u32.to_be(), 0, 0, 0],
            ..v4
        };
        assert_ne!(source_hash(&client), source_hash(&v4));
        let v6 = FlowKey {
            family: crate::consts::AF_INET6,
            ..v4
        };
        assert_ne!(source_hash(&v6), source_hash(&v4));
        // An IPv6 client: its address folded, as `flow_hash` folds it.
        let v6 = FlowKey {
            src: [0x2001_0002u32.to_be(), 0, 0, 1u32.to_be()],
            ..v6
        };
        let bytes = key_bytes(v6);
        let mut hashed = [0u8; 12];
        for i in 0..8 {
            hashed[i] = bytes[i] ^ bytes[8 + i];
        }
        hashed[8] = crate::consts::AF_INET6;
        assert_eq!(source_hash(&v6), murmur3_32(&hashed, FLOW_HASH_SEED));
        let neighbour = FlowKey {
            src: [0x2001_0002u32.to_be(), 0, 0, 2u32.to_be()],
            ..v6
        };
        assert_ne!(source_hash(&neighbour), source_hash(&v6));
    }

    #[test]
    fn flow_hash_equals_murmur_of_the_informative_or_folded_key_bytes() {
        let v4 = v4_key();
        let bytes = key_bytes(v4);
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
        let bytes = key_bytes(v6);
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

    /// A v6 key from its last address words and ports.
    fn v6(src: [u32; 4], sport: u16) -> FlowKey {
        FlowKey {
            src: src.map(u32::to_be),
            dst: [0x2001_0002u32.to_be(), 0, 0, 0x64u32.to_be()],
            sport: sport.to_be(),
            dport: 443u16.to_be(),
            proto: 6,
            family: crate::consts::AF_INET6,
            _pad: 0,
        }
    }

    /// Pearson's chi-square of `counts` against a uniform spread.
    fn chi_square(counts: &[u32]) -> f64 {
        let mean = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (f64::from(c) - mean) * (f64::from(c) - mean) / mean)
            .sum()
    }

    #[test]
    fn table_hash_spreads_structured_ipv6_flows_over_buckets_and_fingerprints() {
        // Sets a real table meets: one client's ports; clients of one /64
        // (counting up in the last word); clients of many /64s of one /48
        // (counting in the second and third words); clients differing
        // only in a high bit of a word.
        let sets: [(&str, Vec<FlowKey>); 4] = [
            (
                "ports",
                (0..65_536u32)
                    .map(|p| v6([0x2001_0002, 0, 0, 7], p as u16))
                    .collect(),
            ),
            (
                "one /64",
                (0..65_536u32)
                    .map(|n| v6([0x2001_0002, 0, 0, n], 40_000))
                    .collect(),
            ),
            (
                "many /64s",
                (0..65_536u32)
                    .map(|n| v6([0x2001_0002, n & 0xffff, n << 16, 1], 40_000))
                    .collect(),
            ),
            (
                "high bits",
                (0..65_536u32)
                    .map(|n| v6([0x2001_0002, n << 16, 0, 1], (n >> 8) as u16))
                    .collect(),
            ),
        ];
        for (name, keys) in &sets {
            // 1024 cells, 64 flows each on average: a uniform spread gives
            // a chi-square of 1023 ± 45; 1250 is five deviations out.
            let mut buckets = vec![0u32; 1024];
            let mut fingerprints = vec![0u32; 1024];
            let mut seconds = vec![0u32; 1024];
            for key in keys {
                let h = table_hash(key);
                buckets[(h & 1023) as usize] += 1;
                fingerprints[((h >> 16) & 1023) as usize] += 1;
                seconds[crate::flow_table::second_bucket_index(h, 1023) as usize] += 1;
            }
            for (what, counts) in [
                ("buckets", &buckets),
                ("fingerprints", &fingerprints),
                ("second buckets", &seconds),
            ] {
                let chi = chi_square(counts);
                assert!(chi < 1250.0, "{name}: {what}: chi-square {chi:.0}");
            }
        }
    }

    #[test]
    fn table_hash_is_flow_hash_for_ipv4_and_differs_for_ipv6() {
        let v4 = FlowKey {
            src: [0x0a00_0001u32.to_be(), 0, 0, 0],
            dst: [0xc612_0064u32.to_be(), 0, 0, 0],
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: crate::consts::AF_INET,
            _pad: 0,
        };
        assert_eq!(table_hash(&v4), flow_hash(&v4));
        assert_eq!(flow_hash_after(&v4, table_hash(&v4)), flow_hash(&v4));
        let key = v6([0x2001_0002, 0, 0, 1], 40_000);
        assert_eq!(flow_hash_after(&key, table_hash(&key)), flow_hash(&key));
        assert_ne!(table_hash(&key), flow_hash(&key));
        // Every field moves it.
        let moved = [
            v6([0x2001_0002, 0, 0, 2], 40_000),
            v6([0x2001_0003, 0, 0, 1], 40_000),
            v6([0x2001_0002, 0, 0, 1], 40_001),
            FlowKey {
                dport: 80u16.to_be(),
                ..key
            },
            FlowKey { proto: 17, ..key },
            FlowKey {
                dst: [0x2001_0002u32.to_be(), 0, 0, 0x65u32.to_be()],
                ..key
            },
        ];
        for other in moved {
            assert_ne!(table_hash(&other), table_hash(&key), "{other:?}");
        }
    }
}
