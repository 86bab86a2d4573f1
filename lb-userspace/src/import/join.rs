//! The files of one setup put together and turned into lbd's tables:
//! where a source names no VIP address (`bind *:80`), keepalived's
//! `virtual_ipaddress` or `--vip` gives it; the forwarding mode follows
//! IPVS's lb_kind or, for proxies, whether the backends listen on the
//! VIP's port; weights keep their ratios in lbd's range.

mod acl_tables;
mod affinity;
mod forwarding;
mod health;
mod idle;
mod nat;
mod slow_start;
mod vip_tables;
mod vips;
mod vrrp;
mod weight;

use std::net::IpAddr;

use super::detect::Format;
use super::model::Setup;
use super::write::{Document, Entry};
use super::{ImportError, Options};
use lb_common::Mode;

use acl_tables::acl_tables_of;
use forwarding::forwarding;
use vip_tables::vip_tables;
use vips::vips;

/// Joins `setup` (read from the files in `formats`) with `options`.
pub(super) fn join(
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
    address_devices(setup, options, &mut document.notes)?;
    document.top.push(interface(setup, options)?);
    if let Some(name) = &options.interface {
        // An instance keepalived ran elsewhere moves to lbd's interface.
        for instance in &setup.vrrp {
            if let Some(own) = instance.interface.as_ref().filter(|i| i.value != *name) {
                let already = !instance.address_devs.is_empty()
                    && instance
                        .address_devs
                        .iter()
                        .all(|(_, dev)| dev.value == *name);
                if already {
                    document.notes.push(format!(
                        "{}: WARNING: vrrp_instance {} sent its adverts on {} in keepalived and had its addresses on {name} (dev); lbd serves both on one interface, so with --interface {name} its adverts move to {name} (check that its peers reach it there)",
                        own.origin, instance.name, own.value
                    ));
                    continue;
                }
                document.notes.push(format!(
                    "{}: WARNING: vrrp_instance {} ran on {} in keepalived; lbd serves on one interface, so with --interface {name} its VIPs and adverts move to {name} (check that its peers and clients reach it there)",
                    own.origin, instance.name, own.value
                ));
            }
        }
    }

    let (vips, vip_notes) = vips(setup, options)?;
    document.notes.extend(vip_notes);
    nat::one_per_family(options)?;
    let mut nat_needed: Vec<IpAddr> = Vec::new();
    let mut nat_users: Vec<nat::NatUser> = Vec::new();
    let mut tables = Vec::new();
    let mut acl_tables = Vec::new();
    let mut idle_uses = Vec::new();
    for vip in &vips {
        let (mode, mode_comment, mode_notes) = forwarding(vip, options)?;
        if let (Some(timeout), crate::config::Protocol::Tcp) =
            (&vip.service.idle_timeout, vip.protocol)
        {
            let address = match vip.address {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            idle_uses.push(idle::IdleOf {
                vip: format!("{address}:{}/tcp", vip.port),
                timeout,
                nat: mode == Mode::Nat,
            });
        }
        if mode == Mode::Nat {
            let source = nat::source_for(vip, options, &mode_comment)?;
            if !nat_needed.contains(&source) {
                nat_needed.push(source);
            }
            nat_users.push(nat::NatUser {
                source,
                vip: vip.address,
            });
        }
        tables.extend(vip_tables(vip, mode, &mode_comment, mode_notes)?);
        acl_tables.extend(acl_tables_of(vip));
    }
    nat_needed.sort_by_key(|a| a.is_ipv6());
    let nat_movers = nat::movers(&nat_needed, &nat_users, setup)?;
    let idle = idle::idle_keys(&idle_uses);
    document.notes.extend(idle.notes);
    document.top.extend(idle.idle);
    if !nat_movers.is_empty() {
        let mut nat = nat::table(&nat_movers, &document);
        nat.entries.extend(idle.nat_established);
        document.tables.push(nat);
    }
    document.tables.extend(tables);
    document.tables.extend(acl_tables);

    document.tables.extend(vrrp::tables(setup, &nat_movers)?);
    Ok(document)
}

/// Where a `virtual_ipaddress` names a `dev` other than the interface
/// lbd serves on: keepalived put that address there, not on the
/// instance's `interface` (the adverts'), as in "heartbeat on the private
/// NIC, VIP on the public one". lbd serves its VIPs and adverts on one
/// interface, and taking the adverts' put the VIPs on the wrong NIC:
/// refused at the address without --interface (naming the fix), warned
/// of with it.
fn address_devices(
    setup: &Setup,
    options: &Options,
    notes: &mut Vec<String>,
) -> Result<(), ImportError> {
    for instance in &setup.vrrp {
        for (address, dev) in &instance.address_devs {
            match (&options.interface, &instance.interface) {
                (Some(name), _) if dev.value != *name => notes.push(format!(
                    "{}: WARNING: {address} ({}): keepalived put it on {}; lbd adds its VIPs on its one interface, --interface {name}: check that clients reach it there, or pass --interface {}",
                    dev.origin, dev.what, dev.value, dev.value
                )),
                (None, Some(adverts)) if dev.value != adverts.value => {
                    return Err(ImportError::at_origin(
                        &dev.origin,
                        format!(
                            "{}: VIP {address} is on {} (dev {}) but vrrp_instance {} sends its adverts on {} ({}); lbd serves its VIPs and adverts on one interface: pass --interface {} (the adverts move there; check that the peers reach it)",
                            dev.what, dev.value, dev.value, instance.name, adverts.value, adverts.comment(), dev.value
                        ),
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(())
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

/// "IPv4" or "IPv6", for messages.
fn family(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}
