//! The addresses of a VIP, backend, NAT source or listener: which ones a
//! service may have, and when two of them clash. Apart from the other
//! settings because these rules are about routing, not ranges.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::ValueError;

/// An address prefix in text, `ADDRESS/LENGTH` or a bare address (one
/// address: /32 or /128), of the family `ipv6` says; host bits must be
/// zero unless the prefix is one address.
pub(crate) fn prefix(text: &str, ipv6: bool) -> Result<(IpAddr, u8), ValueError> {
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    let (address, len) = match text.split_once('/') {
        Some((address, len)) => (address, Some(len)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| {
        ValueError::invalid(format!(
            "{text:?} is not an {family} prefix (e.g. {})",
            if ipv6 {
                "\"2001:2:f0::/64\""
            } else {
                "\"198.18.200.0/24\""
            }
        ))
    })?;
    if address.is_ipv6() != ipv6 {
        return Err(ValueError::invalid(format!("{text:?} is not {family}")));
    }
    let bits: u8 = if ipv6 { 128 } else { 32 };
    let len = match len {
        None => bits,
        Some(len) => match len.parse::<u8>() {
            Ok(n) if n <= bits => n,
            _ => {
                return Err(ValueError::invalid(format!(
                    "{text:?}: the prefix length must be 0..={bits}"
                )))
            }
        },
    };
    service_address(address)?;
    let host_bits = match address {
        IpAddr::V4(a) => u128::from(u32::from(a) & u32::MAX.checked_shr(len.into()).unwrap_or(0)),
        IpAddr::V6(a) => u128::from(a) & u128::MAX.checked_shr(len.into()).unwrap_or(0),
    };
    if host_bits != 0 && len != bits {
        return Err(ValueError::invalid(format!(
            "{text:?} has host bits set: write the prefix's first address (outer sources vary the host bits)"
        )));
    }
    Ok((address, len))
}

/// A VIP's own NAT address `source`, for a VIP at `vip` in mode `mode`:
/// only NAT VIPs have one, of the VIP's family.
pub(crate) fn nat_source(
    source: IpAddr,
    vip: IpAddr,
    mode: lb_common::Mode,
) -> Result<IpAddr, ValueError> {
    if mode != lb_common::Mode::Nat {
        return Err(ValueError::invalid(
            "only a VIP with forwarding = \"nat\" has a NAT address",
        ));
    }
    if source.is_ipv4() != vip.is_ipv4() {
        return Err(ValueError::invalid(format!(
            "{source} is not of the VIP {vip}'s family"
        )));
    }
    service_address(source)?;
    routable_nat_address(source)
}

/// A NAT VIP at `vip` found no NAT address of its family (its own or
/// the node's `[nat]` one).
pub(crate) fn no_nat_source(vip: IpAddr) -> ValueError {
    let family = if vip.is_ipv4() { "ipv4" } else { "ipv6" };
    ValueError::invalid(format!(
        "forwarding = \"nat\" needs a NAT address of the VIP's family: set nat_source here or [nat].source_{family}"
    ))
}

/// An IP address in text, for a VIP or backend (see [`service_address`]).
pub(crate) fn ip_address(text: &str) -> Result<IpAddr, ValueError> {
    let address: IpAddr = text
        .parse()
        .map_err(|_| ValueError::invalid(format!("{text:?} is not an IPv4 or IPv6 address")))?;
    service_address(address)
}

/// An address a VIP or backend can have: neither unspecified nor
/// multicast, nor an IPv4 address written as IPv6 (`::ffff:a.b.c.d`),
/// which would slip past the checks that compare addresses and families.
pub(crate) fn service_address(address: IpAddr) -> Result<IpAddr, ValueError> {
    not_mapped(address)?;
    if address.is_unspecified() {
        return Err(ValueError::invalid(format!(
            "{address} is the unspecified address"
        )));
    }
    if address.is_multicast() {
        return Err(ValueError::invalid(format!(
            "{address} is a multicast address"
        )));
    }
    Ok(address)
}

/// Refuses an IPv4-mapped IPv6 address (`::ffff:198.18.0.100`): lbd
/// compares addresses and families as written, so the same host written
/// both ways would pass as two addresses of two families.
pub(crate) fn not_mapped(address: IpAddr) -> Result<IpAddr, ValueError> {
    if let IpAddr::V6(v6) = address {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(ValueError::invalid(format!(
                "{address} is an IPv4-mapped IPv6 address: write the IPv4 address {v4}"
            )));
        }
    }
    Ok(address)
}

