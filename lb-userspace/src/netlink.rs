//! What lbd asks the kernel's routing netlink about: the interface it
//! attaches to, and the MACs of backends given without one (the neighbour
//! table, after a probe makes the kernel resolve them).

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::TryStreamExt as _;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo},
    link::{LinkAttribute, LinkFlags, State as OperState},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
};
use rtnetlink::Handle;
use tracing::{debug, warn};

use crate::sync::log_limit::LogLimit;

mod egress;
mod gateways;

pub(crate) use egress::Egress;

/// Errors talking to routing netlink.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetlinkError {
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
    /// A request could not be built from what was given.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A request had no answer in time.
    #[error("{what}: no answer within {after:?}")]
    Timeout {
        /// What was asked.
        what: String,
        /// How long it waited.
        after: Duration,
    },
    /// The connection had closed and a new one could not be opened.
    #[error("{what}: reopening the routing netlink connection: {source}")]
    Reopen {
        /// What was asked.
        what: String,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// The connection closed under a request, asked again on a new one
    /// which closed too.
    #[error("{what}: the routing netlink connection closed during the request, twice")]
    Closed {
        /// What was asked.
        what: String,
    },
}

/// The interface lbd attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interface {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// Hardware address: the source of forwarded frames.
    pub mac: [u8; 6],
}

/// The longest one netlink request may wait for its answer: the kernel
/// answers in well under a millisecond (longer while something holds RTNL,
/// but not seconds), whereas a reply netlink-proto loses (a
/// message it cannot decode, or one dropped in a receive buffer overrun)
/// never ends the request, and the main loop and VRRP await them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Reopenings of the connection are warned at most this often (the others
/// are counted): a cause that lasts would reopen it at every request.
const REOPEN_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a connection's task runs: the connection, boxed so the opener of a
/// test can give another.
type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Opens a connection: the future that drives it and the handle requests
/// go through. A function so tests can give one that never answers.
type Opener = fn() -> std::io::Result<(ConnectionFuture, Handle)>;

/// A routing netlink connection, driven by a task on the tokio runtime it
/// was opened on. Every request is bounded by [`REQUEST_TIMEOUT`]; a
/// connection whose task ended (netlink-proto ends it on any receive error
/// but ENOBUFS) is reopened, on the same runtime, so lbd does not go blind
/// to its interface while it reports ready. Clones share the connection.
#[derive(Clone)]
pub(crate) struct Netlink {
    shared: Arc<Shared>,
}

/// What the clones of a [`Netlink`] share.
struct Shared {
    /// The runtime the first connection's task was spawned on: reopened
    /// connections are driven there too (the VRRP thread's for its own).
    runtime: tokio::runtime::Handle,
    /// How connections are opened.
    open: Opener,
    /// The longest a request waits for its answer.
    timeout: Duration,
    /// The connection requests go to now.
    current: Mutex<Connection>,
    /// Limits the warnings of reopenings.
    reopen_log: Mutex<LogLimit>,
}

/// One opened connection.
#[derive(Clone)]
struct Connection {
    /// Requests go through it.
    handle: Handle,
    /// Set when the connection's future ended or was dropped (the task
    /// aborted), before the streams of its pending requests end: a reply
    /// stream that ends then may have been cut short, not finished.
    ended: Arc<AtomicBool>,
    /// The task driving it.
    task: tokio::task::AbortHandle,
    /// Which opening this is: a connection seen ended by several requests
    /// is replaced once.
    generation: u64,
}

impl Connection {
    /// Opens a connection with `open` and spawns its task on `runtime`.
    fn open(
        runtime: &tokio::runtime::Handle,
        open: Opener,
        generation: u64,
    ) -> std::io::Result<Self> {
        let (connection, handle) = open()?;
        let ended = Arc::new(AtomicBool::new(false));
        let task = runtime
            .spawn(Watched {
                connection,
                ended: Arc::clone(&ended),
            })
            .abort_handle();
        Ok(Self {
            handle,
            ended,
            task,
            generation,
        })
    }

    /// Whether its task has ended: requests through it fail, or are cut
    /// short.
    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire) || self.task.is_finished()
    }
}

/// A connection's future that says when it has ended, before the
/// connection (with the senders of its pending requests' replies) is
/// dropped: see [`Connection::ended`].
struct Watched {
    /// The connection's own future.
    connection: ConnectionFuture,
    /// Set when it ends.
    ended: Arc<AtomicBool>,
}

