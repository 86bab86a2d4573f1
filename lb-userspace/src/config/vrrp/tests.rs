//! Tests of the `[[vrrp]]` tables: limits, lists, notify programs and
//! unicast sources.

use std::time::Duration;

use super::super::Config;
use crate::test_scratch::ScratchDir;

fn vrrp_with(line: &str) -> Result<Config, String> {
    let text = format!(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vrrp]]\nvrid = 51\n{line}\n"
    );
    Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
}

/// The warnings about `vrrp[...].priority`.
fn priority_warnings(config: &Config) -> Vec<String> {
    super::super::warnings(config)
        .into_iter()
        .filter(|w| w.field.ends_with(".priority"))
        .map(|w| w.to_string())
        .collect()
}

#[test]
fn priority_255_with_tracking_is_warned_about() {
    let config = vrrp_with("priority = 255").expect("valid");
    assert_eq!(
        priority_warnings(&config),
        ["vrrp[0].priority: 255 keeps this node master whatever it can serve: tracking is off (track_dataplane = 100, track_interface = 100, track_no_backend = 50 ignored, defaults included), so a node whose program is detached, whose link is down or whose VIPs have no healthy backend keeps the VIPs; use 254 or lower for tracking to work, or set the track_* weights to 0"]
    );
    let some = vrrp_with(
        "priority = 255
track_dataplane = 0
track_no_backend = 0",
    )
    .expect("valid");
    let warned = priority_warnings(&some);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("(track_interface = 100 ignored"),
        "{warned:?}"
    );
    // Tracking off by hand, or a priority tracking lowers: no warning.
    let off = vrrp_with(
        "priority = 255
track_dataplane = 0
track_interface = 0
track_no_backend = 0",
    )
    .expect("valid");
    assert_eq!(priority_warnings(&off), Vec::<String>::new());
    let tracked = vrrp_with("priority = 254").expect("valid");
    assert_eq!(priority_warnings(&tracked), Vec::<String>::new());
}

#[test]
fn preempt_delay_is_refused_past_what_the_machine_runs() {
    assert_eq!(
        Duration::from_millis(super::MAX_PREEMPT_DELAY_MS.into()),
        crate::vrrp::machine::MAX_PREEMPT_DELAY
    );
    let config = vrrp_with("preempt_delay_ms = 1000000").expect("the limit is fine");
    assert_eq!(config.vrrp[0].preempt_delay, Duration::from_secs(1000));
    let error = vrrp_with("preempt_delay_ms = 1000001").expect_err("past the limit");
    assert!(
        error.contains("vrrp[0].preempt_delay_ms") && error.contains("1000000"),
        "{error}"
    );
    assert!(vrrp_with("preempt_delay_ms = 3600000").is_err());
}

/// A written list past the 255 an advertisement holds is refused at
/// its 256th address, named by its index.
#[test]
fn a_written_list_past_the_cap_is_refused_at_the_first_extra_address() {
    let list = |n: usize| {
        let items: String = (0..n)
            .map(|i| format!("  \"198.18.{}.{}\",\n", 1 + i / 200, i % 200 + 1))
            .collect();
        format!("addresses = [\n{items}]")
    };
    assert_eq!(
        vrrp_with(&list(255)).expect("255 fit").vrrp[0]
            .addresses
            .len(),
        255
    );
    let error = vrrp_with(&list(256)).expect_err("past the cap");
    // The list opens on line 7; its 256th address is 256 lines on.
    assert!(
        error.starts_with(
            "lbd.toml:263:3: vrrp[0].addresses[255]: at most 255 addresses fit an advertisement"
        ),
        "{error}"
    );
}

/// An empty list is refused, as `[bgp]`'s is: read as "every VIP
/// address", it passed for a written list and slipped past the rule
/// that refuses a default-address `[[vrrp]]` beside a default `[bgp]`.
#[test]
fn an_empty_address_list_is_refused() {
    let error = vrrp_with("addresses = []").expect_err("empty");
    assert!(
        error.starts_with("lbd.toml:7:13: vrrp[0].addresses: is empty: list the addresses to move"),
        "{error}"
    );
    let beside_bgp = vrrp_with(
        "addresses = []
[bgp]",
    )
    .expect_err("empty");
    assert!(
        beside_bgp.starts_with("lbd.toml:7:13: vrrp[0].addresses: is empty"),
        "{beside_bgp}"
    );
}

