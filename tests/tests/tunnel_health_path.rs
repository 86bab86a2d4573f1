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
    lab::{in_netns, Host, Lab, HTTP_PORT, VIP4},
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

/// How many programs `interface`'s tcx egress in `node`'s namespace runs.
fn egress_programs(node: &Host, interface: &'static str) -> usize {
    in_netns(&node.netns, move || {
        aya::programs::SchedClassifier::query_tcx(interface, aya::programs::TcAttachType::Egress)
            .map(|(_, programs)| programs.len())
            .unwrap_or(0)
    })
    .expect("query tcx egress")
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
