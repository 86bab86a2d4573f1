//! End to end in the namespace lab: the same client (wrk), the same nginx
//! backends, side by side in one run, interleaved round by round so drift
//! on a shared machine cancels out: direct to one backend, lbd's XDP data
//! plane, a bare MAC-rewrite + XDP_TX forwarder over the same backends,
//! HAProxy `mode tcp` and nginx `stream`, each with keep-alive connections
//! and with a new connection per request. The routed lab compares NAT mode
//! with HAProxy; the tunnel comparison puts lbd's `ipip` and `gue` beside
//! `dsr-l2` and HAProxy.

use std::{
    fs,
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};
use aya::{maps::Array, programs::XdpMode};
use lb_common::consts::names;
use lb_userspace::dataplane::{Dataplane, MapSizes};
use serde::{Deserialize, Serialize};

use super::Spread;
use crate::lab::{in_netns, Host, Lab, VIP4};

/// One system in one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2eCase {
    /// direct (one backend), lbd, xdp-forward (bare MAC rewrite by source
    /// port over the same backends), haproxy, nginx-stream.
    pub system: String,
    /// keep-alive or new-connection.
    pub mode: String,
    /// Requests per second.
    pub rps: Spread,
    /// Median latency, ms.
    pub p50_ms: Spread,
    /// 99th percentile latency, ms.
    pub p99_ms: Spread,
    /// Whole machine busy during the run, % of all CPUs.
    pub cpu_busy_pct: Spread,
    /// Of which softirq (where XDP and the kernel network path run), %.
    pub softirq_pct: Spread,
    /// CPU seconds of the proxy's own processes per second of run (HAProxy,
    /// nginx stream; zero for the kernel data paths).
    pub proxy_cpu: Spread,
    /// Of the machine's CPU, the share its `ksoftirqd/N` threads ran, %
    /// (None in older results): softirq work the kernel deferred to the
    /// per-CPU thread because it had run too long inline. That work cannot
    /// move to another CPU, so a high share next to idle time means the
    /// path waited on one CPU's backlog while the other had nothing to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ksoftirqd_pct: Option<Spread>,
    /// Requests/s of each round, in order (empty in older results): the
    /// systems ran round by round, so they compare within each round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rps_per_round: Vec<f64>,
    /// Loss during each round's run, in order (None in older results):
    /// what a requests/s figure alone would hide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_per_round: Option<Vec<Loss>>,
}

/// What one run lost: packets lbd's data plane dropped (its `drop_*`
/// verdicts; 0 for every other system, which has no such counters) and
/// TCP segments the client and the backends retransmitted (any system's
/// loss, wherever it happened, shows here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Packets lbd dropped.
    pub lb_drops: u64,
    /// Segments retransmitted by the client and the backends.
    pub retransmits: u64,
}

impl E2eCase {
    /// The loss summed over the rounds, if measured.
    pub fn total_loss(&self) -> Option<Loss> {
        self.loss_per_round.as_ref().map(|rounds| Loss {
            lb_drops: rounds.iter().map(|l| l.lb_drops).sum(),
            retransmits: rounds.iter().map(|l| l.retransmits).sum(),
        })
    }
}

