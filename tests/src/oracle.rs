//! The reference for what the XDP program may do with a frame, written
//! against etherparse's header parsers rather than the eBPF parser, so that
//! a mistake in one is not mirrored in the other. The `packet` fuzz target
//! (and the corpus test that replays it) judges every verdict with
//! [`check_verdict`]; what may be forwarded at all is the one function
//! [`forward_allowed`], kept loose enough for the parser's planned
//! extensions (QinQ, IPv6 extension headers, ICMP errors) and meant to be
//! tightened as they land.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ethernet2Header, Ipv4Header, Ipv6Header, SingleVlanHeader, TcpHeader, UdpHeader};
use lb_userspace::config::{Protocol, VipConfig};

use crate::testbed::action;

/// A balanced service: what a forwarded TCP/UDP frame must be addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The VIP.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

impl Service {
    /// The service a VIP config stands for.
    pub fn of(vip: &VipConfig) -> Self {
        Self {
            address: vip.address,
            port: vip.port,
            protocol: vip.protocol,
        }
    }
}

/// What a frame the data plane may forward turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwardable {
    /// TCP or UDP to one of the services.
    Flow(Service),
    /// An ICMP or ICMPv6 error message whose (outer) destination is the
    /// address of one of the services: it belongs to one of their flows.
    IcmpError {
        /// The outer destination.
        dst: IpAddr,
        /// The ICMP type.
        icmp_type: u8,
    },
}

/// EtherTypes of an 802.1Q / 802.1ad tag (C-tag, S-tag, and the pre-standard
/// QinQ S-tag).
const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// Most VLAN tags a forwarded frame may carry (QinQ).
const MAX_VLAN_TAGS: usize = 2;
/// Most IPv6 extension headers walked before giving up.
const MAX_IPV6_EXT_HEADERS: usize = 8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 extension headers a forwarded packet may carry: hop-by-hop options,
/// routing, destination options. (Fragment, 44, is not: fragments are not
/// balanced.)
const IPV6_ALLOWED_EXT: [u8; 3] = [0, 43, 60];
/// ICMPv4 errors the data plane forwards: destination unreachable (incl.
/// fragmentation needed) and time exceeded.
const ICMPV4_ERRORS: [u8; 2] = [3, 11];
/// ICMPv6 errors the data plane forwards: destination unreachable, packet
/// too big, time exceeded.
const ICMPV6_ERRORS: std::ops::RangeInclusive<u8> = 1..=3;

/// Whether the data plane may answer `frame` with XDP_TX, given the
/// `services` it balances: `Ok` with what the frame is, or `Err` with why
/// it must not be forwarded. This is the whole definition of "well-formed
/// enough to balance"; everything the data plane forwards must pass it.
///
/// Allowed:
/// - Ethernet II with 0 to 2 VLAN tags (TPID 0x8100, 0x88a8 or 0x9100);
/// - IPv4: version 4, IHL ≥ 5 with the options inside the packet, total
///   length ≥ header length and within the frame (trailing Ethernet padding
///   is fine), not a fragment (MF clear, offset 0). The header checksum is
///   not checked: the kernel does not check it before XDP either, and the
///   backend's stack drops a bad one;
/// - IPv6: version 6, payload length within the frame, then any number (up
///   to 8) of hop-by-hop / routing / destination-options extension headers,
///   each inside the payload; no fragment header;
/// - then TCP (data offset ≥ 5, header inside the IP payload) or UDP (length
///   field between 8 and the IP payload's length) whose destination address,
///   port and protocol are one of `services`;
/// - or an ICMP (IPv4) / ICMPv6 (IPv6) error message, at least its 8-byte
///   header, whose destination address is a service's address.
///
/// Not checked (loose on purpose, to be tightened when the data plane
/// promises it): L4 checksums, the quoted packet inside ICMP errors, the
/// order of IPv6 extension headers.
pub fn forward_allowed(frame: &[u8], services: &[Service]) -> Result<Forwardable, String> {
    let (eth, mut rest) =
        Ethernet2Header::from_slice(frame).map_err(|e| format!("ethernet: {e}"))?;
    let mut ether_type = eth.ether_type.0;
    let mut tags = 0;
    while VLAN_TPIDS.contains(&ether_type) {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return Err(format!("more than {MAX_VLAN_TAGS} VLAN tags"));
        }
        let (vlan, after) = SingleVlanHeader::from_slice(rest).map_err(|e| format!("vlan: {e}"))?;
        ether_type = vlan.ether_type.0;
        rest = after;
    }
    let (dst, proto, payload) = match ether_type {
        ETH_P_IP => ipv4(rest)?,
        ETH_P_IPV6 => ipv6(rest)?,
        other => return Err(format!("ethertype {other:#06x} is not IP")),
    };
    match (proto, dst) {
        (IPPROTO_TCP, _) => {
            let (tcp, _) = TcpHeader::from_slice(payload).map_err(|e| format!("tcp: {e}"))?;
            service(services, dst, tcp.destination_port, Protocol::Tcp)
        }
        (IPPROTO_UDP, _) => {
            let (udp, _) = UdpHeader::from_slice(payload).map_err(|e| format!("udp: {e}"))?;
            let len = usize::from(udp.length);
            if len < UdpHeader::LEN || len > payload.len() {
                return Err(format!(
                    "udp length {len} outside 8..={} (the IP payload)",
                    payload.len()
                ));
            }
            service(services, dst, udp.destination_port, Protocol::Udp)
        }
        (IPPROTO_ICMP, IpAddr::V4(_)) => {
            icmp_error(services, dst, payload, |t| ICMPV4_ERRORS.contains(&t))
        }
        (IPPROTO_ICMPV6, IpAddr::V6(_)) => {
            icmp_error(services, dst, payload, |t| ICMPV6_ERRORS.contains(&t))
        }
        (other, _) => Err(format!("IP protocol {other} is not balanced")),
    }
}

