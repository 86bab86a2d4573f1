//! Unit tests of the routed modes' engine duties (forwarding, redirect map,
//! address checks, events).

use super::*;
use super::{addresses::*, events::*, forwarding::*, tx_ports::*};
use crate::netlink::Link;
use crate::ownership::held::{self, Held, HeldSetting};
use crate::test_scratch::ScratchDir;
use lb_common::{consts::EVENT_NO_NEIGHBOUR, DataplaneEvent};

/// A directory of its own for `tag` under the temporary directory, and
/// in it a setting file `setting` holding "1" (as lbd switched it on).
fn switched_on_setting(tag: &str) -> (ScratchDir, HeldSetting) {
    let dir = ScratchDir::new(&format!("nat-{tag}"));
    let path = dir.join("forwarding");
    std::fs::write(&path, "1").expect("setting");
    (
        dir,
        HeldSetting {
            path,
            was: "0".into(),
        },
    )
}

/// A growing `drop_no_tx_port` count asks for a scan at the next
/// tick; the first reading (a count an adopted data plane brought)
/// and a count that stays do not.
#[test]
fn a_growing_no_tx_port_count_asks_for_a_scan() {
    let mut misses = TxPortMisses::default();
    assert!(!misses.moved(7), "the first reading is the baseline");
    assert!(!misses.moved(7));
    assert!(misses.moved(9));
    assert!(!misses.moved(9));
    // A data plane started afresh (counts from zero) is no miss.
    assert!(!misses.moved(0));
    assert!(misses.moved(1));
}

fn record(admin_socket: &std::path::Path) -> Held {
    Held {
        config: "/etc/lbd/lbd.toml".into(),
        pid: 42,
        boot_id: String::new(),
        started: None,
        admin_socket: admin_socket.to_owned(),
        pin_dir: None,
        interface: "eth0".into(),
        attach_tc: false,
        addresses: Vec::new(),
        bgp: None,
        forwarding: Vec::new(),
    }
}

/// An unpinned restart leaves IPv6 forwarding on for the next lbd and
/// records its original again; when that record cannot be written
/// (no record: the start could not write it), nothing would ever put
/// it back, so it is put back now, as a restart did before.
#[test]
fn a_kept_setting_that_cannot_be_recorded_is_put_back() {
    let (dir, setting) = switched_on_setting("unrecorded");
    let admin_socket = dir.join("lbd.sock");
    let kept = record_or_restore(&admin_socket, vec![setting.clone()]);
    assert!(kept.is_empty(), "nothing recorded: {kept:?}");
    assert_eq!(
        std::fs::read_to_string(&setting.path).expect("setting"),
        "0",
        "put back"
    );

    std::fs::write(&setting.path, "1").expect("setting");
    let record_path = held::record_path(&admin_socket).expect("record path");
    held::write(&record_path, &record(&admin_socket)).expect("record");
    let kept = record_or_restore(&admin_socket, vec![setting.clone()]);
    assert_eq!(kept, vec![setting.clone()]);
    assert_eq!(
        std::fs::read_to_string(&setting.path).expect("setting"),
        "1",
        "recorded: stays on"
    );
    let recorded = held::read(&record_path).expect("record").forwarding;
    assert_eq!(recorded, vec![setting]);
}

/// A next hop is resolved on the interface the FIB named (a
/// link-local gateway on a two-armed node's other interface), on the
/// attached one when an older program named none.
#[test]
fn a_missing_neighbour_is_probed_on_the_egress_interface() {
    let mut event = DataplaneEvent {
        kind: EVENT_NO_NEIGHBOUR,
        vip_id: 0,
        flow: lb_common::FlowKey::default(),
    };
    assert_eq!(probe_interface(&event, 2), 2);
    event.flow.src[0] = 7;
    assert_eq!(probe_interface(&event, 2), 7);
}

