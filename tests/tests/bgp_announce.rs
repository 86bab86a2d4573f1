//! One lbd node and its own BIRD 2: lbd keeps BIRD's announcements equal
//! to what the node can serve, through the routes file and BIRD's control
//! socket. A VIP address is announced while its backends are healthy,
//! withdrawn when they all fail, when the node is drained, on a stop for
//! good, and by the unit's stop path unless lbd stopped for a restart; a
//! restart keeps it; a BIRD that starts late gets the routes. Needs root
//! and bird2. (The ECMP lab with a router and three nodes: bgp_lab.rs.)

use std::time::{Duration, Instant};

use lb_tests::{
    bird::Bird,
    lab::{Host, Lab, VIP4, VIP6},
    support::{lbctl_ok, lbctl_outcome, wait_until},
};
use lb_userspace::{
    api::schema::NodeStatus,
    bgp::{Opened, StartupStatus},
    daemon::EXIT_STOPPED_FOR_RESTART,
};

/// Slow enough that a loaded CI machine does not fail a healthy backend.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 1\nfall = 3\n";
const PROTOCOL: &str = "lbd_vips4";
/// Announcements must follow within this (checks fall in ~1 s).
const FOLLOW: Duration = Duration::from_secs(10);

fn bird_config(lab: &Lab) -> String {
    format!(
        "router id 198.18.0.2;\nprotocol device {{}}\ninclude \"{}\";\n",
        routes_file(lab).display()
    )
}

fn routes_file(lab: &Lab) -> std::path::PathBuf {
    lab.dir.join("bgp").join("vips.conf")
}

fn lbd_config(lab: &Lab, bird: &Bird, backends: &[&str]) -> String {
    lbd_config_checked(lab, bird, backends, CHECKS)
}

/// As [`lbd_config`], the VIP's health checks as `checks` says.
fn lbd_config_checked(lab: &Lab, bird: &Bird, backends: &[&str], checks: &str) -> String {
    format!(
        "{}\n[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
        lab.lbd_config_for(backends, checks),
        bird.socket.display(),
        routes_file(lab).display(),
        lab.dir.join("state").join("node.state").display()
    )
}

/// Whether BIRD announces the VIP (its route is in BIRD's table). BIRD
/// must answer: a BIRD that is gone or does not answer panics here rather
/// than read as a withdrawal, which would make every "not announced"
/// check pass without BIRD.
fn announced(bird: &Bird) -> bool {
    holds_vip(&routes(bird).expect("birdc show route"))
}

/// [`announced`] for the conditions of `wait_until` loops: a birdc that
/// gets no answer reads as "not yet", so a dead BIRD times the wait out.
fn announced_now(bird: &Bird) -> bool {
    routes(bird).is_ok_and(|routes| holds_vip(&routes))
}

/// Withdrawn, as BIRD answers it: for `wait_until` loops, a birdc that
/// gets no answer reads as "not yet" (never as withdrawn).
fn withdrawn_now(bird: &Bird) -> bool {
    routes(bird).is_ok_and(|routes| !holds_vip(&routes))
}

/// The prefixes of lbd's IPv4 protocol in BIRD's tables, as BIRD answers:
/// a BIRD that runs no such protocol (its config does not include lbd's
/// routes file) answers that the name is unknown, which is none; birdc
/// failing otherwise (no BIRD, no answer) is an error.
fn routes(bird: &Bird) -> anyhow::Result<Vec<String>> {
    match bird.routes_of(PROTOCOL) {
        Err(error) if format!("{error:#}").contains("unexpected CF_SYM_UNDEFINED") => {
            Ok(Vec::new())
        }
        answer => answer,
    }
}

fn holds_vip(routes: &[String]) -> bool {
    routes.contains(&format!("{VIP4}/32"))
}

fn node(lab: &Lab) -> NodeStatus {
    serde_json::from_str(&lbctl_ok(lab, &["node", "status", "--json"])).expect("node status")
}