/// The IPv4 packet at the start of `bytes`: destination, protocol and payload.
fn ipv4(bytes: &[u8]) -> Result<(IpAddr, u8, &[u8]), String> {
    let (ip, _) = Ipv4Header::from_slice(bytes).map_err(|e| format!("ipv4: {e}"))?;
    let header_len = ip.header_len();
    let total = usize::from(ip.total_len);
    if total < header_len || total > bytes.len() {
        return Err(format!(
            "ipv4 total length {total} outside {header_len}..={} (the frame)",
            bytes.len()
        ));
    }
    if ip.more_fragments || ip.fragment_offset.value() != 0 {
        return Err("ipv4 fragment".into());
    }
    let payload = bytes.get(header_len..total).ok_or("ipv4 payload")?;
    Ok((
        IpAddr::V4(Ipv4Addr::from(ip.destination)),
        ip.protocol.0,
        payload,
    ))
}

/// The IPv6 packet at the start of `bytes`, past its allowed extension
/// headers: destination, upper-layer protocol and its bytes.
fn ipv6(bytes: &[u8]) -> Result<(IpAddr, u8, &[u8]), String> {
    let (ip, _) = Ipv6Header::from_slice(bytes).map_err(|e| format!("ipv6: {e}"))?;
    let end = Ipv6Header::LEN + usize::from(ip.payload_length);
    let mut payload = bytes.get(Ipv6Header::LEN..end).ok_or_else(|| {
        format!(
            "ipv6 payload length {} beyond the frame's {} bytes",
            ip.payload_length,
            bytes.len()
        )
    })?;
    let mut next = ip.next_header.0;
    let mut walked = 0;
    while IPV6_ALLOWED_EXT.contains(&next) {
        walked += 1;
        if walked > MAX_IPV6_EXT_HEADERS {
            return Err("too many ipv6 extension headers".into());
        }
        // Each of these is: next header, length in 8-byte units past the
        // first 8, then options.
        let (&[nh, units], _) = payload
            .split_first_chunk::<2>()
            .ok_or("ipv6 extension header truncated")?;
        let len = (usize::from(units) + 1) * 8;
        payload = payload
            .get(len..)
            .ok_or("ipv6 extension header beyond the payload")?;
        next = nh;
    }
    Ok((IpAddr::V6(Ipv6Addr::from(ip.destination)), next, payload))
}

fn service(
    services: &[Service],
    dst: IpAddr,
    port: u16,
    protocol: Protocol,
) -> Result<Forwardable, String> {
    services
        .iter()
        .find(|s| s.address == dst && s.port == port && s.protocol == protocol)
        .map(|s| Forwardable::Flow(*s))
        .ok_or_else(|| format!("{dst} port {port}/{protocol} is not a service"))
}

fn icmp_error(
    services: &[Service],
    dst: IpAddr,
    payload: &[u8],
    is_error: impl Fn(u8) -> bool,
) -> Result<Forwardable, String> {
    if payload.len() < 8 {
        return Err("icmp header truncated".into());
    }
    let icmp_type = payload.first().copied().unwrap_or(0);
    if !is_error(icmp_type) {
        return Err(format!("icmp type {icmp_type} is not an error message"));
    }
    if !services.iter().any(|s| s.address == dst) {
        return Err(format!("icmp error to {dst}, not a VIP address"));
    }
    Ok(Forwardable::IcmpError { dst, icmp_type })
}

