use super::*;
use std::{
    path::Path,
    sync::{Mutex, PoisonError},
};

use super::{
    instance::{left_behind_warning, Instance},
    link::{carrier_changes, with_link_weight, LinkChange, LinkWatch, LINK_QUERY_LOG_EVERY},
    looks::{newer_look, LinkRead, Looks},
    mac_change::{MacChange, MAC_CONFIRM_LIMIT},
    notify::{run_notify, spawn_notify, wait_for_notifies, Notifies, NOTIFY_GRACE},
    record::{read_record, restart_record, resume_decision, resume_window, Record, Resumption},
    send_failures::{SendFailures, SEND_FAILURE_LOG_EVERY},
    source::{
        check_source, may_send_from, never_sources, no_source_message, pick_source,
        source_may_be_stale, source_recheck_due, waits_for_dad, SourceCheck, SourceKind,
        SOURCE_RECHECK_MIN,
    },
    status::InstanceStatus,
    transitions::{transition_steps, Step},
};
use crate::{config::Config, netlink::LinkState, vrrp::Counters};

const SECOND: u64 = 1_000_000_000;

/// A state file with `text` in a directory of its own, removed on drop.
struct StateFile(PathBuf);

impl StateFile {
    fn new(name: &str, text: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("lbd-vrrp-state-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("lbd.vrrp-51-v4.state");
        std::fs::write(&path, text).expect("write");
        Self(path)
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A notify script in a directory of its own (removed on drop) that
/// writes its process id to `pid`, sleeps `seconds`, then appends
/// "$1 $2" to `notes`.
struct Script {
    dir: PathBuf,
}

impl Script {
    fn new(name: &str, seconds: &str) -> Self {
        Self::writing(name, seconds, "$1 $2")
    }

    /// `new`, appending `line` (shell words) to `notes` instead.
    fn writing(name: &str, seconds: &str, line: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "lbd-vrrp-notify-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        // As root makes it under any umask: the run-time check refuses
        // a program in a directory others may write.
        std::fs::set_permissions(
            &dir,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .expect("chmod");
        let script = dir.join("notify.sh");
        let text = format!(
            "#!/bin/sh\necho $$ > {}\nsleep {seconds}\necho \"{line}\" >> {}\n",
            dir.join("pid").display(),
            dir.join("notes").display()
        );
        // Written by a child process, not here: a file this process
        // holds open for writing is inherited by whatever another test
        // thread forks meanwhile, and exec'ing it then fails with
        // ETXTBSY until that child execs.
        let written = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$2\" > \"$1\" && chmod 755 \"$1\"",
                "sh",
            ])
            .arg(&script)
            .arg(text)
            .status()
            .expect("sh");
        assert!(written.success(), "writing {}", script.display());
        Self { dir }
    }

    fn notes(&self) -> String {
        std::fs::read_to_string(self.dir.join("notes")).unwrap_or_default()
    }

    /// The script's process id, once it wrote it.
    fn pid(&self) -> Option<libc::pid_t> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_exit_waits_for_a_notify_still_running() {
    let script = Script::new("waits", "0.3");
    let notifies = Notifies::default();
    notifies.spawn(
        51,
        "stopped",
        run_notify(
            script.dir.join("notify.sh"),
            "stopped".to_owned(),
            "51".to_owned(),
            "ipv4",
        ),
    );
    wait_for_notifies(&[notifies], NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "stopped 51\n");
}

#[tokio::test]
async fn a_notify_running_past_the_grace_is_killed() {
    let script = Script::new("killed", "5");
    let notifies = Notifies::default();
    notifies.spawn(
        51,
        "stopped",
        run_notify(
            script.dir.join("notify.sh"),
            "stopped".to_owned(),
            "51".to_owned(),
            "ipv4",
        ),
    );
    // Running: its pid written (it sleeps past the grace below).
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        if let Some(pid) = script.pid() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the script never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(is_alive(pid), "the script ran before the grace");
    let started = Instant::now();
    wait_for_notifies(std::slice::from_ref(&notifies), Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // Killed: gone (or a zombie until tokio reaps it) shortly after,
    // with nothing left to wait for and the line never written.
    let deadline = Instant::now() + Duration::from_secs(2);
    while is_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the notify command {pid} still runs after the grace"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(notifies.take().is_empty());
    assert_eq!(script.notes(), "");
}

/// Whether process `pid` exists and is not a zombie.
fn is_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 sends nothing, only checks the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(')')?;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// An interface address as `Netlink::addresses` reports it.
fn on_interface(address: &str, prefix_len: u8, secondary: bool) -> InterfaceAddress {
    InterfaceAddress {
        address: address.parse().expect("address"),
        prefix_len,
        secondary,
        state: Default::default(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// The IPv4 primary renumbered (new added, old deleted: the new one,
/// secondary until then, promoted): adverts move to it. While the old
/// one is there it is kept, even beside another primary.
#[test]
fn the_source_follows_a_renumbered_ipv4_primary() {
    let vips = [ip("198.18.0.100")];
    let before = [
        on_interface("198.18.0.2", 24, false),
        on_interface("198.18.0.50", 24, true),
        on_interface("198.18.0.100", 32, false),
    ];
    assert_eq!(
        pick_source(&before, SourceKind::V4Primary, &vips),
        Some(ip("198.18.0.2"))
    );
    assert_eq!(
        check_source(ip("198.18.0.2"), &before, SourceKind::V4Primary, &vips),
        SourceCheck::Keep
    );
    let after = [
        on_interface("198.18.0.50", 24, false),
        on_interface("198.18.0.100", 32, false),
    ];
    assert_eq!(
        check_source(ip("198.18.0.2"), &after, SourceKind::V4Primary, &vips),
        SourceCheck::Switch(ip("198.18.0.50"))
    );
    // Another subnet's primary came first: the current one stays.
    let more = [
        on_interface("10.0.0.1", 24, false),
        on_interface("198.18.0.2", 24, false),
    ];
    assert_eq!(
        check_source(ip("198.18.0.2"), &more, SourceKind::V4Primary, &vips),
        SourceCheck::Keep
    );
    // Only a VIP and a secondary left: nothing to send from.
    let none = [
        on_interface("198.18.0.100", 32, false),
        on_interface("198.18.0.51", 24, true),
    ];
    assert_eq!(
        check_source(ip("198.18.0.2"), &none, SourceKind::V4Primary, &vips),
        SourceCheck::Gone
    );
}

/// Two IPv4 instances on eth0, the node's address re-added after
/// instance 51's VIP (a /32, which the kernel lists as primary):
/// instance 52 sends from the node's address, never from 51's VIP (nor
/// from a balanced VIP put on the interface), at start and at every
/// check.
#[test]
fn no_instance_sends_from_another_instance_vip() {
    let text = "interface = \"eth0\"\n\
        [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
        [[vip]]\naddress = \"198.18.0.200\"\nport = 80\n\
        [[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\"]\n\
        [[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.101\"]\n";
    let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
    let never = never_sources(&config);
    assert_eq!(
        never,
        [ip("198.18.0.100"), ip("198.18.0.101"), ip("198.18.0.200")]
    );
    let present = [
        on_interface("198.18.0.200", 32, false),
        on_interface("198.18.0.100", 32, false),
        on_interface("198.18.0.101", 32, false),
        on_interface("198.18.0.2", 24, false),
    ];
    assert_eq!(
        pick_source(&present, SourceKind::V4Primary, &never),
        Some(ip("198.18.0.2"))
    );
    // Picked from 51's VIP (by an lbd that knew only its own), the
    // next check moves off it.
    assert_eq!(
        check_source(ip("198.18.0.100"), &present, SourceKind::V4Primary, &never),
        SourceCheck::Switch(ip("198.18.0.2"))
    );
    let only_vips = &present[..3];
    assert_eq!(pick_source(only_vips, SourceKind::V4Primary, &never), None);
}

/// The checks tell the machine of an outage once, from the last time
/// they saw the link up, and of its end once; tracking telling of the
/// end first leaves the checks nothing to tell.
#[test]
fn the_link_watch_reports_an_outage_from_the_last_look_up() {
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    assert_eq!(watch.saw(true, t0), None);
    let up = t0 + ADDRESS_CHECK;
    assert_eq!(watch.saw(true, up), None);
    assert_eq!(
        watch.saw(false, up + ADDRESS_CHECK),
        Some(LinkChange::Down(up))
    );
    assert_eq!(watch.saw(false, up + 2 * ADDRESS_CHECK), None);
    assert_eq!(
        watch.saw(true, up + 3 * ADDRESS_CHECK),
        Some(LinkChange::Up)
    );
    assert_eq!(watch.saw(true, up + 4 * ADDRESS_CHECK), None);
    // Down, then tracking tells of the end before a check sees it.
    let later = up + 10 * ADDRESS_CHECK;
    assert_eq!(
        watch.saw(false, later),
        Some(LinkChange::Down(up + 4 * ADDRESS_CHECK))
    );
    watch.came_up(later + ADDRESS_CHECK, None);
    assert_eq!(watch.saw(true, later + 2 * ADDRESS_CHECK), None);
    // Down from the start: from the first look.
    let mut watch = LinkWatch::default();
    assert_eq!(watch.saw(false, t0), Some(LinkChange::Down(t0)));
}

/// Looks that cannot read the link (netlink failing) end an outage a
/// check saw after three of them over at least 1 s: the backup, which
/// runs no timer while its link is down, runs one again. A look that
/// works starts the count afresh; without an outage nothing changes.
#[test]
fn failed_looks_at_the_link_end_an_outage() {
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    watch.saw(true, t0);
    let mut m = Machine::new(
        settings_of(&vrrp_config(100, "198.18.0.10")),
        ip("198.18.0.2"),
    );
    m.startup(t0);
    assert_eq!(m.state(), State::Backup);
    let Some(LinkChange::Down(since)) = watch.saw(false, t0 + ADDRESS_CHECK) else {
        panic!("the outage is seen");
    };
    m.link_down(since);
    assert_eq!(m.next_deadline(), None);
    // Two failed looks, one that works (down still), two more: no end.
    let t1 = t0 + 2 * ADDRESS_CHECK;
    assert_eq!(watch.failed(t1), None);
    assert_eq!(watch.failed(t1 + ADDRESS_CHECK), None);
    assert_eq!(watch.saw(false, t1 + 2 * ADDRESS_CHECK), None);
    let t2 = t1 + 3 * ADDRESS_CHECK;
    assert_eq!(watch.failed(t2), None);
    assert_eq!(watch.failed(t2 + ADDRESS_CHECK), None);
    // Three looks but 0.9 s: not yet.
    assert_eq!(watch.failed(t2 + Duration::from_millis(900)), None);
    // 1 s: the outage counts as over, once; the timer runs again.
    let t3 = t2 + 2 * ADDRESS_CHECK;
    assert_eq!(watch.failed(t3), Some(LinkChange::Up));
    assert!(!watch.down);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
    assert_eq!(m.link_up(t3, 100), []);
    assert_eq!(m.next_deadline(), Some(t3 + m.master_down_interval()));
    assert_eq!(watch.failed(t3 + ADDRESS_CHECK), None);
    // Seen down again: from the last time a check saw it up.
    assert_eq!(
        watch.saw(false, t3 + 2 * ADDRESS_CHECK),
        Some(LinkChange::Down(t0))
    );
    // Failing looks with the link up change nothing.
    let mut watch = LinkWatch::default();
    watch.saw(true, t0);
    for k in 1..10_u32 {
        assert_eq!(watch.failed(t0 + ADDRESS_CHECK * k), None);
    }
    assert!(!watch.down);
}

/// The link's weight is the driver's, off while its checks see the
/// link down and back as they see it up, so the link-up advert carries
/// the priority tracking gives (tracking leaves the link out): with
/// the defaults (100, `track_interface` 100) 1 while down, 100 at once
/// on the link's return. Never below 1; the owner's 255 is fixed.
#[test]
fn the_link_weight_follows_the_driver_checks() {
    assert_eq!(with_link_weight(100, 100, 100, true), 1);
    assert_eq!(with_link_weight(100, 100, 100, false), 100);
    assert_eq!(with_link_weight(150, 90, 50, true), 40);
    assert_eq!(with_link_weight(150, 90, 0, true), 90);
    assert_eq!(with_link_weight(150, 1, 50, true), 1);
    assert_eq!(with_link_weight(255, 255, 100, true), 255);
    // As tracking computed it with the link in, before: the weights
    // summed, then held to 1.
    for (tracked, weight) in [(100_u8, 100_u8), (60, 30), (5, 10), (254, 0)] {
        let summed = u32::from(tracked)
            .saturating_sub(u32::from(weight))
            .clamp(1, 254);
        assert_eq!(
            u32::from(with_link_weight(200, tracked, weight, true)),
            summed
        );
    }
    // The watch's view at each step of an outage.
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    watch.saw(true, t0);
    watch.saw(false, t0 + ADDRESS_CHECK);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 1);
    watch.saw(true, t0 + 2 * ADDRESS_CHECK);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
    watch.saw(false, t0 + 3 * ADDRESS_CHECK);
    watch.came_up(t0 + 4 * ADDRESS_CHECK, None);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
}

/// With the link down every advert fails (up to 100 a second): the
/// first failure is said at once, then one line per 10 s with the
/// count left unsaid; the first advert that leaves says how many
/// failed. An advert that leaves does not reset the limit.
#[test]
fn failed_sends_are_logged_at_most_every_ten_seconds() {
    let t = Instant::now();
    let mut failures = SendFailures::default();
    assert_eq!(failures.sent(), None);
    assert_eq!(failures.failed(t), Some(0));
    for k in 1..1000_u32 {
        assert_eq!(
            failures.failed(t + Duration::from_millis(k.into()) * 10),
            None
        );
    }
    assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), Some(999));
    assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), None);
    assert_eq!(failures.sent(), Some(1002));
    assert_eq!(failures.sent(), None);
    let later = t + 2 * SEND_FAILURE_LOG_EVERY;
    assert_eq!(failures.failed(later), Some(1));
}

/// Failures between adverts that leave (a full buffer now and then)
/// are said once per 10 s, as a run of them would be, and only an
/// advert after a warned-about run says that adverts leave again.
#[test]
fn intermittent_send_failures_keep_the_rate_limit() {
    let t = Instant::now();
    let second = Duration::from_secs(1);
    let mut failures = SendFailures::default();
    assert_eq!(failures.failed(t), Some(0));
    assert_eq!(failures.sent(), Some(1));
    for k in 1..10_u32 {
        assert_eq!(failures.failed(t + second * k), None, "{k} s");
        assert_eq!(failures.sent(), None, "{k} s");
    }
    assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), Some(9));
    assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), None);
    assert_eq!(failures.sent(), Some(2));
    assert_eq!(failures.sent(), None);
}

