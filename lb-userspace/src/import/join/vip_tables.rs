//! A VIP's `[[vip]]` table with its `[vip.health]` and a
//! `[[vip.backend]]` table per backend (its own health table where its
//! checks differ), weights scaled into lbd's range.

use std::net::IpAddr;

use super::affinity::affinity;
use super::slow_start::slow_start;
use super::vips::Vip;
use super::weight::Scale;
use super::{family, health};
use crate::config::value::backend_address;
use crate::config::{Protocol, MAX_WEIGHT};
use crate::import::model::{Backend, Check, CheckKind, Role, Service};
use crate::import::write::{Entry, Table};
use crate::import::ImportError;
use lb_common::Mode;

/// The `[[vip]]` table of `vip`, its health and its backends.
pub(super) fn vip_tables(
    vip: &Vip<'_>,
    mode: Mode,
    mode_comment: &str,
    mode_notes: Vec<String>,
) -> Result<Vec<Table>, ImportError> {
    let service = vip.service;
    let mut t = Table::new("[[vip]]", 0);
    t.notes = service.notes.iter().map(ToString::to_string).collect();
    // Passive checks (nginx) stand for failed connections: lbd's TCP check
    // cannot see a UDP backend, so a UDP VIP of them is not checked.
    let unchecked: Vec<Backend>;
    let backends: &[Backend] = match (&service.passive, vip.protocol) {
        (Some(at), Protocol::Udp) => {
            unchecked = service
                .backends
                .iter()
                .map(|b| Backend {
                    check: None,
                    ..b.clone()
                })
                .collect();
            t.notes.push(format!(
                "{at}: nginx counts failed UDP exchanges (passive checks); lbd's checks are TCP or HTTP, which a UDP service may not answer: check = \"none\", as lbd's default for UDP (set [vip.health] to check a TCP port of the backends)"
            ));
            &unchecked
        }
        (Some(at), Protocol::Tcp) => {
            t.notes.push(format!(
                "{at}: nginx counts failed requests (passive checks); lbd checks actively instead: a TCP connection every 2 s, a backend goes out after max_fails failures in a row and comes back after one success; fail_timeout (how long nginx leaves a failed server out) has no equivalent"
            ));
            &service.backends
        }
        (None, _) => &service.backends,
    };
    t.notes.extend(mode_notes);
    t.push("address", vip.address.to_string(), vip.comment.clone());
    t.push("port", i64::from(vip.port), "");
    t.push("protocol", vip.protocol.to_string(), "");
    t.push("forwarding", mode.name(), mode_comment);
    let (affinity, disagreement) = affinity(service);
    if let Some((value, comment)) = affinity {
        t.push("affinity", value.name(), comment);
    }
    t.notes.extend(disagreement);
    let (ramp, ramp_notes) = slow_start(service);
    if let Some((seconds, comment)) = ramp {
        t.push("slow_start_s", seconds, comment);
    }
    t.notes.extend(ramp_notes);
    let mut tables = vec![t];
    if backends.is_empty() {
        tables[0].notes.push(format!(
            "{}: {} has no backends",
            service.origin, service.name
        ));
        return Ok(tables);
    }
    // The source's backups are lbd's backups (`backup = true`).
    note_backups_shared(service, backends, &mut tables[0].notes);
    let weighted = |b: &Backend| matches!(b.role, Role::Active | Role::Backup(_));
    // The VIP's checks are the first active backend's; others that differ
    // get their own table.
    let Some(reference) = backends
        .iter()
        .find(|b| b.role == Role::Active)
        .or(backends.first())
    else {
        return Ok(tables);
    };
    for backend in backends {
        on_the_network(backend)?;
    }
    // lbd keys a VIP's backends by address: one port per address.
    for (i, b) in backends.iter().enumerate() {
        if let Some(first) = backends[..i].iter().find(|a| a.address == b.address) {
            return Err(ImportError::at_origin(
                &b.origin,
                format!(
                    "{} ({}:{}) has the address of {} ({}:{}, {}): lbd keys a VIP's backends by address, one port per address; give each backend its own address, or split them over two VIPs",
                    b.name,
                    b.address,
                    b.port.map_or("the VIP's port".to_owned(), |p| p.to_string()),
                    first.name,
                    first.address,
                    first.port.map_or("the VIP's port".to_owned(), |p| p.to_string()),
                    first.origin
                ),
            ));
        }
    }
    let mut notes = Vec::new();
    let mut health = Table::new("[vip.health]", 1);
    health.entries = health::entries(reference.check.as_ref(), &mut notes);
    tables[0].notes.append(&mut notes);
    tables.push(health);
    let top = backends
        .iter()
        .filter(|b| weighted(b))
        .filter_map(|b| b.weight.as_ref().map(|w| w.value))
        .max()
        .unwrap_or(1)
        .max(1);
    let scale = Scale::new(top);
    if let Scale::Down { top } = scale {
        tables[0].notes.push(format!(
            "{}: {} weighs up to {top}, above lbd's {MAX_WEIGHT}: every weight is scaled by {MAX_WEIGHT}/{top} (rounded, at least 1) to keep their ratios",
            service.origin, service.name
        ));
    }
    for backend in backends {
        other_family(backend, vip.address, mode)?;
        let mut b = Table::new("[[vip.backend]]", 1);
        b.notes = backend.notes.iter().map(ToString::to_string).collect();
        b.push(
            "address",
            backend.address.to_string(),
            format!("{} ({})", backend.origin, backend.what),
        );
        if mode == Mode::Nat {
            if let Some(port) = backend.port.filter(|p| *p != vip.port) {
                b.push("port", i64::from(port), "");
            }
        }
        let source = backend.weight.as_ref().map_or(1, |w| w.value);
        let (weight, comment) = match &backend.role {
            Role::Backup(_) => (
                scale.apply(source),
                match &backend.weight {
                    Some(w) => format!("{} ({scale})", w.comment()),
                    None => format!("the source's default weight 1 ({scale})"),
                },
            ),
            Role::Active => (
                scale.apply(source),
                match &backend.weight {
                    Some(w) => format!("{} ({scale})", w.comment()),
                    None => format!("the source's default weight 1 ({scale})"),
                },
            ),
            Role::Disabled(at) => {
                b.notes.push(format!("{at}: disabled in the source: weight 0 (takes no new flows); `lbctl backend weight` brings it in"));
                (0, String::new())
            }
        };
        b.push("weight", i64::from(weight), comment);
        if let Role::Backup(at) = &backend.role {
            b.push(
                "backup",
                true,
                format!("{at}: takes new flows only while no other backend can"),
            );
        }
        push_backend(b, backend, reference, vip.port, mode, &mut tables);
    }
    Ok(tables)
}

