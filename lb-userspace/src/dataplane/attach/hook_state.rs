//! Whether the hook lbd attached is still in place: the kernel asked
//! which program the interface runs, so a hook another tool removed or
//! replaced is noticed (and forgotten, to be attached again).

use lb_common::consts::names;
use tracing::{debug, info, warn};

use super::super::{program_error, Dataplane};
use crate::config::Attach;

use super::{
    remove_pin,
    tc::{runs_among, tcx_ingress_ids, tcx_runs},
    tc_program, xdp_program, Attachment, HookSeen, IngressFilter,
};

impl Dataplane {
    /// Whether the data plane is pinned (it outlives lbd), as opposed to
    /// living and dying with this process (`pin_dir = "off"`).
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
    }

    /// Whether the balancer is attached: from its attach until the
    /// kernel is found to run it no more (`hook_in_place`, then
    /// `forget_hook`, on lbd's housekeeping tick).
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.is_some()
    }

    /// Whether the kernel still runs this lbd's program where it was
    /// attached, on interface `ifindex` (looked at by index: a rename
    /// keeps the device and the hook, see `tcx_runs`), and reaches it
    /// first, given `xdp_running`, the XDP program it runs now (from the
    /// interface's link message), and `cls_bpf_running`, the cls_bpf
    /// filters on chain 0 of its ingress (None: not looked at). At tc a
    /// program ahead of lbd's that passes a packet (`TC_ACT_OK`) ends the
    /// chain, so lbd never sees it: that is [`HookSeen::Shadowed`]. None:
    /// cannot tell (a tcx attachment without a pinned link, a cls_bpf one
    /// not looked at, or a failed query): the caller keeps what it knew.
    /// [`HookSeen::Absent`] when nothing is attached.
    pub(crate) fn hook_in_place(
        &self,
        ifindex: u32,
        xdp_running: Option<u32>,
        cls_bpf_running: Option<&[IngressFilter]>,
    ) -> Option<HookSeen> {
        let Some((interface, attachment)) = &self.attached else {
            return Some(HookSeen::Absent);
        };
        match attachment {
            Attachment::Owned(_) => {
                let ours = self.ebpf.program(names::PROG_LB)?.info().ok()?.id();
                Some(HookSeen::runs_if(xdp_running == Some(ours)))
            }
            Attachment::Pinned {
                link,
                hook: Attach::Xdp,
                ..
            } => {
                let ours = link.info().ok()?.program_id();
                Some(HookSeen::runs_if(xdp_running == Some(ours)))
            }
            Attachment::Pinned {
                link,
                hook: Attach::Tc,
                ..
            } => {
                let ours = link.info().ok()?.program_id();
                tcx_runs(
                    ours,
                    interface,
                    ifindex,
                    crate::ownership::cls_bpf::interface_name,
                    tcx_ingress_ids,
                    crate::ownership::cls_bpf::interface_index,
                )
            }
            Attachment::OwnedTc(_) => {
                let ours = self.ebpf.program(names::PROG_TC_LB)?.info().ok()?.id();
                runs_among(ours, cls_bpf_running)
            }
        }
    }

    /// Forgets the hook the kernel runs no more (its interface was
    /// deleted, or its link detached by something else): its pin goes, so
    /// nothing takes the dead link for a live one, and `is_attached` says
    /// false from now on. The maps stay pinned.
    pub(crate) fn forget_hook(&mut self) {
        let Some((interface, attachment)) = self.attached.take() else {
            return;
        };
        match attachment {
            Attachment::Owned(id) => {
                let detached = xdp_program(&mut self.ebpf, names::PROG_LB).and_then(|p| {
                    p.detach(id)
                        .map_err(|e| program_error("detaching", names::PROG_LB, e))
                });
                if let Err(error) = detached {
                    debug!(%interface, %error, "dropping the lost XDP link");
                }
            }
            Attachment::OwnedTc(id) => {
                let detached = tc_program(&mut self.ebpf).and_then(|p| {
                    p.detach(id)
                        .map_err(|e| program_error("detaching", names::PROG_TC_LB, e))
                });
                if let Err(error) = detached {
                    debug!(%interface, %error, "dropping the lost tc attachment");
                }
            }
            Attachment::Pinned { link, path, .. } => {
                if let Err(error) = remove_pin(&path) {
                    warn!(%interface, %error, "removing the pin of the lost link failed; the next lbd removes it as stale");
                }
                drop(link);
                info!(%interface, pin = %path.display(), "the lost link's pin removed");
            }
        }
    }
}
