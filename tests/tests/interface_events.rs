//! lbd and the kernel's interface events: the interface lbd serves is
//! deleted and made again (a bond or VLAN rebuilt, a NIC's driver
//! reloaded), its `xdp_mode` or `interface` changed across a SIGTERM
//! restart. Needs root.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::{http_get, lbd_binary, Lab, LabSpec, HTTP_PORT, VIP4, VIP6},
    support::{lbctl_ok, load, status, wait_until},
};
use lb_userspace::{
    api::schema::{HealthStatus, HookLoss, NodeStatus},
    vrrp::State,
};

/// Slow enough that a loaded CI machine does not fail a healthy backend.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 1\nfall = 3\n";
/// What lbd must notice within (it looks every second).
const NOTICE: Duration = Duration::from_secs(10);

/// `lbctl node status --json`.
fn node(lab: &Lab) -> NodeStatus {
    serde_json::from_str(&lbctl_ok(lab, &["node", "status", "--json"])).expect("node status")
}

/// Why BGP withholds `address` now (None: announced, or not a candidate).
fn withheld(lab: &Lab, address: IpAddr) -> Option<String> {
    node(lab)
        .bgp
        .expect("bgp status")
        .withheld
        .iter()
        .find(|w| w.address == address)
        .map(|w| w.reason.name().to_owned())
}

/// A GET of `/` through the IPv4 VIP from the client; the backend's name.
fn get_vip4(lab: &Lab) -> anyhow::Result<String> {
    let (code, body) = http_get(&lab.client.netns, &format!("http://{VIP4}:{HTTP_PORT}/"))?;
    anyhow::ensure!(code == 200, "status {code}");
    Ok(body.trim().to_owned())
}

/// The XDP mode `ip link` shows on `ifname` of the LB node: "native"
/// (`xdp`), "generic" (`xdpgeneric`) or "none".
fn shown_mode(lab: &Lab, ifname: &str) -> &'static str {
    let details = lab.link_details(&lab.lb, ifname).expect("ip link");
    let first = details.lines().next().unwrap_or_default();
    if first.contains(" xdpgeneric ") {
        "generic"
    } else if first.contains(" xdp ") {
        "native"
    } else {
        "none"
    }
}

/// Starts lbd as process `name` on the LB node with `config` (given the
/// node's pin directory) and waits until it is ready, whatever interface
/// it attaches to.
fn start_lbd_ready(lab: &mut Lab, name: &str, config: &str) {
    let path = lab.dir.join(format!("{name}.toml"));
    let config = format!(
        "pin_dir = \"{}\"\n{config}",
        lab.pin_dir_of(&lab.lb).display()
    );
    std::fs::write(&path, config).expect("config");
    let lbd = lbd_binary().expect("lbd");
    let netns = lab.lb.netns.clone();
    lab.spawn(
        name,
        &netns,
        &lbd.to_string_lossy(),
        &["--config", &path.to_string_lossy()],
    )
    .expect("start lbd");
    wait_until("lbd ready", Duration::from_secs(30), || {
        lab.log(name).contains("lbd ready")
    });
}

/// Whether lbd's only VRRP instance is master.
fn vrrp_master(lab: &Lab) -> bool {
    status(lab)
        .vrrp
        .first()
        .is_some_and(|i| i.state == State::Master)
}

