//! What lbd asks the kernel's routing netlink about: the interface it
//! attaches to, and the MACs of backends given without one (the neighbour
//! table, after a probe makes the kernel resolve them).

use std::time::Duration;

mod addresses;
mod connection;
mod egress;
mod gateways;
mod links;
mod neighbours;

#[cfg(test)]
pub(crate) use addresses::AddressState;
pub(crate) use addresses::InterfaceAddress;
pub(crate) use connection::Netlink;
pub(crate) use egress::Egress;
pub(crate) use links::{mac_to_follow, Link, LinkState};
pub(crate) use neighbours::probe_on;

use connection::dump;
use links::carries_traffic;

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

#[cfg(test)]
mod tests;
