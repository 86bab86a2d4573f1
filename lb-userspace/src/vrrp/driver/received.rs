//! Adverts heard: decoded, validated against the instance's config,
//! complained about (rate-limited) when they show a fault on the link,
//! and handed to the machine; also those already queued, read at once.

use std::{net::IpAddr, time::Instant};

use tracing::{debug, warn};

use super::Driver;
use crate::vrrp::{
    complaints, net::Received, validate_from, Action, Advertisement, DecodeError, Invalid,
};

/// Most packets read from the socket's queue before the timer is acted on
/// (see `Driver::drain_queued`): every advert a stall of a few seconds
/// queues at the fastest interval (10 ms), while a flood still lets the
/// timer fire.
const DRAIN_LIMIT: usize = 1024;

impl Driver {
    /// Hands the machine the packets already queued in the socket, at most
    /// [`DRAIN_LIMIT`], without waiting (see [`Self::on_deadline`]); what
    /// it decided.
    pub(super) fn drain_queued(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..DRAIN_LIMIT {
            match self.socket.try_recv() {
                Ok(Some(packet)) => actions.extend(self.on_packet(&packet)),
                Ok(None) => break,
                Err(error) => {
                    debug!(vrid = self.config.vrid, %error, "VRRP: reading the queued packets failed; the receive arm reads on");
                    break;
                }
            }
        }
        actions
    }

    fn ignore(&mut self, label: &str) -> Vec<Action> {
        *self.ignored.entry(label.to_owned()).or_default() += 1;
        self.publish();
        Vec::new()
    }

    pub(super) fn on_packet(&mut self, packet: &Received) -> Vec<Action> {
        if packet.src == self.socket.local() {
            return Vec::new(); // our own, looped back
        }
        let (ad, _mode) = match Advertisement::decode(&packet.payload, packet.src, packet.dst) {
            Ok(decoded) => decoded,
            Err(error) => {
                if matches!(error, DecodeError::Checksum) {
                    self.complain(error.label(), packet.src, &error, None);
                } else if let Some(version) =
                    complaints::other_version_for(&error, &packet.payload, self.config.vrid)
                {
                    let why = format!("VRRP version {version} with our VRID {}: each router ignores the other's adverts, so both may be master; keepalived speaks version 2 unless its vrrp_instance sets `vrrp_version 3`", self.config.vrid);
                    self.complain(error.label(), packet.src, &why, None);
                } else {
                    debug!(vrid = self.config.vrid, src = %packet.src, %error, "malformed VRRP packet ignored");
                }
                return self.ignore(error.label());
            }
        };
        if let Err(invalid) = validate_from(
            &ad,
            packet.ttl,
            Some(packet.src),
            self.config.vrid,
            &self.config.addresses,
            &self.config.unicast_peers,
            self.config.unicast_peer_hops,
        ) {
            match invalid {
                // Another virtual router on the link: not a fault.
                Invalid::OtherVrid(_) => {}
                Invalid::AddressMismatch => {
                    let differing = complaints::differing(&ad.addresses, &self.config.addresses);
                    self.complain(invalid.label(), packet.src, &invalid, Some(differing));
                }
                Invalid::Ttl(_) if self.config.unicast_peers.contains(&packet.src) => {
                    let why = format!("{invalid} from unicast peer {}, which allows {} router hop(s) (unicast_peer_hops): if routers lie between the peers, set unicast_peer_hops to their number; otherwise this advert was forged from off the link", packet.src, self.config.unicast_peer_hops);
                    self.complain(invalid.label(), packet.src, &why, None);
                }
                Invalid::Ttl(_) if !self.config.unicast_peers.is_empty() => {
                    let why = format!("{invalid} from a sender that is none of unicast_peers (a peer's adverts may be routed: list the address they come from, and set unicast_peer_hops)");
                    self.complain(invalid.label(), packet.src, &why, None);
                }
                Invalid::Ttl(_) => self.complain(invalid.label(), packet.src, &invalid, None),
            }
            return self.ignore(invalid.label());
        }
        let now = Instant::now();
        self.warn_if_stalled(now);
        self.machine.on_advert(&ad, packet.src, now)
    }

    /// Warns (at most once a minute per reason and peer) about an advert
    /// from `peer` ignored for a fault on the link: an address list other
    /// than ours (`differing`: only theirs, only ours), which leaves both
    /// routers master, a TTL that says it was routed, a bad checksum.
    fn complain(
        &mut self,
        reason: &'static str,
        peer: IpAddr,
        error: &dyn std::fmt::Display,
        differing: Option<(Vec<IpAddr>, Vec<IpAddr>)>,
    ) {
        let Some(suppressed) = self.complaints.allow(reason, peer, Instant::now()) else {
            return;
        };
        let vrid = self.config.vrid;
        match differing {
            Some((only_theirs, only_ours)) => warn!(
                vrid,
                %peer,
                reason,
                only_theirs = ?only_theirs,
                only_ours = ?only_ours,
                suppressed,
                "VRRP advert ignored: {error}; each router ignores the other's adverts, so both may be master: give both the same addresses"
            ),
            None => warn!(vrid, %peer, reason, suppressed, "VRRP advert ignored: {error}"),
        }
    }
}
