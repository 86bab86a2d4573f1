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

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use lb_common::{
    consts::{EVENT_NAT_PORTS_EXHAUSTED, EVENT_NO_NEIGHBOUR, EVENT_NO_ROUTE},
    stats::Counter,
    DataplaneEvent, Mode,
};
use tracing::{debug, info, warn};

use super::Engine;
use crate::{
    nat::events::NatEvents,
    nat::held::{HeldChange, HeldSources},
    nat::reaper::{
        pace::Pace,
        pressure::{Pressure, PRESSED_CLOSED_TIMEOUT, PRESSED_UNREPLIED_TIMEOUT},
        Owner, Owners, Reaper, TICK_BUDGET, TICK_TIME,
    },
    reconcile::{addr_words, words_addr, Balancer},
};

/// Housekeeping ticks between scans of the interfaces and of the
/// forwarding settings.
const SCAN_TICKS: u32 = 5;
/// A reaper tick longer than this is logged (lbd's loop waits for it).
const SLOW_TICK: Duration = Duration::from_millis(100);

/// A setting lbd changed for forwarding (`forwarding`, IPv6
/// `accept_ra`), to restore at a clean stop.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ForwardingChange {
    path: PathBuf,
    was: String,
}

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
fn sync_tx_map(
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
    fn moved(&mut self, now: u64) -> bool {
        self.seen.replace(now).is_some_and(|seen| now > seen)
    }
}

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

/// Backends per NAT VIP whose route is looked at for the shared-address
/// check (a route lookup each, every scan, until one warns).
const SHARED_CHECK_BACKENDS: usize = 16;

/// The kernel's ephemeral port range (`ip_local_port_range`, which IPv6
/// shares), where this node's own connections take their source ports.
fn ephemeral_ports() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Why a NAT VIP's translated flows can collide with this node's own
/// connections (its health checks among them): the kernel sends those to
/// `backend` from `kernel_source`, and when that is the NAT address, its
/// ephemeral ports `ephemeral` and the NAT ports overlap, so a check can
/// take a port a translated flow holds and its answer is translated away.
fn shared_nat_address(
    vip: &crate::vip_id::VipId,
    nat: &crate::config::VipNat,
    backend: IpAddr,
    kernel_source: IpAddr,
    ephemeral: (u16, u16),
) -> Option<String> {
    let (low, high) = ephemeral;
    let overlap = nat.port_min <= high && low <= nat.port_max;
    (kernel_source == nat.source && overlap).then(|| {
        format!(
            "VIP {vip}: its NAT address {} is also where this node's own connections to backend {backend} come from (its health checks among them), and its NAT ports {}-{} overlap the kernel's ephemeral ports {low}-{high}: a check can take a port a translated flow holds and fail; give NAT an address of its own, or keep [nat] source_port_min/source_port_max outside {low}-{high}",
            nat.source, nat.port_min, nat.port_max
        )
    })
}

/// The per-interface forwarding switch of `ipv6` or IPv4 for `interface`.
pub(crate) fn forwarding_path(ipv6: bool, interface: &str) -> PathBuf {
    let family = if ipv6 { "ipv6" } else { "ipv4" };
    PathBuf::from(format!(
        "/proc/sys/net/{family}/conf/{interface}/forwarding"
    ))
}

/// IPv6 `accept_ra` for `interface`: a forwarding interface ignores
/// router advertisements unless it is 2.
pub(crate) fn accept_ra_path(interface: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv6/conf/{interface}/accept_ra"))
}

/// Makes the `accept_ra` setting at `path` accept router advertisements
/// while forwarding is on: 1 (a host's) becomes 2. Otherwise the kernel
/// deletes the interface's default route learned from them at once when
/// lbd switches forwarding on (`rt6_purge_dflt_routers`, which spares only
/// interfaces with `accept_ra` 2), and does not learn it again from the
/// next advertisement, which a forwarding interface then ignores. Returns
/// the value found and whether it was changed (0 stays: advertisements
/// are not wanted; 2 is already so).
fn accept_ra_while_forwarding(path: &std::path::Path) -> anyhow::Result<(String, bool)> {
    use anyhow::Context as _;
    let was = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned();
    if was != "1" {
        return Ok((was, false));
    }
    std::fs::write(path, "2").with_context(|| format!("writing 2 to {}", path.display()))?;
    Ok((was, true))
}

/// `RTF_DEFAULT` and `RTF_ADDRCONF` (`include/uapi/linux/ipv6_route.h`):
/// a default route learned from a router advertisement carries both.
const RTF_DEFAULT_OR_ADDRCONF: u32 = 0x0001_0000 | 0x0004_0000;

/// The interfaces that lose their default route learned from router
/// advertisements when any interface's IPv6 `forwarding` is switched on:
/// the kernel then deletes, in every table, each default route flagged
/// `RTF_DEFAULT` or `RTF_ADDRCONF` whose interface's `accept_ra` is not 2
/// (`rt6_purge_dflt_routers`), and it comes back only with the router's
/// next advertisement. `routes` is `/proc/net/ipv6_route` (which lists
/// every table with the kernel's own route flags); `accept_ra` reads an
/// interface's setting (None: unreadable, taken as not 2).
fn ra_routes_at_risk(routes: &str, accept_ra: impl Fn(&str) -> Option<String>) -> BTreeSet<String> {
    routes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, dst_len, _, src_len, _, _, _, _, flags, device] = fields[..] else {
                return None;
            };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let default = dst_len == "00" && src_len == "00";
            (default && flags & RTF_DEFAULT_OR_ADDRCONF != 0).then(|| device.to_owned())
        })
        .filter(|device| accept_ra(device).as_deref() != Some("2"))
        .collect()
}

