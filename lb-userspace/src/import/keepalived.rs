//! keepalived.conf: `vrrp_instance` blocks (which node holds the VIPs)
//! become lbd's own `[[vrrp]]` (lbd speaks VRRPv3 itself and replaces
//! keepalived), `virtual_server` blocks (IPVS services) become VIPs.
//! Scripts keepalived ran to track HAProxy map to lbd tracking its own
//! data plane, which is what replaces HAProxy.

mod checker;
mod vrrp;

use std::time::Duration;

use super::blocks::{self, Dialect, Statement};
use super::model::{Backend, Listen, Note, Origin, Role, Service, Setup, Sourced};
use super::ImportError;
use crate::config::Protocol;

/// A `vrrp_script`: what it runs and its weight, for `track_script`.
#[derive(Debug, Clone)]
pub(super) struct Script {
    pub(super) name: String,
    pub(super) command: String,
    pub(super) weight: Option<i32>,
    pub(super) origin: Origin,
}

/// Seconds as keepalived writes them (`3`, `0.5`).
pub(super) fn seconds(text: &str) -> Option<Duration> {
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && (0.0..=1e6).contains(&value)).then(|| Duration::from_secs_f64(value))
}

/// The one argument of `statement`, or an error naming it.
pub(super) fn one<'s>(file: &str, statement: &'s Statement) -> Result<&'s str, ImportError> {
    match statement.args() {
        [value] => Ok(value),
        _ => Err(ImportError::at(
            file,
            statement.line,
            format!("{} takes one value", statement.name()),
        )),
    }
}

/// `statement`'s one argument as a number in `range`.
pub(super) fn number<T>(
    file: &str,
    statement: &Statement,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ImportError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let text = one(file, statement)?;
    text.parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ImportError::at(
                file,
                statement.line,
                format!(
                    "{} {text}: not a number in {}..={}",
                    statement.name(),
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// `statement`'s one argument as seconds.
pub(super) fn duration(file: &str, statement: &Statement) -> Result<Duration, ImportError> {
    let text = one(file, statement)?;
    seconds(text).ok_or_else(|| {
        ImportError::at(
            file,
            statement.line,
            format!("{} {text}: not a number of seconds", statement.name()),
        )
    })
}

/// Reads `text` (named `file`) into `setup`.
pub(crate) fn parse(file: &str, text: &str, setup: &mut Setup) -> Result<(), ImportError> {
    let top = blocks::parse(file, text, Dialect::Keepalived)?;
    let scripts: Vec<Script> = top
        .iter()
        .filter(|s| s.name() == "vrrp_script")
        .map(|s| script(file, s))
        .collect::<Result<_, _>>()?;
    for statement in &top {
        let origin = Origin::new(file, statement.line);
        match statement.name() {
            "vrrp_script" => {}
            "vrrp_instance" => setup.vrrp.push(vrrp::instance(file, statement, &scripts)?),
            "virtual_server" => {
                if let Some(service) = virtual_server(file, statement, setup)? {
                    setup.services.push(service);
                }
            }
            "global_defs" => setup.notes.push(Note::new(
                &origin,
                "global_defs: keepalived's process settings (router_id, e-mail alerts); lbd needs none of them",
            )),
            "include" => setup.notes.push(Note::new(
                &origin,
                format!(
                    "{}: not followed; pass the included files to import too",
                    statement.text()
                ),
            )),
            _ => setup.notes.push(Note::new(
                &origin,
                format!("{}: not carried over (lbd has no equivalent)", statement.text()),
            )),
        }
    }
    Ok(())
}

/// A `vrrp_script NAME { script ...; weight N }` block.
fn script(file: &str, statement: &Statement) -> Result<Script, ImportError> {
    let name = statement
        .args()
        .first()
        .cloned()
        .ok_or_else(|| ImportError::at(file, statement.line, "vrrp_script needs a name"))?;
    let mut out = Script {
        name,
        command: String::new(),
        weight: None,
        origin: Origin::new(file, statement.line),
    };
    for child in statement.children() {
        match child.name() {
            "script" => out.command = child.args().join(" "),
            "weight" => out.weight = Some(number(file, child, -253..=253)?),
            _ => {}
        }
    }
    Ok(out)
}

/// A `virtual_server ADDRESS PORT { ... }` block (None: a fwmark or group
/// service, noted).
fn virtual_server(
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
        notes: Vec::new(),
    };
    let mut protocol = Protocol::Tcp;
    let mut delay_loop = None;
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
            "lb_kind" => {
                let mode = match one(file, child)? {
                    "DR" => lb_common::Mode::DsrL2,
                    "NAT" => lb_common::Mode::Nat,
                    "TUN" => {
                        service.notes.push(Note::new(
                            &at,
                            "lb_kind TUN: lbd's ipip mode; the backends run lb-decap (or an ipip device) and hold the VIP on lo",
                        ));
                        lb_common::Mode::Ipip
                    }
                    other => {
                        return Err(ImportError::at(
                            file,
                            child.line,
                            format!("lb_kind {other}: not DR, NAT or TUN"),
                        ))
                    }
                };
                service.forwarding = Some(Sourced::new(mode, &at, child.text()));
            }
            "delay_loop" => delay_loop = Some(Sourced::new(duration(file, child)?, &at, child.text())),
            "lb_algo" | "lvs_sched" => service.notes.push(Note::new(
                &at,
                format!(
                    "{}: lbd balances with Maglev consistent hashing of each connection (weights kept)",
                    child.text()
                ),
            )),
            "persistence_timeout" => service.notes.push(Note::new(
                &at,
                format!(
                    "{}: no client persistence across connections; each connection stays on its backend",
                    child.text()
                ),
            )),
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
        service
            .backends
            .push(real_server(file, child, delay_loop.as_ref())?);
    }
    service.listens.push(Listen {
        address: Some(address),
        wildcard_v6: false,
        port,
        protocol,
        origin,
        what: format!("virtual_server {address} {port}"),
    });
    Ok(Some(service))
}

/// A `real_server ADDRESS PORT { weight N; TCP_CHECK {...} }` block.
fn real_server(
    file: &str,
    statement: &Statement,
    delay_loop: Option<&Sourced<Duration>>,
) -> Result<Backend, ImportError> {
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
    let mut backend = Backend {
        name: address.to_string(),
        address,
        port,
        weight: None,
        role: Role::Active,
        check: None,
        origin: origin.clone(),
        what: statement.text(),
        notes: Vec::new(),
    };
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
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" => {
                backend.check = Some(checker::check(file, child, delay_loop, &mut backend.notes)?);
            }
            _ => backend.notes.push(Note::new(
                &at,
                format!("{}: not carried over", child.text()),
            )),
        }
    }
    Ok(backend)
}
