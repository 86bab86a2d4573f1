//! What lbd asks the kernel's routing netlink about: the interface it
//! attaches to, and the MACs of backends given without one (the neighbour
//! table, after a probe makes the kernel resolve them).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use futures_util::TryStreamExt as _;
use netlink_packet_route::{
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
};
use rtnetlink::Handle;
use tracing::debug;

/// Errors talking to routing netlink.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened.
    #[error("opening a routing netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// A request failed.
    #[error("{what}: {source}")]
    Request {
        /// What was asked.
        what: String,
        /// Why it failed.
        #[source]
        source: rtnetlink::Error,
    },
    /// The interface does not exist.
    #[error("interface {0} not found")]
    NoSuchInterface(String),
    /// The interface has no Ethernet address.
    #[error("interface {0} has no 6-byte hardware address")]
    NoMac(String),
}

/// The interface lbd attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// Hardware address: the source of forwarded frames.
    pub mac: [u8; 6],
}

/// A routing netlink connection, driven by a task on the tokio runtime.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection (must run inside a tokio runtime).
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Index and MAC of interface `name`.
    pub async fn interface(&self, name: &str) -> Result<Interface, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            Ok(None) => return Err(NetlinkError::NoSuchInterface(name.to_owned())),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                return Err(NetlinkError::NoSuchInterface(name.to_owned()))
            }
            Err(source) => {
                return Err(NetlinkError::Request {
                    what: format!("looking up interface {name}"),
                    source,
                })
            }
        };
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NoMac(name.to_owned()))?;
        Ok(Interface {
            name: name.to_owned(),
            index: link.header.index,
            mac,
        })
    }

    /// Usable neighbour entries on interface `ifindex`: address -> MAC.
    pub async fn neighbours(&self, ifindex: u32) -> Result<HashMap<IpAddr, [u8; 6]>, NetlinkError> {
        let mut out = HashMap::new();
        let mut entries = self.handle.neighbours().get().execute();
        while let Some(entry) =
            entries
                .try_next()
                .await
                .map_err(|source| NetlinkError::Request {
                    what: "dumping the neighbour table".to_owned(),
                    source,
                })?
        {
            if entry.header.ifindex != ifindex || !usable(entry.header.state) {
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
                out.insert(address, mac);
            }
        }
        Ok(out)
    }

    /// MACs of `addresses` on interface `ifindex`. Addresses missing from
    /// the neighbour table are probed (one empty UDP datagram to the discard
    /// port makes the kernel resolve them) and polled for until `timeout`.
    /// Addresses still unresolved are absent from the result.
    pub async fn resolve(
        &self,
        ifindex: u32,
        addresses: &[IpAddr],
        timeout: Duration,
    ) -> Result<HashMap<IpAddr, [u8; 6]>, NetlinkError> {
        let deadline = Instant::now() + timeout;
        let mut probed = false;
        loop {
            let known = self.neighbours(ifindex).await?;
            let missing: Vec<IpAddr> = addresses
                .iter()
                .filter(|a| !known.contains_key(a))
                .copied()
                .collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return Ok(addresses
                    .iter()
                    .filter_map(|a| known.get(a).map(|mac| (*a, *mac)))
                    .collect());
            }
            if !probed {
                for address in &missing {
                    probe(*address);
                }
                probed = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
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
fn probe(address: IpAddr) {
    let bind: SocketAddr = match address {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let result = UdpSocket::bind(bind).and_then(|s| s.send_to(&[], (address, 9)));
    if let Err(error) = result {
        debug!(%address, %error, "neighbour probe not sent");
    }
}
