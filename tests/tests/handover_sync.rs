//! A stop for good (SIGINT) of a VRRP pair's master hands its VIP and
//! NAT address over with a priority-0 advert, and the neighbours keep
//! sending it new connections until the peer, after its skew time (0.61 s
//! at 1 s adverts), announces the addresses. The stopping node forwards
//! them and creates their NAT translations: these must reach the peer
//! too, or every such connection breaks once the addresses moved (the
//! peer drops the client's segments of a flow it does not know and its
//! stack answers the backend's with a reset). Here a client opens a new
//! NAT'd connection every 15 ms all through the stop and keeps each open;
//! after the handover every one of them must still be answered by its
//! first backend through its first translation. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::Conn,
    lab::{Host, Lab, Topology, HTTP_PORT, ROUTED_BACKEND_PORT, VIP4},
    support::{nonzero, status_on, wait_backup, wait_replication, wait_until},
};

/// The pair's NAT address (moved by VRRP with the VIP).
const NAT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// How often the client opens a new connection.
const OPEN_EVERY: Duration = Duration::from_millis(15);
/// Longest a connection's handshake and first answer may take (a lost
/// SYN is retransmitted after 1 s).
const CONNECT: Duration = Duration::from_secs(3);

/// lbd's config on `node`: one IPv4 NAT VIP over the lab's backends, VRRP
/// with `peer` at `priority` and 1 s adverts (so the peer's skew time, the
/// window in which the stopping node still receives new connections, is
/// 0.61 s), connection-table replication with it.
fn config(lab: &Lab, node: &Host, peer: &Host, priority: u8) -> String {
    let key = lab.dir.join("sync.key");
    if !key.exists() {
        std::fs::write(&key, "lab-sync-key-0123456789abcdef\n").expect("sync key");
    }
    let mut config = format!(
        "interface = \"eth0\"\nattach = \"xdp\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n\
         [nat]\nsource_ipv4 = \"{NAT4}\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\nprotocol = \"tcp\"\nforwarding = \"nat\"\n\
         [vip.health]\ncheck = \"none\"\n",
        lab.admin_socket_of(node).display(),
    );
    for backend in &lab.backends {
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n  port = {ROUTED_BACKEND_PORT}\n",
            backend.ipv4
        ));
    }
    config.push_str(&format!(
        "\n[[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 1000\npreempt = true\n\
         announce_count = 3\naddresses = [\"{VIP4}\", \"{NAT4}\"]\n\
         sync_listen = \"{}:7540\"\nsync_peer = \"{}:7540\"\nsync_key_file = \"{}\"\n",
        node.ipv4,
        peer.ipv4,
        key.display()
    ));
    config
}

/// Whether `node` holds the VIP and the NAT address.
fn holds_both(lab: &Lab, node: &Host) -> bool {
    lab.addresses_of(node).is_ok_and(|addresses| {
        [IpAddr::V4(VIP4), IpAddr::V4(NAT4)]
            .iter()
            .all(|a| addresses.contains(&format!("{a}/")))
    })
}

/// One connection the client opened: when it began to open it, when its
/// first answer came, and the connection (None: it could not be opened,
/// with why).
struct Opened {
    started: Instant,
    at: Instant,
    conn: Result<Conn, String>,
}

