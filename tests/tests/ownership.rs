//! One lbd per data plane: a second lbd on the same interface (same or
//! another `pin_dir`, its admin socket in any directory, at either
//! hook), `lbd --cleanup` and `--release-vips` are refused while an lbd
//! owns it, naming that lbd's pid and config; an interface that runs a
//! program lbd did not pin (an XDP program, another lbd's tc program on
//! tcx or in a cls_bpf filter) is refused with the way out; lbd under
//! `ip netns exec` refuses a bpffs it would have to mount itself; an
//! `interface` moved across a restart gets its `forwarding` back.
//! Also what lbd says at start-up and shutdown: non-root, `--version`,
//! `pin_dir = "off"` on SIGTERM, no colour codes in logs. Needs root.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::{lbd_binary, Host, Lab, ROUTED_BACKEND_PORT, VIP4},
    support::wait_until,
};

/// HTTP checks that a loaded 2-core machine cannot fail by delaying a
/// probe or two (500 ms to answer, 3 failures in a row): no test here
/// measures how fast a check finds a backend gone, and a healthy backend
/// taken out would move or break kept-alive connections.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 3\n";

/// How long a refused lbd may take to exit.
const REFUSAL: Duration = Duration::from_secs(20);

/// A lab with `backends` nginx backends and lbd (process `lbd`) serving
/// `serving`; returns the lab, lbd's pid and its config file.
fn lab_with_lbd(backends: usize, serving: &[&str]) -> (Lab, u32, PathBuf) {
    let mut lab = Lab::start(backends).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = lab.lbd_config_for(serving, CHECKS);
    let pid = lab.start_lbd(&config).expect("lbd");
    wait_alive(&lab, serving.len());
    let path = lab.dir.join("lbd.toml");
    (lab, pid, path)
}

/// Waits until `count` backends of the first VIP are alive.
fn wait_alive(lab: &Lab, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let alive = lab
            .status()
            .map(|s| s.vips[0].backends.iter().filter(|b| b.alive).count())
            .unwrap_or(0);
        if alive == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} of {count} backends alive after 15 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The lab's config for lbd on the LB node with `admin_socket` and
/// `pin_dir` of its own.
fn config_with(lab: &Lab, serving: &[&str], admin_socket: &Path, pin_dir: &str) -> String {
    let config = lab.lbd_config_for(serving, CHECKS).replace(
        &format!("admin_socket = \"{}\"", lab.admin_socket().display()),
        &format!("admin_socket = \"{}\"", admin_socket.display()),
    );
    format!("pin_dir = \"{pin_dir}\"\n{config}")
}

/// Starts lbd as process `name` on the LB node with `config` (written to
/// `<dir>/<name>.toml`), expects it to refuse and exit non-zero, and
/// returns what it logged.
fn expect_refusal(lab: &mut Lab, name: &str, config: &str) -> String {
    expect_refusal_with(lab, name, config, &[])
}

/// Starts lbd as process `name` on the LB node with `config` (written to
/// `<dir>/<name>.toml`) and the `VAR=value` pairs of `env` in its
/// environment (through `env`, which runs lbd in its place: one pid).
fn spawn_lbd(lab: &mut Lab, name: &str, config: &str, env: &[&str]) -> u32 {
    lab.write_lbd_config_named(name, config).expect("config");
    let path = lab.dir.join(format!("{name}.toml")).display().to_string();
    let lbd = lbd_binary().expect("lbd").display().to_string();
    let netns = lab.lb.netns.clone();
    let mut args = env.to_vec();
    args.extend([lbd.as_str(), "--config", path.as_str()]);
    lab.spawn(name, &netns, "env", &args).expect("spawn lbd")
}

