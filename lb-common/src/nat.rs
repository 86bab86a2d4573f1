//! NAT-mode flow rules both sides agree on: the flow table's layout (the
//! connection table's buckets and protocol, `flow_table`, holding
//! `NatEntry`s), how the two entries of a flow find each other, and which
//! TCP state (hence which timeout) a flow is in given what each direction
//! has seen. Pure functions: the data plane only sets `NAT_F_*` bits,
//! lbd's reaper decides from them.

use crate::{
    consts::{IPPROTO_TCP, NAT_F_FIN, NAT_F_REPLIED, NAT_F_RST},
    flow_table::{Bucket, SlotValue, FLOW_WAYS},
    FlowKey, NatEntry,
};

/// A bucket of the NAT flow table (`NAT_BUCKETS`): the connection
/// table's layout, a `NatEntry` beside each key (a way fills two cache
/// lines). Entries are inserted with `flow_table::insert_new`, so a key is
/// never held twice (a reply key is its source port's reservation) and
/// nothing is ever evicted: only lbd's reaper takes flows out.
pub type NatBucket = Bucket<NatEntry>;

/// Bytes of table memory per slot (way) of the NAT flow table.
pub const NAT_BYTES_PER_ENTRY: usize = core::mem::size_of::<NatBucket>() / FLOW_WAYS;

/// Read whole: only lbd copies NAT entries out of the table (the data
/// plane reads and writes them in place).
impl SlotValue for NatEntry {
    #[inline(always)]
    unsafe fn read_shared(at: *const Self) -> Self {
        // SAFETY: per the caller's contract.
        unsafe { core::ptr::read_volatile(at) }
    }
}

/// The key of the other direction of the flow whose entry is `(key, entry)`:
/// the translated packet's 5-tuple reversed.
pub const fn counterpart_key(key: &FlowKey, entry: &NatEntry) -> FlowKey {
    FlowKey {
        src: entry.dst,
        dst: entry.src,
        sport: entry.dport,
        dport: entry.sport,
        proto: key.proto,
        family: key.family,
        _pad: 0,
    }
}

/// Where a NAT'd flow stands, from the flags of both its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatFlowState {
    /// TCP: the client's SYN went out, the backend has not answered.
    TcpSynSent,
    /// TCP: both sides have sent packets, no FIN or RST yet.
    TcpEstablished,
    /// TCP: one side sent a FIN.
    TcpClosing,
    /// TCP: both sides sent a FIN (and no RST): the side that closed
    /// first holds TIME_WAIT for this (address, port) pair, a minute on
    /// Linux, so the translation's port should not go to another client's
    /// flow before that ends (its SYN would meet the backend's PAWS check
    /// with unrelated timestamps, and half of such SYNs are dropped).
    TcpTimeWait,
    /// TCP: either side sent an RST (no TIME_WAIT follows one).
    TcpClosed,
    /// UDP (no states).
    Udp,
}

impl NatFlowState {
    /// Every state, in lifecycle order: the series metrics always render
    /// (a state with no flows reads 0, not absent).
    pub const ALL: [NatFlowState; 6] = [
        NatFlowState::TcpSynSent,
        NatFlowState::TcpEstablished,
        NatFlowState::TcpClosing,
        NatFlowState::TcpTimeWait,
        NatFlowState::TcpClosed,
        NatFlowState::Udp,
    ];

    /// The state of a flow of protocol `proto` whose forward entry has
    /// `forward_flags` and whose reply entry has `reply_flags` (`NAT_F_*`).
    pub const fn of(proto: u8, forward_flags: u8, reply_flags: u8) -> NatFlowState {
        if proto != IPPROTO_TCP {
            return NatFlowState::Udp;
        }
        let both = forward_flags | reply_flags;
        if both & NAT_F_RST != 0 {
            NatFlowState::TcpClosed
        } else if (forward_flags & reply_flags & NAT_F_FIN) != 0 {
            NatFlowState::TcpTimeWait
        } else if both & NAT_F_FIN != 0 {
            NatFlowState::TcpClosing
        } else if reply_flags & NAT_F_REPLIED != 0 {
            NatFlowState::TcpEstablished
        } else {
            NatFlowState::TcpSynSent
        }
    }

