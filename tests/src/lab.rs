//! A lab of network namespaces: a client, the load balancer node and nginx
//! backends, each a namespace with one veth into a bridge that lives in a
//! "switch" namespace. By default all on one L2 segment; a `Topology` adds
//! networks (one bridge each) and routers between them (the routed lab
//! puts the client and the backends behind a router each). Addresses come
//! only from the benchmarking ranges (198.18.0.0/15, 2001:2::/48); nothing is configured
//! in the root namespace. Everything a lab creates (namespaces, processes,
//! files) goes away when it is dropped, and labs left by a killed run are
//! swept by the next one.

use std::{
    fs::{self, File},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};
use aya::programs::XdpMode;
use lb_common::consts::names;
use lb_userspace::dataplane::{Dataplane, MapSizes};

pub use crate::topology::{
    Attach, BackendStyle, NetworkSpec, Route, RouterSpec, Topology, ROUTED_BACKEND_PORT,
};

/// Prefix of every namespace a lab creates: `lbt<pid>n<seq>-<host>`.
const NS_PREFIX: &str = "lbt";
/// The IPv4 VIP of the lab.
pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The IPv6 VIP of the lab.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
/// Port the lab's VIPs and nginx serve.
pub const HTTP_PORT: u16 = 80;

/// One host of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name (`client`, `lb`, `b1`, ...).
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// IPv4 address on the segment.
    pub ipv4: Ipv4Addr,
    /// IPv6 address on the segment.
    pub ipv6: Ipv6Addr,
}

/// A router of the lab: a namespace with a leg on several networks.
#[derive(Debug, Clone)]
pub struct Router {
    /// Short name (`r1`, ...).
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its legs, in the order of the spec (`eth0`, `eth1`, ...).
    pub legs: Vec<Leg>,
}

/// One leg of a router.
#[derive(Debug, Clone)]
pub struct Leg {
    /// The interface in the router's namespace.
    pub ifname: String,
    /// Index of its network in `Lab::topology`.
    pub network: usize,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address.
    pub ipv6: Ipv6Addr,
}

impl Router {
    /// Its leg on network `network`, if it has one.
    pub fn leg_on(&self, network: usize) -> Option<&Leg> {
        self.legs.iter().find(|l| l.network == network)
    }
}

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    /// Per-run prefix of namespace names.
    pub prefix: String,
    /// Working directory: configs, pid files, logs.
    pub dir: PathBuf,
    /// The client.
    pub client: Host,
    /// The (first) load balancer node (its interface is `eth0`).
    pub lb: Host,
    /// Every load balancer node: `lb`, then `lb2`, ...
    pub lbs: Vec<Host>,
    /// The nginx backends.
    pub backends: Vec<Host>,
    /// The routers (none in the L2 lab).
    pub routers: Vec<Router>,
    /// The shape the lab was built from.
    pub topology: Topology,
    switch_netns: String,
    namespaces: Vec<String>,
    processes: Vec<(String, Child)>,
    // Keeps the XDP_PASS programs on the switch ports of the LBs attached.
    pass_xdp: Vec<Dataplane>,
}