/// [`spawn_lbd`], then waits until lbd says it is ready (or fails with
/// its log if it exits first); returns its pid.
fn start_lbd_with(lab: &mut Lab, name: &str, config: &str, env: &[&str]) -> u32 {
    let pid = spawn_lbd(lab, name, config, env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab.log(name).contains("lbd ready") {
        assert!(
            lab.is_running(name),
            "{name} exited during start-up:\n{}",
            lab.log(name)
        );
        assert!(
            Instant::now() < deadline,
            "{name} was not ready within 30 s:\n{}",
            lab.log(name)
        );
        thread::sleep(Duration::from_millis(100));
    }
    pid
}

/// A refusal by the node-wide interface lock (`log`: the refused lbd's)
/// names the interface and its namespace, and the holder: its pid and
/// the first lbd's config (`<dir>/lbd.toml`).
fn assert_refusal_names_the_holder(lab: &Lab, log: &str, pid: u32) {
    assert!(
        log.contains("interface eth0 (network namespace net:["),
        "{log}"
    );
    assert!(log.contains(&format!("pid {pid}")), "{log}");
    assert!(
        log.contains(&lab.dir.join("lbd.toml").display().to_string()),
        "the refusal must name the first lbd's config:\n{log}"
    );
}

/// [`expect_refusal`] with `env` in lbd's environment (see [`spawn_lbd`]).
fn expect_refusal_with(lab: &mut Lab, name: &str, config: &str, env: &[&str]) -> String {
    spawn_lbd(lab, name, config, env);
    let status = lab
        .wait_exit(name, REFUSAL)
        .unwrap_or_else(|e| panic!("{name} was not refused: {e:#}\n{}", lab.log(name)));
    let log = lab.log(name);
    assert!(!status.success(), "{name} exited 0:\n{log}");
    log
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A second lbd with another admin socket but the same interface and
/// `pin_dir` is refused before it touches the pins: the message names the
/// first lbd's pid and config, the program is not replaced, and a runtime
/// change made through the first lbd stays in force (the second one's file
/// would have put the backend back).
#[test]
fn a_second_lbd_on_the_same_pin_dir_is_refused_and_the_first_keeps_serving() {
    let (mut lab, pid, first_config) = lab_with_lbd(2, &["b1", "b2"]);
    let lb = lab.lb.clone();
    let out = lab
        .lbctl(&["backend", "remove", "198.18.0.100:80/tcp", "198.18.0.12"])
        .expect("lbctl");
    assert!(out.status.success(), "{}", stderr(&out));
    let program = lab.xdp_program_id(&lb).expect("ip link").expect("attached");

    let second = config_with(
        &lab,
        &["b1", "b2"],
        &lab.dir.join("second.sock"),
        &lab.pin_dir_of(&lb).display().to_string(),
    );
    let log = expect_refusal(&mut lab, "lbd-second", &second);
    assert!(log.contains(&format!("pid {pid}")), "{log}");
    assert!(
        log.contains(&first_config.display().to_string()),
        "the refusal must name the first lbd's config:\n{log}"
    );
    assert!(!log.contains("adopting"), "{log}");

    assert_eq!(
        lab.xdp_program_id(&lb).expect("ip link"),
        Some(program),
        "the program was replaced"
    );
    assert!(lab.is_running("lbd"));
    let status = lab.status().expect("status of the first lbd");
    let backends: Vec<IpAddr> = status.vips[0].backends.iter().map(|b| b.address).collect();
    assert_eq!(backends, vec![lab.backends[0].ipv4], "{backends:?}");
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 30).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(
        tally.by_backend.keys().collect::<Vec<_>>(),
        vec!["b1"],
        "the first lbd's runtime change was undone: {:?}",
        tally.by_backend
    );
    assert!(!lab.dir.join("second.sock").exists());
}

/// A second lbd with another `pin_dir` is refused by the interface's lock
/// while the first runs; once the first is killed (its program stays,
/// pinned in its own `pin_dir`), it is refused because the interface runs
/// a program it did not pin, with the way out. Neither refusal leaves
/// anything pinned in its `pin_dir`. The right `pin_dir` then adopts.
#[test]
fn a_second_lbd_with_another_pin_dir_is_refused_and_pins_nothing() {
    let (mut lab, pid, first_config) = lab_with_lbd(1, &["b1"]);
    let lb = lab.lb.clone();
    let program = lab.xdp_program_id(&lb).expect("ip link").expect("attached");
    let pins = lab.pin_dir_of(&lb);
    let other_pins = pins.with_file_name(format!(
        "{}-other",
        pins.file_name().expect("name").to_string_lossy()
    ));
    let other = config_with(
        &lab,
        &["b1"],
        &lab.dir.join("other.sock"),
        &other_pins.display().to_string(),
    );
    let log = expect_refusal(&mut lab, "lbd-other", &other);
    assert!(log.contains(&format!("pid {pid}")), "{log}");
    assert!(log.contains(&first_config.display().to_string()), "{log}");
    assert!(
        !other_pins.exists(),
        "a refused lbd left {}",
        other_pins.display()
    );

    lab.kill("lbd").expect("kill -9");
    assert_eq!(lab.xdp_program_id(&lb).expect("ip link"), Some(program));
    let log = expect_refusal(&mut lab, "lbd-other2", &other);
    assert!(
        log.contains(&format!("already has XDP program id {program}")),
        "{log}"
    );
    assert!(log.contains("--cleanup"), "{log}");
    assert!(log.contains("ip link set dev eth0 xdp off"), "{log}");
    assert!(!log.contains("File exists"), "{log}");
    assert!(
        !other_pins.exists(),
        "a refused lbd left {}",
        other_pins.display()
    );
    assert_eq!(lab.xdp_program_id(&lb).expect("ip link"), Some(program));

    // The lbd that pinned it takes it back.
    let config = std::fs::read_to_string(&first_config).expect("config");
    lab.start_lbd_on(&lb, "lbd3", &config).expect("restart");
    assert!(lab.log("lbd3").contains("adopting"), "{}", lab.log("lbd3"));
}

/// `lbd --cleanup` and `--release-vips` are refused while an lbd owns the
/// data plane, also with a config whose admin socket nobody answers on;
/// after SIGTERM, `--cleanup` removes it.
#[test]
fn cleanup_and_release_vips_are_refused_while_lbd_runs() {
    let (mut lab, pid, _) = lab_with_lbd(1, &["b1"]);
    let lb = lab.lb.clone();
    let program = lab.xdp_program_id(&lb).expect("ip link").expect("attached");
    let pins = lab.pin_dir_of(&lb);
    let elsewhere = config_with(
        &lab,
        &["b1"],
        &lab.dir.join("elsewhere.sock"),
        &pins.display().to_string(),
    );
    lab.write_lbd_config_named("elsewhere", &elsewhere)
        .expect("config");
    for (name, flag) in [
        ("elsewhere", "--cleanup"),
        ("elsewhere", "--release-vips"),
        ("lbd", "--cleanup"),
    ] {
        let out = lab.lbd_offline(&lb, name, flag).expect("lbd offline");
        let text = stderr(&out);
        assert!(
            !out.status.success(),
            "{name} {flag} was not refused:\n{text}"
        );
        assert!(text.contains(&format!("pid {pid}")), "{flag}: {text}");
        assert_eq!(
            lab.xdp_program_id(&lb).expect("ip link"),
            Some(program),
            "{flag} touched the program:\n{text}"
        );
        assert!(pins.join("xdp-link-eth0").exists(), "{flag}: {text}");
    }
    assert!(lab.holds_vip(&lb).expect("ip addr"), "--release-vips ran");
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 20).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    let status = lab.terminate("lbd").expect("SIGTERM");
    assert!(status.success(), "{}", lab.log("lbd"));
    assert!(lab.xdp_attached(&lb).expect("ip link"));
    let out = lab
        .lbd_offline(&lb, "elsewhere", "--cleanup")
        .expect("lbd --cleanup");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!lab.xdp_attached(&lb).expect("ip link"));
    assert!(!pins.exists(), "pins left: {}", pins.display());
}

