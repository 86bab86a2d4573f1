//! The lab and lbd's config: the routed lab with the node's NAT
//! addresses (`NAT4`/`NAT6`), and lbd configs with NAT VIPs
//! (`forwarding = "nat"`) that differ only by a [`Spec`], so every test
//! builds its own lab the same way.

use std::net::IpAddr;

use lb_tests::{
    lab::{Host, Lab, Topology, HTTP_PORT, ROUTED_BACKEND_PORT, VIP4, VIP6},
    support::ip,
};

use crate::{NAT4, NAT6};

/// What differs between the tests' lbd configs.
#[derive(Clone, Copy)]
pub(crate) struct Spec<'a> {
    /// `attach`: "xdp" or "tc".
    pub(crate) attach: &'a str,
    /// Backends of both VIPs (names such as "b1").
    pub(crate) backends: &'a [&'a str],
    /// An IPv6 NAT VIP (and `source_ipv6`) besides the IPv4 one.
    pub(crate) ipv6: bool,
    /// HTTP health checks on the backends' port (else `check = "none"`).
    pub(crate) health: bool,
    /// Extra lines of the `[nat]` table.
    pub(crate) nat_extra: &'a str,
    /// VRRP with this peer and priority (an instance per family, state
    /// sync on the IPv4 one's channel).
    pub(crate) vrrp: Option<(&'a Host, u8)>,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Self {
            attach: "xdp",
            backends: &["b1", "b2", "b3"],
            ipv6: true,
            health: false,
            nat_extra: "",
            vrrp: None,
        }
    }
}

/// The routed lab with `lbs` LB nodes and `backends` nginx backends; with
/// one LB its VIPs and NAT addresses are on its interface (an operator's
/// static setup), with two they are left to VRRP.
pub(crate) fn nat_lab(lbs: usize, backends: usize) -> Lab {
    let lab = Lab::start_topology(Topology::routed(lbs, backends, lbs == 1)).expect("routed lab");
    if lbs == 1 {
        ip(&[
            "-n",
            &lab.lb.netns,
            "addr",
            "add",
            &format!("{NAT4}/32"),
            "dev",
            "eth0",
        ]);
        // Deprecated, as the VIP: never the source of the node's own traffic.
        ip(&[
            "-n",
            &lab.lb.netns,
            "-6",
            "addr",
            "add",
            &format!("{NAT6}/128"),
            "dev",
            "eth0",
            "nodad",
            "preferred_lft",
            "0",
        ]);
    }
    lab.wait_for_backends().expect("nginx up");
    lab
}

/// lbd's config for `node`: NAT VIPs on port 80 (IPv4, and IPv6 if
/// asked) served by `spec.backends` on port 8080.
pub(crate) fn nat_config(lab: &Lab, node: &Host, spec: &Spec) -> String {
    let mut config = format!(
        "interface = \"eth0\"\nattach = \"{}\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n\
         [nat]\nsource_ipv4 = \"{NAT4}\"\n{}{}\n",
        spec.attach,
        lab.admin_socket_of(node).display(),
        if spec.ipv6 {
            format!("source_ipv6 = \"{NAT6}\"\n")
        } else {
            String::new()
        },
        spec.nat_extra,
    );
    let families: &[bool] = if spec.ipv6 { &[true, false] } else { &[true] };
    for &v4 in families {
        let vip = if v4 {
            IpAddr::V4(VIP4)
        } else {
            IpAddr::V6(VIP6)
        };
        config.push_str(&format!(
            "\n[[vip]]\naddress = \"{vip}\"\nport = {HTTP_PORT}\nprotocol = \"tcp\"\nforwarding = \"nat\"\n"
        ));
        if spec.health {
            config.push_str(&format!(
                "[vip.health]\ncheck = \"http\"\nport = {ROUTED_BACKEND_PORT}\npath = \"/health\"\n\
                 interval_ms = 300\nfast_interval_ms = 100\ntimeout_ms = 200\nrise = 1\nfall = 2\n"
            ));
        } else {
            config.push_str("[vip.health]\ncheck = \"none\"\n");
        }
        for name in spec.backends {
            let host = lab
                .backends
                .iter()
                .find(|b| b.name == *name)
                .expect("backend name");
            let address = if v4 {
                IpAddr::V4(host.ipv4)
            } else {
                IpAddr::V6(host.ipv6)
            };
            config.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{address}\"\n  port = {ROUTED_BACKEND_PORT}\n"
            ));
        }
    }
    if let Some((peer, priority)) = spec.vrrp {
        let key = lab.dir.join("sync.key");
        if !key.exists() {
            std::fs::write(&key, "lab-sync-key-0123456789abcdef\n").expect("sync key");
        }
        config.push_str(&format!(
            "\n[[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\npreempt = true\n\
             announce_count = 3\naddresses = [\"{VIP4}\", \"{NAT4}\"]\n\
             sync_listen = \"{}:7540\"\nsync_peer = \"{}:7540\"\nsync_key_file = \"{}\"\n",
            node.ipv4,
            peer.ipv4,
            key.display()
        ));
        if spec.ipv6 {
            config.push_str(&format!(
                "\n[[vrrp]]\nvrid = 52\npriority = {priority}\nadvert_interval_ms = 100\npreempt = true\n\
                 announce_count = 3\naddresses = [\"{VIP6}\", \"{NAT6}\"]\n"
            ));
        }
    }
    config
}

/// Starts lbd with `spec` on the lab's single LB.
pub(crate) fn start_nat_lbd(lab: &mut Lab, spec: &Spec) {
    let lb = lab.lb.clone();
    let config = nat_config(lab, &lb, spec);
    lab.start_lbd(&config).expect("lbd");
}
