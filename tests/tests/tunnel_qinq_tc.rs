//! QinQ client frames to tunnel VIPs (`ipip`, `gue`) at tc on a live
//! interface, where BPF_PROG_TEST_RUN cannot go: receiving a frame, the
//! kernel takes its outer tag out of the frame into the skb's accelerated
//! slot (`skb_vlan_untag`) before tc runs, so `tc_lb` sees the inner tag
//! still in the frame and the outer one beside it. The wrap must take
//! both off and grow by the whole outer header (popping only the
//! accelerated tag moved the inner one into its slot: the outer header
//! then overwrote the first 4 bytes of the inner IP header, and the tag
//! went back on at egress).
//!
//! The bed: the tunnel test bed (`tunnelbed`, the real object and control
//! plane) inside the NAT bed's namespace (`natbed::FibNetns`, named and
//! swept like every lab namespace), its tc program attached to `in0`'s
//! ingress (tcx, as lbd attaches it). A packet socket on `in0`'s peer
//! sends the tagged frames; one on `out0`'s peer captures what the
//! program redirected out of `out0`, with the tag the skb still carries
//! beside the frame (`PACKET_AUXDATA`), and etherparse checks it (the
//! tunnel_dataplane tests' checker). Benchmarking addresses only. Needs
//! root.

#[path = "tunnel_dataplane/frames.rs"]
#[allow(dead_code)]
mod frames;

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use aya::programs::{tc::TcAttachOptions, LinkOrder, TcAttachType};
use frames::{check_wrapped, wrapped_for};
use lb_common::{stats::Counter, Mode};
use lb_tests::{
    craft::{ethertype, frame_bytes, tcp_flag, Ip, Upper},
    natbed::{client_flow, FibNetns, BACKENDS4, BACKENDS6, IN_DEV, OUT_DEV},
    testbed::{Hook, VIP4, VIP6},
    tunnelbed::{tunnel_vip, TunnelBed},
};
use lb_userspace::config::{Protocol, VipConfig};

/// `in0`'s peer (the clients' side of the wire).
const CLIENT_DEV: &str = "in0p";
/// `out0`'s peer (the backends' side).
const BACKEND_DEV: &str = "out0p";

/// The tag stacks tried (TPIDs, outermost first): the outer tag is the
/// one the kernel takes off before tc.
const TAGS: [&[u16]; 3] = [
    &[ethertype::QINQ, ethertype::VLAN],
    &[ethertype::VLAN, ethertype::VLAN],
    &[ethertype::VLAN],
];

/// Every tunnel mode and outer family: (VIP, port, mode, backends,
/// overhead).
const MODES: [(&str, u16, Mode, &[&str], usize); 6] = [
    (VIP4, 80, Mode::Ipip, &BACKENDS4, 20),
    (VIP4, 81, Mode::Gue, &BACKENDS4, 28),
    (VIP6, 80, Mode::Ipip, &BACKENDS6, 40),
    (VIP6, 81, Mode::Gue, &BACKENDS6, 48),
    (VIP4, 82, Mode::Ipip, &BACKENDS6, 40),
    (VIP4, 83, Mode::Gue, &BACKENDS6, 48),
];

/// A frame received, and the VLAN tag the skb carried beside it, if
/// any: (TPID, TCI).
struct Received {
    frame: Vec<u8>,
    tag: Option<(u16, u16)>,
}