#[test]
fn announce_refresh_is_off_by_default_and_at_least_a_second() {
    let config = vrrp_with("").expect("valid");
    assert_eq!(config.vrrp[0].announce_refresh, None);
    let off = vrrp_with("announce_refresh_ms = 0").expect("0 is off");
    assert_eq!(off.vrrp[0].announce_refresh, None);
    let on = vrrp_with("announce_refresh_ms = 1000").expect("valid");
    assert_eq!(on.vrrp[0].announce_refresh, Some(Duration::from_secs(1)));
    let dumped = crate::config::to_toml(&on);
    assert!(dumped.contains("announce_refresh_ms = 1000"), "{dumped}");
    assert_eq!(Config::from_toml_str(&dumped, "dump").expect("dump"), on);
    assert!(!crate::config::to_toml(&config).contains("announce_refresh_ms"));
    let error = vrrp_with("announce_refresh_ms = 999").expect_err("too often");
    assert!(
        error.contains("vrrp[0].announce_refresh_ms") && error.contains("at least 1000 ms"),
        "{error}"
    );
    assert!(vrrp_with("announce_refresh_ms = 86400001").is_err());
    assert!(vrrp_with("announce_refresh_ms = \"1s\"").is_err());
}

/// A directory of its own under the temp dir (removed on drop), made
/// by this (root) process with mode 0755, as the labs make theirs.
struct TempDir(ScratchDir);

