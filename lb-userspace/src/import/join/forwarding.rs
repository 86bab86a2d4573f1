//! A VIP's forwarding mode: `--forwarding`, else IPVS's lb_kind, else
//! dsr-l2 when every backend listens on the VIP's port and nat when not;
//! with notes on what the mode asks of the backends.

use super::vips::Vip;
use crate::import::model::Backend;
use crate::import::{ImportError, Options};
use lb_common::Mode;

/// The forwarding mode of `vip`, why, and notes on what it asks of the
/// backends.
pub(super) fn forwarding(
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
    if let (Some(kind), Mode::Nat, None) = (&service.forwarding, mode, options.forwarding) {
        notes.push(format!(
            "{}: WARNING: IPVS NAT rewrites only the destination: the backends saw the client's address and answered through the director. lbd's nat mode is full NAT: they see connections from the NAT address, not the client's (client-address logs, ACLs and rate limits on the backends change; use --forwarding dsr-l2 or ipip to keep it)",
            kind.origin
        ));
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
