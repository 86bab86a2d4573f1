//! Adopting what a previous lbd left pinned: checking the pins against
//! this object, carrying flows over from older table layouts and moving
//! flows a previous release placed elsewhere, so a restart or an upgrade
//! keeps every connection.

use std::collections::HashSet;

use aya::{
    maps::{Array, IterableMap as _, Map, MapData, MapInfo, MapType},
    programs::ProgramError,
    EbpfLoader,
};
use lb_common::{
    consts::{
        maglev_index, names, FLOW_F_HALF_OPEN, FLOW_F_STATE, IPPROTO_UDP, MAGLEV_SIZE_MAX,
        MAX_BACKENDS,
    },
    flow_table::{idle_horizons_of, DEFAULT_IDLE_HORIZONS, HALF_OPEN_IDLE_TICKS, TICK_SHIFT},
    FlowEntry, FlowKey, TunnelConfig,
};
use tracing::{debug, info, warn};

use super::{
    attach::remove_pin, flows::FlowStore, map_error, AdoptedState, Dataplane, DataplaneError,
    Result,
};
use crate::{
    daemon::replication::nat::{carry_pair, Carried},
    pinning::{
        error_chain, layout_version_of, program_gone, FormatFit, LayoutAge, PinDir, PinError,
        DEPENDENT_MAPS, FORMAT_EPOCH, LAYOUT_VERSION, PINNED_MAPS, STATE_MAPS,
    },
};

impl Dataplane {
    /// The connection table's idle horizons as this lbd's program reads
    /// them (`IDLE_HORIZONS`, not pinned: what this lbd wrote, at its load
    /// with `load_with_horizons`, or the defaults if it wrote none yet or
    /// the map cannot be read), unpacked: TCP's high word, UDP's low,
    /// ticks.
    fn idle_horizons(&self) -> u64 {
        idle_horizons_of(self.idle_horizons.get(&0, 0).unwrap_or(0))
    }

    /// Empties the ways of the adopted tables (connection, half-open and
    /// NAT flow tables) that an lbd killed between a claim and its publish
    /// left held (`FlowTable::reclaim_abandoned`): no lookup, insert or
    /// eviction takes a held way, so it would stay out of use for good,
    /// and its flow's packets would go untracked (in the NAT table, whose
    /// inserts are exclusive, the key could never be installed again).
    /// Run while this lbd holds the data plane's lock and has not started
    /// writing: the only other writer, the program, holds a way for one
    /// run.
    pub(super) fn reclaim_abandoned_ways(&mut self) {
        const GRACE: std::time::Duration = std::time::Duration::from_millis(100);
        let flows = match &self.flows {
            FlowStore::Buckets(table) => table.reclaim_abandoned(GRACE),
            FlowStore::KernelMap(_) => 0,
        };
        let half_open = self.half_open.reclaim_abandoned(GRACE);
        let nat = self.nat.table().reclaim_abandoned(GRACE);
        if flows + half_open + nat > 0 {
            warn!(
                flows,
                half_open,
                nat,
                "ways a stopped lbd left held mid-write (killed between a claim and its publish) emptied; their flows' next packets are tracked again"
            );
        }
    }

    /// Puts the adopted table's flows that a previous release placed by
    /// another hash or in a far second bucket where this release looks
    /// for them
    /// (`FlowTable::re_place`): copies them after the load (`release`
    /// false), and again once this lbd's program runs, taking the old
    /// copies out (`release` true).
    pub(super) fn re_place_flows(&mut self, release: bool) {
        let FlowStore::Buckets(table) = &self.flows else {
            return;
        };
        let done = table.re_place(release);
        if done.misplaced > 0 {
            info!(
                misplaced = done.misplaced,
                copied = done.copied,
                left_out = done.full,
                failed = done.failed,
                released = done.released,
                "flows a previous release placed elsewhere (another hash, or a second bucket anywhere) moved to where this release looks for them"
            );
        }
        if done.full > 0 || done.failed > 0 {
            warn!(
                left_out = done.full,
                failed = done.failed,
                "some flows could not be moved where this release looks for them (left out: every way of their buckets holds a flow seen more recently; failed: their ways stayed busy): their next packets take Maglev's pick"
            );
        }
    }

    /// Copies the flows of a previous lbd's kernel-map table, or of a
    /// bucket table of another size, into the bucket table (see
    /// `conntrack::legacy`; opened only with the state maps adopted: the
    /// entries' backend ids would mean nothing otherwise); after the swap
    /// (`phase` "swapped") the caller closes the old table and removes its
    /// pin (`LegacyTable::finish`). What it did (None: nothing to carry).
    pub(super) fn carry_legacy_flows(&mut self, phase: CarryPhase) -> Option<CarriedFlows> {
        let horizons = self.idle_horizons();
        let legacy = self.legacy.as_mut()?;
        let FlowStore::Buckets(table) = &self.flows else {
            return None;
        };
        let swapped = phase == CarryPhase::Swapped;
        let mut flows = legacy.flows();
        // Live flows first, the most recent first: a smaller table keeps
        // them, and a closed or expired flow copied later takes only a
        // way no live flow holds (one the table would take for live is
        // not copied, see `over_but_taken_for_live`).
        let now = crate::clock::monotonic_ns();
        flows.sort_by_key(|(key, entry)| carry_order(key, entry, now, horizons));
        let mut done = CarriedFlows {
            flows: flows.len() as u64,
            ..CarriedFlows::default()
        };
        let after_load = swapped.then_some(legacy.loaded_ns);
        for (key, entry) in &flows {
            if over_but_taken_for_live(key, entry, now, horizons) {
                if table
                    .get(key)
                    .is_some_and(|held| held_wins(&held, entry, after_load))
                {
                    done.kept += 1;
                } else {
                    done.dead_left_out += 1;
                }
                continue;
            }
            // Judged on the entry the write would replace, in the write
            // (`install_unless`): a flow the new program refreshed since a
            // first look is never overwritten with the old table's copy.
            match table.install_unless(key, entry, |held| held_wins(held, entry, after_load)) {
                Ok(Some(_)) => done.kept += 1,
                Ok(None) => done.copied += 1,
                Err(crate::conntrack::table::FlowTableError::Full(_)) => {
                    if carry_order(key, entry, now, horizons).0 < DEAD {
                        done.live_left_out += 1;
                    } else {
                        done.dead_left_out += 1;
                    }
                }
                Err(_) => done.failed += 1,
            }
        }
        legacy.copied += done.copied;
        info!(
            phase = phase.name(),
            flows = done.flows,
            copied = done.copied,
            kept = done.kept,
            left_out_live = done.live_left_out,
            left_out_closed_or_expired = done.dead_left_out,
            failed = done.failed,
            "flows carried over from the previous lbd's connection table (kept: this table's copy seen more recently; left out: every way of their buckets holds a flow seen more recently; those of the load are tried again after the swap)"
        );
        // Only the final copy loses flows: until the swap the old program
        // forwards them.
        if swapped && done.live_left_out > 0 {
            warn!(
                live_flows = done.live_left_out,
                capacity = table.capacity(),
                "{} live flows of the previous lbd's connection table were left out: the new connection table (conntrack_size) is smaller than the live flows it must hold (every way of their buckets holds a flow seen more recently); their next packets take Maglev's pick, and the connections it moves are reset",
                done.live_left_out
            );
        }
        if swapped && done.failed > 0 {
            warn!(
                failed = done.failed,
                "some flows of the previous lbd's connection table could not be carried over (their ways stayed busy): their next packets take Maglev's pick"
            );
        }
        Some(done)
    }

