//! Starting and stopping each system on the LB node: lbd in each mode
//! (its config written here), the bare XDP forwarder, HAProxy and nginx
//! `stream`; where they send, and the NAT addresses of the routed pass.

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

use super::System;
use crate::lab::{in_netns, Host, Lab, VIP4};

/// The LB node's NAT addresses in the routed lab (on its LB-network leg):
/// `NAT4_SOURCES` of them from this one up, one per lbd start of a pass
/// ([`nat_source`]).
pub(super) const NAT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// How many NAT addresses the routed pass's lbd starts take in turn: each
/// start of a five-round pass (two NAT systems a round) gets its own.
pub(super) const NAT4_SOURCES: u32 = 10;

/// The NAT address slot of `system`'s start in round `round`: the routed
/// pass starts two NAT-mode lbds a round.
pub(super) fn nat_slot(system: System, round: u32) -> u32 {
    round * 2 + u32::from(system == System::LbdNatTc)
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
pub(super) fn nat_source(slot: u32) -> Ipv4Addr {
    let [a, b, c, d] = NAT4.octets();
    Ipv4Addr::new(a, b, c, d + (slot % NAT4_SOURCES) as u8)
}

/// Where the systems send: the backends' addresses and port.
pub(crate) struct Target {
    backends: Vec<String>,
    pub(super) port: u16,
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
    system: System,
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
    system: System,
    name: &str,
    target: &Target,
    lbd_extra: &str,
) -> anyhow::Result<Running> {
    start_with_nat_source(lab, system, name, target, lbd_extra, NAT4)
}

/// [`start_named`] with `nat_source` as a NAT-mode lbd's NAT address.
fn start_with_nat_source(
    lab: &mut Lab,
    system: System,
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
        System::Direct => Ok(Running::Nothing),
        System::Lbd | System::LbdNat | System::LbdNatTc | System::LbdIpip | System::LbdGue => {
            let nat = matches!(system, System::LbdNat | System::LbdNatTc);
            let tunnel = match system {
                System::LbdIpip => Some("ipip"),
                System::LbdGue => Some("gue"),
                _ => None,
            };
            let attach = if system == System::LbdNatTc {
                "tc"
            } else {
                "xdp"
            };
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
        System::XdpForward => {
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
                program.attach("eth0", XdpMode::Driver)?;
                Ok(dataplane)
            })??;
            Ok(Running::Xdp(Box::new(dataplane)))
        }
        System::Haproxy => {
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
        System::NginxStream => {
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
