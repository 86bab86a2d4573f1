//! The engine's duties around the data plane for the routed modes (NAT and
//! the tunnelled `ipip`/`gue`), run from the housekeeping tick, the
//! reaper's own timer and the event stream: the NAT reaper's tick over the
//! NAT flow table (see `nat::reaper`; lbd's loop runs the next one when
//! `nat::reaper::pace` says, a second later or sooner), forwarding
//! switched on for the attached interface in each family a routed packet
//! is looked up in (`bpf_fib_lookup` refuses to route without it; for a
//! tunnel that is the outer header's family; IPv6 router advertisements
//! stay accepted there, `accept_ra` 2), `TX_PORTS` kept equal to
//! the interfaces routed packets may leave by (every one that exists, up
//! or down, re-scanned every few seconds: an interface that is created or
//! deleted is seen within `SCAN_TICKS` ticks, without a netlink
//! subscription to keep alive, and at the next tick once the data plane
//! drops a routed packet for want of its interface there, counted
//! `drop_no_tx_port`: see `TxPortMisses`), the gateways kept
//! resolved, and the routed data plane's events (a next hop
//! to resolve, no route, no free port). Nothing here runs while no VIP is
//! in a routed mode, except the reaper, which then finds the table empty
//! or frees what a NAT VIP left.

mod addresses;
mod events;
mod forwarding;
#[cfg(test)]
mod tests;
mod tx_ports;

pub(super) use addresses::unmoved_vip_address;
use forwarding::ForwardingChange;
use tx_ports::{TxPortMisses, TxWarned};

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use lb_common::Mode;
use tracing::{debug, info, warn};

use super::Engine;
use crate::{
    nat::events::NatEvents,
    nat::held::HeldSources,
    nat::reaper::{
        pace::Pace,
        pressure::{Pressure, PRESSED_CLOSED_TIMEOUT, PRESSED_UNREPLIED_TIMEOUT},
        Owner, Owners, Reaper, TICK_BUDGET, TICK_TIME,
    },
    reconcile::{addr_words, Balancer},
};

/// Housekeeping ticks between scans of the interfaces and of the
/// forwarding settings.
const SCAN_TICKS: u32 = 5;
/// A reaper tick longer than this is logged (lbd's loop waits for it).
const SLOW_TICK: Duration = Duration::from_millis(100);

/// The NAT runtime's state between ticks.
#[derive(Debug, Default)]
pub(crate) struct NatRuntime {
    /// The flow reaper.
    pub(crate) reaper: Reaper,
    /// The routed events' log limits, also those of the data plane's
    /// other events (`log_dataplane_event`).
    pub(super) events: NatEvents,
    /// Forwarding settings lbd switched on (and `accept_ra` it raised).
    forwarding: Vec<ForwardingChange>,
    /// Forwarding settings lbd failed to switch on or read (warned once).
    forwarding_failed: BTreeSet<PathBuf>,
    /// Interfaces of the redirect map warned about (no slot, or refused).
    tx_warned: TxWarned,
    /// Packets dropped for want of a redirect slot, as last read.
    tx_misses: TxPortMisses,
    /// Housekeeping ticks seen.
    ticks: u32,
    /// Whether `prepare_routing` has run since a VIP became routed: one
    /// added at run time gets its egress ports and gateways at the next
    /// tick, not the next scan.
    routing_prepared: bool,
    /// How long the last reaper tick took.
    pub(crate) last_tick: Duration,
    /// Whether the flow table is nearly full (`nat::reaper::pressure`).
    pub(crate) pressure: Pressure,
    /// When the next reaper tick runs (`nat::reaper::pace`).
    pace: Pace,
    /// The backends the last reaper tick checked entries against: one
    /// gone since makes a sweep owed.
    owners: Owners,
    /// Whether a reaper tick has run (the first after a start that
    /// adopted the NAT table owes a sweep, see `owe_sweep_for`).
    ticked: bool,
    /// NAT addresses found to be the source of this node's own
    /// connections to their backends, warned once each.
    shared_warned: BTreeSet<IpAddr>,
    /// NAT addresses found missing from the node (`nat::held`).
    held: HeldSources,
}

