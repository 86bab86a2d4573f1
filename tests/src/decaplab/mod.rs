//! A two-namespace lab for lb-decap: a "balancer" namespace that
//! encapsulates (no kernel tunnel modules here, so a relay thread reads the
//! client's packets for the VIPs from a TUN device and sends them wrapped
//! in IPIP, IP6IP6, 4in6 or GUE through raw and UDP sockets) and a backend
//! namespace on the other end of a veth, holding the VIPs on `lo`, a TCP
//! service on them and lb-decap. Replies go straight back (DSR). Names
//! carry the prefix `t2-<pid>-<n>` (one per lab); everything is removed on
//! drop.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _};
use socket2::{Domain, Socket, Type};

mod relay;
mod service;

pub use relay::{RelayMode, Wrap};
pub use service::ask;

use relay::Sockets;

use crate::lab::{in_netns, output, run, tcx_ingress_ids};

/// The VIPs the backend serves (TCP port `PORT`).
pub const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// IPv6 VIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
/// The service port.
pub const PORT: u16 = 80;
/// The client's addresses (on the balancer namespace's `lo`).
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
/// IPv6 client.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0x10);
/// The backend's addresses on its `eth0`.
pub const BACKEND4: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 11);
/// IPv6 backend.
pub const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 0x11);
/// The balancer's addresses on its `eth0`.
const BALANCER4: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 1);
const BALANCER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1);
/// GUE port.
pub const GUE_PORT: u16 = lb_common::tunnel::GUE_PORT_DEFAULT;

/// The lab (see the module doc).
pub struct DecapLab {
    /// Name prefix.
    pub prefix: String,
    /// The balancer/client namespace.
    pub balancer: String,
    /// The backend namespace.
    pub backend: String,
    /// Scratch directory (configs, logs).
    pub dir: PathBuf,
    /// lb-decap's pin directory.
    pub pin_dir: PathBuf,
    mode: Arc<Mutex<RelayMode>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// lb-decap processes started with `spawn_lb_decap`, by name.
    children: Vec<(String, std::process::Child)>,
}