/// Notes in `notes` where lbd's backups differ from the source's: without
/// `option allbackups` HAProxy sends the backups' flows to its first
/// backup that is up alone; lbd shares them among all of a VIP's backups
/// that are up, by weight (so a second one still takes over when the
/// first is down, as in HAProxy).
fn note_backups_shared(service: &Service, backends: &[Backend], notes: &mut Vec<String>) {
    if service.all_backups.is_some() {
        return;
    }
    let backups: Vec<&str> = backends
        .iter()
        .filter(|b| matches!(b.role, Role::Backup(_)))
        .filter(|b| b.weight.as_ref().is_none_or(|w| w.value > 0))
        .map(|b| b.name.as_str())
        .collect();
    if backups.len() < 2 {
        return;
    }
    notes.push(format!(
        "{}: {} has several backup servers and no option allbackups: HAProxy sends to the first one up alone, lbd shares among all of them that are up, by weight ({}); give a backup weight 0 to keep it out",
        service.origin,
        service.name,
        backups.join(", ")
    ));
}

/// Refuses, at its line, a backend on this node's loopback
/// (`proxy_pass http://127.0.0.1:8080`, `server s [::1]:3000`) or an
/// unspecified address: a proxy reached it through the node's own stack,
/// lbd forwards packets onto the network, where none reach it, while
/// lbd's health check from the node itself stays green.
fn on_the_network(backend: &Backend) -> Result<(), ImportError> {
    let address = backend.address.to_canonical();
    let what = if address.is_loopback() {
        "this node's loopback"
    } else if address.is_unspecified() {
        "the unspecified address (no host's)"
    } else {
        return Ok(());
    };
    Err(ImportError::at_origin(
        &backend.origin,
        format!(
            "{}: {} is {what}; lbd forwards packets to hosts on the network, and none reaches it there: give the app's network address (or keep the proxy in front of it)",
            backend.what, backend.address
        ),
    ))
}

