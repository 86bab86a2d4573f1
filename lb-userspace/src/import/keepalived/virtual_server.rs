//! A `virtual_server` block (an IPVS service) as a VIP: its address,
//! port and protocol, `lb_kind`/`lvs_method` as the forwarding mode, and
//! its `real_server`s as backends with their weights and checkers.

use std::time::Duration;

use super::{checker, duration, number, one};
use crate::config::Protocol;
use crate::import::blocks::Statement;
use crate::import::model::{Backend, Listen, Note, Origin, Role, Service, Setup, Sourced};
use crate::import::ImportError;

/// A `virtual_server ADDRESS PORT { ... }` block (None: a fwmark or group
/// service, noted).
pub(super) fn virtual_server(
    file: &str,
    statement: &Statement,
    setup: &mut Setup,
) -> Result<Option<Service>, ImportError> {
    let origin = Origin::new(file, statement.line);
    let (address, port) = match statement.args() {
        [kind, _] if kind == "fwmark" || kind == "group" => {
            setup.notes.push(Note::new(
                &origin,
                format!(
                    "{}: an lbd VIP is an address and a port; write one --vip per service instead",
                    statement.text()
                ),
            ));
            return Ok(None);
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
            (address, port)
        }
        _ => {
            return Err(ImportError::at(
                file,
                statement.line,
                "virtual_server needs an address and a port",
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
        notes: Vec::new(),
    };
    let mut protocol = Protocol::Tcp;
    let mut delay_loop = None;
    let mut equal_weights: Option<Sourced<()>> = None;
    for child in statement.children() {
        let at = Origin::new(file, child.line);
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
            "delay_loop" => delay_loop = Some(Sourced::new(duration(file, child)?, &at, child.text())),
            "lb_algo" | "lvs_sched" => match child.args() {
                // IPVS's rr, lc and dh give every server of weight > 0
                // the same share whatever its weight; lbd's Maglev
                // honours weights, so they are made equal below.
                [algo] if matches!(algo.as_str(), "rr" | "lc" | "dh") => {
                    equal_weights = Some(Sourced::new((), &at, child.text()));
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
            "real_server" => {}
            _ => service.notes.push(Note::new(
                &at,
                format!("{}: not carried over", child.text()),
            )),
        }
    }
    for child in statement
        .children()
        .iter()
        .filter(|c| c.name() == "real_server")
    {
        let (backend, own) = real_server(file, child, delay_loop.as_ref())?;
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
    if let Some(algo) = &equal_weights {
        equalize(&mut service, algo);
    }
    service.listens.push(Listen {
        address: Some(address),
        wildcard_v6: false,
        v6_only: false,
        port,
        protocol,
        origin,
        what: format!("virtual_server {address} {port}"),
    });
    Ok(Some(service))
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

/// A `real_server ADDRESS PORT { weight N; TCP_CHECK {...} }` block, and
/// its own `lvs_method` if it has one.
fn real_server(
    file: &str,
    statement: &Statement,
    delay_loop: Option<&Sourced<Duration>>,
) -> Result<(Backend, Option<Sourced<lb_common::Mode>>), ImportError> {
    let origin = Origin::new(file, statement.line);
    let (address, port) = match statement.args() {
        [address, port] => (address, Some(port)),
        [address] => (address, None),
        _ => {
            return Err(ImportError::at(
                file,
                statement.line,
                "real_server needs an address and a port",
            ))
        }
    };
    let address: std::net::IpAddr = address.parse().map_err(|_| {
        ImportError::at(
            file,
            statement.line,
            format!("real_server {address}: not an IP address"),
        )
    })?;
    let port = match port {
        None => None,
        Some(p) => Some(crate::import::port_number(p).ok_or_else(|| {
            ImportError::at(
                file,
                statement.line,
                format!("real_server port {p:?}: not a port"),
            )
        })?),
    };
    let mut backend = Backend::named(
        address.to_string(),
        address,
        port,
        origin.clone(),
        statement.text(),
    );
    let mut own = None;
    let mut first_checker: Option<String> = None;
    for child in statement.children() {
        let at = Origin::new(file, child.line);
        match child.name() {
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
                        Some(checker::check(file, child, delay_loop, &mut backend.notes)?);
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
