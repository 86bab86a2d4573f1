//! The decap program's maps, typed, from a freshly loaded object or from
//! their pins: written in place (new entries first, stale ones after, so a
//! change never opens a gap; stale ones first where the new would not fit
//! otherwise), put back as they were if a write fails, and read back for
//! `status`.

mod handles;
mod hash_writes;
mod keys;
mod partly_applied;
mod read_back;
mod sync;
#[cfg(test)]
mod tests;
mod trie_writes;

use aya::maps::{lpm_trie::LpmTrie, Array, HashMap, PerCpuArray};
use lb_common::{
    decap::{DecapAddr, DecapConfig},
    VipKey,
};

use crate::pins::PINNED_MAPS;

pub use handles::{pin, take};
pub(crate) use keys::ip_of;
pub use keys::{decap_addr, vip_key};
pub use partly_applied::PartlyApplied;

/// How many maps the program has (all pinned).
pub const MAP_COUNT: usize = PINNED_MAPS.len();

/// Typed handles on the maps: owned (`MapData`, from pins) or
/// borrowed from a freshly loaded object (`&mut MapData`).
pub struct Maps<T> {
    addrs: HashMap<T, DecapAddr, u32>,
    vips: HashMap<T, VipKey, u32>,
    config: Array<T, DecapConfig>,
    counters: PerCpuArray<T, u64>,
    sources4: LpmTrie<T, [u8; 4], u32>,
    sources6: LpmTrie<T, [u8; 16], u32>,
}