#[test]
fn announcements_follow_health_drain_and_stops() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let paths = Bird::paths(&lab, "bird-lb");
    // lbd first, BIRD not yet running: lbd writes the file and retries.
    let config = lbd_config(&lab, &paths, &["b1", "b2"]);
    lab.start_lbd(&config).expect("lbd");
    wait_until("the routes file", FOLLOW, || routes_file(&lab).exists());
    // The gate opens once the first checks decided (no peers to wait for).
    wait_until("the start-up gate open", FOLLOW, || {
        node(&lab).bgp.unwrap().startup != StartupStatus::Waiting
    });
    let bgp = node(&lab).bgp.expect("bgp status");
    assert!(!bgp.in_sync, "BIRD is not running yet: {bgp:?}");
    assert_eq!(bgp.startup, StartupStatus::Open(Opened::NoPeers));
    let lb = lab.lb.clone();
    let bird_conf = bird_config(&lab);
    let bird = Bird::start(&mut lab, &lb, "bird-lb", &bird_conf).expect("bird");
    wait_until("the VIP announced once BIRD is up", FOLLOW, || {
        announced_now(&bird)
    });
    // BIRD read the file at its start; lbd's retry confirms it.
    wait_until("lbd in sync with BIRD", FOLLOW, || {
        node(&lab).bgp.unwrap().in_sync
    });

    // Every backend fails its checks: withdrawn; one comes back: announced.
    lab.terminate("nginx-b1").expect("stop nginx b1");
    assert!(announced(&bird), "one healthy backend left");
    lab.terminate("nginx-b2").expect("stop nginx b2");
    wait_until("withdrawal with no healthy backend", FOLLOW, || {
        withdrawn_now(&bird)
    });
    let withheld = node(&lab).bgp.unwrap().withheld;
    assert_eq!(withheld.len(), 1);
    assert_eq!(withheld[0].reason.name(), "no-healthy-backend");
    lab.restart_nginx("b1").expect("nginx b1 again");
    wait_until("announced again", FOLLOW, || announced_now(&bird));

    // Drain (dry run first: nothing changes), undrain.
    let dry = lbctl_ok(&lab, &["node", "drain", "--dry-run", "--json"]);
    let dry: NodeStatus = serde_json::from_str(&dry).unwrap();
    assert!(dry.dry_run);
    assert!(dry.bgp.unwrap().announced.is_empty());
    let text = lbctl_ok(&lab, &["node", "drain", "--dry-run"]);
    assert!(
        text.starts_with("dry run: nothing changed; the node would be:\nnode: drained"),
        "{text}"
    );
    assert!(announced(&bird), "a dry run changes nothing");
    assert!(!node(&lab).dry_run);
    // This lab's BIRD has no BGP session: the node announced to no
    // router, so `--wait` drains it but says there was nothing to drain
    // (exit 10) rather than claim a drain.
    let (code, _, stderr) = lbctl_outcome(
        &lab,
        &["node", "drain", "--wait", "--quiet", "1", "--timeout", "20"],
    );
    assert_eq!(
        code, 10,
        "drain --wait on a node no session exports: {stderr}"
    );
    assert!(
        stderr.contains("no Established BGP session") && stderr.contains("nothing to drain"),
        "{stderr}"
    );
    assert!(!announced(&bird), "drained: withdrawn at once");
    // The drain is kept across a restart.
    lab.terminate("lbd").expect("SIGTERM");
    assert!(!announced(&bird));
    lab.start_lbd_on(&lb, "lbd2", &config).expect("restart");
    assert_eq!(node(&lab).state.name(), "drained");
    lbctl_ok(&lab, &["node", "undrain"]);
    wait_until("announced after undrain", FOLLOW, || announced_now(&bird));

    // A restart (SIGTERM) keeps the announcement; the unit's stop path
    // keeps it after a restart (SIGUSR1 leaves word) and withdraws after
    // a stop.
    lab.terminate("lbd2").expect("SIGTERM");
    assert!(announced(&bird), "a restart keeps the routes");
    lab.lbd_offline_ok(&lb, "lbd2", "--release-vips");
    assert!(!announced(&bird), "the stop path withdraws after a stop");
    lab.start_lbd_on(&lb, "lbd3", &config).expect("start again");
    wait_until(
        "announced again (adopted: no start-up wait)",
        FOLLOW,
        || announced_now(&bird),
    );
    // Its exit status makes systemd start the next lbd, whoever sent it.
    lab.signal("lbd3", libc::SIGUSR1).expect("SIGUSR1");
    let status = lab
        .wait_exit("lbd3", Duration::from_secs(10))
        .expect("lbd3 exits");
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_STOPPED_FOR_RESTART)),
        "{}",
        lab.log("lbd3")
    );
    lab.lbd_offline_ok(&lb, "lbd3", "--release-vips");
    assert!(
        announced(&bird),
        "the stop path keeps the routes after a restart"
    );

    // A stop for good (SIGINT) withdraws, then forwards on until the
    // routers moved the flows (quiet here: nothing is sent) before the
    // program goes.
    lab.start_lbd_on(&lb, "lbd4", &config).expect("start again");
    lab.interrupt("lbd4").expect("SIGINT");
    assert!(!announced(&bird), "a stop for good withdraws");
    let log = lab.log("lbd4");
    assert!(
        log.contains("forwarding on while this node's flows move away")
            && log.contains("addresses went quiet; the program goes"),
        "{log}"
    );
}

/// The pins in the LB node's pin directory.
fn pins(lab: &Lab) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(lab.pin_dir_of(&lab.lb))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// A second IPv4 VIP address, served by b2 only.
const VIP4_B: &str = "198.18.0.101";