/// Under `ip netns exec` (a private mount namespace with its own /sys), a
/// `pin_dir` that is not on a BPF filesystem would have to be mounted by
/// lbd in a namespace that ends with it: refused, with the fix.
#[test]
fn a_bpffs_lbd_would_mount_in_its_own_mount_namespace_is_refused() {
    let mut lab = Lab::start(1).expect("lab");
    let lb = lab.lb.clone();
    let pins = lab.dir.join("not-bpffs").join("lbd");
    let config = config_with(
        &lab,
        &["b1"],
        &lab.admin_socket(),
        &pins.display().to_string(),
    );
    let log = expect_refusal(&mut lab, "lbd", &config);
    assert!(log.contains("mount namespace"), "{log}");
    assert!(log.contains("ip netns exec"), "{log}");
    assert!(log.contains("mount -t bpf bpf"), "{log}");
    assert!(log.contains("pin_dir = \"off\""), "{log}");
    assert!(!pins.exists(), "{}", pins.display());
    assert!(!lab.xdp_attached(&lb).expect("ip link"));
}

/// lbd started without privileges says once that it needs root (or
/// CAP_BPF and CAP_NET_ADMIN), not a list of failed BPF calls.
#[test]
fn a_start_without_privileges_says_it_needs_root() {
    let lab = Lab::start(1).expect("lab");
    let config = lab.lbd_config_for(&["b1"], CHECKS);
    lab.write_lbd_config_named("lbd", &config).expect("config");
    let path = lab.dir.join("lbd.toml");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.lb.netns])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(lbd_binary().expect("lbd"))
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv lbd");
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("root"), "{text}");
    assert!(text.contains("CAP_BPF"), "{text}");
    assert!(text.contains("CAP_NET_ADMIN"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("CAP_BPF")).count(),
        1,
        "said more than once:\n{text}"
    );
    assert!(!text.contains("failed to create map"), "{text}");
    assert!(!lab.xdp_attached(&lab.lb).expect("ip link"));
}

