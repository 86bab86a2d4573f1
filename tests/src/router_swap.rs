//! Replacing a router of a lab under the LB: the same addresses, a new
//! MAC, and no announcement of it, as when a failed router is swapped for
//! a new box (or a router pair fails over without a virtual MAC or
//! gratuitous ARP). The LB's kernel then keeps the old MAC in its
//! neighbour entry until something makes it ask again; the data plane,
//! which sends by that entry, must not depend on the router's own traffic
//! to learn the new one.

use std::net::IpAddr;

use crate::{
    lab::{Lab, Leg, Router},
    support::ip,
};

/// `sysctl -w key=value` in `netns`.
fn sysctl(netns: &str, key: &str, value: &str) {
    ip(&[
        "netns",
        "exec",
        netns,
        "sysctl",
        "-q",
        "-w",
        &format!("{key}={value}"),
    ]);
}

/// Short neighbour timers on `ifname` in `netns` (both families): an
/// entry turns STALE within 1.5 s of its last confirmation, is probed 1 s
/// after a packet meets it STALE, each probe waiting 300 ms. The sequence
/// is the defaults' (30 s, 5 s, 1 s); a test takes seconds, not minutes.
pub fn short_neighbour_timers(netns: &str, ifname: &str) {
    for family in ["ipv4", "ipv6"] {
        let base = format!("net.{family}.neigh.{ifname}");
        sysctl(netns, &format!("{base}.base_reachable_time_ms"), "1000");
        sysctl(netns, &format!("{base}.delay_first_probe_time"), "1");
        sysctl(netns, &format!("{base}.retrans_time_ms"), "300");
    }
}

/// The router between the LB's network and the backends' and its leg on
/// the LB's network: the LB's next hop toward the backends.
pub fn next_hop_router(lab: &Lab) -> (Router, Leg) {
    let (lan, backends) = (
        lab.topology.lbs[0].network,
        lab.topology.backends[0].network,
    );
    lab.routers
        .iter()
        .find_map(|r| {
            let leg = r.leg_on(lan)?.clone();
            r.leg_on(backends).map(|_| (r.clone(), leg))
        })
        .expect("a router between the LB and the backends")
}

/// The MAC of `ifname` in `netns`.
pub fn mac_of(netns: &str, ifname: &str) -> String {
    let text = ip(&["-n", netns, "-o", "link", "show", "dev", ifname]);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == "link/ether")
        .and_then(|i| words.get(i + 1))
        .map(|w| (*w).to_owned())
        .unwrap_or_else(|| panic!("no MAC on {ifname} in {netns}: {text}"))
}

/// Replaces `router`'s `leg` by a router with MAC `mac` at the same
/// addresses that announces nothing: no gratuitous ARP or unsolicited NA
/// (`arp_notify`, `ndisc_notify` off) and, with its neighbours on the
/// leg's network pinned (the LB's own addresses, `lb_extra` on the LB too,
/// such as NAT addresses, and the other routers' legs), no ARP request or
/// neighbour solicitation either, whose sender the LB's kernel would learn
/// the new MAC from (a busy router's traffic would, sooner or later; a
/// test must not depend on it).
pub fn replace_router(lab: &Lab, router: &Router, leg: &Leg, mac: &str, lb_extra: &[IpAddr]) {
    for key in [
        format!("net.ipv4.conf.{}.arp_notify", leg.ifname),
        format!("net.ipv6.conf.{}.ndisc_notify", leg.ifname),
    ] {
        sysctl(&router.netns, &key, "0");
    }
    ip(&[
        "-n",
        &router.netns,
        "link",
        "set",
        "dev",
        &leg.ifname,
        "address",
        mac,
    ]);
    // The MAC change flushed the router's neighbour entries on the leg.
    let lb_mac = mac_of(&lab.lb.netns, "eth0");
    let mut pinned: Vec<(IpAddr, String)> = [IpAddr::V4(lab.lb.ipv4), IpAddr::V6(lab.lb.ipv6)]
        .into_iter()
        .chain(lb_extra.iter().copied())
        .map(|a| (a, lb_mac.clone()))
        .collect();
    for other in lab.routers.iter().filter(|r| r.name != router.name) {
        if let Some(theirs) = other.leg_on(leg.network) {
            let theirs_mac = mac_of(&other.netns, &theirs.ifname);
            pinned.push((IpAddr::V4(theirs.ipv4), theirs_mac.clone()));
            pinned.push((IpAddr::V6(theirs.ipv6), theirs_mac));
        }
    }
    for (address, lladdr) in pinned {
        ip(&[
            "-n",
            &router.netns,
            "neigh",
            "replace",
            &address.to_string(),
            "lladdr",
            &lladdr,
            "dev",
            &leg.ifname,
            "nud",
            "permanent",
        ]);
    }
}

/// The LB's neighbour entry for `address` (its `ip neigh` line; empty
/// when there is none).
pub fn lb_neighbour(lab: &Lab, address: IpAddr) -> String {
    ip(&["-n", &lab.lb.netns, "neigh", "show", &address.to_string()])
        .trim()
        .to_owned()
}
