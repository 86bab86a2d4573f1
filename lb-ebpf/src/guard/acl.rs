//! Deny and allow lists: LPM tries keyed by (scope word, source address),
//! one per family; a VIP's flags say which scopes to look in, so a VIP
//! without rules costs no trie lookup. A per-CPU direct-mapped cache keeps
//! the last verdict per (source, VIP) slot under the rules' generation, so
//! a source that keeps sending (a tracked flow) pays one array read, not
//! the trie lookups; lbd bumps the generation around every change of the
//! tries, which sends every source through the tries again.

use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{
    consts::AF_INET,
    guard::{
        acl_cache_slot, acl_scope, AclCacheEntry, ACL_F_ALLOW_GLOBAL, ACL_F_ALLOW_VIP,
        ACL_F_DENY_GLOBAL, ACL_F_DENY_VIP, ACL_SCOPE_GLOBAL,
    },
    stats::Counter,
    FlowKey,
};

use crate::maps::{ACL_CACHE, ACL_HITS, ACL_V4, ACL_V6};

/// Verdict code: the source may go on.
const PASS: u32 = 0;
/// Verdict code: a deny rule matched.
const DENIED: u32 = 1;
/// Verdict code: an allow list applies and no rule of it matched.
const NOT_ALLOWED: u32 = 2;

/// Whether VIP `vip_id`'s lists let the packet's source through; the drop
/// verdict if not. For an ICMP error about a VIP flow the source is the
/// flow's client (the key is the flow's).
#[inline(always)]
pub fn check(vip_id: u32, key: &FlowKey) -> Result<(), Counter> {
    let (flags, generation) = match super::of(vip_id) {
        Some(guard) => (guard.acl, guard.generation),
        None => return Ok(()),
    };
    if flags == 0 {
        return Ok(());
    }
    match verdict(flags, generation, vip_id, key) {
        PASS => Ok(()),
        DENIED => Err(Counter::DropAclDenied),
        _ => Err(Counter::DropAclNotAllowed),
    }
}

/// The verdict code for the source: the cached one if it was reached under
/// this generation, else the lists' (then cached). Counts the rule that
/// decided. A function of its own: verified once, off the unguarded path.
#[inline(never)]
fn verdict(flags: u32, generation: u32, vip_id: u32, key: &FlowKey) -> u32 {
    let slot = ACL_CACHE.get_ptr_mut(acl_cache_slot(&key.src, vip_id));
    if let Some(cached) = slot {
        // SAFETY: per-CPU slot, no other writer on this CPU.
        let cached = unsafe { &*cached };
        if cached.generation == generation && cached.vip_id == vip_id && cached.src == key.src {
            hit(cached.rule);
            return cached.verdict;
        }
    }
    let found = lists(flags, vip_id, key);
    let (verdict, rule) = ((found >> 32) as u32, found as u32);
    if let Some(cached) = slot {
        // SAFETY: as above.
        unsafe {
            *cached = AclCacheEntry {
                src: key.src,
                vip_id,
                generation,
                verdict,
                rule,
            };
        }
    }
    hit(rule);
    verdict
}

/// The lists' verdict code (high half) and the id of the rule that decided
/// (low half; 0: none): deny rules of the VIP, then global ones; then the
/// allow list in force, if any.
#[inline(always)]
fn lists(flags: u32, vip_id: u32, key: &FlowKey) -> u64 {
    let verdict = |code: u32, rule: u32| (u64::from(code) << 32) | u64::from(rule);
    if flags & ACL_F_DENY_VIP != 0 {
        let rule = matched(acl_scope(vip_id, false), key);
        if rule != 0 {
            return verdict(DENIED, rule);
        }
    }
    if flags & ACL_F_DENY_GLOBAL != 0 {
        let rule = matched(acl_scope(ACL_SCOPE_GLOBAL, false), key);
        if rule != 0 {
            return verdict(DENIED, rule);
        }
    }
    let allow = if flags & ACL_F_ALLOW_VIP != 0 {
        acl_scope(vip_id, true)
    } else if flags & ACL_F_ALLOW_GLOBAL != 0 {
        acl_scope(ACL_SCOPE_GLOBAL, true)
    } else {
        return verdict(PASS, 0);
    };
    match matched(allow, key) {
        0 => verdict(NOT_ALLOWED, 0),
        rule => verdict(PASS, rule),
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

/// Counts a packet against rule `id` (none for 0).
#[inline(always)]
fn hit(id: u32) {
    if id == 0 {
        return;
    }
    if let Some(count) = ACL_HITS.get_ptr_mut(id) {
        // SAFETY: per-CPU slot, no other writer on this CPU.
        unsafe { *count += 1 };
    }
}
