//! The routed lab NAT mode needs (issue 12): the client behind router r1,
//! the LB network, unmodified nginx backends on a third network behind
//! router r2, so no backend is on-link for the LB. These tests check that
//! the topology really is that shape, over IPv4 and IPv6. Needs root.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use lb_tests::{
    lab::{self, http_get, in_netns, Host, Lab, ROUTED_BACKEND_PORT, VIP4, VIP6},
    support::ip,
};
use socket2::{Domain, Protocol, Socket, Type};

/// Network indices of `Topology::routed`.
const LAN: usize = 0;
const CLIENTS: usize = 1;
const BACKENDS: usize = 2;

fn routed(backends: usize) -> Lab {
    let lab = Lab::start_routed(backends).expect("routed lab");
    lab.wait_for_backends().expect("nginx up");
    lab
}

/// `ip route get` for `to` in `netns`: (gateway if any, egress device).
fn route_get(netns: &str, to: IpAddr) -> (Option<IpAddr>, String) {
    let text = ip(&["-n", netns, "route", "get", &to.to_string()]);
    let words: Vec<&str> = text.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .map(|w| (*w).to_owned())
    };
    let via = after("via").map(|v| v.parse().expect("a gateway address"));
    (via, after("dev").unwrap_or_default())
}

/// Connects to `to` from `netns` with the given IPv4 TTL / IPv6 hop limit
/// on every packet the client sends.
fn connect_with_ttl(netns: &str, to: SocketAddr, ttl: u32) -> std::io::Result<()> {
    in_netns(netns, move || -> std::io::Result<()> {
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        match to {
            SocketAddr::V4(_) => socket.set_ttl(ttl)?,
            SocketAddr::V6(_) => socket.set_unicast_hops_v6(ttl)?,
        }
        socket.connect_timeout(&to.into(), Duration::from_secs(2))
    })
    .expect("thread in the namespace")
}

/// Both addresses of a backend, on the port nginx listens on.
fn endpoints(backend: &Host) -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V4(backend.ipv4), ROUTED_BACKEND_PORT),
        SocketAddr::new(IpAddr::V6(backend.ipv6), ROUTED_BACKEND_PORT),
    ]
}

/// The router's address on `network`, in the family of `like`.
fn router_address(lab: &Lab, router: usize, network: usize, like: IpAddr) -> IpAddr {
    let leg = lab.routers[router]
        .leg_on(network)
        .expect("router has a leg there");
    match like {
        IpAddr::V4(_) => IpAddr::V4(leg.ipv4),
        IpAddr::V6(_) => IpAddr::V6(leg.ipv6),
    }
}

#[test]
fn the_client_reaches_each_backend_only_through_both_routers() {
    let lab = routed(2);
    let client = lab.client.netns.clone();
    let (r1, r2) = (&lab.routers[0], &lab.routers[1]);
    for backend in &lab.backends {
        for to in endpoints(backend) {
            let address = to.ip();
            // Each namespace on the way sends it to the next router.
            assert_eq!(
                route_get(&client, address).0,
                Some(router_address(&lab, 0, CLIENTS, address)),
                "client → {address} not via r1"
            );
            assert_eq!(
                route_get(&r1.netns, address).0,
                Some(router_address(&lab, 1, LAN, address)),
                "r1 → {address} not via r2"
            );
            assert_eq!(
                route_get(&r2.netns, address),
                (None, "eth1".to_owned()),
                "r2 → {address} not on-link on its backend leg"
            );
            // Hop count: two routers decrement the TTL on the way.
            let short = connect_with_ttl(&client, to, 2);
            assert!(
                short.is_err(),
                "{to} reached with TTL 2: fewer than two routers"
            );
            connect_with_ttl(&client, to, 3)
                .unwrap_or_else(|e| panic!("{to} not reached with TTL 3: {e}"));
        }
    }
    // No route leads out of the lab: the routers have no default route,
    // hosts' default routes point at a lab router.
    for router in &lab.routers {
        for family in ["-4", "-6"] {
            let default = ip(&["-n", &router.netns, family, "route", "show", "default"]);
            assert!(
                default.trim().is_empty(),
                "{} has a default route: {default}",
                router.name
            );
        }
    }
    for (host, router, network) in [
        (&lab.client, 0, CLIENTS),
        (&lab.lb, 0, LAN),
        (&lab.backends[0], 1, BACKENDS),
    ] {
        for (family, like) in [("-4", IpAddr::V4(host.ipv4)), ("-6", IpAddr::V6(host.ipv6))] {
            let default = ip(&["-n", &host.netns, family, "route", "show", "default"]);
            let want = router_address(&lab, router, network, like);
            assert!(
                default.contains(&format!("via {want} ")),
                "{}'s default route is not via {want}: {default}",
                host.name
            );
        }
    }
}

