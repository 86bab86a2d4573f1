//! Deny and allow lists: LPM tries keyed by (scope word, source address),
//! one per family; a VIP's flags say which scopes to look in, so a VIP
//! without rules costs no trie lookup.

use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{
    consts::AF_INET,
    guard::{
        acl_scope, ACL_F_ALLOW_GLOBAL, ACL_F_ALLOW_VIP, ACL_F_DENY_GLOBAL, ACL_F_DENY_VIP,
        ACL_SCOPE_GLOBAL,
    },
    stats::Counter,
    FlowKey,
};

use crate::maps::{ACL_HITS, ACL_V4, ACL_V6};

/// `lists`: the source may go on.
const PASS: u32 = 0;
/// `lists`: a deny rule matched.
const DENIED: u32 = 1;
/// `lists`: an allow list applies and no rule of it matched.
const NOT_ALLOWED: u32 = 2;

/// Whether VIP `vip_id`'s lists let the packet's source through; the drop
/// verdict if not. For an ICMP error about a VIP flow the source is the
/// flow's client (the key is the flow's).
#[inline(always)]
pub fn check(vip_id: u32, key: &FlowKey) -> Result<(), Counter> {
    let flags = match super::of(vip_id) {
        Some(guard) => guard.acl,
        None => return Ok(()),
    };
    if flags == 0 {
        return Ok(());
    }
    match lists(flags, vip_id, key) {
        PASS => Ok(()),
        DENIED => Err(Counter::DropAclDenied),
        _ => Err(Counter::DropAclNotAllowed),
    }
}

/// The lists' verdict (`PASS`, `DENIED`, `NOT_ALLOWED`): deny rules of the
/// VIP, then global ones; then the allow list in force, if any. Counts the
/// rule that decided. A function of its own: verified once, off the
/// unguarded path.
#[inline(never)]
fn lists(flags: u32, vip_id: u32, key: &FlowKey) -> u32 {
    if flags & ACL_F_DENY_VIP != 0 && hit(matched(acl_scope(vip_id, false), key)) {
        return DENIED;
    }
    if flags & ACL_F_DENY_GLOBAL != 0 && hit(matched(acl_scope(ACL_SCOPE_GLOBAL, false), key)) {
        return DENIED;
    }
    let allow = if flags & ACL_F_ALLOW_VIP != 0 {
        acl_scope(vip_id, true)
    } else if flags & ACL_F_ALLOW_GLOBAL != 0 {
        acl_scope(ACL_SCOPE_GLOBAL, true)
    } else {
        return PASS;
    };
    if hit(matched(allow, key)) {
        PASS
    } else {
        NOT_ALLOWED
    }
}

/// The id of the longest rule of `scope` matching the source (0: none).
#[inline(never)]
fn matched(scope: u32, key: &FlowKey) -> u32 {
    let found = if key.family == AF_INET {
        ACL_V4.get(Key::new(64, [scope, key.src[0]]))
    } else {
        ACL_V6.get(Key::new(
            160,
            [scope, key.src[0], key.src[1], key.src[2], key.src[3]],
        ))
    };
    found.copied().unwrap_or(0)
}

/// Counts a packet against rule `id`; true if there was one (`id != 0`).
#[inline(always)]
fn hit(id: u32) -> bool {
    if id == 0 {
        return false;
    }
    if let Some(count) = ACL_HITS.get_ptr_mut(id) {
        // SAFETY: per-CPU slot, no other writer on this CPU.
        unsafe { *count += 1 };
    }
    true
}
