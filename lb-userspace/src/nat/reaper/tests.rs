use std::{collections::BTreeMap, net::IpAddr};

use lb_common::{
    consts::{
        IPPROTO_TCP, IPPROTO_UDP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_FIN, NAT_F_REPLIED,
        NAT_F_RST, NAT_F_SYN,
    },
    nat::{counterpart_key, NatFlowState},
    FlowKey, NatEntry,
};

use super::*;
use crate::{config::NatTimeouts, reconcile::addr_words};

const S: u64 = 1_000_000_000;
const VIP_ID: u16 = 3;
const BACKEND_ID: u32 = 7;
/// The same backend host serving the UDP VIP on the same address and port
/// (a backend id names one backend of one VIP).
const UDP_BACKEND_ID: u32 = 17;
const BACKEND: &str = "198.19.2.11";

fn words(a: &str) -> [u32; 4] {
    addr_words(a.parse::<IpAddr>().unwrap()).0
}

type Table = BTreeMap<FlowKeyOrd, NatEntry>;

/// Puts client `n`'s flow to the VIP (both entries) into `table`; returns
/// the forward and reply keys.
#[allow(clippy::too_many_arguments)]
fn flow(
    table: &mut Table,
    n: u16,
    proto: u8,
    flags: (u8, u8),
    seen: (u64, u64),
    backend_id: u32,
) -> (FlowKey, FlowKey) {
    let forward_key = FlowKey {
        src: words("198.18.1.1"),
        dst: words("198.18.0.100"),
        sport: (10_000 + n).to_be(),
        dport: 80u16.to_be(),
        proto,
        family: 4,
        _pad: 0,
    };
    let forward = NatEntry {
        src: words("198.18.0.50"),
        dst: words(BACKEND),
        sport: (2_000 + n).to_be(),
        dport: 8080u16.to_be(),
        backend_id,
        last_seen_ns: seen.0,
        flags: flags.0,
        direction: NAT_DIR_FORWARD,
        vip_id: VIP_ID,
        ..NatEntry::default()
    };
    let reply_key = counterpart_key(&forward_key, &forward);
    let reply = NatEntry {
        src: forward_key.dst,
        dst: forward_key.src,
        sport: forward_key.dport,
        dport: forward_key.sport,
        backend_id,
        last_seen_ns: seen.1,
        flags: flags.1,
        direction: NAT_DIR_REPLY,
        vip_id: VIP_ID,
        ..NatEntry::default()
    };
    table.insert(FlowKeyOrd(forward_key), forward);
    table.insert(FlowKeyOrd(reply_key), reply);
    (forward_key, reply_key)
}

/// The VIP of `flow`'s flows as the reaper's owners name it.
fn vip_key(address: &str) -> lb_common::VipKey {
    lb_common::VipKey {
        addr: words(address),
        port: 80u16.to_be(),
        proto: IPPROTO_TCP,
        family: 4,
    }
}

fn owners() -> Owners {
    let mut owners = Owners::default();
    owners.backends.insert(
        BACKEND_ID,
        Owner {
            vip_id: u32::from(VIP_ID),
            vip: vip_key("198.18.0.100"),
            address: words(BACKEND),
        },
    );
    owners.backends.insert(
        UDP_BACKEND_ID,
        Owner {
            vip_id: u32::from(VIP_ID),
            vip: lb_common::VipKey {
                proto: IPPROTO_UDP,
                ..vip_key("198.18.0.100")
            },
            address: words(BACKEND),
        },
    );
    owners
}

/// The backend id of `flow`'s flows of protocol `proto` (`owners`).
fn backend_of(proto: u8) -> u32 {
    if proto == IPPROTO_UDP {
        UDP_BACKEND_ID
    } else {
        BACKEND_ID
    }
}

/// Ticks until a sweep ends; returns the ticks it took.
fn sweep(
    reaper: &mut Reaper<FlowKeyOrd>,
    table: &mut Table,
    now: u64,
    owners: &Owners,
    budget: usize,
) -> u64 {
    for ticks in 1..=10_000 {
        if reaper
            .tick(table, now, &NatTimeouts::default(), owners, budget, || true)
            .sweep_done
        {
            return ticks;
        }
    }
    panic!("the sweep never ended");
}

fn present(table: &Table, key: &FlowKey) -> bool {
    table.contains_key(&FlowKeyOrd(*key))
}

const ESTABLISHED: (u8, u8) = (NAT_F_SYN, NAT_F_SYN | NAT_F_REPLIED);

#[test]
fn each_state_expires_after_its_own_timeout_and_takes_both_entries() {
    let t = NatTimeouts::default();
    let now = 100_000 * S;
    for (flags, proto, timeout) in [
        ((NAT_F_SYN, 0), IPPROTO_TCP, t.tcp_syn),
        (ESTABLISHED, IPPROTO_TCP, t.tcp_established),
        ((NAT_F_FIN, NAT_F_REPLIED), IPPROTO_TCP, t.tcp_closing),
        (
            (NAT_F_FIN, NAT_F_REPLIED | NAT_F_FIN),
            IPPROTO_TCP,
            t.tcp_time_wait,
        ),
        ((0, NAT_F_RST), IPPROTO_TCP, t.tcp_closed),
        ((0, NAT_F_REPLIED), IPPROTO_UDP, t.udp),
    ] {
        let timeout = timeout.as_nanos() as u64;
        let mut table = Table::new();
        let young = now - timeout + S;
        // Past the timeout by more than the touch interval (the data
        // plane stamps a flow at most every second).
        let old = now - timeout - 2 * S;
        let id = backend_of(proto);
        let (kept_f, kept_r) = flow(&mut table, 1, proto, flags, (young, young), id);
        let (gone_f, gone_r) = flow(&mut table, 2, proto, flags, (old, old), id);
        let mut reaper = Reaper::new();
        sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
        assert!(
            present(&table, &kept_f) && present(&table, &kept_r),
            "{flags:?}"
        );
        assert!(
            !present(&table, &gone_f) && !present(&table, &gone_r),
            "{flags:?}"
        );
        assert_eq!(reaper.reaped().expired, 1, "{flags:?}");
        let state = NatFlowState::of(proto, flags.0, flags.1);
        assert_eq!(reaper.last_sweep().unwrap().flows[state.name()], 1);
    }
}

