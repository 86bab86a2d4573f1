//! Which maps are pinned, and which of them go together when a start
//! adopts what a previous lbd pinned (or replaces it): the lists the
//! adoption plan and the staging of replaced maps are checked against.

use lb_common::consts::names;

/// The maps the packet path reads and writes: pinned so they outlive lbd.
/// (Benchmark-only maps are not.)
pub(crate) const PINNED_MAPS: [&str; 21] = [
    names::MAP_VIPS,
    names::MAP_VIP_INDEX,
    names::MAP_MAGLEV,
    names::MAP_BACKENDS,
    names::MAP_CONNTRACK,
    names::MAP_FLOW_BUCKETS,
    names::MAP_HALF_OPEN,
    names::MAP_CONFIG,
    names::MAP_PACKET_STATE,
    names::MAP_VIP_STATS,
    names::MAP_BACKEND_STATS,
    names::MAP_EVENTS,
    names::MAP_EVENT_LAST,
    names::MAP_NAT_BUCKETS,
    names::MAP_NAT_SOURCES,
    names::MAP_TX_PORTS,
    names::MAP_VIP_GUARDS,
    names::MAP_ACL_V4,
    names::MAP_ACL_V6,
    names::MAP_ACL_HITS,
    names::MAP_LIMIT_BUCKETS,
];

/// Maps that only make sense together: the control state (which VIP is
/// where, which backend id is which) and the connection table that points
/// into it. Either all are adopted or none.
pub(crate) const STATE_MAPS: [&str; 6] = [
    names::MAP_VIPS,
    names::MAP_MAGLEV,
    names::MAP_BACKENDS,
    names::MAP_CONNTRACK,
    names::MAP_FLOW_BUCKETS,
    names::MAP_NAT_BUCKETS,
];

/// Maps that point into the state maps (backend ids and generations) or
/// mirror them, but that the rest does not need: adopted only together
/// with the state maps, yet one that does not fit this lbd (`half_open_size`
/// changed; no VIP index pinned by an older release; NAT sources of another
/// VIP capacity, as releases that kept them at 16 pinned) is started afresh
/// alone, with a warning, and the rest is still adopted (a half-open flow
/// lost costs nothing: its ACK takes Maglev's pick; the VIP index is
/// rebuilt from `VIPS`, and every NAT VIP's source written again by the
/// first commit, before this lbd's program runs).
///
/// The guard maps are among them: `VIP_GUARDS` is indexed by VIP id and
/// the ACL tries and token buckets are scoped by it, so an lbd that numbers
/// its VIPs afresh must not write them while the previous lbd's program,
/// numbering by its own `VIPS`, still reads them (another VIP's allow list
/// would filter a VIP until the swap).
///
/// So are the traffic counters, `VIP_STATS` and `BACKEND_STATS`, indexed
/// by VIP and backend id: an lbd that numbers afresh clears them for its
/// ids at its first commit, and shared, the previous lbd's program would
/// go on counting its own VIP or backend of that id there until the swap
/// (a new backend would start with another's traffic). An lbd that adopts
/// the state keeps them: the counters go on across a restart.
pub(crate) const DEPENDENT_MAPS: [&str; 10] = [
    names::MAP_HALF_OPEN,
    names::MAP_VIP_STATS,
    names::MAP_BACKEND_STATS,
    names::MAP_VIP_INDEX,
    names::MAP_NAT_SOURCES,
    names::MAP_VIP_GUARDS,
    names::MAP_ACL_V4,
    names::MAP_ACL_V6,
    names::MAP_ACL_HITS,
    names::MAP_LIMIT_BUCKETS,
];

/// The pins of the tables a previous lbd's flows are carried over from
/// (`conntrack::legacy`, `nat::legacy`): their entries name VIPs and
/// backends by the ids of the state maps they were written against, so
/// they go when a start replaces those (`PinDir::promote_staged`).
pub(crate) const CARRIED_FROM: [&str; 6] = [
    crate::conntrack::legacy::MOVED_PIN,
    crate::conntrack::legacy::RESIZED_PIN,
    crate::conntrack::legacy::RESIZED_AGAIN_PIN,
    crate::nat::legacy::RESIZED_PIN,
    crate::nat::legacy::RESIZED_AGAIN_PIN,
    names::MAP_NAT_FLOWS,
];
