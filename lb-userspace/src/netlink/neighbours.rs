//! The neighbour table: MACs of backends and next hops, and the probes
//! (one empty datagram to the discard port) that make the kernel resolve
//! or confirm them.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use tracing::debug;

use super::{connection::dump, Netlink, NetlinkError};

impl Netlink {
    /// Usable neighbour entries on interface `ifindex`: address -> MAC.
    #[cfg(test)]
    pub(crate) async fn neighbours(
        &self,
        ifindex: u32,
    ) -> Result<HashMap<IpAddr, [u8; 6]>, NetlinkError> {
        Ok(self
            .neighbour_entries(ifindex)
            .await?
            .into_iter()
            .map(|(address, (mac, _))| (address, mac))
            .collect())
    }

    /// Usable neighbour entries on interface `ifindex`: address -> MAC
    /// and the entry's state (see [`to_probe`]).
    async fn neighbour_entries(
        &self,
        ifindex: u32,
    ) -> Result<HashMap<IpAddr, NeighbourEntry>, NetlinkError> {
        Ok(self
            .neighbour_table()
            .await?
            .into_iter()
            .filter(|((index, _), _)| *index == ifindex)
            .map(|((_, address), entry)| (address, entry))
            .collect())
    }

    /// Usable neighbour entries of every interface: (interface, address)
    /// -> MAC and the entry's state.
    async fn neighbour_table(
        &self,
    ) -> Result<HashMap<(u32, IpAddr), NeighbourEntry>, NetlinkError> {
        let mut out = HashMap::new();
        let what = "dumping the neighbour table";
        let entries = self
            .request(what, |handle| async move {
                dump(handle.neighbours().get().execute(), what).await
            })
            .await?;
        for entry in entries {
            if !usable(entry.header.state) {
                continue;
            }
            let mut address = None;
            let mut mac = None;
            for attribute in &entry.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        address = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        address = Some(IpAddr::V6(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(bytes) => {
                        mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                    }
                    _ => {}
                }
            }
            if let (Some(address), Some(mac)) = (address, mac) {
                out.insert((entry.header.ifindex, address), (mac, entry.header.state));
            }
        }
        Ok(out)
    }

    /// Which of the next hops `hops` (interface, gateway) to probe (see
    /// [`hops_to_probe`]): those without a usable neighbour entry on their
    /// interface, and those whose entry is STALE.
    pub(crate) async fn next_hops_to_probe(
        &self,
        hops: &[(u32, IpAddr)],
    ) -> Result<Vec<(u32, IpAddr)>, NetlinkError> {
        Ok(hops_to_probe(hops, &self.neighbour_table().await?))
    }