/// `--version` names the product, not just a binary and a number.
#[test]
fn version_names_the_product() {
    let lbd = lbd_binary().expect("lbd");
    for (binary, name) in [(lbd.clone(), "lbd"), (lbd.with_file_name("lbctl"), "lbctl")] {
        let out = Command::new(&binary)
            .arg("--version")
            .output()
            .expect("--version");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(text.contains("XDP load balancer"), "{text}");
    }
}

/// With `pin_dir = "off"` the program goes with lbd, and SIGTERM says so
/// (not that a pinned data plane keeps forwarding); a log written to a
/// file carries no colour codes.
#[test]
fn sigterm_with_pin_dir_off_says_the_program_goes_and_logs_have_no_colour() {
    let mut lab = Lab::start(1).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let config = format!("pin_dir = \"off\"\n{}", lab.lbd_config_for(&["b1"], CHECKS));
    lab.start_lbd(&config).expect("lbd");
    let status = lab.terminate("lbd").expect("SIGTERM");
    let log = lab.log("lbd");
    assert!(status.success(), "{log}");
    assert!(!lab.xdp_attached(&lb).expect("ip link"));
    assert!(!log.contains("keeps forwarding"), "{log}");
    assert!(!log.contains("still forwarding"), "{log}");
    assert!(log.contains("detached"), "{log}");
    assert!(!log.contains("\x1b["), "colour codes in a log file:\n{log}");
}

/// `LBD_TC_ATTACH=cls_bpf`: lbd's tc program in a clsact + cls_bpf filter,
/// the path of kernels before 6.6, forced on this one.
const CLS_BPF: &[&str] = &["LBD_TC_ATTACH=cls_bpf"];

/// The ids of the programs of the cls_bpf filters running `tc_lb` on the
/// ingress of `eth0` of `node` (`tc filter show`: "... bpf ... tc_lb ...
/// id <id> ..."); a tc that fails fails the test.
fn tc_lb_filters(node: &Host) -> Vec<u32> {
    let listing = lb_tests::lab::tc_filter_listing(&node.netns, "eth0", "ingress")
        .unwrap_or_else(|e| panic!("on {}: {e:#}", node.name));
    lb_tests::lab::cls_bpf_program_ids(&listing, "tc_lb")
}

/// A `pin_dir` of its own for a second lbd on the LB node (under the
/// lab's prefix, so the lab removes it).
fn other_pin_dir(lab: &Lab, tag: &str) -> PathBuf {
    let pins = lab.pin_dir_of(&lab.lb);
    pins.with_file_name(format!(
        "{}-{tag}",
        pins.file_name().expect("name").to_string_lossy()
    ))
}

