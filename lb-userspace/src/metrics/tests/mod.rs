//! Tests of the Prometheus rendering, one file per group of families;
//! the status with one of everything that they (and other metrics
//! modules' tests) render lives here.

use std::collections::BTreeMap;

use super::*;
use crate::{
    api::schema::{
        BackendState, BackendStatus, CheckKind, CheckStatus, ConntrackStatus, HealthStatus,
        ReloadCounts, VipStatus,
    },
    model::FlowCount,
    vrrp::{driver::InstanceStatus, Counters, State},
};

mod backend_series;
mod families;
mod node_series;
mod traffic_counters;
mod vrrp_series;

/// A status with one of everything, so every metric family appears.
pub(crate) fn full_status() -> Status {
    let check = CheckStatus {
        kind: CheckKind::Http,
        checks: 10,
        failures: 2,
        failures_by_reason: BTreeMap::from([("refused".to_owned(), 2)]),
        transitions: 1,
        consecutive_successes: 3,
        consecutive_failures: 0,
        last: Some("success".into()),
        last_label: Some("ok".into()),
        last_latency_ms: Some(0.4),
        rise: Some(2),
        fall: Some(3),
        last_change_s: Some(42),
        last_change_unix_s: Some(1_700_000_000),
        through_tunnel: true,
        target: Some("198.18.0.100:80".into()),
    };
    let backend = BackendStatus {
        backup: false,
        address: "198.18.0.11".parse().unwrap(),
        mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 0x11])),
        port: None,
        weight: 100,
        state: BackendState::Draining,
        health: HealthStatus::Up,
        alive: true,
        share: 0.5,
        flows: FlowCount {
            live: 4,
            closing: 1,
            idle: 0,
        },
        flows_counting: false,
        packets: 1000,
        bytes: 64_000,
        new_flows: 40,
        traffic_read: true,
        drain_remaining_s: Some(30),
        drain_timed_out: false,
        held_s: None,
        slow_start: Some(crate::api::schema::SlowStartStatus {
            percent: 35,
            left_s: 20,
        }),
        state_from: None,
        check: Some(check),
        runtime: false,
    };
    Status {
        interface: "eth0".into(),
        attach: crate::config::Attach::Xdp,
        xdp_mode: Some(crate::config::XdpMode::Native),
        config_file: "/etc/lbd/lbd.toml".into(),
        pin_dir: Some("/sys/fs/bpf/lbd".into()),
        adopted: false,
        maglev_mode: Some(crate::config::MaglevMode::Consistent),
        vips: vec![VipStatus {
            on_backups: false,
            vip: "198.18.0.100:80/tcp".into(),
            table_size: 65_537,
            on_all_down: crate::config::AllDown::Drop,
            all_down: false,
            runtime: false,
            packets: 1000,
            bytes: 64_000,
            new_flows: 40,
            traffic_read: true,
            mode: lb_common::Mode::Nat,
            affinity: lb_common::Affinity::Connection,
            slow_start_s: None,
            nat: Some(crate::api::schema::VipNatStatus {
                source: "198.18.0.50".parse().unwrap(),
                port_min: 1024,
                port_max: 65_535,
                ports_in_use: 12,
                flows: 15,
            }),
            backends: vec![backend],
        }],
        counters: BTreeMap::from([
            ("forwarded".to_owned(), 1000),
            ("pass_not_vip".to_owned(), 7),
            ("drop_malformed".to_owned(), 1),
            ("forwarded_icmp_error".to_owned(), 4),
            ("drop_tcp_flags".to_owned(), 6),
            ("pass_ipv6_ext".to_owned(), 2),
            ("conntrack_hit".to_owned(), 960),
            ("nat_new".to_owned(), 3),
            ("tunnel_encap".to_owned(), 4),
            ("hc_encap".to_owned(), 2),
        ]),
        vrrp: vec![InstanceStatus {
            vrid: 51,
            state: State::Master,
            configured_priority: 150,
            priority: 150,
            master: None,
            addresses: vec!["198.18.0.100".parse().unwrap()],
            counters: Counters::default(),
            ignored: BTreeMap::from([("ttl".to_owned(), 3)]),
            link_down: false,
            link_down_since: None,
            no_source: false,
            no_source_since: None,
        }],
        replication: Some(crate::api::schema::ReplicationStatus {
            connected: true,
            installed: 3,
            unknown: 0,
            nat_installed: 2,
            nat_unknown: 1,
            nat_conflicts: 0,
            nat_table_full: 0,
            nat_failed: 0,
            channel: Default::default(),
            mode: Some(crate::daemon::replication::Topology::FullMesh),
            kept_local: 0,
            stale: 0,
            failed: 0,
            all_peers_dumped: false,
            peers: vec![crate::api::schema::ReplicationPeerStatus {
                address: "198.18.2.12:7946".into(),
                node: Some("lb-b/eth0".into()),
                connected: true,
                records_sent: 7,
                records_received: 11,
                full_dumps_received: 2,
                batches_dropped: 1,
                last_received_s: Some(3),
                last_received_unix_s: Some(1_700_000_100),
                config_compared: true,
                shares_backend_states: true,
                config_mismatches: vec![crate::api::schema::ConfigMismatch {
                    vip: "198.18.0.100:80/tcp".into(),
                    kind: crate::api::schema::MismatchKind::Differs,
                }],
            }],
        }),
        conntrack: ConntrackStatus {
            entries: 5,
            capacity: 1024,
            memory_bytes: 147_456,
            handshakes: 2,
            half_open: 3,
            half_open_capacity: 32_768,
            syn_flood: true,
            syn_flood_for_s: Some(12),
            syn_flood_transitions: 1,
            unanswered_syn_per_s: 80_000,
            half_open_evicted_per_s: 40_000,
        },
        nat: Some(crate::api::schema::NatStatus {
            flows: BTreeMap::from([("established".to_owned(), 15)]),
            capacity: 262_144,
            memory_bytes: 71_303_168,
            swept: true,
            expired: 7,
            orphans: 1,
            backend_gone: 2,
            reap_failed: 4,
            read_errors: 5,
            pressure: true,
        }),
        tunnel: None,
        node: Some(crate::api::schema::NodeStatus {
            dry_run: false,
            state: crate::bgp::NodeState::Active,
            forwarded: 10,
            idle_ms: Some(5),
            bgp: Some(crate::bgp::BgpStatus {
                announced: vec!["198.18.0.100".parse().unwrap()],
                withheld: vec![crate::bgp::WithheldAddress {
                    address: "198.18.0.101".parse().unwrap(),
                    reason: crate::bgp::Withheld::NoHealthyBackend,
                }],
                startup: crate::bgp::StartupStatus::Open(crate::bgp::Opened::PeersSynced),
                in_sync: true,
                applies: 3,
                failures: 1,
                last_error: None,
                bird_config_error: None,
                disabled: Vec::new(),
                sessions: Some(vec![
                    crate::bgp::BgpSession {
                        name: "router1_v4".into(),
                        established: true,
                        info: "Established".into(),
                        exports: vec!["198.18.0.100".parse().unwrap()],
                    },
                    crate::bgp::BgpSession {
                        name: "router2_v4".into(),
                        established: false,
                        info: "Active Socket: Connection refused".into(),
                        exports: Vec::new(),
                    },
                ]),
                sessions_error: None,
                exporting: vec![
                    crate::bgp::AddressExports {
                        address: "198.18.0.100".parse().unwrap(),
                        sessions: 1,
                    },
                    crate::bgp::AddressExports {
                        address: "198.18.0.101".parse().unwrap(),
                        sessions: 0,
                    },
                ],
                bird_socket: "/run/bird/bird.ctl".into(),
                routes_file: "/run/lbd-bgp/vips.conf".into(),
            }),
        }),
        guard: Some(crate::api::schema::GuardStatus {
            rules: vec![crate::api::schema::AclRuleStatus {
                scope: crate::guard::Scope::Global,
                action: crate::guard::Action::Deny,
                source: "198.18.66.0/24".parse().unwrap(),
                id: Some(1),
                packets: 42,
            }],
            ..Default::default()
        }),
        traffic_unread: Default::default(),
        attached: true,
        interface_up: true,
        hook_lost: None,
        tables_rebuilt: 2,
        reloads: ReloadCounts {
            succeeded: 1,
            failed: 0,
        },
        version: "0.1.0".into(),
    }
}

/// The value of sample `name{labels}` in `text`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}
