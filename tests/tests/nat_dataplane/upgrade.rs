//! An upgrade from a release that kept NAT flows in a kernel hash map:
//! the flows are carried into the bucket table and keep their
//! translations.

use std::collections::HashMap;

use lb_common::{consts::names, nat::counterpart_key, stats::Counter, FlowKey, NatEntry};
use lb_tests::{
    natbed::{client_flow, frame, FibNetns, NatBed, IN_DEV, OUT_DEV},
    packet::{Flow, ACK, SYN},
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{counter, frames::ports_of, vips};

/// A fresh pin directory of this test process named `tag`, and its
/// guard: the pins go when the test ends, also when an assertion fails.
fn pin_dir(tag: &str) -> (lb_userspace::pinning::PinDir, lb_tests::lab::TestPins) {
    let dir = lb_tests::lab::TestPins::new("lbtnat", tag).expect("pin directory");
    (dir.pins(), dir)
}

/// Loading with the pins under `pins`.
fn pinned_options(pins: &lb_userspace::pinning::PinDir) -> lb_userspace::dataplane::LoadOptions {
    lb_userspace::dataplane::LoadOptions {
        pins: Some(pins.clone()),
        ..Default::default()
    }
}

/// The tests' map sizes, with a NAT flow table of `nat_flows` entries.
fn sizes(nat_flows: u32) -> lb_userspace::dataplane::MapSizes {
    lb_userspace::dataplane::MapSizes {
        max_vips: 4,
        conntrack: 4096,
        nat_flows,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    }
}

/// A kernel hash map `FlowKey` -> `NatEntry` named `NAT_FLOWS`: the NAT
/// flow table of the releases before the bucket table.
fn nat_flows_hash_map(
    max_entries: u32,
) -> aya::maps::HashMap<aya::maps::MapData, FlowKey, NatEntry> {
    let sizes = (size_of::<FlowKey>() as u32, size_of::<NatEntry>() as u32);
    // BPF_MAP_TYPE_HASH
    let data = lb_tests::lbd_maps::create_map("NAT_FLOWS", 1, sizes, max_entries).expect("the map");
    aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("a hash map")
}

/// A previous release kept its NAT flows in a pinned kernel hash map
/// (`NAT_FLOWS`). An lbd of this release adopts that data plane and
/// carries every flow's two entries into the bucket table (right after
/// the load, and again once its program runs: what the old program
/// changed or added meanwhile), so established NAT'd connections keep
/// their source ports: their next packets go out translated as before.
#[test]
fn an_upgrade_from_a_nat_flows_hash_map_carries_established_translations_over() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let (pins, _cleanup) = pin_dir("upgrade");
            let options = pinned_options(&pins);
            let sizes = sizes(4096);
            // The previous lbd: its VIPs, and NAT'd flows its program
            // opened (IPv4 and IPv6 TCP, IPv4 UDP).
            let flows: Vec<(Flow, Protocol)> = vec![
                (client_flow(VIP4, 80, 40_101), Protocol::Tcp),
                (client_flow(VIP4, 80, 40_102), Protocol::Tcp),
                (client_flow(VIP6, 80, 40_103), Protocol::Tcp),
                (client_flow(VIP4, 53, 40_104), Protocol::Udp),
            ];
            let mut old =
                NatBed::with_options(Hook::Xdp, &vips(), (in_if, out_if), sizes, &options)
                    .expect("the previous data plane");
            for (flow, protocol) in &flows {
                let (verdict, _) = old
                    .run_on(old.in_if, &frame(flow, *protocol, SYN, b""))
                    .expect("test run");
                assert_eq!(verdict, old.verdicts.redirect);
            }
            let entries: HashMap<FlowKey, NatEntry> = old.flows().into_iter().collect();
            assert_eq!(entries.len(), 2 * flows.len());
            drop(old);
            // As that release pinned it: the flows in a hash map, no
            // bucket table, and its NAT sources at 16 VIPs whatever the
            // VIP capacity. The last flow is not there yet: the old
            // program opens it after the new lbd's load.
            std::fs::remove_file(pins.map_path(names::MAP_NAT_BUCKETS)).expect("unpin");
            std::fs::remove_file(pins.map_path(names::MAP_NAT_SOURCES)).expect("unpin");
            let sizes_of_sources = (
                size_of::<u32>() as u32,
                size_of::<lb_common::NatSource>() as u32,
            );
            // BPF_MAP_TYPE_ARRAY
            let old_sources =
                lb_tests::lbd_maps::create_map("NAT_SOURCES", 2, sizes_of_sources, 16)
                    .expect("the map");
            old_sources
                .pin(pins.map_path(names::MAP_NAT_SOURCES))
                .expect("pin NAT_SOURCES");
            let mut old_table = nat_flows_hash_map(4096);
            let (late, late_protocol) = flows[flows.len() - 1];
            let late_key = flow_key(&late, late_protocol);
            let late_reply = counterpart_key(&late_key, &entries[&late_key]);
            for (key, entry) in &entries {
                if *key != late_key && *key != late_reply {
                    old_table.insert(key, entry, 0).expect("old entry");
                }
            }
            aya::maps::IterableMap::map(&old_table)
                .pin(pins.map_path(names::MAP_NAT_FLOWS))
                .expect("pin NAT_FLOWS");

            let mut new = NatBed::adopting(Hook::Xdp, (in_if, out_if), sizes, &options)
                .expect("this release's data plane");
            assert!(new.bed.dataplane.adopted(), "the state maps are adopted");
            assert!(
                pins.map_path(names::MAP_NAT_FLOWS).exists(),
                "the old table's pin stays until the swap (an lbd that dies before it leaves the flows to the next)"
            );
            let carried: HashMap<FlowKey, NatEntry> = new.flows().into_iter().collect();
            assert_eq!(carried.len(), entries.len() - 2, "the flows of the load");
            for (key, entry) in &carried {
                assert_eq!(entry, &entries[key], "carried as it was");
            }
            // The old program opens one more flow before the swap.
            for key in [late_key, late_reply] {
                old_table.insert(key, entries[&key], 0).expect("late entry");
            }
            new.bed.dataplane.finish_adoption();
            let carried: HashMap<FlowKey, NatEntry> = new.flows().into_iter().collect();
            assert_eq!(carried, entries, "every flow, both entries");
            assert!(
                !pins.map_path(names::MAP_NAT_FLOWS).exists(),
                "the old table's pin is gone once the flows are carried after the swap"
            );
            // Each connection's next packet leaves translated as before:
            // the same source port, found (not opened again). (The
            // redirect targets are lbd's to fill, as it does.)
            for ifindex in [in_if, out_if] {
                new.bed
                    .dataplane
                    .nat_mut()
                    .add_tx_port(ifindex)
                    .expect("tx port");
            }
            // (The counters are adopted too: counted from here.)
            let (opened, hits) = (
                counter(&new, Counter::NatNew),
                counter(&new, Counter::NatHit),
            );
            for (flow, protocol) in &flows {
                let key = flow_key(flow, *protocol);
                let forward = entries[&key];
                let (verdict, out) = new
                    .run_on(new.in_if, &frame(flow, *protocol, ACK, b"x"))
                    .expect("test run");
                assert_eq!(verdict, new.verdicts.redirect, "{flow:?}");
                let (sport, dport) = ports_of(&out);
                assert_eq!(
                    (sport, dport),
                    (u16::from_be(forward.sport), u16::from_be(forward.dport)),
                    "{flow:?}"
                );
            }
            assert_eq!(counter(&new, Counter::NatNew), opened);
            assert_eq!(counter(&new, Counter::NatHit), hits + flows.len() as u64);
        })
        .expect("the test body (see its panic above)");
}

