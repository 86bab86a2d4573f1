//! One VIP and its backends as a table, with its NAT and tunnel lines:
//! shared by `lbctl status`, `lbctl backend list` and `lbctl vip list`.

use lb_userspace::api::schema::{BackendStatus, UnreadTraffic, VipStatus};

use super::{
    backend_columns::{backend_name, check_text, flow_columns, since_text, state_text},
    unread::{counter, Unread},
};

/// A NAT VIP's NAT address and port usage, as one line.
pub(super) fn nat_line(vip: &VipStatus) -> Option<String> {
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

/// The backends of a VIP whose checks go through their tunnel, as one
/// line (None: none do).
pub(super) fn through_tunnel_line(vip: &VipStatus) -> Option<String> {
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

/// Column widths of a VIP's backend table: at least the headers' usual
/// widths, wider when an IPv6 backend, a timed drain or a long check
/// outcome needs it, so rows stay aligned.
pub(super) struct Widths {
    pub(super) backend: usize,
    pub(super) state: usize,
    pub(super) check: usize,
}

impl Widths {
    pub(super) fn of(vip: &VipStatus) -> Self {
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
pub(super) fn print_vip_read(vip: &VipStatus, unread: Unread<'_>) {
    for line in vip_lines(vip, unread) {
        outln!("{line}");
    }
}

/// One VIP and its backends as a table; the traffic counters `unread`
/// names show `-`, not the 0 the status carries for them.
pub(super) fn vip_lines(vip: &VipStatus, unread: Unread<'_>) -> Vec<String> {
    let flags = match (vip.all_down, vip.on_backups, vip.runtime) {
        (true, _, _) => format!(" ALL BACKENDS DOWN (on_all_down={})", vip.on_all_down),
        (false, true, _) => " ON BACKUPS (no other backend takes new flows)".to_owned(),
        (false, false, true) => " (added at run time)".to_owned(),
        _ => String::new(),
    };
    let read = unread.vip(vip);
    // Said only when not the default, as the file leaves it out.
    let affinity = match vip.affinity {
        lb_common::Affinity::Connection => String::new(),
        other => format!("  affinity {}", other.name()),
    };
    let affinity = match vip.slow_start_s {
        Some(seconds) => format!("{affinity}  slow start {seconds}s"),
        None => affinity,
    };
    let mut lines = vec![format!(
        "VIP {}  {}{affinity}  table {}  packets {}  bytes {}  new flows {}{flags}",
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
