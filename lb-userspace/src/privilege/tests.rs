use super::threads::apply;
use super::*;

/// Applying the plan twice on one thread (a re-sent signal queued
/// behind the first) succeeds and leaves the thread as once. Runs on a
/// thread of its own (capabilities are per thread), as root.
#[test]
fn the_plan_applied_twice_on_a_thread_succeeds() {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let keep = 1u64 << 21; // CAP_SYS_ADMIN
    let drop = 1u64 << 31 | 1u64 << 8; // CAP_SETFCAP, CAP_SETPCAP
    let (first, second, status) = std::thread::spawn(move || {
        let first = apply(keep, drop);
        let second = apply(keep, drop);
        // SAFETY: gettid cannot fail.
        let tid = unsafe { libc::gettid() };
        let status =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).expect("own status");
        (first, second, status)
    })
    .join()
    .expect("thread");
    assert_eq!(first, Ok(()));
    assert_eq!(second, Ok(()), "applied again");
    let status = ThreadStatus::parse(&status).expect("capability lines");
    assert_eq!(status.effective, CapMask(keep));
    assert_eq!(status.permitted, CapMask(keep));
    assert_eq!(status.bounding.0 & drop, 0);
    assert!(status.no_new_privs);
}

#[test]
fn a_start_needs_cap_bpf_and_cap_net_admin() {
    let none = CapMask::default();
    assert_eq!(missing_to_start(none), CapMask::of(NEEDED_TO_START));
    assert_eq!(
        missing_to_start(CapMask::of(&[
            Capability::CAP_BPF,
            Capability::CAP_NET_ADMIN
        ])),
        none
    );
    assert_eq!(
        missing_to_start(CapMask::of(&[Capability::CAP_BPF])),
        CapMask::of(&[Capability::CAP_NET_ADMIN])
    );
    // Before Linux 5.8, CAP_SYS_ADMIN does what CAP_BPF does now.
    assert_eq!(
        missing_to_start(CapMask::of(&[
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_NET_ADMIN
        ])),
        none
    );
}

#[test]
fn the_refusal_says_root_and_what_is_missing_in_one_line() {
    let message = cannot_start_message(65534, CapMask::of(NEEDED_TO_START));
    assert!(message.starts_with("lbd needs root"), "{message}");
    assert!(
        message.contains("uid 65534 without CAP_NET_ADMIN,CAP_BPF"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1);
}

fn config(extra: &str) -> Config {
    Config::from_toml_str(&format!("interface = \"eth0\"\n{extra}"), "test").unwrap()
}

#[test]
fn the_kept_set_adds_net_bind_service_only_for_a_low_port() {
    let base = CapMask::of(KEPT);
    assert_eq!(wanted(&config("")), base, "default metrics port 9641");
    assert_eq!(wanted(&config("metrics_listen = \"off\"\n")), base);
    let mut low = base;
    low.insert(LOW_PORT);
    assert_eq!(wanted(&config("metrics_listen = \"127.0.0.1:641\"\n")), low);
    assert_eq!(
        wanted(&config("metrics_listen = \"127.0.0.1:1024\"\n")),
        base
    );
    let sync = "[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vrrp]]\nvrid = 1\npriority = 100\n\
        sync_listen = \"198.18.0.2:540\"\nsync_peer = \"198.18.0.3:7540\"\nsync_key_file = \"/etc/lbd/sync.key\"\n";
    assert_eq!(wanted(&config(sync)), low);
}

#[test]
fn masks_print_and_combine() {
    let mask = CapMask::of(&[Capability::CAP_NET_RAW, Capability::CAP_BPF]);
    assert_eq!(mask.to_string(), "CAP_NET_RAW,CAP_BPF");
    assert_eq!(CapMask::default().to_string(), "none");
    assert_eq!(mask.0, 1 << 13 | 1 << 39);
    assert_eq!(
        mask.minus(CapMask::of(&[Capability::CAP_BPF])),
        CapMask::of(&[Capability::CAP_NET_RAW])
    );
    let service = service_capabilities();
    for cap in KEPT.iter().chain(START_UP_ONLY).chain([&LOW_PORT]) {
        assert!(service.contains(*cap), "{cap}");
    }
    assert_eq!(
        service.capabilities().len(),
        KEPT.len() + START_UP_ONLY.len() + 1
    );
}

/// The values of `key=` lines in a unit file, split on whitespace.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .flat_map(str::split_whitespace)
        .collect()
}