#[test]
fn the_lb_reaches_the_backends_only_via_the_second_router_never_on_link() {
    let lab = routed(2);
    let lb = lab.lb.netns.clone();
    for backend in &lab.backends {
        for to in endpoints(backend) {
            let address = to.ip();
            let r2 = router_address(&lab, 1, LAN, address);
            assert_eq!(
                route_get(&lb, address),
                (Some(r2), "eth0".to_owned()),
                "LB → {address} not via r2"
            );
            // One router between them: TTL 1 dies at r2, TTL 2 arrives.
            assert!(
                connect_with_ttl(&lb, to, 1).is_err(),
                "{to} reached from the LB with TTL 1: on-link"
            );
            connect_with_ttl(&lb, to, 2)
                .unwrap_or_else(|e| panic!("{to} not reached from the LB with TTL 2: {e}"));
        }
    }
    // After talking to every backend the LB knows r2's MAC, and none of
    // the backends' (they are not on its segment).
    for family in ["-4", "-6"] {
        let neighbours: Vec<IpAddr> = ip(&["-n", &lb, family, "neigh", "show"])
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        let like = match family {
            "-4" => IpAddr::V4(lab.lb.ipv4),
            _ => IpAddr::V6(lab.lb.ipv6),
        };
        let r2 = router_address(&lab, 1, LAN, like);
        assert!(
            neighbours.contains(&r2),
            "LB has no neighbour entry for r2 ({r2}): {neighbours:?}"
        );
        for backend in &lab.backends {
            for address in [IpAddr::V4(backend.ipv4), IpAddr::V6(backend.ipv6)] {
                assert!(
                    !neighbours.contains(&address),
                    "LB has a neighbour entry for backend {address}: on-link"
                );
            }
        }
    }
}

#[test]
fn backends_answer_on_8080_with_their_name_from_the_client_and_the_lb() {
    let lab = routed(2);
    for from in [&lab.client, &lab.lb] {
        for backend in &lab.backends {
            for to in endpoints(backend) {
                let url = format!("http://{to}/");
                let (status, body) = http_get(&from.netns, &url)
                    .unwrap_or_else(|e| panic!("GET {url} from {}: {e}", from.name));
                assert_eq!(status, 200, "GET {url} from {}", from.name);
                assert_eq!(body, format!("{}\n", backend.name), "GET {url}");
                // nginx listens on 8080 only, not on the VIP's port.
                let vip_port = SocketAddr::new(to.ip(), lab::HTTP_PORT);
                assert!(
                    connect_with_ttl(&from.netns, vip_port, 64).is_err(),
                    "{} answers on port {}",
                    backend.name,
                    lab::HTTP_PORT
                );
            }
        }
    }
}

/// What was changed on `host` for DSR: VIPs, extra addresses on lo,
/// non-default ARP sysctls. Empty for an untouched host.
fn modifications(host: &Host) -> Vec<String> {
    let mut found = Vec::new();
    let all = ip(&["-n", &host.netns, "addr", "show"]);
    for vip in [VIP4.to_string(), VIP6.to_string()] {
        if all.contains(&format!("{vip}/")) {
            found.push(format!("holds VIP {vip}"));
        }
    }
    let lo = ip(&["-n", &host.netns, "-br", "addr", "show", "dev", "lo"]);
    for address in lo.split_whitespace().skip(2) {
        if address != "127.0.0.1/8" && address != "::1/128" {
            found.push(format!("{address} on lo"));
        }
    }
    for key in [
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.all.arp_announce",
        "net.ipv4.conf.eth0.arp_ignore",
        "net.ipv4.conf.eth0.arp_announce",
    ] {
        let out = Command::new("ip")
            .args(["netns", "exec", &host.netns, "sysctl", "-n", key])
            .output()
            .expect("sysctl");
        let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if value != "0" {
            found.push(format!("{key} = {value:?}"));
        }
    }
    found
}