/// Refuses, at its line, a backend of the other family than its VIP's
/// that lbd's own rule ([`backend_address`]) does not take in `mode`: a
/// tunnel carries an IPv4 VIP to IPv6 backends, no mode an IPv6 VIP to
/// IPv4 ones. (Taking any tunnel mode let an IPv6 VIP with IPv4 servers
/// and `--forwarding ipip` through, to be refused by lbd's loader as a
/// defect of the import.)
fn other_family(backend: &Backend, vip: IpAddr, mode: Mode) -> Result<(), ImportError> {
    if backend.address.is_ipv4() == vip.is_ipv4() {
        return Ok(());
    }
    let Err(refused) = backend_address(backend.address, vip, mode) else {
        return Ok(());
    };
    let why = if vip.is_ipv6() {
        "no lbd forwarding mode carries an IPv6 VIP to IPv4 backends (ipip and gue carry IPv4 VIPs to IPv6 backends, not the reverse): give this service an IPv4 VIP, or its backends IPv6 addresses"
    } else if !mode.is_tunnel() {
        "lbd reaches IPv6 backends of an IPv4 VIP only in ipip or gue mode (--forwarding ipip or gue)"
    } else {
        // A pair lbd carries, refused for the address itself: lbd's reason.
        return Err(ImportError::at_origin(&backend.origin, refused.to_string()));
    };
    Err(ImportError::at_origin(
        &backend.origin,
        format!(
            "{} is {} but VIP {vip} is {}: {why}",
            backend.address,
            family(backend.address),
            family(vip)
        ),
    ))
}

/// Pushes a backend's table, and its own health table when its checks
/// differ from the VIP's.
fn push_backend(
    mut table: Table,
    backend: &Backend,
    reference: &Backend,
    vip_port: u16,
    mode: Mode,
    tables: &mut Vec<Table>,
) {
    let own = backend.check != reference.check;
    let mut notes = Vec::new();
    let entries = own.then(|| {
        let mut entries = health::entries(backend.check.as_ref(), &mut notes);
        keep_own_port_and_host(&mut entries, backend, reference, vip_port, mode);
        entries
    });
    table.notes.append(&mut notes);
    tables.push(table);
    if let Some(entries) = entries {
        let mut h = Table::new("[vip.backend.health]", 2);
        h.entries = entries;
        tables.push(h);
    }
}

/// lbd merges a backend's health table over its VIP's key by key, and
/// [`health::entries`] leaves out `port` and `host` where the check has
/// none (meaning the backend's own port, its own address as Host): a
/// backend whose check has none beside a VIP-level check that has them
/// would inherit the other backend's port or Host (`check port 8080` on
/// one server made the next one's check go to 8080). Writes lbd's
/// default for this backend explicitly instead: the port lbd checks
/// without one (a NAT backend's own, else the VIP's) and the Host lbd's
/// HTTP check sends without one (the address, with the port unless 80).
fn keep_own_port_and_host(
    entries: &mut Vec<Entry>,
    backend: &Backend,
    reference: &Backend,
    vip_port: u16,
    mode: Mode,
) {
    let (Some(check), Some(vip_check)) = (&backend.check, &reference.check) else {
        return;
    };
    let port = match mode {
        Mode::Nat => backend.port.unwrap_or(vip_port),
        _ => vip_port,
    };
    // Beside the keys of the check's kind, before its timings.
    let after_kind = |entries: &[Entry]| {
        entries
            .iter()
            .position(|e| {
                !matches!(
                    e.key,
                    "check" | "path" | "host" | "expect_status" | "expect_body" | "tls" | "user"
                )
            })
            .unwrap_or(entries.len())
    };
    if check.port.is_none() && vip_check.port.is_some() {
        entries.insert(
            after_kind(entries),
            Entry::new(
                "port",
                i64::from(port),
                "the backend's own port, not the VIP's check port",
            ),
        );
    }
    let host_of = |check: &Check| match &check.kind.value {
        CheckKind::Http { host, .. } => Some(host.clone()),
        CheckKind::Tcp | CheckKind::Pgsql { .. } => None,
    };
    if let (Some(None), Some(Some(_))) = (host_of(check), host_of(vip_check)) {
        let port = check.port.as_ref().map_or(port, |p| p.value);
        let address = match backend.address {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let host = match port {
            80 => address,
            port => format!("{address}:{port}"),
        };
        entries.insert(
            after_kind(entries),
            Entry::new(
                "host",
                host,
                "the address checked, as lbd sends without a host; not the VIP's check Host",
            ),
        );
    }
}
