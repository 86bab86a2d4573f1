//! Interop with keepalived as a foreign VRRP peer: lbd and keepalived
//! elect and fail over both ways, a stopped lbd leaves no VIP behind, and
//! the two nodes never both hold the VIP for longer than a handover takes
//! (a split brain, one ignoring the other, lasts seconds).

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::{in_netns, Host, Lab, VIP4},
    support::{ip_on, status_on},
};
use lb_userspace::vrrp::State;

use crate::{
    observe::{vrrp_state, wait_for_vip},
    setup::lab,
};

/// The longest time both nodes may hold the VIP at once and the test
/// pass. A handover done right overlaps by the time the old master takes
/// to act on the new one's first advert (preemption) or by nothing
/// (priority 0: the leaving node drops the VIP, then the other takes it
/// after its skew time): a few ms on an idle machine, more when a loaded
/// 2-core machine is slow to run keepalived, lbd or this test's event
/// readers (their delay is counted in). 500 ms is five advert intervals
/// of such slack. What it catches is a split brain, one node ignoring or
/// not accepting the other's adverts: both then hold the VIP until the
/// test moves on, at least the 1 s the elections below wait before they
/// look, twice the bound.
const OVERLAP_LIMIT: Duration = Duration::from_millis(500);

/// The VIP appearing on (`true`) or leaving (`false`) a node's eth0, when
/// this test read rtnetlink's event of it.
type Change = (Instant, bool);

/// Follows the VIP on eth0 of both LB nodes through rtnetlink's address
/// events (no sampling: an `ip` run per look can take longer under load
/// than the overlap it should see). The readers stop when it is finished
/// or dropped.
struct VipWatch {
    started: Instant,
    stop: Arc<AtomicBool>,
    readers: Vec<thread::JoinHandle<Vec<Change>>>,
}

impl VipWatch {
    /// Subscribes in both nodes' namespaces, then checks that neither
    /// holds the VIP yet (the events tell every change from there on).
    fn start(lab: &Lab) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let readers = lab.lbs[..2]
            .iter()
            .map(|node| {
                let (socket, eth0) = subscribe(&node.netns);
                let stop = stop.clone();
                thread::spawn(move || read_vip_changes(&socket, eth0, &stop))
            })
            .collect();
        for node in &lab.lbs[..2] {
            assert!(
                !lab.holds_vip(node).expect("ip addr"),
                "{} holds the VIP before anything runs",
                node.name
            );
        }
        Self {
            started,
            stop,
            readers,
        }
    }

    /// Stops the readers; returns each node's changes, in order, and when
    /// the watch started.
    fn finish(mut self) -> (Vec<Vec<Change>>, Instant) {
        self.stop.store(true, Ordering::Relaxed);
        let changes = self
            .readers
            .drain(..)
            .map(|reader| reader.join().expect("address event reader"))
            .collect();
        (changes, self.started)
    }
}

impl Drop for VipWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A NETLINK_ROUTE socket in `netns` subscribed to IPv4 address changes,
/// and the index of eth0 there. (A socket stays in the namespace it was
/// made in, whichever thread reads it.)
fn subscribe(netns: &str) -> (OwnedFd, u32) {
    in_netns(netns, || -> io::Result<(OwnedFd, u32)> {
        // SAFETY: plain socket(2); the fd is owned by the OwnedFd below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all zeroes is valid.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = libc::RTMGRP_IPV4_IFADDR as u32;
        // SAFETY: bind(2) with a valid sockaddr_nl and its size.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                std::ptr::from_ref(&address).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(io::Error::last_os_error());
        }
        // Reads wake every 50 ms to see whether to stop.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: setsockopt(2) with a valid timeval and its size.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: if_nametoindex(3) with a NUL-terminated name.
        let eth0 = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        if eth0 == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((socket, eth0))
    })
    .expect("a thread in the node's namespace")
    .expect("an rtnetlink subscription to address changes")
}