/// `[nat] flow_table_size` changed, which takes effect at a restart: the
/// new lbd's table has another size, so the old one's pin is moved aside
/// and its flows are carried into the new table (after the load, and
/// again after the swap), then the old pin goes. Established NAT'd
/// connections keep their translations.
#[test]
fn a_resized_nat_flow_table_carries_established_translations_over() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let (pins, _cleanup) = pin_dir("resize");
            let options = pinned_options(&pins);
            let flows: Vec<(Flow, Protocol)> = vec![
                (client_flow(VIP4, 80, 40_201), Protocol::Tcp),
                (client_flow(VIP6, 80, 40_202), Protocol::Tcp),
                (client_flow(VIP4, 53, 40_203), Protocol::Udp),
            ];
            let mut old =
                NatBed::with_options(Hook::Xdp, &vips(), (in_if, out_if), sizes(4096), &options)
                    .expect("the previous data plane");
            for (flow, protocol) in &flows {
                let (verdict, _) = old
                    .run_on(old.in_if, &frame(flow, *protocol, SYN, b""))
                    .expect("test run");
                assert_eq!(verdict, old.verdicts.redirect);
            }
            let entries: HashMap<FlowKey, NatEntry> = old.flows().into_iter().collect();
            assert_eq!(entries.len(), 2 * flows.len());
            let buckets = |pins: &lb_userspace::pinning::PinDir, name: &str| {
                aya::maps::MapInfo::from_pin(pins.map_path(name))
                    .expect("pinned")
                    .max_entries()
            };
            let old_buckets = buckets(&pins, names::MAP_NAT_BUCKETS);
            drop(old);

            let mut new = NatBed::adopting(Hook::Xdp, (in_if, out_if), sizes(4 * 4096), &options)
                .expect("the data plane with the larger table");
            assert!(new.bed.dataplane.adopted(), "the state maps are adopted");
            assert_eq!(buckets(&pins, names::MAP_NAT_BUCKETS), 4 * old_buckets);
            assert_eq!(
                buckets(&pins, lb_userspace::nat::RESIZED_PIN),
                old_buckets,
                "the old table waits aside until the swap"
            );
            let carried: HashMap<FlowKey, NatEntry> = new.flows().into_iter().collect();
            assert_eq!(carried, entries, "every flow, both entries, as they were");
            new.bed.dataplane.finish_adoption();
            assert!(
                !pins.map_path(lb_userspace::nat::RESIZED_PIN).exists(),
                "the old table's pin is gone after the swap"
            );
            for ifindex in [in_if, out_if] {
                new.bed
                    .dataplane
                    .nat_mut()
                    .add_tx_port(ifindex)
                    .expect("tx port");
            }
            let opened = counter(&new, Counter::NatNew);
            for (flow, protocol) in &flows {
                let forward = entries[&flow_key(flow, *protocol)];
                let (verdict, out) = new
                    .run_on(new.in_if, &frame(flow, *protocol, ACK, b"x"))
                    .expect("test run");
                assert_eq!(verdict, new.verdicts.redirect, "{flow:?}");
                assert_eq!(
                    ports_of(&out),
                    (u16::from_be(forward.sport), u16::from_be(forward.dport)),
                    "{flow:?}"
                );
            }
            assert_eq!(
                counter(&new, Counter::NatNew),
                opened,
                "no flow opened again"
            );
        })
        .expect("the test body (see its panic above)");
}