#[test]
fn routed_backends_are_unmodified_unlike_dsr_backends() {
    let routed = Lab::start_routed(2).expect("routed lab");
    for backend in &routed.backends {
        let changes = modifications(backend);
        assert!(
            changes.is_empty(),
            "routed backend {} was modified: {changes:?}",
            backend.name
        );
    }
    // The same check finds what the L2 lab does to its DSR backends.
    let l2 = Lab::start(1).expect("L2 lab");
    let changes = modifications(&l2.backends[0]);
    assert!(
        changes.iter().any(|c| c.contains("VIP")) && changes.iter().any(|c| c.contains("arp_")),
        "DSR backend's changes not seen: {changes:?}"
    );
}

#[test]
fn nothing_of_the_routed_lab_remains_after_drop() {
    let lab = routed(2);
    let prefix = lab.prefix.clone();
    let dir = lab.dir.clone();
    let namespaces = lab::namespaces_with_prefix(&prefix).expect("ip netns list");
    // Switch, two routers, client, LB, two backends.
    assert_eq!(namespaces.len(), 7, "namespaces: {namespaces:?}");
    let pids: Vec<u32> = namespaces
        .iter()
        .flat_map(|n| {
            ip(&["netns", "pids", n])
                .lines()
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    // nginx master and worker on each backend.
    assert!(pids.len() >= 4, "processes in the lab: {pids:?}");
    drop(lab);
    assert_eq!(
        lab::namespaces_with_prefix(&prefix).expect("ip netns list"),
        Vec::<String>::new()
    );
    for pid in pids {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_ne!(comm.trim(), "nginx", "nginx {pid} survived the lab");
    }
    assert!(!Path::new(&dir).exists(), "{} remains", dir.display());
}

/// Set in the child run of `a_killed_runs_routed_lab_is_swept_by_the_next_one`:
/// the same test, run again by the test itself, plays the run that is killed.
const CHILD_ENV: &str = "LB_ROUTED_LAB_CHILD";

/// The child's part: builds a routed lab, prints its prefix and waits to
/// be killed (it never returns on its own before the parent kills it).
fn be_the_killed_child() {
    let lab = routed(1);
    println!("PREFIX {}", lab.prefix);
    std::thread::sleep(Duration::from_secs(60));
    panic!("the parent test never killed this child");
}

/// Whether `pid` is a live (not zombie) nginx.
fn nginx_alive(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .any(|l| l.starts_with("Name:") && l.contains("nginx"))
        && !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
}

#[test]
fn a_killed_runs_routed_lab_is_swept_by_the_next_one() {
    use std::io::{BufRead as _, BufReader};
    if std::env::var_os(CHILD_ENV).is_some() {
        be_the_killed_child();
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_killed_runs_routed_lab_is_swept_by_the_next_one",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child run");
    let stdout = child.stdout.take().expect("child's stdout");
    let prefix = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("PREFIX ").map(str::to_owned));
    let Some(prefix) = prefix else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child built no lab");
    };
    let namespaces = lab::namespaces_with_prefix(&prefix).expect("ip netns list");
    let pids: Vec<u32> = namespaces
        .iter()
        .flat_map(|n| {
            ip(&["netns", "pids", n])
                .lines()
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    // Killed: the child cleans nothing up; the next lab's sweep (this
    // one, or another test's lab start) must.
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    assert_eq!(namespaces.len(), 6, "child's namespaces: {namespaces:?}");
    assert!(pids.iter().any(|p| nginx_alive(*p)), "no nginx in {pids:?}");
    lab::sweep_stale_labs();
    assert_eq!(
        lab::namespaces_with_prefix(&prefix).expect("ip netns list"),
        Vec::<String>::new()
    );
    // Killed nginx processes are reaped by init; give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| nginx_alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<u32> = pids.into_iter().filter(|p| nginx_alive(*p)).collect();
    assert!(alive.is_empty(), "nginx survived the sweep: {alive:?}");
    assert!(
        !std::env::temp_dir().join(&prefix).exists(),
        "the child's lab directory remains"
    );
}