/// Reads `socket`'s address events until `stop` is set and nothing is
/// left to read; returns the VIP's changes on interface `eth0`. Panics
/// when events were lost (the kernel says so with ENOBUFS): a missed
/// removal would hide an overlap.
fn read_vip_changes(socket: &OwnedFd, eth0: u32, stop: &AtomicBool) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv(2) into a buffer of the length given.
        let read = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        let at = Instant::now();
        if read < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                // Nothing for 50 ms: everything that came is read.
                io::ErrorKind::WouldBlock if stop.load(Ordering::Relaxed) => return changes,
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                _ => panic!("reading address events: {error}"),
            }
        }
        let datagram = &buffer[..usize::try_from(read).expect("a length")];
        changes.extend(
            vip_changes(datagram, eth0)
                .into_iter()
                .map(|held| (at, held)),
        );
    }
}

/// The VIP's changes on interface `eth0` in one datagram of rtnetlink
/// messages: `true` for RTM_NEWADDR, `false` for RTM_DELADDR.
fn vip_changes(mut datagram: &[u8], eth0: u32) -> Vec<bool> {
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().expect("4"));
    let mut changes = Vec::new();
    // nlmsghdr: length (4), type (2), flags (2), seq (4), pid (4).
    while datagram.len() >= 16 {
        let length = usize::try_from(u32_at(datagram, 0)).expect("a length");
        assert!(
            (16..=datagram.len()).contains(&length),
            "a malformed rtnetlink message"
        );
        let (message, rest) = datagram.split_at(length);
        datagram = rest
            .get(length.next_multiple_of(4) - length..)
            .unwrap_or(&[]);
        let kind = u16_at(message, 4);
        if kind != libc::RTM_NEWADDR && kind != libc::RTM_DELADDR {
            continue;
        }
        // ifaddrmsg: family (1), prefix length (1), flags (1), scope (1),
        // interface index (4); then its attributes.
        if message.len() < 24
            || i32::from(message[16]) != libc::AF_INET
            || message[17] != 32
            || u32_at(message, 20) != eth0
        {
            continue;
        }
        let mut attributes = &message[24..];
        let mut is_vip = false;
        while attributes.len() >= 4 {
            let length = usize::from(u16_at(attributes, 0));
            if length < 4 || length > attributes.len() {
                break;
            }
            let kind = u16_at(attributes, 2);
            if kind == libc::IFA_LOCAL && attributes[4..length] == VIP4.octets() {
                is_vip = true;
            }
            attributes = attributes.get(length.next_multiple_of(4)..).unwrap_or(&[]);
        }
        if is_vip {
            changes.push(kind == libc::RTM_NEWADDR);
        }
    }
    changes
}

/// The longest time both nodes held the VIP at once, from each node's
/// `changes` (in the order read); a span still open at the end runs to
/// `end`.
fn longest_overlap(changes: &[Vec<Change>], end: Instant) -> Duration {
    let mut timeline: Vec<(Instant, usize, bool)> = changes
        .iter()
        .enumerate()
        .flat_map(|(node, list)| list.iter().map(move |&(at, held)| (at, node, held)))
        .collect();
    timeline.sort_by_key(|&(at, _, _)| at);
    let mut held = vec![false; changes.len()];
    let mut both_since = None;
    let mut longest = Duration::ZERO;
    for (at, node, now) in timeline {
        held[node] = now;
        match (both_since, held.iter().all(|h| *h)) {
            (None, true) => both_since = Some(at),
            (Some(since), false) => {
                longest = longest.max(at.saturating_duration_since(since));
                both_since = None;
            }
            _ => {}
        }
    }
    if let Some(since) = both_since {
        longest = longest.max(end.saturating_duration_since(since));
    }
    longest
}

