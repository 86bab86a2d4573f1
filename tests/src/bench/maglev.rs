//! Maglev tables: build time and memory, balance, and how much of the table
//! moves when one backend leaves or joins, against the ideal 1/N.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use lb_userspace::maglev::{
    build_table, moved_fraction, shares, update::update_table, MaglevBackend,
};
use serde::{Deserialize, Serialize};

use super::Spread;

/// An allocator that counts live and peak heap bytes (the bench binary
/// installs it), so table builds report the memory they really use.
pub struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
    }
}

/// Resets the heap's peak to the live bytes; returns the live bytes (other
/// benchmarks measure their peaks with it too).
pub fn heap_reset_peak() -> usize {
    reset_peak()
}

/// The most heap bytes live since the last reset.
pub fn heap_peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Resets the peak to the live bytes; returns the live bytes.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// One (N, M) point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaglevCase {
    /// Backends.
    pub backends: u32,
    /// Table size.
    pub table_size: u32,
    /// Build time, ms.
    pub build_ms: Spread,
    /// Heap used by one build beyond what was live before (table included),
    /// bytes; zero when the counting allocator is not installed.
    pub build_heap_bytes: u64,
    /// The table itself, bytes.
    pub table_bytes: u64,
    /// Largest share over mean share (1.0 = perfect balance).
    pub imbalance: f64,
    /// Fraction of slots that change when one backend is removed (mean).
    pub moved_on_removal: f64,
    /// The same with `maglev_mode = "minimal"` (an update of the table in
    /// service).
    #[serde(default)]
    pub moved_on_removal_minimal: f64,
    /// Fraction that changes when one is added, `maglev_mode = "minimal"`.
    #[serde(default)]
    pub moved_on_addition_minimal: f64,
    /// Time of one minimal update (a removal), ms.
    #[serde(default)]
    pub update_ms: Option<Spread>,
    /// Imbalance (max/mean) after the minimal updates.
    #[serde(default)]
    pub imbalance_minimal: f64,
    /// Fraction of slots that change when one backend is added (mean).
    pub moved_on_addition: f64,
    /// 1/N.
    pub ideal: f64,
}

/// All points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaglevResults {
    /// The points.
    pub cases: Vec<MaglevCase>,
    /// The tables written into a loaded data plane (None in results from
    /// before this was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<super::maglev_writes::TableWrites>,
}

fn addresses(n: u32) -> Vec<[u8; 4]> {
    (0..n)
        .map(|i| [198, 18, (i >> 8) as u8 + 10, i as u8])
        .collect()
}

/// The table for `keys` (weight 100 each), every backend numbered by its
/// place in `numbering` (from 1), so tables of different backend sets
/// compare slot by slot. lbd builds the same table from the same set.
pub fn table_by_address(keys: &[[u8; 4]], numbering: &[[u8; 4]], size: u32) -> Vec<u32> {
    build_table(&members_by_address(keys, numbering), size).unwrap_or_default()
}

/// `keys` as Maglev members of weight 100, numbered by their place in
/// `numbering` (from 1).
fn members_by_address<'a>(keys: &'a [[u8; 4]], numbering: &[[u8; 4]]) -> Vec<MaglevBackend<'a>> {
    keys.iter()
        .map(|key| MaglevBackend {
            key,
            weight: 100,
            id: numbering
                .iter()
                .position(|a| a == key)
                .map_or(0, |i| i as u32 + 1),
        })
        .collect()
}

/// `table_by_address`, as a minimal-change update of `prev`.
fn update_by_address(prev: &[u32], keys: &[[u8; 4]], numbering: &[[u8; 4]], size: u32) -> Vec<u32> {
    update_table(prev, &members_by_address(keys, numbering), size).unwrap_or_default()
}

/// Measures every (N, M) point: `rounds` builds each, up to 10 removals
/// and additions.
pub fn run(points: &[(u32, u32)], rounds: u32) -> MaglevResults {
    let mut cases = Vec::new();
    for &(n, size) in points {
        let keys = addresses(n + 1);
        let (base, extra) = keys.split_at(n as usize);
        let mut times = Vec::new();
        let mut heap = 0u64;
        let mut built = Vec::new();
        for _ in 0..rounds {
            let live = reset_peak();
            let started = Instant::now();
            built = table_by_address(base, base, size);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            heap = heap.max((PEAK.load(Ordering::Relaxed).saturating_sub(live)) as u64);
        }
        let s = shares(&built);
        let mean = 1.0 / f64::from(n);
        let imbalance = s.values().fold(0.0f64, |m, v| m.max(*v)) / mean;
        let samples = n.min(10);
        let mut removal = 0.0;
        let mut removal_minimal = 0.0;
        let mut update_times = Vec::new();
        let mut imbalance_minimal = 0.0f64;
        for k in 0..samples {
            let gone = (k * n / samples) as usize;
            let rest: Vec<[u8; 4]> = base
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gone)
                .map(|(_, a)| *a)
                .collect();
            removal += moved_fraction(&built, &table_by_address(&rest, base, size));
            let started = Instant::now();
            let updated = update_by_address(&built, &rest, base, size);
            update_times.push(started.elapsed().as_secs_f64() * 1000.0);
            removal_minimal += moved_fraction(&built, &updated);
            let mean_rest = 1.0 / f64::from(n.saturating_sub(1).max(1));
            let top = shares(&updated).values().fold(0.0f64, |m, v| m.max(*v));
            imbalance_minimal = imbalance_minimal.max(top / mean_rest);
        }
        let mut with_extra = base.to_vec();
        with_extra.extend_from_slice(extra);
        let addition = moved_fraction(&built, &table_by_address(&with_extra, &with_extra, size));
        let addition_minimal = moved_fraction(
            &built,
            &update_by_address(&built, &with_extra, &with_extra, size),
        );
        let case = MaglevCase {
            backends: n,
            table_size: size,
            build_ms: Spread::of(&times),
            build_heap_bytes: heap,
            table_bytes: u64::from(size) * 4,
            imbalance,
            moved_on_removal: removal / f64::from(samples),
            moved_on_addition: addition,
            moved_on_removal_minimal: removal_minimal / f64::from(samples),
            moved_on_addition_minimal: addition_minimal,
            update_ms: Some(Spread::of(&update_times)),
            imbalance_minimal,
            ideal: mean,
        };
        eprintln!(
            "bench: maglev N={n:>5} M={size:>7}: build {:.3} ms, imbalance {:.3}, removal moves {:.4} ({:.2} x 1/N); minimal update: {:.2} x 1/N",
            case.build_ms.median,
            case.imbalance,
            case.moved_on_removal,
            case.moved_on_removal / case.ideal,
            case.moved_on_removal_minimal / case.ideal
        );
        cases.push(case);
    }
    MaglevResults {
        cases,
        writes: None,
    }
}