impl Future for Watched {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let done = self.connection.as_mut().poll(cx);
        if done.is_ready() {
            self.ended.store(true, Ordering::Release);
        }
        done
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Before the fields: the reply streams end after this is seen.
        self.ended.store(true, Ordering::Release);
    }
}

/// The whole answer of a dump request `what` (`stream`), its error
/// naming the request: what every listing [`Netlink::request`] makes does
/// with its stream.
async fn dump<T>(
    stream: impl futures_util::Stream<Item = Result<T, rtnetlink::Error>>,
    what: &str,
) -> Result<Vec<T>, NetlinkError> {
    stream
        .try_collect::<Vec<_>>()
        .await
        .map_err(|source| NetlinkError::Request {
            what: what.to_owned(),
            source,
        })
}

/// rtnetlink's connection, as a [`ConnectionFuture`].
fn open_rtnetlink() -> std::io::Result<(ConnectionFuture, Handle)> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    Ok((Box::pin(connection), handle))
}

impl NetlinkError {
    /// Whether the connection was closed when the request was made (its
    /// task had ended).
    fn is_closed_connection(&self) -> bool {
        matches!(
            self,
            Self::Request {
                source: rtnetlink::Error::RequestFailed,
                ..
            }
        )
    }
}

impl Netlink {
    /// Opens the connection (must run inside a tokio runtime, which drives
    /// it and any it is replaced with).
    pub(crate) fn connect() -> Result<Self, NetlinkError> {
        Self::connect_with(open_rtnetlink, REQUEST_TIMEOUT)
    }

    /// [`Self::connect`], with connections from `open` and requests
    /// bounded by `timeout`.
    fn connect_with(open: Opener, timeout: Duration) -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            NetlinkError::Connect(std::io::Error::other(format!(
                "no tokio runtime to drive it: {e}"
            )))
        })?;
        let first = Connection::open(&runtime, open, 0).map_err(NetlinkError::Connect)?;
        Ok(Self {
            shared: Arc::new(Shared {
                runtime,
                open,
                timeout,
                current: Mutex::new(first),
                reopen_log: Mutex::new(LogLimit::new(REOPEN_LOG_INTERVAL)),
            }),
        })
    }

    /// The connection to make a request on: the current one, reopened
    /// first if its task has ended.
    fn connection(&self, what: &str) -> Result<Connection, NetlinkError> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if current.ended() {
            return self.reopen(&current, what, "its task had ended");
        }
        Ok(current)
    }

    /// Replaces `stale` (unless another request already has) with a new
    /// connection, warned about (rate-limited) with `cause`. A failure to
    /// open one is an error of the request `what`.
    fn reopen(
        &self,
        stale: &Connection,
        what: &str,
        cause: &str,
    ) -> Result<Connection, NetlinkError> {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.generation != stale.generation {
            return Ok(current.clone());
        }
        let generation = stale.generation.wrapping_add(1);
        let fresh = Connection::open(&self.shared.runtime, self.shared.open, generation).map_err(
            |source| NetlinkError::Reopen {
                what: what.to_owned(),
                source,
            },
        )?;
        current.task.abort();
        *current = fresh.clone();
        drop(current);
        let allowed = self
            .shared
            .reopen_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        if let Some(suppressed) = allowed {
            warn!(
                cause,
                request = what,
                suppressed,
                "reopened the routing netlink connection"
            );
        }
        Ok(fresh)
    }

    /// Makes the request `what` with `call`, given the connection's
    /// handle: bounded by the timeout (expiry is an error naming `what`),
    /// and, when the connection turns out closed (it failed the request,
    /// or ended while the answer came, which may then be cut short: a dump
    /// just stops), asked once more on a new connection within the same
    /// time.
    async fn request<T, F, Fut>(&self, what: &str, call: F) -> Result<T, NetlinkError>
    where
        F: Fn(Handle) -> Fut,
        Fut: Future<Output = Result<T, NetlinkError>>,
    {
        let deadline = tokio::time::Instant::now() + self.shared.timeout;
        let mut connection = self.connection(what)?;
        let mut asked_again = false;
        loop {
            let Ok(result) =
                tokio::time::timeout_at(deadline, call(connection.handle.clone())).await
            else {
                return Err(NetlinkError::Timeout {
                    what: what.to_owned(),
                    after: self.shared.timeout,
                });
            };
            let closed = connection.ended()
                || result
                    .as_ref()
                    .is_err_and(NetlinkError::is_closed_connection);
            if !closed {
                return result;
            }
            if asked_again {
                return Err(NetlinkError::Closed {
                    what: what.to_owned(),
                });
            }
            connection = self.reopen(&connection, what, "it closed under a request")?;
            asked_again = true;
        }
    }

    /// The task driving the connection in use, for tests to end it.
    #[cfg(test)]
    fn connection_task(&self) -> tokio::task::AbortHandle {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .task
            .clone()
    }

    /// A connection that never answers, with requests bounded by
    /// `timeout`: its task holds it but never polls it.
    #[cfg(test)]
    fn stalled(timeout: Duration) -> Result<Self, NetlinkError> {
        fn open_stalled() -> std::io::Result<(ConnectionFuture, Handle)> {
            let (connection, handle, _) = rtnetlink::new_connection()?;
            Ok((
                Box::pin(async move {
                    let _connection = connection;
                    std::future::pending::<()>().await;
                }),
                handle,
            ))
        }
        Self::connect_with(open_stalled, timeout)
    }

    /// Index and MAC of interface `name`.
    pub(crate) async fn interface(&self, name: &str) -> Result<Interface, NetlinkError> {
        let what = &format!("looking up interface {name}");
        let link = self
            .request(what, |handle| async move {
                let mut links = handle.link().get().match_name(name.to_owned()).execute();
                match links.try_next().await {
                    Ok(Some(link)) => Ok(link),
                    Ok(None) => Err(NetlinkError::NoSuchInterface(name.to_owned())),
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                        Err(NetlinkError::NoSuchInterface(name.to_owned()))
                    }
                    Err(source) => Err(NetlinkError::Request {
                        what: what.clone(),
                        source,
                    }),
                }
            })
            .await?;
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