impl NatRuntime {
    /// Makes a sweep owed (`pace`) before the tick at `now_ns` that judges
    /// by `owners`, when a backend or VIP the last tick knew is gone, or
    /// when this is the first tick and the start adopted the NAT table
    /// (`adopted`): its flows may name backends and VIPs removed while no
    /// lbd ran, or by the restarted lbd's file, which a comparison with
    /// the empty owners of a start cannot notice, and the table's pressure
    /// is unknown until a sweep. Returns whether it did.
    fn owe_sweep_for(&mut self, owners: &Owners, adopted: bool, now_ns: u64) -> bool {
        let first = !std::mem::replace(&mut self.ticked, true);
        let owed = (first && adopted) || owners.lost_since(&self.owners);
        if owed {
            self.pace.owe_sweep(now_ns);
        }
        owed
    }
}

/// The backends of NAT VIPs, as the reaper checks entries against them.
pub(crate) fn owners(balancer: &Balancer) -> Owners {
    let mut owners = Owners::default();
    for (id, vip) in balancer.vips().iter().filter(|(_, v)| v.mode == Mode::Nat) {
        for (address, backend) in &vip.backends {
            owners.backends.insert(
                backend.id,
                Owner {
                    vip_id: vip.id,
                    vip: id.key(),
                    address: addr_words(*address).0,
                },
            );
        }
    }
    owners
}

/// The families routed packets of `balancer`'s VIPs are looked up in by
/// the FIB (true: IPv6): a NAT VIP's own; a tunnelled VIP's outer
/// families, its backends' (4in6 is looked up as IPv6).
pub(crate) fn routed_families(balancer: &Balancer) -> BTreeSet<bool> {
    routed_families_of(balancer.vips())
}

/// [`routed_families`] of the VIPs `vips` (a balancer's, or a staged
/// change's, whose forwarding must be on before its commit).
pub(crate) fn routed_families_of(
    vips: &std::collections::BTreeMap<crate::reconcile::VipId, crate::reconcile::AppliedVip>,
) -> BTreeSet<bool> {
    let mut out = BTreeSet::new();
    for (id, vip) in vips {
        match vip.mode {
            Mode::Nat => {
                out.insert(id.address.is_ipv6());
            }
            mode if mode.is_tunnel() => {
                out.extend(vip.backends.keys().map(IpAddr::is_ipv6));
            }
            _ => {}
        }
    }
    out
}

impl Engine {
    /// Whether some VIP is in a routed mode (NAT or a tunnel).
    pub(crate) fn routed_in_use(&self) -> bool {
        self.balancer.vips().values().any(|v| v.mode.is_routed())
    }

    /// One tick of the NAT reaper (bounded: `TICK_BUDGET` entries,
    /// `TICK_TIME`); returns how long lbd's loop waits before the next
    /// (`nat::reaper::pace`: a second, or `pace::FAST` while the walk finds
    /// much to free, the table is under pressure, or a backend or VIP was
    /// removed and a sweep is owed).
    pub(crate) fn nat_reap(&mut self) -> Duration {
        let owners = owners(&self.balancer);
        let now = crate::clock::monotonic_ns();
        if self
            .nat
            .owe_sweep_for(&owners, self.dataplane.adopted(), now)
        {
            // Their flows go as the walk reaches them: at the fast pace
            // until a whole sweep has judged by the backends now.
            debug!("a NAT backend or VIP went, or lbd started on an adopted NAT table: the reaper sweeps the NAT table at its fast pace");
        }
        let timeouts = self.nat.pressure.timeouts(&self.config.nat.timeouts);
        let started = Instant::now();
        let report = self.nat.reaper.tick(
            self.dataplane.nat_mut(),
            now,
            &timeouts,
            &owners,
            TICK_BUDGET,
            || started.elapsed() < TICK_TIME,
        );
        self.nat.owners = owners;
        self.nat.last_tick = started.elapsed();
        let swept_from = report
            .sweep_done
            .then(|| self.nat.reaper.last_sweep().map(|s| s.started_ns))
            .flatten();
        if report.sweep_done {
            self.note_pressure();
        }
        let was_busy = self.nat.pace.busy();
        let wait = self
            .nat
            .pace
            .after_tick(&report, swept_from, self.nat.pressure.on());
        if report.removed > 0 {
            debug!(
                removed = report.removed,
                visited = report.visited,
                next_in_ms = wait.as_millis(),
                "NAT flows reaped"
            );
        }
        if self.nat.pace.busy() != was_busy {
            debug!(
                busy = self.nat.pace.busy(),
                next_in_ms = wait.as_millis(),
                "NAT reaper pace changed"
            );
        }
        if self.nat.last_tick > SLOW_TICK {
            warn!(
                took_ms = self.nat.last_tick.as_millis(),
                visited = report.visited,
                "NAT reaper tick was slow"
            );
        }
        wait
    }

