//! lb-decap's data plane under BPF_PROG_TEST_RUN and the tunnel packets it
//! takes: the real decap object, loaded and filled by lb-decap's own map
//! code, run at either hook on frames built here byte by byte (outer
//! IPv4/IPv6, IPIP or GUE variant 0/1 around an inner packet from
//! etherparse), so the fixtures and the namespace test send what the
//! balancer sends.

use std::net::IpAddr;

use anyhow::{anyhow, Context as _};
use aya::{
    maps::Map,
    programs::{TestRun as _, TestRunOptions},
    Ebpf,
};
use lb_common::{
    consts::IPPROTO_UDP,
    decap::{names, DecapConfig, DecapCounter, DECAP_F_GUE, DECAP_F_IPIP},
    tunnel::{GUE_PORT_DEFAULT, IPPROTO_IPIP, IPPROTO_IPV6},
};
use lb_decap::{
    config::{Attach, Settings, Vip, XdpMode},
    dataplane,
    maps::{self, Maps},
};

use crate::{
    craft::checksum,
    packet::{CLIENT_MAC, LB_MAC},
    testbed::Hook,
};

/// The backend's outer IPv4 address in the fixtures.
pub const BACKEND_V4: &str = "198.19.2.11";
/// The backend's outer IPv6 address in the fixtures.
pub const BACKEND_V6: &str = "2001:2:0:2::11";
/// The balancer's outer source (IPv4).
pub const LB_OUTER_V4: &str = "198.19.200.7";
/// The balancer's outer source (IPv6).
pub const LB_OUTER_V6: &str = "2001:2:0:200::7";

/// How the inner packet is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// IPIP / IP6IP6 / 4in6 (by the families of the outer and inner).
    Ipip,
    /// GUE variant 1 (the inner packet right after UDP) to `port`;
    /// `csum`: compute the UDP checksum (else zero).
    Gue1 {
        /// UDP destination port.
        port: u16,
        /// Whether the UDP checksum is filled in.
        csum: bool,
    },
    /// GUE variant 0 with the 4-byte header fou sends (`header`, normally
    /// `[0, proto, 0, 0]`; other values for the refusals).
    Gue0 {
        /// UDP destination port.
        port: u16,
        /// The GUE header as sent.
        header: [u8; 4],
    },
}

/// The IP protocol number that says what `inner` is (4 or 41).
pub fn inner_proto(inner: &[u8]) -> u8 {
    if inner.first().is_some_and(|b| b >> 4 == 6) {
        IPPROTO_IPV6
    } else {
        IPPROTO_IPIP
    }
}

/// GUE variant 0's usual header for `inner`.
pub fn gue0_header(inner: &[u8]) -> [u8; 4] {
    [0, inner_proto(inner), 0, 0]
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An outer IP header of `payload_len` bytes of payload, protocol `proto`.
pub fn outer_ip(src: IpAddr, dst: IpAddr, proto: u8, payload_len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload_len) as u16;
            let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&[&h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(payload_len as u16).to_be_bytes());
            h.push(proto);
            h.push(64);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h
        }
        _ => panic!("outer addresses of mixed families: {src} {dst}"),
    }
}

/// A UDP header (and checksum over the pseudo-header if `csum`) for
/// `payload` from `src` to `dst`.
pub fn udp_header(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    csum: bool,
) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut h = Vec::with_capacity(8);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    if csum {
        let pseudo = [
            addr_bytes(src),
            addr_bytes(dst),
            vec![0, IPPROTO_UDP],
            len.to_be_bytes().to_vec(),
        ]
        .concat();
        let mut c = checksum(&[&pseudo, &h, payload]);
        if c == 0 {
            c = 0xffff;
        }
        h[6..8].copy_from_slice(&c.to_be_bytes());
    }
    h
}

