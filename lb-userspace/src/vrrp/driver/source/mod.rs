//! The address an instance's adverts go from: which of the interface's
//! addresses may be one (never a VIP, NAT or instance address, nor a
//! tentative, DAD-failed, deprecated or temporary one), picked at start,
//! checked at every look and followed when it moves or goes.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tracing::{debug, info, warn};

use super::{
    looks::{newer_look, AddressRead},
    Driver,
};
use crate::{
    config::{Config, VrrpConfig},
    netlink::{Interface, InterfaceAddress, Netlink},
    vrrp::{addresses, machine::PREEMPT_SYNC_HOLD, net::VrrpSocket, Family, State},
};

/// Opens the socket; an IPv6 link-local address still in duplicate
/// address detection (an interface just brought up) cannot be bound yet,
/// so that is retried for a few seconds. `present`: `local` is on the
/// interface (not a `unicast_src_ip` still to come).
pub(super) async fn open_socket(
    interface: &Interface,
    local: IpAddr,
    present: bool,
) -> anyhow::Result<VrrpSocket> {
    let deadline = Instant::now() + DAD_WAIT;
    loop {
        match VrrpSocket::open(&interface.name, interface.index, local, present) {
            Ok(socket) => return Ok(socket),
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrNotAvailable
                    && Instant::now() < deadline =>
            {
                debug!(%local, "source address not usable yet (duplicate address detection); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("opening the VRRP socket on {} from {local}", interface.name)
                })
            }
        }
    }
}

/// How long [`source_address`] waits at start for duplicate address
/// detection to end on the only addresses an instance could send from
/// (an interface just brought up): as long as [`open_socket`] waits.
const DAD_WAIT: Duration = Duration::from_secs(5);