impl E2eResults {
    /// Requests/s of `system` over those of `other` in `mode`: the median
    /// of the rounds' ratios (each round ran every system in turn), or,
    /// for older results, the ratio of the medians. None when either was
    /// not measured.
    pub fn ratio(&self, system: &str, other: &str, mode: &str) -> Option<f64> {
        let case = |s: &str| self.cases.iter().find(|c| c.system == s && c.mode == mode);
        let (a, b) = (case(system)?, case(other)?);
        if a.rps_per_round.len() == b.rps_per_round.len() && !a.rps_per_round.is_empty() {
            let ratios: Vec<f64> = a
                .rps_per_round
                .iter()
                .zip(&b.rps_per_round)
                .filter(|(_, b)| **b > 0.0)
                .map(|(a, b)| a / b)
                .collect();
            return (!ratios.is_empty()).then(|| Spread::of(&ratios).median);
        }
        (b.rps.median > 0.0).then(|| a.rps.median / b.rps.median)
    }
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2eResults {
    /// Seconds per wrk run.
    pub seconds: u32,
    /// wrk connections.
    pub connections: u32,
    /// wrk threads.
    pub threads: u32,
    /// Rounds.
    pub rounds: u32,
    /// The cases.
    pub cases: Vec<E2eCase>,
}

const SYSTEMS: &[&str] = &["direct", "lbd", "xdp-forward", "haproxy", "nginx-stream"];
/// The routed lab's systems: both serve unmodified, routed backends.
const ROUTED_SYSTEMS: &[&str] = &["direct", "lbd-nat", "lbd-nat-tc", "haproxy"];
/// The tunnel comparison's systems (`lbd` is `dsr-l2`).
const TUNNEL_SYSTEMS: &[&str] = &["direct", "lbd", "lbd-ipip", "lbd-gue", "haproxy"];
const MODES: &[&str] = &["keep-alive", "new-connection"];
/// The LB node's NAT addresses in the routed lab (on its LB-network leg):
/// `NAT4_SOURCES` of them from this one up, one per lbd start of a pass
/// ([`nat_source`]).
const NAT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// How many NAT addresses the routed pass's lbd starts take in turn: each
/// start of a five-round pass (two NAT systems a round) gets its own.
const NAT4_SOURCES: u32 = 10;

/// The NAT address slot of `system`'s start in round `round`: the routed
/// pass starts two NAT-mode lbds a round.
fn nat_slot(system: &str, round: u32) -> u32 {
    round * 2 + u32::from(system == "lbd-nat-tc")
}

/// The NAT address of the routed pass's lbd start `slot`. Each start is a
/// fresh lbd with an empty NAT table; had two starts shared an address,
/// the second would hand out ports whose (NAT address, port, backend)
/// the backends still hold in TIME_WAIT from the first one's flows (60 s
/// on Linux). Such a SYN carries another client connection's timestamps
/// (Linux clients start every connection's timestamps from an unrelated
/// value), so a backend's PAWS check drops about half of them as old
/// duplicates (`PAWSTimewait`) and the client retries after 1 s. Seen in
/// the bench as 5-10 SYN retransmissions per new-connection run of the
/// second lbd, each stalling a connection for a second. One lbd's own
/// table (kept across its restarts by the pins, across failovers by
/// replication) holds a flow closed by FINs, and its port, as long as the
/// backends' TIME_WAIT (`tcp_time_wait_timeout_s`); a fresh lbd next to
/// a previous instance's TIME_WAITs is what the bench did on every run.
fn nat_source(slot: u32) -> Ipv4Addr {
    let [a, b, c, d] = NAT4.octets();
    Ipv4Addr::new(a, b, c, d + (slot % NAT4_SOURCES) as u8)
}

/// Where the systems send: the backends' addresses and port.
pub(crate) struct Target {
    backends: Vec<String>,
    port: u16,
}

impl Target {
    /// The lab's backends on `port`.
    pub(crate) fn of(lab: &Lab, port: u16) -> Self {
        Self {
            backends: lab.backends.iter().map(|b| b.ipv4.to_string()).collect(),
            port,
        }
    }
}

struct Sample {
    rps: f64,
    p50: f64,
    p99: f64,
    busy: f64,
    softirq: f64,
    ksoftirqd: f64,
    proxy_cpu: f64,
    loss: Loss,
}

/// CPU jiffies: (total, idle+iowait, softirq).
pub(crate) fn cpu() -> (u64, u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    (fields.iter().sum(), get(3) + get(4), get(6))
}

/// The pids of the kernel's `ksoftirqd/N` threads (none where `/proc`
/// shows another pid namespace: the column then reads 0).
fn ksoftirqd_pids() -> Vec<u32> {
    ksoftirqd_pids_in(std::path::Path::new("/proc"))
}

fn ksoftirqd_pids_in(proc: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(proc.join(pid.to_string()).join("comm"))
                .is_ok_and(|comm| comm.starts_with("ksoftirqd/"))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The TCP segments the lab's client and backends have retransmitted so
/// far (`TcpRetransSegs` of their namespaces, summed).
fn retransmitted(lab: &Lab) -> anyhow::Result<u64> {
    let mut total = 0;
    for host in std::iter::once(&lab.client).chain(&lab.backends) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.netns,
                "nstat",
                "-asz",
                "TcpRetransSegs",
            ])
            .output()
            .context("running nstat (Debian package iproute2)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("TcpRetransSegs"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                anyhow!(
                    "no TcpRetransSegs in nstat's output for {}:\n{text}",
                    host.name
                )
            })?;
        total += value;
    }
    Ok(total)
}

