//! A VIP's identity (address, port, protocol) and the ways an address is
//! written: as text in the API and lbctl, as network-order words in the
//! maps, as bytes in Maglev. Its own module so the model, the API, the
//! metrics and the reconciler share it without depending on each other.

use std::net::IpAddr;

use lb_common::{
    consts::{AF_INET, AF_INET6},
    VipKey,
};

use crate::config::{Protocol, VipConfig};

/// A VIP's identity: what a packet is matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipId {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl std::fmt::Display for VipId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.protocol),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.protocol),
        }
    }
}

impl std::str::FromStr for VipId {
    type Err = String;

    /// Parses `ADDRESS:PORT[/PROTOCOL]` (IPv6 in brackets; protocol tcp by
    /// default), as VIPs are written in the API and lbctl.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (socket, protocol) = match s.rsplit_once('/') {
            Some((socket, protocol)) => (socket, protocol),
            None => (s, "tcp"),
        };
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(format!("{other:?} is not a protocol (tcp or udp)")),
        };
        let socket: std::net::SocketAddr =
            socket
                .parse()
                .map_err(|_| match port_out_of_range(socket) {
                    Some(port) => format!("{s:?}: port {port} is out of range 1..=65535"),
                    None => format!(
                    "{s:?} is not a VIP: expected ADDRESS:PORT[/tcp|udp], IPv6 as [ADDRESS]:PORT"
                ),
                })?;
        if socket.port() == 0 {
            return Err(format!("{s:?}: port 0 is not a service port"));
        }
        Ok(Self {
            address: socket.ip(),
            port: socket.port(),
            protocol,
        })
    }
}

/// The port of `socket` (`ADDRESS:PORT`, IPv6 in brackets) when the
/// address is one and the port a whole number too large for a port: so
/// the refusal names the port, not the whole shape.
fn port_out_of_range(socket: &str) -> Option<&str> {
    let (address, port) = socket.rsplit_once(':')?;
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let is_number = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    (is_number && address.parse::<IpAddr>().is_ok() && port.parse::<u16>().is_err()).then_some(port)
}

impl VipId {
    /// The VIP's identity from its config.
    pub fn of(vip: &VipConfig) -> Self {
        Self {
            address: vip.address,
            port: vip.port,
            protocol: vip.protocol,
        }
    }

    /// The data-plane key of this VIP.
    pub fn key(&self) -> VipKey {
        let (addr, family) = addr_words(self.address);
        VipKey {
            addr,
            port: self.port.to_be(),
            proto: self.protocol.number(),
            family,
        }
    }
}

/// An address as the maps store it: network-order words and family.
pub fn addr_words(address: IpAddr) -> ([u32; 4], u8) {
    match address {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], AF_INET),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], AF_INET6)
        }
    }
}

/// An address from the maps' network-order words and family.
pub fn words_addr(words: [u32; 4], family: u8) -> IpAddr {
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    if family == AF_INET {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(bytes)
    }
}

/// The bytes that identify a backend in Maglev: its address.
pub fn address_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port past 65535 is named as such, not "is not a VIP".
    #[test]
    fn a_port_out_of_range_says_so() {
        for text in [
            "198.18.0.100:65536",
            "198.18.0.100:70000/udp",
            "[2001:2::100]:99999",
        ] {
            let message = text.parse::<VipId>().unwrap_err();
            assert!(
                message.contains("port") && message.contains("out of range 1..=65535"),
                "{text}: {message}"
            );
        }
        // Not a port at all: the shape expected.
        let message = "198.18.0.100:http".parse::<VipId>().unwrap_err();
        assert!(message.contains("expected ADDRESS:PORT"), "{message}");
        let message = "198.18.0.100:0".parse::<VipId>().unwrap_err();
        assert!(message.contains("port 0"), "{message}");
        assert_eq!(
            "198.18.0.100:65535/udp".parse::<VipId>().unwrap().port,
            65535
        );
    }
}
