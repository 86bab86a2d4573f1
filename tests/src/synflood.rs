//! A bounded SYN flood for the lab: TCP SYNs from spoofed sources of the
//! benchmarking range (198.19.0.0/16, inside 198.18.0.0/15), written
//! straight to a lab interface with an `AF_PACKET` raw socket (no routing,
//! no ARP: the frames carry the load balancer's MAC), from inside the
//! namespace that owns the interface. Bounded in count and in time, and
//! stops by itself.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use etherparse::PacketBuilder;

/// The flood to send.
#[derive(Debug, Clone)]
pub struct SynFlood {
    /// The interface the frames leave by (in the calling thread's
    /// namespace).
    pub ifname: String,
    /// Source MAC (the sending host's own).
    pub src_mac: [u8; 6],
    /// Destination MAC (the load balancer's interface).
    pub dst_mac: [u8; 6],
    /// The VIP.
    pub vip: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// SYNs to send at most.
    pub count: u32,
    /// Number of the first SYN (`frame`): a later flood starting past an
    /// earlier one's numbers sends other flows.
    pub first: u32,
    /// Time to send them in at most.
    pub limit: Duration,
    /// SYNs a second at most (None: as fast as the sender goes; its pace
    /// then depends on how much CPU the receiving side leaves it).
    pub per_s: Option<u32>,
}

/// What a flood sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodReport {
    /// Frames the kernel took.
    pub sent: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Times the interface's queue was full (`ENOBUFS`): the sender
    /// waited a moment and sent the frame again.
    pub full: u64,
}

impl SynFlood {
    /// Source address of SYN `n`: 198.19.0.0/16, one address per SYN for
    /// the first 65,536 (then again, with other ports).
    pub fn source(n: u32) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, (n >> 8) as u8, n as u8)
    }

    /// SYN `n` as a frame (checksums computed).
    pub fn frame(&self, n: u32) -> anyhow::Result<Vec<u8>> {
        let sport = 1024 + ((n >> 16) as u16 ^ (n as u16)) % 60_000;
        let builder = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ipv4(Self::source(n).octets(), self.vip.octets(), 64)
            .tcp(sport, self.port, n.wrapping_mul(2_654_435_761), 64_240)
            .syn();
        let mut frame = Vec::with_capacity(builder.size(0));
        builder
            .write(&mut frame, &[])
            .context("building a SYN frame")?;
        Ok(frame)
    }

    /// Sends the flood; run it in the namespace of `ifname` (e.g. with
    /// `lab::in_netns`). Stops after `count` SYNs or `limit`, whichever
    /// comes first. A sender faster than the interface finds its queue
    /// full now and then: it waits a moment and sends the frame again.
    pub fn run(&self) -> anyhow::Result<FloodReport> {
        let socket = RawSocket::open(&self.ifname, self.dst_mac)?;
        let started = Instant::now();
        let (mut sent, mut full) = (0u64, 0u64);
        'frames: for n in 0..self.count {
            if let Some(rate) = self.per_s.filter(|_| n % 256 == 0) {
                let due = started + Duration::from_secs_f64(f64::from(n) / f64::from(rate.max(1)));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let frame = self.frame(self.first.wrapping_add(n))?;
            loop {
                if started.elapsed() >= self.limit {
                    break 'frames;
                }
                match socket.send(&frame) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        full += 1;
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    Err(e) => bail!("sendto on {}: {e}", self.ifname),
                }
            }
            sent += 1;
        }
        Ok(FloodReport {
            sent,
            elapsed: started.elapsed(),
            full,
        })
    }
}

/// An `AF_PACKET` socket bound to send on one interface.
struct RawSocket {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
}

impl RawSocket {
    /// A send-only raw socket (protocol 0: it receives nothing) for
    /// `ifname`, frames to `dst_mac`.
    fn open(ifname: &str, dst_mac: [u8; 6]) -> anyhow::Result<Self> {
        let name = std::ffi::CString::new(ifname).context("interface name")?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!(
                "no interface {ifname} here: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: plain socket call; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = i32::try_from(ifindex).context("ifindex")?;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&dst_mac);
        Ok(RawSocket { fd, to })
    }

    /// Sends one whole frame.
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: the buffer and address are valid for the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&self.to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The MAC address of `ifname` in namespace `netns` (`ip -j link`).
pub fn mac_of(netns: &str, ifname: &str) -> anyhow::Result<[u8; 6]> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-n", netns, "link", "show", "dev", ifname])
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip -n {netns} link show {ifname}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j output")?;
    let text = links[0]["address"]
        .as_str()
        .with_context(|| format!("no address of {ifname} in {netns}"))?;
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().with_context(|| format!("MAC {text}"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("MAC {text}"))?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

    use super::*;

    #[test]
    fn each_syn_comes_from_its_own_benchmarking_source_with_valid_checksums() {
        let flood = SynFlood {
            ifname: "eth0".into(),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vip: Ipv4Addr::new(198, 18, 0, 100),
            port: 80,
            count: 3,
            first: 0,
            limit: Duration::from_secs(1),
            per_s: None,
        };
        let mut sources = std::collections::BTreeSet::new();
        for n in [0, 1, 65_535] {
            let frame = flood.frame(n).expect("frame");
            let headers = PacketHeaders::from_ethernet_slice(&frame).expect("parse");
            let Some(NetHeaders::Ipv4(ip, _)) = &headers.net else {
                panic!("not IPv4");
            };
            let Some(TransportHeader::Tcp(tcp)) = &headers.transport else {
                panic!("not TCP");
            };
            assert!(tcp.syn && !tcp.ack);
            assert_eq!(tcp.destination_port, 80);
            assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(ip, &[]).expect("sum"));
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            let source = Ipv4Addr::from(ip.source);
            assert_eq!(source.octets()[..2], [198, 19]);
            sources.insert(source);
        }
        assert_eq!(sources.len(), 3);
    }
}
