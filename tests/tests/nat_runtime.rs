//! lbd's NAT runtime (needs root): on a VRRP pair the NAT address moves
//! with the VIPs (taken by the master, released by `--release-vips` and by
//! a clean stop), forwarding is switched on for the attached interface
//! while a NAT VIP exists and restored at a clean stop, the redirect map
//! gets the node's interfaces, status shows the mode and NAT address,
//! and a runtime NAT VIP whose NAT address no instance moves is refused
//! as the file refuses it;
//! in the routed lab NAT'd flows are shown and reaped and a next hop
//! without a neighbour entry gets resolved; the reaper's ticks stay short
//! on a million real entries.

use std::time::{Duration, Instant};

use lb_tests::{
    lab::{Host, Lab, LabSpec, VIP4},
    support::{status_on, wait_until},
};
use lb_userspace::vrrp::State;

const NAT_ADDRESS: &str = "198.18.0.150";
const NAT_ADDRESS6: &str = "2001:2::150";
/// A NAT address of a VIP added at run time that no VRRP instance moves.
const OTHER_NAT_ADDRESS: &str = "198.18.0.151";

/// Node `node`'s per-interface IPv4 forwarding switch of eth0.
fn forwarding(node: &Host) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args(["sysctl", "-n", "net.ipv4.conf.eth0.forwarding"])
        .output()
        .expect("sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn set_forwarding_off(node: &Host) {
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args(["sysctl", "-qw", "net.ipv4.conf.eth0.forwarding=0"])
        .status()
        .expect("sysctl");
    assert!(status.success());
}

fn holds_nat_address(lab: &Lab, node: &Host) -> bool {
    lab.addresses_of(node)
        .expect("ip addr")
        .contains(&format!("{NAT_ADDRESS}/32"))
}

/// The lab's HA config with its VIP in NAT mode behind the node's NAT
/// address (which the default VRRP address list then moves too).
fn nat_config(lab: &Lab, node: &Host, peer: &Host, priority: u8) -> String {
    let config = lab
        .ha_config(node, peer, &["b1"], priority, true)
        .expect("config");
    let config = config.replacen("port = 80\n", "port = 80\nforwarding = \"nat\"\n", 1);
    assert!(config.contains("forwarding = \"nat\""), "{config}");
    config.replacen(
        "\n[[vip]]",
        &format!("\n[nat]\nsource_ipv4 = \"{NAT_ADDRESS}\"\n\n[[vip]]"),
        1,
    )
}

