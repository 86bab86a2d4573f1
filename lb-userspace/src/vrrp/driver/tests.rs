//! The driver's run loop tested whole (see `test_driver`: a test
//! interface, adverts over UDP, looks and announcements injected), and
//! the helpers the tests of every concern share.

use std::sync::{Arc, Mutex};

use super::{link::LINK_QUERY_LOG_EVERY, looks::LinkRead, *};
use crate::{
    netlink::{InterfaceAddress, LinkState},
    test_scratch::ScratchDir,
    vrrp::{Action, Advertisement, Counters, State},
};

pub(super) const SECOND: u64 = 1_000_000_000;

/// A state file with `text` in a directory of its own, removed on drop.
pub(super) struct StateFile(
    pub(super) PathBuf,
    #[expect(dead_code, reason = "held for its drop, which removes the directory")] ScratchDir,
);

impl StateFile {
    pub(super) fn new(name: &str, text: &str) -> Self {
        let dir = ScratchDir::new(&format!("vrrp-state-{name}"));
        let path = dir.join("lbd.vrrp-51-v4.state");
        std::fs::write(&path, text).expect("write");
        Self(path, dir)
    }
}

/// An interface address as `Netlink::addresses` reports it.
pub(super) fn on_interface(address: &str, prefix_len: u8, secondary: bool) -> InterfaceAddress {
    InterfaceAddress {
        address: address.parse().expect("address"),
        prefix_len,
        secondary,
        state: Default::default(),
    }
}

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// An instance's config: VRID 51, 1 s adverts, `priority`, moving
/// `address`.
pub(super) fn vrrp_config(priority: u8, address: &str) -> VrrpConfig {
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

/// The master adds the VIPs as local addresses, so its kernel accepts
/// what is sent to them: Accept_Mode is in effect true, and the
/// settings say so rather than the RFC's default.
#[test]
fn the_settings_say_the_master_accepts_packets_to_its_addresses() {
    assert!(settings_of(&vrrp_config(100, "198.18.0.10")).accept_mode);
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
