//! VRRP on the wire: raw IP sockets (protocol 112) bound to the interface,
//! joined to the VRRP group (224.0.0.18 / ff02::12), sending with TTL/hop
//! limit 255 from the interface's primary (IPv4), link-local (IPv6 to the
//! group) or global (IPv6 to unicast peers) address, and receiving with
//! the TTL and addresses the checks need.
//!
//! The source of every advert is set per packet (`IP_PKTINFO` /
//! `IPV6_PKTINFO`), never by bind(): a raw socket bound to an address
//! only receives packets sent to that address (and, for IPv6, its
//! groups), so a bound socket would miss unicast adverts sent to another
//! of our addresses (an IPv6 peer listing our global address), while an
//! unbound one lets the kernel pick the source from the route (another
//! subnet's address when a peer sits there), not the address the checksum
//! and the tie-break use.

use std::{
    io,
    mem::{size_of, MaybeUninit},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    os::fd::AsRawFd as _,
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{IPPROTO_VRRP, VRRP_MCAST_V4, VRRP_MCAST_V6};

/// Room for the largest packet a raw socket hands us: an IPv4 header with
/// options (60 bytes) or none (IPv6), and the largest advert (255 IPv6
/// addresses: 8 + 255 × 16 bytes). A smaller buffer truncates big adverts,
/// which then fail their length and checksum checks.
pub(crate) const RECEIVE_BUFFER: usize = 8192;

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
    ifindex: u32,
    /// The port sends are addressed to: 0 on the raw sockets lbd opens
    /// (an IPv6 raw socket refuses any other but its protocol's); a
    /// test's UDP socket names its sink's (see `udp_for_tests`).
    to_port: u16,
}

