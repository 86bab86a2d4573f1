//! A two-namespace lab for lb-decap: a "balancer" namespace that
//! encapsulates (no kernel tunnel modules here, so a relay thread reads the
//! client's packets for the VIPs from a TUN device and sends them wrapped
//! in IPIP, IP6IP6, 4in6 or GUE through raw and UDP sockets) and a backend
//! namespace on the other end of a veth, holding the VIPs on `lo`, a TCP
//! service on them and lb-decap. Replies go straight back (DSR). Names
//! carry the prefix `t2-<pid>`; everything is removed on drop.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
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
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{
    decapbed::inner_proto,
    lab::{in_netns, output, run},
};

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
/// A BPF filesystem outside /sys (`ip netns exec` remounts /sys).
const BPFFS: &str = "/run/t2-bpffs";
/// `TUNSETIFF` (linux/if_tun.h).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// How the relay wraps the client's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    /// IPIP / IP6IP6 / 4in6.
    Ipip,
    /// GUE variant 0 (4-byte header).
    Gue0,
    /// GUE variant 1.
    Gue1,
}

/// The relay's current setting: the wrap and the outer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayMode {
    /// Encapsulation.
    pub wrap: Wrap,
    /// Outer IPv6 (else IPv4; IPv6 inner packets always go over IPv6).
    pub outer_v6: bool,
}

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
}

