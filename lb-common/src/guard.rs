//! Guards in front of a VIP, shared by both sides: deny and allow lists
//! (CIDR rules in LPM tries, global and per VIP) and per-source limits of
//! new flows (token buckets per source address and per prefix).
//!
//! Semantics (the data plane applies them right after the VIP lookup,
//! before the connection table, NAT or anything else):
//! - A source matching a deny rule of the VIP or a global deny rule is
//!   dropped (`DropAclDenied`): deny wins over allow.
//! - Otherwise, when an allow list applies, a source matching none of its
//!   rules is dropped (`DropAclNotAllowed`). The VIP's own allow list
//!   applies if it has one, else the global allow list if there is one
//!   (the more specific scope replaces the wider one, as nginx's
//!   `allow`/`deny` inherit); no allow list at all: every source.
//! - Each rule has an id; a per-CPU counter per id counts the packets it
//!   matched (dropped by a deny rule, let through by an allow rule).
//!
//! Limits: a packet that would create a connection-table (or NAT) entry
//! takes one token from its source address's bucket and one from its
//! prefix's bucket (per VIP, when configured); an empty bucket drops it
//! (`DropRateLimited`). Packets of tracked flows never reach the buckets.

use crate::FlowKey;

/// Nanoseconds per second: one new flow costs this many token units, and a
/// bucket refilling at `r` flows per second gains `r` units per nanosecond.
pub const TOKEN: u64 = 1_000_000_000;
/// Largest rate and burst accepted (flows per second, flows): keeps every
/// product in [`take_token`] far below `u64::MAX`.
pub const RATE_MAX: u64 = 1_000_000;

/// Rule ids (index of `ACL_HITS`); id 0 is never used.
pub const ACL_RULES_MAX: u32 = 4_096;
/// Entries of each LPM trie (IPv4, IPv6).
pub const ACL_TRIE_SIZE: u32 = ACL_RULES_MAX;
/// Buckets the limit table holds (least recently used evicted first: an
/// evicted bucket comes back full, which only ever lets a flow through).
pub const LIMIT_TABLE_SIZE: u32 = 65_536;

/// `VipGuard::acl`: the VIP has deny rules of its own.
pub const ACL_F_DENY_VIP: u32 = 1;
/// `VipGuard::acl`: there are global deny rules.
pub const ACL_F_DENY_GLOBAL: u32 = 2;
/// `VipGuard::acl`: the VIP's own allow list applies.
pub const ACL_F_ALLOW_VIP: u32 = 4;
/// `VipGuard::acl`: the global allow list applies (the VIP has none).
pub const ACL_F_ALLOW_GLOBAL: u32 = 8;

/// The scope id of global rules (VIP ids are far smaller).
pub const ACL_SCOPE_GLOBAL: u32 = 0x7fff_ffff;
/// `acl_scope` action bit: an allow rule (clear: deny).
pub const ACL_ALLOW: u32 = 1;

/// `LimitKey::kind`: a bucket of one source address.
pub const LIMIT_KIND_SOURCE: u32 = 0;
/// `LimitKey::kind`: a bucket of one source prefix.
pub const LIMIT_KIND_PREFIX: u32 = 1;

/// The first word of a rule's LPM key: the scope (a VIP id or
/// `ACL_SCOPE_GLOBAL`) and the action. Matched in full (32 bits of every
/// key's prefix length), so its byte order does not matter as long as both
/// sides write it the same way (native).
#[inline(always)]
pub const fn acl_scope(scope: u32, allow: bool) -> u32 {
    (scope << 1) | if allow { ACL_ALLOW } else { 0 }
}

/// LPM data of an IPv4 rule: `[scope word, address (network order)]`.
pub type AclData4 = [u32; 2];
/// LPM data of an IPv6 rule: `[scope word, address (network order) x 4]`.
pub type AclData6 = [u32; 5];

/// A rate of new flows: `per_s` flows per second on average, up to `burst`
/// at once. `per_s == 0`: no limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rate {
    /// Flows per second (0: off).
    pub per_s: u64,
    /// Bucket size in flows (at least 1 when `per_s` is set).
    pub burst: u64,
}

