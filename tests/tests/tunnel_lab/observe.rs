//! What the tests read from lbd's status: a VIP's status, counters grown
//! or not zero (for failure messages), and the client's address in a
//! VIP's family (what nginx must see). Shared by the scenarios.

use std::{collections::BTreeMap, net::IpAddr};

use lb_tests::{
    lab::{Lab, HTTP_PORT},
    support::counter,
};
use lb_userspace::api::schema::{Status, VipStatus};

/// The status of `vip` (port 80/tcp).
pub(crate) fn vip_status(status: &Status, vip: IpAddr) -> &VipStatus {
    let prefix = match vip {
        IpAddr::V4(a) => format!("{a}:{HTTP_PORT}/"),
        IpAddr::V6(a) => format!("[{a}]:{HTTP_PORT}/"),
    };
    status
        .vips
        .iter()
        .find(|v| v.vip.starts_with(&prefix))
        .unwrap_or_else(|| panic!("VIP {vip} not in status: {:?}", status.vips))
}

/// Counter `name` grown from `before` to `after`.
pub(crate) fn grown(before: &Status, after: &Status, name: &str) -> u64 {
    counter(after, name).saturating_sub(counter(before, name))
}

/// The counters that are not zero (for failure messages).
pub(crate) fn nonzero(status: &Status) -> BTreeMap<&str, u64> {
    status
        .counters
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

/// The client's address in `vip`'s family: what nginx must see.
pub(crate) fn client_address(lab: &Lab, vip: IpAddr) -> IpAddr {
    match vip {
        IpAddr::V4(_) => IpAddr::V4(lab.client.ipv4),
        IpAddr::V6(_) => IpAddr::V6(lab.client.ipv6),
    }
}
