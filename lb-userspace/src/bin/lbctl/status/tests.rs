use lb_userspace::api::schema::{
    BackendStatus, NatStatus, ReplicationPeerStatus, ReplicationStatus, TunnelStatus,
    UnreadTraffic, VipNatStatus, VipStatus,
};

use super::{
    backend_columns::{flow_columns, state_text},
    replication::{config_mismatch_lines, peer_line},
    vip_table::{nat_line, through_tunnel_line, vip_lines, Widths},
    vrrp::watch_vrrp_line,
    watch::{rate, waits_for_lbd, watch_vip_lines, Refreshes},
    *,
};

/// A restarting lbd first answers 503 ("lbd is shutting down"), then
/// not at all: the watch waits through both.
#[test]
fn a_watch_waits_for_a_restarting_lbd() {
    let shutting_down = Failure::from(ClientError::Api(lb_userspace::api::ApiError {
        status: 503,
        code: "internal".to_owned(),
        message: "lbd is shutting down".to_owned(),
    }));
    let gone = Failure::from(ClientError::NotRunning {
        path: "/run/lbd/lbd.sock".into(),
    });
    for failure in [&shutting_down, &gone] {
        assert!(waits_for_lbd(failure, 3), "{}", failure.message);
        assert!(!waits_for_lbd(failure, 0), "{}", failure.message);
    }
    let refused = Failure::from(ClientError::Api(lb_userspace::api::ApiError {
        status: 500,
        code: "internal".to_owned(),
        message: "boom".to_owned(),
    }));
    assert!(!waits_for_lbd(&refused, 3));
}

/// `lbctl status` whose connection lbd closes without answering (it
/// crashed or stopped mid-request) is lbd unavailable, exit 5 ("try
/// again later"), which a watch waits through; not exit 1.
#[tokio::test]
async fn a_status_lbd_drops_unanswered_is_unavailable() {
    use crate::wait::tests::{Answer, FakeLbd};
    let lbd = FakeLbd::start("status-dropped", vec![Answer::Close]);
    let client = Client::new(&lbd.path, std::time::Duration::from_secs(5));
    let failure = fetch(&client, None).await.unwrap_err();
    assert_eq!(
        failure.code,
        ClientError::EXIT_UNAVAILABLE,
        "{}",
        failure.message
    );
    assert!(waits_for_lbd(&failure, 1), "{}", failure.message);
}

#[test]
fn a_rate_with_nothing_to_measure_from_is_no_zero() {
    assert_eq!(rate(Some(500), None, 1.0, 1.0, 0), "-");
    assert_eq!(rate(None, Some(500), 1.0, 1.0, 0), "-");
    assert_eq!(rate(Some(500), Some(300), 2.0, 1.0, 0), "100");
    assert_eq!(rate(Some(500), Some(300), 2.0, 8.0, 0), "800");
    assert_eq!(rate(Some(5), Some(2), 2.0, 1.0, 1), "1.5");
    // A counter that went back (lbd restarted between frames): 0.
    assert_eq!(rate(Some(2), Some(500), 1.0, 1.0, 0), "0");
}

/// A VIP with one backend and these counters.
fn counted_vip(packets: u64) -> VipStatus {
    serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": packets, "bytes": packets * 100,
        "new_flows": packets / 10,
        "backends": [{
            "address": "198.18.0.11", "weight": 100, "state": "enabled", "health": "up",
            "alive": true, "share": 1.0, "flows": {"live": 0, "closing": 0, "idle": 0},
            "packets": packets, "bytes": packets * 100, "new_flows": packets / 10,
            "drain_remaining_s": null, "runtime": false
        }]
    }))
    .unwrap()
}

#[test]
fn counters_lbd_could_not_read_show_no_count_and_no_rate() {
    let read = UnreadTraffic::default();
    let unread = UnreadTraffic {
        vips: vec!["198.18.0.100:80/tcp".to_owned()],
        backends: vec![(
            "198.18.0.100:80/tcp".to_owned(),
            "198.18.0.11".parse().unwrap(),
        )],
    };
    // The text: a 0 not read is "-".
    let lines = vip_lines(&counted_vip(0), Unread(&unread));
    assert!(
        lines[0].contains("packets -  bytes -  new flows -"),
        "{lines:?}"
    );
    let backend: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&backend[backend.len() - 2..], ["-", "-"], "{lines:?}");
    let lines = vip_lines(&counted_vip(0), Unread(&read));
    assert!(lines[0].contains("packets 0  bytes 0"), "{lines:?}");
    // The watch: the previous frame could not read them (0 there):
    // no rate, not a leap to 1e9 packets in a second.
    let (before, now) = (counted_vip(0), counted_vip(1_000_000_000));
    let lines = watch_vip_lines(
        &now,
        Unread(&read),
        Some((&before, Unread(&unread))),
        1.0,
        28,
    );
    assert!(!lines.join("\n").contains("1000000000"), "{lines:?}");
    assert!(
        lines[0].contains("- pkt/s") && lines[0].contains("- bit/s"),
        "{lines:?}"
    );
    let backend: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&backend[6..8], ["-", "-"], "{lines:?}");
    // This frame could not read them: no rate either.
    let lines = watch_vip_lines(
        &now,
        Unread(&unread),
        Some((&before, Unread(&read))),
        1.0,
        28,
    );
    assert!(lines[0].contains("- pkt/s"), "{lines:?}");
    // Both read: the rate.
    let lines = watch_vip_lines(&now, Unread(&read), Some((&before, Unread(&read))), 2.0, 28);
    assert!(lines[0].contains("500000000 pkt/s"), "{lines:?}");
    let backend: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&backend[6..8], ["500000000", "50000000.0"], "{lines:?}");
}

