//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016): this
//! module owns turning a VIP's set of backends into the lookup table the XDP
//! program reads (one backend id per slot), plus the helpers lbd uses to
//! write only the slots that changed and to report how a table is shared.
//!
//! The table is a pure function of the *set* of backends (key, weight, id)
//! and the table size: backends are sorted by key before anything else, and
//! permutations come from fixed-seed MurmurHash3 of the key. So every
//! load-balancer node given the same backends builds a byte-identical table,
//! and a flow lands on the same backend whichever node receives it.
//!
//! Weights use the credit scheme of Katran's MaglevV2: every round each
//! backend adds its weight to a credit, and when the credit reaches the
//! largest weight it claims its next preferred empty slot and pays the
//! largest weight back. Each backend also has a quota, its exact share
//! `size * weight / sum(weights)` rounded by largest remainder, and stops
//! there, so every share is within one slot of its weight's share (with
//! equal weights the quotas change nothing). Weight 0 backends get no slot.
//!
//! Disruption: removing one of N backends moves its own ~1/N of the slots
//! and also 0.2-0.6% of the others' slots at 65,537 slots, nearly whatever
//! N (the fill is a race, and one fewer runner perturbs its last rounds,
//! where claims probe deep into the permutations). Measured total: 1.02 x
//! the ideal at N = 10, ~1.5 x at 100, ~7 x at 1,000; larger tables help
//! slowly (1.9 x at 1,000 backends and 4,194,301 slots). Moving only the
//! removed backend's slots, for every removal, forces a per-slot ranking of
//! backends (rendezvous hashing), whose shares are binomial: ~12% rms error
//! at 65 slots a backend, against one slot here. This builder keeps the
//! balance.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

use lb_common::hash::murmur3_32;

/// Seed of the hash that gives a backend's first preferred slot (`offset`).
/// Fixed forever: changing it reshuffles every table of every node.
pub(crate) const OFFSET_SEED: u32 = 0x4d47_4f46; // "MGOF"
/// Seed of the hash that gives a backend's stride through the table (`skip`).
/// Differs from `OFFSET_SEED` so offset and skip are independent.
pub(crate) const SKIP_SEED: u32 = 0x4d47_534b; // "MGSK"
/// Largest table size accepted (2^24 slots, 64 MiB of ids): far above what
/// the data plane holds, allowed so that benchmarks can study large tables.
pub(crate) const MAX_TABLE_SIZE: u32 = 1 << 24;

/// Identity of a backend in a table: its address bytes (4 or 16 bytes of an
/// IP address, or any stable id bytes) and weight. The key, not the id, picks
/// the backend's permutation, so a backend keeps its slots when lbd hands it
/// a different data-plane id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaglevBackend<'a> {
    /// Stable identity hashed into the permutation; must be unique per table.
    pub key: &'a [u8],
    /// Relative share of slots; 0 takes the backend out of the table.
    pub weight: u32,
    /// Value written in the backend's slots: the data-plane backend id, never
    /// 0 (0 means "no backend").
    pub id: u32,
}

/// Why a table cannot be built. Returned instead of panicking so lbd can
/// reject a bad configuration and keep serving the previous table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaglevError {
    /// The size is below 2 or above [`MAX_TABLE_SIZE`].
    SizeOutOfRange(u32),
    /// The size is not prime, so some permutations would not visit every
    /// slot.
    SizeNotPrime(u32),
    /// More backends with weight > 0 than slots: some would get none.
    TooManyBackends {
        /// Backends with weight > 0.
        backends: usize,
        /// Table size asked for.
        size: u32,
    },
    /// Two backends share a key, so they would share a permutation and the
    /// table would depend on their order.
    DuplicateKey(Vec<u8>),
    /// A backend has id 0, which the data plane reads as "no backend".
    ZeroId(Vec<u8>),
}

impl fmt::Display for MaglevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SizeOutOfRange(size) => write!(
                f,
                "maglev table size {size} is out of range (2..={MAX_TABLE_SIZE})"
            ),
            Self::SizeNotPrime(size) => write!(f, "maglev table size {size} is not prime"),
            Self::TooManyBackends { backends, size } => write!(
                f,
                "{backends} backends with weight > 0 do not fit a maglev table of {size} slots"
            ),
            Self::DuplicateKey(key) => {
                write!(f, "two maglev backends have the key {}", Hex(key))
            }
            Self::ZeroId(key) => write!(
                f,
                "maglev backend with key {} has id 0, which means \"no backend\"",
                Hex(key)
            ),
        }
    }
}

impl std::error::Error for MaglevError {}

