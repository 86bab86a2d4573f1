//! Indices of the per-CPU node counters: what happened to each packet.
//! Verdict counters add up to the packets seen; event counters count steps
//! on the way (a forwarded packet is one `Forwarded` plus one conntrack
//! event; a forwarded ICMP error is one `ForwardedIcmpError` and no event,
//! as it only reads the connection table). New counters go at the end, so
//! the indices of the old ones never change, and into the spare slots of
//! `COUNTER_SLOTS`, so a pinned `PACKET_STATE` keeps its layout (see
//! `COUNTER_SLOTS`).

/// One node counter: its index in each CPU's `CpuState::counters`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Verdict: sent to a backend (XDP_TX).
    Forwarded = 0,
    /// Verdict: passed up, not IPv4/IPv6 (ARP, LLDP, ...).
    PassNotIp = 1,
    /// Verdict: passed up, IP but not to a VIP.
    PassNotVip = 2,
    /// Verdict: passed up, an IPv4 fragment or an IPv6 packet with a
    /// fragment header (no ports to hash on) to an address that is no VIP
    /// or NAT address (the node's own traffic; see `DropFragment`).
    PassFragment = 3,
    /// Verdict: passed up, neither TCP nor UDP nor an ICMP error about a VIP
    /// flow (echo, other ICMP, ESP, ...).
    PassUnsupportedL4 = 4,
    /// Verdict: dropped, truncated or inconsistent headers.
    DropMalformed = 5,
    /// Verdict: dropped, a VIP packet with no backend to take it.
    DropNoBackend = 6,
    /// Event: a tracked flow found its backend in the connection table.
    ConntrackHit = 7,
    /// Event: a flow new to the connection table was hashed and inserted
    /// (a flow two CPUs insert at the same moment counts on both; the
    /// table keeps one copy).
    ConntrackNew = 8,
    /// Event: a tracked flow's backend was gone, so it was hashed again.
    ConntrackRehash = 9,
    /// Event: the connection table refused an insert (the packet is still
    /// forwarded by hash).
    ConntrackInsertFailed = 10,
    /// Verdict: an ICMP/ICMPv6 error (unreachable, fragmentation needed,
    /// packet too big, time exceeded) quoting a VIP flow's reply, sent
    /// unchanged to that flow's backend (XDP_TX), whose stack needs it (path
    /// MTU discovery).
    ForwardedIcmpError = 11,
    /// Verdict: dropped, TCP to a VIP with a flag combination no stack sends
    /// (none, SYN+FIN, SYN+RST, FIN+RST, FIN+PSH+URG without ACK): scans and
    /// attacks, kept away from the backends.
    DropTcpFlags = 12,
    /// Verdict: passed up, IPv6 whose extension headers the data plane does
    /// not walk: a longer chain than its bound, or a routing header with
    /// segments left (the VIP is not the final destination).
    PassIpv6Ext = 13,
    /// Verdict: dropped, a new NAT flow found no free source port for its
    /// NAT address and backend (`NAT_PORT_ATTEMPTS` tried, every one
    /// taken). Never a port lost to another CPU's new flow in the same
    /// instant: the search found a free port then (see `DropNatTableFull`).
    DropNatPortsExhausted = 14,
    /// Verdict: dropped, the NAT flow table refused a new flow's insert:
    /// both buckets of a key full; or, never in practice, every way and
    /// port the flow tried to claim taken by other CPUs' new flows in the
    /// same instant (a lost claim is tried again, a port lost at once has
    /// a second candidate: see `lb_common::flow_table::insert_new` and
    /// the data plane's `nat::ports::reserve`), which is no exhausted
    /// port range either.
    DropNatTableFull = 15,
    /// Verdict: dropped, a routed packet (NAT) had no usable route in the
    /// FIB (no route, forwarding off on the interface, blackhole, ...).
    DropNoRoute = 16,
    /// Verdict: dropped, a routed packet's next hop has no neighbour entry
    /// yet; lbd is told (`EVENT_NO_NEIGHBOUR`) and gets it resolved. Only
    /// a flow (NAT) or backend (tunnels) without a cached next hop: one
    /// whose periodic refresh finds the neighbour entry gone, the route
    /// through the same interface, keeps sending through the cached hop
    /// (counted as sent) while lbd is told all the same.
    DropNoNeighbour = 17,
    /// Verdict: dropped, a TCP packet other than a SYN for a NAT VIP with
    /// no translation (it cannot be translated to what the backend knows).
    DropNatNoFlow = 18,
    /// Verdict: dropped, a routed packet whose TTL / hop limit would reach
    /// zero.
    DropTtlExceeded = 19,
    /// Verdict: a backend's reply translated back (VIP -> client) and
    /// forwarded.
    ForwardedNatReply = 20,
    /// Verdict: an ICMP/ICMPv6 error about a NAT'd flow, translated to the
    /// other side's view and forwarded.
    ForwardedNatIcmpError = 21,
    /// Event: a new NAT flow got its source port (two entries inserted).
    NatNew = 22,
    /// Event: a NAT'd packet (either direction) found its translation.
    NatHit = 23,
    /// Verdict: a tunnelled VIP's packet (`Mode::Ipip` / `Mode::Gue`) that
    /// would exceed the egress MTU once encapsulated, or a NAT'd packet
    /// (either direction; IPv4 with DF) larger than its route's MTU, was
    /// answered with an ICMP fragmentation-needed / ICMPv6 packet-too-big
    /// carrying the MTU left for it, sent back to its sender (path MTU
    /// discovery), instead of being forwarded.
    SentIcmpTooBig = 24,
    /// Event: a tunnelled packet was encapsulated (its verdict is
    /// `Forwarded` or `ForwardedIcmpError`).
    TunnelEncap = 25,
    /// Event: a data-path health check (locally sent, marked) was
    /// encapsulated to its backend by `tc_hc_encap`.
    HcEncap = 26,
    /// Event: a marked health-check packet to a tunnelled VIP of this lbd
    /// could not be encapsulated (no such backend of that VIP, no route or
    /// neighbour, too big) and was dropped.
    HcDrop = 27,
    /// Verdict: dropped, the source matched a deny rule (of the VIP or
    /// global; see `guard`).
    DropAclDenied = 28,
    /// Verdict: dropped, an allow list applies to the VIP and the source
    /// matched none of its rules.
    DropAclNotAllowed = 29,
    /// Verdict: dropped, a new flow over its source's (or prefix's) limit
    /// of new flows.
    DropRateLimited = 30,
    /// Event: a TCP SYN of a flow new to both tables was remembered in the
    /// half-open table (`HALF_OPEN`), not the connection table.
    ConntrackHalfOpenNew = 31,
    /// Event: the client's ACK (or any later packet of the flow) found it
    /// half-open: taken out of the half-open table for the connection
    /// table, with the backend its SYN went to.
    ConntrackHalfOpenPromoted = 32,
    /// Event: a new half-open flow took the place of one that was still
    /// waiting for its ACK (a full bucket of the half-open table: a flood,
    /// or a client whose ACK is late; that ACK then takes Maglev's pick).
    ConntrackHalfOpenEvicted = 33,
    /// Event: a new half-open flow took the place of one whose ACK never
    /// came (idle past the half-open timeout).
    ConntrackHalfOpenExpired = 34,
    /// Verdict: dropped, a routed (NAT) packet larger than its route's
    /// MTU, or a tunnelled VIP's (`Mode::Ipip` / `Mode::Gue`) that would
    /// exceed it once encapsulated, that may not be answered with ICMP
    /// fragmentation-needed: IPv4 without DF (NAT: the data plane cannot
    /// fragment it), or an ICMP error (never an error about an error). A
    /// too-big packet with DF, or any IPv6 one, is answered instead
    /// (`SentIcmpTooBig`).
    DropTooBig = 35,
    /// Verdict: dropped, an IPv4 fragment or IPv6 packet with a fragment
    /// header addressed to a VIP or NAT address (`SERVICE_ADDRS`): it has
    /// no ports to balance on, and up the stack the node, which holds the
    /// address, would reassemble it and answer for a backend (a TCP RST,
    /// an ICMP port unreachable). Fragments to other addresses pass
    /// (`PassFragment`).
    DropFragment = 36,
    /// Event: a new flow took the way of an open TCP connection idle past
    /// `tcp_idle_timeout_s` (no FIN or RST seen) in a full bucket of the
    /// connection table: that connection's next packet is balanced again
    /// (reset by another backend if its own has left Maglev's pick). Only
    /// established flows' inserts take such a way, after every closed
    /// flow and handshake of the bucket; a SYN never does.
    ConntrackEvictedIdle = 37,
    /// Event: a new flow took the way of a live flow (seen within its
    /// idle timeout) in a full bucket of the connection table: the table
    /// holds more live flows than it has ways for them (past
    /// `conntrack_size`), and the evicted flow's next packet is balanced
    /// again.
    ConntrackEvictedLive = 38,
    /// Verdict: dropped, a routed packet (NAT, either direction, or a
    /// tunnelled VIP's) whose egress interface (from the FIB) is not in
    /// the XDP redirect map (`TX_PORTS`): more interfaces than its slots,
    /// or one created since lbd's last scan of them (lbd re-scans when
    /// this counter moves): a NAT packet untranslated, a tunnelled one
    /// after its wrap, never passed up; neither counted as the VIP's or
    /// backend's traffic. Not counted at tc, where a redirect needs no
    /// such map.
    DropNoTxPort = 39,
    /// Verdict: dropped, the data plane's own failure on a packet whose
    /// headers it had read and checked: a kernel helper refused (growing
    /// or cutting the frame, a checksum helper, taking off a VLAN tag) or
    /// a lookup of a per-CPU scratch map failed. Not the sender's doing
    /// (that is `DropMalformed`): a kernel, driver or hook combination the
    /// node's data plane does not work on.
    DropInternal = 40,
    /// Verdict: passed up, a packet to a VIP in a frame addressed to
    /// another host's MAC (flooded here by a switch: an ECMP group's node
    /// whose link went down, a VRRP peer's MAC): that host's to balance,
    /// and the kernel drops it as another host's.
    PassForeignMac = 41,
}

