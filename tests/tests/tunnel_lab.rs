//! Tunnelled direct server return end to end (issue 13) in the routed
//! lab: the client behind router r1, lbd on the LB network, backends
//! behind router r2 holding the VIPs on `lo` and running `lb-decap` at
//! XDP (the kernel has no ipip/fou modules: nothing else unwraps). For
//! `ipip` and `gue`, 4in4, 6in6 and 4in6, lbd at xdp and at tc: new
//! connections balanced with exact counters and the client's own address
//! at nginx; long-lived streams across a backend added and a VRRP
//! failover; a request too big for the path after encapsulation answered
//! with ICMP, then carried in smaller segments; kept-alive connections
//! across lbd's restarts (kill -9, SIGTERM); and checks sent through
//! the tunnel taking out a backend whose decap stopped. Labs are shared
//! within a test and the variants loop inside it, to keep the suite's
//! time small. Needs root.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{burst, exchange_with, open_stream, Conn, Stream, Talker, SLOW_BYTES},
    lab::{http_get, in_netns, Host, Lab, HTTP_PORT, VIP4, VIP6},
    support::{assert_even_shares, counter, ip, restart_both_ways, status_on, wait_until},
    tunnel::{self, TunnelSpec, TunnelVip},
};
use lb_userspace::api::schema::{HealthStatus, Status, VipStatus};

/// New connections per VIP in the balance test.
const REQUESTS: u32 = 3_000;
/// Longest a stream may sit still across a VRRP failover.
const STALL_LIMIT: Duration = Duration::from_secs(4);
/// The link MTU everywhere in the lab (veth's default).
const LINK_MTU: u32 = 1500;
/// Drop verdicts none of the healthy runs may produce.
const DROPS: [&str; 5] = [
    "drop_malformed",
    "drop_no_backend",
    "drop_no_route",
    "drop_no_neighbour",
    "drop_ttl_exceeded",
];

// ---------------------------------------------------------------------------
// Shared helpers.

/// The status of `vip` (port 80/tcp).
fn vip_status(status: &Status, vip: IpAddr) -> &VipStatus {
    let prefix = match vip {
        IpAddr::V4(a) => format!("{a}:{HTTP_PORT}/"),
        IpAddr::V6(a) => format!("[{a}]:{HTTP_PORT}/"),
    };
    status
        .vips
        .iter()
        .find(|v| v.vip.starts_with(&prefix))
        .unwrap_or_else(|| panic!("VIP {vip} not in status: {:?}", status.vips))
}

/// `vip`'s id as lbctl takes it.
fn vip_id(vip: IpAddr) -> String {
    format!("{}/tcp", SocketAddr::new(vip, HTTP_PORT))
}

/// Counter `name` grown from `before` to `after`.
fn grown(before: &Status, after: &Status, name: &str) -> u64 {
    counter(after, name).saturating_sub(counter(before, name))
}

