//! The backend side of tunnelled direct server return (`lb-decap`): which
//! packets its program may unwrap, what it counts, and the names of its
//! maps. A tunnel is not an open relay: a packet is unwrapped only when its
//! outer destination is one of the backend's own addresses (`DECAP_ADDRS`),
//! its outer source is a balancer's (`DECAP_SOURCES_V4`/`_V6`, when
//! `DECAP_F_SOURCES` is set) and its inner destination is a configured VIP
//! (`DECAP_VIPS`); anything else that looks like a tunnel packet to us is
//! dropped and counted.

/// Key of `DECAP_ADDRS` (outer destinations the backend accepts) and of
/// `DECAP_VIPS` entries' address part.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DecapAddr {
    /// Address, network order (IPv4 in the first word, the rest zero).
    pub addr: [u32; 4],
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Zero.
    pub _pad: [u8; 3],
}

/// Node settings of the decap program (one entry of `DECAP_CONFIG`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DecapConfig {
    /// UDP port GUE packets arrive on, network order; 0 = GUE off.
    pub gue_port: u16,
    /// `DECAP_F_*`.
    pub flags: u16,
}

/// `DecapConfig::flags`: unwrap IPIP / IP6IP6 / 4in6.
pub const DECAP_F_IPIP: u16 = 1;
/// `DecapConfig::flags`: unwrap GUE on `gue_port`.
pub const DECAP_F_GUE: u16 = 2;
/// `DecapConfig::flags`: the outer source must be in `DECAP_SOURCES_V4` /
/// `DECAP_SOURCES_V6` (the balancers' tunnel sources); without it any
/// sender is accepted, so anyone routed to the backend could reach the
/// VIPs past the balancer's ACLs and limits.
pub const DECAP_F_SOURCES: u16 = 4;

/// Per-CPU counters of the decap program (`DECAP_COUNTERS`), by index. New
/// ones go at the end.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapCounter {
    /// An IPIP / IP6IP6 / 4in6 packet unwrapped and handed to the stack.
    DecapIpip = 0,
    /// A GUE packet unwrapped and handed to the stack.
    DecapGue = 1,
    /// Not a tunnel packet (or not to our GUE port): passed untouched.
    PassNotTunnel = 2,
    /// A tunnel packet whose outer destination is not ours: passed
    /// untouched (the stack routes or drops it; never unwrapped).
    PassNotOurs = 3,
    /// A tunnel packet to us whose inner destination is no configured VIP
    /// (address, port, protocol): dropped.
    DropNotVip = 4,
    /// Truncated or inconsistent outer or inner headers: dropped.
    DropMalformed = 5,
    /// An outer fragment, a GUE variant/flags we do not speak, or an outer
    /// CE mark over an inner packet that is not ECN-capable (RFC 6040):
    /// dropped.
    DropUnsupported = 6,
    /// A tunnel packet to us whose outer source is in no configured source
    /// prefix (not from a balancer): dropped.
    DropNotSource = 7,
}

/// Number of `DecapCounter` slots.
pub const DECAP_COUNTER_COUNT: u32 = 8;

impl DecapCounter {
    /// Every counter, in index order.
    pub const ALL: [DecapCounter; DECAP_COUNTER_COUNT as usize] = [
        DecapCounter::DecapIpip,
        DecapCounter::DecapGue,
        DecapCounter::PassNotTunnel,
        DecapCounter::PassNotOurs,
        DecapCounter::DropNotVip,
        DecapCounter::DropMalformed,
        DecapCounter::DropUnsupported,
        DecapCounter::DropNotSource,
    ];

    /// Stable snake_case name (status output, metrics).
    pub const fn name(self) -> &'static str {
        match self {
            DecapCounter::DecapIpip => "decap_ipip",
            DecapCounter::DecapGue => "decap_gue",
            DecapCounter::PassNotTunnel => "pass_not_tunnel",
            DecapCounter::PassNotOurs => "pass_not_ours",
            DecapCounter::DropNotVip => "drop_not_vip",
            DecapCounter::DropMalformed => "drop_malformed",
            DecapCounter::DropUnsupported => "drop_unsupported",
            DecapCounter::DropNotSource => "drop_not_source",
        }
    }
}

/// Names of the decap object's programs and maps.
pub mod names {
    /// The XDP decap program.
    pub const PROG_XDP_DECAP: &str = "xdp_decap";
    /// The same as a tc ingress program.
    pub const PROG_TC_DECAP: &str = "tc_decap";
    /// Outer destinations accepted: `DecapAddr` -> u32 (1).
    pub const MAP_DECAP_ADDRS: &str = "DECAP_ADDRS";
    /// Inner destinations accepted: `VipKey` -> u32 (1).
    pub const MAP_DECAP_VIPS: &str = "DECAP_VIPS";
    /// `DecapConfig`, one entry.
    pub const MAP_DECAP_CONFIG: &str = "DECAP_CONFIG";
    /// Outer IPv4 sources accepted (with `DECAP_F_SOURCES`): LPM trie,
    /// `Key<[u8; 4]>` -> u32 (1).
    pub const MAP_DECAP_SOURCES_V4: &str = "DECAP_SOURCES_V4";
    /// Outer IPv6 sources accepted: LPM trie, `Key<[u8; 16]>` -> u32 (1).
    pub const MAP_DECAP_SOURCES_V6: &str = "DECAP_SOURCES_V6";
    /// Per-CPU u64 per `DecapCounter`.
    pub const MAP_DECAP_COUNTERS: &str = "DECAP_COUNTERS";
    /// Benchmark wrapper (XDP): restores the packet, tail-calls slot 0 of
    /// `DECAP_BENCH_TARGET`. Never attached.
    pub const PROG_XDP_DECAP_BENCH: &str = "xdp_decap_bench";
    /// Benchmark wrapper (tc): the same with `TC_DECAP_BENCH_TARGET`.
    pub const PROG_TC_DECAP_BENCH: &str = "tc_decap_bench";
    /// The packet the wrappers restore (`BenchTemplate`, one entry).
    pub const MAP_DECAP_BENCH_TEMPLATE: &str = "DECAP_BENCH_TEMPLATE";
    /// The XDP program the wrapper tail-calls (slot 0).
    pub const MAP_DECAP_BENCH_TARGET: &str = "DECAP_BENCH_TARGET";
    /// The tc program the wrapper tail-calls (slot 0).
    pub const MAP_TC_DECAP_BENCH_TARGET: &str = "TC_DECAP_BENCH_TARGET";
}

/// Most outer addresses / VIPs one backend's decap accepts.
pub const DECAP_ADDRS_MAX: u32 = 64;
/// Most VIPs (address, port, protocol) one backend's decap accepts.
pub const DECAP_VIPS_MAX: u32 = 1024;
/// Most source prefixes per family (the size of each source trie): the
/// balancers' tunnel sources, a handful in practice.
pub const DECAP_SOURCES_MAX: u32 = 64;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers only, no implicit padding (sizes below).
    unsafe impl aya::Pod for super::DecapAddr {}
    unsafe impl aya::Pod for super::DecapConfig {}
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<DecapAddr>() == 20);
    assert!(size_of::<DecapConfig>() == 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_at_their_index_with_unique_names() {
        for (i, c) in DecapCounter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            for o in &DecapCounter::ALL[..i] {
                assert_ne!(c.name(), o.name());
            }
        }
    }
}
