//! Keys and values of the BPF maps. Addresses are kept as raw network-order
//! bytes (an IPv4 address fills the first word, the rest is zero); ports are
//! network order too, as they sit in the packet, so the data plane copies
//! instead of converting.

/// Key of the VIP map: the service a packet is addressed to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    /// Destination address, network order.
    pub addr: [u32; 4],
    /// Destination port, network order.
    pub port: u16,
    /// IP protocol (`IPPROTO_TCP` / `IPPROTO_UDP`).
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
}

/// Value of the VIP map: where the VIP's Maglev tables live and which copy
/// is live. Replacing this value (one atomic map update) is how a new table
/// becomes visible to packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipMeta {
    /// Index of the VIP in the Maglev and per-VIP stats arrays.
    pub id: u32,
    /// Maglev table size (a prime, at most `MAGLEV_SIZE_MAX`).
    pub table_size: u32,
    /// Which of the `MAGLEV_TABLES_PER_VIP` copies packets read.
    pub active_table: u32,
    /// How the VIP's packets reach its backends and what of a new flow
    /// Maglev hashes: a `Mode` in bits 0-7, an `Affinity` in bits 8-15
    /// (read them with `mode` and `affinity`; `with_affinity` sets the
    /// second). Older lbd versions wrote the mode alone here, so their
    /// VIPs read as `Affinity::Connection`. One u32, not two byte fields:
    /// the data plane copies this value, and byte fields made the
    /// verifier walk a third more states.
    pub forwarding: u32,
}

impl VipMeta {
    /// The meta of a VIP whose packets go by `mode`, with
    /// `Affinity::Connection` (see `with_affinity`).
    pub const fn new(id: u32, table_size: u32, active_table: u32, mode: crate::Mode) -> Self {
        Self {
            id,
            table_size,
            active_table,
            forwarding: mode as u32,
        }
    }

    /// This meta with `affinity`.
    pub const fn with_affinity(self, affinity: crate::Affinity) -> Self {
        Self {
            forwarding: (self.forwarding & 0xff) | (affinity as u32) << 8,
            ..self
        }
    }

    /// The forwarding mode's value (a `Mode` as u32).
    #[inline(always)]
    pub const fn mode(&self) -> u32 {
        self.forwarding & 0xff
    }

    /// The affinity's value (an `Affinity` as u32).
    #[inline(always)]
    pub const fn affinity(&self) -> u32 {
        (self.forwarding >> 8) & 0xff
    }
}

/// Key of `SERVICE_ADDRS`: an address the balancer serves (a VIP's, on
/// any port, or a NAT address), so the fragment path can tell the
/// balancer's fragments from the node's own with one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ServiceAddr {
    /// The address, network order (IPv4 in the first word, the rest 0).
    pub addr: [u32; 4],
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Zero.
    pub _pad: [u8; 3],
}

/// A backend as the data plane needs it: where to send frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    /// Backend address, network order (for ICMP and future encapsulation).
    pub addr: [u32; 4],
    /// Generation of this id: a flow pinned to an older generation of the
    /// same id belongs to a removed backend and is hashed again.
    pub generation: u32,
    /// VIP this backend serves.
    pub vip_id: u16,
    /// Port the backend listens on, network order (NAT mode: the
    /// destination port after translation; 0 = the VIP's port). Sits in
    /// what was the high half of a u32 `vip_id`, so older pinned values
    /// read as "same port".
    pub port: u16,
    /// Destination MAC for direct server return (unused by routed modes,
    /// which take the next hop's MAC from the FIB).
    pub mac: [u8; 6],
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// `BACKEND_F_*`.
    pub flags: u8,
}

/// Key of the connection table: the packet's 5-tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Source address, network order.
    pub src: [u32; 4],
    /// Destination address, network order.
    pub dst: [u32; 4],
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Zero; named so the key has no implicit padding.
    pub _pad: u16,
}

