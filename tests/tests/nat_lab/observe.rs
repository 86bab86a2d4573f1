//! What the NAT scenarios read from the lab beyond `lb_tests::support`:
//! lbd's status and its NAT flows, the LB node's neighbours, stack and
//! interfaces. Shared by the scenarios, for their checks and their failure
//! messages.

use std::{collections::BTreeMap, net::IpAddr, process::Command};

use lb_tests::{
    lab::{Host, Lab},
    support::{ip, status_on, vip_status},
};
use lb_userspace::api::schema::Status;

/// The lab's single lbd's status.
pub(crate) fn status(lab: &Lab) -> Status {
    status_on(lab, &lab.lb)
}

/// Whether TX checksum offload is off on `ifname` in `netns`: a veth that
/// leaves a partial checksum would hand the LB packets whose checksum
/// nobody completes after its incremental rewrite.
pub(crate) fn tx_checksum_off(netns: &str, ifname: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "ethtool", "-k", ifname])
        .output()
        .expect("ethtool -k");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "tx-checksumming: off")
}

/// TCP resets the LB node's own stack sent (`Tcp: OutRsts`): a packet of a
/// translated flow that reached the stack holding the VIP is answered
/// with one.
pub(crate) fn stack_resets(node: &Host) -> u64 {
    lb_tests::support::tcp_counter(&node.netns, "OutRsts")
}

/// Every backend's new-flow counter per VIP, by address.
pub(crate) fn new_flows(status: &Status, vip: IpAddr) -> BTreeMap<IpAddr, u64> {
    vip_status(status, vip)
        .backends
        .iter()
        .map(|b| (b.address, b.new_flows))
        .collect()
}

/// The translated flows of every NAT VIP in `status`.
pub(crate) fn nat_flows(status: &Status) -> u64 {
    status
        .vips
        .iter()
        .filter_map(|v| v.nat.as_ref())
        .map(|n| n.flows)
        .sum()
}

/// The LB's neighbour entry for `address` (its `ip neigh` line; empty when
/// there is none).
pub(crate) fn neighbour(lab: &Lab, address: IpAddr) -> String {
    ip(&["-n", &lab.lb.netns, "neigh", "show", &address.to_string()])
        .trim()
        .to_owned()
}