    /// MACs of `addresses` on interface `ifindex`. Addresses missing from
    /// the neighbour table are probed (one empty UDP datagram to the discard
    /// port makes the kernel resolve them), also with a zero `timeout` (a
    /// periodic refresh finds them next time), and polled for until
    /// `timeout`. Addresses still unresolved are absent from the result.
    pub(crate) async fn resolve(
        &self,
        ifindex: u32,
        addresses: &[IpAddr],
        timeout: Duration,
    ) -> Result<HashMap<IpAddr, [u8; 6]>, NetlinkError> {
        let deadline = Instant::now() + timeout;
        let mut probed = false;
        loop {
            let known = self.neighbour_entries(ifindex).await?;
            let missing: Vec<IpAddr> = addresses
                .iter()
                .filter(|a| !known.contains_key(a))
                .copied()
                .collect();
            // Probed even with no time to wait: the next look finds what
            // this one asked the kernel to resolve.
            if !probed {
                for address in to_probe(addresses, &known) {
                    probe(address);
                }
                probed = true;
            }
            if missing.is_empty() || Instant::now() >= deadline {
                return Ok(addresses
                    .iter()
                    .filter_map(|a| known.get(a).map(|(mac, _)| (*a, *mac)))
                    .collect());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A usable neighbour entry: its MAC and state.
type NeighbourEntry = ([u8; 6], NeighbourState);

/// Which of `wanted` to probe: those without a usable entry (the kernel
/// resolves them), and those whose entry is STALE (see [`needs_probe`]).
pub(super) fn to_probe(wanted: &[IpAddr], known: &HashMap<IpAddr, NeighbourEntry>) -> Vec<IpAddr> {
    wanted
        .iter()
        .filter(|a| needs_probe(known.get(a)))
        .copied()
        .collect()
}

/// [`to_probe`] for next hops (interface, gateway), each judged by its
/// entry on its own interface (a link-local gateway's address is another
/// router's on another interface). The data plane sends to a next hop's
/// MAC as its FIB lookup finds it, which takes a STALE entry as it is:
/// without a probe, a router replaced at the same address (a new MAC, no
/// gratuitous ARP or unsolicited NA) is sent to at its old MAC for as
/// long as the entry lives, which below `gc_thresh1` is for ever, and
/// every routed flow through it is black-holed.
pub(super) fn hops_to_probe(
    hops: &[(u32, IpAddr)],
    known: &HashMap<(u32, IpAddr), NeighbourEntry>,
) -> Vec<(u32, IpAddr)> {
    hops.iter()
        .filter(|hop| needs_probe(known.get(hop)))
        .copied()
        .collect()
}

/// Whether an address whose usable entry is `entry` (None: none) is
/// probed: with none (the kernel resolves it), and with a STALE one. The
/// data plane sends to a backend's or next hop's MAC without the
/// kernel's neighbour code, so nothing else ever confirms such an entry:
/// a host rebuilt at the same address with a new MAC (and no gratuitous
/// ARP) would keep its old one for as long as the entry lives, its share
/// of flows black-holed. A probe takes the entry through DELAY and PROBE,
/// which confirms the MAC or learns the new one. An entry only the data
/// plane uses is STALE most of the time, so that is one ARP/ND exchange
/// per reachable time (about 30 s) per such address.
fn needs_probe(entry: Option<&NeighbourEntry>) -> bool {
    entry.is_none_or(|(_, state)| *state == NeighbourState::Stale)
}

/// States whose link-layer address can be used to send to.
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

/// Makes the kernel resolve `address` by sending it one empty datagram to
/// the discard port. Failure only means the address stays unresolved.
pub(crate) fn probe(address: IpAddr) {
    probe_on(address, 0);
}

/// `probe`, sent out of the interface `ifindex` (0: wherever the node's
/// own routing says), the scope of an IPv6 link-local address too (a next
/// hop learnt from router advertisements, which cannot be sent to without
/// one). The socket is bound to the interface: the data plane's FIB
/// lookup named it (the ingress device's table), and an unbound probe
/// follows the node's own routing (main table, default VRF, policy
/// rules), which may send it out elsewhere, so the neighbour entry the
/// data plane waits for would never be made. A bound socket whose tables
/// have no route to `address` is sent on-link by the kernel. When the
/// bind fails the probe goes unbound (logged at debug).
pub(crate) fn probe_on(address: IpAddr, ifindex: u32) {
    let (bind, to): (SocketAddr, SocketAddr) = match address {
        IpAddr::V4(a) => ((Ipv4Addr::UNSPECIFIED, 0).into(), (a, 9).into()),
        IpAddr::V6(a) => {
            let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            let scope = if link_local { ifindex } else { 0 };
            (
                (Ipv6Addr::UNSPECIFIED, 0).into(),
                std::net::SocketAddrV6::new(a, 9, 0, scope).into(),
            )
        }
    };
    let result = UdpSocket::bind(bind).and_then(|socket| {
        if ifindex != 0 {
            if let Err(error) = bind_to_interface(&socket, ifindex) {
                debug!(%address, ifindex, %error, "binding the neighbour probe to its interface failed; sent unbound");
            }
        }
        socket.send_to(&[], to)
    });
    if let Err(error) = result {
        debug!(%address, ifindex, %error, "neighbour probe not sent");
    }
}

/// Binds `socket` to the interface `ifindex` (`SO_BINDTOIFINDEX`, Linux
/// 5.0; `SO_BINDTODEVICE` by the interface's name before that), so what it
/// sends leaves by that interface whatever the node's routing says.
fn bind_to_interface(socket: &UdpSocket, ifindex: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = socket.as_raw_fd();
    let index = libc::c_int::try_from(ifindex)
        .map_err(|_| std::io::Error::other(format!("interface index {ifindex} out of range")))?;
    let option = |name: libc::c_int, value: *const libc::c_void, len: usize| {
        let len = libc::socklen_t::try_from(len).unwrap_or(libc::socklen_t::MAX);
        // SAFETY: `value` points at `len` readable bytes for the call's
        // duration; `fd` is the socket's, open while it is borrowed.
        let done = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, name, value, len) };
        if done == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let by_index = option(
        libc::SO_BINDTOIFINDEX,
        std::ptr::from_ref(&index).cast(),
        size_of::<libc::c_int>(),
    );
    match by_index {
        Err(error) if error.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
            // SAFETY: `name` holds IF_NAMESIZE bytes, as if_indextoname
            // needs.
            if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            let len = name.iter().position(|c| *c == 0).unwrap_or(name.len());
            option(libc::SO_BINDTODEVICE, name.as_ptr().cast(), len)
        }
        other => other,
    }
}
