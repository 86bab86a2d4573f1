//! Tunnelled direct server return (`Mode::Ipip`, `Mode::Gue`): the settings
//! lbd writes, the per-backend next hop the data plane caches, the outer
//! source address rule (Katran-style: derived from the client so backends'
//! NICs spread flows over their receive queues) and the health-check mark
//! that sends lbd's own checks through the same encapsulation. Both sides
//! and the tests compute outer sources here, so they always agree.

use crate::consts::{AF_INET, AF_INET6};

/// Node-wide tunnel settings (one entry of `TUNNEL_CONFIG`), written by lbd
/// from its `[tunnel]` section.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TunnelConfig {
    /// IPv6 prefix outer sources are taken from, network order.
    pub source_v6: [u32; 4],
    /// IPv4 prefix outer sources are taken from, network order.
    pub source_v4: u32,
    /// UDP destination port of GUE packets, network order.
    pub gue_port: u16,
    /// Length of `source_v4` (0..=32; 32 = one fixed address).
    pub source_v4_len: u8,
    /// Length of `source_v6` (0..=128; 128 = one fixed address).
    pub source_v6_len: u8,
    /// The interface lbd's balancer is attached to (forwarding enabled by
    /// lbd): where FIB lookups of locally sent health checks start, as a
    /// client packet's would.
    pub ifindex: u32,
}

/// Where a tunnelled backend's packets go next, cached per backend id and
/// per CPU (`TUNNEL_HOPS`), so a tracked flow pays for no FIB lookup: the
/// entry is looked up again when older than `FLOW_TOUCH_INTERVAL_NS` or
/// when the backend id has a new generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TunnelHop {
    /// `bpf_ktime_get_coarse_ns()` of the FIB lookup; 0 = never looked up.
    pub resolved_ns: u64,
    /// Egress interface.
    pub ifindex: u32,
    /// MTU of the route to the backend (from the FIB), bytes of IP packet.
    pub mtu: u32,
    /// `Backend::generation` the lookup was made for.
    pub generation: u32,
    /// Next hop's MAC (destination of the encapsulated frame).
    pub dmac: [u8; 6],
    /// Egress interface's MAC (source of the encapsulated frame).
    pub smac: [u8; 6],
    /// Zero.
    pub _pad: [u8; 8],
}

/// IP protocol number of IPv4-in-IP (outer `protocol` / `next_header`).
pub const IPPROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP.
pub const IPPROTO_IPV6: u8 = 41;
/// Bytes an outer IPv4 header adds.
pub const OUTER_V4_LEN: u32 = 20;
/// Bytes an outer IPv6 header adds.
pub const OUTER_V6_LEN: u32 = 40;
/// Bytes the UDP header of GUE adds (variant 1 has no GUE header).
pub const GUE_UDP_LEN: u32 = 8;
/// Default GUE port (`[tunnel] gue_port`), the one Linux fou examples use.
pub const GUE_PORT_DEFAULT: u16 = 6080;
/// TTL / hop limit of outer headers.
pub const OUTER_TTL: u8 = 64;

/// Bytes encapsulation adds for `mode` (`Mode::Ipip` or `Mode::Gue`) to a
/// backend of family `backend_family`: what the egress MTU must leave room
/// for (README's MSS guidance is this number).
pub const fn overhead(gue: bool, backend_family: u8) -> u32 {
    let outer = if backend_family == AF_INET6 {
        OUTER_V6_LEN
    } else {
        OUTER_V4_LEN
    };
    if gue {
        outer + GUE_UDP_LEN
    } else {
        outer
    }
}

/// skb mark base of lbd's data-path health checks: a check socket of
/// backend id `n` carries mark `HC_MARK_BASE | n`, and `tc_hc_encap` (tc
/// egress on `lo`, where locally sent packets to a VIP the node holds go)
/// encapsulates it to that backend exactly as client packets are.
pub const HC_MARK_BASE: u32 = 0x4c42_0000; // "LB"
/// Bits of the mark that must equal `HC_MARK_BASE`; the rest is the
/// backend id.
pub const HC_MARK_MASK: u32 = 0xffff_0000;

/// The backend id a health-check mark names, if it is one of ours.
#[inline(always)]
pub const fn hc_backend_of_mark(mark: u32) -> Option<u32> {
    if mark & HC_MARK_MASK == HC_MARK_BASE && mark & !HC_MARK_MASK != 0 {
        Some(mark & !HC_MARK_MASK)
    } else {
        None
    }
}

/// Mixes the client's address and port into 32 bits that vary with both
/// (every bit of the port moves the high and low halves).
#[inline(always)]
const fn client_bits(client: u32, port: u16) -> u32 {
    let p = u16::from_be(port) as u32;
    (u32::from_be(client) ^ (p << 16) ^ p).wrapping_mul(0x9e37_79b1)
}