#[test]
fn a_vip_address_no_vrrp_instance_moves_is_warned_about() {
    let address = |s: &str| s.parse::<IpAddr>().expect("address");
    let vip =
        crate::config::VipConfig::new(address("198.18.0.101"), 80, crate::config::Protocol::Tcp);
    let moved = [address("198.18.0.100")];
    let other = [address("2001:2::100")];
    let warning = unmoved_vip_address(&vip, &[&moved, &other], false).expect("warned");
    assert!(
            warning.starts_with("VIP 198.18.0.101:80/tcp: its address 198.18.0.101 is in no running VRRP instance's addresses"),
            "{warning}"
        );
    assert!(
            warning.contains("add it to a [[vrrp]] instance's addresses and restart lbd, or add it to the interface by hand"),
            "{warning}"
        );
    // No VRRP (the operator places addresses), an address [bgp]
    // announces, or one an instance moves: nothing to say.
    assert_eq!(unmoved_vip_address(&vip, &[], false), None);
    assert_eq!(unmoved_vip_address(&vip, &[&moved], true), None);
    let with_it = [address("198.18.0.100"), address("198.18.0.101")];
    assert_eq!(unmoved_vip_address(&vip, &[&other, &with_it], false), None);
}

#[test]
fn a_nat_address_the_instance_moving_the_vip_leaves_behind_is_warned_about() {
    let address = |s: &str| s.parse::<IpAddr>().expect("address");
    let mut vip =
        crate::config::VipConfig::new(address("198.18.0.10"), 80, crate::config::Protocol::Tcp);
    let moved = [address("198.18.0.10"), address("198.18.0.50")];
    let other = [address("198.18.0.99")];
    // Not a NAT VIP, or no VRRP at all: nothing moves, nothing to say.
    assert_eq!(unmoved_nat_address(&vip, &[&moved]), None);
    vip.forwarding = Mode::Nat;
    vip.nat = Some(crate::config::VipNat {
        source: address("198.18.0.51"),
        own_source: true,
        port_min: 1024,
        port_max: 65_535,
    });
    assert_eq!(unmoved_nat_address(&vip, &[]), None);
    let warning = unmoved_nat_address(&vip, &[&moved, &other]).expect("warned");
    assert!(
            warning.starts_with("VIP 198.18.0.10:80/tcp: its NAT address 198.18.0.51 is in no running VRRP instance's addresses along with the VIP's address 198.18.0.10"),
            "{warning}"
        );
    assert!(
            warning.contains("add 198.18.0.51 to the addresses of the [[vrrp]] instance that moves 198.18.0.10 in the config file and restart lbd"),
            "{warning}"
        );
    // Another instance moving it does not help (the file refuses that
    // too): it must move with the VIP.
    let elsewhere = [address("198.18.0.51")];
    assert!(unmoved_nat_address(&vip, &[&moved, &elsewhere]).is_some());
    // The instance that moves the VIP moves it too: nothing to say.
    let with_it = [address("198.18.0.10"), address("198.18.0.51")];
    assert_eq!(unmoved_nat_address(&vip, &[&other, &with_it]), None);
    // No instance moves the VIP's address: not this check's (the
    // VIP-not-moved warning says so).
    assert_eq!(unmoved_nat_address(&vip, &[&other]), None);
}