/// The LB's eth0 is deleted under a running lbd, then made again (a new
/// index): lbd notices at once that its interface and the program's link
/// are gone — the IPv6 VIP it announces over BGP is withdrawn as
/// `dataplane-detached`, its VRRP instance steps down (recording
/// "stopped"), the dead link's pin goes — keeps its maps pinned, and exits
/// non-zero once the new eth0 is up, saying why. Started again (as
/// systemd's Restart=on-failure does), lbd adopts the maps, attaches to
/// the new eth0, becomes master and serves the VIP again.
#[test]
fn a_deleted_interface_withdraws_at_once_and_lbd_restarts_onto_the_new_one() {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 1,
        backends: 2,
        static_vip: false,
    })
    .expect("lab");
    lab.wait_for_backends().expect("backends");
    let routes = lab.dir.join("bgp").join("vips.conf");
    let mut config = format!(
        "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n",
        lab.admin_socket().display()
    );
    for (vip, backends) in [
        (
            IpAddr::V4(VIP4),
            lab.backends
                .iter()
                .map(|b| IpAddr::V4(b.ipv4))
                .collect::<Vec<_>>(),
        ),
        (
            IpAddr::V6(VIP6),
            lab.backends.iter().map(|b| IpAddr::V6(b.ipv6)).collect(),
        ),
    ] {
        config.push_str(&format!(
            "\n[[vip]]\naddress = \"{vip}\"\nport = {HTTP_PORT}\n{CHECKS}"
        ));
        for backend in backends {
            config.push_str(&format!("  [[vip.backend]]\n  address = \"{backend}\"\n"));
        }
    }
    // VRRP moves the IPv4 VIP (no peer: this node becomes master); BGP
    // announces the IPv6 one (no BIRD: lbd writes its routes file and
    // retries).
    config.push_str(&format!(
        "\n[[vrrp]]\nvrid = 51\npriority = 150\nadvert_interval_ms = 100\naddresses = [\"{VIP4}\"]\n\
         \n[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
        lab.dir.join("no-bird.ctl").display(),
        routes.display(),
        lab.dir.join("state").join("node.state").display()
    ));
    let lb = lab.lb.clone();
    lab.start_lbd(&config).expect("lbd");
    wait_until("VRRP master", NOTICE, || vrrp_master(&lab));
    wait_until("the IPv4 VIP served", NOTICE, || get_vip4(&lab).is_ok());
    let announced =
        || std::fs::read_to_string(&routes).is_ok_and(|text| text.contains(&format!("{VIP6}/128")));
    wait_until("the IPv6 VIP announced", Duration::from_secs(20), announced);
    assert_eq!(withheld(&lab, IpAddr::V6(VIP6)), None);
    let (ready, _) = http_get(&lb.netns, "http://127.0.0.1:9641/readyz").expect("GET /readyz");
    assert_eq!(ready, 200, "ready while attached");
    let link_pin = lab.pin_dir_of(&lb).join("xdp-link-eth0");
    assert!(link_pin.exists(), "the XDP link is pinned");
    let old_index = lab.ifindex(&lb, "eth0").expect("eth0's index");

    lab.delete_interface(&lb).expect("delete eth0");
    let deleted = Instant::now();
    wait_until("the IPv6 VIP withheld as detached", NOTICE, || {
        withheld(&lab, IpAddr::V6(VIP6)).as_deref() == Some("dataplane-detached")
    });
    let noticed = deleted.elapsed();
    wait_until("the IPv6 VIP gone from the routes file", NOTICE, || {
        !announced()
    });
    let during = status(&lab);
    assert!(
        during.vrrp.is_empty(),
        "the VRRP instance stepped down: {:?}",
        during.vrrp
    );
    // The status and the metrics say the hook is lost (they showed the
    // hook from the start before).
    assert!(!during.attached, "the status says lbd is not attached");
    assert_eq!(
        during.hook_lost.map(|lost| lost.how),
        Some(HookLoss::InterfaceGone)
    );
    let (code, metrics) =
        http_get(&lb.netns, "http://127.0.0.1:9641/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.lines().any(|l| l == "lbd_dataplane_attached 0"),
        "{metrics}"
    );
    let state_file = lab.dir.join("lbd.vrrp-51-v4.state");
    let recorded = std::fs::read_to_string(&state_file).expect("VRRP state file");
    assert!(recorded.starts_with("stopped "), "{recorded}");
    assert!(!link_pin.exists(), "the dead link's pin is removed");
    assert!(lab.is_running("lbd"), "lbd waits for the interface");
    let log = lab.log("lbd");
    assert!(log.contains("the interface is gone"), "{log}");
    // Not ready while nothing is attached (it was before the deletion).
    let readyz = |lab: &Lab| {
        http_get(&lab.lb.netns, "http://127.0.0.1:9641/readyz")
            .expect("GET /readyz")
            .0
    };
    wait_until("/readyz to say not ready", NOTICE, || readyz(&lab) == 503);

    lab.recreate_interface(&lb).expect("eth0 again");
    let new_index = lab.ifindex(&lb, "eth0").expect("eth0's new index");
    assert_ne!(new_index, old_index, "a new interface");
    let exit = lab
        .wait_exit("lbd", Duration::from_secs(15))
        .expect("lbd exits once eth0 is back");
    assert_eq!(exit.code(), Some(1), "a failure, for Restart=on-failure");
    let log = lab.log("lbd");
    assert!(
        log.contains(&format!(
            "it was index {old_index}) and is back as index {new_index}"
        )),
        "{log}"
    );
    assert!(
        !lab.xdp_attached(&lb).expect("ip link"),
        "nothing attached yet"
    );

    // What systemd does next: the unit's stop path, then lbd again.
    // The stop path must work after this failure too. This lab runs no
    // BIRD (its socket is missing), so the one thing it cannot do is tell
    // BIRD: it says so and exits 1 having done the rest; any other
    // outcome is a broken stop path.
    let released = lab
        .lbd_offline(&lb, "lbd", "--release-vips")
        .expect("lbd --release-vips");
    let stderr = String::from_utf8_lossy(&released.stderr);
    assert_eq!(released.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("withdrawing the BGP announcements through BIRD (the rest was done)")
            && stderr.contains("no-bird.ctl"),
        "lbd --release-vips fails only for the missing BIRD: {stderr}"
    );
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd again");
    let after = status(&lab);
    assert!(after.adopted, "the pinned maps were kept for the next lbd");
    assert!(link_pin.exists(), "pinned again on the new eth0");
    wait_until("VRRP master again", NOTICE, || vrrp_master(&lab));
    wait_until("the IPv4 VIP served again", NOTICE, || {
        get_vip4(&lab).is_ok()
    });
    wait_until(
        "the IPv6 VIP announced again",
        Duration::from_secs(20),
        announced,
    );
    eprintln!(
        "RELIABILITY: LB interface deleted: detached and withdrawn after {:.2} s; lbd exited (code 1) once eth0 was back (index {old_index} -> {new_index}); restarted lbd adopted the maps and serves the VIP",
        noticed.as_secs_f64()
    );
}

