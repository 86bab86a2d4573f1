//! Client affinity (`affinity = "source"`) with real nginx backends: every
//! new connection of one client address reaches one backend while other
//! addresses spread; `lbctl status` says so on the VIP's line; a reload
//! to `affinity = "connection"` keeps every established download on its
//! backend and spreads one client's new connections again.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use lb_common::Affinity;
use lb_tests::{
    http::{burst_from, cut_streams, open_stream_from, Burst},
    lab::{Lab, HTTP_PORT, VIP4},
    shares::add_client_addresses,
    support::{lbctl_ok, status, MaglevModel},
};

/// Requests (each a new connection) from the one client address.
const REQUESTS: u32 = 20;
/// The other client addresses.
const OTHERS: u8 = 8;
/// Downloads (six seconds each) held across the reload.
const DOWNLOADS: usize = 4;

/// `count` new connections' requests from `from`, each checked to succeed;
/// the backends that answered.
fn backends_from(lab: &Lab, from: Ipv4Addr, count: u32) -> BTreeSet<String> {
    let Burst {
        by_backend,
        peers,
        failed,
        errors,
        ..
    } = burst_from(
        &lab.client.netns,
        Some(IpAddr::V4(from)),
        IpAddr::V4(VIP4),
        count,
    );
    assert_eq!(failed, 0, "requests from {from} failed: {errors:?}");
    assert_eq!(
        peers,
        BTreeSet::from([IpAddr::V4(from)]),
        "nginx saw other peers than {from}"
    );
    by_backend.into_keys().collect()
}

/// `lbctl status`'s line of the lab's VIP.
fn vip_line(lab: &Lab) -> String {
    let text = lbctl_ok(lab, &["status"]);
    text.lines()
        .find(|l| l.starts_with(&format!("VIP {VIP4}:")))
        .unwrap_or_else(|| panic!("no line of VIP {VIP4} in:\n{text}"))
        .to_owned()
}

#[test]
fn one_client_stays_on_one_backend_and_a_reload_to_connection_affinity_cuts_no_download() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    // The client's addresses: the one, then the others.
    let addresses = add_client_addresses(&lab, OTHERS + 1);
    let sticky = lab.lbd_config_for(&["b1", "b2", "b3"], "affinity = \"source\"\n");
    lab.start_lbd(&sticky).expect("lbd");
    assert_eq!(status(&lab).vips[0].affinity, Affinity::Source);
    let line = vip_line(&lab);
    assert!(line.contains("  affinity source  "), "{line}");

    // One client address: every new connection to one backend.
    let client = addresses[0];
    let one = backends_from(&lab, client, REQUESTS);
    assert_eq!(
        one.len(),
        1,
        "{REQUESTS} connections from {client}: {one:?}"
    );
    let home = one.into_iter().next().expect("a backend");
    // Other addresses: over the backends (each staying on its own).
    let others: BTreeSet<String> = addresses[1..]
        .iter()
        .flat_map(|address| {
            let served = backends_from(&lab, *address, 3);
            assert_eq!(served.len(), 1, "{address}: {served:?}");
            served
        })
        .collect();
    assert!(others.len() >= 2, "{OTHERS} other clients: {others:?}");

    // Downloads in flight from the client, from ports whose connection
    // hash picks another backend than the client's: were the reload to
    // hash them again, each would land where nginx has no connection.
    // (The model of where connection affinity sends a flow.)
    let by_connection = MaglevModel::new(&lab, &[("b1", 100), ("b2", 100), ("b3", 100)]);
    let elsewhere: Vec<SocketAddr> = (20_000..)
        .map(|port| SocketAddr::new(IpAddr::V4(client), port))
        .filter(|from| by_connection.pick(*from) != home)
        .take(2 * DOWNLOADS)
        .collect();
    let (held, later) = elsewhere.split_at(DOWNLOADS);
    let mut streams: Vec<_> = held
        .iter()
        .map(|from| open_stream_from(&lab.client.netns, *from, IpAddr::V4(VIP4)))
        .collect();
    let on: Vec<&str> = streams.iter().map(|s| s.backend.as_str()).collect();
    assert!(
        on.iter().all(|b| *b == home),
        "downloads on {on:?}, not {home}"
    );

    // The file as lbd was started with it (its pin directory too), but
    // for the affinity.
    let running = format!(
        "pin_dir = \"{}\"\n{sticky}",
        lab.pin_dir_of(&lab.lb).display()
    );
    let connection = running.replace("affinity = \"source\"", "affinity = \"connection\"");
    assert_ne!(connection, running);
    lab.write_lbd_config(&connection).expect("write config");
    let reloaded = lbctl_ok(&lab, &["reload"]);
    assert!(
        reloaded.contains(&format!(
            "  affinity of VIP {VIP4}:{HTTP_PORT}/tcp: source -> connection (the file's)\n"
        )),
        "{reloaded}"
    );
    // The plan says the new flows move, though the table stays.
    assert!(
        reloaded.contains(&format!(
            "VIP {VIP4}:{HTTP_PORT}/tcp (changed): changed; affinity source -> connection: about "
        )),
        "{reloaded}"
    );
    assert_eq!(status(&lab).vips[0].affinity, Affinity::Connection);
    let line = vip_line(&lab);
    assert!(!line.contains("affinity"), "{line}");

    // New connections of the one client spread again.
    let spread = backends_from(&lab, client, REQUESTS);
    assert!(
        spread.len() >= 2,
        "{REQUESTS} connections from {client} after the reload: {spread:?}"
    );
    // ... each where connection affinity's hash puts it, not the
    // client's backend.
    for from in later {
        let stream = open_stream_from(&lab.client.netns, *from, IpAddr::V4(VIP4));
        assert_eq!(
            stream.backend,
            by_connection.pick(*from),
            "a new connection from {from} after the reload"
        );
        streams.push(stream);
    }
    let total = streams.len();
    let cut = cut_streams(streams);
    assert!(
        cut.is_empty(),
        "{} of {total} downloads cut (the first {DOWNLOADS} ran across the reload): {cut:?}",
        cut.len()
    );
}
