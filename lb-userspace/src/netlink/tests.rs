use super::{
    links::xdp_of,
    mac_to_follow,
    neighbours::{hops_to_probe, to_probe},
    AddressState,
};
use crate::config::XdpMode;
use netlink_packet_route::{
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
    neighbour::NeighbourState,
};

/// A link message whose `IFLA_XDP` holds `xdp`.
fn with_xdp(xdp: Vec<LinkXdp>) -> LinkMessage {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::Xdp(xdp));
    link
}

/// With a driver program and an offloaded one (a SmartNIC), the
/// kernel reports "multi" and each mode's program, but no
/// `IFLA_XDP_PROG_ID`: the driver (or generic) program is the one lbd
/// may run, and the offloaded one is not reported beside it. Before,
/// only `IFLA_XDP_PROG_ID` was read, so lbd took its driver program
/// for detached. Alone, an offloaded program is reported, in no mode
/// lbd attaches in (another tool's).
#[test]
fn the_driver_program_is_read_beside_an_offloaded_one() {
    let multi = |at: LinkXdp| {
        with_xdp(vec![
            LinkXdp::Attached(XdpAttached::Multiple),
            at,
            LinkXdp::HwProgId(9),
        ])
    };
    assert_eq!(
        xdp_of(&multi(LinkXdp::DrvProgId(7))),
        Some((7, XdpMode::Native))
    );
    assert_eq!(
        xdp_of(&multi(LinkXdp::SkbProgId(5))),
        Some((5, XdpMode::Generic))
    );
    let offloaded = with_xdp(vec![
        LinkXdp::Attached(XdpAttached::Hardware),
        LinkXdp::HwProgId(9),
        LinkXdp::ProgId(9),
    ]);
    assert_eq!(xdp_of(&offloaded), Some((9, XdpMode::Auto)));
}

/// One mode attached: the kernel reports the program twice (its
/// mode's id and `IFLA_XDP_PROG_ID`), older kernels the latter only;
/// nothing attached reads as none.
#[test]
fn a_single_xdp_program_is_read_with_its_mode() {
    let driver = with_xdp(vec![
        LinkXdp::Attached(XdpAttached::Driver),
        LinkXdp::DrvProgId(7),
        LinkXdp::ProgId(7),
    ]);
    assert_eq!(xdp_of(&driver), Some((7, XdpMode::Native)));
    let generic_old_kernel = with_xdp(vec![
        LinkXdp::Attached(XdpAttached::SocketBuffer),
        LinkXdp::ProgId(5),
    ]);
    assert_eq!(xdp_of(&generic_old_kernel), Some((5, XdpMode::Generic)));
    let none = with_xdp(vec![LinkXdp::Attached(XdpAttached::None)]);
    assert_eq!(xdp_of(&none), None);
    assert_eq!(xdp_of(&LinkMessage::default()), None);
}

/// Missing and STALE entries are probed (a STALE one is still used
/// meanwhile); fresh ones are not. Before, only missing ones were, so
/// an unchecked backend rebuilt with a new MAC kept its old one.
/// A next hop is judged by its entry on its own interface: missing
/// and STALE ones are probed, so a router replaced at the same address
/// (new MAC, no announcement) is learnt; fresh ones are not; an entry
/// for the same (link-local) address on another interface is another
/// router's. Before, a gateway's STALE entry was never probed, and its
/// old MAC was sent to for as long as the entry lived.
#[test]
fn next_hops_missing_or_stale_on_their_interface_are_probed() {
    let a = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let known = [
        (
            (2, a("198.18.0.1")),
            ([2, 0, 0, 0, 0, 1], NeighbourState::Reachable),
        ),
        (
            (2, a("198.18.0.254")),
            ([2, 0, 0, 0, 0, 2], NeighbourState::Stale),
        ),
        (
            (2, a("fe80::1")),
            ([2, 0, 0, 0, 0, 3], NeighbourState::Reachable),
        ),
        (
            (3, a("198.19.2.1")),
            ([2, 0, 0, 0, 0, 4], NeighbourState::Probe),
        ),
    ]
    .into_iter()
    .collect();
    let hops = [
        (2, a("198.18.0.1")),
        (2, a("198.18.0.254")),
        (2, a("fe80::1")),
        (3, a("fe80::1")),
        (3, a("198.19.2.1")),
        (3, a("198.19.2.254")),
    ];
    assert_eq!(
        hops_to_probe(&hops, &known),
        vec![
            (2, a("198.18.0.254")),
            (3, a("fe80::1")),
            (3, a("198.19.2.254"))
        ]
    );
}

