//! The guards end to end in the lab: a source the config's deny list names
//! cannot connect to the VIP while other sources can; `lbctl acl` adds and
//! removes rules at run time (bad input refused, nothing changed), the
//! counts reach `lbctl status` and the metrics; a per-source limit set with
//! `lbctl limit` drops a burst of new connections from one source while
//! that source's long-lived connections, and other sources, are untouched;
//! a removed VIP's rule stays, out of force and said so, and guards the VIP
//! again when it is added back. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    client::KeepAlive,
    lab::{http_get, Lab, HTTP_PORT, VIP4},
    support::{counter, ip, lbctl_ok, lbctl_outcome, status},
};

const VIP: &str = "198.18.0.100:80/tcp";
/// Extra client addresses (the client's own segment, unused by the lab).
const DENIED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 230);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 231);

/// One HTTP GET on a new connection from `source` (None: the client's
/// own address) in `netns`; false if it could not connect within
/// `timeout` or got no answer.
fn connects(netns: &str, source: Option<Ipv4Addr>, timeout: Duration) -> bool {
    use socket2::{Domain, Socket, Type};
    use std::io::{Read as _, Write as _};
    lb_tests::lab::in_netns(netns, move || -> anyhow::Result<bool> {
        let target = SocketAddr::new(IpAddr::V4(VIP4), HTTP_PORT);
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        if let Some(source) = source {
            socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
        }
        if socket.connect_timeout(&target.into(), timeout).is_err() {
            return Ok(false);
        }
        let mut stream: std::net::TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")?;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        Ok(answer.starts_with(b"HTTP/1.1 200"))
    })
    .expect("in the client namespace")
    .unwrap_or(false)
}

fn scrape(lab: &Lab) -> String {
    let (code, text) =
        http_get(&lab.lb.netns, "http://127.0.0.1:9641/metrics").expect("scrape /metrics");
    assert_eq!(code, 200, "/metrics answered {code}");
    text
}

