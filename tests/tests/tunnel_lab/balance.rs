//! Balance, counters, the client's address, and the path MTU, for `ipip`
//! and `gue`, 4in4, 6in6 and 4in6, lbd at xdp and at tc: new connections
//! balanced with exact counters (lbd's and the backends' lb-decap's) and
//! the client's own address at nginx; a request too big for the path
//! after encapsulation answered with ICMP, then carried in smaller
//! segments.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lb_tests::{
    http::{burst, exchange_with},
    lab::{in_netns, Lab, HTTP_PORT},
    support::{assert_even_shares, grown, ip, nonzero, status_on, vip_status},
    tunnel::{self, TunnelSpec, TunnelVip},
};
use lb_userspace::api::schema::Status;

use crate::{observe::client_address, setup::start_lbd, DECAP_REFUSALS, DROPS, LINK_MTU, REQUESTS};

/// Every backend's new-flow counter of `vip`, by address.
fn new_flows(status: &Status, vip: IpAddr) -> BTreeMap<IpAddr, u64> {
    vip_status(status, vip)
        .backends
        .iter()
        .map(|b| (b.address, b.new_flows))
        .collect()
}

/// 3,000 new connections to `vip` through lbd on the lab's LB: every one
/// answered, about a third per backend, lbd's counters equal to what
/// the backends served, nginx seeing the client itself.
fn balances(lab: &Lab, what: &str, vip: TunnelVip, forwarding: &str) {
    let address = vip.address;
    let client = client_address(lab, address);
    // One connection first: neighbours, caches, whatever a first packet
    // meets.
    let warm = burst(&lab.client.netns, address, 1);
    assert_eq!(
        warm.failed,
        0,
        "{what}: first request: {warm:?}; counters {:?}",
        nonzero(&status_on(lab, &lab.lb))
    );
    let before = status_on(lab, &lab.lb);
    let unwrapped_before = decap_counters(lab);
    let run = burst(&lab.client.netns, address, REQUESTS);
    let after = status_on(lab, &lab.lb);
    let unwrapped_after = decap_counters(lab);
    assert_eq!(
        run.failed,
        0,
        "{what}: failed requests: {:?}; counters {:?}",
        run.errors,
        nonzero(&after)
    );
    assert_eq!(run.succeeded(), u64::from(REQUESTS), "{what}");
    assert_even_shares(what, &run.by_backend, REQUESTS);
    // Direct server return keeps the client's address: nginx's
    // $remote_addr is the client, in the VIP's family.
    assert_eq!(
        run.peers,
        BTreeSet::from([client]),
        "{what}: peers nginx saw"
    );
    let n = u64::from(REQUESTS);
    assert_eq!(
        vip_status(&after, address).new_flows - vip_status(&before, address).new_flows,
        n,
        "{what}: the VIP's new flows"
    );
    let (old, new) = (new_flows(&before, address), new_flows(&after, address));
    for backend in &lab.backends {
        let b = vip.backend_address(backend);
        assert_eq!(
            new.get(&b).copied().unwrap_or(0) - old.get(&b).copied().unwrap_or(0),
            run.by_backend.get(&backend.name).copied().unwrap_or(0),
            "{what}: new flows to {} vs responses from it",
            backend.name
        );
    }
    // Every packet towards a backend was encapsulated: a connection is at
    // least SYN, ACK, request, FIN, ACK; replies bypass the LB.
    let encapsulated = grown(&before, &after, "tunnel_encap");
    let forwarded = grown(&before, &after, "forwarded");
    assert!(
        (4 * n..=12 * n).contains(&encapsulated),
        "{what}: tunnel_encap {encapsulated} for {n} connections"
    );
    assert_eq!(encapsulated, forwarded, "{what}: tunnel_encap vs forwarded");
    for drop in DROPS {
        assert_eq!(grown(&before, &after, drop), 0, "{what}: {drop}");
    }
    // And the backends' lb-decap unwrapped exactly those, each at least
    // five packets per connection it served, refusing none.
    let counter = format!("decap_{forwarding}");
    let mut unwrapped = 0;
    for (backend, (old, new)) in lab
        .backends
        .iter()
        .zip(unwrapped_before.iter().zip(&unwrapped_after))
    {
        // Present: a renamed or unparsed counter must not read as zero.
        let count = |c: &BTreeMap<String, u64>, name: &str| {
            c.get(name).copied().unwrap_or_else(|| {
                panic!(
                    "{what}: {}'s lb-decap has no counter {name}: {c:?}",
                    backend.name
                )
            })
        };
        let grew = count(new, &counter) - count(old, &counter);
        let served = run.by_backend.get(&backend.name).copied().unwrap_or(0);
        assert!(
            grew >= 5 * served,
            "{what}: {} unwrapped {grew} packets ({counter}) for {served} connections",
            backend.name
        );
        for refusal in DECAP_REFUSALS {
            assert_eq!(
                count(new, refusal),
                count(old, refusal),
                "{what}: {}'s lb-decap {refusal}",
                backend.name
            );
        }
        unwrapped += grew;
    }
    assert_eq!(
        unwrapped, encapsulated,
        "{what}: packets the backends unwrapped vs packets lbd wrapped"
    );
    assert_eq!(
        vip_status(&after, address).mode.name(),
        forwarding,
        "{what}"
    );
    eprintln!(
        "tunnel {what}: {REQUESTS} connections, shares {:?}, encapsulated {encapsulated}",
        run.by_backend
    );
}

