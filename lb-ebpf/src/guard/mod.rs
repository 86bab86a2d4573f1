//! Guards in front of a VIP (semantics in `lb_common::guard`): deny and
//! allow lists, checked once for every VIP packet right after the VIP
//! lookup (`acl`), and limits of new flows per source, checked only where
//! a packet would create a connection-table or NAT entry (`limit`). Each
//! check is a small function of its own, called only when lbd configured
//! something for the VIP: an unguarded VIP pays one array read.

pub mod acl;
pub mod limit;

use lb_common::guard::VipGuard;

use crate::maps::VIP_GUARDS;

/// What guards VIP `vip_id` (None: nothing, e.g. an id beyond the map).
#[inline(always)]
fn of(vip_id: u32) -> Option<&'static VipGuard> {
    VIP_GUARDS.get(vip_id)
}
