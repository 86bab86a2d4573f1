//! The active-active lab (issue 14): a client network behind router `r1`
//! running BIRD with ECMP (`merge paths`, flows hashed by L4 ports), the
//! LB network with up to four lbd nodes, each running its own BIRD that
//! peers with the router over eBGP with BFD, and DSR nginx backends on
//! the LB network whose replies go straight back through the router.
//! Every BIRD is a process of the lab (config, control socket and pid file
//! in the run's directory), stopped with everything else when the lab
//! drops, also on failure.

pub mod bird_conf;
pub mod lbd;
pub mod router;

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lb_userspace::api::schema::{NodeStatus, Status};

use crate::{
    bird::Bird,
    lab::{sysctl, Host, Lab, Topology, HTTP_PORT, VIP4, VIP6},
    support::{counter, status_on},
};

/// The shape of a BGP lab.
#[derive(Debug, Clone, Copy)]
pub struct BgpSpec {
    /// Nodes started with the lab (lbd and BIRD running, announcing).
    pub nodes: usize,
    /// Nodes built but not started (for `start_node` later); nodes +
    /// spare is at most 4.
    pub spare: usize,
    /// nginx backends built.
    pub backends: usize,
    /// Backends (the first ones) the nodes' VIPs start with.
    pub serving: usize,
}

impl Default for BgpSpec {
    /// Three nodes, a fourth in reserve, four backends of which three
    /// serve.
    fn default() -> Self {
        Self {
            nodes: 3,
            spare: 1,
            backends: 4,
            serving: 3,
        }
    }
}

/// A running BGP lab. Dropping it stops every process and removes every
/// namespace and file.
pub struct BgpLab {
    /// The namespace lab underneath.
    pub lab: Lab,
    /// Backend names the nodes start with.
    pub serving: Vec<String>,
    router: Bird,
    nodes: Vec<NodeState>,
    /// The nodes each node's `[sync] peers` lists (but itself): every
    /// node of the lab, unless started with
    /// [`BgpLab::start_without_spare_peers`].
    mesh: Vec<usize>,
}

/// Where a node's software is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    /// Built, never started.
    Spare,
    /// lbd and BIRD run.
    Running,
    /// Killed; its process names are taken, so it is not started again.
    Killed,
}

/// The router's interface towards the clients (its first leg).
const ROUTER_CLIENT_IF: &str = "eth0";
/// How long the lab's first nodes wait for their peers' flows before
/// announcing: they start together with nothing to learn.
const FIRST_WAIT_MS: u64 = 2000;
/// How long a node started later waits: long enough that its gate opens
/// because every peer's dump arrived, as it should, not by the timer.
const JOIN_WAIT_MS: u64 = 15000;

impl BgpLab {
    /// Builds the lab, starts the router's BIRD and `spec.nodes` nodes,
    /// and returns once the router routes both VIPs over every one of
    /// them.
    pub fn start(spec: BgpSpec) -> anyhow::Result<Self> {
        Self::start_with(spec, true)
    }

    /// As [`Self::start`], but the spare nodes are in no node's `[sync]
    /// peers` list: a node joins the mesh later as an operator adds one
    /// (see [`Self::join_mesh`]).
    pub fn start_without_spare_peers(spec: BgpSpec) -> anyhow::Result<Self> {
        Self::start_with(spec, false)
    }

    fn start_with(spec: BgpSpec, spares_in_mesh: bool) -> anyhow::Result<Self> {
        if spec.serving == 0 || spec.serving > spec.backends {
            bail!("{} serving backends of {}", spec.serving, spec.backends);
        }
        let lab = Lab::start_topology(Topology::bgp(spec.nodes + spec.spare, spec.backends))?;
        let serving = lab.backends[..spec.serving]
            .iter()
            .map(|b| b.name.clone())
            .collect();
        let router = Bird::paths(&lab, "bird-r1");
        let in_mesh = if spares_in_mesh {
            lab.lbs.len()
        } else {
            spec.nodes
        };
        let mut this = Self {
            nodes: vec![NodeState::Spare; lab.lbs.len()],
            mesh: (0..in_mesh).collect(),
            lab,
            serving,
            router,
        };
        this.lab.wait_for_backends()?;
        let netns = this.router_netns().to_owned();
        // A node whose link comes back keeps its IPv6 address (Linux drops
        // it on link down otherwise, and its IPv6 BGP session stays down).
        for node in &this.lab.lbs {
            sysctl(&node.netns, "net.ipv6.conf.eth0.keep_addr_on_down", "1")?;
        }
        // Hash flows by their ports too, so one client's flows spread.
        sysctl(&netns, "net.ipv4.fib_multipath_hash_policy", "1")?;
        sysctl(&netns, "net.ipv6.fib_multipath_hash_policy", "1")?;
        // The router as a host of the LB network, for the BIRD runner.
        let leg = this.lab.routers[0]
            .leg_on(0)
            .context("the router has no leg on the LB network")?;
        let host = Host {
            name: "r1".to_owned(),
            netns,
            ipv4: leg.ipv4,
            ipv6: leg.ipv6,
        };
        this.router = Bird::start(&mut this.lab, &host, "bird-r1", &bird_conf::router_config())?;
        this.start_nodes(&(0..spec.nodes).collect::<Vec<_>>(), FIRST_WAIT_MS)?;
        Ok(this)
    }