#[test]
fn missing_and_stale_neighbours_are_probed() {
    let a = |last: u8| std::net::IpAddr::from([198, 18, 0, last]);
    let known = [
        (a(1), ([2, 0, 0, 0, 0, 1], NeighbourState::Reachable)),
        (a(2), ([2, 0, 0, 0, 0, 2], NeighbourState::Stale)),
        (a(3), ([2, 0, 0, 0, 0, 3], NeighbourState::Delay)),
        (a(4), ([2, 0, 0, 0, 0, 4], NeighbourState::Permanent)),
    ]
    .into_iter()
    .collect();
    let wanted = [a(1), a(2), a(3), a(4), a(5)];
    assert_eq!(to_probe(&wanted, &known), vec![a(2), a(5)]);
}
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};

/// The DAD and lifetime state is read from IFA_FLAGS, else from the
/// header's byte; an optimistic address is usable while DAD runs.
#[test]
fn an_address_state_is_read_from_its_flags() {
    let mut message = AddressMessage::default();
    assert_eq!(AddressState::of(&message), AddressState::default());
    message.header.flags = AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed;
    let failed = AddressState {
        tentative: true,
        dad_failed: true,
        deprecated: false,
    };
    assert_eq!(AddressState::of(&message), failed);
    message.attributes = vec![AddressAttribute::Flags(
        AddressFlags::Deprecated | AddressFlags::Permanent,
    )];
    let deprecated = AddressState {
        deprecated: true,
        ..AddressState::default()
    };
    assert_eq!(AddressState::of(&message), deprecated, "IFA_FLAGS wins");
    message.attributes = vec![AddressAttribute::Flags(
        AddressFlags::Tentative | AddressFlags::Optimistic,
    )];
    assert_eq!(AddressState::of(&message), AddressState::default());
}

/// Whether `ip neigh` lists a neighbour entry (in any state) for
/// `address` on `device`.
fn neighbour_listed(address: &str, device: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["neigh", "show", address, "dev", device, "nud", "all"])
        .output()
        .expect("running ip");
    assert!(out.status.success(), "ip neigh: {out:?}");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// In a namespace of its own: a probe of a next hop the data plane's
/// FIB lookup found on `n0` (its table, not the main one) while the
/// node's main table sends that address out of `n1` leaves by `n0`,
/// where the data plane looks for the neighbour entry; before, it
/// followed the main table and the entry was made on `n1` only. (A
/// VRF would show the same; a second interface whose subnet holds the
/// address is the plainest main table that disagrees.)
#[test]
fn a_probe_leaves_by_the_interface_it_names_not_the_main_tables() {
    if !crate::test_netns::is_root() {
        eprintln!("skipped: the interfaces need root (a netns of their own)");
        return;
    }
    crate::test_netns::in_own_netns(|| {
        use crate::test_netns::ip;
        ip(&["link", "add", "n0", "type", "veth", "peer", "name", "p0"]);
        ip(&["link", "add", "n1", "type", "veth", "peer", "name", "p1"]);
        for link in ["n0", "p0", "n1", "p1"] {
            ip(&["link", "set", link, "up"]);
        }
        ip(&["addr", "add", "198.18.4.2/24", "dev", "n0"]);
        // The main table's way to 198.18.5.1: out of n1.
        ip(&["addr", "add", "198.18.5.2/24", "dev", "n1"]);
        // (Not from /sys: it shows the namespace it was mounted in.)
        // SAFETY: a NUL-terminated name.
        let n0 = unsafe { libc::if_nametoindex(c"n0".as_ptr()) };
        assert_ne!(n0, 0, "n0's index");
        super::probe_on("198.18.5.1".parse().unwrap(), n0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !neighbour_listed("198.18.5.1", "n0") && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            neighbour_listed("198.18.5.1", "n0"),
            "no neighbour entry on n0"
        );
        assert!(!neighbour_listed("198.18.5.1", "n1"), "probed out of n1");
    });
}

