//! The warnings a change brings of the VIPs it touches: the file's own
//! warnings a reload or an edit adds (none repeated), a VIP left with no
//! backend for new flows, and backend states that a peer of a node that
//! replicates may not share.

use std::net::IpAddr;

use crate::{
    config::Config,
    model::{Edit, Model},
};

/// The file's own warnings (`config::warnings`, as a start logs them and
/// `lbctl config check` prints them) that a reload of it brings: those
/// of its VIPs that the running VIP of the same identity (in `running`,
/// runtime changes included) did not have, so a reload repeats none
/// already given. Node-wide ones are left out: `[bgp]` and `[[vrrp]]` are
/// restart settings, whose warnings the start gave, and the reload says
/// itself which new VIP addresses the running instances do not move.
/// A backend's warning is matched by the backend's address, not its
/// place: the running VIP lists its backends in address order (the
/// model's), the file in its own.
pub(super) fn config_warnings_brought(running: &Config, file: &Config) -> Vec<String> {
    warnings_brought(running, file)
        .into_iter()
        .map(|Brought { index, warning, .. }| {
            let field = match warning.field.strip_prefix("vip[0]") {
                Some(rest) => format!("vip[{index}]{rest}"),
                None => warning.field,
            };
            format!("{field}: {}", warning.message)
        })
        .collect()
}

/// What a runtime edit brings to warn of for the VIP it touches (`lbctl
/// backend weight ... 0` on the last backend, `backend remove` of the
/// last, `vip add` or `backend add` of doubtful settings): the file's
/// own warnings of that VIP that it did not have before, as a reload
/// of the same content gives them ([`config_warnings_brought`]), named
/// by the VIP rather than a place in a file; and, when no backend of the
/// VIP takes new flows after the edit (weight 0, removed, draining or in
/// maintenance, or down), that every new flow is dropped. Backends still
/// waiting for their first checks are taken as passing them (the edit's
/// answer says they wait); a VIP added without backends is warned of by
/// the file's own warning.
pub(in crate::daemon::engine) fn edit_warnings(
    current: &Model,
    next: &Model,
    running: &Config,
    edit: &Edit,
) -> Vec<String> {
    let id = edit.vip();
    let only = |model: &Model| {
        let mut config = model.to_config(running);
        config.vips.retain(|v| crate::vip_id::VipId::of(v) == id);
        config
    };
    let mut warnings: Vec<String> = warnings_brought(&only(current), &only(next))
        .into_iter()
        .map(
            |Brought {
                 by_address,
                 warning,
                 ..
             }| match by_address.strip_prefix("vip[0]") {
                Some("") => warning.message,
                Some(rest) => format!(
                    "VIP {id} {}: {}",
                    rest.trim_start_matches('.'),
                    warning.message
                ),
                None => format!("{}: {}", warning.field, warning.message),
            },
        )
        .collect();
    let stays = !matches!(edit, Edit::AddVip(_) | Edit::RemoveVip(_));
    if let (true, Some(vip)) = (stays, next.vips.get(&id)) {
        if takes_no_new_flows(vip) {
            warnings.push(format!(
                "no backend of VIP {id} takes new flows after this change: every new flow is dropped"
            ));
        }
    }
    warnings
}

/// Whether no backend of `vip` takes new flows (an empty Maglev table),
/// backends still waiting for their first checks taken as passing them.
fn takes_no_new_flows(vip: &crate::model::VipModel) -> bool {
    let mut vip = vip.clone();
    for backend in vip.backends.values_mut() {
        backend.awaiting_checks = false;
    }
    vip.shares().values().all(|share| *share <= 0.0)
}

