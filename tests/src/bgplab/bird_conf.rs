//! The lab's BIRD configs are the shipped examples (examples/bird/), so
//! the lab runs what an operator copies: the router's as it is (its
//! addresses are the lab's), a node's with its router id and the path of
//! its lbd's routes file put in. (`crate::bird` runs the processes.)

use std::path::Path;

use anyhow::bail;

use crate::lab::Host;

/// The LB node's example config, as shipped.
const NODE_EXAMPLE: &str = include_str!("../../../examples/bird/lb-node.conf");
/// The router's example config, as shipped.
const ROUTER_EXAMPLE: &str = include_str!("../../../examples/bird/router.conf");
/// Where the node example includes lbd's routes file.
const EXAMPLE_ROUTES_FILE: &str = "/run/lbd-bgp/vips.conf";
/// The node example's router id (its own address in the lab's numbering).
const EXAMPLE_NODE_ID: &str = "router id 198.18.0.2;";

/// The router's config: the shipped example as it is (its addresses are
/// the lab's: BGP from anyone on 198.18.0.0/24 and 2001:2::/64, BFD on
/// `eth1`, the router's LB-network leg).
pub fn router_config() -> String {
    ROUTER_EXAMPLE.to_owned()
}

/// The config of the node at `node` including `routes_file`: the shipped
/// example with its router id and include path replaced.
pub fn node_config(node: &Host, routes_file: &Path) -> anyhow::Result<String> {
    for needle in [EXAMPLE_NODE_ID, EXAMPLE_ROUTES_FILE] {
        if !NODE_EXAMPLE.contains(needle) {
            bail!("examples/bird/lb-node.conf no longer contains {needle:?}");
        }
    }
    Ok(NODE_EXAMPLE
        .replace(EXAMPLE_NODE_ID, &format!("router id {};", node.ipv4))
        .replace(EXAMPLE_ROUTES_FILE, &routes_file.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn the_node_config_names_the_node_and_its_routes_file() {
        let node = Host {
            name: "lb3".to_owned(),
            netns: "x-lb3".to_owned(),
            ipv4: Ipv4Addr::new(198, 18, 0, 4),
            ipv6: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 4),
        };
        let config = node_config(&node, Path::new("/tmp/run/vips-lb3.conf")).expect("config");
        assert!(config.contains("router id 198.18.0.4;"));
        assert!(config.contains("include \"/tmp/run/vips-lb3.conf\";"));
        assert!(!config.contains(EXAMPLE_ROUTES_FILE));
    }
}
