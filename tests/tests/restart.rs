//! Hitless restart: the data plane is pinned, so lbd can be killed,
//! restarted or upgraded while traffic flows; the next lbd adopts the
//! program's maps (connection table and half-open table included) and
//! swaps its program in atomically. `lbd --cleanup` removes it all.
//! Needs root.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client::{self, KeepAlive, Timed},
    floodrun,
    lab::{in_netns, Lab, HTTP_PORT, VIP4},
    support::{
        backend, lbctl_ok, lbctl_outcome, load, maglev_choice, sources_by_move, status,
        vip4_http_slot, wait_health,
    },
    synflood::SynFlood,
};
use lb_userspace::api::{
    flow_schema::{FlowDecision, FlowExplanation},
    schema::{BackendState, HealthStatus, Status},
};

/// HTTP checks that a loaded 2-core machine cannot fail by delaying a
/// probe or two (500 ms to answer, 3 failures in a row): no test here
/// measures how fast a check finds a backend gone, and a healthy backend
/// taken out would move or break kept-alive connections.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 3\n";

/// The id of the XDP program eth0 of the LB node runs.
fn program_id(lab: &Lab) -> Option<u32> {
    let out = std::process::Command::new("ip")
        .args(["-n", &lab.lb.netns, "-d", "link", "show", "eth0"])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "prog/xdp")
        .nth(2)
        .and_then(|id| id.parse().ok())
}

/// How many of `three_backends_holding_connections`' connections come
/// from sources Maglev would move to b4.
const MOVING: usize = 16;

/// A lab of four backends with lbd serving three of them, and 32
/// kept-alive connections through it (`conns`), each answered once by
/// `first`, lbd's pick, which the
/// Maglev model confirms: 16 of them from sources Maglev would move to b4
/// once it joins, so only a kept connection table keeps them where they
/// are.
fn three_backends_holding_connections() -> (Lab, Vec<KeepAlive>, Vec<String>) {
    let mut lab = Lab::start(4).expect("lab");
    lab.wait_for_backends().expect("backends");
    let three = lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS);
    lab.start_lbd(&three).expect("lbd");
    // The first MOVING: connections Maglev would send elsewhere once b4
    // joins (checked against lbd's live table once it has, see
    // `assert_live_table_moves`): only the adopted connection table can
    // keep these on their backends.
    let sources = sources_by_move(&lab, MOVING, 16);
    let mut conns: Vec<KeepAlive> = sources
        .iter()
        .map(|from| {
            KeepAlive::open_from_port(&lab.client.netns, IpAddr::V4(VIP4), from.port())
                .expect("open")
        })
        .collect();
    let first: Vec<String> = conns
        .iter_mut()
        .zip(&sources)
        .map(|(c, from)| {
            let backend = c.request().expect("request");
            assert_eq!(
                backend,
                maglev_choice(&lab, *from, 3),
                "lbd's choice for {from} differs from the model's"
            );
            backend
        })
        .collect();
    (lab, conns, first)
}

