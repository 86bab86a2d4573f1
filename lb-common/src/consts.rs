//! Limits and names both sides must agree on.

/// Address family tag stored in keys: IPv4.
pub const AF_INET: u8 = 4;
/// Address family tag stored in keys: IPv6.
pub const AF_INET6: u8 = 6;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMP (IPv4): its errors quote a flow.
pub const IPPROTO_ICMP: u8 = 1;
/// IPv6 next-header number of ICMPv6: its errors quote a flow.
pub const IPPROTO_ICMPV6: u8 = 58;

/// The largest Maglev table (slots per VIP and table copy). The default
/// size, the prime 65,537, is also the largest: ~65 slots per backend for
/// 1,000 backends keeps the weight error under a few percent.
pub const MAGLEV_SIZE_MAX: u32 = 65_537;
/// Default Maglev table size (a prime, as the algorithm requires).
pub const MAGLEV_SIZE_DEFAULT: u32 = 65_537;
/// Copies of each VIP's table: packets read the active one while the
/// control plane writes the other, then flips `VipMeta::active_table`.
pub const MAGLEV_TABLES_PER_VIP: u32 = 2;

/// Default number of VIPs the maps are sized for.
pub const MAX_VIPS_DEFAULT: u32 = 16;
/// Backend slots across all VIPs. Slot 0 is never used: a zero in a
/// Maglev table means "no backend".
pub const MAX_BACKENDS: u32 = 4_096;
/// Backend id that means "no backend".
pub const NO_BACKEND: u32 = 0;
/// Default size of the connection table: flows it keeps without evicting
/// a live one (the bucket table has twice as many slots; past them the
/// least alive flows of a new flow's two buckets are evicted).
pub const CONNTRACK_SIZE_DEFAULT: u32 = 262_144;
/// Buckets of the half-open table (`HALF_OPEN`: TCP flows whose SYN was
/// seen and whose ACK was not yet) by default (the object's size; lbd
/// sizes it from `half_open_size`), a power of two: 4 096 buckets of
/// `flow_table::FLOW_WAYS` ways hold 32 768 half-open flows in 2.25 MiB.
/// A SYN flood fills this table, never the connection table; a half-open
/// flow it evicts costs nothing (its ACK takes Maglev's pick).
pub const HALF_OPEN_BUCKETS: u32 = 4_096;
/// Default size of the half-open table in flows (`half_open_size`):
/// `HALF_OPEN_BUCKETS` buckets of `flow_table::FLOW_WAYS` ways.
pub const HALF_OPEN_SIZE_DEFAULT: u32 = HALF_OPEN_BUCKETS * crate::flow_table::FLOW_WAYS as u32;

/// `Backend::flags`: the backend can take packets of flows pinned to it. A
/// flow whose backend lost this flag (removed, or dead) is hashed again.
pub const BACKEND_F_ALIVE: u8 = 1;

/// `FlowEntry::flags`: a FIN was seen in this flow.
pub const FLOW_F_FIN: u32 = 1;
/// `FlowEntry::flags`: an RST was seen in this flow.
pub const FLOW_F_RST: u32 = 2;
/// `FlowEntry::flags`: the flow's TCP state marks, the part of the word
/// that means the same on every node (replicated; the rest is local).
pub const FLOW_F_STATE: u32 = FLOW_F_FIN | FLOW_F_RST;
/// `FlowEntry::flags`: a TCP flow whose SYN is in the table and whose
/// client has not yet acknowledged the handshake (its way has the
/// half-open class, `flow_table::CLASS_HALF_OPEN`). In the flags too, not
/// only in the way's tag, so lbd's readers (drain counts, replication,
/// `lbctl flow`) tell a handshake from a connection. Local to the node
/// (never replicated: half-open flows stay on the node that saw the SYN).
pub const FLOW_F_HALF_OPEN: u32 = 4;
/// `FlowEntry::flags`: the ACL mark, `guard::acl_mark` of the rules'
/// generation the flow's packets last passed the deny and allow lists
/// under (0: none). While it is current, the flow's packets skip the
/// lists: they would pass them again. Local to the node (never
/// replicated: another node's generations mean other rules).
pub const FLOW_F_ACL_MARK: u32 = 0xffff_ff00;

