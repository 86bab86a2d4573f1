//! lbd in the lab: its config, start, admin socket and pins on each node,
//! and what is attached to the nodes' interfaces.

use super::*;

impl Lab {
    /// Detaches the pass-through XDP programs from the LBs' switch ports.
    /// They are there for XDP_TX (veth hands such frames only to a peer
    /// running XDP); a tc program's `bpf_redirect` hands the switch port an
    /// ordinary skb, which needs none — and with one there, every
    /// redirected skb takes veth's XDP path (queued, run through XDP) for
    /// nothing. Labs that run lbd with `attach = "tc"` only call this.
    pub fn without_pass_through_xdp(&mut self) {
        // Dropping the objects detaches the programs (their links are owned).
        self.pass_xdp.clear();
    }

    /// Readies the switch for lbd at `attach` ("xdp" or "tc"): at tc the
    /// pass-through XDP programs go (`without_pass_through_xdp`), for the
    /// labs that run one hook after the other.
    pub fn for_attach(&mut self, attach: &str) {
        if attach == "tc" {
            self.without_pass_through_xdp();
        }
    }

    /// Ids of the programs on the tcx ingress of `eth0` of `host` (empty:
    /// none).
    pub fn tc_program_ids(&self, host: &Host) -> anyhow::Result<Vec<u32>> {
        tcx_ingress_ids(&host.netns, "eth0")
    }

    /// Whether an XDP program is attached to `eth0` of `host`.
    pub fn xdp_attached(&self, host: &Host) -> anyhow::Result<bool> {
        Ok(output("ip", &["-n", &host.netns, "-d", "link", "show", "eth0"])?.contains("prog/xdp"))
    }

    /// The id of the XDP program on `eth0` of `host` (None: none), to tell
    /// whether a program was replaced.
    pub fn xdp_program_id(&self, host: &Host) -> anyhow::Result<Option<u32>> {
        let text = output("ip", &["-n", &host.netns, "-d", "link", "show", "eth0"])?;
        Ok(text
            .split_whitespace()
            .skip_while(|w| *w != "prog/xdp")
            .nth(2)
            .and_then(|id| id.parse().ok()))
    }

    /// An lbd config with one IPv4 VIP served by `backends` (names such as
    /// "b1"), `vip_extra` TOML lines added to the VIP table (e.g. health
    /// settings). Panics on a name the lab has no backend of: a config
    /// silently without it would let "it got no traffic" pass.
    pub fn lbd_config_for(&self, backends: &[&str], vip_extra: &str) -> String {
        let mut config = format!(
            "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\n{vip_extra}\n",
            self.admin_socket().display()
        );
        config.push_str(
            &backend_tables(&self.backends, backends).unwrap_or_else(|e| panic!("{e:#}")),
        );
        config
    }

    /// Writes `config` over the config file of lbd process `name` started
    /// with `start_lbd_on` (for reloads).
    pub fn write_lbd_config_named(&self, name: &str, config: &str) -> anyhow::Result<()> {
        fs::write(self.dir.join(format!("{name}.toml")), config)?;
        Ok(())
    }

    /// Writes `config` over the running lbd's config file (for reloads),
    /// with the node's own `pin_dir` as at its start, so a reload changes
    /// only what the test means to.
    pub fn write_lbd_config(&self, config: &str) -> anyhow::Result<()> {
        fs::write(
            self.dir.join("lbd.toml"),
            self.with_own_pin_dir(&self.lb, config),
        )?;
        Ok(())
    }

    /// `config` with `node`'s own `pin_dir` when it names none.
    fn with_own_pin_dir(&self, node: &Host, config: &str) -> String {
        if config.contains("pin_dir") {
            config.to_owned()
        } else {
            format!(
                "pin_dir = \"{}\"\n{config}",
                self.pin_dir_of(node).display()
            )
        }
    }