/// bird.conf breaks after BIRD started: BIRD runs on with the config it
/// read, and refuses every reconfigure, so no withdrawal can be read. One
/// of two IPv4 VIPs losing its backend disables nothing (that would
/// withdraw the other too, on every node sharing the broken bird.conf):
/// the other stays announced and the failure is reported. lbd disables
/// its protocol of a family left with nothing to announce instead (no
/// parse needed): a drain withdraws and is done, `lbctl node status` says BIRD
/// refuses its config, an undrain cannot announce, and once bird.conf is
/// mended lbd's retry is taken and announces again. A stop for good
/// withdraws the same way and the program goes; so does a cleanup after a
/// restart that kept the routes.
#[test]
fn a_broken_bird_conf_withdraws_by_disabling_lbds_protocol() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let paths = Bird::paths(&lab, "bird-lb");
    let second = format!(
        "\n[[vip]]\naddress = \"{VIP4_B}\"\nport = {}\n{CHECKS}\n  [[vip.backend]]\n  address = \"{}\"\n",
        lab.backend_port(),
        lab.backends[1].ipv4
    );
    let config =
        lbd_config(&lab, &paths, &["b1"]).replacen("\n[bgp]", &format!("{second}\n[bgp]"), 1);
    let holds_b = |bird: &Bird| {
        routes(bird)
            .expect("birdc show route")
            .contains(&format!("{VIP4_B}/32"))
    };
    lab.start_lbd(&config).expect("lbd");
    wait_until("the routes file", FOLLOW, || routes_file(&lab).exists());
    let bird_conf = bird_config(&lab);
    let broken = format!("{bird_conf}this is not BIRD's syntax;\n");
    let bird = Bird::start(&mut lab, &lb, "bird-lb", &bird_conf).expect("bird");
    wait_until("the VIP announced", FOLLOW, || announced_now(&bird));
    wait_until("lbd in sync with BIRD", FOLLOW, || {
        node(&lab).bgp.unwrap().in_sync
    });

    assert!(holds_b(&bird), "both VIPs announced");

    std::fs::write(&bird.config, &broken).expect("break BIRD's config");
    let failures = node(&lab).bgp.unwrap().failures;
    lab.terminate("nginx-b2").expect("stop nginx b2");
    wait_until("the second VIP's withdrawal refused", FOLLOW, || {
        let bgp = node(&lab).bgp.unwrap();
        bgp.withheld.len() == 1 && bgp.failures > failures && bgp.bird_config_error.is_some()
    });
    let bgp = node(&lab).bgp.unwrap();
    assert!(announced(&bird), "the other VIP stays announced: {bgp:?}");
    assert!(holds_b(&bird), "BIRD cannot read the withdrawal");
    assert!(bgp.disabled.is_empty(), "{bgp:?}");
    assert!(!bgp.in_sync, "{bgp:?}");
    assert!(
        bgp.last_error
            .as_deref()
            .is_some_and(|e| e.contains(VIP4_B)),
        "{bgp:?}"
    );
    lab.restart_nginx("b2").expect("nginx b2 again");
    wait_until("both VIPs wanted again", FOLLOW, || {
        node(&lab).bgp.unwrap().withheld.is_empty()
    });

    let (code, _, stderr) = lbctl_outcome(
        &lab,
        &["node", "drain", "--wait", "--quiet", "1", "--timeout", "20"],
    );
    assert_eq!(code, 0, "the drain was not taken: {stderr}");
    assert!(!announced(&bird), "drained: withdrawn by disabling");
    assert!(!holds_b(&bird), "drained: withdrawn by disabling");
    let bgp = node(&lab).bgp.unwrap();
    assert!(
        bgp.bird_config_error
            .as_deref()
            .is_some_and(|e| e.contains("syntax error")),
        "{bgp:?}"
    );
    assert_eq!(bgp.disabled, [PROTOCOL], "{bgp:?}");
    let text = lbctl_ok(&lab, &["node", "status"]);
    assert!(
        text.contains("BIRD refuses its config")
            && text.contains(&format!("disabled   {PROTOCOL}")),
        "{text}"
    );

    // Undrained, BIRD cannot read the announcement either.
    let failures = node(&lab).bgp.unwrap().failures;
    lbctl_ok(&lab, &["node", "undrain"]);
    wait_until("BIRD refused the announcement", FOLLOW, || {
        let bgp = node(&lab).bgp.unwrap();
        !bgp.in_sync && bgp.failures > failures
    });
    assert!(!announced(&bird), "the protocol stays disabled");
    std::fs::write(&bird.config, &bird_conf).expect("mend BIRD's config");
    wait_until("announced once bird.conf is mended", FOLLOW * 3, || {
        announced_now(&bird)
    });
    wait_until("in sync once bird.conf is mended", FOLLOW, || {
        node(&lab).bgp.unwrap().in_sync
    });
    let bgp = node(&lab).bgp.unwrap();
    assert_eq!(bgp.bird_config_error, None, "{bgp:?}");
    assert!(bgp.disabled.is_empty(), "{bgp:?}");

    // A stop for good while bird.conf is broken.
    std::fs::write(&bird.config, &broken).expect("break BIRD's config");
    let status = lab.interrupt("lbd").expect("SIGINT");
    let log = lab.log("lbd");
    assert!(status.success(), "{status:?}:\n{log}");
    assert!(!announced(&bird), "a stop for good withdraws:\n{log}");
    assert!(log.contains("disabling lbd's protocols"), "{log}");
    assert!(
        !lab.xdp_attached(&lb).expect("ip link"),
        "withdrawn: the program goes"
    );

    // A restart keeps the routes; a cleanup while bird.conf is broken
    // withdraws them and removes the program.
    std::fs::write(&bird.config, &bird_conf).expect("mend BIRD's config");
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd2");
    wait_until("announced again", FOLLOW, || announced_now(&bird));
    lab.terminate("lbd2").expect("SIGTERM");
    assert!(announced(&bird), "a restart keeps the routes");
    std::fs::write(&bird.config, &broken).expect("break BIRD's config");
    lab.lbd_offline_ok(&lb, "lbd2", "--cleanup");
    assert!(!announced(&bird), "the cleanup withdraws by disabling");
    assert!(!lab.xdp_attached(&lb).expect("ip link"));
    assert!(pins(&lab).is_empty(), "pins left: {:?}", pins(&lab));
}