#[test]
fn the_nat_address_moves_with_vrrp_and_forwarding_follows_nat_vips() {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 1,
        static_vip: false,
    })
    .expect("lab");
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    set_forwarding_off(&a);
    set_forwarding_off(&b);
    let config_a = nat_config(&lab, &a, &b, 150);
    let config_b = nat_config(&lab, &b, &a, 100);
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    // Forwarding switched on and the redirect targets filled during
    // start-up, before the program is attached (a first packet would
    // otherwise meet a FIB lookup that forwarding turns down), not by the
    // first housekeeping tick after it.
    for name in ["lbd-a", "lbd-b"] {
        let log = lab.log(name);
        let ready = log.find("lbd ready");
        for step in [
            "forwarding switched on for the interface",
            "interface added to the NAT redirect targets",
        ] {
            let done = log.find(step);
            assert!(
                done.is_some() && done < ready,
                "{name}: \"{step}\" not before lbd was ready:\n{log}"
            );
        }
    }

    // The master holds the VIP and the NAT address; the backup neither.
    wait_until(
        "lb to hold the NAT address",
        Duration::from_secs(10),
        || holds_nat_address(&lab, &a) && lab.holds_vip(&a).expect("ip addr"),
    );
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        status_on(&lab, &b).vrrp[0].state == State::Backup
    });
    assert!(
        !holds_nat_address(&lab, &b),
        "{}",
        lab.addresses_of(&b).unwrap()
    );

    // Both run a NAT VIP: forwarding on for eth0, the redirect map filled.
    for (node, log) in [(&a, "lbd-a"), (&b, "lbd-b")] {
        wait_until("forwarding on eth0", Duration::from_secs(10), || {
            forwarding(node) == "1"
        });
        wait_until(
            "eth0 among the redirect targets",
            Duration::from_secs(10),
            || {
                lab.log(log)
                    .contains("interface added to the NAT redirect targets")
            },
        );
    }
    let status = status_on(&lab, &a);
    let vip = &status.vips[0];
    assert_eq!(vip.mode, lb_common::Mode::Nat);
    let nat = vip.nat.as_ref().expect("NAT status");
    assert_eq!(nat.source.to_string(), NAT_ADDRESS);
    assert_eq!((nat.port_min, nat.port_max), (1024, 65_535));
    let text = lab.lbctl_on(&a, &["status"]).expect("lbctl status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("NAT from {NAT_ADDRESS} ports 1024-65535")),
        "{text}"
    );

    // A NAT VIP added at run time behind a NAT address no VRRP instance
    // moves is refused, a dry run too, as the file refuses it (the API
    // cannot change the instances, and `config dump` would write a file
    // that does not load); one behind the node's NAT address, which VRRP
    // moves, is taken without a word about it.
    let backend = format!("{}", lab.backends[0].ipv4);
    let unmoved = format!("{VIP4}:8080");
    let run = |vip: &str, extra: &[&str]| {
        let mut args = vec![
            "vip",
            "add",
            vip,
            "--forwarding",
            "nat",
            "--backend",
            &backend,
        ];
        args.extend_from_slice(extra);
        lab.lbctl_on(&a, &args).expect("lbctl vip add")
    };
    let add = |vip: &str, extra: &[&str]| {
        let out = run(vip, extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refusal = format!(
        "VIP {unmoved}/tcp: its NAT address {OTHER_NAT_ADDRESS} is in no running VRRP instance's addresses"
    );
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec!["--nat-source", OTHER_NAT_ADDRESS];
        args.extend_from_slice(extra);
        let out = run(&unmoved, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(&refusal) && stderr.contains("restart lbd"),
            "{extra:?}: {stderr}"
        );
    }
    let listed = lab
        .lbctl_on(&a, &["vip", "list", "--json"])
        .expect("lbctl vip list");
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(":8080"),
        "the refused VIP is not there: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let text = add(&format!("{VIP4}:8081"), &[]);
    assert!(!text.contains("NAT address"), "{text}");
    let vip = format!("{VIP4}:8081");
    let out = lab
        .lbctl_on(&a, &["vip", "remove", &vip])
        .expect("lbctl vip remove");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A reload cannot move the NAT address to one the running VRRP
    // instances do not move (VRRP changes at a restart): refused, and the
    // running NAT address stays.
    let moved_elsewhere = config_a.replace(NAT_ADDRESS, OTHER_NAT_ADDRESS);
    lab.write_lbd_config_named("lbd-a", &moved_elsewhere)
        .expect("write config");
    let out = lab.lbctl_on(&a, &["reload"]).expect("lbctl reload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(OTHER_NAT_ADDRESS) && stderr.contains("restart lbd"),
        "{stderr}"
    );
    let status = status_on(&lab, &a);
    let nat = status.vips[0].nat.as_ref().expect("NAT status");
    assert_eq!(nat.source.to_string(), NAT_ADDRESS);
    lab.write_lbd_config_named("lbd-a", &config_a)
        .expect("write config");

    // A restart-style stop keeps the addresses; the unit's
    // `--release-vips` then takes the NAT address away too, and the
    // backup takes both over.
    lab.terminate("lbd-a").expect("SIGTERM lbd-a");
    assert!(
        holds_nat_address(&lab, &a),
        "a restart stop keeps addresses"
    );
    let out = lab.lbd_offline_ok(&a, "lbd-a", "--release-vips");
    assert!(
        !holds_nat_address(&lab, &a),
        "{}",
        lab.addresses_of(&a).unwrap()
    );
    assert!(!lab.holds_vip(&a).unwrap());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("VIP address removed"), "{said}");
    // Again, with nothing held: nothing is said to be removed.
    let again = lab
        .lbd_offline(&a, "lbd-a", "--release-vips")
        .expect("lbd --release-vips");
    assert!(again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!said.contains("VIP address removed"), "{said}");
    let since = Instant::now();
    wait_until(
        "lb2 to take the NAT address",
        Duration::from_secs(5),
        || holds_nat_address(&lab, &b) && lab.holds_vip(&b).expect("ip addr"),
    );
    eprintln!("lb2 took the VIP and NAT address in {:?}", since.elapsed());

    // A clean stop (SIGINT) gives both addresses up and restores the
    // forwarding switch lbd turned on; a restart stop left it on.
    lab.interrupt("lbd-b").expect("SIGINT lbd-b");
    assert!(
        !holds_nat_address(&lab, &b),
        "{}",
        lab.addresses_of(&b).unwrap()
    );
    assert_eq!(forwarding(&b), "0", "{}", lab.log("lbd-b"));
    assert_eq!(forwarding(&a), "1");
}