/// The packets the lbd of `running` has dropped so far (its `drop_*`
/// verdict counters, summed over CPUs and reasons); 0 for any other
/// system.
fn lb_drops(lab: &Lab, running: &Running) -> anyhow::Result<u64> {
    let Running::Process(name, _) = running else {
        return Ok(0);
    };
    if !name.starts_with("lbd") {
        return Ok(0);
    }
    // The socket `start_named` configured.
    let status = crate::lab::status_at(&lab.dir.join(name).join("lbd.sock"))?;
    Ok(status
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with("drop_"))
        .map(|(_, value)| value)
        .sum())
}

/// utime + stime of `pids` and their threads, in clock ticks.
fn process_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let f: Vec<u64> = after
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // utime, stime, cutime, cstime are fields 14-17 (1-based).
            f.get(10).copied().unwrap_or(0)
                + f.get(11).copied().unwrap_or(0)
                + f.get(12).copied().unwrap_or(0)
                + f.get(13).copied().unwrap_or(0)
        })
        .sum()
}

fn parse_ms(text: &str) -> Option<f64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

/// Runs wrk from the lab's client against `url` (`close`: a new
/// connection per request): (requests/s, p50 ms, p99 ms).
pub(crate) fn wrk(
    lab: &Lab,
    url: &str,
    close: bool,
    seconds: u32,
    threads: u32,
    connections: u32,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut args = vec![
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".to_owned(),
        "--timeout".to_owned(),
        "2s".to_owned(),
    ];
    if close {
        args.push("-H".to_owned());
        args.push("Connection: close".to_owned());
    }
    args.push(url.to_owned());
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.client.netns, "wrk"])
        .args(&args)
        .output()
        .context("running wrk (Debian package wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk's output:\n{text}"))?;
    let percentile = |p: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p).map(str::trim).and_then(parse_ms))
            .unwrap_or(0.0)
    };
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("bench: wrk reported errors for {url}:\n{text}");
    }
    Ok((rps, percentile("50%"), percentile("99%")))
}

/// A new connection per request at tens of thousands a second leaves
/// TIME_WAIT sockets behind on whichever side closes; without these the
/// lab, not the systems, sets the pace after the first runs.
pub(crate) fn tune_for_new_connections(lab: &Lab) -> anyhow::Result<()> {
    let sysctl = |netns: &str, setting: &str| {
        Command::new("ip")
            .args(["netns", "exec", netns, "sysctl", "-qw", setting])
            .status()
    };
    sysctl(&lab.client.netns, "net.ipv4.ip_local_port_range=1024 65000")?;
    sysctl(&lab.client.netns, "net.ipv4.tcp_tw_reuse=1")?;
    for host in lab.backends.iter().chain(&lab.lbs) {
        sysctl(&host.netns, "net.ipv4.tcp_max_tw_buckets=4096")?;
    }
    Ok(())
}

/// A system started on the LB node ([`start`]): what to stop afterwards.
pub(crate) enum Running {
    /// Nothing (direct to a backend).
    Nothing,
    /// A lab process by name, and the pids whose CPU counts.
    Process(String, Vec<u32>),
    /// A bare XDP program, detached when dropped.
    Xdp(Box<Dataplane>),
}