/// Key bytes in hex, for error messages.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<empty>");
        }
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Whether `n` is prime. Maglev needs a prime table size so that every skip
/// in 1..size is coprime with it and each permutation visits every slot.
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    // 6k ± 1 trial division; d * d is computed in u64 so it cannot overflow.
    let n64 = u64::from(n);
    let mut d: u64 = 5;
    while d * d <= n64 {
        if n64.is_multiple_of(d) || n64.is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

/// The checks every table builder makes (size a prime in range, no id 0,
/// no key twice), and the backends sorted by key: sorting makes what
/// follows independent of input order.
pub(crate) fn checked_and_sorted<'b, 'a>(
    backends: &'b [MaglevBackend<'a>],
    size: u32,
) -> Result<Vec<&'b MaglevBackend<'a>>, MaglevError> {
    if !(2..=MAX_TABLE_SIZE).contains(&size) {
        return Err(MaglevError::SizeOutOfRange(size));
    }
    if !is_prime(size) {
        return Err(MaglevError::SizeNotPrime(size));
    }
    let mut sorted: Vec<&MaglevBackend> = backends.iter().collect();
    sorted.sort_unstable_by(|a, b| a.key.cmp(b.key));
    if let Some(b) = sorted.iter().find(|b| b.id == 0) {
        return Err(MaglevError::ZeroId(b.key.to_vec()));
    }
    if let Some(pair) = sorted.windows(2).find(|p| p[0].key == p[1].key) {
        return Err(MaglevError::DuplicateKey(pair[0].key.to_vec()));
    }
    Ok(sorted)
}

/// Builds the Maglev table of `size` slots for `backends`, whose slot values
/// are backend ids. The result depends only on the set of backends and on
/// `size`, never on the order of `backends`, so all nodes agree on it.
///
/// Backends with weight 0 get no slot; when no backend has weight > 0 every
/// slot is 0 ("no backend"). Building 65,537 slots for 1,000 backends takes
/// under a millisecond.
///
/// # Errors
///
/// A [`MaglevError`] when `size` is not a prime in 2..=[`MAX_TABLE_SIZE`],
/// more backends have weight > 0 than there are slots, two backends share a
/// key, or a backend has id 0.
pub fn build_table(backends: &[MaglevBackend], size: u32) -> Result<Vec<u32>, MaglevError> {
    let sorted = checked_and_sorted(backends, size)?;

    let mut cursors: Vec<Cursor> = sorted
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| Cursor::new(b, size))
        .collect();
    if cursors.len() > size as usize {
        return Err(MaglevError::TooManyBackends {
            backends: cursors.len(),
            size,
        });
    }

    let mut table = vec![0u32; size as usize];
    if cursors.is_empty() {
        return Ok(table);
    }
    let mut filler = Filler::new(&mut table, size);

    let max_weight = cursors.iter().map(|c| c.weight).max().unwrap_or(1);
    let total_weight: u64 = cursors.iter().map(|c| c.weight).sum();
    set_quotas(&mut cursors, size, total_weight);
    // Rounds of the plain round-robin fill: the last one is when the
    // slowest backend claims its last slot, ceil(quota * max / weight) (at
    // most 2^24 * 2^32). Uneven weights make it long and most of its turns
    // idle (a light backend with one slot may wait max / weight rounds); the
    // event queue then visits only the backends that claim: same claims in
    // the same order, O(size log n) instead of O(rounds * n).
    let rounds = cursors
        .iter()
        .map(|c| (c.quota * max_weight).div_ceil(c.weight))
        .max()
        .unwrap_or(0);
    if rounds.saturating_mul(cursors.len() as u64) <= 8 * u64::from(size) {
        fill_by_rounds(&mut cursors, &mut filler, max_weight);
    } else {
        fill_by_events(&mut cursors, &mut filler, max_weight);
    }
    Ok(table)
}

/// A backend's walk through its permutation `(offset + j * skip) % size`,
/// kept as the next slot to try so whole permutations are never stored.
struct Cursor {
    /// Next preferred slot to try.
    next: u32,
    /// Stride, in 1..size.
    skip: u32,
    /// Value written in claimed slots.
    id: u32,
    /// Weight, widened so credits cannot overflow.
    weight: u64,
    /// Weight accumulated and not yet spent on slots (round-robin fill).
    credit: u64,
    /// Slots claimed so far.
    claimed: u64,
    /// Slots this backend may claim: its weight share of the table, rounded
    /// (see [`set_quotas`]).
    quota: u64,
    /// `skip^-1 mod size`, computed when first needed; 0 until then.
    inverse: u32,
}

impl Cursor {
    fn new(b: &MaglevBackend, size: u32) -> Self {
        let (offset, skip) = permutation(b.key, size);
        Self {
            next: offset,
            skip,
            id: b.id,
            weight: u64::from(b.weight),
            credit: 0,
            claimed: 0,
            quota: 0,
            inverse: 0,
        }
    }
}

/// Gives each backend its quota of slots: `size * weight / total` rounded by
/// largest remainder (ties to the earlier key), so every quota is within one
/// slot of the exact share and the quotas add up to `size`.
///
/// The credit fill alone would round down the shares of light backends in
/// every round and hand the leftovers of the last round to whoever comes
/// first, which can put a heavy backend more than one slot over its share.
/// With equal weights the quotas are exactly what the plain fill gives (the
/// first `size % n` backends in key order get one more slot).
fn set_quotas(cursors: &mut [Cursor], size: u32, total_weight: u64) {
    // size <= 2^24 and weight <= 2^32, so size * weight fits in u64; the
    // total is at most 2^24 backends * 2^32.
    let size = u64::from(size);
    let mut given = 0;
    for c in cursors.iter_mut() {
        c.quota = size * c.weight / total_weight;
        given += c.quota;
    }
    let mut by_remainder: Vec<(Reverse<u64>, usize)> = cursors
        .iter()
        .enumerate()
        .map(|(i, c)| (Reverse(size * c.weight % total_weight), i))
        .collect();
    by_remainder.sort_unstable();
    let left = size.saturating_sub(given) as usize;
    for &(_, i) in by_remainder.iter().take(left) {
        if let Some(c) = cursors.get_mut(i) {
            c.quota += 1;
        }
    }
}