    /// Stable name for `lbctl flow`, the API and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            NatFlowState::TcpSynSent => "syn-sent",
            NatFlowState::TcpEstablished => "established",
            NatFlowState::TcpClosing => "closing",
            NatFlowState::TcpTimeWait => "time-wait",
            NatFlowState::TcpClosed => "closed",
            NatFlowState::Udp => "udp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::{IPPROTO_UDP, NAT_F_SYN};

    #[test]
    fn a_nat_way_is_two_lines_and_its_bucket_nine_lines_more() {
        assert_eq!(
            core::mem::size_of::<crate::flow_table::Slot<NatEntry>>(),
            128
        );
        assert_eq!(core::mem::size_of::<NatBucket>(), 64 + FLOW_WAYS * 128);
        assert_eq!(NAT_BYTES_PER_ENTRY, 136);
    }

    #[test]
    fn counterpart_of_the_counterpart_is_the_key() {
        let key = FlowKey {
            src: [1, 0, 0, 0],
            dst: [2, 0, 0, 0],
            sport: 10,
            dport: 80,
            proto: IPPROTO_TCP,
            family: 4,
            _pad: 0,
        };
        let forward = NatEntry {
            src: [3, 0, 0, 0],
            dst: [4, 0, 0, 0],
            sport: 2000,
            dport: 8080,
            ..NatEntry::default()
        };
        let reply_key = counterpart_key(&key, &forward);
        assert_eq!((reply_key.src, reply_key.dst), ([4, 0, 0, 0], [3, 0, 0, 0]));
        assert_eq!((reply_key.sport, reply_key.dport), (8080, 2000));
        let reply = NatEntry {
            src: key.dst,
            dst: key.src,
            sport: key.dport,
            dport: key.sport,
            ..NatEntry::default()
        };
        assert_eq!(counterpart_key(&reply_key, &reply), key);
    }

    #[test]
    fn all_lists_every_state_once_in_lifecycle_order() {
        use NatFlowState::*;
        // Exhaustive: a new state fails to compile here until it is placed.
        let position = |state: NatFlowState| match state {
            TcpSynSent => 0,
            TcpEstablished => 1,
            TcpClosing => 2,
            TcpTimeWait => 3,
            TcpClosed => 4,
            Udp => 5,
        };
        for (i, state) in NatFlowState::ALL.iter().enumerate() {
            assert_eq!(position(*state), i, "{state:?}");
        }
    }

    #[test]
    fn tcp_states_follow_the_flags_of_both_directions() {
        use NatFlowState::*;
        let tcp = |f, r| NatFlowState::of(IPPROTO_TCP, f, r);
        assert_eq!(tcp(NAT_F_SYN, 0), TcpSynSent);
        assert_eq!(tcp(NAT_F_SYN, NAT_F_REPLIED | NAT_F_SYN), TcpEstablished);
        assert_eq!(tcp(NAT_F_FIN, NAT_F_REPLIED), TcpClosing);
        assert_eq!(tcp(0, NAT_F_REPLIED | NAT_F_FIN), TcpClosing);
        assert_eq!(tcp(NAT_F_FIN, NAT_F_REPLIED | NAT_F_FIN), TcpTimeWait);
        assert_eq!(
            tcp(NAT_F_FIN | NAT_F_RST, NAT_F_REPLIED | NAT_F_FIN),
            TcpClosed
        );
        assert_eq!(tcp(NAT_F_RST, 0), TcpClosed);
        assert_eq!(tcp(0, NAT_F_RST), TcpClosed);
        assert_eq!(NatFlowState::of(IPPROTO_UDP, NAT_F_RST, 0), Udp);
    }
}