/// End to end through the eBPF NAT path: new connections through NAT
/// VIPs (IPv4 and IPv6) to routed, unmodified backends; the
/// reaper frees closed flows after their timeout and keeps a live one;
/// `lbctl flow` shows its translation; status counts its port.
#[test]
fn nat_flows_are_translated_shown_and_reaped() {
    use lb_tests::{
        client::{self, KeepAlive},
        lab::{ROUTED_BACKEND_PORT, VIP4, VIP6},
    };
    let mut lab = Lab::start_routed(3).expect("routed lab");
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let status = std::process::Command::new("ip")
        .args([
            "-n",
            &lb.netns,
            "addr",
            "add",
            &format!("{NAT_ADDRESS}/32"),
            "dev",
            "eth0",
        ])
        .status()
        .expect("ip");
    assert!(status.success());
    let status = std::process::Command::new("ip")
        .args([
            "-n",
            &lb.netns,
            "addr",
            "add",
            &format!("{NAT_ADDRESS6}/128"),
            "dev",
            "eth0",
            "nodad",
        ])
        .status()
        .expect("ip");
    assert!(status.success());
    let mut config = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[nat]\nsource_ipv4 = \"{NAT_ADDRESS}\"\nsource_ipv6 = \"{NAT_ADDRESS6}\"\n\
         tcp_time_wait_timeout_s = 1\ntcp_closed_timeout_s = 1\ntcp_closing_timeout_s = 1\ntcp_syn_timeout_s = 2\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = 80\nforwarding = \"nat\"\n",
        lab.admin_socket().display()
    );
    for backend in &lab.backends {
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n  port = {ROUTED_BACKEND_PORT}\n",
            backend.ipv4
        ));
    }
    config.push_str(&format!(
        "[[vip]]\naddress = \"{VIP6}\"\nport = 80\nforwarding = \"nat\"\n"
    ));
    for backend in &lab.backends {
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n  port = {ROUTED_BACKEND_PORT}\n",
            backend.ipv6
        ));
    }
    lab.start_lbd(&config).expect("lbd");
    wait_until("backends up", Duration::from_secs(10), || {
        status_on(&lab, &lb)
            .vips
            .iter()
            .all(|v| v.backends.iter().all(|b| b.alive))
    });

    let tally = client::burst(&lab.client.netns, std::net::IpAddr::V4(VIP4), 60).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}\n{}", tally.errors, lab.log("lbd"));
    assert_eq!(tally.by_backend.len(), 3, "{:?}", tally.by_backend);
    let tally = client::burst(&lab.client.netns, std::net::IpAddr::V6(VIP6), 30).expect("burst");
    assert_eq!(
        tally.failed,
        0,
        "IPv6: {:?}\n{}",
        tally.errors,
        lab.log("lbd")
    );
    assert_eq!(tally.by_backend.len(), 3, "{:?}", tally.by_backend);

    let mut kept = KeepAlive::open_from_port(&lab.client.netns, std::net::IpAddr::V4(VIP4), 24_678)
        .expect("keep-alive connection");
    kept.request().expect("first request");
    let flow = lab
        .lbctl_on(
            &lb,
            &[
                "flow",
                "198.18.0.100:80",
                &format!("{}:24678", lab.client.ipv4),
            ],
        )
        .expect("lbctl flow");
    let flow = String::from_utf8_lossy(&flow.stdout);
    assert!(
        flow.contains("NAT established") && flow.contains(&format!("sent as {NAT_ADDRESS}:")),
        "{flow}"
    );

    // The burst's closed flows go after 1 s (+ a sweep); the kept one stays.
    wait_until("closed flows reaped", Duration::from_secs(10), || {
        let nat = status_on(&lab, &lb).nat.expect("NAT status");
        nat.expired >= 90 && nat.flows.values().sum::<u64>() == 1
    });
    let status = status_on(&lab, &lb);
    assert_eq!(
        status.nat.as_ref().unwrap().flows.get("established"),
        Some(&1)
    );
    let v4 = status
        .vips
        .iter()
        .find(|v| v.vip.starts_with("198."))
        .unwrap();
    assert_eq!(v4.nat.as_ref().unwrap().ports_in_use, 1);
    kept.request().expect("the kept connection still works");
}

