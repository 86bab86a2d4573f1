//! The status's VRRP lines: one per instance, with its family and what a
//! link down or a missing advert source means for it.

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
pub(super) fn watch_vrrp_line(vrrp: &lb_userspace::vrrp::driver::InstanceStatus) -> String {
    format!(
        "VRRP vrid {}{}: {} (priority {})",
        vrrp.vrid,
        vrrp_family(vrrp),
        vrrp_state(vrrp),
        vrrp.priority
    )
}

/// A VRRP instance in the plain status.
pub(super) fn vrrp_line(vrrp: &lb_userspace::vrrp::driver::InstanceStatus) -> String {
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