#[test]
fn the_systemd_unit_allows_exactly_the_capabilities_lbd_uses() {
    let unit = include_str!("../../../deploy/systemd/lbd.service");
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let names = unit_values(unit, key);
        let mut mask = CapMask::default();
        for name in &names {
            let cap: Capability = name.parse().unwrap_or_else(|_| panic!("{key}: {name}"));
            assert!(!mask.contains(cap), "{key}: {name} twice");
            mask.insert(cap);
        }
        assert_eq!(mask, service_capabilities(), "{key} is {mask}");
    }
    assert_eq!(unit_values(unit, "NoNewPrivileges"), ["yes"]);
    assert_eq!(
        unit_values(unit, "ExecStart"),
        ["/usr/local/sbin/lbd", "--config", "/etc/lbd/lbd.toml"]
    );
    assert_eq!(
        unit_values(unit, "ExecStopPost"),
        [
            "/usr/local/sbin/lbd",
            "--config",
            "/etc/lbd/lbd.toml",
            "--release-vips"
        ]
    );
    // Open files for a node with every backend checked at once (4095),
    // both listeners full (64 each) and the maps.
    let nofile: Vec<u64> = unit_values(unit, "LimitNOFILE")
        .iter()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    assert!(
        matches!(nofile[..], [n] if n >= 8192),
        "LimitNOFILE={nofile:?}"
    );
    // The families lbd opens sockets of, and no others.
    assert_eq!(
        unit_values(unit, "RestrictAddressFamilies"),
        ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"]
    );
}

#[test]
fn status_lines_are_read() {
    let text = "Name:\tlbd\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t000000c000203000\n\
        CapEff:\t000000c000203000\nCapBnd:\t000000c000203000\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t1\nSeccomp:\t0\n";
    let status = ThreadStatus::parse(text).unwrap();
    assert_eq!(status.effective, CapMask(0xc0_0020_3000));
    assert_eq!(status.effective, CapMask::of(KEPT));
    assert!(status.no_new_privs);
    assert_eq!(status.ambient, CapMask::default());
    let plan = Plan {
        keep: CapMask::of(KEPT),
        bounding: CapMask::of(KEPT),
    };
    assert!(status.matches(&plan));
    let not_yet = text.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
    assert!(!ThreadStatus::parse(&not_yet).unwrap().matches(&plan));
    assert_eq!(ThreadStatus::parse("CapEff:\t0\n"), None);
    assert_eq!(ThreadStatus::parse(&text.replace("c000203000", "zz")), None);
}

#[test]
fn groups_resolve_by_name_and_id() {
    // Every system has group "root" with id 0.
    assert_eq!(group_id("root").unwrap(), Some(0));
    assert_eq!(group_id("no-such-group-lbd-test").unwrap(), None);
    let options = admin_socket_options(&config("admin_socket_group = \"root\"\n")).unwrap();
    assert_eq!((options.mode, options.group), (0o660, Some(0)));
    let options = admin_socket_options(&config("admin_socket_group = 1234\n")).unwrap();
    assert_eq!((options.mode, options.group), (0o660, Some(1234)));
    let options = admin_socket_options(&config("")).unwrap();
    assert_eq!((options.mode, options.group), (0o600, None));
    let error =
        admin_socket_options(&config("admin_socket_group = \"no-such-group-lbd\"\n")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "admin_socket_group: there is no group named \"no-such-group-lbd\""
    );
}
