//! NAT VIPs past the sixteenth: the NAT sources are sized with the VIPs.

use lb_common::stats::Counter;
use lb_tests::{
    natbed::{client_flow, nat_vip, FibNetns, NatBed, BACKENDS4, IN_DEV, NAT4, OUT_DEV},
    packet::{self, SYN},
    testbed::{Hook, VIP4},
};
use lb_userspace::{config::Protocol, dataplane::MapSizes};

use crate::{counter, PORTS};

/// lbd sizes its per-VIP maps for the configured VIPs and spares (at least
/// 16, more when the file has more): a NAT VIP whose id is 16 or above has
/// its source written, and its new flows are translated.
fn a_nat_vip_past_the_sixteenth_translates(hook: Hook) {
    let vips: Vec<_> = (0..20u16)
        .map(|i| {
            let backends = BACKENDS4.map(|a| (a, None));
            nat_vip(VIP4, 1000 + i, Protocol::Tcp, &backends, NAT4, PORTS)
        })
        .collect();
    let sizes = MapSizes {
        max_vips: 36,
        conntrack: 4096,
        nat_flows: 4096,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    };
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut bed = NatBed::with_sizes(hook, &vips, in_if, out_if, sizes)
                .expect("20 NAT VIPs are served");
            let frame = packet::tcp(&client_flow(VIP4, 1019, 40_020), SYN, None, b"");
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect);
            assert_eq!(counter(&bed, Counter::NatNew), 1);
        })
        .expect("the test body (see its panic above)");
}

lb_tests::on_both_hooks!(a_nat_vip_past_the_sixteenth_translates);