    /// Installs the flows of a previous lbd's NAT flow table (a kernel
    /// hash map, or a bucket table of another size; see `nat::legacy`)
    /// into this one, both entries of each together: after the load, just
    /// before the attach (`CarryPhase::Attaching`: the old program has opened flows
    /// since, and a backend's packet of a flow the new program does not
    /// know would go up the stack and be reset), and after the swap
    /// (`CarryPhase::Swapped`), when the caller closes the old table and removes its
    /// pin (`LegacyNat::finish`). After the swap a flow the old program
    /// forwarded after this lbd loaded wins over a flow this lbd's program
    /// opened on its NAT port before the final copy (`carry_pair`). The old
    /// table is opened only with the state maps adopted: without them the
    /// entries' VIP and backend ids mean nothing here, and its pin goes
    /// with the state maps' at the swap (`promote_staged`).
    pub(super) fn carry_legacy_nat(&mut self, phase: CarryPhase) {
        let Some(legacy) = &self.legacy_nat else {
            return;
        };
        let swapped = phase == CarryPhase::Swapped;
        // Each bucket table is read in place: the carry holds only the
        // order of its flows (`nat::legacy::Carry`), each pair read back
        // from its table as it is installed.
        let carry = legacy.carry();
        let loaded_ns = legacy.loaded_ns;
        let (mut installed, mut superseded, mut conflicts, mut failed, mut gone) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for placement in carry.order() {
            let Some(pair) = carry.pair(placement) else {
                gone += 1;
                continue;
            };
            let supersede = swapped && crate::nat::legacy::last_seen(&pair) >= loaded_ns;
            match carry_pair(&mut self.nat, &pair, supersede) {
                Ok(Carried::Yes) => installed += 1,
                Ok(Carried::Superseded) => superseded += 1,
                Ok(Carried::Conflict) => conflicts += 1,
                Err(_) => failed += 1,
            }
        }
        info!(
            phase = phase.name(),
            flows = carry.flows(),
            installed,
            superseded,
            conflicts,
            failed,
            gone,
            unpaired = carry.unpaired(),
            "NAT flows carried over from the previous lbd's NAT flow table (superseded: a flow this lbd's program had opened on the NAT port of a flow the old program forwarded since the load, removed; conflicts: left out for a flow of this table on one of their keys; gone: no longer a whole flow in the old table when read again to be installed; unpaired: entries without their flow's other one, left behind)"
        );
        if superseded > 0 {
            warn!(
                superseded,
                "flows this lbd's program opened during the swap on the NAT port of a connection the previous lbd's program was forwarding were removed: their clients' next packets are dropped and they reconnect"
            );
        }
        if swapped && conflicts > 0 {
            warn!(
                conflicts,
                "some NAT flows of the previous lbd's table were left out: this table holds another flow on their NAT port (one the old program had stopped forwarding before this lbd loaded); their connections are lost"
            );
        }
        if failed > 0 {
            warn!(failed, "some NAT flows could not be carried over (their buckets were full): their connections are lost");
        }
    }

    /// The second pass of `carry_legacy_flows`, `carry_legacy_nat` and of
    /// `re_place_flows`, once this lbd's program runs on the interface and
    /// the previous lbd's programs are gone from every hook (`attach` or
    /// `attach_tc`, then `remove_other_hook` and
    /// `remove_other_interfaces`): no old program adds or changes flows
    /// any more. lbd's start calls it then; a caller that runs the program
    /// by other means (a test run) calls it once the old program is gone.
    /// Returns what the final copy of the connection table's flows did
    /// (None: none was carried over).
    pub fn finish_adoption(&mut self) -> Option<CarriedFlows> {
        // Done at the swap by `attach`; here for a caller that runs the
        // program by other means.
        if let Err(error) = self.promote_staged() {
            warn!(%error, "pinning the maps this lbd started afresh under their names failed: the next start does it (they are staged, and this lbd's program uses them)");
        }
        let mut carried = None;
        if self.legacy.is_some() {
            carried = self.carry_legacy_flows(CarryPhase::Swapped);
            if let Some(legacy) = self.legacy.take() {
                legacy.finish();
            }
        }
        if self.legacy_nat.is_some() {
            self.carry_legacy_nat(CarryPhase::Swapped);
            if let Some(legacy) = self.legacy_nat.take() {
                legacy.finish();
            }
        }
        if std::mem::take(&mut self.re_place_pending) {
            self.re_place_flows(true);
        }
        // No previous program runs any more: its tunnel settings are
        // written no more, and its map may go with it.
        self.previous_tunnel_configs = Some(Vec::new());
        if let Some(pins) = &self.pins {
            match pins.remove_other_layouts() {
                Ok(removed) if !removed.is_empty() => info!(
                    maps = removed.len(),
                    this_layout = LAYOUT_VERSION,
                    "the maps {} pinned in another layout are removed (this lbd started its own)",
                    releases_of(&removed)
                ),
                Ok(_) => {}
                Err(error) => {
                    warn!(%error, "removing the maps another release pinned in another layout failed: they hold their memory until the next start removes them (or a reboot)")
                }
            }
        }
        carried
    }

