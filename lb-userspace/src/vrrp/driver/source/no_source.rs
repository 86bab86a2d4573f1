//! Why an instance has no address to send adverts from: the message
//! that names the interface, what is missing and why each address of the
//! family was passed over.

use std::net::IpAddr;

use super::kind::{is_link_local, SourceKind};
use crate::{netlink::InterfaceAddress, vrrp::Family};

/// Why an instance has no address to send from: the interface, the kind
/// of address missing, what each address of the family is instead, and
/// (for a global IPv6 source) why a link-local one does not do.
pub(super) fn no_source_message(
    interface: &str,
    present: &[InterfaceAddress],
    kind: SourceKind,
    never: &[IpAddr],
) -> String {
    let passed: Vec<String> = present
        .iter()
        .filter_map(|a| passed_over(a, kind, never).map(|why| format!("{} is {why}", a.address)))
        .collect();
    let why = match kind {
        SourceKind::V6Global => " (adverts to global unicast peers go from a global address: routers never forward a link-local source, and a keepalived peer takes adverts only from an address in its unicast_peer list)",
        _ => "",
    };
    let listed = if passed.is_empty() {
        String::new()
    } else {
        format!("; passed over: {}", passed.join(", "))
    };
    if let SourceKind::Fixed(source) = kind {
        let state = if passed.is_empty() {
            String::new()
        } else {
            format!(" ({})", passed.join(", "))
        };
        return format!(
            "interface {interface} does not have unicast_src_ip {source} in a state to send VRRP adverts from{state}: adverts go from that address only (the one the peer's unicast_peer list names), never another of the interface's; add it to {interface}, or change unicast_src_ip"
        );
    }
    format!(
        "interface {interface} has no {} to send VRRP adverts from{why}; the VIPs, NAT and [[vrrp]] addresses never are one, nor a tentative, DAD-failed, deprecated or temporary address{listed}",
        kind.what()
    )
}

/// Why `address` is no advert source of `kind` (None: it is one, or is
/// of another family or kind, not worth naming), for
/// [`no_source_message`].
fn passed_over(
    address: &InterfaceAddress,
    kind: SourceKind,
    never: &[IpAddr],
) -> Option<&'static str> {
    if Family::of(&address.address) != kind.family() {
        return None;
    }
    if let SourceKind::Fixed(source) = kind {
        // Only the address named is worth naming: no other is one.
        if address.address != source {
            return None;
        }
    }
    let link_local = is_link_local(address.address);
    let why = if never.contains(&address.address) {
        "a VIP, NAT or [[vrrp]] address"
    } else if kind == SourceKind::V6LinkLocal && !link_local {
        return None;
    } else if kind == SourceKind::V6Global && link_local {
        "link-local"
    } else if address.state.dad_failed {
        "DAD-failed (another host has it)"
    } else if address.secondary && !matches!(kind, SourceKind::Fixed(_)) {
        match kind {
            SourceKind::V4Primary => "secondary",
            _ => "temporary (privacy extensions)",
        }
    } else if address.state.tentative {
        "tentative (duplicate address detection under way)"
    } else if kind == SourceKind::V6Global && address.state.deprecated {
        "deprecated (preferred_lft 0)"
    } else {
        return None;
    };
    Some(why)
}
