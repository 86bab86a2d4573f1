//! The balancer half of the decap lab: packets the client sends to the
//! VIPs are routed into a TUN device; this relay reads them and sends each
//! one to the backend wrapped as the balancer would (IPIP, IP6IP6 and 4in6
//! through raw sockets, GUE through UDP sockets), since no kernel tunnel
//! module exists here.

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use anyhow::Context as _;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{BACKEND4, BACKEND6, GUE_PORT};
use crate::decapbed::inner_proto;

/// `TUNSETIFF` (linux/if_tun.h).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// How the relay wraps the client's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// IPIP / IP6IP6 / 4in6.
    Ipip,
    /// GUE variant 0 (4-byte header).
    Gue0,
    /// GUE variant 1.
    Gue1,
}

/// The relay's current setting: the wrap and the outer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayMode {
    /// Encapsulation.
    pub wrap: Wrap,
    /// Outer IPv6 (else IPv4; IPv6 inner packets always go over IPv6).
    pub outer_v6: bool,
}

/// The relay's sockets: raw IPIP/IPv6-in-IP and UDP for GUE, per family.
pub(super) struct Sockets {
    ipip4: Socket,
    ip6ip6: Socket,
    ip4in6: Socket,
    udp4: Socket,
    udp6: Socket,
}

impl Sockets {
    /// Opens them in this thread's namespace.
    pub(super) fn open() -> anyhow::Result<Self> {
        let raw = |domain, proto: i32| {
            Socket::new(domain, Type::RAW, Some(Protocol::from(proto))).context("raw socket")
        };
        Ok(Self {
            ipip4: raw(Domain::IPV4, 4)?,
            ip6ip6: raw(Domain::IPV6, 41)?,
            ip4in6: raw(Domain::IPV6, 4)?,
            udp4: Socket::new(Domain::IPV4, Type::DGRAM, None)?,
            udp6: Socket::new(Domain::IPV6, Type::DGRAM, None)?,
        })
    }

    /// Sends `inner` to the backend as `mode` says.
    fn send(&self, mode: RelayMode, inner: &[u8]) -> std::io::Result<usize> {
        let v6_inner = inner.first().is_some_and(|b| b >> 4 == 6);
        let outer_v6 = mode.outer_v6 || v6_inner;
        let backend: IpAddr = if outer_v6 {
            BACKEND6.into()
        } else {
            BACKEND4.into()
        };
        match mode.wrap {
            Wrap::Ipip => {
                let socket = match (outer_v6, v6_inner) {
                    (false, _) => &self.ipip4,
                    (true, true) => &self.ip6ip6,
                    (true, false) => &self.ip4in6,
                };
                socket.send_to(inner, &SockAddr::from(SocketAddr::new(backend, 0)))
            }
            Wrap::Gue0 | Wrap::Gue1 => {
                let payload = if mode.wrap == Wrap::Gue0 {
                    [vec![0, inner_proto(inner), 0, 0], inner.to_vec()].concat()
                } else {
                    inner.to_vec()
                };
                let socket = if outer_v6 { &self.udp6 } else { &self.udp4 };
                socket.send_to(
                    &payload,
                    &SockAddr::from(SocketAddr::new(backend, GUE_PORT)),
                )
            }
        }
    }
}

/// Relays until `stop`: every packet read from `tun` goes out wrapped as
/// `mode` says at that moment.
pub(super) fn relay(tun: &OwnedFd, sockets: &Sockets, mode: &Mutex<RelayMode>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        let mut poll = libc::pollfd {
            fd: tun.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, bounded wait.
        if unsafe { libc::poll(&mut poll, 1, 100) } <= 0 {
            continue;
        }
        // SAFETY: reading into our buffer from our fd.
        let n = unsafe { libc::read(tun.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        let current = mode.lock().map(|m| *m).unwrap_or(RelayMode {
            wrap: Wrap::Ipip,
            outer_v6: false,
        });
        // A lost packet is retransmitted by TCP; the test sees failures.
        let _ = sockets.send(current, &buf[..n as usize]);
    }
}

/// Creates TUN device `name` (no packet info header) in this thread's
/// namespace.
pub(super) fn open_tun(name: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain open(2).
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening /dev/net/tun");
    }
    // SAFETY: fd is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut request = [0u8; 40];
    request[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as u16;
    request[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: an ifreq-sized buffer for TUNSETIFF.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, request.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("TUNSETIFF");
    }
    Ok(fd)
}