/// The answer's own marks (`traffic_read: false`, from `GET
/// /v1/vips/...`, as `backend list` asks) show `-`, with no
/// `traffic_unread` from a second request: counters and marks from
/// one answer.
#[test]
fn counters_the_answer_marks_unread_show_no_count() {
    let mut value = serde_json::to_value(counted_vip(0)).unwrap();
    value["traffic_read"] = false.into();
    value["backends"][0]["traffic_read"] = false.into();
    let vip: VipStatus = serde_json::from_value(value).unwrap();
    let none = UnreadTraffic::default();
    let lines = vip_lines(&vip, Unread(&none));
    assert!(
        lines[0].contains("packets -  bytes -  new flows -"),
        "{lines:?}"
    );
    let backend: Vec<&str> = backend_line(&lines).split_whitespace().collect();
    assert_eq!(&backend[backend.len() - 2..], ["-", "-"], "{lines:?}");
    let now = counted_vip(1_000_000_000);
    let lines = watch_vip_lines(&now, Unread(&none), Some((&vip, Unread(&none))), 1.0, 28);
    assert!(!lines.join("\n").contains("1000000000"), "{lines:?}");
    assert!(lines[0].contains("- pkt/s"), "{lines:?}");
}

/// The line of backend 198.18.0.11 in a VIP's table.
fn backend_line(lines: &[String]) -> &str {
    lines
        .iter()
        .find(|l| l.trim_start().starts_with("198.18.0.11"))
        .expect("a line for 198.18.0.11")
}

/// A VIP with backend 198.18.0.11 in `health`, its check (`check`,
/// JSON; null: none) and `idle` idle flows.
fn checked_vip(health: &str, check: serde_json::Value, idle: u64) -> VipStatus {
    serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
        "backends": [{
            "address": "198.18.0.11", "weight": 100, "state": "draining", "health": health,
            "alive": true, "share": 0.0, "flows": {"live": 0, "closing": 2, "idle": idle},
            "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": null,
            "check": check, "runtime": false
        }]
    }))
    .unwrap()
}

/// A TCP check's status: the last outcome, the streaks, and `extra`.
fn check(last: &str, successes: u32, failures: u32, extra: serde_json::Value) -> serde_json::Value {
    let mut check = serde_json::json!({
        "kind": "tcp", "checks": 10, "failures": 3, "transitions": 1,
        "consecutive_successes": successes, "consecutive_failures": failures,
        "last": last, "last_latency_ms": 0.4
    });
    check
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    check
}

/// A flapping backend shows why and how far: the last check's
/// outcome in short and its streak against rise/fall, and how long
/// its health has been what it is; in the table and in `--watch`.
#[test]
fn the_table_shows_the_last_check_its_streak_and_since_when() {
    let none = UnreadTraffic::default();
    let refused = checked_vip(
        "down",
        check(
            "connection refused",
            0,
            3,
            serde_json::json!({"rise": 2, "fall": 3, "last_change_s": 42}),
        ),
        0,
    );
    let lines = vip_lines(&refused, Unread(&none));
    let header = lines.iter().find(|l| l.contains("backend")).unwrap();
    assert!(
        header.contains(" check ") && header.contains(" since "),
        "{lines:?}"
    );
    let line = backend_line(&lines);
    assert!(
        line.contains("refused 3/3") && line.contains(" 42s "),
        "{lines:?}"
    );
    let watch = watch_vip_lines(&refused, Unread(&none), None, 1.0, 28);
    assert!(backend_line(&watch).contains("refused 3/3"), "{watch:?}");
    // Passing, settled: "ok"; passing on its way up: its streak.
    let up = checked_vip(
        "up",
        check("success", 5, 0, serde_json::json!({"rise": 2, "fall": 3})),
        0,
    );
    let line = vip_lines(&up, Unread(&none));
    let line = backend_line(&line);
    assert!(line.contains(" ok ") && !line.contains("5/2"), "{line}");
    let rising = checked_vip(
        "down",
        check("success", 1, 0, serde_json::json!({"rise": 2, "fall": 3})),
        0,
    );
    let line = vip_lines(&rising, Unread(&none));
    assert!(backend_line(&line).contains("ok 1/2"), "{line:?}");
    // An lbd before rise/fall and last_change_s in the status: the
    // streak alone, and no time.
    let old = checked_vip(
        "down",
        check("connection refused", 0, 3, serde_json::json!({})),
        0,
    );
    let line = vip_lines(&old, Unread(&none));
    assert!(backend_line(&line).contains("refused 3 "), "{line:?}");
    // No check: nothing to show.
    let unchecked = checked_vip("unchecked", serde_json::Value::Null, 0);
    let line = vip_lines(&unchecked, Unread(&none));
    assert!(!backend_line(&line).contains("ok"), "{line:?}");
}