/// Outer IPv4 source of a flow from client `client:port` (network order):
/// the configured prefix with its host bits taken from the client, so
/// one client's flows spread and two clients rarely share a source.
#[inline(always)]
pub const fn outer_source_v4(config: &TunnelConfig, client: u32, port: u16) -> u32 {
    let len = config.source_v4_len;
    let host_mask: u32 = if len >= 32 { 0 } else { u32::MAX >> len };
    let prefix = u32::from_be(config.source_v4) & !host_mask;
    (prefix | (client_bits(client, port) & host_mask)).to_be()
}

/// Outer IPv6 source of a flow from client `client:port` (`client` is the
/// client's address, IPv4 in the first word for a 4in6 flow): the
/// configured prefix with up to its last 32 host bits taken from the
/// client as for IPv4 (bits above the last word keep the prefix's value).
#[inline(always)]
pub const fn outer_source_v6(config: &TunnelConfig, client: &[u32; 4], port: u16) -> [u32; 4] {
    let folded = client[0] ^ client[1] ^ client[2] ^ client[3];
    let len = config.source_v6_len;
    let host_mask: u32 = if len >= 128 {
        0
    } else if len <= 96 {
        u32::MAX
    } else {
        u32::MAX >> (len - 96)
    };
    let last = u32::from_be(config.source_v6[3]) & !host_mask;
    let mut out = config.source_v6;
    out[3] = (last | (client_bits(folded, port) & host_mask)).to_be();
    out
}

/// UDP source port of a GUE packet (network order): the flow's hash folded
/// into the dynamic range 49152..=65535, so receivers spread flows by it.
#[inline(always)]
pub const fn gue_source_port(flow_hash: u32) -> u16 {
    let folded = (flow_hash ^ (flow_hash >> 16)) as u16;
    (0xc000 | (folded & 0x3fff)).to_be()
}

/// The outer family a tunnelled VIP of family `vip_family` uses for a
/// backend of family `backend_family`, if that pairing is supported
/// (4in4, 6in6, 4in6; never 6in4).
pub const fn outer_family(vip_family: u8, backend_family: u8) -> Option<u8> {
    match (vip_family, backend_family) {
        (AF_INET, AF_INET) => Some(AF_INET),
        (AF_INET6, AF_INET6) | (AF_INET, AF_INET6) => Some(AF_INET6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TunnelConfig {
        TunnelConfig {
            source_v4: u32::from_be_bytes([198, 18, 200, 0]).to_be(),
            source_v4_len: 24,
            source_v6: [0x2001_0002u32.to_be(), 0x00f0_0000u32.to_be(), 0, 0],
            source_v6_len: 64,
            gue_port: GUE_PORT_DEFAULT.to_be(),
            ifindex: 2,
        }
    }

    #[test]
    fn v4_source_keeps_the_prefix_and_varies_with_the_client_port() {
        let c = config();
        let client = u32::from_be_bytes([198, 18, 1, 10]).to_be();
        let a = u32::from_be(outer_source_v4(&c, client, 40000u16.to_be()));
        let b = u32::from_be(outer_source_v4(&c, client, 40001u16.to_be()));
        assert_eq!(a & 0xffff_ff00, 0xc612_c800);
        assert_eq!(b & 0xffff_ff00, 0xc612_c800);
        assert_ne!(a, b);
        let fixed = TunnelConfig {
            source_v4_len: 32,
            ..c
        };
        assert_eq!(outer_source_v4(&fixed, client, 1), c.source_v4);
    }

    #[test]
    fn v6_source_keeps_the_prefix() {
        let c = config();
        let client = [0x2001_0002u32.to_be(), 0, 0, 7u32.to_be()];
        let a = outer_source_v6(&c, &client, 1234u16.to_be());
        assert_eq!(a[..3], c.source_v6[..3]);
        assert_ne!(a, outer_source_v6(&c, &client, 1235u16.to_be()));
        let fixed = TunnelConfig {
            source_v6_len: 128,
            ..c
        };
        assert_eq!(outer_source_v6(&fixed, &client, 1), c.source_v6);
        let narrow = TunnelConfig {
            source_v6_len: 120,
            ..c
        };
        let n = outer_source_v6(&narrow, &client, 99u16.to_be());
        assert_eq!(u32::from_be(n[3]) & 0xffff_ff00, 0);
    }

    #[test]
    fn marks_and_ports() {
        assert_eq!(hc_backend_of_mark(HC_MARK_BASE | 7), Some(7));
        assert_eq!(hc_backend_of_mark(HC_MARK_BASE), None);
        assert_eq!(hc_backend_of_mark(7), None);
        for h in [0u32, 1, 0xffff_ffff, 0x1234_5678] {
            assert!(u16::from_be(gue_source_port(h)) >= 0xc000);
        }
        assert_eq!(overhead(true, AF_INET6), 48);
        assert_eq!(overhead(false, AF_INET), 20);
        assert_eq!(outer_family(AF_INET6, AF_INET), None);
        assert_eq!(outer_family(AF_INET, AF_INET6), Some(AF_INET6));
    }
}