    /// Pins the maps this lbd's load staged (`place_pins`: made in place
    /// of a previous lbd's whose state it does not adopt) under their
    /// names, replacing the previous lbd's pins, once this lbd's
    /// program runs: right after its swap (`attach`, `attach_tc`), or at
    /// `finish_adoption` for a caller that runs it by other means. Without
    /// the state maps adopted, the pins of the tables flows were to be
    /// carried over from go too (`pinning::CARRIED_FROM`). Once only.
    pub(super) fn promote_staged(&mut self) -> Result<()> {
        if self.promoted {
            return Ok(());
        }
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        let moved = pins.promote_staged(!self.adopted)?;
        self.promoted = true;
        if !moved.is_empty() {
            info!(maps = ?moved, "the maps this lbd started afresh now take the place of the previous lbd's pins (its program runs on them)");
        }
        // This lbd's program runs on the pins now: they hold its format
        // (an older build's flows are re-placed at `finish_adoption`).
        if let Err(error) = pins.write_format_stamp() {
            warn!(%error, epoch = FORMAT_EPOCH, "pinning this build's format stamp failed: a later start of an older build cannot tell these pins are newer than it knows, and may misread the connection table");
        }
        Ok(())
    }

    /// Removes the maps this lbd staged and did not pin under their names
    /// (it stops before its program ran): the previous lbd's pins stay as
    /// they were, and the staged maps' memory is freed (else the next
    /// start removes them, see `recover_staged`).
    pub(super) fn discard_staged(&mut self) {
        if self.promoted || self.staged.is_empty() {
            return;
        }
        let Some(pins) = &self.pins else {
            return;
        };
        match pins.discard_staged() {
            Ok(removed) => {
                info!(maps = removed, "this lbd stopped before its program ran: the maps it staged are removed, the previous lbd's pins stay as they were");
            }
            Err(error) => {
                warn!(%error, "removing the maps this lbd staged failed: the next start removes them");
            }
        }
    }

    /// Copy `copy` of VIP `vip_id`'s table as the map holds it (`size`
    /// slots), e.g. the live table a previous lbd left.
    pub(crate) fn read_table(&self, vip_id: u32, copy: u32, size: u32) -> Result<Vec<u32>> {
        if vip_id >= self.sizes.max_vips {
            return Err(DataplaneError::OutOfRange {
                what: "VIP id",
                id: vip_id,
                capacity: self.sizes.max_vips,
            });
        }
        (0..size.min(MAGLEV_SIZE_MAX))
            .map(|slot| {
                self.maglev
                    .get(&maglev_index(vip_id, copy, slot), 0)
                    .map_err(|e| map_error("reading", names::MAP_MAGLEV, e))
            })
            .collect()
    }

    /// Whether the maps were adopted from a previous lbd (pinned, and
    /// compatible): the connection table and the tables are live.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// `TUNNEL_CONFIG[0]` as the previous lbd's program reads it (None: the
    /// state was not adopted, no such program is loaded, or its object has
    /// no tunnel settings): the newest of `previous_tunnel_configs`. A
    /// restart keeps the outer sources it held, which the backends'
    /// lb-decap `sources` allow. Read it before the first commit, which
    /// writes this lbd's settings there too.
    pub(crate) fn adopted_tunnel_config(&mut self) -> Result<Option<TunnelConfig>> {
        let Some(newest) = self.previous_tunnel_configs()?.last() else {
            return Ok(None);
        };
        newest
            .get(&0, 0)
            .map(Some)
            .map_err(|e| map_error("reading", names::MAP_TUNNEL_CONFIG, e))
    }

    /// Writes `config` to the previous lbds' `TUNNEL_CONFIG` copies as
    /// well, until the adoption is finished. `TUNNEL_CONFIG` is not
    /// pinned (each object has its own), yet a previous program serves the
    /// adopted `VIPS` and `BACKENDS` this lbd's first commit fills until
    /// the swap: a VIP that commit switches to a tunnelled mode (or a 4in6
    /// backend next to an IPv4-only `[tunnel]`) would otherwise be wrapped
    /// with that program's settings, all zeros if its lbd served no
    /// tunnelled VIP: outer sources from 0.0.0.0/0 (or ::/0), GUE to port
    /// 0, established flows included, and for good if this lbd then stops
    /// before the swap. A failure fails the write, so the commit stops
    /// before any VIP names a tunnelled mode (`Balancer::apply_tunnel`).
    pub(super) fn set_previous_tunnel_configs(&mut self, config: &TunnelConfig) -> Result<()> {
        for map in self.previous_tunnel_configs()? {
            map.set(0, config, 0).map_err(|e| {
                map_error("writing the previous lbd's", names::MAP_TUNNEL_CONFIG, e)
            })?;
        }
        Ok(())
    }

    /// The previous lbds' copies of `TUNNEL_CONFIG`, oldest first, looked
    /// for once: empty unless the state was adopted and this object has
    /// the map, and once the adoption is finished. The map is not pinned,
    /// so they are found among the maps of the loaded programs that share
    /// the adopted `VIPS`: the previous lbd's, which runs at its hook until
    /// this lbd's program is attached and its other hooks are gone (an
    /// older lbd's too, if one is left).
    fn previous_tunnel_configs(&mut self) -> Result<&mut [Array<MapData, TunnelConfig>]> {
        if self.previous_tunnel_configs.is_none() {
            self.previous_tunnel_configs = Some(self.find_previous_tunnel_configs()?);
        }
        Ok(self
            .previous_tunnel_configs
            .as_deref_mut()
            .unwrap_or_default())
    }