/// A VIP on a new address added to lbd.toml before a restart that kept
/// the routes (a rolling restart): the kept address is announced at once,
/// the new one waits for its first checks as after a reload (its
/// backend's health is unknown, which counts as up). Its checks here need
/// 100 passes two seconds apart, so they stay undecided for the test,
/// and the start-up wait is long; once they decide (a reload to `rise =
/// 1`) it is announced.
#[test]
fn a_restart_announces_at_once_only_what_its_kept_routes_announced() {
    let (mut lab, lb, bird, config, _) = announcing_lab();
    lab.terminate("lbd").expect("SIGTERM");
    assert!(announced(&bird), "a restart keeps the routes");
    let added = "198.18.0.101";
    let b2 = lab.backends[1].ipv4;
    let with = |rise: u32| {
        let at = config.find("[bgp]").expect("[bgp]");
        format!(
            "{}[[vip]]\naddress = \"{added}\"\nport = 80\n[vip.health]\ncheck = \"tcp\"\ninterval_ms = 2000\nfast_interval_ms = 2000\nrise = {rise}\n  [[vip.backend]]\n  address = \"{b2}\"\n\n{}startup_wait_ms = 600000\n",
            &config[..at],
            &config[at..]
        )
    };
    lab.start_lbd_on(&lb, "lbd2", &with(100)).expect("restart");
    wait_until("the restarted lbd in sync with BIRD", FOLLOW, || {
        node(&lab).bgp.unwrap().in_sync
    });
    let bgp = node(&lab).bgp.unwrap();
    assert_eq!(bgp.startup, StartupStatus::Kept, "{bgp:?}");
    assert_eq!(bgp.announced, [std::net::IpAddr::V4(VIP4)], "{bgp:?}");
    assert_eq!(bgp.withheld.len(), 1, "{bgp:?}");
    assert_eq!(bgp.withheld[0].address.to_string(), added);
    assert_eq!(bgp.withheld[0].reason.name(), "starting");
    let in_bird = routes(&bird).expect("birdc show route");
    assert!(holds_vip(&in_bird), "{in_bird:?}");
    assert!(
        !in_bird.contains(&format!("{added}/32")),
        "announced before any check: {in_bird:?}"
    );

    lab.write_lbd_config_named("lbd2", &with(1))
        .expect("config");
    lbctl_ok(&lab, &["reload"]);
    wait_until("the new address announced once checked", FOLLOW, || {
        routes(&bird).is_ok_and(|r| r.contains(&format!("{added}/32")))
    });
    assert_eq!(
        node(&lab).bgp.unwrap().startup,
        StartupStatus::Open(Opened::Adopted)
    );
}

/// A fresh node whose backends are down everywhere announces nothing
/// while their health is still unknown (unknown counts as up): its
/// start-up gate waits for the first checks, which find them down. The
/// checks are slow here (down after three failures a second apart), so a
/// gate that opened at once would announce for about two seconds.
#[test]
fn a_fresh_node_announces_nothing_before_its_first_checks() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    // BIRD runs first, on the empty routes file a boot leaves
    // (tmpfiles.d), so lbd's first exchange reaches it at once.
    let routes = routes_file(&lab);
    std::fs::create_dir_all(routes.parent().expect("dir")).expect("routes dir");
    std::fs::write(
        &routes,
        format!("protocol static {PROTOCOL} {{\n  ipv4;\n}}\nprotocol static lbd_vips6 {{\n  ipv6;\n}}\n"),
    )
    .expect("routes file");
    let bird_conf = bird_config(&lab);
    let bird = Bird::start(&mut lab, &lb, "bird-lb", &bird_conf).expect("bird");
    lab.terminate("nginx-b1").expect("stop nginx b1");
    lab.terminate("nginx-b2").expect("stop nginx b2");
    let slow = CHECKS
        .replace("interval_ms = 500", "interval_ms = 1000")
        .replace("fast_interval_ms = 100", "fast_interval_ms = 1000");
    assert!(slow.contains("fall = 3"), "{slow}");
    assert_ne!(slow, CHECKS);
    let config = lbd_config_checked(&lab, &bird, &["b1", "b2"], &slow);
    lab.start_lbd(&config).expect("lbd");
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(3)
        || node(&lab).bgp.unwrap().startup == StartupStatus::Waiting
    {
        assert!(
            !announced(&bird),
            "announced {:?} after lbd was ready, before any check said b1 or b2 was up",
            started.elapsed()
        );
        samples += 1;
        assert!(started.elapsed() < FOLLOW, "the gate never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(samples > 20, "{samples} samples");
    let bgp = node(&lab).bgp.unwrap();
    assert_eq!(bgp.startup, StartupStatus::Open(Opened::NoPeers));
    assert_eq!(bgp.withheld.len(), 1, "{bgp:?}");
    assert_eq!(bgp.withheld[0].reason.name(), "no-healthy-backend");
    // Announced as soon as one is up: the samples could have seen it.
    lab.restart_nginx("b1").expect("nginx b1 again");
    wait_until("announced once b1 is up", FOLLOW, || announced_now(&bird));
}

/// A bird.conf without the `include` of lbd's routes file: BIRD takes
/// every reconfigure (0003) and announces nothing of lbd's. The node is
/// not in sync, `lbctl node status` says bird.conf must include the file,
/// and a drain does not pass for done (it withdraws nothing). Once the
/// include is there, lbd's next try reconfigures BIRD, which announces.
#[test]
fn a_bird_conf_without_the_include_is_not_in_sync() {
    let mut lab = Lab::start(1).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let without = "router id 198.18.0.2;\nprotocol device {}\n";
    let bird = Bird::start(&mut lab, &lb, "bird-lb", without).expect("bird");
    let config = lbd_config(&lab, &bird, &["b1"]);
    lab.start_lbd(&config).expect("lbd");
    let file = routes_file(&lab).display().to_string();
    wait_until("BIRD's reconfigure checked", FOLLOW, || {
        let bgp = node(&lab).bgp.unwrap();
        bgp.startup != StartupStatus::Waiting && bgp.failures > 0
    });
    let bgp = node(&lab).bgp.unwrap();
    assert!(!bgp.in_sync, "BIRD announces nothing of lbd's: {bgp:?}");
    assert_eq!(bgp.announced.len(), 1, "{bgp:?}");
    let error = bgp.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("include \"{file}\";")) && error.contains("bird.conf"),
        "{error}"
    );
    assert!(!announced(&bird));
    let text = lbctl_ok(&lab, &["node", "status"]);
    assert!(
        text.contains("BIRD NOT in sync") && text.contains(&file),
        "{text}"
    );
    let (code, _, stderr) = lbctl_outcome(
        &lab,
        &["node", "drain", "--wait", "--quiet", "1", "--timeout", "3"],
    );
    assert_eq!(code, 6, "the drain withdrew nothing: {stderr}");
    assert!(stderr.contains("must include"), "{stderr}");
    lbctl_ok(&lab, &["node", "undrain"]);

    // bird.conf mended (BIRD not told): lbd's retry reconfigures it.
    std::fs::write(&bird.config, bird_config(&lab)).expect("mend bird.conf");
    wait_until("in sync once the file is included", FOLLOW * 3, || {
        node(&lab).bgp.unwrap().in_sync
    });
    assert!(announced(&bird), "{:?}", bird.routes_of(PROTOCOL));
    assert_eq!(node(&lab).bgp.unwrap().last_error, None);
}