/// kill -9 under load, then a restart with one more backend in the file:
/// no request fails while lbd is dead (the pinned program keeps
/// forwarding), and every kept-alive connection stays on its backend after
/// the restart even where Maglev would now send it to the new backend —
/// the connection table was adopted, not rebuilt. Half the connections
/// are opened from source ports whose Maglev pick changes when b4 joins
/// (`sources_by_move`), so a rebuilt table would move them.
#[test]
fn kill_9_and_restart_keeps_forwarding_and_the_connection_table() {
    let (mut lab, mut conns, first) = three_backends_holding_connections();
    let before = status(&lab);
    assert!(!before.adopted, "a first start adopts nothing");
    assert!(before.pin_dir.is_some());
    let program_before = program_id(&lab).expect("XDP attached");

    let load = load(&lab, Duration::from_secs(60));
    thread::sleep(Duration::from_millis(500));
    lab.kill("lbd").expect("kill -9");
    let killed = Instant::now();
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        program_id(&lab),
        Some(program_before),
        "the program must keep running with lbd dead"
    );
    // Kept-alive connections work with no lbd at all.
    for (conn, backend) in conns.iter_mut().zip(&first) {
        assert_eq!(&conn.request().expect("request while lbd is dead"), backend);
    }

    let four = lab.lbd_config_for(&["b1", "b2", "b3", "b4"], CHECKS);
    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &four)
        .expect("restart");
    let restarted = killed.elapsed();
    thread::sleep(Duration::from_millis(1000));
    let results = load.finish().expect("load");

    let failed = client::failures(&results);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across kill -9 and restart: {failed:?}",
        failed.len(),
        results.len()
    );
    let after_restart: Vec<&Timed> = results
        .iter()
        .filter(|t| t.at > Duration::from_millis(500) + restarted)
        .collect();
    let mut by_backend = BTreeMap::<String, u64>::new();
    for t in &after_restart {
        if let Ok(b) = &t.result {
            *by_backend.entry(b.clone()).or_default() += 1;
        }
    }
    assert!(
        by_backend.contains_key("b4"),
        "new connections after the restart must reach the added backend: {by_backend:?}"
    );

    // Every kept-alive connection is still on its first backend, though
    // the live table now sends MOVING of them elsewhere.
    for (conn, backend) in conns.iter_mut().zip(&first) {
        assert_eq!(
            &conn.request().expect("request after restart"),
            backend,
            "a tracked connection moved across the restart"
        );
    }
    let to_b4 = assert_live_table_moves(&lab, &conns, &first);
    let log = lab.log("lbd2");
    assert!(log.contains("adopting the pinned data plane"), "{log}");
    // Every pinned map fits the same lbd: none is started afresh.
    assert!(!log.contains("does not fit this lbd"), "{log}");
    assert!(log.contains("replaced atomically"), "{log}");
    let after = status(&lab);
    assert!(
        after.adopted,
        "the restarted lbd must say it adopted the data plane"
    );
    assert!(
        after.conntrack.entries >= before.conntrack.entries,
        "connection table shrank: {} -> {}",
        before.conntrack.entries,
        after.conntrack.entries
    );
    assert_ne!(
        program_id(&lab),
        Some(program_before),
        "the new lbd must run its own program"
    );
    eprintln!(
        "RELIABILITY: kill -9 lbd + restart with a 4th backend: {} requests, 0 failed, new lbd ready {:.2} s after the kill; 32 kept-alive connections, 0 moved ({MOVING} of them lbd's live table now sends elsewhere, {to_b4} to b4); {} tracked flows before, {} after; new connections after: {by_backend:?}",
        results.len(),
        restarted.as_secs_f64(),
        before.conntrack.entries,
        after.conntrack.entries
    );
}

/// `lbctl flow` of the lab's IPv4 VIP for `client`, as JSON.
fn explain(lab: &Lab, client: &str) -> FlowExplanation {
    let vip = format!("{VIP4}:{HTTP_PORT}/tcp");
    let (code, stdout, stderr) = lbctl_outcome(lab, &["flow", &vip, client, "--json"]);
    assert_eq!(code, 0, "lbctl flow {vip} {client}: {stderr}");
    serde_json::from_str(&stdout).expect("FlowExplanation JSON")
}