#[test]
fn connections_opened_across_a_stop_for_good_survive_the_handover() {
    let mut lab = Lab::start_topology(Topology::routed(2, 2, false)).expect("routed lab");
    lab.wait_for_backends().expect("nginx up");
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let config_a = config(&lab, &a, &b, 150);
    let config_b = config(&lab, &b, &a, 100);
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    wait_until(
        "lb to hold the VIP and the NAT address",
        Duration::from_secs(10),
        || holds_both(&lab, &a),
    );
    wait_backup(&lab, &b, Duration::from_secs(10));
    wait_replication(&lab, &a);

    // The client: a new connection every OPEN_EVERY, each kept open.
    let stop = Arc::new(AtomicBool::new(false));
    let opener = {
        let (stop, netns) = (stop.clone(), lab.client.netns.clone());
        thread::spawn(move || {
            let mut opened = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let conn = Conn::open(&netns, IpAddr::V4(VIP4), 1, CONNECT)
                    .and_then(|mut c| c.pop().ok_or_else(|| anyhow::anyhow!("no connection")))
                    .map_err(|e| format!("{e:#}"));
                opened.push(Opened {
                    started,
                    at: Instant::now(),
                    conn,
                });
                thread::sleep(OPEN_EVERY);
            }
            opened
        })
    };
    thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    lab.signal("lbd-a", libc::SIGINT).expect("SIGINT");
    wait_until(
        "lb2 to take the VIP and the NAT address",
        Duration::from_secs(5),
        || holds_both(&lab, &b),
    );
    let taken = Instant::now();
    let exit = lab
        .wait_exit("lbd-a", Duration::from_secs(15))
        .expect("lbd-a exits");
    let exited = stopped.elapsed();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let opened = opener.join().expect("the opening thread");
    assert!(exit.success(), "lbd-a: {exit:?}\n{}", lab.log("lbd-a"));

    // Every connection asks once more, now that only lb2 forwards (each
    // on a thread of its own: a broken one waits its read timeout).
    let total = opened.len();
    let mut not_opened = Vec::new();
    let mut asking = Vec::new();
    // The window under test: connections opened (SYN to first answer)
    // after SIGINT and before lb2 held the addresses, so lbd-a, stopping,
    // forwarded them and made their translations. lb2 is seen holding
    // them up to a poll (20 ms and an `ip` call) late: 100 ms of margin.
    let in_window = opened
        .iter()
        .filter(|o| o.started >= stopped && o.at + Duration::from_millis(100) < taken)
        .count();
    for (i, Opened { at, conn, .. }) in opened.into_iter().enumerate() {
        match conn {
            Ok(mut conn) => asking.push((
                i,
                at,
                thread::spawn(move || match conn.get() {
                    Ok(seen) if seen == conn.first => Ok(()),
                    Ok(seen) => Err(format!("{:?} became {seen:?}", conn.first)),
                    Err(e) => Err(format!("{:?}: {e:#}", conn.first)),
                }),
            )),
            Err(error) => not_opened.push(format!(
                "#{i} ({} ms after SIGINT): {error}",
                at.saturating_duration_since(stopped).as_millis()
            )),
        }
    }
    let mut broken_before = Vec::new();
    let mut broken_after = Vec::new();
    let mut before = 0;
    for (i, at, asked) in asking {
        let result = asked
            .join()
            .unwrap_or_else(|_| Err("the asking thread panicked".to_owned()));
        if at < taken {
            before += 1;
        }
        if let Err(error) = result {
            let line = format!(
                "#{i} (answered {} ms after SIGINT): {error}",
                at.saturating_duration_since(stopped).as_millis()
            );
            if at < taken {
                broken_before.push(line);
            } else {
                broken_after.push(line);
            }
        }
    }
    let takeover = taken.saturating_duration_since(stopped);
    println!(
        "handover under new connections: {total} opened every {OPEN_EVERY:?} ({before} before lb2 held the addresses, {} ms after SIGINT, {in_window} of them after SIGINT); \
         lbd-a exited after {exited:?}; {} broken ({} opened before the takeover), {} not opened",
        takeover.as_millis(),
        broken_before.len() + broken_after.len(),
        broken_before.len(),
        not_opened.len()
    );
    assert!(
        in_window > 0,
        "no connection was opened between SIGINT and the takeover ({takeover:?}): the test saw no handover window"
    );
    assert!(
        broken_before.is_empty() && broken_after.is_empty() && not_opened.is_empty(),
        "connections broke across the stop for good (takeover {takeover:?} after SIGINT):\n\
         opened before the takeover, broken: {broken_before:#?}\nopened after, broken: {broken_after:#?}\n\
         not opened: {not_opened:#?}\nlb2's counters: {:?}\nlbd-a:\n{}\nlbd-b:\n{}",
        nonzero(&status_on(&lab, &b)),
        lab.log("lbd-a"),
        lab.log("lbd-b")
    );
}
