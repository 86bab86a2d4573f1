//! `lbctl config import` end to end: the configurations common HA guides
//! show, rewritten to the lab's addresses, imported with the real lbctl,
//! and the result run by lbd in the lab, serving clients through the VIP
//! with every backend getting a share. (1) a keepalived VIP pair with
//! HAProxy in front of three nginx; (2) a VIP on 5432 in front of three
//! PgBouncers (HAProxy + keepalived, backends on 6432: NAT); (3) an nginx
//! upstream with least_conn, max_fails=3 fail_timeout=30s and weights.
//! Needs root (and PostgreSQL + PgBouncer for the second).

use std::{
    collections::BTreeSet,
    fs,
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::{lbd_binary, Host, Lab, LabSpec, VIP4},
    postgres::{seed_topology, Length, PgStack, Pgbench, Run, PGBOUNCER_PORT},
    support::{status_on, wait_until},
};
use lb_userspace::{api::schema::HealthStatus, config::Config};

/// Runs `lbctl config import ARGS -o OUT` in `dir`; returns the file it
/// wrote, after checking `lbctl config check` passes and lbd loads it as
/// it is.
fn import(dir: &Path, out: &str, args: &[&str]) -> String {
    let lbctl = lbd_binary().expect("lbd binary").with_file_name("lbctl");
    let output = Command::new(lbctl)
        .current_dir(dir)
        .args(["config", "import", "-o", out])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run lbctl");
    assert!(
        output.status.success(),
        "lbctl config import {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let check = Command::new(lbd_binary().expect("lbd binary").with_file_name("lbctl"))
        .current_dir(dir)
        .args(["config", "check", out])
        .stdin(Stdio::null())
        .output()
        .expect("run lbctl config check");
    assert!(
        check.status.success(),
        "lbctl config check {out}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let text = fs::read_to_string(dir.join(out)).expect("imported file");
    Config::from_toml_str(&text, out)
        .unwrap_or_else(|e| panic!("{out} does not load: {e}\n{text}"));
    text
}

/// `text` with the node's admin socket in front, so the lab's lbctl finds
/// it (start_lbd_on adds the pin directory).
fn for_node(lab: &Lab, node: &Host, text: &str) -> String {
    format!(
        "admin_socket = \"{}\"\n{text}",
        lab.admin_socket_of(node).display()
    )
}

/// Waits until every backend of `node`'s first VIP is up.
fn wait_all_up(lab: &Lab, node: &Host) {
    wait_until("every backend up", Duration::from_secs(15), || {
        let status = status_on(lab, node);
        !status.vips[0].backends.is_empty()
            && status.vips[0]
                .backends
                .iter()
                .all(|b| b.health == HealthStatus::Up)
    });
}

/// Asserts every backend of `node`'s first VIP took new flows.
fn assert_every_backend_served(lab: &Lab, node: &Host) {
    let status = status_on(lab, node);
    for backend in &status.vips[0].backends {
        assert!(
            backend.new_flows > 0,
            "backend {} took no flow: {:?}",
            backend.address,
            status.vips[0].backends
        );
    }
}

/// Asserts a burst of `count` requests through the VIP all succeeded and
/// reached every one of `names`.
fn assert_burst_served_by(lab: &Lab, count: u32, names: &[&str]) -> client::Tally {
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), count).expect("burst");
    assert_eq!(
        (tally.succeeded(), tally.failed),
        (u64::from(count), 0),
        "{tally:?}"
    );
    let served: BTreeSet<&str> = tally.by_backend.keys().map(String::as_str).collect();
    assert_eq!(served, names.iter().copied().collect(), "{tally:?}");
    tally
}

/// The keepalived.conf of one node of the guide's pair.
fn keepalived(state: &str, priority: u8, peer: &Host) -> String {
    format!(
        "! Configuration File for keepalived
global_defs {{
   router_id {state}
}}

vrrp_script chk_haproxy {{
    script \"killall -0 haproxy\"
    interval 2
    weight 2
}}

vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.5
    unicast_peer {{
        {}
    }}
    virtual_ipaddress {{
        {VIP4}/24
    }}
    track_script {{
        chk_haproxy
    }}
}}
",
        peer.ipv4
    )
}