/// `NatEntry::flags`: this direction carried a SYN (set again, with the
/// FIN/RST bits cleared, when a SYN reuses an old translation).
pub const NAT_F_SYN: u8 = 1;
/// `NatEntry::flags`: this direction carried a FIN.
pub const NAT_F_FIN: u8 = 2;
/// `NatEntry::flags`: this direction carried an RST.
pub const NAT_F_RST: u8 = 4;
/// `NatEntry::flags`: this direction has carried a packet (set on the
/// reply entry by the first reply: the backend answered).
pub const NAT_F_REPLIED: u8 = 8;
/// `NatEntry::direction`: client -> VIP, translated to NAT address ->
/// backend.
pub const NAT_DIR_FORWARD: u8 = 0;
/// `NatEntry::direction`: backend -> NAT address, translated to VIP ->
/// client.
pub const NAT_DIR_REPLY: u8 = 1;
/// Default size of the NAT flow table (entries; two per flow). The table
/// has `flow_table::FLOW_HEADROOM` slots per entry (rounded up to a power
/// of two of buckets), so a table holding this many entries has room in
/// every bucket; it never evicts a live translation (docs/design/nat.md).
pub const NAT_FLOWS_SIZE_DEFAULT: u32 = 262_144;
/// Source ports tried per new NAT flow before it is dropped as
/// `DropNatPortsExhausted` (linear probing from a hash of the flow, so a
/// range of at most this many ports is searched completely).
pub const NAT_PORT_ATTEMPTS: u32 = 16;
/// Interfaces the XDP program may redirect to (`TX_PORTS`).
pub const TX_PORTS_MAX: u32 = 64;

/// `LbConfig::flags`: some VIP is in NAT mode, so packets to no VIP are
/// looked up in `NAT_BUCKETS` as possible replies.
pub const CONFIG_F_NAT: u8 = 1;
/// `LbConfig::flags`: lbd is in SYN-flood mode (`flood`): a new TCP flow's
/// SYN goes to the half-open table alone, never to a free way of the
/// connection table, so a flood leaves that table to real connections.
pub const CONFIG_F_SYN_FLOOD: u8 = 2;

/// `SERVICE_ADDRS` value bit: the address is a VIP's (some port of it).
pub const SERVICE_ADDR_F_VIP: u32 = 1;
/// `SERVICE_ADDRS` value bit: the address is a NAT VIP's NAT address.
pub const SERVICE_ADDR_F_NAT: u32 = 2;

/// Refresh `FlowEntry::last_seen_ns` at most this often, so a tracked flow's
/// packets rarely write to the shared connection table.
pub const FLOW_TOUCH_INTERVAL_NS: u64 = 1_000_000_000;

/// `DataplaneEvent::kind`: a packet for a VIP found no backend (an empty
/// table, or a slot whose backend is dead) and was dropped.
pub const EVENT_NO_BACKEND: u32 = 1;
/// `DataplaneEvent::kind`: the connection table refused an insert.
pub const EVENT_CONNTRACK_INSERT_FAILED: u32 = 2;
/// `DataplaneEvent::kind`: a routed packet's next hop has no neighbour
/// entry; `flow.dst` (and `flow.family`, which may differ from the
/// packet's: an IPv4 route through an IPv6 gateway) is the next hop lbd
/// must get resolved, `flow.src[0]` the interface it is on (0: not known,
/// an older program). The packet was dropped.
pub const EVENT_NO_NEIGHBOUR: u32 = 3;
/// `DataplaneEvent::kind`: a new NAT flow found no free source port.
pub const EVENT_NAT_PORTS_EXHAUSTED: u32 = 4;
/// `DataplaneEvent::kind`: the FIB had no usable route for a routed
/// packet (no route, forwarding disabled, blackhole, ...).
pub const EVENT_NO_ROUTE: u32 = 5;
/// Number of event kinds (for per-kind rate limiting).
pub const EVENT_KINDS: u32 = 6;
/// Rate-limit slots of `EVENT_NO_NEIGHBOUR`, by a hash of the next hop:
/// one unresolved gateway must not silence the reports of another (after
/// a failover several may be missing at once).
pub const NEXT_HOP_EVENT_SLOTS: u32 = 16;
/// Entries of the per-CPU rate-limit map: one per kind, then the next-hop
/// slots.
pub const EVENT_LAST_SLOTS: u32 = EVENT_KINDS + NEXT_HOP_EVENT_SLOTS;
/// At most one event of a kind per CPU this often.
pub const EVENT_INTERVAL_NS: u64 = 1_000_000_000;

