//! The address family of a virtual router, apart because it decides the
//! size of each address, the checksum's pseudo-header and the multicast
//! group alike.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{VRRP_MCAST_V4, VRRP_MCAST_V6};

/// The address family of a virtual router: it decides the size of each
/// address in the advert, the checksum's pseudo-header and the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4: 4-byte addresses, 224.0.0.18.
    V4,
    /// IPv6: 16-byte addresses, ff02::12.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per address in the advert's address list.
    pub(crate) const fn address_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The multicast group adverts of this family are sent to.
    pub const fn multicast_group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(VRRP_MCAST_V4),
            Family::V6 => IpAddr::V6(VRRP_MCAST_V6),
        }
    }
}
