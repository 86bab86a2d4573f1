//! VIP lookup: is this packet for a service we balance?

use lb_common::{FlowKey, VipKey, VipMeta};

use crate::maps::VIPS;

/// The VIP a flow is addressed to, if any.
#[inline(always)]
pub fn vip_of(key: &FlowKey) -> Option<VipMeta> {
    let vip = VipKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    // SAFETY: the value is copied out before any map update can free it.
    unsafe { VIPS.get(vip).copied() }
}
