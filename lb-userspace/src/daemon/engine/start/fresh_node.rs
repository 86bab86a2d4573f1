//! Whether this start found a fresh node (no program at any hook, nothing
//! adopted), which a failed start puts back as it was: the start asks it
//! before it attaches (`load_and_attach`), the undo of a failed start
//! acts on the answer (`failed_start`).

use tracing::warn;

use crate::dataplane::Dataplane;

/// What ran on the interface when this lbd came to attach, at every hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FoundHooks {
    /// An XDP program.
    pub(super) xdp: bool,
    /// Programs on the tcx ingress.
    pub(super) tcx: bool,
    /// lbd's tc program as a cls_bpf filter on the ingress (a previous
    /// lbd's on a kernel without tcx), or the filters could not be listed.
    pub(super) cls_bpf: bool,
}

/// Whether this start found a fresh node, which a start that fails after
/// its load puts back as it was (`Engine::undo_fresh_start`): nothing
/// was adopted and no program ran at any hook, whichever hook this lbd
/// attaches at (both read before the load pins anything). A previous lbd's program is a data plane the node keeps
/// forwarding on for the next lbd.
pub(super) fn fresh_node(adopted: bool, found: FoundHooks) -> bool {
    !adopted && !found.xdp && !found.tcx && !found.cls_bpf
}

/// Detaches the program, if attached, and removes the pins of a data
/// plane this lbd loaded on a fresh node (see [`fresh_node`]) whose start
/// failed: only those this start made, a previous lbd's stay as they
/// were. A failure is logged: lbd exits next, and `lbd --cleanup`
/// removes what is left.
pub(super) fn remove_fresh_dataplane(dataplane: &mut Dataplane) {
    if let Err(error) = dataplane.detach_made_here() {
        tracing::warn!(error = %format!("{error:#}"), "removing the data plane after the failed start failed; `lbd --cleanup` removes it");
    }
}

/// Whether a previous lbd's tc program runs as a cls_bpf filter on the
/// ingress of interface `ifindex`. A failure to list the filters is
/// logged and taken for one: a node that may have a data plane is not
/// taken for a fresh one.
pub(super) async fn lbd_filter_found(ifindex: u32) -> bool {
    use crate::ownership::cls_bpf;
    match cls_bpf::ingress_filters_of(ifindex).await {
        Ok(filters) => filters.iter().any(|f| cls_bpf::left_by_lbd(f, None)),
        Err(error) => {
            warn!(error = %format!("{error:#}"), "listing the tc filters on the interface's ingress failed: a start that fails after the attach leaves the node's data plane as it is");
            true
        }
    }
}

#[cfg(test)]
mod fresh_node_tests {
    use super::*;

    /// A node is fresh (a start that fails after its attach takes
    /// everything away again) only if nothing was adopted and no program
    /// ran at any hook, whichever hook this lbd attaches at (the caller
    /// reads them all): a previous lbd's XDP link where this one attaches
    /// at tc (`attach` switched, the state maps not adopted), or its
    /// cls_bpf filter where this one attaches at XDP, is a data plane to
    /// leave forwarding for the next lbd.
    #[test]
    fn a_node_is_fresh_only_without_a_program_at_either_hook() {
        let xdp = FoundHooks {
            xdp: true,
            ..FoundHooks::default()
        };
        let tcx = FoundHooks {
            tcx: true,
            ..FoundHooks::default()
        };
        let cls_bpf = FoundHooks {
            cls_bpf: true,
            ..FoundHooks::default()
        };
        assert!(fresh_node(false, FoundHooks::default()));
        assert!(!fresh_node(true, FoundHooks::default()), "adopted");
        for found in [xdp, tcx, cls_bpf] {
            assert!(!fresh_node(false, found), "{found:?}");
        }
    }
}
