//! Maglev: a flow's hash picks a slot of the VIP's live table, the slot
//! names the backend. The tables are built by lbd; this side only reads.

use lb_common::{
    consts::{maglev_index, BACKEND_F_ALIVE, NO_BACKEND},
    hash::{flow_hash, maglev_hash},
    Backend, FlowKey, VipMeta,
};

use crate::maps::{BACKENDS, MAGLEV};

/// The backend Maglev gives this flow, with the flow's hash (`flow_hash`)
/// it used: the connection table keeps it for the tunnel modes' outer
/// headers. None when the VIP has no live backend in that slot.
#[inline(always)]
pub fn pick_hashed(vip: &VipMeta, key: &FlowKey) -> Option<(u32, &'static Backend, u32)> {
    let hash = flow_hash(key);
    pick_with(vip, key, hash).map(|(id, backend)| (id, backend, hash))
}

/// `pick_hashed` for a flow whose `flow_hash` is already known: (id,
/// backend).
#[inline(always)]
pub fn pick_with(vip: &VipMeta, key: &FlowKey, hash: u32) -> Option<(u32, &'static Backend)> {
    let id = *slot(vip, key, hash)?;
    if id == NO_BACKEND {
        return None;
    }
    let backend = live_backend(id)?;
    Some((id, backend))
}

/// Starts loading the Maglev slot `pick_with(vip, key, hash)` will read, so
/// that its cache miss overlaps others (the connection table's second
/// bucket, the half-open bucket) instead of following them: a random
/// slot of a table of 8-byte slots (512 KiB at the default 65537) is
/// rarely in the caches.
#[inline(always)]
pub fn warm(vip: &VipMeta, key: &FlowKey, hash: u32) {
    if let Some(id) = slot(vip, key, hash) {
        // SAFETY: a live element of the map; the value is not used.
        let _ = unsafe { core::ptr::read_volatile(id) };
    }
}

/// The slot of the VIP's live Maglev table that the flow of `key`, whose
/// `flow_hash` is `hash`, falls in: by that hash, or by its client's
/// address alone on a VIP with source affinity (`source_hash`). None
/// while the VIP has no table.
#[inline(always)]
fn slot(vip: &VipMeta, key: &FlowKey, hash: u32) -> Option<&'static u32> {
    if vip.table_size == 0 {
        return None;
    }
    MAGLEV.get(maglev_index(
        vip.id,
        vip.active_table & 1,
        lb_maglev_hash(vip.affinity(), key, hash) % vip.table_size,
    ))
}

/// `maglev_hash` in a function of its own: its branch (source affinity
/// or not) stays inside it, instead of doubling the paths the verifier
/// walks after each of the pick's call sites.
#[inline(never)]
fn lb_maglev_hash(affinity: u32, key: &FlowKey, hash: u32) -> u32 {
    maglev_hash(affinity, key, hash)
}

/// The backend with this id if it can take packets.
#[inline(always)]
pub fn live_backend(id: u32) -> Option<&'static Backend> {
    let backend = BACKENDS.get(id)?;
    if backend.flags & BACKEND_F_ALIVE == 0 {
        return None;
    }
    Some(backend)
}
