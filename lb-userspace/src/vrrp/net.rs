//! VRRP on the wire: raw IP sockets (protocol 112) bound to the interface,
//! joined to the VRRP group (224.0.0.18 / ff02::12), sending with TTL/hop
//! limit 255 from the interface's primary (IPv4) or link-local (IPv6)
//! address, and receiving with the TTL and addresses the checks need.

use std::{
    io,
    mem::{size_of, MaybeUninit},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    os::fd::AsRawFd as _,
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{IPPROTO_VRRP, VRRP_MCAST_V4, VRRP_MCAST_V6};

/// One received VRRP packet with what RFC 5798 §7.1 checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Sender.
    pub src: IpAddr,
    /// Destination (the group, or us for unicast).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// The VRRP message.
    pub payload: Vec<u8>,
}

/// A raw VRRP socket on one interface.
pub(crate) struct VrrpSocket {
    io: AsyncFd<Socket>,
    local: IpAddr,
}

impl VrrpSocket {
    /// Opens the socket for `local`'s family on interface `ifname`: `local`
    /// is the source of our adverts (IPv4: the interface's primary address;
    /// IPv6: its link-local address).
    pub(crate) fn open(ifname: &str, ifindex: u32, local: IpAddr) -> io::Result<Self> {
        let socket = match local {
            IpAddr::V4(v4) => {
                let s = Socket::new(
                    Domain::IPV4,
                    Type::RAW,
                    Some(Protocol::from(i32::from(IPPROTO_VRRP))),
                )?;
                s.bind_device(Some(ifname.as_bytes()))?;
                s.join_multicast_v4_n(&VRRP_MCAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
                s.set_multicast_if_v4(&v4)?;
                s.set_multicast_ttl_v4(255)?;
                s.set_ttl(255)?;
                s.set_multicast_loop_v4(false)?;
                // No bind(): a raw socket bound to an address only receives
                // packets sent to it, not to the group. IP_MULTICAST_IF with
                // our address makes it the source of our adverts.
                s
            }
            IpAddr::V6(v6) => {
                let s = Socket::new(
                    Domain::IPV6,
                    Type::RAW,
                    Some(Protocol::from(i32::from(IPPROTO_VRRP))),
                )?;
                s.bind_device(Some(ifname.as_bytes()))?;
                s.join_multicast_v6(&VRRP_MCAST_V6, ifindex)?;
                s.set_multicast_if_v6(ifindex)?;
                s.set_multicast_hops_v6(255)?;
                s.set_unicast_hops_v6(255)?;
                s.set_multicast_loop_v6(false)?;
                crate::sockopt::set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
                crate::sockopt::set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
                // Bound to the link-local address, the source RFC 5798
                // wants (the kernel would pick a global one). Unlike IPv4,
                // a bound IPv6 raw socket still gets its groups' traffic.
                s.bind(&SockAddr::from(SocketAddrV6::new(v6, 0, 0, ifindex)))?;
                s
            }
        };
        socket.set_nonblocking(true)?;
        // SAFETY: the socket owns its fd, which stays open and the same for
        // as long as the AsyncFd owns the socket.
        let io = unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)?;
        Ok(Self { io, local })
    }

    /// Our source address.
    pub(crate) fn local(&self) -> IpAddr {
        self.local
    }