/// A file lbd starts with is not refused at reload: a NAT VIP whose
/// address no instance moves (here the IPv6 one, next to an instance
/// that defaults to the IPv4 VIP addresses) passes, as at start.
#[test]
fn a_nat_vip_no_instance_moves_passes_as_at_start() {
    let config = crate::config::Config::from_toml_str(
        r#"
interface = "eth0"
[nat]
source_ipv6 = "2001:2::50"
[[vip]]
address = "198.18.0.100"
port = 80
[[vip]]
address = "2001:2::100"
port = 80
forwarding = "nat"
  [[vip.backend]]
  address = "2001:2:2::11"
[[vrrp]]
vrid = 51
"#,
        "test.toml",
    )
    .expect("the file loads");
    let moved: Vec<&[IpAddr]> = config.vrrp.iter().map(|i| i.addresses.as_slice()).collect();
    assert_eq!(
        moved,
        [&["198.18.0.100".parse::<IpAddr>().expect("address")][..]]
    );
    let nat_vip = config
        .vips
        .iter()
        .find(|v| v.address == "2001:2::100".parse::<IpAddr>().expect("address"))
        .expect("the NAT VIP");
    assert!(nat_vip.nat.is_some());
    assert_eq!(unmoved_nat_address(nat_vip, &moved), None);
    for vip in &config.vips {
        assert_eq!(unmoved_nat_address(vip, &moved), None, "{vip:?}");
    }
    // Had the running instance moved the VIP's address but not the
    // NAT address, the reload would be refused.
    let v6 = ["2001:2::100".parse::<IpAddr>().expect("address")];
    let warning = unmoved_nat_address(nat_vip, &[&v6]).expect("refused");
    assert!(warning.contains("2001:2::50"), "{warning}");
}

#[test]
fn a_nat_address_the_nodes_own_connections_leave_from_is_named() {
    let id = crate::vip_id::VipId {
        address: "198.18.0.100".parse().unwrap(),
        port: 80,
        protocol: crate::config::Protocol::Tcp,
    };
    let nat = crate::config::VipNat {
        source: "198.18.0.2".parse().unwrap(),
        own_source: false,
        port_min: 1024,
        port_max: 65_535,
    };
    let backend: IpAddr = "198.19.2.11".parse().unwrap();
    let own: IpAddr = "198.18.0.2".parse().unwrap();
    let warning = shared_nat_address(&id, &nat, backend, own, (32_768, 60_999)).unwrap();
    assert!(
        warning.contains(
            "198.18.0.2 is also where this node's own connections to backend 198.19.2.11 come from"
        ) && warning.contains("1024-65535 overlap the kernel's ephemeral ports 32768-60999"),
        "{warning}"
    );
    // Another source, or ports kept apart: nothing to say.
    let other: IpAddr = "198.18.0.3".parse().unwrap();
    assert_eq!(
        shared_nat_address(&id, &nat, backend, other, (32_768, 60_999)),
        None
    );
    let apart = crate::config::VipNat {
        port_max: 32_767,
        ..nat
    };
    assert_eq!(
        shared_nat_address(&id, &apart, backend, own, (32_768, 60_999)),
        None
    );
}

/// A start that adopted the NAT table owes a sweep at its first tick,
/// whatever the owners then: the flows may name backends or VIPs
/// removed while no lbd ran. Once; a start on a fresh table owes none.
#[test]
fn the_first_tick_on_an_adopted_nat_table_owes_a_sweep() {
    let owners = Owners::default();
    let mut adopted = NatRuntime::default();
    assert!(adopted.owe_sweep_for(&owners, true, 5));
    assert!(adopted.pace.owed());
    assert!(!adopted.owe_sweep_for(&owners, true, 6));
    let mut fresh = NatRuntime::default();
    assert!(!fresh.owe_sweep_for(&owners, false, 5));
    assert!(!fresh.pace.owed());
    assert!(
        !fresh.owe_sweep_for(&owners, true, 6),
        "only the first tick"
    );
    // A backend gone since the last tick still owes one.
    let mut known = Owners::default();
    known.backends.insert(
        1,
        Owner {
            vip_id: 0,
            vip: lb_common::VipKey::default(),
            address: [1, 0, 0, 0],
        },
    );
    fresh.owners = known;
    assert!(fresh.owe_sweep_for(&owners, false, 7));
    assert!(fresh.pace.owed());
}