/// Names of the maps and programs in the eBPF object, typed once.
pub mod names {
    /// XDP program that balances VIP traffic.
    pub const PROG_LB: &str = "xdp_lb";
    /// The same balancer as a tc ingress program (`attach = "tc"`).
    pub const PROG_TC_LB: &str = "tc_lb";
    /// XDP program that only passes frames up; attached to a veth peer so
    /// that frames sent with XDP_TX are accepted (see README, lab notes).
    pub const PROG_PASS: &str = "xdp_pass";
    /// VIP lookup: `VipKey` -> `VipMeta` (lbd's authoritative copy; the
    /// data plane reads `VIP_INDEX` and asks this map only when unsure).
    pub const MAP_VIPS: &str = "VIPS";
    /// The VIP index: `VIPS` as an array the data plane reads without a
    /// kernel call (`vip_index`).
    pub const MAP_VIP_INDEX: &str = "VIP_INDEX";
    /// Read-only global: slot buckets in `VIP_INDEX` minus one.
    pub const GLOBAL_VIP_INDEX_MASK: &str = "VIP_INDEX_MASK";
    /// Maglev tables: flat array of backend ids.
    pub const MAP_MAGLEV: &str = "MAGLEV";
    /// Backends by id.
    pub const MAP_BACKENDS: &str = "BACKENDS";
    /// Connection table as a kernel map (a shared LRU hash: lbd's default
    /// before the bucket table; the bench's designs, the upgrade path).
    pub const MAP_CONNTRACK: &str = "CONNTRACK";
    /// Connection table: buckets of ways (`flow_table`), lbd's default.
    pub const MAP_FLOW_BUCKETS: &str = "FLOW_BUCKETS";
    /// Half-open TCP flows, apart from the connection table (`flow_table`
    /// buckets, one bucket per flow).
    pub const MAP_HALF_OPEN: &str = "HALF_OPEN";
    /// Read-only global: which connection-table design the program runs.
    pub const GLOBAL_CONNTRACK_DESIGN: &str = "CONNTRACK_DESIGN";
    /// Read-only global: buckets in `FLOW_BUCKETS` minus one.
    pub const GLOBAL_FLOW_BUCKET_MASK: &str = "FLOW_BUCKET_MASK";
    /// Read-only global: buckets in `HALF_OPEN` minus one.
    pub const GLOBAL_HALF_OPEN_BUCKET_MASK: &str = "HALF_OPEN_BUCKET_MASK";
    /// Node-wide settings (`LbConfig`, one entry).
    pub const MAP_CONFIG: &str = "CONFIG";
    /// The connection table's idle horizons (one `u64`,
    /// `flow_table::idle_horizons_word`), written by lbd from
    /// `tcp_idle_timeout_s` and `udp_idle_timeout_s` at start and reload.
    /// Not pinned: each lbd writes its own before its program runs.
    pub const MAP_IDLE_HORIZONS: &str = "IDLE_HORIZONS";
    /// Per-CPU `stats::CpuState`, one entry: the node counters per
    /// `stats::Counter` and the packet in flight's state.
    pub const MAP_PACKET_STATE: &str = "PACKET_STATE";
    /// Per-CPU counters per `stats::Counter`, one entry each, as releases
    /// before `PACKET_STATE` held them: a pin of it left by such an lbd is
    /// kept (read-only once this lbd's program runs) and added to what
    /// lbd reports, so the counters go on from there.
    pub const MAP_LEGACY_COUNTERS: &str = "COUNTERS";
    /// Per-CPU `TrafficCounters` per VIP id.
    pub const MAP_VIP_STATS: &str = "VIP_STATS";
    /// Per-CPU `TrafficCounters` per backend id.
    pub const MAP_BACKEND_STATS: &str = "BACKEND_STATS";
    /// NAT flow table: buckets of ways (`flow_table`) of `FlowKey` and
    /// `NatEntry`, both directions of every flow.
    pub const MAP_NAT_BUCKETS: &str = "NAT_BUCKETS";
    /// Read-only global: buckets in `NAT_BUCKETS` minus one.
    pub const GLOBAL_NAT_BUCKET_MASK: &str = "NAT_BUCKET_MASK";
    /// The NAT flow table of releases before `NAT_BUCKETS`: a kernel hash
    /// map `FlowKey` -> `NatEntry`. Not in the object any more; an
    /// upgrade carries its flows over (`legacy_nat`).
    pub const MAP_NAT_FLOWS: &str = "NAT_FLOWS";
    /// NAT source per VIP id (`NatSource`).
    pub const MAP_NAT_SOURCES: &str = "NAT_SOURCES";
    /// Addresses the balancer serves, VIP and NAT addresses
    /// (`ServiceAddr` -> `SERVICE_ADDR_F_*`): fragments to them are
    /// dropped. Not pinned: lbd fills it before its program runs.
    pub const MAP_SERVICE_ADDRS: &str = "SERVICE_ADDRS";
    /// Interfaces XDP may redirect to: ifindex -> ifindex (a devmap hash).
    pub const MAP_TX_PORTS: &str = "TX_PORTS";
    /// Tunnel settings (`TunnelConfig`, one entry).
    pub const MAP_TUNNEL_CONFIG: &str = "TUNNEL_CONFIG";
    /// Per-CPU next hop per backend id of tunnelled modes (`TunnelHop`).
    pub const MAP_TUNNEL_HOPS: &str = "TUNNEL_HOPS";
    /// tc egress program for `lo`: encapsulates lbd's marked data-path
    /// health checks to their backend.
    pub const PROG_TC_HC_ENCAP: &str = "tc_hc_encap";
    /// Ring buffer of `DataplaneEvent`s for lbd's log.
    pub const MAP_EVENTS: &str = "EVENTS";
    /// Per-CPU time of the last event of each kind (rate limit).
    pub const MAP_EVENT_LAST: &str = "EVENT_LAST";
    /// Deny and allow rules of IPv4 sources (`guard::AclData4` -> rule id).
    pub const MAP_ACL_V4: &str = "ACL_V4";
    /// Deny and allow rules of IPv6 sources (`guard::AclData6` -> rule id).
    pub const MAP_ACL_V6: &str = "ACL_V6";
    /// Per-CPU cache of ACL verdicts (`guard::AclCacheEntry`).
    pub const MAP_ACL_CACHE: &str = "ACL_CACHE";
    /// Per-CPU packets matched per ACL rule id.
    pub const MAP_ACL_HITS: &str = "ACL_HITS";
    /// What guards each VIP (`guard::VipGuard` per VIP id).
    pub const MAP_VIP_GUARDS: &str = "VIP_GUARDS";
    /// Token buckets of new flows (`guard::LimitKey` -> `TokenBucket`).
    pub const MAP_LIMIT_BUCKETS: &str = "LIMIT_BUCKETS";
    /// Benchmark wrapper: restores a packet, then tail-calls the program
    /// under test.
    pub const PROG_BENCH: &str = "xdp_bench";
    /// Benchmark floor: swaps MACs and sends the frame back (XDP_TX).
    pub const PROG_SWAP: &str = "xdp_swap";
    /// The packet `xdp_bench` restores (`BenchTemplate`, one entry).
    pub const MAP_BENCH_TEMPLATE: &str = "BENCH_TEMPLATE";
    /// The program `xdp_bench` tail-calls (slot 0).
    pub const MAP_BENCH_TARGET: &str = "BENCH_TARGET";
    /// `xdp_bench` for tc programs.
    pub const PROG_TC_BENCH: &str = "tc_bench";
    /// The program `tc_bench` tail-calls (slot 0).
    pub const MAP_TC_BENCH_TARGET: &str = "TC_BENCH_TARGET";
    /// End-to-end baseline: a bare MAC-rewrite + XDP_TX forwarder.
    pub const PROG_FORWARD_ONE: &str = "xdp_forward_one";
    /// Its MACs (slot 0 own, 1..=4 backends).
    pub const MAP_BENCH_FORWARD: &str = "BENCH_FORWARD";
}

/// Index of a slot in the flat Maglev array: the table copy `table` of VIP
/// `vip_id`, slot `slot`. Both sides compute it here.
#[inline(always)]
pub const fn maglev_index(vip_id: u32, table: u32, slot: u32) -> u32 {
    (vip_id * MAGLEV_TABLES_PER_VIP + table) * MAGLEV_SIZE_MAX + slot
}