    /// Looks for `previous_tunnel_configs`. A map found that cannot be
    /// opened is skipped, with a warning: its id went with its program
    /// (stopped since the listing: ENOENT), which reads it no more.
    fn find_previous_tunnel_configs(&self) -> Result<Vec<Array<MapData, TunnelConfig>>> {
        const NAME: &str = names::MAP_TUNNEL_CONFIG;
        let Some(own) = &self.tunnel_config else {
            return Ok(Vec::new());
        };
        if !self.adopted {
            return Ok(Vec::new());
        }
        let id = |map: &MapData, name| {
            map.info()
                .map(|info| info.id())
                .map_err(|e| map_error("reading the id of", name, e))
        };
        let own = id(own.map(), NAME)?;
        let vips = id(self.vips.map(), names::MAP_VIPS)?;
        let fits = |info: &MapInfo| {
            info.name_as_str() == Some(NAME)
                && matches!(info.map_type(), Ok(MapType::Array))
                && info.key_size() == 4
                && info.value_size() as usize == std::mem::size_of::<TunnelConfig>()
                && info.max_entries() >= 1
        };
        let mut found = std::collections::BTreeSet::new();
        for program in aya::programs::loaded_programs() {
            let ids = match program.and_then(|p| p.map_ids()) {
                Ok(Some(ids)) => ids,
                Ok(None) => continue,
                Err(error) if program_gone(&error) => {
                    debug!(%error, "a loaded program went while its maps were read");
                    continue;
                }
                // A previous program's copy missed would wrap with its
                // own (zero) settings: the write fails instead.
                Err(error) => return Err(unlisted(PREVIOUS_TUNNEL_CONFIGS, &error)),
            };
            if !ids.contains(&vips) {
                continue;
            }
            for map in ids.into_iter().filter(|map| *map != own) {
                if MapInfo::from_id(map).is_ok_and(|info| fits(&info)) {
                    found.insert(map);
                }
            }
        }
        Ok(open_each(found, open_tunnel_config))
    }

    /// The VIPs and backends the adopted maps hold (empty unless adopted),
    /// so ids and generations carry over and tracked flows keep their
    /// backends.
    pub(crate) fn adopted_state(&self) -> Result<AdoptedState> {
        let mut state = AdoptedState::default();
        if !self.adopted {
            return Ok(state);
        }
        for entry in self.vips.iter() {
            let (key, meta) = entry.map_err(|e| map_error("reading", names::MAP_VIPS, e))?;
            state.vips.push((key, meta));
        }
        for id in 1..MAX_BACKENDS {
            let backend = self
                .backends
                .get(&id, 0)
                .map_err(|e| map_error("reading", names::MAP_BACKENDS, e))?;
            if backend.generation != 0 {
                state.backends.push((id, backend));
            }
        }
        Ok(state)
    }
}

/// When a previous lbd's flows are carried over (`carry_legacy_flows`,
/// `carry_legacy_nat`): each pass copies what the old tables hold then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CarryPhase {
    /// Right after the load: the old program still runs.
    Loaded,
    /// Just before this lbd's program is attached (NAT flows only): what
    /// the old program opened while lbd filled its maps.
    Attaching,
    /// After the swap (`finish_adoption`): no previous lbd's program runs
    /// any more, so the old tables are final.
    Swapped,
}

impl CarryPhase {
    /// The phase's name in the logs.
    fn name(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Attaching => "attaching",
            Self::Swapped => "swapped",
        }
    }
}

/// What a pass of `carry_legacy_flows` did with the old tables' flows
/// (`finish_adoption` returns the final pass's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarriedFlows {
    /// Flows the old tables hold.
    pub flows: u64,
    /// Copied into the new table (inserted, or written over its entry).
    pub copied: u64,
    /// Left as the new table holds them (`held_wins`).
    pub kept: u64,
    /// Live flows (and handshakes in time) left out: every way of their
    /// buckets holds a flow seen more recently, i.e. the new table is
    /// smaller than the live flows it must hold. After the swap their
    /// connections are lost (warned).
    pub live_left_out: u64,
    /// Closed or expired flows left out (nothing lost).
    pub dead_left_out: u64,
    /// Not copied: their ways stayed busy through every retry.
    pub failed: u64,
}

/// Whether the new table's entry `held` of a flow stays rather than the
/// old table's `old`. Before the swap (`after_load` None) when it was
/// seen more recently: the old tables may be older than the new one (an
/// upgrade that swapped and then stopped left the table it moved aside,
/// while its program went on with the new one). After the swap
/// (`after_load`: when this lbd opened the old tables), an old entry
/// stamped since was the old program's, still forwarding, and names the
/// connection's backend: it wins unless `held` is a later state of the
/// same backend. The new table's differing copy is this lbd's program's
/// pick for a flow it met before this final copy (by another hash, from
/// a shared-LRU release, often another backend).
fn held_wins(held: &FlowEntry, old: &FlowEntry, after_load: Option<u64>) -> bool {
    let fresher = held.last_seen_ns > old.last_seen_ns;
    match after_load {
        Some(loaded) if old.last_seen_ns >= loaded => {
            fresher
                && held.backend_id == old.backend_id
                && held.backend_generation == old.backend_generation
        }
        _ => fresher,
    }
}

/// `carry_order`'s tier of closed and expired flows.
const DEAD: u8 = 3;

/// The order flows are carried over in (lowest first), the reverse of the
/// data plane's eviction order (`flow_table::victim_order_within`): live
/// flows (neither closed nor idle past their protocol's timeout,
/// `horizons` as `IDLE_HORIZONS` holds them: TCP's high, UDP's low, in
/// ticks), then open TCP connections idle past the TCP timeout (no FIN
/// or RST: their next packet still goes by their entry, which a pooled
/// database session needs, its backend being no longer Maglev's pick
/// after a drain or a change of the backends), then handshakes in time,
/// then closed and expired flows (`DEAD`); within each, the most
/// recently seen first. `now`: CLOCK_MONOTONIC ns.
fn carry_order(
    key: &FlowKey,
    entry: &FlowEntry,
    now: u64,
    horizons: u64,
) -> (u8, std::cmp::Reverse<u64>) {
    let age = now.saturating_sub(entry.last_seen_ns);
    let idle = |ticks: u32| age > u64::from(ticks) << TICK_SHIFT;
    let horizon = if key.proto == IPPROTO_UDP {
        horizons as u32
    } else {
        (horizons >> 32) as u32
    };
    let tier = if entry.flags & FLOW_F_STATE != 0 {
        DEAD
    } else if entry.flags & FLOW_F_HALF_OPEN != 0 {
        if idle(HALF_OPEN_IDLE_TICKS) {
            DEAD
        } else {
            2
        }
    } else if idle(horizon) {
        if key.proto == IPPROTO_UDP {
            DEAD
        } else {
            1
        }
    } else {
        0
    };
    (tier, std::cmp::Reverse(entry.last_seen_ns))
}

