//! The check of the current advert source against the interface's
//! addresses now: kept, switched to another, or gone. Pure, so the driver
//! (`follow`) only acts on its answer.

use std::net::IpAddr;

use super::{
    eligibility::{may_keep_sending_from, pick_source},
    kind::SourceKind,
};
use crate::netlink::InterfaceAddress;

/// What a check of the advert source found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceCheck {
    /// The current source is still one to send from: kept, even if another
    /// would be picked now, so the tie-break address (and the address a
    /// keepalived unicast peer lists) does not flap.
    Keep,
    /// The current source is gone (or no longer one to send from): this
    /// one now.
    Switch(IpAddr),
    /// The current source is gone and there is none to replace it.
    Gone,
}

/// Whether adverts sent from `current`, of `kind`, still leave: the
/// interface's primary IPv4, link-local or global IPv6 address can change
/// under lbd (an address renumbered, a new MAC's EUI-64 link-local), and a
/// send from an address the node no longer has fails (or, IPv6, leaves
/// from an address the peer no longer expects), so the peer hears nothing
/// and takes over while this node keeps the VIPs. A current source that
/// is only tentative again (DAD re-run after an admin down/up) is kept:
/// it is the same address, and adverts from it leave. A deprecated global
/// one is left for a settled one if there is one (it is being renumbered
/// away), else kept. Pure: `present` is the interface's addresses now,
/// `never` those never sent from (see [`never_sources`](super::eligibility::never_sources)).
pub(super) fn check_source(
    current: IpAddr,
    present: &[InterfaceAddress],
    kind: SourceKind,
    never: &[IpAddr],
) -> SourceCheck {
    let held = present
        .iter()
        .find(|a| a.address == current && may_keep_sending_from(a, kind, never));
    match (held, pick_source(present, kind, never)) {
        // A settled one is never the deprecated current: it is another.
        (Some(held), Some(next)) if kind == SourceKind::V6Global && held.state.deprecated => {
            SourceCheck::Switch(next)
        }
        (Some(_), _) => SourceCheck::Keep,
        (None, Some(next)) => SourceCheck::Switch(next),
        (None, None) => SourceCheck::Gone,
    }
}