/// An interface of the netns, as the NAT mode's redirect map needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// Index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Admin up with its carrier.
    pub up: bool,
    /// A loopback interface.
    pub loopback: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceAddress {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// A secondary address (not the interface's primary of its subnet).
    pub secondary: bool,
    /// Its duplicate address detection and lifetime state.
    pub state: AddressState,
}

/// What the kernel says of an address's duplicate address detection and
/// lifetime (IPv6's, and an IPv4 address given `preferred_lft 0`): an
/// address picked as a source for lbd's own packets (a tunnel's outer
/// header, a 4in6 check) must be one the kernel itself would send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AddressState {
    /// Duplicate address detection is still under way (not optimistic
    /// DAD, whose address may be used meanwhile): nothing may be sent
    /// from it yet.
    pub tentative: bool,
    /// Duplicate address detection failed: another host has it.
    pub dad_failed: bool,
    /// Its preferred lifetime ended (renumbering): valid, but new
    /// connections should use another.
    pub deprecated: bool,
}

impl AddressState {
    /// The state of the address in `message`: from IFA_FLAGS when the
    /// kernel sends it (the header's flags byte holds only the low eight
    /// bits), else from the header.
    fn of(message: &AddressMessage) -> Self {
        let flags = message
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Flags(flags) => Some(*flags),
                _ => None,
            })
            .unwrap_or_else(|| {
                AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()))
            });
        Self {
            tentative: flags.contains(AddressFlags::Tentative)
                && !flags.contains(AddressFlags::Optimistic),
            dad_failed: flags.contains(AddressFlags::Dadfailed),
            deprecated: flags.contains(AddressFlags::Deprecated),
        }
    }
}

impl Netlink {
    /// The addresses on interface `ifindex`.
    pub(crate) async fn addresses(
        &self,
        ifindex: u32,
    ) -> Result<Vec<InterfaceAddress>, NetlinkError> {
        Ok(self
            .address_messages(ifindex)
            .await?
            .iter()
            .filter_map(|m| {
                Some(InterfaceAddress {
                    address: message_address(m)?,
                    prefix_len: m.header.prefix_len,
                    secondary: m.header.flags.contains(AddressHeaderFlags::Secondary),
                    state: AddressState::of(m),
                })
            })
            .collect())
    }

    /// Every address of the node, on any interface (loopback included):
    /// those the kernel answers ARP and neighbour solicitations for.
    pub(crate) async fn node_addresses(&self) -> Result<BTreeSet<IpAddr>, NetlinkError> {
        let what = "listing the node's addresses";
        let messages = self
            .request(what, |handle| async move {
                dump(handle.address().get().execute(), what).await
            })
            .await?;
        Ok(messages.iter().filter_map(message_address).collect())
    }