/// The shape of an L2 lab (one segment, DSR backends); `Topology`
/// describes any shape.
#[derive(Debug, Clone, Copy)]
pub struct LabSpec {
    /// Load balancer nodes (1 to 4).
    pub lbs: usize,
    /// nginx backends (1 to 50).
    pub backends: usize,
    /// Put the VIPs on the first LB's interface at build time (no VRRP).
    pub static_vip: bool,
}

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds the lab with `backends` nginx backends (at most 50), each
    /// answering `/` with its own name and `/health` with `ok`.
    pub fn start(backends: usize) -> anyhow::Result<Self> {
        Self::start_spec(LabSpec {
            lbs: 1,
            backends,
            static_vip: true,
        })
    }

    /// Builds a lab of the given shape.
    pub fn start_spec(spec: LabSpec) -> anyhow::Result<Self> {
        let LabSpec {
            lbs,
            backends,
            static_vip,
        } = spec;
        Self::start_topology(Topology::l2(lbs, backends, static_vip))
    }

    /// Builds the routed lab (`Topology::routed`): the client behind
    /// router `r1`, the LB network, `backends` unmodified nginx backends
    /// behind router `r2` listening on `ROUTED_BACKEND_PORT`; one LB, the
    /// VIPs on its interface.
    pub fn start_routed(backends: usize) -> anyhow::Result<Self> {
        Self::start_topology(Topology::routed(1, backends, true))
    }

    /// Builds a lab of any shape: one bridge per network in the switch
    /// namespace, routers forwarding between them with static routes,
    /// hosts with a default route to their network's gateway.
    pub fn start_topology(topology: Topology) -> anyhow::Result<Self> {
        ensure_bpffs().context("mounting the labs' BPF filesystem")?;
        let backends = topology.backends.len();
        let lbs = topology.lbs.len();
        if backends == 0 || backends > 50 {
            bail!("a lab has 1 to 50 backends, not {backends}");
        }
        if lbs == 0 || lbs > 4 {
            bail!("a lab has 1 to 4 load balancers, not {lbs}");
        }
        let network = |attach: &Attach| {
            topology
                .networks
                .get(attach.network)
                .ok_or_else(|| anyhow!("no network {} in the topology", attach.network))
        };
        for attach in [topology.client]
            .iter()
            .chain(&topology.lbs)
            .chain(&topology.backends)
            .chain(topology.routers.iter().flat_map(|r| &r.legs))
        {
            network(attach)?;
        }
        sweep_stale_labs();
        let seq = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NS_PREFIX}{}n{seq}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = |name: &str, attach: &Attach| -> anyhow::Result<Host> {
            let net = network(attach)?;
            Ok(Host {
                name: name.to_owned(),
                netns: format!("{prefix}-{name}"),
                ipv4: net.host_v4(attach.host),
                ipv6: net.host_v6(attach.host),
            })
        };
        let lbs = topology
            .lbs
            .iter()
            .enumerate()
            .map(|(i, attach)| match i {
                0 => host("lb", attach),
                i => host(&format!("lb{}", i + 1), attach),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let backends = topology
            .backends
            .iter()
            .enumerate()
            .map(|(i, attach)| host(&format!("b{}", i + 1), attach))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let routers = topology
            .routers
            .iter()
            .map(|r| -> anyhow::Result<Router> {
                Ok(Router {
                    name: r.name.clone(),
                    netns: format!("{prefix}-{}", r.name),
                    legs: r
                        .legs
                        .iter()
                        .enumerate()
                        .map(|(i, attach)| -> anyhow::Result<Leg> {
                            let net = network(attach)?;
                            Ok(Leg {
                                ifname: format!("eth{i}"),
                                network: attach.network,
                                ipv4: net.host_v4(attach.host),
                                ipv6: net.host_v6(attach.host),
                            })
                        })
                        .collect::<anyhow::Result<_>>()?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut lab = Self {
            switch_netns: format!("{prefix}-sw"),
            client: host("client", &topology.client)?,
            lb: lbs[0].clone(),
            lbs,
            backends,
            routers,
            topology,
            prefix,
            dir,
            namespaces: Vec::new(),
            processes: Vec::new(),
            pass_xdp: Vec::new(),
        };
        lab.build().context("building the lab")?;
        Ok(lab)
    }

    /// The port the backends' nginx listens on.
    pub fn backend_port(&self) -> u16 {
        self.topology.backend_style.port()
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let sw = self.switch_netns.clone();
        self.add_netns(&sw)?;
        // The switch is a plain L2 switch: where br_netfilter is loaded,
        // bridged frames would otherwise go through iptables' hooks, a
        // cost of the lab's plumbing charged to every system measured.
        if Path::new("/proc/sys/net/bridge").exists() {
            for family in ["iptables", "ip6tables", "arptables"] {
                sysctl(&sw, &format!("net.bridge.bridge-nf-call-{family}"), "0")?;
            }
        }
        for index in 0..self.topology.networks.len() {
            let bridge = bridge_name(index);
            ip(&sw, &["link", "add", &bridge, "type", "bridge"])?;
            ip(&sw, &["link", "set", &bridge, "up"])?;
        }
        for router in self.routers.clone() {
            self.add_router(&router)?;
        }
        let topology = self.topology.clone();
        let hosts: Vec<(Host, Attach)> = [(self.client.clone(), topology.client)]
            .into_iter()
            .chain(self.lbs.clone().into_iter().zip(topology.lbs.clone()))
            .chain(
                self.backends
                    .clone()
                    .into_iter()
                    .zip(topology.backends.clone()),
            )
            .collect();
        for (host, attach) in &hosts {
            self.add_host(host, attach.network)?;
        }
        if topology.static_vip {
            self.add_static_vip()?;
        }
        self.prepare_backends()?;
        // veth hands frames sent with XDP_TX only to a peer running XDP.
        let sw = self.switch_netns.clone();
        for lb in self.lbs.clone() {
            let port = format!("p-{}", lb.name);
            let pass = in_netns(&sw, move || -> anyhow::Result<Dataplane> {
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
            })??;
            self.pass_xdp.push(pass);
        }
        Ok(())
    }

    /// The load balancer answers ARP/ND for the VIPs (labs without VRRP).
    fn add_static_vip(&self) -> anyhow::Result<()> {
        ip(
            &self.lb.netns,
            &["addr", "add", &format!("{VIP4}/32"), "dev", "eth0"],
        )?;
        ip(
            &self.lb.netns,
            &[
                "-6",
                "addr",
                "add",
                &format!("{VIP6}/128"),
                "dev",
                "eth0",
                "nodad",
                // Deprecated: never picked as the source of the node's own
                // traffic (health checks), as lbd adds VIPs.
                "preferred_lft",
                "0",
            ],
        )?;
        Ok(())
    }

    /// Direct server return: backends hold the VIPs on lo and never answer
    /// ARP for them. Unmodified backends get nothing. nginx starts on each.
    fn prepare_backends(&mut self) -> anyhow::Result<()> {
        for backend in self.backends.clone() {
            if self.topology.backend_style == BackendStyle::Dsr {
                make_dsr(&backend)?;
            }
            self.start_nginx(&backend)?;
        }
        Ok(())
    }

    fn add_netns(&mut self, netns: &str) -> anyhow::Result<()> {
        run("ip", &["netns", "add", netns])?;
        self.namespaces.push(netns.to_owned());
        ip(netns, &["link", "set", "lo", "up"])
    }

    fn add_host(&mut self, host: &Host, network: usize) -> anyhow::Result<()> {
        self.add_netns(&host.netns)?;
        let port = format!("p-{}", host.name);
        self.add_leg(&host.netns, "eth0", &port, network, host.ipv4, host.ipv6)?;
        // Routes: the network's gateway as default, other routers for the
        // networks they lead to.
        let networks = [network];
        if let Some(gateway) = self.topology.networks[network].gateway {
            self.add_route(&host.netns, "default", "default", gateway, network)?;
        }
        for route in self.topology.routes_from(&networks, None, true) {
            self.add_network_route(&host.netns, &route)?;
        }
        Ok(())
    }

    /// A router: a leg on each of its networks, forwarding on, static
    /// routes to the networks it is not on (no default route).
    fn add_router(&mut self, router: &Router) -> anyhow::Result<()> {
        self.add_netns(&router.netns)?;
        for (index, leg) in router.legs.iter().enumerate() {
            let port = format!("p-{}-{index}", router.name);
            self.add_leg(
                &router.netns,
                &leg.ifname,
                &port,
                leg.network,
                leg.ipv4,
                leg.ipv6,
            )?;
        }
        sysctl(&router.netns, "net.ipv4.ip_forward", "1")?;
        sysctl(&router.netns, "net.ipv6.conf.all.forwarding", "1")?;
        let me = self.routers.iter().position(|r| r.name == router.name);
        let networks: Vec<usize> = router.legs.iter().map(|l| l.network).collect();
        for route in self.topology.routes_from(&networks, me, false) {
            self.add_network_route(&router.netns, &route)?;
        }
        Ok(())
    }

    /// Routes `route.target`'s /24 and /64 from `netns` via the router.
    fn add_network_route(&self, netns: &str, route: &Route) -> anyhow::Result<()> {
        let target = &self.topology.networks[route.target];
        self.add_route(
            netns,
            &format!("{}/24", target.host_v4(0)),
            &format!("{}/64", target.ipv6),
            route.router,
            route.via_network,
        )
    }

    /// Adds `v4` and `v6` (prefixes or `default`) via router `router`'s
    /// address on `network`.
    fn add_route(
        &self,
        netns: &str,
        v4: &str,
        v6: &str,
        router: usize,
        network: usize,
    ) -> anyhow::Result<()> {
        let leg = self
            .routers
            .get(router)
            .and_then(|r| r.legs.iter().find(|l| l.network == network))
            .ok_or_else(|| anyhow!("router {router} has no leg on network {network}"))?;
        ip(netns, &["route", "add", v4, "via", &leg.ipv4.to_string()])?;
        ip(
            netns,
            &["-6", "route", "add", v6, "via", &leg.ipv6.to_string()],
        )
    }

    /// A veth from bridge `br<network>` (switch side `port`) to `ifname`
    /// in `netns`, addressed, up, TX checksum offload off, both ends
    /// receiving in NAPI ([`receive_like_a_nic`]).
    fn add_leg(
        &self,
        netns: &str,
        ifname: &str,
        port: &str,
        network: usize,
        ipv4: Ipv4Addr,
        ipv6: Ipv6Addr,
    ) -> anyhow::Result<()> {
        ip(
            &self.switch_netns,
            &[
                "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", netns,
            ],
        )?;
        ip(
            &self.switch_netns,
            &["link", "set", port, "master", &bridge_name(network), "up"],
        )?;
        ip(
            netns,
            &["addr", "add", &format!("{ipv4}/24"), "dev", ifname],
        )?;
        ip(
            netns,
            &[
                "-6",
                "addr",
                "add",
                &format!("{ipv6}/64"),
                "dev",
                ifname,
                "nodad",
            ],
        )?;
        ip(netns, &["link", "set", ifname, "up"])?;
        // veth leaves TCP/UDP checksums partial; once XDP bounces a frame to
        // another host nobody completes them. Real NICs don't do this.
        run(
            "ip",
            &["netns", "exec", netns, "ethtool", "-K", ifname, "tx", "off"],
        )?;
        receive_like_a_nic(netns, ifname)?;
        receive_like_a_nic(&self.switch_netns, port)
    }

    /// Starts backend `name`'s nginx again after a test stopped it
    /// (`terminate("nginx-<name>")`).
    pub fn restart_nginx(&mut self, name: &str) -> anyhow::Result<()> {
        let process = format!("nginx-{name}");
        if self.is_running(&process) {
            bail!("{process} is still running");
        }
        self.processes.retain(|(n, _)| *n != process);
        let backend = self
            .backends
            .iter()
            .find(|b| b.name == name)
            .cloned()
            .ok_or_else(|| anyhow!("no backend {name}"))?;
        self.start_nginx(&backend)
    }

    fn start_nginx(&mut self, backend: &Host) -> anyhow::Result<()> {
        let name = &backend.name;
        let port = self.backend_port();
        let dir = self.dir.join(format!("nginx-{name}"));
        fs::create_dir_all(&dir)?;
        let d = dir.display();
        // /slow streams 24 KiB at 4 KiB/s (a long-lived response).
        // X-Client: the peer nginx sees (NAT mode: the LB's NAT address).
        fs::write(dir.join("slow.bin"), vec![b'x'; 24 * 1024])?;
        let config = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    listen {port} backlog=4096;\n    listen [::]:{port} backlog=4096;\n    \
             add_header X-Backend {name} always;\n    \
             add_header X-Client \"$remote_addr $remote_port\" always;\n    \
             location = /health {{ default_type text/plain; return 200 \"ok\\n\"; }}\n    \
             location = /slow {{ alias {d}/slow.bin; default_type application/octet-stream; limit_rate 4k; }}\n    \
             location / {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n  }}\n}}\n"
        );
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, config)?;
        let config_path = config_path.to_string_lossy().into_owned();
        self.spawn(
            &format!("nginx-{name}"),
            &backend.netns,
            "nginx",
            &["-c", &config_path, "-p", &dir.to_string_lossy()],
        )?;
        Ok(())
    }

    /// Starts `program args` inside `netns`, output to `<dir>/<name>.log`;
    /// it is stopped when the lab drops. Returns its pid.
    pub fn spawn(
        &mut self,
        name: &str,
        netns: &str,
        program: &str,
        args: &[&str],
    ) -> anyhow::Result<u32> {
        let log = File::create(self.dir.join(format!("{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {program} in {netns}"))?;
        let pid = child.id();
        self.processes.push((name.to_owned(), child));
        Ok(pid)
    }

    /// The log of a process started with `spawn`.
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Whether the process `name` is still running.
    pub fn is_running(&mut self, name: &str) -> bool {
        self.processes
            .iter_mut()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, child)| matches!(child.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM to process `name` and waits up to 10 s for it to exit;
    /// returns its exit status.
    pub fn terminate(&mut self, name: &str) -> anyhow::Result<std::process::ExitStatus> {
        self.stop_with(name, libc::SIGTERM, "SIGTERM")
    }

    /// Sends `signal` to process `name` and waits up to 10 s for it to exit.
    fn stop_with(
        &mut self,
        name: &str,
        signal: i32,
        signal_name: &str,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child(name)?;
        let pid = i32::try_from(child.id())?;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
        wait_exit(child, Duration::from_secs(10))
            .with_context(|| format!("{name} did not exit on {signal_name}"))
    }

    /// Sends SIGINT to process `name` (lbd: stop for good, detach, hand
    /// VRRP over) and waits up to 10 s for it to exit.
    pub fn interrupt(&mut self, name: &str) -> anyhow::Result<std::process::ExitStatus> {
        self.stop_with(name, libc::SIGINT, "SIGINT")
    }

    /// Kills process `name` with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let child = self.child(name)?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Waits up to `timeout` for process `name` to exit by itself.
    pub fn wait_exit(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        wait_exit(self.child(name)?, timeout)
    }

    fn child(&mut self, name: &str) -> anyhow::Result<&mut Child> {
        self.processes
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .ok_or_else(|| anyhow!("no process named {name}"))
    }

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

    /// Ids of the programs on the tcx ingress of `eth0` of `host` (empty:
    /// none).
    pub fn tc_program_ids(&self, host: &Host) -> anyhow::Result<Vec<u32>> {
        in_netns(&host.netns, || -> anyhow::Result<Vec<u32>> {
            let (_, programs) = aya::programs::SchedClassifier::query_tcx(
                "eth0",
                aya::programs::TcAttachType::Ingress,
            )?;
            Ok(programs
                .iter()
                .map(aya::programs::ProgramInfo::id)
                .collect())
        })?
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
    /// settings).
    pub fn lbd_config_for(&self, backends: &[&str], vip_extra: &str) -> String {
        let mut config = format!(
            "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\n{vip_extra}\n",
            self.admin_socket().display()
        );
        for name in backends {
            if let Some(host) = self.backends.iter().find(|b| b.name == *name) {
                config.push_str(&format!(
                    "  [[vip.backend]]\n  address = \"{}\"\n",
                    host.ipv4
                ));
            }
        }
        config
    }

    /// Writes `config` over the config file of lbd process `name` started
    /// with `start_lbd_on` (for reloads).
    pub fn write_lbd_config_named(&self, name: &str, config: &str) -> anyhow::Result<()> {
        fs::write(self.dir.join(format!("{name}.toml")), config)?;
        Ok(())
    }

    /// Writes `config` over the running lbd's config file (for reloads).
    pub fn write_lbd_config(&self, config: &str) -> anyhow::Result<()> {
        fs::write(self.dir.join("lbd.toml"), config)?;
        Ok(())
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

    /// Sends a signal to process `name`.
    pub fn signal(&mut self, name: &str, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child(name)?.id())?;
        // SAFETY: plain kill(2) on our own child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(())
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
        let config = if config.contains("pin_dir") {
            config.to_owned()
        } else {
            format!(
                "pin_dir = \"{}\"\n{config}",
                self.pin_dir_of(node).display()
            )
        };
        fs::write(&path, config)?;
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

    /// An lbd config for `node` in a VRRP pair: the IPv4 VIP with
    /// `backends`, one VRRP instance (VRID 51, 100 ms adverts) with this
    /// `priority` and `preempt`, and connection-table sync to `peer`.
    pub fn ha_config(
        &self,
        node: &Host,
        peer: &Host,
        backends: &[&str],
        priority: u8,
        preempt: bool,
    ) -> anyhow::Result<String> {
        let key = self.dir.join("sync.key");
        if !key.exists() {
            fs::write(&key, "lab-sync-key-0123456789abcdef\n")?;
        }
        let mut config = format!(
            "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\n\
             [vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 200\nfast_interval_ms = 100\ntimeout_ms = 100\nrise = 1\nfall = 2\n",
            self.admin_socket_of(node).display()
        );
        for name in backends {
            if let Some(host) = self.backends.iter().find(|b| b.name == *name) {
                config.push_str(&format!(
                    "  [[vip.backend]]\n  address = \"{}\"\n",
                    host.ipv4
                ));
            }
        }
        config.push_str(&format!(
            "\n[[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\npreempt = {preempt}\n\
             announce_count = 3\n\
             sync_listen = \"{}:7540\"\nsync_peer = \"{}:7540\"\nsync_key_file = \"{}\"\n",
            node.ipv4,
            peer.ipv4,
            key.display()
        ));
        Ok(config)
    }

    /// Starts keepalived (VRRPv3, VRID 51, 100 ms adverts, the lab's IPv4
    /// VIP) on `node` as process `name`.
    pub fn start_keepalived(
        &mut self,
        node: &Host,
        name: &str,
        priority: u8,
        preempt: bool,
    ) -> anyhow::Result<u32> {
        self.start_keepalived_every(node, name, priority, preempt, "0.1")
    }

    /// `start_keepalived` with `advert_int` (seconds, as keepalived writes it).
    pub fn start_keepalived_every(
        &mut self,
        node: &Host,
        name: &str,
        priority: u8,
        preempt: bool,
        advert_int: &str,
    ) -> anyhow::Result<u32> {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir)?;
        let config = format!(
            "global_defs {{\n  vrrp_version 3\n  router_id {name}\n  enable_script_security\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  \
             advert_int {advert_int}\n{}  virtual_ipaddress {{\n    {VIP4}/32\n  }}\n}}\n",
            if preempt { "" } else { "  nopreempt\n" }
        );
        let path = dir.join("keepalived.conf");
        fs::write(&path, config)?;
        let d = dir.display().to_string();
        self.spawn(
            name,
            &node.netns.clone(),
            "keepalived",
            &[
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--vrrp",
                "--use-file",
                &path.to_string_lossy(),
                "--pid",
                &format!("{d}/keepalived.pid"),
                "--vrrp_pid",
                &format!("{d}/vrrp.pid"),
                "--checkers_pid",
                &format!("{d}/checkers.pid"),
            ],
        )
    }

    /// Kills (SIGKILL) every process in `node`'s namespace: the node's
    /// software crashes at once.
    pub fn kill_all_in(&self, node: &Host) -> anyhow::Result<()> {
        let pids: Vec<i32> = output("ip", &["netns", "pids", &node.netns])?
            .lines()
            .filter_map(|p| p.trim().parse::<i32>().ok())
            .collect();
        // Stop them all first, so none runs between the kills (keepalived's
        // VRRP child gets SIGTERM when its parent dies and would otherwise
        // step down gracefully before its own SIGKILL arrives).
        for signal in [libc::SIGSTOP, libc::SIGKILL] {
            for pid in &pids {
                // SAFETY: plain kill(2) on a process of the lab's namespace.
                unsafe { libc::kill(*pid, signal) };
            }
        }
        Ok(())
    }

    /// Takes `node`'s interface down or up (a node failure, as the segment
    /// sees it).
    pub fn set_link(&self, node: &Host, up: bool) -> anyhow::Result<()> {
        ip(
            &node.netns,
            &["link", "set", "eth0", if up { "up" } else { "down" }],
        )
    }

    /// Starts a Prometheus server on `node` scraping lbd's metrics there
    /// (127.0.0.1:9641) every second; its API listens on 127.0.0.1:9090 of
    /// that namespace. Returns once it is ready.
    pub fn start_prometheus(&mut self, node: &Host) -> anyhow::Result<()> {
        let dir = self.dir.join("prometheus");
        fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: lbd\n    static_configs:\n      - targets: ['127.0.0.1:9641']\n",
        )?;
        let netns = node.netns.clone();
        self.spawn(
            "prometheus",
            &netns,
            "prometheus",
            &[
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                "--web.listen-address=127.0.0.1:9090",
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&netns, "http://127.0.0.1:9090/-/ready")
                .is_ok_and(|(status, _)| status == 200)
            {
                return Ok(());
            }
            if !self.is_running("prometheus") || Instant::now() > deadline {
                bail!(
                    "prometheus did not become ready:\n{}",
                    self.log("prometheus")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether `node` holds the lab's IPv4 VIP on its interface.
    pub fn holds_vip(&self, node: &Host) -> anyhow::Result<bool> {
        Ok(self.addresses_of(node)?.contains(&format!("{VIP4}/32")))
    }

    /// Runs lbctl against lbd on `node`.
    pub fn lbctl_on(&self, node: &Host, args: &[&str]) -> anyhow::Result<std::process::Output> {
        lbctl_at(&self.admin_socket_of(node), args)
    }

    /// The addresses on `eth0` of `node` (to see who holds a VIP).
    pub fn addresses_of(&self, node: &Host) -> anyhow::Result<String> {
        output(
            "ip",
            &["-n", &node.netns, "-br", "addr", "show", "dev", "eth0"],
        )
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

    fn teardown(&mut self) {
        for (_, child) in &mut self.processes {
            stop(child);
        }
        self.processes.clear();
        self.pass_xdp.clear();
        for netns in self.namespaces.drain(..).rev() {
            let _ = run("ip", &["netns", "del", &netns]);
        }
        remove_pins(&self.prefix);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, _) in &self.processes {
                eprintln!("--- {name} log ---\n{}", self.log(name));
            }
        }
        self.teardown();
    }
}

/// The bridge of network `index` in the switch namespace.
fn bridge_name(index: usize) -> String {
    format!("br{index}")
}

/// Direct server return on `backend`: the VIPs on lo, never answering ARP
/// for them.
fn make_dsr(backend: &Host) -> anyhow::Result<()> {
    ip(
        &backend.netns,
        &["addr", "add", &format!("{VIP4}/32"), "dev", "lo"],
    )?;
    ip(
        &backend.netns,
        &["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"],
    )?;
    for (key, value) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
        ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ("net.ipv4.conf.eth0.arp_announce", "2"),
    ] {
        sysctl(&backend.netns, key, value)?;
    }
    Ok(())
}

fn wait_exit(child: &mut Child, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a child: SIGTERM, then SIGKILL after 5 s.
fn stop(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    // `ip netns exec` execs the program, so the pid is the program's.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `f` on a thread that has entered network namespace `netns`:
/// sockets it opens live there.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = Path::new("/run/netns").join(netns);
    std::thread::spawn(move || -> anyhow::Result<T> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: setns on a namespace fd affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("thread in {netns} panicked"))?
}

/// GET `url` from inside `netns`: (status, body).
pub fn http_get(netns: &str, url: &str) -> anyhow::Result<(u16, String)> {
    let url = url.to_owned();
    in_netns(netns, move || -> anyhow::Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent.get(&url).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })?
}

/// The lbd binary: `$LBD_BIN`, or next to the test binary.
/// Runs lbctl (next to lbd) against the lbd listening on `socket`.
pub fn lbctl_at(socket: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let lbctl = lbd_binary()?.with_file_name("lbctl");
    Ok(Command::new(lbctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}

/// `lbctl status --json` of the lbd listening on `socket`.
pub fn status_at(socket: &Path) -> anyhow::Result<lb_userspace::api::schema::Status> {
    let out = lbctl_at(socket, &["status", "--json"])?;
    if !out.status.success() {
        bail!("lbctl status: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub fn lbd_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("lbd", "LBD_BIN", "lb-userspace")
}

/// Binary `name` of the workspace's package `package`: `$<env>`, or next
/// to the test binary (`target/<profile>/deps/<test>` ->
/// `target/<profile>/<name>`).
pub fn workspace_binary(name: &str, env: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .ok_or_else(|| anyhow!("cannot locate {name} next to {}", exe.display()))?;
    if !candidate.exists() {
        bail!(
            "{name} not found at {}: build it first (`cargo build -p {package} --bins`) or set {env}; `cargo xtask test` does both",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Deletes namespaces of labs whose process is gone (a run that was killed
/// before it could clean up), killing whatever still runs in them.
pub fn sweep_stale_labs() {
    let Ok(list) = output("ip", &["netns", "list"]) else {
        return;
    };
    for netns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = netns.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('n').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = output("ip", &["netns", "pids", netns]) {
            for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = run("ip", &["netns", "del", netns]);
        let prefix = netns.split('-').next().unwrap_or(netns);
        remove_pins(prefix);
        let _ = fs::remove_dir_all(std::env::temp_dir().join(prefix));
    }
}

/// Where the labs' lbds pin their data planes: a BPF filesystem of its
/// own, outside /sys, because `ip netns exec` mounts a fresh /sys for the
/// process it runs (a pin under /sys/fs/bpf would vanish with lbd).
pub const BPFFS: &str = "/run/lbt-bpffs";

/// Mounts the labs' BPF filesystem if it is not mounted yet.
pub fn ensure_bpffs() -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(BPFFS) && l.contains(" bpf "))
    {
        return Ok(());
    }
    fs::create_dir_all(BPFFS)?;
    run("mount", &["-t", "bpf", "bpf", BPFFS])
}

/// A pin directory of this test process under the labs' BPF filesystem,
/// named by `prefix` (the test file's) and `tag` (the test's), fresh at
/// creation and removed with what is in it when dropped, also when an
/// assertion fails.
pub struct TestPins {
    dir: std::path::PathBuf,
}

impl TestPins {
    /// A fresh pin directory `<prefix><pid>-<tag>`.
    pub fn new(prefix: &str, tag: &str) -> anyhow::Result<Self> {
        ensure_bpffs()?;
        let dir = Path::new(BPFFS).join(format!("{prefix}{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Ok(Self { dir })
    }

    /// lbd's view of the directory.
    pub fn pins(&self) -> lb_userspace::pinning::PinDir {
        lb_userspace::pinning::PinDir::new(&self.dir)
    }
}

impl Drop for TestPins {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes the pin directories of lab `prefix` (lbd leaves its data plane
/// pinned when stopped with SIGTERM or killed): unpinning the link and the
/// maps frees them.
pub fn remove_pins(prefix: &str) {
    let Ok(entries) = fs::read_dir(BPFFS) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{prefix}-"))
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Pin directories of lab `prefix` that still exist (empty after drop).
pub fn pins_with_prefix(prefix: &str) -> Vec<PathBuf> {
    fs::read_dir(BPFFS)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{prefix}-"))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Namespaces of this lab that still exist (empty after drop).
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    output("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

fn ip(netns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Makes `ifname` in `netns` take its packets in NAPI, one batch at a
/// time on one CPU, as a NIC's receive queue does, and keeps it from
/// pushing the next veth off NAPI: GRO on (a veth's NAPI) and TSO off (a
/// veth hands a TSO-capable sender's forwarded packets to `netif_rx` on
/// the sending CPU instead). Every end of every leg gets this, because a
/// single hop on `netif_rx` breaks a flow's order: a hop queues a packet
/// on the backlog of whichever CPU sent it, and a NAPI poll upstream (the
/// LB's XDP, a router's receive) runs on whichever CPU scheduled it, so
/// two packets of one flow can sit on two CPUs' backlogs and drain in
/// parallel. Seen as reordering on NAT mode's return path (spurious fast
/// retransmits, `TCPDSACKUndo` at the backends, `TCPOFOQueue` at the
/// client) before every hop had this. On a host's own leg it also fixes
/// the accept race: without it, two packets of one connection sent from
/// different CPUs (the client's handshake ACK from a softirq, its request
/// from the woken task) reach the host's TCP at the same time, and the
/// kernel's lockless lookup can miss the socket while the other CPU turns
/// the request socket into the connection: the request then meets the
/// listener, which answers with a reset (`tcp_send_reset`
/// state=TCP_LISTEN reason=TCP_FLAGS, seen on Linux 6.18). RPS would also
/// keep a flow on one CPU, but its cross-CPU interrupts cost a VM a sixth
/// of the lab's CPU (and it broke the routed lab's IPv6 reachability
/// check).
fn receive_like_a_nic(netns: &str, ifname: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "netns", "exec", netns, "ethtool", "-K", ifname, "tso", "off", "gro", "on",
        ],
    )
    .with_context(|| format!("GRO on, TSO off on {ifname} in {netns}"))
}

/// Sets sysctl `key` to `value` inside `netns`.
pub(crate) fn sysctl(netns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ],
    )
}

/// Runs `program` with `args`; an error carries its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    output(program, args).map(drop)
}

/// `program`'s stdout; an error carries its stderr.
pub(crate) fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
