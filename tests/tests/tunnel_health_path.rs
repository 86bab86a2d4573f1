//! lbd's side of health checks that follow the data path (issue 13), in
//! the tunnel lab: the check path (`tc_hc_encap` on the egress of `lo` and
//! of the balancer's interface, `accept_local` on that interface) exists
//! exactly while some backend is checked through its tunnel, is shown by
//! `lbctl status`, goes when a reload turns the checks back to the
//! backends' own addresses, and a clean stop leaves the node's settings as
//! they were found; `lbctl flow` names a tunnelled flow's outer header.
//! (That a backend whose decap stopped goes down is `tunnel_lab`'s test.)
//! Needs root.

use std::{
    fs,
    net::{SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use lb_tests::{
    lab::{in_netns, tc_filter_listing, tcx_egress_ids, Host, Lab, HTTP_PORT, VIP4},
    support::{status_on, wait_until},
    tunnel::{self, TunnelSpec, TunnelVip},
};
use lb_userspace::api::schema::{HealthStatus, Status};

/// `net.ipv4.conf.eth0.accept_local` in `node`'s namespace.
fn accept_local(node: &Host) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.netns, "cat"])
        .arg("/proc/sys/net/ipv4/conf/eth0/accept_local")
        .output()
        .expect("read accept_local");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sets `net.ipv4.conf.{all,eth0}.rp_filter` and `eth0.accept_local` in
/// `node`'s namespace.
fn set_reply_filters(node: &Host, rp_filter: u8, accept_local: u8) {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.netns, "sysctl", "-qw"])
        .arg(format!("net.ipv4.conf.all.rp_filter={rp_filter}"))
        .arg(format!("net.ipv4.conf.eth0.rp_filter={rp_filter}"))
        .arg(format!("net.ipv4.conf.eth0.accept_local={accept_local}"))
        .output()
        .expect("sysctl");
    assert!(out.status.success(), "{out:?}");
}

/// Whether a datagram `from` (in `sender`'s namespace) reaches a socket
/// bound to `to` in `receiver`'s.
fn delivered(sender: &Host, from: SocketAddr, receiver: &Host, to: SocketAddr) -> bool {
    let socket = in_netns(&receiver.netns, move || {
        let socket = UdpSocket::bind(to).expect("bind the receiver");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        socket
    })
    .expect("receiver");
    in_netns(&sender.netns, move || {
        let socket = UdpSocket::bind(from).expect("bind the sender");
        socket.send_to(b"reply", to).expect("send");
    })
    .expect("sender");
    let mut buf = [0u8; 16];
    loop {
        match socket.recv_from(&mut buf) {
            // A signal, not the verdict: wait on.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            received => return received.is_ok(),
        }
    }
}

/// How many programs `interface`'s tcx egress in `node`'s namespace runs;
/// a query that fails (no such device, no permission) fails the test
/// rather than reading as none.
fn egress_programs(node: &Host, interface: &str) -> usize {
    tcx_egress_ids(&node.netns, interface)
        .unwrap_or_else(|e| panic!("on {}: {e:#}", node.name))
        .len()
}

/// Whether every backend of the VIP is up and checked through its tunnel
/// (`through`) or not.
fn all_up(status: &Status, through: bool) -> bool {
    status.vips.iter().all(|v| {
        v.backends.iter().all(|b| {
            b.health == HealthStatus::Up
                && b.check
                    .as_ref()
                    .is_some_and(|c| c.through_tunnel == through)
        })
    })
}

