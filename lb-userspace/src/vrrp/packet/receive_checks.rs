//! The receive checks of RFC 5798 §7.1 that need more than the payload
//! (the TTL, our VRID and addresses, the unicast peers), and why a
//! well-formed advert is ignored.

use std::{collections::BTreeSet, net::IpAddr};

use super::{Advertisement, VRRP_TTL};

/// Why a well-formed advert must be ignored (RFC 5798 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// TTL / hop limit not 255: it was routed, so not from our link (or,
    /// from a unicast peer, it crossed more routers than
    /// `unicast_peer_hops` allows, see [`validate_from`]).
    #[error("TTL/hop limit {0}, expected 255")]
    Ttl(u8),
    /// For another virtual router on the same link: not an error, but not
    /// ours; counted apart from the real errors.
    #[error("advertisement for VRID {0}, not ours")]
    OtherVrid(u8),
    /// Our VRID with another set of addresses: a misconfiguration, and
    /// keepalived drops such adverts too, so both sides agree.
    #[error("virtual address list differs from ours")]
    AddressMismatch,
}

impl Invalid {
    /// A stable snake_case name, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Invalid::Ttl(_) => "ttl",
            Invalid::OtherVrid(_) => "other_vrid",
            Invalid::AddressMismatch => "address_mismatch",
        }
    }
}

/// The receive checks of RFC 5798 §7.1 that [`Advertisement::decode`]
/// cannot make, for an instance speaking multicast: `ttl` is the IPv4 TTL
/// or IPv6 hop limit the packet arrived with, `expected_vrid` ours,
/// `local_addresses` our virtual addresses. The address lists are compared
/// as sets (order and repeats do not count).
pub fn validate(
    ad: &Advertisement,
    ttl: u8,
    expected_vrid: u8,
    local_addresses: &[IpAddr],
) -> Result<(), Invalid> {
    validate_from(ad, ttl, None, expected_vrid, local_addresses, &[], 0)
}

/// [`validate`] for an advert from `src` (None: unknown) to an instance
/// with `unicast_peers` (empty: multicast). Every advert must arrive with
/// RFC 5798's TTL 255, the proof it was not routed, as a claimed source
/// address proves nothing (anyone who can spoof a peer's address from
/// afar would be heard). Only an advert from a listed peer may have
/// crossed `unicast_peer_hops` routers (keepalived's `unicast_ttl`, peers
/// in different subnets): TTL 255 - hops and up; 0 hops keeps 255.
pub fn validate_from(
    ad: &Advertisement,
    ttl: u8,
    src: Option<IpAddr>,
    expected_vrid: u8,
    local_addresses: &[IpAddr],
    unicast_peers: &[IpAddr],
    unicast_peer_hops: u8,
) -> Result<(), Invalid> {
    let from_peer = src.is_some_and(|src| unicast_peers.contains(&src));
    let lowest = if from_peer {
        VRRP_TTL.saturating_sub(unicast_peer_hops)
    } else {
        VRRP_TTL
    };
    if ttl < lowest {
        return Err(Invalid::Ttl(ttl));
    }
    if ad.vrid != expected_vrid {
        return Err(Invalid::OtherVrid(ad.vrid));
    }
    let theirs: BTreeSet<&IpAddr> = ad.addresses.iter().collect();
    let ours: BTreeSet<&IpAddr> = local_addresses.iter().collect();
    if theirs != ours {
        return Err(Invalid::AddressMismatch);
    }
    Ok(())
}