#[test]
fn a_denied_source_cannot_connect_and_a_limited_burst_spares_long_lived_connections() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let netns = lab.client.netns.clone();
    for extra in [DENIED, OTHER] {
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{extra}/24"),
            "dev",
            "eth0",
        ]);
    }
    let config = format!(
        "{}\n[[acl]]\naction = \"deny\"\nsource = \"{DENIED}\"\nvip = \"{VIP}\"\n",
        lab.lbd_config()
    );
    lab.start_lbd(&config).expect("lbd");

    // The config's rule: the denied source never gets through; the others do.
    let quick = Duration::from_millis(700);
    for _ in 0..3 {
        assert!(!connects(&netns, Some(DENIED), quick), "{DENIED} is denied");
    }
    assert!(
        connects(&netns, Some(OTHER), Duration::from_secs(3)),
        "{OTHER} connects"
    );
    assert!(
        connects(&netns, None, Duration::from_secs(3)),
        "the client connects"
    );
    let s = status(&lab);
    assert!(counter(&s, "drop_acl_denied") >= 3, "{:?}", s.counters);
    let guard = s.guard.expect("status shows the rules");
    assert_eq!(guard.rules.len(), 1);
    assert!(guard.rules[0].packets >= 3, "{:?}", guard.rules);
    let listed = lbctl_ok(&lab, &["acl", "list"]);
    assert!(listed.contains(&format!("{DENIED}/32")), "{listed}");
    let metrics = scrape(&lab);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lbd_acl_rule_packets_total{")
                && l.contains(&format!("source=\"{DENIED}/32\""))),
        "{metrics}"
    );

    // At run time: bad input is refused and changes nothing.
    let (code, _, err) = lbctl_outcome(&lab, &["acl", "add", "deny", "198.18.0.231/24"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("host bits set"), "{err}");
    let (code, _, err) = lbctl_outcome(
        &lab,
        &[
            "acl",
            "add",
            "deny",
            "198.18.0.0/24",
            "--vip",
            "198.18.0.99:80/tcp",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no VIP 198.18.0.99:80/tcp"), "{err}");
    let (code, _, err) = lbctl_outcome(&lab, &["acl", "del", "deny", "198.18.0.7"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(status(&lab).guard.expect("guard").rules.len(), 1);
    // A dry run shows a new global rule as it would be, in force with the
    // id it would get (before: "not in force", for want of an id), and
    // changes nothing.
    let dry = lbctl_ok(
        &lab,
        &["acl", "add", "deny", &OTHER.to_string(), "--dry-run"],
    );
    assert!(dry.starts_with("dry run"), "{dry}");
    let line = dry
        .lines()
        .find(|l| l.contains(&format!("{OTHER}/32")))
        .unwrap_or_else(|| panic!("the new rule is listed: {dry}"));
    assert!(line.trim_start().starts_with('#'), "it has an id: {dry}");
    assert!(!dry.contains("not in force"), "{dry}");
    assert_eq!(status(&lab).guard.expect("guard").rules.len(), 1);
    // A runtime rule takes effect, and goes again.
    lbctl_ok(
        &lab,
        &["acl", "add", "deny", &OTHER.to_string(), "--vip", VIP],
    );
    assert!(
        !connects(&netns, Some(OTHER), quick),
        "{OTHER} denied at run time"
    );
    lbctl_ok(
        &lab,
        &["acl", "del", "deny", &OTHER.to_string(), "--vip", VIP],
    );
    assert!(
        connects(&netns, Some(OTHER), Duration::from_secs(3)),
        "{OTHER} back"
    );

    // Long-lived connections from the client, opened before the limit.
    let mut long_lived = KeepAlive::open(&netns, IpAddr::V4(VIP4), 8).expect("connections");
    for c in &mut long_lived {
        c.request().expect("a first request");
    }
    lbctl_ok(
        &lab,
        &[
            "limit",
            "set",
            "--vip",
            VIP,
            "--source-rate",
            "1",
            "--source-burst",
            "5",
        ],
    );
    // A burst of new connections from the same source: past the burst and
    // the refill (one a second), dropped.
    let started = Instant::now();
    let mut ok = 0u64;
    let attempts = 30u64;
    for _ in 0..attempts {
        if connects(&netns, None, Duration::from_millis(300)) {
            ok += 1;
        }
    }
    let seconds = started.elapsed().as_secs() + 1;
    assert!(ok >= 1, "the burst starts with tokens");
    assert!(
        ok <= 5 + seconds,
        "{ok} of {attempts} new connections in {seconds} s got through a limit of 1/s, burst 5"
    );
    let limited = counter(&status(&lab), "drop_rate_limited");
    assert!(limited > 0, "new flows over the limit are counted");
    // Every long-lived connection from that source still works.
    for (i, c) in long_lived.iter_mut().enumerate() {
        c.request()
            .unwrap_or_else(|e| panic!("long-lived connection {i} broke: {e:#}"));
    }
    // Another source has a bucket of its own.
    assert!(connects(&netns, Some(OTHER), Duration::from_secs(3)));
    // Cleared, the source connects freely again.
    lbctl_ok(&lab, &["limit", "clear", "--vip", VIP]);
    for _ in 0..10 {
        assert!(
            connects(&netns, None, Duration::from_secs(3)),
            "no limit any more"
        );
    }
    // A reload puts the file's guards back: no limit, the one deny rule.
    lbctl_ok(&lab, &["acl", "add", "deny", "198.18.0.0/24", "--vip", VIP]);
    let reload = lbctl_ok(&lab, &["reload"]);
    assert!(
        reload.contains("ACL rule"),
        "the reload lists the undone rule: {reload}"
    );
    let guard = status(&lab).guard.expect("guard");
    assert_eq!(guard.rules.len(), 1);
    assert!(guard.limits.is_empty());
    assert!(
        connects(&netns, None, Duration::from_secs(3)),
        "the runtime deny is undone"
    );

    // Removing the VIP keeps its rule, out of force, and says so; added
    // back (as when re-adding a VIP to change its mode), the VIP is
    // guarded again from its first packet. With limits of its own (a
    // generous one here) too: the commit's bridge then equals the guards
    // in force, and the rule once stayed shown (and kept) as in force.
    lbctl_ok(
        &lab,
        &["limit", "set", "--vip", VIP, "--source-rate", "1000"],
    );
    // The warning is on stderr; stdout has only the result.
    let (code, removed, warned) = lbctl_outcome(&lab, &["vip", "remove", VIP]);
    assert_eq!(code, 0, "{removed}{warned}");
    assert!(
        warned.contains(&format!(
            "lbctl: warning: VIP {VIP}: its ACL rule and limits stay"
        )),
        "{warned}"
    );
    assert!(!removed.contains("warning"), "{removed}");
    let listed = lbctl_ok(&lab, &["acl", "list"]);
    assert!(
        listed.contains("(not in force: its VIP is not served)"),
        "{listed}"
    );
    let guard = status(&lab).guard.expect("guard");
    assert_eq!(guard.rules[0].id, None, "{:?}", guard.rules);
    // A file may only name its own VIPs: the dump leaves the rule out,
    // says so on stderr, and loads as a config file.
    let (code, dump, err) = lbctl_outcome(&lab, &["config", "dump"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("ACL rule deny {DENIED}/32")) && err.contains("is left out"),
        "{err}"
    );
    assert!(!dump.contains(&DENIED.to_string()), "{dump}");
    let saved = lab.dir.join("dumped.toml");
    std::fs::write(&saved, &dump).expect("write the dump");
    let (code, _, err) = lbctl_outcome(&lab, &["config", "check", &saved.to_string_lossy()]);
    assert_eq!(code, 0, "the dump loads: {err}");
    let mut add = vec!["vip".to_owned(), "add".to_owned(), VIP.to_owned()];
    for backend in &lab.backends {
        add.extend(["--backend".to_owned(), backend.ipv4.to_string()]);
    }
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    lbctl_ok(&lab, &add);
    let guard = status(&lab).guard.expect("guard");
    assert!(guard.rules[0].id.is_some(), "{:?}", guard.rules);
    assert!(
        !lbctl_ok(&lab, &["acl", "list"]).contains("not in force"),
        "the rule is in force again"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connects(&netns, None, Duration::from_secs(1)) {
        assert!(Instant::now() < deadline, "the re-added VIP serves");
    }
    assert!(
        !connects(&netns, Some(DENIED), quick),
        "{DENIED} is denied again"
    );
}

/// The guard maps are pinned with the rest of the data plane: with lbd
/// killed the deny rule keeps dropping (the program runs on), and the next
/// lbd adopts it without a gap, keeping its id and its count.
#[test]
fn the_deny_list_holds_across_kill_9_and_a_hitless_restart() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let netns = lab.client.netns.clone();
    for extra in [DENIED, OTHER] {
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{extra}/24"),
            "dev",
            "eth0",
        ]);
    }
    let config = format!(
        "{}\n[[acl]]\naction = \"deny\"\nsource = \"{DENIED}\"\nvip = \"{VIP}\"\n",
        lab.lbd_config()
    );
    lab.start_lbd(&config).expect("lbd");
    let quick = Duration::from_millis(700);
    assert!(!connects(&netns, Some(DENIED), quick));
    assert!(connects(&netns, Some(OTHER), Duration::from_secs(3)));
    let before = status(&lab).guard.expect("guard").rules[0].clone();
    assert!(before.packets >= 1, "{before:?}");

    lab.kill("lbd").expect("kill -9");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !connects(&netns, Some(DENIED), quick),
        "denied with lbd dead"
    );
    assert!(
        connects(&netns, Some(OTHER), Duration::from_secs(3)),
        "others served with lbd dead"
    );

    lab.start_lbd_on(&lab.lb.clone(), "lbd2", &config)
        .expect("restart");
    assert!(
        !connects(&netns, Some(DENIED), quick),
        "denied after the restart"
    );
    let s = status(&lab);
    assert!(s.adopted, "the restarted lbd adopted the data plane");
    let after = s.guard.expect("guard").rules[0].clone();
    assert_eq!(after.id, before.id, "the rule kept its id");
    assert!(
        after.packets >= before.packets + 2,
        "the count went on across the restart: {} -> {}",
        before.packets,
        after.packets
    );
}
