//! The files of one setup put together and turned into lbd's tables:
//! where a source names no VIP address (`bind *:80`), keepalived's
//! `virtual_ipaddress` or `--vip` gives it; the forwarding mode follows
//! IPVS's lb_kind or, for proxies, whether the backends listen on the
//! VIP's port; weights keep their ratios in lbd's range.

mod health;
mod vrrp;

use std::net::IpAddr;

use super::detect::Format;
use super::model::{Backend, Listen, Role, Service, Setup};
use super::write::{Document, Entry, Table};
use super::{ImportError, Options, VipArg};
use crate::config::{Protocol, MAX_WEIGHT};
use lb_common::Mode;

/// One VIP to write: where it is and the service behind it.
struct Vip<'s> {
    address: IpAddr,
    port: u16,
    protocol: Protocol,
    /// Where address and port came from.
    comment: String,
    service: &'s Service,
}

/// Joins `setup` (read from the files in `formats`) with `options`.
pub(crate) fn join(
    setup: &Setup,
    options: &Options,
    formats: &[(&str, Format)],
) -> Result<Document, ImportError> {
    if setup.services.is_empty() && setup.vrrp.is_empty() {
        return Err(ImportError::setup(
            "nothing to import: no HAProxy frontend/listen with servers, nginx upstream, keepalived virtual_server or vrrp_instance was found",
        ));
    }
    let mut document = Document::default();
    let sources: Vec<String> = formats.iter().map(|(f, k)| format!("{f} ({k})")).collect();
    document.header = vec![
        format!("lbd.toml imported by `lbctl config import` from {}.", sources.join(", ")),
        "The comment beside each value says where it came from (file:line); NOTE lines say what could not be carried over and why. Keys left out take lbd's defaults; backends' MACs are resolved from the neighbour table.".to_owned(),
    ];
    document.notes = setup.notes.iter().map(ToString::to_string).collect();
    document.top.push(interface(setup, options)?);

    let vips = vips(setup, options)?;
    let mut nat_needed: Option<IpAddr> = None;
    let mut tables = Vec::new();
    for vip in &vips {
        let (mode, mode_comment, mode_notes) = forwarding(vip, options)?;
        if mode == Mode::Nat {
            let source = options.nat_source.ok_or_else(|| {
                ImportError::at_origin(
                    &vip.service.origin,
                    format!(
                        "{} needs lbd's NAT mode ({mode_comment}), which needs a NAT address: pass --nat-source ADDRESS (an address of this node's network, moved with the VIPs)",
                        vip.service.name
                    ),
                )
            })?;
            if source.is_ipv4() != vip.address.is_ipv4() {
                return Err(ImportError::setup(format!(
                    "--nat-source {source} is not of the family of VIP {}",
                    vip.address
                )));
            }
            nat_needed = Some(source);
        }
        tables.extend(vip_tables(vip, mode, &mode_comment, mode_notes)?);
    }
    if let Some(source) = &nat_needed {
        let mut nat = Table::new("[nat]", 0);
        let key = if source.is_ipv4() {
            "source_ipv4"
        } else {
            "source_ipv6"
        };
        nat.push(key, source.to_string(), "--nat-source");
        if setup.vrrp.is_empty() {
            nat.notes.push(format!(
                "--nat-source {source}: put it on {} as you do the VIPs (no [[vrrp]] moves it)",
                document
                    .top
                    .first()
                    .map_or("the interface".to_owned(), |e| e.value.to_string())
            ));
        }
        document.tables.push(nat);
    }
    document.tables.extend(tables);

    let mut seen: Vec<(u8, bool)> = Vec::new();
    for instance in &setup.vrrp {
        let extra: Vec<(IpAddr, String)> = nat_needed
            .iter()
            .filter(|a| {
                instance
                    .addresses
                    .first()
                    .is_none_or(|f| f.value.is_ipv4() == a.is_ipv4())
            })
            .map(|a| {
                (
                    *a,
                    "--nat-source (a NAT address moves with the VIPs)".to_owned(),
                )
            })
            .collect();
        let table = vrrp::table(instance, &extra)?;
        let key = (
            instance.vrid.as_ref().map_or(0, |v| v.value),
            instance.addresses.first().is_none_or(|a| a.value.is_ipv4()),
        );
        if seen.contains(&key) {
            return Err(ImportError::at_origin(
                &instance.origin,
                format!(
                    "vrrp_instance {}: a second instance with virtual_router_id {}; import one node's files at a time",
                    instance.name, key.0
                ),
            ));
        }
        seen.push(key);
        document.tables.push(table);
    }
    Ok(document)
}