/// Idle flows (silent past their idle timeout, no FIN/RST) still
/// go to their backend: a drain shows them, not only live ones.
#[test]
fn the_table_shows_idle_flows_next_to_live_and_closing() {
    let none = UnreadTraffic::default();
    let vip = checked_vip("up", serde_json::Value::Null, 300);
    let lines = vip_lines(&vip, Unread(&none));
    let header: Vec<&str> = lines
        .iter()
        .find(|l| l.contains("backend"))
        .unwrap()
        .split_whitespace()
        .collect();
    let at = header.iter().position(|h| *h == "live").unwrap();
    assert_eq!(
        &header[at..at + 3],
        ["live", "closing", "idle"],
        "{lines:?}"
    );
    let columns: Vec<&str> = backend_line(&lines).split_whitespace().collect();
    // The last five: live, closing, idle, packets, new flows.
    let live = columns.len() - 5;
    assert_eq!(&columns[live..live + 3], ["0", "2", "300"], "{lines:?}");
    let watch = watch_vip_lines(&vip, Unread(&none), None, 1.0, 28);
    assert!(watch[1].contains(" idle"), "{watch:?}");
    assert!(backend_line(&watch).ends_with(" 300"), "{watch:?}");
}

/// An instance whose interface has no address to send adverts from
/// (keepalived's FAULT for want of one) says so, apart from a link
/// down.
#[test]
fn a_vrrp_instance_without_a_source_says_so() {
    let instance = |state: &str| -> lb_userspace::vrrp::driver::InstanceStatus {
        serde_json::from_value(serde_json::json!({
            "vrid": 51, "state": state, "configured_priority": 100, "priority": 100,
            "master": null, "addresses": ["198.18.0.100"],
            "counters": {"adverts_sent": 0, "adverts_received": 0, "priority_zero_sent": 0,
                "priority_zero_received": 0, "became_master": 0, "became_backup": 1},
            "ignored": {}, "no_source": true, "no_source_since": 1_700_000_000
        }))
        .unwrap()
    };
    assert_eq!(
        watch_vrrp_line(&instance("backup")),
        "VRRP vrid 51 IPv4: backup (NO SOURCE address for adverts: will not take over) (priority 100)"
    );
    assert_eq!(
        watch_vrrp_line(&instance("master")),
        "VRRP vrid 51 IPv4: master (NO SOURCE address for adverts: giving the VIPs up) (priority 100)"
    );
}

/// A backup whose link is down will not take over (keepalived's
/// FAULT): the status says so rather than showing a healthy backup;
/// a master on a dead link likewise.
#[test]
fn a_vrrp_instance_whose_link_is_down_says_so() {
    let instance = |state: &str, link_down: bool| -> lb_userspace::vrrp::driver::InstanceStatus {
        serde_json::from_value(serde_json::json!({
            "vrid": 51, "state": state, "configured_priority": 100, "priority": 1,
            "master": null, "addresses": ["198.18.0.100"],
            "counters": {"adverts_sent": 0, "adverts_received": 0, "priority_zero_sent": 0,
                "priority_zero_received": 0, "became_master": 0, "became_backup": 1},
            "ignored": {}, "link_down": link_down, "link_down_since": 1_700_000_000
        }))
        .unwrap()
    };
    let backup = instance("backup", true);
    assert!(
        vrrp_line(&backup).starts_with(
            "VRRP vrid 51 IPv4: backup (link DOWN: will not take over) (priority 1 of 100)"
        ),
        "{}",
        vrrp_line(&backup)
    );
    assert_eq!(
        watch_vrrp_line(&backup),
        "VRRP vrid 51 IPv4: backup (link DOWN: will not take over) (priority 1)"
    );
    let master = instance("master", true);
    assert!(
        vrrp_line(&master).starts_with(
            "VRRP vrid 51 IPv4: master (link DOWN: keeps the VIPs on a dead link) (priority 1 of 100)"
        ),
        "{}",
        vrrp_line(&master)
    );
    assert!(
        vrrp_line(&instance("backup", false)).starts_with("VRRP vrid 51 IPv4: backup (priority"),
        "{}",
        vrrp_line(&instance("backup", false))
    );
}

