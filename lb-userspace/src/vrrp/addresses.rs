//! The VRRP addresses on the interface. lbd adds each with a host prefix
//! (/32, /128) and removes it only in that form: an address that is one of
//! the interface's own, with its subnet's prefix (198.18.0.1/24, an
//! "address owner" configuration), carries the connected route, so lbd
//! refuses to start with it listed and never removes it (a release, or
//! `lbd --release-vips` run after such a refusal, leaves it alone).

use std::net::IpAddr;

use anyhow::{bail, Context as _};
use tracing::warn;

use crate::netlink::{Interface, InterfaceAddress, Netlink};

/// The prefix length lbd gives a VRRP address: the address alone.
pub(crate) fn host_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

/// The entries of `present` that are `listed` addresses with another
/// prefix than lbd's: addresses of the interface itself.
fn own_entries<'a>(
    present: &'a [InterfaceAddress],
    listed: &[IpAddr],
) -> Vec<&'a InterfaceAddress> {
    present
        .iter()
        .filter(|a| listed.contains(&a.address) && a.prefix_len != host_prefix(a.address))
        .collect()
}

/// The `listed` addresses not in `present` (in any form).
fn missing(present: &[InterfaceAddress], listed: &[IpAddr]) -> Vec<IpAddr> {
    listed
        .iter()
        .filter(|l| !present.iter().any(|a| a.address == **l))
        .copied()
        .collect()
}

/// Refuses `listed` addresses that are already the interface's own (a
/// non-host prefix): lbd would take them, and their connected route, away
/// whenever this node is not master.
pub(crate) async fn refuse_own(
    netlink: &Netlink,
    interface: &Interface,
    vrid: u8,
    listed: &[IpAddr],
) -> anyhow::Result<()> {
    let present = netlink
        .addresses(interface.index)
        .await
        .with_context(|| format!("listing the addresses of {}", interface.name))?;
    if let Some(own) = own_entries(&present, listed).first() {
        bail!(
            "VRRP instance {vrid}: {}/{} is already an address of {} (not a host prefix, so \
             it carries its subnet's route): lbd adds VRRP addresses as /{} and removes them \
             when this node is not master; move the interface's own address out of the \
             [[vrrp]] addresses, or give the interface another address",
            own.address,
            own.prefix_len,
            interface.name,
            host_prefix(own.address)
        );
    }
    Ok(())
}

/// What [`remove`] did with an address, for a log that says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// It was there and is gone.
    Removed,
    /// It was not there.
    Absent,
    /// It is the interface's own address: left.
    Own,
}

/// Removes VRRP address `address` from interface `ifindex`, unless it is
/// there with another prefix than lbd's (the interface's own address):
/// that is left, with a warning. Absent is fine.
pub(crate) async fn remove(
    netlink: &Netlink,
    ifindex: u32,
    address: IpAddr,
) -> anyhow::Result<Removal> {
    let present = netlink
        .addresses(ifindex)
        .await
        .with_context(|| format!("listing the addresses of interface {ifindex}"))?;
    if let Some(own) = own_entries(&present, &[address]).first() {
        warn!(
            %address,
            prefix = own.prefix_len,
            "not removing the VRRP address: it is an address of the interface itself"
        );
        return Ok(Removal::Own);
    }
    let removed = netlink
        .remove_address(ifindex, address)
        .await
        .with_context(|| format!("removing VIP {address} from interface {ifindex}"))?;
    Ok(if removed {
        Removal::Removed
    } else {
        Removal::Absent
    })
}

/// The `listed` addresses missing from interface `ifindex` (something took
/// them away while we are master: a link bounce, networkd).
pub(crate) async fn missing_from(
    netlink: &Netlink,
    ifindex: u32,
    listed: &[IpAddr],
) -> anyhow::Result<Vec<IpAddr>> {
    let present = netlink
        .addresses(ifindex)
        .await
        .with_context(|| format!("listing the addresses of interface {ifindex}"))?;
    Ok(missing(&present, listed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(address: &str, prefix_len: u8) -> InterfaceAddress {
        InterfaceAddress {
            address: address.parse().unwrap(),
            prefix_len,
            secondary: false,
        }
    }

    #[test]
    fn an_interface_address_with_its_subnet_prefix_is_not_a_vip() {
        let present = [
            entry("198.18.0.1", 24),
            entry("198.18.0.100", 32),
            entry("2001:2::1", 64),
            entry("2001:2::100", 128),
        ];
        let listed: Vec<IpAddr> = ["198.18.0.1", "198.18.0.100", "2001:2::100", "2001:2::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let own: Vec<IpAddr> = own_entries(&present, &listed)
            .iter()
            .map(|a| a.address)
            .collect();
        assert_eq!(
            own,
            [
                "198.18.0.1".parse::<IpAddr>().unwrap(),
                "2001:2::1".parse().unwrap()
            ]
        );
        assert!(own_entries(&present, &listed[1..3]).is_empty());
    }

    #[test]
    fn missing_lists_what_is_gone() {
        let present = [entry("198.18.0.1", 24), entry("198.18.0.100", 32)];
        let listed: Vec<IpAddr> = vec![
            "198.18.0.100".parse().unwrap(),
            "198.18.0.101".parse().unwrap(),
        ];
        assert_eq!(missing(&present, &listed), vec![listed[1]]);
        assert!(missing(&present, &listed[..1]).is_empty());
    }
}
