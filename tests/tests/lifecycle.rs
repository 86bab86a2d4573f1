//! How lbd ends, as its service manager sees it (needs root): a stop for
//! good (SIGINT) that ends with errors exits with the status the systemd
//! unit does not restart (`RestartPreventExitStatus=`), so a node taken
//! off stays off; so does a SIGINT that arrives during a start that then
//! fails, after removing the data plane. And what a killed lbd leaves on
//! a kernel without tcx outlives its interface but not `lbd --cleanup`.
//! (The unit's list is checked against the constant in lb-userspace's
//! unit tests.)

use std::{
    fs,
    net::{Ipv4Addr, TcpListener},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    bird::Bird,
    lab::{cls_bpf_program_ids, in_netns, lbd_binary, tc_filter_listing, Host, Lab},
    support::wait_until,
    tunnel::{self, TunnelSpec, TunnelVip},
};
use lb_userspace::daemon::EXIT_STOPPED_FOR_GOOD_WITH_ERRORS;

/// BIRD does not answer (a real BIRD stopped with SIGSTOP: its control
/// socket takes the connection and never replies): the stop for good
/// cannot withdraw the node's announcements, keeps the pinned program
/// forwarding and fails, naming BIRD, with its own exit status. With
/// status 1 systemd would start a new lbd 2 s later, which would adopt
/// that program and serve again. BIRD not running at all (nothing listens
/// on its control socket) announces nothing: that stop for good goes
/// ahead as `lbd --cleanup` does, and exits 0.
#[test]
fn a_stop_for_good_that_fails_exits_with_the_status_systemd_does_not_restart() {
    let mut lab = Lab::start(1).expect("lab");
    let lb = lab.lb.clone();
    let bird = Bird::paths(&lab, "bird-lb");
    let routes_file = lab.dir.join("bgp").join("vips.conf");
    let config = format!(
        "{}\n[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
        lab.lbd_config_for(&["b1"], ""),
        bird.socket.display(),
        routes_file.display(),
        lab.dir.join("state").join("node.state").display()
    );

    // BIRD not running: stopped for good anyway, the program detached.
    lab.start_lbd(&config).expect("lbd");
    lab.signal("lbd", libc::SIGINT).expect("SIGINT");
    let status = lab
        .wait_exit("lbd", Duration::from_secs(30))
        .expect("lbd exits");
    let log = lab.log("lbd");
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("BIRD is not running"), "{log}");
    assert!(
        !lab.xdp_attached(&lb).expect("ip link"),
        "BIRD announces nothing: the program goes\n{log}"
    );

    // BIRD running but not answering: the program stays, exit 10.
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd2");
    wait_until("the routes file", Duration::from_secs(10), || {
        routes_file.exists()
    });
    let bird_conf = format!(
        "router id 198.18.0.2;\nprotocol device {{}}\ninclude \"{}\";\n",
        routes_file.display()
    );
    Bird::start(&mut lab, &lb, "bird-lb", &bird_conf).expect("bird");
    lab.signal("bird-lb", libc::SIGSTOP).expect("SIGSTOP");
    lab.signal("lbd2", libc::SIGINT).expect("SIGINT");
    let status = lab
        .wait_exit("lbd2", Duration::from_secs(60))
        .expect("lbd2 exits");
    lab.signal("bird-lb", libc::SIGCONT).expect("SIGCONT");
    let log = lab.log("lbd2");
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_STOPPED_FOR_GOOD_WITH_ERRORS)),
        "{log}"
    );
    assert!(
        log.contains("did not take the withdrawal") && log.contains("does not restart"),
        "{log}"
    );
    assert!(
        lab.xdp_attached(&lb).expect("ip link"),
        "BIRD may still announce the node: the program stays\n{log}"
    );

    // A restart stop is not this: it exits 0.
    lab.start_lbd_on(&lb, "lbd3", &config).expect("lbd3");
    let status = lab.terminate("lbd3").expect("SIGTERM");
    assert!(status.success(), "{}", lab.log("lbd3"));
}

/// An address on the LB's network that no host has: its MAC never
/// resolves, so a start with it as a backend waits out its neighbour
/// lookup (seconds), a window for a signal to arrive during the start.
fn unanswered(lab: &Lab) -> Ipv4Addr {
    let [a, b, c, _] = lab.backends[0].ipv4.octets();
    Ipv4Addr::new(a, b, c, 250)
}