/// Whether a flow `carry_order` puts among the closed and expired, by
/// the configured `horizons`, is one the default horizons (15 minutes for
/// both protocols) take for live: a flow expired by a shorter configured
/// horizon (a UDP flow idle past `udp_idle_timeout_s`) but seen more
/// recently than an older live flow (a TCP connection, live for 15
/// minutes) could take that flow's way where the ways are judged by the
/// defaults. Such a flow is not carried over: its entry steers nothing
/// worth a way (a UDP flow's next packet takes Maglev's pick), as for the
/// closed and expired flows a smaller table leaves out. An open TCP
/// connection idle past its horizon is never among them (its packets
/// still go by its entry: `carry_order` ranks it above handshakes).
fn over_but_taken_for_live(key: &FlowKey, entry: &FlowEntry, now: u64, horizons: u64) -> bool {
    carry_order(key, entry, now, horizons).0 == DEAD
        && carry_order(key, entry, now, DEFAULT_IDLE_HORIZONS).0 < DEAD
}

/// Flags the kernel sets on a map of `map_type` whatever it was created
/// with, so a pinned map reads back with them: device maps are read-only
/// to programs (`BPF_F_RDONLY_PROG`, as a lookup returns the device
/// itself). Compared as created, else every restart would find the pinned
/// TX ports "changed" and start them afresh.
fn flags_the_kernel_adds(map_type: u32) -> u32 {
    const BPF_F_RDONLY_PROG: u32 = 1 << 7;
    const BPF_MAP_TYPE_DEVMAP: u32 = 14;
    const BPF_MAP_TYPE_DEVMAP_HASH: u32 = 25;
    match map_type {
        BPF_MAP_TYPE_DEVMAP | BPF_MAP_TYPE_DEVMAP_HASH => BPF_F_RDONLY_PROG,
        _ => 0,
    }
}

/// What `check_pins` found of the pins a previous lbd left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PinPlan {
    /// Whether the state maps are adopted.
    pub adopt: bool,
    /// The pinned maps this lbd takes over as they are.
    pub kept: Vec<&'static str>,
}

/// Checks the pins a previous lbd left against what this object and these
/// sizes need, touching none: which it takes over as they are, and whether
/// it adopts the state maps. Those go together: if any of them cannot be
/// adopted, none is, nor any map that depends on them. `carried`: tables
/// a previous layout's flows are carried over from (the connection table's
/// maps, `conntrack::legacy`; the NAT flow table, `nat::legacy`), not
/// required for adoption. What is not taken over is made afresh
/// (`place_pins`).
pub(super) fn check_pins(
    pins: &PinDir,
    object: &[u8],
    resized: &[(&str, u32)],
    carried: &[&str],
) -> Result<PinPlan> {
    let parsed =
        aya_obj::Object::parse(object).map_err(|e| DataplaneError::Parse(e.to_string()))?;
    let stamp = pins.format_stamp();
    if stamp.fit() == FormatFit::Newer {
        warn!(
            dir = %pins.maps_dir().display(),
            pinned_format = %stamp.describe(),
            this_build_format = FORMAT_EPOCH,
            "the pinned data plane was written by a newer build (format {}; this build knows up to {FORMAT_EPOCH}): not adopted, since this build would misread its tables. Established flows are placed by Maglev again (those whose backend is not Maglev's pick now are reset), NAT'd connections are lost, VRRP will not resume (the peer takes over), backends start as up; the newer build's maps stay until this lbd's program runs, then are replaced (a start that fails before leaves them as they were; installing the newer build again and restarting adopts them)",
            stamp.describe()
        );
        return Ok(PinPlan::default());
    }
    let mut present = Vec::new();
    let mut misfits = Vec::new();
    for name in PINNED_MAPS {
        let path = pins.map_path(name);
        if !path.exists() {
            continue;
        }
        let Some(map) = parsed.maps.get(name) else {
            continue;
        };
        let max_entries = resized
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(map.max_entries(), |(_, e)| *e);
        let want = (
            map.map_type(),
            map.key_size(),
            map.value_size(),
            max_entries,
            map.map_flags(),
        );
        let have = MapInfo::from_pin(&path).ok().and_then(|info| {
            let map_type = info.map_type().ok()? as u32;
            Some((
                map_type,
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags() & !flags_the_kernel_adds(map_type),
            ))
        });
        if have == Some(want) {
            present.push(name);
        } else if !carried.contains(&name) {
            // (A table carried over says so when it is opened.)
            misfits.push((name, have, want));
        }
    }
    let adopt = STATE_MAPS
        .iter()
        .filter(|name| !carried.contains(name))
        .all(|name| present.contains(name));
    if present.is_empty() && misfits.is_empty() {
        warn_other_layouts(pins);
    }
    for (name, have, want) in misfits {
        if adopt {
            warn!(map = name, ?have, ?want, "pinned map does not fit this lbd (size, type or layout changed): starting it afresh");
        } else {
            warn!(map = name, ?have, ?want, "pinned map does not fit this lbd (size, type or layout changed): starting it afresh (the pinned one stays until this lbd's program runs)");
        }
    }
    if adopt {
        let half_open = if present.contains(&names::MAP_HALF_OPEN) {
            ", half-open flows"
        } else {
            ""
        };
        info!(dir = %pins.root().display(), "adopting the pinned data plane (VIPs, backends, tables, connection table{half_open})");
        return Ok(PinPlan {
            adopt,
            kept: present,
        });
    }
    let together = |name: &str| STATE_MAPS.contains(&name) || DEPENDENT_MAPS.contains(&name);
    for name in present.iter().filter(|name| together(name)) {
        warn!(
            map = name,
            "not adopting this map alone: the state maps go together (the pinned one stays until this lbd's program runs)"
        );
    }
    present.retain(|name| !together(name));
    Ok(PinPlan {
        adopt,
        kept: present,
    })
}

