//! Limits of new flows per source: token buckets (`lb_common::guard::
//! take_token`) in an LRU hash, per VIP and source address, and per VIP
//! and source prefix. Called only for a packet that would create a
//! connection-table or NAT entry (in SYN-flood mode too: the ACK of a
//! handshake pushed out of the half-open table pays again), or a DSR or
//! tunnelled SYN reopening a tuple whose flow is over (a new connection),
//! so tracked flows never pay for it (nor are ever limited). Buckets are
//! updated in place without a lock: two CPUs taking a token of the same
//! bucket at the same instant may both succeed, so a limit can be
//! exceeded by a flow per CPU, never undercut.

// Map values are passed by reference on purpose: by value they would be
// copied onto the BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns};
use lb_common::{
    guard::{take_token, LimitKey, Rate, TokenBucket, LIMIT_KIND_PREFIX, LIMIT_KIND_SOURCE, TOKEN},
    FlowKey,
};

use crate::maps::LIMIT_BUCKETS;

/// Whether VIP `vip_id` limits new flows at all (then even an opening SYN
/// is looked up first, so a retransmitted one of a tracked flow takes no
/// token).
#[inline(always)]
pub fn active(vip_id: u32) -> bool {
    super::of(vip_id).is_some_and(|guard| guard.limits())
}

/// Whether a new flow of VIP `vip_id` from `key.src` may be created; takes
/// its tokens if so. False: drop it (`DropRateLimited`).
#[inline(always)]
pub fn admit(vip_id: u32, key: &FlowKey) -> bool {
    !active(vip_id) || take(vip_id, key) != 0
}

/// `admit`'s work: the source's bucket, then the prefix's. A refused flow
/// takes nothing: one the source bucket refuses never reaches the prefix,
/// and one the prefix refuses gets its source token back (else a client
/// behind a busy prefix would drain its own bucket with refused flows).
/// 1: admitted.
#[inline(never)]
fn take(vip_id: u32, key: &FlowKey) -> u32 {
    let Some(guard) = super::of(vip_id) else {
        return 1;
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    // One key on the stack, rewritten for each bucket: the frame stays
    // within the packet path's stack budget.
    let mut bucket = LimitKey::of(vip_id, LIMIT_KIND_SOURCE, key, &[u32::MAX; 4]);
    let by_source = guard.source.per_s != 0;
    if by_source && !take_from(&bucket, &guard.source, now) {
        return 0;
    }
    if guard.prefix.per_s != 0 {
        bucket = LimitKey::of(vip_id, LIMIT_KIND_PREFIX, key, &guard.prefix_mask);
        if !take_from(&bucket, &guard.prefix, now) {
            if by_source {
                bucket = LimitKey::of(vip_id, LIMIT_KIND_SOURCE, key, &[u32::MAX; 4]);
                give_back(&bucket);
            }
            return 0;
        }
    }
    1
}

/// Gives back the tokens `admit` took for a new flow of VIP `vip_id` from
/// `key.src` that was then not created: the NAT path refusing it after
/// the limit admitted it (no source port, no room in its flow table) or
/// joining the flow another CPU's packet opened (that one paid). A
/// refused flow takes nothing, as in `take`: else, under NAT-table
/// pressure, clients would drain their buckets with retransmitted SYNs
/// and be limited once room frees. A function of its own, as `take`.
#[inline(never)]
pub fn refund(vip_id: u32, key: &FlowKey) {
    let Some(guard) = super::of(vip_id) else {
        return;
    };
    // One key on the stack, as in `take`.
    let mut bucket = LimitKey::of(vip_id, LIMIT_KIND_SOURCE, key, &[u32::MAX; 4]);
    if guard.source.per_s != 0 {
        give_back(&bucket);
    }
    if guard.prefix.per_s != 0 {
        bucket = LimitKey::of(vip_id, LIMIT_KIND_PREFIX, key, &guard.prefix_mask);
        give_back(&bucket);
    }
}

/// Puts back the token `take_from` took from bucket `key` (the next
/// `take_token` caps it at the burst, should a racing CPU have refilled
/// the bucket meanwhile).
#[inline(always)]
fn give_back(key: &LimitKey) {
    if let Some(bucket) = LIMIT_BUCKETS.get_ptr_mut(key) {
        // SAFETY: as in `take_from`.
        unsafe { (*bucket).tokens = (*bucket).tokens.wrapping_add(TOKEN) };
    }
}

/// One token from bucket `key` (created full, minus this flow's token, if
/// it is not there).
#[inline(always)]
fn take_from(key: &LimitKey, rate: &Rate, now: u64) -> bool {
    match LIMIT_BUCKETS.get_ptr_mut(key) {
        // SAFETY: an LRU value stays valid for this program run; a racing
        // writer on another CPU only makes the count approximate.
        Some(bucket) => take_token(unsafe { &mut *bucket }, rate, now),
        None => {
            // Another CPU's insert of the same bucket wins; this flow goes.
            let _ =
                LIMIT_BUCKETS.insert(key, &TokenBucket::first(rate, now), u64::from(BPF_NOEXIST));
            true
        }
    }
}