/// The README's upgrade steps end on `lbctl status` to see which
/// version serves: its first line says it (not `lbd --version`,
/// which reads the binary on disk).
#[test]
fn the_readme_upgrade_step_reads_the_version_from_the_status() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let step = readme
        .lines()
        .find(|l| l.starts_with("lbctl status                 # the new version serves"))
        .expect("the README's upgrade step");
    assert!(
        step.contains("its first line's `version`") && !step.contains("lbd --version says"),
        "the README's upgrade step does not say where the running version shows: {step}"
    );
}

#[test]
fn vrrp_instances_name_their_family() {
    let instance = |addresses: &[&str]| -> lb_userspace::vrrp::driver::InstanceStatus {
        serde_json::from_value(serde_json::json!({
            "vrid": 51, "state": "master", "configured_priority": 150, "priority": 150,
            "master": null, "addresses": addresses,
            "counters": {"adverts_sent": 0, "adverts_received": 0, "priority_zero_sent": 0,
                "priority_zero_received": 0, "became_master": 0, "became_backup": 0},
            "ignored": {}
        }))
        .unwrap()
    };
    // Two instances of one VRID, one per family: told apart.
    let v4 = instance(&["198.18.0.100"]);
    let v6 = instance(&["2001:2::100"]);
    assert!(
        vrrp_line(&v4).starts_with("VRRP vrid 51 IPv4: master (priority 150 of 150)"),
        "{}",
        vrrp_line(&v4)
    );
    assert!(
        vrrp_line(&v6).starts_with("VRRP vrid 51 IPv6: master"),
        "{}",
        vrrp_line(&v6)
    );
    assert_eq!(
        watch_vrrp_line(&v6),
        "VRRP vrid 51 IPv6: master (priority 150)"
    );
    // No address to tell by: no family.
    assert_eq!(
        watch_vrrp_line(&instance(&[])),
        "VRRP vrid 51: master (priority 150)"
    );
}

#[test]
fn a_nat_backends_flows_being_counted_are_marked_not_shown_as_none() {
    let mut backend: BackendStatus = serde_json::from_value(serde_json::json!({
        "address": "198.19.2.11", "mac": null, "weight": 100, "state": "draining",
        "health": "up", "alive": true, "share": 0.0,
        "flows": {"live": 0, "closing": 0, "idle": 0},
        "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": null,
        "check": null, "runtime": false
    }))
    .unwrap();
    assert_eq!(
        flow_columns(&backend),
        ("0".to_owned(), "0".to_owned(), "0".to_owned())
    );
    backend.flows_counting = true;
    backend.flows.live = 3;
    assert_eq!(
        flow_columns(&backend),
        ("~3".to_owned(), "~0".to_owned(), "~0".to_owned())
    );
}

#[test]
fn replication_shows_each_peer_and_reads_an_older_lbd() {
    // An lbd from before the full mesh: no mode, no peers.
    let old: ReplicationStatus = serde_json::from_value(serde_json::json!({
        "connected": true, "installed": 4, "unknown": 1,
        "channel": {"batches_sent": 0, "records_sent": 9, "batches_received": 0,
            "records_received": 0, "auth_failures": 0, "decode_errors": 0, "timeouts": 0,
            "sessions": 1, "reconnects": 0, "dropped_batches": 0, "dropped_records": 0}
    }))
    .unwrap();
    assert!(old.peers.is_empty() && !old.all_peers_dumped);
    assert_eq!(
        replication_lines(&old),
        ["replication: connected, 9 flows sent, 4 installed from peers (1 unknown)"]
    );
    let mesh = ReplicationStatus {
        mode: Some(lb_userspace::daemon::replication::Topology::FullMesh),
        kept_local: 1,
        stale: 2,
        failed: 0,
        peers: vec![
            lb_userspace::api::schema::ReplicationPeerStatus {
                address: "198.18.2.12:7946".into(),
                node: Some("lb-b/eth0".into()),
                connected: true,
                records_sent: 10,
                records_received: 20,
                full_dumps_received: 3,
                batches_dropped: 0,
                last_received_s: Some(3),
                last_received_unix_s: Some(1_700_000_000),
                ..Default::default()
            },
            lb_userspace::api::schema::ReplicationPeerStatus {
                address: "198.18.2.13:7946".into(),
                batches_dropped: 5,
                ..Default::default()
            },
        ],
        ..old
    };
    let lines = replication_lines(&mesh);
    assert_eq!(
        lines[0],
        "replication (full-mesh): connected, 9 flows sent, 4 installed from peers (1 unknown)"
    );
    assert!(
        lines[1].contains("3 copies older") && lines[1].contains("1 of them"),
        "{lines:?}"
    );
    assert_eq!(lines[2], "  every peer's full dump received: not yet");
    assert_eq!(lines[3], "  peer 198.18.2.12:7946 (lb-b/eth0): connected, 10 records sent, 20 received, 3 full dumps received, 0 batches dropped, last batch 3s ago");
    assert!(
        lines[4].contains("node id not known yet")
            && lines[4].contains("5 batches dropped, no batch yet"),
        "{lines:?}"
    );
}

