//! Prometheus metrics (OpenMetrics text, prometheus-client). Everything
//! but two histograms is read at scrape time from the same status view the
//! admin API serves (data-plane per-CPU counters summed then, never per
//! packet in userspace), so `/metrics` and `lbctl status` always agree.
//! Names follow Prometheus conventions: `lbd_` prefix, base units,
//! `_total` counters, labels bounded by configuration (VIP, backend,
//! reason, state), never per flow. One file a part of the status: traffic
//! and tables, backends, VRRP, modes, the node, replication.

mod backends;
mod modes;
mod node;
mod replication;
mod traffic;
mod vrrp;

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

use crate::{api::schema::Status, reconcile::VipId};

/// Every metric family lbd exports, as named in the classic text format
/// (counters with `_total`), with its type: the catalogue dashboards and
/// alert rules are checked against. A unit test keeps it equal to what
/// `render` produces.
pub(crate) const FAMILIES: &[(&str, &str)] = &[
    ("lbd_build_info", "gauge"),
    ("lbd_start_time_seconds", "gauge"),
    ("lbd_dataplane_adopted", "gauge"),
    ("lbd_dataplane_attached", "gauge"),
    ("lbd_interface_up", "gauge"),
    ("lbd_vip_packets_total", "counter"),
    ("lbd_vip_bytes_total", "counter"),
    ("lbd_vip_new_flows_total", "counter"),
    ("lbd_backend_packets_total", "counter"),
    ("lbd_backend_bytes_total", "counter"),
    ("lbd_backend_new_flows_total", "counter"),
    ("lbd_packets_total", "counter"),
    ("lbd_conntrack_events_total", "counter"),
    ("lbd_conntrack_entries", "gauge"),
    ("lbd_conntrack_capacity", "gauge"),
    ("lbd_conntrack_memory_bytes", "gauge"),
    ("lbd_conntrack_handshakes", "gauge"),
    ("lbd_conntrack_half_open_entries", "gauge"),
    ("lbd_conntrack_half_open_capacity", "gauge"),
    ("lbd_syn_flood", "gauge"),
    ("lbd_syn_flood_transitions_total", "counter"),
    ("lbd_acl_rule_packets_total", "counter"),
    ("lbd_backend_state", "gauge"),
    ("lbd_backend_health", "gauge"),
    ("lbd_backend_alive", "gauge"),
    ("lbd_backend_weight", "gauge"),
    ("lbd_backend_share_ratios", "gauge"),
    ("lbd_backend_flows", "gauge"),
    ("lbd_vip_healthy_backends", "gauge"),
    ("lbd_vip_serving_backends", "gauge"),
    ("lbd_vip_backends", "gauge"),
    ("lbd_vip_all_down", "gauge"),
    ("lbd_health_checks_total", "counter"),
    ("lbd_health_check_failures_total", "counter"),
    ("lbd_health_transitions_total", "counter"),
    ("lbd_backend_health_last_change_timestamp_seconds", "gauge"),
    ("lbd_health_check_through_tunnel", "gauge"),
    ("lbd_health_check_duration_seconds", "histogram"),
    ("lbd_maglev_rebuilds_total", "counter"),
    ("lbd_maglev_build_duration_seconds", "histogram"),
    ("lbd_config_reloads_total", "counter"),
    ("lbd_vrrp_state", "gauge"),
    ("lbd_vrrp_priority", "gauge"),
    ("lbd_vrrp_configured_priority", "gauge"),
    ("lbd_vrrp_link_down", "gauge"),
    ("lbd_vrrp_no_source", "gauge"),
    ("lbd_vrrp_transitions_total", "counter"),
    ("lbd_vrrp_resumed_total", "counter"),
    ("lbd_vrrp_adverts_sent_total", "counter"),
    ("lbd_vrrp_adverts_received_total", "counter"),
    ("lbd_vrrp_adverts_ignored_total", "counter"),
    ("lbd_replication_nat_flows_installed_total", "counter"),
    ("lbd_replication_nat_flows_skipped_total", "counter"),
    ("lbd_replication_connected", "gauge"),
    ("lbd_replication_flows_sent_total", "counter"),
    ("lbd_replication_flows_installed_total", "counter"),
    ("lbd_replication_auth_failures_total", "counter"),
    ("lbd_replication_decode_errors_total", "counter"),
    ("lbd_replication_timeouts_total", "counter"),
    ("lbd_replication_sessions_total", "counter"),
    ("lbd_replication_reconnects_total", "counter"),
    ("lbd_replication_batches_dropped_total", "counter"),
    ("lbd_replication_records_dropped_total", "counter"),
    ("lbd_replication_connections_refused_total", "counter"),
    ("lbd_replication_nat_flows_withheld_total", "counter"),
    ("lbd_replication_peer_connected", "gauge"),
    ("lbd_replication_peer_records_sent_total", "counter"),
    ("lbd_replication_peer_records_received_total", "counter"),
    ("lbd_replication_peer_full_dumps_received_total", "counter"),
    ("lbd_replication_peer_batches_dropped_total", "counter"),
    (
        "lbd_replication_peer_last_received_timestamp_seconds",
        "gauge",
    ),
    ("lbd_replication_peer_config_compared", "gauge"),
    ("lbd_replication_peer_backend_states_shared", "gauge"),
    ("lbd_replication_peer_config_mismatch", "gauge"),
    ("lbd_replication_flows_left_out_total", "counter"),
    ("lbd_replication_peers_dumped", "gauge"),
    ("lbd_vip_info", "gauge"),
    ("lbd_nat_events_total", "counter"),
    ("lbd_tunnel_events_total", "counter"),
    ("lbd_hc_events_total", "counter"),
    ("lbd_nat_flows", "gauge"),
    ("lbd_nat_flow_capacity", "gauge"),
    ("lbd_nat_flow_memory_bytes", "gauge"),
    ("lbd_nat_table_pressure", "gauge"),
    ("lbd_nat_reaped_total", "counter"),
    ("lbd_nat_reaper_errors_total", "counter"),
    ("lbd_vip_nat_ports_in_use", "gauge"),
    ("lbd_vip_nat_ports", "gauge"),
    ("lbd_node_drained", "gauge"),
    ("lbd_bgp_announced", "gauge"),
    ("lbd_bgp_in_sync", "gauge"),
    ("lbd_bgp_sessions_established", "gauge"),
    ("lbd_bgp_sessions_exporting", "gauge"),
    ("lbd_bgp_failures_total", "counter"),
];