/// Handshakes under way across a restart: SYNs of spoofed sources (whose
/// ACKs never come) are held half-open (handshakes in the connection
/// table, too few for flood mode); lbd is killed and restarted with a
/// fourth backend; the new lbd adopted the connection table and the
/// half-open table (of the configured `half_open_size`), and every flow
/// is still half-open on its SYN's backend, where its ACK will go
/// (tests/tests/half_open.rs sends those ACKs).
#[test]
fn kill_9_and_restart_keep_the_handshakes_under_way() {
    const SYNS: u32 = 64;
    let mut lab = Lab::start(4).expect("lab");
    lab.wait_for_backends().expect("backends");
    let sized = |config: String| {
        let config = config.replace(
            "conntrack_size = 65536\n",
            "conntrack_size = 65536\nhalf_open_size = 65536\n",
        );
        assert!(config.contains("half_open_size = 65536"));
        config
    };
    let three = sized(lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS));
    lab.start_lbd(&three).expect("lbd");
    let before = status(&lab);
    assert_eq!(
        before.conntrack.half_open_capacity, 65_536,
        "the table has the configured size"
    );
    let flood = floodrun::flood_of(&lab, SYNS, Duration::from_secs(5), None).expect("the flood");
    let sent = in_netns(&lab.client.netns, move || flood.run())
        .expect("in the client's namespace")
        .expect("the SYNs");
    assert_eq!(sent.sent, u64::from(SYNS));
    // Source n's SYN comes from port 1024 + n (n < 60,000).
    let clients: Vec<String> = (0..SYNS)
        .map(|n| format!("{}:{}", SynFlood::source(n), 1024 + n))
        .collect();
    let held: Vec<std::net::IpAddr> = clients
        .iter()
        .map(|client| {
            let answer = explain(&lab, client);
            assert_eq!(answer.decision, FlowDecision::HalfOpen, "{answer:?}");
            answer.backend.expect("its SYN's backend").address
        })
        .collect();
    let held_now = |status: &Status| status.conntrack.half_open + status.conntrack.handshakes;
    assert!(held_now(&status(&lab)) >= u64::from(SYNS));

    lab.kill("lbd").expect("kill -9");
    let four = sized(lab.lbd_config_for(&["b1", "b2", "b3", "b4"], CHECKS));
    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &four)
        .expect("restart");
    let log = lab.log("lbd2");
    assert!(
        log.contains("adopting the pinned data plane") && log.contains("half-open flows"),
        "{log}"
    );
    let after = status(&lab);
    assert!(after.adopted);
    assert_eq!(after.conntrack.half_open_capacity, 65_536);
    assert!(
        held_now(&after) >= u64::from(SYNS),
        "{:?} after the restart",
        after.conntrack
    );
    for (client, backend) in clients.iter().zip(&held) {
        let answer = explain(&lab, client);
        assert_eq!(answer.decision, FlowDecision::HalfOpen, "{answer:?}");
        assert_eq!(
            answer.backend.map(|b| b.address).as_ref(),
            Some(backend),
            "{client}: still on its SYN's backend"
        );
    }
}

/// SIGTERM (restart) leaves the program running; SIGINT and
/// `lbd --cleanup` remove everything.
#[test]
fn sigterm_keeps_the_data_plane_and_cleanup_removes_it() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    lab.start_lbd(&config).expect("lbd");
    let pins = lab.pin_dir_of(&lab.lb.clone());
    assert!(pins.join("xdp-link-eth0").exists());

    let status = lab.terminate("lbd").expect("SIGTERM");
    assert!(status.success(), "{}", lab.log("lbd"));
    assert!(lab.xdp_attached(&lab.lb.clone()).expect("ip link"));
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 50).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(tally.by_backend.len(), 2, "{:?}", tally.by_backend);

    // --cleanup: refuses nothing (lbd is gone), removes the link and maps.
    lab.lbd_offline_ok(&lab.lb.clone(), "lbd", "--cleanup");
    assert!(!lab.xdp_attached(&lab.lb.clone()).expect("ip link"));
    assert!(!pins.exists(), "pins left: {}", pins.display());

    // And a fresh start after a cleanup starts from nothing.
    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &config)
        .expect("start");
    assert!(!lab.log("lbd2").contains("adopting"), "{}", lab.log("lbd2"));
    // --cleanup is refused while lbd runs.
    let out = lab
        .lbd_offline(&lab.lb.clone(), "lbd", "--cleanup")
        .expect("lbd --cleanup");
    assert!(!out.status.success());
    assert!(lab.xdp_attached(&lab.lb.clone()).expect("ip link"));
    lab.interrupt("lbd2").expect("SIGINT");
    assert!(!lab.xdp_attached(&lab.lb.clone()).expect("ip link"));
    assert!(!pins.exists());
}