/// How stale a peer's flows here may be: the age of its last batch,
/// in the units of the backends' `since`; nothing said by an lbd
/// before the field that did receive records (no "no batch yet"
/// that is not so).
#[test]
fn a_peer_line_says_how_long_ago_its_last_batch_came() {
    let peer = |records_received, last_received_s| ReplicationPeerStatus {
        address: "198.18.2.12:7946".into(),
        node: Some("lb-b/eth0".into()),
        connected: true,
        records_received,
        last_received_s,
        ..Default::default()
    };
    assert!(peer_line(&peer(5, Some(0))).ends_with(", last batch 0s ago"));
    assert!(peer_line(&peer(0, Some(150))).ends_with(", last batch 2m ago"));
    assert!(peer_line(&peer(5, Some(7_300))).ends_with(", last batch 2h ago"));
    assert!(peer_line(&peer(0, None)).ends_with(", no batch yet"));
    assert!(
        peer_line(&peer(5, None)).ends_with("0 batches dropped"),
        "an older lbd: {}",
        peer_line(&peer(5, None))
    );
    // A peer that shares backend states says so.
    let sharing = ReplicationPeerStatus {
        shares_backend_states: true,
        ..peer(5, Some(3))
    };
    assert!(
        peer_line(&sharing)
            .ends_with("0 batches dropped, backend states shared, last batch 3s ago"),
        "{}",
        peer_line(&sharing)
    );
    // In the JSON status as lbd sends it.
    let json = serde_json::to_value(peer(5, Some(3))).unwrap();
    assert_eq!(json["last_received_s"], 3);
    assert!(serde_json::to_value(peer(0, None))
        .unwrap()
        .get("last_received_s")
        .is_none());
}

#[test]
fn a_peer_building_other_tables_is_shown_per_vip() {
    let peer = lb_userspace::api::schema::ReplicationPeerStatus {
        address: "198.18.2.12:7946".into(),
        node: Some("lb-b/eth0".into()),
        connected: true,
        config_compared: true,
        config_mismatches: vec![lb_userspace::api::schema::ConfigMismatch {
            vip: "198.18.0.100:80/tcp".into(),
            kind: lb_userspace::api::schema::MismatchKind::Differs,
        }],
        ..Default::default()
    };
    let lines = config_mismatch_lines(&peer);
    assert!(
        lines[0].contains("CONFIG MISMATCH with 198.18.2.12:7946"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "      198.18.0.100:80/tcp: table size, backends, weights or admin states differ"
    );
    let json = serde_json::to_value(&peer).unwrap();
    assert_eq!(json["config_mismatches"][0]["kind"], "differs");
    let agreeing = lb_userspace::api::schema::ReplicationPeerStatus {
        config_mismatches: Vec::new(),
        ..peer
    };
    assert!(config_mismatch_lines(&agreeing).is_empty());
}

#[test]
fn columns_widen_for_ipv6_backends_and_timed_drains() {
    let backend = |address: &str, drain: Option<u64>| {
        serde_json::json!({
            "address": address, "weight": 100, "state": "draining", "health": "up",
            "alive": true, "share": 0.0, "flows": {"live": 0, "closing": 0, "idle": 0},
            "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": drain,
            "drain_timed_out": false, "runtime": false
        })
    };
    let vip = |backends: Vec<serde_json::Value>| -> VipStatus {
        serde_json::from_value(serde_json::json!({
            "vip": "[2001:2::100]:80/tcp", "table_size": 251, "on_all_down": "drop",
            "all_down": false, "runtime": false, "packets": 0, "bytes": 0,
            "new_flows": 0, "backends": backends
        }))
        .unwrap()
    };
    let narrow = Widths::of(&vip(vec![backend("198.18.0.11", None)]));
    assert_eq!((narrow.backend, narrow.state), (28, 12));
    let wide = Widths::of(&vip(vec![
        backend("2001:2:0:5678:9abc:def0:1234:5678", Some(300)),
        backend("198.18.0.11", None),
    ]));
    assert_eq!(wide.backend, "2001:2:0:5678:9abc:def0:1234:5678".len());
    assert_eq!(wide.state, "draining 300s".len());
}

#[test]
fn a_backend_held_after_fail_open_says_so_and_for_how_long() {
    let backend = |extra: serde_json::Value| -> BackendStatus {
        let mut b = serde_json::json!({
            "address": "198.18.0.11", "weight": 100, "state": "enabled", "health": "down",
            "alive": true, "share": 0.0, "flows": {"live": 3, "closing": 0, "idle": 0},
            "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": null,
            "drain_timed_out": false, "runtime": false
        });
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(b).unwrap()
    };
    // An lbd before holds sends no field: not held.
    assert_eq!(state_text(&backend(serde_json::json!({}))), "enabled");
    assert_eq!(
        state_text(&backend(serde_json::json!({"held_s": 287}))),
        "enabled held 287s"
    );
    // A slow start says why the backend takes less than its share.
    assert_eq!(
        state_text(&backend(
            serde_json::json!({"slow_start": {"percent": 35, "left_s": 13}})
        )),
        "enabled slow start 35% 13s"
    );
    // A timed drain's seconds are what the operator asked for: first.
    assert_eq!(
        state_text(&backend(
            serde_json::json!({"state": "draining", "drain_remaining_s": 30, "held_s": 287})
        )),
        "draining 30s"
    );
    // A state an operator set on a sync peer names it.
    assert_eq!(
        state_text(&backend(
            serde_json::json!({"state": "draining", "drain_remaining_s": 30, "state_from": "lb2/eth0"})
        )),
        "draining 30s from lb2/eth0"
    );
}

#[test]
fn a_vip_on_its_backups_says_so_and_each_backup_is_marked() {
    let backend = |address: &str, backup: bool, share: f64| {
        serde_json::json!({
            "address": address, "weight": 100, "backup": backup, "state": "enabled",
            "health": if backup { "up" } else { "down" }, "alive": backup, "share": share,
            "flows": {"live": 0, "closing": 0, "idle": 0}, "packets": 0, "bytes": 0,
            "new_flows": 0, "drain_remaining_s": null, "drain_timed_out": false,
            "runtime": false
        })
    };
    let vip: VipStatus = serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "on_backups": true, "runtime": false, "packets": 0, "bytes": 0,
        "new_flows": 0,
        "backends": [backend("198.18.0.11", false, 0.0), backend("198.18.0.21", true, 1.0)]
    }))
    .unwrap();
    assert_eq!(state_text(&vip.backends[0]), "enabled");
    assert_eq!(state_text(&vip.backends[1]), "enabled (backup)");
    let none = UnreadTraffic::default();
    let lines = vip_lines(&vip, Unread(&none));
    assert!(
        lines[0].ends_with(" ON BACKUPS (no other backend takes new flows)"),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("198.18.0.21") && l.contains("enabled (backup)")));
    // An lbd before backups sends neither field: no backup, not on them.
    let old: VipStatus = serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
        "backends": []
    }))
    .unwrap();
    assert!(!old.on_backups);
    assert!(!vip_lines(&old, Unread(&none))[0].contains("BACKUPS"));
}

