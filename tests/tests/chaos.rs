//! Chaos under load in the namespace lab: a backend flapping, the
//! connection table overflowing, and a hundred reloads, each while
//! requests flow. (kill -9 of lbd is in restart.rs, a backend's death in
//! control.rs.) Each test prints a `RELIABILITY:` line with what it
//! measured, for RELIABILITY.md. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    client::{self, KeepAlive},
    lab::{Lab, VIP4},
    support::{
        counter, grown, kept_alive_on, lbctl_ok, load, maglev_choice, sources_by_move,
        sources_moving_between, status, wait_health, MaglevModel,
    },
};
use lb_userspace::api::{
    flow_schema::{FlowDecision, FlowExplanation},
    schema::{HealthStatus, Status},
};

/// The lab's IPv4 VIP as lbctl names it.
const VIP: &str = "198.18.0.100:80/tcp";

/// Fast checks, yet with room for a loaded 2-core machine: a healthy
/// backend is taken out only after 3 probes in a row each took over
/// 200 ms. b3's detection windows are measured, so slower detection only
/// widens them.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 200\nfast_interval_ms = 50\ntimeout_ms = 200\nrise = 2\nfall = 3\n";

/// b3's link goes down and up 20 times, each time long enough for the
/// checks to take it out and bring it back: every kept-alive connection
/// to b1 and b2 answers from its own backend while b3 is out and after
/// it is back. Their source ports are picked from the Maglev model so
/// that in each phase some are held only by their connection-table
/// entries: `before` were opened with b3 in and hash to the other of b1
/// and b2 while it is out; `during` were opened while b3 was first out
/// and hash to another backend (mostly b3) once it is back. A connection
/// whose entry a health change dropped would reach another backend and
/// break. In each phase a new connection from another port shows which
/// table serves (b3's pick goes elsewhere while it is out, and b3 takes
/// its own once back).
#[test]
fn a_flapping_backend_moves_no_flow_of_a_healthy_one() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    lab.start_lbd(&lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS))
        .expect("lbd");
    for b in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        wait_health(&lab, b, HealthStatus::Up);
    }
    const FLAPS: usize = 20;
    let three = MaglevModel::new(&lab, &[("b1", 100), ("b2", 100), ("b3", 100)]);
    let two = MaglevModel::new(&lab, &[("b1", 100), ("b2", 100)]);
    // Few move between b1 and b2 when b3 leaves: a wide range of ports.
    let before = sources_moving_between(&lab, &three, &two, &["b1", "b2"], 2_000..20_000, 8);
    let during = sources_moving_between(&lab, &two, &three, &["b1", "b2"], 20_000..26_000, 16);
    let mut out_controls =
        sources_moving_between(&lab, &three, &two, &["b3"], 26_000..29_000, FLAPS).into_iter();
    let mut back_controls =
        sources_moving_between(&lab, &two, &three, &["b1", "b2"], 29_000..32_000, FLAPS)
            .into_iter();
    let open = |lab: &Lab, from: SocketAddr, model: &MaglevModel| {
        let mut conn = KeepAlive::open_from_port(&lab.client.netns, IpAddr::V4(VIP4), from.port())
            .expect("open");
        let backend = conn.request().expect("request");
        assert_eq!(
            backend,
            model.pick(from),
            "lbd's choice for {from} differs from the model's"
        );
        (conn, backend)
    };
    let mut healthy: Vec<(KeepAlive, String)> = before
        .iter()
        .map(|from| open(&lab, *from, &three))
        .collect();
    let b3 = lab.backends[2].clone();
    let load_started = Instant::now();
    let load = load(&lab, Duration::from_secs(120));
    let mut requests = 0;
    let mut windows = Vec::new();
    for flap in 0..FLAPS {
        let down = load_started.elapsed();
        lab.set_link(&b3, false).expect("down");
        wait_health(&lab, "198.18.0.13", HealthStatus::Down);
        windows.push((down, load_started.elapsed()));
        // The control: a new flow from one of b3's ports takes the pick
        // without b3.
        drop(open(&lab, out_controls.next().expect("a control"), &two));
        if flap == 0 {
            healthy.extend(during.iter().map(|from| open(&lab, *from, &two)));
        }
        for (conn, backend) in &mut healthy {
            assert_eq!(
                &conn
                    .request()
                    .expect("request on a healthy backend while b3 is out"),
                backend,
                "a flow of a healthy backend moved while b3 was out"
            );
            requests += 1;
        }
        lab.set_link(&b3, true).expect("up");
        wait_health(&lab, "198.18.0.13", HealthStatus::Up);
        // The control: a new flow from a port that moves when b3 comes
        // back takes the pick with b3.
        drop(open(&lab, back_controls.next().expect("a control"), &three));
        for (conn, backend) in &mut healthy {
            assert_eq!(
                &conn
                    .request()
                    .expect("request on a healthy backend after b3 is back"),
                backend,
                "a flow of a healthy backend moved after b3 was back"
            );
            requests += 1;
        }
    }
    let results = load.finish().expect("load");
    let failed = results.iter().filter(|t| t.result.is_err()).count();
    // Failures only while b3 was down and not yet taken out (plus the 2 s
    // client timeout of a request that started then).
    let outside: Vec<_> = results
        .iter()
        .filter(|t| t.result.is_err())
        .filter(|t| {
            !windows.iter().any(|(down, out)| {
                t.at + Duration::from_millis(50) >= *down
                    && t.at <= *out + Duration::from_millis(100)
            })
        })
        .collect();
    assert!(
        outside.is_empty(),
        "requests failed outside b3's detection windows: {outside:?}"
    );
    let transitions = status(&lab).vips[0]
        .backends
        .iter()
        .find(|b| b.address.to_string() == "198.18.0.13")
        .and_then(|b| b.check.as_ref().map(|c| c.transitions))
        .unwrap_or(0);
    assert!(transitions >= 40, "{transitions} transitions of b3");
    eprintln!(
        "RELIABILITY: flap x20: {} kept-alive connections to b1/b2 ({} held only by the connection table while b3 was out, {} once it was back), {requests} requests on them while b3 was out and after, 0 moved; \
         {} new connections alongside, {failed} failed, all while b3 was down and not yet detected; {transitions} health transitions",
        healthy.len(),
        before.len(),
        during.len(),
        results.len()
    );
}