/// The live Maglev table of the lab's IPv4 VIP, read from the pinned maps.
fn live_table(pins: &std::path::Path) -> Vec<u32> {
    use aya::maps::{Array, HashMap, MapData};
    use lb_common::{consts::maglev_index, VipKey, VipMeta};
    let maps = pins.join(format!("maps-v{}", lb_userspace::pinning::LAYOUT_VERSION));
    let vips: HashMap<MapData, VipKey, VipMeta> = HashMap::try_from(aya::maps::Map::HashMap(
        MapData::from_pin(maps.join("VIPS")).expect("VIPS pin"),
    ))
    .expect("VIPS");
    let (_, meta) = vips
        .iter()
        .filter_map(Result::ok)
        .find(|(key, _)| key.family == lb_common::consts::AF_INET)
        .expect("the IPv4 VIP");
    let maglev: Array<MapData, u32> = Array::try_from(aya::maps::Map::Array(
        MapData::from_pin(maps.join("MAGLEV")).expect("MAGLEV pin"),
    ))
    .expect("MAGLEV");
    (0..meta.table_size)
        .map(|slot| {
            maglev
                .get(&maglev_index(meta.id, meta.active_table & 1, slot), 0)
                .expect("slot")
        })
        .collect()
}

/// The address of each backend id of lbd's data plane (`BACKENDS`, read
/// from the pinned maps).
fn live_backend_addresses(pins: &std::path::Path) -> BTreeMap<u32, IpAddr> {
    use aya::maps::{Array, MapData};
    let maps = pins.join(format!("maps-v{}", lb_userspace::pinning::LAYOUT_VERSION));
    let backends: Array<MapData, lb_common::Backend> = Array::try_from(aya::maps::Map::Array(
        MapData::from_pin(maps.join("BACKENDS")).expect("BACKENDS pin"),
    ))
    .expect("BACKENDS");
    backends
        .iter()
        .enumerate()
        .filter_map(|(id, entry)| {
            let backend = entry.expect("a BACKENDS entry");
            let id = u32::try_from(id).expect("backend id");
            (id != 0 && backend.family != 0).then(|| {
                (
                    id,
                    lb_userspace::reconcile::words_addr(backend.addr, backend.family),
                )
            })
        })
        .collect()
}

/// Asserts lbd's live Maglev table (after b4 joined) sends each of the
/// first `MOVING` kept-alive connections' flows to a backend other than
/// the one that still answers it (`first`) and the one the Maglev model
/// of four backends names: so only the adopted connection table kept
/// them. Returns how many it sends to b4.
fn assert_live_table_moves(lab: &Lab, conns: &[KeepAlive], first: &[String]) -> usize {
    let pins = lab.pin_dir_of(&lab.lb.clone());
    let table = live_table(&pins);
    let addresses = live_backend_addresses(&pins);
    let name_of = |id: u32| -> String {
        let address = addresses
            .get(&id)
            .unwrap_or_else(|| panic!("backend id {id} of the live table is in no BACKENDS entry"));
        lab.backends
            .iter()
            .find(|b| IpAddr::V4(b.ipv4) == *address)
            .unwrap_or_else(|| panic!("{address} (id {id}) is no backend of the lab"))
            .name
            .clone()
    };
    let mut to_b4 = 0;
    for (conn, served) in conns.iter().zip(first).take(MOVING) {
        let local = conn.local().expect("local address");
        let slot = vip4_http_slot(local, u32::try_from(table.len()).expect("table size"));
        let live = name_of(table[slot]);
        assert_ne!(
            &live, served,
            "{local}: the live table keeps it on {served}, so its staying there proves nothing"
        );
        assert_eq!(
            live,
            maglev_choice(lab, local, 4),
            "{local}: lbd's live table differs from the Maglev model of four backends"
        );
        to_b4 += usize::from(live == "b4");
    }
    to_b4
}

