//! A NAT flow entry left held by an lbd killed inside its install (a
//! replicated flow: claimed, written, marked pending, never published).
//! Inserts into the NAT table are exclusive, so the held copy refuses
//! every later insert of its key; the next lbd's start empties it.

use lb_common::{
    consts::names,
    flow_table::{buckets_for, fingerprint, FLOW_WAYS, TAG_PENDING, TAG_VALID},
    nat::{counterpart_key, NatBucket},
    FlowKey,
};
use lb_tests::{
    natbed::{client_flow, frame, FibNetns, NatBed, IN_DEV, OUT_DEV},
    packet::SYN,
    testbed::{flow_key, Hook, VIP4},
};
use lb_userspace::{config::Protocol, nat::table::NatFlowTable};

use crate::vips;

const NAT_FLOWS: u32 = 4096;

/// Marks `key`'s valid way pending, as an install that died after its
/// pending CAS leaves it.
fn leave_pending(pins: &lb_userspace::pinning::PinDir, key: &FlowKey) {
    let path = pins.map_path(names::MAP_NAT_BUCKETS);
    let buckets = buckets_for(NAT_FLOWS);
    let view = NatFlowTable::new(aya::maps::MapData::from_pin(&path).expect("pin"), buckets)
        .expect("the table");
    let len = buckets as usize * std::mem::size_of::<NatBucket>();
    let mapping = lb_userspace::shared_mapping::SharedMapping::new(
        aya::maps::MapData::from_pin(&path).expect("pin"),
        len,
    )
    .expect("mmap");
    let table = mapping.base::<NatBucket>().as_ptr();
    let fp = u64::from(fingerprint(lb_common::hash::table_hash(key)));
    let (first, second) = view.buckets_of(key);
    for b in [first, second] {
        let bucket = unsafe { table.add(b as usize) };
        for w in 0..FLOW_WAYS {
            let tag = unsafe { std::ptr::addr_of_mut!((*bucket).tags[w]) };
            let seen = unsafe { tag.read_volatile() };
            let held = unsafe { (*bucket).slots[w].key };
            if seen & 3 == u64::from(TAG_VALID) && (seen >> 16) & 0xffff == fp && held == *key {
                unsafe { tag.write_volatile((seen & !3) | u64::from(TAG_PENDING)) };
                return;
            }
        }
    }
    panic!("{key:?} not in the NAT table");
}

#[test]
fn an_entry_left_held_by_a_killed_lbd_is_reclaimed_at_the_next_start() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let dir = lb_tests::lab::TestPins::new("lbtnat", "reclaim").expect("pin directory");
            let pins = dir.pins();
            let options = lb_userspace::dataplane::LoadOptions {
                pins: Some(pins.clone()),
                ..Default::default()
            };
            let sizes = lb_userspace::dataplane::MapSizes {
                max_vips: 4,
                conntrack: 4096,
                nat_flows: NAT_FLOWS,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
            };
            let mut old =
                NatBed::with_options(Hook::Xdp, &vips(), (in_if, out_if), sizes, &options)
                    .expect("the previous data plane");
            let flow = client_flow(VIP4, 80, 40_301);
            let (verdict, _) = old
                .run_on(old.in_if, &frame(&flow, Protocol::Tcp, SYN, b""))
                .expect("test run");
            assert_eq!(verdict, old.verdicts.redirect);
            let key = flow_key(&flow, Protocol::Tcp);
            let forward = old
                .bed
                .dataplane
                .nat()
                .flow(&key)
                .expect("the forward entry");
            let reply_key = counterpart_key(&key, &forward);
            let reply = old
                .bed
                .dataplane
                .nat()
                .flow(&reply_key)
                .expect("the reply entry");

            leave_pending(&pins, &reply_key);
            assert_eq!(
                old.bed.dataplane.nat().flow(&reply_key),
                None,
                "hidden while held"
            );
            assert!(
                old.bed
                    .dataplane
                    .nat_mut()
                    .install_flow(&reply_key, &reply)
                    .is_err(),
                "the held copy refuses the key's install"
            );
            drop(old);

            let mut new = NatBed::adopting(Hook::Xdp, (in_if, out_if), sizes, &options)
                .expect("the next data plane");
            assert!(new.bed.dataplane.adopted());
            assert_eq!(new.bed.dataplane.nat().flow(&reply_key), None);
            new.bed
                .dataplane
                .nat_mut()
                .install_flow(&reply_key, &reply)
                .expect("installed once the held way is emptied");
            assert_eq!(new.bed.dataplane.nat().flow(&reply_key), Some(reply));
            assert_eq!(new.bed.dataplane.nat().flow(&key), Some(forward), "kept");
        })
        .expect("the test body (see its panic above)");
}