/// A new MAC (link down, `ip link set address`, up) brings a new
/// EUI-64 link-local: adverts move to it; a global address never
/// becomes the source; while the link is down there is none.
#[test]
fn the_source_follows_a_new_ipv6_link_local() {
    let vips = [ip("2001:2::100")];
    let old = ip("fe80::a8c1:abff:fe00:2");
    let new = "fe80::a8c1:abff:fe00:99";
    let present = [
        on_interface("2001:2::2", 64, false),
        on_interface(new, 64, false),
        on_interface("2001:2::100", 128, false),
    ];
    assert_eq!(
        check_source(old, &present, SourceKind::V6LinkLocal, &vips),
        SourceCheck::Switch(ip(new))
    );
    assert_eq!(
        check_source(ip(new), &present, SourceKind::V6LinkLocal, &vips),
        SourceCheck::Keep
    );
    let down = [on_interface("2001:2::2", 64, false)];
    assert_eq!(
        check_source(old, &down, SourceKind::V6LinkLocal, &vips),
        SourceCheck::Gone
    );
}

/// An interface address in `state`.
fn in_state(
    address: &str,
    prefix_len: u8,
    state: crate::netlink::AddressState,
) -> InterfaceAddress {
    InterfaceAddress {
        state,
        ..on_interface(address, prefix_len, false)
    }
}

fn dad_failed() -> crate::netlink::AddressState {
    crate::netlink::AddressState {
        dad_failed: true,
        ..Default::default()
    }
}

fn tentative() -> crate::netlink::AddressState {
    crate::netlink::AddressState {
        tentative: true,
        ..Default::default()
    }
}

fn deprecated() -> crate::netlink::AddressState {
    crate::netlink::AddressState {
        deprecated: true,
        ..Default::default()
    }
}

