//! Which of the interface's addresses may be an advert source: never a
//! VIP, NAT or instance address, nor a tentative, DAD-failed, deprecated
//! or temporary one; one rule for the pick at start and every check.

use std::net::IpAddr;

use super::kind::{is_link_local, SourceKind};
use crate::{config::Config, netlink::InterfaceAddress};

/// The addresses no instance sends adverts from: every `[[vrrp]]`
/// instance's (not only its own: lbd adds them at a host prefix, /32 on
/// IPv4, which the kernel lists as primary addresses, so an instance
/// could otherwise pick another's VIP, one that moves to the peer with
/// that instance, once the node's own address is renumbered or re-added
/// after it), every VIP lbd balances and every NAT address (a VIP's or
/// `[nat]`'s: it moves with the VIPs too). Sorted, without repeats.
pub(in crate::vrrp::driver) fn never_sources(lbd: &Config) -> Vec<IpAddr> {
    let mut never: Vec<IpAddr> = lbd
        .vrrp
        .iter()
        .flat_map(|vrrp| vrrp.addresses.iter().copied())
        .chain(lbd.vips.iter().map(|vip| vip.address))
        .chain(
            lbd.vips
                .iter()
                .filter_map(|vip| vip.nat.map(|nat| nat.source)),
        )
        .chain(lbd.nat.source_ipv4)
        .chain(lbd.nat.source_ipv6)
        .collect();
    never.sort_unstable();
    never.dedup();
    never
}

/// Whether `address` is of `kind` and may stay the source of adverts
/// already sent from it: none of `never` (lbd's VIPs, NAT addresses and
/// every instance's addresses, see [`never_sources`]), not DAD-failed
/// (another host has it), not an IPv4 secondary or IPv6 temporary address
/// (the same flag bit). It may be tentative (the same address re-running
/// duplicate address detection after an admin down/up: adverts still
/// leave, see [`VrrpSocket::open`](crate::vrrp::net::VrrpSocket::open)) or, for a global IPv6 source,
/// deprecated (see [`check_source`](super::check::check_source)).
pub(super) fn may_keep_sending_from(
    address: &InterfaceAddress,
    kind: SourceKind,
    never: &[IpAddr],
) -> bool {
    if never.contains(&address.address) || address.state.dad_failed {
        return false;
    }
    // The address named, whatever its kind: an IPv4 secondary (the
    // second address of the interface is one), an IPv6 temporary one.
    if let SourceKind::Fixed(source) = kind {
        return address.address == source;
    }
    if address.secondary {
        return false;
    }
    match (kind, address.address) {
        (SourceKind::V4Primary, IpAddr::V4(_)) => true,
        (SourceKind::V6LinkLocal, a @ IpAddr::V6(_)) => is_link_local(a),
        (SourceKind::V6Global, a @ IpAddr::V6(v6)) => {
            !is_link_local(a) && !v6.is_loopback() && !v6.is_multicast() && !v6.is_unspecified()
        }
        _ => false,
    }
}

/// Whether `address` may become the source of `kind`'s adverts: one
/// [`may_keep_sending_from`] that is settled: not tentative and, for a
/// global IPv6 source, not deprecated (preferred lifetime 0: being
/// renumbered away, or a VIP held by hand in the form lbd gives its
/// own; a `unicast_src_ip` may be deprecated: it is the one named). One
/// rule for the start and for every later check, so a source picked once
/// is kept by the checks.
pub(super) fn may_send_from(
    address: &InterfaceAddress,
    kind: SourceKind,
    never: &[IpAddr],
) -> bool {
    may_keep_sending_from(address, kind, never)
        && !address.state.tentative
        && !(kind == SourceKind::V6Global && address.state.deprecated)
}

/// The address `kind`'s adverts go from among `present` (the interface's
/// addresses): the first that [`may_send_from`]; for a link-local source
/// with none settled, the first still tentative (the one a MAC change
/// brings: it is the only link-local there is, and adverts from it leave,
/// see [`VrrpSocket::open`](crate::vrrp::net::VrrpSocket::open)). A global source is never a tentative one
/// (see [`waits_for_dad`] for the start).
pub(super) fn pick_source(
    present: &[InterfaceAddress],
    kind: SourceKind,
    never: &[IpAddr],
) -> Option<IpAddr> {
    present
        .iter()
        .find(|a| may_send_from(a, kind, never))
        .or_else(|| {
            (kind == SourceKind::V6LinkLocal)
                .then(|| {
                    present
                        .iter()
                        .find(|a| may_keep_sending_from(a, kind, never))
                })
                .flatten()
        })
        .map(|a| a.address)
}

/// Whether [`pick_source`] found nothing only because the candidates are
/// still tentative: the start waits for their duplicate address
/// detection (see [`source_address`](super::start::source_address)) rather than refuse the instance.
pub(super) fn waits_for_dad(
    present: &[InterfaceAddress],
    kind: SourceKind,
    never: &[IpAddr],
) -> bool {
    pick_source(present, kind, never).is_none()
        && present
            .iter()
            .any(|a| a.state.tentative && may_keep_sending_from(a, kind, never))
}