/// A VRRP master stopped for a restart (SIGTERM: its record says
/// `restarting`) whose eth0 is deleted and made again before the next
/// lbd starts (a bond rebuilt by a deploy that restarts lbd too): the
/// pinned link died with the old device, so the new eth0 runs no program
/// although the pins are all there. The next lbd, within the resume
/// window, does not resume mastership (it would take the VIP, local to
/// the node, with no program in front of it: the kernel would reset every
/// connection until the attach): it says why and starts as backup, then
/// (no peer here) becomes master once its program runs. A restart stop
/// whose interface is gone before the tick saw it leaves no `restarting`
/// record either.
#[test]
fn a_master_restarted_onto_a_recreated_interface_starts_as_backup() {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 1,
        backends: 2,
        static_vip: false,
    })
    .expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let config = format!(
        "{}\n[[vrrp]]\nvrid = 51\npriority = 150\nadvert_interval_ms = 1000\naddresses = [\"{VIP4}\"]\n",
        lab.lbd_config_for(&["b1", "b2"], CHECKS)
    );
    lab.start_lbd(&config).expect("lbd");
    wait_until("VRRP master", NOTICE, || vrrp_master(&lab));
    wait_until("the IPv4 VIP served", NOTICE, || get_vip4(&lab).is_ok());
    let state_file = lab.dir.join("lbd.vrrp-51-v4.state");
    lab.terminate("lbd").expect("SIGTERM");
    let recorded = std::fs::read_to_string(&state_file).expect("VRRP state file");
    assert!(recorded.starts_with("restarting "), "{recorded}");

    lab.delete_interface(&lb).expect("delete eth0");
    lab.recreate_interface(&lb).expect("eth0 again");
    assert!(
        lab.pin_dir_of(&lb).join("xdp-link-eth0").exists(),
        "the dead link is still pinned"
    );
    assert!(!lab.xdp_attached(&lb).expect("ip link"), "nothing runs");
    // Within the resume window whatever the time the steps above took:
    // the record as the stop left it, with the time of now.
    let advertised = recorded.split_whitespace().nth(2).unwrap_or("100");
    std::fs::write(
        &state_file,
        format!("restarting {} {advertised}\n", monotonic_ns()),
    )
    .expect("state file");
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd again");
    let log = lab.log("lbd2");
    assert!(log.contains("not resuming mastership"), "{log}");
    assert!(
        log.contains("the interface does not run the program the last lbd left forwarding"),
        "{log}"
    );
    assert!(log.contains("re-created"), "says why: {log}");
    assert!(!log.contains("resuming without a failover"), "{log}");
    assert!(status(&lab).adopted, "the maps are adopted all the same");
    wait_until("VRRP master again", NOTICE, || vrrp_master(&lab));
    wait_until("the IPv4 VIP served again", NOTICE, || {
        get_vip4(&lab).is_ok()
    });

    // Stopped for a restart just as eth0 goes, before the housekeeping
    // tick saw it: the stop finds the program left running nowhere and
    // steps down rather than leave a record the next lbd would resume on.
    lab.delete_interface(&lb).expect("delete eth0");
    lab.terminate("lbd2").expect("SIGTERM");
    let recorded = std::fs::read_to_string(&state_file).expect("VRRP state file");
    assert!(!recorded.starts_with("restarting "), "{recorded}");
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock VRRP state files use.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) },
        0
    );
    u64::try_from(now.tv_sec).expect("time") * 1_000_000_000
        + u64::try_from(now.tv_nsec).expect("time")
}

