//! Minimal-change table updates (`maglev_mode = "minimal"`): from the
//! table in service, a change moves only the slots it must. The slots of a
//! removed backend, and the excess of a backend over its new quota (floor
//! or ceiling of its exact weighted share, whichever is closer to what it
//! holds), are freed; backends under quota take free slots in the order of
//! their own Maglev permutations (a stable matching: each backend looks at
//! its next position and takes it if free). One removal moves the ideal
//! 1/N of the slots, one addition 1/(N+1), with Maglev's balance (every
//! backend within one slot of its share). The price: the table depends on
//! the history of changes, not only on the set (see `MaglevMode`).

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
};

use super::{
    build_table, checked_and_sorted, inverse_mod, permutation, MaglevBackend, MaglevError,
};

/// A validated backend with weight > 0.
#[derive(Clone, Copy)]
struct Member<'a> {
    key: &'a [u8],
    weight: u64,
    id: u32,
}

/// Same checks, errors and error order as the full build's; returns the backends
/// with weight > 0 sorted by key.
fn validate<'a>(backends: &[MaglevBackend<'a>], size: u32) -> Result<Vec<Member<'a>>, MaglevError> {
    let sorted = checked_and_sorted(backends, size)?;
    let members: Vec<Member> = sorted
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| Member {
            key: b.key,
            weight: u64::from(b.weight),
            id: b.id,
        })
        .collect();
    if members.len() > size as usize {
        return Err(MaglevError::TooManyBackends {
            backends: members.len(),
            size,
        });
    }
    Ok(members)
}

/// Quotas for an update: floor or ceil of the exact share, the one closest
/// to `loads` (slots held now); the sum is then fixed to `size` by lowering
/// the smallest remainders (ties: later key) or raising the largest (ties:
/// earlier key); a weighted backend left at 0 then gets one slot.
fn sticky_quotas(members: &[Member], loads: &[u64], size: u32) -> Vec<u64> {
    let size = u64::from(size);
    let total: u64 = members.iter().map(|m| m.weight).sum();
    let (mut fl, mut rem, mut q) = (Vec::new(), Vec::new(), Vec::new());
    for (m, &load) in members.iter().zip(loads) {
        let (f, r) = (size * m.weight / total, size * m.weight % total);
        fl.push(f);
        rem.push(r);
        q.push(load.clamp(f, f + u64::from(r > 0)));
    }
    let sum: u64 = q.iter().sum();
    if sum > size {
        let mut cand: Vec<(u64, Reverse<usize>)> = (0..q.len())
            .filter(|&i| q[i] > fl[i])
            .map(|i| (rem[i], Reverse(i)))
            .collect();
        cand.sort_unstable();
        for &(_, Reverse(i)) in cand.iter().take((sum - size) as usize) {
            q[i] -= 1;
        }
    } else if sum < size {
        let mut cand: Vec<(Reverse<u64>, usize)> = (0..q.len())
            .filter(|&i| rem[i] > 0 && q[i] == fl[i])
            .map(|i| (Reverse(rem[i]), i))
            .collect();
        cand.sort_unstable();
        for &(_, i) in cand.iter().take((size - sum) as usize) {
            q[i] += 1;
        }
    }
    // As in the full build: no weighted backend is left without a slot.
    let weights: Vec<u64> = members.iter().map(|m| m.weight).collect();
    super::one_slot_each(&weights, &mut q);
    q
}

/// A backend's Maglev permutation, walked position by position.
struct Walker {
    offset: u32,
    skip: u32,
    weight: u64,
    id: u32,
    /// Slots still wanted.
    demand: u64,
    /// Positions examined; the next is position `examined`, slot `next`.
    examined: u64,
    next: u32,
    credit: u64,
}

impl Walker {
    fn new(m: &Member, size: u32, demand: u64) -> Self {
        let (offset, skip) = permutation(m.key, size);
        Walker {
            offset,
            skip,
            weight: m.weight,
            id: m.id,
            demand,
            examined: 0,
            next: offset,
            credit: 0,
        }
    }

    /// Position of `slot` in the permutation, given `inv = skip^-1`.
    fn position(&self, slot: u32, inv: u32, size: u32) -> u64 {
        let d = (u64::from(slot) + u64::from(size) - u64::from(self.offset)) % u64::from(size);
        d * u64::from(inv) % u64::from(size)
    }

    /// Round of the walker's k-th examination (k from 1).
    fn round(&self, k: u64, max_w: u64) -> u64 {
        (k * max_w).div_ceil(self.weight)
    }