/// Number of `Counter`s (the slots in use).
pub const COUNTER_COUNT: u32 = 42;

/// Slots for counters at the head of each CPU's `PACKET_STATE` value:
/// `COUNTER_COUNT` in use, the rest spare (zero, never written), so a
/// counter added later takes a spare slot and the pinned map keeps its
/// size: an lbd that adopts it, of either build, reads its counters on
/// (a build's counters past the other's are zero or ignored). Builds up
/// to 39 counters had no spare slot; their `PACKET_STATE` is of another
/// size, started afresh by an upgrade (node counters count from zero, as
/// Prometheus reads any counter reset).
pub const COUNTER_SLOTS: u32 = 64;

const _: () = assert!(COUNTER_COUNT <= COUNTER_SLOTS);

/// Words of each CPU's `PACKET_STATE` value after its counters: the state
/// of the packet the CPU is working on (what the packet path leaves for
/// the entry point's later steps), which only the data plane reads. Sized
/// with room to spare, so the value keeps its size, and the counters
/// their place in a pinned map, while that state changes shape.
pub const PACKET_SCRATCH_WORDS: usize = 48;

/// One CPU's value of `PACKET_STATE` (a per-CPU array of one entry): the
/// node counters, indexed by `Counter`, then the packet in flight's state.
/// One value, so that a packet's program finds its state and every
/// counter it bumps with one map lookup (3-4 ns each on a VM whose kernel
/// mitigations make calls dear), and lbd reads every counter of a CPU at
/// once.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CpuState {
    /// Verdict and event counts of this CPU, `Counter` as index; the
    /// slots past `COUNTER_COUNT` are spare (zero).
    pub counters: [u64; COUNTER_SLOTS as usize],
    /// The packet in flight's state: the data plane's own layout, opaque
    /// here (see `lb-ebpf`'s `state::PacketState`).
    pub scratch: [u64; PACKET_SCRATCH_WORDS],
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::Forwarded,
        Counter::PassNotIp,
        Counter::PassNotVip,
        Counter::PassFragment,
        Counter::PassUnsupportedL4,
        Counter::DropMalformed,
        Counter::DropNoBackend,
        Counter::ConntrackHit,
        Counter::ConntrackNew,
        Counter::ConntrackRehash,
        Counter::ConntrackInsertFailed,
        Counter::ForwardedIcmpError,
        Counter::DropTcpFlags,
        Counter::PassIpv6Ext,
        Counter::DropNatPortsExhausted,
        Counter::DropNatTableFull,
        Counter::DropNoRoute,
        Counter::DropNoNeighbour,
        Counter::DropNatNoFlow,
        Counter::DropTtlExceeded,
        Counter::ForwardedNatReply,
        Counter::ForwardedNatIcmpError,
        Counter::NatNew,
        Counter::NatHit,
        Counter::SentIcmpTooBig,
        Counter::TunnelEncap,
        Counter::HcEncap,
        Counter::HcDrop,
        Counter::DropAclDenied,
        Counter::DropAclNotAllowed,
        Counter::DropRateLimited,
        Counter::ConntrackHalfOpenNew,
        Counter::ConntrackHalfOpenPromoted,
        Counter::ConntrackHalfOpenEvicted,
        Counter::ConntrackHalfOpenExpired,
        Counter::DropTooBig,
        Counter::DropFragment,
        Counter::ConntrackEvictedIdle,
        Counter::ConntrackEvictedLive,
        Counter::DropNoTxPort,
        Counter::DropInternal,
        Counter::PassForeignMac,
    ];

    /// True for verdict counters (exactly one of them counts each packet),
    /// false for event counters (steps on the way).
    pub const fn is_verdict(self) -> bool {
        !matches!(
            self,
            Counter::ConntrackHit
                | Counter::ConntrackNew
                | Counter::ConntrackRehash
                | Counter::ConntrackInsertFailed
                | Counter::ConntrackHalfOpenNew
                | Counter::ConntrackHalfOpenPromoted
                | Counter::ConntrackHalfOpenEvicted
                | Counter::ConntrackHalfOpenExpired
                | Counter::ConntrackEvictedIdle
                | Counter::ConntrackEvictedLive
                | Counter::NatNew
                | Counter::NatHit
                | Counter::TunnelEncap
                | Counter::HcEncap
                | Counter::HcDrop
        )
    }

    /// Stable snake_case name, used in metrics and `lbctl status`.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Forwarded => "forwarded",
            Counter::PassNotIp => "pass_not_ip",
            Counter::PassNotVip => "pass_not_vip",
            Counter::PassFragment => "pass_fragment",
            Counter::PassUnsupportedL4 => "pass_unsupported_l4",
            Counter::DropMalformed => "drop_malformed",
            Counter::DropNoBackend => "drop_no_backend",
            Counter::ConntrackHit => "conntrack_hit",
            Counter::ConntrackNew => "conntrack_new",
            Counter::ConntrackRehash => "conntrack_rehash",
            Counter::ConntrackInsertFailed => "conntrack_insert_failed",
            Counter::ForwardedIcmpError => "forwarded_icmp_error",
            Counter::DropTcpFlags => "drop_tcp_flags",
            Counter::PassIpv6Ext => "pass_ipv6_ext",
            Counter::DropNatPortsExhausted => "drop_nat_ports_exhausted",
            Counter::DropNatTableFull => "drop_nat_table_full",
            Counter::DropNoRoute => "drop_no_route",
            Counter::DropNoNeighbour => "drop_no_neighbour",
            Counter::DropNatNoFlow => "drop_nat_no_flow",
            Counter::DropTtlExceeded => "drop_ttl_exceeded",
            Counter::ForwardedNatReply => "forwarded_nat_reply",
            Counter::ForwardedNatIcmpError => "forwarded_nat_icmp_error",
            Counter::NatNew => "nat_new",
            Counter::NatHit => "nat_hit",
            Counter::SentIcmpTooBig => "sent_icmp_too_big",
            Counter::TunnelEncap => "tunnel_encap",
            Counter::HcEncap => "hc_encap",
            Counter::HcDrop => "hc_drop",
            Counter::DropAclDenied => "drop_acl_denied",
            Counter::DropAclNotAllowed => "drop_acl_not_allowed",
            Counter::DropRateLimited => "drop_rate_limited",
            Counter::ConntrackHalfOpenNew => "conntrack_half_open_new",
            Counter::ConntrackHalfOpenPromoted => "conntrack_half_open_promoted",
            Counter::ConntrackHalfOpenEvicted => "conntrack_half_open_evicted",
            Counter::ConntrackHalfOpenExpired => "conntrack_half_open_expired",
            Counter::DropTooBig => "drop_too_big",
            Counter::DropFragment => "drop_fragment",
            Counter::ConntrackEvictedIdle => "conntrack_evicted_idle",
            Counter::ConntrackEvictedLive => "conntrack_evicted_live",
            Counter::DropNoTxPort => "drop_no_tx_port",
            Counter::DropInternal => "drop_internal",
            Counter::PassForeignMac => "pass_foreign_mac",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_counter_at_its_index_with_a_unique_name() {
        for (index, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, index, "{counter:?}");
            for other in &Counter::ALL[..index] {
                assert_ne!(counter.name(), other.name());
            }
        }
    }
}
