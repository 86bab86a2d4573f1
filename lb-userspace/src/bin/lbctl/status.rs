//! `lbctl status`: every VIP and backend at a glance.

use lb_userspace::{
    api::{
        client::{Client, ClientError},
        schema::{
            BackendStatus, ReplicationStatus, Status, TunnelStatus, UnreadTraffic, VipStatus,
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

/// The traffic counters a status could not read (its `traffic_unread`):
/// they show 0 there, which is no count.
#[derive(Clone, Copy)]
struct Unread<'a>(&'a UnreadTraffic);

impl Unread<'_> {
    /// Whether `vip`'s counters were read.
    fn vip(&self, vip: &str) -> bool {
        !self.0.vips.iter().any(|v| v == vip)
    }

    /// Whether the counters of `vip`'s backend `address` were read.
    fn backend(&self, vip: &str, address: std::net::IpAddr) -> bool {
        !self
            .0
            .backends
            .iter()
            .any(|(v, a)| v == vip && *a == address)
    }
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

/// A VRRP instance in `--watch`.
fn watch_vrrp_line(vrrp: &lb_userspace::vrrp::driver::InstanceStatus) -> String {
    format!(
        "VRRP vrid {}{}: {} (priority {})",
        vrrp.vrid,
        vrrp_family(vrrp),
        vrrp.state,
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
        vrrp.state,
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
    let read = unread.vip(&vip.vip);
    let now = |f: fn(&VipStatus) -> u64| read.then(|| f(vip));
    let old = |f: fn(&VipStatus) -> u64| {
        before
            .filter(|(_, unread)| unread.vip(&vip.vip))
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
    let (bw, sw) = (width.backend, width.state);
    lines.push(format!(
        "  {:<bw$} {:<sw$} {:<9} {:>6} {:>7} {:>10} {:>8} {:>7}",
        "backend", "state", "health", "weight", "share", "pkt/s", "conn/s", "live"
    ));
    for b in &vip.backends {
        let read = unread.backend(&vip.vip, b.address);
        let now = |f: fn(&BackendStatus) -> u64| read.then(|| f(b));
        let old = |f: fn(&BackendStatus) -> u64| {
            before
                .filter(|(_, unread)| unread.backend(&vip.vip, b.address))
                .and_then(|(o, _)| o.backends.iter().find(|x| x.address == b.address))
                .map(f)
        };
        lines.push(format!(
            "  {:<bw$} {:<sw$} {:<9} {:>6} {:>6.2}% {:>10} {:>8} {:>7}",
            backend_name(b),
            state_text(b),
            b.health.as_str(),
            b.weight,
            b.share * 100.0,
            rate(now(|b| b.packets), old(|b| b.packets), seconds, 1.0, 0),
            rate(now(|b| b.new_flows), old(|b| b.new_flows), seconds, 1.0, 1),
            flow_columns(b).0
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
            "lbd on {} ({}) — every {}s, rates over the last interval",
            status.interface,
            hook(&status),
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
        if !unread.0.is_empty() {
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

/// Prints one status as tables.
fn print_status(status: &Status) {
    outln!(
        "lbd on {} ({}), config {}",
        status.interface,
        hook(status),
        status.config_file
    );
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
    if !status.traffic_unread.is_empty() {
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

/// Column widths of a VIP's backend table: at least the headers' usual
/// widths, wider when an IPv6 backend or a timed drain needs it, so
/// rows stay aligned.
struct Widths {
    backend: usize,
    state: usize,
}

impl Widths {
    fn of(vip: &VipStatus) -> Self {
        let widest = |f: &dyn Fn(&BackendStatus) -> usize| vip.backends.iter().map(f).max();
        Self {
            backend: widest(&|b| backend_name(b).len()).unwrap_or(0).max(28),
            state: widest(&|b| state_text(b).len()).unwrap_or(0).max(12),
        }
    }
}

/// Prints one VIP and its backends as a table (from an answer that says
/// nothing of unread counters: `GET /v1/vips/...`).
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
    let read = unread.vip(&vip.vip);
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
    let (bw, sw) = (width.backend, width.state);
    lines.push(format!(
        "  {:<bw$} {:<sw$} {:<9} {:>6} {:>7} {:>6} {:>7} {:>10} {:>10}",
        "backend", "state", "health", "weight", "share", "live", "closing", "packets", "new flows"
    ));
    for b in &vip.backends {
        let (live, closing) = flow_columns(b);
        let read = unread.backend(&vip.vip, b.address);
        lines.push(format!(
            "  {:<bw$} {:<sw$} {:<9} {:>6} {:>6.2}% {:>6} {:>7} {:>10} {:>10}",
            backend_name(b),
            state_text(b),
            b.health.as_str(),
            b.weight,
            b.share * 100.0,
            live,
            closing,
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

/// A backend's live and closing flows as the table shows them: marked
/// `~` while a NAT backend's count is not one of now (no sweep of the NAT
/// table since lbd started or its drain began), so a 0 there is not read
/// as "no flows".
fn flow_columns(b: &BackendStatus) -> (String, String) {
    let mark = if b.flows_counting { "~" } else { "" };
    (
        format!("{mark}{}", b.flows.live),
        format!("{mark}{}", b.flows.closing),
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
        lines.push(format!(
            "  peer {} ({}): {}, {} records sent, {} received, {} full dumps received, {} batches dropped",
            p.address,
            p.node.as_deref().unwrap_or("node id not known yet"),
            if p.connected { "connected" } else { "not connected" },
            p.records_sent,
            p.records_received,
            p.full_dumps_received,
            p.batches_dropped
        ));
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
        assert_eq!(&backend[5..7], ["-", "-"], "{lines:?}");
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
        assert_eq!(&backend[5..7], ["500000000", "50000000.0"], "{lines:?}");
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
        assert_eq!(flow_columns(&backend), ("0".to_owned(), "0".to_owned()));
        backend.flows_counting = true;
        backend.flows.live = 3;
        assert_eq!(flow_columns(&backend), ("~3".to_owned(), "~0".to_owned()));
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
        assert_eq!(lines[3], "  peer 198.18.2.12:7946 (lb-b/eth0): connected, 10 records sent, 20 received, 3 full dumps received, 0 batches dropped");
        assert!(
            lines[4].contains("node id not known yet") && lines[4].contains("5 batches dropped"),
            "{lines:?}"
        );
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