impl DecapLab {
    /// Builds the namespaces, the veth, the relay and the service.
    pub fn start() -> anyhow::Result<Self> {
        // Unique per lab: the tests of one binary run in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let prefix = format!(
            "t2-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        crate::lab::ensure_bpffs()?;
        let mut lab = Self {
            balancer: format!("{prefix}-lb"),
            backend: format!("{prefix}-be"),
            pin_dir: Path::new(crate::lab::BPFFS).join(format!("{prefix}-decap")),
            prefix,
            dir,
            mode: Arc::new(Mutex::new(RelayMode {
                wrap: Wrap::Ipip,
                outer_v6: false,
            })),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            children: Vec::new(),
        };
        lab.build().context("building the decap lab")?;
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let (lb, be) = (self.balancer.clone(), self.backend.clone());
        for ns in [&lb, &be] {
            run("ip", &["netns", "add", ns])?;
            ip(ns, &["link", "set", "lo", "up"])?;
        }
        self.wire()?;
        // The backend: VIPs on lo, no ARP/ND for them.
        ip(&be, &["addr", "add", &format!("{VIP4}/32"), "dev", "lo"])?;
        ip(
            &be,
            &["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"],
        )?;
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.all.rp_filter", "2"),
        ] {
            sysctl(&be, key, value)?;
        }
        // The client: its addresses on lo, replies from the VIPs arrive on
        // eth0 while requests leave through the relay's TUN.
        ip(&lb, &["addr", "add", &format!("{CLIENT4}/32"), "dev", "lo"])?;
        ip(
            &lb,
            &[
                "-6",
                "addr",
                "add",
                &format!("{CLIENT6}/128"),
                "dev",
                "lo",
                "nodad",
            ],
        )?;
        for key in [
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.default.rp_filter",
        ] {
            sysctl(&lb, key, "0")?;
        }
        self.start_relay()?;
        ip(&lb, &["link", "set", "t2tun", "up"])?;
        ip(
            &lb,
            &[
                "route",
                "add",
                &format!("{VIP4}/32"),
                "dev",
                "t2tun",
                "src",
                &CLIENT4.to_string(),
            ],
        )?;
        ip(
            &lb,
            &[
                "-6",
                "route",
                "add",
                &format!("{VIP6}/128"),
                "dev",
                "t2tun",
                "src",
                &CLIENT6.to_string(),
            ],
        )?;
        self.start_service()?;
        Ok(())
    }

    /// The veth between the namespaces (`eth0` in each) with everything
    /// that lives and dies with it: addresses, per-interface sysctls, and
    /// the backend's routes back to the clients through the balancer.
    fn wire(&self) -> anyhow::Result<()> {
        let (lb, be) = (self.balancer.as_str(), self.backend.as_str());
        // Made in the namespaces themselves: nothing is ever left in the
        // root namespace, whatever fails.
        ip(
            lb,
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", be,
            ],
        )?;
        for (ns, v4, v6) in [(lb, BALANCER4, BALANCER6), (be, BACKEND4, BACKEND6)] {
            ip(ns, &["addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
            ip(
                ns,
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ],
            )?;
            ip(ns, &["link", "set", "eth0", "up"])?;
            // veth leaves checksums partial; nothing here should rely on it.
            run(
                "ip",
                &["netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"],
            )?;
        }
        for (key, value) in [
            ("net.ipv4.conf.eth0.arp_ignore", "1"),
            ("net.ipv4.conf.eth0.arp_announce", "2"),
            ("net.ipv4.conf.eth0.rp_filter", "2"),
        ] {
            sysctl(be, key, value)?;
        }
        sysctl(lb, "net.ipv4.conf.eth0.rp_filter", "0")?;
        // Replies to the clients go back through the balancer's network.
        ip(
            be,
            &[
                "route",
                "add",
                "198.18.1.0/24",
                "via",
                &BALANCER4.to_string(),
            ],
        )?;
        ip(
            be,
            &[
                "-6",
                "route",
                "add",
                "2001:2:0:1::/64",
                "via",
                &BALANCER6.to_string(),
            ],
        )
    }

    /// Deletes the veth (both ends: the backend's `eth0` gets a new
    /// ifindex, and a link attached to the old one goes defunct) and builds
    /// it again as it was, as a bond or veth rebuild on a real backend does.
    pub fn rebuild_link(&self) -> anyhow::Result<()> {
        ip(&self.backend, &["link", "del", "eth0"])?;
        self.wire()
    }

    /// Adds `address` (with its prefix length) to the backend's `eth0`.
    pub fn add_backend_address(&self, address: &str) -> anyhow::Result<()> {
        let mut args = vec!["addr", "add", address, "dev", "eth0"];
        if address.contains(':') {
            args.push("nodad");
        }
        ip(&self.backend, &args)
    }

    /// Sets how the relay wraps from now on.
    pub fn set_mode(&self, mode: RelayMode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
    }

    fn start_relay(&mut self) -> anyhow::Result<()> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let path = Path::new("/run/netns").join(&self.balancer);
        let mode = self.mode.clone();
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            let setup = (|| -> anyhow::Result<(OwnedFd, Sockets)> {
                enter(&path)?;
                Ok((relay::open_tun("t2tun")?, Sockets::open()?))
            })();
            let (tun, sockets) = match setup {
                Ok(v) => {
                    let _ = ready_tx.send(Ok(()));
                    v
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            relay::relay(&tun, &sockets, &mode, &stop);
        }));
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow!("the relay did not start"))?
            .map_err(|e| anyhow!("relay: {e}"))
    }

    fn start_service(&mut self) -> anyhow::Result<()> {
        let path = Path::new("/run/netns").join(&self.backend);
        let stop = self.stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        self.threads.push(std::thread::spawn(move || {
            let listeners = (|| -> anyhow::Result<Vec<TcpListener>> {
                enter(&path)?;
                let mut out = Vec::new();
                for addr in [
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)),
                    SocketAddr::from((Ipv6Addr::UNSPECIFIED, PORT)),
                ] {
                    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                    if addr.is_ipv6() {
                        socket.set_only_v6(true)?;
                    }
                    socket.set_reuse_address(true)?;
                    socket.bind(&addr.into())?;
                    socket.listen(128)?;
                    socket.set_nonblocking(true)?;
                    out.push(socket.into());
                }
                Ok(out)
            })();
            let listeners = match listeners {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            service::serve(&listeners, &stop);
        }));
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow!("the service did not start"))?
            .map_err(|e| anyhow!("service: {e}"))
    }

    /// Connects from the client to `vip` (through the relay).
    pub fn connect(&self, vip: IpAddr) -> anyhow::Result<TcpStream> {
        in_netns(&self.balancer, move || -> anyhow::Result<TcpStream> {
            let stream =
                TcpStream::connect_timeout(&SocketAddr::new(vip, PORT), Duration::from_secs(3))
                    .with_context(|| format!("connecting to {vip}:{PORT}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            Ok(stream)
        })?
    }

    /// One request on a new connection to `vip`: the service's answer,
    /// which names the peer it saw.
    pub fn request(&self, vip: IpAddr) -> anyhow::Result<String> {
        let mut stream = self.connect(vip)?;
        ask(&mut stream)
    }

    /// The path of the lb-decap config `name` in the scratch directory,
    /// written with `text`.
    pub fn write_config(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        fs::write(&path, text)?;
        Ok(path)
    }

    /// Runs `lb-decap --pin-dir <pins> args...` in the backend namespace.
    pub fn lb_decap(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.lb_decap_command(args)?
            .stdin(Stdio::null())
            .output()
            .context("running lb-decap")
    }

    /// The command `lb_decap` runs, to spawn it.
    pub fn lb_decap_command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut command = Command::new("ip");
        crate::support::with_signals_unblocked(&mut command)
            .args(["netns", "exec", &self.backend])
            .arg(decap_binary()?)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(args);
        Ok(command)
    }

    /// Starts `lb-decap args...` in the backend namespace as `name`, its
    /// output in `<dir>/<name>.log`; killed when the lab drops if still
    /// running.
    pub fn spawn_lb_decap(&mut self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let log = fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = self
            .lb_decap_command(args)?
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting lb-decap")?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// The log of process `name`.
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Sends `signal` to process `name`.
    pub fn signal(&self, name: &str, signal: i32) -> anyhow::Result<()> {
        let (_, child) = self
            .children
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| anyhow!("no process {name}"))?;
        // SAFETY: plain kill(2) of our own child (not yet waited for).
        if unsafe { libc::kill(child.id() as i32, signal) } != 0 {
            bail!("kill {name}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits (at most 10 s) for process `name` to exit.
    pub fn wait(&mut self, name: &str) -> anyhow::Result<std::process::ExitStatus> {
        let index = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| anyhow!("no process {name}"))?;
        let (_, mut child) = self.children.remove(index);
        for _ in 0..500 {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("{name} did not exit within 10 s:\n{}", self.log(name))
    }

    /// `ip -d link show eth0` in the backend namespace.
    pub fn backend_link(&self) -> anyhow::Result<String> {
        output("ip", &["-n", &self.backend, "-d", "link", "show", "eth0"])
    }

    /// Ids of the programs on the backend's tcx ingress.
    pub fn tc_programs(&self) -> anyhow::Result<Vec<u32>> {
        tcx_ingress_ids(&self.backend, "eth0")
    }

    /// Ids of the programs on the tcx ingress of the backend's `interface`.
    pub fn tc_programs_on(&self, interface: &str) -> anyhow::Result<Vec<u32>> {
        tcx_ingress_ids(&self.backend, interface)
    }

    /// `ip -d link show interface` in the backend namespace.
    pub fn backend_link_of(&self, interface: &str) -> anyhow::Result<String> {
        output(
            "ip",
            &["-n", &self.backend, "-d", "link", "show", interface],
        )
    }

    /// Adds a macvlan interface `mv0` on the backend's `eth0` (up, with
    /// an address of its own: loose reverse-path filtering drops what
    /// arrives on an interface without one) and has the balancer send its
    /// IPv4 tunnel packets for `BACKEND4` to its MAC (a static neighbour
    /// entry): they arrive on `mv0`, the address staying on `eth0`. A
    /// macvlan interface, like a VLAN one, has no native XDP: where
    /// lb-decap's `auto` falls back. Returns the interface's name.
    pub fn steer_ipv4_through_macvlan(&self) -> anyhow::Result<String> {
        let name = "mv0";
        ip(
            &self.backend,
            &[
                "link", "add", "link", "eth0", "name", name, "type", "macvlan", "mode", "bridge",
            ],
        )?;
        ip(
            &self.backend,
            &["addr", "add", "198.19.4.11/32", "dev", name],
        )?;
        ip(&self.backend, &["link", "set", name, "up"])?;
        let brief = output("ip", &["-n", &self.backend, "-br", "link", "show", name])?;
        let mac = brief
            .split_whitespace()
            .nth(2)
            .ok_or_else(|| anyhow!("no MAC in {brief:?}"))?
            .to_owned();
        ip(
            &self.balancer,
            &[
                "neigh",
                "replace",
                &BACKEND4.to_string(),
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )?;
        Ok(name.to_owned())
    }

    /// Adds a second veth between the namespaces (`eth1` in each, up; on
    /// the backend with an IPv4 address of its own, since loose
    /// reverse-path filtering drops what arrives on an interface without
    /// one, e.g. an unwrapped 4in6 packet) and has the balancer send its
    /// IPv6 tunnel packets for `BACKEND6` through it (a host route and a
    /// static neighbour entry for the backend's `eth1` MAC): they arrive on
    /// the backend's `eth1`, the address staying on `eth0`, while IPv4 keeps
    /// arriving on `eth0`. What a backend with its IPv4 and IPv6 on two
    /// interfaces looks like to lb-decap.
    pub fn steer_ipv6_through_eth1(&self) -> anyhow::Result<()> {
        let (lb, be) = (self.balancer.as_str(), self.backend.as_str());
        ip(
            lb,
            &[
                "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", be,
            ],
        )?;
        for ns in [lb, be] {
            ip(ns, &["link", "set", "eth1", "up"])?;
            run(
                "ip",
                &["netns", "exec", ns, "ethtool", "-K", "eth1", "tx", "off"],
            )?;
        }
        ip(be, &["addr", "add", "198.19.5.11/32", "dev", "eth1"])?;
        let brief = output("ip", &["-n", be, "-br", "link", "show", "eth1"])?;
        let mac = brief
            .split_whitespace()
            .nth(2)
            .ok_or_else(|| anyhow!("no MAC in {brief:?}"))?
            .to_owned();
        ip(
            lb,
            &[
                "-6",
                "route",
                "replace",
                &format!("{BACKEND6}/128"),
                "dev",
                "eth1",
            ],
        )?;
        ip(
            lb,
            &[
                "-6",
                "neigh",
                "replace",
                &BACKEND6.to_string(),
                "lladdr",
                &mac,
                "dev",
                "eth1",
                "nud",
                "permanent",
            ],
        )
    }

    /// Runs `ip args...` in the backend namespace.
    pub fn backend_ip(&self, args: &[&str]) -> anyhow::Result<()> {
        ip(&self.backend, args)
    }

    /// Does what an lb-decap from before generic XDP was refused left
    /// where its `xdp_mode = "auto"` fell back to generic mode: the decap
    /// program on the backend's `eth0` in generic (skb) XDP, its maps
    /// filled from `config` (a config file's text, for `eth0`), the link
    /// and maps pinned where lb-decap pins them.
    pub fn attach_generic_as_an_older_lb_decap(&self, config: &str) -> anyhow::Result<()> {
        use lb_decap::{config::Attach, dataplane, maps, pins::PinDir};
        let pins = PinDir::new(&self.pin_dir);
        let config = config.to_owned();
        in_netns(&self.backend, move || -> anyhow::Result<()> {
            let settings = lb_decap::config::Settings::parse(&config)?;
            pins.prepare()?;
            let mut ebpf = dataplane::load_object()?;
            let mut taken = maps::take(&mut ebpf)?;
            maps::Maps::borrowed(&mut taken)?.sync(&settings)?;
            let program =
                dataplane::xdp_program(&mut ebpf, lb_common::decap::names::PROG_XDP_DECAP)?;
            let id = program.attach("eth0", aya::programs::XdpMode::Skb)?;
            let link = aya::programs::links::FdLink::try_from(program.take_link(id)?)?;
            maps::pin(&taken, &pins)?;
            link.pin(pins.link_path(Attach::Xdp, "eth0"))?;
            Ok(())
        })?
    }
}

impl Drop for DecapLab {
    fn drop(&mut self) {
        for (name, mut child) in self.children.drain(..) {
            if std::thread::panicking() {
                eprintln!(
                    "--- {name} log ---\n{}",
                    fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = self.lb_decap(&["cleanup"]);
        let _ = fs::remove_dir_all(&self.pin_dir);
        for ns in [&self.balancer, &self.backend] {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The lb-decap binary: `$LB_DECAP_BIN`, or next to the test binary.
pub fn decap_binary() -> anyhow::Result<PathBuf> {
    crate::lab::workspace_binary("lb-decap", "LB_DECAP_BIN", "lb-decap")
}

fn enter(netns: &Path) -> anyhow::Result<()> {
    let file = fs::File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    // SAFETY: setns on a namespace fd affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "setns {}: {}",
            netns.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn ip(netns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

fn sysctl(netns: &str, key: &str, value: &str) -> anyhow::Result<()> {
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