    /// Sends one VRRP message to `dst` (the group, or a unicast peer).
    pub(crate) async fn send(&self, payload: &[u8], dst: IpAddr) -> io::Result<()> {
        let to = SockAddr::from(SocketAddr::new(dst, 0));
        loop {
            let mut guard = self.io.writable().await?;
            match guard.try_io(|s| s.get_ref().send_to(payload, &to)) {
                Ok(result) => return result.map(drop),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives the next VRRP packet.
    pub(crate) async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut guard = self.io.readable().await?;
            let result = guard.try_io(|s| match self.local {
                IpAddr::V4(_) => recv_v4(s.get_ref()),
                IpAddr::V6(_) => recv_v6(s.get_ref()),
            });
            match result {
                Ok(Ok(Some(received))) => return Ok(received),
                Ok(Ok(None)) => continue, // not parseable as IP: ignore
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// IPv4 raw sockets deliver the IP header: take TTL and addresses from it.
fn recv_v4(socket: &Socket) -> io::Result<Option<Received>> {
    let mut buffer = [MaybeUninit::<u8>::uninit(); 2048];
    let (len, _) = socket.recv_from(&mut buffer)?;
    let bytes: Vec<u8> = buffer[..len.min(buffer.len())]
        .iter()
        // SAFETY: recv_from initialised the first `len` bytes.
        .map(|b| unsafe { b.assume_init() })
        .collect();
    Ok(parse_ipv4(&bytes))
}

/// Splits an IPv4 packet into what VRRP needs; None if it is not one.
pub fn parse_ipv4(bytes: &[u8]) -> Option<Received> {
    let first = *bytes.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || bytes.len() < header_len {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
    let end = total.min(bytes.len());
    let octets = |at: usize| -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ))
    };
    Some(Received {
        src: IpAddr::V4(octets(12)?),
        dst: IpAddr::V4(octets(16)?),
        ttl: *bytes.get(8)?,
        payload: bytes.get(header_len..end)?.to_vec(),
    })
}

/// IPv6 raw sockets deliver only the payload: hop limit and destination
/// come as control messages.
fn recv_v6(socket: &Socket) -> io::Result<Option<Received>> {
    let mut buffer = [0u8; 2048];
    let mut control = [0u64; 16]; // aligned space for cmsgs
                                  // SAFETY: zeroed sockaddr storage is a valid out-parameter.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: zeroed msghdr, then every pointer set to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>();
    // SAFETY: recvmsg on our socket with the buffers above.
    let len = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = usize::try_from(len).unwrap_or(0).min(buffer.len());
    let mut hop_limit = None;
    let mut dst = None;
    // SAFETY: walking the control messages the kernel wrote, with libc's
    // CMSG macros, inside msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_HOPLIMIT
            {
                hop_limit = Some(std::ptr::read_unaligned(data.cast::<i32>()));
            }
            if (*cmsg).cmsg_level == libc::IPPROTO_IPV6 && (*cmsg).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let (Some(hop_limit), Some(dst)) = (hop_limit, dst) else {
        return Ok(None);
    };
    Ok(Some(Received {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst: IpAddr::V6(dst),
        ttl: u8::try_from(hop_limit).unwrap_or(0),
        payload: buffer.get(..len).unwrap_or_default().to_vec(),
    }))
}

/// Tells the segment that `address` now lives at `mac`: a gratuitous ARP
/// (IPv4) or an unsolicited neighbour advertisement with the override flag
/// (IPv6), so clients and switches update their caches at once.
pub(crate) fn announce(ifindex: u32, mac: [u8; 6], address: IpAddr) -> io::Result<()> {
    match address {
        IpAddr::V4(v4) => gratuitous_arp(ifindex, mac, v4),
        IpAddr::V6(v6) => unsolicited_na(ifindex, mac, v6),
    }
}

fn gratuitous_arp(ifindex: u32, mac: [u8; 6], address: Ipv4Addr) -> io::Result<()> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, hlen 6, plen 4, request; sender = target = address.
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&address.octets());
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own fd; closed right after.
    let socket = unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll, fields set below.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = 0x0806u16.to_be();
    to.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: sendto with the frame and a sockaddr_ll of the right size.
    let rc = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn unsolicited_na(ifindex: u32, mac: [u8; 6], address: Ipv6Addr) -> io::Result<()> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.set_multicast_hops_v6(255)?;
    socket.set_multicast_if_v6(ifindex)?;
    // Type 136, code 0, checksum (the kernel fills it), flags: override.
    let mut message = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    message.extend_from_slice(&address.octets());
    // Option: target link-layer address.
    message.extend_from_slice(&[2, 1]);
    message.extend_from_slice(&mac);
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, ifindex);
    socket.send_to(&message, &SockAddr::from(all_nodes))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_packets_split_into_ttl_addresses_and_payload() {
        let mut packet = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 198, 18, 0, 2, 224, 0, 0, 18,
        ];
        packet.extend_from_slice(&[0x31, 51, 100, 1, 0, 100, 0, 0]);
        let received = parse_ipv4(&packet).unwrap();
        assert_eq!(received.ttl, 255);
        assert_eq!(received.src, IpAddr::from([198, 18, 0, 2]));
        assert_eq!(received.dst, IpAddr::from([224, 0, 0, 18]));
        assert_eq!(received.payload.len(), 8);
        for cut in 0..20 {
            assert!(parse_ipv4(&packet[..cut]).is_none(), "cut at {cut}");
        }
        assert!(parse_ipv4(&[0x65; 40]).is_none(), "not IPv4");
    }
}