/// Warns, just before lbd switches IPv6 `forwarding` on for `interface`,
/// about the interfaces whose default route learned from router
/// advertisements the kernel is about to delete (`ra_routes_at_risk`).
/// Called only when lbd writes the setting (it never writes it when it
/// is on already, and a restart finds it on), so once per switch.
fn warn_ra_routes_at_risk(interface: &str) {
    // This thread's namespace (lbd's threads all share one).
    let routes = match std::fs::read_to_string("/proc/thread-self/net/ipv6_route") {
        Ok(routes) => routes,
        Err(error) => {
            debug!(%error, "cannot read the IPv6 routes to look for default routes learned from router advertisements");
            return;
        }
    };
    let read = |device: &str| {
        std::fs::read_to_string(accept_ra_path(device))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    let at_risk = ra_routes_at_risk(&routes, read);
    if at_risk.is_empty() {
        return;
    }
    let names = at_risk.into_iter().collect::<Vec<_>>().join(", ");
    warn!(
        %interface, interfaces = %names,
        "switching IPv6 forwarding on for {interface} makes the kernel delete the default routes learned from router advertisements on {names} (every interface whose accept_ra is not 2), in this network namespace: they come back with each router's next advertisement (up to its MaxRtrAdvInterval, 600 s by default; a router solicitation, e.g. a link bounce, brings it sooner). To keep them, set net.ipv6.conf.<interface>.accept_ra=2 on those interfaces before lbd starts, or switch net.ipv6.conf.{interface}.forwarding=1 on at boot (lbd then leaves it as it is)"
    );
}

/// Whether the interface setting at `path` stays as lbd set it across a
/// restart with nothing pinned (see `restore_forwarding_for_restart`):
/// IPv6 `forwarding` and the `accept_ra` that goes with it.
fn kept_across_restarts(path: &std::path::Path) -> bool {
    path.starts_with("/proc/sys/net/ipv6/conf")
        && path
            .file_name()
            .is_some_and(|name| name == "forwarding" || name == "accept_ra")
}

/// Records each of `kept` (IPv6 settings that stay on across an unpinned
/// restart) again for the next lbd, a stop for good or `lbd --cleanup` to
/// put back; those recorded. One that cannot be recorded (its original
/// was taken out of the record) is put back now, as a stop for good
/// would: left on unrecorded, nothing would ever put it back.
fn record_or_restore(
    admin_socket: &std::path::Path,
    kept: Vec<crate::ownership::held::HeldSetting>,
) -> Vec<crate::ownership::held::HeldSetting> {
    let (recorded, unrecorded): (Vec<_>, Vec<_>) = kept.into_iter().partition(|setting| {
        crate::ownership::held::record_original(admin_socket, &setting.path, &setting.was)
            .map_err(|error| {
                warn!(setting = %setting.path.display(), error = %format!("{error:#}"), "recording the setting's original value for the next lbd failed: it is put back now (no later stop or lbd --cleanup could)");
            })
            .is_ok()
    });
    crate::ownership::held::restore(&unrecorded);
    recorded
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

    /// Whether the data plane dropped routed packets for want of a
    /// redirect slot (`DropNoTxPort`) since the last tick. Not while no
    /// VIP is routed (nothing to scan for), nor when the counters cannot
    /// be read.
    fn tx_port_missed(&mut self) -> bool {
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

    /// Says (once) when a NAT address this node must hold is not among
    /// its addresses, and when it is back (see `nat::held`): backends'
    /// replies to it never reach the balancer, so its VIPs' NAT'd
    /// connections stall while their checks pass. Addresses a VRRP
    /// instance this node is a backup of moves are the master's.
    async fn check_nat_addresses_held(&mut self) {
        let nat_vips: Vec<(String, IpAddr)> = self
            .model
            .vips
            .iter()
            .filter(|(_, vip)| vip.config.forwarding == Mode::Nat)
            .filter_map(|(id, vip)| vip.config.nat.map(|nat| (id.to_string(), nat.source)))
            .collect();
        if nat_vips.is_empty() {
            self.nat.held.forget();
            return;
        }
        let backup: BTreeSet<IpAddr> = self
            .vrrp
            .iter()
            .filter(|instance| !instance.is_master())
            .flat_map(|instance| instance.config().addresses.iter().copied())
            .collect();
        let wanted = crate::nat::held::to_hold(&nat_vips, &backup);
        let held = match self.netlink.node_addresses().await {
            Ok(held) => held,
            Err(error) => {
                debug!(%error, "reading the node's addresses for its NAT addresses failed");
                return;
            }
        };
        for change in self.nat.held.update(&wanted, &held) {
            match change {
                HeldChange::Missing { address, vips } => warn!(
                    nat_address = %address, vips = %vips.join(", "), interface = %self.interface.name,
                    "NAT address {address} is not an address of this node: backends answer NAT'd connections at it, and their replies do not reach the balancer, so every NAT'd connection of {} stalls (health checks still pass: they leave from the node's own address). Put it back (ip addr add {address} dev {}), or give the VIPs another NAT address and reload", vips.join(", "), self.interface.name
                ),
                HeldChange::Back { address } => info!(
                    nat_address = %address,
                    "NAT address {address} is an address of this node again: backends' replies to it reach the balancer"
                ),
            }
        }
    }

    /// Warns (once per address) about NAT addresses this node's own
    /// connections to the backends leave from (see `shared_nat_address`).
    fn warn_shared_nat_addresses(&mut self) {
        let Some(ephemeral) = ephemeral_ports() else {
            return;
        };
        let mut warnings = Vec::new();
        for (id, vip) in &self.model.vips {
            let Some(nat) = vip
                .config
                .nat
                .filter(|_| vip.config.forwarding == Mode::Nat)
            else {
                continue;
            };
            if self.nat.shared_warned.contains(&nat.source) {
                continue;
            }
            for backend in vip.backends.keys().take(SHARED_CHECK_BACKENDS) {
                let Ok(source) = crate::health::tunnel_socket::source_toward(*backend, 0) else {
                    continue;
                };
                if let Some(warning) = shared_nat_address(id, &nat, *backend, source, ephemeral) {
                    warnings.push((nat.source, warning));
                    break;
                }
            }
        }
        for (address, warning) in warnings {
            if self.nat.shared_warned.insert(address) {
                warn!(%warning, "NAT address shared with this node's own connections");
            }
        }
    }

    /// Switches forwarding on for the attached interface, for each family
    /// routed packets are looked up in (see `routed_families`); nothing
    /// when no VIP is routed. Each commit calls it too, after its writes
    /// (a retry of a switch that failed), having switched it on for the
    /// staged change before them (see [`Self::ensure_forwarding_for`]).
    pub(crate) fn ensure_forwarding(&mut self) {
        let families = routed_families(&self.balancer);
        self.ensure_forwarding_for(&families);
    }

    /// [`Self::ensure_forwarding`] for `families` (true: IPv6): those of a
    /// staged change, before its commit makes a routed VIP (or a backend
    /// of another family) live, so no first packet meets a FIB lookup
    /// forwarding refuses.
    pub(crate) fn ensure_forwarding_for(&mut self, families: &BTreeSet<bool>) {
        for ipv6 in families.iter().copied() {
            let path = forwarding_path(ipv6, &self.interface.name);
            if self.nat.forwarding_failed.contains(&path) {
                continue;
            }
            let was = match std::fs::read_to_string(&path) {
                Ok(text) => text.trim().to_owned(),
                Err(error) => {
                    warn!(path = %path.display(), %error, "cannot read the interface's forwarding setting; NAT and tunnelled VIPs need it on");
                    self.nat.forwarding_failed.insert(path);
                    continue;
                }
            };
            if was != "0" {
                // On already: by the operator, or by a previous lbd (a
                // restart), whose record keeps the original to restore.
                if !self.nat.forwarding.iter().any(|c| c.path == path) {
                    if let Some(original) =
                        crate::ownership::held::recorded_original(&self.config.admin_socket, &path)
                    {
                        self.nat.forwarding.push(ForwardingChange {
                            path: path.clone(),
                            was: original,
                        });
                    }
                }
                // On for lbd: router advertisements stay accepted (an
                // older lbd left accept_ra at 1). The operator's
                // forwarding leaves accept_ra to the operator too.
                if ipv6 && self.nat.forwarding.iter().any(|c| c.path == path) {
                    self.keep_router_advertisements();
                }
                continue;
            }
            if ipv6 {
                // Before forwarding goes on: no moment ignores them.
                self.keep_router_advertisements();
                warn_ra_routes_at_risk(&self.interface.name);
            }
            match std::fs::write(&path, "1") {
                Ok(()) => {
                    info!(
                        interface = %self.interface.name,
                        setting = %path.display(),
                        "forwarding switched on for the interface: NAT and tunnelled VIPs route through the kernel's FIB (restored at a clean stop)"
                    );
                    // Recorded for the lbds after this one (a restart
                    // finds it on) and for `lbd --cleanup`.
                    if let Err(error) = crate::ownership::held::record_original(
                        &self.config.admin_socket,
                        &path,
                        &was,
                    ) {
                        warn!(setting = %path.display(), error = %format!("{error:#}"), "recording the forwarding setting's original value failed: after a restart a clean stop will not restore it");
                    }
                    if !self.nat.forwarding.iter().any(|c| c.path == path) {
                        self.nat.forwarding.push(ForwardingChange { path, was });
                    }
                }
                Err(error) => {
                    warn!(setting = %path.display(), %error, "cannot switch forwarding on: NAT and tunnelled VIPs' packets are dropped as drop_no_route until it is on");
                    self.nat.forwarding_failed.insert(path);
                }
            }
        }
    }

    /// Keeps IPv6 router advertisements accepted on the attached
    /// interface while lbd has forwarding on there
    /// (`accept_ra_while_forwarding`), recorded and restored at a clean
    /// stop as forwarding is; a previous lbd's change is taken over from
    /// its record.
    fn keep_router_advertisements(&mut self) {
        let path = accept_ra_path(&self.interface.name);
        if self.nat.forwarding_failed.contains(&path)
            || self.nat.forwarding.iter().any(|c| c.path == path)
        {
            return;
        }
        match accept_ra_while_forwarding(&path) {
            Ok((was, true)) => {
                info!(
                    interface = %self.interface.name,
                    setting = %path.display(),
                    "IPv6 router advertisements stay accepted on the interface while forwarding is on (accept_ra 1 -> 2; restored at a clean stop): a default route learned from them stays"
                );
                if let Err(error) =
                    crate::ownership::held::record_original(&self.config.admin_socket, &path, &was)
                {
                    warn!(setting = %path.display(), error = %format!("{error:#}"), "recording accept_ra's original value failed: after a restart a clean stop will not restore it");
                }
                self.nat.forwarding.push(ForwardingChange { path, was });
            }
            Ok((_, false)) => {
                if let Some(original) =
                    crate::ownership::held::recorded_original(&self.config.admin_socket, &path)
                {
                    self.nat.forwarding.push(ForwardingChange {
                        path,
                        was: original,
                    });
                }
            }
            Err(error) => {
                warn!(
                    interface = %self.interface.name,
                    error = %format!("{error:#}"),
                    "cannot keep IPv6 router advertisements accepted while forwarding is on (accept_ra = 2): a default route the interface learned from them is deleted when forwarding goes on, and the interface ignores them from then on"
                );
                self.nat.forwarding_failed.insert(path);
            }
        }
    }

    /// What to tell the operator when a running VRRP instance moves a NAT
    /// VIP's address but not its NAT address (the config file refuses that,
    /// see `nat_sources_move`; the instances' addresses are fixed at start):
    /// after a failover its replies would go to the node that lost the VIP.
    /// A VIP whose address no running instance moves is not this check's
    /// (`unmoved_vip_address` warns that the VIP itself does not move).
    pub(crate) fn nat_address_left_behind(&self, vip: &crate::config::VipConfig) -> Option<String> {
        let moved: Vec<&[IpAddr]> = self
            .vrrp
            .iter()
            .map(|i| i.config().addresses.as_slice())
            .collect();
        unmoved_nat_address(vip, &moved)
    }

    /// Puts the forwarding settings lbd changed back (a clean stop): this
    /// lbd's, and those the record of what lbd holds kept from the lbds
    /// before it (a restart finds them on and changes nothing itself),
    /// which leave the record.
    pub(crate) fn restore_forwarding(&mut self) {
        let settings = self.take_forwarding_settings();
        crate::ownership::held::restore(&settings);
    }

    /// Puts the forwarding settings lbd changed back at a restart's stop
    /// that leaves no data plane forwarding (`pin_dir = "off"`), but for
    /// IPv6 `forwarding` and `accept_ra`, which stay on and recorded for
    /// the next lbd, a stop for good or `lbd --cleanup` to put back: each
    /// switch of IPv6 forwarding on makes the kernel delete the default
    /// routes learned from router advertisements of every interface whose
    /// `accept_ra` is not 2 (see `ra_routes_at_risk`), so turning it off
    /// would cost that at every restart. Per-interface IPv6 forwarding
    /// routes nothing by itself (the kernel forwards IPv6 only with
    /// `all.forwarding`), unlike IPv4's, which is put back. One whose
    /// record cannot be written again is put back too (`record_or_restore`).
    pub(crate) fn restore_forwarding_for_restart(&mut self) {
        let (kept, restored): (Vec<_>, Vec<_>) = self
            .take_forwarding_settings()
            .into_iter()
            .partition(|s| kept_across_restarts(&s.path));
        crate::ownership::held::restore(&restored);
        let kept = record_or_restore(&self.config.admin_socket, kept);
        if !kept.is_empty() {
            info!(
                interface = %self.interface.name,
                "IPv6 forwarding (and accept_ra) stay as lbd set them across the restart: switching forwarding on again would make the kernel delete other interfaces' default routes learned from router advertisements; a stop for good (SIGINT) or lbd --cleanup puts them back"
            );
        }
    }

    /// The forwarding settings to put back: those the record of what lbd
    /// holds kept from the lbds before this one (taken out of it) and
    /// this lbd's own.
    fn take_forwarding_settings(&mut self) -> Vec<crate::ownership::held::HeldSetting> {
        let mut settings = crate::ownership::held::take_originals(&self.config.admin_socket);
        for change in std::mem::take(&mut self.nat.forwarding) {
            if !settings.iter().any(|s| s.path == change.path) {
                settings.push(crate::ownership::held::HeldSetting {
                    path: change.path,
                    was: change.was,
                });
            }
        }
        settings
    }

    /// Makes `TX_PORTS` hold exactly the interfaces routed packets may
    /// leave by (`redirect_targets`): those no longer wanted (gone, or
    /// outranked in a full map) out first, so their slots are free for
    /// the ones to add.
    async fn sync_tx_ports(&mut self) {
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

    /// The mode of the VIP whose data-plane id is `vip_id` (DSR when it
    /// is gone).
    fn vip_mode_of(&self, vip_id: u32) -> Mode {
        self.balancer
            .vips()
            .values()
            .find(|v| v.id == vip_id)
            .map_or(Mode::DsrL2, |v| v.mode)
    }

    /// The first backend of the VIP whose data-plane id is `vip_id`, to
    /// name a destination in a log.
    fn backend_of_id(&self, vip_id: u32) -> Option<IpAddr> {
        let vip = self.balancer.vips().values().find(|v| v.id == vip_id)?;
        vip.backends.keys().next().copied()
    }

    /// Acts on a routed data plane event; false when `event` is not one.
    pub(crate) fn on_nat_event(&mut self, event: &DataplaneEvent, vip: &str) -> bool {
        let now = Duration::from_nanos(crate::clock::monotonic_ns());
        match event.kind {
            EVENT_NO_NEIGHBOUR => {
                let gateway: IpAddr = words_addr(event.flow.dst, event.flow.family);
                let action = self.nat.events.no_neighbour(gateway, now);
                if action.probe {
                    crate::netlink::probe_on(gateway, probe_interface(event, self.interface.index));
                }
                // Info, not a warning: the kernel collects a neighbour entry
                // only the data plane uses (its use does not refresh it)
                // about once a minute, and flows with a next hop cached go
                // on forwarding through it meanwhile. Drops show in
                // drop_no_neighbour.
                if action.log {
                    info!(
                        %vip, next_hop = %gateway,
                        "data plane: the next hop has no neighbour entry; lbd makes the kernel resolve it. Flows with this next hop cached keep forwarding through it; packets with none are dropped until it answers (drop_no_neighbour; logged once a minute per next hop). If drops persist, check that {gateway} is reachable (ip neigh show {gateway})"
                    );
                }
                true
            }
            EVENT_NO_ROUTE if self.vip_mode_of(event.vip_id).is_tunnel() => {
                if self.nat.events.log_for_vip(event.kind, event.vip_id, now) {
                    let backend = self
                        .backend_of_id(event.vip_id)
                        .map_or_else(|| "its backends".to_owned(), |a| a.to_string());
                    warn!(
                        %vip, interface = %self.interface.name,
                        "data plane: no usable route for a tunnelled packet, dropped (drop_no_route; logged once a minute per VIP): add a route to {backend}, and check that forwarding is on for {} (lbd switches it on)", self.interface.name
                    );
                }
                true
            }
            EVENT_NO_ROUTE => {
                if self.nat.events.log_for_vip(event.kind, event.vip_id, now) {
                    // The event names the packet as it arrived; where it
                    // was to go is its translation's destination.
                    let flow = &event.flow;
                    let packet = format!(
                        "{} -> {}",
                        std::net::SocketAddr::new(
                            words_addr(flow.src, flow.family),
                            u16::from_be(flow.sport)
                        ),
                        std::net::SocketAddr::new(
                            words_addr(flow.dst, flow.family),
                            u16::from_be(flow.dport)
                        ),
                    );
                    let destination = match self.dataplane.nat().flow(flow) {
                        Some(entry) => words_addr(entry.dst, flow.family).to_string(),
                        None => "its translated destination".to_owned(),
                    };
                    warn!(
                        %vip, %packet, interface = %self.interface.name,
                        "data plane: no usable route for a NAT'd packet (none, or a blackhole, unreachable or prohibit route, or forwarding off where it came in), dropped (drop_no_route; logged once a minute per VIP): add a route to {destination}, and check that forwarding is on for {} (lbd switches it on). Packets too big for a route are not this: they count as sent_icmp_too_big or drop_too_big", self.interface.name
                    );
                }
                true
            }
            EVENT_NAT_PORTS_EXHAUSTED => {
                if self.nat.events.log_for_vip(event.kind, event.vip_id, now) {
                    warn!(
                        %vip,
                        "data plane: no free NAT source port for a new flow, dropped (drop_nat_ports_exhausted; logged once a minute per VIP): widen [nat] source_port_min..source_port_max, add backends, give the VIP its own nat_source, or shorten the NAT timeouts (lbctl status shows ports in use)"
                    );
                }
                true
            }
            _ => false,
        }
    }
}

/// The warning for a NAT VIP whose address a VRRP instance moves while
/// that same instance does not move its NAT address (the file's rule,
/// `nat_sources_move`, on the instances' address lists `moved`). None for
/// a VIP without NAT, without VRRP (nothing moves), or whose address no
/// instance moves: its NAT address is left where the VIP is.
fn unmoved_nat_address(vip: &crate::config::VipConfig, moved: &[&[IpAddr]]) -> Option<String> {
    let nat = vip.nat?;
    if !moved
        .iter()
        .any(|list| list.contains(&vip.address) && !list.contains(&nat.source))
    {
        return None;
    }
    Some(format!(
        "VIP {}: its NAT address {} is in no running VRRP instance's addresses along with the VIP's address {} (an instance's addresses are fixed when lbd starts), so it does not move with the VIP at a failover and replies to this VIP's translated flows would go to the node that lost the VIP; add {} to the addresses of the [[vrrp]] instance that moves {} in the config file and restart lbd (VRRP settings take effect at a restart), or give the VIP a NAT address that instance moves (nat_source)",
        crate::vip_id::VipId::of(vip),
        nat.source,
        vip.address,
        nat.source,
        vip.address
    ))
}

/// The warning for a VIP whose address none of the running VRRP
/// instances' address lists (`moved`) holds and the running `[bgp]` does
/// not announce (`announced`): an instance's addresses are fixed when it
/// starts (a `[[vrrp]]` without `addresses` takes the VIP addresses of
/// that start), so no node puts a VIP address added since on its
/// interface, and clients' packets for it reach none. None without VRRP,
/// where the operator places every address.
pub(super) fn unmoved_vip_address(
    vip: &crate::config::VipConfig,
    moved: &[&[IpAddr]],
    announced: bool,
) -> Option<String> {
    if moved.is_empty() || announced || moved.iter().any(|list| list.contains(&vip.address)) {
        return None;
    }
    Some(format!(
        "VIP {}: its address {} is in no running VRRP instance's addresses (an instance's addresses are fixed when lbd starts), so the master does not put it on the interface and it does not move at a failover; add it to a [[vrrp]] instance's addresses and restart lbd, or add it to the interface by hand",
        crate::vip_id::VipId::of(vip),
        vip.address
    ))
}

/// The interface to resolve an `EVENT_NO_NEIGHBOUR`'s next hop on: the
/// egress interface the FIB named (a link-local gateway is only
/// reachable there, e.g. on the second interface of a two-armed node),
/// else, from a program that did not report it, the attached interface,
/// where the packet came in.
fn probe_interface(event: &DataplaneEvent, attached: u32) -> u32 {
    match event.flow.src[0] {
        0 => attached,
        egress => egress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Link;
    use crate::ownership::held::{self, Held, HeldSetting};

    /// A directory of its own for `tag` under the temporary directory, and
    /// in it a setting file `setting` holding "1" (as lbd switched it on).
    fn switched_on_setting(tag: &str) -> (std::path::PathBuf, HeldSetting) {
        let dir = std::env::temp_dir().join(format!("lbd-nat-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let path = dir.join("forwarding");
        std::fs::write(&path, "1").expect("setting");
        (
            dir,
            HeldSetting {
                path,
                was: "0".into(),
            },
        )
    }

    /// A growing `drop_no_tx_port` count asks for a scan at the next
    /// tick; the first reading (a count an adopted data plane brought)
    /// and a count that stays do not.
    #[test]
    fn a_growing_no_tx_port_count_asks_for_a_scan() {
        let mut misses = TxPortMisses::default();
        assert!(!misses.moved(7), "the first reading is the baseline");
        assert!(!misses.moved(7));
        assert!(misses.moved(9));
        assert!(!misses.moved(9));
        // A data plane started afresh (counts from zero) is no miss.
        assert!(!misses.moved(0));
        assert!(misses.moved(1));
    }

    fn record(admin_socket: &std::path::Path) -> Held {
        Held {
            config: "/etc/lbd/lbd.toml".into(),
            pid: 42,
            boot_id: String::new(),
            started: None,
            admin_socket: admin_socket.to_owned(),
            pin_dir: None,
            interface: "eth0".into(),
            attach_tc: false,
            addresses: Vec::new(),
            bgp: None,
            forwarding: Vec::new(),
        }
    }

    /// An unpinned restart leaves IPv6 forwarding on for the next lbd and
    /// records its original again; when that record cannot be written
    /// (no record: the start could not write it), nothing would ever put
    /// it back, so it is put back now, as a restart did before.
    #[test]
    fn a_kept_setting_that_cannot_be_recorded_is_put_back() {
        let (dir, setting) = switched_on_setting("unrecorded");
        let admin_socket = dir.join("lbd.sock");
        let kept = record_or_restore(&admin_socket, vec![setting.clone()]);
        assert!(kept.is_empty(), "nothing recorded: {kept:?}");
        assert_eq!(
            std::fs::read_to_string(&setting.path).expect("setting"),
            "0",
            "put back"
        );

        std::fs::write(&setting.path, "1").expect("setting");
        let record_path = held::record_path(&admin_socket).expect("record path");
        held::write(&record_path, &record(&admin_socket)).expect("record");
        let kept = record_or_restore(&admin_socket, vec![setting.clone()]);
        assert_eq!(kept, vec![setting.clone()]);
        assert_eq!(
            std::fs::read_to_string(&setting.path).expect("setting"),
            "1",
            "recorded: stays on"
        );
        let recorded = held::read(&record_path).expect("record").forwarding;
        assert_eq!(recorded, vec![setting]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A next hop is resolved on the interface the FIB named (a
    /// link-local gateway on a two-armed node's other interface), on the
    /// attached one when an older program named none.
    #[test]
    fn a_missing_neighbour_is_probed_on_the_egress_interface() {
        let mut event = DataplaneEvent {
            kind: EVENT_NO_NEIGHBOUR,
            vip_id: 0,
            flow: lb_common::FlowKey::default(),
        };
        assert_eq!(probe_interface(&event, 2), 2);
        event.flow.src[0] = 7;
        assert_eq!(probe_interface(&event, 2), 7);
    }

    #[test]
    fn a_vip_address_no_vrrp_instance_moves_is_warned_about() {
        let address = |s: &str| s.parse::<IpAddr>().expect("address");
        let vip = crate::config::VipConfig::new(
            address("198.18.0.101"),
            80,
            crate::config::Protocol::Tcp,
        );
        let moved = [address("198.18.0.100")];
        let other = [address("2001:2::100")];
        let warning = unmoved_vip_address(&vip, &[&moved, &other], false).expect("warned");
        assert!(
            warning.starts_with("VIP 198.18.0.101:80/tcp: its address 198.18.0.101 is in no running VRRP instance's addresses"),
            "{warning}"
        );
        assert!(
            warning.contains("add it to a [[vrrp]] instance's addresses and restart lbd, or add it to the interface by hand"),
            "{warning}"
        );
        // No VRRP (the operator places addresses), an address [bgp]
        // announces, or one an instance moves: nothing to say.
        assert_eq!(unmoved_vip_address(&vip, &[], false), None);
        assert_eq!(unmoved_vip_address(&vip, &[&moved], true), None);
        let with_it = [address("198.18.0.100"), address("198.18.0.101")];
        assert_eq!(unmoved_vip_address(&vip, &[&other, &with_it], false), None);
    }

    #[test]
    fn a_nat_address_the_instance_moving_the_vip_leaves_behind_is_warned_about() {
        let address = |s: &str| s.parse::<IpAddr>().expect("address");
        let mut vip =
            crate::config::VipConfig::new(address("198.18.0.10"), 80, crate::config::Protocol::Tcp);
        let moved = [address("198.18.0.10"), address("198.18.0.50")];
        let other = [address("198.18.0.99")];
        // Not a NAT VIP, or no VRRP at all: nothing moves, nothing to say.
        assert_eq!(unmoved_nat_address(&vip, &[&moved]), None);
        vip.forwarding = Mode::Nat;
        vip.nat = Some(crate::config::VipNat {
            source: address("198.18.0.51"),
            own_source: true,
            port_min: 1024,
            port_max: 65_535,
        });
        assert_eq!(unmoved_nat_address(&vip, &[]), None);
        let warning = unmoved_nat_address(&vip, &[&moved, &other]).expect("warned");
        assert!(
            warning.starts_with("VIP 198.18.0.10:80/tcp: its NAT address 198.18.0.51 is in no running VRRP instance's addresses along with the VIP's address 198.18.0.10"),
            "{warning}"
        );
        assert!(
            warning.contains("add 198.18.0.51 to the addresses of the [[vrrp]] instance that moves 198.18.0.10 in the config file and restart lbd"),
            "{warning}"
        );
        // Another instance moving it does not help (the file refuses that
        // too): it must move with the VIP.
        let elsewhere = [address("198.18.0.51")];
        assert!(unmoved_nat_address(&vip, &[&moved, &elsewhere]).is_some());
        // The instance that moves the VIP moves it too: nothing to say.
        let with_it = [address("198.18.0.10"), address("198.18.0.51")];
        assert_eq!(unmoved_nat_address(&vip, &[&other, &with_it]), None);
        // No instance moves the VIP's address: not this check's (the
        // VIP-not-moved warning says so).
        assert_eq!(unmoved_nat_address(&vip, &[&other]), None);
    }

    /// A file lbd starts with is not refused at reload: a NAT VIP whose
    /// address no instance moves (here the IPv6 one, next to an instance
    /// that defaults to the IPv4 VIP addresses) passes, as at start.
    #[test]
    fn a_nat_vip_no_instance_moves_passes_as_at_start() {
        let config = crate::config::Config::from_toml_str(
            r#"
interface = "eth0"
[nat]
source_ipv6 = "2001:2::50"
[[vip]]
address = "198.18.0.100"
port = 80
[[vip]]
address = "2001:2::100"
port = 80
forwarding = "nat"
  [[vip.backend]]
  address = "2001:2:2::11"
[[vrrp]]
vrid = 51
"#,
            "test.toml",
        )
        .expect("the file loads");
        let moved: Vec<&[IpAddr]> = config.vrrp.iter().map(|i| i.addresses.as_slice()).collect();
        assert_eq!(
            moved,
            [&["198.18.0.100".parse::<IpAddr>().expect("address")][..]]
        );
        let nat_vip = config
            .vips
            .iter()
            .find(|v| v.address == "2001:2::100".parse::<IpAddr>().expect("address"))
            .expect("the NAT VIP");
        assert!(nat_vip.nat.is_some());
        assert_eq!(unmoved_nat_address(nat_vip, &moved), None);
        for vip in &config.vips {
            assert_eq!(unmoved_nat_address(vip, &moved), None, "{vip:?}");
        }
        // Had the running instance moved the VIP's address but not the
        // NAT address, the reload would be refused.
        let v6 = ["2001:2::100".parse::<IpAddr>().expect("address")];
        let warning = unmoved_nat_address(nat_vip, &[&v6]).expect("refused");
        assert!(warning.contains("2001:2::50"), "{warning}");
    }

    #[test]
    fn a_nat_address_the_nodes_own_connections_leave_from_is_named() {
        let id = crate::vip_id::VipId {
            address: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: crate::config::Protocol::Tcp,
        };
        let nat = crate::config::VipNat {
            source: "198.18.0.2".parse().unwrap(),
            own_source: false,
            port_min: 1024,
            port_max: 65_535,
        };
        let backend: IpAddr = "198.19.2.11".parse().unwrap();
        let own: IpAddr = "198.18.0.2".parse().unwrap();
        let warning = shared_nat_address(&id, &nat, backend, own, (32_768, 60_999)).unwrap();
        assert!(
            warning.contains("198.18.0.2 is also where this node's own connections to backend 198.19.2.11 come from")
                && warning.contains("1024-65535 overlap the kernel's ephemeral ports 32768-60999"),
            "{warning}"
        );
        // Another source, or ports kept apart: nothing to say.
        let other: IpAddr = "198.18.0.3".parse().unwrap();
        assert_eq!(
            shared_nat_address(&id, &nat, backend, other, (32_768, 60_999)),
            None
        );
        let apart = crate::config::VipNat {
            port_max: 32_767,
            ..nat
        };
        assert_eq!(
            shared_nat_address(&id, &apart, backend, own, (32_768, 60_999)),
            None
        );
    }

    /// A start that adopted the NAT table owes a sweep at its first tick,
    /// whatever the owners then: the flows may name backends or VIPs
    /// removed while no lbd ran. Once; a start on a fresh table owes none.
    #[test]
    fn the_first_tick_on_an_adopted_nat_table_owes_a_sweep() {
        let owners = Owners::default();
        let mut adopted = NatRuntime::default();
        assert!(adopted.owe_sweep_for(&owners, true, 5));
        assert!(adopted.pace.owed());
        assert!(!adopted.owe_sweep_for(&owners, true, 6));
        let mut fresh = NatRuntime::default();
        assert!(!fresh.owe_sweep_for(&owners, false, 5));
        assert!(!fresh.pace.owed());
        assert!(
            !fresh.owe_sweep_for(&owners, true, 6),
            "only the first tick"
        );
        // A backend gone since the last tick still owes one.
        let mut known = Owners::default();
        known.backends.insert(
            1,
            Owner {
                vip_id: 0,
                vip: lb_common::VipKey::default(),
                address: [1, 0, 0, 0],
            },
        );
        fresh.owners = known;
        assert!(fresh.owe_sweep_for(&owners, false, 7));
        assert!(fresh.pace.owed());
    }

    /// A host's `accept_ra = 1` becomes 2 while lbd forwards (else the
    /// interface ignores router advertisements and a default route from
    /// them expires); 0 and 2 stay; an unreadable setting is an error
    /// naming it. A file in a temp dir stands in for /proc/sys.
    #[test]
    fn router_advertisements_stay_accepted_while_forwarding() {
        let dir = std::env::temp_dir().join(format!("lbd-accept-ra-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accept_ra");
        let set = |value: &str| std::fs::write(&path, value).unwrap();
        let read = || std::fs::read_to_string(&path).unwrap();
        set("1\n");
        assert_eq!(
            accept_ra_while_forwarding(&path).unwrap(),
            ("1".to_owned(), true)
        );
        assert_eq!(read(), "2");
        // Once 2 (or 0: not wanted), nothing to change.
        assert_eq!(
            accept_ra_while_forwarding(&path).unwrap(),
            ("2".to_owned(), false)
        );
        set("0\n");
        assert_eq!(
            accept_ra_while_forwarding(&path).unwrap(),
            ("0".to_owned(), false)
        );
        assert_eq!(read(), "0\n");
        std::fs::remove_dir_all(&dir).unwrap();
        let error = accept_ra_while_forwarding(&path).unwrap_err();
        assert!(
            format!("{error:#}").starts_with(&format!("reading {}", path.display())),
            "{error:#}"
        );
        assert_eq!(
            accept_ra_path("eth0.100"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/accept_ra")
        );
    }

    /// `/proc/net/ipv6_route` as a kernel wrote it: a default route
    /// learned from an advertisement on vb (flags 0x00450003), its
    /// prefix routes (flagged ADDRCONF, but not the default route: the
    /// kernel spares them) and loopback's null routes.
    const IPV6_ROUTES: &str = "\
20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 004c0001       vb
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001       vb
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000389ecbfffea4ca6d 00000400 00000001 00000000 00450003       vb
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003       ve
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    /// The interfaces named are those with a default route learned from
    /// advertisements and `accept_ra` not 2 (an unreadable one counts):
    /// not a static default route, nor one kept by `accept_ra` 2.
    #[test]
    fn the_interfaces_losing_ra_default_routes_are_named() {
        let accept_ra = |device: &str| match device {
            "vb" => Some("1".to_owned()),
            "ve" => Some("2".to_owned()),
            _ => None,
        };
        assert_eq!(
            ra_routes_at_risk(IPV6_ROUTES, accept_ra),
            BTreeSet::from(["vb".to_owned()])
        );
        assert!(ra_routes_at_risk(IPV6_ROUTES, |_| Some("2".to_owned())).is_empty());
        assert!(ra_routes_at_risk("", accept_ra).is_empty());
    }

    /// The kernel behaviour the warning is about, in a namespace of its
    /// own: a default route learned from a router advertisement on vb
    /// (`accept_ra` 1) is named, and goes at once when IPv6 forwarding is
    /// switched on for another interface, vd; one on an `accept_ra` 2
    /// interface stays.
    #[test]
    fn switching_ipv6_forwarding_on_deletes_other_interfaces_ra_default_routes() {
        if !crate::test_netns::is_root() {
            eprintln!("skipped: needs root (a network namespace of its own)");
            return;
        }
        crate::test_netns::in_own_netns(|| {
            use crate::test_netns::ip;
            let set = |path: &str, value: &str| std::fs::write(path, value).unwrap();
            set("/proc/sys/net/ipv6/conf/default/accept_dad", "0");
            set("/proc/sys/net/ipv6/conf/default/accept_ra", "1");
            set("/proc/sys/net/ipv6/conf/default/forwarding", "0");
            ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
            ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vd"]);
            for link in ["lo", "va", "vb", "vc", "vd"] {
                ip(&["link", "set", link, "up"]);
            }
            let routes = || std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap();
            let read = |device: &str| {
                std::fs::read_to_string(accept_ra_path(device))
                    .ok()
                    .map(|v| v.trim().to_owned())
            };
            let learned = |expected: &str| {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    // Refused until the link's multicast route is there.
                    let sent = send_router_advertisement("va");
                    let at_risk = ra_routes_at_risk(&routes(), |_| Some("1".to_owned()));
                    if at_risk.contains(expected) {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "no RA default route on {expected} (last send: {sent:?})"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            };
            learned("vb");
            assert_eq!(
                ra_routes_at_risk(&routes(), read),
                BTreeSet::from(["vb".to_owned()])
            );
            set("/proc/sys/net/ipv6/conf/vd/forwarding", "1");
            assert!(
                ra_routes_at_risk(&routes(), |_| Some("1".to_owned())).is_empty(),
                "the kernel deleted vb's default route:\n{}",
                routes()
            );
            // With accept_ra 2 the route is learned again and stays.
            set("/proc/sys/net/ipv6/conf/vd/forwarding", "0");
            set("/proc/sys/net/ipv6/conf/vb/accept_ra", "2");
            learned("vb");
            assert!(ra_routes_at_risk(&routes(), read).is_empty());
            set("/proc/sys/net/ipv6/conf/vd/forwarding", "1");
            assert_eq!(
                ra_routes_at_risk(&routes(), |_| Some("1".to_owned())),
                BTreeSet::from(["vb".to_owned()]),
                "accept_ra 2 keeps it"
            );
        });
    }

    /// Sends a router advertisement (router lifetime 1800 s, no options)
    /// out of `interface` to all nodes, from its link-local address.
    fn send_router_advertisement(interface: &str) -> std::io::Result<usize> {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
        socket.set_multicast_hops_v6(255).unwrap();
        socket.bind_device(Some(interface.as_bytes())).unwrap();
        let name = std::ffi::CString::new(interface).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(index, 0, "no interface {interface}");
        // Type 134, code 0, checksum (the kernel's), hop limit 64, no
        // flags, router lifetime 1800 s, reachable and retransmit 0.
        let mut advertisement = vec![134, 0, 0, 0, 64, 0];
        advertisement.extend(1800u16.to_be_bytes());
        advertisement.extend([0; 8]);
        let all_nodes = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), 0, 0, index);
        socket.send_to(&advertisement, &SockAddr::from(all_nodes))
    }

    /// Only IPv6 forwarding and accept_ra outlast a restart's stop
    /// without a pinned data plane: switching IPv6 forwarding on again
    /// would delete other interfaces' RA default routes each time.
    #[test]
    fn ipv6_forwarding_is_kept_across_a_restart() {
        assert!(kept_across_restarts(&forwarding_path(true, "eth0")));
        assert!(kept_across_restarts(&accept_ra_path("eth0")));
        assert!(!kept_across_restarts(&forwarding_path(false, "eth0")));
        assert!(!kept_across_restarts(std::path::Path::new(
            "/proc/sys/net/ipv4/conf/eth0/accept_local"
        )));
    }

    #[test]
    fn forwarding_is_switched_per_interface_and_family() {
        assert_eq!(
            forwarding_path(false, "eth0.100"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert_eq!(
            forwarding_path(true, "lb0"),
            PathBuf::from("/proc/sys/net/ipv6/conf/lb0/forwarding")
        );
    }

    fn link(index: u32, up: bool, loopback: bool) -> Link {
        Link {
            index,
            name: format!("if{index}"),
            up,
            loopback,
        }
    }

    #[test]
    fn redirect_targets_are_the_attached_and_every_existing_non_loopback_interface() {
        let links = [
            link(1, true, true),
            link(2, true, false),
            link(3, false, false),
            link(4, true, false),
        ];
        let none = BTreeSet::new();
        let targets = |attached| redirect_targets(attached, &links, &none, &none, 64);
        // The attached interface stays even while down (its link may
        // come back without a scan in between).
        assert_eq!(targets(3), BTreeSet::from([2, 3, 4]));
        // So does any other that still exists: a redirect to it while it
        // is down is dropped by its driver, one to a missing entry aborts.
        assert_eq!(targets(2), BTreeSet::from([2, 3, 4]));
        // One gone is left out.
        assert_eq!(
            redirect_targets(2, &links[..2], &none, &none, 64),
            BTreeSet::from([2])
        );
    }

    /// With more interfaces than the map holds, the attached one always
    /// has a slot, then those routes leave by, then those already in the
    /// map (a link that went down keeps its slot), then up ones, lowest
    /// index first.
    #[test]
    fn a_full_redirect_map_keeps_the_attached_and_routed_interfaces() {
        let mut links: Vec<Link> = (2..=70).map(|i| link(i, true, false)).collect();
        links.push(link(1, true, true));
        let none = BTreeSet::new();
        let targets = redirect_targets(70, &links, &none, &none, 64);
        assert_eq!(targets.len(), 64);
        assert!(targets.contains(&70), "the attached interface");
        assert_eq!(targets.range(..70).count(), 63, "then the lowest: 2..=64");
        assert!(!targets.contains(&65));

        let used = BTreeSet::from([69]);
        let targets = redirect_targets(70, &links, &used, &none, 64);
        assert!(targets.contains(&69) && targets.contains(&70) && !targets.contains(&64));

        // 10 went down: its slot stays while it exists, ahead of up 66.
        links[8].up = false;
        let present: BTreeSet<u32> = (2..=64).chain([70]).collect();
        let targets = redirect_targets(70, &links, &none, &present, 64);
        assert_eq!(targets, present);
        // Absent and down ranks after up.
        let targets = redirect_targets(70, &links, &none, &none, 64);
        assert!(!targets.contains(&10) && targets.contains(&65));
    }

    /// A redirect map that refuses every insert of `refused`.
    #[derive(Default)]
    struct RefusingPorts {
        refused: BTreeSet<u32>,
        held: BTreeSet<u32>,
    }

    impl TxPortMap for RefusingPorts {
        fn add_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError> {
            if self.refused.contains(&index) {
                return Err(crate::dataplane::DataplaneError::MissingMap("TX_PORTS"));
            }
            self.held.insert(index);
            Ok(())
        }

        fn remove_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError> {
            self.held.remove(&index);
            Ok(())
        }
    }

    /// An interface whose insert into the redirect map keeps failing is
    /// warned about once, not at every scan (before: every `SCAN_TICKS`
    /// seconds, as the warned set forgot the wanted ones); again once it
    /// went in and fails anew, or was not wanted for a scan and is again.
    #[test]
    fn a_redirect_target_the_map_keeps_refusing_is_warned_once() {
        let links = [
            link(1, true, true),
            link(2, true, false),
            link(3, true, false),
        ];
        let wanted: BTreeSet<u32> = [2, 3].into();
        let mut ports = RefusingPorts {
            refused: [3].into(),
            ..RefusingPorts::default()
        };
        let mut warned = TxWarned::default();
        let refusals = |text: &str| text.matches("adding a NAT redirect target failed").count();
        let scan = |ports: &mut RefusingPorts, warned: &mut TxWarned, wanted: &BTreeSet<u32>| {
            let present = ports.held.clone();
            crate::test_logs::logs_of(|| sync_tx_map(ports, warned, &links, wanted, &present))
        };
        let first = scan(&mut ports, &mut warned, &wanted);
        assert_eq!(refusals(&first), 1, "{first}");
        assert!(first.contains("if3"), "{first}");
        for _ in 0..3 {
            let again = scan(&mut ports, &mut warned, &wanted);
            assert_eq!(refusals(&again), 0, "{again}");
        }
        assert_eq!(ports.held, [2].into());

        // Not wanted for a scan, then wanted again and still refused.
        let fewer: BTreeSet<u32> = [2].into();
        scan(&mut ports, &mut warned, &fewer);
        assert_eq!(refusals(&scan(&mut ports, &mut warned, &wanted)), 1);
        // In at last, then refused again after it was taken out.
        ports.refused.clear();
        scan(&mut ports, &mut warned, &wanted);
        assert_eq!(ports.held, [2, 3].into());
        ports.held.remove(&3);
        ports.refused.insert(3);
        assert_eq!(refusals(&scan(&mut ports, &mut warned, &wanted)), 1);
    }
}