#[test]
fn the_newer_direction_keeps_a_flow_alive() {
    let now = 100_000 * S;
    let mut table = Table::new();
    // Forward quiet for an hour past the SYN timeout, the backend still
    // talking: established, not expired.
    let (f, r) = flow(
        &mut table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (now - 9000 * S, now - S),
        BACKEND_ID,
    );
    let mut reaper = Reaper::new();
    sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
    assert!(present(&table, &f) && present(&table, &r));
    // A clock ahead of ours is no reason to expire (nor to panic).
    let (f2, _) = flow(
        &mut table,
        2,
        IPPROTO_UDP,
        (0, 0),
        (now + 50 * S, 0),
        UDP_BACKEND_ID,
    );
    sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
    assert!(present(&table, &f2));
}

#[test]
fn an_entry_without_its_counterpart_goes_after_the_syn_timeout() {
    let now = 100_000 * S;
    let syn = NatTimeouts::default().tcp_syn.as_nanos() as u64;
    let mut table = Table::new();
    let (f1, r1) = flow(
        &mut table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (now - syn - 2 * S, now - syn - 2 * S),
        BACKEND_ID,
    );
    let (f2, r2) = flow(
        &mut table,
        2,
        IPPROTO_TCP,
        ESTABLISHED,
        (now - syn + S, now - syn + S),
        BACKEND_ID,
    );
    let (f3, r3) = flow(
        &mut table,
        3,
        IPPROTO_TCP,
        ESTABLISHED,
        (now - syn - 2 * S, now - syn - 2 * S),
        BACKEND_ID,
    );
    table.remove(&FlowKeyOrd(f1)); // reply 1 alone, old
    table.remove(&FlowKeyOrd(r2)); // forward 2 alone, young
    table.remove(&FlowKeyOrd(r3)); // forward 3 alone, old
    let mut reaper = Reaper::new();
    sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
    assert!(!present(&table, &r1));
    // A young lone forward entry gets its reply back (its port reserved
    // again; a_lone_forward_entry_gets_its_reply_back_when_its_port_is_free).
    assert!(present(&table, &f2) && present(&table, &r2));
    assert!(!present(&table, &f3));
    assert_eq!(reaper.reaped().orphans, 2);
    assert_eq!(table.len(), 2);
}

#[test]
fn flows_of_removed_or_replaced_backends_go_at_once() {
    let now = 100_000 * S;
    let mut table = Table::new();
    let (f1, r1) = flow(
        &mut table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (now, now),
        BACKEND_ID,
    );
    let (f2, r2) = flow(
        &mut table,
        2,
        IPPROTO_TCP,
        ESTABLISHED,
        (now, now),
        BACKEND_ID + 1,
    );
    let mut reaper = Reaper::new();
    sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
    assert!(present(&table, &f1) && present(&table, &r1));
    assert!(
        !present(&table, &f2) && !present(&table, &r2),
        "id not a backend"
    );
    assert_eq!(reaper.reaped().backend_gone, 1);

    // The id now names another backend (reused), or the VIP id another VIP.
    let mut reused = owners();
    reused.backends.get_mut(&BACKEND_ID).unwrap().address = words("198.19.2.12");
    sweep(&mut reaper, &mut table, now, &reused, TICK_BUDGET);
    assert!(table.is_empty());
    flow(
        &mut table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (now, now),
        BACKEND_ID,
    );
    let mut other_vip = owners();
    other_vip.backends.get_mut(&BACKEND_ID).unwrap().vip_id = 4;
    sweep(&mut reaper, &mut table, now, &other_vip, TICK_BUDGET);
    assert!(table.is_empty());
}

#[test]
fn a_budget_spreads_a_sweep_over_ticks_and_counts_each_flow_once() {
    let now = 100_000 * S;
    let established = NatTimeouts::default().tcp_established.as_nanos() as u64;
    let mut table = Table::new();
    let mut live = Vec::new();
    for n in 0..300 {
        // Every third flow expired: removals in the middle of the walk.
        let seen = if n % 3 == 0 {
            now - established - 2 * S
        } else {
            now - S
        };
        let keys = flow(
            &mut table,
            n,
            IPPROTO_TCP,
            ESTABLISHED,
            (seen, seen),
            BACKEND_ID,
        );
        if n % 3 != 0 {
            live.push(keys);
        }
    }
    let mut reaper = Reaper::new();
    let ticks = sweep(&mut reaper, &mut table, now, &owners(), 64);
    // 600 entries, 64 a tick: at most 10 ticks (fewer when a removed
    // flow's second entry lay ahead of the walk), never a restart.
    assert!((7..=10).contains(&ticks), "{ticks}");
    assert_eq!(table.len(), 400);
    for (f, r) in &live {
        assert!(present(&table, f) && present(&table, r));
    }
    let stats = reaper.last_sweep().unwrap();
    assert_eq!(stats.flows["established"], 200);
    assert_eq!(stats.ticks, ticks);
    let user = PortUser {
        nat_address: "198.18.0.50".parse().unwrap(),
        backend: BACKEND.parse().unwrap(),
        backend_port: 8080,
        proto: IPPROTO_TCP,
    };
    assert_eq!(stats.ports[&user], 200);
    assert_eq!(stats.by_backend[&BACKEND_ID].live, 200);
    assert_eq!(stats.busiest(user.nat_address), 200);
    assert_eq!(reaper.reaped().expired, 100);
    // The next sweep sees the same live flows.
    assert_eq!(sweep(&mut reaper, &mut table, now, &owners(), 64), 7);
    assert_eq!(reaper.last_sweep().unwrap().flows["established"], 200);
}

