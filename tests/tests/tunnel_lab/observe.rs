//! The client's address in a VIP's family (what nginx must see), shared
//! by the scenarios; what they read from lbd's status comes from
//! `lb_tests::support`.

use std::net::IpAddr;

use lb_tests::lab::Lab;

/// The client's address in `vip`'s family: what nginx must see.
pub(crate) fn client_address(lab: &Lab, vip: IpAddr) -> IpAddr {
    match vip {
        IpAddr::V4(_) => IpAddr::V4(lab.client.ipv4),
        IpAddr::V6(_) => IpAddr::V6(lab.client.ipv6),
    }
}
