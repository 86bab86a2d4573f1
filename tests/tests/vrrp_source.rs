//! VRRP adverts and their source addresses, end to end (needs root):
//! a unicast peer's adverts that arrive with a TTL below 255 (keepalived's
//! `unicast_ttl`, a peer routers away) are heard within the
//! `unicast_peer_hops` allowed, a stranger's are not; a master whose primary IPv4 address is renumbered goes on
//! advertising, from the new address; and a master whose address is
//! removed with none to replace it gives the VIP up to the peer
//! (keepalived's FAULT) until it is back.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{in_netns, Host, Lab, LabSpec, VIP4},
    support::{ip, ip_on, status_on, wait_until},
};
use lb_userspace::vrrp::{Advertisement, ChecksumMode, State};

/// The lab with two LB nodes (no static VIP: VRRP places it) and one
/// nginx backend.
fn lab() -> Lab {
    let lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 1,
        static_vip: false,
    })
    .expect("lab");
    lab.wait_for_backends().expect("nginx up");
    lab
}

/// `node`'s VRRP config against `peer` at `priority`, without replication
/// (its listener sits on the address a test renumbers) nor the backend
/// tracking (health checks may fail while the address moves), plus
/// `extra` lines in the `[[vrrp]]` table.
fn config(lab: &Lab, node: &Host, peer: &Host, priority: u8, extra: &str) -> String {
    let config = lab
        .ha_config(node, peer, &["b1"], priority, true)
        .expect("config");
    let mut out: String = config
        .lines()
        .filter(|l| !l.starts_with("sync_"))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str("track_no_backend = 0\n");
    out.push_str(extra);
    out
}

/// Sends, from namespace `netns`, a unicast advert of priority 200 for the
/// lab's VIP from `src` to `dst` with IPv4 TTL `ttl` every 50 ms until
/// `stop` is set.
fn send_adverts(
    netns: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u32,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        in_netns(&netns, move || {
            let payload = Advertisement {
                vrid: 51,
                priority: 200,
                max_adver_int_cs: 10,
                addresses: vec![IpAddr::V4(VIP4)],
            }
            .encode(IpAddr::V4(src), IpAddr::V4(dst), ChecksumMode::PseudoHeader)
            .expect("encode");
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(112)),
            )
            .expect("raw socket");
            socket.set_ttl(ttl).expect("ttl");
            let to = SocketAddr::new(IpAddr::V4(dst), 0);
            while !stop.load(Ordering::Relaxed) {
                socket.send_to(&payload, &to.into()).expect("send");
                thread::sleep(Duration::from_millis(50));
            }
        })
        .expect("netns");
    })
}

/// A unicast peer's adverts sent with TTL 64 (keepalived's `unicast_ttl
/// 64`, or routed) hold lb as backup when `unicast_peer_hops` allows that
/// many routers (255 − 64 = 191); the same from a host that is no peer
/// are ignored as `ttl`, and once the peer falls silent lb takes over.
/// (Without `unicast_peer_hops` a peer's advert needs TTL 255 too: unit
/// tests of `validate_from`.)
#[test]
fn a_unicast_peer_is_heard_within_its_hops() {
    let mut lab = lab();
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let peer_stop = Arc::new(AtomicBool::new(false));
    let stranger_stop = Arc::new(AtomicBool::new(false));
    let peer = send_adverts(b.netns.clone(), b.ipv4, a.ipv4, 64, peer_stop.clone());
    let stranger = send_adverts(
        lab.client.netns.clone(),
        lab.client.ipv4,
        a.ipv4,
        64,
        stranger_stop.clone(),
    );
    let extra = format!(
        "unicast_peers = [\"{}\"]\nunicast_peer_hops = 191\n",
        b.ipv4
    );
    let config_a = config(&lab, &a, &b, 100, &extra);
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    thread::sleep(Duration::from_secs(2));
    let status = status_on(&lab, &a).vrrp;
    assert_eq!(
        status[0].state,
        State::Backup,
        "lb did not hear its peer's TTL-64 adverts: {status:?}\n{}",
        lab.log("lbd-a")
    );
    assert_eq!(status[0].master, Some(IpAddr::V4(b.ipv4)), "{status:?}");
    assert!(
        status[0].ignored.get("ttl").copied().unwrap_or(0) > 0,
        "the stranger's routed adverts were not refused: {status:?}"
    );
    assert!(!lab.holds_vip(&a).expect("ip addr"));
    // The peer falls silent: the stranger's adverts do not hold lb back.
    peer_stop.store(true, Ordering::Relaxed);
    peer.join().expect("peer sender");
    wait_until("lb to take over", Duration::from_secs(5), || {
        lab.holds_vip(&a).expect("ip addr")
    });
    stranger_stop.store(true, Ordering::Relaxed);
    stranger.join().expect("stranger sender");
}

