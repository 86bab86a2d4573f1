//! Every map of the data plane, with what it is for. Sizes here are
//! defaults; lbd resizes the big ones at load time from its config.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
/// `BPF_F_MMAPABLE`: the array can be mapped into lbd's memory.
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_F_NO_COMMON_LRU`: an LRU hash with one LRU list per CPU.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;

use lb_common::{
    consts::EVENT_LAST_SLOTS,
    consts::{
        CONNTRACK_SIZE_DEFAULT, HALF_OPEN_BUCKETS, MAGLEV_SIZE_MAX, MAGLEV_TABLES_PER_VIP,
        MAX_BACKENDS, MAX_VIPS_DEFAULT, NAT_FLOWS_SIZE_DEFAULT, TX_PORTS_MAX,
    },
    flow_table::{self, FlowBucket},
    guard::{
        AclCacheEntry, AclData4, AclData6, LimitKey, TokenBucket, VipGuard, ACL_CACHE_SLOTS,
        ACL_RULES_MAX, ACL_TRIE_SIZE, LIMIT_TABLE_SIZE,
    },
    nat::NatBucket,
    stats::CpuState,
    vip_index::{self, VipIndexBucket},
    Backend, FlowEntry, FlowKey, LbConfig, NatSource, ServiceAddr, TrafficCounters, TunnelConfig,
    TunnelHop, VipKey, VipMeta,
};

use crate::nat::scratch::NatScratch;

/// Services: (address, port, protocol) -> where the VIP's tables are.
/// lbd's authoritative copy: the packet path reads `VIP_INDEX` and asks
/// this map only when the index is unsure (see `lookup`).
#[map]
pub static VIPS: HashMap<VipKey, VipMeta> = HashMap::with_max_entries(MAX_VIPS_DEFAULT, 0);

/// `VIPS` as an index of buckets (`lb_common::vip_index`; bucket 0 is its
/// header), read with plain loads. Memory-mappable: lbd writes it in
/// place.
#[map]
pub static VIP_INDEX: Array<VipIndexBucket> = Array::with_max_entries(
    1 + vip_index::vip_index_buckets_for(MAX_VIPS_DEFAULT),
    BPF_F_MMAPABLE,
);

/// Maglev tables, flat: two copies of `MAGLEV_SIZE_MAX` backend ids per VIP.
/// Memory-mappable: lbd writes a table's slots in place (a whole table is
/// 65,537 of them, a syscall each would take tens of ms).
#[map]
pub static MAGLEV: Array<u32> = Array::with_max_entries(
    MAX_VIPS_DEFAULT * MAGLEV_TABLES_PER_VIP * MAGLEV_SIZE_MAX,
    BPF_F_MMAPABLE,
);

/// Backends by id (id 0 is never used).
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Connection table: buckets of `FLOW_WAYS` flows (5-tuple -> backend),
/// see `conntrack::buckets`. Memory-mappable: lbd reads and writes it in
/// place with the same protocol.
#[map]
pub static FLOW_BUCKETS: Array<FlowBucket> = Array::with_max_entries(
    flow_table::buckets_for(CONNTRACK_SIZE_DEFAULT),
    BPF_F_MMAPABLE,
);

/// Half-open TCP flows (SYN seen, ACK not yet): buckets of `FLOW_WAYS`
/// flows, one bucket per flow, apart from the connection table so a SYN
/// flood never evicts an established flow (see `conntrack::half_open`).
/// Memory-mappable: lbd counts its occupancy in place.
#[map]
pub static HALF_OPEN: Array<FlowBucket> =
    Array::with_max_entries(HALF_OPEN_BUCKETS, BPF_F_MMAPABLE);

/// The connection table as a kernel map (5-tuple -> backend, least
/// recently used evicted first): the design before `FLOW_BUCKETS`, loaded
/// with one entry unless lbd picks it (`conntrack::DESIGN_KERNEL_MAP`).
#[map]
pub static CONNTRACK: LruHashMap<FlowKey, FlowEntry> =
    LruHashMap::with_max_entries(CONNTRACK_SIZE_DEFAULT, 0);

/// NAT-mode flows, both directions (see `NatEntry`): buckets of
/// `FLOW_WAYS` ways, see `nat::table`. Inserts are exclusive and never
/// evict: entries leave only through lbd's reaper, so a live translation
/// and its source port are never lost or handed out twice.
/// Memory-mappable: lbd reads and writes it in place with the same
/// protocol.
#[map]
pub static NAT_BUCKETS: Array<NatBucket> = Array::with_max_entries(
    flow_table::buckets_for(NAT_FLOWS_SIZE_DEFAULT),
    BPF_F_MMAPABLE,
);

/// NAT address and source-port range per VIP id.
#[map]
pub static NAT_SOURCES: Array<NatSource> = Array::with_max_entries(MAX_VIPS_DEFAULT, 0);

/// Addresses the balancer serves, VIP and NAT addresses (value:
/// `SERVICE_ADDR_F_*`), asked only by fragments (see `parse`): those to
/// such an address are dropped, the node's own pass. Room for a VIP
/// address and a NAT address per VIP. Not pinned: lbd fills it (from
/// `VIPS` and `NAT_SOURCES` as it writes them) before its program runs,
/// and a program swapped in brings its own.
#[map]
pub static SERVICE_ADDRS: HashMap<ServiceAddr, u32> =
    HashMap::with_max_entries(2 * MAX_VIPS_DEFAULT, 0);

/// Scratch space of the NAT path (one slot per CPU; see `nat::scratch`).
#[map]
pub static NAT_SCRATCH: PerCpuArray<NatScratch> = PerCpuArray::with_max_entries(1, 0);

/// Each CPU's node counters (read by lbd, pinned) and what the packet
/// path leaves for the entry point's later steps (a new flow's insert, a
/// tunnel wrap): one slot per CPU, looked up once per packet by the entry
/// point (see `state`), its layout inside the slot the data plane's own.
#[map]
pub static PACKET_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// Interfaces routed packets may leave by (XDP_REDIRECT), keyed by ifindex;
/// filled by lbd.
#[map]
pub static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(TX_PORTS_MAX, 0);

/// Tunnel settings of the node: outer source prefixes, GUE port, the
/// balancer's interface (one entry, written by lbd).
#[map]
pub static TUNNEL_CONFIG: Array<TunnelConfig> = Array::with_max_entries(1, 0);

/// Next hop and route MTU of each tunnelled backend, by backend id, per
/// CPU (see `forward::tunnel::hop`).
#[map]
pub static TUNNEL_HOPS: PerCpuArray<TunnelHop> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Node settings (one entry).
#[map]
pub static CONFIG: Array<LbConfig> = Array::with_max_entries(1, 0);

/// The connection table's idle horizons (one entry,
/// `flow_table::idle_horizons_word`: zero reads as the defaults), written
/// by lbd; read by `conntrack::idle_horizons` only where a flow's age
/// decides something. A map of its own, not a field of `CONFIG`: that
/// map is pinned, and a new size would start it afresh at an upgrade.
#[map]
pub static IDLE_HORIZONS: Array<u64> = Array::with_max_entries(1, 0);

/// Per-CPU traffic per VIP id.
#[map]
pub static VIP_STATS: PerCpuArray<TrafficCounters> =
    PerCpuArray::with_max_entries(MAX_VIPS_DEFAULT, 0);

/// Per-CPU traffic per backend id.
#[map]
pub static BACKEND_STATS: PerCpuArray<TrafficCounters> =
    PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// Events for lbd's log (`DataplaneEvent`), rate-limited.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// Per-CPU time of the last event of each kind, for the rate limit.
#[map]
pub static EVENT_LAST: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_LAST_SLOTS, 0);

/// What guards each VIP (deny/allow lists in force, limits of new flows),
/// by VIP id; see `guard`.
#[map]
pub static VIP_GUARDS: Array<VipGuard> = Array::with_max_entries(MAX_VIPS_DEFAULT, 0);

/// Deny and allow rules of IPv4 sources: (scope word, address) prefix ->
/// rule id.
#[map]
pub static ACL_V4: LpmTrie<AclData4, u32> = LpmTrie::with_max_entries(ACL_TRIE_SIZE, 0);

/// Deny and allow rules of IPv6 sources: (scope word, address) prefix ->
/// rule id.
#[map]
pub static ACL_V6: LpmTrie<AclData6, u32> = LpmTrie::with_max_entries(ACL_TRIE_SIZE, 0);

/// Per-CPU cache of ACL verdicts by source and VIP (see
/// `guard::acl`); not pinned: a new program starts with it empty.
#[map]
pub static ACL_CACHE: PerCpuArray<AclCacheEntry> =
    PerCpuArray::with_max_entries(ACL_CACHE_SLOTS, 0);

/// Per-CPU packets each ACL rule matched, by rule id.
#[map]
pub static ACL_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ACL_RULES_MAX, 0);

/// Token buckets of new flows per VIP and source address or prefix
/// (least recently used evicted first, from per-CPU lists: an insert takes
/// no lock shared by every CPU, and an evicted bucket only comes back
/// full).
#[map]
pub static LIMIT_BUCKETS: LruHashMap<LimitKey, TokenBucket> =
    LruHashMap::with_max_entries(LIMIT_TABLE_SIZE, BPF_F_NO_COMMON_LRU);
