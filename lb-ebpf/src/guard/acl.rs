//! Deny and allow lists: LPM tries keyed by (scope word, source address),
//! one per family; a VIP's flags say which scopes to look in, so a VIP
//! without rules costs no trie lookup. A per-CPU direct-mapped cache keeps
//! the last verdict per (source, VIP) slot under the rules' generation, so
//! a source that keeps sending pays one array read, not the trie lookups;
//! a tracked flow's packets skip even that while its entry carries the
//! generation's mark (`Gate`). lbd bumps the generation around every
//! change of the tries, which sends every source and every flow through
//! the tries again.

use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{
    consts::AF_INET,
    guard::{
        acl_cache_slot, acl_mark, acl_scope, AclCacheEntry, VipGuard, ACL_F_ALLOW_GLOBAL,
        ACL_F_ALLOW_VIP, ACL_F_DENY_GLOBAL, ACL_F_DENY_VIP, ACL_SCOPE_GLOBAL,
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

/// A VIP's deny and allow lists and the rules' generation, as a packet
/// meets them. A packet that may belong to a tracked flow meets them in
/// the connection table (`conntrack::decide`): its flow's entry carries
/// the mark of the generation it last passed them under (`mark`), and
/// while that is current it skips them (it would pass again), so a
/// tracked flow of a guarded VIP costs what an unguarded one does. Any
/// other packet (a SYN, an ICMP error, a NAT VIP's) meets them first.
#[derive(Clone, Copy)]
pub struct Gate {
    /// `ACL_F_*` of the VIP (0: no list applies).
    flags: u32,
    /// The rules' generation.
    generation: u32,
    /// The VIP's id.
    vip_id: u32,
}

impl Gate {
    /// VIP `vip_id`'s lists (none for an id beyond the map).
    #[inline(always)]
    pub fn of(vip_id: u32) -> Gate {
        let (flags, generation) = match super::of(vip_id) {
            Some(guard) => lists_and_generation(guard),
            None => (0, 0),
        };
        Gate {
            flags,
            generation,
            vip_id,
        }
    }

    /// Whether the lists let the packet's source through (for an ICMP
    /// error about a VIP flow the source is the flow's client: the key is
    /// the flow's); the drop verdict if not.
    #[inline(always)]
    pub fn check(&self, key: &FlowKey) -> Result<(), Counter> {
        match verdict(self.flags, self.generation, self.vip_id, key) {
            PASS => Ok(()),
            DENIED => Err(Counter::DropAclDenied),
            _ => Err(Counter::DropAclNotAllowed),
        }
    }

    /// The `FLOW_F_ACL_MARK` bits an entry of a flow whose packet passed
    /// the lists gets: the current generation's mark. lbd writes the
    /// generation for every VIP, lists or not, and changes it whenever
    /// the rules change, so a flow marked while its VIP had no lists
    /// meets them once they come.
    #[inline(always)]
    pub fn mark(&self) -> u32 {
        acl_mark(self.generation)
    }
}

/// A guard's `acl` and `generation` in one 8-byte load: lbd rewrites the
/// entry in place (the kernel copies it word by word), and two loads could
/// pair the old lists with the new generation, under which a source the
/// new lists refuse would then pass and be cached or marked as passed.
#[inline(always)]
fn lists_and_generation(guard: &VipGuard) -> (u32, u32) {
    // SAFETY: `acl` and `generation` are the first two `u32`s of the
    // `repr(C)` VipGuard, 8-byte aligned (its `Rate`s hold u64s) as
    // every map value is; the pointer comes from a live map value.
    let word = unsafe { core::ptr::read_volatile(guard as *const VipGuard as *const u64) };
    // Split by memory order: the first u32 is `acl`, whatever the byte order.
    // SAFETY: u64 and [u32; 2] have the same size and every bit pattern is valid.
    let [acl, generation] = unsafe { core::mem::transmute::<u64, [u32; 2]>(word) };
    (acl, generation)
}

/// The verdict code for the source: PASS if no list applies (`flags` 0:
/// tested here, not in the caller, so the caller's paths do not fork
/// on it), the cached one if it was reached under this generation, else
/// the lists' (then cached). Counts the rule that
/// decided. A function of its own, called whether lists apply or not:
/// a call on one side of a branch only keeps the verifier from pruning
/// the paths after it (it explores them twice).
#[inline(never)]
fn verdict(flags: u32, generation: u32, vip_id: u32, key: &FlowKey) -> u32 {
    if flags == 0 {
        return PASS;
    }
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