    /// The router's namespace.
    pub fn router_netns(&self) -> &str {
        &self.lab.routers[0].netns
    }

    /// The router's BIRD.
    pub fn router_bird(&self) -> &Bird {
        &self.router
    }

    /// The neighbours (addresses) of the router's BFD sessions in state Up.
    pub fn bfd_up(&self) -> anyhow::Result<Vec<IpAddr>> {
        let text = self.router.birdc(&["show", "bfd", "sessions"])?;
        Ok(router::bfd_up(&text))
    }

    /// Node `index` (0-based: `lb`, `lb2`, ...).
    pub fn node(&self, index: usize) -> &Host {
        &self.lab.lbs[index]
    }

    /// The BIRD of node `index`.
    pub fn node_bird(&self, index: usize) -> Bird {
        Bird::paths(&self.lab, &format!("bird-{}", self.node(index).name))
    }

    /// The routes file lbd on node `index` writes and its BIRD includes.
    pub fn routes_file(&self, index: usize) -> PathBuf {
        self.lab
            .dir
            .join(format!("bird-vips-{}.conf", self.node(index).name))
    }

    /// The lab process name of lbd on node `index`.
    pub fn lbd_name(&self, index: usize) -> String {
        format!("lbd-{}", self.node(index).name)
    }

    /// Whether node `index`'s lbd and BIRD were started and not killed.
    pub fn is_running(&self, index: usize) -> bool {
        self.nodes.get(index) == Some(&NodeState::Running)
    }

    /// Indexes of the nodes started and not killed.
    pub fn running_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// The lbd config of node `index` with `backends`, announcing after
    /// at most `startup_wait_ms` without its peers' flows.
    pub fn lbd_config(
        &self,
        index: usize,
        backends: &[&str],
        startup_wait_ms: u64,
    ) -> anyhow::Result<String> {
        let bird = self.node_bird(index);
        let routes_file = self.routes_file(index);
        let mut nodes: Vec<Host> = self.mesh.iter().map(|&i| self.node(i).clone()).collect();
        if !self.mesh.contains(&index) {
            nodes.push(self.node(index).clone());
        }
        lbd::node_config(
            &self.lab,
            &lbd::NodeConfig {
                node: self.node(index),
                nodes: &nodes,
                backends,
                bird_socket: &bird.socket,
                routes_file: &routes_file,
                startup_wait_ms,
            },
        )
    }

    /// Starts node `index`: its BIRD (with an empty routes file: nothing
    /// to announce until lbd writes it), then lbd, which announces the
    /// VIPs once its start-up gate opens; returns once the router routes
    /// both VIPs over the node and BFD watches it.
    pub fn start_node(&mut self, index: usize) -> anyhow::Result<()> {
        self.start_nodes(&[index], JOIN_WAIT_MS)
    }

    /// Adds spare node `index` to the mesh as an operator grows one: to
    /// every running node's `[sync] peers` (its config file rewritten,
    /// with the backends serving now, then `lbctl reload`), then starts
    /// it (see [`Self::start_node`]), its own peers every node of the
    /// mesh; returns once the router routes over it.
    pub fn join_mesh(&mut self, index: usize) -> anyhow::Result<()> {
        if self.mesh.contains(&index) {
            bail!("node {index} is in the mesh already");
        }
        self.mesh.push(index);
        let names: Vec<String> = self.serving.clone();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for running in self.running_nodes() {
            let config = self.lbd_config(running, &names, FIRST_WAIT_MS)?;
            let node = self.node(running).clone();
            let config = format!(
                "pin_dir = \"{}\"\n{config}",
                self.lab.pin_dir_of(&node).display()
            );
            self.lab
                .write_lbd_config_named(&self.lbd_name(running), &config)?;
            self.lbctl(running, &["reload"]);
        }
        self.start_node(index)
    }