/// A host's `accept_ra = 1` becomes 2 while lbd forwards (else the
/// interface ignores router advertisements and a default route from
/// them expires); 0 and 2 stay; an unreadable setting is an error
/// naming it. A file in a temp dir stands in for /proc/sys.
#[test]
fn router_advertisements_stay_accepted_while_forwarding() {
    let dir = ScratchDir::new("accept-ra");
    let path = dir.join("accept_ra");
    let set = |value: &str| std::fs::write(&path, value).unwrap();
    let read = || std::fs::read_to_string(&path).unwrap();
    set("1\n");
    assert_eq!(
        accept_ra_while_forwarding(&path).unwrap(),
        ("1".to_owned(), true)
    );
    assert_eq!(read(), "2");
    // Once 2 (or 0: not wanted), nothing to change.
    assert_eq!(
        accept_ra_while_forwarding(&path).unwrap(),
        ("2".to_owned(), false)
    );
    set("0\n");
    assert_eq!(
        accept_ra_while_forwarding(&path).unwrap(),
        ("0".to_owned(), false)
    );
    assert_eq!(read(), "0\n");
    std::fs::remove_dir_all(&dir).unwrap();
    let error = accept_ra_while_forwarding(&path).unwrap_err();
    assert!(
        format!("{error:#}").starts_with(&format!("reading {}", path.display())),
        "{error:#}"
    );
    assert_eq!(
        accept_ra_path("eth0.100"),
        PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/accept_ra")
    );
}

/// `/proc/net/ipv6_route` as a kernel wrote it: a default route
/// learned from an advertisement on vb (flags 0x00450003), its
/// prefix routes (flagged ADDRCONF, but not the default route: the
/// kernel spares them) and loopback's null routes.
const IPV6_ROUTES: &str = "\
20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 004c0001       vb
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001       vb
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe80000000000000389ecbfffea4ca6d 00000400 00000001 00000000 00450003       vb
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003       ve
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

/// The interfaces named are those with a default route learned from
/// advertisements and `accept_ra` not 2 (an unreadable one counts):
/// not a static default route, nor one kept by `accept_ra` 2.
#[test]
fn the_interfaces_losing_ra_default_routes_are_named() {
    let accept_ra = |device: &str| match device {
        "vb" => Some("1".to_owned()),
        "ve" => Some("2".to_owned()),
        _ => None,
    };
    assert_eq!(
        ra_routes_at_risk(IPV6_ROUTES, accept_ra),
        BTreeSet::from(["vb".to_owned()])
    );
    assert!(ra_routes_at_risk(IPV6_ROUTES, |_| Some("2".to_owned())).is_empty());
    assert!(ra_routes_at_risk("", accept_ra).is_empty());
}