    /// One housekeeping tick of the routed modes' runtime (the reaper has
    /// a timer of its own, see `nat_reap`).
    pub(crate) async fn nat_tick(&mut self) {
        let scan = self.nat.ticks.is_multiple_of(SCAN_TICKS);
        self.nat.ticks = self.nat.ticks.wrapping_add(1);
        let missed = self.tx_port_missed();
        if missed && !scan {
            debug!("routed packets found no redirect slot for their interface (drop_no_tx_port): scanning the interfaces now");
        }
        if scan || missed || !self.nat.routing_prepared {
            self.prepare_routing().await;
        }
        if scan {
            self.tunnel_scan().await;
        }
    }

    /// Feeds the sweep just completed to the table's pressure; logs a
    /// change.
    fn note_pressure(&mut self) {
        let Some(sweep) = self.nat.reaper.last_sweep() else {
            return;
        };
        // The map's size, not the config's (a reload does not resize it).
        let capacity = self.dataplane.sizes().nat_flows;
        let nat = &self.config.nat;
        let ports = u32::from(nat.port_max.saturating_sub(nat.port_min)) + 1;
        let now = crate::clock::monotonic_ns();
        match self.nat.pressure.sweep_done(sweep, capacity, ports, now) {
            Some(true) => warn!(
                capacity,
                entries = sweep.entries(),
                ports,
                busiest_ports = sweep.busiest_of_all(),
                closed_timeout_ms = PRESSED_CLOSED_TIMEOUT.as_millis(),
                unanswered_timeout_ms = PRESSED_UNREPLIED_TIMEOUT.as_millis(),
                "NAT flow table or a backend's source ports nearly full: closed flows (time-wait, closed) are freed after {} s (their ports may meet the backends' TIME_WAIT) and unanswered ones (TCP SYN sent, UDP without a reply) after {} s, each unless configured shorter; established flows and answered UDP keep their timeouts; raise [nat] flow_table_size, or add NAT addresses (nat_source) for busy backends",
                PRESSED_CLOSED_TIMEOUT.as_secs(),
                PRESSED_UNREPLIED_TIMEOUT.as_secs()
            ),
            Some(false) => info!(
                entries = sweep.entries(),
                "NAT flow table no longer nearly full: closed and unanswered flows keep their configured timeouts"
            ),
            None => {}
        }
    }

    /// Gets every gateway the routing table names resolved ahead of need,
    /// on whichever interface it is reached by: on a backup, so that a
    /// failover finds the next hops of the flows it takes over ready; on
    /// a master, so that an entry that expired is back before a packet
    /// needs it. A STALE entry is probed too (confirmed, or its new MAC
    /// learnt): the data plane's FIB lookup takes it as it is, and nothing
    /// else on the node may send to that router, so a router replaced at
    /// the same address would be sent to at its old MAC for ever.
    async fn resolve_gateways(&mut self) {
        let hops = match self.netlink.next_hops().await {
            Ok(hops) => hops,
            Err(error) => {
                debug!(%error, "reading routes for the routed next hops failed");
                return;
            }
        };
        let to_probe = match self.netlink.next_hops_to_probe(&hops).await {
            Ok(to_probe) => to_probe,
            Err(error) => {
                debug!(%error, "reading neighbours for the routed next hops failed");
                return;
            }
        };
        for (ifindex, gateway) in to_probe {
            debug!(next_hop = %gateway, ifindex, "resolving or confirming a next hop ahead of need");
            crate::netlink::probe_on(gateway, ifindex);
        }
    }

    /// What routed VIPs' packets need of the node, made so if some VIP is
    /// routed: forwarding on, the egress ports in `TX_PORTS`, the
    /// gateways resolved. At start before the program is attached (so a
    /// first packet never meets a FIB lookup that forwarding turns down),
    /// then every `SCAN_TICKS` ticks and at the tick after a VIP became
    /// routed.
    pub(crate) async fn prepare_routing(&mut self) {
        self.nat.routing_prepared = self.routed_in_use();
        if !self.nat.routing_prepared {
            return;
        }
        self.ensure_forwarding();
        self.sync_tx_ports().await;
        self.resolve_gateways().await;
        self.warn_shared_nat_addresses();
        self.check_nat_addresses_held().await;
    }
}
