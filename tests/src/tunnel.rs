//! The tunnel lab (issue 13): the routed lab with backends that serve the
//! VIPs themselves (`Topology::routed_tunnel`) and run `lb-decap`, and
//! lbd configs with tunnelled VIPs (`forwarding = "ipip"` or `"gue"`).
//! The topology tests and the end-to-end benchmark share these, so both
//! run the backends' decap and lbd exactly alike.

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    decaplab::decap_binary,
    lab::{Host, Lab, HTTP_PORT, VIP4, VIP6},
};

/// A second IPv4 VIP, served over IPv6 backends (4in6); the backends hold
/// it on `lo` beside the lab's VIPs.
pub const VIP4_IN6: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
/// Prefix lbd takes outer IPv4 sources from (`[tunnel] source_ipv4`).
pub const SOURCE4: &str = "198.18.200.0/24";
/// Prefix lbd takes outer IPv6 sources from (`[tunnel] source_ipv6`).
pub const SOURCE6: &str = "2001:2:0:f0::/64";
/// The GUE port of the lab (lbd's default).
pub const GUE_PORT: u16 = lb_common::tunnel::GUE_PORT_DEFAULT;

/// One tunnelled VIP: its address and whether its backends are addressed
/// by IPv6 (4in6 for an IPv4 VIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelVip {
    /// The VIP (port `HTTP_PORT`, TCP).
    pub address: IpAddr,
    /// Backends by their IPv6 address.
    pub v6_backends: bool,
}

impl TunnelVip {
    /// IPv4 in IPv4.
    pub const V4: Self = Self {
        address: IpAddr::V4(VIP4),
        v6_backends: false,
    };
    /// IPv6 in IPv6.
    pub const V6: Self = Self {
        address: IpAddr::V6(VIP6),
        v6_backends: true,
    };
    /// IPv4 in IPv6.
    pub const V4_IN_6: Self = Self {
        address: IpAddr::V4(VIP4_IN6),
        v6_backends: true,
    };

    /// A backend's address as this VIP names it.
    pub fn backend_address(&self, backend: &Host) -> IpAddr {
        if self.v6_backends {
            IpAddr::V6(backend.ipv6)
        } else {
            IpAddr::V4(backend.ipv4)
        }
    }

    /// A short name for messages (`4in4`, `6in6`, `4in6`).
    pub fn label(&self) -> &'static str {
        match (self.address.is_ipv4(), self.v6_backends) {
            (true, false) => "4in4",
            (true, true) => "4in6",
            (false, _) => "6in6",
        }
    }
}

/// What differs between lbd configs of the tunnel lab.
#[derive(Debug, Clone)]
pub struct TunnelSpec {
    /// `attach`: "xdp" or "tc".
    pub attach: String,
    /// `forwarding`: "ipip" or "gue".
    pub forwarding: String,
    /// The VIPs.
    pub vips: Vec<TunnelVip>,
    /// Backends of every VIP (names such as "b1").
    pub backends: Vec<String>,
    /// HTTP health checks of `/health` (else `check = "none"`).
    pub health: bool,
    /// Those checks sent through the tunnel to the VIP.
    pub through_tunnel: bool,
    /// VRRP with this peer and priority (an instance per VIP family,
    /// state sync on the IPv4 one's channel).
    pub vrrp: Option<(Host, u8)>,
}

impl TunnelSpec {
    /// `forwarding` at `attach`, the 4in4 and 6in6 VIPs over `backends`,
    /// no checks, no VRRP.
    pub fn new(attach: &str, forwarding: &str, backends: &[&str]) -> Self {
        Self {
            attach: attach.to_owned(),
            forwarding: forwarding.to_owned(),
            vips: vec![TunnelVip::V4, TunnelVip::V6],
            backends: backends.iter().map(|b| (*b).to_owned()).collect(),
            health: false,
            through_tunnel: false,
            vrrp: None,
        }
    }
}