/// The counters that are not zero (for failure messages).
fn nonzero(status: &Status) -> BTreeMap<&str, u64> {
    status
        .counters
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

/// The client's address in `vip`'s family: what nginx must see.
fn client_address(lab: &Lab, vip: IpAddr) -> IpAddr {
    match vip {
        IpAddr::V4(_) => IpAddr::V4(lab.client.ipv4),
        IpAddr::V6(_) => IpAddr::V6(lab.client.ipv6),
    }
}

/// Every backend's new-flow counter of `vip`, by address.
fn new_flows(status: &Status, vip: IpAddr) -> BTreeMap<IpAddr, u64> {
    vip_status(status, vip)
        .backends
        .iter()
        .map(|b| (b.address, b.new_flows))
        .collect()
}

/// Runs lbctl on lbd of `node`; panics unless it succeeds.
fn lbctl_on(lab: &Lab, node: &Host, args: &[&str]) -> String {
    let out = lab.lbctl_on(node, args).expect("run lbctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lbctl {args:?} on {} failed ({}):\n{stdout}{}",
        node.name,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Starts lbd on `node` as process `name` with `spec`.
fn start_lbd(lab: &mut Lab, node: &Host, name: &str, spec: &TunnelSpec) {
    let config = tunnel::lbd_config(lab, node, spec).expect("lbd config");
    lab.start_lbd_on(node, name, &config)
        .unwrap_or_else(|e| panic!("{name} on {}: {e:#}", node.name));
}

// ---------------------------------------------------------------------------
// 1. Balance, counters, the client's address, and the path MTU.

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
        let count = |c: &BTreeMap<String, u64>, name: &str| c.get(name).copied().unwrap_or(0);
        let grew = count(new, &counter) - count(old, &counter);
        let served = run.by_backend.get(&backend.name).copied().unwrap_or(0);
        assert!(
            grew >= 5 * served,
            "{what}: {} unwrapped {grew} packets ({counter}) for {served} connections",
            backend.name
        );
        for refusal in ["drop_not_vip", "drop_malformed", "drop_unsupported"] {
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
        if attach == "tc" {
            // A tc redirect hands the switch port an ordinary skb.
            lab.without_pass_through_xdp();
        }
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

// ---------------------------------------------------------------------------
// 2. Long-lived streams across a backend added and a VRRP failover.

/// Which of the tunnel lab's VIPs `node` holds on its interface.
fn holds(lab: &Lab, node: &Host) -> [bool; 2] {
    let addresses = lab.addresses_of(node).expect("ip addr");
    [IpAddr::V4(VIP4), IpAddr::V6(VIP6)].map(|a| addresses.contains(&format!("{a}/")))
}

fn streams_survive(forwarding: &str, attach: &str) {
    let started = Instant::now();
    let what = format!("{forwarding} at {attach}");
    let mut lab = tunnel::start_lab(2, 4).expect("tunnel lab");
    if attach == "tc" {
        lab.without_pass_through_xdp();
    }
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let b4 = lab.backends[3].clone();
    for (node, peer, name, priority) in [(&a, &b, "lbd-a", 150), (&b, &a, "lbd-b", 100)] {
        let spec = TunnelSpec {
            vrrp: Some((peer.clone(), priority)),
            ..TunnelSpec::new(attach, forwarding, &["b1", "b2", "b3"])
        };
        start_lbd(&mut lab, node, name, &spec);
    }
    wait_until("lb to hold the VIPs", Duration::from_secs(10), || {
        holds(&lab, &a) == [true; 2]
    });
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        status_on(&lab, &b)
            .vrrp
            .iter()
            .all(|v| v.state.to_string() == "backup")
    });
    assert_eq!(holds(&lab, &b), [false; 2], "{what}: the backup holds VIPs");
    wait_until("replication to connect", Duration::from_secs(10), || {
        status_on(&lab, &a).replication.is_some_and(|r| r.connected)
    });

    let netns = lab.client.netns.clone();
    let streams: Vec<(IpAddr, Stream)> = [IpAddr::V4(VIP4), IpAddr::V6(VIP6)]
        .into_iter()
        .flat_map(|vip| (0..6).map(move |_| vip))
        .map(|vip| (vip, open_stream(&netns, vip)))
        .collect();
    for (vip, stream) in &streams {
        assert_eq!(
            stream.peer.ip(),
            client_address(&lab, *vip),
            "{what}: nginx saw another client"
        );
    }
    let backends: BTreeSet<String> = streams.iter().map(|(_, s)| s.backend.clone()).collect();

    // A backend added on both nodes: new connections reach it, the
    // streams keep theirs (the connection table holds them).
    for node in [&a, &b] {
        for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
            let address = match vip {
                IpAddr::V4(_) => IpAddr::V4(b4.ipv4),
                IpAddr::V6(_) => IpAddr::V6(b4.ipv6),
            };
            lbctl_on(
                &lab,
                node,
                &["backend", "add", &vip_id(vip), &address.to_string()],
            );
        }
    }
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let added = burst(&netns, vip, 300);
        assert_eq!(
            added.failed, 0,
            "{what}: after adding b4: {:?}",
            added.errors
        );
        let to_b4 = added.by_backend.get(&b4.name).copied().unwrap_or(0);
        assert!(
            to_b4 >= 30,
            "{what}: b4 took {to_b4} of 300 new connections to {vip}: {:?}",
            added.by_backend
        );
    }

    // The backup tracks every stream's flow before the master dies.
    let ends: Vec<(IpAddr, SocketAddr)> = streams.iter().map(|(v, s)| (*v, s.local)).collect();
    let untracked = |lab: &Lab| -> Vec<String> {
        ends.iter()
            .filter_map(|(vip, local)| {
                let vip = SocketAddr::new(*vip, HTTP_PORT).to_string();
                let out = lab
                    .lbctl_on(&b, &["flow", &vip, &local.to_string()])
                    .expect("lbctl flow");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                (!text.contains(": tracked -> backend")).then_some(text)
            })
            .collect()
    };
    let replicating = Instant::now();
    loop {
        let missing = untracked(&lab);
        if missing.is_empty() {
            break;
        }
        assert!(
            replicating.elapsed() < Duration::from_secs(3),
            "{what}: the backup does not track every stream after 3 s:\n{}",
            missing.join("\n")
        );
        thread::sleep(Duration::from_millis(50));
    }
    lab.signal("lbd-a", libc::SIGKILL).expect("SIGKILL");
    lab.set_link(&a, false).expect("link down");
    let failover = Instant::now();
    wait_until("lb2 to take the VIPs", Duration::from_secs(5), || {
        holds(&lab, &b) == [true; 2]
    });
    let gap = failover.elapsed();
    let total = streams.len();
    let mut failed = Vec::new();
    let mut stalls = Vec::new();
    for (vip, stream) in streams {
        match stream.handle.join().expect("stream thread") {
            Ok((n, longest)) if n == SLOW_BYTES => stalls.push(longest.as_millis()),
            other => failed.push((vip, stream.backend, other)),
        }
    }
    assert!(
        failed.is_empty(),
        "{what}: streams broke across the failover ({total} on {backends:?}, gap {gap:?}): {failed:?}\n\
         lb2's counters: {:?}\nlbd-b:\n{}",
        nonzero(&status_on(&lab, &b)),
        lab.log("lbd-b")
    );
    let longest = stalls.iter().copied().max().unwrap_or(0);
    assert!(
        longest <= STALL_LIMIT.as_millis(),
        "{what}: a stream stalled {longest} ms across the failover (limit {STALL_LIMIT:?}): {stalls:?}"
    );
    // New connections go through the new master, to every backend.
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let after = burst(&netns, vip, 200);
        assert_eq!(
            after.failed, 0,
            "{what}: {vip} through lb2: {:?}",
            after.errors
        );
        assert_eq!(after.peers, BTreeSet::from([client_address(&lab, vip)]));
        assert_eq!(after.by_backend.len(), 4, "{what}: {:?}", after.by_backend);
    }
    eprintln!(
        "tunnel {what}: {total} streams on {backends:?} across b4 added and a failover (gap {} ms), longest stalls {stalls:?} ms; took {:?}",
        gap.as_millis(),
        started.elapsed()
    );
}

