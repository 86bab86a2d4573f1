//! A `virtual_server` block (an IPVS service) as a VIP: its address,
//! port and protocol (or a `virtual_server_group`'s, or none for a
//! firewall mark, which `--vip` places), `lb_kind`/`lvs_method` as the
//! forwarding mode, and its `real_server`s as backends with their
//! weights and checkers.

use super::group::{self, Group};
use super::{checker, number, one};
use crate::config::Protocol;
use crate::import::blocks::Statement;
use crate::import::model::{keep_only, Backend, Listen, Note, Origin, Role, Service, Sourced};
use crate::import::ImportError;

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
    for child in statement.children() {
        let file = child.file_in(file);
        let at = Origin::new(file, child.line);
        if inherited.read(file, child, &mut service.notes)? {
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
            "lb_algo" | "lvs_sched" => match child.args() {
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
                // Source hashing kept a client on one server: persistence.
                [algo] if matches!(algo.as_str(), "sh" | "mh") => {
                    service.notes.push(Note::persistence(&at, &child.text()));
                }
                _ => service.notes.push(Note::new(
                    &at,
                    format!(
                        "{}: lbd balances with Maglev consistent hashing of each connection (weights kept)",
                        child.text()
                    ),
                )),
            },
            "persistence_timeout" => service
                .notes
                .push(Note::persistence(&at, &child.text())),
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

/// keepalived's forwarding method where a virtual_server names none
/// (check_parser.c: "no forwarding method set, setting default NAT"):
/// IPVS NAT, which the backends answer through (they do not hold the
/// VIP), so lbd's nat mode, whose join warns that the backends then see
/// the NAT address and not the client's. Guessing dsr-l2 from the ports,
/// as for a proxy, left backends without the VIP receiving packets for
/// it. `default_forwarded`, a real_server without its own lvs_method,
/// is refused when others name a method other than NAT: an lbd VIP has
/// one forwarding mode.
fn default_nat(
    service: &mut Service,
    origin: &Origin,
    default_forwarded: Option<&Backend>,
) -> Result<(), ImportError> {
    match (&service.forwarding, default_forwarded) {
        (None, _) => {
            service.forwarding = Some(Sourced::new(
                lb_common::Mode::Nat,
                origin,
                "no lb_kind/lvs_method: keepalived's default NAT",
            ));
            Ok(())
        }
        (Some(own), Some(backend)) if own.value != lb_common::Mode::Nat => {
            Err(ImportError::at_origin(
                &backend.origin,
                format!(
                    "real_server {} names no lvs_method and its virtual_server none, so keepalived forwards it with its default NAT, otherwise than {}; an lbd VIP has one forwarding mode: split the service or make them agree",
                    backend.address,
                    own.comment()
                ),
            ))
        }
        (Some(_), _) => Ok(()),
    }
}

/// Weight 1 for every real_server of weight > 0, under a scheduler
/// (`lb_algo rr|lc|dh`) for which IPVS ignores weights other than 0: the
/// servers had equal shares, and lbd's Maglev, which honours weights,
/// would otherwise give them the unequal shares the weights say.
fn equalize(service: &mut Service, algo: &Sourced<()>) {
    let mut unequal = false;
    for backend in &mut service.backends {
        let Some(weight) = &backend.weight else {
            continue;
        };
        if weight.value == 0 {
            continue;
        }
        unequal |= weight.value != 1;
        backend.weight = Some(Sourced::new(
            1,
            &weight.origin,
            format!("{}, ignored by {}", weight.what, algo.what),
        ));
    }
    service.notes.push(Note::new(
        &algo.origin,
        match unequal {
            true => format!(
                "{}: IPVS gives every server of weight above 0 an equal share whatever its weight; lbd's Maglev hashing honours weights, so the servers are given equal weights",
                algo.what
            ),
            false => format!(
                "{}: lbd balances with Maglev consistent hashing of each connection, an equal share to each server as IPVS's",
                algo.what
            ),
        },
    ));
}

/// Under `lb_algo fo` (`ovf`), IPVS sent every connection to the one
/// available server of highest weight (until its connections passed its
/// weight), the others waiting in turn: that server keeps its weight,
/// the others get 0 and a WARNING that the failover order is lost (a
/// weighted split over all of them, as before, sent flows to servers
/// IPVS kept idle).
///
/// Of servers tied at the top weight IPVS takes the first on its list
/// (ip_vs_fo.c and ip_vs_ovf.c replace their pick only on a strictly
/// higher weight), and the kernel puts each server it is given at the
/// head of that list (list_add_rcu in __ip_vs_update_dest): keepalived
/// gives them in file order, so the last tied real_server is the one.
fn highest_only(service: &mut Service, algo: &Sourced<()>) {
    // keepalived's default weight is 1.
    let weight = |b: &Backend| b.weight.as_ref().map_or(1, |w| w.value);
    let Some(top) = service
        .backends
        .iter()
        .filter(|b| b.usable())
        .map(weight)
        .max()
    else {
        return;
    };
    let tied: Vec<usize> = service
        .backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.usable() && weight(b) == top)
        .map(|(i, _)| i)
        .collect();
    let keep: Vec<usize> = tied.last().copied().into_iter().collect();
    let kept = keep_only(&mut service.backends, &keep, &algo.origin, &algo.what);
    let how = if algo.what.ends_with("ovf") {
        "until its active connections passed its weight, then overflowed to the next"
    } else {
        "and failed over to the next when it went down"
    };
    service.notes.push(Note::new(
        &algo.origin,
        format!(
            "WARNING: {}: IPVS sent every connection to the available real_server of highest weight {how}; lbd has no failover order: {} (weight {top}{}) {} all new flows and the other real_servers are written with weight 0, so nothing takes over when {} down: give another a weight then (`lbctl backend weight`)",
            algo.what,
            kept.join(", "),
            if tied.len() > 1 {
                format!(", the last of {} tied, as IPVS picked the one given it last", tied.len())
            } else {
                String::new()
            },
            if kept.len() == 1 { "takes" } else { "take" },
            if kept.len() == 1 { "it goes" } else { "they go" }
        ),
    ));
}

/// `lb_kind` / `lvs_method` (its newer name): `NAT`, `DR`, `TUN [type
/// ipip|gue port N|gre] [nocsum|csum|remcsum]`, as lbd's forwarding mode.
fn method(
    file: &str,
    statement: &Statement,
    notes: &mut Vec<Note>,
) -> Result<lb_common::Mode, ImportError> {
    let at = Origin::new(file, statement.line);
    let bad = |reason: String| ImportError::at(file, statement.line, reason);
    match statement.args() {
        [kind] if kind == "DR" => Ok(lb_common::Mode::DsrL2),
        [kind] if kind == "NAT" => Ok(lb_common::Mode::Nat),
        [kind, rest @ ..] if kind == "TUN" => {
            let tunnel = match rest {
                [] => "ipip",
                [key, value, ..] if key == "type" => value.as_str(),
                _ => {
                    return Err(bad(format!(
                        "{}: expected TUN [type ipip|gue|gre ...]",
                        statement.text()
                    )))
                }
            };
            match tunnel {
                "ipip" => {
                    notes.push(Note::new(
                        &at,
                        format!("{}: lbd's ipip mode; the backends run lb-decap (or an ipip device) and hold the VIP on lo", statement.text()),
                    ));
                    Ok(lb_common::Mode::Ipip)
                }
                "gue" => {
                    notes.push(Note::new(
                        &at,
                        format!("{}: lbd's gue mode; the GUE port is lbd's [tunnel] gue_port (default 6080), one for all VIPs: set it to keepalived's; the backends run lb-decap", statement.text()),
                    ));
                    Ok(lb_common::Mode::Gue)
                }
                other => Err(bad(format!(
                    "{}: lbd tunnels with ipip or gue, not {other}",
                    statement.text()
                ))),
            }
        }
        [other, ..] => Err(bad(format!(
            "{} {other}: not DR, NAT or TUN",
            statement.name()
        ))),
        [] => Err(bad(format!("{} needs DR, NAT or TUN", statement.name()))),
    }
}

/// The `ADDRESS [PORT]` of a `real_server` or `sorry_server` statement
/// (`what`), refused at its line when it is not an IP address and an
/// optional port.
fn server_address(
    file: &str,
    statement: &Statement,
    what: &str,
) -> Result<(std::net::IpAddr, Option<u16>), ImportError> {
    let (address, port) = match statement.args() {
        [address, port] => (address, Some(port)),
        [address] => (address, None),
        _ => {
            return Err(ImportError::at(
                file,
                statement.line,
                format!("{what} needs an address and a port"),
            ))
        }
    };
    let address: std::net::IpAddr = address.parse().map_err(|_| {
        ImportError::at(
            file,
            statement.line,
            format!("{what} {address}: not an IP address"),
        )
    })?;
    let port = match port {
        None => None,
        Some(p) => Some(crate::import::port_number(p).ok_or_else(|| {
            ImportError::at(
                file,
                statement.line,
                format!("{what} port {p:?}: not a port"),
            )
        })?),
    };
    Ok((address, port))
}

/// `sorry_server ADDRESS [PORT]`: the server IPVS sent the clients to
/// when every real_server was down (a maintenance page). lbd has no such
/// server, so it is a backup server: written with weight 0 under the
/// backup WARNING (lbd drops new flows then), where a plain NOTE hid
/// the lost failover.
fn sorry_server(file: &str, statement: &Statement) -> Result<Backend, ImportError> {
    let at = Origin::new(file, statement.line);
    let (address, port) = server_address(file, statement, "sorry_server")?;
    Ok(Backend {
        role: Role::Backup(at.clone()),
        ..Backend::named(
            format!("sorry_server {address}"),
            address,
            port,
            at,
            statement.text(),
        )
    })
}

/// A `real_server ADDRESS PORT { weight N; TCP_CHECK {...} }` block, and
/// its own `lvs_method` if it has one.
fn real_server(
    file: &str,
    statement: &Statement,
    inherited: &checker::Inherited,
) -> Result<(Backend, Option<Sourced<lb_common::Mode>>), ImportError> {
    let origin = Origin::new(file, statement.line);
    let (address, port) = server_address(file, statement, "real_server")?;
    let mut backend = Backend::named(
        address.to_string(),
        address,
        port,
        origin.clone(),
        statement.text(),
    );
    let mut own = None;
    let mut first_checker: Option<String> = None;
    // The real_server's checker settings over the virtual_server's,
    // wherever in the block they are written: read before its checkers.
    let mut settings = inherited.clone();
    for child in statement.children() {
        settings.read(child.file_in(file), child, &mut backend.notes)?;
    }
    for child in statement.children() {
        let file = child.file_in(file);
        let at = Origin::new(file, child.line);
        match child.name() {
            _ if checker::is_inherited(child.name()) => {}
            "weight" => {
                let weight = number(file, child, 0..=65_535u32)?;
                if weight == 0 {
                    backend.role = Role::Disabled(at.clone());
                }
                backend.weight = Some(Sourced::new(weight, &at, child.text()));
            }
            "lvs_method" | "lb_kind" => {
                let mode = method(file, child, &mut backend.notes)?;
                own = Some(Sourced::new(mode, &at, child.text()));
            }
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK" | "DNS_CHECK" | "MISC_CHECK"
            | "BFD_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK" => {
                // keepalived needs every checker to pass; lbd has one check
                // per backend: the first is kept, the others said.
                if let Some(first) = &first_checker {
                    backend.notes.push(Note::new(
                        &at,
                        format!(
                            "WARNING: {}: a further checker of this real_server; keepalived needed all of them to pass, lbd checks a backend one way: only the first ({first}) is carried over",
                            child.name()
                        ),
                    ));
                    continue;
                }
                first_checker = Some(format!("{} at {at}", child.name()));
                if matches!(child.name(), "TCP_CHECK" | "HTTP_GET" | "SSL_GET") {
                    backend.check =
                        Some(checker::check(file, child, &settings, &mut backend.notes)?);
                } else {
                    backend.notes.push(Note::new(
                        &at,
                        format!(
                            "WARNING: {}: lbd checks with a TCP connection or an HTTP GET; this checker is not carried over and the backend is not checked",
                            child.name()
                        ),
                    ));
                }
            }
            _ => backend.notes.push(Note::new(
                &at,
                format!("{}: not carried over", child.text()),
            )),
        }
    }
    Ok((backend, own))
}
