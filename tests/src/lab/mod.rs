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

mod ha;
mod host;
mod lbd;
mod processes;

pub use host::{
    cls_bpf_program_ids, ensure_bpffs, http_get, in_netns, lbctl_at, lbd_binary,
    namespaces_with_prefix, pins_with_prefix, remove_pins, status_at, sweep_stale_labs,
    tc_filter_listing, tcx_egress_ids, tcx_ingress_ids, workspace_binary, TestPins, BPFFS,
};
use host::{ip, receive_like_a_nic};
pub(crate) use host::{output, run, sysctl};

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
        for lb in self.lbs.clone() {
            let pass = self.pass_through_xdp(&format!("p-{}", lb.name))?;
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

    fn teardown(&mut self) {
        for (_, child) in &mut self.processes {
            stop(child);
        }
        self.processes.clear();
        self.pass_xdp.clear();
        for netns in self.namespaces.drain(..).rev() {
            host::delete_netns(&netns);
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