/// Starts `system` on the LB node (round `round`: its files apart);
/// returns the pids whose CPU counts, and what to stop afterwards.
pub(crate) fn start(
    lab: &mut Lab,
    system: &str,
    round: u32,
    target: &Target,
) -> anyhow::Result<Running> {
    start_with_nat_source(
        lab,
        system,
        &format!("{system}-r{round}"),
        target,
        "",
        nat_source(nat_slot(system, round)),
    )
}

/// [`start`] as process `name` (its files apart; an lbd's name starts
/// with `lbd`), with `lbd_extra` appended to an lbd's config (e.g. a
/// `[[limit]]`).
pub(crate) fn start_named(
    lab: &mut Lab,
    system: &str,
    name: &str,
    target: &Target,
    lbd_extra: &str,
) -> anyhow::Result<Running> {
    start_with_nat_source(lab, system, name, target, lbd_extra, NAT4)
}

/// [`start_named`] with `nat_source` as a NAT-mode lbd's NAT address.
fn start_with_nat_source(
    lab: &mut Lab,
    system: &str,
    name: &str,
    target: &Target,
    lbd_extra: &str,
    nat_source: Ipv4Addr,
) -> anyhow::Result<Running> {
    let lb = lab.lb.clone();
    let name = name.to_owned();
    let dir = lab.dir.join(&name);
    fs::create_dir_all(&dir)?;
    let (backends, port) = (&target.backends, target.port);
    match system {
        "direct" => Ok(Running::Nothing),
        "lbd" | "lbd-nat" | "lbd-nat-tc" | "lbd-ipip" | "lbd-gue" => {
            let nat = system.starts_with("lbd-nat");
            let tunnel = system
                .strip_prefix("lbd-")
                .filter(|m| ["ipip", "gue"].contains(m));
            let attach = if system == "lbd-nat-tc" { "tc" } else { "xdp" };
            let mut config = format!(
                "interface = \"eth0\"\nattach = \"{attach}\"\nadmin_socket = \"{}/lbd.sock\"\nmetrics_listen = \"off\"\n",
                dir.display()
            );
            if nat {
                config.push_str(&format!("[nat]\nsource_ipv4 = \"{nat_source}\"\n"));
            }
            if tunnel.is_some() {
                config.push_str(&format!(
                    "[tunnel]\nsource_ipv4 = \"{}\"\n",
                    crate::tunnel::SOURCE4
                ));
            }
            config.push_str(&format!("\n[[vip]]\naddress = \"{VIP4}\"\nport = 80\n"));
            if nat {
                config.push_str("forwarding = \"nat\"\n");
            }
            if let Some(mode) = tunnel {
                config.push_str(&format!("forwarding = \"{mode}\"\n"));
            }
            for b in backends {
                config.push_str(&format!("  [[vip.backend]]\n  address = \"{b}\"\n"));
                if nat {
                    config.push_str(&format!("  port = {port}\n"));
                }
            }
            config.push_str(lbd_extra);
            let pid = lab.start_lbd_on(&lb, &name, &config)?;
            Ok(Running::Process(name, vec![pid]))
        }
        "xdp-forward" => {
            let mut macs = vec![own_mac(&lb)?];
            for backend in lab.backends.iter().take(4) {
                macs.push(neighbour_mac(&lb, backend)?);
            }
            let dataplane = in_netns(&lb.netns, move || -> anyhow::Result<Dataplane> {
                let mut dataplane = Dataplane::load(MapSizes {
                    max_vips: 1,
                    conntrack: 1024,
                    nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
                    half_open: 1024,
                })?;
                let mut map: Array<&mut aya::maps::MapData, [u8; 6]> = Array::try_from(
                    dataplane
                        .ebpf_mut()
                        .map_mut(names::MAP_BENCH_FORWARD)
                        .ok_or_else(|| anyhow!("no forward map"))?,
                )?;
                for (slot, mac) in (0u32..).zip(macs) {
                    map.set(slot, mac, 0)?;
                }
                let program = dataplane.program(names::PROG_FORWARD_ONE)?;
                program.load()?;
                program.attach("eth0", XdpMode::Driver)?;
                Ok(dataplane)
            })??;
            Ok(Running::Xdp(Box::new(dataplane)))
        }
        "haproxy" => {
            let mut config = format!(
                "global\n  nbthread 2\n  maxconn 8000\n  pidfile {d}/haproxy.pid\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend fe\n  bind {VIP4}:80\n  default_backend be\nbackend be\n  balance roundrobin\n",
                d = dir.display()
            );
            for (i, b) in backends.iter().enumerate() {
                config.push_str(&format!("  server b{} {b}:{port}\n", i + 1));
            }
            let path = dir.join("haproxy.cfg");
            fs::write(&path, config)?;
            let pid = lab.spawn(
                &name,
                &lb.netns,
                "haproxy",
                &["-db", "-f", &path.to_string_lossy()],
            )?;
            wait_listening(&lb).with_context(|| lab.log(&name))?;
            Ok(Running::Process(name, vec![pid]))
        }
        "nginx-stream" => {
            let d = dir.display();
            let mut upstream = String::new();
            for b in backends {
                upstream.push_str(&format!("    server {b}:{port};\n"));
            }
            let config = format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\ndaemon off;\nuser root;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 20000; }}\nstream {{\n  upstream be {{\n{upstream}  }}\n  server {{ listen {VIP4}:80; proxy_pass be; }}\n}}\n"
            );
            let path = dir.join("nginx.conf");
            fs::write(&path, config)?;
            let pid = lab.spawn(
                &name,
                &lb.netns,
                "nginx",
                &["-c", &path.to_string_lossy(), "-p", &d.to_string()],
            )?;
            wait_listening(&lb).with_context(|| lab.log(&name))?;
            // The workers do the proxying: count them too.
            std::thread::sleep(Duration::from_millis(200));
            let mut pids = vec![pid];
            if let Ok(children) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
                pids.extend(
                    children
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
            Ok(Running::Process(name, pids))
        }
        other => bail!("unknown system {other}"),
    }
}

