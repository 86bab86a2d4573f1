//! Least privilege and safe defaults with the real lbd in the namespace lab:
//! after start-up every thread of lbd has exactly the kept capabilities and
//! `no_new_privs`, and lbd still serves, drains, adds a backend and reloads on
//! SIGHUP with them; the admin socket is root's, mode 0600, or 0660 with its
//! configured group; nothing listens on TCP beyond loopback by default; and
//! the admin API refuses what goes past its limits clearly, changing nothing.
//! Needs root.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    os::unix::{fs::MetadataExt as _, net::UnixStream},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::{Lab, VIP4},
    support::{lbctl_ok, status, wait_until},
};
use lb_userspace::{
    api::schema::{BackendState, HealthStatus, Status},
    privilege::{self, CapMask, ThreadStatus, KEPT, LOW_PORT},
};

const VIP: &str = "198.18.0.100:80/tcp";
/// HTTP checks that a loaded 2-core machine cannot fail by delaying a
/// probe or two (500 ms to answer, 3 failures in a row): no test here
/// measures how fast a check finds a backend gone, and a healthy backend
/// taken out would move or break kept-alive connections.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 3\n";

/// Per VIP: each backend's address, state and weight.
type State = Vec<(String, Vec<(IpAddr, BackendState, u32)>)>;

/// The parts of the status a refused request must leave as they were.
fn state_of(status: &Status) -> State {
    status
        .vips
        .iter()
        .map(|v| {
            (
                v.vip.clone(),
                v.backends
                    .iter()
                    .map(|b| (b.address, b.state, b.weight))
                    .collect(),
            )
        })
        .collect()
}

/// The status of every thread of process `pid`.
fn threads_of(pid: u32) -> Vec<(String, ThreadStatus)> {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .expect("task directory")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let name = text.lines().next().unwrap_or_default().to_owned();
            let status = ThreadStatus::parse(&text).expect("capability lines");
            Some((
                format!("{} {name}", entry.file_name().to_string_lossy()),
                status,
            ))
        })
        .collect()
}

/// Waits for the log of lbd process `name` to say it dropped its
/// capabilities (it does right after attaching, which is when `start_lbd`
/// returns).
fn wait_for_drop(lab: &Lab, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.log(name).contains("capabilities dropped") {
        assert!(
            Instant::now() < deadline,
            "{name} never dropped its capabilities:\n{}",
            lab.log(name)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts every thread of `pid` has exactly `kept` (effective, permitted,
/// bounding), nothing inheritable or ambient, and `no_new_privs`.
fn assert_kept(pid: u32, kept: CapMask) {
    let threads = threads_of(pid);
    assert!(threads.len() > 1, "{threads:?}");
    for (thread, s) in &threads {
        assert_eq!(
            s.effective, kept,
            "{thread}: CapEff {} != {kept}",
            s.effective
        );
        assert_eq!(
            s.permitted, kept,
            "{thread}: CapPrm {} != {kept}",
            s.permitted
        );
        assert_eq!(
            s.bounding, kept,
            "{thread}: CapBnd {} != {kept}",
            s.bounding
        );
        assert_eq!(s.inheritable, CapMask::default(), "{thread}: CapInh");
        assert_eq!(s.ambient, CapMask::default(), "{thread}: CapAmb");
        assert!(s.no_new_privs, "{thread}: NoNewPrivs");
    }
    println!("lbd {pid}: {} threads, each with {kept}", threads.len());
}

/// TCP sockets listening in lbd's namespace, from `/proc/<pid>/net/tcp{,6}`
/// (addresses in hex, each 32-bit word in host order).
fn tcp_listeners(pid: u32) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A: LISTEN.
            if fields.get(3) != Some(&"0A") {
                continue;
            }
            let (address, port) = fields[1].split_once(':').expect("ADDRESS:PORT");
            let words: Vec<[u8; 4]> = (0..address.len() / 8)
                .map(|i| {
                    u32::from_str_radix(&address[8 * i..8 * i + 8], 16)
                        .expect("hex")
                        .to_ne_bytes()
                })
                .collect();
            let ip = match words.as_slice() {
                [a] => IpAddr::from(*a),
                words => {
                    IpAddr::from(<[u8; 16]>::try_from(words.concat()).expect("16 bytes of IPv6"))
                }
            };
            found.push(SocketAddr::new(
                ip,
                u16::from_str_radix(port, 16).expect("hex port"),
            ));
        }
    }
    found
}

#[test]
fn lbd_keeps_only_what_it_needs_and_still_works() {
    let mut lab = Lab::start(4).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = format!(
        "admin_socket_group = \"daemon\"\n{}",
        lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS)
    );
    let pid = lab.start_lbd(&config).expect("lbd");
    wait_for_drop(&lab, "lbd");
    assert_kept(pid, CapMask::of(KEPT));
    let log = lab.log("lbd");
    assert!(
        log.contains("CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_ADMIN,CAP_PERFMON,CAP_BPF"),
        "the log names what was kept:\n{log}"
    );

    // The admin socket: root's, mode 0660 and group "daemon" as configured.
    let meta = std::fs::metadata(lab.admin_socket()).expect("admin socket");
    let daemon = privilege::group_id("daemon")
        .expect("group lookup")
        .expect("group daemon (Debian's base-passwd has it)");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o660, 0, daemon)
    );
    // Nothing listens on TCP but the metrics, on loopback.
    let listeners = tcp_listeners(pid);
    let metrics: SocketAddr = "127.0.0.1:9641".parse().expect("address");
    assert_eq!(listeners, [metrics], "the metrics on loopback only");

    // It serves, with its checks, after the drop.
    wait_until("backends checked up", Duration::from_secs(10), || {
        status(&lab).vips[0]
            .backends
            .iter()
            .all(|b| b.health == HealthStatus::Up)
    });
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 150).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(tally.by_backend.len(), 3, "{tally:?}");

    // A drain and a backend added at run time (neighbour lookup, maps written).
    lbctl_ok(&lab, &["backend", "drain", VIP, "198.18.0.11"]);
    lbctl_ok(&lab, &["backend", "add", VIP, "198.18.0.14"]);
    wait_until("b4 checked up", Duration::from_secs(10), || {
        status(&lab).vips[0]
            .backends
            .iter()
            .any(|b| b.address.to_string() == "198.18.0.14" && b.health == HealthStatus::Up)
    });
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 200).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert!(
        !tally.by_backend.contains_key("b1"),
        "draining b1 took new flows: {tally:?}"
    );
    assert!(tally.by_backend.contains_key("b4"), "{tally:?}");

    // A reload on SIGHUP re-applies the maps: b3 leaves, b4 (runtime) goes.
    let reloaded = format!(
        "admin_socket_group = \"daemon\"\n{}",
        lab.lbd_config_for(&["b1", "b2"], CHECKS)
    );
    lab.write_lbd_config(&reloaded).expect("write config");
    lab.signal("lbd", libc::SIGHUP).expect("SIGHUP");
    wait_until("the SIGHUP reload", Duration::from_secs(10), || {
        status(&lab).vips[0].backends.len() == 2
    });
    let s = status(&lab);
    assert_eq!(s.reloads.succeeded, 1, "{:?}", s.reloads);
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 100).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(
        tally.by_backend.keys().collect::<Vec<_>>(),
        ["b2"],
        "b1 drains, b3 and b4 are gone"
    );
    // Still exactly the kept set, on every thread (new ones included).
    assert_kept(pid, CapMask::of(KEPT));
    let log = lab.log("lbd");
    assert!(!log.contains("Operation not permitted"), "{log}");

    // A metrics port below 1024 keeps CAP_NET_BIND_SERVICE too; without a
    // group the socket is root's alone (0600).
    lab.terminate("lbd").expect("stop lbd");
    let low = format!(
        "metrics_listen = \"127.0.0.1:641\"\n{}",
        lab.lbd_config_for(&["b1"], "")
    );
    let lb = lab.lb.clone();
    let pid = lab
        .start_lbd_on(&lb, "lbd-low", &low)
        .expect("lbd on a low port");
    wait_for_drop(&lab, "lbd-low");
    let mut kept = CapMask::of(KEPT);
    kept.insert(LOW_PORT);
    assert_kept(pid, kept);
    let meta = std::fs::metadata(lab.admin_socket()).expect("admin socket");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o600, 0, 0)
    );
    let metrics: SocketAddr = "127.0.0.1:641".parse().expect("address");
    assert_eq!(
        tcp_listeners(pid),
        [metrics],
        "the metrics on loopback only"
    );
}

