//! An oracle for lbd's Maglev tables written from the paper (Eisenbud et
//! al., "Maglev: A Fast and Reliable Software Network Load Balancer",
//! NSDI 2016, section 3.4, Pseudocode 1), not from lbd's builder: the
//! labs' Maglev model (`support::maglev_choice`, `MaglevModel`) is lbd's
//! own library, so it can only catch lbd disagreeing with itself. Here,
//! for equal weights (what the labs configure), lbd's table must be the
//! paper's population: each backend in turn takes its next preferred
//! empty slot, its preferences being `(offset + j * skip) mod M`.
//!
//! What is shared with lbd, by design: the hash (MurmurHash3 x86_32,
//! checked against its published vectors in lb-common), its two fixed
//! seeds, and the order the backends take turns in (by key: lbd's rule
//! that makes every node build the same table; the paper leaves the
//! order open).

/// lbd's seed of a backend's first preferred slot (`offset`), "MGOF":
/// fixed forever (lb-userspace `maglev::OFFSET_SEED`).
const OFFSET_SEED: u32 = 0x4d47_4f46;
/// lbd's seed of a backend's stride (`skip`), "MGSK" (lb-userspace
/// `maglev::SKIP_SEED`).
const SKIP_SEED: u32 = 0x4d47_534b;

/// The paper's lookup table of `size` slots (a prime) for backends
/// `keys`, each slot the id of its backend: `ids[i]` for `keys[i]`.
/// Backends take turns in key order.
fn paper_table(keys: &[[u8; 4]], ids: &[u32], size: u32) -> Vec<u32> {
    let m = u64::from(size);
    let mut backends: Vec<([u8; 4], u32)> = keys.iter().copied().zip(ids.iter().copied()).collect();
    backends.sort_unstable();
    // permutation[i][j] = (offset + j * skip) mod M, offset = h1(key) mod
    // M, skip = h2(key) mod (M - 1) + 1.
    let preferences: Vec<(u64, u64)> = backends
        .iter()
        .map(|(key, _)| {
            let offset = u64::from(lb_common::hash::murmur3_32(key, OFFSET_SEED)) % m;
            let skip = u64::from(lb_common::hash::murmur3_32(key, SKIP_SEED)) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut entry: Vec<Option<u32>> = vec![None; size as usize];
    let mut filled = 0u64;
    loop {
        for (i, (_, id)) in backends.iter().enumerate() {
            let (offset, skip) = preferences[i];
            let mut c = (offset + next[i] * skip) % m;
            while entry[c as usize].is_some() {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            entry[c as usize] = Some(*id);
            next[i] += 1;
            filled += 1;
            if filled == m {
                return entry.into_iter().map(|e| e.unwrap_or(0)).collect();
            }
        }
    }
}

/// lbd's table of `keys` (weight 100 each, `ids[i]` for `keys[i]`).
fn lbd_table(keys: &[[u8; 4]], ids: &[u32], size: u32) -> Vec<u32> {
    let backends: Vec<lb_userspace::maglev::MaglevBackend<'_>> = keys
        .iter()
        .zip(ids)
        .map(|(key, id)| lb_userspace::maglev::MaglevBackend {
            key,
            weight: 100,
            id: *id,
        })
        .collect();
    lb_userspace::maglev::build_table(&backends, size).expect("lbd's Maglev table")
}

/// Backend addresses of a lab of `n` (b1 = 198.18.0.11, ...).
fn lab_keys(n: u8) -> Vec<[u8; 4]> {
    (1..=n).map(|i| [198, 18, 0, 10 + i]).collect()
}

/// Small tables, every slot checked by hand-sized numbers: lbd's equals
/// the paper's, whatever order lbd is handed the backends in.
#[test]
fn lbd_fills_small_tables_as_the_paper_does() {
    for size in [7u32, 13, 101, 251] {
        for n in 1..=5u8 {
            let keys = lab_keys(n);
            let ids: Vec<u32> = (1..=u32::from(n)).collect();
            let paper = paper_table(&keys, &ids, size);
            assert_eq!(
                lbd_table(&keys, &ids, size),
                paper,
                "{n} backends, {size} slots"
            );
            let (reversed_keys, reversed_ids): (Vec<_>, Vec<_>) =
                keys.iter().zip(&ids).rev().map(|(k, i)| (*k, *i)).unzip();
            assert_eq!(
                lbd_table(&reversed_keys, &reversed_ids, size),
                paper,
                "{n} backends, {size} slots, handed in reverse"
            );
            // The paper's spread: each backend within one slot of M / N.
            for id in &ids {
                let slots = paper.iter().filter(|s| *s == id).count() as u32;
                assert!(
                    slots == size / u32::from(n) || slots == size / u32::from(n) + 1,
                    "backend {id}: {slots} of {size} slots"
                );
            }
        }
    }
}

/// The labs' model table (65,537 slots, the lab's three and four
/// backends, numbered by address) is the paper's: the choices the labs
/// compare lbd's live picks with are Maglev's, not only lbd's library's.
#[test]
fn the_labs_maglev_model_is_the_papers_table() {
    for n in [3u8, 4] {
        let keys = lab_keys(n);
        let ids: Vec<u32> = (1..=u32::from(n)).collect();
        assert_eq!(
            crate::bench::maglev::table_by_address(&keys, &keys, 65_537),
            paper_table(&keys, &ids, 65_537),
            "{n} backends"
        );
    }
}
