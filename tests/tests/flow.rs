//! `lbctl flow VIP CLIENT:PORT` against what really happens: the
//! connection-table lookup on every map design (BPF_PROG_TEST_RUN), and in
//! the namespace lab, a tracked connection's backend, Maglev's prediction
//! for a port never used checked by a connection from that very port, a
//! lone SYN held half-open, drops with every backend in maintenance, and
//! answers to bad input.
//! Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_common::LbConfig;
use lb_tests::{
    client::KeepAlive,
    floodrun,
    lab::{in_netns, Host, Lab, VIP4, VIP6},
    packet::{self, Flow, ACK, LB_MAC},
    support::lbctl_outcome,
    synflood::SynFlood,
    testbed::{action, vip4_tcp, vip6_tcp, TestBed},
};
use lb_userspace::{
    api::flow_schema::{DropReason, FlowDecision, FlowExplanation},
    conntrack::kind::ConntrackKind,
    daemon::flow::flow_key,
    dataplane::{Dataplane, LoadOptions, MapSizes, MapWriter as _},
    reconcile::{Balancer, VipId},
};

const VIP: &str = "198.18.0.100:80/tcp";
const VIP_6: &str = "[2001:2::100]:80/tcp";

/// Pins the calling thread to `cpu`; false if the CPU is not available.
fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes into
    // it; sched_setaffinity(0, ..) affects only this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[test]
fn the_lookup_finds_what_the_program_tracked_in_every_table_kind() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    for kind in ConntrackKind::ALL {
        let sizes = MapSizes {
            max_vips: 4,
            conntrack: 4096,
            nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
            half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
        };
        let options = LoadOptions {
            conntrack_kind: kind,
            ..LoadOptions::default()
        };
        let mut dataplane = Dataplane::load_with(sizes, &options).expect("load (are you root?)");
        dataplane
            .set_config(&LbConfig {
                iface_mac: LB_MAC,
                flags: 0,
                _pad: 0,
            })
            .expect("config");
        let mut bed = TestBed {
            dataplane,
            balancer: Balancer::new(sizes.max_vips),
            hook: lb_tests::testbed::Hook::Xdp,
        };
        let vips = [vip4_tcp(), vip6_tcp()];
        bed.apply(&vips).expect("apply");
        // Flows inserted from each CPU in turn: the per-CPU LRU keeps one
        // list per CPU, the lookup must still find every flow. Each flow's
        // first packet is an ACK (a SYN would be held half-open, apart
        // from the connection table).
        let mut port = 30_000;
        for cpu in 0..cpus {
            assert!(pin_to_cpu(cpu), "cannot run on CPU {cpu}");
            for (vip, client) in [(&vips[0], "198.18.0.10"), (&vips[1], "2001:2::10")] {
                port += 1;
                let id = VipId::of(vip);
                let client = SocketAddr::new(client.parse().expect("client"), port);
                let key = flow_key(&id, client);
                assert_eq!(bed.dataplane.flow(&key).expect("lookup"), None, "{kind:?}");
                let flow = Flow {
                    src: client.ip(),
                    dst: vip.address,
                    sport: port,
                    dport: vip.port,
                };
                let (verdict, out) = bed
                    .run(&packet::tcp(&flow, ACK, None, b""))
                    .expect("test run");
                assert_eq!(verdict, action::TX, "{kind:?} {client}");
                let entry = bed
                    .dataplane
                    .flow(&key)
                    .expect("lookup")
                    .unwrap_or_else(|| {
                        panic!("{kind:?}: {client} not found after its first packet")
                    });
                let (address, mac) = bed.maglev_backend(vip, &flow).expect("maglev");
                assert_eq!(out[..6], mac, "{kind:?}: forwarded to {address}");
                let applied = &bed.balancer.vips()[&id].backends[&address];
                assert_eq!(
                    (entry.backend_id, entry.backend_generation),
                    (applied.id, applied.generation),
                    "{kind:?} {client}"
                );
                let other = SocketAddr::new(client.ip(), port + 1000);
                assert_eq!(
                    bed.dataplane.flow(&flow_key(&id, other)).expect("lookup"),
                    None
                );
            }
        }
    }
}

/// `lbctl flow VIP CLIENT --json`, which must succeed.
fn explain(lab: &Lab, vip: &str, client: &str) -> FlowExplanation {
    let (code, stdout, stderr) = lbctl_outcome(lab, &["flow", vip, client, "--json"]);
    assert_eq!(code, 0, "lbctl flow {vip} {client}: {stderr}");
    serde_json::from_str(&stdout).expect("FlowExplanation JSON")
}