/// Stops what [`start`] started.
pub(crate) fn stop(lab: &mut Lab, running: Running) -> anyhow::Result<()> {
    match running {
        Running::Nothing => {}
        Running::Process(name, _) if name.starts_with("lbd") => {
            // SIGINT: lbd detaches (SIGTERM would leave it forwarding).
            lab.interrupt(&name)?;
        }
        Running::Process(name, _) => {
            // SIGTERM, the proxies' documented immediate stop (HAProxy once
            // outlived the 10 s wait after a SIGINT).
            lab.terminate(&name)?;
        }
        Running::Xdp(dataplane) => drop(dataplane),
    }
    Ok(())
}

fn wait_listening(lb: &Host) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", &lb.netns, "ss", "-ltn"])
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP4}:80")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {VIP4}:80 on the LB node")
}

fn own_mac(node: &Host) -> anyhow::Result<[u8; 6]> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node.netns,
            "cat",
            "/sys/class/net/eth0/address",
        ])
        .output()?;
    parse_mac(String::from_utf8_lossy(&out.stdout).trim())
}

fn neighbour_mac(from: &Host, to: &Host) -> anyhow::Result<[u8; 6]> {
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &from.netns,
            "ping",
            "-c1",
            "-W1",
            &to.ipv4.to_string(),
        ])
        .output();
    let out = Command::new("ip")
        .args(["-n", &from.netns, "neigh", "show", &to.ipv4.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .ok_or_else(|| anyhow!("no neighbour entry for {}: {text}", to.ipv4))?;
    parse_mac(mac)
}

fn parse_mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let octets: Vec<u8> = text
        .split(':')
        .filter_map(|o| u8::from_str_radix(o, 16).ok())
        .collect();
    octets
        .try_into()
        .map_err(|_| anyhow!("{text:?} is not a MAC"))
}

/// Runs every system in every mode, `rounds` times interleaved, in the
/// L2 lab (DSR).
pub fn run(load: &Load) -> anyhow::Result<E2eResults> {
    let mut lab = Lab::start(3).context("lab")?;
    lab.wait_for_backends()?;
    let target = Target::of(&lab, 80);
    measure(&mut lab, SYSTEMS, &target, load)
}