impl VrrpSocket {
    /// Opens the socket for `local`'s family on interface `ifname`: `local`
    /// is the source of our adverts (IPv4: the interface's primary address;
    /// IPv6: its link-local address, or a global one for unicast peers).
    /// Fails with `AddrNotAvailable` while `local` cannot be sent from yet
    /// (IPv6 duplicate address detection), so the start waits for it.
    ///
    /// Once open, an IPv6 socket sends from a source still in duplicate
    /// address detection too (`IPV6_FREEBIND`: `ip6_datagram_send_ctl`
    /// then takes a tentative `IPV6_PKTINFO` source instead of refusing it
    /// with EINVAL). After an admin down/up or a MAC change the link-local
    /// address (and a kept global one) is tentative for 1–2 s; refused
    /// sends would silence a master for that long right after an outage,
    /// long enough for the backup's master-down interval (about 3.6 s by
    /// default) to run out and the VIPs to flap. Waiting for DAD instead
    /// has the same cost, and `optimistic_dad` / `accept_dad = 0` are the
    /// operator's sysctls, not lbd's. Sending from a tentative address is
    /// what RFC 4862 keeps for confirmed addresses because a duplicate
    /// would poison neighbour caches; an advert creates no neighbour entry
    /// at its receivers (no link-layer option, to the group or a peer that
    /// never answers), and the address is the node's EUI-64 link-local or
    /// the global one it advertised from before, so the risk is nil
    /// beside a spurious failover. A source that fails DAD is dropped by
    /// the driver's next look (see `driver::source::check::check_source`). The same
    /// option lets a send from an address gone from the interface leave
    /// (IPv4 sends fail then): the driver's look every 0.5 s moves the
    /// source.
    ///
    /// `present`: `local` is the node's. A `unicast_src_ip` not on the
    /// interface yet is not (the instance starts without a source, and
    /// sends only once it is there): the socket opens all the same,
    /// without the checks that need it (the IPv4 multicast interface by
    /// address, which unicast adverts never use, every send naming the
    /// interface; the IPv6 probe).
    pub(crate) fn open(
        ifname: &str,
        ifindex: u32,
        local: IpAddr,
        present: bool,
    ) -> io::Result<Self> {
        let socket = match local {
            IpAddr::V4(v4) => {
                let s = Socket::new(
                    Domain::IPV4,
                    Type::RAW,
                    Some(Protocol::from(i32::from(IPPROTO_VRRP))),
                )?;
                s.bind_device(Some(ifname.as_bytes()))?;
                s.join_multicast_v4_n(&VRRP_MCAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
                if present {
                    s.set_multicast_if_v4(&v4)?;
                }
                s.set_multicast_ttl_v4(255)?;
                s.set_ttl(255)?;
                s.set_multicast_loop_v4(false)?;
                // No bind(): see the module's doc. The source is set on
                // every send.
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
                // Tentative sources leave: see the doc above.
                crate::sockopt::set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 1)?;
                // No bind() (see the module's doc), but the source
                // address must be the node's and usable: a still
                // tentative one (duplicate address detection) is refused
                // here with AddrNotAvailable, so the caller waits for it
                // at start (this probe has no IPV6_FREEBIND).
                if present {
                    let probe = Socket::new(Domain::IPV6, Type::DGRAM, None)?;
                    probe.bind(&SockAddr::from(SocketAddrV6::new(v6, 0, 0, ifindex)))?;
                }
                s
            }
        };
        socket.set_nonblocking(true)?;
        // SAFETY: the socket owns its fd, which stays open and the same for
        // as long as the AsyncFd owns the socket.
        let io = unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            io,
            local,
            ifindex,
            to_port: 0,
        })
    }

    /// A UDP socket sending from `local` (a loopback address) to port
    /// `to_port` of each destination: tests run a driver without raw
    /// sockets (no CAP_NET_RAW needed) and count the adverts that left at
    /// a UDP sink.
    #[cfg(test)]
    pub(crate) fn udp_for_tests(local: IpAddr, to_port: u16) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::for_address(SocketAddr::new(local, 0)),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.bind(&SockAddr::from(SocketAddr::new(local, 0)))?;
        socket.set_nonblocking(true)?;
        // SAFETY: as in `open`: the socket owns its fd for as long as the
        // AsyncFd owns the socket.
        let io = unsafe { AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)?;
        Ok(Self {
            io,
            local,
            ifindex: 0,
            to_port,
        })
    }

    /// The port a test's UDP socket is bound to, for a test peer to send
    /// to (see `udp_for_tests`).
    #[cfg(test)]
    pub(crate) fn bound_port(&self) -> io::Result<u16> {
        let address = self.io.get_ref().local_addr()?;
        address
            .as_socket()
            .map(|address| address.port())
            .ok_or_else(|| io::Error::other("the test socket has no IP address"))
    }

    /// Our source address.
    pub(crate) fn local(&self) -> IpAddr {
        self.local
    }

    /// Sends from `local` from now on: the interface's primary, link-local
    /// or global address changed under lbd, and the old one, no longer
    /// the node's, makes every send fail. Nothing else needs the socket
    /// reopened: it is bound to the interface, not to the address, and the
    /// source (with the interface) is given on every send. `local` must be
    /// of the socket's family; one of the other is refused.
    pub(crate) fn set_local(&mut self, local: IpAddr) -> io::Result<()> {
        if local.is_ipv4() != self.local.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{local} is not of the VRRP socket's family (it sends from {})",
                    self.local
                ),
            ));
        }
        self.local = local;
        Ok(())
    }

    /// Sends one VRRP message to `dst` (the group, or a unicast peer), from
    /// [`Self::local`] whatever the route to `dst` would pick.
    pub(crate) async fn send(&self, payload: &[u8], dst: IpAddr) -> io::Result<()> {
        let to = SockAddr::from(match dst {
            // The group is link-scoped: name the interface.
            IpAddr::V6(v6) if v6.is_multicast() => {
                SocketAddr::V6(SocketAddrV6::new(v6, self.to_port, 0, self.ifindex))
            }
            _ => SocketAddr::new(dst, self.to_port),
        });
        loop {
            let mut guard = self.io.writable().await?;
            match guard.try_io(|s| send_from(s.get_ref(), payload, &to, self.local, self.ifindex)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// The next VRRP packet already queued, without waiting: `None` when
    /// none is. The driver drains the queue before acting on its timer
    /// (see `Driver::drain_queued`). Reads the socket directly: a
    /// would-block here leaves tokio's readiness as it was, and the next
    /// [`Self::recv`] clears it on its own would-block.
    pub(crate) fn try_recv(&self) -> io::Result<Option<Received>> {
        loop {
            let read = match self.local {
                IpAddr::V4(_) => recv_v4(self.io.get_ref()),
                IpAddr::V6(_) => recv_v6(self.io.get_ref()),
            };
            match read {
                Ok(Some(received)) => return Ok(Some(received)),
                Ok(None) => continue, // not parseable as IP: ignore
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
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

/// The packet-info control message that makes `local` the source (and
/// `ifindex` the interface) of one packet.
fn source_cmsg(local: IpAddr, ifindex: u32) -> (libc::c_int, libc::c_int, Vec<u8>) {
    match local {
        IpAddr::V4(v4) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: libc::c_int::try_from(ifindex).unwrap_or(0),
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            (libc::IPPROTO_IP, libc::IP_PKTINFO, as_bytes(&info))
        }
        IpAddr::V6(v6) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, as_bytes(&info))
        }
    }
}

/// The bytes of a plain C struct.
fn as_bytes<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: reading size_of::<T>() bytes of a live, initialised value of a
    // C struct without padding (in_pktinfo, in6_pktinfo).
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// sendmsg(2) of `payload` to `to`, from `local` on `ifindex`.
fn send_from(
    socket: &Socket,
    payload: &[u8],
    to: &SockAddr,
    local: IpAddr,
    ifindex: u32,
) -> io::Result<()> {
    let (level, kind, data) = source_cmsg(local, ifindex);
    let mut control = [0u64; 8]; // aligned, room for one pktinfo cmsg
    let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
    if space > size_of::<[u64; 8]>() {
        return Err(io::Error::other("packet-info control message too large"));
    }
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: zeroed msghdr, then every pointer set to live buffers that
    // outlive the call; the cmsg is written inside `control` with libc's
    // CMSG macros after checking its space above.
    let rc = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = to.as_ptr().cast_mut().cast();
        msg.msg_namelen = to.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other(
                "no room for the packet-info control message",
            ));
        }
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
        std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
        libc::sendmsg(socket.as_raw_fd(), &msg, 0)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// IPv4 raw sockets deliver the IP header: take TTL and addresses from it.
fn recv_v4(socket: &Socket) -> io::Result<Option<Received>> {
    let mut buffer = [MaybeUninit::<u8>::uninit(); RECEIVE_BUFFER];
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
    let mut buffer = [0u8; RECEIVE_BUFFER];
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

    #[test]
    fn the_receive_buffer_holds_the_largest_advert() {
        use crate::vrrp::{Advertisement, ChecksumMode};
        let addresses: Vec<IpAddr> = (0..255u16)
            .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, i)))
            .collect();
        let ad = Advertisement {
            vrid: 51,
            priority: 100,
            max_adver_int_cs: 100,
            addresses,
        };
        let src: IpAddr = "fe80::1".parse().unwrap();
        let payload = ad
            .encode(src, IpAddr::V6(VRRP_MCAST_V6), ChecksumMode::PseudoHeader)
            .unwrap();
        assert_eq!(payload.len(), 8 + 255 * 16);
        // An IPv4 raw socket also hands over the header, options included.
        assert!(payload.len() + 60 <= RECEIVE_BUFFER, "{}", payload.len());
    }
}
