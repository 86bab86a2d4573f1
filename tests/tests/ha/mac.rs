//! The master's interface takes another MAC while lbd runs (a bond's
//! `fail_over_mac`, `ip link set dev eth0 address`): its VRRP instance
//! announces the VIP again with the new MAC at once, so the client's
//! neighbour entry (which still points at the old MAC, where nothing
//! answers now) moves without waiting for the kernel's own reprobing.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{http_get, Lab, HTTP_PORT, VIP4},
    support::ip,
};
use lb_userspace::vrrp::State;

use crate::{
    observe::vrrp_state,
    setup::{elected_pair, lab},
};

/// A locally administered MAC no lab host has.
const NEW_MAC: &str = "02:42:c6:12:00:fd";
/// Well under the kernel's own recovery (a reachable entry is kept for
/// 15–45 s, then 5 s of delay before it reprobes).
const ANNOUNCED_WITHIN: Duration = Duration::from_secs(3);

/// The MAC the client's neighbour entry for the VIP holds now.
fn client_neighbour_mac(lab: &Lab) -> String {
    let out = Command::new("ip")
        .args(["-n", &lab.client.netns, "neigh", "show", &VIP4.to_string()])
        .output()
        .expect("ip neigh");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|word| *word != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_master_announces_the_vip_with_its_new_mac() {
    let mut lab = lab(1);
    let (a, _b) = elected_pair(&mut lab, &["b1"], true);
    let url = format!("http://{VIP4}:{HTTP_PORT}/");
    let (code, _) = http_get(&lab.client.netns, &url).expect("a request before the change");
    assert_eq!(code, 200);
    let before = client_neighbour_mac(&lab);
    assert!(!before.is_empty() && before != NEW_MAC, "{before}");

    ip(&[
        "-n", &a.netns, "link", "set", "dev", "eth0", "address", NEW_MAC,
    ]);
    let changed = Instant::now();
    while client_neighbour_mac(&lab) != NEW_MAC {
        assert!(
            changed.elapsed() < ANNOUNCED_WITHIN,
            "the client still sends the VIP's traffic to {} {:?} after the change",
            client_neighbour_mac(&lab),
            changed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match http_get(&lab.client.netns, &url) {
            Ok((200, _)) => break,
            other => assert!(Instant::now() < deadline, "through the VIP: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(vrrp_state(&lab, &a), State::Master);
    // Logged whenever the master announces with the new MAC, whether the
    // data plane took it before VRRP saw the change or after (only then
    // is the wait logged too).
    let log = lab.log("lbd-a");
    assert!(
        log.contains("announcing the VIPs with the interface's new MAC"),
        "{log}"
    );
}

/// The MAC of `node`'s eth0.
fn mac_of(node: &lb_tests::lab::Host) -> String {
    let out = Command::new("ip")
        .args(["-n", &node.netns, "-br", "link", "show", "dev", "eth0"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned()
}

/// `aa:bb:..` as bytes.
fn mac_bytes(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("a MAC byte"))
        .collect();
    bytes.try_into().expect("six bytes")
}

/// Whether `frame` is a gratuitous ARP (sender = target = the IPv4 VIP)
/// from `mac`, as lbd announces the VIP.
fn is_gratuitous_arp_for_vip(frame: &[u8], mac: [u8; 6]) -> bool {
    let vip = VIP4.octets();
    frame.len() >= 42
        && frame[6..12] == mac
        && frame[12..14] == [0x08, 0x06]
        && frame[22..28] == mac
        && frame[28..32] == vip
        && frame[38..42] == vip
}

/// A master whose link goes down keeps its mastership (it hears no one)
/// and its IPv4 VIP; the backup takes over meanwhile and announces the VIP
/// with its own MAC. When the link comes back, the master's advert makes
/// the other node step down without a word (here the other node
/// advertises every second, so the master's 100 ms adverts reach it
/// first): the master itself must announce the VIP again, or the client
/// keeps sending to a node that no longer holds it until its neighbour
/// entry times out. Without tracking of the link and the backends (cut
/// off too), the master keeps its priority through the outage, so it does
/// not step down on the other's adverts and take over again (which would
/// announce anyway).
#[test]
fn a_master_whose_link_comes_back_announces_the_vip_again() {
    use lb_tests::support::wait_until;

    use crate::observe::wait_for_vip;

    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    // Without replication: a replicating master steps back after such an
    // outage instead (`a_replicating_master_whose_link_comes_back_...`).
    let untracked = |config: String| {
        without_sync(&config).replace(
            "[[vrrp]]\n",
            "[[vrrp]]\ntrack_interface = 0\ntrack_no_backend = 0\n",
        )
    };
    let config_a = untracked(lab.ha_config(&a, &b, &["b1"], 150, true).expect("config"));
    let config_b = untracked(lab.ha_config(&b, &a, &["b1"], 100, true).expect("config"))
        .replace("advert_interval_ms = 100\n", "advert_interval_ms = 1000\n");
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        vrrp_state(&lab, &b) == State::Backup
    });
    let (mac_a, mac_b) = (mac_of(&a), mac_of(&b));
    assert!(!mac_a.is_empty() && mac_a != mac_b, "{mac_a} {mac_b}");
    let url = format!("http://{VIP4}:{HTTP_PORT}/");
    let (code, _) = http_get(&lab.client.netns, &url).expect("a request before the outage");
    assert_eq!(code, 200);
    assert_eq!(client_neighbour_mac(&lab), mac_a);

    // The outage: lb2 takes over and announces (3 rounds, 1 s apart).
    lab.set_link(&a, false).expect("link down");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
    wait_until(
        "the client to follow lb2's announcements",
        Duration::from_secs(5),
        || client_neighbour_mac(&lab) == mac_b,
    );
    // lb2's last round is out; lb kept mastership and the VIP.
    std::thread::sleep(Duration::from_millis(3_000));
    assert_eq!(vrrp_state(&lab, &a), State::Master);
    assert!(lab.holds_vip(&a).expect("ip addr"));

    lab.set_link(&a, true).expect("link up");
    let back = Instant::now();
    wait_until("lb2 to step down", Duration::from_secs(5), || {
        vrrp_state(&lab, &b) == State::Backup
    });
    while client_neighbour_mac(&lab) != mac_a {
        assert!(
            back.elapsed() < ANNOUNCED_WITHIN,
            "the client still sends the VIP's traffic to {} (lb2) {:?} after lb's link came back",
            client_neighbour_mac(&lab),
            back.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(vrrp_state(&lab, &a), State::Master);
    let (code, _) = http_get(&lab.client.netns, &url).expect("through the VIP");
    assert_eq!(code, 200);
    let log = lab.log("lbd-a");
    assert!(
        log.contains("master again after the link was down"),
        "{log}"
    );
}

/// `config` without its replication keys (`sync_*`).
fn without_sync(config: &str) -> String {
    config
        .lines()
        .filter(|l| !l.starts_with("sync_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A replicating master (`sync_peer`) whose link comes back after an
/// outage the peer took over in does not take the VIP straight back: the
/// connections the peer opened meanwhile exist only in the peer's table
/// until replication brings them. It steps back to backup on link-up
/// (sending nothing while its link was down), holds preemption as at
/// start, and takes the VIP back only after that hold (10 s at most).
#[test]
fn a_replicating_master_whose_link_comes_back_steps_back_then_preempts() {
    use lb_tests::support::wait_until;

    use crate::observe::wait_for_vip;

    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let untracked = |config: String| {
        config.replace(
            "[[vrrp]]\n",
            "[[vrrp]]\ntrack_interface = 0\ntrack_no_backend = 0\n",
        )
    };
    let config_a = untracked(lab.ha_config(&a, &b, &["b1"], 150, true).expect("config"));
    let config_b = untracked(lab.ha_config(&b, &a, &["b1"], 100, true).expect("config"));
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(15));
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        vrrp_state(&lab, &b) == State::Backup
    });

    lab.set_link(&a, false).expect("link down");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
    // Well past the master-down interval (about 0.34 s).
    std::thread::sleep(Duration::from_millis(1_500));
    lab.set_link(&a, true).expect("link up");
    wait_until("lb to step back", Duration::from_secs(5), || {
        vrrp_state(&lab, &a) == State::Backup
    });
    let back = Instant::now();
    // The hold: lb2 keeps the VIP a while after the link came back.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(vrrp_state(&lab, &b), State::Master, "lb2 kept the VIP");
    assert!(lab.holds_vip(&b).expect("ip addr"));
    wait_until(
        "lb to take the VIP back after its hold",
        Duration::from_secs(20),
        || vrrp_state(&lab, &a) == State::Master && vrrp_state(&lab, &b) == State::Backup,
    );
    assert!(
        back.elapsed() >= Duration::from_millis(1_000),
        "taken back at once"
    );
    assert!(lab.holds_vip(&a).expect("ip addr"));
    let (code, _) = http_get(&lab.client.netns, &format!("http://{VIP4}:{HTTP_PORT}/"))
        .expect("through the VIP");
    assert_eq!(code, 200);
}

/// With `announce_refresh_ms`, a master announces its VIP again on its
/// own, with no event to prompt it: a neighbour that went astray without
/// lbd hearing of it (here the client's entry pointed at a MAC no host
/// has, as a split brain that healed silently or a lost switch table
/// leaves it) comes back within the interval. Without it the entry stays
/// where it is while it is reachable (15–45 s).
#[test]
fn a_master_refreshes_its_announcements_on_its_own() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let refreshing =
        |config: String| config.replace("[[vrrp]]\n", "[[vrrp]]\nannounce_refresh_ms = 1000\n");
    let config_a = refreshing(lab.ha_config(&a, &b, &["b1"], 150, true).expect("config"));
    let config_b = lab.ha_config(&b, &a, &["b1"], 100, true).expect("config");
    // The client hears lb's gratuitous ARPs for the VIP from the start.
    let client_if = lab.ifindex(&lab.client, "eth0").expect("client's eth0");
    let arps = lb_tests::lab::in_netns(&lab.client.netns, move || {
        lb_tests::packet_socket::PacketSocket::bind(client_if)
    })
    .expect("in the client's namespace")
    .expect("a packet socket on the client's eth0");
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    crate::observe::wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    lb_tests::support::wait_until("lb2 to be backup", Duration::from_secs(5), || {
        vrrp_state(&lab, &b) == State::Backup
    });
    let url = format!("http://{VIP4}:{HTTP_PORT}/");
    let (code, _) = http_get(&lab.client.netns, &url).expect("a request");
    assert_eq!(code, 200);
    let mac_a = mac_of(&a);
    assert_eq!(client_neighbour_mac(&lab), mac_a);
    // The takeover's three rounds (1 s apart, `announce_count = 3`) are
    // over: the client heard all three, so the entry set astray below can
    // only be put back by the refresh.
    let announced = mac_bytes(&mac_a);
    let mut heard = 0;
    lb_tests::support::wait_until(
        "the client to hear the takeover's 3 gratuitous ARPs",
        Duration::from_secs(5),
        || {
            while let Some(received) = arps.recv().expect("receiving") {
                if is_gratuitous_arp_for_vip(&received.frame, announced) {
                    heard += 1;
                }
            }
            heard >= 3
        },
    );

    for _ in 0..2 {
        ip(&[
            "-n",
            &lab.client.netns,
            "neigh",
            "replace",
            &VIP4.to_string(),
            "lladdr",
            NEW_MAC,
            "dev",
            "eth0",
            "nud",
            "reachable",
        ]);
        assert_eq!(client_neighbour_mac(&lab), NEW_MAC);
        let astray = Instant::now();
        while client_neighbour_mac(&lab) != mac_a {
            assert!(
                astray.elapsed() < ANNOUNCED_WITHIN,
                "the client still sends the VIP's traffic to {} {:?} later",
                client_neighbour_mac(&lab),
                astray.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (code, _) = http_get(&lab.client.netns, &url).expect("through the VIP");
    assert_eq!(code, 200);
    assert_eq!(vrrp_state(&lab, &a), State::Master);
}