/// The address of the backend that answered with `name`.
fn address_of(lab: &Lab, name: &str, ipv6: bool) -> IpAddr {
    let host: &Host = lab
        .backends
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no backend named {name:?}"));
    if ipv6 {
        IpAddr::V6(host.ipv6)
    } else {
        IpAddr::V4(host.ipv4)
    }
}

/// The client's end of a flow from `port`, as lbctl takes it.
fn client(lab: &Lab, port: u16, ipv6: bool) -> String {
    if ipv6 {
        format!("[{}]:{port}", lab.client.ipv6)
    } else {
        format!("{}:{port}", lab.client.ipv4)
    }
}

/// One request on a new connection from `port`; the connection stays open.
fn connect_from(lab: &Lab, port: u16, ipv6: bool) -> (KeepAlive, String) {
    let vip = if ipv6 {
        IpAddr::V6(VIP6)
    } else {
        IpAddr::V4(VIP4)
    };
    let mut connection =
        KeepAlive::open_from_port(&lab.client.netns, vip, port).expect("connect from the port");
    let name = connection.request().expect("request");
    (connection, name)
}

fn start() -> Lab {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = lab.lbd_config();
    lab.start_lbd(&config).expect("lbd");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lab.status().expect("status").vips.iter().all(|v| {
        v.backends
            .iter()
            .all(|b| b.health == lb_userspace::api::schema::HealthStatus::Up)
    }) {
        assert!(Instant::now() < deadline, "backends never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    lab
}

#[test]
fn lbctl_flow_tells_tracked_maglev_and_dropped_apart_and_is_right() {
    let lab = start();

    // (1) A kept-alive connection: tracked, to the backend that answered.
    let (mut kept, served) = connect_from(&lab, 21_000, false);
    let answer = explain(&lab, VIP, &client(&lab, 21_000, false));
    assert_eq!(answer.decision, FlowDecision::Tracked, "{answer:?}");
    let backend = answer.backend.clone().expect("a backend");
    assert_eq!(
        backend.address,
        address_of(&lab, &served, false),
        "{answer:?}"
    );
    assert_eq!(
        backend.state,
        Some(lb_userspace::api::schema::BackendState::Enabled)
    );
    assert_eq!(
        backend.health,
        Some(lb_userspace::api::schema::HealthStatus::Up)
    );
    let entry = answer.entry.clone().expect("its entry");
    assert!(
        entry.current && entry.live && entry.flags.is_empty(),
        "{entry:?}"
    );
    assert!(entry.age_s < 5.0, "{entry:?}");
    let (_, text, _) = lbctl_outcome(&lab, &["flow", VIP, &client(&lab, 21_000, false)]);
    let expected = format!(
        "{} -> {VIP}: tracked -> backend {} (enabled, up), last packet",
        client(&lab, 21_000, false),
        backend.address
    );
    assert!(text.starts_with(&expected), "{text}");
    assert!(text.trim_end().ends_with("flags -"), "{text}");
    // The same connection is still served by that backend.
    assert_eq!(kept.request().expect("request"), served);

    // (2) Ports never used: lbctl predicts Maglev's pick, and a connection
    // from exactly that port is served there; then it is tracked there.
    // Five ports per family: a wrong prediction passes by chance with
    // probability (1/3)^5 at most.
    let mut kept_alive = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for ipv6 in [false, true] {
        let vip = if ipv6 { VIP_6 } else { VIP };
        for port in 22_001..=22_005 {
            let from = client(&lab, port, ipv6);
            let predicted = explain(&lab, vip, &from);
            assert_eq!(predicted.decision, FlowDecision::Maglev, "{predicted:?}");
            assert!(predicted.entry.is_none(), "{predicted:?}");
            let pick = predicted.maglev.expect("the Maglev pick");
            assert_eq!(pick.table_size, 65_537);
            let expected = predicted.backend.expect("a backend").address;
            let (_, text, _) = lbctl_outcome(&lab, &["flow", vip, &from]);
            assert!(
                text.contains(&format!(
                    "not tracked: Maglev slot {} of 65537 -> backend {expected}",
                    pick.slot
                )),
                "{text}"
            );
            let (connection, served) = connect_from(&lab, port, ipv6);
            assert_eq!(
                address_of(&lab, &served, ipv6),
                expected,
                "{from} -> {vip}: predicted {expected}, served by {served}"
            );
            seen.insert(served);
            let after = explain(&lab, vip, &from);
            assert_eq!(after.decision, FlowDecision::Tracked, "{after:?}");
            assert_eq!(after.backend.map(|b| b.address), Some(expected));
            kept_alive.push(connection);
        }
    }
    println!("flows predicted and served by: {seen:?}");

    // (2b) A handshake under way: one SYN of a spoofed source (no ACK
    // will follow) is held half-open, on the backend Maglev picked for it.
    let flood = floodrun::flood_of(&lab, 1, Duration::from_secs(5), None).expect("the flood");
    let syn_client = format!("{}:1024", SynFlood::source(0));
    let predicted = explain(&lab, VIP, &syn_client);
    assert_eq!(predicted.decision, FlowDecision::Maglev, "{predicted:?}");
    let sent = {
        let flood = flood.clone();
        in_netns(&lab.client.netns, move || flood.run())
            .expect("in the client's namespace")
            .expect("the SYN")
    };
    assert_eq!(sent.sent, 1);
    let held = explain(&lab, VIP, &syn_client);
    assert_eq!(held.decision, FlowDecision::HalfOpen, "{held:?}");
    assert_eq!(held.entry, None, "{held:?}");
    assert_eq!(
        held.backend.as_ref().map(|b| b.address),
        predicted.backend.as_ref().map(|b| b.address),
        "held on Maglev's pick"
    );
    let entry = held.half_open.clone().expect("its half-open entry");
    assert!(entry.current && entry.live, "{entry:?}");
    let (_, text, _) = lbctl_outcome(&lab, &["flow", VIP, &syn_client]);
    assert!(
        text.contains(": half-open (SYN seen, handshake not complete) -> backend"),
        "{text}"
    );

    // (4) Bad input: the message names the problem; exit 2 or 3.
    let (code, _, stderr) = lbctl_outcome(&lab, &["flow", VIP, &client(&lab, 40_000, true)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("IPv6") && stderr.contains("IPv4") && stderr.contains(VIP),
        "{stderr}"
    );
    let (code, _, stderr) = lbctl_outcome(&lab, &["flow", VIP_6, &client(&lab, 40_000, false)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("2001:2::100"), "{stderr}");
    let (code, _, stderr) = lbctl_outcome(&lab, &["flow", VIP, &client(&lab, 0, false)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("port 0"), "{stderr}");
    let (code, _, stderr) = lbctl_outcome(
        &lab,
        &["flow", "198.18.0.101:80/tcp", &client(&lab, 40_000, false)],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("no VIP 198.18.0.101:80/tcp"), "{stderr}");
    let (code, _, stderr) = lbctl_outcome(&lab, &["flow", VIP, "198.18.0.10"]);
    assert_eq!(code, 2, "{stderr}");

    // (3) Every backend in maintenance: an untracked flow is dropped, and
    // so is the tracked one (its entry is stale now).
    for b in &lab.backends {
        let (code, _, stderr) =
            lbctl_outcome(&lab, &["backend", "maintenance", VIP, &b.ipv4.to_string()]);
        assert_eq!(code, 0, "{stderr}");
    }
    let answer = explain(&lab, VIP, &client(&lab, 23_000, false));
    assert_eq!(answer.decision, FlowDecision::Dropped, "{answer:?}");
    assert_eq!(answer.dropped, Some(DropReason::EmptySlot));
    assert_eq!(answer.backend, None);
    let (_, text, _) = lbctl_outcome(&lab, &["flow", VIP, &client(&lab, 23_000, false)]);
    assert!(text.contains("dropped: no healthy backend"), "{text}");
    let answer = explain(&lab, VIP, &client(&lab, 21_000, false));
    assert_eq!(answer.decision, FlowDecision::Dropped, "{answer:?}");
    let stale = answer.entry.expect("the kept connection's entry");
    assert!(!stale.current, "{stale:?}");
    assert_eq!(
        stale.backend.and_then(|b| b.state),
        Some(lb_userspace::api::schema::BackendState::Maintenance)
    );
    // The data plane agrees: a connection from that port gets no answer.
    let refused = KeepAlive::open_from_port(&lab.client.netns, IpAddr::V4(VIP4), 23_000);
    assert!(refused.is_err(), "a connection got through with no backend");
    // The IPv6 VIP is untouched.
    let answer = explain(&lab, VIP_6, &client(&lab, 23_000, true));
    assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
    drop(kept_alive);
}