/// A BIRD that accepts and never answers (hung) holds neither lbd's loop
/// (the API answers at once) nor the unit's stop path and a cleanup: the
/// VRRP addresses leave the interface, and the exit status says that BIRD
/// failed. A hung BIRD may still announce the node, so the cleanup keeps
/// the program and its pins; once nothing listens on BIRD's socket (BIRD
/// is not running) a cleanup removes them, and still says BIRD failed. A
/// drain that BIRD never took does not pass for done.
#[test]
fn an_unreachable_bird_fails_the_stop_path_loudly_but_not_half_way() {
    let mut lab = Lab::start(1).expect("lab");
    let lb = lab.lb.clone();
    let b1 = lab.backends[0].clone();
    // VIP4 is VRRP-held (and on the interface from the lab's build),
    // VIP6 announced through a BIRD that is not there.
    let config = format!(
        "{}\n[[vip]]\naddress = \"{VIP6}\"\nport = 80\n  [[vip.backend]]\n  address = \"{}\"\n\
         \n[[vrrp]]\nvrid = 51\naddresses = [\"{VIP4}\"]\n\
         \n[bgp]\naddresses = [\"{VIP6}\"]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
        lab.lbd_config_for(&["b1"], ""),
        b1.ipv6,
        hung_bird(&lab.dir.join("hung-bird.ctl")).display(),
        routes_file(&lab).display(),
        lab.dir.join("node.state").display()
    );
    let has_vip4 = |lab: &Lab| {
        lab.addresses_of(&lb)
            .expect("addresses")
            .contains(&format!("{VIP4}/"))
    };
    assert!(has_vip4(&lab), "the lab puts the VIP on the interface");
    let pinned_config = format!("pin_dir = \"{}\"\n{config}", lab.pin_dir_of(&lb).display());
    lab.write_lbd_config_named("lbd", &pinned_config)
        .expect("config");
    let out = lab
        .lbd_offline(&lb, "lbd", "--release-vips")
        .expect("release");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "BIRD's failure is reported: {stderr}"
    );
    assert!(stderr.contains("BIRD"), "{stderr}");
    assert!(!has_vip4(&lab), "the VIP left the interface anyway");

    lab.start_lbd(&pinned_config).expect("lbd");
    // lbd's first exchange with BIRD hangs (5 s): the API answers anyway.
    for _ in 0..3 {
        let asked = Instant::now();
        node(&lab);
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "the API waited {:?} for BIRD",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, _, stderr) = lbctl_outcome(
        &lab,
        &["node", "drain", "--wait", "--quiet", "1", "--timeout", "3"],
    );
    assert_eq!(code, 6, "BIRD never took the withdrawal: {stderr}");
    assert!(
        stderr.contains("BIRD has not taken the withdrawal"),
        "{stderr}"
    );
    lab.terminate("lbd").expect("SIGTERM");
    assert!(
        lab.xdp_attached(&lb).expect("ip link"),
        "a restart keeps it"
    );
    let out = lab.lbd_offline(&lb, "lbd", "--cleanup").expect("cleanup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("BIRD"), "{stderr}");
    assert!(
        lab.xdp_attached(&lb).expect("ip link"),
        "a BIRD that does not answer may still announce the node: {stderr}"
    );
    assert!(!pins(&lab).is_empty(), "{stderr}");
    assert!(!has_vip4(&lab), "the VIP left the interface anyway");

    // BIRD gone (nothing listens on its socket): its sessions went too.
    std::fs::remove_file(lab.dir.join("hung-bird.ctl")).expect("BIRD's socket");
    let out = lab.lbd_offline(&lb, "lbd", "--cleanup").expect("cleanup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("BIRD is not running"), "{stderr}");
    assert!(
        !lab.xdp_attached(&lb).expect("ip link"),
        "detached: {stderr}"
    );
    assert!(pins(&lab).is_empty(), "pins left: {:?}", pins(&lab));
    assert!(!has_vip4(&lab));
}

/// A control socket at `path` that accepts and never greets, for as long
/// as the test runs (the lab's directory goes with the lab).
fn hung_bird(path: &std::path::Path) -> std::path::PathBuf {
    let listener = std::os::unix::net::UnixListener::bind(path).expect("hung BIRD");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    path.to_owned()
}

/// With pin_dir = "off" nothing forwards once lbd is gone: a restart
/// (SIGUSR1) withdraws like a stop and leaves no word for the stop path.
/// A reload cannot add a NAT VIP the running [bgp] would announce.
#[test]
fn an_unpinned_restart_withdraws_and_a_reload_cannot_add_an_announced_nat_vip() {
    let mut lab = Lab::start(1).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let paths = Bird::paths(&lab, "bird-lb");
    let config = format!("pin_dir = \"off\"\n{}", lbd_config(&lab, &paths, &["b1"]));
    // lbd first: it writes the routes file BIRD includes.
    lab.start_lbd(&config).expect("lbd");
    wait_until("the routes file", FOLLOW, || routes_file(&lab).exists());
    let bird_conf = bird_config(&lab);
    let bird = Bird::start(&mut lab, &lb, "bird-lb", &bird_conf).expect("bird");
    wait_until("the VIP announced", FOLLOW, || announced_now(&bird));

    // The file drops [bgp] (a restart setting) and turns the VIP to NAT:
    // the running [bgp] announces it, so the reload is refused.
    let nat = format!(
        "pin_dir = \"off\"\n{}\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n",
        lab.lbd_config_for(&["b1"], "forwarding = \"nat\"\n")
    );
    lab.write_lbd_config(&nat).expect("config");
    let (code, _, stderr) = lbctl_outcome(&lab, &["reload"]);
    assert_ne!(code, 0, "reload accepted");
    assert!(stderr.contains("announces over BGP"), "{stderr}");
    lab.write_lbd_config(&config).expect("config back");

    lab.signal("lbd", libc::SIGUSR1).expect("SIGUSR1");
    let status = lab
        .wait_exit("lbd", Duration::from_secs(10))
        .expect("lbd exits");
    // Nothing was left for a next lbd: a plain stop.
    assert!(status.success(), "{status:?}: {}", lab.log("lbd"));
    assert!(!announced(&bird), "the program is gone: so are the routes");
    assert!(
        lab.log("lbd")
            .contains("addresses went quiet; the program goes"),
        "{}",
        lab.log("lbd")
    );
    assert!(
        !lab.dir.join("lbd.restarting").exists(),
        "no word for the stop path"
    );
    lab.lbd_offline_ok(&lb, "lbd", "--release-vips");
    assert!(!announced(&bird));
}

/// Config check refuses a VIP both VRRP-held and BGP-announced, naming it.
#[test]
fn an_address_cannot_be_both_vrrp_held_and_announced() {
    let text = format!(
        "interface = \"eth0\"\n[[vip]]\naddress = \"{VIP4}\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:00:11\"\n[[vrrp]]\nvrid = 51\naddresses = [\"{VIP4}\"]\n[bgp]\naddresses = [\"{VIP4}\"]\n"
    );
    let dir = std::env::temp_dir().join(format!("lbd-bgp-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lbd.toml");
    std::fs::write(&path, text).unwrap();
    let lbctl = lb_tests::lab::lbd_binary().unwrap().with_file_name("lbctl");
    let out = std::process::Command::new(lbctl)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is held by vrrp[0]"), "{stderr}");
}

/// A two-backend lab whose LB node runs BIRD (its routes file made
/// first, empty) and lbd announcing the VIP through it: (lab, LB node,
/// BIRD, lbd's config, lbd's pid), once the route is announced.
fn announcing_lab() -> (Lab, Host, Bird, String, u32) {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let paths = Bird::paths(&lab, "bird-lb");
    let config = lbd_config(&lab, &paths, &["b1", "b2"]);
    std::fs::create_dir_all(routes_file(&lab).parent().expect("dir")).expect("bgp dir");
    std::fs::write(routes_file(&lab), "").expect("routes file");
    let bird_conf = bird_config(&lab);
    let bird = Bird::start(&mut lab, &lb, "bird-lb", &bird_conf).expect("bird");
    let pid = lab.start_lbd(&config).expect("lbd");
    wait_until("announced", FOLLOW, || announced_now(&bird));
    (lab, lb, bird, config, pid)
}

/// `lbd --release-vips` with the lbd started as `name` (config
/// `<name>.toml`), as the unit's stop path runs it: systemd passes the
/// runtime directory (where the admin socket, and the record of what lbd
/// held, are).
fn release_vips_as_the_unit(lab: &Lab, name: &str) -> std::process::Output {
    let config = lab.dir.join(format!("{name}.toml"));
    std::process::Command::new("ip")
        .args(["netns", "exec", &lab.lb.netns])
        .arg(lb_tests::lab::lbd_binary().expect("lbd"))
        .args(["--config", &config.to_string_lossy(), "--release-vips"])
        .env("RUNTIME_DIRECTORY", &lab.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("lbd --release-vips")
}

/// The announcement is withdrawn from what the lbd that ran held, not
/// from what the config file says now: after the file was broken, the
/// unit's stop path still withdraws; after `[bgp]` was taken out of it,
/// the stop path withdraws, and so does the next start (it finds the
/// previous lbd's record of a routes file it does not use). Otherwise
/// BIRD would announce a stopped node for good.
#[test]
fn the_routes_are_withdrawn_whatever_the_config_has_become() {
    let (mut lab, lb, bird, config, _) = announcing_lab();
    let without_bgp = config[..config.find("[bgp]").expect("[bgp]")].to_owned();

    // A broken config at the stop path.
    lab.terminate("lbd").expect("SIGTERM");
    assert!(announced(&bird), "a restart keeps the routes");
    std::fs::write(lab.dir.join("lbd.toml"), "[bgp\nnot toml").expect("junk");
    let out = release_vips_as_the_unit(&lab, "lbd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !announced(&bird),
        "withdrawn with a broken config: {stderr}"
    );

    // [bgp] taken out of the file before the stop path.
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd2");
    wait_until("announced again", FOLLOW, || announced_now(&bird));
    std::fs::write(lab.dir.join("lbd2.toml"), &without_bgp).expect("no [bgp]");
    lab.terminate("lbd2").expect("SIGTERM");
    assert!(announced(&bird));
    let out = release_vips_as_the_unit(&lab, "lbd2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!announced(&bird), "withdrawn with [bgp] gone: {stderr}");

    // [bgp] taken out across a restart: the next start withdraws.
    lab.start_lbd_on(&lb, "lbd3", &config).expect("lbd3");
    wait_until("announced again", FOLLOW, || announced_now(&bird));
    lab.terminate("lbd3").expect("SIGTERM");
    assert!(announced(&bird));
    lab.start_lbd_on(&lb, "lbd4", &without_bgp)
        .expect("lbd4 without [bgp]");
    wait_until("withdrawn by the start without [bgp]", FOLLOW, || {
        withdrawn_now(&bird)
    });
}

/// The config of a second lbd on the LB node's `eth1` (which the test
/// adds): its own `pin_dir`, node state file and `routes_file` (the first
/// lbd's when `routes` is None) and admin socket `admin_socket`.
fn second_lbd_config(
    lab: &Lab,
    first: &str,
    admin_socket: &std::path::Path,
    routes: Option<&std::path::Path>,
) -> String {
    let node_state = lab.dir.join("state").join("node.state");
    let config = first
        .replace("interface = \"eth0\"", "interface = \"eth1\"")
        .replace(
            &lab.admin_socket().display().to_string(),
            &admin_socket.display().to_string(),
        )
        .replace(
            &node_state.display().to_string(),
            &lab.dir
                .join("state2")
                .join("node.state")
                .display()
                .to_string(),
        );
    let config = match routes {
        Some(routes) => config.replace(
            &routes_file(lab).display().to_string(),
            &routes.display().to_string(),
        ),
        None => config,
    };
    assert!(config.contains("interface = \"eth1\""), "{config}");
    format!(
        "pin_dir = \"{}-second\"\n{config}",
        lab.pin_dir_of(&lab.lb).display()
    )
}

/// A second lbd with the first one's admin socket (on another interface,
/// with its own `pin_dir` and routes file) is refused before it changes
/// anything: it would otherwise read the first lbd's record of what it
/// holds as a previous lbd's, withdraw the first lbd's routes (a routes
/// file it does not use) and overwrite the record. The first lbd's routes
/// stay announced and its record names its own interface still.
#[test]
fn a_second_lbd_with_the_same_admin_socket_changes_nothing() {
    let (mut lab, lb, bird, config, pid) = announcing_lab();
    let record_path = lab.dir.join("lbd.held.json");
    let record = std::fs::read_to_string(&record_path).expect("the first lbd's record");
    let routes = std::fs::read_to_string(routes_file(&lab)).expect("routes");
    lab.add_lb_interface(&lb, "eth1", 200).expect("eth1");

    let other_routes = lab.dir.join("bgp2").join("vips.conf");
    let second = second_lbd_config(&lab, &config, &lab.admin_socket(), Some(&other_routes));
    let path = lab.dir.join("lbd-second.toml");
    std::fs::write(&path, &second).expect("config");
    let lbd = lb_tests::lab::lbd_binary().expect("lbd");
    lab.spawn(
        "lbd-second",
        &lb.netns,
        &lbd.to_string_lossy(),
        &["--config", &path.to_string_lossy()],
    )
    .expect("spawn");
    let status = lab
        .wait_exit("lbd-second", Duration::from_secs(20))
        .expect("the second lbd exits");
    let log = lab.log("lbd-second");
    assert!(!status.success(), "{log}");
    assert!(
        announced(&bird),
        "the first lbd's routes were withdrawn:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(routes_file(&lab)).expect("routes"),
        routes,
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&record_path).expect("record"),
        record,
        "the first lbd's record was changed:\n{log}"
    );
    assert!(record.contains("\"interface\": \"eth0\""), "{record}");
    assert!(log.contains("lbd.held.json"), "{log}");
    assert!(log.contains(&format!("pid {pid}")), "{log}");
    assert!(lab.is_running("lbd"));
    assert!(!other_routes.exists(), "{log}");
}

/// Copies the reachable neighbour entries of `from` in `node`'s namespace
/// to `to`, permanent: the backends' MACs for an lbd on `to`.
fn copy_neighbours(node: &Host, from: &str, to: &str) {
    let listing = std::process::Command::new("ip")
        .args(["-n", &node.netns, "neigh", "show", "dev", from])
        .output()
        .expect("ip neigh show");
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "lladdr") else {
            continue;
        };
        let (Some(address), Some(mac)) = (words.first(), words.get(at + 1)) else {
            continue;
        };
        let status = std::process::Command::new("ip")
            .args([
                "-n",
                &node.netns,
                "neigh",
                "replace",
                address,
                "lladdr",
                mac,
                "dev",
                to,
                "nud",
                "permanent",
            ])
            .status()
            .expect("ip neigh replace");
        assert!(status.success(), "copying {address} to {to}");
    }
}

/// The record of an lbd that stopped names its routes file; another lbd
/// (another interface and admin socket) announces through that file now.
/// `lbd --release-vips` with the first lbd's config (the unit's stop path
/// run again, or by hand) leaves the file to the running lbd: its routes
/// stay announced, and the warning names the file's user.
#[test]
fn a_stale_record_does_not_withdraw_the_routes_of_a_running_lbd() {
    let (mut lab, lb, bird, config, _) = announcing_lab();
    lab.terminate("lbd").expect("SIGTERM");
    assert!(announced(&bird), "a restart keeps the routes");

    lab.add_lb_interface(&lb, "eth1", 200).expect("eth1");
    // The kernel reaches the backends through eth0 (the same subnet, the
    // first route): their MACs would never appear on eth1, and an lbd
    // there, its DSR backends without MACs, announces nothing.
    copy_neighbours(&lb, "eth0", "eth1");
    let second = second_lbd_config(&lab, &config, &lab.dir.join("lbd-eth1.sock"), None);
    let pid = lab
        .start_lbd_on(&lb, "lbd-eth1", &second)
        .expect("the second lbd");
    wait_until("announced by the second lbd", FOLLOW, || {
        lab.log("lbd-eth1")
            .contains(&format!("BIRD reconfigured announced={{{VIP4}}}"))
            && announced_now(&bird)
    });
    let out = release_vips_as_the_unit(&lab, "lbd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        announced(&bird),
        "the running lbd's routes were withdrawn: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {pid}")) && stderr.contains("left to it"),
        "{stderr}"
    );
    assert!(lab.is_running("lbd-eth1"));
}