/// The interface: `--interface`, else keepalived's.
fn interface(setup: &Setup, options: &Options) -> Result<Entry, ImportError> {
    if let Some(name) = &options.interface {
        return Ok(Entry::new("interface", name.clone(), "--interface"));
    }
    let named: Vec<_> = setup
        .vrrp
        .iter()
        .filter_map(|v| v.interface.as_ref())
        .collect();
    match named.first() {
        None => Err(ImportError::setup(
            "no interface: the sources do not say which interface lbd serves on (keepalived's `interface`): pass --interface NAME",
        )),
        Some(first) if named.iter().any(|n| n.value != first.value) => Err(ImportError::setup(format!(
            "the vrrp_instances are on several interfaces ({}); lbd serves on one: pass --interface NAME",
            named.iter().map(|n| n.value.as_str()).collect::<Vec<_>>().join(", ")
        ))),
        Some(first) => Ok(Entry::new("interface", first.value.clone(), first.comment())),
    }
}

/// Every VIP: listens with an address as they are; wildcards with
/// keepalived's addresses, else the `--vip`s of their port; services with
/// no listen with the `--vip`s left, in order.
fn vips<'s>(setup: &'s Setup, options: &Options) -> Result<Vec<Vip<'s>>, ImportError> {
    let mut out: Vec<Vip<'s>> = Vec::new();
    let mut used = vec![false; options.vips.len()];
    let vrrp_addresses: Vec<_> = setup.vrrp.iter().flat_map(|v| &v.addresses).collect();
    let mut unplaced = Vec::new();
    for service in &setup.services {
        if service.listens.is_empty() {
            unplaced.push(service);
        }
        for listen in &service.listens {
            if let Some(address) = listen.address {
                add(
                    &mut out,
                    vip(address, listen, listen_comment(listen), service),
                );
                continue;
            }
            let kept: Vec<_> = vrrp_addresses
                .iter()
                .filter(|a| listen.wildcard_v6 || a.value.is_ipv4())
                .collect();
            for a in &kept {
                add(
                    &mut out,
                    vip(
                        a.value,
                        listen,
                        format!("{} + {}", a.comment(), listen_comment(listen)),
                        service,
                    ),
                );
            }
            if !kept.is_empty() {
                continue;
            }
            let mut found = false;
            for (i, arg) in options.vips.iter().enumerate() {
                if arg.port.is_none_or(|p| p == listen.port)
                    && arg.protocol.is_none_or(|p| p == listen.protocol)
                    && (listen.wildcard_v6 || arg.address.is_ipv4())
                {
                    used[i] = true;
                    found = true;
                    add(
                        &mut out,
                        vip(
                            arg.address,
                            listen,
                            format!("--vip {} + {}", arg_text(arg), listen_comment(listen)),
                            service,
                        ),
                    );
                }
            }
            if !found {
                return Err(ImportError::at_origin(
                    &listen.origin,
                    format!(
                        "{} names no address and no keepalived virtual_ipaddress gives one: pass --vip ADDRESS:{}/{}",
                        listen.what, listen.port, listen.protocol
                    ),
                ));
            }
        }
    }
    let mut free = options
        .vips
        .iter()
        .zip(used.iter_mut())
        .filter(|(_, u)| !**u);
    for service in unplaced {
        let Some((arg, used)) = free.next() else {
            return Err(ImportError::at_origin(
                &service.origin,
                format!(
                    "{} names no address or port to serve on: pass --vip ADDRESS:PORT/PROTOCOL (one per such service, in file order)",
                    service.name
                ),
            ));
        };
        *used = true;
        let port = arg.port.ok_or_else(|| {
            ImportError::setup(format!(
                "--vip {}: {} names no port; give it as ADDRESS:PORT/PROTOCOL",
                arg_text(arg),
                service.name
            ))
        })?;
        out.push(Vip {
            address: arg.address,
            port,
            protocol: arg.protocol.unwrap_or_default(),
            comment: format!("--vip {}", arg_text(arg)),
            service,
        });
    }
    if let Some((arg, _)) = free.next() {
        return Err(ImportError::setup(format!(
            "--vip {}: no service of the sources takes it (they all have an address, or none has its port)",
            arg_text(arg)
        )));
    }
    for (i, a) in out.iter().enumerate() {
        if let Some(b) = out[..i]
            .iter()
            .find(|b| (b.address, b.port, b.protocol) == (a.address, a.port, a.protocol))
        {
            return Err(ImportError::at_origin(
                &a.service.origin,
                format!(
                    "{} and {} both serve {}:{}/{}; lbd sends a VIP to one set of backends",
                    b.service.name, a.service.name, a.address, a.port, a.protocol
                ),
            ));
        }
    }
    Ok(out)
}

