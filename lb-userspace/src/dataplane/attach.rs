//! Attaching the balancer at XDP or tc ingress, taking over the link a
//! previous lbd pinned (the program swapped atomically; attached anew when
//! `xdp_mode` changed), removing the links a previous lbd pinned for
//! another hook or interface, telling whether the kernel still runs the
//! hook, and what a stop leaves on the interface: still forwarding
//! (`release`) or detached (`detach`).

mod hook_state;
mod tc;
mod teardown;
mod vlan_offload;
mod xdp;

pub(super) use tc::tc_program;
pub(crate) use tc::{tcx_ingress_programs, HookSeen, IngressFilter};
pub(super) use teardown::remove_pin;
pub(super) use xdp::xdp_program;

use aya::programs::{links::FdLink, tc::SchedClassifierLinkId, xdp::XdpLinkId};

use super::DataplaneError;
use crate::config::Attach;

/// How the program is attached.
pub(super) enum Attachment {
    /// Through a link this process owns: detached when it goes.
    Owned(XdpLinkId),
    /// Through a tc link this process owns (cls_bpf): detached when it
    /// goes, unless the maps are pinned (then left running for the next
    /// lbd, by `release` or on drop).
    OwnedTc(SchedClassifierLinkId),
    /// Through a link pinned in bpffs: stays attached after lbd exits.
    Pinned {
        link: FdLink,
        path: std::path::PathBuf,
        /// The hook the link is at, to ask the kernel whether it still
        /// runs there.
        hook: Attach,
    },
}

/// A pinned link's failure, naming the action, the hook and the pin.
/// The reason is `e` with its sources: aya's system-call errors say only
/// which call failed ("`BPF_OBJ_PIN` failed"), the errno is their
/// source.
fn link_error(
    action: &'static str,
    hook: Attach,
    path: &std::path::Path,
    e: &dyn std::error::Error,
) -> DataplaneError {
    DataplaneError::Link {
        action,
        hook,
        path: path.to_owned(),
        reason: crate::pinning::error_chain(e),
    }
}

#[cfg(test)]
mod tests;
