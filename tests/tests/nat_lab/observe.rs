//! What the tests read from the lab: lbd's status and counters, the LB
//! node's neighbours, stack and interfaces, and lbctl's answers. Shared
//! by the scenarios, for their checks and their failure messages.

use std::{collections::BTreeMap, net::IpAddr, process::Command};

use lb_tests::{
    lab::{Host, Lab, HTTP_PORT},
    support::{counter, ip, status_on},
};
use lb_userspace::api::schema::Status;

/// The lab's single lbd's status.
pub(crate) fn status(lab: &Lab) -> Status {
    status_on(lab, &lab.lb)
}

/// The status of VIP `vip` (port 80/tcp).
pub(crate) fn vip_status(status: &Status, vip: IpAddr) -> &lb_userspace::api::schema::VipStatus {
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

/// The counters that grew from `before` to `after` (for failure messages).
pub(crate) fn deltas<'a>(before: &Status, after: &'a Status) -> BTreeMap<&'a str, u64> {
    after
        .counters
        .keys()
        .map(|k| (k.as_str(), grown(before, after, k)))
        .filter(|(_, v)| *v != 0)
        .collect()
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

/// The counters that are not zero (for failure messages).
pub(crate) fn nonzero(status: &Status) -> BTreeMap<&str, u64> {
    status
        .counters
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

/// TCP resets the LB node's own stack sent (`Tcp: OutRsts`): a packet of a
/// translated flow that reached the stack holding the VIP is answered
/// with one.
pub(crate) fn stack_resets(node: &Host) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.netns, "cat", "/proc/net/snmp"])
        .output()
        .expect("read /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or(""), tcp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutRsts")
        .and_then(|(_, v)| v.parse().ok())
        .expect("Tcp OutRsts in /proc/net/snmp")
}

/// Runs lbctl on the lab's single lbd; panics unless it succeeds.
pub(crate) fn lbctl(lab: &Lab, args: &[&str]) -> String {
    let out = lab.lbctl(args).expect("run lbctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lbctl {args:?} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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