/// The table being filled and which of its slots are taken.
struct Filler<'t> {
    table: &'t mut [u32],
    /// One bit per slot: 8 KiB for 65,537 slots, so probes stay in L1.
    filled: Vec<u64>,
    size: u32,
    /// Slots still empty.
    left: u32,
    /// At or below this many empty slots, claims search the list of empty
    /// slots instead of probing: `sqrt(size) / 2`, measured best at 65,537.
    list_from: u32,
    /// The empty slots, once `left <= list_from`.
    empties: Vec<u32>,
    /// Whether `empties` has been gathered.
    listed: bool,
    /// `floor((2^64 - 1) / size)`, for [`Filler::reduce`].
    barrett: u64,
}

impl<'t> Filler<'t> {
    fn new(table: &'t mut [u32], size: u32) -> Self {
        Self {
            table,
            filled: vec![0u64; (size as usize).div_ceil(64)],
            size,
            left: size,
            list_from: (size.isqrt() / 2).max(1),
            empties: Vec::new(),
            listed: false,
            barrett: u64::MAX / u64::from(size),
        }
    }

    /// Gives `c` its next preferred empty slot. Callers claim only while a
    /// slot is empty (quotas add up to the table size and claims stop at
    /// quotas); on a full table this does nothing rather than search
    /// forever. With a slot empty the search ends, since a permutation of a
    /// prime size visits every slot.
    #[inline(always)]
    fn claim(&mut self, c: &mut Cursor) {
        if self.left == 0 {
            return;
        }
        let slot = if self.left > self.list_from {
            self.probe(c)
        } else {
            self.search(c)
        };
        self.filled[(slot >> 6) as usize] |= 1 << (slot & 63);
        self.table[slot as usize] = c.id;
        self.left -= 1;
        c.next = step(slot, c.skip, c.skip.wrapping_sub(self.size));
    }

    /// The first empty slot of `c`'s permutation from `c.next`, by walking
    /// it. Probes two preferences per step (j and j+1, both computed from
    /// the j-th) so the loop's serial chain of modular additions, its
    /// bottleneck, is half as long.
    #[inline(always)]
    fn probe(&self, c: &Cursor) -> u32 {
        let size = self.size;
        let s1 = c.skip;
        let s2 = add_mod(s1, s1, size);
        let b1 = s1.wrapping_sub(size);
        let b2 = s2.wrapping_sub(size);
        let mut p0 = c.next;
        loop {
            let p1 = step(p0, s1, b1);
            let free = self.is_free(p0) | self.is_free(p1) << 1;
            if free != 0 {
                return if free & 1 != 0 { p0 } else { p1 };
            }
            p0 = step(p0, s2, b2);
        }
    }

    /// 1 if `slot` is empty, else 0.
    #[inline(always)]
    fn is_free(&self, slot: u32) -> u64 {
        !self.filled[(slot >> 6) as usize] >> (slot & 63) & 1
    }

    /// The same slot as [`Filler::probe`], found among the few empty slots
    /// left. With `e` empty slots a walk takes about `size / e` probes, so
    /// the last `sqrt(size) / 2` claims would take nearly half of all
    /// probes; instead each empty slot's position in the permutation,
    /// `(slot - next) * skip^-1 mod size`, is computed and the earliest
    /// taken.
    fn search(&mut self, c: &mut Cursor) -> u32 {
        if !self.listed {
            self.listed = true;
            self.empties = (0..self.size).filter(|&s| self.is_free(s) == 1).collect();
        }
        if c.inverse == 0 {
            c.inverse = inverse_mod(c.skip, self.size);
        }
        let mut best = (u64::MAX, 0);
        for (i, &slot) in self.empties.iter().enumerate() {
            let distance = add_mod(slot, self.size - c.next, self.size);
            let position = self.reduce(u64::from(distance) * u64::from(c.inverse));
            if position < best.0 {
                best = (position, i);
            }
        }
        if best.1 < self.empties.len() {
            self.empties.swap_remove(best.1)
        } else {
            // Not reached: `empties` holds the `left > 0` empty slots.
            self.probe(c)
        }
    }

    /// `x % size` for `x < 2^48` (a product of two numbers below 2^24) by
    /// Barrett reduction: a multiplication instead of a division. The
    /// estimated quotient is short by at most one.
    #[inline(always)]
    fn reduce(&self, x: u64) -> u64 {
        let q = ((u128::from(x) * u128::from(self.barrett)) >> 64) as u64;
        let r = x - q * u64::from(self.size);
        if r >= u64::from(self.size) {
            r - u64::from(self.size)
        } else {
            r
        }
    }
}

/// A backend's Maglev permutation of `size` slots: position `j` is slot
/// `(offset + j * skip) % size`. Every builder and updater walks this same
/// permutation, so they agree on each backend's preferences.
pub(crate) fn permutation(key: &[u8], size: u32) -> (u32, u32) {
    let offset = murmur3_32(key, OFFSET_SEED) % size;
    let skip = murmur3_32(key, SKIP_SEED) % (size - 1) + 1;
    (offset, skip)
}