#[test]
fn a_vip_with_client_affinity_or_slow_start_says_so_and_one_without_says_nothing() {
    let mut vip: VipStatus = serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
        "mode": "nat", "affinity": "source", "backends": []
    }))
    .unwrap();
    let none = UnreadTraffic::default();
    assert_eq!(vip.affinity, lb_common::Affinity::Source);
    assert!(
        vip_lines(&vip, Unread(&none))[0]
            .starts_with("VIP 198.18.0.100:80/tcp  nat  affinity source  table 251  "),
        "{:?}",
        vip_lines(&vip, Unread(&none))
    );
    vip.affinity = lb_common::Affinity::Connection;
    assert!(!vip_lines(&vip, Unread(&none))[0].contains("affinity"));
    // Slow start, when on, beside it.
    vip.slow_start_s = Some(30);
    assert!(
        vip_lines(&vip, Unread(&none))[0]
            .starts_with("VIP 198.18.0.100:80/tcp  nat  slow start 30s  table 251  "),
        "{:?}",
        vip_lines(&vip, Unread(&none))
    );
    // An lbd before affinity sends none: each connection on its own.
    let old: VipStatus = serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
        "backends": []
    }))
    .unwrap();
    assert_eq!(old.affinity, lb_common::Affinity::Connection);
    // An unknown one is refused by name.
    let error = serde_json::from_value::<VipStatus>(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
        "affinity": "cookie", "backends": []
    }))
    .unwrap_err()
    .to_string();
    assert!(error.contains("unknown affinity `cookie`"), "{error}");
}