/// Says, at warn level, that the pins of this build's layout directory
/// are missing while another layout version's are there (an upgrade or a
/// downgrade across a `LAYOUT_VERSION` change): nothing is adopted, and
/// the operator should know what that costs and which build left them.
fn warn_other_layouts(pins: &PinDir) {
    for other in pins.other_layouts() {
        let release = match other.age {
            LayoutAge::Older => "an older release",
            LayoutAge::Newer => "a newer release (a downgrade)",
        };
        warn!(
            found = %other.dir.display(),
            found_layout = other.version,
            this_layout = LAYOUT_VERSION,
            "the pinned data plane is in another layout, {} ({release}), not this build's {LAYOUT_VERSION}: not adopted. The connection table is started afresh (flows re-placed by Maglev, those whose backend is not Maglev's pick now are reset), NAT'd connections are lost, VRRP will not resume (the peer takes over), backends start as up; those maps are removed once this lbd's program runs",
            other.age.word()
        );
    }
}

/// Which releases pinned the maps `removed` (paths in layout directories),
/// as a log says it: "an older release", "a newer release", or both, each
/// with its layout versions.
fn releases_of(removed: &[std::path::PathBuf]) -> String {
    let mut versions: Vec<u32> = removed
        .iter()
        .filter_map(|path| {
            let dir = path.parent()?.file_name()?.to_str()?;
            layout_version_of(dir)
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let of = |age: LayoutAge| -> Vec<String> {
        versions
            .iter()
            .filter(|v| LayoutAge::of(**v) == Some(age))
            .map(|v| format!("v{v}"))
            .collect()
    };
    let said: Vec<String> = [LayoutAge::Older, LayoutAge::Newer]
        .into_iter()
        .filter_map(|age| {
            let layouts = of(age);
            (!layouts.is_empty()).then(|| {
                format!(
                    "{} release ({} layout {})",
                    if age == LayoutAge::Older {
                        "an older"
                    } else {
                        "a newer"
                    },
                    age.word(),
                    layouts.join(", ")
                )
            })
        })
        .collect();
    if said.is_empty() {
        "another release".to_owned()
    } else {
        said.join(" and ")
    }
}

/// Tells `loader` where to pin each map, as `plan` found the pins: a map
/// taken over is opened from its pin; one nothing is pinned under yet is
/// made and pinned under its name (nothing of a previous lbd is
/// displaced). Without the state maps adopted, one made in place of a
/// pinned map is staged (`PinDir::staged_dir`) and takes its name only
/// once this lbd's program runs (`Dataplane::promote_staged`), so a start
/// that stops before (the verifier, the commit or the attach failed)
/// leaves the previous lbd's pins as they were, its program forwarding on
/// them, for the start after to adopt: the state, the connection and NAT
/// tables. With them adopted, a pinned map that does not fit alone is
/// replaced at once: what such a map holds is started afresh by design
/// whoever adopts the state next (a half-open table of another size, a
/// VIP index rebuilt from `VIPS`, NAT sources written again by the first
/// commit, counters). `fresh`: tables whose flows are carried over from
/// the table moved aside (`conntrack::legacy`, `nat::legacy`); what is
/// left under their names (a kernel-map lbd's one-bucket placeholder, a
/// copy an upgrade stopped before its swap made) is removed now, the
/// moved table staying until the swap. Returns the maps staged and those
/// pinned under names nothing was pinned under.
pub(super) fn place_pins(
    loader: &mut EbpfLoader<'_>,
    pins: &PinDir,
    plan: &PinPlan,
    fresh: &[&str],
) -> Result<Placed> {
    let mut staged = Vec::new();
    let mut made = Vec::new();
    for name in PINNED_MAPS {
        let path = pins.map_path(name);
        if plan.kept.contains(&name) {
            loader.map_pin_path(name, path);
            continue;
        }
        if !path.exists() {
            loader.map_pin_path(name, path);
            made.push(name);
            continue;
        }
        if plan.adopt || fresh.contains(&name) {
            remove_pin(&path)?;
            loader.map_pin_path(name, path);
            continue;
        }
        if staged.is_empty() {
            let dir = pins.staged_dir();
            std::fs::create_dir_all(&dir).map_err(|source| {
                DataplaneError::Pin(PinError::Io {
                    action: "creating",
                    path: dir,
                    source,
                })
            })?;
        }
        // The loader would open a map left there as this lbd's own.
        let at = pins.staged_path(name);
        remove_pin(&at)?;
        loader.map_pin_path(name, at);
        staged.push(name);
    }
    if !staged.is_empty() {
        info!(maps = ?staged, dir = %pins.staged_dir().display(), "the pinned state is not adopted, and the maps made afresh in its place are staged: they take their names once this lbd's program runs, the previous lbd's pins stay as they are until then");
    }
    Ok(Placed { staged, made })
}

/// Where `place_pins` told the loader to pin the maps it makes.
pub(super) struct Placed {
    /// Made in place of a pinned map, pinned in the staging directory.
    pub(super) staged: Vec<&'static str>,
    /// Pinned under their names, where nothing was pinned: no program of
    /// a previous lbd uses them, so a load that fails removes them (all
    /// of them on a node without pins, whose next start would adopt them
    /// otherwise).
    pub(super) made: Vec<&'static str>,
}

/// Finishes, or undoes, what a previous start staged and did not pin
/// under their names (`place_pins`): run before anything reads the pins.
/// A staged map a loaded program uses means that start's program ran (it
/// stopped between its swap and `promote_staged`): its maps take their
/// names now, as it would have done, and the tables flows were to be
/// carried over from go if the state maps are among them. Staged maps no
/// program uses are a start that stopped before its swap: removed, the
/// pins they were to replace stay as they were. (No other lbd holds them:
/// the pin directory is one lbd's at a time, see `ownership`.)
pub(crate) fn recover_staged(pins: &PinDir) -> Result<()> {
    let staged = pins.staged_pins()?;
    if staged.is_empty() {
        pins.discard_staged()?;
        return Ok(());
    }
    let ids = staged
        .iter()
        .map(|(_, path)| {
            MapInfo::from_pin(path)
                .map(|info| info.id())
                .map_err(|e| map_error("reading the staged", "map", e))
        })
        .collect::<Result<HashSet<u32>>>()?;
    // Listing the programs failed: neither way is safe (promoting maps no
    // program uses would replace the pins a running program's state is
    // under; discarding maps a program runs on would have the next start
    // adopt stale tables beside it), so the start is refused and the
    // staged maps stay for a start that can tell.
    let used = uses_any(
        aya::programs::loaded_programs().map(|p| p.and_then(|p| p.map_ids())),
        &ids,
    )
    .map_err(|e| unlisted(STAGED_IN_USE, &e))?;
    if used {
        let state = staged
            .iter()
            .any(|(name, _)| STATE_MAPS.contains(&name.as_str()));
        let moved = pins.promote_staged(state)?;
        warn!(maps = ?moved, "a previous lbd stopped between its program swap and pinning its maps under their names: its program runs on them, so they take their names now");
    } else {
        let removed = pins.discard_staged()?;
        info!(maps = removed, "a previous lbd stopped before its program swap: the maps it staged are removed, the pins it would have replaced stay as they were");
    }
    Ok(())
}

/// The capacity of the pinned `VIPS` (None: none pinned) once what a
/// previous start staged is finished or undone (`recover_staged`): lbd's
/// start sizes its VIP maps, and decides whether VRRP resumes mastership,
/// from the maps its load will find. Read before the recovery, a pinned
/// `VIPS` about to be replaced by a killed start's staged one (still in
/// use by its program) would size this start to the old capacity, and the
/// state that program serves would not be adopted. Run under the pin
/// directory's lock (`ownership::claim`).
pub(crate) fn recovered_vip_capacity(pins: &PinDir) -> Result<Option<u32>> {
    recover_staged(pins)?;
    Ok(pins.pinned_max_entries(names::MAP_VIPS))
}

/// What `recover_staged` lists the programs for.
const STAGED_IN_USE: &str =
    "whether a program runs on the maps a previous lbd staged (they are kept until then)";

/// What `find_previous_tunnel_configs` lists the programs for.
const PREVIOUS_TUNNEL_CONFIGS: &str = "which previous lbd's program reads its own TUNNEL_CONFIG";

/// Whether one of `programs` (each program's map ids, as
/// `loaded_programs` and `map_ids` read them) uses one of the maps
/// `ids`. A program gone between its listing and its reading (ENOENT) is
/// skipped; any other error (EPERM without CAP_SYS_ADMIN) is returned:
/// a listing cut short is no answer.
fn uses_any(
    programs: impl IntoIterator<Item = std::result::Result<Option<Vec<u32>>, ProgramError>>,
    ids: &HashSet<u32>,
) -> std::result::Result<bool, ProgramError> {
    for program in programs {
        match program {
            Ok(Some(used)) if used.iter().any(|id| ids.contains(id)) => return Ok(true),
            Ok(_) => {}
            Err(error) if program_gone(&error) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

/// The failure to list the programs for `purpose`.
fn unlisted(purpose: &'static str, e: &ProgramError) -> DataplaneError {
    DataplaneError::ProgramsUnlisted {
        purpose,
        reason: error_chain(e),
    }
}

/// Opens the previous lbd's `TUNNEL_CONFIG` of map id `id`.
fn open_tunnel_config(id: u32) -> Result<Array<MapData, TunnelConfig>> {
    const NAME: &str = names::MAP_TUNNEL_CONFIG;
    let map = MapData::from_id(id).map_err(|e| map_error("opening", NAME, e))?;
    Array::try_from(Map::Array(map)).map_err(|e| map_error("opening", NAME, e))
}

/// The maps of ids `ids` that `open` opens, in order; each one it cannot
/// open is skipped with a warning (`find_previous_tunnel_configs`).
fn open_each<T, E: std::fmt::Display>(
    ids: impl IntoIterator<Item = u32>,
    mut open: impl FnMut(u32) -> std::result::Result<T, E>,
) -> Vec<T> {
    let mut opened = Vec::new();
    for id in ids {
        match open(id) {
            Ok(map) => opened.push(map),
            Err(error) => warn!(
                map_id = id,
                %error,
                "a previous lbd's {} cannot be opened (its program is gone?): skipped",
                names::MAP_TUNNEL_CONFIG
            ),
        }
    }
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_the_swap_the_old_programs_later_entry_wins() {
        let s = 1_000_000_000u64;
        let loaded = 5_000 * s;
        let entry = |backend_id: u32, seen: u64| FlowEntry {
            backend_id,
            backend_generation: 1,
            last_seen_ns: seen,
            ..FlowEntry::default()
        };
        // The old program opened the flow after the load (backend 1); this
        // lbd's program met it after the swap and picked backend 2.
        let old = entry(1, loaded + s);
        let repicked = entry(2, loaded + 2 * s);
        assert!(!held_wins(&repicked, &old, Some(loaded)));
        // The same backend, seen since: the new table's is the later state.
        assert!(held_wins(&entry(1, loaded + 2 * s), &old, Some(loaded)));
        // An old entry from before the load (a table an upgrade that
        // swapped left behind): the fresher held one stays, whatever its
        // backend; an older held one does not.
        let stale = entry(1, loaded - 60 * s);
        assert!(held_wins(&repicked, &stale, Some(loaded)));
        assert!(!held_wins(&entry(2, loaded - 90 * s), &stale, Some(loaded)));
        // Before the swap, the fresher one stays.
        assert!(held_wins(&repicked, &old, None));
        assert!(!held_wins(&old, &repicked, None));
    }

    /// With the default horizons nothing expired is taken for live; with
    /// a UDP horizon of 30 s a UDP flow idle 60 s is (the table's order
    /// judges by the defaults) and is not carried; one idle past 15
    /// minutes, a closed flow, a live flow are not "taken for live".
    #[test]
    fn only_flows_expired_by_a_shorter_horizon_are_taken_for_live() {
        let s = 1_000_000_000u64;
        let now = 10_000 * s;
        let at = |seen: u64, flags: u32| FlowEntry {
            last_seen_ns: now - seen * s,
            flags,
            ..FlowEntry::default()
        };
        let tcp = FlowKey {
            proto: 6,
            ..FlowKey::default()
        };
        let udp = FlowKey {
            proto: IPPROTO_UDP,
            ..FlowKey::default()
        };
        let configured = idle_horizons_of(lb_common::flow_table::idle_horizons_word(
            lb_common::flow_table::horizon_ticks(900 * s),
            lb_common::flow_table::horizon_ticks(30 * s),
        ));
        assert!(over_but_taken_for_live(&udp, &at(60, 0), now, configured));
        for (key, entry) in [
            (udp, at(10, 0)),
            (udp, at(1_000, 0)),
            (tcp, at(120, 0)),
            (tcp, at(60, FLOW_F_STATE)),
        ] {
            assert!(
                !over_but_taken_for_live(&key, &entry, now, configured),
                "{key:?} {entry:?}"
            );
        }
        assert!(!over_but_taken_for_live(
            &udp,
            &at(60, 0),
            now,
            DEFAULT_IDLE_HORIZONS
        ));
        // An open TCP connection idle past a shorter TCP horizon is no
        // expired flow: carried with the idle-open ones.
        let short_tcp = idle_horizons_of(lb_common::flow_table::idle_horizons_word(
            lb_common::flow_table::horizon_ticks(60 * s),
            lb_common::flow_table::horizon_ticks(30 * s),
        ));
        assert!(!over_but_taken_for_live(&tcp, &at(120, 0), now, short_tcp));
        assert!(carry_order(&tcp, &at(120, 0), now, short_tcp).0 < DEAD);
    }

    #[test]
    fn live_flows_are_carried_first_the_most_recent_first() {
        let s = 1_000_000_000u64;
        let now = 10_000 * s;
        let at = |seen: u64, flags: u32| FlowEntry {
            last_seen_ns: now - seen * s,
            flags,
            ..FlowEntry::default()
        };
        let tcp = FlowKey {
            proto: 6,
            ..FlowKey::default()
        };
        let udp = FlowKey {
            proto: IPPROTO_UDP,
            ..FlowKey::default()
        };
        // TCP 15 minutes, UDP 30 s (`udp_idle_timeout_s`'s default).
        let horizons = idle_horizons_of(lb_common::flow_table::idle_horizons_word(
            lb_common::flow_table::horizon_ticks(900 * s),
            lb_common::flow_table::horizon_ticks(30 * s),
        ));
        let mut flows = [
            ("closed, just now", tcp, at(0, FLOW_F_STATE)),
            ("live 60 s", tcp, at(60, 0)),
            ("idle open 1000 s", tcp, at(1_000, 0)),
            ("handshake 2 s", tcp, at(2, FLOW_F_HALF_OPEN)),
            ("live 1 s", tcp, at(1, 0)),
            ("lapsed handshake", tcp, at(20, FLOW_F_HALF_OPEN)),
            ("udp 10 s", udp, at(10, 0)),
            ("udp idle 60 s", udp, at(60, 0)),
        ];
        flows.sort_by_key(|(_, k, e)| carry_order(k, e, now, horizons));
        let order: Vec<&str> = flows.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(
            order,
            [
                "live 1 s",
                "udp 10 s",
                "live 60 s",
                // An open connection idle past the TCP horizon: its next
                // packet still goes by its entry (a pooled database
                // session), so it is carried before handshakes and the
                // closed and expired flows.
                "idle open 1000 s",
                "handshake 2 s",
                "closed, just now",
                "lapsed handshake",
                "udp idle 60 s",
            ]
        );
    }

    /// Whether a program uses the staged maps is answered only from a
    /// whole listing: a program gone between its listing and its reading
    /// (ENOENT) is skipped, any other error (EPERM: no CAP_SYS_ADMIN) is
    /// no answer, where it once read as "no program uses them" and the
    /// staged maps a running program used were discarded.
    #[test]
    fn a_listing_cut_short_does_not_say_no_program_uses_the_maps() {
        let failed = |errno| {
            Err(ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_prog_get_next_id",
                io_error: std::io::Error::from_raw_os_error(errno),
            }))
        };
        let ids: HashSet<u32> = [7, 9].into();
        let uses = |programs: Vec<std::result::Result<Option<Vec<u32>>, ProgramError>>| {
            uses_any(programs, &ids)
        };
        assert!(uses(vec![Ok(Some(vec![1])), Ok(Some(vec![2, 9]))]).expect("listed"));
        assert!(!uses(vec![Ok(Some(vec![1])), Ok(None)]).expect("listed"));
        assert!(uses(vec![failed(libc::ENOENT), Ok(Some(vec![7]))]).expect("one gone"));
        assert!(!uses(vec![failed(libc::ENOENT)]).expect("one gone"));
        let error = uses(vec![Ok(Some(vec![1])), failed(libc::EPERM)]).expect_err("cut short");
        let message = unlisted(STAGED_IN_USE, &error).to_string();
        assert!(message.contains("CAP_SYS_ADMIN"), "{message}");
        assert!(message.contains("Operation not permitted"), "{message}");
    }

    /// A previous lbd's `TUNNEL_CONFIG` whose id is gone between the
    /// listing and the opening (its program stopped) is skipped: the
    /// others are still written, and the start goes on.
    #[test]
    fn a_previous_tunnel_config_that_cannot_be_opened_is_skipped() {
        let opened = open_each([3, 5, 7], |id| if id == 5 { Err("ENOENT") } else { Ok(id) });
        assert_eq!(opened, [3, 7]);
        // No map has this id (the kernel's ids stop at i32::MAX): the
        // real opening fails (ENOENT, or EPERM unprivileged) and is
        // skipped.
        assert!(open_tunnel_config(u32::MAX).is_err());
        assert!(open_each([u32::MAX], open_tunnel_config).is_empty());
    }
}
