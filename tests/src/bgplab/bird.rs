//! BIRD in the lab: the shipped example configs (examples/bird/) with the
//! lab's paths and router ids put in, one BIRD process per namespace with
//! its config, control socket and pid file in the run's directory, and
//! `birdc` against that socket.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::lab::{Host, Lab};

/// The LB node's example config, as shipped.
const NODE_EXAMPLE: &str = include_str!("../../../examples/bird/lb-node.conf");
/// The router's example config, as shipped.
const ROUTER_EXAMPLE: &str = include_str!("../../../examples/bird/router.conf");
/// Where the node example includes lbd's routes file.
const EXAMPLE_ROUTES_FILE: &str = "/run/lbd/bird-vips.conf";
/// The node example's router id (its own address in the lab's numbering).
const EXAMPLE_NODE_ID: &str = "router id 198.18.0.2;";

/// One BIRD instance of the lab: where its files are.
#[derive(Debug, Clone)]
pub struct Bird {
    /// The process name in the lab (`bird-<host>`).
    pub name: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its control socket, for `birdc -s` and lbd's `[bgp] bird_socket`.
    pub socket: PathBuf,
}

impl Bird {
    /// The files of BIRD on `host` inside `dir`.
    pub fn of(dir: &Path, host: &str) -> Self {
        Self {
            name: format!("bird-{host}"),
            config: dir.join(format!("bird-{host}.conf")),
            socket: dir.join(format!("bird-{host}.ctl")),
        }
    }

    /// Writes `config` and starts BIRD in `netns` (foreground, logging to
    /// the lab's log of the process); returns once its control socket
    /// answers. The lab stops it when it drops.
    pub fn start(&self, lab: &mut Lab, netns: &str, config: &str) -> anyhow::Result<()> {
        fs::write(&self.config, config)
            .with_context(|| format!("writing {}", self.config.display()))?;
        let pid_file = self.config.with_extension("pid");
        lab.spawn(
            &self.name,
            netns,
            "bird",
            &[
                "-f",
                "-c",
                &self.config.to_string_lossy(),
                "-s",
                &self.socket.to_string_lossy(),
                "-P",
                &pid_file.to_string_lossy(),
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.birdc(&["show", "status"]).is_err() {
            if !lab.is_running(&self.name) {
                bail!(
                    "{} exited during start-up:\n{}",
                    self.name,
                    lab.log(&self.name)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer within 10 s:\n{}",
                    self.name,
                    lab.log(&self.name)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Runs `birdc -s <socket> <args>`; its output, or an error with it.
    pub fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("starting birdc")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "birdc {}: {text}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// The names of the BGP protocols in state Established.
    pub fn established(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .birdc(&["show", "protocols"])?
            .lines()
            .filter(|l| l.contains(" BGP ") && l.contains("Established"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect())
    }
}

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

/// The routes file in the format lbd writes (the two static protocols of
/// stem `lbd_vips`, one blackhole route per announced address).
pub fn routes_file_text(addresses: &[IpAddr]) -> String {
    let mut text = String::from("# Written by the bgp lab\n");
    for (family, want_v4) in [("4", true), ("6", false)] {
        text.push_str(&format!(
            "protocol static lbd_vips{family} {{\n  ipv{family};\n"
        ));
        for address in addresses.iter().filter(|a| a.is_ipv4() == want_v4) {
            let len = if want_v4 { 32 } else { 128 };
            text.push_str(&format!("  route {address}/{len} blackhole;\n"));
        }
        text.push_str("}\n");
    }
    text
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

    #[test]
    fn the_routes_file_has_both_protocols_and_one_route_per_address() {
        let text = routes_file_text(&[
            "198.18.0.100".parse().expect("v4"),
            "2001:2::100".parse().expect("v6"),
        ]);
        assert!(text.contains(
            "protocol static lbd_vips4 {\n  ipv4;\n  route 198.18.0.100/32 blackhole;\n}\n"
        ));
        assert!(text.contains(
            "protocol static lbd_vips6 {\n  ipv6;\n  route 2001:2::100/128 blackhole;\n}\n"
        ));
        let empty = routes_file_text(&[]);
        assert!(empty.contains("protocol static lbd_vips4 {\n  ipv4;\n}\n"));
    }
}