#[test]
fn a_nat_vip_shows_its_address_and_port_usage() {
    let mut vip: VipStatus = serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
        "backends": []
    }))
    .unwrap();
    // An lbd from before modes: DSR, no NAT line.
    assert_eq!(vip.mode, lb_common::Mode::DsrL2);
    assert_eq!(nat_line(&vip), None);
    vip.nat = Some(VipNatStatus {
        source: "198.18.0.50".parse().unwrap(),
        port_min: 2000,
        port_max: 2999,
        ports_in_use: 12,
        flows: 15,
    });
    assert_eq!(
        nat_line(&vip).unwrap(),
        "NAT from 198.18.0.50 ports 2000-2999: 12 of 1000 in use (busiest backend), 15 flows"
    );
    // A garbled answer, its range reversed: no count, no panic.
    vip.nat = Some(VipNatStatus {
        source: "198.18.0.50".parse().unwrap(),
        port_min: 2999,
        port_max: 2000,
        ports_in_use: 12,
        flows: 15,
    });
    assert_eq!(
        nat_line(&vip).unwrap(),
        "NAT from 198.18.0.50 ports 2999-2000: 12 of - in use (busiest backend), 15 flows"
    );
    let table = NatStatus {
        flows: [("established".to_owned(), 15)].into(),
        capacity: 1024,
        memory_bytes: 278_528,
        swept: true,
        expired: 1,
        orphans: 0,
        backend_gone: 2,
        reap_failed: 0,
        read_errors: 0,
        pressure: false,
    };
    assert_eq!(
        nat_table_line(&table),
        "NAT flows: established=15 (table 1024 entries, 0.3 MiB); reaped: 1 expired, 0 orphans, 2 of removed backends"
    );
    let pressed = NatStatus {
        pressure: true,
        ..table.clone()
    };
    assert_eq!(
        nat_table_line(&pressed),
        "NAT flows: established=15 (table 1024 entries, 0.3 MiB, nearly full: closed flows freed after 1 s); reaped: 1 expired, 0 orphans, 2 of removed backends"
    );
    let failing = NatStatus {
        reap_failed: 3,
        read_errors: 1,
        ..table
    };
    assert_eq!(
        nat_table_line(&failing),
        "NAT flows: established=15 (table 1024 entries, 0.3 MiB); reaped: 1 expired, 0 orphans, 2 of removed backends; reaper errors: 3 removals refused, 1 reads failed"
    );
}

#[test]
fn tunnel_settings_and_checks_through_the_tunnel_are_shown() {
    let mut tunnel = TunnelStatus {
        gue_port: 6080,
        source_ipv4: Some("198.18.200.0/24".to_owned()),
        source_ipv6: Some("2001:2::2/128".to_owned()),
        sources_from_interface: [false, true],
        hc_encap: vec!["lo".to_owned(), "eth0".to_owned()],
        accept_local: true,
    };
    assert_eq!(
        tunnel_line(&tunnel, "eth0"),
        "tunnel: GUE port 6080, outer sources IPv4 198.18.200.0/24 IPv6 2001:2::2/128 (the interface's own); checks through tunnels: tc_hc_encap on lo, eth0, accept_local on eth0"
    );
    tunnel.hc_encap.clear();
    tunnel.source_ipv6 = None;
    assert!(tunnel_line(&tunnel, "eth0").ends_with("IPv6 none; no check goes through a tunnel"));

    let check = |through: bool| {
        serde_json::json!({"kind": "tcp", "checks": 3, "failures": 0, "transitions": 1,
            "consecutive_successes": 3, "consecutive_failures": 0, "last": "success",
            "last_latency_ms": 0.4, "through_tunnel": through, "target": "198.18.0.100:80"})
    };
    let backend = |address: &str, through: bool| {
        serde_json::json!({"address": address, "mac": null, "weight": 100, "state": "enabled",
            "health": "up", "alive": true, "share": 0.5,
            "flows": {"live": 0, "closing": 0, "idle": 0}, "packets": 0, "bytes": 0,
            "new_flows": 0, "drain_remaining_s": null, "check": check(through), "runtime": false})
    };
    let vip: VipStatus = serde_json::from_value(serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
        "mode": "gue",
        "backends": [backend("198.19.2.11", true), backend("2001:2:0:2::12", false)]
    }))
    .unwrap();
    assert_eq!(
        through_tunnel_line(&vip).unwrap(),
        "checks through the tunnel (to 198.18.0.100:80, as clients' packets): 1 of 2 backends: 198.19.2.11"
    );
}

/// A status with nothing in it, as lbd answers it (JSON).
fn empty_status() -> String {
    let body = serde_json::json!({
        "interface": "eth0", "xdp_mode": "native", "config_file": "/etc/lbd/lbd.toml",
        "vips": [], "counters": {}, "conntrack": {"entries": 0, "capacity": 1024},
        "tables_rebuilt": 0, "reloads": {"succeeded": 0, "failed": 0}, "version": "0"
    })
    .to_string();
    serde_json::from_str::<Status>(&body).unwrap();
    body
}

/// The first line says which lbd serves (its version) and how its
/// reloads went.
#[test]
fn the_first_line_names_the_running_version_and_the_reloads() {
    let mut status: Status = serde_json::from_str(&empty_status()).unwrap();
    status.version = "0.2.0".to_owned();
    status.reloads.succeeded = 3;
    status.reloads.failed = 1;
    assert_eq!(
        header_line(&status),
        "lbd on eth0 (XDP native), config /etc/lbd/lbd.toml; version 0.2.0, reloads 3 ok, 1 refused"
    );
}

/// A status whose lbd lost its hook says so under the first line,
/// with how and for how long; one attached with its link up says
/// nothing more. An older lbd's status (no such fields) reads as
/// attached and up.
#[test]
fn a_lost_hook_is_said_under_the_first_line() {
    let mut status: Status = serde_json::from_str(&empty_status()).unwrap();
    assert!(status.attached && status.interface_up);
    assert_eq!(hook_line(&status), None);
    status.attached = false;
    status.hook_lost = Some(lb_userspace::api::schema::HookLost {
        how: lb_userspace::api::schema::HookLoss::Shadowed { by: 77 },
        for_secs: 12,
    });
    let line = hook_line(&status).expect("a line");
    assert!(
        line.starts_with("NOT ATTACHED: lbd lost its hook on eth0 (program id 77 runs ahead of it at tc) 12s ago"),
        "{line}"
    );
}

