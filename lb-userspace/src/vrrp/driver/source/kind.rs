//! The kinds of advert source (IPv4 primary, IPv6 link-local or global,
//! a fixed `unicast_src_ip`) and which one an instance uses.

use std::net::IpAddr;

use crate::{config::VrrpConfig, vrrp::Family};

/// Whether `address` is an IPv6 link-local one (fe80::/10).
pub(super) fn is_link_local(address: IpAddr) -> bool {
    matches!(address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Which of the interface's addresses an instance's adverts go from.
/// IPv4: the primary address. IPv6 to the group: the link-local address,
/// as RFC 5798 §5.1.2.1 wants. IPv6 to unicast peers (one not
/// link-local at least): a global address, since routers never forward a
/// link-local source (`unicast_peer_hops` > 0 could not work) and a
/// keepalived peer takes adverts only from an address in its
/// `unicast_peer` list, which names the node's global address
/// (keepalived's `unicast_src_ip`); with link-local peers only, the peers
/// are on the link and the link-local address stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// IPv4: a primary address.
    V4Primary,
    /// IPv6 to the group (or link-local peers): a link-local address.
    V6LinkLocal,
    /// IPv6 to unicast peers: a global (not link-local) address.
    V6Global,
    /// To unicast peers from `unicast_src_ip`: this address and no other
    /// (the one the peer's `unicast_peer` list names).
    Fixed(IpAddr),
}

impl SourceKind {
    /// The kind for an instance of `family` sending to `unicast_peers`
    /// (empty: the group).
    pub(crate) fn of(family: Family, unicast_peers: &[IpAddr]) -> Self {
        match family {
            Family::V4 => Self::V4Primary,
            Family::V6 if unicast_peers.iter().any(|peer| !is_link_local(*peer)) => Self::V6Global,
            Family::V6 => Self::V6LinkLocal,
        }
    }

    /// The kind for `config`, an instance of `family`: its
    /// `unicast_src_ip` if it sets one (config check allows it with
    /// unicast peers only), else as [`Self::of`] says.
    pub(crate) fn of_instance(family: Family, config: &VrrpConfig) -> Self {
        match config.unicast_src_ip {
            Some(source) if !config.unicast_peers.is_empty() => Self::Fixed(source),
            _ => Self::of(family, &config.unicast_peers),
        }
    }

    /// The address family of its addresses.
    pub(super) fn family(self) -> Family {
        match self {
            Self::V4Primary => Family::V4,
            Self::V6LinkLocal | Self::V6Global => Family::V6,
            Self::Fixed(source) => Family::of(&source),
        }
    }

    /// What the address is, for the log.
    pub(super) fn what(self) -> &'static str {
        match self {
            Self::V4Primary => "primary IPv4 address",
            Self::V6LinkLocal => "link-local IPv6 address",
            Self::V6Global => "global IPv6 address",
            Self::Fixed(_) => "unicast_src_ip address",
        }
    }
}