/// An address whose duplicate address detection failed belongs to
/// another host: never an advert source, IPv4 or IPv6, at start or
/// at a check (the current one failing it moves off it).
#[test]
fn a_dad_failed_address_is_never_a_source() {
    let present = [
        in_state("fe80::1", 64, dad_failed()),
        on_interface("fe80::2", 64, false),
    ];
    let kind = SourceKind::V6LinkLocal;
    assert_eq!(pick_source(&present, kind, &[]), Some(ip("fe80::2")));
    assert_eq!(
        check_source(ip("fe80::1"), &present, kind, &[]),
        SourceCheck::Switch(ip("fe80::2"))
    );
    assert!(!may_send_from(&present[0], kind, &[]));
    // Not even as the fallback a tentative link-local is.
    assert_eq!(pick_source(&present[..1], kind, &[]), None);
    let v4 = [
        in_state("198.18.0.2", 24, dad_failed()),
        on_interface("198.18.0.3", 24, false),
    ];
    let kind = SourceKind::V4Primary;
    assert_eq!(pick_source(&v4, kind, &[]), Some(ip("198.18.0.3")));
    assert_eq!(
        check_source(ip("198.18.0.2"), &v4, kind, &[]),
        SourceCheck::Switch(ip("198.18.0.3"))
    );
    let global = [
        in_state("2001:2::2", 64, dad_failed()),
        on_interface("2001:2::3", 64, false),
    ];
    let kind = SourceKind::V6Global;
    assert_eq!(pick_source(&global, kind, &[]), Some(ip("2001:2::3")));
    assert_eq!(pick_source(&global[..1], kind, &[]), None);
    assert_eq!(
        check_source(ip("2001:2::2"), &global[..1], kind, &[]),
        SourceCheck::Gone
    );
}

/// After an admin down/up or a MAC change the link-local address is
/// tentative for 1-2 s: it stays the source (kept, or picked when it is
/// the only link-local: the socket sends from it, see
/// `VrrpSocket::open`), so the master is not silenced into a
/// failover; a settled one is preferred when there is one.
#[test]
fn a_tentative_link_local_stays_the_source() {
    let kind = SourceKind::V6LinkLocal;
    let old = ip("fe80::a8c1:abff:fe00:2");
    let again = [in_state("fe80::a8c1:abff:fe00:2", 64, tentative())];
    assert_eq!(check_source(old, &again, kind, &[]), SourceCheck::Keep);
    let new_mac = [
        on_interface("2001:2::2", 64, false),
        in_state("fe80::a8c1:abff:fe00:99", 64, tentative()),
    ];
    assert_eq!(
        check_source(old, &new_mac, kind, &[]),
        SourceCheck::Switch(ip("fe80::a8c1:abff:fe00:99"))
    );
    assert_eq!(
        pick_source(&new_mac, kind, &[]),
        Some(ip("fe80::a8c1:abff:fe00:99"))
    );
    assert!(!may_send_from(&new_mac[1], kind, &[]));
    assert!(!waits_for_dad(&new_mac, kind, &[]));
    let both = [
        in_state("fe80::1", 64, tentative()),
        on_interface("fe80::2", 64, false),
    ];
    assert_eq!(pick_source(&both, kind, &[]), Some(ip("fe80::2")));
}

/// An IPv6 instance with unicast peers sends from a global address of
/// the interface: a link-local source is never routed (peers behind
/// routers would hear nothing) and a keepalived peer takes adverts
/// only from the address its unicast_peer list names. Never a VIP, a
/// NAT or [[vrrp]] address, nor a tentative, DAD-failed, deprecated or
/// temporary one.
#[test]
fn ipv6_unicast_adverts_go_from_a_global_address() {
    let text = "interface = \"eth0\"\n\
        [nat]\nsource_ipv6 = \"2001:2::50\"\n\
        [[vip]]\naddress = \"2001:2::100\"\nport = 80\nforwarding = \"nat\"\n\
        [[vip.backend]]\naddress = \"2001:3::11\"\nport = 8080\n\
        [[vrrp]]\nvrid = 51\nunicast_peers = [\"2001:2::12\"]\nunicast_peer_hops = 2\n";
    let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
    let instance = &config.vrrp[0];
    let kind = SourceKind::of(Family::V6, &instance.unicast_peers);
    assert_eq!(kind, SourceKind::V6Global);
    let never = never_sources(&config);
    assert!(
        never.contains(&ip("2001:2::50")),
        "the NAT address: {never:?}"
    );
    assert!(never.contains(&ip("2001:2::100")), "the VIP: {never:?}");
    let present = [
        on_interface("2001:2::100", 128, false),
        on_interface("2001:2::50", 128, false),
        in_state("2001:2::7", 64, tentative()),
        in_state("2001:2::8", 64, dad_failed()),
        in_state("2001:2::9", 64, deprecated()),
        on_interface("2001:2::a", 64, true), // temporary
        on_interface("fe80::2", 64, false),
        on_interface("2001:2::2", 64, false),
    ];
    assert_eq!(pick_source(&present, kind, &never), Some(ip("2001:2::2")));
    for passed in &present[..7] {
        assert!(!may_send_from(passed, kind, &never), "{passed:?}");
    }
    // Without one, none: not the link-local.
    assert_eq!(pick_source(&present[..7], kind, &never), None);
    let message = no_source_message("eth0", &present[..7], kind, &never);
    for said in [
        "interface eth0 has no global IPv6 address",
        "2001:2::100 is a VIP, NAT or [[vrrp]] address",
        "2001:2::50 is a VIP, NAT or [[vrrp]] address",
        "2001:2::7 is tentative",
        "2001:2::8 is DAD-failed",
        "2001:2::9 is deprecated",
        "2001:2::a is temporary",
        "fe80::2 is link-local",
        "unicast_peer",
    ] {
        assert!(message.contains(said), "{said}: {message}");
    }
    // The group (or link-local peers only) keeps the link-local.
    assert_eq!(SourceKind::of(Family::V6, &[]), SourceKind::V6LinkLocal);
    assert_eq!(
        SourceKind::of(Family::V6, &[ip("fe80::12")]),
        SourceKind::V6LinkLocal
    );
    assert_eq!(
        pick_source(&present, SourceKind::V6LinkLocal, &never),
        Some(ip("fe80::2"))
    );
    assert_eq!(
        SourceKind::of(Family::V4, &[ip("198.18.0.3")]),
        SourceKind::V4Primary
    );
}

