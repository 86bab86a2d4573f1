//! Balance, counters and the client hidden, at xdp and at tc: new flows
//! spread evenly over the backends, counters equal to the responses, and
//! the backends see the NAT address, never the client. Every veth towards
//! the LB completes its checksums, and no packet of a translated flow
//! reaches the LB's own stack.

use std::{collections::BTreeSet, net::IpAddr, time::Instant};

use lb_tests::{
    http::burst,
    lab::{VIP4, VIP6},
    support::{assert_even_shares, deltas, grown, nonzero, vip_status},
};

use crate::{
    observe::{new_flows, stack_resets, status, tx_checksum_off},
    setup::{nat_lab, start_nat_lbd, Spec},
    DROPS, NAT4, NAT6, REQUESTS,
};

fn balances_and_counts(attach: &str) {
    let started = Instant::now();
    let mut lab = nat_lab(1, 3);
    lab.for_attach(attach);
    start_nat_lbd(
        &mut lab,
        &Spec {
            attach,
            ..Spec::default()
        },
    );
    let lb = lab.lb.clone();
    // Every veth that sends towards the LB completes its checksums:
    // routers' legs as well as the client's and the backends'.
    for (netns, ifname) in lab
        .routers
        .iter()
        .flat_map(|r| r.legs.iter().map(|l| (r.netns.clone(), l.ifname.clone())))
        .chain(
            lab.backends
                .iter()
                .chain([&lab.client])
                .map(|h| (h.netns.clone(), "eth0".to_owned())),
        )
    {
        assert!(
            tx_checksum_off(&netns, &ifname),
            "TX checksum offload is on for {ifname} in {netns}"
        );
    }
    let at_xdp = lab.xdp_attached(&lb).expect("ip link");
    let at_tc = !lab.tc_program_ids(&lb).expect("tcx query").is_empty();
    assert_eq!((at_xdp, at_tc), (attach == "xdp", attach == "tc"));
    for (vip, nat, client) in [
        (
            IpAddr::V4(VIP4),
            IpAddr::V4(NAT4),
            IpAddr::V4(lab.client.ipv4),
        ),
        (
            IpAddr::V6(VIP6),
            IpAddr::V6(NAT6),
            IpAddr::V6(lab.client.ipv6),
        ),
    ] {
        // One connection first: neighbours, caches, whatever a first
        // packet meets.
        let warm = burst(&lab.client.netns, vip, 1);
        assert_eq!(
            warm.failed,
            0,
            "{attach} {vip}: first request: {warm:?}; counters {:?}",
            nonzero(&status(&lab))
        );
        let before = status(&lab);
        let resets = stack_resets(&lb);
        let run = burst(&lab.client.netns, vip, REQUESTS);
        let after = status(&lab);
        let what = format!("{attach}, VIP {vip}");
        assert_eq!(
            run.failed,
            0,
            "{what}: failed requests: {:?}; counters grown {:?}; NAT table {:?}; the LB's stack sent {} resets",
            run.errors,
            deltas(&before, &after),
            after.nat,
            stack_resets(&lb) - resets
        );
        assert_eq!(run.succeeded(), u64::from(REQUESTS), "{what}");
        assert_even_shares(&what, &run.by_backend, REQUESTS);
        // The backends saw the NAT address, never the client.
        assert_eq!(
            run.peers,
            BTreeSet::from([nat]),
            "{what}: peers the backends saw (client is {client})"
        );
        // Counters equal to the responses: one NAT flow and one new flow
        // per connection, each backend's new flows what it served.
        let n = u64::from(REQUESTS);
        assert_eq!(grown(&before, &after, "nat_new"), n, "{what}: nat_new");
        assert_eq!(
            vip_status(&after, vip).new_flows - vip_status(&before, vip).new_flows,
            n,
            "{what}: the VIP's new flows"
        );
        let (old, new) = (new_flows(&before, vip), new_flows(&after, vip));
        for backend in &lab.backends {
            let address = match vip {
                IpAddr::V4(_) => IpAddr::V4(backend.ipv4),
                IpAddr::V6(_) => IpAddr::V6(backend.ipv6),
            };
            assert_eq!(
                new.get(&address).copied().unwrap_or(0) - old.get(&address).copied().unwrap_or(0),
                run.by_backend.get(&backend.name).copied().unwrap_or(0),
                "{what}: new flows to {} vs responses from it",
                backend.name
            );
        }
        // Packets: a connection is at least SYN, ACK, request, FIN, ACK
        // towards the backend and SYN-ACK, response, FIN back.
        let forwarded = grown(&before, &after, "forwarded");
        let replies = grown(&before, &after, "forwarded_nat_reply");
        assert!(
            (4 * n..=12 * n).contains(&forwarded),
            "{what}: forwarded {forwarded} for {n} connections"
        );
        assert!(
            (3 * n..=12 * n).contains(&replies),
            "{what}: forwarded_nat_reply {replies} for {n} connections"
        );
        for drop in DROPS {
            assert_eq!(grown(&before, &after, drop), 0, "{what}: {drop}");
        }
        // The status names the mode and the NAT address.
        let shown = vip_status(&after, vip);
        assert_eq!(shown.mode, lb_common::Mode::Nat, "{what}");
        assert_eq!(
            shown.nat.as_ref().map(|n| n.source),
            Some(nat),
            "{what}: {:?}",
            shown.nat
        );
        // No packet of a translated flow reached the LB's stack.
        assert_eq!(
            stack_resets(&lb) - resets,
            0,
            "{what}: the LB's stack sent resets"
        );
        eprintln!(
            "NAT {what}: {REQUESTS} connections, shares {:?}, NAT ports {:?}, forwarded {forwarded}, replies {replies}",
            run.by_backend, run.ports
        );
    }
    eprintln!("NAT {attach}: balance test took {:?}", started.elapsed());
}

#[test]
fn nat_at_xdp_balances_new_connections_counts_them_and_hides_the_client() {
    balances_and_counts("xdp");
}

#[test]
fn nat_at_tc_balances_new_connections_counts_them_and_hides_the_client() {
    balances_and_counts("tc");
}