/// The outer IP packet (no Ethernet) carrying `inner` from `src` to `dst`.
pub fn tunnel_packet(src: IpAddr, dst: IpAddr, encap: Encap, inner: &[u8]) -> Vec<u8> {
    let (proto, payload) = match encap {
        Encap::Ipip => (inner_proto(inner), inner.to_vec()),
        Encap::Gue1 { port, csum } => {
            let udp = udp_header(src, dst, 49_153, port, inner, csum);
            (IPPROTO_UDP, [udp, inner.to_vec()].concat())
        }
        Encap::Gue0 { port, header } => {
            let body = [header.to_vec(), inner.to_vec()].concat();
            let udp = udp_header(src, dst, 49_153, port, &body, false);
            (IPPROTO_UDP, [udp, body].concat())
        }
    };
    [outer_ip(src, dst, proto, payload.len()), payload].concat()
}

/// A tunnel frame as the balancer sends it to the backend address `dst`:
/// from the balancer's outer address of `dst`'s family and MAC, `inner`
/// wrapped in `encap`.
pub fn tunnel_frame(dst: &str, encap: Encap, inner: &[u8]) -> Vec<u8> {
    let src = if dst.contains(':') {
        LB_OUTER_V6
    } else {
        LB_OUTER_V4
    };
    let address = |text: &str| -> IpAddr { text.parse().expect("a fixture address") };
    ethernet(
        CLIENT_MAC,
        LB_MAC,
        &tunnel_packet(address(src), address(dst), encap, inner),
    )
}

/// An Ethernet frame from `smac` to `dmac` holding IP packet `packet`.
pub fn ethernet(smac: [u8; 6], dmac: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let kind: u16 = if packet.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    };
    [
        dmac.to_vec(),
        smac.to_vec(),
        kind.to_be_bytes().to_vec(),
        packet.to_vec(),
    ]
    .concat()
}

/// The IP packet of an Ethernet frame built by `crate::packet` (its
/// first 14 bytes dropped).
pub fn ip_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// Settings for a bed: the fixtures' backend addresses, `vips`, both
/// encapsulations, GUE on the default port.
pub fn settings(vips: &[&str]) -> Settings {
    Settings {
        interfaces: vec!["lo".to_owned()],
        attach: Attach::Xdp,
        xdp_mode: XdpMode::Auto,
        addresses: vec![
            BACKEND_V4.parse().expect("address"),
            BACKEND_V6.parse().expect("address"),
        ],
        addresses_from_interface: false,
        sources: Vec::new(),
        vips: vips
            .iter()
            .map(|v| v.parse::<Vip>().expect("VIP"))
            .collect(),
        config: DecapConfig {
            gue_port: GUE_PORT_DEFAULT.to_be(),
            flags: DECAP_F_IPIP | DECAP_F_GUE,
        },
    }
}

/// The decap object loaded (not attached), its maps filled by lb-decap's
/// own code.
pub struct DecapBed {
    ebpf: Ebpf,
    maps: [Map; maps::MAP_COUNT],
    /// The entry point `run` uses.
    pub hook: Hook,
}

impl DecapBed {
    /// Loads the object and applies `settings`.
    pub fn new(settings: &Settings, hook: Hook) -> anyhow::Result<Self> {
        let mut ebpf = dataplane::load_object()?;
        let mut maps = maps::take(&mut ebpf)?;
        Maps::borrowed(&mut maps)?.sync(settings)?;
        Ok(Self { ebpf, maps, hook })
    }

    /// Applies new settings to the loaded maps.
    pub fn apply(&mut self, settings: &Settings) -> anyhow::Result<()> {
        Maps::borrowed(&mut self.maps)?.sync(settings)
    }

    /// The loaded object (for the benchmark).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Runs the program of `hook` once on `frame`: (its own verdict, the
    /// frame afterwards).
    pub fn run(&mut self, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() + 256];
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        };
        let result = match self.hook {
            Hook::Xdp => {
                dataplane::xdp_program(&mut self.ebpf, names::PROG_XDP_DECAP)?.test_run(options)
            }
            Hook::Tc => {
                dataplane::tc_program(&mut self.ebpf, names::PROG_TC_DECAP)?.test_run(options)
            }
        }
        .context("BPF_PROG_TEST_RUN")?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&mut self) -> anyhow::Result<Vec<(DecapCounter, u64)>> {
        Maps::borrowed(&mut self.maps)?.counters()
    }

    /// One counter, summed over CPUs.
    pub fn counter(&mut self, counter: DecapCounter) -> anyhow::Result<u64> {
        self.counters()?
            .into_iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow!("no counter {}", counter.name()))
    }
}