/// The address an instance of `kind` sends from (see [`SourceKind`]),
/// none of `never`. Waits up to [`DAD_WAIT`] while the only candidates
/// are still tentative (see [`waits_for_dad`]); with none, the inner
/// error ([`no_source_message`]) names the interface, what is missing and
/// why each of its addresses of the family was passed over. The outer
/// one: the addresses could not be read.
pub(super) async fn source_address(
    netlink: &Netlink,
    interface: &Interface,
    kind: SourceKind,
    never: &[IpAddr],
) -> anyhow::Result<Result<IpAddr, String>> {
    let deadline = Instant::now() + DAD_WAIT;
    loop {
        let addresses = addresses::bounded(
            format!("listing the addresses of {}", interface.name),
            netlink.addresses(interface.index),
        )
        .await?;
        if let Some(source) = pick_source(&addresses, kind, never) {
            return Ok(Ok(source));
        }
        if waits_for_dad(&addresses, kind, never) && Instant::now() < deadline {
            debug!(interface = %interface.name, "the only {} is still tentative (duplicate address detection); waiting", kind.what());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return Ok(Err(no_source_message(
            &interface.name,
            &addresses,
            kind,
            never,
        )));
    }
}

/// Why an instance has no address to send from: the interface, the kind
/// of address missing, what each address of the family is instead, and
/// (for a global IPv6 source) why a link-local one does not do.
fn no_source_message(
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

/// The addresses no instance sends adverts from: every `[[vrrp]]`
/// instance's (not only its own: lbd adds them at a host prefix, /32 on
/// IPv4, which the kernel lists as primary addresses, so an instance
/// could otherwise pick another's VIP, one that moves to the peer with
/// that instance, once the node's own address is renumbered or re-added
/// after it), every VIP lbd balances and every NAT address (a VIP's or
/// `[nat]`'s: it moves with the VIPs too). Sorted, without repeats.
pub(super) fn never_sources(lbd: &Config) -> Vec<IpAddr> {
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

/// Whether `address` is an IPv6 link-local one (fe80::/10).
fn is_link_local(address: IpAddr) -> bool {
    matches!(address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Which of the interface's addresses an instance's adverts go from.
/// IPv4: the primary address. IPv6 to the group: the link-local address,
/// as RFC 5798 §5.1.2.1 wants. IPv6 to unicast peers (one not
/// link-local at least): a global address, since routers never forward a
/// link-local source (`unicast_peer_hops` > 0 could not work) and a
/// keepalived peer takes adverts only from an address in its
/// `unicast_peer` list, which names the node's global address
/// (keepalived's `unicast_src_ip`); with link-local peers only, the peers
/// are on the link and the link-local address stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// IPv4: a primary address.
    V4Primary,
    /// IPv6 to the group (or link-local peers): a link-local address.
    V6LinkLocal,
    /// IPv6 to unicast peers: a global (not link-local) address.
    V6Global,
    /// To unicast peers from `unicast_src_ip`: this address and no other
    /// (the one the peer's `unicast_peer` list names).
    Fixed(IpAddr),
}

impl SourceKind {
    /// The kind for an instance of `family` sending to `unicast_peers`
    /// (empty: the group).
    pub(crate) fn of(family: Family, unicast_peers: &[IpAddr]) -> Self {
        match family {
            Family::V4 => Self::V4Primary,
            Family::V6 if unicast_peers.iter().any(|peer| !is_link_local(*peer)) => Self::V6Global,
            Family::V6 => Self::V6LinkLocal,
        }
    }

    /// The kind for `config`, an instance of `family`: its
    /// `unicast_src_ip` if it sets one (config check allows it with
    /// unicast peers only), else as [`Self::of`] says.
    pub(crate) fn of_instance(family: Family, config: &VrrpConfig) -> Self {
        match config.unicast_src_ip {
            Some(source) if !config.unicast_peers.is_empty() => Self::Fixed(source),
            _ => Self::of(family, &config.unicast_peers),
        }
    }

    /// The address family of its addresses.
    fn family(self) -> Family {
        match self {
            Self::V4Primary => Family::V4,
            Self::V6LinkLocal | Self::V6Global => Family::V6,
            Self::Fixed(source) => Family::of(&source),
        }
    }

    /// What the address is, for the log.
    fn what(self) -> &'static str {
        match self {
            Self::V4Primary => "primary IPv4 address",
            Self::V6LinkLocal => "link-local IPv6 address",
            Self::V6Global => "global IPv6 address",
            Self::Fixed(_) => "unicast_src_ip address",
        }
    }
}

/// Whether `address` is of `kind` and may stay the source of adverts
/// already sent from it: none of `never` (lbd's VIPs, NAT addresses and
/// every instance's addresses, see [`never_sources`]), not DAD-failed
/// (another host has it), not an IPv4 secondary or IPv6 temporary address
/// (the same flag bit). It may be tentative (the same address re-running
/// duplicate address detection after an admin down/up: adverts still
/// leave, see [`VrrpSocket::open`]) or, for a global IPv6 source,
/// deprecated (see [`check_source`]).
fn may_keep_sending_from(address: &InterfaceAddress, kind: SourceKind, never: &[IpAddr]) -> bool {
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
fn may_send_from(address: &InterfaceAddress, kind: SourceKind, never: &[IpAddr]) -> bool {
    may_keep_sending_from(address, kind, never)
        && !address.state.tentative
        && !(kind == SourceKind::V6Global && address.state.deprecated)
}

/// The address `kind`'s adverts go from among `present` (the interface's
/// addresses): the first that [`may_send_from`]; for a link-local source
/// with none settled, the first still tentative (the one a MAC change
/// brings: it is the only link-local there is, and adverts from it leave,
/// see [`VrrpSocket::open`]). A global source is never a tentative one
/// (see [`waits_for_dad`] for the start).
fn pick_source(present: &[InterfaceAddress], kind: SourceKind, never: &[IpAddr]) -> Option<IpAddr> {
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
/// detection (see [`source_address`]) rather than refuse the instance.
fn waits_for_dad(present: &[InterfaceAddress], kind: SourceKind, never: &[IpAddr]) -> bool {
    pick_source(present, kind, never).is_none()
        && present
            .iter()
            .any(|a| a.state.tentative && may_keep_sending_from(a, kind, never))
}

/// What a check of the advert source found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceCheck {
    /// The current source is still one to send from: kept, even if another
    /// would be picked now, so the tie-break address (and the address a
    /// keepalived unicast peer lists) does not flap.
    Keep,
    /// The current source is gone (or no longer one to send from): this
    /// one now.
    Switch(IpAddr),
    /// The current source is gone and there is none to replace it.
    Gone,
}

/// Whether adverts sent from `current`, of `kind`, still leave: the
/// interface's primary IPv4, link-local or global IPv6 address can change
/// under lbd (an address renumbered, a new MAC's EUI-64 link-local), and a
/// send from an address the node no longer has fails (or, IPv6, leaves
/// from an address the peer no longer expects), so the peer hears nothing
/// and takes over while this node keeps the VIPs. A current source that
/// is only tentative again (DAD re-run after an admin down/up) is kept:
/// it is the same address, and adverts from it leave. A deprecated global
/// one is left for a settled one if there is one (it is being renumbered
/// away), else kept. Pure: `present` is the interface's addresses now,
/// `never` those never sent from (see [`never_sources`]).
fn check_source(
    current: IpAddr,
    present: &[InterfaceAddress],
    kind: SourceKind,
    never: &[IpAddr],
) -> SourceCheck {
    let held = present
        .iter()
        .find(|a| a.address == current && may_keep_sending_from(a, kind, never));
    match (held, pick_source(present, kind, never)) {
        // A settled one is never the deprecated current: it is another.
        (Some(held), Some(next)) if kind == SourceKind::V6Global && held.state.deprecated => {
            SourceCheck::Switch(next)
        }
        (Some(_), _) => SourceCheck::Keep,
        (None, Some(next)) => SourceCheck::Switch(next),
        (None, None) => SourceCheck::Gone,
    }
}

/// Whether a failed send may be the source's fault (no longer an address
/// of the node): Linux says EINVAL (IPv6, or an IPv4 source it refuses),
/// EADDRNOTAVAIL or ENETUNREACH (IPv4: the source is not local). Those
/// look again at once rather than at the next periodic check.
pub(super) fn source_may_be_stale(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::EADDRNOTAVAIL | libc::ENETUNREACH)
    )
}

/// The shortest time between two looks at the source prompted by failed
/// sends: adverts may go every 10 ms, and a send that keeps failing for
/// another reason (an unreachable unicast peer) must not dump the
/// interface's addresses each time.
const SOURCE_RECHECK_MIN: Duration = Duration::from_millis(100);

/// Whether a failed send at `now` may look at the source again, the last
/// look having been at `last` (see [`SOURCE_RECHECK_MIN`]).
pub(super) fn source_recheck_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= SOURCE_RECHECK_MIN)
}