/// With `unicast_src_ip` adverts go from that address and never
/// another of the interface's, whatever kind it is (an IPv4
/// secondary, a deprecated or temporary IPv6 address): gone, there is
/// no source (the no-source path), back, it is kept again.
#[test]
fn a_unicast_src_ip_is_the_only_source() {
    let text = "interface = \"eth0\"\n\
        [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
        [[vrrp]]\nvrid = 51\nunicast_peers = [\"198.18.0.3\"]\nunicast_src_ip = \"198.18.0.7\"\n";
    let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
    let kind = SourceKind::of_instance(Family::V4, &config.vrrp[0]);
    assert_eq!(kind, SourceKind::Fixed(ip("198.18.0.7")));
    let without = VrrpConfig {
        unicast_src_ip: None,
        ..config.vrrp[0].clone()
    };
    assert_eq!(
        SourceKind::of_instance(Family::V4, &without),
        SourceKind::V4Primary
    );
    let never = never_sources(&config);
    let present = [
        on_interface("198.18.0.2", 24, false),
        on_interface("198.18.0.100", 32, false),
        on_interface("198.18.0.7", 24, true), // the second: secondary
    ];
    assert_eq!(pick_source(&present, kind, &never), Some(ip("198.18.0.7")));
    assert_eq!(
        check_source(ip("198.18.0.7"), &present, kind, &never),
        SourceCheck::Keep
    );
    // Gone: not the primary instead, none.
    let gone = &present[..2];
    assert_eq!(pick_source(gone, kind, &never), None);
    assert_eq!(
        check_source(ip("198.18.0.7"), gone, kind, &never),
        SourceCheck::Gone
    );
    let message = no_source_message("eth0", gone, kind, &never);
    assert!(
        message.contains("interface eth0 does not have unicast_src_ip 198.18.0.7"),
        "{message}"
    );
    // Sent from another before (a restart-only change): that one now.
    assert_eq!(
        check_source(ip("198.18.0.2"), &present, kind, &never),
        SourceCheck::Switch(ip("198.18.0.7"))
    );
    // IPv6: a deprecated or temporary unicast_src_ip still is one; a
    // tentative one is kept but not picked, a DAD-failed one is none.
    let v6 = SourceKind::Fixed(ip("2001:2::7"));
    let global = on_interface("2001:2::2", 64, false);
    for state in [deprecated(), Default::default()] {
        let present = [global.clone(), in_state("2001:2::7", 64, state)];
        assert_eq!(pick_source(&present, v6, &[]), Some(ip("2001:2::7")));
    }
    let temporary = [global.clone(), on_interface("2001:2::7", 64, true)];
    assert_eq!(pick_source(&temporary, v6, &[]), Some(ip("2001:2::7")));
    let tentative_one = [global.clone(), in_state("2001:2::7", 64, tentative())];
    assert_eq!(pick_source(&tentative_one, v6, &[]), None);
    assert!(waits_for_dad(&tentative_one, v6, &[]));
    assert_eq!(
        check_source(ip("2001:2::7"), &tentative_one, v6, &[]),
        SourceCheck::Keep
    );
    let failed = [global, in_state("2001:2::7", 64, dad_failed())];
    assert_eq!(
        check_source(ip("2001:2::7"), &failed, v6, &[]),
        SourceCheck::Gone
    );
}

/// The global source is kept as the IPv4 primary is (Keep even beside
/// a newer one, so the address a keepalived peer lists does not flap;
/// kept while only re-running DAD), followed when it goes or is
/// deprecated with a settled one beside it, Gone with none.
#[test]
fn the_global_ipv6_source_is_kept_and_followed() {
    let kind = SourceKind::V6Global;
    let current = ip("2001:2::2");
    let newer = [
        on_interface("2001:2::3", 64, false),
        on_interface("2001:2::2", 64, false),
    ];
    assert_eq!(pick_source(&newer, kind, &[]), Some(ip("2001:2::3")));
    assert_eq!(check_source(current, &newer, kind, &[]), SourceCheck::Keep);
    let redad = [
        in_state("2001:2::2", 64, tentative()),
        on_interface("fe80::2", 64, false),
    ];
    assert_eq!(check_source(current, &redad, kind, &[]), SourceCheck::Keep);
    let renumbered = [
        in_state("2001:2::2", 64, deprecated()),
        on_interface("2001:5::2", 64, false),
    ];
    assert_eq!(
        check_source(current, &renumbered, kind, &[]),
        SourceCheck::Switch(ip("2001:5::2"))
    );
    assert_eq!(
        check_source(current, &renumbered[..1], kind, &[]),
        SourceCheck::Keep,
        "deprecated, but the only one: still sent from"
    );
    let gone = [
        on_interface("fe80::2", 64, false),
        on_interface("2001:5::2", 64, false),
    ];
    assert_eq!(
        check_source(current, &gone, kind, &[]),
        SourceCheck::Switch(ip("2001:5::2"))
    );
    assert_eq!(
        check_source(current, &gone[..1], kind, &[]),
        SourceCheck::Gone
    );
    // Picked from a VIP (a config that changed), moved off it.
    assert_eq!(
        check_source(current, &newer, kind, &[current]),
        SourceCheck::Switch(ip("2001:2::3"))
    );
}

/// At start, a global source only tentative yet (an interface just
/// brought up) is waited for, not refused; none at all is refused at
/// once.
#[test]
fn the_start_waits_for_dad_of_the_only_global_address() {
    let kind = SourceKind::V6Global;
    let fresh = [
        on_interface("fe80::2", 64, false),
        in_state("2001:2::2", 64, tentative()),
    ];
    assert_eq!(pick_source(&fresh, kind, &[]), None);
    assert!(waits_for_dad(&fresh, kind, &[]));
    assert!(!waits_for_dad(&fresh[..1], kind, &[]));
    assert!(!waits_for_dad(&fresh, kind, &[ip("2001:2::2")]), "a VIP");
    let settled = [on_interface("2001:2::2", 64, false)];
    assert!(!waits_for_dad(&settled, kind, &[]));
}

/// The checksum of an IPv6 advert covers the pseudo-header with the
/// address it leaves from: a driver that moved to a global source
/// encodes with it (the same `VrrpSocket::local` the packet-info
/// control message names), so a peer's check passes.
#[test]
fn the_ipv6_checksum_uses_the_source_the_advert_leaves_from() {
    let ad = Advertisement {
        vrid: 51,
        priority: 100,
        max_adver_int_cs: 100,
        addresses: vec![ip("2001:2::100")],
    };
    let (global, peer) = (ip("2001:2::2"), ip("2001:2::12"));
    let payload = ad
        .encode(global, peer, ChecksumMode::PseudoHeader)
        .expect("encodes");
    assert!(Advertisement::decode(&payload, global, peer).is_ok());
    assert_eq!(
        Advertisement::decode(&payload, ip("fe80::2"), peer),
        Err(DecodeError::Checksum)
    );
}

/// The errors Linux gives a send from an address the node no longer
/// has prompt a look at once; others (a full buffer, no permission)
/// do not; and looks prompted by failures are spaced.
#[test]
fn failed_sends_look_at_the_source_again_now_and_then() {
    for errno in [libc::EINVAL, libc::EADDRNOTAVAIL, libc::ENETUNREACH] {
        assert!(source_may_be_stale(&std::io::Error::from_raw_os_error(
            errno
        )));
    }
    for errno in [libc::ENOBUFS, libc::EPERM, libc::EHOSTUNREACH] {
        assert!(!source_may_be_stale(&std::io::Error::from_raw_os_error(
            errno
        )));
    }
    assert!(!source_may_be_stale(&std::io::Error::other("encoding")));
    let t = Instant::now();
    assert!(source_recheck_due(None, t));
    assert!(!source_recheck_due(Some(t), t + Duration::from_millis(10)));
    assert!(source_recheck_due(Some(t), t + SOURCE_RECHECK_MIN));
}

/// What the state file at `path` means for a start at `now`.
fn decide(path: &Path, config: &VrrpConfig, now: u64) -> Resumption {
    resume_decision(read_record(path), config, now)
}

/// Only a recent restart record resumes; the per-advert master record
/// a crash leaves (a panic, then systemd's restart 2 s later) does
/// not, nor does anything else.
#[test]
fn only_a_recent_restart_record_resumes() {
    // 1 s adverts: a window of 3 s + 1/256 s, less 1 s.
    let config = vrrp_config(100, "198.18.0.10");
    let at = 100 * SECOND;
    let restarting = StateFile::new("restarting", &format!("restarting {at} 100\n"));
    assert_eq!(decide(&restarting.0, &config, at), Resumption::Resume);
    assert_eq!(
        decide(&restarting.0, &config, at + 2 * SECOND),
        Resumption::Resume
    );
    assert_eq!(
        decide(&restarting.0, &config, at + 3 * SECOND),
        Resumption::No
    );
    // A record from the future (another boot's clock) is not trusted.
    assert_eq!(decide(&restarting.0, &config, at - 1), Resumption::No);
    // A crash 0.5 s after the last advert, restarted 1 s later.
    let crashed = StateFile::new("crashed", &format!("master {at} 100\n"));
    assert_eq!(
        decide(&crashed.0, &config, at + 1_500_000_000),
        Resumption::NotAfterCrash
    );
    assert_eq!(decide(&crashed.0, &config, at + 4 * SECOND), Resumption::No);
    for (name, text) in [
        ("backup", format!("backup {at} 100\n")),
        ("stopped", format!("stopped {at} 100\n")),
        ("no-time", "restarting\n".to_owned()),
        ("bad-time", "restarting soon\n".to_owned()),
        ("unknown", format!("restart {at} 100\n")),
        ("empty", String::new()),
    ] {
        let file = StateFile::new(name, &text);
        assert_eq!(decide(&file.0, &config, at), Resumption::No, "{text:?}");
    }
    let missing = Path::new("/nonexistent/lbd.vrrp-51-v4.state");
    assert_eq!(decide(missing, &config, at), Resumption::No);
}

/// A restart turns a master record into a restart record with the
/// last advert's time and interval (the backup's timer runs from that
/// advert, not from the restart); a backup's or a stopped instance's
/// record, or none, stays as it is.
#[test]
fn a_restart_keeps_the_last_advert_in_its_record() {
    let at = 100 * SECOND;
    let master = Record::parse(&format!("master {at} 10\n"));
    let restarting = restart_record(master).expect("a restart record");
    assert_eq!(restarting.line(), format!("restarting {at} 10\n"));
    assert_eq!(Record::parse(&restarting.line()), Some(restarting));
    // An older lbd's record, without the interval, keeps none.
    let older = restart_record(Record::parse(&format!("master {at}\n")));
    assert_eq!(
        older.map(|record| record.line()),
        Some(format!("restarting {at}\n"))
    );
    for text in [format!("backup {at} 100"), format!("stopped {at} 100")] {
        assert_eq!(restart_record(Record::parse(&text)), None, "{text}");
    }
    assert_eq!(restart_record(None), None);
    // The record a restart writes resumes within the window; the one
    // before it (what a crash leaves) does not.
    let config = vrrp_config(100, "198.18.0.10");
    assert_eq!(
        resume_decision(master, &config, at + SECOND / 20),
        Resumption::NotAfterCrash
    );
    assert_eq!(
        resume_decision(Some(restarting), &config, at + SECOND / 20),
        Resumption::Resume
    );
}

/// The resume window follows the advert interval the previous lbd
/// recorded (what the backup learned from its adverts), not the one
/// the config names now; an older lbd's record, without it, falls back
/// to the config's.
#[test]
fn the_resume_window_follows_the_recorded_advert_interval() {
    // 1 s adverts: 3 × 1 s + (256 - 255) × 1 s / 256, less 0.1 s.
    let config = vrrp_config(100, "198.18.0.10");
    assert_eq!(
        resume_window(&config, None),
        Duration::from_micros(2_903_906)
    );
    // The previous lbd advertised every 100 ms: the backup takes over
    // 0.3 s after its last advert, whatever the config says now; less
    // half an interval, 50 ms.
    assert_eq!(
        resume_window(&config, Some(10)),
        Duration::from_micros(250_390)
    );
    // Every 3 s: the backup waits 9 s; less 0.1 s.
    assert_eq!(
        resume_window(&config, Some(300)),
        Duration::from_micros(8_911_718)
    );
    let at = 100 * SECOND;
    let fast = StateFile::new("fast", &format!("restarting {at} 10\n"));
    assert_eq!(
        decide(&fast.0, &config, at + SECOND / 10),
        Resumption::Resume
    );
    assert_eq!(decide(&fast.0, &config, at + SECOND), Resumption::No);
    let slow = StateFile::new("slow", &format!("restarting {at} 300\n"));
    assert_eq!(
        decide(&slow.0, &config, at + 8 * SECOND),
        Resumption::Resume
    );
    let older = StateFile::new("older", &format!("restarting {at}\n"));
    assert_eq!(decide(&older.0, &config, at + SECOND), Resumption::Resume);
    assert_eq!(
        decide(&older.0, &config, at + 2_500_000_000),
        Resumption::Resume
    );
    assert_eq!(decide(&older.0, &config, at + 3 * SECOND), Resumption::No);
}

/// The window ends a margin before the backup's timer runs out: 0.1 s,
/// at most half the advert interval (what follows the decision takes
/// milliseconds; the rest of the restart is what the window is for).
/// Up to its last nanosecond a record resumes, from its end on it does
/// not: a restart record 2.9 s after a 1 s advert (the backup waits
/// 3.004 s) resumes, one 2.95 s after does not. No interval leaves the
/// window empty.
#[test]
fn the_resume_window_keeps_a_margin_before_the_backup_takes_over() {
    let config = vrrp_config(100, "198.18.0.10");
    let at = 100 * SECOND;
    for (cs, master_down_ns, margin_ns) in [
        (100_u16, 3_003_906_000_u64, SECOND / 10),
        (300, 9_011_718_000, SECOND / 10),
        (20, 600_781_000, SECOND / 10),
        // 10 cs and less: half the interval.
        (10, 300_390_000, SECOND / 20),
        (5, 150_195_000, SECOND / 40),
        (1, 30_039_000, SECOND / 200),
    ] {
        let window = master_down_ns - margin_ns;
        assert_eq!(
            resume_window(&config, Some(cs)),
            Duration::from_nanos(window),
            "{cs} cs"
        );
        let record = Record::parse(&format!("restarting {at} {cs}"));
        assert_eq!(
            resume_decision(record, &config, at + window - 1),
            Resumption::Resume,
            "{cs} cs"
        );
        assert_eq!(
            resume_decision(record, &config, at + window),
            Resumption::No,
            "{cs} cs"
        );
    }
    let record = Record::parse(&format!("restarting {at} 100"));
    assert_eq!(
        resume_decision(record, &config, at + 2_900_000_000),
        Resumption::Resume
    );
    assert_eq!(
        resume_decision(record, &config, at + 2_950_000_000),
        Resumption::No
    );
}

/// An instance's config: VRID 51, 1 s adverts, `priority`, moving
/// `address`.
fn vrrp_config(priority: u8, address: &str) -> VrrpConfig {
    VrrpConfig {
        vrid: 51,
        priority,
        advert_interval: Duration::from_secs(1),
        preempt: true,
        preempt_delay: Duration::ZERO,
        addresses: vec![address.parse().expect("address")],
        unicast_peers: Vec::new(),
        unicast_peer_hops: 0,
        unicast_src_ip: None,
        announce_count: 1,
        announce_interval: Duration::from_millis(100),
        announce_refresh: None,
        notify: None,
        track_dataplane: 0,
        track_interface: 0,
        track_no_backend: 0,
        sync_listen: None,
        sync_peer: None,
        sync_key_file: None,
    }
}

#[test]
fn resumes_measures_against_the_shortest_master_down_interval() {
    // Ours is 3 s + (256 - 100) / 256 s = 3.609 s; a peer of priority
    // 200 (with nopreempt, so this node was master) takes over after
    // 3 s + 56 / 256 s = 3.219 s, and one of 255 after 3.004 s: the
    // window is that, less a 0.1 s margin.
    let vrrp = vrrp_config(100, "198.18.0.10");
    let now = crate::clock::monotonic_ns();
    let fresh = StateFile::new(
        "fresh",
        &format!(
            "restarting {}
",
            now - 1_900_000_000
        ),
    );
    assert!(Instance::resumes(&vrrp, Some(&fresh.0)));
    // 2.5 s (a restart with replication): still resumes.
    let restart = StateFile::new(
        "restart",
        &format!(
            "restarting {}
",
            now - 2_500_000_000
        ),
    );
    assert!(Instance::resumes(&vrrp, Some(&restart.0)));
    // 2.95 s: within the peer's 3.004 s, but not by the margin.
    let late = StateFile::new(
        "late",
        &format!(
            "restarting {}
",
            now - 2_950_000_000
        ),
    );
    assert!(!Instance::resumes(&vrrp, Some(&late.0)));
    // 3.3 s: within our own interval, but the peer may be master now.
    let taken = StateFile::new(
        "taken",
        &format!(
            "restarting {}
",
            now - 3_300_000_000
        ),
    );
    assert!(!Instance::resumes(&vrrp, Some(&taken.0)));
    let stale = StateFile::new(
        "stale",
        &format!(
            "restarting {}
",
            now - 4 * SECOND
        ),
    );
    assert!(!Instance::resumes(&vrrp, Some(&stale.0)));
    assert!(!Instance::resumes(&vrrp, None));
    // What a crash leaves, 1.2 s after the last advert: not resumed.
    let crashed = StateFile::new("crashed", &format!("master {}\n", now - 1_200_000_000));
    assert!(!Instance::resumes(&vrrp, Some(&crashed.0)));
}

/// A quick master→backup flip: the "master" command is slow, the
/// "backup" one quick. Run side by side, "backup" ended first and the
/// notes (whatever the commands drive) ended at "master" on a backup;
/// queued, each starts once the one before it ended.
#[tokio::test]
async fn notify_commands_run_in_the_order_of_the_states() {
    let script = Script::writing(
        "order",
        "$(if [ \"$1\" = master ]; then echo 0.5; else echo 0; fi)",
        "$1 $2",
    );
    let notifies = Notifies::default();
    let config = VrrpConfig {
        notify: Some(script.dir.join("notify.sh")),
        ..vrrp_config(100, "198.18.0.10")
    };
    spawn_notify(&notifies, &config, "master");
    spawn_notify(&notifies, &config, "backup");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master 51\nbackup 51\n");
    // One taken by an exit's wait still comes first: a command queued
    // later waits for it.
    spawn_notify(&notifies, &config, "master");
    let taken = notifies.take();
    spawn_notify(&notifies, &config, "stopped");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    drop(taken);
    assert_eq!(
        script.notes(),
        "master 51\nbackup 51\nmaster 51\nstopped 51\n"
    );
}

/// A flapping instance with a slow notify program: states queued
/// while one command runs are merged into the newest, so at most one
/// waits, nothing stale runs, and the last state is the last run.
#[tokio::test]
async fn states_queued_behind_a_running_notify_are_merged() {
    let script = Script::writing("merge", "0.3", "$1");
    let notifies = Notifies::default();
    let config = VrrpConfig {
        notify: Some(script.dir.join("notify.sh")),
        ..vrrp_config(100, "198.18.0.10")
    };
    for k in 0..20 {
        spawn_notify(
            &notifies,
            &config,
            if k % 2 == 0 { "master" } else { "backup" },
        );
    }
    spawn_notify(&notifies, &config, "stopped");
    let queued = notifies
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .running
        .len();
    assert!(queued <= 2, "{queued} commands queued");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master\nstopped\n");
}

/// The program is checked again before each run: one made writable
/// by others since the config was loaded is not run.
#[tokio::test]
async fn a_notify_program_changed_since_the_load_is_not_run() {
    let script = Script::writing("changed", "0", "$1");
    let program = script.dir.join("notify.sh");
    let notifies = Notifies::default();
    let config = VrrpConfig {
        notify: Some(program.clone()),
        ..vrrp_config(100, "198.18.0.10")
    };
    spawn_notify(&notifies, &config, "master");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master\n");
    std::fs::set_permissions(
        &program,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777),
    )
    .expect("chmod");
    spawn_notify(&notifies, &config, "backup");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master\n", "an unsafe program ran");
}