/// Series names a family gives in queries (a histogram's `_bucket`,
/// `_sum`, `_count` too).
pub fn series_names() -> Vec<String> {
    FAMILIES
        .iter()
        .flat_map(|(name, kind)| {
            let mut names = vec![(*name).to_owned()];
            if *kind == "histogram" {
                names.extend(
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .map(|s| format!("{name}{s}")),
                );
            }
            names
        })
        .collect()
}

/// A metric's labels.
pub(crate) type Labels = Vec<(String, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Metrics that must be kept between scrapes.
#[derive(Debug)]
pub(crate) struct Metrics {
    check_duration: HistogramFamily,
    /// The backends `check_duration` has a series for (a family cannot be
    /// listed), so that those no longer checked can be dropped. Locked
    /// around every change of `check_duration`'s series.
    checked: Mutex<HashSet<(VipId, IpAddr)>>,
    table_build: Histogram,
    /// When this lbd started (Unix time, seconds): a restart shows as a
    /// change, although the scrape may never fail across one.
    started: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn check_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    /// Empty histograms, and the start time: now (made once, as lbd
    /// starts).
    pub(crate) fn new() -> Self {
        Self {
            check_duration: Family::new_with_constructor(check_histogram),
            checked: Mutex::new(HashSet::new()),
            table_build: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        }
    }

    /// Records one health check's duration. `first`: the check's first
    /// probe (a backend added or re-added; a check restarted with new
    /// settings carries its counters over, and the histogram goes on with
    /// them), whose counters start from zero: the histogram starts over
    /// with them.
    pub(crate) fn observe_check(&self, vip: &VipId, backend: IpAddr, took: Duration, first: bool) {
        let labels = check_labels(vip, backend);
        let mut checked = lock(&self.checked);
        if first {
            self.check_duration.remove(&labels);
        }
        checked.insert((*vip, backend));
        self.check_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Drops the check histograms of backends for which `keep` is false
    /// (no longer checked: removed, or their VIP removed), so their series
    /// leave the next scrape like the status-backed ones do.
    pub(crate) fn retain_checks(&self, keep: impl Fn(&VipId, IpAddr) -> bool) {
        lock(&self.checked).retain(|(vip, backend)| {
            let kept = keep(vip, *backend);
            if !kept {
                self.check_duration.remove(&check_labels(vip, *backend));
            }
            kept
        });
    }

    /// Records one Maglev table build's duration.
    pub(crate) fn observe_table_build(&self, took: Duration) {
        self.table_build.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text for `status`.
    pub(crate) fn render(&self, status: &Status) -> String {
        let mut registry = Registry::with_prefix("lbd");
        Exporter {
            registry: &mut registry,
        }
        .export(status, self);
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &registry) {
            return format!("# encoding metrics failed: {error}\n# EOF\n");
        }
        text
    }
}

fn check_labels(vip: &VipId, backend: IpAddr) -> Labels {
    vec![
        ("vip".to_owned(), vip.to_string()),
        ("backend".to_owned(), backend.to_string()),
    ]
}

/// Locks the set of checked backends. Each change under it is one insert
/// or remove, never left half done, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The same metrics in the classic Prometheus text format (0.0.4), for
/// scrapers and tools that do not speak OpenMetrics (e.g. `promtool check
/// metrics`): counters are named with `_total` in HELP/TYPE, and the UNIT
/// and EOF lines go.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            pending_help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(help) = pending_help.take() {
                let text = help.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

struct Exporter<'a> {
    registry: &'a mut Registry,
}

impl Exporter<'_> {
    fn counter(&mut self, name: &str, help: &str, unit: Option<Unit>, values: Vec<(Labels, u64)>) {
        if let [(labels, value)] = values.as_slice() {
            if labels.is_empty() {
                let counter = Counter::<u64>::default();
                counter.inc_by(*value);
                match unit {
                    Some(unit) => self.registry.register_with_unit(name, help, unit, counter),
                    None => self.registry.register(name, help, counter),
                }
                return;
            }
        }
        let family = Family::<Labels, Counter>::default();
        for (labels, value) in values {
            family.get_or_create(&labels).inc_by(value);
        }
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, family),
            None => self.registry.register(name, help, family),
        }
    }

    fn gauge(&mut self, name: &str, help: &str, values: Vec<(Labels, i64)>) {
        if let [(labels, value)] = values.as_slice() {
            if labels.is_empty() {
                let gauge = Gauge::<i64>::default();
                gauge.set(*value);
                self.registry.register(name, help, gauge);
                return;
            }
        }
        let family = Family::<Labels, Gauge>::default();
        for (labels, value) in values {
            family.get_or_create(&labels).set(value);
        }
        self.registry.register(name, help, family);
    }

    fn ratio(&mut self, name: &str, help: &str, values: Vec<(Labels, f64)>) {
        let family = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (labels, value) in values {
            family.get_or_create(&labels).set(value);
        }
        self.registry
            .register_with_unit(name, help, Unit::Ratios, family);
    }

    fn export(mut self, s: &Status, kept: &Metrics) {
        let version = s.version.clone();
        self.gauge(
            "build_info",
            "lbd's version (always 1)",
            vec![(labels(&[("version", &version)]), 1)],
        );
        let started = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        started.set(kept.started);
        self.registry.register(
            "start_time_seconds",
            "When this lbd started, Unix time in seconds: a change is a restart (one quick enough that no scrape failed too)",
            started,
        );
        self.gauge(
            "dataplane_adopted",
            "1 if this lbd adopted the data plane a previous one left running (its flows and pinned counters went on), 0 if it loaded its own",
            vec![(Vec::new(), i64::from(s.adopted))],
        );
        self.gauge(
            "dataplane_attached",
            "1 while lbd's program runs at its hook (and first there, at tc), 0 once lbd lost it (its interface gone, the program detached, or another program ahead of it at tc): nothing is balanced on this node until lbd restarts",
            vec![(Vec::new(), i64::from(s.attached))],
        );
        self.gauge(
            "interface_up",
            "1 while lbd's interface is up with its carrier, 0 otherwise",
            vec![(Vec::new(), i64::from(s.interface_up))],
        );
        self.export_traffic(s);
        self.export_backends(s, kept);
        self.export_changes(s, kept);
        self.export_vrrp(s);
        self.export_modes(s);
        self.export_node(s);
        self.export_replication(s);
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_removed_backend_leaves_no_series_and_a_re_added_one_starts_clean() {
        let metrics = Metrics::new();
        let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let address: IpAddr = "198.18.0.11".parse().unwrap();
        let mut status = full_status();
        for first in [true, false, false] {
            metrics.observe_check(&vip, address, Duration::from_millis(1), first);
        }
        let text = metrics.render(&status);
        assert!(text.contains("backend=\"198.18.0.11\""), "{text}");

        // Removed: from the model (so from the status) and from the checks.
        let removed = status.vips[0].backends.remove(0);
        metrics.retain_checks(|_, backend| backend != address);
        let text = metrics.render(&status);
        assert!(
            !text.contains("198.18.0.11"),
            "series of the removed backend left:\n{text}"
        );

        // Added again: its check starts from zero, the histogram with it.
        let mut again = removed;
        if let Some(check) = &mut again.check {
            check.checks = 2;
        }
        status.vips[0].backends.push(again);
        metrics.observe_check(&vip, address, Duration::from_millis(1), true);
        metrics.observe_check(&vip, address, Duration::from_millis(1), false);
        let text = metrics.render(&status);
        let labels = "vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"";
        assert_eq!(
            sample(&text, "lbd_health_check_duration_seconds_count", labels),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "lbd_health_checks_total", labels),
            sample(&text, "lbd_health_check_duration_seconds_count", labels),
            "{text}"
        );
    }

    #[test]
    fn a_backend_the_data_plane_sends_nothing_does_not_count_as_serving() {
        let mut status = full_status();
        status.vips[0].backends[0].state = BackendState::Enabled;
        let vip = status.vips[0].vip.clone();
        let labels = format!("vip=\"{vip}\"");
        let text = Metrics::new().render(&status);
        assert_eq!(
            sample(&text, "lbd_vip_serving_backends", &labels),
            Some(1.0)
        );
        // Checked up, but not alive: a dsr-l2 backend whose MAC is not
        // known, or one awaiting its first checks.
        status.vips[0].backends[0].alive = false;
        let text = Metrics::new().render(&status);
        assert_eq!(
            sample(&text, "lbd_vip_serving_backends", &labels),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "lbd_vip_healthy_backends", &labels),
            Some(1.0)
        );
    }

    #[test]
    fn one_vrid_per_family_gives_two_instances_series_that_do_not_merge() {
        let mut status = full_status();
        let v4 = status.vrrp[0].clone();
        let mut v6 = v4.clone();
        v6.state = State::Backup;
        v6.priority = 100;
        v6.addresses = vec!["2001:2::100".parse().unwrap()];
        v6.counters.adverts_received = 7;
        status.vrrp = vec![v4, v6];
        let text = Metrics::new().render(&status);
        for (labels, value) in [
            ("vrid=\"51\",family=\"ipv4\",state=\"master\"", 1.0),
            ("vrid=\"51\",family=\"ipv4\",state=\"backup\"", 0.0),
            ("vrid=\"51\",family=\"ipv6\",state=\"master\"", 0.0),
            ("vrid=\"51\",family=\"ipv6\",state=\"backup\"", 1.0),
        ] {
            assert_eq!(
                sample(&text, "lbd_vrrp_state", labels),
                Some(value),
                "{labels}:\n{text}"
            );
        }
        let priority = |family| {
            sample(
                &text,
                "lbd_vrrp_priority",
                &format!("vrid=\"51\",family=\"{family}\""),
            )
        };
        assert_eq!(
            (priority("ipv4"), priority("ipv6")),
            (Some(150.0), Some(100.0))
        );
        let received = |family| {
            sample(
                &text,
                "lbd_vrrp_adverts_received_total",
                &format!("vrid=\"51\",family=\"{family}\""),
            )
        };
        assert_eq!((received("ipv4"), received("ipv6")), (Some(0.0), Some(7.0)));
        // Every VRRP series names its family.
        for line in text.lines().filter(|l| l.starts_with("lbd_vrrp_")) {
            assert!(line.contains("family=\"ipv"), "{line}");
        }
    }

    /// A backup whose link is down will not take over (keepalived's
    /// FAULT): a metric says so, beside the priority configured (the
    /// advertised one is lowered by tracking), and a resumed mastership
    /// is counted apart from the transitions to master.
    #[test]
    fn vrrp_link_down_configured_priority_and_resumes_are_exported() {
        let mut status = full_status();
        let mut backup = status.vrrp[0].clone();
        backup.state = State::Backup;
        backup.priority = 1;
        backup.configured_priority = 100;
        backup.link_down = true;
        backup.link_down_since = Some(1_700_000_000);
        backup.addresses = vec!["2001:2::100".parse().unwrap()];
        status.vrrp[0].counters.resumed = 1;
        status.vrrp.push(backup);
        let text = Metrics::new().render(&status);
        let v4 = "vrid=\"51\",family=\"ipv4\"";
        let v6 = "vrid=\"51\",family=\"ipv6\"";
        assert_eq!(sample(&text, "lbd_vrrp_link_down", v4), Some(0.0), "{text}");
        assert_eq!(sample(&text, "lbd_vrrp_link_down", v6), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "lbd_vrrp_configured_priority", v6),
            Some(100.0),
            "{text}"
        );
        assert_eq!(sample(&text, "lbd_vrrp_priority", v6), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "lbd_vrrp_resumed_total", v4),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "lbd_vrrp_transitions_total",
                "vrid=\"51\",family=\"ipv4\",to=\"master\""
            ),
            Some(0.0),
            "{text}"
        );
    }

    /// An instance whose interface has no address to send adverts from
    /// (keepalived's FAULT for want of one) says so apart from a link
    /// down, so an operator sees why it takes nothing over.
    #[test]
    fn vrrp_no_source_is_exported_apart_from_link_down() {
        let mut status = full_status();
        let mut backup = status.vrrp[0].clone();
        backup.state = State::Backup;
        backup.no_source = true;
        backup.no_source_since = Some(1_700_000_000);
        backup.addresses = vec!["2001:2::100".parse().unwrap()];
        status.vrrp.push(backup);
        let text = Metrics::new().render(&status);
        let v4 = "vrid=\"51\",family=\"ipv4\"";
        let v6 = "vrid=\"51\",family=\"ipv6\"";
        assert_eq!(sample(&text, "lbd_vrrp_no_source", v4), Some(0.0), "{text}");
        assert_eq!(sample(&text, "lbd_vrrp_no_source", v6), Some(1.0), "{text}");
        assert_eq!(sample(&text, "lbd_vrrp_link_down", v6), Some(0.0), "{text}");
    }

    /// A restart shows in Prometheus although the scrape never failed:
    /// the time lbd started, and whether it adopted the data plane a
    /// previous lbd left running.
    #[test]
    fn the_start_time_and_adoption_are_exported() {
        assert!(FAMILIES.contains(&("lbd_start_time_seconds", "gauge")));
        assert!(FAMILIES.contains(&("lbd_dataplane_adopted", "gauge")));
        let mut status = full_status();
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let metrics = Metrics::new();
        let text = metrics.render(&status);
        let start_time = |text: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix("lbd_start_time_seconds "))
                .and_then(|v| v.trim().parse().ok())
        };
        let started = start_time(&text).unwrap_or_default();
        assert!(
            started >= before.floor() && started <= before + 5.0,
            "{started} vs {before}:\n{text}"
        );
        assert!(text.contains("\nlbd_dataplane_adopted 0\n"), "{text}");
        status.adopted = true;
        let again = metrics.render(&status);
        assert!(again.contains("\nlbd_dataplane_adopted 1\n"), "{again}");
        assert_eq!(start_time(&again), Some(started), "the start time stays");
    }

    /// A node that lost its hook (or its link) says so in Prometheus: it
    /// still answers scrapes, and balances nothing.
    #[test]
    fn a_lost_hook_and_a_down_link_are_exported() {
        let mut status = full_status();
        let text = Metrics::new().render(&status);
        assert!(text.contains("\nlbd_dataplane_attached 1\n"), "{text}");
        assert!(text.contains("\nlbd_interface_up 1\n"), "{text}");
        status.attached = false;
        status.interface_up = false;
        let text = Metrics::new().render(&status);
        assert!(text.contains("\nlbd_dataplane_attached 0\n"), "{text}");
        assert!(text.contains("\nlbd_interface_up 0\n"), "{text}");
    }

    #[test]
    fn acl_counts_not_read_are_left_out_rather_than_shown_as_zero() {
        let mut status = full_status();
        let labels = "scope=\"global\",action=\"deny\",source=\"198.18.66.0/24\"";
        let text = Metrics::new().render(&status);
        assert_eq!(
            sample(&text, "lbd_acl_rule_packets_total", labels),
            Some(42.0)
        );
        if let Some(guard) = status.guard.as_mut() {
            guard.counts_unread = true;
            guard.rules[0].packets = 0;
            guard.rules[0].id = None;
        }
        let text = Metrics::new().render(&status);
        assert_eq!(
            sample(&text, "lbd_acl_rule_packets_total", labels),
            None,
            "{text}"
        );
    }

    /// A rule kept for a VIP that is not served (removed at run time) is
    /// not in force: no id, and a count of 0 that is no reset of what it
    /// counted while it was. It has no series until it is in force again.
    #[test]
    fn a_rule_not_in_force_has_no_series() {
        let mut status = full_status();
        let vip = status.vips[0].vip.clone();
        let labels = format!("scope=\"{vip}\",action=\"deny\",source=\"198.18.67.0/24\"");
        let rule = |id, packets| crate::api::schema::AclRuleStatus {
            scope: crate::guard::Scope::Vip(vip.parse().unwrap()),
            action: crate::guard::Action::Deny,
            source: "198.18.67.0/24".parse().unwrap(),
            id,
            packets,
        };
        if let Some(guard) = status.guard.as_mut() {
            guard.rules.push(rule(Some(2), 17));
        }
        let text = Metrics::new().render(&status);
        assert_eq!(
            sample(&text, "lbd_acl_rule_packets_total", &labels),
            Some(17.0),
            "{text}"
        );
        // Its VIP removed: the rule is kept, out of force.
        if let Some(guard) = status.guard.as_mut() {
            guard.rules[1] = rule(None, 0);
        }
        let text = Metrics::new().render(&status);
        assert_eq!(
            sample(&text, "lbd_acl_rule_packets_total", &labels),
            None,
            "{text}"
        );
        // The rules in force keep theirs.
        assert_eq!(
            sample(
                &text,
                "lbd_acl_rule_packets_total",
                "scope=\"global\",action=\"deny\",source=\"198.18.66.0/24\""
            ),
            Some(42.0)
        );
    }

    #[test]
    fn traffic_not_read_is_left_out_rather_than_shown_as_zero() {
        let mut status = full_status();
        let mut other = status.vips[0].clone();
        other.vip = "198.18.0.101:80/tcp".into();
        status.vips.push(other);
        let vip = status.vips[0].vip.clone();
        let address = status.vips[0].backends[0].address;
        // The first VIP's counters and its backend's were not read.
        status.vips[0].packets = 0;
        status.vips[0].backends[0].packets = 0;
        status.traffic_unread = crate::api::schema::UnreadTraffic {
            vips: vec![vip.clone()],
            backends: vec![(vip.clone(), address)],
        };
        let text = Metrics::new().render(&status);
        for family in [
            "lbd_vip_packets_total",
            "lbd_vip_bytes_total",
            "lbd_vip_new_flows_total",
        ] {
            assert_eq!(
                sample(&text, family, &format!("vip=\"{vip}\"")),
                None,
                "{family}:\n{text}"
            );
            assert!(
                sample(&text, family, "vip=\"198.18.0.101:80/tcp\"").is_some(),
                "{family} of the VIP read:\n{text}"
            );
        }
        let labels = format!("vip=\"{vip}\",backend=\"{address}\"");
        for family in [
            "lbd_backend_packets_total",
            "lbd_backend_bytes_total",
            "lbd_backend_new_flows_total",
        ] {
            assert_eq!(sample(&text, family, &labels), None, "{family}:\n{text}");
            assert!(
                sample(
                    &text,
                    family,
                    &format!("vip=\"198.18.0.101:80/tcp\",backend=\"{address}\"")
                )
                .is_some(),
                "{family} of the backend read:\n{text}"
            );
        }
        // The rest of the VIP's series are there.
        assert!(
            text.contains(&format!("lbd_vip_info{{vip=\"{vip}\"")),
            "{text}"
        );
    }

    #[test]
    fn every_counter_lands_in_its_family_verdicts_among_packets() {
        use lb_common::stats::Counter;
        let mut status = full_status();
        status.counters = Counter::ALL
            .iter()
            .map(|c| (c.name().to_owned(), 1))
            .collect();
        let text = Metrics::new().render(&status);
        let packets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("lbd_packets_total{"))
            .collect();
        let verdicts = Counter::ALL.iter().filter(|c| c.is_verdict()).count();
        assert_eq!(packets.len(), verdicts, "{packets:#?}");
        for counter in Counter::ALL.iter().filter(|c| !c.is_verdict()) {
            let (family, event) = counter.name().split_once('_').unwrap();
            let line = format!("lbd_{family}_events_total{{event=\"{event}\"}} 1");
            assert!(text.contains(&line), "{counter:?}: no {line:?} in\n{text}");
        }
    }

    /// The data plane's own failures, a routed packet with no redirect
    /// slot and a VIP packet to another host's MAC have reasons of their
    /// own, under the verdict they get (so the drop-rate alert counts the
    /// first two as drops and leaves the third out with the passes).
    #[test]
    fn internal_no_tx_port_and_foreign_mac_have_reasons_of_their_own() {
        let mut status = full_status();
        status.counters = [
            ("drop_no_tx_port", 3),
            ("drop_internal", 4),
            ("pass_foreign_mac", 5),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        let text = Metrics::new().render(&status);
        for line in [
            "lbd_packets_total{verdict=\"drop\",reason=\"no_tx_port\"} 3",
            "lbd_packets_total{verdict=\"drop\",reason=\"internal\"} 4",
            "lbd_packets_total{verdict=\"pass\",reason=\"foreign_mac\"} 5",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_family_renders_with_its_values() {
        let metrics = Metrics::new();
        metrics.observe_check(
            &"198.18.0.100:80/tcp".parse().unwrap(),
            "198.18.0.11".parse().unwrap(),
            Duration::from_millis(1),
            true,
        );
        metrics.observe_table_build(Duration::from_micros(700));
        let text = metrics.render(&full_status());
        for line in [
            "lbd_vip_packets_total{vip=\"198.18.0.100:80/tcp\"} 1000",
            "lbd_vip_bytes_total{vip=\"198.18.0.100:80/tcp\"} 64000",
            "lbd_backend_new_flows_total{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 40",
            "lbd_packets_total{verdict=\"tx\",reason=\"forwarded\"} 1000",
            "lbd_packets_total{verdict=\"drop\",reason=\"malformed\"} 1",
            "lbd_packets_total{verdict=\"tx\",reason=\"forwarded_icmp_error\"} 4",
            "lbd_packets_total{verdict=\"drop\",reason=\"tcp_flags\"} 6",
            "lbd_packets_total{verdict=\"pass\",reason=\"ipv6_ext\"} 2",
            "lbd_conntrack_events_total{event=\"hit\"} 960",
            "lbd_backend_state{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\",state=\"draining\"} 1",
            "lbd_backend_health{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\",health=\"up\"} 1",
            "lbd_health_check_failures_total{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\",reason=\"refused\"} 2",
            "lbd_health_check_duration_seconds_count{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 1",
            "lbd_maglev_build_duration_seconds_count 1",
            "lbd_vrrp_state{vrid=\"51\",family=\"ipv4\",state=\"master\"} 1",
            "lbd_vrrp_adverts_ignored_total{vrid=\"51\",family=\"ipv4\",reason=\"ttl\"} 3",
            "lbd_conntrack_entries 5",
            "lbd_bgp_sessions_established 1",
            "lbd_bgp_sessions_exporting{address=\"198.18.0.100\"} 1",
            "lbd_bgp_sessions_exporting{address=\"198.18.0.101\"} 0",
            "lbd_conntrack_memory_bytes 147456",
            "lbd_conntrack_handshakes 2",
            "lbd_conntrack_half_open_entries 3",
            "lbd_conntrack_half_open_capacity 32768",
            "lbd_syn_flood 1",
            "lbd_syn_flood_transitions_total 1",
            "lbd_config_reloads_total{result=\"success\"} 1",
            "lbd_build_info{version=\"0.1.0\"} 1",
            "lbd_vip_info{vip=\"198.18.0.100:80/tcp\",mode=\"nat\"} 1",
            "lbd_vip_nat_ports_in_use{vip=\"198.18.0.100:80/tcp\",nat_address=\"198.18.0.50\"} 12",
            "lbd_vip_nat_ports{vip=\"198.18.0.100:80/tcp\",nat_address=\"198.18.0.50\"} 64512",
            "lbd_nat_flows{state=\"established\"} 15",
            "lbd_nat_flows{state=\"syn-sent\"} 0",
            "lbd_nat_flow_capacity 262144",
            "lbd_nat_flow_memory_bytes 71303168",
            "lbd_nat_table_pressure 1",
            "lbd_nat_events_total{event=\"new\"} 3",
            "lbd_nat_reaped_total{reason=\"expired\"} 7",
            "lbd_nat_reaped_total{reason=\"backend_gone\"} 2",
            "lbd_nat_reaper_errors_total{kind=\"removal\"} 4",
            "lbd_nat_reaper_errors_total{kind=\"read\"} 5",
            "lbd_replication_peer_connected{peer=\"198.18.2.12:7946\"} 1",
            "lbd_replication_peer_records_sent_total{peer=\"198.18.2.12:7946\"} 7",
            "lbd_replication_peer_records_received_total{peer=\"198.18.2.12:7946\"} 11",
            "lbd_replication_peer_full_dumps_received_total{peer=\"198.18.2.12:7946\"} 2",
            "lbd_replication_peer_batches_dropped_total{peer=\"198.18.2.12:7946\"} 1",
            "lbd_replication_peer_config_compared{peer=\"198.18.2.12:7946\"} 1",
            "lbd_replication_peer_backend_states_shared{peer=\"198.18.2.12:7946\"} 1",
            "lbd_replication_peer_config_mismatch{peer=\"198.18.2.12:7946\",vip=\"198.18.0.100:80/tcp\",kind=\"differs\"} 1",
            "lbd_replication_flows_left_out_total{reason=\"kept_local\"} 0",
            "lbd_replication_peers_dumped 0",
            "lbd_acl_rule_packets_total{scope=\"global\",action=\"deny\",source=\"198.18.66.0/24\"} 42",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        let typed: std::collections::BTreeSet<(String, String)> = to_prometheus_text(&text)
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, k)| (n.to_owned(), k.to_owned()))
            .collect();
        let catalogue: std::collections::BTreeSet<(String, String)> = FAMILIES
            .iter()
            .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
            .collect();
        assert_eq!(
            typed, catalogue,
            "FAMILIES must list exactly what render exports"
        );
        assert!(!text.contains(".."), "help texts end in one period");
        // promtool (Debian's prometheus package), when present, lints it.
        if let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            use std::io::Write as _;
            let classic = to_prometheus_text(&text);
            child
                .stdin
                .take()
                .unwrap()
                .write_all(classic.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The HELP line of `family` (its name as rendered, `_total` left off
    /// a counter's) in `text`.
    fn help<'t>(text: &'t str, family: &str) -> &'t str {
        let prefix = format!("# HELP {family} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_default()
    }

    /// HELP texts say what is counted: an auth failure closes a session
    /// mid-way too, a NAT VIP's new flows are the NAT table's, and the tc
    /// program counts packets as the XDP one does.
    #[test]
    fn help_texts_say_what_is_counted() {
        let text = Metrics::new().render(&full_status());
        let auth = help(&text, "lbd_replication_auth_failures");
        for word in ["connections closed", "replayed", "reflected", "mid-session"] {
            assert!(auth.contains(word), "{word:?} not in {auth:?}");
        }
        for family in ["lbd_vip_new_flows", "lbd_backend_new_flows"] {
            let said = help(&text, family);
            assert!(said.contains("NAT flow table"), "{family}: {said:?}");
        }
        let packets = help(&text, "lbd_packets");
        assert!(
            packets.contains("XDP or tc") && !packets.contains("seen by the XDP program"),
            "{packets:?}"
        );
    }

    /// Every dashboard query that keeps a backend apart keeps its VIP
    /// apart too: a backend serving two VIPs has a series for each, and
    /// grouping by backend alone would add them up. And what each LB node
    /// sees for itself is never merged across nodes (`$instance` is All by
    /// default): health checks run on every node, so a backend one node
    /// finds down and another up would otherwise read as one flapping
    /// line, and a path broken from one node only (its NIC, its ARP) would
    /// be summed away. So a query on a node's own checks that groups by
    /// backend groups by `instance` too, a raw series (no `by (...)`)
    /// whose legend names `{{vip}}` or `{{backend}}` names `{{instance}}`,
    /// and a query grouped by `instance` names it in its legend. (Traffic
    /// counters add up across nodes: those may be summed by VIP and
    /// backend.)
    #[test]
    fn the_dashboard_never_merges_a_backend_of_two_vips() {
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../observability/grafana/lbd-dashboard.json"
        )))
        .expect("the dashboard is valid JSON");
        let targets: Vec<(&str, &str)> = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| Some((t["expr"].as_str()?, t["legendFormat"].as_str()?)))
            .collect();
        let mut checked = 0;
        let mut checked_per_node = 0;
        for (expr, legend) in &targets {
            let groupings: Vec<Vec<&str>> = expr
                .match_indices("by (")
                .map(|(at, _)| {
                    let rest = &expr[at + 4..];
                    rest[..rest.find(')').unwrap_or(rest.len())]
                        .split(',')
                        .map(str::trim)
                        .collect()
                })
                .collect();
            for grouping in &groupings {
                if grouping.contains(&"backend") {
                    checked += 1;
                    assert!(grouping.contains(&"vip"), "{expr:?} merges VIPs");
                    if expr.contains("lbd_health_check_") {
                        checked_per_node += 1;
                        assert!(
                            grouping.contains(&"instance"),
                            "{expr:?} adds up the health checks of different LB nodes"
                        );
                    }
                }
                if grouping.contains(&"instance") {
                    assert!(
                        legend.contains("{{instance}}"),
                        "{expr:?} keeps nodes apart, but its legend {legend:?} does not say which"
                    );
                }
            }
            if groupings.is_empty()
                && (legend.contains("{{vip}}") || legend.contains("{{backend}}"))
            {
                checked_per_node += 1;
                assert!(
                    legend.contains("{{instance}}"),
                    "{expr:?}: its legend {legend:?} gives two LB nodes' series the same name"
                );
            }
        }
        assert!(checked > 0, "no dashboard query groups by backend");
        assert!(
            checked_per_node > 0,
            "no dashboard query shows what a node sees"
        );
    }

    /// Names a README code span gives: `{a,b}` alternatives expanded,
    /// labels (`{vip}`) and a trailing `*` kept as written.
    fn spelled(span: &str) -> Vec<String> {
        let Some((head, rest)) = span.split_once('{') else {
            return vec![span.to_owned()];
        };
        let Some((choices, tail)) = rest.split_once('}') else {
            return vec![span.to_owned()];
        };
        if !choices.contains(',') || tail.is_empty() {
            // A label set, not alternatives.
            return vec![head.to_owned()];
        }
        choices
            .split(',')
            .flat_map(|c| spelled(&format!("{head}{c}{tail}")))
            .collect()
    }

    #[test]
    fn the_readme_names_every_metric_family() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let names: Vec<String> = readme
            .split('`')
            .skip(1)
            .step_by(2)
            .flat_map(spelled)
            .map(|n| n.trim_start_matches("lbd_").to_owned())
            .collect();
        let missing: Vec<&str> = FAMILIES
            .iter()
            .map(|(name, _)| name.trim_start_matches("lbd_"))
            .filter(|family| {
                !names.iter().any(|n| {
                    n == family
                        || n.strip_suffix('*')
                            .is_some_and(|prefix| family.starts_with(prefix))
                })
            })
            .collect();
        assert!(missing.is_empty(), "README does not name {missing:?}");
    }
}