/// `xdp_mode` changed across a SIGTERM restart, under load: the new lbd
/// attaches anew in the configured mode (the pinned link kept the old one)
/// while the tc program carries the packets, so no request fails; and
/// back again.
#[test]
fn an_xdp_mode_change_takes_effect_at_a_restart_without_failing_a_request() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let base = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    let with_mode = |mode: &str| format!("xdp_mode = \"{mode}\"\n{base}");
    lab.start_lbd(&with_mode("native")).expect("lbd");
    assert_eq!(shown_mode(&lab, "eth0"), "native");
    let load = load(&lab, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    for (step, mode) in ["generic", "native"].into_iter().enumerate() {
        lab.terminate(if step == 0 { "lbd" } else { "lbd-generic" })
            .expect("SIGTERM");
        let name = format!("lbd-{mode}");
        lab.start_lbd_on(&lb, &name, &with_mode(mode))
            .expect("restart");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(shown_mode(&lab, "eth0"), mode);
        let running = status(&lab);
        assert_eq!(
            running.xdp_mode.map(|m| m.name()),
            Some(mode),
            "{running:?}"
        );
        assert!(running.adopted, "the maps are adopted");
        let log = lab.log(&name);
        assert!(log.contains("xdp_mode changed"), "{log}");
        assert!(
            log.contains("the tc program carries packets"),
            "a bridge at tc while XDP is attached anew: {log}"
        );
        assert!(
            lab.tc_program_ids(&lb).expect("tcx").is_empty(),
            "the bridge is gone"
        );
    }
    let results = load.finish().expect("load");
    let failed = client::failures(&results);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across two xdp_mode changes: {failed:?}",
        failed.len(),
        results.len()
    );
    eprintln!(
        "RELIABILITY: xdp_mode native -> generic -> native across SIGTERM restarts: {} requests, 0 failed",
        results.len()
    );
}

/// `interface` changed from eth0 to eth1 across a SIGTERM restart: the new
/// lbd attaches to eth1 and removes the link the previous one pinned on
/// eth0, so the old program no longer runs there with the shared maps.
#[test]
fn an_interface_change_detaches_the_program_from_the_old_interface() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let on_eth0 = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    lab.start_lbd(&on_eth0).expect("lbd on eth0");
    assert!(get_vip4(&lab).is_ok(), "served on eth0");
    lab.add_lb_interface(&lb, "eth1", 200).expect("eth1");
    lab.terminate("lbd").expect("SIGTERM");
    let pins = lab.pin_dir_of(&lb);
    assert!(pins.join("xdp-link-eth0").exists(), "left pinned");
    assert!(lab.xdp_attached(&lb).expect("ip link"), "left forwarding");

    let on_eth1 = on_eth0.replace("interface = \"eth0\"", "interface = \"eth1\"");
    assert_ne!(on_eth0, on_eth1);
    start_lbd_ready(&mut lab, "lbd-eth1", &on_eth1);
    assert_eq!(shown_mode(&lab, "eth1"), "native", "attached to eth1");
    assert_eq!(
        shown_mode(&lab, "eth0"),
        "none",
        "the program on eth0 is detached"
    );
    assert!(!pins.join("xdp-link-eth0").exists());
    assert!(pins.join("xdp-link-eth1").exists());
    let log = lab.log("lbd-eth1");
    assert!(
        log.contains("pinned link on another interface removed"),
        "{log}"
    );
    assert!(status(&lab).adopted, "the maps are adopted");
    // The VIP moves to eth1, eth0 goes down: served through eth1.
    let vip = format!("{VIP4}/32");
    for args in [
        ["addr", "del", vip.as_str(), "dev", "eth0"].as_slice(),
        &["link", "set", "eth0", "down"],
        &["addr", "add", vip.as_str(), "dev", "eth1"],
    ] {
        let mut full = vec!["-n", lb.netns.as_str()];
        full.extend_from_slice(args);
        lb_tests::support::ip(&full);
    }
    lb_tests::support::ip(&["-n", &lab.client.netns, "neigh", "flush", "all"]);
    wait_until("the VIP served through eth1", NOTICE, || {
        get_vip4(&lab).is_ok()
    });
}

