//! `lbctl status`: every VIP and backend at a glance.

use lb_userspace::{
    api::{
        client::{Client, ClientError},
        schema::{
            BackendStatus, HealthStatus, ReplicationPeerStatus, ReplicationStatus, Status,
            TunnelStatus, UnreadTraffic, VipStatus,
        },
    },
    config::Attach,
    vip_id::VipId,
};

use crate::{output, Failure};

/// Arguments of `lbctl status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show only this VIP (ADDRESS:PORT[/tcp|udp]).
    vip: Option<VipId>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Refresh like a stats page, with rates (Ctrl-C to stop).
    #[arg(long, conflicts_with = "json")]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "watch")]
    interval: u64,
    /// Stop after this many refreshes with --watch (at least 1). A refresh
    /// lbd does not answer (stopped, restarting) counts too, with no
    /// frame, so the watch ends after about that many intervals whatever
    /// lbd does: exit 5 if lbd did not answer the last one. Without
    /// --count, the watch waits for lbd to answer again.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, requires = "watch")]
    count: Option<u64>,
}

/// A `--count` of refreshes: a whole number, at least 1 (a watch shows
/// its first frame whatever the count, so 0 would not mean "none").
fn parse_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("a watch shows at least 1 refresh".to_owned()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!(
            "{text:?} is not a whole number of refreshes (1 or more)"
        )),
    }
}

/// Prints the status (once, or refreshing with rates).
pub(crate) async fn run(client: &Client, args: &Args) -> Result<(), Failure> {
    if args.watch {
        return watch(client, args).await;
    }
    let status = fetch(client, args.vip).await?;
    if args.json {
        output::json(&status);
        return Ok(());
    }
    print_status(&status);
    Ok(())
}

/// The status, with only `vip` among its VIPs when one is asked for (exit
/// 3 when lbd has no such VIP).
async fn fetch(client: &Client, vip: Option<VipId>) -> Result<Status, Failure> {
    let mut status = client.status().await?;
    if let Some(vip) = vip {
        let wanted = vip.to_string();
        status.vips.retain(|v| v.vip == wanted);
        if status.vips.is_empty() {
            return Err(Failure::new(
                ClientError::EXIT_NOT_FOUND,
                format!("no VIP {wanted}"),
            ));
        }
    }
    Ok(status)
}

/// A rate between two snapshots, per VIP and backend, as shown: `-` with
/// no earlier snapshot to measure from (the first frame, or the first
/// after lbd was not answering) or a counter that either snapshot could
/// not read (see [`Unread`]), never a 0 (or a leap from one) that was not
/// measured.
fn rate(
    now: Option<u64>,
    before: Option<u64>,
    seconds: f64,
    scale: f64,
    decimals: usize,
) -> String {
    match (now, before) {
        (Some(n), Some(b)) => format!(
            "{:.decimals$}",
            n.saturating_sub(b) as f64 / seconds * scale
        ),
        _ => "-".to_owned(),
    }
}

/// The traffic counters a status could not read: those its
/// `traffic_unread` names (an older lbd's only mark), and those marked
/// `traffic_read: false` themselves (as `GET /v1/vips/...` answers carry
/// them, counters and marks in one answer). They show 0 there, which is
/// no count.
#[derive(Clone, Copy)]
struct Unread<'a>(&'a UnreadTraffic);

impl Unread<'_> {
    /// Whether `vip`'s counters were read.
    fn vip(&self, vip: &VipStatus) -> bool {
        vip.traffic_read && !self.0.vips.contains(&vip.vip)
    }

    /// Whether the counters of VIP `vip`'s backend `b` were read.
    fn backend(&self, vip: &str, b: &BackendStatus) -> bool {
        b.traffic_read
            && !self
                .0
                .backends
                .iter()
                .any(|(v, a)| v == vip && *a == b.address)
    }
}

/// Whether some traffic counter of `status` was not read (the tables
/// then end with a note on what their `-` means).
fn any_unread(status: &Status) -> bool {
    !status.traffic_unread.is_empty()
        || status
            .vips
            .iter()
            .any(|v| !v.traffic_read || v.backends.iter().any(|b| !b.traffic_read))
}

/// A counter as the tables show it: `-` when it was not read.
fn counter(value: u64, read: bool) -> String {
    if read {
        value.to_string()
    } else {
        "-".to_owned()
    }
}

/// The address family of a VRRP instance, as the metrics' `family` label
/// has it (that of the addresses it moves, else of its master), for the
/// text: two instances may share a VRID, one per family. Empty when it
/// shows no address.
fn vrrp_family(instance: &lb_userspace::vrrp::driver::InstanceStatus) -> &'static str {
    match instance.addresses.first().or(instance.master.as_ref()) {
        Some(std::net::IpAddr::V4(_)) => " IPv4",
        Some(std::net::IpAddr::V6(_)) => " IPv6",
        None => "",
    }
}

/// A VRRP instance's state, and what a link down or no address to send
/// adverts from means for it (keepalived's FAULT): a backup that will not
/// take over, a master on a dead link, a master about to give its VIPs up.
fn vrrp_state(vrrp: &lb_userspace::vrrp::driver::InstanceStatus) -> String {
    use lb_userspace::vrrp::State;
    match (vrrp.link_down, vrrp.no_source, vrrp.state) {
        (true, _, State::Backup) => "backup (link DOWN: will not take over)".to_owned(),
        (true, _, State::Master) => "master (link DOWN: keeps the VIPs on a dead link)".to_owned(),
        (false, true, State::Backup) => {
            "backup (NO SOURCE address for adverts: will not take over)".to_owned()
        }
        (false, true, State::Master) => {
            "master (NO SOURCE address for adverts: giving the VIPs up)".to_owned()
        }
        (_, _, state) => state.to_string(),
    }
}

/// A VRRP instance in `--watch`.
fn watch_vrrp_line(vrrp: &lb_userspace::vrrp::driver::InstanceStatus) -> String {
    format!(
        "VRRP vrid {}{}: {} (priority {})",
        vrrp.vrid,
        vrrp_family(vrrp),
        vrrp_state(vrrp),
        vrrp.priority
    )
}

/// A VRRP instance in the plain status.
fn vrrp_line(vrrp: &lb_userspace::vrrp::driver::InstanceStatus) -> String {
    let master = vrrp.master.map_or("unknown".to_owned(), |m| m.to_string());
    let ignored: Vec<String> = vrrp
        .ignored
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "VRRP vrid {}{}: {} (priority {} of {}), master {master}, adverts sent {} received {}{}",
        vrrp.vrid,
        vrrp_family(vrrp),
        vrrp_state(vrrp),
        vrrp.priority,
        vrrp.configured_priority,
        vrrp.counters.adverts_sent,
        vrrp.counters.adverts_received,
        if ignored.is_empty() {
            String::new()
        } else {
            format!(", ignored {}", ignored.join(" "))
        }
    )
}

