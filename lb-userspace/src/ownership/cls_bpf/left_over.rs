//! Which filters a previous lbd left: its balancer filter, and its
//! `tc_hc_encap` filters by the interface their handle names (or one
//! that names no interface any more).

use lb_common::consts::names;

use super::filter::{handle_of, ClsBpfFilter};

/// Whether `filter` is an lbd balancer filter a previous lbd left: its
/// program is lbd's tc program, and not `keep` (the one this lbd runs,
/// when it attached through cls_bpf itself).
pub(crate) fn left_by_lbd(filter: &ClsBpfFilter, keep: Option<u32>) -> bool {
    filter.name == names::PROG_TC_LB && (keep.is_none() || filter.program != keep)
}

/// Whether `filter` is a `tc_hc_encap` filter an lbd on interface
/// `balancer_ifindex` attached (its handle, see [`hc_filter_options`](super::attach::hc_filter_options))
/// and not one of `keep`'s (the program this process runs; 0: none).
pub(crate) fn left_hc_filter(filter: &ClsBpfFilter, balancer_ifindex: u32, keep: u32) -> bool {
    filter.name == names::PROG_TC_HC_ENCAP
        && handle_of(filter) == balancer_ifindex
        && (keep == 0 || filter.program != Some(keep))
}

/// Whether `filter` is a `tc_hc_encap` filter whose balancer interface
/// (its handle) no longer exists (`exists` says which indexes name an
/// interface), and not one of `keep`'s (the program this process runs;
/// 0: none). Its lbd died, and the interface went (or was made again
/// with another index) since: no lbd will look for that handle again,
/// and the filter, on `lo`, would stay until a reboot, running a dead
/// lbd's program and maps on every packet `lo` sends.
pub(crate) fn orphan_hc_filter(
    filter: &ClsBpfFilter,
    exists: impl Fn(u32) -> bool,
    keep: u32,
) -> bool {
    filter.name == names::PROG_TC_HC_ENCAP
        && !exists(handle_of(filter))
        && (keep == 0 || filter.program != Some(keep))
}
