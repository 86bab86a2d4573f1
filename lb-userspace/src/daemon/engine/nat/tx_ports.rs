//! The redirect map `TX_PORTS` kept equal to the interfaces routed packets
//! may leave by, and the `drop_no_tx_port` watch that asks for an early
//! re-scan: apart because it is its own loop over links, map and warnings.

use std::collections::BTreeSet;

use lb_common::stats::Counter;
use tracing::{debug, info, warn};

use super::super::Engine;

/// The redirect map (`TX_PORTS`) as `sync_tx_ports` edits it: the data
/// plane's, or a fake in tests.
pub(crate) trait TxPortMap {
    /// Puts the interface `index` in.
    fn add_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError>;
    /// Takes the interface `index` out (one not in is no error).
    fn remove_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError>;
}

impl TxPortMap for crate::nat::maps::NatMaps {
    fn add_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError> {
        crate::nat::maps::NatMaps::add_tx_port(self, index)
    }

    fn remove_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError> {
        crate::nat::maps::NatMaps::remove_tx_port(self, index)
    }
}

/// The interfaces of the redirect map lbd warned about, each warned once
/// while its trouble lasts (a scan runs every `SCAN_TICKS` ticks; before,
/// a wanted interface whose insert kept failing was warned at each).
#[derive(Debug, Default)]
pub(crate) struct TxWarned {
    /// No slot for them (more interfaces than `TX_PORTS_MAX`): forgotten
    /// once they get one or are gone.
    left_out: BTreeSet<u32>,
    /// Wanted, but the map refused the insert: forgotten once it goes in
    /// or they are no longer wanted.
    refused: BTreeSet<u32>,
}

/// Makes the redirect map `ports`, holding `present`, hold `wanted` of
/// `links`: those no longer wanted out first (their slots free for the
/// ones to add), a warning once for each interface left out for want of
/// room, then the rest added, a warning once for each the map refuses
/// (`warned` remembers them).
pub(super) fn sync_tx_map(
    ports: &mut dyn TxPortMap,
    warned: &mut TxWarned,
    links: &[crate::netlink::Link],
    wanted: &BTreeSet<u32>,
    present: &BTreeSet<u32>,
) {
    let name = |index: u32| {
        links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| index.to_string(), |l| l.name.clone())
    };
    for index in present.difference(wanted) {
        match ports.remove_tx_port(*index) {
            Ok(()) => {
                info!(interface = %name(*index), "interface removed from the NAT redirect targets")
            }
            Err(error) => {
                warn!(interface = %name(*index), %error, "removing a NAT redirect target failed")
            }
        }
    }
    warned
        .left_out
        .retain(|i| !wanted.contains(i) && links.iter().any(|l| l.index == *i));
    warned.refused.retain(|i| wanted.contains(i));
    for link in links
        .iter()
        .filter(|l| !l.loopback && !wanted.contains(&l.index))
    {
        if warned.left_out.insert(link.index) {
            warn!(
                interface = %link.name,
                "no room for the interface in the NAT redirect targets (at most {} interfaces; the attached one and those routes leave by come first): routed packets the kernel's FIB sends out of it are dropped at XDP (counted drop_no_tx_port)",
                lb_common::consts::TX_PORTS_MAX
            );
        }
    }
    for index in wanted.difference(present) {
        match ports.add_tx_port(*index) {
            Ok(()) => {
                warned.refused.remove(index);
                info!(interface = %name(*index), "interface added to the NAT redirect targets");
            }
            Err(error) => {
                if warned.refused.insert(*index) {
                    warn!(
                        interface = %name(*index), %error,
                        "adding a NAT redirect target failed: routed packets cannot leave by it from XDP"
                    );
                }
            }
        }
    }
}

/// Watches the data plane's `DropNoTxPort` count from tick to tick: a
/// routed packet whose interface has no slot in `TX_PORTS` (one created
/// since the last scan, such as a bond re-created with a new index) makes
/// the next tick scan the interfaces at once rather than up to
/// `SCAN_TICKS` ticks later.
#[derive(Debug, Default)]
pub(crate) struct TxPortMisses {
    /// The count at the last tick; None before the first reading (a
    /// count an adopted data plane brought along is no news).
    seen: Option<u64>,
}