impl Driver {
    /// Looks again at the address adverts go from, at once (after a
    /// failed send; see [`Self::on_addresses_read`]); whether it moved.
    pub(super) async fn follow_source(&mut self) -> bool {
        let read = self.looks.read_addresses(self.interface.index).await;
        let current = self.socket.local();
        self.on_addresses_read(read);
        self.socket.local() != current
    }

    /// Takes a look at the interface's addresses: the advert source
    /// ([`Self::follow_present_source`]); the addresses, if they were read
    /// and no later look was taken before (see [`newer_look`]). A failure
    /// to look is left to the next check.
    pub(super) fn on_addresses_read(&mut self, read: AddressRead) -> Option<Vec<InterfaceAddress>> {
        if !newer_look(&mut self.addresses_read_from, read.started) {
            return None;
        }
        match read.present {
            Ok(present) => {
                self.follow_present_source(&present);
                Some(present)
            }
            Err(error) => {
                debug!(
                    vrid = self.config.vrid,
                    error = format!("{error:#}"),
                    "reading the interface's addresses for the VRRP source failed"
                );
                None
            }
        }
    }

    /// Checks the address adverts go from against `present`, the
    /// interface's addresses (see [`check_source`]) and, if it moved,
    /// sends from the new one from now on; whether it moved.
    fn follow_present_source(&mut self, present: &[InterfaceAddress]) -> bool {
        let current = self.socket.local();
        let kind = SourceKind::of_instance(Family::of(&current), &self.config);
        match check_source(current, present, kind, &self.never) {
            SourceCheck::Keep => {
                self.source_returned();
                false
            }
            SourceCheck::Switch(next) => {
                if let Err(error) = self.socket.set_local(next) {
                    warn!(vrid = self.config.vrid, %current, %next, %error, "VRRP: cannot send from the interface's new address");
                    return false;
                }
                self.machine.set_primary_address(next);
                self.source_returned();
                info!(
                    vrid = self.config.vrid,
                    interface = %self.interface.name,
                    from = %current,
                    to = %next,
                    "VRRP: the interface's address changed; adverts now go from the new one"
                );
                self.publish();
                true
            }
            SourceCheck::Gone => {
                if !self.machine.source_is_gone() {
                    let meaning = match self.machine.state() {
                        State::Master => "this master announces nothing meanwhile, and gives up mastership and the VIPs (keepalived's FAULT) as soon as it hears the peer take over, or once the peer may have",
                        State::Backup => "this backup does not take over meanwhile: the pair has no standby if the master fails",
                        State::Initialize => "the instance is not running",
                    };
                    warn!(
                        vrid = self.config.vrid,
                        interface = %self.interface.name,
                        address = %current,
                        state = %self.machine.state(),
                        missing = no_source_message(&self.interface.name, present, kind, &self.never),
                        "VRRP: the address adverts go from is gone from the interface, with none to replace it; adverts fail (IPv6: leave from the old address) until one is back; {meaning}"
                    );
                    self.machine.source_gone(Instant::now());
                    self.publish();
                }
                false
            }
        }
    }

    /// A look found an address to send adverts from: if none was found
    /// before, the machine hears of it (see [`Machine::source_back`](crate::vrrp::Machine::source_back)).
    fn source_returned(&mut self) {
        let Some(since) = self.machine.source_gone_since() else {
            return;
        };
        let now = Instant::now();
        info!(
            vrid = self.config.vrid,
            interface = %self.interface.name,
            gone_ms = u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
            state = %self.machine.state(),
            "VRRP: the interface has an address to send adverts from again"
        );
        if self.machine.source_back(now) {
            info!(
                vrid = self.config.vrid,
                hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                "VRRP: this node gave up mastership for want of a source; preemption waits for the peer's connection table, so its connections are not cut"
            );
            self.source_hold_began = true;
        }
        self.publish();
    }
}

#[cfg(test)]
mod tests;