#[test]
fn a_tick_stops_when_told_between_batches() {
    let now = 100_000 * S;
    let mut table = Table::new();
    for n in 0..2000 {
        flow(
            &mut table,
            n,
            IPPROTO_UDP,
            (0, NAT_F_REPLIED),
            (now, now),
            UDP_BACKEND_ID,
        );
    }
    let mut reaper = Reaper::new();
    let mut batches = 0;
    let report = reaper.tick(
        &mut table,
        now,
        &NatTimeouts::default(),
        &owners(),
        4000,
        || {
            batches += 1;
            batches < 3
        },
    );
    // The first batch always, then two more asked: three batches.
    assert_eq!(report.visited, 3 * BATCH);
    assert!(!report.sweep_done);
}

/// A table whose every batch read costs `cost` on a clock of the test's
/// own: a tick's duration, without the machine's.
struct ClockedBatches<'a> {
    table: Table,
    clock: &'a std::cell::Cell<std::time::Duration>,
    cost: std::time::Duration,
}

impl NatTable for ClockedBatches<'_> {
    type Cursor = FlowKeyOrd;

    fn batch(
        &self,
        cursor: Option<FlowKeyOrd>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<FlowKeyOrd>> {
        self.clock.set(self.clock.get() + self.cost);
        self.table.batch(cursor, max, out)
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        NatTable::get(&self.table, key)
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        NatTable::remove(&mut self.table, key)
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool> {
        NatTable::insert_if_free(&mut self.table, key, entry)
    }
}

/// As lbd runs a tick (`TICK_BUDGET` entries, going on while the tick's
/// time is under `TICK_TIME`), on a clock where each batch costs a fixed
/// time: the tick reads batches until the clock reaches `TICK_TIME`, so it
/// ends one batch past that time at most, never after the budget, and the
/// ticks that follow go on where it stopped, each entry visited once a
/// sweep. (The lab measures real ticks on a million entries:
/// tests/tests/nat_runtime.rs.)
#[test]
fn a_tick_runs_one_batch_past_its_time_at_most_and_the_next_goes_on() {
    use std::{cell::Cell, time::Duration};
    let now = 100_000 * S;
    let mut table = Table::new();
    // 40 batches of entries, every flow live: nothing is removed.
    let flows = u16::try_from(20 * BATCH).unwrap();
    for n in 0..flows {
        flow(
            &mut table,
            n,
            IPPROTO_UDP,
            (0, NAT_F_REPLIED),
            (now, now),
            UDP_BACKEND_ID,
        );
    }
    let entries = table.len();
    assert_eq!(entries, 40 * BATCH);
    let budget_batches = TICK_BUDGET / BATCH;
    for cost_ms in [1, 3, 4, 10, 30, 49, 50, 51, 120] {
        let cost = Duration::from_millis(cost_ms);
        let clock = Cell::new(Duration::ZERO);
        let mut clocked = ClockedBatches {
            table: table.clone(),
            clock: &clock,
            cost,
        };
        let mut reaper = Reaper::new();
        let mut visited = 0;
        let mut ticks = 0;
        loop {
            clock.set(Duration::ZERO);
            let report = reaper.tick(
                &mut clocked,
                now,
                &NatTimeouts::default(),
                &owners(),
                TICK_BUDGET,
                || clock.get() < TICK_TIME,
            );
            ticks += 1;
            let took = clock.get();
            // The batch under way when the time ran out is the last one.
            assert!(
                took < TICK_TIME + cost,
                "{cost:?} a batch: a tick took {took:?}"
            );
            // Batches until the clock reached the time (the first one
            // whatever the clock says), the budget's, or the rest.
            let by_time = usize::try_from(TICK_TIME.as_millis().div_ceil(u128::from(cost_ms)))
                .unwrap()
                .max(1);
            let left = (entries - visited).div_ceil(BATCH);
            let batches = by_time.min(budget_batches).min(left);
            assert_eq!(
                report.visited,
                (batches * BATCH).min(entries - visited),
                "{cost:?} a batch, tick {ticks}"
            );
            assert_eq!(report.removed, 0);
            visited += report.visited;
            if report.sweep_done {
                break;
            }
            assert!(ticks < 1000, "the sweep never ends");
        }
        assert_eq!(visited, entries, "{cost:?} a batch: each entry once");
        assert_eq!(reaper.last_sweep().unwrap().ticks, ticks);
        assert_eq!(reaper.last_sweep().unwrap().flows["udp"], u64::from(flows));
    }
}

#[test]
fn flows_removed_under_the_walk_neither_stop_nor_repeat_the_sweep() {
    let now = 100_000 * S;
    let mut table = Table::new();
    for n in 0..50 {
        flow(
            &mut table,
            n,
            IPPROTO_UDP,
            (0, NAT_F_REPLIED),
            (now, now),
            UDP_BACKEND_ID,
        );
    }
    let mut reaper = Reaper::new();
    reaper.tick(
        &mut table,
        now,
        &NatTimeouts::default(),
        &owners(),
        10,
        || true,
    );
    // Someone else (replication, an operator) removes the flow the next
    // batch starts with (forward keys sort first here: not counted yet).
    let cursor = reaper.cursor.unwrap().0;
    let entry = table[&FlowKeyOrd(cursor)];
    table.remove(&FlowKeyOrd(cursor));
    table.remove(&FlowKeyOrd(counterpart_key(&cursor, &entry)));
    let ticks = sweep(&mut reaper, &mut table, now, &owners(), 10);
    let stats = reaper.last_sweep().unwrap();
    assert_eq!(stats.flows["udp"], 49);
    assert_eq!(stats.ticks, ticks + 1);
}

/// Under pressure closed flows go after a second and unanswered ones
/// (TCP SYN sent, UDP never answered) after `PRESSED_UNREPLIED_TIMEOUT`
/// (a SYN flood's half-open flows get relief too); established flows,
/// closing ones and answered UDP keep their timeouts.
#[test]
fn with_pressed_timeouts_closed_and_unanswered_flows_go_sooner_and_no_other_state() {
    let t = NatTimeouts::default();
    let under = pressure::pressed(&t);
    let now = 100_000 * S;
    let closed = (NAT_F_FIN, NAT_F_REPLIED | NAT_F_FIN);
    let mut table = Table::new();
    // Stamped 3 s ago (quiet for over 2 s, whatever the touch interval
    // hid): kept at the configured 10 s, freed under pressure.
    let (old_f, old_r) = flow(
        &mut table,
        1,
        IPPROTO_TCP,
        closed,
        (now - 3 * S, now - 3 * S),
        BACKEND_ID,
    );
    // Closed half a second ago: kept either way.
    let (fresh_f, _) = flow(
        &mut table,
        2,
        IPPROTO_TCP,
        closed,
        (now - S / 2, now - S / 2),
        BACKEND_ID,
    );
    let idle = |table: &mut Table, n, proto, flags, seconds: u64| {
        flow(
            table,
            n,
            proto,
            flags,
            (now - seconds * S, now - seconds * S),
            backend_of(proto),
        )
        .0
    };
    // Idle for 20 s, unanswered: kept at the configured 30 s and 60 s,
    // freed under pressure; idle for 2 s: kept either way.
    let syn_sent = (NAT_F_SYN, 0);
    let unanswered_udp = (0, 0);
    let unanswered = [
        idle(&mut table, 3, IPPROTO_TCP, syn_sent, 20),
        idle(&mut table, 4, IPPROTO_UDP, unanswered_udp, 20),
    ];
    let mut kept = vec![
        idle(&mut table, 5, IPPROTO_TCP, syn_sent, 2),
        idle(&mut table, 6, IPPROTO_UDP, unanswered_udp, 2),
    ];
    // Idle for 20 s in every other state: each kept (its timeout is longer).
    for (n, flags, proto) in [
        (7, ESTABLISHED, IPPROTO_TCP),
        (8, (NAT_F_FIN, NAT_F_REPLIED), IPPROTO_TCP),
        (9, (0, NAT_F_REPLIED), IPPROTO_UDP),
    ] {
        kept.push(idle(&mut table, n, proto, flags, 20));
    }
    let mut reaper = Reaper::new();
    let mut sweep_with = |table: &mut Table, timeouts: &NatTimeouts| {
        while !reaper
            .tick(table, now, timeouts, &owners(), TICK_BUDGET, || true)
            .sweep_done
        {}
    };
    sweep_with(&mut table, &t);
    assert!(present(&table, &old_f) && present(&table, &old_r));
    for key in &unanswered {
        assert!(present(&table, key), "{key:?}");
    }
    sweep_with(&mut table, &under);
    assert!(!present(&table, &old_f) && !present(&table, &old_r));
    assert!(present(&table, &fresh_f));
    for key in &unanswered {
        assert!(!present(&table, key), "{key:?}");
    }
    for key in &kept {
        assert!(present(&table, key), "{key:?}");
    }
    // Never longer than a state's own timeout: an unanswered UDP flow
    // with a 2 s `udp_timeout_s` goes after it, pressure or not.
    let short = pressure::pressed(&NatTimeouts {
        udp: std::time::Duration::from_secs(2),
        ..t
    });
    let quick = idle(&mut table, 10, IPPROTO_UDP, unanswered_udp, 4);
    sweep_with(&mut table, &short);
    assert!(!present(&table, &quick));
}

/// A table whose batches hand out copies from before the flows' last
/// packets (`stale`: what a batch read a moment ago), while a lookup sees
/// the table as it is now.
struct StaleBatches {
    now: Table,
    stale: Table,
}

impl NatTable for StaleBatches {
    type Cursor = FlowKeyOrd;

    fn batch(
        &self,
        cursor: Option<FlowKeyOrd>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<FlowKeyOrd>> {
        self.stale.batch(cursor, max, out)
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        NatTable::get(&self.now, key)
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        self.stale.remove(&FlowKeyOrd(*key));
        NatTable::remove(&mut self.now, key)
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool> {
        NatTable::insert_if_free(&mut self.now, key, entry)
    }
}

#[test]
fn a_flow_refreshed_since_its_batch_was_read_is_kept() {
    let timeouts = NatTimeouts::default();
    let idle = timeouts.tcp_established.as_nanos() as u64;
    let now = 2 * idle;
    let mut stale = Table::new();
    // As the batch read them: idle past the timeout.
    let (quiet, _) = flow(&mut stale, 1, IPPROTO_TCP, ESTABLISHED, (S, S), BACKEND_ID);
    let (used, used_reply) = flow(&mut stale, 2, IPPROTO_TCP, ESTABLISHED, (S, S), BACKEND_ID);
    let mut fresh = stale.clone();
    // Flow 2's packets came after the batch was read.
    for key in [used, used_reply] {
        if let Some(entry) = fresh.get_mut(&FlowKeyOrd(key)) {
            entry.last_seen_ns = now - S;
        }
    }
    let mut table = StaleBatches { now: fresh, stale };
    let mut reaper = Reaper::default();
    let report = reaper.tick(&mut table, now, &timeouts, &owners(), 1000, || true);
    assert!(report.sweep_done);
    assert!(!present(&table.now, &quiet), "the quiet flow goes");
    assert!(present(&table.now, &used), "the flow in use stays");
    assert!(present(&table.now, &used_reply));
    assert_eq!(report.removed, 2, "the quiet flow's two entries only");
}

#[test]
fn a_sweep_is_stamped_with_the_time_of_its_first_tick() {
    let now = 100_000 * S;
    let mut table = Table::new();
    for n in 0..100 {
        flow(
            &mut table,
            n,
            IPPROTO_TCP,
            ESTABLISHED,
            (now, now),
            BACKEND_ID,
        );
    }
    let mut reaper = Reaper::new();
    let tick = |reaper: &mut Reaper<FlowKeyOrd>, table: &mut Table, at: u64| {
        reaper
            .tick(table, at, &NatTimeouts::default(), &owners(), 64, || true)
            .sweep_done
    };
    assert!(!tick(&mut reaper, &mut table, now));
    assert!(reaper.last_sweep().is_none());
    assert!(!tick(&mut reaper, &mut table, now + S));
    assert!(!tick(&mut reaper, &mut table, now + 2 * S));
    assert!(tick(&mut reaper, &mut table, now + 3 * S));
    assert_eq!(reaper.last_sweep().unwrap().started_ns, now);
    // The next sweep starts with the next tick.
    let ticks = sweep(&mut reaper, &mut table, now + 10 * S, &owners(), 64);
    assert_eq!(ticks, 4);
    assert_eq!(reaper.last_sweep().unwrap().started_ns, now + 10 * S);
}

#[test]
fn a_short_timeout_allows_for_the_touch_interval() {
    // UDP timeout 1 s. The data plane refreshes last_seen at most every
    // FLOW_TOUCH_INTERVAL_NS, so a flow with a packet every few ms reads
    // up to about 1 s old: 1.05 s is a flow in use, not an idle one.
    let timeouts = NatTimeouts {
        udp: std::time::Duration::from_secs(1),
        tcp_syn: std::time::Duration::from_secs(1),
        ..NatTimeouts::default()
    };
    let now = 100_000 * S;
    let at = |seen: u64| {
        let mut table = Table::new();
        let (f, r) = flow(
            &mut table,
            1,
            IPPROTO_UDP,
            (0, NAT_F_REPLIED),
            (seen, seen),
            UDP_BACKEND_ID,
        );
        let forward = table[&FlowKeyOrd(f)];
        let reply = table[&FlowKeyOrd(r)];
        (
            fate(&f, &forward, Some(&reply), now, &timeouts, &owners()),
            fate(&r, &reply, None, now, &timeouts, &owners()),
        )
    };
    assert_eq!(
        at(now - 1_050_000_000),
        (Fate::Keep(Some(NatFlowState::Udp)), Fate::Keep(None)),
        "in use: kept, and a half alone is no orphan yet"
    );
    assert_eq!(
        at(now - 2_050_000_000),
        (Fate::Expired(NatFlowState::Udp), Fate::Orphan),
        "quiet past timeout and touch interval"
    );
}

/// With the defaults, an idle connection kept alive by a default Linux
/// keepalive (a probe 7200 s after its last packet) keeps its
/// translation: its stamp can be a touch interval older than that packet,
/// and the probe arrives a round trip later. (At 7200 s the translation
/// went just before the probe, which was then dropped with its retries.)
#[test]
fn the_default_established_timeout_outlasts_a_default_keepalive() {
    let timeouts = NatTimeouts::default();
    let last_packet = 100_000 * S;
    let stamped = last_packet - S - 10_000_000;
    let probe = last_packet + 7_200 * S + 300_000_000;
    let mut table = Table::new();
    let (f, r) = flow(
        &mut table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (stamped, stamped),
        BACKEND_ID,
    );
    let forward = table[&FlowKeyOrd(f)];
    let reply = table[&FlowKeyOrd(r)];
    assert_eq!(
        fate(&f, &forward, Some(&reply), probe, &timeouts, &owners()),
        Fate::Keep(Some(NatFlowState::of(
            IPPROTO_TCP,
            ESTABLISHED.0,
            ESTABLISHED.1
        )))
    );
}

#[test]
fn a_vips_port_use_counts_only_its_own_backend_ports() {
    // Two VIPs on one NAT address send to the same backend host, one to
    // port 8080, the other to 9443: each port is a range of its own.
    let nat: IpAddr = "198.18.0.50".parse().unwrap();
    let backend: IpAddr = BACKEND.parse().unwrap();
    let other: IpAddr = "198.19.1.12".parse().unwrap();
    let user = |backend, backend_port, proto| PortUser {
        nat_address: nat,
        backend,
        backend_port,
        proto,
    };
    let stats = SweepStats {
        ports: BTreeMap::from([
            (user(backend, 8080, IPPROTO_TCP), 5),
            (user(backend, 9443, IPPROTO_TCP), 55_000),
            (user(other, 8080, IPPROTO_TCP), 7),
            (user(backend, 8080, IPPROTO_UDP), 900),
        ]),
        ..SweepStats::default()
    };
    let web = [(backend, 8080), (other, 8080)];
    assert_eq!(stats.busiest_towards(nat, IPPROTO_TCP, web), 7);
    assert_eq!(
        stats.busiest_towards(nat, IPPROTO_TCP, [(backend, 9443)]),
        55_000
    );
    assert_eq!(stats.busiest_towards(nat, IPPROTO_UDP, web), 900);
    let elsewhere: IpAddr = "198.18.0.51".parse().unwrap();
    assert_eq!(stats.busiest_towards(elsewhere, IPPROTO_TCP, web), 0);
    assert_eq!(stats.busiest(nat), 55_000);
}

/// The second entry of a flow removed earlier in the same batch (the
/// batch holds copies) is skipped, and is no visit: the budget counts the
/// entries judged, so a tick of expired flows is not cut short by entries
/// already gone.
#[test]
fn an_entry_already_removed_in_its_batch_is_no_visit() {
    let now = 100_000 * S;
    let udp = NatTimeouts::default().udp.as_nanos() as u64;
    let mut table = Table::new();
    for n in 0..50 {
        let (f, r) = flow(
            &mut table,
            n,
            IPPROTO_UDP,
            (0, NAT_F_REPLIED),
            (now - udp - 2 * S, now - udp - 2 * S),
            UDP_BACKEND_ID,
        );
        // Forward keys sort first here: each flow goes from its forward
        // entry, and its reply comes up later in the same batch.
        assert!(FlowKeyOrd(f) < FlowKeyOrd(r));
    }
    let mut reaper = Reaper::new();
    let report = reaper.tick(
        &mut table,
        now,
        &NatTimeouts::default(),
        &owners(),
        TICK_BUDGET,
        || true,
    );
    assert_eq!(report.visited, 50, "{report:?}");
    assert_eq!(report.removed, 100);
    assert!(report.sweep_done && table.is_empty());
}

/// A flow table in memory walked as the real one is, bucket by bucket
/// (`table_hash` of the key): a flow's two entries, and new flows, land
/// anywhere in the walk, ahead of the cursor and behind it.
#[derive(Default)]
struct Buckets(BTreeMap<(u32, FlowKeyOrd), NatEntry>);

impl Buckets {
    fn insert(&mut self, key: FlowKey, entry: NatEntry) {
        let bucket = lb_common::hash::table_hash(&key);
        self.0.insert((bucket, FlowKeyOrd(key)), entry);
    }
}

impl NatTable for Buckets {
    type Cursor = (u32, FlowKeyOrd);

    fn batch(
        &self,
        cursor: Option<Self::Cursor>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<Self::Cursor>> {
        use std::ops::Bound;
        let from = cursor.map_or(Bound::Unbounded, Bound::Included);
        let mut range = self.0.range((from, Bound::Unbounded));
        out.extend(range.by_ref().take(max).map(|((_, k), v)| (k.0, *v)));
        Ok(range.next().map(|(k, _)| *k))
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        let bucket = lb_common::hash::table_hash(key);
        self.0.get(&(bucket, FlowKeyOrd(*key))).copied()
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        let bucket = lb_common::hash::table_hash(key);
        self.0.remove(&(bucket, FlowKeyOrd(*key)));
        true
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool> {
        let bucket = lb_common::hash::table_hash(key);
        match self.0.entry((bucket, FlowKeyOrd(*key))) {
            std::collections::btree_map::Entry::Occupied(_) => Ok(false),
            std::collections::btree_map::Entry::Vacant(free) => {
                free.insert(*entry);
                Ok(true)
            }
        }
    }
}

/// Client `n`'s flow, closed by both sides (time-wait) and last seen at
/// `seen_ns`.
fn closed_flow(table: &mut Buckets, n: u32, seen_ns: u64) {
    // Every flow its own keys both ways: client address and port, NAT
    // address and port from the bytes of n.
    let [a, b, c, d] = n.to_be_bytes();
    let forward_key = FlowKey {
        src: addr_words(IpAddr::from([198, 18, a, b])).0,
        dst: words("198.18.0.100"),
        sport: u16::from_be_bytes([c, d]).to_be(),
        dport: 80u16.to_be(),
        proto: IPPROTO_TCP,
        family: 4,
        _pad: 0,
    };
    let forward = NatEntry {
        src: addr_words(IpAddr::from([198, 19, a, b])).0,
        dst: words(BACKEND),
        sport: u16::from_be_bytes([c, d]).to_be(),
        dport: 8080u16.to_be(),
        backend_id: BACKEND_ID,
        last_seen_ns: seen_ns,
        flags: NAT_F_FIN,
        direction: NAT_DIR_FORWARD,
        vip_id: VIP_ID,
        ..NatEntry::default()
    };
    let reply_key = counterpart_key(&forward_key, &forward);
    let reply = NatEntry {
        src: forward_key.dst,
        dst: forward_key.src,
        sport: forward_key.dport,
        dport: forward_key.sport,
        last_seen_ns: seen_ns,
        flags: NAT_F_REPLIED | NAT_F_FIN,
        direction: NAT_DIR_REPLY,
        ..forward
    };
    table.insert(forward_key, forward);
    table.insert(reply_key, reply);
}

/// Steady churn of short connections, on a simulated clock: `rate` new
/// flows a second (closed at once, freed two seconds later: a
/// `tcp_time_wait_timeout_s` of 1 and the data plane's touch interval),
/// arriving every 10 ms, for `seconds`; the reaper ticks as lbd runs it:
/// a budget of `TICK_BUDGET` entries a tick, the next tick when the pace
/// says. Returns the table's largest size over the last minute.
fn churn(rate: u32, seconds: u64) -> usize {
    const STEP: u64 = S / 100;
    let timeouts = NatTimeouts {
        tcp_time_wait: std::time::Duration::from_secs(1),
        ..NatTimeouts::default()
    };
    let owners = owners();
    let mut table = Buckets::default();
    let mut reaper = Reaper::new();
    let mut pace = pace::Pace::default();
    let start = 100_000 * S;
    let mut next_tick = start;
    let mut n = 0u32;
    let mut largest = 0;
    for step in 0..seconds * 100 {
        let now = start + step * STEP;
        for _ in 0..rate / 100 {
            closed_flow(&mut table, n, now);
            n += 1;
        }
        if now >= next_tick {
            let report = reaper.tick(&mut table, now, &timeouts, &owners, TICK_BUDGET, || true);
            let swept = report
                .sweep_done
                .then(|| reaper.last_sweep().map(|s| s.started_ns))
                .flatten();
            let wait = pace.after_tick(&report, swept, false);
            next_tick = now + u64::try_from(wait.as_nanos()).unwrap();
        }
        if step >= (seconds - 60) * 100 {
            largest = largest.max(table.0.len());
        }
    }
    largest
}

/// 12,000 new flows a second need 18,000 visits a second (a flow's
/// reply entry comes up before its forward entry in half the flows):
/// more than a tick of `TICK_BUDGET` a second gives, and the table would
/// fill whatever its size. At the pace's fast speed the reaper keeps up:
/// the table holds the flows of the last two seconds (48,000 entries)
/// and what the walk has not reached yet.
#[test]
fn steady_churn_beyond_a_tick_a_second_is_kept_up_with() {
    let rate = 12_000;
    let largest = churn(rate, 120);
    let bound = 2 * rate as usize * 5;
    assert!(
        largest < bound,
        "the table grew to {largest} entries (bound {bound})"
    );
}

/// What makes a sweep owed: a backend removed, its VIP gone or out of NAT
/// mode (its backends leave the owners), or its id given to another
/// backend; one added is not.
#[test]
fn a_backend_lost_since_the_last_tick_is_seen() {
    let before = owners();
    assert!(!before.lost_since(&before));
    assert!(!before.lost_since(&Owners::default()));
    let mut added = owners();
    added.backends.insert(
        BACKEND_ID + 1,
        Owner {
            vip_id: u32::from(VIP_ID),
            vip: vip_key("198.18.0.100"),
            address: words("198.19.2.12"),
        },
    );
    assert!(!added.lost_since(&before));
    assert!(before.lost_since(&added));
    assert!(Owners::default().lost_since(&before));
    let mut reused = owners();
    reused.backends.get_mut(&BACKEND_ID).unwrap().address = words("198.19.2.13");
    assert!(reused.lost_since(&before));
    let mut moved = owners();
    moved.backends.get_mut(&BACKEND_ID).unwrap().vip_id = 4;
    assert!(moved.lost_since(&before));
    // The VIP replaced by another in one change (same ids, same backend).
    let mut replaced = owners();
    replaced.backends.get_mut(&BACKEND_ID).unwrap().vip = vip_key("198.18.0.200");
    assert!(replaced.lost_since(&before));
}

/// A VIP replaced in one change by another on a new address (or port, or
/// protocol) with the same backends takes the lowest free ids, the old
/// VIP's: its flows are still the old VIP's and go at once, both entries,
/// whichever of them the walk judges; they are not counted as the new
/// VIP's.
#[test]
fn flows_of_a_replaced_vip_that_kept_its_ids_go_at_once() {
    let now = 100_000 * S;
    let mut table = Table::new();
    let (f, r) = flow(
        &mut table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (now, now),
        BACKEND_ID,
    );
    let (forward, reply) = (table[&FlowKeyOrd(f)], table[&FlowKeyOrd(r)]);
    let t = NatTimeouts::default();
    for other in [
        vip_key("198.18.0.200"),
        lb_common::VipKey {
            port: 81u16.to_be(),
            ..vip_key("198.18.0.100")
        },
        lb_common::VipKey {
            proto: IPPROTO_UDP,
            ..vip_key("198.18.0.100")
        },
    ] {
        let mut replaced = owners();
        replaced.backends.get_mut(&BACKEND_ID).unwrap().vip = other;
        // The reply entry names its VIP by its translated source.
        assert_eq!(
            fate(&r, &reply, Some(&forward), now, &t, &replaced),
            Fate::BackendGone,
            "{other:?}"
        );
        assert_eq!(
            fate(&f, &forward, Some(&reply), now, &t, &replaced),
            Fate::BackendGone,
            "{other:?}"
        );
        assert_eq!(
            fate(&r, &reply, Some(&forward), now, &t, &owners()),
            Fate::Keep(None)
        );
    }
    let mut replaced = owners();
    replaced.backends.get_mut(&BACKEND_ID).unwrap().vip = vip_key("198.18.0.200");
    let mut reaper = Reaper::new();
    sweep(&mut reaper, &mut table, now, &replaced, TICK_BUDGET);
    assert!(table.is_empty(), "{table:?}");
    assert_eq!(reaper.reaped().backend_gone, 1);
    let stats = reaper.last_sweep().unwrap();
    assert!(stats.by_backend.is_empty(), "{:?}", stats.by_backend);
}

/// Client `client`'s forward entry through the NAT port of `flow`'s flow
/// `n` (same backend, NAT address and port), and its reply; returns their
/// keys. Put beside flow `n` whose reply is missing, its reply key is
/// that flow's counterpart key: the port was given out again.
fn flow_through_port_of(
    table: &mut Table,
    n: u16,
    client: &str,
    seen: (u64, u64),
) -> (FlowKey, FlowKey) {
    let mut scratch = Table::new();
    let (f, r) = flow(&mut scratch, n, IPPROTO_TCP, ESTABLISHED, seen, BACKEND_ID);
    let forward_key = FlowKey {
        src: words(client),
        ..f
    };
    let forward = scratch[&FlowKeyOrd(f)];
    let reply = NatEntry {
        dst: forward_key.src,
        ..scratch[&FlowKeyOrd(r)]
    };
    assert_eq!(counterpart_key(&forward_key, &forward), r);
    table.insert(FlowKeyOrd(forward_key), forward);
    table.insert(FlowKeyOrd(r), reply);
    (forward_key, r)
}

/// A forward entry whose reply is gone (an lbd killed between a flow's
/// two removals) and whose port went to another client's flow is not
/// paired with that flow's reply: it goes (at once, whatever its age), and
/// the other flow's entries stay, however long the stale one lives.
#[test]
fn a_forward_entry_is_not_paired_with_another_flows_reply() {
    let now = 100_000 * S;
    let syn = NatTimeouts::default().tcp_syn.as_nanos() as u64;
    for a_seen in [now - syn - 2 * S, now] {
        let mut table = Table::new();
        let (a_forward, a_reply) = flow(
            &mut table,
            1,
            IPPROTO_TCP,
            ESTABLISHED,
            (a_seen, a_seen),
            BACKEND_ID,
        );
        table.remove(&FlowKeyOrd(a_reply));
        let (b_forward, b_reply) = flow_through_port_of(&mut table, 1, "198.18.1.2", (now, now));
        assert_eq!(b_reply, a_reply);
        let mut reaper = Reaper::new();
        sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
        assert!(!present(&table, &a_forward), "A seen at {a_seen}");
        assert!(present(&table, &b_forward) && present(&table, &b_reply));
        assert_eq!(table[&FlowKeyOrd(b_reply)].dst, words("198.18.1.2"));
        assert_eq!(reaper.reaped().orphans, 1);
        assert_eq!(reaper.last_sweep().unwrap().flows.values().sum::<u64>(), 1);
    }
}

/// A reply left behind is not paired with a later flow's forward entry
/// on the same client tuple through another port: it goes as an orphan
/// once past the SYN timeout, and the new flow stays whole.
#[test]
fn a_reply_is_not_paired_with_a_forward_entry_that_points_elsewhere() {
    let now = 100_000 * S;
    let syn = NatTimeouts::default().tcp_syn.as_nanos() as u64;
    let mut table = Table::new();
    let old = now - syn - 2 * S;
    let (old_forward, old_reply) = flow(
        &mut table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (old, old),
        BACKEND_ID,
    );
    table.remove(&FlowKeyOrd(old_forward));
    // The client reconnects on the same tuple; its new flow goes through
    // another port.
    let mut other = Table::new();
    let (new_forward, new_reply) = flow(
        &mut other,
        2,
        IPPROTO_TCP,
        ESTABLISHED,
        (now, now),
        BACKEND_ID,
    );
    let forward = other[&FlowKeyOrd(new_forward)];
    table.insert(FlowKeyOrd(old_forward), forward);
    table.insert(
        FlowKeyOrd(new_reply),
        NatEntry {
            dport: old_forward.sport,
            ..other[&FlowKeyOrd(new_reply)]
        },
    );
    let mut reaper = Reaper::new();
    sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
    assert!(!present(&table, &old_reply));
    assert!(present(&table, &old_forward) && present(&table, &new_reply));
    assert_eq!(reaper.reaped().orphans, 1);
}

/// A young forward entry whose reply is missing and whose reply key is
/// free gets its reply back (its port reserved again, so the data plane
/// cannot give it to another flow), and the flow is counted.
#[test]
fn a_lone_forward_entry_gets_its_reply_back_when_its_port_is_free() {
    let now = 100_000 * S;
    let mut table = Table::new();
    let (f, r) = flow(
        &mut table,
        1,
        IPPROTO_UDP,
        (0, NAT_F_REPLIED),
        (now, now),
        UDP_BACKEND_ID,
    );
    let reply = table.remove(&FlowKeyOrd(r)).unwrap();
    let mut reaper = Reaper::new();
    sweep(&mut reaper, &mut table, now, &owners(), TICK_BUDGET);
    assert!(present(&table, &f));
    let back = table[&FlowKeyOrd(r)];
    assert_eq!(counterpart_key(&r, &back), f);
    assert_eq!(back, NatEntry { flags: 0, ..reply });
    assert_eq!(reaper.last_sweep().unwrap().flows["udp"], 1);
    assert_eq!(reaper.reaped(), Reaped::default());
}

/// A table that hands out all its entries in one batch in reverse key
/// order (so a flow's reply comes up before its forward entry) and notes
/// the keys removed, in order.
#[derive(Default)]
struct Recorded {
    table: Table,
    removed: Vec<FlowKey>,
    /// A key whose removal fails (a writer holds its way).
    held: Option<FlowKey>,
}

impl NatTable for Recorded {
    type Cursor = FlowKeyOrd;

    fn batch(
        &self,
        _cursor: Option<FlowKeyOrd>,
        _max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<FlowKeyOrd>> {
        out.extend(self.table.iter().rev().map(|(k, v)| (k.0, *v)));
        Ok(None)
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        NatTable::get(&self.table, key)
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        if self.held == Some(*key) {
            return false;
        }
        self.removed.push(*key);
        NatTable::remove(&mut self.table, key)
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool> {
        NatTable::insert_if_free(&mut self.table, key, entry)
    }
}

/// Whichever entry of a flow is judged first, the forward entry is
/// removed before the reply: an lbd killed in between leaves a reply
/// (which only holds a port), never a forward entry translating with a
/// port no longer reserved.
#[test]
fn the_forward_entry_is_removed_before_the_reply() {
    let now = 100_000 * S;
    let mut recorded = Recorded::default();
    let (f, r) = flow(
        &mut recorded.table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (now, now),
        BACKEND_ID,
    );
    let mut reaper = Reaper::new();
    let gone = Owners::default();
    let report = reaper.tick(
        &mut recorded,
        now,
        &NatTimeouts::default(),
        &gone,
        TICK_BUDGET,
        || true,
    );
    assert_eq!(report.removed, 2);
    assert_eq!(recorded.removed, vec![f, r]);
    assert_eq!(reaper.reaped().backend_gone, 1);
}

/// A forward entry whose removal fails (a writer holds its way) keeps its
/// reply: removed alone, the reply would free the port the forward entry
/// still translates with. Both go at a later sweep.
#[test]
fn a_reply_stays_while_its_forward_entry_could_not_be_removed() {
    let now = 100_000 * S;
    let mut recorded = Recorded::default();
    let (f, r) = flow(
        &mut recorded.table,
        1,
        IPPROTO_TCP,
        ESTABLISHED,
        (now, now),
        BACKEND_ID,
    );
    recorded.held = Some(f);
    let mut reaper = Reaper::new();
    let gone = Owners::default();
    let report = reaper.tick(
        &mut recorded,
        now,
        &NatTimeouts::default(),
        &gone,
        TICK_BUDGET,
        || true,
    );
    assert_eq!(report.removed, 0);
    assert!(recorded.removed.is_empty(), "{:?}", recorded.removed);
    assert!(
        NatTable::get(&recorded.table, &r).is_some(),
        "the reply stays"
    );
    recorded.held = None;
    let report = reaper.tick(
        &mut recorded,
        now,
        &NatTimeouts::default(),
        &gone,
        TICK_BUDGET,
        || true,
    );
    assert_eq!(report.removed, 2);
    assert_eq!(recorded.removed, vec![f, r]);
}