/// What guards a VIP (one entry per VIP id in `VIP_GUARDS`), written by
/// lbd. All zero: nothing (every source, no limit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipGuard {
    /// `ACL_F_*`: which lists apply.
    pub acl: u32,
    /// Changes whenever the rules in the tries change (never 0 once a
    /// list applies): a verdict cached under another generation
    /// (`AclCacheEntry`) is looked up again.
    pub generation: u32,
    /// New flows per source address.
    pub source: Rate,
    /// New flows per source prefix.
    pub prefix: Rate,
    /// Mask of the prefix buckets, network order (the VIP's family).
    pub prefix_mask: [u32; 4],
}

impl VipGuard {
    /// Whether a new flow of this VIP must take tokens.
    #[inline(always)]
    pub const fn limits(&self) -> bool {
        self.source.per_s != 0 || self.prefix.per_s != 0
    }
}

/// The `FLOW_F_ACL_MARK` bits of a flow admitted under `generation`: its
/// low 24 bits (`next_generation` never makes them all zero, so a mark is
/// never 0, the unmarked entry's value). A flow would have to stay idle
/// through 16 M rule changes for a mark to match again by wrapping.
#[inline(always)]
pub const fn acl_mark(generation: u32) -> u32 {
    generation << 8
}

/// The rules' generation after `generation`: the next one whose mark
/// (`acl_mark`) is not zero (so never 0 either: an empty cache slot's).
pub const fn next_generation(generation: u32) -> u32 {
    let next = generation.wrapping_add(1);
    if acl_mark(next) == 0 {
        next.wrapping_add(1)
    } else {
        next
    }
}

/// Slots of the per-CPU cache of ACL verdicts (a power of two).
pub const ACL_CACHE_SLOTS: u32 = 4_096;

/// A cached ACL verdict: what the lists said about `src` for VIP `vip_id`
/// under rules of `generation` (one direct-mapped slot per CPU, chosen by
/// `acl_cache_slot`), so the packets of a source that keeps sending pay
/// one array read instead of the trie lookups.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AclCacheEntry {
    /// Source address, network order.
    pub src: [u32; 4],
    /// VIP id.
    pub vip_id: u32,
    /// `VipGuard::generation` the verdict was reached under (0: empty).
    pub generation: u32,
    /// The data plane's verdict code.
    pub verdict: u32,
    /// The rule that decided (its id; 0: none).
    pub rule: u32,
}

/// The cache slot of `src` for VIP `vip_id`.
#[inline(always)]
pub fn acl_cache_slot(src: &[u32; 4], vip_id: u32) -> u32 {
    let folded = src[0] ^ src[1].rotate_left(7) ^ src[2].rotate_left(13) ^ src[3].rotate_left(19);
    let mixed = (folded ^ vip_id).wrapping_mul(0x9e37_79b9);
    (mixed >> 20) & (ACL_CACHE_SLOTS - 1)
}

/// Key of the limit table: a VIP's bucket for one source or prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LimitKey {
    /// VIP id.
    pub vip_id: u32,
    /// `LIMIT_KIND_*`.
    pub kind: u32,
    /// The source address, or its prefix (masked), network order.
    pub addr: [u32; 4],
}

impl LimitKey {
    /// The bucket key of `flow`'s source (`mask`: all ones for the
    /// address itself).
    #[inline(always)]
    pub fn of(vip_id: u32, kind: u32, flow: &FlowKey, mask: &[u32; 4]) -> Self {
        Self {
            vip_id,
            kind,
            addr: [
                flow.src[0] & mask[0],
                flow.src[1] & mask[1],
                flow.src[2] & mask[2],
                flow.src[3] & mask[3],
            ],
        }
    }
}

/// A token bucket: `tokens` in units of `1 / TOKEN` flow, as of `last_ns`
/// (`bpf_ktime_get_ns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TokenBucket {
    /// Tokens left, in `1 / TOKEN` flows.
    pub tokens: u64,
    /// When `tokens` was last brought up to date.
    pub last_ns: u64,
}