#[test]
fn a_keepalived_pair_with_haproxy_in_front_of_three_nginx_serves_through_the_vip() {
    let started = Instant::now();
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 3,
        static_vip: false,
    })
    .expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let servers: String = lab
        .backends
        .iter()
        .map(|h| {
            format!(
                "    server web{} {}:80 check inter 500 fastinter 200 rise 2 fall 3\n",
                &h.name[1..],
                h.ipv4
            )
        })
        .collect();
    let haproxy = format!(
        "global
    log /dev/log local0
    maxconn 4096
    user haproxy
    daemon

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 50s
    timeout server 50s

frontend http_front
    bind *:80
    default_backend web_servers

backend web_servers
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
{servers}"
    );
    fs::write(lab.dir.join("haproxy.cfg"), haproxy).expect("haproxy.cfg");
    fs::write(
        lab.dir.join("keepalived-a.conf"),
        keepalived("MASTER", 101, &b),
    )
    .expect("conf");
    fs::write(
        lab.dir.join("keepalived-b.conf"),
        keepalived("BACKUP", 100, &a),
    )
    .expect("conf");
    let text_a = import(
        &lab.dir,
        "lbd-a.toml",
        &["haproxy.cfg", "keepalived-a.conf"],
    );
    let text_b = import(
        &lab.dir,
        "lbd-b.toml",
        &["haproxy.cfg", "keepalived-b.conf"],
    );
    assert!(
        text_a.contains("# keepalived-a.conf:16 (priority 101)"),
        "{text_a}"
    );
    assert!(
        text_a.contains("WARNING: frontend http_front is in mode http"),
        "{text_a}"
    );
    lab.start_lbd_on(&a, "lbd-a", &for_node(&lab, &a, &text_a))
        .expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &for_node(&lab, &b, &text_b))
        .expect("lbd on lb2");
    wait_until("lb to hold the VIP", Duration::from_secs(10), || {
        lab.holds_vip(&a).unwrap_or(false)
    });
    assert!(
        !lab.holds_vip(&b).expect("lb2 addresses"),
        "both hold the VIP"
    );
    wait_all_up(&lab, &a);
    assert_burst_served_by(&lab, 60, &["b1", "b2", "b3"]);
    assert_every_backend_served(&lab, &a);
    println!(
        "pair + HAProxy imported and served in {} ms",
        started.elapsed().as_millis()
    );
}

#[test]
fn a_vip_on_5432_in_front_of_three_pgbouncers_is_served_in_nat_mode() {
    let started = Instant::now();
    let mut lab = Lab::start_topology(seed_topology(1, 3, false)).expect("seed lab");
    let (db, bouncers) = lab.backends.split_last().expect("a database host");
    let stack = PgStack::start(db, bouncers, &lab.dir).expect("PostgreSQL and PgBouncers");
    Pgbench::new(&lab.client.netns, stack.postgres.address, &lab.dir)
        .init(1)
        .expect("pgbench -i");
    let node = lab.lb.clone();
    let servers: String = stack
        .bouncers
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server pgbouncer{} {} check\n", i + 1, b.address))
        .collect();
    let haproxy = format!(
        "defaults
    mode tcp
    timeout connect 1s
    timeout client 30m
    timeout server 30m

listen pgbouncer
    bind *:5432
    balance leastconn
    option tcp-check
    default-server inter 500ms fastinter 200ms rise 1 fall 2
{servers}"
    );
    let keepalived = format!(
        "vrrp_instance VI_PG {{
    state MASTER
    interface eth0
    virtual_router_id 52
    priority 150
    advert_int 0.2
    virtual_ipaddress {{
        {VIP4}
    }}
}}
"
    );
    fs::write(lab.dir.join("haproxy.cfg"), haproxy).expect("haproxy.cfg");
    fs::write(lab.dir.join("keepalived.conf"), keepalived).expect("keepalived.conf");
    let text = import(
        &lab.dir,
        "lbd.toml",
        &[
            "haproxy.cfg",
            "keepalived.conf",
            "--nat-source",
            "198.18.0.50",
        ],
    );
    assert!(text.contains("forwarding = \"nat\""), "{text}");
    assert!(text.contains(&format!("port = {PGBOUNCER_PORT}")), "{text}");
    lab.start_lbd_on(&node, "lbd", &for_node(&lab, &node, &text))
        .expect("lbd");
    wait_until("lb to hold the VIP", Duration::from_secs(10), || {
        lab.holds_vip(&node).unwrap_or(false)
    });
    wait_all_up(&lab, &node);
    let vip = SocketAddr::new(IpAddr::V4(VIP4), 5432);
    let run = Run {
        clients: 6,
        threads: 1,
        length: Length::Transactions(20),
        // A connection per transaction: many flows to spread.
        connect_per_transaction: true,
        progress_s: 0,
    };
    let report = Pgbench::new(&lab.client.netns, vip, &lab.dir)
        .run(&run)
        .unwrap_or_else(|e| panic!("pgbench through the imported VIP: {e:#}"));
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(Some(report.processed), run.requested(), "{report:?}");
    assert_every_backend_served(&lab, &node);
    drop(stack);
    println!(
        "PgBouncer VIP imported and served in {} ms",
        started.elapsed().as_millis()
    );
}