/// Value of the connection table: the backend a flow is pinned to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEntry {
    /// Backend id the flow goes to.
    pub backend_id: u32,
    /// `Backend::generation` when the flow was pinned.
    pub backend_generation: u32,
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC, one tick of
    /// resolution) of a recent packet, refreshed at most every
    /// `FLOW_TOUCH_INTERVAL_NS`: lets lbd tell live flows from idle ones.
    pub last_seen_ns: u64,
    /// `FLOW_F_*`.
    pub flags: u32,
    /// `hash::flow_hash` of the flow's key, as the data plane computed it
    /// when it pinned the flow (to pick the backend); 0: not known (entries
    /// lbd writes), computed again when needed. Saves a tracked GUE (or
    /// IPv6-outer) flow's packets the hash for their outer header.
    pub hash: u32,
}

/// Node-wide settings written by lbd (a one-entry array).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LbConfig {
    /// MAC of the interface the program is attached to: source of forwarded
    /// frames.
    pub iface_mac: [u8; 6],
    /// `CONFIG_F_*`.
    pub flags: u8,
    /// Zero.
    pub _pad: u8,
}

/// Where a NAT-mode VIP's translated flows come from: the NAT address the
/// LB owns for it and the source ports it may hand out (one entry per VIP
/// id in `NAT_SOURCES`; several VIPs may share an address and range, the
/// reply key keeps them apart).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatSource {
    /// The NAT address, network order (same family as the VIP).
    pub addr: [u32; 4],
    /// First source port to hand out, host order.
    pub port_min: u16,
    /// Last source port to hand out (inclusive), host order.
    pub port_max: u16,
    /// `AF_INET` or `AF_INET6`; 0 = no NAT source (new flows dropped).
    pub family: u8,
    /// Zero.
    pub _pad: [u8; 3],
}

/// One direction of a NAT-mode flow in the NAT flow table
/// (`NAT_BUCKETS`), keyed by the packet's own 5-tuple as it arrives:
/// client -> VIP (`NAT_DIR_FORWARD`) or backend -> NAT address
/// (`NAT_DIR_REPLY`). The value is what the packet
/// becomes, so both directions take the same code: rewrite addresses and
/// ports to these, then send to the cached next hop. The other direction's
/// key is always `(src: dst, dst: src, sport: dport, dport: sport)` of this
/// value, which is how lbd pairs them (reaper, replication, `lbctl flow`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatEntry {
    /// Source address after translation, network order.
    pub src: [u32; 4],
    /// Destination address after translation, network order.
    pub dst: [u32; 4],
    /// Source port after translation, network order.
    pub sport: u16,
    /// Destination port after translation, network order.
    pub dport: u16,
    /// Backend id the flow was translated to (stats, drain, `lbctl flow`).
    pub backend_id: u32,
    /// `bpf_ktime_get_coarse_ns()` of a recent packet in this direction,
    /// refreshed at most every `FLOW_TOUCH_INTERVAL_NS` (when the cached
    /// next hop is looked up again too).
    pub last_seen_ns: u64,
    /// Egress interface of the translated packet, from `bpf_fib_lookup`;
    /// 0 = not looked up yet.
    pub ifindex: u32,
    /// Next hop's MAC (destination of the translated frame).
    pub dmac: [u8; 6],
    /// Egress interface's MAC (source of the translated frame).
    pub smac: [u8; 6],
    /// `NAT_F_*`: what this direction has seen.
    pub flags: u8,
    /// `NAT_DIR_FORWARD` or `NAT_DIR_REPLY`.
    pub direction: u8,
    /// VIP id of the flow.
    pub vip_id: u16,
    /// MTU of the translated packet's route (bytes of IP packet), from
    /// the same FIB lookup as `ifindex`: larger packets are answered with
    /// ICMP (or dropped), never sent. 0 = not known (an entry lbd wrote):
    /// not checked until the next lookup.
    pub mtu: u32,
}

/// Traffic counted per VIP and per backend (per CPU; lbd sums the CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrafficCounters {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (whole frames).
    pub bytes: u64,
    /// Flows that were new to the connection table.
    pub new_flows: u64,
}