/// lbd's tc link detached under a live interface (`bpftool link detach`):
/// the kernel no longer runs lbd's program there, lbd says so and exits
/// non-zero to be started again, and the next lbd attaches again and
/// serves.
#[test]
fn a_link_detached_under_a_live_interface_makes_lbd_restart() {
    let mut lab = Lab::start(2).expect("lab");
    lab.for_attach("tc");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let config = format!(
        "attach = \"tc\"\n{}",
        lab.lbd_config_for(&["b1", "b2"], CHECKS)
    );
    lab.start_lbd(&config).expect("lbd");
    wait_until("the VIP served", NOTICE, || get_vip4(&lab).is_ok());
    let pin = lab.pin_dir_of(&lb).join("tc-link-eth0");
    let shown = std::process::Command::new("bpftool")
        .args(["-j", "link", "show", "pinned"])
        .arg(&pin)
        .output()
        .expect("bpftool");
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("bpftool JSON");
    let id = shown["id"].as_u64().expect("the link's id").to_string();
    let detached = std::process::Command::new("bpftool")
        .args(["link", "detach", "id", &id])
        .status()
        .expect("bpftool");
    assert!(detached.success());
    assert!(lab.tc_program_ids(&lb).expect("tcx").is_empty());

    let exit = lab
        .wait_exit("lbd", NOTICE)
        .expect("lbd exits with its program detached");
    assert_eq!(exit.code(), Some(1));
    let log = lab.log("lbd");
    assert!(
        log.contains("lbd's program was detached from interface eth0"),
        "{log}"
    );
    assert!(!pin.exists(), "the dead link's pin is removed");
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd again");
    assert!(status(&lab).adopted, "the maps were kept");
    assert_eq!(lab.tc_program_ids(&lb).expect("tcx").len(), 1);
    wait_until("the VIP served again", NOTICE, || get_vip4(&lab).is_ok());
}

/// A program another tool puts at the head of the tcx ingress of `eth0`
/// on the LB node (`BPF_F_BEFORE`, as `bpftool net attach tcx_ingress …
/// prepend` does): two instructions, `return TC_ACT_OK`, which ends the
/// chain for every packet, so nothing behind it sees one. Returns its
/// program id and its link's fd: closing the fd detaches it.
fn put_pass_program_ahead(lab: &Lab) -> (u32, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd as _;
    /// `bpf(2)` with `attr`; the fd or id it answers.
    fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> anyhow::Result<i32> {
        // SAFETY: `attr` is a zeroed `union bpf_attr` of its full size.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
        anyhow::ensure!(rc >= 0, "bpf({cmd}): {}", std::io::Error::last_os_error());
        Ok(i32::try_from(rc)?)
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    const BPF_TCX_INGRESS: u32 = 46;
    const BPF_F_BEFORE: u32 = 1 << 3;
    lb_tests::lab::in_netns(
        &lab.lb.netns,
        || -> anyhow::Result<(u32, std::os::fd::OwnedFd)> {
            // r0 = 0 (TC_ACT_OK); exit.
            let insns: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
            let license = b"GPL\0";
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
            attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
            attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
            attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
            attr[48..55].copy_from_slice(b"f9_pass");
            // SAFETY: the kernel answered a new fd.
            let program =
                unsafe { std::os::fd::OwnedFd::from_raw_fd(bpf(BPF_PROG_LOAD, &mut attr)?) };
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
            anyhow::ensure!(ifindex != 0, "no eth0");
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(
                &u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&program))?.to_ne_bytes(),
            );
            attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
            attr[8..12].copy_from_slice(&BPF_TCX_INGRESS.to_ne_bytes());
            attr[12..16].copy_from_slice(&BPF_F_BEFORE.to_ne_bytes());
            // SAFETY: the kernel answered a new fd.
            let link =
                unsafe { std::os::fd::OwnedFd::from_raw_fd(bpf(BPF_LINK_CREATE, &mut attr)?) };
            // The program's id: `struct bpf_prog_info` starts with its type
            // and id.
            let mut info = [0u8; 256];
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(
                &u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&program))?.to_ne_bytes(),
            );
            attr[4..8].copy_from_slice(&256u32.to_ne_bytes());
            attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
            bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
            let id = u32::from_ne_bytes(info[4..8].try_into()?);
            Ok((id, link))
        },
    )
    .expect("in the LB's namespace")
    .expect("a TC_ACT_OK program ahead on the tcx ingress")
}