#[test]
fn an_nginx_upstream_with_least_conn_and_passive_checks_is_served_by_weight() {
    let started = Instant::now();
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let servers: String = lab
        .backends
        .iter()
        .zip([3, 2, 1])
        .map(|(h, weight)| {
            format!(
                "    server {}:80 weight={weight} max_fails=3 fail_timeout=30s;\n",
                h.ipv4
            )
        })
        .collect();
    let nginx = format!(
        "upstream app {{
    least_conn;
{servers}    keepalive 32;
}}
"
    );
    fs::write(lab.dir.join("app.conf"), nginx).expect("app.conf");
    let text = import(
        &lab.dir,
        "lbd.toml",
        &[
            "app.conf",
            "--vip",
            &format!("{VIP4}:80/tcp"),
            "--interface",
            "eth0",
        ],
    );
    assert!(text.contains("least_conn: not applicable at L4"), "{text}");
    let config = Config::from_toml_str(&text, "lbd.toml").expect("config");
    let weights: Vec<u32> = config.vips[0].backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [300, 200, 100]);
    assert_eq!(config.vips[0].health.fall, 3);
    let node = lab.lb.clone();
    lab.start_lbd_on(&node, "lbd", &for_node(&lab, &node, &text))
        .expect("lbd");
    wait_all_up(&lab, &node);
    let tally = assert_burst_served_by(&lab, 120, &["b1", "b2", "b3"]);
    // Weights 3:2:1 show in the shares (loosely: Maglev over 120 flows).
    assert!(tally.by_backend["b1"] > tally.by_backend["b3"], "{tally:?}");
    assert_every_backend_served(&lab, &node);
    println!(
        "nginx upstream imported and served in {} ms",
        started.elapsed().as_millis()
    );
}

#[test]
fn input_it_cannot_parse_is_refused_with_file_and_line_and_nothing_is_written() {
    let dir = std::env::temp_dir().join(format!("i1-import-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    fs::write(
        dir.join("app.conf"),
        "upstream app {\n    server 198.18.0.11:80 weight=2\n}\n",
    )
    .expect("app.conf");
    let lbctl = lbd_binary().expect("lbd binary").with_file_name("lbctl");
    let output = Command::new(lbctl)
        .current_dir(&dir)
        .args([
            "config",
            "import",
            "app.conf",
            "--vip",
            "198.18.0.100:80/tcp",
        ])
        .args(["--interface", "eth0", "-o", "lbd.toml"])
        .stdin(Stdio::null())
        .output()
        .expect("run lbctl");
    let written = dir.join("lbd.toml").exists();
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "lbctl: app.conf:2: \"server 198.18.0.11:80 weight=2\" is not ended with ';'\n"
    );
    assert!(output.stdout.is_empty());
    assert!(!written, "a refused import wrote its output");
}