    fn advance(&mut self, size: u32) -> u32 {
        let s = self.next;
        let n = s + self.skip;
        self.next = if n >= size { n - size } else { n };
        self.examined += 1;
        s
    }
}

/// The table and a bitmap of its free slots.
struct Board<'t> {
    table: &'t mut [u32],
    bits: Vec<u64>,
    free: u32,
}

impl Board<'_> {
    fn is_free(&self, s: u32) -> bool {
        self.bits[(s >> 6) as usize] >> (s & 63) & 1 == 1
    }
    fn take(&mut self, s: u32, id: u32) {
        self.bits[(s >> 6) as usize] &= !(1 << (s & 63));
        self.table[s as usize] = id;
        self.free -= 1;
    }
}

/// Fills the free slots (those holding 0) in score order: each pair
/// (walker, free slot) in order of (round of examination, walker order),
/// taken if the slot is free and the walker wants more. Three equivalent
/// executions: rounds (every walker examines one position per round, or
/// per `max_w / w` rounds by credit) while many slots are free; then all
/// remaining (walker, free slot) pairs sorted; or, if that is too many
/// pairs, an event queue.
fn stable_fill(table: &mut [u32], walkers: &mut [Walker]) {
    let size = table.len() as u32;
    let mut bits = vec![0u64; table.len().div_ceil(64)];
    let mut free = 0;
    for (s, &v) in table.iter().enumerate() {
        if v == 0 {
            bits[s >> 6] |= 1 << (s & 63);
            free += 1;
        }
    }
    let mut board = Board { table, bits, free };
    if walkers.is_empty() || board.free == 0 {
        return;
    }
    let max_w = walkers.iter().map(|w| w.weight).max().unwrap_or(1);
    let min_w = walkers.iter().map(|w| w.weight).min().unwrap_or(1);
    let mut hungry: Vec<usize> = (0..walkers.len())
        .filter(|&i| walkers[i].demand > 0)
        .collect();
    // Below this many free slots a walk takes size / free probes a claim;
    // listing the pairs is cheaper.
    let tail_at = (size.isqrt() / 2).max(1);
    if max_w / min_w <= 64 {
        let equal = max_w == min_w;
        'rounds: while board.free > tail_at && !hungry.is_empty() {
            let mut done = false;
            for &i in &hungry {
                let w = &mut walkers[i];
                if !equal {
                    w.credit += w.weight;
                    if w.credit < max_w {
                        continue;
                    }
                    w.credit -= max_w;
                }
                let s = w.advance(size);
                if board.is_free(s) {
                    board.take(s, w.id);
                    w.demand -= 1;
                    done |= w.demand == 0;
                    if board.free <= tail_at {
                        break 'rounds;
                    }
                }
            }
            if done {
                hungry.retain(|&i| walkers[i].demand > 0);
            }
        }
        hungry.retain(|&i| walkers[i].demand > 0);
    }
    if board.free == 0 || hungry.is_empty() {
        return;
    }
    // A walker cut off mid-round keeps its credit; its next examination
    // is still at round(examined + 1), the formula below.
    let free_slots: Vec<u32> = (0..size).filter(|&s| board.is_free(s)).collect();
    if (free_slots.len() as u64) * (hungry.len() as u64) <= 1 << 20 {
        let mut pairs = Vec::with_capacity(free_slots.len() * hungry.len());
        for &i in &hungry {
            let w = &walkers[i];
            let inv = inverse_mod(w.skip, size);
            for &s in &free_slots {
                // Positions before `examined` were free-and-wanted never,
                // since this walker would have taken them.
                let k = w.position(s, inv, size) + 1;
                pairs.push((w.round(k, max_w), i as u32, s));
            }
        }
        pairs.sort_unstable();
        for (_, i, s) in pairs {
            let w = &mut walkers[i as usize];
            if w.demand > 0 && board.is_free(s) {
                board.take(s, w.id);
                w.demand -= 1;
                if board.free == 0 {
                    return;
                }
            }
        }
    } else {
        let mut queue: BinaryHeap<Reverse<(u64, usize)>> = hungry
            .iter()
            .map(|&i| Reverse((walkers[i].round(walkers[i].examined + 1, max_w), i)))
            .collect();
        while let Some(Reverse((_, i))) = queue.pop() {
            let w = &mut walkers[i];
            let s = w.advance(size);
            if board.is_free(s) {
                board.take(s, w.id);
                w.demand -= 1;
                if board.free == 0 {
                    return;
                }
            }
            if w.demand > 0 {
                queue.push(Reverse((w.round(w.examined + 1, max_w), i)));
            }
        }
    }
}