/// The warning for a drain, maintenance or undrain on a node that
/// replicates its flows to peers (`[[vrrp]] sync_peer`, `[sync]`
/// peers) when some peer may not share the state: a peer that becomes
/// master, or that the routers send flows to, would still send new flows
/// to a backend drained here, and a drain's deadline would fire only
/// here. A node that shares backend states (see `shared_states`) warns
/// only of the peers not known to take them (`taking`: their lbd sent
/// its own); one that shares none (no sync listener or key) of all.
pub(super) fn per_node_warning(
    edit: &Edit,
    running: &Config,
    shares: bool,
    taking: &[IpAddr],
) -> Option<String> {
    let (vip, backend, what, todo, command) = match edit {
        Edit::Drain { vip, backend, .. } => (
            vip,
            backend,
            "drains are",
            format!("drain {backend}"),
            "drain",
        ),
        Edit::Maintenance(vip, backend) => (
            vip,
            backend,
            "maintenance is",
            format!("put {backend} in maintenance"),
            "maintenance",
        ),
        Edit::Enable(vip, backend) => (
            vip,
            backend,
            "backend states are",
            format!("put {backend} back in service"),
            "undrain",
        ),
        _ => return None,
    };
    let mut peers: Vec<IpAddr> = running
        .vrrp
        .iter()
        .filter_map(|v| v.sync_peer)
        .chain(running.sync.iter().flat_map(|s| s.peers.iter().copied()))
        .map(|peer| peer.ip())
        .filter(|peer| !(shares && taking.contains(peer)))
        .collect();
    peers.sort();
    peers.dedup();
    if peers.is_empty() {
        return None;
    }
    let names: Vec<String> = peers.iter().map(ToString::to_string).collect();
    let names = names.join(", ");
    let command = format!("`lbctl backend {command} {vip} {backend}` there");
    Some(if shares {
        format!(
            "{what} shared with the sync peers that take them, and {names} has not shown it does (its sync session is down, or its lbd predates backend-state sharing, sync protocol 4): a peer whose session comes up gets this state then, but one that predates it keeps its own, so that a node that takes over the VIP (or that the routers send to) would still treat {backend} as before: if it predates it, {todo} on {names} too ({command})"
        )
    } else {
        format!(
            "{what} per node: {todo} on {names} too ({command}): replication copies flows, not backend states, so a peer that takes over the VIP (or that the routers send to) still treats {backend} as before, and a drain's deadline ends it only on the node that has it"
        )
    })
}

/// One of the file's warnings of one of its VIPs (see [`warnings_brought`]).
struct Brought {
    /// The VIP's place in the file.
    index: usize,
    /// The warning's field with its backend named by address
    /// (`vip[0].backend[198.19.2.11].health`, see [`warning_by_address`]).
    by_address: String,
    /// The warning as given for the VIP alone (fields `vip[0]...`).
    warning: crate::config::Warning,
}

/// The file's warnings of each VIP of `file` that the running VIP of the
/// same identity did not have (see [`config_warnings_brought`]).
fn warnings_brought(running: &Config, file: &Config) -> Vec<Brought> {
    let mut alone = Config {
        vips: Vec::new(),
        vrrp: Vec::new(),
        vrrp_listed: Vec::new(),
        bgp: None,
        sync: None,
        ..file.clone()
    };
    // One VIP's warnings, its fields named `vip[0]`, each with what it
    // is of that does not depend on the backends' order.
    let mut of = |vip: &crate::config::VipConfig| {
        alone.vips = vec![vip.clone()];
        crate::config::warnings(&alone)
            .into_iter()
            .map(|warning| (warning_by_address(vip, &warning), warning))
            .collect::<Vec<_>>()
    };
    let mut brought = Vec::new();
    for (index, vip) in file.vips.iter().enumerate() {
        let id = crate::vip_id::VipId::of(vip);
        let had: Vec<_> = running
            .vips
            .iter()
            .find(|v| crate::vip_id::VipId::of(v) == id)
            .map(&mut of)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        for (key, warning) in of(vip) {
            if !had.contains(&key) {
                brought.push(Brought {
                    index,
                    by_address: key.0,
                    warning,
                });
            }
        }
    }
    brought
}

/// A warning of `vip` (alone, as `vip[0]`) with its backend named by
/// address instead of place (`vip[0].backend[198.19.2.11].health`), so
/// two listings of the same backends in another order give the same.
fn warning_by_address(
    vip: &crate::config::VipConfig,
    warning: &crate::config::Warning,
) -> (String, String) {
    let field = warning
        .field
        .strip_prefix("vip[0].backend[")
        .and_then(|rest| {
            let (place, rest) = rest.split_once(']')?;
            let backend = vip.backends.get(place.parse::<usize>().ok()?)?;
            Some(format!("vip[0].backend[{}]{rest}", backend.address))
        })
        .unwrap_or_else(|| warning.field.clone());
    (field, warning.message.clone())
}
