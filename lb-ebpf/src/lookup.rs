//! VIP lookup: is this packet for a service we balance? Answered by the
//! VIP index (`VIP_INDEX`, plain loads: `lb_common::vip_index`), and by
//! the kernel's hash map (`VIPS`) only when the index is unsure (lbd was
//! changing it during the lookup, or it could not place some VIP).

use lb_common::{
    vip_index::{self, Found},
    FlowKey, VipKey, VipMeta,
};

use crate::maps::{VIPS, VIP_INDEX};

/// Slot buckets in `VIP_INDEX` minus one (a power of two minus one); set
/// by lbd at load time from the index's size.
#[unsafe(no_mangle)]
static VIP_INDEX_MASK: u32 = 0;

/// The VIP a flow is addressed to, if any.
#[inline(always)]
pub fn vip_of(key: &FlowKey) -> Option<VipMeta> {
    let vip = VipKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    // SAFETY: a read of a global (volatile: the loader's value decides).
    let mask = unsafe { core::ptr::read_volatile(&VIP_INDEX_MASK) };
    let bucket = |i: u32| VIP_INDEX.get_ptr(i);
    // SAFETY: the pointers are live elements of the index.
    match unsafe { vip_index::find(bucket, mask, &vip) } {
        Found::Vip(meta) => Some(meta),
        Found::NotAVip => None,
        // SAFETY: the value is copied out before any map update can free it.
        Found::Unsure => unsafe { VIPS.get(vip).copied() },
    }
}
