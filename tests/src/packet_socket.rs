//! An `AF_PACKET` raw socket on one interface, for the live tc labs that
//! send crafted frames into a veth and catch what the program bounced or
//! sent on: frames sent as they are, or with a virtio-net header (the
//! kernel then builds the skb with only `hdr_len` bytes linear, as a NIC
//! leaves it), and frames received with the VLAN tag an skb carried beside
//! them.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

/// A frame received, and the VLAN tag the skb carried beside it, if
/// any: (TPID, TCI).
pub struct Received {
    /// The frame's bytes.
    pub frame: Vec<u8>,
    /// The tag beside the frame (`PACKET_AUXDATA`), if any.
    pub tag: Option<(u16, u16)>,
}

/// An `AF_PACKET` raw socket on one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
    /// Sends a virtio-net header before each frame (`PACKET_VNET_HDR`).
    vnet: bool,
}

/// Largest frame received whole.
const RECEIVE_BUFFER: usize = 16_384;

impl PacketSocket {
    /// A socket bound to `ifindex` that receives every protocol (with the
    /// tag an skb carries beside its frame, and a 100 ms receive timeout)
    /// and sends frames as they are.
    pub fn bind(ifindex: u32) -> io::Result<Self> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        let socket = Self::open(ifindex, all, false)?;
        // SAFETY: sockaddr_ll is plain data; zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
        // SAFETY: binding our socket to a sockaddr_ll of the right size.
        let bound = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if bound != 0 {
            return Err(io::Error::last_os_error());
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        socket.set(libc::SOL_PACKET, libc::PACKET_AUXDATA, &1i32)?;
        socket.set(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        Ok(socket)
    }

    /// A socket that only sends, on `ifindex`, each frame after a
    /// virtio-net header (`send_linear`).
    pub fn sender_with_vnet_header(ifindex: u32) -> io::Result<Self> {
        let socket = Self::open(ifindex, 0, true)?;
        socket.set(libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1i32)?;
        Ok(socket)
    }

    fn open(ifindex: u32, protocol: u16, vnet: bool) -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd, ifindex, vnet })
    }

    fn set<T>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: setsockopt with a value of the size passed.
        let set = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                size_of::<T>() as u32,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `frame` as it is out of the interface (a socket from `bind`).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        if self.vnet {
            return Err(io::Error::other(
                "a socket with a virtio-net header sends with send_linear",
            ));
        }
        self.send_message(frame, &frame[..6.min(frame.len())])
    }

    /// Sends `frame` out of the interface, the first `linear` bytes of
    /// its skb linear, the rest in page fragments (a socket from
    /// `sender_with_vnet_header`).
    pub fn send_linear(&self, frame: &[u8], linear: u16) -> io::Result<()> {
        if !self.vnet {
            return Err(io::Error::other(
                "only a socket with a virtio-net header sends with send_linear",
            ));
        }
        let mut message = vnet_header(linear).to_vec();
        message.extend_from_slice(frame);
        self.send_message(&message, &frame[..6.min(frame.len())])
    }

    fn send_message(&self, message: &[u8], destination: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zero is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = i32::try_from(self.ifindex).map_err(io::Error::other)?;
        to.sll_halen = 6;
        to.sll_addr[..destination.len()].copy_from_slice(destination);
        // SAFETY: sendto from a live buffer to a sockaddr_ll of its size.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if usize::try_from(sent).ok() != Some(message.len()) {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame (None after the receive timeout).
    pub fn recv(&self) -> io::Result<Option<Received>> {
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        // u64s: aligned for cmsghdr.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; zero is a valid value.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>();
        let got = loop {
            // SAFETY: recvmsg into the live buffers `msg` points at.
            let got = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_TRUNC) };
            if got >= 0 {
                break got;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                // A signal (a lab process ending: SIGCHLD) cut the wait short.
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(None),
                _ => return Err(error),
            }
        };
        let len = usize::try_from(got).map_err(io::Error::other)?;
        if len > buf.len() {
            return Err(io::Error::other(format!("a frame of {len} bytes, cut")));
        }
        buf.truncate(len);
        let mut tag = None;
        // SAFETY: walking the control messages the kernel wrote into
        // `control`, as msghdr describes them; the auxdata is read
        // unaligned from within its message.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET
                    && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        tag = Some((aux.tp_vlan_tpid, aux.tp_vlan_tci));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        Ok(Some(Received { frame: buf, tag }))
    }

    /// The next frame to a backend's MAC (`02:00:00:00:be:..`: the test
    /// beds' backends and neighbours), skipping the interfaces' own
    /// traffic (IPv6 neighbour discovery, MLD); None if none comes within
    /// a second.
    pub fn to_backend(&self) -> io::Result<Option<Received>> {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Some(got) = self.recv()? {
                if got.frame.len() >= 14 && got.frame[..5] == [0x02, 0, 0, 0, 0xbe] {
                    return Ok(Some(got));
                }
            }
        }
        Ok(None)
    }
}

/// `struct virtio_net_hdr` (linux/virtio_net.h), little-endian as the
/// packet socket reads it on this host: no checksum offload, no GSO;
/// only `hdr_len` set, how much of the frame goes into the linear part.
fn vnet_header(linear: u16) -> [u8; 10] {
    let mut header = [0u8; 10];
    header[2..4].copy_from_slice(&linear.to_le_bytes());
    header
}