/// With `attach = "tc"`, another tool puts a program at the head of the
/// tcx ingress that passes every packet on (`TC_ACT_OK` ends the chain):
/// lbd's program is still attached but sees no packet. lbd notices at its
/// next look as it does a detach: it logs the loss at error naming the
/// program ahead, turns not ready, withdraws and steps down, and exits
/// for its service manager to start it again. That start refuses the
/// foreign program, naming it; once it is gone lbd serves again. It
/// attaches at the head of the chain itself.
#[test]
fn a_program_put_ahead_of_lbds_at_tc_counts_as_a_lost_hook() {
    let mut lab = Lab::start(2).expect("lab");
    lab.for_attach("tc");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let config = format!(
        "attach = \"tc\"\n{}",
        lab.lbd_config_for(&["b1", "b2"], CHECKS)
    );
    lab.start_lbd(&config).expect("lbd");
    wait_until("the VIP served", NOTICE, || get_vip4(&lab).is_ok());
    let (id, link) = put_pass_program_ahead(&lab);
    assert_eq!(
        lab.tc_program_ids(&lb).expect("tcx").first(),
        Some(&id),
        "the pass program is at the head of the chain"
    );

    let exit = lab
        .wait_exit("lbd", Duration::from_secs(5))
        .expect("lbd notices the program ahead of its own within 5 s");
    assert_eq!(exit.code(), Some(1));
    let log = lab.log("lbd");
    assert!(
        log.contains(&format!("program id {id} (f9_pass) runs ahead of lbd's")),
        "{log}"
    );
    assert!(
        log.contains(&format!("program id {id} was put ahead of lbd's")),
        "{log}"
    );

    let refused = lab.start_lbd_on(&lb, "lbd2", &config);
    let error = format!(
        "{:#}",
        refused.expect_err("a start with the program ahead is refused")
    );
    assert!(
        error.contains(&format!("already has tc program id {id} (f9_pass)")),
        "{error}"
    );
    drop(link);
    lab.start_lbd_on(&lb, "lbd3", &config).expect("lbd again");
    wait_until("the VIP served again", NOTICE, || get_vip4(&lab).is_ok());
}

/// Leaves a cls_bpf filter running lbd's tc program on the ingress of the
/// LB's eth0, as an lbd with `attach = "tc"` on a kernel without tcx
/// leaves it when killed (the kernel keeps such filters); returns its
/// program's id.
fn leave_cls_bpf_filter(lab: &Lab) -> u32 {
    use aya::programs::tc::{qdisc_add_clsact, NlOptions, TcAttachOptions, TcAttachType};
    use lb_userspace::dataplane::{Dataplane, MapSizes};
    lb_tests::lab::in_netns(&lab.lb.netns, || -> anyhow::Result<u32> {
        let mut dataplane = Dataplane::load(MapSizes {
            max_vips: 1,
            conntrack: 1024,
            nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
            half_open: 1024,
        })?;
        // Already there (lbd's tc hook, a filter left before) is fine.
        let _ = qdisc_add_clsact("eth0");
        let program = dataplane.tc_program()?;
        let id = program.attach_with_options(
            "eth0",
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions::default()),
        )?;
        let program_id = program.info()?.id();
        // Kept past this process's handles, as a dead lbd's is.
        std::mem::forget(program.take_link(id)?);
        Ok(program_id)
    })
    .expect("in the LB's namespace")
    .expect("a cls_bpf filter")
}

/// The netlink dump lbd's hook check reads (whether its cls_bpf filter,
/// attached without tcx, is still in place) reports the program of a
/// cls_bpf filter lbd's tc fallback would place. Where the kernel has tcx
/// lbd never attaches that way, so the dump is asked directly: one that
/// lost the filter's program id or name would have lbd take its own hook
/// for gone.
#[test]
fn the_ingress_dump_reports_the_program_of_a_cls_bpf_filter() {
    let lab = Lab::start(1).expect("lab");
    let id = leave_cls_bpf_filter(&lab);
    let programs = lb_tests::lab::in_netns(&lab.lb.netns, || -> anyhow::Result<Vec<u32>> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(lb_userspace::daemon::cls_bpf_ingress_programs("eth0"))
    })
    .expect("in the LB's namespace")
    .expect("the ingress dump");
    assert_eq!(programs, vec![id], "{}", ingress_filters(&lab));
}

