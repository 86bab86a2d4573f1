//! The database seed scenario of issue 12 with the real components: a
//! PostgreSQL behind three PgBouncers (transaction pooling) on routed,
//! unmodified hosts, driven by `pgbench` from the client. First straight
//! at each PgBouncer (the components and the routed network), then
//! through a NAT VIP served by two lbd nodes with VRRP and a failover in
//! the middle of the run. Needs root and the Debian packages `postgresql`
//! and `pgbouncer` (`cargo xtask setup`).

use std::{
    collections::BTreeSet,
    fs,
    net::{IpAddr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{Host, Lab, VIP4},
    postgres::{query, seed_topology, Length, PgStack, Pgbench, Run, PGBOUNCER_PORT},
    support::{ip, status_on, wait_replication, wait_until},
};
use lb_userspace::api::schema::{BackendStatus, CheckKind, HealthStatus};

/// The seed lab: PostgreSQL on the last backend host (its own network
/// behind r2), a PgBouncer on each of the others; pgbench's tables made.
fn seed_lab(lbs: usize, static_vip: bool) -> (Lab, PgStack) {
    let lab = Lab::start_topology(seed_topology(lbs, 3, static_vip)).expect("seed lab");
    let (db, bouncers) = lab.backends.split_last().expect("a database host");
    let stack = PgStack::start(db, bouncers, &lab.dir).expect("PostgreSQL and PgBouncers");
    Pgbench::new(&lab.client.netns, stack.postgres.address, &lab.dir)
        .init(1)
        .expect("pgbench -i");
    (lab, stack)
}

/// Rows in pgbench_history: one per transaction that reached PostgreSQL.
fn history_rows(lab: &Lab, stack: &PgStack) -> u64 {
    query(
        &lab.client.netns,
        stack.postgres.address,
        "SELECT count(*) FROM pgbench_history",
    )
    .expect("count history")
    .parse()
    .expect("a count")
}

/// The addresses PostgreSQL's sessions of the pgbench role come from.
fn session_sources(lab: &Lab, stack: &PgStack) -> BTreeSet<IpAddr> {
    query(
        &lab.client.netns,
        stack.postgres.address,
        "SELECT client_addr FROM pg_stat_activity \
         WHERE usename = 'pgbench' AND pid <> pg_backend_pid()",
    )
    .expect("pg_stat_activity")
    .lines()
    .filter_map(|l| l.trim().parse().ok())
    .collect()
}

/// Asserts `host` carries nothing of DSR (only loopback on `lo`, no VIP)
/// and reaches `to` through a router, not on-link.
fn assert_unmodified_and_routed(host: &Host, to: IpAddr) {
    let lo = ip(&["-n", &host.netns, "-br", "addr", "show", "dev", "lo"]);
    let extra: Vec<&str> = lo
        .split_whitespace()
        .skip(2)
        .filter(|a| *a != "127.0.0.1/8" && *a != "::1/128")
        .collect();
    assert!(extra.is_empty(), "{} has {extra:?} on lo", host.name);
    let all = ip(&["-n", &host.netns, "addr", "show"]);
    assert!(
        !all.contains(&format!("{VIP4}/")),
        "{} holds the VIP",
        host.name
    );
    let route = ip(&["-n", &host.netns, "route", "get", &to.to_string()]);
    assert!(
        route.contains(" via "),
        "{} reaches {to} on-link: {route}",
        host.name
    );
}

#[test]
fn pgbench_straight_at_each_pgbouncer_on_routed_hosts_loses_no_transaction() {
    let started = Instant::now();
    let (lab, stack) = seed_lab(1, true);
    let ready = started.elapsed();
    for bouncer in &stack.bouncers {
        assert_unmodified_and_routed(&bouncer.host, stack.postgres.address.ip());
    }
    let before = history_rows(&lab, &stack);
    let mut expected = 0;
    for (index, bouncer) in stack.bouncers.iter().enumerate() {
        let run = Run {
            clients: 4,
            threads: 1,
            length: Length::Transactions(100),
            // The last one opens a connection per transaction, through
            // the routers and PgBouncer's accept path every time.
            connect_per_transaction: index == 2,
            progress_s: 0,
        };
        let report = Pgbench::new(&lab.client.netns, bouncer.address, &lab.dir)
            .run(&run)
            .unwrap_or_else(|e| panic!("pgbench via {}: {e:#}", bouncer.host.name));
        println!(
            "pgbench via {} ({}{}): {report:?}",
            bouncer.host.name,
            bouncer.address,
            if run.connect_per_transaction {
                ", -C"
            } else {
                ""
            }
        );
        assert_eq!(
            report.failed, 0,
            "failed transactions via {}",
            bouncer.address
        );
        assert_eq!(report.asked, run.requested(), "pgbench's own count");
        assert_eq!(
            Some(report.processed),
            run.requested(),
            "transactions processed via {}",
            bouncer.address
        );
        assert!(report.tps > 0.0, "no throughput: {report:?}");
        expected += report.processed;
    }
    // IPv6 from the client to a PgBouncer, too.
    let bouncer = &stack.bouncers[0];
    let run = Run {
        clients: 2,
        threads: 1,
        length: Length::Transactions(50),
        connect_per_transaction: false,
        progress_s: 0,
    };
    let report = Pgbench::new(&lab.client.netns, bouncer.address_v6, &lab.dir)
        .run(&run)
        .unwrap_or_else(|e| panic!("pgbench via {}: {e:#}", bouncer.address_v6));
    assert_eq!(
        (report.failed, Some(report.processed)),
        (0, run.requested())
    );
    expected += report.processed;
    // Every transaction reached PostgreSQL, and through the PgBouncers:
    // its sessions come from their addresses, over the routed network.
    assert_eq!(history_rows(&lab, &stack) - before, expected);
    let sources = session_sources(&lab, &stack);
    for bouncer in &stack.bouncers {
        assert!(
            sources.contains(&bouncer.address.ip()),
            "no PostgreSQL session from {}: {sources:?}",
            bouncer.host.name
        );
    }
    assert!(
        !sources.contains(&IpAddr::V4(lab.client.ipv4)),
        "the client reached PostgreSQL directly: {sources:?}"
    );
    println!(
        "seed lab ready in {} ms, whole test {} ms",
        ready.as_millis(),
        started.elapsed().as_millis()
    );
}

#[test]
fn every_server_of_the_seed_lab_stops_with_its_handle() {
    let (lab, stack) = seed_lab(1, true);
    let pids: Vec<u32> = lab
        .backends
        .iter()
        .flat_map(|b| {
            ip(&["netns", "pids", &b.netns])
                .lines()
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    let comm = |pid: &u32| {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let servers: Vec<u32> = pids
        .into_iter()
        .filter(|p| matches!(comm(p).as_str(), "postgres" | "pgbouncer"))
        .collect();
    // PostgreSQL's postmaster and its helpers, three PgBouncers.
    assert!(servers.len() >= 4, "servers: {servers:?}");
    drop(stack);
    // Gone at once (waited for), before the lab tears its namespaces down.
    let left: Vec<(u32, String)> = servers
        .iter()
        .map(|p| (*p, comm(p)))
        .filter(|(_, c)| c == "postgres" || c == "pgbouncer")
        .collect();
    assert!(left.is_empty(), "still running after drop: {left:?}");
}

#[test]
fn a_pgbouncer_dying_mid_run_fails_the_run_with_pgbenchs_error() {
    let (lab, mut stack) = seed_lab(1, true);
    let bench = Pgbench::new(&lab.client.netns, stack.bouncers[0].address, &lab.dir);
    let run = Run {
        clients: 2,
        threads: 1,
        length: Length::Seconds(3),
        connect_per_transaction: false,
        progress_s: 0,
    };
    let driver = thread::spawn(move || bench.run(&run));
    thread::sleep(Duration::from_secs(1));
    stack.bouncers[0].kill().expect("kill PgBouncer");
    let error = driver
        .join()
        .expect("pgbench thread")
        .expect_err("a run whose server died was reported as a success");
    let text = format!("{error:#}");
    // pgbench's own words reach the report: its clients were aborted.
    assert!(text.contains("abort"), "{text}");
    println!("reported: {text}");
}

/// The lbd config of `node` for the NAT VIP on the PgBouncers' port, in a
/// VRRP pair with `peer` (VRID 51, 100 ms adverts), NAT state replicated.
/// The node's NAT address (198.18.0.50, on the LB network) joins the VRRP
/// instance's addresses by default, so it moves with the VIP.
/// Its TCP checks give a PgBouncer 500 ms to accept and take it out after
/// 3 failures in a row: pgbench and PostgreSQL load the machine, and a
/// healthy PgBouncer taken out would move sessions and fail transactions.
fn nat_config(
    lab: &Lab,
    node: &Host,
    peer: &Host,
    bouncers: &[SocketAddr],
    priority: u8,
) -> String {
    let key = lab.dir.join("sync.key");
    if !key.exists() {
        fs::write(&key, "lab-sync-key-0123456789abcdef\n").expect("sync key");
    }
    let mut config = format!(
        "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n\
         [nat]\nsource_ipv4 = \"198.18.0.50\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = {PGBOUNCER_PORT}\nforwarding = \"nat\"\n\
         [vip.health]\ncheck = \"tcp\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 1\nfall = 3\n",
        lab.admin_socket_of(node).display()
    );
    for bouncer in bouncers {
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n  port = {}\n",
            bouncer.ip(),
            bouncer.port()
        ));
    }
    config.push_str(&format!(
        "\n[[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\npreempt = true\n\
         announce_count = 3\nsync_listen = \"{}:7540\"\nsync_peer = \"{}:7540\"\nsync_key_file = \"{}\"\n",
        node.ipv4,
        peer.ipv4,
        key.display()
    ));
    config
}

#[test]
fn pgbench_through_a_nat_vip_loses_no_transaction_across_a_failover() {
    let (mut lab, stack) = seed_lab(2, false);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let bouncers: Vec<SocketAddr> = stack.bouncers.iter().map(|b| b.address).collect();
    let config_a = nat_config(&lab, &a, &b, &bouncers, 150);
    let config_b = nat_config(&lab, &b, &a, &bouncers, 100);
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    wait_until("lb to hold the VIP", Duration::from_secs(10), || {
        lab.holds_vip(&a).unwrap_or(false)
    });
    wait_replication(&lab, &a);
    wait_until(
        "every PgBouncer up on both nodes",
        Duration::from_secs(10),
        || {
            [&a, &b].iter().all(|node| {
                status_on(&lab, node).vips[0]
                    .backends
                    .iter()
                    .all(|backend| backend.health == HealthStatus::Up)
            })
        },
    );
    let before = history_rows(&lab, &stack);

    // Long-lived pgbench sessions through the VIP; the master's link is
    // cut a third of the way in.
    const SECONDS: u32 = 9;
    let vip = SocketAddr::new(IpAddr::V4(VIP4), PGBOUNCER_PORT);
    let bench = Pgbench::new(&lab.client.netns, vip, &lab.dir);
    let run = Run {
        clients: 12,
        threads: 2,
        length: Length::Seconds(SECONDS),
        connect_per_transaction: false,
        progress_s: 1,
    };
    let driver = thread::spawn(move || bench.run(&run));
    thread::sleep(Duration::from_secs(3));
    let cut = Instant::now();
    lab.signal("lbd-a", libc::SIGKILL).expect("SIGKILL lbd-a");
    lab.set_link(&a, false).expect("link down");
    wait_until("lb2 to take the VIP", Duration::from_secs(5), || {
        lab.holds_vip(&b).unwrap_or(false)
    });
    let gap = cut.elapsed();
    let report = driver
        .join()
        .expect("pgbench thread")
        .unwrap_or_else(|e| panic!("pgbench through the NAT VIP: {e:#}"));
    println!(
        "RELIABILITY: pgbench through a NAT VIP across a failover (gap {} ms): {report:?}",
        gap.as_millis()
    );
    assert_eq!(report.failed, 0, "failed transactions: {report:?}");
    assert!(report.processed > 0, "nothing processed: {report:?}");
    // Work went on after the failover, on the same connections (-C off).
    let after: Vec<_> = report.progress.iter().filter(|p| p.at_s > 5.0).collect();
    assert!(
        !after.is_empty() && after.iter().all(|p| p.tps > 0.0 && p.failed == 0),
        "no throughput after the failover: {:?}",
        report.progress
    );
    // Every transaction pgbench counted reached PostgreSQL, through the
    // PgBouncers behind the VIP.
    assert_eq!(history_rows(&lab, &stack) - before, report.processed);
    let sources = session_sources(&lab, &stack);
    let served = bouncers
        .iter()
        .filter(|b| sources.contains(&b.ip()))
        .count();
    assert!(
        served >= 2,
        "12 sessions reached {served} PgBouncer(s): {sources:?}"
    );
    assert!(
        !sources.contains(&IpAddr::V4(lab.client.ipv4)),
        "the client reached PostgreSQL directly: {sources:?}"
    );
}

/// lbd's config on `node`: a NAT VIP on PgBouncer's port (no VRRP) whose
/// backends are `backends` (address, lines of its own health table), all
/// with pgsql checks as pgbench of the `postgres` database.
fn pgsql_config(lab: &Lab, node: &Host, backends: &[(SocketAddr, &str)]) -> String {
    let mut config = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n\
         [nat]\nsource_ipv4 = \"198.18.0.50\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = {PGBOUNCER_PORT}\nforwarding = \"nat\"\n\
         [vip.health]\ncheck = \"pgsql\"\nuser = \"pgbench\"\ndatabase = \"postgres\"\n\
         interval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 1\nfall = 2\n",
        lab.admin_socket_of(node).display()
    );
    for (address, own) in backends {
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n  port = {}\n",
            address.ip(),
            address.port()
        ));
        if !own.is_empty() {
            config.push_str(&format!("  [vip.backend.health]\n  {own}\n"));
        }
    }
    config
}

