//! NAT addresses (`--nat-source`) for the VIPs in lbd's NAT mode: one
//! per family at most, the one of each such VIP's family required,
//! written as `[nat]` and moved with the first VRRP instance of its
//! family.

use std::net::IpAddr;

use super::family;
use super::vips::Vip;
use crate::import::model::{Setup, Vrrp};
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

/// The `[nat]` table of the addresses `needed`; without a `[[vrrp]]` to
/// move them, a note says to put them on the interface.
pub(super) fn table(needed: &[IpAddr], setup: &Setup, document: &Document) -> Table {
    let mut nat = Table::new("[nat]", 0);
    for source in needed {
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
    }
    nat
}

/// The NAT addresses of `needed` that move with `instance`.
pub(super) fn moving_with(
    instance: &Vrrp,
    setup: &Setup,
    needed: &[IpAddr],
) -> Vec<(IpAddr, String)> {
    // Each NAT address moves with the first instance of its family.
    needed
        .iter()
        .filter(|a| {
            setup
                .vrrp
                .iter()
                .find(|v| {
                    v.addresses
                        .first()
                        .is_none_or(|f| f.value.is_ipv4() == a.is_ipv4())
                })
                .is_some_and(|v| std::ptr::eq(v, instance))
        })
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
        .collect()
}