/// lbd's config for `node` of the tunnel lab.
pub fn lbd_config(lab: &Lab, node: &Host, spec: &TunnelSpec) -> anyhow::Result<String> {
    let mut config = format!(
        "interface = \"eth0\"\nattach = \"{}\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\nmetrics_listen = \"off\"\n\n\
         [tunnel]\ngue_port = {GUE_PORT}\nsource_ipv4 = \"{SOURCE4}\"\nsource_ipv6 = \"{SOURCE6}\"\n",
        spec.attach,
        lab.admin_socket_of(node).display(),
    );
    for vip in &spec.vips {
        config.push_str(&format!(
            "\n[[vip]]\naddress = \"{}\"\nport = {HTTP_PORT}\nprotocol = \"tcp\"\nforwarding = \"{}\"\n",
            vip.address, spec.forwarding
        ));
        if spec.health {
            config.push_str(&format!(
                "[vip.health]\ncheck = \"http\"\npath = \"/health\"\nthrough_tunnel = {}\n\
                 interval_ms = 300\nfast_interval_ms = 100\ntimeout_ms = 200\nrise = 1\nfall = 2\n",
                spec.through_tunnel
            ));
        } else {
            config.push_str("[vip.health]\ncheck = \"none\"\n");
        }
        for name in &spec.backends {
            let host = lab
                .backends
                .iter()
                .find(|b| &b.name == name)
                .with_context(|| format!("no backend {name} in the lab"))?;
            config.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{}\"\n",
                vip.backend_address(host)
            ));
        }
    }
    if let Some((peer, priority)) = &spec.vrrp {
        let key = lab.dir.join("sync.key");
        if !key.exists() {
            fs::write(&key, "lab-sync-key-0123456789abcdef\n")?;
        }
        let v4: Vec<String> = spec
            .vips
            .iter()
            .filter(|v| v.address.is_ipv4())
            .map(|v| format!("\"{}\"", v.address))
            .collect();
        let v6: Vec<String> = spec
            .vips
            .iter()
            .filter(|v| v.address.is_ipv6())
            .map(|v| format!("\"{}\"", v.address))
            .collect();
        config.push_str(&format!(
            "\n[[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\npreempt = true\n\
             announce_count = 3\naddresses = [{}]\n\
             sync_listen = \"{}:7540\"\nsync_peer = \"{}:7540\"\nsync_key_file = \"{}\"\n",
            v4.join(", "),
            node.ipv4,
            peer.ipv4,
            key.display()
        ));
        if !v6.is_empty() {
            config.push_str(&format!(
                "\n[[vrrp]]\nvrid = 52\npriority = {priority}\nadvert_interval_ms = 100\npreempt = true\n\
                 announce_count = 3\naddresses = [{}]\n",
                v6.join(", ")
            ));
        }
    }
    Ok(config)
}

/// The tunnel lab: `Topology::routed_tunnel` with `lbs` LB nodes (one:
/// the VIPs statically on its interface; more: left to VRRP) and
/// `backends` backends, each holding `VIP4_IN6` on `lo` too and running
/// lb-decap for every VIP at XDP. Returns once every nginx answers.
pub fn start_lab(lbs: usize, backends: usize) -> anyhow::Result<Lab> {
    let mut lab = Lab::start_topology(crate::topology::Topology::routed_tunnel(
        lbs,
        backends,
        lbs == 1,
    ))
    .context("tunnel lab")?;
    if lbs == 1 {
        crate::lab::run(
            "ip",
            &[
                "-n",
                &lab.lb.netns,
                "addr",
                "add",
                &format!("{VIP4_IN6}/32"),
                "dev",
                "eth0",
            ],
        )?;
    }
    for backend in lab.backends.clone() {
        crate::lab::run(
            "ip",
            &[
                "-n",
                &backend.netns,
                "addr",
                "add",
                &format!("{VIP4_IN6}/32"),
                "dev",
                "lo",
            ],
        )?;
        start_decap(&mut lab, &backend)?;
    }
    lab.wait_for_backends()?;
    Ok(lab)
}

/// Names of `backend`'s lb-decap processes: `decap-<name>`, then
/// `decap-<name>.2`, ... for each restart (the lab keeps every process it
/// started under its name): (the latest started, if any; the next one).
fn decap_names(lab: &Lab, backend: &Host) -> (Option<String>, String) {
    let name = |i: u32| match i {
        1 => format!("decap-{}", backend.name),
        i => format!("decap-{}.{i}", backend.name),
    };
    let mut i = 1;
    while lab.dir.join(format!("{}.log", name(i))).exists() {
        i += 1;
    }
    ((i > 1).then(|| name(i - 1)), name(i))
}

/// The config file of `backend`'s lb-decap.
fn decap_config_path(lab: &Lab, backend: &Host) -> PathBuf {
    lab.dir.join(format!("decap-{}.toml", backend.name))
}

/// The config file of `backend`'s lb-decap: its own addresses, lbd's
/// tunnel source prefixes as `sources` (as production should: only the
/// balancers' packets are unwrapped), every VIP of the lab, IPIP and GUE
/// on `GUE_PORT`.
fn decap_config(backend: &Host) -> String {
    decap_config_with(backend, &[SOURCE4, SOURCE6])
}