/// `tc filter show dev eth0 ingress` on the LB node; a tc that fails
/// fails the test.
fn ingress_filters(lab: &Lab) -> String {
    lb_tests::lab::tc_filter_listing(&lab.lb.netns, "eth0", "ingress")
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The program id of the `tc_lb` cls_bpf filter on the LB's eth0 ingress.
fn tc_lb_filter(lab: &Lab) -> Option<u32> {
    let listing = ingress_filters(lab);
    let line = listing.lines().find(|line| line.contains("tc_lb"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "id")?;
    words.next()?.parse().ok()
}

/// A cls_bpf filter a dead lbd left (what `attach = "tc"` uses on kernels
/// without tcx, and the kernel keeps) is removed by the next lbd once its
/// own hook runs, and by `lbd --cleanup`. The dead lbd is a real one (its
/// tc path forced to cls_bpf, killed with SIGKILL), on the pins the next
/// one adopts: a filter whose maps no lbd of this `pin_dir` pinned is
/// another lbd's, and refused (`ownership` tests).
#[test]
fn the_tc_filters_a_dead_lbd_left_are_removed() {
    let mut lab = Lab::start(2).expect("lab");
    lab.for_attach("tc");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let config = format!(
        "attach = \"tc\"\n{}",
        lab.lbd_config_for(&["b1", "b2"], CHECKS)
    );
    let path = lab.dir.join("lbd-dead.toml");
    std::fs::write(
        &path,
        format!("pin_dir = \"{}\"\n{config}", lab.pin_dir_of(&lb).display()),
    )
    .expect("config");
    let lbd = lbd_binary().expect("lbd");
    lab.spawn(
        "lbd-dead",
        &lb.netns,
        "env",
        &[
            "LBD_TC_ATTACH=cls_bpf",
            &lbd.to_string_lossy(),
            "--config",
            &path.to_string_lossy(),
        ],
    )
    .expect("the lbd to die");
    wait_until("the first lbd ready", Duration::from_secs(30), || {
        lab.log("lbd-dead").contains("lbd ready")
    });
    lab.kill("lbd-dead").expect("SIGKILL");
    let left = tc_lb_filter(&lab).expect("the dead lbd's filter");
    let has = |lab: &Lab, id: u32| ingress_filters(lab).contains(&format!(" id {id} "));
    assert!(has(&lab, left), "{}", ingress_filters(&lab));
    lab.start_lbd(&config).expect("lbd");
    assert!(!has(&lab, left), "removed: {}", ingress_filters(&lab));
    let log = lab.log("lbd");
    assert!(
        log.contains("a previous lbd left on the interface's ingress removed"),
        "{log}"
    );
    wait_until("the VIP served", NOTICE, || get_vip4(&lab).is_ok());

    let left = leave_cls_bpf_filter(&lab);
    assert!(has(&lab, left));
    lab.terminate("lbd").expect("SIGTERM");
    lab.lbd_offline_ok(&lb, "lbd", "--cleanup");
    assert!(!has(&lab, left), "removed: {}", ingress_filters(&lab));
    assert!(lab.tc_program_ids(&lb).expect("tcx").is_empty());
}

/// `interface` changed from eth0 to eth1 across a SIGTERM restart of an
/// lbd with `attach = "tc"`: a cls_bpf filter left on eth0 (what the tc
/// fallback of a kernel without tcx leaves, and the kernel keeps) would
/// keep running the old program on the shared maps. The new lbd sweeps
/// the interface the previous one recorded, not only its own.
#[test]
fn the_tc_filters_left_on_the_previous_interface_are_removed() {
    let mut lab = Lab::start(2).expect("lab");
    lab.for_attach("tc");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let on_eth0 = format!(
        "attach = \"tc\"\n{}",
        lab.lbd_config_for(&["b1", "b2"], CHECKS)
    );
    lab.start_lbd(&on_eth0).expect("lbd on eth0");
    lab.add_lb_interface(&lb, "eth1", 200).expect("eth1");
    lab.terminate("lbd").expect("SIGTERM");
    let left = leave_cls_bpf_filter(&lab);
    let has = |lab: &Lab, id: u32| ingress_filters(lab).contains(&format!(" id {id} "));
    assert!(has(&lab, left), "{}", ingress_filters(&lab));

    let on_eth1 = on_eth0.replace("interface = \"eth0\"", "interface = \"eth1\"");
    assert_ne!(on_eth0, on_eth1);
    start_lbd_ready(&mut lab, "lbd-eth1", &on_eth1);
    assert!(
        !has(&lab, left),
        "the filter on the previous interface is removed: {}",
        ingress_filters(&lab)
    );
}

/// `lbd --cleanup` after the interface is gone (deleted while lbd was
/// stopped, or under it): the addresses and filters went with it, the
/// pins did not. The cleanup says so, removes every pin and succeeds.
#[test]
fn a_cleanup_removes_the_pins_of_an_interface_that_is_gone() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let lb = lab.lb.clone();
    let config = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    lab.start_lbd(&config).expect("lbd");
    lab.terminate("lbd").expect("SIGTERM");
    let pins = lab.pin_dir_of(&lb);
    let pinned = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != "lbd-owner")
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(!pinned(&pins).is_empty(), "pinned for the next lbd");
    lab.delete_interface(&lb).expect("delete eth0");
    let out = lab.lbd_offline(&lb, "lbd", "--cleanup").expect("cleanup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("interface eth0 no longer exists"),
        "{stderr}"
    );
    assert_eq!(pinned(&pins), Vec::<String>::new(), "every pin removed");
}