    async fn address_messages(&self, ifindex: u32) -> Result<Vec<AddressMessage>, NetlinkError> {
        let what = &format!("listing the addresses of interface {ifindex}");
        let messages = self
            .request(what, |handle| async move {
                dump(
                    handle
                        .address()
                        .get()
                        .set_link_index_filter(ifindex)
                        .execute(),
                    what,
                )
                .await
            })
            .await?;
        Ok(messages
            .into_iter()
            .filter(|message| message.header.index == ifindex)
            .collect())
    }

    /// Adds `address/prefix_len` to interface `ifindex` (IPv6 without
    /// duplicate address detection, so it is usable at once). Already
    /// present is fine.
    pub(crate) async fn add_address(
        &self,
        ifindex: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let what = &format!("adding {address}/{prefix_len} to interface {ifindex}");
        self.request(what, |handle| async move {
            let mut request = handle.address().add(ifindex, address, prefix_len);
            if address.is_ipv6() {
                let attributes = &mut request.message_mut().attributes;
                attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                // Valid but deprecated (preferred lifetime 0): it still
                // takes traffic and answers neighbour solicitations, but
                // source address selection never picks it for the node's
                // own connections (health checks to backends that hold the
                // VIP on lo would otherwise answer themselves).
                let mut lifetimes = CacheInfo::default();
                lifetimes.ifa_preferred = 0;
                lifetimes.ifa_valid = u32::MAX;
                attributes.push(AddressAttribute::CacheInfo(lifetimes));
            }
            match request.execute().await {
                Ok(()) => Ok(()),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
                Err(source) => Err(NetlinkError::Request {
                    what: what.clone(),
                    source,
                }),
            }
        })
        .await
    }

    /// Removes `address` from interface `ifindex`; absent is fine. Whether
    /// it was there to remove.
    pub(crate) async fn remove_address(
        &self,
        ifindex: u32,
        address: IpAddr,
    ) -> Result<bool, NetlinkError> {
        let mut removed = false;
        for message in self.address_messages(ifindex).await? {
            if message_address(&message) != Some(address) {
                continue;
            }
            let what = &format!("removing {address} from interface {ifindex}");
            let message = &message;
            removed |= self
                .request(what, |handle| async move {
                    match handle.address().del(message.clone()).execute().await {
                        Ok(()) => Ok(true),
                        Err(rtnetlink::Error::NetlinkError(e))
                            if e.raw_code() == -libc::EADDRNOTAVAIL =>
                        {
                            Ok(false)
                        }
                        Err(source) => Err(NetlinkError::Request {
                            what: what.clone(),
                            source,
                        }),
                    }
                })
                .await?;
        }
        Ok(removed)
    }

    /// Interface `ifindex`'s link message; None when no interface has that
    /// index (the kernel answers a lookup by index with ENODEV then, not
    /// with an empty reply: the interface was deleted, re-created with
    /// another index, or moved to another network namespace).
    async fn link(
        &self,
        ifindex: u32,
    ) -> Result<Option<netlink_packet_route::link::LinkMessage>, NetlinkError> {
        let what = &format!("looking up interface {ifindex}");
        self.request(what, |handle| async move {
            let mut links = handle.link().get().match_index(ifindex).execute();
            match links.try_next().await {
                Ok(link) => Ok(link),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
                Err(source) => Err(NetlinkError::Request {
                    what: what.clone(),
                    source,
                }),
            }
        })
        .await
    }

    /// What lbd tracks of interface `ifindex` in one lookup: whether it
    /// can carry traffic, which XDP program it runs and its MAC. None: no
    /// interface has that index any more (see [`Self::link`]).
    pub(crate) async fn link_state(&self, ifindex: u32) -> Result<Option<LinkState>, NetlinkError> {
        Ok(self.link(ifindex).await?.map(|link| LinkState {
            up: carries_traffic(&link),
            xdp: xdp_of(&link),
            mac: link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            }),
        }))
    }

    /// The cls_bpf filters on chain 0 of interface `ifindex`'s ingress
    /// (none without a clsact or ingress qdisc), with their priorities:
    /// whether lbd's filter, attached without tcx, is still there, and
    /// runs first.
    pub(crate) async fn cls_bpf_ingress_programs(
        &self,
        ifindex: u32,
    ) -> Result<Vec<crate::dataplane::IngressFilter>, NetlinkError> {
        let what = &format!("listing the tc filters on the ingress of interface {ifindex}");
        let filters = self
            .request(what, |handle| async move {
                crate::ownership::cls_bpf::ingress_filters(&handle, ifindex)
                    .await
                    .map_err(|source| NetlinkError::Request {
                        what: what.clone(),
                        source,
                    })
            })
            .await?;
        Ok(filters
            .iter()
            .filter(|f| f.chain == 0)
            .filter_map(|f| {
                f.program.map(|program| crate::dataplane::IngressFilter {
                    program,
                    priority: f.priority(),
                })
            })
            .collect())
    }

    /// Every interface of the netns, with whether it is up (admin up
    /// with its carrier) and a loopback.
    pub(crate) async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let what = "listing the interfaces";
        let links = self
            .request(what, |handle| async move {
                dump(handle.link().get().execute(), what).await
            })
            .await?;
        let mut out = Vec::new();
        for link in links {
            let flags = link.header.flags;
            out.push(Link {
                index: link.header.index,
                name: link
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(name) => Some(name.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
                loopback: flags.contains(LinkFlags::Loopback),
            });
        }
        Ok(out)
    }

    /// The XDP program interface `ifindex` runs now, with its mode
    /// (None: no program, or no such interface). Tells a live pinned link
    /// from a stale one.
    pub(crate) async fn xdp_program(
        &self,
        ifindex: u32,
    ) -> Result<Option<(u32, crate::config::XdpMode)>, NetlinkError> {
        Ok(self.link(ifindex).await?.and_then(|link| xdp_of(&link)))
    }
}