/// Each node's `changes` in words, in ms since `since` (for a failure).
fn timeline(changes: &[Vec<Change>], since: Instant) -> String {
    changes
        .iter()
        .enumerate()
        .map(|(node, list)| {
            let moves: Vec<String> = list
                .iter()
                .map(|&(at, held)| {
                    let ms = at.saturating_duration_since(since).as_millis();
                    format!("{} at {ms} ms", if held { "added" } else { "removed" })
                })
                .collect();
            format!("node {node}: {}", moves.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How often the VIP appeared on a node, from its `changes`.
fn appearances(changes: &[Change]) -> usize {
    let mut held = false;
    let mut count = 0;
    for &(_, now) in changes {
        if now && !held {
            count += 1;
        }
        held = now;
    }
    count
}

/// The lab's HA config for `node` without the `sync_*` keys: keepalived
/// replicates no flows (README: leave them out with a keepalived peer;
/// an lbd with a `sync_peer` would hold back its preemption for the
/// peer's dump).
fn config_beside_keepalived(lab: &Lab, node: &Host, peer: &Host, priority: u8) -> String {
    lab.ha_config(node, peer, &["b1", "b2", "b3"], priority, true)
        .expect("config")
        .lines()
        .filter(|line| !line.starts_with("sync_"))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn lbd_and_keepalived_elect_and_fail_over_both_ways() {
    let mut lab = lab(3);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let watch = VipWatch::start(&lab);

    // lbd (150) master, keepalived (100) backup.
    let config = config_beside_keepalived(&lab, &a, &b, 150);
    lab.start_keepalived(&b, "keepalived-b", 100, true)
        .expect("keepalived");
    lab.start_lbd_on(&a, "lbd-a", &config).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1000));
    assert!(
        !lab.holds_vip(&b).expect("ip addr"),
        "keepalived took the VIP from a higher-priority lbd:\n{}",
        lab.log("keepalived-b")
    );
    // A backup keepalived is silent: whether lbd takes keepalived's
    // adverts is checked in the next phase, where keepalived is master.
    let received = status_on(&lab, &a).vrrp[0].counters.adverts_received;
    println!("lbd heard {received} adverts from keepalived before it became master");

    // lbd leaves (it has exited when `interrupt` returns, and took its
    // VIP with it): keepalived takes over.
    lab.interrupt("lbd-a").expect("stop lbd");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
    assert!(
        !lab.holds_vip(&a).expect("ip addr"),
        "a stopped lbd left its VIP:\n{}",
        lab.log("lbd-a")
    );
    lab.terminate("keepalived-b").expect("stop keepalived");

    // keepalived (200) master, lbd (100) backup.
    lab.start_keepalived(&b, "keepalived-b2", 200, true)
        .expect("keepalived");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(10));
    let config = config_beside_keepalived(&lab, &a, &b, 100);
    lab.start_lbd_on(&a, "lbd-a2", &config).expect("lbd");
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        vrrp_state(&lab, &a),
        State::Backup,
        "lbd did not defer to keepalived:\n{}",
        lab.log("lbd-a2")
    );
    // keepalived, master, advertises: lbd hears its adverts and takes
    // every one (a checksum, TTL or address list lbd read differently
    // would count an ignored advert, and lbd would take over).
    let vrrp = &status_on(&lab, &a).vrrp[0];
    assert!(
        vrrp.counters.adverts_received > 0,
        "lbd hears keepalived's adverts"
    );
    assert!(
        vrrp.ignored.is_empty(),
        "lbd rejected keepalived's adverts: {:?} ignored of {} received",
        vrrp.ignored,
        vrrp.counters.adverts_received
    );
    assert!(!lab.holds_vip(&a).expect("ip addr"));

    // keepalived leaves: lbd takes over.
    lab.terminate("keepalived-b2").expect("stop keepalived");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(5));
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 100).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    let end = Instant::now();
    let (changes, started) = watch.finish();
    let longest = longest_overlap(&changes, end);
    println!(
        "the VIP appeared {} times on lb and {} times on lb2; the longest time both held it: {} ms",
        appearances(&changes[0]),
        appearances(&changes[1]),
        longest.as_millis()
    );
    // The watch saw what the test did (lbd took the VIP in the first and
    // last phases, keepalived in the two between): it cannot miss the
    // overlaps by missing the events.
    assert!(
        appearances(&changes[0]) >= 2 && appearances(&changes[1]) >= 2,
        "the address events missed the VIP's moves: {}",
        timeline(&changes, started)
    );
    assert!(
        longest <= OVERLAP_LIMIT,
        "both nodes held the VIP for {longest:?} (limit {OVERLAP_LIMIT:?}): {}",
        timeline(&changes, started)
    );
}

