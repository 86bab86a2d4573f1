//! One lbd per data plane: a second lbd on the same interface (same or
//! another `pin_dir`), `lbd --cleanup` and `--release-vips` are refused
//! while an lbd owns it, naming that lbd's pid and config; an interface
//! that runs a program lbd did not pin is refused with the way out; lbd
//! under `ip netns exec` refuses a bpffs it would have to mount itself.
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
    lab::{lbd_binary, Lab, VIP4},
};

const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 200\nfast_interval_ms = 100\ntimeout_ms = 100\nrise = 2\nfall = 2\n";

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
    lab.write_lbd_config_named(name, config).expect("config");
    let path = lab.dir.join(format!("{name}.toml"));
    let netns = lab.lb.netns.clone();
    lab.spawn(
        name,
        &netns,
        &lbd_binary().expect("lbd").to_string_lossy(),
        &["--config", &path.to_string_lossy()],
    )
    .expect("spawn lbd");
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