/// `status --watch --interval 1` with `count` against a fake lbd
/// giving `answers`, bounded by `bound` (Err: still watching then):
/// its exit code and message (0: done), and how often it asked.
async fn watch_against(
    tag: &str,
    count: Option<u64>,
    answers: Vec<crate::wait::tests::Answer>,
    bound: std::time::Duration,
) -> Result<(u8, String, usize), usize> {
    use clap::Parser as _;
    let lbd = crate::wait::tests::FakeLbd::start(tag, answers);
    let client = Client::new(&lbd.path, std::time::Duration::from_millis(300));
    let count = count.map(|c| c.to_string());
    let mut argv = vec!["lbctl", "status", "--watch", "--interval", "1"];
    if let Some(count) = &count {
        argv.extend(["--count", count]);
    }
    let cli = crate::Cli::try_parse_from(argv).unwrap();
    let crate::Command::Status(args) = cli.command else {
        panic!("not status");
    };
    match tokio::time::timeout(bound, watch(&client, &args)).await {
        Ok(Ok(())) => Ok((0, String::new(), lbd.asked())),
        Ok(Err(failure)) => Ok((failure.code, failure.message, lbd.asked())),
        Err(_) => Err(lbd.asked()),
    }
}

/// With `--count`, a refresh lbd does not answer counts as one of
/// them: an lbd gone for good after the first frame ends the watch
/// after the count (exit 5, lbd unavailable, as the last refresh
/// found it), not never; one back by the last refresh ends it as
/// usual. Without `--count` the watch waits for lbd.
#[tokio::test]
async fn a_counted_watch_ends_even_when_lbd_goes_away() {
    use crate::wait::tests::Answer;
    let bound = std::time::Duration::from_secs(10);
    let gone = vec![Answer::Ok(empty_status()), Answer::Error(503)];
    let (code, message, asked) = watch_against("watch-gone", Some(2), gone.clone(), bound)
        .await
        .expect("a --count 2 watch still running after 10 s");
    assert_eq!(code, ClientError::EXIT_UNAVAILABLE, "{message}");
    assert!(
        message.contains("1 of --count 2") && message.contains("shutting down"),
        "{message}"
    );
    assert_eq!(asked, 2);

    let back = vec![
        Answer::Ok(empty_status()),
        Answer::Error(503),
        Answer::Ok(empty_status()),
    ];
    let (code, message, asked) = watch_against("watch-back", Some(3), back, bound)
        .await
        .expect("a --count 3 watch still running after 10 s");
    assert_eq!((code, message.as_str(), asked), (0, "", 3));

    // Without --count: still waiting, asking each interval.
    let asked = watch_against(
        "watch-waits",
        None,
        gone,
        std::time::Duration::from_millis(2_500),
    )
    .await
    .expect_err("a watch without --count gave up on lbd");
    assert_eq!(asked, 3);
}

/// The note that lbd is not answering is said once an outage, not
/// once a refresh; a new outage says it again.
#[test]
fn a_watch_says_once_an_outage_that_lbd_is_not_answering() {
    let mut refreshes = Refreshes::default();
    refreshes.answered();
    let notes: Vec<bool> = (0..3).map(|_| refreshes.unanswered()).collect();
    assert_eq!(notes, [true, false, false]);
    assert_eq!((refreshes.made, refreshes.shown), (4, 1));
    refreshes.answered();
    assert!(refreshes.unanswered());
    assert!(refreshes.done(Some(6)));
    assert!(!refreshes.done(Some(7)) && !refreshes.done(None));
}

/// `--count` and `--interval` only mean something with `--watch`, and
/// a count of 0 would show a frame all the same: all refused.
#[test]
fn count_and_interval_need_watch_and_a_count_needs_a_frame() {
    use clap::Parser as _;
    let parse = |args: &[&str]| {
        crate::Cli::try_parse_from([&["lbctl", "status"], args].concat())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for args in [&["--count", "5"][..], &["--interval", "1"]] {
        let error = parse(args).unwrap_err();
        assert!(
            error.contains(args[0]) && error.contains("--watch"),
            "{args:?}: {error}"
        );
    }
    let error = parse(&["--watch", "--count", "0"]).unwrap_err();
    assert!(
        error.contains("'0' for '--count") && error.contains("at least 1"),
        "{error}"
    );
    let error = parse(&["--watch", "--count", "-1"]).unwrap_err();
    assert!(error.contains("--count"), "{error}");
    parse(&[]).unwrap();
    parse(&["--watch", "--count", "1", "--interval", "1"]).unwrap();
}