/// Every backend's lb-decap counters, in the lab's backend order.
fn decap_counters(lab: &Lab) -> Vec<BTreeMap<String, u64>> {
    lab.backends
        .iter()
        .map(|b| tunnel::decap_counters(lab, b).expect("lb-decap status"))
        .collect()
}

/// The client's cached path MTU towards `vip` (None: no exception cached).
fn cached_mtu(lab: &Lab, vip: IpAddr) -> Option<u32> {
    let text = ip(&["-n", &lab.client.netns, "route", "get", &vip.to_string()]);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == "mtu")
        .and_then(|i| words.get(i + 1))
        .and_then(|m| m.parse().ok())
}

/// A request bigger than the path can carry once encapsulated (a 6 KB
/// header: nginx answers only once it has all of it): lbd answers the
/// first full-size segment with ICMP fragmentation-needed / packet too
/// big naming the MTU that leaves room for the encapsulation, the
/// client's path MTU drops to it, and the request then goes through.
fn fits_the_path_mtu(lab: &Lab, what: &str, vip: TunnelVip, forwarding: &str) {
    let address = vip.address;
    for family in ["-4", "-6"] {
        ip(&["-n", &lab.client.netns, family, "route", "flush", "cache"]);
    }
    assert_eq!(
        cached_mtu(lab, address),
        None,
        "{what}: a path MTU is cached before the test"
    );
    let before = status_on(lab, &lab.lb);
    let to = SocketAddr::new(address, HTTP_PORT);
    let pad = "x".repeat(6_000);
    let seen = in_netns(&lab.client.netns, move || -> anyhow::Result<_> {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        exchange_with(
            &mut stream,
            &mut Vec::new(),
            "/",
            &format!("X-Pad: {pad}\r\n"),
        )
    })
    .expect("thread in the client's namespace")
    .unwrap_or_else(|e| {
        panic!(
            "{what}: the big request failed: {e:#}; counters {:?}",
            nonzero(&status_on(lab, &lab.lb))
        )
    });
    let after = status_on(lab, &lab.lb);
    assert_eq!(seen.peer.ip(), client_address(lab, address), "{what}");
    let icmp = grown(&before, &after, "sent_icmp_too_big");
    assert!(
        icmp >= 1,
        "{what}: no ICMP too-big sent; counters {:?}",
        nonzero(&after)
    );
    let family = if vip.v6_backends {
        lb_common::consts::AF_INET6
    } else {
        lb_common::consts::AF_INET
    };
    let want = LINK_MTU - lb_common::tunnel::overhead(forwarding == "gue", family);
    assert_eq!(
        cached_mtu(lab, address),
        Some(want),
        "{what}: the client's path MTU after the ICMP"
    );
    eprintln!("tunnel {what}: big request through after {icmp} ICMP too-big, path MTU {want}");
}

#[test]
fn tunnels_balance_new_connections_keep_the_client_address_and_fit_the_path_mtu() {
    let started = Instant::now();
    let mut lab = tunnel::start_lab(1, 3).expect("tunnel lab");
    let lb = lab.lb.clone();
    for attach in ["xdp", "tc"] {
        lab.for_attach(attach);
        for forwarding in ["ipip", "gue"] {
            let name = format!("lbd-{attach}-{forwarding}");
            let spec = TunnelSpec {
                vips: vec![TunnelVip::V4, TunnelVip::V6, TunnelVip::V4_IN_6],
                ..TunnelSpec::new(attach, forwarding, &["b1", "b2", "b3"])
            };
            start_lbd(&mut lab, &lb, &name, &spec);
            let at_xdp = lab.xdp_attached(&lb).expect("ip link");
            let at_tc = !lab.tc_program_ids(&lb).expect("tcx query").is_empty();
            assert_eq!((at_xdp, at_tc), (attach == "xdp", attach == "tc"));
            for vip in &spec.vips {
                let what = format!("{forwarding} {} at {attach}", vip.label());
                balances(&lab, &what, *vip, forwarding);
                fits_the_path_mtu(&lab, &what, *vip, forwarding);
            }
            lab.interrupt(&name).expect("lbd stops");
        }
    }
    eprintln!("tunnel balance and MTU test took {:?}", started.elapsed());
}