/// End to end: the LB's next hop towards the
/// backends has no neighbour entry; the data plane drops the first SYN and
/// reports the gateway, lbd makes the kernel resolve it and logs it once,
/// and the client's retransmitted SYN goes through.
#[test]
fn a_next_hop_without_a_neighbour_entry_is_resolved_by_lbd() {
    use lb_tests::{
        client,
        lab::{ROUTED_BACKEND_PORT, VIP4},
    };
    let mut lab = Lab::start_routed(1).expect("routed lab");
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(["-n", &lb.netns])
            .args(args)
            .status()
            .expect("ip");
        assert!(status.success(), "ip {args:?}");
    };
    ip(&["addr", "add", &format!("{NAT_ADDRESS}/32"), "dev", "eth0"]);
    // No health checks: nothing else makes the LB's kernel resolve the
    // router.
    let config = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[nat]\nsource_ipv4 = \"{NAT_ADDRESS}\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = 80\nforwarding = \"nat\"\n[vip.health]\ncheck = \"none\"\n\
           [[vip.backend]]\n  address = \"{}\"\n  port = {ROUTED_BACKEND_PORT}\n",
        lab.admin_socket().display(),
        lab.backends[0].ipv4
    );
    lab.start_lbd(&config).expect("lbd");
    // lbd also keeps gateways resolved ahead of need (a scan every few
    // seconds): a scan that lands between the flush and the first SYN
    // leaves nothing to show, so the flush is tried again a few times.
    let mut counters = Default::default();
    for _ in 0..4 {
        ip(&["neigh", "flush", "all"]);
        let tally = client::burst(&lab.client.netns, std::net::IpAddr::V4(VIP4), 3).expect("burst");
        assert_eq!(tally.failed, 0, "{:?}\n{}", tally.errors, lab.log("lbd"));
        counters = status_on(&lab, &lb).counters;
        if counters["drop_no_neighbour"] >= 1 {
            break;
        }
    }
    assert!(
        counters["drop_no_neighbour"] >= 1,
        "the first SYN met no neighbour entry: {counters:?}"
    );
    // Logged once per next hop (the flush may have taken the reply's next
    // hop too), however many packets met it.
    let log = lab.log("lbd");
    let missing: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the next hop has no neighbour entry"))
        .filter_map(|l| l.split("next_hop=").nth(1))
        .collect();
    assert!(!missing.is_empty(), "no next hop logged:\n{log}");
    let distinct: std::collections::BTreeSet<&str> = missing.iter().copied().collect();
    assert_eq!(
        missing.len(),
        distinct.len(),
        "logged once per next hop:\n{log}"
    );
}