/// The routed lab's comparison: lbd in NAT mode against HAProxy `mode
/// tcp`, both in front of the same unmodified backends behind a router
/// (and direct to one of them), interleaved as `run` does.
pub fn run_routed(load: &Load) -> anyhow::Result<E2eResults> {
    let mut lab = Lab::start_routed(3).context("routed lab")?;
    for slot in 0..NAT4_SOURCES {
        let address = nat_source(slot);
        let status = Command::new("ip")
            .args([
                "-n",
                &lab.lb.netns,
                "addr",
                "add",
                &format!("{address}/32"),
                "dev",
                "eth0",
            ])
            .status()?;
        if !status.success() {
            bail!("adding the NAT address {address} to the LB node failed");
        }
    }
    lab.wait_for_backends()?;
    let target = Target::of(&lab, crate::topology::ROUTED_BACKEND_PORT);
    measure(&mut lab, ROUTED_SYSTEMS, &target, load)
}

/// The tunnel comparison: lbd's `dsr-l2`, `ipip` and `gue` (at XDP) and
/// HAProxy `mode tcp` in front of the same three backends, in one lab and
/// one run, interleaved as `run` does, and direct to one backend. The
/// backends sit on the LB's segment, the only place `dsr-l2` reaches, so
/// every system crosses the same links and only the forwarding differs;
/// they hold the VIP on `lo` and run lb-decap (at XDP) throughout, so the
/// `dsr-l2` and HAProxy rows pay for its pass-through check too, as
/// backends serving both kinds of VIP would.
pub fn run_tunnel(load: &Load) -> anyhow::Result<E2eResults> {
    let mut lab = Lab::start(3).context("lab")?;
    for backend in lab.backends.clone() {
        crate::tunnel::start_decap(&mut lab, &backend)
            .with_context(|| format!("lb-decap on {}", backend.name))?;
    }
    lab.wait_for_backends()?;
    let target = Target::of(&lab, 80);
    let results = measure(&mut lab, TUNNEL_SYSTEMS, &target, load)?;
    // The tunnelled rows measured tunnels: every backend unwrapped both
    // kinds of packet (a system that fell back to something else would
    // leave its counter at zero).
    for backend in &lab.backends {
        let counters = crate::tunnel::decap_counters(&lab, backend)?;
        for name in ["decap_ipip", "decap_gue"] {
            if counters.get(name).copied().unwrap_or(0) == 0 {
                bail!(
                    "{}'s lb-decap unwrapped nothing ({name} is 0): the tunnel rows did not go through tunnels",
                    backend.name
                );
            }
        }
    }
    Ok(results)
}

/// How hard and how long wrk pushes.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Rounds, interleaved system by system.
    pub rounds: u32,
    /// Seconds per wrk run.
    pub seconds: u32,
    /// wrk threads.
    pub threads: u32,
    /// wrk connections.
    pub connections: u32,
}