/// `[nat] flow_table_size` changed (A's table of 4096 entries, B's of
/// 16384): B set A's table aside, pinned its own, swapped, and its
/// program opened NAT'd connections on its table only; then B stopped
/// before `finish_adoption` (its set-aside pin stays). C starts with a
/// third size: it carries both tables over, so the connections opened
/// on B's table keep their translations too, and both pins go after
/// its swap. Carrying only the table set aside left B's to the load,
/// which removed it: those connections were dropped.
#[test]
fn a_nat_table_resized_again_before_the_first_resize_finished_keeps_both_tables_flows() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let (pins, _cleanup) = pin_dir("resized-twice");
            let options = pinned_options(&pins);
            let on_a = (client_flow(VIP4, 80, 40_301), Protocol::Tcp);
            let on_b = [
                (client_flow(VIP4, 80, 40_302), Protocol::Tcp),
                (client_flow(VIP4, 53, 40_303), Protocol::Udp),
            ];
            let open = |bed: &mut NatBed, (flow, protocol): &(Flow, Protocol)| {
                let (verdict, _) = bed
                    .run_on(bed.in_if, &frame(flow, *protocol, SYN, b""))
                    .expect("test run");
                assert_eq!(verdict, bed.verdicts.redirect, "{flow:?}");
            };
            let buckets = |name: &str| {
                aya::maps::MapInfo::from_pin(pins.map_path(name))
                    .expect("pinned")
                    .max_entries()
            };
            let (resized, resized_again) = (
                lb_userspace::nat::RESIZED_PIN,
                lb_userspace::nat::RESIZED_AGAIN_PIN,
            );
            {
                let mut a = NatBed::with_options(
                    Hook::Xdp,
                    &vips(),
                    (in_if, out_if),
                    sizes(4096),
                    &options,
                )
                .expect("A's data plane");
                open(&mut a, &on_a);
            }
            let a_buckets = buckets(names::MAP_NAT_BUCKETS);
            let entries: HashMap<FlowKey, NatEntry> = {
                let mut b = NatBed::adopting(Hook::Xdp, (in_if, out_if), sizes(4 * 4096), &options)
                    .expect("B's data plane");
                assert!(b.bed.dataplane.adopted(), "B adopts A's state");
                assert_eq!(buckets(resized), a_buckets, "A's table set aside");
                // A's program is gone: B's forwards, on B's table.
                for ifindex in [in_if, out_if] {
                    b.bed
                        .dataplane
                        .nat_mut()
                        .add_tx_port(ifindex)
                        .expect("tx port");
                }
                for flow in &on_b {
                    open(&mut b, flow);
                }
                b.flows().into_iter().collect()
                // Dropped without `finish_adoption`.
            };
            assert_eq!(
                entries.len(),
                2 * (1 + on_b.len()),
                "B's table holds every flow"
            );
            assert!(pins.map_path(resized).exists(), "B's set-aside pin is left");
            let b_buckets = buckets(names::MAP_NAT_BUCKETS);

            let mut c = NatBed::adopting(Hook::Xdp, (in_if, out_if), sizes(16 * 4096), &options)
                .expect("C's data plane");
            assert!(c.bed.dataplane.adopted(), "C adopts the state");
            assert_eq!(buckets(resized), a_buckets, "A's table still aside");
            assert_eq!(buckets(resized_again), b_buckets, "B's set aside after it");
            c.bed.dataplane.finish_adoption();
            let carried: HashMap<FlowKey, NatEntry> = c.flows().into_iter().collect();
            assert_eq!(
                carried, entries,
                "every flow, both entries, as B's table held them"
            );
            for name in [resized, resized_again] {
                assert!(!pins.map_path(name).exists(), "{name} goes after the swap");
            }
            for ifindex in [in_if, out_if] {
                c.bed
                    .dataplane
                    .nat_mut()
                    .add_tx_port(ifindex)
                    .expect("tx port");
            }
            let opened = counter(&c, Counter::NatNew);
            for (flow, protocol) in std::iter::once(&on_a).chain(&on_b) {
                let forward = entries[&flow_key(flow, *protocol)];
                let (verdict, out) = c
                    .run_on(c.in_if, &frame(flow, *protocol, ACK, b"x"))
                    .expect("test run");
                assert_eq!(verdict, c.verdicts.redirect, "{flow:?}");
                assert_eq!(
                    ports_of(&out),
                    (u16::from_be(forward.sport), u16::from_be(forward.dport)),
                    "{flow:?}"
                );
            }
            assert_eq!(counter(&c, Counter::NatNew), opened, "no flow opened again");
        })
        .expect("the test body (see its panic above)");
}