    /// Runs lbctl (next to lbd) against this lab's lbd.
    pub fn lbctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        lbctl_at(&self.admin_socket(), args)
    }

    /// `lbctl status --json` of the lab's lbd.
    pub fn status(&self) -> anyhow::Result<lb_userspace::api::schema::Status> {
        status_at(&self.admin_socket())
    }

    /// Runs `lbd --config <dir>/<name>.toml <flag>` (e.g. `--cleanup`,
    /// `--release-vips`) in `node`'s namespace, as the systemd unit would.
    pub fn lbd_offline(
        &self,
        node: &Host,
        name: &str,
        flag: &str,
    ) -> anyhow::Result<std::process::Output> {
        let path = self.dir.join(format!("{name}.toml"));
        Ok(Command::new("ip")
            .args(["netns", "exec", &node.netns])
            .arg(lbd_binary()?)
            .args(["--config", &path.to_string_lossy(), flag])
            .stdin(Stdio::null())
            .output()?)
    }

    /// `lbd_offline` that must succeed: fails the test with lbd's stderr
    /// otherwise.
    pub fn lbd_offline_ok(&self, node: &Host, name: &str, flag: &str) -> std::process::Output {
        let out = self
            .lbd_offline(node, name, flag)
            .unwrap_or_else(|e| panic!("lbd {flag}: {e:#}"));
        assert!(
            out.status.success(),
            "lbd {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The lab's default lbd config: both VIPs, every backend, MACs left to
    /// the neighbour table.
    pub fn lbd_config(&self) -> String {
        let mut config = format!(
            "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n",
            self.admin_socket().display()
        );
        for (vip, backends) in [
            (
                IpAddr::V4(VIP4),
                self.backends
                    .iter()
                    .map(|b| IpAddr::V4(b.ipv4))
                    .collect::<Vec<_>>(),
            ),
            (
                IpAddr::V6(VIP6),
                self.backends.iter().map(|b| IpAddr::V6(b.ipv6)).collect(),
            ),
        ] {
            config.push_str(&format!(
                "\n[[vip]]\naddress = \"{vip}\"\nport = {HTTP_PORT}\nprotocol = \"tcp\"\n"
            ));
            for backend in backends {
                config.push_str(&format!("  [[vip.backend]]\n  address = \"{backend}\"\n"));
            }
        }
        config
    }

    /// The admin socket of the lab's (first) lbd.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin_socket_of(&self.lb)
    }

    /// One raw HTTP exchange on the lab lbd's admin socket (a JSON body
    /// when `body` is given, then `Connection: close`): the status code
    /// (0 if the answer has none) and the body. For what lbctl would not
    /// send, or to read an answer's code as it is.
    pub fn admin_exchange(&self, method: &str, target: &str, body: Option<&str>) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut stream =
            std::os::unix::net::UnixStream::connect(self.admin_socket()).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let body = body.unwrap_or("");
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: lbd\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// The admin socket of lbd on `node`.
    pub fn admin_socket_of(&self, node: &Host) -> PathBuf {
        if node.name == "lb" {
            self.dir.join("lbd.sock")
        } else {
            self.dir.join(format!("lbd-{}.sock", node.name))
        }
    }

    /// Where lbd on `node` pins its data plane: bpffs is one per machine,
    /// so each lab node has its own directory, removed with the lab.
    pub fn pin_dir_of(&self, node: &Host) -> PathBuf {
        Path::new(BPFFS).join(format!("{}-{}", self.prefix, node.name))
    }

    /// Starts lbd on `node` with `config` as process `name` (config file
    /// `<name>.toml`); returns once its XDP program is attached. A config
    /// without `pin_dir` gets the node's own.
    pub fn start_lbd_on(&mut self, node: &Host, name: &str, config: &str) -> anyhow::Result<u32> {
        let lbd = lbd_binary()?;
        let path = self.dir.join(format!("{name}.toml"));
        fs::write(&path, self.with_own_pin_dir(node, config))?;
        let pid = self.spawn(
            name,
            &node.netns,
            &lbd.to_string_lossy(),
            &["--config", &path.to_string_lossy()],
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // A pinned program may be attached already: wait for lbd too.
            let attached = self.xdp_attached(node)? || !self.tc_program_ids(node)?.is_empty();
            if attached && self.log(name).contains("lbd ready") {
                return Ok(pid);
            }
            if !self.is_running(name) {
                bail!("{name} exited during start-up:\n{}", self.log(name));
            }
            if Instant::now() > deadline {
                bail!("{name} did not attach within 30 s:\n{}", self.log(name));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts lbd (the binary at `$LBD_BIN`, or next to the test binary)
    /// on the LB node with `config`; returns once its XDP program is
    /// attached. The process is named `lbd`.
    pub fn start_lbd(&mut self, config: &str) -> anyhow::Result<u32> {
        let lb = self.lb.clone();
        self.start_lbd_on(&lb, "lbd", config)
    }

    /// Waits until every backend's nginx accepts connections from the
    /// client.
    pub fn wait_for_backends(&self) -> anyhow::Result<()> {
        let addresses: Vec<SocketAddr> = self
            .backends
            .iter()
            .map(|b| SocketAddr::new(IpAddr::V4(b.ipv4), self.backend_port()))
            .collect();
        in_netns(&self.client.netns, move || -> anyhow::Result<()> {
            let deadline = Instant::now() + Duration::from_secs(20);
            for address in addresses {
                while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
                    if Instant::now() > deadline {
                        bail!("nginx at {address} did not come up within 20 s");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Ok(())
        })?
    }
}

impl Lab {
    /// Deletes `eth0` of LB node `node`, and with it its switch port (the
    /// other end of the veth), as a bond or VLAN rebuilt or a NIC's driver
    /// reloaded would: what was attached to it goes with it.
    pub fn delete_interface(&self, node: &Host) -> anyhow::Result<()> {
        ip(&node.netns, &["link", "del", "eth0"])
    }

    /// Makes `eth0` of LB node `node` again after `delete_interface`: a
    /// new veth (with a new index) into its network's bridge, with the
    /// node's addresses and routes, the static VIPs on the first LB of a
    /// lab built with them, and the pass-through XDP program on the switch
    /// port unless the lab runs without them.
    pub fn recreate_interface(&mut self, node: &Host) -> anyhow::Result<()> {
        let position = self
            .lbs
            .iter()
            .position(|lb| lb.name == node.name)
            .ok_or_else(|| anyhow!("{} is not an LB node of the lab", node.name))?;
        let network = self.topology.lbs[position].network;
        let port = format!("p-{}", node.name);
        self.add_leg(&node.netns, "eth0", &port, network, node.ipv4, node.ipv6)?;
        if let Some(gateway) = self.topology.networks[network].gateway {
            self.add_route(&node.netns, "default", "default", gateway, network)?;
        }
        for route in self.topology.routes_from(&[network], None, true) {
            self.add_network_route(&node.netns, &route)?;
        }
        if position == 0 && self.topology.static_vip {
            self.add_static_vip()?;
        }
        if !self.pass_xdp.is_empty() {
            let pass = self.pass_through_xdp(&port)?;
            self.pass_xdp.push(pass);
        }
        Ok(())
    }

    /// Adds interface `ifname` to LB node `node`, on the node's network,
    /// with host number `host` of that network (one no lab host has, e.g.
    /// 200) and the pass-through XDP program on its switch port
    /// (`p-<node>-<ifname>`), so lbd can be moved to it.
    pub fn add_lb_interface(
        &mut self,
        node: &Host,
        ifname: &str,
        host: u8,
    ) -> anyhow::Result<(Ipv4Addr, Ipv6Addr)> {
        let position = self
            .lbs
            .iter()
            .position(|lb| lb.name == node.name)
            .ok_or_else(|| anyhow!("{} is not an LB node of the lab", node.name))?;
        let network = self.topology.lbs[position].network;
        let net = &self.topology.networks[network];
        let (ipv4, ipv6) = (net.host_v4(host), net.host_v6(host));
        let port = format!("p-{}-{ifname}", node.name);
        self.add_leg(&node.netns, ifname, &port, network, ipv4, ipv6)?;
        let pass = self.pass_through_xdp(&port)?;
        self.pass_xdp.push(pass);
        Ok((ipv4, ipv6))
    }

    /// The index of interface `ifname` of `node`.
    pub fn ifindex(&self, node: &Host, ifname: &str) -> anyhow::Result<u32> {
        let text = output("ip", &["-n", &node.netns, "-o", "link", "show", ifname])?;
        text.split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .ok_or_else(|| anyhow!("no index in {text:?}"))
    }

    /// `ip -d link show <ifname>` of `node`: the XDP program and its mode
    /// (`prog/xdp` native, `prog/xdpgeneric` generic).
    pub fn link_details(&self, node: &Host, ifname: &str) -> anyhow::Result<String> {
        output("ip", &["-n", &node.netns, "-d", "link", "show", ifname])
    }

    /// The pass-through XDP program, attached to switch port `port` (veth
    /// hands frames sent with XDP_TX only to a peer running XDP).
    pub(super) fn pass_through_xdp(&self, port: &str) -> anyhow::Result<Dataplane> {
        let port = port.to_owned();
        in_netns(&self.switch_netns, move || -> anyhow::Result<Dataplane> {
            let mut dataplane = Dataplane::load(MapSizes {
                max_vips: 1,
                conntrack: 1024,
                nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
                half_open: 1024,
            })?;
            dataplane
                .program(names::PROG_PASS)?
                .attach(&port, XdpMode::Driver)
                .with_context(|| format!("attaching XDP_PASS to switch port {port}"))?;
            Ok(dataplane)
        })?
    }
}

/// The `[[vip.backend]]` tables of the backends `names` of `lab_backends`
/// (by IPv4 address); an error names a name no backend has.
fn backend_tables(lab_backends: &[Host], names: &[&str]) -> anyhow::Result<String> {
    let mut tables = String::new();
    for name in names {
        let host = lab_backends
            .iter()
            .find(|b| b.name == *name)
            .ok_or_else(|| {
                let known: Vec<&str> = lab_backends.iter().map(|b| b.name.as_str()).collect();
                anyhow!("no backend named {name:?} in this lab (it has {known:?})")
            })?;
        tables.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n",
            host.ipv4
        ));
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::{backend_tables, Host};

    /// Backend `n` of a lab (b1, b2, ...).
    fn backend(n: u8) -> Host {
        Host {
            name: format!("b{n}"),
            netns: format!("lbt0n0-b{n}"),
            ipv4: std::net::Ipv4Addr::new(198, 18, 0, 10 + n),
            ipv6: std::net::Ipv6Addr::LOCALHOST,
        }
    }

    /// A backend the lab does not have is refused, not left out of the
    /// config (a lab of three asked for b4).
    #[test]
    fn a_backend_the_lab_lacks_is_refused() {
        let lab = [backend(1), backend(2), backend(3)];
        let error = backend_tables(&lab, &["b1", "b4"])
            .expect_err("b4 is no backend of this lab")
            .to_string();
        assert!(error.contains("\"b4\""), "{error}");
        let tables = backend_tables(&lab, &["b1", "b3"]).expect("both known");
        assert_eq!(
            tables,
            "  [[vip.backend]]\n  address = \"198.18.0.11\"\n  [[vip.backend]]\n  address = \"198.18.0.13\"\n"
        );
    }
}
