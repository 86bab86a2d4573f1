//! The socket of a health check that follows the data path
//! (`health.through_tunnel`): it connects to the VIP itself, carries the
//! mark `HC_MARK_BASE | backend id` (SO_MARK) so `tc_hc_encap` wraps its
//! packets for that backend exactly as clients' packets are wrapped, and is
//! bound, before the connect, to the balancer's own address toward the
//! backend. Unbound, the kernel would pick the VIP itself as the source
//! (the VIP is local on the VRRP master), and the backend's reply, from the
//! VIP to the VIP, would never come back to the balancer.

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};
use socket2::{Domain, SockRef, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// How a check reaches a backend through the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct TunnelPath {
    /// SO_MARK of the check's socket: `HC_MARK_BASE | backend id`.
    pub mark: u32,
    /// The backend's own address (the outer destination): the check's
    /// source is the balancer's address the kernel uses toward it.
    pub backend: IpAddr,
    /// The source to bind when the VIP's family is not the backend's
    /// (4in6: the balancer interface's IPv4 address); None: looked up
    /// toward `backend` at each check, so route changes are followed.
    pub source: Option<IpAddr>,
}

/// The local address the kernel picks for packets to `destination` with
/// mark `mark` (policy routing may select by mark): a route lookup made by
/// connecting a UDP socket, which sends nothing.
pub(crate) fn source_toward(destination: IpAddr, mark: u32) -> io::Result<IpAddr> {
    let domain = match destination {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    let socket = Socket::new(domain, Type::DGRAM, None)?;
    socket.set_mark(mark)?;
    socket.connect(&SocketAddr::new(destination, 9).into())?;
    socket
        .local_addr()?
        .as_socket()
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::other("the route lookup gave no IP source address"))
}

/// The source a check through `path` leaves from: the one given (4in6),
/// else the kernel's choice toward the backend, looked up now so route
/// changes are followed.
pub(crate) fn check_source(path: &TunnelPath) -> io::Result<IpAddr> {
    match path.source {
        Some(source) => Ok(source),
        None => source_toward(path.backend, path.mark),
    }
}

/// The node's addresses with the interface that holds each (a labelled
/// IPv4 address, `eth0:1`, by its interface's name: device names hold no
/// `:`): lbd switches `accept_local` on for the interface that owns a
/// check's source, where the backend's reply from the VIP arrives.
pub(crate) fn interface_addresses() -> io::Result<Vec<(String, IpAddr)>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list it allocates, freed
    // below with freeifaddrs and not used after.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs gave, alive
        // until freeifaddrs; its name is a NUL-terminated string and its
        // address, when not null, a sockaddr of the family it names.
        let (name, address) = unsafe {
            let ifa = &*entry;
            entry = ifa.ifa_next;
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            let address = ifa.ifa_addr;
            let address = if address.is_null() {
                None
            } else {
                match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*address.cast::<libc::sockaddr_in>();
                        Some(IpAddr::from(v4.sin_addr.s_addr.to_ne_bytes()))
                    }
                    libc::AF_INET6 => {
                        let v6 = &*address.cast::<libc::sockaddr_in6>();
                        Some(IpAddr::from(v6.sin6_addr.s6_addr))
                    }
                    _ => None,
                }
            };
            (name.into_owned(), address)
        };
        if let Some(address) = address {
            let device = name.split(':').next().unwrap_or_default().to_owned();
            out.push((device, address));
        }
    }
    // SAFETY: the list getifaddrs allocated, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

/// Opens the check's TCP connection to `address` (the VIP and check port)
/// through the tunnel `path`: marked, bound to the balancer's address, then
/// connected.
pub(crate) async fn connect_through(
    address: SocketAddr,
    path: &TunnelPath,
) -> io::Result<TcpStream> {
    let source = check_source(path)?;
    if source.is_ipv4() != address.is_ipv4() {
        return Err(io::Error::other(format!(
            "no source address of the VIP's family toward {} (the balancer's interface has none)",
            path.backend
        )));
    }
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    SockRef::from(&socket).set_mark(path.mark)?;
    // The port is picked at connect, by the whole 4-tuple: a bind to port
    // 0 alone would reserve a port per check for good (through TIME_WAIT,
    // for every destination), and checks of many backends would use the
    // host's ephemeral ports up.
    crate::sockopt::set_int(&socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(address).await
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use lb_common::tunnel::{hc_backend_of_mark, HC_MARK_BASE};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn the_source_is_the_kernels_choice_toward_the_backend() {
        let loopback: IpAddr = Ipv4Addr::LOCALHOST.into();
        assert_eq!(source_toward(loopback, HC_MARK_BASE | 1).unwrap(), loopback);
        let v6: IpAddr = std::net::Ipv6Addr::LOCALHOST.into();
        assert_eq!(source_toward(v6, HC_MARK_BASE | 1).unwrap(), v6);
    }

    #[test]
    fn the_node_addresses_name_their_interface() {
        let addresses = interface_addresses().unwrap();
        let loopback: IpAddr = Ipv4Addr::LOCALHOST.into();
        assert!(
            addresses.contains(&("lo".to_owned(), loopback)),
            "{addresses:?}"
        );
        assert!(addresses.iter().all(|(name, _)| !name.contains(':')));
    }

    #[tokio::test]
    async fn the_check_socket_is_marked_and_bound_before_it_connects() {
        // The "VIP" listens on 127.0.0.1; the "own address" the check must
        // come from is 127.0.0.2 (lo holds 127/8), as the backend-facing
        // address differs from the VIP on a balancer.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let vip = listener.local_addr().unwrap();
        let path = TunnelPath {
            mark: HC_MARK_BASE | 42,
            backend: "127.0.0.3".parse().unwrap(),
            source: Some("127.0.0.2".parse().unwrap()),
        };
        let (stream, accepted) = tokio::join!(connect_through(vip, &path), listener.accept());
        let stream = stream.unwrap();
        let (_, peer) = accepted.unwrap();
        assert_eq!(peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
        let mark = SockRef::from(&stream).mark().unwrap();
        assert_eq!(hc_backend_of_mark(mark), Some(42));

        // Looked up toward the backend when not given.
        let looked_up = TunnelPath {
            source: None,
            backend: "127.0.0.1".parse().unwrap(),
            ..path
        };
        let (stream, accepted) = tokio::join!(connect_through(vip, &looked_up), listener.accept());
        assert!(stream.is_ok());
        assert_eq!(
            accepted.unwrap().1.ip(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn a_source_of_another_family_is_refused_with_a_reason() {
        let path = TunnelPath {
            mark: HC_MARK_BASE | 1,
            backend: "::1".parse().unwrap(),
            source: None,
        };
        let error = connect_through("127.0.0.1:9".parse().unwrap(), &path)
            .await
            .unwrap_err();
        assert!(error
            .to_string()
            .contains("no source address of the VIP's family"));
    }
}