/// Checks one run of the program: `verdict` and `output` for `input`. The
/// program never aborts and only drops, passes or forwards; it forwards
/// only what [`forward_allowed`] allows, rewriting nothing but the MACs
/// (source: the node's `lb_mac`, destination: one of `backend_macs`); it
/// leaves frames it does not forward untouched.
pub fn check_verdict(
    input: &[u8],
    verdict: u32,
    output: &[u8],
    services: &[Service],
    lb_mac: [u8; 6],
    backend_macs: &[[u8; 6]],
) -> Result<(), String> {
    match verdict {
        action::TX => {
            forward_allowed(input, services)
                .map_err(|why| format!("XDP_TX for a frame that {why}"))?;
            if output.len() != input.len() {
                return Err(format!(
                    "forwarded frame is {} bytes, was {}",
                    output.len(),
                    input.len()
                ));
            }
            if output.get(12..) != input.get(12..) {
                return Err("forwarding changed bytes past the MACs".into());
            }
            if output.get(6..12) != Some(&lb_mac[..]) {
                return Err(format!("source MAC {:02x?} is not ours", output.get(6..12)));
            }
            if !backend_macs.iter().any(|m| output.get(..6) == Some(&m[..])) {
                return Err(format!(
                    "destination MAC {:02x?} is no backend's",
                    output.get(..6)
                ));
            }
            Ok(())
        }
        action::DROP | action::PASS => {
            if output != input {
                return Err(format!("verdict {verdict} but the frame was changed"));
            }
            Ok(())
        }
        0 => Err("XDP_ABORTED".into()),
        other => Err(format!("unexpected verdict {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        packet::{self, Flow, SYN},
        testbed::{vip4_tcp, vip4_udp, vip6_tcp},
    };

    fn services() -> Vec<Service> {
        [vip4_tcp(), vip4_udp(), vip6_tcp()]
            .iter()
            .map(Service::of)
            .collect()
    }

    fn flow(src: &str, dst: &str, dport: u16) -> Flow {
        Flow {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport,
        }
    }

    #[test]
    fn balanced_frames_are_allowed() {
        let s = services();
        let v4 = flow("198.18.0.10", "198.18.0.100", 80);
        let v6 = flow("2001:2::10", "2001:2::100", 80);
        for frame in [
            packet::tcp(&v4, SYN, None, b""),
            packet::tcp(&v4, SYN, Some(7), b"x"),
            packet::udp(&flow("198.18.0.10", "198.18.0.100", 53), None, b"q"),
            packet::tcp(&v6, SYN, None, b""),
            packet::with_ipv4_options(&packet::tcp(&v4, SYN, None, b""), &[1, 1, 1, 0]),
        ] {
            assert!(forward_allowed(&frame, &s).is_ok(), "{frame:02x?}");
        }
    }

    #[test]
    fn other_frames_are_not() {
        let s = services();
        let v4 = flow("198.18.0.10", "198.18.0.100", 80);
        let syn = packet::tcp(&v4, SYN, None, b"");
        for (frame, why) in [
            (packet::arp_request(), "not IP"),
            (
                packet::icmp_echo([198, 18, 0, 10], [198, 18, 0, 100]),
                "not an error",
            ),
            (
                packet::tcp(&flow("198.18.0.10", "198.18.0.100", 81), SYN, None, b""),
                "not a service",
            ),
            (
                packet::udp(&flow("198.18.0.10", "198.18.0.100", 80), None, b""),
                "not a service",
            ),
            (packet::as_ipv4_fragment(&syn, true, 0), "fragment"),
            (syn[..syn.len() - 1].to_vec(), "ipv4 total length"),
            (packet::with_byte(&syn, 14 + 20 + 12, 0x40), "tcp"),
        ] {
            let err = forward_allowed(&frame, &s).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn verdicts_are_judged() {
        let s = services();
        let frame = packet::tcp(&flow("198.18.0.10", "198.18.0.100", 80), SYN, None, b"");
        let mac = [2, 0, 0, 0, 0xbe, 0x11];
        let out = packet::forwarded(&frame, mac);
        let lb = packet::LB_MAC;
        assert_eq!(
            check_verdict(&frame, action::TX, &out, &s, lb, &[mac]),
            Ok(())
        );
        assert!(check_verdict(&frame, action::TX, &out, &s, lb, &[[0; 6]]).is_err());
        assert!(check_verdict(&frame, action::PASS, &out, &s, lb, &[mac]).is_err());
        assert_eq!(
            check_verdict(&frame, action::DROP, &frame, &s, lb, &[mac]),
            Ok(())
        );
        assert!(check_verdict(&frame, 0, &frame, &s, lb, &[mac]).is_err());
        let arp = packet::arp_request();
        assert!(check_verdict(&arp, action::TX, &arp, &s, lb, &[mac]).is_err());
    }
}