/// Two lbds at tc through cls_bpf filters (kernels before 6.6), with
/// admin sockets in different directories and `pin_dir`s of their own:
/// the second is refused by the interface's lock, which no longer lives
/// beside the admin socket, naming the first, and the first's filter
/// stays and forwards (before, the second attached, then removed the
/// first's filter as a left-over; the first stepped down, was restarted
/// and removed the second's: failovers in a loop). Once the first is
/// killed, its filter runs on and the second is still refused: the
/// filter's program uses no map pinned in its `pin_dir`. The first's own
/// config takes its filter back.
#[test]
fn a_second_lbd_at_tc_with_its_admin_socket_elsewhere_leaves_the_first_ones_cls_bpf_filter() {
    let mut lab = Lab::start(2).expect("lab");
    lab.without_pass_through_xdp();
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let first_config = format!(
        "attach = \"tc\"\npin_dir = \"{}\"\n{}",
        lab.pin_dir_of(&lb).display(),
        lab.lbd_config_for(&["b1", "b2"], CHECKS)
    );
    let pid = start_lbd_with(&mut lab, "lbd", &first_config, CLS_BPF);
    assert!(lab.log("lbd").contains("LBD_TC_ATTACH=cls_bpf"));
    wait_alive(&lab, 2);
    let first = tc_lb_filters(&lb);
    assert_eq!(first.len(), 1, "one filter runs tc_lb: {first:?}");
    assert!(lab.tc_program_ids(&lb).expect("tcx").is_empty());

    let other_pins = other_pin_dir(&lab, "b");
    let second = format!(
        "attach = \"tc\"\n{}",
        config_with(
            &lab,
            &["b1", "b2"],
            &lab.dir.join("elsewhere").join("lbd-b.sock"),
            &other_pins.display().to_string(),
        )
    );
    let log = expect_refusal_with(&mut lab, "lbd-b", &second, CLS_BPF);
    assert_refusal_names_the_holder(&lab, &log, pid);
    assert_eq!(tc_lb_filters(&lb), first, "the first lbd's filter");
    assert!(lab.is_running("lbd"), "{}", lab.log("lbd"));
    assert!(!other_pins.exists(), "{}", other_pins.display());
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 30).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    // Killed: its filter runs on, and is still not the second lbd's.
    lab.kill("lbd").expect("kill -9");
    assert_eq!(tc_lb_filters(&lb), first, "left running");
    let log = expect_refusal_with(&mut lab, "lbd-b2", &second, CLS_BPF);
    assert!(
        log.contains("interface eth0 already has a tc filter (clsact + cls_bpf, priority"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "on its ingress running lbd's tc program tc_lb (id {})",
            first[0]
        )),
        "{log}"
    );
    assert!(log.contains(&other_pins.display().to_string()), "{log}");
    assert!(log.contains("--cleanup"), "{log}");
    assert!(log.contains("tc filter del dev eth0 ingress pref"), "{log}");
    assert_eq!(tc_lb_filters(&lb), first, "the killed lbd's filter");
    assert!(!other_pins.exists(), "{}", other_pins.display());
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 30).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    // Its own pin_dir's maps: the first lbd's config replaces it.
    start_lbd_with(&mut lab, "lbd2", &first_config, CLS_BPF);
    let now = tc_lb_filters(&lb);
    assert_eq!(now.len(), 1, "the old filter removed: {now:?}");
    assert_ne!(now, first, "{}", lab.log("lbd2"));
    assert!(lab.status().expect("status").adopted);
}

/// An lbd at XDP whose admin socket is in another directory is refused
/// while an lbd at tc (tcx) runs on the interface (the lock), and once
/// that lbd is killed, because its pinned tc program still runs on the
/// tcx ingress (before, an lbd at XDP never looked at tcx, and ran in
/// front of the other one).
#[test]
fn an_lbd_at_xdp_is_refused_beside_another_lbd_at_tc() {
    let mut lab = Lab::start(1).expect("lab");
    lab.without_pass_through_xdp();
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let first_config = format!("attach = \"tc\"\n{}", lab.lbd_config_for(&["b1"], CHECKS));
    let pid = lab.start_lbd(&first_config).expect("lbd at tc");
    wait_alive(&lab, 1);
    let programs = lab.tc_program_ids(&lb).expect("tcx");
    assert_eq!(programs.len(), 1, "{programs:?}");

    let other_pins = other_pin_dir(&lab, "xdp");
    let second = config_with(
        &lab,
        &["b1"],
        &lab.dir.join("elsewhere").join("lbd-xdp.sock"),
        &other_pins.display().to_string(),
    );
    let log = expect_refusal(&mut lab, "lbd-xdp", &second);
    assert_refusal_names_the_holder(&lab, &log, pid);
    assert!(!lab.xdp_attached(&lb).expect("ip link"));
    assert_eq!(lab.tc_program_ids(&lb).expect("tcx"), programs);
    assert!(!other_pins.exists(), "{}", other_pins.display());

    lab.kill("lbd").expect("kill -9");
    assert_eq!(lab.tc_program_ids(&lb).expect("tcx"), programs, "pinned");
    let log = expect_refusal(&mut lab, "lbd-xdp2", &second);
    assert!(
        log.contains(&format!(
            "interface eth0 already has lbd's tc program id {} (tc_lb) on its tcx ingress",
            programs[0]
        )),
        "{log}"
    );
    assert!(log.contains("--cleanup"), "{log}");
    assert!(!lab.xdp_attached(&lb).expect("ip link"), "{log}");
    assert_eq!(lab.tc_program_ids(&lb).expect("tcx"), programs);
    assert!(!other_pins.exists(), "{}", other_pins.display());

    // The lbd that pinned it takes it back.
    lab.start_lbd_on(&lb, "lbd2", &first_config)
        .expect("restart at tc");
    assert!(lab.log("lbd2").contains("adopting"), "{}", lab.log("lbd2"));
}

