//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016): this
//! module owns turning a VIP's set of backends into the lookup table the XDP
//! program reads (one backend id per slot), plus the helpers lbd uses to
//! write only the slots that changed and to report how a table is shared.
//! [`update`] holds the other builder, for `maglev_mode = "minimal"`: a
//! change to the table in service that moves only the slots it must.
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

#[cfg(test)]
mod tests;
pub mod update;

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
///
/// Then every backend (all have a weight here) gets at least one slot, as
/// the config promises and a weight asks for: a backend whose share
/// rounds to 0 (weight 1 beside heavy ones) takes a slot from the largest
/// quota (ties to the earlier key), so every node builds the same table.
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
    give_every_backend_a_slot(cursors);
}

/// Raises every zero quota of a weighted backend to one slot, taking the
/// slots from the largest quotas (ties to the earlier key, cursors being
/// in key order), so light backends are never left out of the table and
/// the result depends only on the backend set.
fn give_every_backend_a_slot(cursors: &mut [Cursor]) {
    if !cursors.iter().any(|c| c.weight > 0 && c.quota == 0) {
        return;
    }
    let weights: Vec<u64> = cursors.iter().map(|c| c.weight).collect();
    let mut quotas: Vec<u64> = cursors.iter().map(|c| c.quota).collect();
    one_slot_each(&weights, &mut quotas);
    for (c, quota) in cursors.iter_mut().zip(quotas) {
        c.quota = quota;
    }
}

/// `quotas` (in key order, beside their `weights`) with every weighted
/// backend's zero raised to one slot, each taken from the largest quota
/// (ties to the earlier key): a deterministic function of its inputs, as
/// both table builds (consistent and minimal) need. The sum stays the
/// same; there is a quota of 2 or more to take from while one is 0, as
/// there are no more weighted backends than slots.
pub(crate) fn one_slot_each(weights: &[u64], quotas: &mut [u64]) {
    let starved: Vec<usize> = (0..quotas.len())
        .filter(|&i| weights.get(i).is_some_and(|&w| w > 0) && quotas[i] == 0)
        .collect();
    if starved.is_empty() {
        return;
    }
    let mut largest: BinaryHeap<(u64, Reverse<usize>)> = quotas
        .iter()
        .enumerate()
        .filter(|(_, &q)| q > 1)
        .map(|(i, &q)| (q, Reverse(i)))
        .collect();
    for i in starved {
        let Some((quota, Reverse(donor))) = largest.pop() else {
            return;
        };
        quotas[donor] -= 1;
        quotas[i] = 1;
        if quota - 1 > 1 {
            largest.push((quota - 1, Reverse(donor)));
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
mod quota_tests {
    use super::*;

    /// Slots per backend id in `table`.
    fn counts(table: &[u32]) -> BTreeMap<u32, usize> {
        let mut out = BTreeMap::new();
        for &id in table {
            *out.entry(id).or_insert(0) += 1;
        }
        out
    }

    #[test]
    fn a_light_backend_beside_heavy_ones_still_gets_a_slot() {
        // 20 backends at the largest weight and one at weight 1: its exact
        // share of 65,537 slots is 0.33, which rounds to nothing.
        let keys: Vec<[u8; 4]> = (0..21u32)
            .map(|i| (0x0a00_0001 + i).to_be_bytes())
            .collect();
        let backends: Vec<MaglevBackend> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| MaglevBackend {
                key: k,
                weight: if i == 20 { 1 } else { 10_000 },
                id: i as u32 + 1,
            })
            .collect();
        let table = build_table(&backends, 65_537).expect("valid input");
        let got = counts(&table);
        assert_eq!(got.get(&21), Some(&1), "the weight-1 backend has one slot");
        assert_eq!(got.values().sum::<usize>(), 65_537);
        assert!(!got.contains_key(&0), "every slot is filled");
        // Taken from one heavy backend: the rest keep floor or ceil of
        // their share, 3276 or 3277.
        let heavy: Vec<usize> = (1..=20).map(|id| got[&id]).collect();
        assert!(
            heavy.iter().all(|&n| (3276..=3277).contains(&n)),
            "{heavy:?}"
        );
        // The same set in another order gives the same table.
        let mut reversed = backends.clone();
        reversed.reverse();
        assert_eq!(build_table(&reversed, 65_537).expect("valid input"), table);
    }

    #[test]
    fn zero_quotas_take_from_the_largest_earliest_first() {
        let keys: Vec<[u8; 4]> = (0..4u32).map(|i| i.to_be_bytes()).collect();
        let weights = [100u32, 100, 1, 1];
        let mut cursors: Vec<Cursor> = keys
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (k, weight))| {
                Cursor::new(
                    &MaglevBackend {
                        key: k,
                        weight,
                        id: i as u32 + 1,
                    },
                    5,
                )
            })
            .collect();
        set_quotas(&mut cursors, 5, 202);
        // Proportional: 2.48, 2.48, 0.02, 0.02 -> 3, 2, 0, 0 (largest
        // remainder, ties to the earlier key); then the two light ones
        // take one each from the largest quota, the earlier on a tie:
        // 3 -> 2, then 2 (earlier) -> 1.
        let quotas: Vec<u64> = cursors.iter().map(|c| c.quota).collect();
        assert_eq!(quotas, [1, 2, 1, 1]);
    }
}
