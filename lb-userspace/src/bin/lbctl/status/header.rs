//! The status's first lines: which lbd serves, where and at which hook,
//! whether it lost that hook or its link, and the node's state and BGP
//! announcements.

use lb_userspace::{api::schema::Status, config::Attach};

/// The hook the data plane runs at, as a person reads it: "XDP native",
/// "XDP generic" or "tc".
pub(super) fn hook(status: &Status) -> String {
    match status.attach {
        Attach::Xdp => format!("XDP {}", status.xdp_mode.map_or("off", |m| m.name())),
        Attach::Tc => Attach::Tc.to_string(),
    }
}

/// The status's first line: which lbd serves (its version: `lbd
/// --version` reads the binary on disk, not the process that runs),
/// where, with which config, and its reloads (a refused SIGHUP reload
/// reaches only the log otherwise).
pub(super) fn header_line(status: &Status) -> String {
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
pub(super) fn hook_line(status: &Status) -> Option<String> {
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

/// The node's state and announcements, when it is drained or announces
/// over BGP (a plain node says nothing).
pub(super) fn node_line(node: &lb_userspace::api::schema::NodeStatus) -> Option<String> {
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