/// Runs lbctl on `node`'s lbd; panics unless it succeeds.
fn lbctl(lab: &Lab, node: &Host, args: &[&str]) -> String {
    let out = lab.lbctl_on(node, args).expect("run lbctl");
    assert!(
        out.status.success(),
        "lbctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_check_path_exists_only_while_checks_use_it_and_a_stop_leaves_the_node_as_found() {
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let lb = lab.lb.clone();
    assert_eq!(accept_local(&lb), "0", "the lab's starting point");
    let spec = TunnelSpec {
        vips: vec![TunnelVip::V4],
        health: true,
        through_tunnel: true,
        ..TunnelSpec::new("xdp", "gue", &["b1", "b2"])
    };
    let config = tunnel::lbd_config(&lab, &lb, &spec).expect("config");
    lab.start_lbd_on(&lb, "lbd", &config).expect("lbd starts");

    // Checks through the tunnel: the path is there and shown.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !all_up(&status_on(&lab, &lb), true) {
        if std::time::Instant::now() > deadline {
            let status = status_on(&lab, &lb);
            let counters: Vec<_> = status.counters.iter().filter(|(_, v)| **v > 0).collect();
            let checks: Vec<_> = status.vips[0]
                .backends
                .iter()
                .map(|b| {
                    (
                        b.address,
                        b.health,
                        b.check.as_ref().and_then(|c| c.last.clone()),
                    )
                })
                .collect();
            panic!("backends not up through the tunnel: {checks:?}; counters {counters:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(accept_local(&lb), "1");
    for interface in ["lo", "eth0"] {
        assert!(
            egress_programs(&lb, interface) == 1,
            "tc_hc_encap on {interface}'s egress"
        );
    }
    let status = status_on(&lab, &lb);
    let shown = status.tunnel.as_ref().expect("tunnel status");
    assert_eq!(shown.hc_encap, ["lo", "eth0"]);
    assert!(shown.accept_local);
    assert_eq!(shown.source_ipv4.as_deref(), Some(tunnel::SOURCE4));
    assert_eq!(shown.gue_port, tunnel::GUE_PORT);
    let check = status.vips[0].backends[0].check.as_ref().expect("checked");
    assert_eq!(
        check.target.as_deref(),
        Some(format!("{VIP4}:{HTTP_PORT}").as_str()),
        "the check goes to the VIP"
    );
    let text = lbctl(&lab, &lb, &["status"]);
    assert!(
        text.contains("checks through the tunnel (to 198.18.0.100:80"),
        "{text}"
    );
    assert!(text.contains("tunnel: GUE port 6080"), "{text}");

    // lbctl flow names the outer header a client's packets get.
    let vip = format!("{VIP4}:{HTTP_PORT}/tcp");
    let client = format!("{}:40000", lab.client.ipv4);
    let flow = lbctl(&lab, &lb, &["flow", &vip, &client]);
    assert!(flow.contains("encapsulated (gue) 198.18.200."), "{flow}");
    assert!(flow.contains("UDP port 6080"), "{flow}");

    // A reload back to plain checks takes the path away.
    let plain = TunnelSpec {
        through_tunnel: false,
        ..spec.clone()
    };
    let text = tunnel::lbd_config(&lab, &lb, &plain).expect("config");
    let path = lab.dir.join("lbd.toml");
    let pinned = fs::read_to_string(&path).expect("running config");
    let pin_line = pinned.lines().next().expect("pin_dir line");
    fs::write(&path, format!("{pin_line}\n{text}")).expect("write config");
    lbctl(&lab, &lb, &["reload"]);
    wait_until(
        "backends up, checked directly",
        Duration::from_secs(10),
        || all_up(&status_on(&lab, &lb), false),
    );
    assert_eq!(accept_local(&lb), "0", "accept_local restored");
    for interface in ["lo", "eth0"] {
        assert_eq!(egress_programs(&lb, interface), 0, "{interface}");
    }
    let status = status_on(&lab, &lb);
    assert!(status
        .tunnel
        .as_ref()
        .is_some_and(|t| t.hc_encap.is_empty()));

    // Through the tunnel again, then a clean stop restores the node.
    fs::write(&path, pinned).expect("write config");
    lbctl(&lab, &lb, &["reload"]);
    wait_until("through the tunnel again", Duration::from_secs(10), || {
        all_up(&status_on(&lab, &lb), true)
    });
    assert_eq!(accept_local(&lb), "1");
    lab.interrupt("lbd").expect("lbd stops");
    assert_eq!(accept_local(&lb), "0", "a clean stop restores accept_local");
    for interface in ["lo", "eth0"] {
        assert_eq!(egress_programs(&lb, interface), 0, "{interface}");
    }
}

#[test]
fn a_reply_from_the_vip_is_accepted_with_accept_local_whatever_the_rp_filter() {
    // The master holds the VIP on eth0 (the lab puts it there); the
    // backend replies to a check from the VIP, which it holds on lo.
    let lab = tunnel::start_lab(1, 1).expect("tunnel lab");
    let (lb, backend) = (lab.lb.clone(), lab.backends[0].clone());
    let from = SocketAddr::new(VIP4.into(), HTTP_PORT);
    for rp_filter in [0, 1, 2] {
        for (port, accept_local) in [(5550u16, 0u8), (5551, 1)] {
            set_reply_filters(&lb, rp_filter, accept_local);
            let to = SocketAddr::new(lb.ipv4.into(), port + u16::from(rp_filter) * 2);
            assert_eq!(
                delivered(&backend, from, &lb, to),
                accept_local == 1,
                "rp_filter {rp_filter}, accept_local {accept_local}"
            );
        }
    }
    // IPv6 takes a packet from one of the node's own addresses as it is.
    let vip6 = SocketAddr::new(lb_tests::lab::VIP6.into(), HTTP_PORT);
    let to6 = SocketAddr::new(lb.ipv6.into(), 5560);
    assert!(
        delivered(&backend, vip6, &lb, to6),
        "IPv6 reply from the VIP"
    );
}

/// An lbd that crashed (SIGKILL) with `accept_local` switched on for its
/// checks through the tunnel: `lbd --cleanup` puts the original back from
/// lbd's record of what it held (nothing else would: the next lbd finds it
/// on and would take it for the operator's), and so does a clean stop of an
/// lbd started after the crash.
#[test]
fn accept_local_left_on_by_a_crash_is_restored() {
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let lb = lab.lb.clone();
    assert_eq!(accept_local(&lb), "0", "the lab's starting point");
    let spec = TunnelSpec {
        vips: vec![TunnelVip::V4],
        health: true,
        through_tunnel: true,
        ..TunnelSpec::new("xdp", "gue", &["b1", "b2"])
    };
    let config = tunnel::lbd_config(&lab, &lb, &spec).expect("config");
    // Each lbd process gets its own name: the lab finds processes by name.
    for (round, ending) in ["cleanup", "restart and clean stop"]
        .into_iter()
        .enumerate()
    {
        let name = format!("lbd-{round}");
        lab.start_lbd_on(&lb, &name, &config)
            .unwrap_or_else(|e| panic!("{ending}: lbd starts: {e:#}"));
        wait_until(
            "backends up through the tunnel",
            Duration::from_secs(10),
            || all_up(&status_on(&lab, &lb), true),
        );
        assert_eq!(accept_local(&lb), "1");
        lab.kill(&name).expect("kill -9 lbd");
        assert_eq!(accept_local(&lb), "1", "a crash leaves it on");
        if ending == "cleanup" {
            lab.lbd_offline_ok(&lb, &name, "--cleanup");
        } else {
            let again = format!("{name}-again");
            lab.start_lbd_on(&lb, &again, &config)
                .expect("lbd starts again");
            wait_until("backends up again", Duration::from_secs(10), || {
                all_up(&status_on(&lab, &lb), true)
            });
            lab.interrupt(&again).expect("SIGINT lbd");
        }
        assert_eq!(accept_local(&lb), "0", "{ending}: accept_local restored");
    }
}

/// Two lbds in one namespace, each on its own interface (lbd A on eth0,
/// lbd B on eth1, a veth whose peer is in the namespace too, going
/// nowhere: B's wrapped checks leave by the route to the backends,
/// through eth0), both with checks through the tunnel: both put
/// `tc_hc_encap` on the egress of `lo`, where every check to a VIP the
/// node holds leaves, one program after the other. Neither drops the
/// other's checks (to a VIP not its own): every backend of both is up.
/// tcx links: A's, attached first, runs first.
#[test]
fn two_lbds_of_one_namespace_each_wrap_their_own_checks() {
    two_lbds_of_one_namespace(None);
}

/// `two_lbds_of_one_namespace_each_wrap_their_own_checks` with cls_bpf
/// filters (`LBD_TC_ATTACH=cls_bpf`, as kernels before 6.6): both lbds'
/// filters on the egress of `lo`, at one priority, told apart by their
/// handles (the index of each lbd's interface); B's, added last, runs
/// first (the kernel lists a priority's filters newest first), so here
/// it is B's program that leaves A's checks to A's.
#[test]
fn two_lbds_of_one_namespace_each_wrap_their_own_checks_with_cls_bpf() {
    two_lbds_of_one_namespace(Some("cls_bpf"));
}

/// Starts lbd on `node` as process `name` with `config`, with
/// `LBD_TC_ATTACH=<tc_attach>` in its environment when given; returns
/// once it is ready.
fn start_lbd(lab: &mut Lab, node: &Host, name: &str, config: &str, tc_attach: Option<&str>) {
    let Some(value) = tc_attach else {
        lab.start_lbd_on(node, name, config)
            .unwrap_or_else(|e| panic!("{name} starts: {e:#}"));
        return;
    };
    let path = lab.dir.join(format!("{name}.toml"));
    let config = if config.contains("pin_dir") {
        config.to_owned()
    } else {
        format!("pin_dir = \"{}\"\n{config}", lab.pin_dir_of(node).display())
    };
    fs::write(&path, config).expect("write the config");
    let lbd = lb_tests::lab::lbd_binary().expect("lbd");
    // `ip netns exec` runs `env`, which runs lbd in its place.
    lab.spawn(
        name,
        &node.netns,
        "env",
        &[
            &format!("LBD_TC_ATTACH={value}"),
            &lbd.to_string_lossy(),
            "--config",
            &path.to_string_lossy(),
        ],
    )
    .expect("spawn lbd");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lab.log(name).contains("lbd ready") {
        assert!(lab.is_running(name), "{name} exited:\n{}", lab.log(name));
        assert!(
            std::time::Instant::now() < deadline,
            "{name} not ready within 30 s:\n{}",
            lab.log(name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn two_lbds_of_one_namespace(tc_attach: Option<&str>) {
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let lb = lab.lb.clone();
    for args in [
        [
            "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
        ]
        .as_slice(),
        ["link", "set", "eth1", "up"].as_slice(),
        ["link", "set", "eth1p", "up"].as_slice(),
    ] {
        let out = Command::new("ip")
            .args(["-n", &lb.netns])
            .args(args)
            .output()
            .expect("ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
    let spec_a = TunnelSpec {
        vips: vec![TunnelVip::V4],
        health: true,
        through_tunnel: true,
        ..TunnelSpec::new("xdp", "gue", &["b1", "b2"])
    };
    let config_a = tunnel::lbd_config(&lab, &lb, &spec_a).expect("config");
    start_lbd(&mut lab, &lb, "lbd", &config_a, tc_attach);
    wait_until("A's backends up", Duration::from_secs(10), || {
        all_up(&status_on(&lab, &lb), true)
    });
    // B: the lab's second IPv4 VIP (on the node's eth0, as the first),
    // over the backends' IPv4 addresses; its own pins and admin socket.
    let spec_b = TunnelSpec {
        vips: vec![TunnelVip {
            address: tunnel::VIP4_IN6.into(),
            v6_backends: false,
        }],
        health: true,
        through_tunnel: true,
        ..TunnelSpec::new("tc", "gue", &["b1", "b2"])
    };
    let socket_b = lab.dir.join("lbd-b.sock");
    let config_b = tunnel::lbd_config(&lab, &lb, &spec_b)
        .expect("config")
        .replace("interface = \"eth0\"", "interface = \"eth1\"")
        .replace(
            &lab.admin_socket_of(&lb).display().to_string(),
            &socket_b.display().to_string(),
        );
    let config_b = format!(
        "pin_dir = \"{}-b\"\n{config_b}",
        lab.pin_dir_of(&lb).display()
    );
    start_lbd(&mut lab, &lb, "lbd-b", &config_b, tc_attach);
    let status_b = || lb_tests::lab::status_at(&socket_b).expect("B's status");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !all_up(&status_b(), true) {
        if std::time::Instant::now() > deadline {
            let status = status_b();
            let checks: Vec<_> = status.vips[0]
                .backends
                .iter()
                .map(|b| {
                    (
                        b.address,
                        b.health,
                        b.check.as_ref().and_then(|c| c.last.clone()),
                    )
                })
                .collect();
            let drops = status_on(&lab, &lb).counters.get("hc_drop").copied();
            panic!("B's backends not up through the tunnel: {checks:?}; A's hc_drop {drops:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if tc_attach.is_none() {
        assert_eq!(
            egress_programs(&lb, "lo"),
            2,
            "both lbds' tc_hc_encap on lo"
        );
    } else {
        let listing =
            tc_filter_listing(&lb.netns, "lo", "egress").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            listing
                .lines()
                .filter(|l| l.contains(" name tc_hc_encap "))
                .count(),
            2,
            "both lbds' tc_hc_encap filters on lo:\n{listing}"
        );
        assert_eq!(egress_programs(&lb, "lo"), 0, "no tcx on lo");
    }
    // Both stay up (each one's checks keep going through the other's
    // program): for several times what a fall takes (2 checks, 300 ms
    // apart).
    std::thread::sleep(Duration::from_secs(2));
    assert!(all_up(&status_b(), true), "B's backends");
    assert!(all_up(&status_on(&lab, &lb), true), "A's backends");
}