/// The checks' counters of the IPv4 VIP's backends: (checks,
/// transitions, failures for `interface_down`).
fn check_counts(lab: &Lab) -> Vec<(u64, u64, u64)> {
    status(lab).vips[0]
        .backends
        .iter()
        .map(|b| {
            let check = b.check.clone().expect("a check");
            let down = check
                .failures_by_reason
                .get("interface_down")
                .copied()
                .unwrap_or(0);
            (check.checks, check.transitions, down)
        })
        .collect()
}

/// A flap of lbd's own link takes no backend down: meanwhile its checks
/// fail, but for the node's reason, not the backends' (`interface_down`),
/// and move no streak; once the link is back they pass on. The checks are
/// fast (200 ms apart, down after 2 failures) and the link's loss fails
/// them at once (its routes go): they would take every backend down before
/// lbd's once-a-second look at its link, so a failed check asks the
/// kernel about the link itself.
#[test]
fn a_flap_of_lbds_own_link_takes_no_backend_down() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let checks = "[vip.health]\ncheck = \"tcp\"\ninterval_ms = 200\nfast_interval_ms = 100\ntimeout_ms = 200\nrise = 1\nfall = 2\n";
    let config = lab.lbd_config_for(&["b1", "b2"], checks);
    lab.start_lbd(&config).expect("lbd");
    wait_until("both backends up", NOTICE, || {
        status(&lab).vips[0]
            .backends
            .iter()
            .all(|b| b.health == HealthStatus::Up)
    });
    let before = check_counts(&lab);
    let lb = lab.lb.clone();

    lab.set_link(&lb, false).expect("link down");
    // Ten failed checks of each backend while the link is down.
    wait_until("checks failing with the link down", NOTICE, || {
        check_counts(&lab)
            .iter()
            .zip(&before)
            .all(|(now, was)| now.2 >= was.2 + 10)
    });
    lab.set_link(&lb, true).expect("link up");
    let down = check_counts(&lab);
    // Five checks of each backend since, with the link up.
    wait_until("checks with the link back", NOTICE, || {
        check_counts(&lab)
            .iter()
            .zip(&down)
            .all(|(now, was)| now.0 >= was.0 + 5)
    });

    let after = status(&lab);
    for (backend, was) in after.vips[0].backends.iter().zip(&before) {
        let check = backend.check.as_ref().expect("a check");
        assert_eq!(
            backend.health,
            HealthStatus::Up,
            "{}: {check:?}",
            backend.address
        );
        assert_eq!(check.transitions, was.1, "{}: {check:?}", backend.address);
        assert_eq!(
            check.last.as_deref(),
            Some("success"),
            "{}",
            backend.address
        );
    }
    let log = lab.log("lbd");
    assert!(
        log.contains("interface down: health check failures count against no backend"),
        "{log}"
    );
}