/// The MAC to follow when the interface, known with `known`, is `seen`
/// with another one now (None: the same, or none read): the data plane's
/// "frame for this node" test and VRRP's announcements both use it.
pub(crate) fn mac_to_follow(known: [u8; 6], seen: Option<[u8; 6]>) -> Option<[u8; 6]> {
    seen.filter(|mac| *mac != known && *mac != [0; 6])
}

/// What lbd tracks of its interface: read together, once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkState {
    /// Administratively up with its carrier, and operationally up.
    pub up: bool,
    /// The XDP program it runs, with its mode (None: none).
    pub xdp: Option<(u32, crate::config::XdpMode)>,
    /// Its MAC now (None: it has none of six bytes): it may change under
    /// lbd (a bond's `fail_over_mac`, `ip link set address`).
    pub mac: Option<[u8; 6]>,
}

/// Whether a link can carry traffic: admin up with its carrier, and an
/// operational state of up (or unknown, as veth and tun report).
fn carries_traffic(link: &netlink_packet_route::link::LinkMessage) -> bool {
    let flags_up =
        link.header.flags.contains(LinkFlags::Up) && link.header.flags.contains(LinkFlags::LowerUp);
    let oper_up = link.attributes.iter().any(|a| {
        matches!(
            a,
            LinkAttribute::OperState(OperState::Up | OperState::Unknown)
        )
    });
    flags_up && oper_up
}

/// The XDP program a link message says runs at the driver or generic
/// hook, with its mode (`Auto` where the kernel names neither driver nor
/// generic mode). The kernel names each mode's program
/// (`IFLA_XDP_DRV_PROG_ID`, `IFLA_XDP_SKB_PROG_ID`, `IFLA_XDP_HW_PROG_ID`),
/// and `IFLA_XDP_PROG_ID` only while a single mode is attached: with a
/// driver program and an offloaded one (`XDP_ATTACHED_MULTI`) it omits
/// it, and reading that alone took lbd's driver program for detached.
/// A program offloaded to the NIC is never lbd's: beside a driver or
/// generic one it is not reported; alone it is, with `Auto`, as a program
/// that is not lbd's (the start refuses it as another tool's, and the
/// hook check finds lbd's program absent).
fn xdp_of(link: &netlink_packet_route::link::LinkMessage) -> Option<(u32, crate::config::XdpMode)> {
    use netlink_packet_route::link::{LinkXdp, XdpAttached};
    let mut driver = None;
    let mut generic = None;
    let mut single = None;
    let mut mode = crate::config::XdpMode::Auto;
    for attribute in &link.attributes {
        if let LinkAttribute::Xdp(xdp) = attribute {
            for item in xdp {
                match item {
                    LinkXdp::DrvProgId(id) if *id != 0 => driver = Some(*id),
                    LinkXdp::SkbProgId(id) if *id != 0 => generic = Some(*id),
                    LinkXdp::ProgId(id) if *id != 0 => single = Some(*id),
                    LinkXdp::Attached(XdpAttached::Driver) => mode = crate::config::XdpMode::Native,
                    LinkXdp::Attached(XdpAttached::SocketBuffer) => {
                        mode = crate::config::XdpMode::Generic
                    }
                    _ => {}
                }
            }
        }
    }
    driver
        .map(|id| (id, crate::config::XdpMode::Native))
        .or_else(|| generic.map(|id| (id, crate::config::XdpMode::Generic)))
        .or_else(|| single.map(|id| (id, mode)))
}