fn measure(
    lab: &mut Lab,
    systems: &[&str],
    target: &Target,
    load: &Load,
) -> anyhow::Result<E2eResults> {
    let Load {
        rounds,
        seconds,
        threads,
        connections,
    } = *load;
    tune_for_new_connections(lab)?;
    let ticks_per_second = 100.0; // USER_HZ
    let mut samples: Vec<((String, String), Sample)> = Vec::new();
    for round in 0..rounds {
        for system in systems {
            let running = start(lab, system, round, target)?;
            let pids = match &running {
                Running::Process(_, pids) => pids.clone(),
                _ => Vec::new(),
            };
            for mode in MODES {
                let url = if *system == "direct" {
                    format!("http://{}:{}/", lab.backends[0].ipv4, target.port)
                } else {
                    format!("http://{VIP4}/")
                };
                let (drops0, retrans0) = (lb_drops(lab, &running)?, retransmitted(lab)?);
                let (t0, idle0, si0) = cpu();
                let ksoftirqd = ksoftirqd_pids();
                let k0 = process_ticks(&ksoftirqd);
                let p0 = process_ticks(&pids);
                let started = Instant::now();
                let (rps, p50, p99) = wrk(
                    lab,
                    &url,
                    *mode == "new-connection",
                    seconds,
                    threads,
                    connections,
                )?;
                let elapsed = started.elapsed().as_secs_f64();
                let (t1, idle1, si1) = cpu();
                let k1 = process_ticks(&ksoftirqd);
                let loss = Loss {
                    lb_drops: lb_drops(lab, &running)?.saturating_sub(drops0),
                    retransmits: retransmitted(lab)?.saturating_sub(retrans0),
                };
                let total = (t1 - t0).max(1) as f64;
                let sample = Sample {
                    rps,
                    p50,
                    p99,
                    busy: 100.0 * (total - (idle1 - idle0) as f64) / total,
                    softirq: 100.0 * (si1 - si0) as f64 / total,
                    ksoftirqd: 100.0 * k1.saturating_sub(k0) as f64 / total,
                    proxy_cpu: (process_ticks(&pids) - p0) as f64 / ticks_per_second / elapsed,
                    loss,
                };
                eprintln!("bench: e2e round {round} {system:<16} {mode:<15} {rps:>9.0} req/s p50 {p50:.2} ms p99 {p99:.2} ms, {} dropped by lbd, {} retransmitted", loss.lb_drops, loss.retransmits);
                samples.push(((system.to_string(), mode.to_string()), sample));
            }
            stop(lab, running)?;
        }
    }
    let mut cases = Vec::new();
    for system in systems {
        for mode in MODES {
            let of = |f: fn(&Sample) -> f64| {
                Spread::of(
                    &samples
                        .iter()
                        .filter(|((s, m), _)| s == system && m == mode)
                        .map(|(_, x)| f(x))
                        .collect::<Vec<_>>(),
                )
            };
            cases.push(E2eCase {
                system: system.to_string(),
                mode: mode.to_string(),
                rps: of(|s| s.rps),
                p50_ms: of(|s| s.p50),
                p99_ms: of(|s| s.p99),
                cpu_busy_pct: of(|s| s.busy),
                softirq_pct: of(|s| s.softirq),
                proxy_cpu: of(|s| s.proxy_cpu),
                ksoftirqd_pct: Some(of(|s| s.ksoftirqd)),
                rps_per_round: samples
                    .iter()
                    .filter(|((s, m), _)| s == system && m == mode)
                    .map(|(_, x)| x.rps)
                    .collect(),
                loss_per_round: Some(
                    samples
                        .iter()
                        .filter(|((s, m), _)| s == system && m == mode)
                        .map(|(_, x)| x.loss)
                        .collect(),
                ),
            });
        }
    }
    Ok(E2eResults {
        seconds,
        connections,
        threads,
        rounds,
        cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_softirq_threads_count() {
        let proc = std::env::temp_dir().join(format!("lb-proc-{}", std::process::id()));
        for (pid, comm) in [
            ("14", "ksoftirqd/0\n"),
            ("22", "ksoftirqd/1\n"),
            ("30", "kworker/0:1\n"),
            ("31", "wrk\n"),
        ] {
            fs::create_dir_all(proc.join(pid)).unwrap();
            fs::write(proc.join(pid).join("comm"), comm).unwrap();
        }
        fs::create_dir_all(proc.join("net")).unwrap();
        assert_eq!(ksoftirqd_pids_in(&proc), vec![14, 22]);
        fs::remove_dir_all(&proc).unwrap();
        assert!(ksoftirqd_pids_in(&proc).is_empty());
    }

    #[test]
    fn every_nat_start_of_a_five_round_pass_has_its_own_address() {
        let mut seen: Vec<Ipv4Addr> = (0..5)
            .flat_map(|round| {
                ["lbd-nat", "lbd-nat-tc"].map(|system| nat_source(nat_slot(system, round)))
            })
            .collect();
        assert!(seen
            .iter()
            .all(|a| (NAT4..=Ipv4Addr::new(198, 18, 0, 59)).contains(a)));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10);
    }
}
