//! A `virtual_server` block (an IPVS service) as a VIP: its address,
//! port and protocol (or a `virtual_server_group`'s, or none for a
//! firewall mark, which `--vip` places), `lb_kind`/`lvs_method` as the
//! forwarding mode, and its `real_server`s as backends with their
//! weights and checkers.

mod forwarding;
mod persistence;
mod scheduler;
mod servers;

use super::group::{self, Group};
use super::{checker, one};
use crate::config::Protocol;
use crate::import::blocks::Statement;
use crate::import::model::{Backend, Listen, Note, Origin, Service, Sourced};
use crate::import::ImportError;

use forwarding::{default_nat, method};
use persistence::Persistence;
use scheduler::{equalize, highest_only};
use servers::{real_server, sorry_server};

/// Where a virtual_server answers: its own address and port, the
/// entries of a `virtual_server_group`, or a firewall mark.
enum Front<'g> {
    Address(std::net::IpAddr, u16),
    Group(&'g Group),
    Fwmark,
}

/// A `virtual_server ADDRESS PORT`, `virtual_server group NAME` or
/// `virtual_server fwmark N` block. A group's entries are its VIPs (the
/// group may be in any file given); a fwmark service has no address of
/// its own, so it is a service without a listen, which `--vip` places.
pub(super) fn virtual_server(
    file: &str,
    statement: &Statement,
    groups: &[Group],
) -> Result<Service, ImportError> {
    let origin = Origin::new(file, statement.line);
    // Said on the VIP --vip gives a fwmark service.
    let mut fwmark_note = None;
    let front = match statement.args() {
        [kind, name] if kind == "group" => {
            let group = groups.iter().find(|g| g.name == *name).ok_or_else(|| {
                ImportError::at(
                    file,
                    statement.line,
                    format!(
                        "{}: no virtual_server_group {name} in the files given (pass the file that defines it too)",
                        statement.text()
                    ),
                )
            })?;
            Front::Group(group)
        }
        [kind, _] if kind == "fwmark" => {
            fwmark_note = Some(Note::new(
                &origin,
                format!(
                    "{}: IPVS took the packets a firewall rule marked, whatever their address; an lbd VIP is an address and a port: pass --vip ADDRESS:PORT/PROTOCOL for this service (the --vips left over take the services without an address, in file order; add a [[vip]] with these backends for each further address and port the mark covered)",
                    statement.text()
                ),
            ));
            Front::Fwmark
        }
        [address, port] => {
            let address = address.parse().map_err(|_| {
                ImportError::at(
                    file,
                    statement.line,
                    format!("virtual_server {address}: not an IP address"),
                )
            })?;
            let port = crate::import::port_number(port).ok_or_else(|| {
                ImportError::at(
                    file,
                    statement.line,
                    format!("virtual_server port {port:?}: not a port"),
                )
            })?;
            Front::Address(address, port)
        }
        _ => {
            return Err(ImportError::at(
                file,
                statement.line,
                "virtual_server needs an address and a port, group NAME or fwmark N",
            ))
        }
    };
    let mut service = Service {
        name: statement.text(),
        origin: origin.clone(),
        listens: Vec::new(),
        backends: Vec::new(),
        forwarding: None,
        affinity: Vec::new(),
        acl: Vec::new(),
        passive: None,
        all_backups: None,
        idle_timeout: None,
        notes: fwmark_note.into_iter().collect(),
    };
    let mut protocol = Protocol::Tcp;
    // The checker settings given here, the real_servers' defaults.
    let mut inherited = checker::Inherited::default();
    let mut equal_weights: Option<Sourced<()>> = None;
    let mut failover: Option<Sourced<()>> = None;
    let mut sorry: Option<Backend> = None;
    let mut persistence = Persistence::default();
    for child in statement.children() {
        let file = child.file_in(file);
        let at = Origin::new(file, child.line);
        if inherited.read(file, child, &mut service.notes)?
            || persistence.read(file, child, &mut service.notes)?
        {
            continue;
        }
        match child.name() {
            "protocol" => {
                protocol = match one(file, child)? {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    other => {
                        return Err(ImportError::at(
                            file,
                            child.line,
                            format!("protocol {other}: lbd balances TCP and UDP"),
                        ))
                    }
                }
            }
            "lb_kind" | "lvs_method" => {
                let mode = method(file, child, &mut service.notes)?;
                service.forwarding = Some(Sourced::new(mode, &at, child.text()));
            }
            "lb_algo" | "lvs_sched" => {
                persistence.scheduler(&at, child);
                match child.args() {
                    // IPVS's rr, lc and dh give every server of weight > 0
                    // the same share whatever its weight; lbd's Maglev
                    // honours weights, so they are made equal below.
                    [algo] if matches!(algo.as_str(), "rr" | "lc" | "dh") => {
                        equal_weights = Some(Sourced::new((), &at, child.text()));
                    }
                    // A failover order: made after the real_servers are read.
                    [algo] if matches!(algo.as_str(), "fo" | "ovf") => {
                        failover = Some(Sourced::new((), &at, child.text()));
                    }
                    // Source hashing: client affinity, with the port flags
                    // and persistence after the loop.
                    [algo] if matches!(algo.as_str(), "sh" | "mh") => {}
                    _ => service.notes.push(Note::new(
                        &at,
                        format!(
                            "{}: lbd balances with Maglev consistent hashing of each connection (weights kept)",
                            child.text()
                        ),
                    )),
                }
            }
            // After the real_servers, as a backup: the backup WARNING says
            // that lbd drops new flows where IPVS sent them to it.
            "sorry_server" => sorry = Some(sorry_server(file, child)?),
            "real_server" => {}
            _ => service.notes.push(Note::new(
                &at,
                format!("{}: not carried over", child.text()),
            )),
        }
    }
    // Whether the virtual_server names its forwarding method: without,
    // each real_server without its own is forwarded with keepalived's
    // default NAT.
    let named = service.forwarding.is_some();
    let mut default_forwarded: Option<Backend> = None;
    for child in statement
        .children()
        .iter()
        .filter(|c| c.name() == "real_server")
    {
        let (backend, own) = real_server(child.file_in(file), child, &inherited)?;
        if own.is_none() && !named && default_forwarded.is_none() {
            default_forwarded = Some(backend.clone());
        }
        // keepalived lets a real_server have its own lvs_method; an lbd VIP
        // has one forwarding mode for all its backends.
        if let Some(own) = own {
            match &service.forwarding {
                Some(mode) if mode.value != own.value => {
                    return Err(ImportError::at_origin(
                        &own.origin,
                        format!(
                            "{}: real_server {} is forwarded otherwise than its virtual_server ({}); an lbd VIP has one forwarding mode: split the service or make them agree",
                            own.what, backend.address, mode.comment()
                        ),
                    ))
                }
                Some(_) => {}
                None => service.forwarding = Some(own),
            }
        }
        service.backends.push(backend);
    }
    service.backends.extend(sorry);
    default_nat(&mut service, &origin, default_forwarded.as_ref())?;
    persistence.apply(&mut service);
    if let Some(algo) = &equal_weights {
        equalize(&mut service, algo);
    }
    if let Some(algo) = &failover {
        highest_only(&mut service, algo);
    }
    match front {
        Front::Address(address, port) => service.listens.push(Listen {
            address: Some(address),
            wildcard_v6: false,
            v6_only: false,
            port,
            protocol,
            origin,
            what: format!("virtual_server {address} {port}"),
        }),
        Front::Group(group) => {
            for entry in &group.entries {
                match entry {
                    group::Entry::Address {
                        address,
                        port,
                        origin,
                        what,
                    } => service.listens.push(Listen {
                        address: Some(*address),
                        wildcard_v6: false,
                        v6_only: false,
                        port: *port,
                        protocol,
                        origin: origin.clone(),
                        what: what.clone(),
                    }),
                    group::Entry::Fwmark { origin, what } => service.notes.push(Note::new(
                        origin,
                        format!(
                            "{what} (virtual_server_group {}): IPVS took the packets a firewall rule marked; an lbd VIP is an address and a port: not carried over (add a [[vip]] with these backends for each address and port the mark covered{})",
                            group.name,
                            if group.entries.iter().any(|e| matches!(e, group::Entry::Address { .. })) {
                                ""
                            } else {
                                ", or pass --vip ADDRESS:PORT/PROTOCOL: the group has no address of its own"
                            }
                        ),
                    )),
                }
            }
        }
        // No listen: placed by --vip, said above.
        Front::Fwmark => {}
    }
    Ok(service)
}