/// Sends `request` to the admin socket and returns the answer's text.
fn raw(socket: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_admin_api_refuses_past_its_limits_and_changes_nothing() {
    let mut lab = Lab::start(1).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = lab.lbd_config_for(&["b1"], "");
    lab.start_lbd(&config).expect("lbd");
    let before = state_of(&status(&lab));

    // A VIP with one backend too many.
    let mut args: Vec<String> = ["vip", "add", "198.18.0.200:80/tcp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for i in 0..=1000 {
        args.push("--backend".into());
        args.push(format!(
            "198.18.{}.{},mac=02:00:00:00:00:01",
            8 + i / 250,
            1 + i % 250
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.lbctl(&args).expect("lbctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("backends[1000]: too many backends; at most 1000 per VIP are allowed"),
        "{stderr}"
    );
    assert_eq!(
        state_of(&status(&lab)),
        before,
        "a refused VIP changed the state"
    );

    // VIPs up to what the data plane was sized for at start (the file's one
    // and 16 spare), then a clear refusal.
    let capacity = 17;
    for i in 1..capacity {
        let vip = format!("198.18.0.{}:80/tcp", 200 + i);
        lbctl_ok(&lab, &["vip", "add", &vip, "--table-size", "3"]);
    }
    let full = state_of(&status(&lab));
    assert_eq!(full.len(), capacity);
    let out = lab
        .lbctl(&["vip", "add", "198.18.0.250:80/tcp", "--table-size", "3"])
        .expect("lbctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("too many VIPs: the data plane was sized for 17 at start")
            && stderr.contains("limit_exceeded"),
        "{stderr}"
    );
    assert_eq!(
        state_of(&status(&lab)),
        full,
        "a refused VIP changed the state"
    );

    // Transport limits on the real socket: a body too large (over the
    // 5 MiB the README gives: 413, JSON error), a head with too many
    // fields (431).
    let socket = lab.admin_socket();
    let body = format!(
        "{{\"address\":\"198.18.0.251\",\"port\":80,\"padding\":\"{}\"}}",
        "x".repeat(6 << 20)
    );
    let request = format!(
        "POST /v1/vips HTTP/1.1\r\nHost: lbd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(&socket, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    let mut head = String::from("GET /v1/status HTTP/1.1\r\nHost: lbd\r\n");
    for i in 0..64 {
        head.push_str(&format!("X-Field-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let answer = raw(&socket, head.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert_eq!(
        state_of(&status(&lab)),
        full,
        "a refused request changed the state"
    );
}