fn message_address(message: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS
    // otherwise (and for IPv6).
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Local(address) => Some(*address),
            _ => None,
        })
        .or_else(|| {
            message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(address) => Some(*address),
                _ => None,
            })
        })
}

/// A usable neighbour entry: its MAC and state.
type NeighbourEntry = ([u8; 6], NeighbourState);

/// Which of `wanted` to probe: those without a usable entry (the kernel
/// resolves them), and those whose entry is STALE (see [`needs_probe`]).
fn to_probe(wanted: &[IpAddr], known: &HashMap<IpAddr, NeighbourEntry>) -> Vec<IpAddr> {
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
fn hops_to_probe(
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

#[cfg(test)]
mod tests {
    use super::{hops_to_probe, mac_to_follow, to_probe, xdp_of, AddressState};
    use crate::config::XdpMode;
    use netlink_packet_route::{
        link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
        neighbour::NeighbourState,
    };

    /// A link message whose `IFLA_XDP` holds `xdp`.
    fn with_xdp(xdp: Vec<LinkXdp>) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::Xdp(xdp));
        link
    }

    /// With a driver program and an offloaded one (a SmartNIC), the
    /// kernel reports "multi" and each mode's program, but no
    /// `IFLA_XDP_PROG_ID`: the driver (or generic) program is the one lbd
    /// may run, and the offloaded one is not reported beside it. Before,
    /// only `IFLA_XDP_PROG_ID` was read, so lbd took its driver program
    /// for detached. Alone, an offloaded program is reported, in no mode
    /// lbd attaches in (another tool's).
    #[test]
    fn the_driver_program_is_read_beside_an_offloaded_one() {
        let multi = |at: LinkXdp| {
            with_xdp(vec![
                LinkXdp::Attached(XdpAttached::Multiple),
                at,
                LinkXdp::HwProgId(9),
            ])
        };
        assert_eq!(
            xdp_of(&multi(LinkXdp::DrvProgId(7))),
            Some((7, XdpMode::Native))
        );
        assert_eq!(
            xdp_of(&multi(LinkXdp::SkbProgId(5))),
            Some((5, XdpMode::Generic))
        );
        let offloaded = with_xdp(vec![
            LinkXdp::Attached(XdpAttached::Hardware),
            LinkXdp::HwProgId(9),
            LinkXdp::ProgId(9),
        ]);
        assert_eq!(xdp_of(&offloaded), Some((9, XdpMode::Auto)));
    }

    /// One mode attached: the kernel reports the program twice (its
    /// mode's id and `IFLA_XDP_PROG_ID`), older kernels the latter only;
    /// nothing attached reads as none.
    #[test]
    fn a_single_xdp_program_is_read_with_its_mode() {
        let driver = with_xdp(vec![
            LinkXdp::Attached(XdpAttached::Driver),
            LinkXdp::DrvProgId(7),
            LinkXdp::ProgId(7),
        ]);
        assert_eq!(xdp_of(&driver), Some((7, XdpMode::Native)));
        let generic_old_kernel = with_xdp(vec![
            LinkXdp::Attached(XdpAttached::SocketBuffer),
            LinkXdp::ProgId(5),
        ]);
        assert_eq!(xdp_of(&generic_old_kernel), Some((5, XdpMode::Generic)));
        let none = with_xdp(vec![LinkXdp::Attached(XdpAttached::None)]);
        assert_eq!(xdp_of(&none), None);
        assert_eq!(xdp_of(&LinkMessage::default()), None);
    }

    /// Missing and STALE entries are probed (a STALE one is still used
    /// meanwhile); fresh ones are not. Before, only missing ones were, so
    /// an unchecked backend rebuilt with a new MAC kept its old one.
    /// A next hop is judged by its entry on its own interface: missing
    /// and STALE ones are probed, so a router replaced at the same address
    /// (new MAC, no announcement) is learnt; fresh ones are not; an entry
    /// for the same (link-local) address on another interface is another
    /// router's. Before, a gateway's STALE entry was never probed, and its
    /// old MAC was sent to for as long as the entry lived.
    #[test]
    fn next_hops_missing_or_stale_on_their_interface_are_probed() {
        let a = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let known = [
            (
                (2, a("198.18.0.1")),
                ([2, 0, 0, 0, 0, 1], NeighbourState::Reachable),
            ),
            (
                (2, a("198.18.0.254")),
                ([2, 0, 0, 0, 0, 2], NeighbourState::Stale),
            ),
            (
                (2, a("fe80::1")),
                ([2, 0, 0, 0, 0, 3], NeighbourState::Reachable),
            ),
            (
                (3, a("198.19.2.1")),
                ([2, 0, 0, 0, 0, 4], NeighbourState::Probe),
            ),
        ]
        .into_iter()
        .collect();
        let hops = [
            (2, a("198.18.0.1")),
            (2, a("198.18.0.254")),
            (2, a("fe80::1")),
            (3, a("fe80::1")),
            (3, a("198.19.2.1")),
            (3, a("198.19.2.254")),
        ];
        assert_eq!(
            hops_to_probe(&hops, &known),
            vec![
                (2, a("198.18.0.254")),
                (3, a("fe80::1")),
                (3, a("198.19.2.254"))
            ]
        );
    }

    #[test]
    fn missing_and_stale_neighbours_are_probed() {
        let a = |last: u8| std::net::IpAddr::from([198, 18, 0, last]);
        let known = [
            (a(1), ([2, 0, 0, 0, 0, 1], NeighbourState::Reachable)),
            (a(2), ([2, 0, 0, 0, 0, 2], NeighbourState::Stale)),
            (a(3), ([2, 0, 0, 0, 0, 3], NeighbourState::Delay)),
            (a(4), ([2, 0, 0, 0, 0, 4], NeighbourState::Permanent)),
        ]
        .into_iter()
        .collect();
        let wanted = [a(1), a(2), a(3), a(4), a(5)];
        assert_eq!(to_probe(&wanted, &known), vec![a(2), a(5)]);
    }
    use netlink_packet_route::address::{
        AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
    };

    /// The DAD and lifetime state is read from IFA_FLAGS, else from the
    /// header's byte; an optimistic address is usable while DAD runs.
    #[test]
    fn an_address_state_is_read_from_its_flags() {
        let mut message = AddressMessage::default();
        assert_eq!(AddressState::of(&message), AddressState::default());
        message.header.flags = AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed;
        let failed = AddressState {
            tentative: true,
            dad_failed: true,
            deprecated: false,
        };
        assert_eq!(AddressState::of(&message), failed);
        message.attributes = vec![AddressAttribute::Flags(
            AddressFlags::Deprecated | AddressFlags::Permanent,
        )];
        let deprecated = AddressState {
            deprecated: true,
            ..AddressState::default()
        };
        assert_eq!(AddressState::of(&message), deprecated, "IFA_FLAGS wins");
        message.attributes = vec![AddressAttribute::Flags(
            AddressFlags::Tentative | AddressFlags::Optimistic,
        )];
        assert_eq!(AddressState::of(&message), AddressState::default());
    }

    /// Whether `ip neigh` lists a neighbour entry (in any state) for
    /// `address` on `device`.
    fn neighbour_listed(address: &str, device: &str) -> bool {
        let out = std::process::Command::new("ip")
            .args(["neigh", "show", address, "dev", device, "nud", "all"])
            .output()
            .expect("running ip");
        assert!(out.status.success(), "ip neigh: {out:?}");
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }

    /// In a namespace of its own: a probe of a next hop the data plane's
    /// FIB lookup found on `n0` (its table, not the main one) while the
    /// node's main table sends that address out of `n1` leaves by `n0`,
    /// where the data plane looks for the neighbour entry; before, it
    /// followed the main table and the entry was made on `n1` only. (A
    /// VRF would show the same; a second interface whose subnet holds the
    /// address is the plainest main table that disagrees.)
    #[test]
    fn a_probe_leaves_by_the_interface_it_names_not_the_main_tables() {
        if !crate::test_netns::is_root() {
            eprintln!("skipped: the interfaces need root (a netns of their own)");
            return;
        }
        crate::test_netns::in_own_netns(|| {
            use crate::test_netns::ip;
            ip(&["link", "add", "n0", "type", "veth", "peer", "name", "p0"]);
            ip(&["link", "add", "n1", "type", "veth", "peer", "name", "p1"]);
            for link in ["n0", "p0", "n1", "p1"] {
                ip(&["link", "set", link, "up"]);
            }
            ip(&["addr", "add", "198.18.4.2/24", "dev", "n0"]);
            // The main table's way to 198.18.5.1: out of n1.
            ip(&["addr", "add", "198.18.5.2/24", "dev", "n1"]);
            // (Not from /sys: it shows the namespace it was mounted in.)
            // SAFETY: a NUL-terminated name.
            let n0 = unsafe { libc::if_nametoindex(c"n0".as_ptr()) };
            assert_ne!(n0, 0, "n0's index");
            super::probe_on("198.18.5.1".parse().unwrap(), n0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !neighbour_listed("198.18.5.1", "n0") && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert!(
                neighbour_listed("198.18.5.1", "n0"),
                "no neighbour entry on n0"
            );
            assert!(!neighbour_listed("198.18.5.1", "n1"), "probed out of n1");
        });
    }

    /// Runs `test` on a current-thread runtime in a network namespace of
    /// its own (with `lo` up), and gives what it logged; None (skipped,
    /// saying so) without root.
    fn in_own_netns_runtime(
        test: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<String> {
        if !crate::test_netns::is_root() {
            eprintln!("skipped: a network namespace of its own needs root");
            return None;
        }
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let logged = std::sync::Arc::clone(&logs);
        crate::test_netns::in_own_netns(move || {
            crate::test_netns::ip(&["link", "set", "lo", "up"]);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            *logged.lock().unwrap() = crate::test_logs::logs_of(|| runtime.block_on(test));
        });
        let logs = logs.lock().unwrap().clone();
        Some(logs)
    }

    /// The connection's task ending (netlink-proto ends it on a receive
    /// error) does not leave lbd blind: the next request reopens the
    /// connection and is answered; before, it and every later one failed.
    #[test]
    fn a_request_after_the_connection_ended_is_answered_on_a_new_one() {
        let logs = in_own_netns_runtime(async {
            let netlink = super::Netlink::connect().unwrap();
            assert!(netlink.link_state(1).await.unwrap().is_some(), "lo");
            let task = netlink.connection_task();
            task.abort();
            // Let the runtime drop the aborted task.
            while !task.is_finished() {
                tokio::task::yield_now().await;
            }
            let state = netlink.link_state(1).await;
            assert!(matches!(state, Ok(Some(_))), "{state:?}");
            assert!(
                !netlink.connection_task().is_finished(),
                "a new task drives it"
            );
            // A clone shares the new connection.
            let state = netlink.clone().link_state(1).await;
            assert!(matches!(state, Ok(Some(_))), "{state:?}");
        });
        if let Some(logs) = logs {
            let reopened: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("reopened the routing netlink connection"))
                .collect();
            assert_eq!(reopened.len(), 1, "{logs}");
            assert!(reopened[0].contains("its task had ended"), "{logs}");
        }
    }

    /// A request cut off by the connection ending while it waits (the
    /// task aborted just after the request went out) is asked again on a
    /// new connection, not taken as an empty answer (no interface 1).
    #[test]
    fn a_request_the_connection_ends_under_is_asked_again() {
        let logs = in_own_netns_runtime(async {
            let netlink = super::Netlink::connect().unwrap();
            let task = netlink.connection_task();
            let request = netlink.link_state(1);
            task.abort();
            let state = request.await;
            assert!(matches!(state, Ok(Some(_))), "{state:?}");
        });
        if let Some(logs) = logs {
            assert!(
                logs.contains("it closed under a request"),
                "reopened after the answer was cut short: {logs}"
            );
        }
    }

    /// A reply that never comes (lost by netlink-proto, say) ends the
    /// request with an error naming it and the time waited, not a wait
    /// that never ends.
    #[test]
    fn a_request_never_answered_times_out() {
        let _ = in_own_netns_runtime(async {
            let timeout = std::time::Duration::from_millis(200);
            let netlink = super::Netlink::stalled(timeout).unwrap();
            let started = std::time::Instant::now();
            let outcome =
                tokio::time::timeout(std::time::Duration::from_secs(5), netlink.link_state(1))
                    .await
                    .expect("the request waited past its timeout");
            let error = outcome.unwrap_err().to_string();
            assert!(error.contains("looking up interface 1"), "{error}");
            assert!(error.contains("200ms"), "{error}");
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        });
    }

    #[test]
    fn a_changed_mac_is_followed_and_an_unchanged_or_missing_one_is_not() {
        let known = [2, 0, 0, 0, 0, 1];
        let changed = [2, 0, 0, 0, 0, 2];
        assert_eq!(mac_to_follow(known, Some(changed)), Some(changed));
        assert_eq!(mac_to_follow(known, Some(known)), None);
        assert_eq!(mac_to_follow(known, None), None);
        // An all-zero MAC would make the data plane take every frame.
        assert_eq!(mac_to_follow(known, Some([0; 6])), None);
    }
}