impl TokenBucket {
    /// A bucket first seen at `now`, for a flow that takes one token: full
    /// minus that token.
    #[inline(always)]
    pub const fn first(rate: &Rate, now: u64) -> Self {
        Self {
            // `saturating_sub`: a burst of 0 (never written by lbd, but a
            // packet may read a rate while lbd rewrites it) admits this
            // flow and leaves nothing, not a wrapped-around count.
            tokens: (rate.burst * TOKEN).saturating_sub(TOKEN),
            last_ns: now,
        }
    }
}

/// Refills `bucket` for the time since its last update at `rate` (never
/// above `rate.burst` flows), then takes one flow's token if there is one.
/// True: the flow may go. Exact integer arithmetic: `rate.per_s` units per
/// nanosecond, one flow = `TOKEN` units; with `per_s` and `burst` at most
/// [`RATE_MAX`] no product exceeds `2 * RATE_MAX * TOKEN` (2e15). A clock
/// reading older than the bucket's (another CPU's update) adds nothing.
#[inline(always)]
pub fn take_token(bucket: &mut TokenBucket, rate: &Rate, now: u64) -> bool {
    let cap = rate.burst * TOKEN;
    let tokens = if bucket.tokens > cap {
        cap
    } else {
        bucket.tokens
    };
    let tokens = if now > bucket.last_ns && rate.per_s != 0 {
        let elapsed = now - bucket.last_ns;
        // Time to fill what is missing; past it the bucket is full. Below
        // it, `elapsed * per_s` < `cap + per_s`.
        let fill_ns = (cap - tokens) / rate.per_s + 1;
        bucket.last_ns = now;
        if elapsed >= fill_ns {
            cap
        } else {
            let refilled = tokens + elapsed * rate.per_s;
            if refilled > cap {
                cap
            } else {
                refilled
            }
        }
    } else {
        tokens
    };
    if tokens >= TOKEN {
        bucket.tokens = tokens - TOKEN;
        true
    } else {
        bucket.tokens = tokens;
        false
    }
}