/// The table for `backends` changed from `prev` (the table in service)
/// with the fewest slot changes that give every backend its quota (floor
/// or ceil of its exact share). Same validation as [`build_table`]. Falls
/// back to [`build_table`] if `prev` has another length, no backend is
/// left, or two weighted backends share an id (their loads could not be
/// told apart).
///
/// # Errors
///
/// Those of [`build_table`].
pub fn update_table(
    prev: &[u32],
    backends: &[MaglevBackend],
    size: u32,
) -> Result<Vec<u32>, MaglevError> {
    let members = validate(backends, size)?;
    if prev.len() != size as usize || members.is_empty() {
        return build_table(backends, size);
    }
    let mut index: HashMap<u32, usize> = HashMap::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        if index.insert(m.id, i).is_some() {
            return build_table(backends, size);
        }
    }
    let mut table = prev.to_vec();
    let mut loads = vec![0u64; members.len()];
    for v in table.iter_mut() {
        match index.get(v) {
            Some(&i) => loads[i] += 1,
            None => *v = 0, // removed, weight 0, or unknown: free
        }
    }
    let q = sticky_quotas(&members, &loads, size);
    // Over quota: free the excess, latest in the backend's own permutation.
    let over: HashMap<u32, usize> = (0..members.len())
        .filter(|&i| loads[i] > q[i])
        .map(|i| (members[i].id, i))
        .collect();
    if !over.is_empty() {
        let mut slots: HashMap<u32, Vec<u32>> = over.keys().map(|&id| (id, Vec::new())).collect();
        for (s, v) in table.iter().enumerate() {
            if let Some(list) = slots.get_mut(v) {
                list.push(s as u32);
            }
        }
        let mut ids: Vec<u32> = over.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let i = over[&id];
            let w = Walker::new(&members[i], size, 0);
            let inv = inverse_mod(w.skip, size);
            let mut ranked: Vec<(u64, u32)> = slots[&id]
                .iter()
                .map(|&s| (w.position(s, inv, size), s))
                .collect();
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            for &(_, s) in ranked.iter().take((loads[i] - q[i]) as usize) {
                table[s as usize] = 0;
            }
            loads[i] = q[i];
        }
    }
    let mut walkers: Vec<Walker> = members
        .iter()
        .enumerate()
        .filter(|&(i, _)| q[i] > loads[i])
        .map(|(i, m)| Walker::new(m, size, q[i] - loads[i]))
        .collect();
    stable_fill(&mut table, &mut walkers);
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 65_537;

    fn keys(n: u32) -> Vec<[u8; 4]> {
        (0..n).map(|i| (0xc612_0001u32 + i).to_be_bytes()).collect()
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

    fn count(table: &[u32], id: u32) -> u64 {
        table.iter().filter(|&&v| v == id).count() as u64
    }

    fn moved(a: &[u32], b: &[u32]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn a_light_backend_added_beside_heavy_ones_still_gets_a_slot() {
        // As in the full build: 20 backends at the largest weight, then
        // one at weight 1 joins (its exact share, 0.33 slots, rounds to 0).
        let ks = keys(21);
        let heavy = backends(&ks[..20], |_| 10_000);
        let prev = build_table(&heavy, M).expect("valid input");
        let all = backends(&ks, |i| if i == 20 { 1 } else { 10_000 });
        let table = update_table(&prev, &all, M).expect("valid input");
        assert_eq!(count(&table, 21), 1, "the weight-1 backend has one slot");
        assert!(!table.contains(&0), "every slot is filled");
        assert!(moved(&prev, &table) <= 1, "only its slot moved");
    }

    /// Every weighted backend within one slot of its exact share, no
    /// empty slot.
    fn assert_balanced(bs: &[MaglevBackend], table: &[u32]) {
        let total: f64 = bs.iter().map(|b| f64::from(b.weight)).sum();
        for b in bs {
            let ideal = table.len() as f64 * f64::from(b.weight) / total;
            let got = count(table, b.id) as f64;
            assert!(
                (got - ideal).abs() < 1.0,
                "id {} weight {}: {got} slots, ideal {ideal:.2}",
                b.id,
                b.weight
            );
        }
        assert!(!table.contains(&0));
    }

    #[test]
    fn a_removal_or_an_addition_moves_only_what_must_move() {
        for n in [3u32, 10, 100, 1000] {
            let ks = keys(n + 1);
            let bs = backends(&ks[..n as usize], |i| i as u32 % 3 + 1);
            let t = update_table(&[], &bs, M).expect("first table");
            assert_eq!(
                t,
                build_table(&bs, M).expect("maglev"),
                "starts from Maglev"
            );
            // Removal: exactly the removed backend's slots move.
            let mut rest = bs.clone();
            let gone = rest.remove(n as usize / 2);
            let u = update_table(&t, &rest, M).expect("update");
            assert_eq!(moved(&t, &u) as u64, count(&t, gone.id), "n={n}");
            assert_balanced(&rest, &u);
            // Addition: exactly the newcomer's slots move.
            let mut with = bs.clone();
            with.push(MaglevBackend {
                key: &ks[n as usize],
                weight: 2,
                id: n + 1,
            });
            let u = update_table(&t, &with, M).expect("update");
            assert_eq!(moved(&t, &u) as u64, count(&u, n + 1), "n={n}");
            assert_balanced(&with, &u);
            // Same set: nothing moves; input order does not matter.
            assert_eq!(update_table(&t, &bs, M).expect("same"), t);
            let mut rev = with.clone();
            rev.reverse();
            assert_eq!(update_table(&t, &rev, M).expect("reversed"), u);
        }
    }

    #[test]
    fn a_weight_change_moves_the_share_difference() {
        let ks = keys(100);
        let bs = backends(&ks, |_| 10);
        let t = build_table(&bs, M).expect("table");
        let mut heavier = bs.clone();
        heavier[7].weight = 20;
        let u = update_table(&t, &heavier, M).expect("update");
        assert_balanced(&heavier, &u);
        let gained = count(&u, 8) - count(&t, 8);
        assert_eq!(moved(&t, &u) as u64, gained);
        let v = update_table(&u, &bs, M).expect("back");
        assert_balanced(&bs, &v);
        assert_eq!(moved(&u, &v) as u64, gained);
    }

    #[test]
    fn any_previous_table_gives_a_balanced_one() {
        let ks = keys(50);
        let bs = backends(&ks, |i| i as u32 % 2 + 1);
        for prev in [
            build_table(&bs, M).expect("table"),
            vec![12_345; M as usize],
            vec![1; 13],
            vec![0; M as usize],
        ] {
            let u = update_table(&prev, &bs, M).expect("update");
            assert_balanced(&bs, &u);
        }
        assert!(update_table(&[], &[], M)
            .expect("empty")
            .iter()
            .all(|&v| v == 0));
    }

    #[test]
    fn bad_input_is_refused_as_maglev_refuses_it() {
        let ks = keys(3);
        let mut bs = backends(&ks, |_| 1);
        let t = build_table(&bs, M).expect("table");
        assert!(matches!(
            update_table(&t, &bs, 65_536),
            Err(MaglevError::SizeNotPrime(_))
        ));
        bs[1].id = 0;
        assert!(matches!(
            update_table(&t, &bs, M),
            Err(MaglevError::ZeroId(_))
        ));
        let mut dup = backends(&ks, |_| 1);
        dup[2].key = dup[0].key;
        assert!(matches!(
            update_table(&t, &dup, M),
            Err(MaglevError::DuplicateKey(_))
        ));
    }

    #[test]
    fn a_long_sequence_of_changes_stays_balanced_and_moves_the_minimum() {
        let ks = keys(200);
        let mut present: Vec<usize> = (0..150).collect();
        let mut table = build_table(&backends(&ks[..150], |_| 1), M).expect("table");
        let mut seed = 7u64;
        for step in 0..60 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let remove = step % 2 == 0;
            let before = present.len();
            if remove {
                present.remove((seed >> 33) as usize % present.len());
            } else if let Some(i) = (0..200).find(|i| !present.contains(i)) {
                present.push(i);
            }
            let bs: Vec<MaglevBackend> = present
                .iter()
                .map(|&i| MaglevBackend {
                    key: &ks[i],
                    weight: 1,
                    id: i as u32 + 1,
                })
                .collect();
            let next = update_table(&table, &bs, M).expect("update");
            assert_balanced(&bs, &next);
            let ideal = M as f64 / before.max(present.len()) as f64;
            assert!(
                (moved(&table, &next) as f64) < ideal + 2.0,
                "step {step}: {} moved, ideal {ideal:.1}",
                moved(&table, &next)
            );
            table = next;
        }
    }
}