/// Spawns lbd on `node` as process `name` with `config` (the node's pin
/// directory added), without waiting for it.
fn spawn_lbd(lab: &mut Lab, node: &Host, name: &str, config: &str) {
    let path = lab.dir.join(format!("{name}.toml"));
    let config = format!("pin_dir = \"{}\"\n{config}", lab.pin_dir_of(node).display());
    fs::write(&path, config).expect("config");
    let lbd = lbd_binary().expect("lbd binary");
    lab.spawn(
        name,
        &node.netns,
        &lbd.to_string_lossy(),
        &["--config", &path.to_string_lossy()],
    )
    .expect("spawn lbd");
}

/// Waits until the log of `name` has `line`, failing with the log if it
/// exits first.
fn wait_for_log(lab: &mut Lab, name: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab.log(name).contains(line) {
        assert!(
            lab.is_running(name),
            "{name} exited before logging {line:?}:\n{}",
            lab.log(name)
        );
        assert!(Instant::now() < deadline, "{}", lab.log(name));
        thread::sleep(Duration::from_millis(20));
    }
}

/// The entries of `node`'s pin directory.
fn pinned(lab: &Lab, node: &Host) -> Vec<String> {
    fs::read_dir(lab.pin_dir_of(node))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A SIGINT (stop for good) that arrives while lbd starts on a node with
/// a pinned data plane (a restart loop the operator ends), and a start
/// that then fails: lbd carries the stop for good out (the program
/// detached, the pins removed) and exits with the status systemd does
/// not restart. Before, the SIGINT was dropped and lbd exited 1, which
/// systemd restarts: the next lbd adopted the data plane and served.
/// Once for a start that fails inside the engine's (`[sync] listen` in
/// use), once after it (`metrics_listen` in use).
#[test]
fn a_sigint_during_a_start_that_fails_stops_for_good() {
    let mut lab = Lab::start(1).expect("lab");
    let lb = lab.lb.clone();
    let base = format!(
        "{}  [[vip.backend]]\n  address = \"{}\"\n",
        lab.lbd_config_for(&["b1"], ""),
        unanswered(&lab)
    );
    let key = lab.dir.join("sync.key");
    fs::write(&key, "lab-mesh-key-0123456789abcdef\n").expect("key");
    let address = lb.ipv4;
    let taken = in_netns(&lb.netns, move || {
        (
            TcpListener::bind((address, 7946)).expect("sync port"),
            TcpListener::bind((address, 9109)).expect("metrics port"),
        )
    })
    .expect("netns");
    let failing = [
        (
            "sync",
            format!(
                "{base}\n[sync]\nlisten = \"{address}:7946\"\npeers = [\"{}:7946\"]\nkey_file = \"{}\"\n",
                lab.backends[0].ipv4,
                key.display()
            ),
        ),
        ("metrics", format!("metrics_listen = \"{address}:9109\"\n{base}")),
    ];
    for (what, config) in failing {
        // A data plane to adopt, as a previous lbd leaves it.
        let serving = format!("lbd-{what}-serving");
        lab.start_lbd_on(&lb, &serving, &base).expect("lbd");
        assert!(lab.terminate(&serving).expect("SIGTERM").success());
        assert!(lab.xdp_attached(&lb).expect("ip link"));

        let name = format!("lbd-{what}");
        spawn_lbd(&mut lab, &lb, &name, &config);
        // Signals are handled from before the claim; the start goes on
        // for seconds after it (the backend whose MAC never resolves).
        wait_for_log(&mut lab, &name, "this lbd owns the data plane");
        lab.signal(&name, libc::SIGINT).expect("SIGINT");
        let status = lab
            .wait_exit(&name, Duration::from_secs(30))
            .expect("lbd exits");
        let log = lab.log(&name);
        assert_eq!(
            status.code(),
            Some(i32::from(EXIT_STOPPED_FOR_GOOD_WITH_ERRORS)),
            "{what}: {log}"
        );
        assert!(
            log.to_lowercase().contains("in use"),
            "{what}: the start failed as meant\n{log}"
        );
        assert!(
            log.contains("SIGINT arrived during the start"),
            "{what}: {log}"
        );
        assert!(
            !lab.xdp_attached(&lb).expect("ip link"),
            "{what}: the program stays attached\n{log}"
        );
        assert_eq!(pinned(&lab, &lb), Vec::<String>::new(), "{what}: {log}");
    }
    drop(taken);
}

/// Starts lbd on `node` as process `name` with `config`, its tc programs
/// forced onto clsact + cls_bpf filters (`LBD_TC_ATTACH=cls_bpf`, the
/// path of kernels without tcx); returns once it is ready.
fn start_cls_bpf(lab: &mut Lab, node: &Host, name: &str, config: &str) {
    let path = lab.dir.join(format!("{name}.toml"));
    fs::write(
        &path,
        format!("pin_dir = \"{}\"\n{config}", lab.pin_dir_of(node).display()),
    )
    .expect("config");
    let lbd = lbd_binary().expect("lbd binary");
    lab.spawn(
        name,
        &node.netns,
        "env",
        &[
            "LBD_TC_ATTACH=cls_bpf",
            &lbd.to_string_lossy(),
            "--config",
            &path.to_string_lossy(),
        ],
    )
    .expect("spawn lbd");
    wait_for_log(lab, name, "lbd ready");
}

/// The programs of the `tc_hc_encap` cls_bpf filters on the egress of
/// `lo` of `node` (`tc filter show`: "... bpf ... <name> ... id <id>");
/// a tc that fails fails the test.
fn lo_hc_programs(node: &Host) -> Vec<u32> {
    let listing = tc_filter_listing(&node.netns, "lo", "egress")
        .unwrap_or_else(|e| panic!("on {}: {e:#}", node.name));
    cls_bpf_program_ids(&listing, "tc_hc_encap")
}

/// Without tcx, checks through a tunnel run `tc_hc_encap` as a cls_bpf
/// filter on `lo` too, its handle the balancer interface's index. A
/// killed lbd leaves it; once that interface is gone (or made again,
/// with another index) no handle lbd looks for names it. `lbd --cleanup`
/// with the interface gone, and the next start on the interface made
/// again, remove it all the same.
#[test]
fn hc_filters_left_on_lo_for_an_interface_that_went_are_removed() {
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let lb = lab.lb.clone();
    let spec = TunnelSpec {
        vips: vec![TunnelVip::V4],
        health: true,
        through_tunnel: true,
        ..TunnelSpec::new("xdp", "gue", &["b1", "b2"])
    };
    let config = tunnel::lbd_config(&lab, &lb, &spec).expect("config");

    // `lbd --cleanup` with the interface gone.
    start_cls_bpf(&mut lab, &lb, "lbd-1", &config);
    wait_until("lbd-1's filter on lo", Duration::from_secs(10), || {
        lo_hc_programs(&lb).len() == 1
    });
    lab.kill("lbd-1").expect("kill -9");
    lab.delete_interface(&lb).expect("delete eth0");
    assert_eq!(lo_hc_programs(&lb).len(), 1, "outlives the interface");
    lab.lbd_offline_ok(&lb, "lbd-1", "--cleanup");
    assert_eq!(
        lo_hc_programs(&lb),
        Vec::<u32>::new(),
        "left on lo by lbd --cleanup"
    );

    // The next start on the interface made again (a new index).
    lab.recreate_interface(&lb).expect("eth0 again");
    start_cls_bpf(&mut lab, &lb, "lbd-2", &config);
    wait_until("lbd-2's filter on lo", Duration::from_secs(10), || {
        lo_hc_programs(&lb).len() == 1
    });
    let crashed = lo_hc_programs(&lb);
    lab.kill("lbd-2").expect("kill -9");
    lab.delete_interface(&lb).expect("delete eth0");
    lab.recreate_interface(&lb).expect("eth0 again");
    start_cls_bpf(&mut lab, &lb, "lbd-3", &config);
    wait_until("lbd-3's filter on lo", Duration::from_secs(10), || {
        lo_hc_programs(&lb).iter().any(|id| !crashed.contains(id))
    });
    let log = lab.log("lbd-3");
    let running = lo_hc_programs(&lb);
    assert_eq!(
        running.len(),
        1,
        "lbd-2's filter stays beside lbd-3's: {running:?} ({crashed:?} crashed)\n{log}"
    );
    assert!(
        lab.interrupt("lbd-3").expect("SIGINT").success(),
        "{}",
        lab.log("lbd-3")
    );
    assert_eq!(lo_hc_programs(&lb), Vec::<u32>::new());
}