#[tokio::test]
async fn notify_tells_the_family_of_the_instance() {
    let script = Script::writing("family", "0", "$1 $2 $3 $LBD_VRRP_FAMILY");
    let notifies = Notifies::default();
    // One VRID, both families: the third argument tells them apart.
    let v4 = VrrpConfig {
        notify: Some(script.dir.join("notify.sh")),
        ..vrrp_config(100, "198.18.0.10")
    };
    let v6 = VrrpConfig {
        addresses: vec!["2001:db8::10".parse().expect("address")],
        ..v4.clone()
    };
    spawn_notify(&notifies, &v4, "master");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    spawn_notify(&notifies, &v6, "backup");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master 51 ipv4 ipv4\nbackup 51 ipv6 ipv6\n");
    // No command configured: nothing runs.
    spawn_notify(&notifies, &vrrp_config(100, "198.18.0.10"), "master");
    assert!(notifies.take().is_empty());
}

/// A step-down records its new state before it releases the
/// addresses: the release awaits netlink (dumps and a delete per
/// address), and a restart that aborts it meanwhile must find no
/// master record, or the next lbd resumes a mastership just lost.
#[test]
fn a_step_down_records_its_state_before_releasing_the_addresses() {
    for action in [Action::BecomeBackup, Action::BecomeInitialize] {
        let steps = transition_steps(action).expect("a transition");
        let release = steps
            .iter()
            .position(|step| *step == Step::ReleaseAddresses)
            .expect("a step-down releases the addresses");
        let recorded = steps[..release]
            .iter()
            .find_map(|step| match step {
                Step::Record(recorded) => Some(*recorded),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{action:?} records nothing before its release"));
        // What a restart aborting the release then writes: nothing to
        // resume on.
        let record = Record {
            state: recorded,
            at: 100 * SECOND,
            advertised: Some(100),
        };
        assert_eq!(restart_record(Some(record)), None, "{action:?}");
    }
    assert!(transition_steps(Action::BecomeMaster)
        .expect("a transition")
        .contains(&Step::TakeAddresses));
    assert_eq!(transition_steps(Action::Refresh), None);
}

/// The master adds the VIPs as local addresses, so its kernel accepts
/// what is sent to them: Accept_Mode is in effect true, and the
/// settings say so rather than the RFC's default.
#[test]
fn the_settings_say_the_master_accepts_packets_to_its_addresses() {
    assert!(settings_of(&vrrp_config(100, "198.18.0.10")).accept_mode);
}

/// A carrier flap between two looks (the link down for less than the
/// 0.5 s between them, so no look saw it down) moves the carrier
/// counter: the next look tells the machine of an outage from the
/// last look that saw the link steady, and a master advertises and
/// announces its addresses again (the peer may have taken over
/// meanwhile and step down silently on our next advert).
#[test]
fn a_carrier_flap_between_two_looks_is_reclaimed() {
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    assert_eq!(watch.saw_counting(true, Some(4), t0), None);
    let look = t0 + ADDRESS_CHECK;
    assert_eq!(watch.saw_counting(true, Some(4), look), None);
    // Before each master advert: unchanged, steady up to then.
    let advert = look + Duration::from_millis(100);
    assert!(!watch.carrier_moved(Some(4), advert));
    // Down and up again, 400 ms, between two adverts and two looks.
    let next_advert = advert + Duration::from_millis(500);
    assert!(watch.carrier_moved(Some(6), next_advert));
    let change = watch.saw_counting(true, Some(6), next_advert);
    assert_eq!(change, Some(LinkChange::Flapped(advert)));
    assert_eq!(watch.saw_counting(true, Some(6), next_advert), None);
    assert!(!watch.carrier_moved(Some(6), next_advert));
    // The machine: a master at 100 ms adverts reclaims.
    let config = VrrpConfig {
        advert_interval: Duration::from_millis(100),
        ..vrrp_config(255, "198.18.0.10")
    };
    let mut m = Machine::new(settings_of(&config), ip("198.18.0.2"));
    m.startup(t0);
    assert_eq!(m.state(), State::Master);
    let Some(LinkChange::Flapped(since)) = change else {
        panic!("the flap is seen");
    };
    m.link_down(since);
    let actions = m.link_up(next_advert, 255);
    assert!(actions.contains(&Action::Reclaim), "{actions:?}");
    // No counter (not readable): no flap is made up.
    let mut watch = LinkWatch::default();
    watch.saw_counting(true, Some(4), t0);
    assert_eq!(watch.saw_counting(true, None, look), None);
    assert!(!watch.carrier_moved(Some(9), look));
    assert_eq!(watch.saw_counting(true, Some(9), look), None);
    // A flap a look sees down is the outage it is, not a flap too.
    assert_eq!(
        watch.saw_counting(false, Some(10), look + ADDRESS_CHECK),
        Some(LinkChange::Down(look))
    );
    assert_eq!(
        watch.saw_counting(true, Some(11), look + 2 * ADDRESS_CHECK),
        Some(LinkChange::Up)
    );
}

/// The carrier counter is read from sysfs for the interface of that
/// name and index only (a renamed or re-created interface is not
/// ours).
#[test]
fn the_carrier_counter_is_read_for_our_interface_only() {
    let lo = Interface {
        name: "lo".to_owned(),
        index: 1,
        mac: [0; 6],
    };
    if Path::new("/sys/class/net/lo/carrier_changes").exists() {
        assert!(carrier_changes(&lo).is_some());
    }
    let other = Interface { index: 0, ..lo };
    assert_eq!(carrier_changes(&other), None);
    let missing = Interface {
        name: "no-such-if0".to_owned(),
        index: 1,
        mac: [0; 6],
    };
    assert_eq!(carrier_changes(&missing), None);
}

/// An instance whose driver does not end in time (its release of the
/// addresses stuck on netlink) is aborted; what it may have left on
/// the interface is named, with the command that removes it.
#[tokio::test]
async fn a_stop_that_overruns_names_the_addresses_left() {
    let config = VrrpConfig {
        addresses: vec![ip("198.18.0.10"), ip("198.18.0.11")],
        ..vrrp_config(100, "198.18.0.10")
    };
    let (stop_tx, _stop_rx) = oneshot::channel();
    let (_status_tx, status_rx) = watch::channel(InstanceStatus {
        vrid: config.vrid,
        state: State::Master,
        configured_priority: 100,
        priority: 100,
        master: None,
        addresses: config.addresses.clone(),
        counters: Counters::default(),
        ignored: BTreeMap::new(),
        link_down: false,
        link_down_since: None,
        no_source: false,
        no_source_since: None,
    });
    let instance = Instance {
        priority: watch::channel(100).0,
        link_ups: watch::channel(0).0,
        data_plane_mac: watch::channel([0; 6]).0,
        synced: watch::channel(false).0,
        status: status_rx,
        stop: Some(stop_tx),
        task: tokio::spawn(std::future::pending()),
        config: config.clone(),
        notifies: Notifies::default(),
        state_file: None,
    };
    let left = instance.stop_within(Duration::from_millis(50)).await;
    assert_eq!(left, Some(config.addresses.clone()));
    let warning = left_behind_warning(&config.addresses);
    for address in &config.addresses {
        assert!(warning.contains(&address.to_string()), "{warning}");
    }
    assert!(warning.contains("lbd --release-vips"), "{warning}");
}

/// What a test driver announced: the MAC and address of each
/// gratuitous ARP / NA.
type Announced = Arc<Mutex<Vec<([u8; 6], IpAddr)>>>;

/// The ends of a test driver's [`Inputs`], kept open while it runs.
struct InputEnds {
    _priority: watch::Sender<u8>,
    _link_ups: watch::Sender<u64>,
    data_plane_mac: watch::Sender<[u8; 6]>,
    _synced: watch::Sender<bool>,
    _stop: oneshot::Sender<()>,
}

/// A driver of `config` on a test interface with MAC `mac` and index
/// 0 (no interface has it: the real netlink requests of a transition
/// fail at once, changing nothing), reading it through `looks`, its
/// adverts sent over UDP from 127.0.0.1 to port `sink` (see
/// `VrrpSocket::udp_for_tests`), its announcements recorded.
async fn test_driver(
    config: VrrpConfig,
    mac: [u8; 6],
    looks: Looks,
    sink: u16,
) -> (Driver, Inputs, InputEnds, Announced) {
    let local = ip("127.0.0.1");
    let announced = Announced::default();
    let record = announced.clone();
    let (priority_tx, priority_rx) = watch::channel(config.priority);
    let (link_ups_tx, link_ups_rx) = watch::channel(0);
    let (data_plane_mac_tx, data_plane_mac_rx) = watch::channel(mac);
    let (synced_tx, synced_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel();
    let status = watch::channel(InstanceStatus {
        vrid: config.vrid,
        state: State::Initialize,
        configured_priority: config.priority,
        priority: config.priority,
        master: None,
        addresses: config.addresses.clone(),
        counters: Counters::default(),
        ignored: BTreeMap::new(),
        link_down: false,
        link_down_since: None,
        no_source: false,
        no_source_since: None,
    })
    .0;
    let driver = Driver {
        interface: Interface {
            name: "lbd-test-none0".to_owned(),
            index: 0,
            mac,
        },
        netlink: Netlink::connect().expect("netlink socket"),
        looks,
        announce_with: Arc::new(move |_, mac, address| {
            record.lock().expect("record").push((mac, address));
            Ok(())
        }),
        data_plane_mac: mac,
        mac_change: MacChange::default(),
        link_read_from: None,
        addresses_read_from: None,
        socket: VrrpSocket::udp_for_tests(local, sink).expect("UDP socket"),
        machine: Machine::new(settings_of(&config), local),
        status,
        ignored: BTreeMap::new(),
        complaints: Complaints::default(),
        holding: true,
        release_failing: false,
        announcer: Announcer::default(),
        state_file: None,
        notifies: Notifies::default(),
        source_hold_began: false,
        source_checked_at: None,
        never: config.addresses.clone(),
        link: LinkWatch::default(),
        tracked: config.priority,
        send_failures: SendFailures::default(),
        link_query_log: LogLimit::new(LINK_QUERY_LOG_EVERY),
        config,
    };
    let inputs = Inputs {
        priority: priority_rx,
        link_ups: link_ups_rx,
        data_plane_mac: data_plane_mac_rx,
        synced: synced_rx,
        stop: stop_rx,
    };
    let ends = InputEnds {
        _priority: priority_tx,
        _link_ups: link_ups_tx,
        data_plane_mac: data_plane_mac_tx,
        _synced: synced_tx,
        _stop: stop_tx,
    };
    (driver, inputs, ends, announced)
}

/// The bytes a raw IPv4 socket would deliver for `ad` from `src` to
/// the VRRP group: a 20-byte header (TTL 255) and the advert.
fn raw_ipv4_advert(ad: &Advertisement, src: IpAddr) -> Vec<u8> {
    let dst = IpAddr::V4(super::super::packet::VRRP_MCAST_V4);
    let payload = ad
        .encode(src, dst, super::super::packet::ChecksumMode::PseudoHeader)
        .expect("encode");
    let total = u16::try_from(20 + payload.len()).expect("length");
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else {
        panic!("IPv4 only");
    };
    let mut bytes = vec![0x45, 0];
    bytes.extend(total.to_be_bytes());
    bytes.extend([0, 0, 0, 0, 255, 112, 0, 0]);
    bytes.extend(src.octets());
    bytes.extend(dst.octets());
    bytes.extend(payload);
    bytes
}

/// A backup whose Master_Down_Timer ran out while it did not run
/// (SIGSTOP, a cgroup freeze), with the live master's advert waiting
/// in its socket: the advert is heard before the timer is acted on,
/// so the backup follows the master instead of taking over.
#[tokio::test]
async fn a_late_backup_hears_the_queued_advert_before_its_timer() {
    let config = vrrp_config(100, "198.18.0.10");
    let looks = Looks {
        addresses: Arc::new(|_| Box::pin(std::future::pending())),
        link: Arc::new(|_| {
            Box::pin(std::future::ready(Ok(Some(LinkState {
                up: true,
                xdp: None,
                mac: Some([2, 0, 0, 0, 0, 1]),
            }))))
        }),
    };
    let (mut driver, _inputs, _ends, _) =
        test_driver(config.clone(), [2, 0, 0, 0, 0, 1], looks, 9).await;
    let long_ago = Instant::now()
        .checked_sub(Duration::from_secs(10))
        .expect("uptime over 10 s");
    assert_eq!(driver.machine.startup(long_ago), [Action::BecomeBackup]);
    assert!(driver
        .machine
        .next_deadline()
        .is_some_and(|at| at < Instant::now()));
    let master = ip("198.18.0.3");
    let ad = Advertisement {
        vrid: config.vrid,
        priority: 150,
        max_adver_int_cs: 100,
        addresses: config.addresses.clone(),
    };
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer socket");
    let to = ("127.0.0.1", driver.socket.bound_port().expect("port"));
    peer.send_to(&raw_ipv4_advert(&ad, master), to)
        .expect("send");
    let actions = driver.on_deadline().await;
    assert!(!actions.contains(&Action::BecomeMaster), "{actions:?}");
    assert_eq!(driver.machine.state(), State::Backup);
    assert_eq!(driver.machine.master_address(), Some(master));
}

/// A master instance at 100 ms adverts to unicast peer 127.0.0.1 (the
/// test's UDP sink), moving 198.18.0.10.
fn fast_master_config() -> VrrpConfig {
    VrrpConfig {
        advert_interval: Duration::from_millis(100),
        unicast_peers: vec![ip("127.0.0.1")],
        ..vrrp_config(200, "198.18.0.10")
    }
}

/// A master whose looks at its link and addresses never answer (RTNL
/// held, a reply netlink-proto lost) still sends its adverts on time,
/// and keeps looking: each look is given up after `NETLINK_LIMIT`.
#[tokio::test]
async fn a_master_whose_looks_never_answer_advertises_on_time() {
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("sink");
    let port = sink.local_addr().expect("sink address").port();
    let link_looks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let looks = Looks {
        addresses: Arc::new(|_| Box::pin(std::future::pending())),
        link: Arc::new({
            let link_looks = link_looks.clone();
            move |_| {
                link_looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Box::pin(std::future::pending())
            }
        }),
    };
    let (driver, inputs, _ends, _) =
        test_driver(fast_master_config(), [2, 0, 0, 0, 0, 1], looks, port).await;
    let task = tokio::spawn(driver.run(inputs, true, false, false));
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut buffer = [0u8; 256];
    let mut adverts = 0;
    while let Ok(Ok(_)) = tokio::time::timeout_at(until, sink.recv(&mut buffer)).await {
        adverts += 1;
    }
    task.abort();
    assert!(
        adverts >= 10,
        "{adverts} adverts left in 1.5 s at 100 ms apart"
    );
    let looked = link_looks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        looked >= 2,
        "{looked} looks at the link: a look that never answers is given up"
    );
}

/// A master whose look finds the interface with a new MAC announces
/// its addresses with it only once the engine says the data plane
/// accepts frames for it: before, they would be passed up the stack,
/// which resets their connections.
#[tokio::test]
async fn a_new_mac_is_announced_once_the_data_plane_has_it() {
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("sink");
    let port = sink.local_addr().expect("sink address").port();
    let (old, new) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let config = fast_master_config();
    let present = vec![
        InterfaceAddress {
            address: ip("127.0.0.1"),
            prefix_len: 8,
            secondary: false,
            state: crate::netlink::AddressState::default(),
        },
        InterfaceAddress {
            address: ip("198.18.0.10"),
            prefix_len: 32,
            secondary: true,
            state: crate::netlink::AddressState::default(),
        },
    ];
    let looks = Looks {
        addresses: Arc::new(move |_| Box::pin(std::future::ready(Ok(present.clone())))),
        link: Arc::new(move |_| {
            Box::pin(std::future::ready(Ok(Some(LinkState {
                up: true,
                xdp: None,
                mac: Some(new),
            }))))
        }),
    };
    let (driver, inputs, ends, announced) = test_driver(config, old, looks, port).await;
    let task = tokio::spawn(driver.run(inputs, true, false, false));
    let with_new = |announced: &Announced| {
        announced
            .lock()
            .expect("record")
            .iter()
            .filter(|(mac, _)| *mac == new)
            .count()
    };
    // Three looks, and the engine's tick (1 s) has not written it yet.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        with_new(&announced),
        0,
        "{:?}",
        announced.lock().expect("record")
    );
    ends.data_plane_mac.send_replace(new);
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    assert_eq!(
        announced.lock().expect("record").last(),
        Some(&(new, ip("198.18.0.10")))
    );
}

/// A new MAC is followed at once when the data plane has it already,
/// on the engine's word otherwise, and without it after
/// `MAC_CONFIRM_LIMIT`; one changed back before is forgotten.
#[test]
fn a_mac_change_waits_for_the_data_plane_within_bounds() {
    let (old, new) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let t0 = Instant::now();
    let half = Duration::from_millis(500);
    // The engine wrote it first.
    let mut change = MacChange::default();
    assert_eq!(change.seen(old, Some(new), new, t0), Some(new));
    assert!(!change.waiting());
    // The driver saw it first: pending until the engine's word.
    assert_eq!(change.seen(old, Some(new), old, t0), None);
    assert!(change.waiting());
    assert_eq!(change.seen(old, Some(new), old, t0 + half), None);
    assert_eq!(change.confirmed(old), None);
    assert_eq!(change.confirmed(new), Some(new));
    assert!(!change.waiting());
    // No word: followed once overdue, from the first look that saw it.
    assert_eq!(change.seen(old, Some(new), old, t0), None);
    assert_eq!(change.seen(old, None, old, t0 + half), None, "no MAC read");
    assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT - half), None);
    assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT), Some(new));
    assert!(!change.waiting());
    // Changed back before the data plane took it: nothing to follow.
    assert_eq!(change.seen(old, Some(new), old, t0), None);
    assert_eq!(change.seen(old, Some(old), old, t0 + half), None);
    assert!(!change.waiting());
    assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT), None);
    // A MAC of zeroes is none.
    assert_eq!(change.seen(old, Some([0; 6]), old, t0), None);
    assert!(!change.waiting());
}