#[test]
fn tunnel_streams_survive_a_backend_added_and_a_vrrp_failover() {
    // Both modes and both hooks, each pairing once.
    streams_survive("ipip", "xdp");
    streams_survive("gue", "tc");
}

/// Kept-alive connections through both VIPs ask every 100 ms while lbd
/// is killed (kill -9) and started again, then stopped (SIGTERM) and
/// started again: each keeps its backend throughout (the pinned
/// connection table is adopted, the program swapped in on the pinned
/// link, the next hops looked up again), and new connections go through
/// afterwards.
fn connections_survive_restarts(forwarding: &str, attach: &str) {
    let started = Instant::now();
    let what = format!("{forwarding} at {attach}");
    let mut lab = tunnel::start_lab(1, 3).expect("tunnel lab");
    if attach == "tc" {
        lab.without_pass_through_xdp();
    }
    let lb = lab.lb.clone();
    let spec = TunnelSpec::new(attach, forwarding, &["b1", "b2", "b3"]);
    let config = tunnel::lbd_config(&lab, &lb, &spec).expect("lbd config");
    lab.start_lbd_on(&lb, "lbd", &config).expect("lbd");
    let mut conns = Vec::new();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let opened = Conn::open(&lab.client.netns, vip, 8, Duration::from_secs(5)).expect("open");
        for conn in &opened {
            assert_eq!(
                conn.first.peer.ip(),
                client_address(&lab, vip),
                "{what}: nginx saw another client"
            );
        }
        conns.extend(opened);
    }
    let total = conns.len();
    let backends: BTreeSet<String> = conns.iter().map(|c| c.first.backend.clone()).collect();
    let talker = Talker::start(conns);

    let running = restart_both_ways(&mut lab, &lb, "lbd", &config, |_| {});
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let after = burst(&lab.client.netns, vip, 200);
        assert_eq!(
            after.failed, 0,
            "{what}: {vip} after the restarts: {:?}",
            after.errors
        );
        assert_eq!(after.peers, BTreeSet::from([client_address(&lab, vip)]));
    }
    let (rounds, errors) = talker.finish();
    let last = status_on(&lab, &lb);
    assert!(
        errors.is_empty(),
        "{what}: kept-alive connections broke across the restarts: {errors:?}\ncounters: {:?}\nlbd3:\n{}",
        nonzero(&last),
        lab.log(&running)
    );
    assert!(rounds >= 15, "{what}: only {rounds} rounds of requests");
    let drops: BTreeMap<&str, u64> = nonzero(&last)
        .into_iter()
        .filter(|(k, _)| DROPS.contains(k))
        .collect();
    assert!(
        drops.is_empty(),
        "{what}: drops across the restarts: {drops:?}"
    );
    eprintln!(
        "tunnel {what}: {total} kept-alive connections (IPv4 and IPv6) on {backends:?}, {rounds} rounds across kill -9 + restart and SIGTERM + restart, 0 failed; took {:?}",
        started.elapsed()
    );
}