impl TempDir {
    fn new(name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = ScratchDir::new(&format!("notify-check-{name}"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self(dir)
    }

    /// A script `name` in it with `mode`.
    fn script(&self, name: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.0.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The notify program runs as root with lbd's capabilities: one that
/// another user could change is refused at load, named with its mode.
#[test]
fn a_notify_program_writable_by_others_is_refused() {
    let dir = TempDir::new("mode");
    let script = dir.script("notify.sh", 0o777);
    let error =
        vrrp_with(&format!("notify = \"{}\"", script.display())).expect_err("writable by others");
    assert!(
        error.contains("vrrp[0].notify")
            && error.contains(&script.display().to_string())
            && error.contains("writable by group or others")
            && error.contains("0777"),
        "{error}"
    );
    chmod(&script, 0o775);
    assert!(vrrp_with(&format!("notify = \"{}\"", script.display())).is_err());
    // As the labs write theirs: a 0755 script in a 0755 (or 0700)
    // directory made by root under the sticky /tmp.
    chmod(&script, 0o755);
    let config = vrrp_with(&format!("notify = \"{}\"", script.display())).expect("a safe script");
    assert_eq!(config.vrrp[0].notify.as_deref(), Some(script.as_path()));
    chmod(dir.0.path(), 0o700);
    assert_eq!(
        crate::vrrp::notify_program::check_notify_program(&script),
        Ok(())
    );
}

/// A directory on the path that others may write lets them swap the
/// program: refused, unless it is sticky (like /tmp) and what follows
/// belongs to root.
#[test]
fn a_directory_others_may_write_is_refused_unless_sticky() {
    let dir = TempDir::new("dir");
    let sub = dir.0.join("bin");
    std::fs::create_dir(&sub).expect("mkdir");
    chmod(&sub, 0o755);
    let script = sub.join("notify.sh");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    chmod(&script, 0o755);
    assert_eq!(
        crate::vrrp::notify_program::check_notify_program(&script),
        Ok(())
    );
    chmod(dir.0.path(), 0o777);
    let error = vrrp_with(&format!("notify = \"{}\"", script.display()))
        .expect_err("a directory writable by others");
    assert!(
        error.contains(&dir.0.path().display().to_string())
            && error.contains("writable by group or others")
            && error.contains("0777"),
        "{error}"
    );
    chmod(dir.0.path(), 0o1777);
    assert_eq!(
        crate::vrrp::notify_program::check_notify_program(&script),
        Ok(())
    );
    chmod(dir.0.path(), 0o775);
    assert!(matches!(
        crate::vrrp::notify_program::check_notify_program(&script),
        Err(crate::vrrp::notify_program::NotifyProblem::Unsafe(_))
    ));
}

/// Another user's program is refused (root may chown to test it).
#[test]
fn a_notify_program_of_another_user_is_refused() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let dir = TempDir::new("owner");
    let script = dir.script("notify.sh", 0o755);
    std::os::unix::fs::chown(&script, Some(65534), Some(65534)).expect("chown");
    let error =
        vrrp_with(&format!("notify = \"{}\"", script.display())).expect_err("owned by nobody");
    assert!(
        error.contains(&script.display().to_string()) && error.contains("uid 65534"),
        "{error}"
    );
    // The same for a directory on its path.
    std::os::unix::fs::chown(&script, Some(0), Some(0)).expect("chown");
    std::os::unix::fs::chown(&dir.0, Some(65534), Some(65534)).expect("chown");
    let error = crate::vrrp::notify_program::check_notify_program(&script)
        .expect_err("a directory of nobody's");
    assert!(
        matches!(&error, crate::vrrp::notify_program::NotifyProblem::Unsafe(why) if why.contains("uid 65534")),
        "{error:?}"
    );
}

/// A program not there yet (deployed later, or a file checked on
/// another host) is left to the check before each run; what exists
/// of its path is checked now.
#[test]
fn a_missing_notify_program_is_left_to_the_run() {
    let dir = TempDir::new("missing");
    let script = dir.0.join("notify.sh");
    assert!(vrrp_with(&format!("notify = \"{}\"", script.display())).is_ok());
    assert!(matches!(
        crate::vrrp::notify_program::check_notify_program(&script),
        Err(crate::vrrp::notify_program::NotifyProblem::Missing(_))
    ));
    chmod(dir.0.path(), 0o777);
    assert!(vrrp_with(&format!("notify = \"{}\"", script.display())).is_err());
}

/// A document with a NAT address, an IPv4 and an IPv6 VIP, an IPv4
/// instance moving 198.18.0.100 and 198.18.0.60 with `extra` (line 13)
/// and an IPv6 instance with a unicast peer.
fn src_doc(extra: &str) -> Result<Config, String> {
    let text = format!(
        "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
         [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vip]]\naddress = \"2001:2::100\"\nport = 80\n\
         [[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\", \"198.18.0.60\"]\n{extra}\n\
         [[vrrp]]\nvrid = 52\naddresses = [\"2001:2::100\"]\nunicast_peers = [\"2001:2::3\"]\n"
    );
    Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
}

/// `unicast_src_ip` names the node's own address adverts to unicast
/// peers go from (keepalived's key): off by default, dumped when set,
/// and refused, naming the key and the instance, without unicast
/// peers, of the other family, or on an address that moves (a VIP, a
/// NAT or `[[vrrp]]` address) or is a peer's.
#[test]
fn unicast_src_ip_is_an_own_fixed_address_of_the_instance_family() {
    let peers = "unicast_peers = [\"198.18.0.3\"]";
    let none = src_doc(peers).expect("valid");
    assert!(!crate::config::to_toml(&none).contains("unicast_src_ip"));
    let set = src_doc(&format!("{peers}\nunicast_src_ip = \"198.18.0.7\""))
        .expect("an address of this node that never moves");
    let dumped = crate::config::to_toml(&set);
    assert!(
        dumped.contains("unicast_src_ip = \"198.18.0.7\""),
        "{dumped}"
    );
    assert_eq!(Config::from_toml_str(&dumped, "dump").expect("dump"), set);
    // A restart setting, as the rest of [[vrrp]]: a reload says so.
    assert_eq!(none.restart_only_changes(&set), vec!["vrrp"]);
    assert_eq!(set.restart_only_changes(&set), Vec::<&str>::new());
    let error = src_doc("unicast_src_ip = \"198.18.0.7\"").expect_err("no peers");
    assert!(
        error.starts_with("lbd.toml:13:18: vrrp[0].unicast_src_ip: applies to unicast_peers only"),
        "{error}"
    );
    for (source, detail) in [
        (
            "2001:2::7",
            "2001:2::7 is IPv6 but vrrp[0] moves IPv4 addresses",
        ),
        ("198.18.0.100", "198.18.0.100 is an address vrrp[0] moves"),
        ("198.18.0.60", "198.18.0.60 is an address vrrp[0] moves"),
        ("198.18.0.50", "198.18.0.50 is the [nat] source_ipv4"),
        ("198.18.0.3", "198.18.0.3 is one of vrrp[0]'s unicast_peers"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.18", "multicast"),
    ] {
        let error = src_doc(&format!("{peers}\nunicast_src_ip = \"{source}\"")).expect_err(source);
        assert!(
            error.starts_with("lbd.toml:14:18: vrrp[0].unicast_src_ip: ") && error.contains(detail),
            "{source}: {error}"
        );
    }
    // The other instance's VIP, and an IPv6 instance's own family.
    let error = src_doc(&format!("{peers}\nunicast_src_ip = \"198.18.0.100\"")).expect_err("a VIP");
    assert!(error.contains("moves with VRRP"), "{error}");
    let v6 = |source: &str| {
        let text = format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"2001:2::100\"\nport = 80\n\
             [[vip]]\naddress = \"2001:2::101\"\nport = 80\n\
             [[vrrp]]\nvrid = 52\nunicast_peers = [\"2001:2::3\"]\nunicast_src_ip = \"{source}\"\n"
        );
        Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
    };
    assert!(v6("2001:2::7").is_ok());
    let error = v6("198.18.0.7").expect_err("IPv4 for IPv6");
    assert!(
        error.contains("vrrp[0].unicast_src_ip: 198.18.0.7 is IPv4 but vrrp[0] moves IPv6 addresses (it lists no addresses, so it takes the family of the first VIP)"),
        "{error}"
    );
    let error = v6("2001:2::101").expect_err("a VIP");
    assert!(
        error.contains("vrrp[0].unicast_src_ip: 2001:2::101 is an address vrrp[0] moves"),
        "{error}"
    );
    assert!(src_doc(&format!("{peers}\nunicast_src_ip = 7")).is_err());
}

/// TTL 255 from unicast peers too by default; `unicast_peer_hops`
/// allows routers between them, at most 254, and is dumped when set.
#[test]
fn unicast_peer_hops_defaults_to_0_and_is_at_most_254() {
    let config = vrrp_with("").expect("valid");
    assert_eq!(config.vrrp[0].unicast_peer_hops, 0);
    assert!(!crate::config::to_toml(&config).contains("unicast_peer_hops"));
    let peers = "unicast_peers = [\"198.18.0.3\"]";
    let two = vrrp_with(&format!("{peers}\nunicast_peer_hops = 2")).expect("valid");
    assert_eq!(two.vrrp[0].unicast_peer_hops, 2);
    let dumped = crate::config::to_toml(&two);
    assert!(dumped.contains("unicast_peer_hops = 2"), "{dumped}");
    assert_eq!(Config::from_toml_str(&dumped, "dump").expect("dump"), two);
    assert_eq!(
        vrrp_with(&format!("{peers}\nunicast_peer_hops = 254"))
            .expect("valid")
            .vrrp[0]
            .unicast_peer_hops,
        254
    );
    let error = vrrp_with(&format!("{peers}\nunicast_peer_hops = 255")).expect_err("too many");
    assert!(
        error.contains("vrrp[0].unicast_peer_hops") && error.contains("0..=254"),
        "{error}"
    );
    assert!(vrrp_with(&format!("{peers}\nunicast_peer_hops = -1")).is_err());
    assert!(vrrp_with(&format!("{peers}\nunicast_peer_hops = \"2\"")).is_err());
    // Multicast adverts keep TTL 255: hops without peers are refused.
    let error = vrrp_with("unicast_peer_hops = 1").expect_err("no peers");
    assert!(
        error.contains("vrrp[0].unicast_peer_hops: applies to unicast_peers only"),
        "{error}"
    );
    assert_eq!(
        vrrp_with("unicast_peer_hops = 0")
            .expect("0 is the default")
            .vrrp[0]
            .unicast_peer_hops,
        0
    );
}