impl TxPortMisses {
    /// Takes the count `now`; true if it grew since the last reading.
    pub(super) fn moved(&mut self, now: u64) -> bool {
        self.seen.replace(now).is_some_and(|seen| now > seen)
    }
}

/// The interfaces routed packets may be redirected to, at most `max`
/// (the map's size): every non-loopback interface that exists, up or
/// not (a redirect to a down one is dropped by its driver, while one to
/// an interface missing from the map aborts the packet, and a link that
/// comes back is routed to at once, before any re-scan), and the attached
/// one. When they do not all fit, the attached interface comes first,
/// then those routes leave by (`used`), then those the map holds already
/// (`present`: a slot is not lost to a link's flap), then up ones; lowest
/// index first within each.
pub(crate) fn redirect_targets(
    attached: u32,
    links: &[crate::netlink::Link],
    used: &BTreeSet<u32>,
    present: &BTreeSet<u32>,
    max: usize,
) -> BTreeSet<u32> {
    let rank = |index: u32, up: bool| {
        if index == attached {
            0
        } else if used.contains(&index) {
            1
        } else if present.contains(&index) {
            2
        } else if up {
            3
        } else {
            4
        }
    };
    let mut candidates: Vec<(u8, u32)> = links
        .iter()
        .filter(|l| !l.loopback && l.index != attached)
        .map(|l| (rank(l.index, l.up), l.index))
        .chain([(0, attached)])
        .collect();
    candidates.sort_unstable();
    candidates.into_iter().take(max).map(|(_, i)| i).collect()
}

impl Engine {
    /// Whether the data plane dropped routed packets for want of a
    /// redirect slot (`DropNoTxPort`) since the last tick. Not while no
    /// VIP is routed (nothing to scan for), nor when the counters cannot
    /// be read.
    pub(super) fn tx_port_missed(&mut self) -> bool {
        if !self.routed_in_use() {
            return false;
        }
        let Ok(counters) = self.dataplane.counters() else {
            return false;
        };
        let now = counters
            .iter()
            .find(|(counter, _)| *counter == Counter::DropNoTxPort)
            .map_or(0, |(_, count)| *count);
        self.nat.tx_misses.moved(now)
    }

    /// Makes `TX_PORTS` hold exactly the interfaces routed packets may
    /// leave by (`redirect_targets`): those no longer wanted (gone, or
    /// outranked in a full map) out first, so their slots are free for
    /// the ones to add.
    pub(super) async fn sync_tx_ports(&mut self) {
        let links = match self.netlink.links().await {
            Ok(links) => links,
            Err(error) => {
                warn!(%error, "listing interfaces for the NAT redirect map failed");
                return;
            }
        };
        let max = lb_common::consts::TX_PORTS_MAX as usize;
        let present: BTreeSet<u32> = self.dataplane.nat().tx_ports().into_iter().collect();
        let used = self.routed_interfaces_if_full(&links, max).await;
        let wanted = redirect_targets(self.interface.index, &links, &used, &present, max);
        sync_tx_map(
            self.dataplane.nat_mut(),
            &mut self.nat.tx_warned,
            &links,
            &wanted,
            &present,
        );
    }

    /// The interfaces routes leave by, asked only when the interfaces
    /// outnumber the redirect map's `max` slots (`redirect_targets` then
    /// ranks them ahead of the rest); empty otherwise, or when the routes
    /// cannot be read (logged).
    async fn routed_interfaces_if_full(
        &self,
        links: &[crate::netlink::Link],
        max: usize,
    ) -> BTreeSet<u32> {
        if links.iter().filter(|l| !l.loopback).count() < max {
            return BTreeSet::new();
        }
        match self.netlink.route_interfaces().await {
            Ok(used) => used,
            Err(error) => {
                debug!(%error, "reading the routes' interfaces for the NAT redirect map failed");
                BTreeSet::new()
            }
        }
    }
}
