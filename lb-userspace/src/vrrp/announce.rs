//! Telling the segment where the VIPs live: gratuitous ARP (IPv4) and
//! unsolicited neighbour advertisements (IPv6), sent in rounds by an
//! [`Announcer`] that is cancelled the moment the addresses are given up,
//! so a node that yields soon after claiming never keeps claiming them.

use std::{
    future::Future,
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6},
    os::fd::AsRawFd as _,
    time::Duration,
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::task::JoinHandle;

/// The announcement rounds in flight, if any; owned by the instance's
/// driver. Aborted when a new claim starts, on [`Announcer::cancel`] (the
/// addresses are released) and on drop (the instance stops).
#[derive(Default)]
pub(crate) struct Announcer {
    task: Option<JoinHandle<()>>,
}

impl Announcer {
    /// Runs `round` `count` times, `interval` apart (the first at once),
    /// replacing any rounds still in flight.
    pub(crate) fn start<F, Fut>(&mut self, count: u32, interval: Duration, mut round: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.cancel();
        if count == 0 {
            return;
        }
        self.task = Some(tokio::spawn(async move {
            for n in 0..count {
                if n > 0 {
                    tokio::time::sleep(interval).await;
                }
                round().await;
            }
        }));
    }

    /// Whether rounds are still to come.
    pub(crate) fn running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Stops the rounds still to come.
    pub(crate) fn cancel(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.cancel();
    }
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
    let socket = packet_socket()?;
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

/// The raw packet socket a gratuitous ARP is sent on (closed when
/// dropped), close-on-exec: a notify program forked meanwhile on another
/// thread must not inherit a socket that sends any frame on the link.
fn packet_socket() -> io::Result<Socket> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own fd; the Socket closes it.
    Ok(unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) })
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
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use super::*;

    fn counting(count: &Arc<AtomicU32>) -> impl FnMut() -> std::future::Ready<()> + Send {
        let count = count.clone();
        move || {
            count.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        }
    }

    // Real time (tokio's paused clock is not built here): rounds 200 ms
    // apart, checked half-way between them.
    const GAP: Duration = Duration::from_millis(200);

    /// A notify program forked while a round is sending must not inherit
    /// the raw packet socket (it could send any frame on the link).
    #[test]
    fn the_packet_socket_is_closed_on_exec() {
        let socket = match packet_socket() {
            Ok(socket) => socket,
            // Without CAP_NET_RAW there is no socket to check.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => return,
            Err(error) => panic!("packet socket: {error}"),
        };
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "FD_CLOEXEC not set");
    }

    #[tokio::test]
    async fn all_rounds_run_when_left_alone() {
        let sent = Arc::new(AtomicU32::new(0));
        let mut announcer = Announcer::default();
        announcer.start(3, GAP, counting(&sent));
        tokio::time::sleep(GAP * 5).await;
        assert_eq!(sent.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn it_is_running_until_the_last_round() {
        let sent = Arc::new(AtomicU32::new(0));
        let mut announcer = Announcer::default();
        assert!(!announcer.running());
        announcer.start(2, GAP, counting(&sent));
        assert!(announcer.running());
        tokio::time::sleep(GAP * 3).await;
        assert!(!announcer.running());
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn cancel_stops_the_rounds_still_to_come() {
        let sent = Arc::new(AtomicU32::new(0));
        let mut announcer = Announcer::default();
        announcer.start(5, GAP, counting(&sent));
        tokio::time::sleep(GAP * 3 / 2).await;
        assert_eq!(sent.load(Ordering::SeqCst), 2);
        announcer.cancel();
        tokio::time::sleep(GAP * 5).await;
        assert_eq!(sent.load(Ordering::SeqCst), 2, "announced after release");
    }

    #[tokio::test]
    async fn dropping_or_restarting_stops_earlier_rounds() {
        let sent = Arc::new(AtomicU32::new(0));
        let mut announcer = Announcer::default();
        announcer.start(5, GAP, counting(&sent));
        tokio::time::sleep(GAP / 2).await;
        // A new claim replaces the old rounds.
        let again = Arc::new(AtomicU32::new(0));
        announcer.start(2, GAP, counting(&again));
        tokio::time::sleep(GAP * 5).await;
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        assert_eq!(again.load(Ordering::SeqCst), 2);
        announcer.start(5, GAP, counting(&sent));
        tokio::time::sleep(GAP / 2).await;
        drop(announcer);
        tokio::time::sleep(GAP * 5).await;
        assert_eq!(sent.load(Ordering::SeqCst), 2, "announced after stop");
    }
}
