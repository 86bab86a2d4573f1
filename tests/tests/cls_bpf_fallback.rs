//! lbd's tc programs on the clsact + cls_bpf path, the only one kernels
//! without tcx (before 6.6, e.g. Debian 12's 6.1) have, forced on this
//! kernel with `LBD_TC_ATTACH=cls_bpf`: the tc balancer (`attach = "tc"`)
//! forwards through a filter on the interface's ingress, which a SIGTERM
//! leaves for the next lbd (which replaces it) and a SIGINT removes; and
//! checks through a tunnel get `tc_hc_encap` as filters on the egress of
//! `lo` and of the interface (before, that program had no such path:
//! without tcx its checks were never wrapped), which a stop removes, the
//! next lbd after a kill -9 replaces, and `lbd --cleanup` sweeps. A value
//! the switch does not take fails the start. Needs root.

use std::{
    fs,
    net::{IpAddr, TcpListener},
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;
use lb_common::consts::names;
use lb_tests::{
    client,
    lab::{
        cls_bpf_program_ids, in_netns, lbd_binary, tc_filter_listing, tcx_egress_ids,
        tcx_ingress_ids, Host, Lab, VIP4,
    },
    support::{grown, nonzero, status_on, vip_status, wait_until},
    tunnel::{self, TunnelSpec, TunnelVip},
};
use lb_userspace::{
    api::schema::{HealthStatus, Status},
    config::Attach,
    pinning::PinDir,
};

/// Starts lbd on `node` as process `name` with `config` and
/// `LBD_TC_ATTACH=<value>` in its environment; returns once it is ready
/// (its program attached: there is no tcx link to wait for on this
/// path), or fails with its log if it exits first.
fn start_lbd_with(
    lab: &mut Lab,
    node: &Host,
    name: &str,
    config: &str,
    value: &str,
) -> anyhow::Result<u32> {
    let lbd = lbd_binary()?;
    let path = lab.dir.join(format!("{name}.toml"));
    fs::write(
        &path,
        format!("pin_dir = \"{}\"\n{config}", lab.pin_dir_of(node).display()),
    )?;
    // `ip netns exec` runs `env`, which runs lbd in its place (one pid,
    // the lab's signals reach lbd).
    let pid = lab.spawn(
        name,
        &node.netns,
        "env",
        &[
            &format!("LBD_TC_ATTACH={value}"),
            &lbd.to_string_lossy(),
            "--config",
            &path.to_string_lossy(),
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab.log(name).contains("lbd ready") {
        if !lab.is_running(name) {
            bail!("{name} exited during start-up:\n{}", lab.log(name));
        }
        if Instant::now() > deadline {
            bail!("{name} was not ready within 30 s:\n{}", lab.log(name));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(pid)
}

/// Starts lbd with the cls_bpf path forced.
fn start_cls_bpf(lab: &mut Lab, node: &Host, name: &str, config: &str) {
    start_lbd_with(lab, node, name, config, "cls_bpf")
        .unwrap_or_else(|e| panic!("{name} on {}: {e:#}", node.name));
    assert!(
        lab.log(name).contains("LBD_TC_ATTACH=cls_bpf"),
        "the forced path is logged at start:\n{}",
        lab.log(name)
    );
}

/// `tc filter show dev <interface> <hook>` in `node`'s namespace
/// (empty: no filter there); a tc that fails fails the test.
fn filters(node: &Host, interface: &str, hook: &str) -> String {
    tc_filter_listing(&node.netns, interface, hook)
        .unwrap_or_else(|e| panic!("on {}: {e:#}", node.name))
}

/// How many programs `interface`'s tcx egress in `node`'s namespace runs;
/// a query that fails fails the test.
fn tcx_egress(node: &Host, interface: &str) -> usize {
    tcx_egress_ids(&node.netns, interface)
        .unwrap_or_else(|e| panic!("on {}: {e:#}", node.name))
        .len()
}

/// New connections of each burst through the VIP: enough that the spread
/// over three backends is checked to a few percent (see `assert_forwards`)
/// while a burst takes seconds.
const REQUESTS: u32 = 1_500;

/// Asserts a burst of `count` new connections through the IPv4 VIP all
/// succeed, spread evenly over the lab's three backends: each serves a
/// third (Maglev gives each a third of its table, and the client's source
/// ports fall on it at random) within five standard deviations of that
/// binomial spread, ± 6.1 % at 1,500 requests. A healthy run falls outside
/// about once in a million bursts; a backend left out, or one taking
/// another's share, falls far outside.
fn assert_forwards(lab: &Lab, count: u32, when: &str) {
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), count).expect("burst");
    assert_eq!(tally.failed, 0, "{when}: {:?}", tally.errors);
    assert_eq!(tally.succeeded(), u64::from(count), "{when}");
    assert_eq!(
        tally.by_backend.len(),
        3,
        "{when}: backends that answered: {:?}",
        tally.by_backend
    );
    let third = 1.0 / 3.0;
    let sigma = (third * (1.0 - third) / f64::from(count)).sqrt();
    for (backend, served) in &tally.by_backend {
        let share = *served as f64 / f64::from(count);
        assert!(
            (share - third).abs() <= 5.0 * sigma,
            "{when}: {backend} served {:.1}% of {count}, outside 33.3% ± {:.1}% (5 sigma): {:?}",
            share * 100.0,
            5.0 * sigma * 100.0,
            tally.by_backend
        );
    }
}

#[test]
fn the_tc_balancer_forwards_through_a_cls_bpf_filter_left_at_sigterm_and_removed_at_sigint() {
    let mut lab = Lab::start(3).expect("lab");
    lab.without_pass_through_xdp();
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let config = format!("attach = \"tc\"\n{}", lab.lbd_config());
    start_cls_bpf(&mut lab, &lb, "lbd", &config);

    let listing = filters(&lb, "eth0", "ingress");
    let first = cls_bpf_program_ids(&listing, "tc_lb");
    assert_eq!(first.len(), 1, "one cls_bpf filter runs tc_lb:\n{listing}");
    assert!(listing.contains("direct-action"), "{listing}");
    assert!(
        tcx_ingress_ids(&lb.netns, "eth0").expect("tcx").is_empty(),
        "no tcx link"
    );
    assert!(!lab.xdp_attached(&lb).expect("ip link"), "no XDP at tc");
    assert_eq!(status_on(&lab, &lb).attach, Attach::Tc);
    assert_forwards(&lab, REQUESTS, "cls_bpf");

    // SIGTERM: the filter stays, forwarding for the next lbd, which
    // attaches its own and then removes it.
    assert!(lab.terminate("lbd").expect("SIGTERM").success());
    assert_eq!(
        cls_bpf_program_ids(&filters(&lb, "eth0", "ingress"), "tc_lb"),
        first,
        "the filter is left running with lbd gone"
    );
    assert_forwards(&lab, REQUESTS, "with lbd gone");
    start_cls_bpf(&mut lab, &lb, "lbd2", &config);
    let listing = filters(&lb, "eth0", "ingress");
    let second = cls_bpf_program_ids(&listing, "tc_lb");
    assert_eq!(second.len(), 1, "the previous filter removed:\n{listing}");
    assert_ne!(second, first, "the new lbd runs its own program");
    assert!(status_on(&lab, &lb).adopted);
    assert_forwards(&lab, REQUESTS, "after the restart");

    // SIGINT: nothing left, no pins.
    assert!(lab.interrupt("lbd2").expect("SIGINT").success());
    let listing = filters(&lb, "eth0", "ingress");
    assert!(listing.trim().is_empty(), "a stop for good: {listing}");
    assert!(tcx_ingress_ids(&lb.netns, "eth0").expect("tcx").is_empty());
    let pins = lab.pin_dir_of(&lb);
    assert!(!pins.exists(), "pins left in {}", pins.display());
}

/// A restart that adopts the pinned maps, attaches its filter and removes
/// the previous lbd's, and then fails (here: the metrics port is taken,
/// and the metrics listener is bound after the attach) leaves the data
/// plane as a crash does: its filter runs on, forwarding on the pinned
/// maps, connection and NAT tables included, for the next lbd to adopt.
/// (Only a first start that fails takes the data plane away again.)
#[test]
fn a_restart_that_fails_after_the_attach_leaves_its_filter_and_the_pins() {
    let mut lab = Lab::start(3).expect("lab");
    lab.without_pass_through_xdp();
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let config = format!("attach = \"tc\"\n{}", lab.lbd_config());
    start_cls_bpf(&mut lab, &lb, "lbd", &config);
    let first = cls_bpf_program_ids(&filters(&lb, "eth0", "ingress"), "tc_lb");
    assert_eq!(first.len(), 1, "one cls_bpf filter runs tc_lb");
    assert!(lab.terminate("lbd").expect("SIGTERM").success());

    let pins = PinDir::new(lab.pin_dir_of(&lb));
    let tables = [names::MAP_FLOW_BUCKETS, names::MAP_NAT_BUCKETS].map(|m| pins.map_path(m));
    for table in &tables {
        assert!(table.exists(), "{} pinned at SIGTERM", table.display());
    }
    // lbd's default metrics address, taken in its namespace.
    let squatter = in_netns(&lb.netns, || TcpListener::bind(("127.0.0.1", 9641)))
        .expect("netns")
        .expect("bind the metrics port");
    let error =
        start_lbd_with(&mut lab, &lb, "lbd2", &config, "cls_bpf").expect_err("the start must fail");
    let log = lab.log("lbd2");
    assert!(
        log.contains("adopting the pinned data plane") && log.contains("metrics listener"),
        "{error:#}\n{log}"
    );
    // The failed lbd's filter replaced the previous one, and stays.
    let listing = filters(&lb, "eth0", "ingress");
    let second = cls_bpf_program_ids(&listing, "tc_lb");
    assert_eq!(
        second.len(),
        1,
        "one filter left running:\n{listing}\n{log}"
    );
    assert_ne!(second, first, "the failed lbd's own filter");
    for table in &tables {
        assert!(table.exists(), "{} still pinned:\n{log}", table.display());
    }
    assert_forwards(&lab, REQUESTS, "after the failed restart");
    drop(squatter);

    // The next lbd adopts it all; a stop for good then removes it all.
    start_cls_bpf(&mut lab, &lb, "lbd3", &config);
    assert!(status_on(&lab, &lb).adopted);
    let listing = filters(&lb, "eth0", "ingress");
    let third = cls_bpf_program_ids(&listing, "tc_lb");
    assert_eq!(
        third.len(),
        1,
        "the failed lbd's filter removed:\n{listing}"
    );
    assert_ne!(third, second);
    assert_forwards(&lab, REQUESTS, "after the next restart");
    assert!(lab.interrupt("lbd3").expect("SIGINT").success());
    let listing = filters(&lb, "eth0", "ingress");
    assert!(listing.trim().is_empty(), "a stop for good: {listing}");
    assert!(
        !pins.root().exists(),
        "pins left in {}",
        pins.root().display()
    );
}

/// A value of `LBD_TC_ATTACH` lbd does not take fails its start, naming
/// the variable and the values it takes, and attaches nothing.
#[test]
fn a_wrong_tc_attach_switch_fails_the_start() {
    let mut lab = Lab::start(1).expect("lab");
    lab.without_pass_through_xdp();
    let lb = lab.lb.clone();
    // The "nothing attached" checks below can fail: a listing or a query
    // of a device the namespace lacks is an error, not "none there".
    assert!(tc_filter_listing(&lb.netns, "nosuch0", "ingress").is_err());
    assert!(tcx_egress_ids(&lb.netns, "nosuch0").is_err());
    for (name, attach) in [("lbd-tc", "tc"), ("lbd-xdp", "xdp")] {
        let config = format!("attach = \"{attach}\"\n{}", lab.lbd_config_for(&["b1"], ""));
        let refused = start_lbd_with(&mut lab, &lb, name, &config, "clsbpf");
        assert!(refused.is_err(), "{name} started with a wrong switch");
        let log = lab.log(name);
        assert!(
            log.contains("LBD_TC_ATTACH is set to \"clsbpf\"") && log.contains("\"cls_bpf\""),
            "{log}"
        );
        assert!(filters(&lb, "eth0", "ingress").trim().is_empty());
        assert!(tcx_ingress_ids(&lb.netns, "eth0").expect("tcx").is_empty());
        assert!(!lab.xdp_attached(&lb).expect("ip link"));
        // Refused before anything was loaded: nothing pinned either.
        let pinned: Vec<_> = std::fs::read_dir(lab.pin_dir_of(&lb))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(pinned.is_empty(), "{name} pinned {pinned:?}");
    }
}

/// Whether every backend of the VIP is up, checked through its tunnel.
fn all_up_through_the_tunnel(status: &Status) -> bool {
    status.vips.iter().all(|v| {
        v.backends.iter().all(|b| {
            b.health == HealthStatus::Up && b.check.as_ref().is_some_and(|c| c.through_tunnel)
        })
    })
}

/// Asserts `tc_hc_encap` runs as one cls_bpf filter on the egress of `lo`
/// and of `eth0` of `node`, not on tcx; returns the filters' programs.
fn assert_hc_filters(node: &Host, when: &str) -> Vec<u32> {
    let mut programs = Vec::new();
    for interface in ["lo", "eth0"] {
        let listing = filters(node, interface, "egress");
        let ids = cls_bpf_program_ids(&listing, "tc_hc_encap");
        assert_eq!(
            ids.len(),
            1,
            "{when}: one tc_hc_encap filter on {interface}'s egress:\n{listing}"
        );
        assert!(listing.contains("pref 50000"), "{when}: {listing}");
        assert_eq!(
            tcx_egress(node, interface),
            0,
            "{when}: no tcx on {interface}"
        );
        programs.extend(ids);
    }
    programs
}

/// Asserts no `tc_hc_encap` filter is left on `node`.
fn assert_no_hc_filters(node: &Host, when: &str) {
    for interface in ["lo", "eth0"] {
        let listing = filters(node, interface, "egress");
        assert!(
            cls_bpf_program_ids(&listing, "tc_hc_encap").is_empty(),
            "{when}: {interface}'s egress still has:\n{listing}"
        );
    }
}

#[test]
fn checks_through_the_tunnel_are_wrapped_by_cls_bpf_filters_without_tcx() {
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let lb = lab.lb.clone();
    let (b1, b2) = (lab.backends[0].clone(), lab.backends[1].clone());
    let vip = IpAddr::V4(VIP4);
    let spec = TunnelSpec {
        vips: vec![TunnelVip::V4],
        health: true,
        through_tunnel: true,
        ..TunnelSpec::new("xdp", "gue", &["b1", "b2"])
    };
    let config = tunnel::lbd_config(&lab, &lb, &spec).expect("config");
    start_cls_bpf(&mut lab, &lb, "lbd", &config);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !all_up_through_the_tunnel(&status_on(&lab, &lb)) {
        assert!(
            Instant::now() < deadline,
            "backends not up through the tunnel: {:?}; counters {:?}\n{}",
            vip_status(&status_on(&lab, &lb), vip).backends,
            nonzero(&status_on(&lab, &lb)),
            lab.log("lbd")
        );
        thread::sleep(Duration::from_millis(100));
    }
    let programs = assert_hc_filters(&lb, "running");
    assert_eq!(programs[0], programs[1], "one program on both");
    let status = status_on(&lab, &lb);
    assert_eq!(
        status.tunnel.as_ref().expect("tunnel status").hc_encap,
        ["lo", "eth0"]
    );
    // Checks are wrapped: the counter grows with the next check sent.
    let before = status_on(&lab, &lb);
    wait_until(
        "checks to be wrapped (hc_encap to grow)",
        Duration::from_secs(10),
        || grown(&before, &status_on(&lab, &lb), "hc_encap") > 0,
    );

    // A backend whose decap stopped goes down (a plain check would pass:
    // its nginx answers directly); the other stays up.
    tunnel::stop_decap(&mut lab, &b2).expect("stop b2's decap");
    let health = |lab: &Lab, address: IpAddr| {
        vip_status(&status_on(lab, &lb), vip)
            .backends
            .iter()
            .find(|b| b.address == address)
            .map(|b| b.health)
    };
    wait_until("b2 down", Duration::from_secs(10), || {
        health(&lab, IpAddr::V4(b2.ipv4)) == Some(HealthStatus::Down)
    });
    assert_eq!(health(&lab, IpAddr::V4(b1.ipv4)), Some(HealthStatus::Up));
    tunnel::start_decap(&mut lab, &b2).expect("restart b2's decap");
    wait_until("b2 up again", Duration::from_secs(10), || {
        health(&lab, IpAddr::V4(b2.ipv4)) == Some(HealthStatus::Up)
    });

    // A clean stop removes the filters.
    assert!(lab.interrupt("lbd").expect("SIGINT").success());
    assert_no_hc_filters(&lb, "after SIGINT");

    // A crash leaves them; the next lbd takes them over in place (no
    // second filter), and `lbd --cleanup` after another crash sweeps them.
    start_cls_bpf(&mut lab, &lb, "lbd-1", &config);
    wait_until("up through the tunnel", Duration::from_secs(10), || {
        all_up_through_the_tunnel(&status_on(&lab, &lb))
    });
    let crashed = assert_hc_filters(&lb, "lbd-1");
    lab.kill("lbd-1").expect("kill -9");
    assert_eq!(assert_hc_filters(&lb, "after kill -9"), crashed);
    start_cls_bpf(&mut lab, &lb, "lbd-2", &config);
    wait_until(
        "up through the tunnel again",
        Duration::from_secs(10),
        || all_up_through_the_tunnel(&status_on(&lab, &lb)),
    );
    let taken = assert_hc_filters(&lb, "lbd-2");
    assert!(
        taken.iter().all(|id| !crashed.contains(id)),
        "the new lbd's program replaced the crashed one's: {crashed:?} -> {taken:?}"
    );
    assert!(
        lab.log("lbd-2")
            .contains("replacing the one a previous lbd left"),
        "{}",
        lab.log("lbd-2")
    );
    lab.kill("lbd-2").expect("kill -9");
    lab.lbd_offline_ok(&lb, "lbd-2", "--cleanup");
    assert_no_hc_filters(&lb, "after lbd --cleanup");
}