/// [`decap_config`] with `sources` as lb-decap's `sources`.
fn decap_config_with(backend: &Host, sources: &[&str]) -> String {
    let sources: Vec<String> = sources.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "interface = \"eth0\"\nattach = \"xdp\"\nipip = true\ngue = true\ngue_port = {GUE_PORT}\n\
         addresses = [\"{}\", \"{}\"]\n\
         sources = [{}]\n\
         vips = [\"{VIP4}:{HTTP_PORT}/tcp\", \"[{VIP6}]:{HTTP_PORT}/tcp\", \"{VIP4_IN6}:{HTTP_PORT}/tcp\"]\n",
        backend.ipv4,
        backend.ipv6,
        sources.join(", "),
    )
}

/// Makes `backend`'s lb-decap allow only `sources` (prefixes): its config
/// file rewritten (the running lb-decap applies it again whenever it
/// does) and applied now (`lb-decap apply`), for a test whose lbd takes
/// the outer sources of a family from its interface, not a prefix.
pub fn set_decap_sources(lab: &Lab, backend: &Host, sources: &[&str]) -> anyhow::Result<()> {
    let path = decap_config_path(lab, backend);
    fs::write(&path, decap_config_with(backend, sources))?;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &backend.netns])
        .arg(decap_binary()?)
        .arg("apply")
        .arg("--config")
        .arg(&path)
        .args(["--pin-dir", &decap_pin_dir(lab, backend)])
        .stdin(std::process::Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "lb-decap apply on {}: {}",
            backend.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Where `backend`'s lb-decap pins (on the labs' BPF filesystem, under
/// the lab's prefix, so the lab's teardown and sweep remove it).
pub fn decap_pin_dir(lab: &Lab, backend: &Host) -> String {
    format!(
        "{}-decap",
        lab.pin_dir_of(backend)
            .to_string_lossy()
            .trim_end_matches('/')
    )
}

/// Runs `lb-decap <command> --pin-dir <backend's>` in `backend`'s
/// namespace to its end; its stdout, or an error with its stderr. (The
/// pin directory goes after the subcommand: clap refuses it before one.)
pub fn decap_command(lab: &Lab, backend: &Host, command: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &backend.netns])
        .arg(decap_binary()?)
        .arg(command)
        .args(["--pin-dir", &decap_pin_dir(lab, backend)])
        .stdin(std::process::Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "lb-decap {command} on {}: {}",
            backend.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `backend`'s lb-decap counters (`lb-decap status`), by name.
pub fn decap_counters(lab: &Lab, backend: &Host) -> anyhow::Result<BTreeMap<String, u64>> {
    let text = decap_command(lab, backend, "status")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("counter ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect())
}

/// Starts `lb-decap run` on `backend` (process `decap-<name>`); returns
/// once its program is attached to `eth0` and it says it runs.
pub fn start_decap(lab: &mut Lab, backend: &Host) -> anyhow::Result<u32> {
    let (_, name) = decap_names(lab, backend);
    let path = decap_config_path(lab, backend);
    fs::write(&path, decap_config(backend))?;
    let binary = decap_binary()?;
    let pins = decap_pin_dir(lab, backend);
    let pid = lab.spawn(
        &name,
        &backend.netns,
        &binary.to_string_lossy(),
        &[
            "run",
            "--pin-dir",
            &pins,
            "--config",
            &path.to_string_lossy(),
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(lab.xdp_attached(backend)? && lab.log(&name).contains("running;")) {
        if !lab.is_running(&name) {
            bail!("{name} exited during start-up:\n{}", lab.log(&name));
        }
        if Instant::now() > deadline {
            bail!("{name} did not attach within 20 s:\n{}", lab.log(&name));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(pid)
}

/// Adds `address` (with its prefix length) to `host`'s `eth0`, without
/// duplicate address detection (usable at once): the newest address,
/// which the kernel lists first.
pub fn add_address(host: &Host, address: &str) -> anyhow::Result<()> {
    crate::lab::run(
        "ip",
        &[
            "-n",
            &host.netns,
            "addr",
            "add",
            address,
            "dev",
            "eth0",
            "nodad",
        ],
    )
}

/// Stops `backend`'s lb-decap for good: the process ends (leaving its
/// program attached, by design) and `lb-decap cleanup` detaches it, so
/// tunnelled packets reach the backend's stack still wrapped (and, with no
/// tunnel modules, go nowhere).
pub fn stop_decap(lab: &mut Lab, backend: &Host) -> anyhow::Result<()> {
    let (Some(name), _) = decap_names(lab, backend) else {
        bail!("no lb-decap was started on {}", backend.name);
    };
    lab.interrupt(&name)?;
    decap_command(lab, backend, "cleanup")?;
    if lab.xdp_attached(backend)? {
        bail!("lb-decap's program is still attached on {}", backend.name);
    }
    Ok(())
}
