//! NAT addresses (`--nat-source`) for the VIPs in lbd's NAT mode: one
//! per family at most, the one of each such VIP's family required,
//! written as `[nat]` and moved with the VRRP instance that holds the NAT
//! VIPs using it.

use std::net::IpAddr;

use super::family;
use super::vips::Vip;
use crate::import::model::{Setup, Sourced};
use crate::import::write::{Document, Table};
use crate::import::{ImportError, Options};

/// Refuses two `--nat-source`s of one family.
pub(super) fn one_per_family(options: &Options) -> Result<(), ImportError> {
    for (i, a) in options.nat_source.iter().enumerate() {
        if let Some(b) = options.nat_source[..i]
            .iter()
            .find(|b| b.is_ipv4() == a.is_ipv4())
        {
            return Err(ImportError::setup(format!(
                "--nat-source {b} and --nat-source {a}: lbd has one NAT address per family ([nat] source_ipv4, source_ipv6); give one of each at most"
            )));
        }
    }
    Ok(())
}

/// The NAT address of `vip`'s family, which its NAT mode (chosen for
/// `mode_comment`) needs.
pub(super) fn source_for(
    vip: &Vip<'_>,
    options: &Options,
    mode_comment: &str,
) -> Result<IpAddr, ImportError> {
    options
        .nat_source
        .iter()
        .find(|s| s.is_ipv4() == vip.address.is_ipv4())
        .copied()
        .ok_or_else(|| {
            let what = if options.nat_source.is_empty() {
                "pass --nat-source ADDRESS (an address of this node's network, moved with the VIPs)"
                    .to_owned()
            } else {
                format!(
                    "pass --nat-source with an {} address too (one per family)",
                    family(vip.address)
                )
            };
            ImportError::at_origin(
                &vip.service.origin,
                format!(
                    "{} needs lbd's NAT mode ({mode_comment}), which needs a NAT address: {what}",
                    vip.service.name
                ),
            )
        })
}

/// One NAT VIP: the NAT address it uses and where the VIP is.
pub(super) struct NatUser {
    /// Its NAT address (`--nat-source` of its family).
    pub(super) source: IpAddr,
    /// The VIP's address.
    pub(super) vip: IpAddr,
}

/// Which VRRP instance (index into `setup.vrrp`) moves each NAT address
/// of `needed`: the one holding the NAT VIPs that use it, since replies
/// to translated flows come back to the node holding those VIPs (lbd's
/// config checks this); `None` when no instance holds one of them. NAT
/// VIPs of two instances using one address are refused: the address can
/// move with one instance only, and the other's VIPs would lose their
/// replies whenever the two instances are mastered on different nodes.
pub(super) fn movers(
    needed: &[IpAddr],
    users: &[NatUser],
    setup: &Setup,
) -> Result<Vec<(IpAddr, Option<usize>)>, ImportError> {
    let holder = |vip: IpAddr| {
        setup.vrrp.iter().enumerate().find_map(|(index, instance)| {
            instance
                .addresses
                .iter()
                .find(|a| a.value == vip)
                .map(|a| (index, a))
        })
    };
    let mut out = Vec::new();
    for source in needed {
        let mut mover: Option<(usize, IpAddr, &Sourced<IpAddr>)> = None;
        for user in users.iter().filter(|u| u.source == *source) {
            let Some((index, at)) = holder(user.vip) else {
                continue;
            };
            match mover {
                None => mover = Some((index, user.vip, at)),
                Some((first, _, _)) if first == index => {}
                Some((first, first_vip, first_at)) => {
                    return Err(ImportError::at_origin(
                        &at.origin,
                        format!(
                            "NAT VIPs {first_vip} (vrrp_instance {}, {}) and {} (vrrp_instance {}, {}) both use --nat-source {source}, but lbd moves a NAT address with the one instance whose NAT VIPs use it (replies to translated flows come back to it), and these are two instances: put those VIPs in one vrrp_instance, or import without one instance's NAT services and add them afterwards with their own nat_source listed in their [[vrrp]]'s addresses",
                            setup.vrrp[first].name,
                            first_at.origin,
                            user.vip,
                            setup.vrrp[index].name,
                            at.origin,
                        ),
                    ));
                }
            }
        }
        out.push((*source, mover.map(|(index, _, _)| index)));
    }
    Ok(out)
}

/// The `[nat]` table of the addresses `movers` places; for one no
/// `[[vrrp]]` moves, a note says to put it on the interface.
pub(super) fn table(movers: &[(IpAddr, Option<usize>)], document: &Document) -> Table {
    let mut nat = Table::new("[nat]", 0);
    for (source, mover) in movers {
        let key = if source.is_ipv4() {
            "source_ipv4"
        } else {
            "source_ipv6"
        };
        nat.push(key, source.to_string(), "--nat-source");
        if mover.is_none() {
            nat.notes.push(format!(
                "--nat-source {source}: put it on {} as you do the VIPs that use it (no [[vrrp]] moves them or it)",
                document
                    .top
                    .first()
                    .and_then(|e| e.value.as_str())
                    .unwrap_or("the interface")
            ));
        }
    }
    nat
}