/// A VIP whose servers are all out (HAProxy `disabled`) drops every new
/// flow: the import prints lbd's own warning on its result, which
/// `lbctl config check` would print, instead of leaving it to be found;
/// with a backup server, written as lbd's backup, which takes the flows:
/// nothing to warn of. No root needed.
#[test]
fn the_import_prints_lbds_own_warnings_on_what_it_wrote() {
    let dir = std::env::temp_dir().join(format!("i1-import-warnings-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let haproxy = "listen web\n    mode tcp\n    bind 198.18.0.100:80\n    server a 198.18.0.11:80 disabled\n";
    fs::write(dir.join("haproxy.cfg"), haproxy).expect("haproxy.cfg");
    let args = ["config", "import", "haproxy.cfg", "--interface", "eth0"];
    let all_out = lbctl_in(&dir, &args);
    fs::write(
        dir.join("haproxy.cfg"),
        format!("{haproxy}    server b 198.18.0.12:80 backup\n"),
    )
    .expect("haproxy.cfg");
    let backup = lbctl_in(&dir, &args);
    let _ = fs::remove_dir_all(&dir);
    assert!(all_out.status.success(), "{all_out:?}");
    let stderr = String::from_utf8_lossy(&all_out.stderr);
    assert!(
        stderr.contains("lbctl: warning: vip[0]: every backend of VIP 198.18.0.100:80/tcp has weight 0: it drops every new flow\n"),
        "{stderr}"
    );
    assert!(backup.status.success(), "{backup:?}");
    let stderr = String::from_utf8_lossy(&backup.stderr);
    assert!(!stderr.contains("lbctl: warning:"), "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
    let written = String::from_utf8_lossy(&backup.stdout);
    assert!(
        written.contains("backup = true") && written.contains("address = \"198.18.0.12\""),
        "{written}"
    );
}

/// Runs lbctl with `args` in `dir`.
fn lbctl_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let lbctl = lbd_binary().expect("lbd binary").with_file_name("lbctl");
    Command::new(lbctl)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run lbctl")
}

/// `-o FILE` replaces no existing file without `--force` (README has the
/// operator edit the imported file: a second import wiped the edits), and
/// never one of the inputs, even with `--force` (`-o haproxy.cfg` by
/// mistake destroyed the input); what it writes goes through a temporary
/// file renamed into place, which it leaves nowhere.
#[test]
fn the_output_file_is_not_overwritten_without_force_nor_ever_an_input() {
    let dir = std::env::temp_dir().join(format!("i1-import-output-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let app = "upstream app {\n    server 198.18.0.11:80;\n}\n";
    fs::write(dir.join("app.conf"), app).expect("app.conf");
    let edited = "# edited by hand after the first import\n";
    fs::write(dir.join("lbd.toml"), edited).expect("lbd.toml");
    let import = [
        "config",
        "import",
        "app.conf",
        "--vip",
        "198.18.0.100:80/tcp",
    ];
    let with =
        |extra: &[&'static str]| -> Vec<&str> { import.iter().chain(extra).copied().collect() };
    let kept = lbctl_in(&dir, &with(&["--interface", "eth0", "-o", "lbd.toml"]));
    let after_refusal = fs::read_to_string(dir.join("lbd.toml")).expect("lbd.toml");
    let forced = lbctl_in(
        &dir,
        &with(&["--interface", "eth0", "-o", "lbd.toml", "--force"]),
    );
    let after_force = fs::read_to_string(dir.join("lbd.toml")).expect("lbd.toml");
    let onto_input = lbctl_in(
        &dir,
        &with(&["--interface", "eth0", "-o", "./app.conf", "--force"]),
    );
    let input_after = fs::read_to_string(dir.join("app.conf")).expect("app.conf");
    let mut left: Vec<String> = fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(kept.status.code(), Some(2), "{kept:?}");
    assert_eq!(
        String::from_utf8_lossy(&kept.stderr),
        "lbctl: lbd.toml exists: not replaced (it may hold edits made since an earlier import); pass --force to replace it, or write to another file\n"
    );
    assert_eq!(after_refusal, edited);
    assert!(forced.status.success(), "{forced:?}");
    assert!(
        after_force.starts_with("# lbd.toml imported by `lbctl config import`"),
        "{after_force}"
    );
    assert_eq!(onto_input.status.code(), Some(2), "{onto_input:?}");
    assert_eq!(
        String::from_utf8_lossy(&onto_input.stderr),
        "lbctl: -o ./app.conf is the input file app.conf: writing it would destroy what is imported, even with --force; write to another file\n"
    );
    assert_eq!(input_after, app);
    assert_eq!(left, ["app.conf", "lbd.toml"]);
}