/// Adds `new` unless its service already has that VIP (`listen 80` and
/// `listen [::]:80` of one server block, both on a v4 address).
fn add<'s>(out: &mut Vec<Vip<'s>>, new: Vip<'s>) {
    let key = (new.address, new.port, new.protocol);
    if !out
        .iter()
        .any(|v| std::ptr::eq(v.service, new.service) && (v.address, v.port, v.protocol) == key)
    {
        out.push(new);
    }
}

fn vip<'s>(address: IpAddr, listen: &Listen, comment: String, service: &'s Service) -> Vip<'s> {
    Vip {
        address,
        port: listen.port,
        protocol: listen.protocol,
        comment,
        service,
    }
}

fn listen_comment(listen: &Listen) -> String {
    format!("{} ({})", listen.origin, listen.what)
}

fn arg_text(arg: &VipArg) -> String {
    let mut text = arg.address.to_string();
    if arg.address.is_ipv6() && arg.port.is_some() {
        text = format!("[{text}]");
    }
    if let Some(port) = arg.port {
        text = format!("{text}:{port}");
    }
    if let Some(protocol) = arg.protocol {
        text = format!("{text}/{protocol}");
    }
    text
}

/// The forwarding mode of `vip`, why, and notes on what it asks of the
/// backends.
fn forwarding(
    vip: &Vip<'_>,
    options: &Options,
) -> Result<(Mode, String, Vec<String>), ImportError> {
    let service = vip.service;
    let differs: Vec<&Backend> = service
        .backends
        .iter()
        .filter(|b| b.port.is_some_and(|p| p != vip.port))
        .collect();
    let (mode, why) = if let Some(mode) = options.forwarding {
        (mode, "--forwarding".to_owned())
    } else if let Some(kind) = &service.forwarding {
        (kind.value, kind.comment())
    } else if differs.is_empty() {
        (
            Mode::DsrL2,
            "every backend listens on the VIP's port".to_owned(),
        )
    } else {
        (
            Mode::Nat,
            format!("backends listen on other ports than the VIP's {}", vip.port),
        )
    };
    let mut notes = Vec::new();
    if mode != Mode::Nat {
        if let Some(b) = differs.first() {
            if service.forwarding.is_some() && options.forwarding.is_none() {
                notes.push(format!(
                    "{}: {} listens on port {}; in {} mode the backend receives the VIP's port {} (as with IPVS)",
                    b.origin,
                    b.name,
                    b.port.unwrap_or(vip.port),
                    mode.name(),
                    vip.port
                ));
            } else {
                return Err(ImportError::at_origin(
                    &b.origin,
                    format!(
                        "{} listens on port {}, the VIP on {}: lbd's {} mode keeps the port; use --forwarding nat (with --nat-source)",
                        b.name,
                        b.port.unwrap_or(vip.port),
                        vip.port,
                        mode.name()
                    ),
                ));
            }
        }
    }
    if service.forwarding.is_none() && options.forwarding.is_none() {
        notes.push(format!(
            "{}: {} proxied connections; lbd forwards packets. {}",
            service.origin,
            service.name,
            match mode {
                Mode::DsrL2 => "In dsr-l2 mode the backends must be on this node's L2 segment, hold the VIP on lo (with arp_ignore=1, arp_announce=2) and answer clients directly; use --forwarding nat (with --nat-source) to leave them as they are.",
                _ => "In nat mode the backends stay as they are: they see connections from the NAT address and answer through lbd.",
            }
        ));
    }
    Ok((mode, why, notes))
}