/// An `AF_PACKET` raw socket bound to one interface (every protocol),
/// reporting the tag an skb carries beside its frame.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    fn bind(ifindex: u32) -> io::Result<Self> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
        // SAFETY: binding our socket to a sockaddr_ll of the right size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if bound != 0 {
            return Err(io::Error::last_os_error());
        }
        let on: i32 = 1;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: setsockopt with values of the sizes passed.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&raw const on).cast(),
                size_of::<i32>() as u32,
            ) == 0
                && libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const timeout).cast(),
                    size_of::<libc::timeval>() as u32,
                ) == 0
        };
        if !set {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, ifindex })
    }

    /// Sends `frame` as it is out of the interface.
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zero is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = i32::try_from(self.ifindex).map_err(io::Error::other)?;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sendto from a live buffer to a sockaddr_ll of its size.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if usize::try_from(sent).ok() != Some(frame.len()) {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame (None after the receive timeout).
    fn recv(&self) -> io::Result<Option<Received>> {
        let mut buf = vec![0u8; 4096];
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
        // SAFETY: recvmsg into the live buffers `msg` points at.
        let got = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_TRUNC) };
        if got < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                _ => Err(error),
            };
        }
        let len = usize::try_from(got).map_err(io::Error::other)?;
        assert!(len <= buf.len(), "a frame of {len} bytes, cut");
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

    /// The next frame to a backend's neighbour MAC (`02:00:00:00:be:..`,
    /// see `natbed::neighbour_mac`), skipping the interfaces' own traffic
    /// (IPv6 neighbour discovery, MLD); None if none comes within a
    /// second.
    fn to_backend(&self) -> io::Result<Option<Received>> {
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

fn vips() -> Vec<VipConfig> {
    MODES
        .iter()
        .map(|&(vip, port, mode, backends, _)| tunnel_vip(vip, port, Protocol::Tcp, backends, mode))
        .collect()
}

/// Each tag stack and tunnel mode: the frame that leaves `out0` is the
/// client's IP packet byte for byte behind the whole outer header (its
/// length the overhead more than the inner packet's), with no tag in the
/// frame nor beside it; counted `Forwarded`, nothing `DropMalformed`.
#[test]
fn tagged_client_frames_are_wrapped_whole_at_tc_on_a_live_interface() {
    let netns = FibNetns::new().expect("namespace");
    let ifindex = |dev| netns.ifindex(dev).expect("ifindex");
    let (in_if, out_if) = (ifindex(IN_DEV), ifindex(OUT_DEV));
    let (client_if, backend_if) = (ifindex(CLIENT_DEV), ifindex(BACKEND_DEV));
    netns
        .run(move || {
            let vips = vips();
            let mut bed = TunnelBed::new(Hook::Tc, &vips, in_if, out_if).expect("test bed");
            bed.nat
                .bed
                .dataplane
                .tc_program()
                .expect("tc_lb")
                .attach_with_options(
                    IN_DEV,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .expect("attaching tc_lb to in0 (tcx)");
            let client = PacketSocket::bind(client_if).expect("client socket");
            let backend = PacketSocket::bind(backend_if).expect("backend socket");
            let mut sport = 43_000;
            let mut cases = 0;
            for tags in TAGS {
                let l3_off = 14 + 4 * tags.len();
                for (config, &(vip, port, _, _, overhead)) in vips.iter().zip(&MODES) {
                    sport += 1;
                    let flow = client_flow(vip, port, sport);
                    let sent = frame_bytes(
                        tags,
                        &Ip::new(flow.src, flow.dst),
                        &Upper::Tcp {
                            sport,
                            dport: port,
                            flags: tcp_flag::SYN,
                            payload: vec![0xa5; 64],
                        },
                    );
                    let inner = &sent[l3_off..];
                    let what = format!("{vip}:{port} behind {tags:x?}");
                    client.send(&sent).expect("send");
                    let Received { frame: out, tag } = backend
                        .to_backend()
                        .expect("receive")
                        .unwrap_or_else(|| panic!("{what}: nothing left out0"));
                    assert_eq!(tag, None, "{what}: no tag beside the frame");
                    assert_eq!(
                        out.len(),
                        14 + overhead + inner.len(),
                        "{what}: the whole outer header, no tag in the frame"
                    );
                    check_wrapped(&out, &wrapped_for(&bed, config, &flow, inner, false));
                    cases += 1;
                }
            }
            let counter = |c| bed.nat.bed.counter(c).expect("counter");
            assert_eq!(counter(Counter::Forwarded), cases);
            assert_eq!(counter(Counter::TunnelEncap), cases);
            assert_eq!(counter(Counter::DropMalformed), 0);
        })
        .expect("the test body (see its panic above)");
}