/// `a^-1 mod m` for a prime `m` and `0 < a < m`, by the extended Euclidean
/// algorithm.
pub(crate) fn inverse_mod(a: u32, m: u32) -> u32 {
    let (mut t, mut new_t) = (0i64, 1i64);
    let (mut r, mut new_r) = (i64::from(m), i64::from(a));
    while new_r != 0 {
        let q = r / new_r;
        (t, new_t) = (new_t, t - q * new_t);
        (r, new_r) = (new_r, r - q * new_r);
    }
    t.rem_euclid(i64::from(m)) as u32
}

/// `(cur + skip) % size` for `cur, skip < size <= 2^24`, given `back = skip -
/// size` (wrapping), without a division: the sum and the wrapped sum are
/// computed side by side and one is picked on the sign of the latter.
#[inline(always)]
fn step(cur: u32, skip: u32, back: u32) -> u32 {
    let wrapped = cur.wrapping_add(back);
    if (wrapped as i32) < 0 {
        cur + skip
    } else {
        wrapped
    }
}

/// `(a + b) % size` for `a < size`, `b <= size <= 2^24`, without a division.
#[inline(always)]
fn add_mod(a: u32, b: u32, size: u32) -> u32 {
    let sum = a + b;
    if sum >= size {
        sum - size
    } else {
        sum
    }
}

/// Katran MaglevV2 fill: in each round every backend (in key order) adds its
/// weight to its credit and claims one slot when the credit reaches
/// `max_weight` (weights are at most `max_weight`, so never two per round),
/// until it holds its quota.
fn fill_by_rounds(cursors: &mut [Cursor], filler: &mut Filler, max_weight: u64) {
    // Backends still short of their quota. The quotas add up to the table
    // size, so the table is full exactly when this reaches 0.
    let mut hungry = cursors.iter().filter(|c| c.claimed < c.quota).count();
    while hungry > 0 {
        for c in cursors.iter_mut() {
            c.credit += c.weight;
            if c.credit >= max_weight && c.claimed < c.quota {
                c.credit -= max_weight;
                filler.claim(c);
                c.claimed += 1;
                if c.claimed == c.quota {
                    hungry -= 1;
                    if hungry == 0 {
                        return;
                    }
                }
            }
        }
    }
}

/// The same claims as [`fill_by_rounds`] in the same order, skipping idle
/// turns: after round r a backend has claimed floor(r * weight / max_weight)
/// slots, so its k-th claim falls in round ceil(k * max_weight / weight), and
/// claims are ordered by (round, key order). A backend leaves the queue at
/// its quota.
fn fill_by_events(cursors: &mut [Cursor], filler: &mut Filler, max_weight: u64) {
    // Round of a cursor's next claim. k <= 2^24 and max_weight <= 2^32, so
    // the product fits in u64.
    let next_round = |c: &Cursor| ((c.claimed + 1) * max_weight).div_ceil(c.weight);
    let mut queue: BinaryHeap<Reverse<(u64, usize)>> = cursors
        .iter()
        .enumerate()
        .filter(|(_, c)| c.quota > 0)
        .map(|(i, c)| Reverse((next_round(c), i)))
        .collect();
    while let Some(Reverse((_, i))) = queue.pop() {
        let Some(c) = cursors.get_mut(i) else {
            continue;
        };
        filler.claim(c);
        c.claimed += 1;
        if c.claimed < c.quota {
            queue.push(Reverse((next_round(c), i)));
        }
    }
}

/// The slots whose value differs between `old` and `new`, with the new value:
/// what lbd must write to move the data plane from one table to the other.
/// If the lengths differ (the table was resized) every slot of `new` is
/// yielded, since slot numbers no longer mean the same thing.
pub(crate) fn changed_slots<'a>(
    old: &'a [u32],
    new: &'a [u32],
) -> impl Iterator<Item = (u32, u32)> + 'a {
    let same_len = old.len() == new.len();
    (0..=u32::MAX)
        .zip(new.iter().copied())
        .filter(move |&(slot, value)| !same_len || old.get(slot as usize) != Some(&value))
}

/// Fraction of `table`'s slots held by each backend id, to check (and show)
/// that shares follow weights. Empty slots (id 0) are not a backend and are
/// not listed, though they count in the total.
pub fn shares(table: &[u32]) -> BTreeMap<u32, f64> {
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    for &id in table.iter().filter(|&&id| id != 0) {
        *counts.entry(id).or_insert(0) += 1;
    }
    let total = table.len() as f64;
    counts
        .into_iter()
        .map(|(id, n)| (id, n as f64 / total))
        .collect()
}