    /// Starts spare node `index` with `edit` applied to its BIRD config
    /// (a misconfigured session, say), then its lbd; returns once lbd is
    /// ready, without waiting for the router: such a node may never be
    /// routed over.
    pub fn start_node_with_bird(
        &mut self,
        index: usize,
        edit: impl Fn(String) -> String,
    ) -> anyhow::Result<()> {
        match self.nodes.get(index) {
            Some(NodeState::Spare) => {}
            Some(state) => bail!("node {index} is {state:?}, not a spare"),
            None => bail!("no node {index} in the lab"),
        }
        let node = self.node(index).clone();
        let routes_file = self.routes_file(index);
        fs::write(&routes_file, "")
            .with_context(|| format!("writing {}", routes_file.display()))?;
        let name = self.node_bird(index).name;
        let config = edit(bird_conf::node_config(&node, &routes_file)?);
        Bird::start(&mut self.lab, &node, &name, &config)?;
        self.nodes[index] = NodeState::Running;
        let names: Vec<&str> = self.serving.iter().map(String::as_str).collect();
        let config = self.lbd_config(index, &names, JOIN_WAIT_MS)?;
        let name = self.lbd_name(index);
        self.lab.start_lbd_on(&node, &name, &config)?;
        Ok(())
    }

    /// Starts the BIRDs of `indexes`, then their lbds (start-up wait
    /// `startup_wait_ms`), then waits until the router routes both VIPs
    /// over each (sessions come up while lbd starts) and BFD is up towards
    /// each.
    fn start_nodes(&mut self, indexes: &[usize], startup_wait_ms: u64) -> anyhow::Result<()> {
        for &index in indexes {
            match self.nodes.get(index) {
                Some(NodeState::Spare) => {}
                Some(state) => bail!("node {index} is {state:?}, not a spare"),
                None => bail!("no node {index} in the lab"),
            }
            let node = self.node(index).clone();
            let routes_file = self.routes_file(index);
            fs::write(&routes_file, "")
                .with_context(|| format!("writing {}", routes_file.display()))?;
            let name = self.node_bird(index).name;
            Bird::start(
                &mut self.lab,
                &node,
                &name,
                &bird_conf::node_config(&node, &routes_file)?,
            )?;
            self.nodes[index] = NodeState::Running;
        }
        for &index in indexes {
            let node = self.node(index).clone();
            let names: Vec<&str> = self.serving.iter().map(String::as_str).collect();
            let config = self.lbd_config(index, &names, startup_wait_ms)?;
            let name = self.lbd_name(index);
            self.lab.start_lbd_on(&node, &name, &config)?;
        }
        for &index in indexes {
            let limit = Duration::from_millis(startup_wait_ms) + Duration::from_secs(10);
            self.wait_routed_over(index, true, limit)
                .with_context(|| format!("{} was not routed over", self.node(index).name))?;
        }
        // BFD comes up after the sessions (slowly at first): until it is
        // up, only the hold time would notice a cut link.
        let want: Vec<IpAddr> = indexes
            .iter()
            .flat_map(|&i| {
                [
                    self.hop_of(i, IpAddr::V4(VIP4)),
                    self.hop_of(i, IpAddr::V6(VIP6)),
                ]
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = self.bfd_up()?;
            if want.iter().all(|hop| up.contains(hop)) {
                break;
            }
            if Instant::now() > deadline {
                bail!("BFD not up towards {want:?} after 10 s: up {up:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills (SIGKILL) node `index`'s lbd and BIRD at once: the node's
    /// software crashes; its pinned data plane stays.
    pub fn kill_node(&mut self, index: usize) -> anyhow::Result<()> {
        self.lab.kill_all_in(&self.lab.lbs[index].clone())?;
        self.nodes[index] = NodeState::Killed;
        Ok(())
    }

    /// Takes node `index`'s only link down (`up` false) or up again.
    pub fn set_link(&self, index: usize, up: bool) -> anyhow::Result<()> {
        self.lab.set_link(self.node(index), up)
    }

    /// The next hops of the router's kernel route for `vip`.
    pub fn next_hops(&self, vip: IpAddr) -> anyhow::Result<Vec<IpAddr>> {
        router::next_hops(self.router_netns(), vip)
    }

    /// The address node `index` is a next hop with for `vip`'s family.
    pub fn hop_of(&self, index: usize, vip: IpAddr) -> IpAddr {
        let node = self.node(index);
        match vip {
            IpAddr::V4(_) => node.ipv4.into(),
            IpAddr::V6(_) => node.ipv6.into(),
        }
    }

    /// The node whose address `hop` is.
    pub fn node_at(&self, hop: IpAddr) -> Option<usize> {
        self.lab
            .lbs
            .iter()
            .position(|n| IpAddr::V4(n.ipv4) == hop || IpAddr::V6(n.ipv6) == hop)
    }

    /// Waits until the router's routes for both VIPs include node `index`
    /// (`present`) or no longer do; returns how long that took.
    pub fn wait_routed_over(
        &self,
        index: usize,
        present: bool,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let mut done = true;
            for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
                let hops = self.next_hops(vip)?;
                done &= hops.contains(&self.hop_of(index, vip)) == present;
            }
            if done {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "node {index} still {} the router's next hops after {limit:?}: {:?} / {:?}",
                    if present { "missing from" } else { "among" },
                    self.next_hops(IpAddr::V4(VIP4))?,
                    self.next_hops(IpAddr::V6(VIP6))?
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The node the router sends the client's TCP flow from `client` to
    /// `vip` to (None without a route).
    pub fn node_of_flow(&self, client: SocketAddr, vip: IpAddr) -> anyhow::Result<Option<usize>> {
        Ok(
            router::next_hop_of_flow(self.router_netns(), ROUTER_CLIENT_IF, client, vip)?
                .and_then(|hop| self.node_at(hop)),
        )
    }

    /// Adds backend `name` to both VIPs on every running node (`lbctl
    /// backend add`), and to the config of nodes started later; returns
    /// once every running node's table gives it new flows. Each node takes
    /// it in when its own checks pass, so until then their Maglev tables
    /// differ: a connection opened on one node and moved to another before
    /// replication carried it (at most 250 ms) would be picked afresh
    /// there, and a test of a failover must not start inside that window.
    pub fn add_backend_everywhere(&mut self, name: &str) -> anyhow::Result<()> {
        let host = self
            .lab
            .backends
            .iter()
            .find(|b| b.name == name)
            .with_context(|| format!("no backend {name}"))?
            .clone();
        for index in self.running_nodes() {
            for (vip, address) in [
                (format!("{VIP4}:{HTTP_PORT}/tcp"), host.ipv4.to_string()),
                (format!("[{VIP6}]:{HTTP_PORT}/tcp"), host.ipv6.to_string()),
            ] {
                self.lbctl(index, &["backend", "add", &vip, &address]);
            }
        }
        self.serving.push(name.to_owned());
        let addresses = [IpAddr::from(host.ipv4), IpAddr::from(host.ipv6)];
        let taken_in = |status: &Status| {
            addresses.iter().all(|address| {
                status.vips.iter().any(|vip| {
                    vip.backends
                        .iter()
                        .any(|b| b.address == *address && b.share > 0.0)
                })
            })
        };
        let nodes = self.running_nodes();
        crate::support::wait_until(
            &format!("{name} taken into every node's table"),
            Duration::from_secs(15),
            || nodes.iter().all(|&index| taken_in(&self.status(index))),
        );
        Ok(())
    }

    /// `lbctl status --json` of node `index`.
    pub fn status(&self, index: usize) -> Status {
        status_on(&self.lab, self.node(index))
    }

    /// `lbctl node status --json` of node `index`: its state and BGP
    /// announcements.
    pub fn node_status(&self, index: usize) -> NodeStatus {
        serde_json::from_str(&self.lbctl(index, &["node", "status", "--json"]))
            .expect("node status JSON")
    }

    /// Counter `name` of node `index` (e.g. `forwarded`, `conntrack_new`).
    pub fn counter(&self, index: usize, name: &str) -> u64 {
        counter(&self.status(index), name)
    }

    /// Runs lbctl `args` against node `index`'s lbd; panics unless it
    /// exits 0; its stdout.
    pub fn lbctl(&self, index: usize, args: &[&str]) -> String {
        let out = self
            .lab
            .lbctl_on(self.node(index), args)
            .expect("run lbctl");
        assert!(
            out.status.success(),
            "lbctl {args:?} on {} failed: {}{}",
            self.node(index).name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