/// CLOCK_MONOTONIC now, ns: what the data plane's coarse clock stamps.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) },
        0
    );
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// While the new lbd loads, the old program still runs: it opens a
/// connection (A) after the load's copy, and the new program, attached
/// before the final copy, opens another client's connection (B) on A's
/// NAT port towards A's backend (it could not see A). The final copy
/// gives A its translation back (the old program forwarded it, and its
/// backend holds it) and removes B. A FIN the new program saw on a
/// carried connection (C) meanwhile survives the final copy, so the
/// reaper frees it on the closed timeout.
#[test]
fn after_the_swap_a_flow_the_old_program_opened_during_the_load_keeps_its_nat_port() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let (pins, _cleanup) = pin_dir("window");
            let options = pinned_options(&pins);
            let sizes = sizes(4096);
            // Client ports whose checksum-neutral NAT port (client port + 80 - 8080)
            // is in the range: the first port a new flow tries.
            let late = client_flow(VIP4, 80, 30_301);
            let carried = client_flow(VIP4, 80, 30_302);
            let mut old =
                NatBed::with_options(Hook::Xdp, &vips(), (in_if, out_if), sizes, &options)
                    .expect("the previous data plane");
            for flow in [&late, &carried] {
                let (verdict, _) = old
                    .run_on(old.in_if, &frame(flow, Protocol::Tcp, SYN, b""))
                    .expect("test run");
                assert_eq!(verdict, old.verdicts.redirect);
            }
            let entries: HashMap<FlowKey, NatEntry> = old.flows().into_iter().collect();
            drop(old);
            std::fs::remove_file(pins.map_path(names::MAP_NAT_BUCKETS)).expect("unpin");
            let late_key = flow_key(&late, Protocol::Tcp);
            let late_reply = counterpart_key(&late_key, &entries[&late_key]);
            let carried_key = flow_key(&carried, Protocol::Tcp);
            let carried_reply = counterpart_key(&carried_key, &entries[&carried_key]);
            let mut old_table = nat_flows_hash_map(4096);
            for key in [carried_key, carried_reply] {
                old_table.insert(key, entries[&key], 0).expect("old entry");
            }
            aya::maps::IterableMap::map(&old_table)
                .pin(pins.map_path(names::MAP_NAT_FLOWS))
                .expect("pin NAT_FLOWS");

            let mut new = NatBed::adopting(Hook::Xdp, (in_if, out_if), sizes, &options)
                .expect("this release's data plane");
            assert_eq!(new.flows().len(), 2, "C carried at the load");
            // The old program opens A after the load's copy (stamped now).
            let stamped = monotonic_ns();
            let mut late_entries = HashMap::new();
            for key in [late_key, late_reply] {
                let entry = NatEntry {
                    last_seen_ns: stamped,
                    ..entries[&key]
                };
                old_table.insert(key, entry, 0).expect("late entry");
                late_entries.insert(key, entry);
            }
            for ifindex in [in_if, out_if] {
                new.bed
                    .dataplane
                    .nat_mut()
                    .add_tx_port(ifindex)
                    .expect("tx port");
            }
            // The new program runs: C's FIN, and a SYN from another client
            // with A's port that takes A's NAT port towards A's backend
            // (the same checksum-neutral port; a few clients are tried
            // until Maglev gives one A's backend).
            let fin = lb_tests::packet::Tcp {
                fin: true,
                ack: true,
                ..Default::default()
            };
            let (verdict, _) = new
                .run_on(new.in_if, &frame(&carried, Protocol::Tcp, fin, b""))
                .expect("test run");
            assert_eq!(verdict, new.verdicts.redirect);
            let mut rival = None;
            for host in 20..120u8 {
                let other = lb_tests::packet::Flow {
                    src: lb_tests::natbed::addr(&format!("198.18.0.{host}")),
                    ..late
                };
                let (verdict, _) = new
                    .run_on(new.in_if, &frame(&other, Protocol::Tcp, SYN, b""))
                    .expect("test run");
                assert_eq!(verdict, new.verdicts.redirect, "{other:?}");
                let key = flow_key(&other, Protocol::Tcp);
                let entry = new.bed.dataplane.nat().flow(&key).expect("B opened");
                let reply = counterpart_key(&key, &entry);
                if reply == late_reply {
                    rival = Some(key);
                    break;
                }
                let nat = new.bed.dataplane.nat_mut();
                nat.remove_flow(&key).expect("remove");
                nat.remove_flow(&reply).expect("remove");
            }
            let rival = rival.expect("a client whose SYN takes A's NAT port");

            new.bed.dataplane.finish_adoption();
            let after: HashMap<FlowKey, NatEntry> = new.flows().into_iter().collect();
            for (key, entry) in &late_entries {
                assert_eq!(after.get(key), Some(entry), "A's translation is back");
            }
            assert!(!after.contains_key(&rival), "B is removed, both entries");
            assert_eq!(after.len(), 4, "A and C, both entries each");
            assert_ne!(
                after[&carried_key].flags & lb_common::consts::NAT_F_FIN,
                0,
                "C's FIN is kept"
            );
            // A's next packet leaves with its port, found (not opened).
            let opened = counter(&new, Counter::NatNew);
            let (verdict, out) = new
                .run_on(new.in_if, &frame(&late, Protocol::Tcp, ACK, b"x"))
                .expect("test run");
            assert_eq!(verdict, new.verdicts.redirect);
            let forward = late_entries[&late_key];
            assert_eq!(
                ports_of(&out),
                (u16::from_be(forward.sport), u16::from_be(forward.dport))
            );
            assert_eq!(counter(&new, Counter::NatNew), opened);
        })
        .expect("the test body (see its panic above)");
}
