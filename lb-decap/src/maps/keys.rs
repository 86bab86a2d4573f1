//! Addresses and VIPs as the maps key them (family, network-order words)
//! and back: the layout the decap program reads, in one place.

use std::net::IpAddr;

use lb_common::{
    consts::{AF_INET, AF_INET6},
    decap::DecapAddr,
    VipKey,
};

use crate::config::Vip;

/// An address as `DECAP_ADDRS` keys it.
pub fn decap_addr(address: IpAddr) -> DecapAddr {
    let (addr, family) = words(address);
    DecapAddr {
        addr,
        family,
        _pad: [0; 3],
    }
}

/// A VIP as `DECAP_VIPS` keys it.
pub fn vip_key(vip: &Vip) -> VipKey {
    let (addr, family) = words(vip.addr);
    VipKey {
        addr,
        port: vip.port.to_be(),
        proto: vip.proto,
        family,
    }
}

/// Network-order words and the family of an address.
fn words(address: IpAddr) -> ([u32; 4], u8) {
    match address {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], AF_INET),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([word(0), word(4), word(8), word(12)], AF_INET6)
        }
    }
}

/// An address as the maps key it (family, network-order words); None
/// for a family the maps do not hold.
pub(crate) fn ip_of(family: u8, addr: [u32; 4]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::from(addr[0].to_ne_bytes())),
        AF_INET6 => {
            let mut o = [0u8; 16];
            for (i, w) in addr.iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            Some(IpAddr::from(o))
        }
        _ => None,
    }
}