/// The backend of the first VIP at `address`, as lbd on `node` reports it.
fn backend_at(lab: &Lab, node: &Host, address: SocketAddr) -> BackendStatus {
    status_on(lab, node).vips[0]
        .backends
        .iter()
        .find(|b| b.address == address.ip())
        .cloned()
        .unwrap_or_else(|| panic!("no backend {address}"))
}

/// What pgsql checks prove with the real PgBouncer (1.18, Debian's) and
/// PostgreSQL: a PgBouncer that refuses the check's session (here a
/// database it does not know) is down with PgBouncer's own error, where
/// a TCP check passes; PostgreSQL checked itself is down once it stops.
/// But a PgBouncer that has served goes on passing once the PostgreSQL
/// behind it stops: it authenticates clients itself (auth_type trust
/// here; an auth_file's passwords alike) and answers from the server
/// parameters it keeps; a client learns of it only when its query waits
/// for a server. (A PgBouncer that has not reached its server since it
/// started holds the login instead, and the check times out.) So a
/// pgsql check of a PgBouncer follows PgBouncer (up, accepting sessions
/// for that user and database), not the database behind it: check the
/// database itself for that.
#[test]
fn pgsql_checks_follow_pgbouncer_and_postgresql_each_for_itself() {
    let (mut lab, mut stack) = seed_lab(1, true);
    let node = lab.lbs[0].clone();
    let bouncers: Vec<SocketAddr> = stack.bouncers.iter().map(|b| b.address).collect();
    let postgres = stack.postgres.address;
    let backends = [
        (bouncers[0], ""),
        (bouncers[1], "database = \"nosuch\""),
        (bouncers[2], ""),
        (postgres, ""),
    ];
    let config = pgsql_config(&lab, &node, &backends);
    lab.start_lbd_on(&node, "lbd", &config).expect("lbd on lb");

    let up = [bouncers[0], bouncers[2], postgres];
    wait_until(
        "the PgBouncers and PostgreSQL up, the unknown database down",
        Duration::from_secs(15),
        || {
            up.iter()
                .all(|a| backend_at(&lab, &node, *a).health == HealthStatus::Up)
                && backend_at(&lab, &node, bouncers[1]).health == HealthStatus::Down
        },
    );
    let refused = backend_at(&lab, &node, bouncers[1]);
    let check = refused.check.expect("a check");
    assert_eq!(check.kind, CheckKind::Pgsql);
    assert_eq!(
        check.last.as_deref(),
        Some("PostgreSQL FATAL 08P01: no such database: nosuch"),
        "{check:?}"
    );
    assert_eq!(
        check.failures_by_reason.get("pgsql_error"),
        Some(&check.failures)
    );

    // The checks close gracefully: PostgreSQL logs each reset ("could
    // not receive data from client: Connection reset by peer"), as it did
    // for every TCP check.
    wait_until("five checks of PostgreSQL", Duration::from_secs(10), || {
        backend_at(&lab, &node, postgres)
            .check
            .is_some_and(|c| c.checks >= 5)
    });
    let log = stack.postgres.log();
    assert!(!log.contains("reset by peer"), "PostgreSQL's log:\n{log}");

    stack.postgres.stop().expect("stop PostgreSQL");
    wait_until(
        "PostgreSQL's own check down",
        Duration::from_secs(10),
        || backend_at(&lab, &node, postgres).health == HealthStatus::Down,
    );
    let seen: Vec<(u64, u64)> = [bouncers[0], bouncers[2]]
        .iter()
        .map(|a| {
            backend_at(&lab, &node, *a)
                .check
                .map_or((0, 0), |c| (c.checks, c.failures))
        })
        .collect();
    // Five more checks of each PgBouncer, every one passed.
    wait_until(
        "five more checks of each PgBouncer",
        Duration::from_secs(15),
        || {
            [bouncers[0], bouncers[2]]
                .iter()
                .zip(&seen)
                .all(|(a, (n, _))| {
                    backend_at(&lab, &node, *a)
                        .check
                        .is_some_and(|c| c.checks >= n + 5)
                })
        },
    );
    for (address, (_, failures)) in [bouncers[0], bouncers[2]].into_iter().zip(seen) {
        let backend = backend_at(&lab, &node, address);
        let check = backend.check.expect("a check");
        assert_eq!(backend.health, HealthStatus::Up, "{address}: {check:?}");
        assert_eq!(check.failures, failures, "{address}: {check:?}");
        assert_eq!(check.last.as_deref(), Some("success"), "{address}");
    }
    println!(
        "PostgreSQL stopped: its own check {:?}; the PgBouncers' still pass",
        backend_at(&lab, &node, postgres).check.and_then(|c| c.last)
    );
}
