//! The balancer's writes: one VIP's backends and table copies in the
//! order packets can take, removals, the tunnel config, and the ids and
//! generations they use.
//!
//! Split by concern: one VIP's steps (`vip`), its Maglev table
//! (`maglev_table`), backends' entries, ids and generations (`backends`),
//! and the node-wide entries (`node_entries`).

use lb_common::Backend;

mod backends;
mod maglev_table;
mod node_entries;
mod vip;

/// The VIP id a retired backend's entry names: none (VIP ids are below
/// `MAX_VIPS`), so no VIP adopts it and nothing looks it up for a VIP.
pub(crate) const RETIRED_VIP_ID: u16 = u16::MAX;

/// A removed backend's entry: no address, no VIP (`RETIRED_VIP_ID`), and a
/// generation of its own, never given to a backend. The pinned map keeps
/// it, so an lbd started later (which adopts the maps) numbers its
/// generations above it: otherwise, with the removed backend's entry
/// cleared, it could hand the removed backend's id and generation to a
/// backend of another VIP, and the flows still pinned to the removed one
/// (idle since, within their timeout) would follow it there.
pub(crate) fn retired_backend(generation: u32) -> Backend {
    Backend {
        generation,
        vip_id: RETIRED_VIP_ID,
        ..Backend::default()
    }
}