/// More new flows than the table has slots (3000 one-request connections
/// into a table of 1024 flows, 2048 ways): the table evicts (no one else
/// takes entries out of it, so flows inserted past its slots are flows
/// evicted), no insert fails, nothing errors, and closed flows go before
/// live ones: the 32 kept-alive connections are still tracked, on the
/// backends that answered them. Each was opened from a source port whose
/// Maglev pick changes when a fourth backend joins, and one does before
/// they are asked again: a kept-alive connection whose entry had been
/// evicted would move (and its request reach another backend), as new
/// connections from other such ports do.
#[test]
fn overflowing_the_connection_table_evicts_quietly_and_keeps_flows_on_their_backends() {
    let mut lab = Lab::start(4).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab
        .lbd_config_for(&["b1", "b2", "b3"], CHECKS)
        .replace("conntrack_size = 65536", "conntrack_size = 1024");
    assert!(config.contains("conntrack_size = 1024"));
    lab.start_lbd(&config).expect("lbd");
    for b in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        wait_health(&lab, b, HealthStatus::Up);
    }
    const KEPT: usize = 32;
    const CONTROLS: usize = 4;
    let mut sources = sources_by_move(&lab, KEPT + CONTROLS, 0);
    let controls = sources.split_off(KEPT);
    let mut conns: Vec<(KeepAlive, String, SocketAddr)> = sources
        .into_iter()
        .map(|from| {
            let (conn, backend) = kept_alive_on(&lab, from, &maglev_choice(&lab, from, 3));
            (conn, backend, from)
        })
        .collect();
    let before = status(&lab);

    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 3000).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let after = status(&lab);
    assert_eq!(counter(&after, "conntrack_insert_failed"), 0);
    // The bucket table keeps 1024 live flows in twice as many ways, and
    // only eviction takes flows out of it (lbd removes none): more flows
    // went in than it has ways, so the table evicted, the difference.
    let slots = 1024 * u64::from(lb_common::flow_table::FLOW_HEADROOM);
    let inserted = grown(&before, &after, "conntrack_new");
    let went_in = occupied(&before) + inserted;
    assert!(
        inserted >= 3000 && went_in > slots,
        "{inserted} flows inserted into a table of {slots} ways holding {}: no overflow",
        occupied(&before)
    );
    assert!(occupied(&after) <= slots, "{:?}", after.vips);
    let evicted = went_in - occupied(&after);
    // Closed flows went first: every kept-alive connection is tracked,
    // on its backend.
    for (_, backend, from) in &conns {
        let answer = explain(&lab, &from.to_string());
        assert_eq!(
            answer.decision,
            FlowDecision::Tracked,
            "the kept-alive connection from {from} ({backend}) was evicted: {answer:?}"
        );
        let tracked_on = answer.backend.as_ref().map(|b| b.address);
        assert_eq!(
            tracked_on,
            Some(backend_address(&lab, backend)),
            "the kept-alive connection from {from} is tracked on another backend: {answer:?}"
        );
    }

    // A fourth backend joins: Maglev now picks another backend for every
    // kept-alive connection's 5-tuple; only its entry keeps it.
    lbctl_ok(&lab, &["backend", "add", VIP, "198.18.0.14"]);
    wait_health(&lab, "198.18.0.14", HealthStatus::Up);
    let joined = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 100).expect("burst");
    assert_eq!(joined.failed, 0, "{:?}", joined.errors);
    assert!(
        joined.by_backend.contains_key("b4"),
        "b4 takes no new flows: {:?}",
        joined.by_backend
    );
    // The control: a connection from another such port, which the table
    // does not hold, goes where the four backends' Maglev sends it, not
    // where the three did.
    for from in controls {
        let mut conn = KeepAlive::open_from_port(&lab.client.netns, IpAddr::V4(VIP4), from.port())
            .expect("open");
        let served = conn.request().expect("request");
        assert_eq!(served, maglev_choice(&lab, from, 4), "new flow from {from}");
        assert_ne!(served, maglev_choice(&lab, from, 3), "{from} does not move");
    }
    for (conn, backend, from) in &mut conns {
        assert_eq!(
            &conn.request().expect("request after the overflow"),
            backend,
            "the kept-alive connection from {from} moved: its entry was lost"
        );
    }
    eprintln!(
        "RELIABILITY: overflow: 3000 new flows into a table of 1024 ({slots} ways): {inserted} inserted, {evicted} evicted, {} ways taken after ({} live), 0 failed requests, 0 failed inserts; {KEPT} kept-alive connections still tracked, 0 moved when a fourth backend joined",
        occupied(&after),
        after.conntrack.entries
    );
}