fn moved(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// `maglev_mode = "minimal"`: removing a backend moves only its slots, a
/// restart (kill -9) keeps the table slot for slot, and adding it back
/// moves only its new share.
#[test]
fn minimal_mode_moves_only_what_must_move_across_changes_and_restarts() {
    let mut lab = Lab::start(4).expect("lab");
    lab.wait_for_backends().expect("backends");
    let all = format!(
        "maglev_mode = \"minimal\"\n{}",
        lab.lbd_config_for(&["b1", "b2", "b3", "b4"], CHECKS)
    );
    lab.start_lbd(&all).expect("lbd");
    let pins = lab.pin_dir_of(&lab.lb.clone());
    let t0 = live_table(&pins);
    let out = lab
        .lbctl(&["backend", "remove", "198.18.0.100:80", "198.18.0.12"])
        .expect("lbctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t1 = live_table(&pins);
    let b2_slots = t0.iter().filter(|&&id| !t1.contains(&id)).count();
    assert!(b2_slots > 0);
    assert_eq!(moved(&t0, &t1), b2_slots, "a removal moved other slots");

    // kill -9 and a restart with the file saying what runs now.
    lab.kill("lbd").expect("kill -9");
    let three = format!(
        "maglev_mode = \"minimal\"\n{}",
        lab.lbd_config_for(&["b1", "b3", "b4"], CHECKS)
    );
    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &three)
        .expect("restart");
    let t2 = live_table(&pins);
    assert_eq!(moved(&t1, &t2), 0, "the restart moved slots");

    lab.write_lbd_config(&all).expect("write");
    let path = lab.dir.join("lbd2.toml");
    std::fs::write(&path, &all).expect("write");
    let out = lab.lbctl(&["reload"]).expect("lbctl reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The re-added backend joins once its MAC is known.
    let started = Instant::now();
    let mut t3 = live_table(&pins);
    while moved(&t2, &t3) == 0 && started.elapsed() < Duration::from_secs(15) {
        thread::sleep(Duration::from_millis(200));
        t3 = live_table(&pins);
    }
    let new_id_slots = t3.iter().filter(|&&id| !t2.contains(&id)).count();
    assert!(new_id_slots > 0);
    assert_eq!(
        moved(&t2, &t3),
        new_id_slots,
        "an addition moved other slots"
    );
    eprintln!(
        "RELIABILITY: maglev_mode = minimal: removal moved {b2_slots} of 65537 slots (its own), restart moved 0, re-adding moved {new_id_slots} (its own)"
    );
}

/// A VIP added to the file, then SIGTERM and a restart (with a 4th
/// backend, so Maglev would move some flows): the maps a first start
/// sized (the file's VIPs and room for more) still hold the file's VIPs,
/// so the restarted lbd keeps their size and adopts the connection table;
/// no kept-alive connection moves or breaks.
#[test]
fn a_vip_added_to_the_file_keeps_the_connection_table_across_a_restart() {
    let (mut lab, mut conns, first) = three_backends_holding_connections();
    let before = status(&lab);
    assert!(!before.adopted, "a first start adopts nothing");

    let exit = lab.terminate("lbd").expect("SIGTERM");
    assert!(exit.success(), "{}", lab.log("lbd"));
    let b1 = lab
        .backends
        .iter()
        .find(|b| b.name == "b1")
        .expect("b1")
        .ipv6;
    let mut two_vips = lab.lbd_config_for(&["b1", "b2", "b3", "b4"], CHECKS);
    two_vips.push_str(&format!(
        "\n[[vip]]\naddress = \"{}\"\nport = {HTTP_PORT}\n  [[vip.backend]]\n  address = \"{b1}\"\n",
        lb_tests::lab::VIP6
    ));
    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &two_vips)
        .expect("restart");
    let log = lab.log("lbd2");
    assert!(!log.contains("does not fit"), "{log}");
    assert!(log.contains("adopting the pinned data plane"), "{log}");
    let after = status(&lab);
    assert!(after.adopted, "the restarted lbd must adopt the data plane");
    let mut broken = 0;
    let mut moved = 0;
    for (conn, backend) in conns.iter_mut().zip(&first) {
        match conn.request() {
            Ok(now) if &now == backend => {}
            Ok(_) => moved += 1,
            Err(_) => broken += 1,
        }
    }
    assert_eq!(
        (broken, moved),
        (0, 0),
        "kept-alive connections broken, moved across the restart"
    );
    eprintln!(
        "RELIABILITY: a VIP added to the file + SIGTERM + restart: adopted, 32 kept-alive connections, 0 broken, 0 moved"
    );
}

/// A backend in maintenance (b2) and one draining (b3) are still so after
/// SIGTERM and a restart: the new lbd restores their states from the
/// backend state file (a restart that forgot them would give b3 its full
/// weight and b2 new flows at once). New connections reach b1 only, and
/// the kept-alive connections b3 carries keep it throughout. (b2's own
/// are hashed elsewhere by its maintenance, before the restart too.)
#[test]
fn a_restart_keeps_drain_and_maintenance() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS);
    lab.start_lbd(&config).expect("lbd");
    let address = |name: &str| {
        lab.backends
            .iter()
            .find(|b| b.name == name)
            .expect("backend")
            .ipv4
            .to_string()
    };
    let (b1, b2, b3) = (address("b1"), address("b2"), address("b3"));
    for b in [&b1, &b2, &b3] {
        wait_health(&lab, b, HealthStatus::Up);
    }
    let mut conns = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 24).expect("open");
    let first: Vec<String> = conns
        .iter_mut()
        .map(|c| c.request().expect("request"))
        .collect();
    let on_b3: Vec<usize> = (0..first.len()).filter(|i| first[*i] == "b3").collect();
    assert!(
        !on_b3.is_empty(),
        "no kept-alive connection on b3: {first:?}"
    );

    let vip = format!("{VIP4}:{HTTP_PORT}");
    lbctl_ok(&lab, &["backend", "maintenance", &vip, &b2]);
    lbctl_ok(&lab, &["backend", "drain", &vip, &b3]);
    let state_file = lab.dir.join("lbd.backends.state");
    assert!(
        state_file.exists(),
        "no backend state file at {}",
        state_file.display()
    );

    let exit = lab.terminate("lbd").expect("SIGTERM");
    assert!(exit.success(), "{}", lab.log("lbd"));
    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &config)
        .expect("restart");
    let log = lab.log("lbd2");
    assert!(log.contains("adopting the pinned data plane"), "{log}");
    assert!(log.contains("backend state restored"), "{log}");

    let after = status(&lab);
    assert_eq!(backend(&after, &b2).state, BackendState::Maintenance);
    assert_eq!(backend(&after, &b3).state, BackendState::Draining);
    assert_eq!(backend(&after, &b1).state, BackendState::Enabled);
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 60).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(
        tally.by_backend.keys().collect::<Vec<_>>(),
        ["b1"],
        "new connections after the restart: {:?}",
        tally.by_backend
    );
    for i in &on_b3 {
        assert_eq!(
            conns[*i]
                .request()
                .expect("a draining backend's connection after the restart"),
            "b3"
        );
    }
    // b1's kept-alive connections answer from b1 too. (Every new flow
    // goes to b1 now, so these show the restart broke none of them, not
    // that their entries were kept: b3's show that.)
    let on_b1: Vec<usize> = (0..first.len()).filter(|i| first[*i] == "b1").collect();
    assert!(
        !on_b1.is_empty(),
        "no kept-alive connection on b1: {first:?}"
    );
    for i in &on_b1 {
        assert_eq!(
            conns[*i]
                .request()
                .expect("an enabled backend's connection after the restart"),
            "b1"
        );
    }
    // Once the checks have run again, still only b1 takes new flows.
    wait_health(&lab, &b2, HealthStatus::Up);
    let again = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 30).expect("burst");
    assert_eq!(
        again.by_backend.keys().collect::<Vec<_>>(),
        ["b1"],
        "{:?}",
        again.by_backend
    );
    eprintln!(
        "RELIABILITY: b2 in maintenance and b3 draining + SIGTERM + restart: both kept; 90 new connections all on b1; {} kept-alive connections on b3 and {} on b1 kept",
        on_b3.len(),
        on_b1.len()
    );
}