/// `admin_socket` edited, then a restart (SIGUSR1, the unit's
/// RestartKillSignal): the lbd that ran left word at its own admin
/// socket, where its record is. The stop path, with no record at the new
/// admin socket, finds that record by the config file and keeps the
/// announcement; the next lbd takes the record over.
#[test]
fn an_admin_socket_edited_across_a_restart_keeps_the_announcement() {
    let (mut lab, lb, bird, _, _) = announcing_lab();

    let path = lab.dir.join("lbd.toml");
    let written = std::fs::read_to_string(&path).expect("config");
    let moved_socket = lab.dir.join("lbd-moved.sock");
    let moved = written.replace(
        &lab.admin_socket().display().to_string(),
        &moved_socket.display().to_string(),
    );
    assert_ne!(moved, written);
    std::fs::write(&path, &moved).expect("admin_socket edited");
    lab.signal("lbd", libc::SIGUSR1).expect("SIGUSR1");
    let status = lab.wait_exit("lbd", Duration::from_secs(10)).expect("exit");
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_STOPPED_FOR_RESTART)),
        "{}",
        lab.log("lbd")
    );
    let out = release_vips_as_the_unit(&lab, "lbd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(announced(&bird), "a restart keeps the routes: {stderr}");

    let lbd = lb_tests::lab::lbd_binary().expect("lbd");
    lab.spawn(
        "lbd-again",
        &lb.netns,
        &lbd.to_string_lossy(),
        &["--config", &path.to_string_lossy()],
    )
    .expect("lbd again");
    wait_until("lbd ready", Duration::from_secs(30), || {
        lab.log("lbd-again").contains("lbd ready")
    });
    assert!(
        lab.dir.join("lbd-moved.held.json").exists(),
        "{}",
        lab.log("lbd-again")
    );
    assert!(
        !lab.dir.join("lbd.held.json").exists(),
        "the previous record is taken over: {}",
        lab.log("lbd-again")
    );
}

