//! Where each VIP is: a listen with an address as it is, a wildcard one
//! on keepalived's `virtual_ipaddress`es or the `--vip`s of its port, a
//! service with no listen on a `--vip` left over; two services on one
//! VIP are refused.

use std::net::IpAddr;

use crate::config::Protocol;
use crate::import::model::{Listen, Service, Setup};
use crate::import::{ImportError, Options, VipArg};

/// One VIP to write: where it is and the service behind it.
pub(super) struct Vip<'s> {
    pub(super) address: IpAddr,
    pub(super) port: u16,
    pub(super) protocol: Protocol,
    /// Where address and port came from.
    pub(super) comment: String,
    pub(super) service: &'s Service,
}

/// Every VIP: listens with an address as they are; wildcards with
/// keepalived's addresses, else the `--vip`s of their port; services with
/// no listen with the `--vip`s left, in order.
///
/// A wildcard listen of a family no address is given for (nginx's
/// `listen [::]:80` beside `listen 80` with IPv4 VIPs only) is left out
/// with a note when its service has other VIPs; returned with the VIPs.
pub(super) fn vips<'s>(
    setup: &'s Setup,
    options: &Options,
) -> Result<(Vec<Vip<'s>>, Vec<String>), ImportError> {
    let mut out: Vec<Vip<'s>> = Vec::new();
    let mut notes = Vec::new();
    let mut used = vec![false; options.vips.len()];
    // A NAT address keepalived moves too (listed so that lbd's adverts
    // and keepalived's name the same addresses) is no VIP. Said, since a
    // --nat-source that is a VIP's address by mistake takes that VIP away.
    for instance in &setup.vrrp {
        for a in instance
            .addresses
            .iter()
            .filter(|a| options.nat_source.contains(&a.value))
        {
            notes.push(format!(
                "{}: WARNING: {} ({}, vrrp_instance {}) is the NAT address (--nat-source), so it is not imported as a VIP; if clients connect to it, it is a VIP and --nat-source is wrong: give the NAT address another address",
                a.origin, a.value, a.what, instance.name
            ));
        }
    }
    let vrrp_addresses: Vec<_> = setup
        .vrrp
        .iter()
        .flat_map(|v| &v.addresses)
        .filter(|a| !options.nat_source.contains(&a.value))
        .collect();
    let given: Vec<IpAddr> = vrrp_addresses
        .iter()
        .map(|a| a.value)
        .chain(options.vips.iter().map(|a| a.address))
        .collect();
    // What services bind by address: HAProxy and nginx give a connection
    // to such a bind over a wildcard one on the same port, so a wildcard
    // takes no VIP another service binds explicitly (noted).
    let explicit: Vec<(IpAddr, u16, Protocol, &Service, &Listen)> = setup
        .services
        .iter()
        .flat_map(|s| {
            s.listens
                .iter()
                .filter_map(move |l| l.address.map(|a| (a, l.port, l.protocol, s, l)))
        })
        .collect();
    let bound_by = |address: IpAddr, listen: &Listen, service: &Service| {
        explicit.iter().find(|(a, port, protocol, other, _)| {
            (*a, *port, *protocol) == (address, listen.port, listen.protocol)
                && !std::ptr::eq(*other, service)
        })
    };
    let mut unplaced = Vec::new();
    for service in &setup.services {
        if service.listens.is_empty() {
            unplaced.push(service);
        }
        // Wildcard listens no given address is of the family of.
        let mut familyless: Vec<&Listen> = Vec::new();
        for listen in &service.listens {
            if let Some(address) = listen.address.filter(|a| a.is_loopback()) {
                notes.push(loopback_note(address, listen, service));
                continue;
            }
            if let Some(address) = listen.address {
                add(
                    &mut out,
                    vip(address, listen, listen_comment(listen), service),
                );
                continue;
            }
            let kept: Vec<_> = vrrp_addresses
                .iter()
                .filter(|a| takes(listen, a.value))
                .collect();
            for a in &kept {
                if let Some(note) =
                    shadowed(bound_by(a.value, listen, service), a.value, listen, service)
                {
                    notes.push(note);
                    continue;
                }
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
                    && takes(listen, arg.address)
                {
                    used[i] = true;
                    found = true;
                    if let Some(note) = shadowed(
                        bound_by(arg.address, listen, service),
                        arg.address,
                        listen,
                        service,
                    ) {
                        notes.push(note);
                        continue;
                    }
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
                // Addresses are given, none of its family: the operator
                // serves that family nowhere (else --vip is asked for).
                if !given.is_empty() && !given.iter().any(|a| takes(listen, *a)) {
                    familyless.push(listen);
                    continue;
                }
                return Err(no_address(listen));
            }
        }
        if let Some(first) = familyless.first() {
            if !out.iter().any(|v| std::ptr::eq(v.service, service)) {
                return Err(no_address(first));
            }
            for listen in familyless {
                let family = if listen.wildcard_v6 { "IPv6" } else { "IPv4" };
                notes.push(format!(
                    "{}: {} takes {family} clients only and no {family} address is given (keepalived virtual_ipaddress, --vip): not imported; {} serves on its other listens",
                    listen.origin, listen.what, service.name
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
    Ok((out, notes))
}

/// The note for a wildcard `listen` of `service` left off `address`
/// because another service binds it explicitly (`by`: that bind), as
/// HAProxy and nginx give its connections to the explicit bind; None
/// when none does.
fn shadowed(
    by: Option<&(IpAddr, u16, Protocol, &Service, &Listen)>,
    address: IpAddr,
    listen: &Listen,
    service: &Service,
) -> Option<String> {
    let (_, _, _, other, bind) = by?;
    Some(format!(
        "{}: {} of {} does not take {address}:{}/{}: {} binds it explicitly ({} at {}), and the proxy gave it that address's connections; the VIP is {}'s",
        listen.origin,
        listen.what,
        service.name,
        listen.port,
        listen.protocol,
        other.name,
        bind.what,
        bind.origin,
        other.name
    ))
}

/// The WARNING for a `listen` of `service` on a loopback `address`: the
/// proxy served this node's own clients there, whose connections never
/// reach lbd's XDP program on the interface, so it is left out (written,
/// it was a VIP no client reaches, and an IPv6 one beside IPv4 backends
/// refused the whole import).
fn loopback_note(address: IpAddr, listen: &Listen, service: &Service) -> String {
    format!(
        "{}: WARNING: {}: a loopback address ({address}), where {} served clients on this node only; lbd serves the packets that reach its interface, never this node's own connections: not imported; point those clients at a VIP, or keep the proxy for them",
        listen.origin, listen.what, service.name
    )
}

/// The error for a wildcard listen no address is found for.
fn no_address(listen: &Listen) -> ImportError {
    ImportError::at_origin(
        &listen.origin,
        format!(
            "{} names no address and no keepalived virtual_ipaddress gives one: pass --vip ADDRESS:{}/{}",
            listen.what, listen.port, listen.protocol
        ),
    )
}

/// Whether a wildcard `listen` takes clients of `address`'s family: an
/// IPv4 wildcard IPv4 only, an IPv6 one both unless `v6only`.
fn takes(listen: &Listen, address: IpAddr) -> bool {
    if address.is_ipv4() {
        !listen.wildcard_v6 || !listen.v6_only
    } else {
        listen.wildcard_v6
    }
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