/// The network-order mask of the first `len` bits of an address of
/// `words` 32-bit words (1: IPv4, 4: IPv6); `len` beyond the address is
/// the whole address.
pub fn prefix_mask(len: u32, words: usize) -> [u32; 4] {
    let mut mask = [0u32; 4];
    let mut left = len;
    for word in mask.iter_mut().take(words) {
        let bits = if left >= 32 { 32 } else { left };
        left -= bits;
        let host = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        *word = host.to_be();
    }
    mask
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers only, no implicit padding (sizes below).
    unsafe impl aya::Pod for super::VipGuard {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LimitKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TokenBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AclCacheEntry {}
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Rate>() == 16);
    assert!(size_of::<VipGuard>() == 56);
    // The data plane reads `acl` and `generation` in one 8-byte load.
    assert!(core::mem::align_of::<VipGuard>() == 8);
    assert!(core::mem::offset_of!(VipGuard, acl) == 0);
    assert!(core::mem::offset_of!(VipGuard, generation) == 4);
    assert!(size_of::<LimitKey>() == 24);
    assert!(size_of::<TokenBucket>() == 16);
    assert!(size_of::<AclCacheEntry>() == 32);
};

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_s: 10,
        burst: 3,
    };

    #[test]
    fn a_generation_never_has_an_empty_mark() {
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(5), 6);
        // 0x0100_0000 would mark as 0: skipped, as is 0 after a wrap.
        assert_eq!(next_generation(0x00ff_ffff), 0x0100_0001);
        assert_eq!(next_generation(u32::MAX), 1);
        for g in [1, 6, 0x0100_0001, 0xffff_fffe] {
            assert_ne!(acl_mark(g), 0);
            assert_eq!(acl_mark(g) & !crate::consts::FLOW_F_ACL_MARK, 0);
        }
    }

    #[test]
    fn a_new_bucket_lets_a_burst_through_then_refuses() {
        let mut bucket = TokenBucket::first(&RATE, 1_000);
        assert!(take_token(&mut bucket, &RATE, 1_000));
        assert!(take_token(&mut bucket, &RATE, 1_000));
        assert!(!take_token(&mut bucket, &RATE, 1_000), "burst of 3 spent");
        assert_eq!(bucket.tokens, 0);
    }

    /// A rate read half-rewritten (burst 0 beside a rate) admits the flow
    /// that made the bucket and then refills up to the (zero) burst: no
    /// count wrapped around to nearly unlimited.
    #[test]
    fn a_torn_rate_with_no_burst_does_not_wrap_the_count() {
        let torn = Rate {
            per_s: 10,
            burst: 0,
        };
        let mut bucket = TokenBucket::first(&torn, 1_000);
        assert_eq!(bucket.tokens, 0);
        assert!(!take_token(&mut bucket, &torn, 1_000));
        assert!(
            take_token(&mut bucket, &RATE, 1_000_000_000),
            "refilled at the real rate"
        );
    }

    #[test]
    fn tokens_come_back_at_the_rate_exactly() {
        let mut bucket = TokenBucket {
            tokens: 0,
            last_ns: 0,
        };
        // 10 per second: one token every 100 ms.
        assert!(!take_token(&mut bucket, &RATE, 99_999_999));
        assert_eq!(bucket.tokens, 99_999_999 * 10);
        assert!(take_token(&mut bucket, &RATE, 100_000_000));
        assert_eq!(bucket.tokens, 0);
        assert_eq!(bucket.last_ns, 100_000_000);
    }

    #[test]
    fn a_long_pause_fills_the_bucket_to_its_burst_only() {
        let mut bucket = TokenBucket {
            tokens: 0,
            last_ns: 5,
        };
        assert!(take_token(&mut bucket, &RATE, u64::MAX / 2));
        assert_eq!(bucket.tokens, 2 * TOKEN);
    }

    #[test]
    fn an_older_clock_reading_adds_nothing() {
        let mut bucket = TokenBucket {
            tokens: TOKEN / 2,
            last_ns: 1_000,
        };
        assert!(!take_token(&mut bucket, &RATE, 10));
        assert_eq!(bucket.last_ns, 1_000);
        assert_eq!(bucket.tokens, TOKEN / 2);
    }

    #[test]
    fn the_largest_rates_never_overflow() {
        let rate = Rate {
            per_s: RATE_MAX,
            burst: RATE_MAX,
        };
        let mut bucket = TokenBucket::first(&rate, 0);
        for now in [1, 2, 1_000_000_000, 1_000_000_001, u64::MAX - 1] {
            assert!(take_token(&mut bucket, &rate, now));
            assert!(bucket.tokens <= rate.burst * TOKEN);
        }
    }

    #[test]
    fn prefix_masks_are_network_order() {
        let m = prefix_mask(24, 1);
        assert_eq!(m[0].to_ne_bytes(), [255, 255, 255, 0]);
        let m = prefix_mask(64, 4);
        assert_eq!(m, [u32::MAX, u32::MAX, 0, 0]);
        let m = prefix_mask(36, 4);
        assert_eq!(m[1].to_ne_bytes(), [0xf0, 0, 0, 0]);
        assert_eq!(prefix_mask(128, 4), [u32::MAX; 4]);
        assert_eq!(prefix_mask(32, 1), [u32::MAX, 0, 0, 0]);
        assert_eq!(prefix_mask(0, 4), [0; 4]);
    }

    #[test]
    fn cache_slots_stay_in_range_and_spread() {
        let mut seen = [false; ACL_CACHE_SLOTS as usize];
        for i in 0..4096u32 {
            let src = [
                u32::from_ne_bytes([198, 18, (i >> 8) as u8, i as u8]),
                0,
                0,
                0,
            ];
            let slot = acl_cache_slot(&src, 1);
            assert!(slot < ACL_CACHE_SLOTS);
            seen[slot as usize] = true;
        }
        let used = seen.iter().filter(|s| **s).count();
        assert!(used > 2000, "4096 sources of a /20 use {used} slots");
    }

    #[test]
    fn scopes_keep_vips_actions_and_global_apart() {
        assert_ne!(acl_scope(1, true), acl_scope(1, false));
        assert_ne!(acl_scope(0, false), acl_scope(ACL_SCOPE_GLOBAL, false));
        assert_ne!(acl_scope(2, false), acl_scope(1, true));
    }
}