/// Starts keepalived on `node` as process `name` (priority 100, VRID 51,
/// 100 ms adverts, the lab's IPv4 VIP) sending to one unicast peer,
/// `peer`, and taking adverts only from it (`check_unicast_src`): a
/// keepalived that hears lbd's adverts from any other address ignores
/// them and becomes master.
fn start_unicast_keepalived(lab: &mut Lab, node: &Host, name: &str, peer: Ipv4Addr) {
    let config = format!(
        "global_defs {{\n  vrrp_version 3\n  router_id {name}\n  enable_script_security\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  \
         advert_int 0.1\n  unicast_src_ip {}\n  unicast_peer {{\n    {peer}\n  }}\n  check_unicast_src\n  \
         virtual_ipaddress {{\n    {VIP4}/32\n  }}\n}}\n",
        node.ipv4
    );
    lab.start_keepalived_with(node, name, &config)
        .expect("keepalived");
}

/// lbd's `unicast_src_ip`: its node has two addresses, and the keepalived
/// peer's `unicast_peer` lists only the second (with
/// `check_unicast_src`, so it takes adverts from that address alone).
/// With `unicast_src_ip` naming it, keepalived hears the higher-priority
/// lbd and stays backup; without, lbd's adverts leave from the primary
/// address, keepalived ignores them and holds the VIP too.
#[test]
fn keepalived_hears_lbd_from_its_unicast_src_ip() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let [n0, n1, n2, _] = a.ipv4.octets();
    let second = Ipv4Addr::new(n0, n1, n2, 77);
    ip_on(&a, &["addr", "add", &format!("{second}/24"), "dev", "eth0"]);
    let unicast = |source: Option<Ipv4Addr>| {
        let from = source.map_or(String::new(), |s| format!("unicast_src_ip = \"{s}\"\n"));
        lab.ha_config(&a, &b, &["b1"], 150, true)
            .expect("config")
            .lines()
            .filter(|line| !line.starts_with("sync_"))
            .map(|line| format!("{line}\n"))
            .collect::<String>()
            .replace(
                "[[vrrp]]\n",
                &format!("[[vrrp]]\nunicast_peers = [\"{}\"]\n{from}", b.ipv4),
            )
    };
    let (with_source, without) = (unicast(Some(second)), unicast(None));

    start_unicast_keepalived(&mut lab, &b, "keepalived-b", second);
    lab.start_lbd_on(&a, "lbd-a", &with_source).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(vrrp_state(&lab, &a), State::Master, "{}", lab.log("lbd-a"));
    assert!(
        !lab.holds_vip(&b).expect("ip addr"),
        "keepalived did not take lbd's adverts from {second}:\n{}\n{}",
        lab.log("keepalived-b"),
        lab.log("lbd-a")
    );
    assert!(
        lab.log("lbd-a").contains(&second.to_string()),
        "lbd logs the source it starts with:\n{}",
        lab.log("lbd-a")
    );

    // The control: from the primary address keepalived hears nothing it
    // takes, and holds the VIP beside lbd.
    lab.interrupt("lbd-a").expect("stop lbd");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
    lab.start_lbd_on(&a, "lbd-a2", &without).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1500));
    assert!(
        lab.holds_vip(&b).expect("ip addr"),
        "keepalived took adverts from an address its unicast_peer does not list; the test proves nothing:\n{}",
        lab.log("keepalived-b")
    );
    lab.terminate("keepalived-b").expect("stop keepalived");
}
