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
            let options = lb_userspace::dataplane::LoadOptions {
                pins: Some(pins.clone()),
                ..Default::default()
            };
            let sizes = lb_userspace::dataplane::MapSizes {
                max_vips: 4,
                conntrack: 4096,
                nat_flows: 4096,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
            };
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
            // bucket table. The last flow is not there yet: the old
            // program opens it after the new lbd's load.
            std::fs::remove_file(pins.map_path(names::MAP_NAT_BUCKETS)).expect("unpin");
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
            let options = lb_userspace::dataplane::LoadOptions {
                pins: Some(pins.clone()),
                ..Default::default()
            };
            let sizes = |nat_flows| lb_userspace::dataplane::MapSizes {
                max_vips: 4,
                conntrack: 4096,
                nat_flows,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
            };
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