/// Runs `test` on a current-thread runtime in a network namespace of
/// its own (with `lo` up), and gives what it logged; None (skipped,
/// saying so) without root.
fn in_own_netns_runtime(
    test: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<String> {
    if !crate::test_netns::is_root() {
        eprintln!("skipped: a network namespace of its own needs root");
        return None;
    }
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let logged = std::sync::Arc::clone(&logs);
    crate::test_netns::in_own_netns(move || {
        crate::test_netns::ip(&["link", "set", "lo", "up"]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        *logged.lock().unwrap() = crate::test_logs::logs_of(|| runtime.block_on(test));
    });
    let logs = logs.lock().unwrap().clone();
    Some(logs)
}

/// The connection's task ending (netlink-proto ends it on a receive
/// error) does not leave lbd blind: the next request reopens the
/// connection and is answered; before, it and every later one failed.
#[test]
fn a_request_after_the_connection_ended_is_answered_on_a_new_one() {
    let logs = in_own_netns_runtime(async {
        let netlink = super::Netlink::connect().unwrap();
        assert!(netlink.link_state(1).await.unwrap().is_some(), "lo");
        let task = netlink.connection_task();
        task.abort();
        // Let the runtime drop the aborted task.
        while !task.is_finished() {
            tokio::task::yield_now().await;
        }
        let state = netlink.link_state(1).await;
        assert!(matches!(state, Ok(Some(_))), "{state:?}");
        assert!(
            !netlink.connection_task().is_finished(),
            "a new task drives it"
        );
        // A clone shares the new connection.
        let state = netlink.clone().link_state(1).await;
        assert!(matches!(state, Ok(Some(_))), "{state:?}");
    });
    if let Some(logs) = logs {
        let reopened: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("reopened the routing netlink connection"))
            .collect();
        assert_eq!(reopened.len(), 1, "{logs}");
        assert!(reopened[0].contains("its task had ended"), "{logs}");
    }
}

/// A request cut off by the connection ending while it waits (the
/// task aborted just after the request went out) is asked again on a
/// new connection, not taken as an empty answer (no interface 1).
#[test]
fn a_request_the_connection_ends_under_is_asked_again() {
    let logs = in_own_netns_runtime(async {
        let netlink = super::Netlink::connect().unwrap();
        let task = netlink.connection_task();
        let request = netlink.link_state(1);
        task.abort();
        let state = request.await;
        assert!(matches!(state, Ok(Some(_))), "{state:?}");
    });
    if let Some(logs) = logs {
        assert!(
            logs.contains("it closed under a request"),
            "reopened after the answer was cut short: {logs}"
        );
    }
}

/// A reply that never comes (lost by netlink-proto, say) ends the
/// request with an error naming it and the time waited, not a wait
/// that never ends.
#[test]
fn a_request_never_answered_times_out() {
    let _ = in_own_netns_runtime(async {
        let timeout = std::time::Duration::from_millis(200);
        let netlink = super::Netlink::stalled(timeout).unwrap();
        let started = std::time::Instant::now();
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(5), netlink.link_state(1))
                .await
                .expect("the request waited past its timeout");
        let error = outcome.unwrap_err().to_string();
        assert!(error.contains("looking up interface 1"), "{error}");
        assert!(error.contains("200ms"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    });
}

#[test]
fn a_changed_mac_is_followed_and_an_unchanged_or_missing_one_is_not() {
    let known = [2, 0, 0, 0, 0, 1];
    let changed = [2, 0, 0, 0, 0, 2];
    assert_eq!(mac_to_follow(known, Some(changed)), Some(changed));
    assert_eq!(mac_to_follow(known, Some(known)), None);
    assert_eq!(mac_to_follow(known, None), None);
    // An all-zero MAC would make the data plane take every frame.
    assert_eq!(mac_to_follow(known, Some([0; 6])), None);
}