/// A look that finds the link down (keepalived's FAULT): the status
/// says so, from when it was last seen up, so `lbctl status` and the
/// metrics can tell a backup that will not take over from a healthy
/// one; the link back, it says so no more.
#[tokio::test]
async fn a_backup_whose_link_is_down_says_so_in_its_status() {
    let config = vrrp_config(100, "198.18.0.10");
    let looks = Looks {
        addresses: Arc::new(|_| Box::pin(std::future::pending())),
        link: Arc::new(|_| Box::pin(std::future::pending())),
    };
    let (mut driver, _inputs, _ends, _) = test_driver(config, [2, 0, 0, 0, 0, 1], looks, 9).await;
    assert_eq!(
        driver.machine.startup(Instant::now()),
        [Action::BecomeBackup]
    );
    let read = |up: bool| LinkRead {
        started: Instant::now(),
        state: Ok(Some(LinkState {
            up,
            xdp: None,
            mac: Some([2, 0, 0, 0, 0, 1]),
        })),
        carrier: None,
    };
    driver.on_link_read(read(true));
    driver.publish();
    let status = driver.status.borrow().clone();
    assert!(!status.link_down, "{status:?}");
    assert_eq!(status.link_down_since, None);

    let before = std::time::SystemTime::now();
    let actions = driver.on_link_read(read(false));
    driver.carry_out(actions).await;
    let status = driver.status.borrow().clone();
    assert_eq!(status.state, State::Backup);
    assert!(status.link_down, "{status:?}");
    let since = status.link_down_since.expect("when the outage began");
    let before_s = before
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(
        since <= before_s && since + 5 >= before_s,
        "{since} vs {before_s}"
    );

    let actions = driver.on_link_read(read(true));
    driver.carry_out(actions).await;
    let status = driver.status.borrow().clone();
    assert!(!status.link_down, "{status:?}");
    assert_eq!(status.link_down_since, None);
}