/// What the backend state file at `path` records: (backend, state,
/// whether a drain's timeout put it in maintenance), in its order.
fn recorded(path: &std::path::Path) -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(path).expect("backend state file");
    let file: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    file["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["backend"].as_str().expect("backend").to_owned(),
                b["state"].as_str().expect("state").to_owned(),
                b["drain_timed_out"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The backend state file follows the running backends. While it cannot
/// be written (a directory stands where its temporary file goes, which
/// root cannot write through either), a drain, a maintenance and an
/// enable are each answered 500 naming it, and change nothing: not the
/// backends' states, not the maps (new connections still reach b1 and b3
/// and not b2), not the file. Once it can, a drain's expiry, a runtime
/// `backend remove`, a reload that drops a backend and a `vip remove`
/// are each in the file when lbd's answer (or, for the expiry, the tick)
/// is: a restart would not bring back a backend the running lbd dropped.
#[test]
fn the_backend_state_file_follows_every_change_and_refuses_what_it_cannot_keep() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab.lbd_config_for(&["b1", "b2", "b3"], "");
    lab.start_lbd(&config).expect("lbd");
    let address = |name: &str| {
        lab.backends
            .iter()
            .find(|b| b.name == name)
            .expect("backend")
            .ipv4
            .to_string()
    };
    let (b1, b2, b3) = (address("b1"), address("b2"), address("b3"));
    let vip = format!("{VIP4}:{HTTP_PORT}");
    let file = lab.dir.join("lbd.backends.state");
    lbctl_ok(&lab, &["backend", "maintenance", &vip, &b2]);
    let maintenance = vec![(b2.clone(), "maintenance".to_owned(), false)];
    assert_eq!(recorded(&file), maintenance);

    let before = std::fs::read(&file).expect("file");
    let blocker = lab.dir.join("lbd.backends.state.new");
    std::fs::create_dir(&blocker).expect("blocker");
    for (backend, state) in [(&b3, "draining"), (&b1, "maintenance"), (&b2, "enabled")] {
        let (code, answer) = lab.admin_exchange(
            "PUT",
            &format!("/v1/vips/{vip}/backends/{backend}/state"),
            Some(&format!("{{\"state\": \"{state}\"}}")),
        );
        assert_eq!(code, 500, "{backend} {state}: {answer}");
        assert!(
            answer.contains(&file.display().to_string()) && answer.contains("nothing changed"),
            "{answer}"
        );
    }
    assert_eq!(std::fs::read(&file).expect("file"), before, "file changed");
    let now = status(&lab);
    assert_eq!(backend(&now, &b1).state, BackendState::Enabled);
    assert_eq!(backend(&now, &b2).state, BackendState::Maintenance);
    assert_eq!(backend(&now, &b3).state, BackendState::Enabled);
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 40).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(
        tally.by_backend.keys().collect::<Vec<_>>(),
        ["b1", "b3"],
        "the maps changed: {:?}",
        tally.by_backend
    );
    std::fs::remove_dir(&blocker).expect("blocker");

    lbctl_ok(&lab, &["backend", "drain", &vip, &b3, "--timeout", "1"]);
    lb_tests::support::wait_until(
        "the drain's expiry in the file",
        Duration::from_secs(10),
        || recorded(&file).contains(&(b3.clone(), "maintenance".to_owned(), true)),
    );
    lbctl_ok(&lab, &["backend", "remove", &vip, &b2]);
    assert_eq!(
        recorded(&file),
        [(b3.clone(), "maintenance".to_owned(), true)]
    );
    lab.write_lbd_config(&lab.lbd_config_for(&["b1", "b2"], ""))
        .expect("config");
    lbctl_ok(&lab, &["reload"]);
    assert_eq!(recorded(&file), [], "b3 left with the reload");
    lbctl_ok(&lab, &["backend", "maintenance", &vip, &b1]);
    assert_eq!(recorded(&file).len(), 1);
    lbctl_ok(&lab, &["vip", "remove", &vip]);
    assert_eq!(recorded(&file), [], "the VIP left");
}

