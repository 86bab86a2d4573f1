//! lbd's config on one node of the active-active lab: both VIPs in DSR
//! mode over the chosen backends, `[bgp]` pointing at that node's BIRD
//! and its routes file in the run's directory, `[sync]` to every other
//! node of the lab (full mesh).

use std::{fmt::Write as _, fs, net::SocketAddr, path::Path};

use anyhow::Context as _;

use crate::lab::{Host, Lab, HTTP_PORT, VIP4, VIP6};

/// Port the nodes replicate flows on.
pub const SYNC_PORT: u16 = 7540;

/// What a node's lbd config is made of.
#[derive(Debug, Clone)]
pub struct NodeConfig<'a> {
    /// The node.
    pub node: &'a Host,
    /// Every node of the lab (peers are all but `node`).
    pub nodes: &'a [Host],
    /// Backend names (`b1`, ...) the VIPs start with.
    pub backends: &'a [&'a str],
    /// The node's BIRD control socket.
    pub bird_socket: &'a Path,
    /// The routes file that node's BIRD includes.
    pub routes_file: &'a Path,
    /// `[bgp] startup_wait_ms`.
    pub startup_wait_ms: u64,
}

/// The shared replication key of the lab (written once into the run's
/// directory).
pub fn sync_key(lab: &Lab) -> anyhow::Result<std::path::PathBuf> {
    let key = lab.dir.join("sync.key");
    if !key.exists() {
        fs::write(&key, "bgp-lab-sync-key-0123456789abcdef\n")
            .with_context(|| format!("writing {}", key.display()))?;
    }
    Ok(key)
}

/// The TOML of `spec` for `lab`.
pub fn node_config(lab: &Lab, spec: &NodeConfig<'_>) -> anyhow::Result<String> {
    let mut config = format!(
        "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n",
        lab.admin_socket_of(spec.node).display()
    );
    for v6 in [false, true] {
        let vip = if v6 {
            VIP6.to_string()
        } else {
            VIP4.to_string()
        };
        write!(
            config,
            "\n[[vip]]\naddress = \"{vip}\"\nport = {HTTP_PORT}\nprotocol = \"tcp\"\n"
        )?;
        for name in spec.backends {
            let host = lab
                .backends
                .iter()
                .find(|b| b.name == *name)
                .with_context(|| format!("no backend {name} in the lab"))?;
            let address = if v6 {
                host.ipv6.to_string()
            } else {
                host.ipv4.to_string()
            };
            write!(config, "  [[vip.backend]]\n  address = \"{address}\"\n")?;
        }
    }
    write!(
        config,
        "\n[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nstartup_wait_ms = {}\nnode_state_file = \"{}\"\n",
        spec.bird_socket.display(),
        spec.routes_file.display(),
        spec.startup_wait_ms,
        lab.dir
            .join(format!("{}.node.state", spec.node.name))
            .display()
    )?;
    let peers: Vec<String> = spec
        .nodes
        .iter()
        .filter(|n| n.name != spec.node.name)
        .map(|n| format!("\"{}\"", SocketAddr::new(n.ipv4.into(), SYNC_PORT)))
        .collect();
    write!(
        config,
        "\n[sync]\nlisten = \"{}\"\npeers = [{}]\nkey_file = \"{}\"\n",
        SocketAddr::new(spec.node.ipv4.into(), SYNC_PORT),
        peers.join(", "),
        sync_key(lab)?.display()
    )?;
    Ok(config)
}
