//! A cls_bpf filter as a tc dump reports it: read from its netlink
//! message, with the header a delete names it by.

use rtnetlink::packet_route::tc::{
    TcAttribute, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};

/// A cls_bpf filter on an interface's ingress, as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClsBpfFilter {
    /// Its header: interface, parent, priority and protocol, handle (what
    /// a delete names it by).
    pub(super) header: rtnetlink::packet_route::tc::TcHeader,
    /// Its program's name.
    pub name: String,
    /// Its program's id, if the kernel says.
    pub program: Option<u32>,
    /// Its chain (0 unless the kernel says another: a packet meets the
    /// filters of chain 0, and others only by a `goto chain`).
    pub chain: u32,
}

impl ClsBpfFilter {
    /// Its priority (what `tc filter del ... pref` takes).
    pub(crate) fn priority(&self) -> u16 {
        u16::try_from(self.header.info >> 16).unwrap_or(u16::MAX)
    }
}

/// The cls_bpf filter `message` describes, if it is one on the clsact
/// hook `minor` names (`TcHandle::MIN_INGRESS`, `ffff:fff2`, or
/// `TcHandle::MIN_EGRESS`) with a program name; None for anything else
/// (another kind, the per-priority entries of a dump, the other hook).
pub(super) fn cls_bpf_filter_at(message: &TcMessage, minor: u16) -> Option<ClsBpfFilter> {
    let at_hook = message.header.parent
        == TcHandle {
            major: 0xffff,
            minor,
        };
    let bpf = message
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == TcFilterBpf::KIND));
    if !at_hook || !bpf {
        return None;
    }
    let options = message.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(options) => Some(options),
        _ => None,
    })?;
    let mut name = None;
    let mut program = None;
    for option in options {
        match option {
            TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
            TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => program = Some(*id),
            _ => {}
        }
    }
    let chain = message
        .attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Chain(chain) => Some(*chain),
            _ => None,
        })
        .unwrap_or(0);
    Some(ClsBpfFilter {
        header: message.header.clone(),
        name: name?,
        program,
        chain,
    })
}

/// The handle of `filter`: for lbd's `tc_hc_encap` filters, the index of
/// the balancer interface they were attached for (see
/// [`hc_filter_options`](super::attach::hc_filter_options)).
pub(super) fn handle_of(filter: &ClsBpfFilter) -> u32 {
    (u32::from(filter.header.handle.major) << 16) | u32::from(filter.header.handle.minor)
}
