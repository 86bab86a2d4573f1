//! What a NAT flow's directions have seen: the `NAT_F_*` marks and the
//! age of each entry, written by the packets and read by lbd's reaper
//! (`lb_common::nat::NatFlowState`).

use lb_common::{
    consts::{FLOW_TOUCH_INTERVAL_NS, NAT_F_FIN, NAT_F_RST, NAT_F_SYN},
    hash::table_hash,
    nat::counterpart_key,
    FlowKey, NatEntry,
};

use super::table;
use crate::parse::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Marks what a tracked direction has seen (`extra`: bits the direction
/// always sets, e.g. `NAT_F_REPLIED`) and refreshes its age at most every
/// `FLOW_TOUCH_INTERVAL_NS`, or whenever its marks change: lbd's
/// replication sends the entries touched since its last scan, so a FIN or
/// the first reply reaches the peer within a scan (as the connection
/// table's flows do), with no per-flow memory of what was sent. True when
/// the age was stale, which is when the next hop is looked up again.
/// Writes only what changes.
#[inline(always)]
pub fn touch(entry: &mut NatEntry, tcp_flags: u8, extra: u8, now: u64) -> bool {
    let flags = if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        // A new connection reusing an old translation starts afresh.
        NAT_F_SYN | extra
    } else {
        entry.flags | (nat_flags(tcp_flags) & (NAT_F_FIN | NAT_F_RST)) | extra
    };
    let stale = now.wrapping_sub(entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS;
    if flags != entry.flags {
        entry.flags = flags;
        entry.last_seen_ns = now;
    } else if stale {
        entry.last_seen_ns = now;
    }
    stale
}

/// A SYN on an existing translation: when either direction had closed
/// (`forward_closed`, or the reply entry's own FIN/RST, e.g. the backend's
/// reset) the reply direction starts afresh too (not yet answered, no
/// FIN/RST), so the flow's state is the new connection's, not the old
/// one's; a retransmitted SYN of a live handshake changes nothing. A reply
/// entry whose marks are cleared is stamped `now`, as [`touch`] stamps a
/// change of marks. Rare: a function of its own, so the reply key it
/// builds is not in the NAT path's frame.
#[inline(never)]
pub fn reopen_reply(key: &FlowKey, entry: &NatEntry, forward_closed: bool, now: u64) {
    let reply_key = counterpart_key(key, entry);
    if let Some(reply) = table::find(&reply_key, table_hash(&reply_key)) {
        if (forward_closed || reply.flags & (NAT_F_FIN | NAT_F_RST) != 0) && reply.flags != 0 {
            reply.flags = 0;
            reply.last_seen_ns = now;
        }
    }
}

/// `NAT_F_*` bits for a packet's TCP flags (0 for UDP).
#[inline(always)]
pub fn nat_flags(tcp_flags: u8) -> u8 {
    let mut flags = 0;
    if tcp_flags & TCP_SYN != 0 {
        flags |= NAT_F_SYN;
    }
    if tcp_flags & TCP_FIN != 0 {
        flags |= NAT_F_FIN;
    }
    if tcp_flags & TCP_RST != 0 {
        flags |= NAT_F_RST;
    }
    flags
}