/// `lbctl config dump` fails (exit 1) when the running configuration,
/// written out, would not load as a config file, still printing the text
/// and naming the error on stderr: here a `[bgp]` address whose VIP
/// `lbctl vip remove` took away (a file is refused for that). Once the
/// VIP is back, the dump loads again. BIRD need not run for this.
#[test]
fn a_dump_that_would_not_load_as_the_file_fails() {
    let mut lab = Lab::start(1).expect("lab");
    lab.wait_for_backends().expect("backends");
    let paths = Bird::paths(&lab, "bird-lb");
    let config = lbd_config(&lab, &paths, &["b1"])
        .replace("[bgp]\n", &format!("[bgp]\naddresses = [\"{VIP4}\"]\n"));
    assert!(config.contains("addresses = ["), "{config}");
    lab.start_lbd(&config).expect("lbd");
    let (code, dump, err) = lbctl_outcome(&lab, &["config", "dump"]);
    assert_eq!(code, 0, "{err}");
    assert!(dump.contains("[bgp]"), "{dump}");
    let vip = format!("{VIP4}:80/tcp");
    lbctl_ok(&lab, &["vip", "remove", &vip]);
    let (code, dump, err) = lbctl_outcome(&lab, &["config", "dump"]);
    assert_eq!(code, 1, "{dump}{err}");
    assert!(
        dump.contains("[bgp]") && dump.contains(&VIP4.to_string()),
        "the text is still printed: {dump}"
    );
    assert!(
        err.contains("does not load as a config file") && err.contains(&VIP4.to_string()),
        "{err}"
    );
    let backend = lab.backends[0].ipv4.to_string();
    lbctl_ok(&lab, &["vip", "add", &vip, "--backend", &backend]);
    let (code, _, err) = lbctl_outcome(&lab, &["config", "dump"]);
    assert_eq!(code, 0, "{err}");
}