/// Fraction of `new`'s slots that differ from `old` (as counted by
/// [`changed_slots`]): roughly the share of new flows that a table change
/// sends elsewhere. 0 for an empty `new`.
pub fn moved_fraction(old: &[u32], new: &[u32]) -> f64 {
    if new.is_empty() {
        return 0.0;
    }
    changed_slots(old, new).count() as f64 / new.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 65_537;

    /// Keys: IPv4 addresses 10.x.y.z, as lbd would pass them.
    fn keys(n: u32) -> Vec<[u8; 4]> {
        (0..n)
            .map(|i| {
                let ip = 0x0a00_0001u32 + i;
                ip.to_be_bytes()
            })
            .collect()
    }

    fn backends(keys: &[[u8; 4]], weight: impl Fn(usize) -> u32) -> Vec<MaglevBackend<'_>> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| MaglevBackend {
                key: k,
                weight: weight(i),
                id: i as u32 + 1,
            })
            .collect()
    }

    /// Asserts every backend's slot count is within 1% of its weight share,
    /// or within one slot when a slot is more than 1% of that share.
    fn assert_balanced(bs: &[MaglevBackend], table: &[u32]) {
        let total: f64 = bs.iter().map(|b| f64::from(b.weight)).sum();
        let got = shares(table);
        let size = table.len() as f64;
        let mut worst: f64 = 0.0;
        for b in bs {
            let ideal = size * f64::from(b.weight) / total;
            let slots = got.get(&b.id).copied().unwrap_or(0.0) * size;
            let tolerance = (ideal * 0.01).max(1.0);
            let err = (slots - ideal).abs();
            assert!(
                err <= tolerance,
                "backend {} (weight {}): {slots} slots, ideal {ideal:.2}, tolerance {tolerance:.2}",
                b.id,
                b.weight
            );
            worst = worst.max(err / tolerance);
        }
        println!(
            "balance n={} size={}: worst error {:.2} of tolerance",
            bs.len(),
            table.len(),
            worst
        );
    }

    #[test]
    fn is_prime_small_and_large() {
        let primes: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            primes,
            [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
        );
        assert!(is_prime(65_537));
        assert!(is_prime(16_381));
        assert!(is_prime(4_294_967_291)); // largest u32 prime
        assert!(!is_prime(65_535));
        assert!(!is_prime(65_536));
        assert!(!is_prime(25)); // 5 * 5: the d * d <= n edge
        assert!(!is_prime(4_294_967_295));
        assert!(!is_prime(4_294_836_225)); // 65_535^2
    }

    #[test]
    fn shares_follow_equal_weights() {
        for n in [3, 10, 100, 1000] {
            let ks = keys(n);
            let bs = backends(&ks, |_| 1);
            let table = build_table(&bs, M).expect("valid input");
            assert_eq!(table.len(), M as usize);
            assert!(table.iter().all(|&id| id != 0));
            assert_balanced(&bs, &table);
        }
    }

    #[test]
    fn shares_follow_mixed_weights() {
        for n in [4, 10, 100, 1000] {
            let ks = keys(n);
            let bs = backends(&ks, |i| i as u32 % 4 + 1);
            let table = build_table(&bs, M).expect("valid input");
            assert_balanced(&bs, &table);
        }
        // Large raw weights behave like their ratio.
        let ks = keys(50);
        let bs = backends(&ks, |i| (i as u32 % 5 + 1) * 1_000_000);
        let table = build_table(&bs, M).expect("valid input");
        assert_balanced(&bs, &table);
    }

    #[test]
    fn extreme_weights() {
        // Weights near u32::MAX: shares still follow them.
        let ks = keys(5);
        for heavy in [0, 2, 4] {
            let bs = backends(&ks, |i| if i == heavy { u32::MAX } else { 1 });
            let table = build_table(&bs, M).expect("valid input");
            assert_balanced(&bs, &table);
            assert_eq!(table, reference_table(&bs, M));
        }
        // Four light backends share 0.87 of a slot: the largest remainder
        // gives it to the first of them, which claims it only in round
        // 300,000 of the round-robin fill.
        let bs = backends(&ks, |i| if i == 0 { 300_000 } else { 1 });
        let table = build_table(&bs, M).expect("valid input");
        assert_balanced(&bs, &table);
        let got = shares(&table);
        assert_eq!(got.get(&2).map(|s| s * f64::from(M)), Some(1.0));
        assert!(!got.contains_key(&3) && !got.contains_key(&4) && !got.contains_key(&5));
        assert_eq!(table, reference_table(&bs, M));
    }

    #[test]
    fn weight_zero_gets_no_slot() {
        let ks = keys(10);
        let bs = backends(&ks, |i| u32::from(i % 3 != 0));
        let table = build_table(&bs, M).expect("valid input");
        let got = shares(&table);
        for b in &bs {
            assert_eq!(got.contains_key(&b.id), b.weight > 0, "backend {}", b.id);
        }
        assert!(table.iter().all(|&id| id != 0));
    }

    #[test]
    fn uneven_weights_take_the_event_path_and_match_rounds() {
        // One heavy backend among light ones: the round-robin fill would
        // spend most turns idle, so build_table uses the event queue. Both
        // must produce the same table.
        let ks = keys(200);
        let bs = backends(&ks, |i| if i == 7 { 10_000 } else { 1 + i as u32 % 3 });
        let table = build_table(&bs, M).expect("valid input");

        let mut sorted: Vec<&MaglevBackend> = bs.iter().collect();
        sorted.sort_unstable_by(|a, b| a.key.cmp(b.key));
        let mut rounds = vec![0u32; M as usize];
        let mut cursors: Vec<Cursor> = sorted.iter().map(|b| Cursor::new(b, M)).collect();
        let total = cursors.iter().map(|c| c.weight).sum();
        set_quotas(&mut cursors, M, total);
        let mut filler = Filler::new(&mut rounds, M);
        fill_by_rounds(&mut cursors, &mut filler, 10_000);
        assert_eq!(table, rounds);
        assert_balanced(&bs, &table);
    }

    /// The algorithm as specified, without the speed-ups (two-slot probes,
    /// empty-slot search for the last claims, event queue): per round, each
    /// backend in key order adds its weight to its credit and, while short of
    /// its quota, spends `max` of it on its next preferred empty slot.
    fn reference_table(bs: &[MaglevBackend], size: u32) -> Vec<u32> {
        let mut sorted: Vec<&MaglevBackend> = bs.iter().filter(|b| b.weight > 0).collect();
        sorted.sort_by(|a, b| a.key.cmp(b.key));
        let m = u64::from(size);
        let total: u64 = sorted.iter().map(|b| u64::from(b.weight)).sum();
        let max = sorted
            .iter()
            .map(|b| u64::from(b.weight))
            .max()
            .unwrap_or(1);
        let mut quota: Vec<u64> = sorted
            .iter()
            .map(|b| m * u64::from(b.weight) / total)
            .collect();
        let mut order: Vec<usize> = (0..sorted.len()).collect();
        order.sort_by_key(|&i| Reverse(m * u64::from(sorted[i].weight) % total));
        let short = (m - quota.iter().sum::<u64>()) as usize;
        for &i in &order[..short] {
            quota[i] += 1;
        }
        let mut next: Vec<u64> = sorted
            .iter()
            .map(|b| u64::from(murmur3_32(b.key, OFFSET_SEED)) % m)
            .collect();
        let skip: Vec<u64> = sorted
            .iter()
            .map(|b| u64::from(murmur3_32(b.key, SKIP_SEED)) % (m - 1) + 1)
            .collect();
        let mut credit = vec![0u64; sorted.len()];
        let mut claimed = vec![0u64; sorted.len()];
        let mut table = vec![0u32; size as usize];
        let mut filled = vec![false; size as usize];
        let mut left = m;
        while left > 0 {
            for i in 0..sorted.len() {
                credit[i] += u64::from(sorted[i].weight);
                if credit[i] >= max && claimed[i] < quota[i] && left > 0 {
                    credit[i] -= max;
                    while filled[next[i] as usize] {
                        next[i] = (next[i] + skip[i]) % m;
                    }
                    filled[next[i] as usize] = true;
                    table[next[i] as usize] = sorted[i].id;
                    next[i] = (next[i] + skip[i]) % m;
                    claimed[i] += 1;
                    left -= 1;
                }
            }
        }
        table
    }

    #[test]
    fn fast_paths_match_the_reference() {
        let ks = keys(1000);
        let mut cases = 0;
        for size in [2, 3, 5, 13, 101, 1009, 16_381, 65_537] {
            for n in [1, 2, 3, 10, 100, 1000] {
                if n > size {
                    continue;
                }
                let ks = &ks[..n as usize];
                let heavy_at = n as usize / 2;
                for bs in [
                    backends(ks, |_| 1),
                    backends(ks, |i| i as u32 % 4 + 1),
                    // Event path: one backend outweighs the rest.
                    backends(ks, |i| {
                        if i == heavy_at {
                            10_000
                        } else {
                            7 + i as u32 % 3 * 4
                        }
                    }),
                    backends(ks, |i| [0, 3, 1_000_000_007][i % 3]),
                ] {
                    if bs.iter().all(|b| b.weight == 0) {
                        continue;
                    }
                    assert_eq!(
                        build_table(&bs, size).expect("valid input"),
                        reference_table(&bs, size),
                        "size {size}, n {n}, weights {:?}",
                        bs.iter().map(|b| b.weight).take(5).collect::<Vec<_>>()
                    );
                    cases += 1;
                }
            }
        }
        assert!(cases > 100);
    }

    #[test]
    fn modular_helpers() {
        for m in [2u32, 3, 13, 65_537, 16_777_213] {
            let filler_table = &mut [];
            let filler = Filler::new(filler_table, m);
            for a in [1, 2, 3, m / 2, m - 2, m - 1]
                .into_iter()
                .filter(|&a| a > 0 && a < m)
            {
                let inv = inverse_mod(a, m);
                assert!(inv > 0 && inv < m);
                assert_eq!(
                    u64::from(a) * u64::from(inv) % u64::from(m),
                    1,
                    "{a}^-1 mod {m}"
                );
            }
            let big = (u64::from(m) - 1) * (u64::from(m) - 1);
            for x in [
                0,
                1,
                u64::from(m) - 1,
                u64::from(m),
                big,
                big - 1,
                (1 << 48) - 1,
            ] {
                assert_eq!(filler.reduce(x), x % u64::from(m), "{x} mod {m}");
            }
            for (a, b) in [(0, 0), (m - 1, m - 1), (m - 1, 1), (m / 2, m / 2 + 1)] {
                assert_eq!(add_mod(a, b, m), (a + b) % m);
                assert_eq!(step(a, b, b.wrapping_sub(m)), (a + b) % m);
            }
        }
    }

    #[test]
    fn table_does_not_depend_on_backend_order() {
        let ks = keys(100);
        let bs = backends(&ks, |i| i as u32 % 4 + 1);
        let table = build_table(&bs, M).expect("valid input");

        let mut reversed = bs.clone();
        reversed.reverse();
        assert_eq!(build_table(&reversed, M).expect("valid input"), table);

        for k in [1, 37, 99] {
            let mut rotated = bs.clone();
            rotated.rotate_left(k);
            assert_eq!(build_table(&rotated, M).expect("valid input"), table);
        }

        // A deterministic shuffle: stride 37 is coprime with 100.
        let shuffled: Vec<MaglevBackend> = (0..bs.len()).map(|i| bs[(i * 37) % bs.len()]).collect();
        assert_eq!(build_table(&shuffled, M).expect("valid input"), table);

        // Event path too.
        let heavy = backends(&ks, |i| if i == 3 { 5_000 } else { 1 });
        let mut heavy_rev = heavy.clone();
        heavy_rev.reverse();
        assert_eq!(
            build_table(&heavy, M).expect("valid input"),
            build_table(&heavy_rev, M).expect("valid input")
        );
    }

    #[test]
    fn table_is_stable_across_builds() {
        // Pin a few slots so that a change of hash, seeds or fill order (which
        // would reshuffle every node's tables on upgrade) fails loudly.
        let ks = keys(3);
        let bs = backends(&ks, |_| 1);
        let table = build_table(&bs, 13).expect("valid input");
        assert_eq!(table, GOLDEN_3_BACKENDS_13_SLOTS);
    }

    /// FNV-1a of a table's bytes (little-endian ids), to pin big tables.
    fn fnv1a(table: &[u32]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in table.iter().flat_map(|v| v.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    #[test]
    fn big_tables_are_stable_across_builds() {
        // Checksums from the same independent Python model as above.
        let ks = keys(1000);
        let table = build_table(&backends(&ks, |_| 1), M).expect("valid input");
        assert_eq!(fnv1a(&table), 0x7d12_cbee_a09a_f289);
        let ks = keys(100);
        let table = build_table(&backends(&ks, |i| i as u32 % 4 + 1), M).expect("valid input");
        assert_eq!(fnv1a(&table), 0x88c6_5116_da7c_5f51);
    }

    /// Table for 10.0.0.1..=10.0.0.3 (ids 1..=3, weight 1) at size 13, as
    /// computed by an independent Python model of the algorithm.
    const GOLDEN_3_BACKENDS_13_SLOTS: [u32; 13] = [1, 3, 3, 3, 1, 2, 2, 2, 2, 1, 1, 3, 1];

    /// What removing one backend changes.
    struct Disruption {
        /// Fraction of all slots that changed.
        total: f64,
        /// Fraction of the other backends' slots that changed.
        others: f64,
        /// Share of the slots the removed backend held.
        own: f64,
    }

    /// Removes backend `removed` (an index into `bs`) and measures the change.
    fn disruption(bs: &[MaglevBackend], removed: usize, size: u32) -> Disruption {
        let before = build_table(bs, size).expect("valid input");
        let mut rest = bs.to_vec();
        let gone = rest.remove(removed).id;
        let after = build_table(&rest, size).expect("valid input");
        assert!(!after.contains(&gone));
        let own = before.iter().filter(|&&id| id == gone).count();
        let others_moved = before
            .iter()
            .zip(&after)
            .filter(|&(b, a)| *b != gone && a != b)
            .count();
        Disruption {
            total: moved_fraction(&before, &after),
            others: others_moved as f64 / (before.len() - own) as f64,
            own: own as f64 / before.len() as f64,
        }
    }

    #[test]
    fn removing_one_backend_moves_few_other_slots() {
        // Maglev moves, besides the removed backend's own slots, some of the
        // others' (its fill is a race that one fewer runner perturbs, mostly
        // in its last rounds). Measured about 0.2-0.6% of the others' slots
        // at 65,537 slots whatever n; a mistake that ties permutations to
        // positions in the input instead of keys moves most of them.
        for n in [10, 100, 1000] {
            let ks = keys(n);
            for (name, bs) in [
                ("equal", backends(&ks, |_| 1)),
                ("weights 1..4", backends(&ks, |i| i as u32 % 4 + 1)),
            ] {
                let picks: Vec<usize> = (0..5).map(|j| j * n as usize / 5 + 1).collect();
                let (mut total, mut worst_others, mut own) = (0.0, 0.0f64, 0.0);
                for &r in &picks {
                    let d = disruption(&bs, r, M);
                    assert!(
                        d.others <= 0.01,
                        "n={n} {name}: removing {r} moved {:.4} of the others' slots",
                        d.others
                    );
                    total += d.total;
                    own += d.own;
                    worst_others = worst_others.max(d.others);
                }
                let k = picks.len() as f64;
                let ratio = total / own;
                println!(
                    "disruption n={n} {name} size={M}: moved {:.5} of slots = {ratio:.2} x the removed \
                     backend's share {:.5} (1/n = {:.5}); worst {:.5} of the others' slots",
                    total / k,
                    own / k,
                    1.0 / f64::from(n),
                    worst_others,
                );
                if n == 10 {
                    // Few large backends: close to the ideal.
                    assert!(ratio <= 1.1, "n={n} {name}: moved {ratio:.2} x ideal");
                }
            }
        }
    }

    #[test]
    fn errors() {
        let ks = keys(3);
        let bs = backends(&ks, |_| 1);
        assert_eq!(
            build_table(&bs, 65_536),
            Err(MaglevError::SizeNotPrime(65_536))
        );
        assert_eq!(build_table(&bs, 1), Err(MaglevError::SizeOutOfRange(1)));
        assert_eq!(build_table(&bs, 0), Err(MaglevError::SizeOutOfRange(0)));
        assert_eq!(
            build_table(&bs, 16_777_259), // prime above 2^24
            Err(MaglevError::SizeOutOfRange(16_777_259))
        );
        assert_eq!(
            build_table(&bs, 2),
            Err(MaglevError::TooManyBackends {
                backends: 3,
                size: 2
            })
        );

        let mut dup = bs.clone();
        dup[2].key = dup[0].key;
        assert_eq!(
            build_table(&dup, 13),
            Err(MaglevError::DuplicateKey(ks[0].to_vec()))
        );
        // Duplicates count even at weight 0.
        dup[2].weight = 0;
        assert!(matches!(
            build_table(&dup, 13),
            Err(MaglevError::DuplicateKey(_))
        ));

        let mut zero = bs.clone();
        zero[1].id = 0;
        assert_eq!(
            build_table(&zero, 13),
            Err(MaglevError::ZeroId(ks[1].to_vec()))
        );

        let shown = MaglevError::ZeroId(ks[1].to_vec()).to_string();
        assert!(shown.contains("0a000002"), "{shown}");
    }

    #[test]
    fn no_weight_gives_empty_table() {
        assert_eq!(build_table(&[], 13), Ok(vec![0; 13]));
        let ks = keys(5);
        let bs = backends(&ks, |_| 0);
        assert_eq!(build_table(&bs, 13), Ok(vec![0; 13]));
        assert!(shares(&[0; 13]).is_empty());
        // Zero-weight backends still do not fit tables they outnumber? They
        // do: they take no slot.
        assert_eq!(build_table(&bs, 2), Ok(vec![0; 2]));
        // Size is still checked.
        assert_eq!(build_table(&[], 12), Err(MaglevError::SizeNotPrime(12)));
    }

    #[test]
    fn small_tables_are_full() {
        for size in [2, 3, 5, 7] {
            let ks = keys(size);
            let bs = backends(&ks, |_| 1);
            let table = build_table(&bs, size).expect("valid input");
            let mut ids = table.clone();
            ids.sort_unstable();
            // As many backends as slots: each gets exactly one.
            assert_eq!(ids, (1..=size).collect::<Vec<_>>());
        }
    }

    #[test]
    fn changed_slots_yields_exactly_the_differences() {
        let old = [1, 2, 3, 4, 5, 6, 7];
        let new = [1, 9, 3, 4, 8, 6, 0];
        let got: Vec<(u32, u32)> = changed_slots(&old, &new).collect();
        assert_eq!(got, [(1, 9), (4, 8), (6, 0)]);
        assert_eq!(changed_slots(&old, &old).count(), 0);
        assert!((moved_fraction(&old, &new) - 3.0 / 7.0).abs() < 1e-12);

        // Different lengths: every slot of new.
        let longer = [1, 2, 3, 4, 5, 6, 7, 8];
        let got: Vec<(u32, u32)> = changed_slots(&old, &longer).collect();
        assert_eq!(got, (0..8).map(|i| (i, i + 1)).collect::<Vec<_>>());
        assert_eq!(moved_fraction(&old, &longer), 1.0);
        assert_eq!(moved_fraction(&old, &[]), 0.0);

        // On real tables: applying the changes to old gives new.
        let ks = keys(20);
        let bs = backends(&ks, |_| 1);
        let before = build_table(&bs, M).expect("valid input");
        let after = build_table(&bs[1..], M).expect("valid input");
        let mut patched = before.clone();
        let mut count = 0;
        for (slot, value) in changed_slots(&before, &after) {
            assert_ne!(before[slot as usize], value);
            patched[slot as usize] = value;
            count += 1;
        }
        assert_eq!(patched, after);
        let differing = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(count, differing);
    }

    #[test]
    fn shares_counts_fractions() {
        let s = shares(&[1, 1, 2, 0]);
        assert_eq!(s.len(), 2);
        assert!((s[&1] - 0.5).abs() < 1e-12);
        assert!((s[&2] - 0.25).abs() < 1e-12);
    }

    #[test]
    #[ignore = "timing; run with --release -- --ignored --nocapture"]
    fn build_time_1000_backends() {
        let ks = keys(1000);
        let bs = backends(&ks, |_| 1);
        let runs = 50;
        let mut best = std::time::Duration::MAX;
        for _ in 0..runs {
            let start = std::time::Instant::now();
            let table = build_table(&bs, M).expect("valid input");
            best = best.min(start.elapsed());
            std::hint::black_box(table);
        }
        println!("build 1000 backends at {M}: best of {runs} {best:?}");
    }
}