/// A TCP endpoint (`ADDRESS:PORT`) this node listens on, or connects to
/// when `peer`: a real port, no multicast group, no mapped address, and a
/// peer is some other node, never the unspecified address (a listener may
/// be: it binds every address).
pub(crate) fn socket_address(address: SocketAddr, peer: bool) -> Result<SocketAddr, ValueError> {
    let ip = address.ip();
    not_mapped(ip)?;
    if address.port() == 0 {
        return Err(ValueError::invalid(format!(
            "{address}: port 0 is no port (the kernel would pick one nobody knows); give the port"
        )));
    }
    if ip.is_multicast() {
        return Err(ValueError::invalid(format!(
            "{ip} is a multicast address: a TCP endpoint is one host's"
        )));
    }
    if peer && ip.is_unspecified() {
        return Err(ValueError::invalid(format!(
            "{ip} is the unspecified address: a peer is the other node's address"
        )));
    }
    if peer && ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(ValueError::invalid(format!(
            "{ip} is the broadcast address: a peer is the other node's address"
        )));
    }
    if let SocketAddr::V6(v6) = address {
        if is_link_local_v6(*v6.ip()) && v6.scope_id() == 0 {
            let scoped = std::net::SocketAddrV6::new(*v6.ip(), v6.port(), 0, 2);
            return Err(ValueError::invalid(format!(
                "{ip} is an IPv6 link-local address without its interface: Linux binds or reaches one only on a given interface; add the interface's index after a % (\"{scoped}\" for the interface `ip link` numbers 2), or give a global or unique local address"
            )));
        }
    }
    Ok(address)
}

/// Whether `ip` is in `fe80::/10`: such an address means something only
/// on one link, so a socket needs the interface (a scope id) with it.
fn is_link_local_v6(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Whether two listeners at `a` and `b` would fight over their port: the
/// same port and address, or one of them bound to every address of a
/// family the other is in (`[::]` is dual-stack).
pub(crate) fn listeners_clash(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |wild: IpAddr, other: IpAddr| wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4());
    a.port() == b.port() && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Refuses a NAT address that cannot be this node's address on the
/// network (loopback, broadcast, link-local): backends' replies go to it,
/// so it must route back here.
pub(crate) fn routable_nat_address(address: IpAddr) -> Result<IpAddr, ValueError> {
    let link_local = match address {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    };
    if link_local {
        return Err(ValueError::invalid(format!(
            "{address} is a link-local address: routers do not forward packets from it, so no routed backend's replies would come back; give an address the network routes to this node"
        )));
    }
    if address.is_loopback() {
        return Err(ValueError::invalid(format!(
            "{address} is a loopback address: backends' replies go to the NAT address, so it must route back to this node"
        )));
    }
    if address == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(ValueError::invalid(format!(
            "{address} is the broadcast address: backends' replies go to the NAT address, so it must route back to this node"
        )));
    }
    Ok(address)
}

/// A backend's address for the VIP at `vip` in mode `mode`: a service
/// address of the VIP's family, not the VIP's own; tunnelled modes also
/// take IPv6 backends for an IPv4 VIP (4in6), never the reverse.
pub(crate) fn backend_address(
    backend: IpAddr,
    vip: IpAddr,
    mode: lb_common::Mode,
) -> Result<IpAddr, ValueError> {
    service_address(backend)?;
    if let IpAddr::V6(v6) = backend {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            // No interface scope can be given: checks and routed modes
            // could not reach it.
            return Err(ValueError::invalid(format!(
                "{backend} is an IPv6 link-local address: give the backend a global or unique local address (link-local ones carry no interface here, so its health checks could not reach it)"
            )));
        }
    }
    let four_in_six = mode.is_tunnel() && vip.is_ipv4() && backend.is_ipv6();
    if backend.is_ipv4() != vip.is_ipv4() && !four_in_six {
        let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        let hint = if mode.is_tunnel() {
            " (an IPv6 VIP cannot be carried to an IPv4 backend)"
        } else if vip.is_ipv4() {
            " (only forwarding = \"ipip\" or \"gue\" reach IPv6 backends of an IPv4 VIP)"
        } else {
            ""
        };
        return Err(ValueError::invalid(format!(
            "{backend} is {} but the VIP {vip} is {}{hint}",
            family(backend),
            family(vip)
        )));
    }
    if backend == vip {
        return Err(ValueError::invalid(format!(
            "{backend} is the VIP's own address"
        )));
    }
    Ok(backend)
}

/// A backend listed once per VIP: `earlier` names the entry that already
/// has `address`, if one does (as the source names entries).
pub(crate) fn listed_once(address: IpAddr, earlier: Option<&str>) -> Result<(), ValueError> {
    match earlier {
        Some(earlier) => Err(ValueError::invalid(format!(
            "{address} is already {earlier}"
        ))),
        None => Ok(()),
    }
}
