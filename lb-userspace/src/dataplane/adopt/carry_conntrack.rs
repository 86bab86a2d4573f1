//! Carrying the flows of a previous lbd's connection table (a kernel map,
//! or a bucket table of another size) into this lbd's: in which order,
//! and which entry stays where both tables hold a flow.

use lb_common::{
    consts::{FLOW_F_HALF_OPEN, FLOW_F_STATE, IPPROTO_UDP},
    flow_table::{idle_horizons_of, DEFAULT_IDLE_HORIZONS, HALF_OPEN_IDLE_TICKS, TICK_SHIFT},
    FlowEntry, FlowKey,
};
use tracing::{info, warn};

use super::super::{flows::FlowStore, Dataplane};
use super::CarryPhase;

impl Dataplane {
    /// The connection table's idle horizons as this lbd's program reads
    /// them (`IDLE_HORIZONS`, not pinned: what this lbd wrote, at its load
    /// with `load_with_horizons`, or the defaults if it wrote none yet or
    /// the map cannot be read), unpacked: TCP's high word, UDP's low,
    /// ticks.
    fn idle_horizons(&self) -> u64 {
        idle_horizons_of(self.idle_horizons.get(&0, 0).unwrap_or(0))
    }

    /// Copies the flows of a previous lbd's kernel-map table, or of a
    /// bucket table of another size, into the bucket table (see
    /// `conntrack::legacy`; opened only with the state maps adopted: the
    /// entries' backend ids would mean nothing otherwise); after the swap
    /// (`phase` "swapped") the caller closes the old table and removes its
    /// pin (`LegacyTable::finish`). What it did (None: nothing to carry).
    pub(in crate::dataplane) fn carry_legacy_flows(
        &mut self,
        phase: CarryPhase,
    ) -> Option<CarriedFlows> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A second, in ns.
    const S: u64 = 1_000_000_000;
    /// The time the carry is judged at.
    const NOW: u64 = 10_000 * S;

    /// An entry last seen `seen` seconds before [`NOW`], with `flags`.
    fn at(seen: u64, flags: u32) -> FlowEntry {
        FlowEntry {
            last_seen_ns: NOW - seen * S,
            flags,
            ..FlowEntry::default()
        }
    }

    /// A key of protocol `proto` (what the horizons tell apart).
    fn key(proto: u8) -> FlowKey {
        FlowKey {
            proto,
            ..FlowKey::default()
        }
    }

    /// The horizons of a config with these TCP and UDP idle timeouts.
    fn horizons(tcp_s: u64, udp_s: u64) -> u64 {
        idle_horizons_of(lb_common::flow_table::idle_horizons_word(
            lb_common::flow_table::horizon_ticks(tcp_s * S),
            lb_common::flow_table::horizon_ticks(udp_s * S),
        ))
    }

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
        let (tcp, udp) = (key(6), key(IPPROTO_UDP));
        let configured = horizons(900, 30);
        assert!(over_but_taken_for_live(&udp, &at(60, 0), NOW, configured));
        for (key, entry) in [
            (udp, at(10, 0)),
            (udp, at(1_000, 0)),
            (tcp, at(120, 0)),
            (tcp, at(60, FLOW_F_STATE)),
        ] {
            assert!(
                !over_but_taken_for_live(&key, &entry, NOW, configured),
                "{key:?} {entry:?}"
            );
        }
        assert!(!over_but_taken_for_live(
            &udp,
            &at(60, 0),
            NOW,
            DEFAULT_IDLE_HORIZONS
        ));
        // An open TCP connection idle past a shorter TCP horizon is no
        // expired flow: carried with the idle-open ones.
        let short_tcp = horizons(60, 30);
        assert!(!over_but_taken_for_live(&tcp, &at(120, 0), NOW, short_tcp));
        assert!(carry_order(&tcp, &at(120, 0), NOW, short_tcp).0 < DEAD);
    }

    #[test]
    fn live_flows_are_carried_first_the_most_recent_first() {
        let (tcp, udp) = (key(6), key(IPPROTO_UDP));
        // TCP 15 minutes, UDP 30 s (`udp_idle_timeout_s`'s default).
        let horizons = horizons(900, 30);
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
        flows.sort_by_key(|(_, k, e)| carry_order(k, e, NOW, horizons));
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
}