/// The reaper on a real (kernel) NAT table of about a million entries,
/// in ticks bounded as lbd runs them (a budget of entries and a time): no
/// tick visits more than its budget, so a sweep spreads over entries /
/// budget ticks at least; it ends, visits every live entry once and frees
/// exactly the expired flows. Prints the ticks' times (not asserted: a
/// timed test sets no speed target). Needs root.
#[test]
fn the_reaper_walks_a_million_entries_in_short_ticks() {
    use lb_common::{
        consts::{IPPROTO_TCP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_REPLIED, NAT_F_SYN},
        nat::counterpart_key,
        FlowKey, NatEntry,
    };
    use lb_userspace::{
        config::NatTimeouts,
        dataplane::{Dataplane, MapSizes},
        nat::reaper::{Owner, Owners, Reaper, BATCH, TICK_BUDGET, TICK_TIME},
        reconcile::addr_words,
    };
    const FLOWS: u32 = 500_000;
    const NOW: u64 = 100_000 * 1_000_000_000;
    let words = |a: &str| addr_words(a.parse().unwrap()).0;
    let mut dataplane = Dataplane::load(MapSizes {
        max_vips: 16,
        conntrack: 1024,
        nat_flows: 1 << 20,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    })
    .expect("load the data plane");
    let started = Instant::now();
    let mut expired = 0u64;
    for n in 0..FLOWS {
        let key = FlowKey {
            src: [(0xc612_0000 | (n >> 16)).to_be(), 0, 0, 0], // 198.18.x.0/24
            dst: words("198.18.0.100"),
            sport: u16::try_from(n & 0xffff).unwrap().to_be(),
            dport: 80u16.to_be(),
            proto: IPPROTO_TCP,
            family: 4,
            _pad: 0,
        };
        // One flow in ten idle for three hours: past the established timeout.
        let seen = if n % 10 == 0 {
            expired += 1;
            NOW - 3 * 3600 * 1_000_000_000
        } else {
            NOW - 1_000_000_000
        };
        let forward = NatEntry {
            src: words(NAT_ADDRESS),
            dst: words("198.19.2.11"),
            sport: u16::try_from(1024 + n % 60_000).unwrap().to_be(),
            dport: u16::try_from(8080 + n / 60_000).unwrap().to_be(),
            backend_id: 1,
            last_seen_ns: seen,
            flags: NAT_F_SYN,
            direction: NAT_DIR_FORWARD,
            ..NatEntry::default()
        };
        let reply = NatEntry {
            src: key.dst,
            dst: key.src,
            sport: key.dport,
            dport: key.sport,
            flags: NAT_F_SYN | NAT_F_REPLIED,
            direction: NAT_DIR_REPLY,
            ..forward
        };
        let nat = dataplane.nat_mut();
        nat.install_flow(&key, &forward).expect("forward entry");
        nat.install_flow(&counterpart_key(&key, &forward), &reply)
            .expect("reply entry");
    }
    eprintln!("filled {} entries in {:?}", 2 * FLOWS, started.elapsed());

    let mut owners = Owners::default();
    owners.backends.insert(
        1,
        Owner {
            vip_id: 0,
            vip: lb_common::VipKey {
                addr: words("198.18.0.100"),
                port: 80u16.to_be(),
                proto: IPPROTO_TCP,
                family: 4,
            },
            address: words("198.19.2.11"),
        },
    );
    let mut reaper = Reaper::new();
    let timeouts = NatTimeouts::default();
    let mut ticks = Vec::new();
    let mut most_visited = 0;
    let mut visited = 0;
    loop {
        let tick = Instant::now();
        let report = reaper.tick(
            dataplane.nat_mut(),
            NOW,
            &timeouts,
            &owners,
            TICK_BUDGET,
            || tick.elapsed() < TICK_TIME,
        );
        ticks.push(tick.elapsed());
        most_visited = most_visited.max(report.visited);
        visited += report.visited;
        if report.sweep_done {
            break;
        }
        assert!(ticks.len() < 10_000, "the sweep never ends");
    }
    let slowest = ticks.iter().max().copied().unwrap_or_default();
    let total: Duration = ticks.iter().sum();
    eprintln!(
        "sweep of {} entries: {} ticks of at most {TICK_BUDGET} entries or {TICK_TIME:?}, slowest {slowest:?}, mean {:?}, total {total:?}",
        2 * FLOWS,
        ticks.len(),
        total / u32::try_from(ticks.len()).unwrap()
    );
    // Ticks are bounded in entries whatever the clock says: a tick reads
    // no batch once it visited its budget, and a batch (whole buckets,
    // `BATCH` entries or a bucket's ways more) starts under it, so the
    // sweep spreads over entries / budget ticks at least.
    let bound = TICK_BUDGET + BATCH + lb_common::flow_table::FLOW_WAYS;
    assert!(
        most_visited < bound,
        "a tick visited {most_visited} entries, a budget of {TICK_BUDGET} allows under {bound}"
    );
    // Every live entry was visited; an expired flow's second entry may
    // be gone before the walk reaches it.
    let live = 2 * (u64::from(FLOWS) - expired);
    assert!(
        visited as u64 >= live + expired && visited as u64 <= 2 * u64::from(FLOWS),
        "{visited} entries visited in a sweep of {} ({live} live)",
        2 * FLOWS
    );
    let stats = reaper.last_sweep().expect("a sweep");
    assert_eq!(reaper.reaped().expired, expired);
    assert_eq!(stats.flows["established"], u64::from(FLOWS) - expired);
    assert_eq!(
        dataplane.nat().flows().count() as u64,
        2 * (u64::from(FLOWS) - expired)
    );
    // How long a tick takes is the machine's (a debug build, a busy
    // machine): reported above, never asserted here. That a tick stops
    // between batches once `go_on` says so (one batch past the time bound
    // at most) is the reaper's unit tests' (`nat::reaper::tests`), on a
    // clock of their own; `cargo xtask bench` measures the time.
}