#[test]
fn tunnel_connections_survive_kill_9_and_sigterm_restarts() {
    // Both modes and both hooks, each pairing once.
    connections_survive_restarts("ipip", "tc");
    connections_survive_restarts("gue", "xdp");
}

// ---------------------------------------------------------------------------
// 3. Health checks through the tunnel.

/// Health of backend `address` of `vip` on the lab's lbd.
fn health(lab: &Lab, vip: IpAddr, address: IpAddr) -> Option<HealthStatus> {
    vip_status(&status_on(lab, &lab.lb), vip)
        .backends
        .iter()
        .find(|b| b.address == address)
        .map(|b| b.health)
}

#[test]
fn checks_through_the_tunnel_take_out_a_backend_whose_decap_stopped() {
    let started = Instant::now();
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let lb = lab.lb.clone();
    let (b1, b2) = (lab.backends[0].clone(), lab.backends[1].clone());
    let vip = IpAddr::V4(VIP4);
    let b2_address = IpAddr::V4(b2.ipv4);
    for forwarding in ["ipip", "gue"] {
        let what = format!("{forwarding}, checks through the tunnel");
        let name = format!("lbd-{forwarding}");
        let spec = TunnelSpec {
            vips: vec![TunnelVip::V4],
            health: true,
            through_tunnel: true,
            ..TunnelSpec::new("xdp", forwarding, &["b1", "b2"])
        };
        start_lbd(&mut lab, &lb, &name, &spec);
        let up = Instant::now();
        while !vip_status(&status_on(&lab, &lb), vip)
            .backends
            .iter()
            .all(|b| b.health == HealthStatus::Up)
        {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "{what}: the backends are not up after 10 s: {:?}; counters {:?}; b1's decap counters {:?}",
                vip_status(&status_on(&lab, &lb), vip).backends,
                nonzero(&status_on(&lab, &lb)),
                tunnel::decap_counters(&lab, &b1)
            );
            thread::sleep(Duration::from_millis(50));
        }
        let before = status_on(&lab, &lb);
        thread::sleep(Duration::from_millis(700));
        let after = status_on(&lab, &lb);
        assert!(
            grown(&before, &after, "hc_encap") > 0,
            "{what}: no check was encapsulated; counters {:?}",
            nonzero(&after)
        );

        tunnel::stop_decap(&mut lab, &b2).expect("stop b2's decap");
        wait_until(&format!("{what}: b2 down"), Duration::from_secs(10), || {
            health(&lab, vip, b2_address) == Some(HealthStatus::Down)
        });
        // A plain check would still pass: nginx on b2 answers directly.
        let url = format!("http://{}:{HTTP_PORT}/health", b2.ipv4);
        let (code, body) = http_get(&lb.netns, &url).expect("plain GET to b2");
        assert_eq!((code, body.as_str()), (200, "ok\n"), "{what}: {url}");
        let without = burst(&lab.client.netns, vip, 200);
        assert_eq!(without.failed, 0, "{what}: {:?}", without.errors);
        assert_eq!(
            without.by_backend.keys().collect::<Vec<_>>(),
            vec![&b1.name],
            "{what}: b2 took connections with its decap stopped"
        );

        tunnel::start_decap(&mut lab, &b2).expect("restart b2's decap");
        wait_until(
            &format!("{what}: b2 up again"),
            Duration::from_secs(10),
            || health(&lab, vip, b2_address) == Some(HealthStatus::Up),
        );
        let with = burst(&lab.client.netns, vip, 300);
        assert_eq!(with.failed, 0, "{what}: {:?}", with.errors);
        assert_eq!(with.by_backend.len(), 2, "{what}: {:?}", with.by_backend);
        lab.interrupt(&name).expect("lbd stops");
    }
    eprintln!("tunnel health test took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// 4. The lab itself.

#[test]
fn the_tunnel_lab_runs_decap_on_every_routed_backend_and_leaves_nothing_behind() {
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let (prefix, dir) = (lab.prefix.clone(), lab.dir.clone());
    let mut pins = Vec::new();
    for backend in lab.backends.clone() {
        // The VIPs on lo, never answered for by ARP.
        let lo = ip(&["-n", &backend.netns, "addr", "show", "dev", "lo"]);
        for vip in [
            format!("{VIP4}/32"),
            format!("{VIP6}/128"),
            format!("{}/32", tunnel::VIP4_IN6),
        ] {
            assert!(
                lo.contains(&vip),
                "{} lacks {vip} on lo:\n{lo}",
                backend.name
            );
        }
        // Routed: the LB reaches it through r2, never on-link.
        let route = ip(&[
            "-n",
            &lab.lb.netns,
            "route",
            "get",
            &backend.ipv4.to_string(),
        ]);
        assert!(route.contains(" via "), "LB → {}: {route}", backend.name);
        // lb-decap attached at XDP with the backend's addresses, every VIP,
        // both encapsulations, and nothing counted yet but plain packets.
        assert!(lab.xdp_attached(&backend).expect("ip link"));
        let status = tunnel::decap_command(&lab, &backend, "status").expect("status");
        for want in [
            "attached: xdp on eth0".to_owned(),
            "ipip: on".to_owned(),
            format!("gue: on, port {}", tunnel::GUE_PORT),
            format!("address: {}", backend.ipv4),
            format!("address: {}", backend.ipv6),
            format!("vip: {VIP4}:{HTTP_PORT}/tcp"),
            format!("vip: [{VIP6}]:{HTTP_PORT}/tcp"),
        ] {
            assert!(
                status.contains(&want),
                "{}: no {want:?} in\n{status}",
                backend.name
            );
        }
        let counters = tunnel::decap_counters(&lab, &backend).expect("counters");
        assert_eq!(counters.get("decap_ipip"), Some(&0), "{counters:?}");
        assert_eq!(counters.get("decap_gue"), Some(&0), "{counters:?}");
        // Plain packets pass: nginx answers on its own address.
        let url = format!("http://{}:{HTTP_PORT}/", backend.ipv4);
        let (code, body) = http_get(&lab.client.netns, &url).expect("GET");
        assert_eq!((code, body), (200, format!("{}\n", backend.name)));
        pins.push(tunnel::decap_pin_dir(&lab, &backend));
    }
    // Stopped and started again, lb-decap keeps (or retakes) its program.
    let b1 = lab.backends[0].clone();
    tunnel::stop_decap(&mut lab, &b1).expect("stop");
    assert!(!lab.xdp_attached(&b1).expect("ip link"), "still attached");
    tunnel::start_decap(&mut lab, &b1).expect("restart");
    drop(lab);
    assert_eq!(
        lb_tests::lab::namespaces_with_prefix(&prefix),
        Vec::<String>::new()
    );
    for pin in pins {
        assert!(!std::path::Path::new(&pin).exists(), "{pin} remains");
    }
    assert!(!dir.exists(), "{} remains", dir.display());
}