/// A master whose address adverts go from is removed (networkd, a
/// lapsed DHCP lease) while a lower-priority peer, hearing nothing,
/// took over and advertises: it gives up mastership and the VIPs
/// (keepalived's FAULT) and claims nothing against the peer, which it
/// silences (no gratuitous ARP while the source is gone); once an
/// address is back it is a backup first, and wins mastership back by
/// preemption as ever.
#[tokio::test]
async fn a_master_whose_source_is_removed_gives_up_the_vips_until_it_is_back() {
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("sink");
    let port = sink.local_addr().expect("sink address").port();
    let config = VrrpConfig {
        advert_interval: Duration::from_millis(500),
        unicast_peers: vec![ip("127.0.0.1")],
        ..vrrp_config(200, "198.18.0.10")
    };
    let present = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let looks = Looks {
        addresses: Arc::new({
            let present = present.clone();
            move |_| {
                let mut addresses = vec![on_interface("198.18.0.10", 32, true)];
                if present.load(std::sync::atomic::Ordering::Relaxed) {
                    addresses.insert(0, on_interface("127.0.0.1", 8, false));
                }
                Box::pin(std::future::ready(Ok(addresses)))
            }
        }),
        link: Arc::new(|_| {
            Box::pin(std::future::ready(Ok(Some(LinkState {
                up: true,
                xdp: None,
                mac: Some([2, 0, 0, 0, 0, 1]),
            }))))
        }),
    };
    let (driver, inputs, _ends, announced) =
        test_driver(config.clone(), [2, 0, 0, 0, 0, 1], looks, port).await;
    let status = driver.status.subscribe();
    let to = ("127.0.0.1", driver.socket.bound_port().expect("port"));
    let task = tokio::spawn(driver.run(inputs, true, false, false));
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer socket");
    let peer_advert = raw_ipv4_advert(
        &Advertisement {
            vrid: config.vrid,
            priority: 100,
            max_adver_int_cs: 50,
            addresses: config.addresses.clone(),
        },
        ip("198.18.0.3"),
    );
    let state = || status.borrow().state;
    // Master, with the claim's announcements out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(), State::Master);

    present.store(false, std::sync::atomic::Ordering::Relaxed);
    // The next look (every 0.5 s) finds the source gone.
    let seen_by = tokio::time::Instant::now() + Duration::from_millis(1200);
    while !status.borrow().no_source && tokio::time::Instant::now() < seen_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(status.borrow().no_source, "{:?}", *status.borrow());
    announced.lock().expect("record").clear();
    // The peer took over: its adverts every interval, for longer than
    // a master-down interval (1.5 s).
    for _ in 0..8 {
        peer.send_to(&peer_advert, to).expect("send");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after_gone = status.borrow().clone();
    assert_eq!(after_gone.state, State::Backup, "{after_gone:?}");
    assert_eq!(after_gone.counters.became_backup, 1, "{after_gone:?}");
    assert!(after_gone.no_source, "{after_gone:?}");
    assert!(after_gone.no_source_since.is_some(), "{after_gone:?}");
    assert_eq!(
        *announced.lock().expect("record"),
        [],
        "no claim against the peer while no advert can leave"
    );

    // The source back: a backup first, then (priority 200 over 100,
    // preempt on) master again after a master-down interval.
    present.store(true, std::sync::atomic::Ordering::Relaxed);
    let back_by = tokio::time::Instant::now() + Duration::from_millis(4000);
    let mut saw_backup_without_fault = false;
    while tokio::time::Instant::now() < back_by && state() != State::Master {
        peer.send_to(&peer_advert, to).expect("send");
        let now = status.borrow().clone();
        saw_backup_without_fault |= now.state == State::Backup && !now.no_source;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    let recovered = status.borrow().clone();
    assert!(saw_backup_without_fault, "back as a backup first");
    assert_eq!(recovered.state, State::Master, "{recovered:?}");
    assert!(!recovered.no_source, "{recovered:?}");
    assert_eq!(recovered.no_source_since, None);
    assert!(
        !announced.lock().expect("record").is_empty(),
        "the VIPs announced again as master"
    );
}

/// The answer of a look begun before one already taken is stale.
#[test]
fn an_older_look_answering_late_is_not_taken() {
    let t0 = Instant::now();
    let mut last = None;
    assert!(newer_look(&mut last, t0 + ADDRESS_CHECK));
    assert!(!newer_look(&mut last, t0), "begun earlier, answered later");
    assert!(newer_look(&mut last, t0 + ADDRESS_CHECK));
    assert!(newer_look(&mut last, t0 + 2 * ADDRESS_CHECK));
}