/// A batch of the reaper's walk reads a bounded number of buckets, so a
/// large, nearly empty NAT table (a DSR-only node's is allocated and
/// reaped too) is walked in short steps, the tick's time bound checked
/// between them; the walk still ends and finds every entry. (A batch read
/// buckets until it held `BATCH` entries: a whole table of 256 Ki buckets
/// in one call here, 4 Mi at the largest `flow_table_size`.) Needs root.
#[test]
fn a_batch_of_the_reapers_walk_reads_a_bounded_number_of_buckets() {
    use lb_common::{consts::IPPROTO_UDP, nat::counterpart_key, FlowKey, NatEntry};
    use lb_userspace::{
        dataplane::{Dataplane, MapSizes},
        nat::{
            reaper::{NatTable, BATCH},
            table::BATCH_BUCKETS,
        },
        reconcile::addr_words,
    };
    let words = |a: &str| addr_words(a.parse().unwrap()).0;
    let mut dataplane = Dataplane::load(MapSizes {
        max_vips: 16,
        conntrack: 1024,
        nat_flows: 1 << 20,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    })
    .expect("load the data plane");
    for n in 0..3u16 {
        let key = FlowKey {
            src: words("198.18.1.1"),
            dst: words("198.18.0.100"),
            sport: (10_000 + n).to_be(),
            dport: 53u16.to_be(),
            proto: IPPROTO_UDP,
            family: 4,
            _pad: 0,
        };
        let forward = NatEntry {
            src: words(NAT_ADDRESS),
            dst: words("198.19.2.11"),
            sport: (2_000 + n).to_be(),
            dport: 53u16.to_be(),
            backend_id: 1,
            last_seen_ns: 1,
            direction: lb_common::consts::NAT_DIR_FORWARD,
            ..NatEntry::default()
        };
        let nat = dataplane.nat_mut();
        nat.install_flow(&key, &forward).expect("forward entry");
        let reply = NatEntry {
            src: key.dst,
            dst: key.src,
            sport: key.dport,
            dport: key.sport,
            direction: lb_common::consts::NAT_DIR_REPLY,
            ..forward
        };
        nat.install_flow(&counterpart_key(&key, &forward), &reply)
            .expect("reply entry");
    }
    let nat = dataplane.nat();
    let mut out = Vec::new();
    let mut cursor = None;
    let mut batches = 0u32;
    loop {
        let from = cursor.unwrap_or(0);
        let next = nat.batch(cursor, BATCH, &mut out).expect("batch");
        batches += 1;
        if let Some(next) = next {
            assert!(
                next - from <= BATCH_BUCKETS,
                "a batch read {} buckets",
                next - from
            );
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert!(batches > 1, "the whole table read in one batch");
    assert_eq!(out.len(), 6, "every entry found: {out:?}");
}

/// A routed lab whose LB holds `NAT_ADDRESS`, with `forwarding` off on
/// its eth0, and an lbd config (`top`, then one NAT VIP on the first
/// backend) for the forwarding-restore tests.
fn forwarding_lab(top: &str) -> (Lab, String) {
    use lb_tests::lab::ROUTED_BACKEND_PORT;
    let lab = Lab::start_routed(1).expect("routed lab");
    let status = std::process::Command::new("ip")
        .args(["-n", &lab.lb.netns, "addr", "add"])
        .arg(format!("{NAT_ADDRESS}/32"))
        .args(["dev", "eth0"])
        .status()
        .expect("ip");
    assert!(status.success());
    let config = format!(
        "{top}interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[nat]\nsource_ipv4 = \"{NAT_ADDRESS}\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = 80\nforwarding = \"nat\"\n[vip.health]\ncheck = \"none\"\n\
         [[vip.backend]]\naddress = \"{}\"\nport = {ROUTED_BACKEND_PORT}\n",
        lab.admin_socket().display(),
        lab.backends[0].ipv4
    );
    set_forwarding_off(&lab.lb);
    (lab, config)
}

/// The interface's `forwarding` switch goes back to what it was before
/// the first lbd switched it on, however many restarts came between: a
/// restarted lbd finds it on and changes nothing itself, but the record
/// of what lbd holds keeps the first original, for a clean stop (SIGINT)
/// and for `lbd --cleanup` alike.
#[test]
fn forwarding_is_restored_to_the_original_across_restarts() {
    let (mut lab, config) = forwarding_lab("");
    let lb = lab.lb.clone();
    let on = |lab: &Lab| {
        wait_until("forwarding on eth0", Duration::from_secs(10), || {
            forwarding(&lab.lb) == "1"
        });
    };

    // SIGTERM, a new lbd, SIGINT: back to "0".
    lab.start_lbd_on(&lb, "lbd", &config).expect("lbd");
    on(&lab);
    lab.terminate("lbd").expect("SIGTERM");
    assert_eq!(forwarding(&lb), "1", "a restart stop leaves it on");
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd2");
    on(&lab);
    lab.interrupt("lbd2").expect("SIGINT");
    assert_eq!(forwarding(&lb), "0", "{}", lab.log("lbd2"));

    // SIGTERM, a new lbd, SIGTERM, `lbd --cleanup`: back to "0".
    lab.start_lbd_on(&lb, "lbd3", &config).expect("lbd3");
    on(&lab);
    lab.terminate("lbd3").expect("SIGTERM");
    lab.start_lbd_on(&lb, "lbd4", &config).expect("lbd4");
    on(&lab);
    lab.terminate("lbd4").expect("SIGTERM");
    assert_eq!(forwarding(&lb), "1");
    lab.lbd_offline_ok(&lb, "lbd4", "--cleanup");
    assert_eq!(forwarding(&lb), "0");
}

/// With `pin_dir = "off"` nothing outlives lbd: its program goes at every
/// stop, a SIGTERM or SIGUSR1 too, so the interface's `forwarding` goes
/// back to what it was as at a stop for good (it stays on after a restart
/// only for a pinned data plane, which forwards on).
#[test]
fn forwarding_is_restored_at_every_stop_with_pin_dir_off() {
    let (mut lab, config) = forwarding_lab("pin_dir = \"off\"\n");
    let lb = lab.lb.clone();
    for (name, signal) in [("lbd", libc::SIGTERM), ("lbd2", libc::SIGUSR1)] {
        assert_eq!(forwarding(&lb), "0", "before {name}");
        lab.start_lbd_on(&lb, name, &config).expect("lbd");
        wait_until("forwarding on eth0", Duration::from_secs(10), || {
            forwarding(&lab.lb) == "1"
        });
        lab.signal(name, signal).expect("signal");
        let status = lab
            .wait_exit(name, Duration::from_secs(20))
            .expect("lbd exits");
        let log = lab.log(name);
        assert!(status.success(), "{log}");
        assert!(
            !lab.xdp_attached(&lb).expect("ip link"),
            "pin_dir = \"off\": nothing outlives lbd\n{log}"
        );
        assert_eq!(
            forwarding(&lb),
            "0",
            "signal {signal}: the program went, forwarding stayed on\n{log}"
        );
    }
}

/// Node `node`'s sysctl `key` (`net.ipv6.conf.eth0.accept_ra`).
fn sysctl(node: &Host, key: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args(["sysctl", "-n", key])
        .output()
        .expect("sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn set_sysctl(node: &Host, key: &str, value: &str) {
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args(["sysctl", "-qw", &format!("{key}={value}")])
        .status()
        .expect("sysctl");
    assert!(status.success(), "{key}={value}");
}

/// IPv6 forwarding makes an interface ignore router advertisements unless
/// `accept_ra = 2`, so a host whose default route came from them (SLAAC)
/// would lose it when the router's lifetime ran out: lbd, switching
/// forwarding on for an IPv6 NAT VIP, raises a host's `accept_ra = 1` to
/// 2 (logged with the interface), keeps it across a restart and restores
/// both settings at a clean stop.
#[test]
fn router_advertisements_stay_accepted_while_lbd_forwards_ipv6() {
    use lb_tests::lab::{ROUTED_BACKEND_PORT, VIP6};
    const FORWARDING: &str = "net.ipv6.conf.eth0.forwarding";
    const ACCEPT_RA: &str = "net.ipv6.conf.eth0.accept_ra";
    let mut lab = Lab::start_routed(1).expect("routed lab");
    let lb = lab.lb.clone();
    let status = std::process::Command::new("ip")
        .args(["-n", &lb.netns, "addr", "add"])
        .arg(format!("{NAT_ADDRESS6}/128"))
        .args(["dev", "eth0", "nodad"])
        .status()
        .expect("ip");
    assert!(status.success());
    let config = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[nat]\nsource_ipv6 = \"{NAT_ADDRESS6}\"\n\n\
         [[vip]]\naddress = \"{VIP6}\"\nport = 80\nforwarding = \"nat\"\n[vip.health]\ncheck = \"none\"\n\
         [[vip.backend]]\naddress = \"{}\"\nport = {ROUTED_BACKEND_PORT}\n",
        lab.admin_socket().display(),
        lab.backends[0].ipv6
    );
    set_sysctl(&lb, FORWARDING, "0");
    set_sysctl(&lb, ACCEPT_RA, "1");
    let on = |lab: &Lab| {
        wait_until("IPv6 forwarding on eth0", Duration::from_secs(10), || {
            sysctl(&lab.lb, FORWARDING) == "1"
        });
        assert_eq!(sysctl(&lab.lb, ACCEPT_RA), "2");
    };

    lab.start_lbd_on(&lb, "lbd", &config).expect("lbd");
    on(&lab);
    let log = lab.log("lbd");
    assert!(
        log.lines().any(|l| l
            .contains("IPv6 router advertisements stay accepted on the interface")
            && l.contains("interface=eth0")),
        "{log}"
    );
    lab.terminate("lbd").expect("SIGTERM");
    assert_eq!(sysctl(&lb, FORWARDING), "1", "a restart stop leaves it on");
    assert_eq!(sysctl(&lb, ACCEPT_RA), "2");
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd2");
    on(&lab);
    lab.interrupt("lbd2").expect("SIGINT");
    let log = lab.log("lbd2");
    assert_eq!(sysctl(&lb, FORWARDING), "0", "{log}");
    assert_eq!(sysctl(&lb, ACCEPT_RA), "1", "{log}");

    // Forwarding left on by a restart stop, accept_ra back at 1 meanwhile
    // (as an lbd from before accept_ra was kept leaves it): the next lbd
    // raises it, and a clean stop puts it back.
    lab.start_lbd_on(&lb, "lbd3", &config).expect("lbd3");
    on(&lab);
    lab.terminate("lbd3").expect("SIGTERM");
    set_sysctl(&lb, ACCEPT_RA, "1");
    lab.start_lbd_on(&lb, "lbd4", &config).expect("lbd4");
    on(&lab);
    lab.interrupt("lbd4").expect("SIGINT");
    let log = lab.log("lbd4");
    assert_eq!(sysctl(&lb, FORWARDING), "0", "{log}");
    assert_eq!(sysctl(&lb, ACCEPT_RA), "1", "{log}");
}