/// A VIP's lines in `--watch`: its rates since `before` (the previous
/// frame, `seconds` ago), then its backends'. `unread` and `unread_before`
/// are the counters the two frames could not read: no rate from those.
fn watch_vip_lines(
    vip: &VipStatus,
    unread: Unread<'_>,
    before: Option<(&VipStatus, Unread<'_>)>,
    seconds: f64,
    vip_width: usize,
) -> Vec<String> {
    let read = unread.vip(vip);
    let now = |f: fn(&VipStatus) -> u64| read.then(|| f(vip));
    let old = |f: fn(&VipStatus) -> u64| {
        before
            .filter(|(o, unread)| unread.vip(o))
            .map(|(o, _)| f(o))
    };
    let mut lines = vec![format!(
        "VIP {:<vip_width$} {:>10} pkt/s {:>12} bit/s {:>8} conn/s{}",
        vip.vip,
        rate(now(|v| v.packets), old(|v| v.packets), seconds, 1.0, 0),
        rate(now(|v| v.bytes), old(|v| v.bytes), seconds, 8.0, 0),
        rate(now(|v| v.new_flows), old(|v| v.new_flows), seconds, 1.0, 1),
        if vip.all_down {
            "  ALL BACKENDS DOWN"
        } else {
            ""
        }
    )];
    let width = Widths::of(vip);
    let (bw, sw, cw) = (width.backend, width.state, width.check);
    lines.push(format!(
        "  {:<bw$} {:<sw$} {:<9} {:<cw$} {:>6} {:>7} {:>10} {:>8} {:>7} {:>7}",
        "backend", "state", "health", "check", "weight", "share", "pkt/s", "conn/s", "live", "idle"
    ));
    for b in &vip.backends {
        let read = unread.backend(&vip.vip, b);
        let now = |f: fn(&BackendStatus) -> u64| read.then(|| f(b));
        let old = |f: fn(&BackendStatus) -> u64| {
            before
                .and_then(|(o, unread)| {
                    let ob = o.backends.iter().find(|x| x.address == b.address)?;
                    unread.backend(&o.vip, ob).then_some(ob)
                })
                .map(f)
        };
        let (live, _, idle) = flow_columns(b);
        lines.push(format!(
            "  {:<bw$} {:<sw$} {:<9} {:<cw$} {:>6} {:>6.2}% {:>10} {:>8} {:>7} {:>7}",
            backend_name(b),
            state_text(b),
            b.health.as_str(),
            check_text(b),
            b.weight,
            b.share * 100.0,
            rate(now(|b| b.packets), old(|b| b.packets), seconds, 1.0, 0),
            rate(now(|b| b.new_flows), old(|b| b.new_flows), seconds, 1.0, 1),
            live,
            idle
        ));
    }
    lines
}

/// Whether the watch waits for lbd after `failure`, having shown `shown`
/// frames: once watching, an lbd that stops answering or answers that it
/// is shutting down (a restart: exit code 5, unavailable) is waited for,
/// not the end of the watch. Before the first frame, the failure is the
/// answer.
fn waits_for_lbd(failure: &Failure, shown: u64) -> bool {
    shown > 0 && failure.code == ClientError::EXIT_UNAVAILABLE
}

/// How far a `--watch` has come: the refreshes made, answered (a frame
/// shown) or not, and since when lbd has not answered. A refresh lbd did
/// not answer counts towards `--count` too, so an lbd gone for good does
/// not keep a counted watch running for ever.
#[derive(Debug, Default)]
struct Refreshes {
    /// Refreshes made, answered or not.
    made: u64,
    /// Refreshes that showed a frame.
    shown: u64,
    /// Since when lbd has not answered (None: it answered the last one).
    unanswered: Option<std::time::Instant>,
}

impl Refreshes {
    /// Counts a refresh that showed a frame: any outage is over.
    fn answered(&mut self) {
        self.made += 1;
        self.shown += 1;
        self.unanswered = None;
    }

    /// Counts a refresh lbd did not answer; whether it began an outage
    /// (the refresh that says so: once an outage, not once a refresh).
    fn unanswered(&mut self) -> bool {
        self.made += 1;
        crate::wait::begins_outage(&mut self.unanswered)
    }

    /// Whether `--count` (None: no end) refreshes were made.
    fn done(&self, count: Option<u64>) -> bool {
        count.is_some_and(|c| self.made >= c)
    }
}

async fn watch(client: &Client, args: &Args) -> Result<(), Failure> {
    use std::io::IsTerminal as _;
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<(std::time::Instant, Status)> = None;
    let mut refreshes = Refreshes::default();
    loop {
        let status = match fetch(client, args.vip).await {
            Ok(status) => status,
            Err(failure) if waits_for_lbd(&failure, refreshes.shown) => {
                if refreshes.unanswered() {
                    eprintln!(
                        "lbctl: lbd is not answering ({}); still watching: the next frame comes once it answers",
                        failure.message
                    );
                }
                previous = None;
                if refreshes.done(args.count) {
                    return Err(Failure::new(
                        ClientError::EXIT_UNAVAILABLE,
                        format!(
                            "lbd did not answer the last refresh ({}); {} of --count {} refreshes showed a frame",
                            failure.message,
                            refreshes.shown,
                            refreshes.made
                        ),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_secs(args.interval)).await;
                continue;
            }
            Err(failure) => return Err(failure),
        };
        let now = std::time::Instant::now();
        if terminal {
            out!("\x1b[2J\x1b[H");
        }
        let seconds = previous.as_ref().map_or(1.0, |(t, _)| {
            now.duration_since(*t).as_secs_f64().max(0.001)
        });
        let before = previous.as_ref().map(|(_, s)| s);
        outln!(
            "lbd on {} ({}), version {} — every {}s, rates over the last interval",
            status.interface,
            hook(&status),
            status.version,
            args.interval
        );
        for vrrp in &status.vrrp {
            outln!("{}", watch_vrrp_line(vrrp));
        }
        for line in conntrack_lines(&status) {
            outln!("{line}");
        }
        let vip_width = status
            .vips
            .iter()
            .map(|v| v.vip.len())
            .max()
            .unwrap_or(0)
            .max(28);
        let unread = Unread(&status.traffic_unread);
        for vip in &status.vips {
            let old = before.and_then(|b| {
                let o = b.vips.iter().find(|v| v.vip == vip.vip)?;
                Some((o, Unread(&b.traffic_unread)))
            });
            for line in watch_vip_lines(vip, unread, old, seconds, vip_width) {
                outln!("{line}");
            }
        }
        if any_unread(&status) {
            outln!("(-: traffic counters lbd could not read this time)");
        }
        if !terminal {
            outln!();
        }
        refreshes.answered();
        if refreshes.done(args.count) {
            return Ok(());
        }
        previous = Some((now, status));
        tokio::time::sleep(std::time::Duration::from_secs(args.interval)).await;
    }
}

/// The hook the data plane runs at, as a person reads it: "XDP native",
/// "XDP generic" or "tc".
fn hook(status: &Status) -> String {
    match status.attach {
        Attach::Xdp => format!("XDP {}", status.xdp_mode.map_or("off", |m| m.name())),
        Attach::Tc => Attach::Tc.to_string(),
    }
}

/// The status's first line: which lbd serves (its version: `lbd
/// --version` reads the binary on disk, not the process that runs),
/// where, with which config, and its reloads (a refused SIGHUP reload
/// reaches only the log otherwise).
fn header_line(status: &Status) -> String {
    format!(
        "lbd on {} ({}), config {}; version {}, reloads {} ok, {} refused",
        status.interface,
        hook(status),
        status.config_file,
        status.version,
        status.reloads.succeeded,
        status.reloads.failed
    )
}

/// The line that says lbd lost its hook or its link (None while it is
/// attached and the link up): nothing is balanced on this node then.
fn hook_line(status: &Status) -> Option<String> {
    match (&status.hook_lost, status.attached, status.interface_up) {
        (Some(lost), _, _) => Some(format!(
            "NOT ATTACHED: lbd lost its hook on {} ({}) {}s ago: nothing is balanced here; it waits for the interface and exits once it is back and up, to be started again",
            status.interface, lost.how, lost.for_secs
        )),
        (None, false, _) => Some(format!(
            "NOT ATTACHED: lbd's program does not run on {}: nothing is balanced here",
            status.interface
        )),
        (None, true, false) => Some(format!(
            "interface {} is down (no carrier, or set down)",
            status.interface
        )),
        (None, true, true) => None,
    }
}

/// Prints one status as tables.
fn print_status(status: &Status) {
    outln!("{}", header_line(status));
    if let Some(line) = hook_line(status) {
        outln!("{line}");
    }
    outln!(
        "data plane: {}{}; Maglev {}",
        status.pin_dir.as_ref().map_or_else(
            || "not pinned (goes with lbd)".to_owned(),
            |dir| format!("pinned at {dir}")
        ),
        if status.adopted {
            ", adopted from the previous lbd"
        } else {
            ""
        },
        status
            .maglev_mode
            .map(|mode| mode.to_string())
            .unwrap_or_default()
    );
    if let Some(line) = status.node.as_ref().and_then(node_line) {
        outln!("{line}");
    }
    for vrrp in &status.vrrp {
        outln!("{}", vrrp_line(vrrp));
    }
    if let Some(r) = &status.replication {
        for line in replication_lines(r) {
            outln!("{line}");
        }
    }
    if let Some(nat) = &status.nat {
        outln!("{}", nat_table_line(nat));
    }
    if let Some(tunnel) = &status.tunnel {
        outln!("{}", tunnel_line(tunnel, &status.interface));
    }
    for line in conntrack_lines(status) {
        outln!("{line}");
    }
    for vip in &status.vips {
        print_vip_read(vip, Unread(&status.traffic_unread));
    }
    if any_unread(status) {
        outln!("(-: traffic counters lbd could not read this time)");
    }
    if let Some(guard) = &status.guard {
        crate::acl::print(guard);
    }
    let counters: Vec<String> = status
        .counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    outln!("counters: {}", counters.join(" "));
}

/// A NAT VIP's NAT address and port usage, as one line.
/// The node's state and announcements, when it is drained or announces
/// over BGP (a plain node says nothing).
fn node_line(node: &lb_userspace::api::schema::NodeStatus) -> Option<String> {
    let state = node.state.name();
    let Some(bgp) = &node.bgp else {
        return (node.state != lb_userspace::bgp::NodeState::Active)
            .then(|| format!("node: {state}"));
    };
    let announced: Vec<String> = bgp.announced.iter().map(ToString::to_string).collect();
    let withheld: Vec<String> = bgp
        .withheld
        .iter()
        .map(|w| format!("{} ({})", w.address, w.reason.name()))
        .collect();
    Some(format!(
        "node: {state}; BGP announces [{}], withdrawn [{}]; BIRD {}",
        announced.join(", "),
        withheld.join(", "),
        if bgp.in_sync {
            "in sync"
        } else {
            "NOT in sync (lbctl node status)"
        }
    ))
}

fn nat_line(vip: &VipStatus) -> Option<String> {
    let nat = vip.nat.as_ref()?;
    // lbd's answer is not trusted to be in order: a reversed range shows
    // `-`, not a wrapped count (or a panic).
    let range = u32::from(nat.port_max)
        .checked_sub(u32::from(nat.port_min))
        .map_or_else(|| "-".to_owned(), |span| (span + 1).to_string());
    Some(format!(
        "NAT from {} ports {}-{}: {} of {range} in use (busiest backend), {} flows",
        nat.source, nat.port_min, nat.port_max, nat.ports_in_use, nat.flows
    ))
}

/// The tunnelled modes' settings, as one line.
fn tunnel_line(tunnel: &TunnelStatus, interface: &str) -> String {
    let source = |prefix: &Option<String>, own: bool| match (prefix, own) {
        (None, _) => "none".to_owned(),
        (Some(p), true) => format!("{p} (the interface's own)"),
        (Some(p), false) => p.clone(),
    };
    let checks = if tunnel.hc_encap.is_empty() {
        "no check goes through a tunnel".to_owned()
    } else {
        format!(
            "checks through tunnels: tc_hc_encap on {}{}",
            tunnel.hc_encap.join(", "),
            if tunnel.accept_local {
                format!(", accept_local on {interface}")
            } else {
                String::new()
            }
        )
    };
    format!(
        "tunnel: GUE port {}, outer sources IPv4 {} IPv6 {}; {checks}",
        tunnel.gue_port,
        source(&tunnel.source_ipv4, tunnel.sources_from_interface[0]),
        source(&tunnel.source_ipv6, tunnel.sources_from_interface[1]),
    )
}

/// The backends of a VIP whose checks go through their tunnel, as one
/// line (None: none do).
fn through_tunnel_line(vip: &VipStatus) -> Option<String> {
    let through: Vec<&BackendStatus> = vip
        .backends
        .iter()
        .filter(|b| b.check.as_ref().is_some_and(|c| c.through_tunnel))
        .collect();
    let target = through.first()?.check.as_ref()?.target.clone()?;
    let names: Vec<String> = through.iter().map(|b| b.address.to_string()).collect();
    Some(format!(
        "checks through the tunnel (to {target}, as clients' packets): {} of {} backends: {}",
        through.len(),
        vip.backends.len(),
        names.join(", ")
    ))
}

/// A backend as the table names it: its address, with its own port when
/// it has one (NAT).
fn backend_name(b: &BackendStatus) -> String {
    match b.port {
        Some(port) => std::net::SocketAddr::new(b.address, port).to_string(),
        None => b.address.to_string(),
    }
}

/// The NAT flow table, as one line.
fn nat_table_line(nat: &lb_userspace::api::schema::NatStatus) -> String {
    let flows: Vec<String> = nat.flows.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "NAT flows: {}{} (table {} entries, {:.1} MiB{}); reaped: {} expired, {} orphans, {} of removed backends",
        if nat.swept { "" } else { "first sweep under way " },
        if flows.is_empty() { "none".to_owned() } else { flows.join(" ") },
        nat.capacity,
        nat.memory_bytes as f64 / (1024.0 * 1024.0),
        if nat.pressure {
            ", nearly full: closed flows freed after 1 s"
        } else {
            ""
        },
        nat.expired,
        nat.orphans,
        nat.backend_gone
    ) + &reaper_errors(nat)
}

/// The reaper's failures, shown only when there were any: a table that
/// refuses removals or reads keeps flows the reaper cannot free.
fn reaper_errors(nat: &lb_userspace::api::schema::NatStatus) -> String {
    if nat.reap_failed == 0 && nat.read_errors == 0 {
        return String::new();
    }
    format!(
        "; reaper errors: {} removals refused, {} reads failed",
        nat.reap_failed, nat.read_errors
    )
}

/// The connection table's and the handshake table's fill, and a SYN
/// flood while one lasts: in the plain status and in `--watch` alike.
fn conntrack_lines(status: &Status) -> Vec<String> {
    let c = &status.conntrack;
    let mut lines = vec![format!(
        "connection table: {} of {} flows ({:.1} MiB, {} handshakes); half-open: {} of {}",
        c.entries,
        c.capacity,
        c.memory_bytes as f64 / (1024.0 * 1024.0),
        c.handshakes,
        c.half_open,
        c.half_open_capacity
    )];
    if c.syn_flood {
        lines.push(format!(
            "SYN FLOOD for {} s: {} unanswered SYN/s, {} half-open evictions/s (established flows are not affected)",
            c.syn_flood_for_s.unwrap_or(0),
            c.unanswered_syn_per_s,
            c.half_open_evicted_per_s
        ));
    }
    lines
}

/// A VIP's state text of a backend (with a timed drain's seconds left,
/// or a down backend's hold after its VIP failed open: why it still
/// carries flows).
fn state_text(b: &BackendStatus) -> String {
    match (b.drain_remaining_s, b.held_s) {
        (Some(left), _) => format!("{} {left}s", b.state),
        (None, Some(left)) => format!("{} held {left}s", b.state),
        (None, None) => b.state.to_string(),
    }
}

/// A backend's last check as the tables show it: its outcome in short
/// (`ok`, `refused`, `timeout`, ...), with the streak toward its health's
/// next change against `rise` or `fall` (`refused 2/3` on its way down,
/// `refused 3/3` down, `ok 1/2` coming back); a passing backend that is
/// up shows `ok` alone. `-` with no check, or before its first.
fn check_text(b: &BackendStatus) -> String {
    let Some(check) = &b.check else {
        return "-".to_owned();
    };
    let Some(last) = &check.last else {
        return "-".to_owned();
    };
    let label = check
        .last_label
        .clone()
        .unwrap_or_else(|| short_outcome(last).to_owned());
    let (streak, threshold) = match label.as_str() {
        "ok" if b.health == HealthStatus::Up => return label,
        "ok" => (check.consecutive_successes, check.rise),
        "full" => return label,
        _ => (check.consecutive_failures, check.fall),
    };
    match threshold {
        Some(threshold) => format!("{label} {streak}/{threshold}"),
        // An lbd before rise and fall in the status: the streak alone.
        None => format!("{label} {streak}"),
    }
}

/// A check outcome's text in short, for an lbd that does not send it so
/// (`last_label`): `ok`, `full`, and the commonest failures by name.
fn short_outcome(last: &str) -> &'static str {
    match last {
        "success" => "ok",
        "connection refused" => "refused",
        "timeout" => "timeout",
        "unreachable" => "unreachable",
        full if full.starts_with("full") => "full",
        _ => "failed",
    }
}

/// How long a backend's health has been what it is (`42s`, `12m`, `3h`,
/// `5d`); `-` when it has not changed since lbd started, or is not
/// checked.
fn since_text(b: &BackendStatus) -> String {
    let Some(seconds) = b.check.as_ref().and_then(|c| c.last_change_s) else {
        return "-".to_owned();
    };
    age_text(seconds)
}

/// An age in seconds, shortly: `42s`, `12m`, `3h`, `5d`.
fn age_text(seconds: u64) -> String {
    match seconds {
        0..=119 => format!("{seconds}s"),
        120..=7_199 => format!("{}m", seconds / 60),
        7_200..=172_799 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// Column widths of a VIP's backend table: at least the headers' usual
/// widths, wider when an IPv6 backend, a timed drain or a long check
/// outcome needs it, so rows stay aligned.
struct Widths {
    backend: usize,
    state: usize,
    check: usize,
}

impl Widths {
    fn of(vip: &VipStatus) -> Self {
        let widest = |f: &dyn Fn(&BackendStatus) -> usize| vip.backends.iter().map(f).max();
        Self {
            backend: widest(&|b| backend_name(b).len()).unwrap_or(0).max(28),
            state: widest(&|b| state_text(b).len()).unwrap_or(0).max(12),
            check: widest(&|b| check_text(b).len()).unwrap_or(0).max(5),
        }
    }
}

/// Prints one VIP and its backends as a table, `-` for the counters
/// `vip` marks unread and those `unread` names (an older lbd's `GET
/// /v1/vips/...` marks none: its status's `traffic_unread` does).
pub(crate) fn print_vip(vip: &VipStatus, unread: &UnreadTraffic) {
    print_vip_read(vip, Unread(unread));
}

/// Prints one VIP and its backends as a table, `-` for the counters not
/// read (see [`vip_lines`]).
fn print_vip_read(vip: &VipStatus, unread: Unread<'_>) {
    for line in vip_lines(vip, unread) {
        outln!("{line}");
    }
}

/// One VIP and its backends as a table; the traffic counters `unread`
/// names show `-`, not the 0 the status carries for them.
fn vip_lines(vip: &VipStatus, unread: Unread<'_>) -> Vec<String> {
    let flags = match (vip.all_down, vip.runtime) {
        (true, _) => format!(" ALL BACKENDS DOWN (on_all_down={})", vip.on_all_down),
        (false, true) => " (added at run time)".to_owned(),
        _ => String::new(),
    };
    let read = unread.vip(vip);
    let mut lines = vec![format!(
        "VIP {}  {}  table {}  packets {}  bytes {}  new flows {}{flags}",
        vip.vip,
        vip.mode.name(),
        vip.table_size,
        counter(vip.packets, read),
        counter(vip.bytes, read),
        counter(vip.new_flows, read)
    )];
    if let Some(line) = nat_line(vip) {
        lines.push(format!("  {line}"));
    }
    if let Some(line) = through_tunnel_line(vip) {
        lines.push(format!("  {line}"));
    }
    let width = Widths::of(vip);
    let (bw, sw, cw) = (width.backend, width.state, width.check);
    lines.push(format!(
        "  {:<bw$} {:<sw$} {:<9} {:<5} {:<cw$} {:>6} {:>7} {:>6} {:>7} {:>6} {:>10} {:>10}",
        "backend",
        "state",
        "health",
        "since",
        "check",
        "weight",
        "share",
        "live",
        "closing",
        "idle",
        "packets",
        "new flows"
    ));
    for b in &vip.backends {
        let (live, closing, idle) = flow_columns(b);
        let read = unread.backend(&vip.vip, b);
        lines.push(format!(
            "  {:<bw$} {:<sw$} {:<9} {:<5} {:<cw$} {:>6} {:>6.2}% {:>6} {:>7} {:>6} {:>10} {:>10}",
            backend_name(b),
            state_text(b),
            b.health.as_str(),
            since_text(b),
            check_text(b),
            b.weight,
            b.share * 100.0,
            live,
            closing,
            idle,
            counter(b.packets, read),
            counter(b.new_flows, read)
        ));
    }
    if vip.backends.iter().any(|b| b.flows_counting) {
        lines.push(
            "  (~: flows as of the NAT table's last sweep; a new one is under way)".to_owned(),
        );
    }
    lines
}

/// A backend's live, closing and idle flows as the table shows them
/// (idle ones, silent past their idle timeout with no FIN or RST, still
/// go to it: a drain's pooled sessions): marked `~` while a NAT
/// backend's count is not one of now (no sweep of the NAT table since
/// lbd started or its drain began), so a 0 there is not read as "no
/// flows".
fn flow_columns(b: &BackendStatus) -> (String, String, String) {
    let mark = if b.flows_counting { "~" } else { "" };
    (
        format!("{mark}{}", b.flows.live),
        format!("{mark}{}", b.flows.closing),
        format!("{mark}{}", b.flows.idle),
    )
}

/// The replication section: totals, then one line per peer (an older lbd
/// sends no peers: its one peer is in the totals).
fn replication_lines(r: &ReplicationStatus) -> Vec<String> {
    let mode = r
        .mode
        .map(|mode| format!(" ({})", mode.name()))
        .unwrap_or_default();
    let mut lines = vec![format!(
        "replication{mode}: {}, {} flows sent, {} installed from peers ({} unknown)",
        if r.connected {
            "connected"
        } else {
            "not connected"
        },
        r.channel.records_sent,
        r.installed,
        r.unknown
    )];
    if r.kept_local + r.stale > 0 {
        lines.push(format!(
            "replication: {} copies older than this node's own entry ({} of them for another backend, kept local)",
            r.kept_local + r.stale,
            r.kept_local
        ));
    }
    if r.nat_installed + r.nat_unknown + r.nat_conflicts > 0 {
        lines.push(format!(
            "replication (NAT): {} flows installed from peers ({} unknown, {} conflicting)",
            r.nat_installed, r.nat_unknown, r.nat_conflicts
        ));
    }
    if !r.peers.is_empty() {
        lines.push(format!(
            "  every peer's full dump received: {}",
            if r.all_peers_dumped { "yes" } else { "not yet" }
        ));
    }
    for p in &r.peers {
        lines.push(peer_line(p));
        lines.extend(config_mismatch_lines(p));
    }
    lines
}

/// A replication peer's line: its session, counts, and how long ago its
/// last batch arrived (how stale its flows here may be). An lbd before
/// `last_received_s` that received records says nothing of it.
fn peer_line(p: &ReplicationPeerStatus) -> String {
    let last = match p.last_received_s {
        Some(age) => format!(", last batch {} ago", age_text(age)),
        None if p.records_received == 0 => ", no batch yet".to_owned(),
        None => String::new(),
    };
    format!(
        "  peer {} ({}): {}, {} records sent, {} received, {} full dumps received, {} batches dropped{last}",
        p.address,
        p.node.as_deref().unwrap_or("node id not known yet"),
        if p.connected { "connected" } else { "not connected" },
        p.records_sent,
        p.records_received,
        p.full_dumps_received,
        p.batches_dropped
    )
}

/// A peer's Maglev tables as compared with this node's: a line per VIP
/// that differs (nothing when all agree or they are not known).
fn config_mismatch_lines(p: &lb_userspace::api::schema::ReplicationPeerStatus) -> Vec<String> {
    if p.config_mismatches.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "    CONFIG MISMATCH with {}: flows moved between the nodes change backend; make the config and lbctl changes the same on every node",
        p.address
    )];
    for m in &p.config_mismatches {
        lines.push(format!("      {}: {}", m.vip, m.kind.meaning()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use lb_userspace::api::schema::{NatStatus, VipNatStatus};

    use super::*;

    /// A restarting lbd first answers 503 ("lbd is shutting down"), then
    /// not at all: the watch waits through both.
    #[test]
    fn a_watch_waits_for_a_restarting_lbd() {
        let shutting_down = Failure::from(ClientError::Api(lb_userspace::api::ApiError {
            status: 503,
            code: "internal".to_owned(),
            message: "lbd is shutting down".to_owned(),
        }));
        let gone = Failure::from(ClientError::NotRunning {
            path: "/run/lbd/lbd.sock".into(),
        });
        for failure in [&shutting_down, &gone] {
            assert!(waits_for_lbd(failure, 3), "{}", failure.message);
            assert!(!waits_for_lbd(failure, 0), "{}", failure.message);
        }
        let refused = Failure::from(ClientError::Api(lb_userspace::api::ApiError {
            status: 500,
            code: "internal".to_owned(),
            message: "boom".to_owned(),
        }));
        assert!(!waits_for_lbd(&refused, 3));
    }

    /// `lbctl status` whose connection lbd closes without answering (it
    /// crashed or stopped mid-request) is lbd unavailable, exit 5 ("try
    /// again later"), which a watch waits through; not exit 1.
    #[tokio::test]
    async fn a_status_lbd_drops_unanswered_is_unavailable() {
        use crate::wait::tests::{Answer, FakeLbd};
        let lbd = FakeLbd::start("status-dropped", vec![Answer::Close]);
        let client = Client::new(&lbd.path, std::time::Duration::from_secs(5));
        let failure = fetch(&client, None).await.unwrap_err();
        assert_eq!(
            failure.code,
            ClientError::EXIT_UNAVAILABLE,
            "{}",
            failure.message
        );
        assert!(waits_for_lbd(&failure, 1), "{}", failure.message);
    }

    #[test]
    fn a_rate_with_nothing_to_measure_from_is_no_zero() {
        assert_eq!(rate(Some(500), None, 1.0, 1.0, 0), "-");
        assert_eq!(rate(None, Some(500), 1.0, 1.0, 0), "-");
        assert_eq!(rate(Some(500), Some(300), 2.0, 1.0, 0), "100");
        assert_eq!(rate(Some(500), Some(300), 2.0, 8.0, 0), "800");
        assert_eq!(rate(Some(5), Some(2), 2.0, 1.0, 1), "1.5");
        // A counter that went back (lbd restarted between frames): 0.
        assert_eq!(rate(Some(2), Some(500), 1.0, 1.0, 0), "0");
    }

    /// A VIP with one backend and these counters.
    fn counted_vip(packets: u64) -> VipStatus {
        serde_json::from_value(serde_json::json!({
            "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
            "all_down": false, "runtime": false, "packets": packets, "bytes": packets * 100,
            "new_flows": packets / 10,
            "backends": [{
                "address": "198.18.0.11", "weight": 100, "state": "enabled", "health": "up",
                "alive": true, "share": 1.0, "flows": {"live": 0, "closing": 0, "idle": 0},
                "packets": packets, "bytes": packets * 100, "new_flows": packets / 10,
                "drain_remaining_s": null, "runtime": false
            }]
        }))
        .unwrap()
    }

    #[test]
    fn counters_lbd_could_not_read_show_no_count_and_no_rate() {
        let read = UnreadTraffic::default();
        let unread = UnreadTraffic {
            vips: vec!["198.18.0.100:80/tcp".to_owned()],
            backends: vec![(
                "198.18.0.100:80/tcp".to_owned(),
                "198.18.0.11".parse().unwrap(),
            )],
        };
        // The text: a 0 not read is "-".
        let lines = vip_lines(&counted_vip(0), Unread(&unread));
        assert!(
            lines[0].contains("packets -  bytes -  new flows -"),
            "{lines:?}"
        );
        let backend: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&backend[backend.len() - 2..], ["-", "-"], "{lines:?}");
        let lines = vip_lines(&counted_vip(0), Unread(&read));
        assert!(lines[0].contains("packets 0  bytes 0"), "{lines:?}");
        // The watch: the previous frame could not read them (0 there):
        // no rate, not a leap to 1e9 packets in a second.
        let (before, now) = (counted_vip(0), counted_vip(1_000_000_000));
        let lines = watch_vip_lines(
            &now,
            Unread(&read),
            Some((&before, Unread(&unread))),
            1.0,
            28,
        );
        assert!(!lines.join("\n").contains("1000000000"), "{lines:?}");
        assert!(
            lines[0].contains("- pkt/s") && lines[0].contains("- bit/s"),
            "{lines:?}"
        );
        let backend: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&backend[6..8], ["-", "-"], "{lines:?}");
        // This frame could not read them: no rate either.
        let lines = watch_vip_lines(
            &now,
            Unread(&unread),
            Some((&before, Unread(&read))),
            1.0,
            28,
        );
        assert!(lines[0].contains("- pkt/s"), "{lines:?}");
        // Both read: the rate.
        let lines = watch_vip_lines(&now, Unread(&read), Some((&before, Unread(&read))), 2.0, 28);
        assert!(lines[0].contains("500000000 pkt/s"), "{lines:?}");
        let backend: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&backend[6..8], ["500000000", "50000000.0"], "{lines:?}");
    }

    /// The answer's own marks (`traffic_read: false`, from `GET
    /// /v1/vips/...`, as `backend list` asks) show `-`, with no
    /// `traffic_unread` from a second request: counters and marks from
    /// one answer.
    #[test]
    fn counters_the_answer_marks_unread_show_no_count() {
        let mut value = serde_json::to_value(counted_vip(0)).unwrap();
        value["traffic_read"] = false.into();
        value["backends"][0]["traffic_read"] = false.into();
        let vip: VipStatus = serde_json::from_value(value).unwrap();
        let none = UnreadTraffic::default();
        let lines = vip_lines(&vip, Unread(&none));
        assert!(
            lines[0].contains("packets -  bytes -  new flows -"),
            "{lines:?}"
        );
        let backend: Vec<&str> = backend_line(&lines).split_whitespace().collect();
        assert_eq!(&backend[backend.len() - 2..], ["-", "-"], "{lines:?}");
        let now = counted_vip(1_000_000_000);
        let lines = watch_vip_lines(&now, Unread(&none), Some((&vip, Unread(&none))), 1.0, 28);
        assert!(!lines.join("\n").contains("1000000000"), "{lines:?}");
        assert!(lines[0].contains("- pkt/s"), "{lines:?}");
    }

    /// The line of backend 198.18.0.11 in a VIP's table.
    fn backend_line(lines: &[String]) -> &str {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with("198.18.0.11"))
            .expect("a line for 198.18.0.11")
    }

    /// A VIP with backend 198.18.0.11 in `health`, its check (`check`,
    /// JSON; null: none) and `idle` idle flows.
    fn checked_vip(health: &str, check: serde_json::Value, idle: u64) -> VipStatus {
        serde_json::from_value(serde_json::json!({
            "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
            "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
            "backends": [{
                "address": "198.18.0.11", "weight": 100, "state": "draining", "health": health,
                "alive": true, "share": 0.0, "flows": {"live": 0, "closing": 2, "idle": idle},
                "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": null,
                "check": check, "runtime": false
            }]
        }))
        .unwrap()
    }

    /// A TCP check's status: the last outcome, the streaks, and `extra`.
    fn check(
        last: &str,
        successes: u32,
        failures: u32,
        extra: serde_json::Value,
    ) -> serde_json::Value {
        let mut check = serde_json::json!({
            "kind": "tcp", "checks": 10, "failures": 3, "transitions": 1,
            "consecutive_successes": successes, "consecutive_failures": failures,
            "last": last, "last_latency_ms": 0.4
        });
        check
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        check
    }

    /// A flapping backend shows why and how far: the last check's
    /// outcome in short and its streak against rise/fall, and how long
    /// its health has been what it is; in the table and in `--watch`.
    #[test]
    fn the_table_shows_the_last_check_its_streak_and_since_when() {
        let none = UnreadTraffic::default();
        let refused = checked_vip(
            "down",
            check(
                "connection refused",
                0,
                3,
                serde_json::json!({"rise": 2, "fall": 3, "last_change_s": 42}),
            ),
            0,
        );
        let lines = vip_lines(&refused, Unread(&none));
        let header = lines.iter().find(|l| l.contains("backend")).unwrap();
        assert!(
            header.contains(" check ") && header.contains(" since "),
            "{lines:?}"
        );
        let line = backend_line(&lines);
        assert!(
            line.contains("refused 3/3") && line.contains(" 42s "),
            "{lines:?}"
        );
        let watch = watch_vip_lines(&refused, Unread(&none), None, 1.0, 28);
        assert!(backend_line(&watch).contains("refused 3/3"), "{watch:?}");
        // Passing, settled: "ok"; passing on its way up: its streak.
        let up = checked_vip(
            "up",
            check("success", 5, 0, serde_json::json!({"rise": 2, "fall": 3})),
            0,
        );
        let line = vip_lines(&up, Unread(&none));
        let line = backend_line(&line);
        assert!(line.contains(" ok ") && !line.contains("5/2"), "{line}");
        let rising = checked_vip(
            "down",
            check("success", 1, 0, serde_json::json!({"rise": 2, "fall": 3})),
            0,
        );
        let line = vip_lines(&rising, Unread(&none));
        assert!(backend_line(&line).contains("ok 1/2"), "{line:?}");
        // An lbd before rise/fall and last_change_s in the status: the
        // streak alone, and no time.
        let old = checked_vip(
            "down",
            check("connection refused", 0, 3, serde_json::json!({})),
            0,
        );
        let line = vip_lines(&old, Unread(&none));
        assert!(backend_line(&line).contains("refused 3 "), "{line:?}");
        // No check: nothing to show.
        let unchecked = checked_vip("unchecked", serde_json::Value::Null, 0);
        let line = vip_lines(&unchecked, Unread(&none));
        assert!(!backend_line(&line).contains("ok"), "{line:?}");
    }

    /// Idle flows (silent past their idle timeout, no FIN/RST) still
    /// go to their backend: a drain shows them, not only live ones.
    #[test]
    fn the_table_shows_idle_flows_next_to_live_and_closing() {
        let none = UnreadTraffic::default();
        let vip = checked_vip("up", serde_json::Value::Null, 300);
        let lines = vip_lines(&vip, Unread(&none));
        let header: Vec<&str> = lines
            .iter()
            .find(|l| l.contains("backend"))
            .unwrap()
            .split_whitespace()
            .collect();
        let at = header.iter().position(|h| *h == "live").unwrap();
        assert_eq!(
            &header[at..at + 3],
            ["live", "closing", "idle"],
            "{lines:?}"
        );
        let columns: Vec<&str> = backend_line(&lines).split_whitespace().collect();
        // The last five: live, closing, idle, packets, new flows.
        let live = columns.len() - 5;
        assert_eq!(&columns[live..live + 3], ["0", "2", "300"], "{lines:?}");
        let watch = watch_vip_lines(&vip, Unread(&none), None, 1.0, 28);
        assert!(watch[1].contains(" idle"), "{watch:?}");
        assert!(backend_line(&watch).ends_with(" 300"), "{watch:?}");
    }

    /// An instance whose interface has no address to send adverts from
    /// (keepalived's FAULT for want of one) says so, apart from a link
    /// down.
    #[test]
    fn a_vrrp_instance_without_a_source_says_so() {
        let instance = |state: &str| -> lb_userspace::vrrp::driver::InstanceStatus {
            serde_json::from_value(serde_json::json!({
                "vrid": 51, "state": state, "configured_priority": 100, "priority": 100,
                "master": null, "addresses": ["198.18.0.100"],
                "counters": {"adverts_sent": 0, "adverts_received": 0, "priority_zero_sent": 0,
                    "priority_zero_received": 0, "became_master": 0, "became_backup": 1},
                "ignored": {}, "no_source": true, "no_source_since": 1_700_000_000
            }))
            .unwrap()
        };
        assert_eq!(
            watch_vrrp_line(&instance("backup")),
            "VRRP vrid 51 IPv4: backup (NO SOURCE address for adverts: will not take over) (priority 100)"
        );
        assert_eq!(
            watch_vrrp_line(&instance("master")),
            "VRRP vrid 51 IPv4: master (NO SOURCE address for adverts: giving the VIPs up) (priority 100)"
        );
    }

    /// A backup whose link is down will not take over (keepalived's
    /// FAULT): the status says so rather than showing a healthy backup;
    /// a master on a dead link likewise.
    #[test]
    fn a_vrrp_instance_whose_link_is_down_says_so() {
        let instance =
            |state: &str, link_down: bool| -> lb_userspace::vrrp::driver::InstanceStatus {
                serde_json::from_value(serde_json::json!({
                    "vrid": 51, "state": state, "configured_priority": 100, "priority": 1,
                    "master": null, "addresses": ["198.18.0.100"],
                    "counters": {"adverts_sent": 0, "adverts_received": 0, "priority_zero_sent": 0,
                        "priority_zero_received": 0, "became_master": 0, "became_backup": 1},
                    "ignored": {}, "link_down": link_down, "link_down_since": 1_700_000_000
                }))
                .unwrap()
            };
        let backup = instance("backup", true);
        assert!(
            vrrp_line(&backup).starts_with(
                "VRRP vrid 51 IPv4: backup (link DOWN: will not take over) (priority 1 of 100)"
            ),
            "{}",
            vrrp_line(&backup)
        );
        assert_eq!(
            watch_vrrp_line(&backup),
            "VRRP vrid 51 IPv4: backup (link DOWN: will not take over) (priority 1)"
        );
        let master = instance("master", true);
        assert!(
            vrrp_line(&master).starts_with(
                "VRRP vrid 51 IPv4: master (link DOWN: keeps the VIPs on a dead link) (priority 1 of 100)"
            ),
            "{}",
            vrrp_line(&master)
        );
        assert!(
            vrrp_line(&instance("backup", false))
                .starts_with("VRRP vrid 51 IPv4: backup (priority"),
            "{}",
            vrrp_line(&instance("backup", false))
        );
    }

    /// The README's upgrade steps end on `lbctl status` to see which
    /// version serves: its first line says it (not `lbd --version`,
    /// which reads the binary on disk).
    #[test]
    fn the_readme_upgrade_step_reads_the_version_from_the_status() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let step = readme
            .lines()
            .find(|l| l.starts_with("lbctl status                 # the new version serves"))
            .expect("the README's upgrade step");
        assert!(
            step.contains("its first line's `version`") && !step.contains("lbd --version says"),
            "the README's upgrade step does not say where the running version shows: {step}"
        );
    }

    #[test]
    fn vrrp_instances_name_their_family() {
        let instance = |addresses: &[&str]| -> lb_userspace::vrrp::driver::InstanceStatus {
            serde_json::from_value(serde_json::json!({
                "vrid": 51, "state": "master", "configured_priority": 150, "priority": 150,
                "master": null, "addresses": addresses,
                "counters": {"adverts_sent": 0, "adverts_received": 0, "priority_zero_sent": 0,
                    "priority_zero_received": 0, "became_master": 0, "became_backup": 0},
                "ignored": {}
            }))
            .unwrap()
        };
        // Two instances of one VRID, one per family: told apart.
        let v4 = instance(&["198.18.0.100"]);
        let v6 = instance(&["2001:2::100"]);
        assert!(
            vrrp_line(&v4).starts_with("VRRP vrid 51 IPv4: master (priority 150 of 150)"),
            "{}",
            vrrp_line(&v4)
        );
        assert!(
            vrrp_line(&v6).starts_with("VRRP vrid 51 IPv6: master"),
            "{}",
            vrrp_line(&v6)
        );
        assert_eq!(
            watch_vrrp_line(&v6),
            "VRRP vrid 51 IPv6: master (priority 150)"
        );
        // No address to tell by: no family.
        assert_eq!(
            watch_vrrp_line(&instance(&[])),
            "VRRP vrid 51: master (priority 150)"
        );
    }

    #[test]
    fn a_nat_backends_flows_being_counted_are_marked_not_shown_as_none() {
        let mut backend: BackendStatus = serde_json::from_value(serde_json::json!({
            "address": "198.19.2.11", "mac": null, "weight": 100, "state": "draining",
            "health": "up", "alive": true, "share": 0.0,
            "flows": {"live": 0, "closing": 0, "idle": 0},
            "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": null,
            "check": null, "runtime": false
        }))
        .unwrap();
        assert_eq!(
            flow_columns(&backend),
            ("0".to_owned(), "0".to_owned(), "0".to_owned())
        );
        backend.flows_counting = true;
        backend.flows.live = 3;
        assert_eq!(
            flow_columns(&backend),
            ("~3".to_owned(), "~0".to_owned(), "~0".to_owned())
        );
    }

    #[test]
    fn replication_shows_each_peer_and_reads_an_older_lbd() {
        // An lbd from before the full mesh: no mode, no peers.
        let old: ReplicationStatus = serde_json::from_value(serde_json::json!({
            "connected": true, "installed": 4, "unknown": 1,
            "channel": {"batches_sent": 0, "records_sent": 9, "batches_received": 0,
                "records_received": 0, "auth_failures": 0, "decode_errors": 0, "timeouts": 0,
                "sessions": 1, "reconnects": 0, "dropped_batches": 0, "dropped_records": 0}
        }))
        .unwrap();
        assert!(old.peers.is_empty() && !old.all_peers_dumped);
        assert_eq!(
            replication_lines(&old),
            ["replication: connected, 9 flows sent, 4 installed from peers (1 unknown)"]
        );
        let mesh = ReplicationStatus {
            mode: Some(lb_userspace::daemon::replication::Topology::FullMesh),
            kept_local: 1,
            stale: 2,
            failed: 0,
            peers: vec![
                lb_userspace::api::schema::ReplicationPeerStatus {
                    address: "198.18.2.12:7946".into(),
                    node: Some("lb-b/eth0".into()),
                    connected: true,
                    records_sent: 10,
                    records_received: 20,
                    full_dumps_received: 3,
                    batches_dropped: 0,
                    last_received_s: Some(3),
                    last_received_unix_s: Some(1_700_000_000),
                    ..Default::default()
                },
                lb_userspace::api::schema::ReplicationPeerStatus {
                    address: "198.18.2.13:7946".into(),
                    batches_dropped: 5,
                    ..Default::default()
                },
            ],
            ..old
        };
        let lines = replication_lines(&mesh);
        assert_eq!(
            lines[0],
            "replication (full-mesh): connected, 9 flows sent, 4 installed from peers (1 unknown)"
        );
        assert!(
            lines[1].contains("3 copies older") && lines[1].contains("1 of them"),
            "{lines:?}"
        );
        assert_eq!(lines[2], "  every peer's full dump received: not yet");
        assert_eq!(lines[3], "  peer 198.18.2.12:7946 (lb-b/eth0): connected, 10 records sent, 20 received, 3 full dumps received, 0 batches dropped, last batch 3s ago");
        assert!(
            lines[4].contains("node id not known yet")
                && lines[4].contains("5 batches dropped, no batch yet"),
            "{lines:?}"
        );
    }

    /// How stale a peer's flows here may be: the age of its last batch,
    /// in the units of the backends' `since`; nothing said by an lbd
    /// before the field that did receive records (no "no batch yet"
    /// that is not so).
    #[test]
    fn a_peer_line_says_how_long_ago_its_last_batch_came() {
        let peer = |records_received, last_received_s| ReplicationPeerStatus {
            address: "198.18.2.12:7946".into(),
            node: Some("lb-b/eth0".into()),
            connected: true,
            records_received,
            last_received_s,
            ..Default::default()
        };
        assert!(peer_line(&peer(5, Some(0))).ends_with(", last batch 0s ago"));
        assert!(peer_line(&peer(0, Some(150))).ends_with(", last batch 2m ago"));
        assert!(peer_line(&peer(5, Some(7_300))).ends_with(", last batch 2h ago"));
        assert!(peer_line(&peer(0, None)).ends_with(", no batch yet"));
        assert!(
            peer_line(&peer(5, None)).ends_with("0 batches dropped"),
            "an older lbd: {}",
            peer_line(&peer(5, None))
        );
        // In the JSON status as lbd sends it.
        let json = serde_json::to_value(peer(5, Some(3))).unwrap();
        assert_eq!(json["last_received_s"], 3);
        assert!(serde_json::to_value(peer(0, None))
            .unwrap()
            .get("last_received_s")
            .is_none());
    }

    #[test]
    fn a_peer_building_other_tables_is_shown_per_vip() {
        let peer = lb_userspace::api::schema::ReplicationPeerStatus {
            address: "198.18.2.12:7946".into(),
            node: Some("lb-b/eth0".into()),
            connected: true,
            config_compared: true,
            config_mismatches: vec![lb_userspace::api::schema::ConfigMismatch {
                vip: "198.18.0.100:80/tcp".into(),
                kind: lb_userspace::api::schema::MismatchKind::Differs,
            }],
            ..Default::default()
        };
        let lines = config_mismatch_lines(&peer);
        assert!(
            lines[0].contains("CONFIG MISMATCH with 198.18.2.12:7946"),
            "{lines:?}"
        );
        assert_eq!(
            lines[1],
            "      198.18.0.100:80/tcp: table size, backends, weights or admin states differ"
        );
        let json = serde_json::to_value(&peer).unwrap();
        assert_eq!(json["config_mismatches"][0]["kind"], "differs");
        let agreeing = lb_userspace::api::schema::ReplicationPeerStatus {
            config_mismatches: Vec::new(),
            ..peer
        };
        assert!(config_mismatch_lines(&agreeing).is_empty());
    }

    #[test]
    fn columns_widen_for_ipv6_backends_and_timed_drains() {
        let backend = |address: &str, drain: Option<u64>| {
            serde_json::json!({
                "address": address, "weight": 100, "state": "draining", "health": "up",
                "alive": true, "share": 0.0, "flows": {"live": 0, "closing": 0, "idle": 0},
                "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": drain,
                "drain_timed_out": false, "runtime": false
            })
        };
        let vip = |backends: Vec<serde_json::Value>| -> VipStatus {
            serde_json::from_value(serde_json::json!({
                "vip": "[2001:2::100]:80/tcp", "table_size": 251, "on_all_down": "drop",
                "all_down": false, "runtime": false, "packets": 0, "bytes": 0,
                "new_flows": 0, "backends": backends
            }))
            .unwrap()
        };
        let narrow = Widths::of(&vip(vec![backend("198.18.0.11", None)]));
        assert_eq!((narrow.backend, narrow.state), (28, 12));
        let wide = Widths::of(&vip(vec![
            backend("2001:2:0:5678:9abc:def0:1234:5678", Some(300)),
            backend("198.18.0.11", None),
        ]));
        assert_eq!(wide.backend, "2001:2:0:5678:9abc:def0:1234:5678".len());
        assert_eq!(wide.state, "draining 300s".len());
    }

    #[test]
    fn a_backend_held_after_fail_open_says_so_and_for_how_long() {
        let backend = |extra: serde_json::Value| -> BackendStatus {
            let mut b = serde_json::json!({
                "address": "198.18.0.11", "weight": 100, "state": "enabled", "health": "down",
                "alive": true, "share": 0.0, "flows": {"live": 3, "closing": 0, "idle": 0},
                "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": null,
                "drain_timed_out": false, "runtime": false
            });
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(b).unwrap()
        };
        // An lbd before holds sends no field: not held.
        assert_eq!(state_text(&backend(serde_json::json!({}))), "enabled");
        assert_eq!(
            state_text(&backend(serde_json::json!({"held_s": 287}))),
            "enabled held 287s"
        );
        // A timed drain's seconds are what the operator asked for: first.
        assert_eq!(
            state_text(&backend(
                serde_json::json!({"state": "draining", "drain_remaining_s": 30, "held_s": 287})
            )),
            "draining 30s"
        );
    }

    #[test]
    fn a_nat_vip_shows_its_address_and_port_usage() {
        let mut vip: VipStatus = serde_json::from_value(serde_json::json!({
            "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
            "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
            "backends": []
        }))
        .unwrap();
        // An lbd from before modes: DSR, no NAT line.
        assert_eq!(vip.mode, lb_common::Mode::DsrL2);
        assert_eq!(nat_line(&vip), None);
        vip.nat = Some(VipNatStatus {
            source: "198.18.0.50".parse().unwrap(),
            port_min: 2000,
            port_max: 2999,
            ports_in_use: 12,
            flows: 15,
        });
        assert_eq!(
            nat_line(&vip).unwrap(),
            "NAT from 198.18.0.50 ports 2000-2999: 12 of 1000 in use (busiest backend), 15 flows"
        );
        // A garbled answer, its range reversed: no count, no panic.
        vip.nat = Some(VipNatStatus {
            source: "198.18.0.50".parse().unwrap(),
            port_min: 2999,
            port_max: 2000,
            ports_in_use: 12,
            flows: 15,
        });
        assert_eq!(
            nat_line(&vip).unwrap(),
            "NAT from 198.18.0.50 ports 2999-2000: 12 of - in use (busiest backend), 15 flows"
        );
        let table = NatStatus {
            flows: [("established".to_owned(), 15)].into(),
            capacity: 1024,
            memory_bytes: 278_528,
            swept: true,
            expired: 1,
            orphans: 0,
            backend_gone: 2,
            reap_failed: 0,
            read_errors: 0,
            pressure: false,
        };
        assert_eq!(
            nat_table_line(&table),
            "NAT flows: established=15 (table 1024 entries, 0.3 MiB); reaped: 1 expired, 0 orphans, 2 of removed backends"
        );
        let pressed = NatStatus {
            pressure: true,
            ..table.clone()
        };
        assert_eq!(
            nat_table_line(&pressed),
            "NAT flows: established=15 (table 1024 entries, 0.3 MiB, nearly full: closed flows freed after 1 s); reaped: 1 expired, 0 orphans, 2 of removed backends"
        );
        let failing = NatStatus {
            reap_failed: 3,
            read_errors: 1,
            ..table
        };
        assert_eq!(
            nat_table_line(&failing),
            "NAT flows: established=15 (table 1024 entries, 0.3 MiB); reaped: 1 expired, 0 orphans, 2 of removed backends; reaper errors: 3 removals refused, 1 reads failed"
        );
    }

    #[test]
    fn tunnel_settings_and_checks_through_the_tunnel_are_shown() {
        let mut tunnel = TunnelStatus {
            gue_port: 6080,
            source_ipv4: Some("198.18.200.0/24".to_owned()),
            source_ipv6: Some("2001:2::2/128".to_owned()),
            sources_from_interface: [false, true],
            hc_encap: vec!["lo".to_owned(), "eth0".to_owned()],
            accept_local: true,
        };
        assert_eq!(
            tunnel_line(&tunnel, "eth0"),
            "tunnel: GUE port 6080, outer sources IPv4 198.18.200.0/24 IPv6 2001:2::2/128 (the interface's own); checks through tunnels: tc_hc_encap on lo, eth0, accept_local on eth0"
        );
        tunnel.hc_encap.clear();
        tunnel.source_ipv6 = None;
        assert!(tunnel_line(&tunnel, "eth0").ends_with("IPv6 none; no check goes through a tunnel"));

        let check = |through: bool| {
            serde_json::json!({"kind": "tcp", "checks": 3, "failures": 0, "transitions": 1,
                "consecutive_successes": 3, "consecutive_failures": 0, "last": "success",
                "last_latency_ms": 0.4, "through_tunnel": through, "target": "198.18.0.100:80"})
        };
        let backend = |address: &str, through: bool| {
            serde_json::json!({"address": address, "mac": null, "weight": 100, "state": "enabled",
                "health": "up", "alive": true, "share": 0.5,
                "flows": {"live": 0, "closing": 0, "idle": 0}, "packets": 0, "bytes": 0,
                "new_flows": 0, "drain_remaining_s": null, "check": check(through), "runtime": false})
        };
        let vip: VipStatus = serde_json::from_value(serde_json::json!({
            "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
            "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
            "mode": "gue",
            "backends": [backend("198.19.2.11", true), backend("2001:2:0:2::12", false)]
        }))
        .unwrap();
        assert_eq!(
            through_tunnel_line(&vip).unwrap(),
            "checks through the tunnel (to 198.18.0.100:80, as clients' packets): 1 of 2 backends: 198.19.2.11"
        );
    }

    /// A status with nothing in it, as lbd answers it (JSON).
    fn empty_status() -> String {
        let body = serde_json::json!({
            "interface": "eth0", "xdp_mode": "native", "config_file": "/etc/lbd/lbd.toml",
            "vips": [], "counters": {}, "conntrack": {"entries": 0, "capacity": 1024},
            "tables_rebuilt": 0, "reloads": {"succeeded": 0, "failed": 0}, "version": "0"
        })
        .to_string();
        serde_json::from_str::<Status>(&body).unwrap();
        body
    }

    /// The first line says which lbd serves (its version) and how its
    /// reloads went.
    #[test]
    fn the_first_line_names_the_running_version_and_the_reloads() {
        let mut status: Status = serde_json::from_str(&empty_status()).unwrap();
        status.version = "0.2.0".to_owned();
        status.reloads.succeeded = 3;
        status.reloads.failed = 1;
        assert_eq!(
            header_line(&status),
            "lbd on eth0 (XDP native), config /etc/lbd/lbd.toml; version 0.2.0, reloads 3 ok, 1 refused"
        );
    }

    /// A status whose lbd lost its hook says so under the first line,
    /// with how and for how long; one attached with its link up says
    /// nothing more. An older lbd's status (no such fields) reads as
    /// attached and up.
    #[test]
    fn a_lost_hook_is_said_under_the_first_line() {
        let mut status: Status = serde_json::from_str(&empty_status()).unwrap();
        assert!(status.attached && status.interface_up);
        assert_eq!(hook_line(&status), None);
        status.attached = false;
        status.hook_lost = Some(lb_userspace::api::schema::HookLost {
            how: lb_userspace::api::schema::HookLoss::Shadowed { by: 77 },
            for_secs: 12,
        });
        let line = hook_line(&status).expect("a line");
        assert!(
            line.starts_with("NOT ATTACHED: lbd lost its hook on eth0 (program id 77 runs ahead of it at tc) 12s ago"),
            "{line}"
        );
    }

    /// `status --watch --interval 1` with `count` against a fake lbd
    /// giving `answers`, bounded by `bound` (Err: still watching then):
    /// its exit code and message (0: done), and how often it asked.
    async fn watch_against(
        tag: &str,
        count: Option<u64>,
        answers: Vec<crate::wait::tests::Answer>,
        bound: std::time::Duration,
    ) -> Result<(u8, String, usize), usize> {
        use clap::Parser as _;
        let lbd = crate::wait::tests::FakeLbd::start(tag, answers);
        let client = Client::new(&lbd.path, std::time::Duration::from_millis(300));
        let count = count.map(|c| c.to_string());
        let mut argv = vec!["lbctl", "status", "--watch", "--interval", "1"];
        if let Some(count) = &count {
            argv.extend(["--count", count]);
        }
        let cli = crate::Cli::try_parse_from(argv).unwrap();
        let crate::Command::Status(args) = cli.command else {
            panic!("not status");
        };
        match tokio::time::timeout(bound, watch(&client, &args)).await {
            Ok(Ok(())) => Ok((0, String::new(), lbd.asked())),
            Ok(Err(failure)) => Ok((failure.code, failure.message, lbd.asked())),
            Err(_) => Err(lbd.asked()),
        }
    }

    /// With `--count`, a refresh lbd does not answer counts as one of
    /// them: an lbd gone for good after the first frame ends the watch
    /// after the count (exit 5, lbd unavailable, as the last refresh
    /// found it), not never; one back by the last refresh ends it as
    /// usual. Without `--count` the watch waits for lbd.
    #[tokio::test]
    async fn a_counted_watch_ends_even_when_lbd_goes_away() {
        use crate::wait::tests::Answer;
        let bound = std::time::Duration::from_secs(10);
        let gone = vec![Answer::Ok(empty_status()), Answer::Error(503)];
        let (code, message, asked) = watch_against("watch-gone", Some(2), gone.clone(), bound)
            .await
            .expect("a --count 2 watch still running after 10 s");
        assert_eq!(code, ClientError::EXIT_UNAVAILABLE, "{message}");
        assert!(
            message.contains("1 of --count 2") && message.contains("shutting down"),
            "{message}"
        );
        assert_eq!(asked, 2);

        let back = vec![
            Answer::Ok(empty_status()),
            Answer::Error(503),
            Answer::Ok(empty_status()),
        ];
        let (code, message, asked) = watch_against("watch-back", Some(3), back, bound)
            .await
            .expect("a --count 3 watch still running after 10 s");
        assert_eq!((code, message.as_str(), asked), (0, "", 3));

        // Without --count: still waiting, asking each interval.
        let asked = watch_against(
            "watch-waits",
            None,
            gone,
            std::time::Duration::from_millis(2_500),
        )
        .await
        .expect_err("a watch without --count gave up on lbd");
        assert_eq!(asked, 3);
    }

    /// The note that lbd is not answering is said once an outage, not
    /// once a refresh; a new outage says it again.
    #[test]
    fn a_watch_says_once_an_outage_that_lbd_is_not_answering() {
        let mut refreshes = Refreshes::default();
        refreshes.answered();
        let notes: Vec<bool> = (0..3).map(|_| refreshes.unanswered()).collect();
        assert_eq!(notes, [true, false, false]);
        assert_eq!((refreshes.made, refreshes.shown), (4, 1));
        refreshes.answered();
        assert!(refreshes.unanswered());
        assert!(refreshes.done(Some(6)));
        assert!(!refreshes.done(Some(7)) && !refreshes.done(None));
    }

    /// `--count` and `--interval` only mean something with `--watch`, and
    /// a count of 0 would show a frame all the same: all refused.
    #[test]
    fn count_and_interval_need_watch_and_a_count_needs_a_frame() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            crate::Cli::try_parse_from([&["lbctl", "status"], args].concat())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for args in [&["--count", "5"][..], &["--interval", "1"]] {
            let error = parse(args).unwrap_err();
            assert!(
                error.contains(args[0]) && error.contains("--watch"),
                "{args:?}: {error}"
            );
        }
        let error = parse(&["--watch", "--count", "0"]).unwrap_err();
        assert!(
            error.contains("'0' for '--count") && error.contains("at least 1"),
            "{error}"
        );
        let error = parse(&["--watch", "--count", "-1"]).unwrap_err();
        assert!(error.contains("--count"), "{error}");
        parse(&[]).unwrap();
        parse(&["--watch", "--count", "1", "--interval", "1"]).unwrap();
    }
}