/// A backend added through lbctl is part of what a restarted lbd serves
/// while the config file is unchanged: its kept-alive connections stay on
/// it across SIGTERM and a restart, and it keeps taking new flows (before
/// 2026-11-28 every restart undid runtime changes and cut such a
/// backend's connections). A restart with a changed file applies the file
/// as a reload does: the runtime backend goes, with a warning naming it,
/// and the record is set aside.
#[test]
fn a_backend_added_at_run_time_keeps_its_connections_across_a_restart() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    lab.start_lbd(&config).expect("lbd");
    let b3 = lab
        .backends
        .iter()
        .find(|b| b.name == "b3")
        .expect("b3")
        .ipv4
        .to_string();
    let vip = format!("{VIP4}:{HTTP_PORT}");
    lbctl_ok(&lab, &["backend", "add", &vip, &b3]);
    wait_health(&lab, &b3, HealthStatus::Up);
    let record = lab.dir.join("lbd.running.state");
    assert!(record.exists(), "no record at {}", record.display());

    let mut conns = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 24).expect("open");
    let first: Vec<String> = conns
        .iter_mut()
        .map(|c| c.request().expect("request"))
        .collect();
    let on_b3 = first.iter().filter(|b| *b == "b3").count();
    assert!(on_b3 > 0, "no kept-alive connection on b3: {first:?}");

    let exit = lab.terminate("lbd").expect("SIGTERM");
    assert!(exit.success(), "{}", lab.log("lbd"));
    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &config)
        .expect("restart");
    let log = lab.log("lbd2");
    assert!(log.contains("adopting the pinned data plane"), "{log}");
    assert!(log.contains("running configuration restored"), "{log}");
    let after = status(&lab);
    assert_eq!(backend(&after, &b3).state, BackendState::Enabled);
    for (conn, backend) in conns.iter_mut().zip(&first) {
        assert_eq!(
            &conn.request().expect("request after the restart"),
            backend,
            "a kept-alive connection moved across the restart"
        );
    }
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 60).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert!(
        tally.by_backend.contains_key("b3"),
        "new connections after the restart: {:?}",
        tally.by_backend
    );

    // The file edited, then a restart: the file rules, as at a reload.
    let exit = lab.terminate("lbd2").expect("SIGTERM");
    assert!(exit.success(), "{}", lab.log("lbd2"));
    let edited = format!("{config}\n# edited\n");
    lab.start_lbd_on(&lab.lb.clone(), "lbd3", &edited)
        .expect("restart with an edited file");
    let log = lab.log("lbd3");
    assert!(
        log.contains("the config file changed since the running configuration was recorded"),
        "{log}"
    );
    assert!(
        log.contains(&b3),
        "the warning names the backend it undoes: {log}"
    );
    let after = status(&lab);
    assert!(
        after
            .vips
            .iter()
            .flat_map(|v| &v.backends)
            .all(|b| b.address.to_string() != b3),
        "b3 must be gone after a restart with an edited file"
    );
    assert!(!record.exists(), "the record must be set aside");
    assert!(lab.dir.join("lbd.running-dropped.state").exists());
    eprintln!(
        "RELIABILITY: a backend added through lbctl + SIGTERM + restart with the same file: {on_b3} of 24 kept-alive connections on it kept, 0 moved; new connections reach it; an edited file undoes it with a warning"
    );
}