/// The per-interface IPv4 `forwarding` switch of `interface` on `node`.
fn forwarding(node: &Host, interface: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args([
            "sysctl",
            "-n",
            &format!("net.ipv4.conf.{interface}.forwarding"),
        ])
        .output()
        .expect("sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn set_forwarding_off(node: &Host, interface: &str) {
    let status = Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args([
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{interface}.forwarding=0"),
        ])
        .status()
        .expect("sysctl");
    assert!(status.success());
}

/// `interface` moved from eth0 to eth1 across a SIGTERM restart: the new
/// lbd puts back eth0's `forwarding`, which the previous one switched on
/// for a NAT VIP, and its record no longer names it (before, eth0 kept
/// forwarding until a stop for good or `--cleanup`, which would then
/// write the old value over whatever was set since).
#[test]
fn an_interface_moved_across_a_restart_gets_its_forwarding_back() {
    const NAT_ADDRESS: &str = "198.18.0.150";
    let mut lab = Lab::start_routed(1).expect("routed lab");
    let lb = lab.lb.clone();
    lb_tests::support::ip(&[
        "-n",
        &lb.netns,
        "addr",
        "add",
        &format!("{NAT_ADDRESS}/32"),
        "dev",
        "eth0",
    ]);
    let on_eth0 = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\npin_dir = \"{}\"\n\n[nat]\nsource_ipv4 = \"{NAT_ADDRESS}\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = 80\nforwarding = \"nat\"\n[vip.health]\ncheck = \"none\"\n\
         [[vip.backend]]\naddress = \"{}\"\nport = {ROUTED_BACKEND_PORT}\n",
        lab.admin_socket().display(),
        lab.pin_dir_of(&lb).display(),
        lab.backends[0].ipv4
    );
    lab.add_lb_interface(&lb, "eth1", 200).expect("eth1");
    set_forwarding_off(&lb, "eth0");
    set_forwarding_off(&lb, "eth1");
    let record = lab.dir.join("lbd.held.json");
    let eth0 = "/proc/sys/net/ipv4/conf/eth0/forwarding";

    start_lbd_with(&mut lab, "lbd", &on_eth0, &[]);
    wait_until("forwarding on for eth0", Duration::from_secs(10), || {
        forwarding(&lb, "eth0") == "1"
    });
    assert!(
        std::fs::read_to_string(&record)
            .expect("record")
            .contains(eth0),
        "the original is recorded"
    );
    assert!(lab.terminate("lbd").expect("SIGTERM").success());
    assert_eq!(forwarding(&lb, "eth0"), "1", "a restart stop leaves it on");

    let on_eth1 = on_eth0.replace("interface = \"eth0\"", "interface = \"eth1\"");
    assert_ne!(on_eth0, on_eth1);
    start_lbd_with(&mut lab, "lbd-eth1", &on_eth1, &[]);
    assert_eq!(forwarding(&lb, "eth0"), "0", "{}", lab.log("lbd-eth1"));
    wait_until("forwarding on for eth1", Duration::from_secs(10), || {
        forwarding(&lb, "eth1") == "1"
    });
    let text = std::fs::read_to_string(&record).expect("record");
    assert!(!text.contains(eth0), "{text}");
    assert!(
        text.contains("/proc/sys/net/ipv4/conf/eth1/forwarding"),
        "{text}"
    );
    // A stop for good puts back eth1's, and leaves eth0's as set since.
    lb_tests::support::ip(&[
        "netns",
        "exec",
        &lb.netns,
        "sysctl",
        "-qw",
        "net.ipv4.conf.eth0.forwarding=1",
    ]);
    assert!(lab.interrupt("lbd-eth1").expect("SIGINT").success());
    assert_eq!(forwarding(&lb, "eth1"), "0", "{}", lab.log("lbd-eth1"));
    assert_eq!(forwarding(&lb, "eth0"), "1", "{}", lab.log("lbd-eth1"));
}