/// The master's primary IPv4 address is renumbered (a new one added, the
/// old one deleted, the new one promoted): the master goes on advertising
/// from the new address, so the backup stays backup and names it as the
/// master. Before, every advert failed (the old source was no longer the
/// node's) and both nodes held the VIP.
#[test]
fn the_master_advertises_from_its_renumbered_primary_address() {
    let mut lab = lab();
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let (config_a, config_b) = (config(&lab, &a, &b, 150, ""), config(&lab, &b, &a, 100, ""));
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    wait_until("lb to be master", Duration::from_secs(10), || {
        lab.holds_vip(&a).expect("ip addr")
    });
    wait_until("lb2 to be lb's backup", Duration::from_secs(5), || {
        let status = status_on(&lab, &b).vrrp;
        status[0].state == State::Backup && status[0].master == Some(IpAddr::V4(a.ipv4))
    });
    let before = status_on(&lab, &b).vrrp;

    let renumbered = Ipv4Addr::new(198, 18, 0, 240);
    ip(&[
        "netns",
        "exec",
        &a.netns,
        "sysctl",
        "-qw",
        "net.ipv4.conf.eth0.promote_secondaries=1",
    ]);
    ip_on(
        &a,
        &["addr", "add", &format!("{renumbered}/24"), "dev", "eth0"],
    );
    ip_on(
        &a,
        &["addr", "del", &format!("{}/24", a.ipv4), "dev", "eth0"],
    );
    let moved = Instant::now();

    wait_until(
        "lb2 to hear lb's adverts from its new address",
        Duration::from_secs(3),
        || status_on(&lab, &b).vrrp[0].master == Some(IpAddr::V4(renumbered)),
    );
    // Well past the backup's master-down interval (0.36 s): still one master.
    thread::sleep(Duration::from_secs(2));
    let (sa, sb) = (status_on(&lab, &a).vrrp, status_on(&lab, &b).vrrp);
    assert_eq!(
        [sa[0].state, sb[0].state],
        [State::Master, State::Backup],
        "{sa:?}\n{sb:?}\n{}\n{}",
        lab.log("lbd-a"),
        lab.log("lbd-b")
    );
    assert_eq!(sb[0].master, Some(IpAddr::V4(renumbered)), "{sb:?}");
    assert_eq!(sa[0].master, Some(IpAddr::V4(renumbered)), "{sa:?}");
    assert_eq!(
        sb[0].counters.became_master,
        before[0].counters.became_master,
        "lb2 took over after the renumbering ({:?} ago): {sb:?}",
        moved.elapsed()
    );
    assert!(!lab.holds_vip(&b).expect("ip addr"));
    assert!(
        lab.log("lbd-a").contains("adverts now go from the new one"),
        "{}",
        lab.log("lbd-a")
    );
}

/// The master's only IPv4 address is removed (networkd, a lapsed DHCP
/// lease): no advert can leave, the backup takes over, and the old master
/// gives the VIP up rather than announcing it against the new one (two
/// masters, an ARP tug of war). It says why in its status. Once the
/// address is back it is a backup first, then preempts (150 over 100).
#[test]
fn a_master_without_an_address_gives_the_vip_up_until_it_is_back() {
    let mut lab = lab();
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let (config_a, config_b) = (config(&lab, &a, &b, 150, ""), config(&lab, &b, &a, 100, ""));
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    wait_until("lb to be master", Duration::from_secs(10), || {
        lab.holds_vip(&a).expect("ip addr")
    });
    wait_until("lb2 to be lb's backup", Duration::from_secs(5), || {
        let status = status_on(&lab, &b).vrrp;
        status[0].state == State::Backup && status[0].master == Some(IpAddr::V4(a.ipv4))
    });

    ip_on(
        &a,
        &["addr", "del", &format!("{}/24", a.ipv4), "dev", "eth0"],
    );
    wait_until("lb2 to take over", Duration::from_secs(5), || {
        lab.holds_vip(&b).expect("ip addr")
    });
    wait_until("lb to give the VIP up", Duration::from_secs(5), || {
        !lab.holds_vip(&a).expect("ip addr")
    });
    // Well past lb2's master-down interval (0.36 s): one master, lb2.
    thread::sleep(Duration::from_secs(2));
    let (sa, sb) = (status_on(&lab, &a).vrrp, status_on(&lab, &b).vrrp);
    assert_eq!(
        [sa[0].state, sb[0].state],
        [State::Backup, State::Master],
        "{sa:?}\n{sb:?}\n{}\n{}",
        lab.log("lbd-a"),
        lab.log("lbd-b")
    );
    assert!(sa[0].no_source, "{sa:?}");
    assert!(sa[0].no_source_since.is_some(), "{sa:?}");
    assert!(!sb[0].no_source, "{sb:?}");
    assert!(!lab.holds_vip(&a).expect("ip addr"));
    assert!(lab.holds_vip(&b).expect("ip addr"));
    let log = lab.log("lbd-a");
    assert!(log.contains("giving up the VIPs"), "{log}");
    assert!(
        !log.contains("another router claims our addresses with a lower priority"),
        "no re-announcement against lb2: {log}"
    );

    ip_on(
        &a,
        &["addr", "add", &format!("{}/24", a.ipv4), "dev", "eth0"],
    );
    wait_until("lb to take the VIP back", Duration::from_secs(5), || {
        lab.holds_vip(&a).expect("ip addr")
    });
    wait_until("lb2 to give it up", Duration::from_secs(5), || {
        !lab.holds_vip(&b).expect("ip addr")
    });
    let (sa, sb) = (status_on(&lab, &a).vrrp, status_on(&lab, &b).vrrp);
    assert_eq!([sa[0].state, sb[0].state], [State::Master, State::Backup]);
    assert!(!sa[0].no_source, "{sa:?}");
    assert_eq!(sa[0].no_source_since, None);
    assert!(
        lab.log("lbd-a")
            .contains("an address to send adverts from again"),
        "{}",
        lab.log("lbd-a")
    );
}