/// The kernel behaviour the warning is about, in a namespace of its
/// own: a default route learned from a router advertisement on vb
/// (`accept_ra` 1) is named, and goes at once when IPv6 forwarding is
/// switched on for another interface, vd; one on an `accept_ra` 2
/// interface stays.
#[test]
fn switching_ipv6_forwarding_on_deletes_other_interfaces_ra_default_routes() {
    if !crate::test_netns::is_root() {
        eprintln!("skipped: needs root (a network namespace of its own)");
        return;
    }
    crate::test_netns::in_own_netns(|| {
        use crate::test_netns::ip;
        let set = |path: &str, value: &str| std::fs::write(path, value).unwrap();
        set("/proc/sys/net/ipv6/conf/default/accept_dad", "0");
        set("/proc/sys/net/ipv6/conf/default/accept_ra", "1");
        set("/proc/sys/net/ipv6/conf/default/forwarding", "0");
        ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vd"]);
        for link in ["lo", "va", "vb", "vc", "vd"] {
            ip(&["link", "set", link, "up"]);
        }
        let routes = || std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap();
        let read = |device: &str| {
            std::fs::read_to_string(accept_ra_path(device))
                .ok()
                .map(|v| v.trim().to_owned())
        };
        let learned = |expected: &str| {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                // Refused until the link's multicast route is there.
                let sent = send_router_advertisement("va");
                let at_risk = ra_routes_at_risk(&routes(), |_| Some("1".to_owned()));
                if at_risk.contains(expected) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "no RA default route on {expected} (last send: {sent:?})"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        learned("vb");
        assert_eq!(
            ra_routes_at_risk(&routes(), read),
            BTreeSet::from(["vb".to_owned()])
        );
        set("/proc/sys/net/ipv6/conf/vd/forwarding", "1");
        assert!(
            ra_routes_at_risk(&routes(), |_| Some("1".to_owned())).is_empty(),
            "the kernel deleted vb's default route:\n{}",
            routes()
        );
        // With accept_ra 2 the route is learned again and stays.
        set("/proc/sys/net/ipv6/conf/vd/forwarding", "0");
        set("/proc/sys/net/ipv6/conf/vb/accept_ra", "2");
        learned("vb");
        assert!(ra_routes_at_risk(&routes(), read).is_empty());
        set("/proc/sys/net/ipv6/conf/vd/forwarding", "1");
        assert_eq!(
            ra_routes_at_risk(&routes(), |_| Some("1".to_owned())),
            BTreeSet::from(["vb".to_owned()]),
            "accept_ra 2 keeps it"
        );
    });
}

/// Sends a router advertisement (router lifetime 1800 s, no options)
/// out of `interface` to all nodes, from its link-local address.
fn send_router_advertisement(interface: &str) -> std::io::Result<usize> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
    socket.set_multicast_hops_v6(255).unwrap();
    socket.bind_device(Some(interface.as_bytes())).unwrap();
    let name = std::ffi::CString::new(interface).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {interface}");
    // Type 134, code 0, checksum (the kernel's), hop limit 64, no
    // flags, router lifetime 1800 s, reachable and retransmit 0.
    let mut advertisement = vec![134, 0, 0, 0, 64, 0];
    advertisement.extend(1800u16.to_be_bytes());
    advertisement.extend([0; 8]);
    let all_nodes = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), 0, 0, index);
    socket.send_to(&advertisement, &SockAddr::from(all_nodes))
}

/// Only IPv6 forwarding and accept_ra outlast a restart's stop
/// without a pinned data plane: switching IPv6 forwarding on again
/// would delete other interfaces' RA default routes each time.
#[test]
fn ipv6_forwarding_is_kept_across_a_restart() {
    assert!(kept_across_restarts(&forwarding_path(true, "eth0")));
    assert!(kept_across_restarts(&accept_ra_path("eth0")));
    assert!(!kept_across_restarts(&forwarding_path(false, "eth0")));
    assert!(!kept_across_restarts(std::path::Path::new(
        "/proc/sys/net/ipv4/conf/eth0/accept_local"
    )));
}

#[test]
fn forwarding_is_switched_per_interface_and_family() {
    assert_eq!(
        forwarding_path(false, "eth0.100"),
        PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
    );
    assert_eq!(
        forwarding_path(true, "lb0"),
        PathBuf::from("/proc/sys/net/ipv6/conf/lb0/forwarding")
    );
}

fn link(index: u32, up: bool, loopback: bool) -> Link {
    Link {
        index,
        name: format!("if{index}"),
        up,
        loopback,
    }
}

#[test]
fn redirect_targets_are_the_attached_and_every_existing_non_loopback_interface() {
    let links = [
        link(1, true, true),
        link(2, true, false),
        link(3, false, false),
        link(4, true, false),
    ];
    let none = BTreeSet::new();
    let targets = |attached| redirect_targets(attached, &links, &none, &none, 64);
    // The attached interface stays even while down (its link may
    // come back without a scan in between).
    assert_eq!(targets(3), BTreeSet::from([2, 3, 4]));
    // So does any other that still exists: a redirect to it while it
    // is down is dropped by its driver, one to a missing entry aborts.
    assert_eq!(targets(2), BTreeSet::from([2, 3, 4]));
    // One gone is left out.
    assert_eq!(
        redirect_targets(2, &links[..2], &none, &none, 64),
        BTreeSet::from([2])
    );
}