/// The `[[vip]]` table of `vip`, its health and its backends.
fn vip_tables(
    vip: &Vip<'_>,
    mode: Mode,
    mode_comment: &str,
    mode_notes: Vec<String>,
) -> Result<Vec<Table>, ImportError> {
    let service = vip.service;
    let mut t = Table::new("[[vip]]", 0);
    t.notes = service.notes.iter().map(ToString::to_string).collect();
    t.notes.extend(mode_notes);
    t.push("address", vip.address.to_string(), vip.comment.clone());
    t.push("port", i64::from(vip.port), "");
    t.push("protocol", vip.protocol.to_string(), "");
    t.push("forwarding", mode.name(), mode_comment);
    let mut tables = vec![t];
    if service.backends.is_empty() {
        tables[0].notes.push(format!(
            "{}: {} has no backends",
            service.origin, service.name
        ));
        return Ok(tables);
    }
    // The VIP's checks are the first active backend's; others that differ
    // get their own table.
    let reference = service
        .backends
        .iter()
        .find(|b| b.role == Role::Active)
        .unwrap_or(&service.backends[0]);
    let mut notes = Vec::new();
    let mut health = Table::new("[vip.health]", 1);
    health.entries = health::entries(reference.check.as_ref(), &mut notes);
    tables[0].notes.append(&mut notes);
    tables.push(health);
    let top = service
        .backends
        .iter()
        .filter_map(|b| b.weight.as_ref().map(|w| w.value))
        .max()
        .unwrap_or(1)
        .max(1);
    let factor = (MAX_WEIGHT / top).clamp(1, 100);
    for backend in &service.backends {
        if backend.address.is_ipv4() != vip.address.is_ipv4() && !mode.is_tunnel() {
            return Err(ImportError::at_origin(
                &backend.origin,
                format!(
                    "{} is {} but VIP {} is {}: lbd reaches backends of the other family only in ipip or gue mode",
                    backend.address,
                    family(backend.address),
                    vip.address,
                    family(vip.address)
                ),
            ));
        }
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
            Role::Active => (
                (source * factor).min(MAX_WEIGHT),
                match &backend.weight {
                    Some(w) => format!("{} (x{factor})", w.comment()),
                    None => format!("the source's default weight 1 (x{factor})"),
                },
            ),
            Role::Disabled(at) => {
                b.notes.push(format!("{at}: disabled in the source: weight 0 (takes no new flows); `lbctl backend weight` brings it in"));
                (0, String::new())
            }
            Role::Backup(at) => {
                b.notes.push(format!("{at}: a backup server; lbd has none: weight 0 (takes no new flows) until you give it one"));
                (0, String::new())
            }
        };
        b.push("weight", i64::from(weight), comment);
        push_backend(b, backend, reference, &mut tables);
    }
    Ok(tables)
}

/// Pushes a backend's table, and its own health table when its checks
/// differ from the VIP's.
fn push_backend(mut table: Table, backend: &Backend, reference: &Backend, tables: &mut Vec<Table>) {
    let own = backend.check != reference.check;
    let mut notes = Vec::new();
    let entries = own.then(|| health::entries(backend.check.as_ref(), &mut notes));
    table.notes.append(&mut notes);
    tables.push(table);
    if let Some(entries) = entries {
        let mut h = Table::new("[vip.backend.health]", 2);
        h.entries = entries;
        tables.push(h);
    }
}

fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}
