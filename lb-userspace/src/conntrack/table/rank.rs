//! The rank words lbd inserts flows with: the data plane's for a flow
//! seen lately, by a 64-bit age capped so that a long-idle flow stays
//! expired and a time ahead of the clock counts as now.

use lb_common::{
    consts::{FLOW_F_HALF_OPEN, IPPROTO_UDP},
    flow_table::{
        class_of, rank_class, ticks, CLASS_DATAGRAM, CLASS_ESTABLISHED, ESTABLISHED_IDLE_TICKS,
        HALF_OPEN_IDLE_TICKS, TICK_MASK, TICK_SHIFT,
    },
    FlowKey,
};

/// The age (ticks) lbd's inserts rank a flow idle at least this long at:
/// past both classes' timeouts (expired: it evicts no live flow, and is
/// evicted before any), and the age past which `victim_order` ranks ways
/// alike. A 64-bit age is known only here: a rank word's 30-bit tick
/// wraps after 208 days, so a flow idle more than 104 of them would look
/// stamped ahead of the clock, and one idle 208 days as seen now. Capped,
/// the way it takes stays expired for 156 days more.
const AGE_CAP_TICKS: u64 = 0x0fff_ffff;

const _: () = assert!(
    AGE_CAP_TICKS > ESTABLISHED_IDLE_TICKS as u64 && AGE_CAP_TICKS > HALF_OPEN_IDLE_TICKS as u64
);

/// The rank word of a flow of class `class` idle `age_ticks` at tick
/// `now_ticks`, the age capped at `AGE_CAP_TICKS`.
pub(super) fn aged_rank(age_ticks: u64, class: u32, now_ticks: u32) -> u32 {
    // At most `AGE_CAP_TICKS`: fits.
    let age = age_ticks.min(AGE_CAP_TICKS) as u32;
    ((now_ticks.wrapping_sub(age) & TICK_MASK) << 2) | rank_class(class)
}

/// The rank word lbd inserts a flow of class `class` last seen at
/// `seen_ns` with when the clock (`CLOCK_MONOTONIC`) reads `now_ns`: the
/// data plane's (`rank_word`) for a flow seen up to 52 days ago, a time
/// ahead of the clock (a peer's, a copy stamped after the clock was read)
/// taken as now, and a flow idle longer ranked as idle 52 days (expired,
/// `AGE_CAP_TICKS`), not by a tick that wrapped.
pub(super) fn rank_at(seen_ns: u64, class: u32, now_ns: u64) -> u32 {
    let age = (now_ns >> TICK_SHIFT).saturating_sub(seen_ns >> TICK_SHIFT);
    aged_rank(age, class, ticks(now_ns))
}

/// The rank class of a flow lbd installs with entry flags `flags`, as
/// the data plane ranks it: closed, half-open, established, and a UDP
/// flow in the datagram class, so the data plane's eviction judges a
/// replica by `udp_idle_timeout_s` before its first packet here too.
pub(super) fn install_class(key: &FlowKey, flags: u32) -> u32 {
    match class_of(flags, flags & FLOW_F_HALF_OPEN == 0) {
        CLASS_ESTABLISHED if key.proto == IPPROTO_UDP => CLASS_DATAGRAM,
        class => class,
    }
}

/// `rank_at` now, by the data plane's own clock (the coarse one): a flow
/// lbd installs as seen just now (a replica, stamped by the precise
/// clock) gets the data plane's current tick, never the next one: a
/// rank's tick is then never ahead of the clock that judges it (which
/// takes a tick up to `RANK_AHEAD_TICKS` ahead as seen now,
/// `flow_table::lead_age`, but no further).
pub(super) fn stamp_rank(seen_ns: u64, class: u32) -> u32 {
    rank_at(seen_ns, class, crate::clock::monotonic_coarse_ns())
}