/// With more interfaces than the map holds, the attached one always
/// has a slot, then those routes leave by, then those already in the
/// map (a link that went down keeps its slot), then up ones, lowest
/// index first.
#[test]
fn a_full_redirect_map_keeps_the_attached_and_routed_interfaces() {
    let mut links: Vec<Link> = (2..=70).map(|i| link(i, true, false)).collect();
    links.push(link(1, true, true));
    let none = BTreeSet::new();
    let targets = redirect_targets(70, &links, &none, &none, 64);
    assert_eq!(targets.len(), 64);
    assert!(targets.contains(&70), "the attached interface");
    assert_eq!(targets.range(..70).count(), 63, "then the lowest: 2..=64");
    assert!(!targets.contains(&65));

    let used = BTreeSet::from([69]);
    let targets = redirect_targets(70, &links, &used, &none, 64);
    assert!(targets.contains(&69) && targets.contains(&70) && !targets.contains(&64));

    // 10 went down: its slot stays while it exists, ahead of up 66.
    links[8].up = false;
    let present: BTreeSet<u32> = (2..=64).chain([70]).collect();
    let targets = redirect_targets(70, &links, &none, &present, 64);
    assert_eq!(targets, present);
    // Absent and down ranks after up.
    let targets = redirect_targets(70, &links, &none, &none, 64);
    assert!(!targets.contains(&10) && targets.contains(&65));
}

/// A redirect map that refuses every insert of `refused`.
#[derive(Default)]
struct RefusingPorts {
    refused: BTreeSet<u32>,
    held: BTreeSet<u32>,
}

impl TxPortMap for RefusingPorts {
    fn add_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError> {
        if self.refused.contains(&index) {
            return Err(crate::dataplane::DataplaneError::MissingMap("TX_PORTS"));
        }
        self.held.insert(index);
        Ok(())
    }

    fn remove_tx_port(&mut self, index: u32) -> Result<(), crate::dataplane::DataplaneError> {
        self.held.remove(&index);
        Ok(())
    }
}

/// An interface whose insert into the redirect map keeps failing is
/// warned about once, not at every scan (before: every `SCAN_TICKS`
/// seconds, as the warned set forgot the wanted ones); again once it
/// went in and fails anew, or was not wanted for a scan and is again.
#[test]
fn a_redirect_target_the_map_keeps_refusing_is_warned_once() {
    let links = [
        link(1, true, true),
        link(2, true, false),
        link(3, true, false),
    ];
    let wanted: BTreeSet<u32> = [2, 3].into();
    let mut ports = RefusingPorts {
        refused: [3].into(),
        ..RefusingPorts::default()
    };
    let mut warned = TxWarned::default();
    let refusals = |text: &str| text.matches("adding a NAT redirect target failed").count();
    let scan = |ports: &mut RefusingPorts, warned: &mut TxWarned, wanted: &BTreeSet<u32>| {
        let present = ports.held.clone();
        crate::test_logs::logs_of(|| sync_tx_map(ports, warned, &links, wanted, &present))
    };
    let first = scan(&mut ports, &mut warned, &wanted);
    assert_eq!(refusals(&first), 1, "{first}");
    assert!(first.contains("if3"), "{first}");
    for _ in 0..3 {
        let again = scan(&mut ports, &mut warned, &wanted);
        assert_eq!(refusals(&again), 0, "{again}");
    }
    assert_eq!(ports.held, [2].into());

    // Not wanted for a scan, then wanted again and still refused.
    let fewer: BTreeSet<u32> = [2].into();
    scan(&mut ports, &mut warned, &fewer);
    assert_eq!(refusals(&scan(&mut ports, &mut warned, &wanted)), 1);
    // In at last, then refused again after it was taken out.
    ports.refused.clear();
    scan(&mut ports, &mut warned, &wanted);
    assert_eq!(ports.held, [2, 3].into());
    ports.held.remove(&3);
    ports.refused.insert(3);
    assert_eq!(refusals(&scan(&mut ports, &mut warned, &wanted)), 1);
}
