//! Attaching a program as a cls_bpf filter, and where lbd's filters go
//! (their priorities and handles), so a later lbd finds and replaces them.

use aya::programs::{
    tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
    ProgramError, SchedClassifier, TcAttachType,
};
use tracing::debug;

/// Attaches `program` as a cls_bpf filter (direct action) on
/// `interface`'s `attach_type`, adding the clsact qdisc first where it
/// is missing.
pub(crate) fn attach_filter(
    program: &mut SchedClassifier,
    interface: &str,
    attach_type: TcAttachType,
    options: NlOptions,
) -> Result<SchedClassifierLinkId, ProgramError> {
    if let Err(error) = aya::programs::tc::qdisc_add_clsact(interface) {
        // Already there is fine; anything else shows in the attach.
        debug!(%interface, %error, "adding the clsact qdisc");
    }
    program.attach_with_options(interface, attach_type, TcAttachOptions::Netlink(options))
}

/// The priority of lbd's `tc_lb` filter (without tcx): the lowest a
/// filter takes, so that lbd's runs first on the ingress, as its tcx link
/// goes at the head of the chain. Another tool's filter added later with
/// the kernel's default priority goes below the lowest there (the first
/// one's minus one) and would otherwise run ahead of lbd's; lbd's hook
/// check sees any filter ahead of its own (see `dataplane::HookSeen`).
pub(crate) const LB_FILTER_PRIORITY: u16 = 1;

/// Where lbd's `tc_lb` filter goes: [`LB_FILTER_PRIORITY`], the handle
/// the kernel picks.
pub(crate) fn lb_filter_options() -> NlOptions {
    NlOptions {
        priority: LB_FILTER_PRIORITY,
        ..NlOptions::default()
    }
}

/// The priority of lbd's `tc_hc_encap` filters (after the filters other
/// tools add with the kernel's default priorities, 49152 and below, as a
/// tcx link is appended after the programs there).
pub(crate) const HC_FILTER_PRIORITY: u16 = 50_000;

/// Where lbd's `tc_hc_encap` filter for a balancer on interface
/// `balancer_ifindex` goes: [`HC_FILTER_PRIORITY`], with that index as
/// its handle (on `lo` several lbds of a namespace may have one).
pub(crate) fn hc_filter_options(balancer_ifindex: u32) -> NlOptions {
    NlOptions {
        priority: HC_FILTER_PRIORITY,
        handle: aya::programs::tc::TcHandle::from(balancer_ifindex),
        classid: None,
    }
}