impl DecapLab {
    /// Builds the namespaces, the veth, the relay and the service.
    pub fn start() -> anyhow::Result<Self> {
        let prefix = format!("t2-{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        ensure_bpffs()?;
        let mut lab = Self {
            balancer: format!("{prefix}-lb"),
            backend: format!("{prefix}-be"),
            pin_dir: Path::new(BPFFS).join(format!("{prefix}-decap")),
            prefix,
            dir,
            mode: Arc::new(Mutex::new(RelayMode {
                wrap: Wrap::Ipip,
                outer_v6: false,
            })),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
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
        let (a, b) = (format!("{}a", self.prefix), format!("{}b", self.prefix));
        run(
            "ip",
            &["link", "add", &a, "type", "veth", "peer", "name", &b],
        )?;
        run("ip", &["link", "set", &a, "netns", &lb, "name", "eth0"])?;
        run("ip", &["link", "set", &b, "netns", &be, "name", "eth0"])?;
        for (ns, v4, v6) in [(&lb, BALANCER4, BALANCER6), (&be, BACKEND4, BACKEND6)] {
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
        // The backend: VIPs on lo, no ARP/ND for them, replies to the
        // clients through the balancer's network.
        ip(&be, &["addr", "add", &format!("{VIP4}/32"), "dev", "lo"])?;
        ip(
            &be,
            &["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"],
        )?;
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.eth0.arp_ignore", "1"),
            ("net.ipv4.conf.eth0.arp_announce", "2"),
            ("net.ipv4.conf.all.rp_filter", "2"),
            ("net.ipv4.conf.eth0.rp_filter", "2"),
        ] {
            sysctl(&be, key, value)?;
        }
        ip(
            &be,
            &[
                "route",
                "add",
                "198.18.1.0/24",
                "via",
                &BALANCER4.to_string(),
            ],
        )?;
        ip(
            &be,
            &[
                "-6",
                "route",
                "add",
                "2001:2:0:1::/64",
                "via",
                &BALANCER6.to_string(),
            ],
        )?;
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
            "net.ipv4.conf.eth0.rp_filter",
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
                Ok((open_tun("t2tun")?, Sockets::open()?))
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
            relay(&tun, &sockets, &mode, &stop);
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
            serve(&listeners, &stop);
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
        command
            .args(["netns", "exec", &self.backend])
            .arg(decap_binary()?)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(args);
        Ok(command)
    }

    /// `ip -d link show eth0` in the backend namespace.
    pub fn backend_link(&self) -> anyhow::Result<String> {
        output("ip", &["-n", &self.backend, "-d", "link", "show", "eth0"])
    }

    /// Ids of the programs on the backend's tcx ingress.
    pub fn tc_programs(&self) -> anyhow::Result<Vec<u32>> {
        in_netns(&self.backend, || -> anyhow::Result<Vec<u32>> {
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
}

impl Drop for DecapLab {
    fn drop(&mut self) {
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

/// Sends one line and reads the answer line.
pub fn ask(stream: &mut TcpStream) -> anyhow::Result<String> {
    stream.write_all(b"hello\n")?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut line).context("reading the answer")?;
    if line.is_empty() {
        bail!("connection closed without an answer");
    }
    Ok(line.trim().to_owned())
}

/// The lb-decap binary: `$LB_DECAP_BIN`, or next to the test binary.
pub fn decap_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("LB_DECAP_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("lb-decap"))
        .ok_or_else(|| anyhow!("cannot locate lb-decap next to {}", exe.display()))?;
    if !candidate.exists() {
        bail!(
            "lb-decap not found at {}: build it first (`cargo build -p lb-decap`) or set LB_DECAP_BIN",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// The relay's sockets: raw IPIP/IPv6-in-IP and UDP for GUE, per family.
struct Sockets {
    ipip4: Socket,
    ip6ip6: Socket,
    ip4in6: Socket,
    udp4: Socket,
    udp6: Socket,
}

impl Sockets {
    fn open() -> anyhow::Result<Self> {
        let raw = |domain, proto: i32| {
            Socket::new(domain, Type::RAW, Some(Protocol::from(proto))).context("raw socket")
        };
        Ok(Self {
            ipip4: raw(Domain::IPV4, 4)?,
            ip6ip6: raw(Domain::IPV6, 41)?,
            ip4in6: raw(Domain::IPV6, 4)?,
            udp4: Socket::new(Domain::IPV4, Type::DGRAM, None)?,
            udp6: Socket::new(Domain::IPV6, Type::DGRAM, None)?,
        })
    }

    /// Sends `inner` to the backend as `mode` says.
    fn send(&self, mode: RelayMode, inner: &[u8]) -> std::io::Result<usize> {
        let v6_inner = inner.first().is_some_and(|b| b >> 4 == 6);
        let outer_v6 = mode.outer_v6 || v6_inner;
        let backend: IpAddr = if outer_v6 {
            BACKEND6.into()
        } else {
            BACKEND4.into()
        };
        match mode.wrap {
            Wrap::Ipip => {
                let socket = match (outer_v6, v6_inner) {
                    (false, _) => &self.ipip4,
                    (true, true) => &self.ip6ip6,
                    (true, false) => &self.ip4in6,
                };
                socket.send_to(inner, &SockAddr::from(SocketAddr::new(backend, 0)))
            }
            Wrap::Gue0 | Wrap::Gue1 => {
                let payload = if mode.wrap == Wrap::Gue0 {
                    [vec![0, inner_proto(inner), 0, 0], inner.to_vec()].concat()
                } else {
                    inner.to_vec()
                };
                let socket = if outer_v6 { &self.udp6 } else { &self.udp4 };
                socket.send_to(
                    &payload,
                    &SockAddr::from(SocketAddr::new(backend, GUE_PORT)),
                )
            }
        }
    }
}

fn relay(tun: &OwnedFd, sockets: &Sockets, mode: &Mutex<RelayMode>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        let mut poll = libc::pollfd {
            fd: tun.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, bounded wait.
        if unsafe { libc::poll(&mut poll, 1, 100) } <= 0 {
            continue;
        }
        // SAFETY: reading into our buffer from our fd.
        let n = unsafe { libc::read(tun.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        let current = mode.lock().map(|m| *m).unwrap_or(RelayMode {
            wrap: Wrap::Ipip,
            outer_v6: false,
        });
        // A lost packet is retransmitted by TCP; the test sees failures.
        let _ = sockets.send(current, &buf[..n as usize]);
    }
}

fn serve(listeners: &[TcpListener], stop: &Arc<AtomicBool>) {
    let mut handlers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let mut accepted = false;
        for listener in listeners {
            if let Ok((stream, peer)) = listener.accept() {
                accepted = true;
                let stop = stop.clone();
                handlers.push(std::thread::spawn(move || answer(stream, peer, &stop)));
            }
        }
        if !accepted {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for handler in handlers {
        let _ = handler.join();
    }
}

/// Answers every line with the peer address the service saw.
fn answer(mut stream: TcpStream, peer: SocketAddr, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .is_err()
    {
        return;
    }
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if stream
                    .write_all(
                        format!(
                            "served {} for {}\n",
                            stream
                                .local_addr()
                                .map(|a| a.ip().to_string())
                                .unwrap_or_default(),
                            peer.ip()
                        )
                        .as_bytes(),
                    )
                    .is_err()
                {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
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

/// Creates TUN device `name` (no packet info header) in this thread's
/// namespace.
fn open_tun(name: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain open(2).
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening /dev/net/tun");
    }
    // SAFETY: fd is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut request = [0u8; 40];
    request[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as u16;
    request[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: an ifreq-sized buffer for TUNSETIFF.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, request.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("TUNSETIFF");
    }
    Ok(fd)
}

fn ensure_bpffs() -> anyhow::Result<()> {
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