/// The running-state record is restored only when the lbd that wrote it
/// ran last (upgrade audit, finding 3): here lbd records a backend added
/// through lbctl, then the record of what the previous lbd held
/// (`lbd.held.json`) is made to name another lbd, as an older build that
/// keeps no running-state record does when it runs in between (a
/// downgrade, changes made there, then the upgrade again). The next start
/// must not bring the backend back: it warns, sets the record aside and
/// serves the file.
#[test]
fn a_record_another_lbd_ran_after_is_set_aside_at_start() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    lab.start_lbd(&config).expect("lbd");
    let b3 = lab
        .backends
        .iter()
        .find(|b| b.name == "b3")
        .expect("b3")
        .ipv4
        .to_string();
    let vip = format!("{VIP4}:{HTTP_PORT}");
    lbctl_ok(&lab, &["backend", "add", &vip, &b3]);
    let record = lab.dir.join("lbd.running.state");
    assert!(record.exists(), "no record at {}", record.display());
    let exit = lab.terminate("lbd").expect("SIGTERM");
    assert!(exit.success(), "{}", lab.log("lbd"));

    // Another lbd ran since: its record of what it held names it.
    let held = lab.dir.join("lbd.held.json");
    let text = std::fs::read_to_string(&held).expect("held.json");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value["pid"] = serde_json::json!(1);
    value.as_object_mut().expect("object").remove("started");
    std::fs::write(&held, value.to_string()).expect("held.json");

    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &config)
        .expect("restart");
    let log = lab.log("lbd2");
    assert!(
        log.contains("not written by the lbd that ran last"),
        "{log}"
    );
    assert!(!log.contains("running configuration restored"), "{log}");
    let after = status(&lab);
    assert!(
        after
            .vips
            .iter()
            .flat_map(|v| &v.backends)
            .all(|b| b.address.to_string() != b3),
        "b3 must not come back from a stale record"
    );
    assert!(!record.exists(), "the record must be set aside");
    assert!(lab.dir.join("lbd.running-dropped.state").exists());
}