/// Something the data plane reports to lbd's log through the `EVENTS`
/// ring buffer (rate-limited per CPU and kind in the program).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DataplaneEvent {
    /// `EVENT_*`.
    pub kind: u32,
    /// VIP id concerned.
    pub vip_id: u32,
    /// The packet's flow.
    pub flow: FlowKey,
}

/// Largest packet the benchmark wrapper restores.
pub const BENCH_TEMPLATE_MAX: usize = 256;
/// The same, as the u32 the verifier sees.
pub const BENCH_TEMPLATE_MAX_U32: u32 = BENCH_TEMPLATE_MAX as u32;

/// The packet the benchmark wrapper (`xdp_bench`) restores before each run
/// of the program under test, so BPF_PROG_TEST_RUN with a repeat count
/// measures that program on the same input every time instead of on its
/// own output.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchTemplate {
    /// Bytes of `bytes` in use.
    pub len: u32,
    /// When non-zero: offset of a 32-bit field (e.g. the source address)
    /// that gets a new value on every run, so every run is a new flow.
    pub vary_offset: u32,
    /// When non-zero (and `vary_offset` is): offset of a 16-bit port that
    /// gets `varied_port` of the run too, so runs look like many clients'
    /// connections (varied addresses and ports), not one port's.
    pub vary_port_offset: u32,
    /// The packet.
    pub bytes: [u8; BENCH_TEMPLATE_MAX],
}

impl Default for BenchTemplate {
    fn default() -> Self {
        Self {
            len: 0,
            vary_offset: 0,
            vary_port_offset: 0,
            bytes: [0; BENCH_TEMPLATE_MAX],
        }
    }
}

impl BenchTemplate {
    /// The port run `run` gets (host order): spread over 1024..=65535 as
    /// clients' ephemeral ports are, neighbouring runs far apart (a
    /// multiplicative hash), so the ports a benchmark's flows ask for
    /// collide as often as random clients' would.
    #[inline(always)]
    pub const fn varied_port(run: u32) -> u16 {
        (1024 + (run.wrapping_mul(0x9E37_79B1) >> 16) % 64_512) as u16
    }
}

impl TrafficCounters {
    /// The sum of two counters (e.g. of two CPUs' copies).
    pub const fn plus(self, other: Self) -> Self {
        Self {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
            new_flows: self.new_flows + other.new_flows,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), made only of integers, with no
    // implicit padding (checked by the size assertions below).
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::ServiceAddr {}
    unsafe impl aya::Pod for super::VipMeta {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowEntry {}
    unsafe impl aya::Pod for super::LbConfig {}
    unsafe impl aya::Pod for super::TrafficCounters {}
    unsafe impl aya::Pod for super::DataplaneEvent {}
    unsafe impl aya::Pod for super::BenchTemplate {}
    unsafe impl aya::Pod for super::NatSource {}
    unsafe impl aya::Pod for super::NatEntry {}
    unsafe impl aya::Pod for crate::tunnel::TunnelConfig {}
    unsafe impl aya::Pod for crate::tunnel::TunnelHop {}
    unsafe impl aya::Pod for crate::stats::CpuState {}
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<VipKey>() == 20);
    assert!(size_of::<ServiceAddr>() == 20);
    assert!(size_of::<VipMeta>() == 16);
    assert!(size_of::<Backend>() == 32);
    assert!(size_of::<FlowKey>() == 40);
    assert!(size_of::<FlowEntry>() == 24);
    assert!(size_of::<LbConfig>() == 8);
    assert!(size_of::<TrafficCounters>() == 24);
    assert!(
        size_of::<crate::stats::CpuState>()
            == 8 * (crate::stats::COUNTER_SLOTS as usize + crate::stats::PACKET_SCRATCH_WORDS)
    );
    assert!(size_of::<DataplaneEvent>() == 48);
    assert!(size_of::<BenchTemplate>() == 12 + BENCH_TEMPLATE_MAX);
    assert!(size_of::<NatSource>() == 24);
    assert!(size_of::<NatEntry>() == 72);
    assert!(size_of::<crate::tunnel::TunnelConfig>() == 28);
    assert!(size_of::<crate::tunnel::TunnelHop>() == 40);
};