/// Ways of the connection table taken, by flows of every kind (live,
/// closing, idle: `conntrack.entries` counts the live ones only).
fn occupied(status: &Status) -> u64 {
    status
        .vips
        .iter()
        .flat_map(|v| &v.backends)
        .map(|b| b.flows.live + b.flows.closing + b.flows.idle)
        .sum()
}

/// `lbctl flow VIP CLIENT --json` for the IPv4 VIP; it must succeed.
fn explain(lab: &Lab, client: &str) -> FlowExplanation {
    serde_json::from_str(&lbctl_ok(lab, &["flow", VIP, client, "--json"]))
        .expect("FlowExplanation JSON")
}

/// The IPv4 address of the backend named `name`.
fn backend_address(lab: &Lab, name: &str) -> IpAddr {
    lab.backends
        .iter()
        .find(|b| b.name == name)
        .map(|b| IpAddr::V4(b.ipv4))
        .unwrap_or_else(|| panic!("no backend named {name:?}"))
}

/// A hundred reloads while serving, alternating two files (a weight
/// change): every reload applies, no request fails, and kept-alive
/// connections stay where they are. Each was opened under the even
/// weights from a source port whose Maglev pick differs under the
/// uneven ones, and each is asked while those are in service (every
/// tenth reload, after a new connection from another such port showed
/// the uneven table serves) as well as at the end: a reload that lost
/// the connection table would move them to their uneven pick.
#[test]
fn a_hundred_reloads_under_load_lose_nothing() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    let even = lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS);
    let uneven = even.replacen(
        "  address = \"198.18.0.13\"\n",
        "  address = \"198.18.0.13\"\n  weight = 300\n",
        1,
    );
    assert_ne!(even, uneven);
    lab.start_lbd(&even).expect("lbd");
    for b in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        wait_health(&lab, b, HealthStatus::Up);
    }
    const KEPT: usize = 24;
    const ASKED_EVERY: usize = 10;
    let even_model = MaglevModel::new(&lab, &[("b1", 100), ("b2", 100), ("b3", 100)]);
    let uneven_model = MaglevModel::new(&lab, &[("b1", 100), ("b2", 100), ("b3", 300)]);
    let mut sources = sources_moving_between(
        &lab,
        &even_model,
        &uneven_model,
        &["b1", "b2", "b3"],
        20_000..32_000,
        KEPT + 100 / ASKED_EVERY,
    );
    let mut controls = sources.split_off(KEPT).into_iter();
    let mut conns: Vec<(KeepAlive, String)> = sources
        .into_iter()
        .map(|from| kept_alive_on(&lab, from, &even_model.pick(from)))
        .collect();
    let load = load(&lab, Duration::from_secs(120));
    let started = Instant::now();
    let mut asked = 0;
    for i in 0..100 {
        let config = if i % 2 == 0 { &uneven } else { &even };
        lab.write_lbd_config(config).expect("write");
        let out = lab.lbctl(&["reload"]).expect("lbctl reload");
        assert!(
            out.status.success(),
            "reload {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if i % ASKED_EVERY == 0 {
            // The uneven weights serve: a flow the table does not hold
            // takes their pick.
            let from = controls.next().expect("a control source");
            let mut control =
                KeepAlive::open_from_port(&lab.client.netns, IpAddr::V4(VIP4), from.port())
                    .expect("open a control");
            assert_eq!(
                control.request().expect("the control's request"),
                uneven_model.pick(from),
                "a new flow from {from} after reload {i} does not take the uneven pick"
            );
            drop(control);
            for (conn, backend) in &mut conns {
                assert_eq!(
                    &conn.request().expect("request under the uneven weights"),
                    backend,
                    "a kept-alive connection moved under the uneven weights (reload {i})"
                );
                asked += 1;
            }
        }
    }
    let took = started.elapsed();
    let results = load.finish().expect("load");
    let failed: Vec<_> = results.iter().filter(|t| t.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        results.len()
    );
    for (conn, backend) in &mut conns {
        assert_eq!(&conn.request().expect("request"), backend);
        asked += 1;
    }
    let reloads = status(&lab).reloads;
    assert_eq!(reloads.succeeded, 100, "{reloads:?}");
    assert_eq!(reloads.failed, 0);
    eprintln!(
        "RELIABILITY: 100 reloads in {:.1} s: {} requests alongside, 0 failed; {KEPT} kept-alive connections (each hashed elsewhere under the uneven weights), {asked} requests on them under the uneven weights and after, 0 moved",
        took.as_secs_f64(),
        results.len()
    );
}
