//! Prometheus metrics (OpenMetrics text, prometheus-client). Everything
//! but two histograms is read at scrape time from the same status view the
//! admin API serves (data-plane per-CPU counters summed then, never per
//! packet in userspace), so `/metrics` and `lbctl status` always agree.
//! Names follow Prometheus conventions: `lbd_` prefix, base units,
//! `_total` counters, labels bounded by configuration (VIP, backend,
//! reason, state), never per flow.

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

use crate::{
    api::schema::{BackendState, HealthStatus, Status},
    reconcile::VipId,
};

/// Every metric family lbd exports, as named in the classic text format
/// (counters with `_total`), with its type: the catalogue dashboards and
/// alert rules are checked against. A unit test keeps it equal to what
/// `render` produces.
pub(crate) const FAMILIES: &[(&str, &str)] = &[
    ("lbd_build_info", "gauge"),
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
    ("lbd_vip_backends", "gauge"),
    ("lbd_vip_all_down", "gauge"),
    ("lbd_health_checks_total", "counter"),
    ("lbd_health_check_failures_total", "counter"),
    ("lbd_health_transitions_total", "counter"),
    ("lbd_health_check_through_tunnel", "gauge"),
    ("lbd_health_check_duration_seconds", "histogram"),
    ("lbd_maglev_rebuilds_total", "counter"),
    ("lbd_maglev_build_duration_seconds", "histogram"),
    ("lbd_config_reloads_total", "counter"),
    ("lbd_vrrp_state", "gauge"),
    ("lbd_vrrp_priority", "gauge"),
    ("lbd_vrrp_transitions_total", "counter"),
    ("lbd_vrrp_adverts_sent_total", "counter"),
    ("lbd_vrrp_adverts_received_total", "counter"),
    ("lbd_vrrp_adverts_ignored_total", "counter"),
    ("lbd_replication_nat_flows_installed_total", "counter"),
    ("lbd_replication_nat_flows_skipped_total", "counter"),
    ("lbd_replication_connected", "gauge"),
    ("lbd_replication_flows_sent_total", "counter"),
    ("lbd_replication_flows_installed_total", "counter"),
    ("lbd_replication_auth_failures_total", "counter"),
    ("lbd_replication_peer_connected", "gauge"),
    ("lbd_replication_peer_records_sent_total", "counter"),
    ("lbd_replication_peer_records_received_total", "counter"),
    ("lbd_replication_peer_full_dumps_received_total", "counter"),
    ("lbd_replication_peer_batches_dropped_total", "counter"),
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
    ("lbd_vip_nat_ports_in_use", "gauge"),
    ("lbd_vip_nat_ports", "gauge"),
    ("lbd_node_drained", "gauge"),
    ("lbd_bgp_announced", "gauge"),
    ("lbd_bgp_in_sync", "gauge"),
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
    /// Empty histograms.
    pub(crate) fn new() -> Self {
        Self {
            check_duration: Family::new_with_constructor(check_histogram),
            checked: Mutex::new(HashSet::new()),
            table_build: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
        }
    }

    /// Records one health check's duration. `first`: the check's first
    /// probe (a backend added or re-added, a check restarted with new
    /// settings), whose counters start from zero: the histogram starts over
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

        // Data plane, per VIP and per backend.
        let vip = |v: &str| labels(&[("vip", v)]);
        let backend = |v: &str, b: &IpAddr| labels(&[("vip", v), ("backend", &b.to_string())]);
        let per_vip = |f: fn(&crate::api::schema::VipStatus) -> u64| -> Vec<(Labels, u64)> {
            s.vips.iter().map(|v| (vip(&v.vip), f(v))).collect()
        };
        let per_backend = |f: fn(&crate::api::schema::BackendStatus) -> u64| -> Vec<(Labels, u64)> {
            s.vips
                .iter()
                .flat_map(|v| {
                    v.backends
                        .iter()
                        .map(move |b| (backend(&v.vip, &b.address), f(b)))
                })
                .collect()
        };
        self.counter(
            "vip_packets",
            "Packets forwarded to the VIP's backends",
            None,
            per_vip(|v| v.packets),
        );
        self.counter(
            "vip",
            "Bytes forwarded to the VIP's backends (whole frames)",
            Some(Unit::Bytes),
            per_vip(|v| v.bytes),
        );
        self.counter(
            "vip_new_flows",
            "Flows new to the connection table, per VIP",
            None,
            per_vip(|v| v.new_flows),
        );
        self.counter(
            "backend_packets",
            "Packets forwarded to the backend",
            None,
            per_backend(|b| b.packets),
        );
        self.counter(
            "backend",
            "Bytes forwarded to the backend (whole frames)",
            Some(Unit::Bytes),
            per_backend(|b| b.bytes),
        );
        self.counter(
            "backend_new_flows",
            "Flows new to the connection table, per backend",
            None,
            per_backend(|b| b.new_flows),
        );

        // Verdicts and events of the XDP program.
        let mut verdicts = Vec::new();
        let mut events: Vec<Vec<_>> = vec![Vec::new(); EVENT_FAMILIES.len()];
        for (name, value) in &s.counters {
            let (kind, reason) = match name.split_once('_') {
                Some(("pass", reason)) => ("pass", reason),
                Some(("drop", reason)) => ("drop", reason),
                Some((family, event)) if EVENT_FAMILIES.iter().any(|f| f.0 == family) => {
                    (family, event)
                }
                _ => ("tx", name.as_str()),
            };
            match EVENT_FAMILIES.iter().position(|f| f.0 == kind) {
                Some(i) => events[i].push((labels(&[("event", reason)]), *value)),
                None => verdicts.push((labels(&[("verdict", kind), ("reason", reason)]), *value)),
            }
        }
        self.counter(
            "packets",
            "Packets seen by the XDP program, by verdict and reason",
            None,
            verdicts,
        );
        for ((family, help), samples) in EVENT_FAMILIES.iter().zip(events) {
            self.counter(&format!("{family}_events"), help, None, samples);
        }
        self.gauge(
            "conntrack_entries",
            "Flows in the connection table",
            vec![(Vec::new(), to_i64(s.conntrack.entries))],
        );
        self.gauge(
            "conntrack_capacity",
            "Flows the connection table holds at most",
            vec![(Vec::new(), to_i64(s.conntrack.capacity))],
        );
        self.gauge(
            "conntrack_memory_bytes",
            "Bytes of kernel memory the connection table takes",
            vec![(Vec::new(), to_i64(s.conntrack.memory_bytes))],
        );
        self.gauge(
            "conntrack_handshakes",
            "Connection-table entries that are TCP handshakes (SYN seen, ACK not yet)",
            vec![(Vec::new(), to_i64(s.conntrack.handshakes))],
        );
        self.gauge(
            "conntrack_half_open_entries",
            "Half-open TCP flows (SYN seen, ACK not yet), held apart from the connection table",
            vec![(Vec::new(), to_i64(s.conntrack.half_open))],
        );
        self.gauge(
            "conntrack_half_open_capacity",
            "Half-open flows the half-open table has room for",
            vec![(Vec::new(), to_i64(s.conntrack.half_open_capacity))],
        );
        self.gauge(
            "syn_flood",
            "1 while lbd sees a SYN flood (unanswered SYNs or half-open evictions over their thresholds), else 0",
            vec![(Vec::new(), i64::from(s.conntrack.syn_flood))],
        );
        self.counter(
            "syn_flood_transitions",
            "Times flood mode was entered or left",
            None,
            vec![(Vec::new(), s.conntrack.syn_flood_transitions)],
        );
        // Per deny/allow rule (bounded by the rules configured).
        let rules = s.guard.iter().flat_map(|g| &g.rules).map(|r| {
            let (scope, action, source) = (
                r.scope.to_string(),
                r.action.to_string(),
                r.source.to_string(),
            );
            (
                labels(&[("scope", &scope), ("action", &action), ("source", &source)]),
                r.packets,
            )
        });
        self.counter(
            "acl_rule_packets",
            "Packets a deny rule dropped or an allow rule let through, per rule",
            None,
            rules.collect(),
        );

        // Backend state and health, as state sets.
        let mut states = Vec::new();
        let mut health = Vec::new();
        let mut alive = Vec::new();
        let mut weights = Vec::new();
        let mut shares = Vec::new();
        let mut flows = Vec::new();
        let mut checks = Vec::new();
        let mut through_tunnel = Vec::new();
        let mut failures = Vec::new();
        let mut transitions = Vec::new();
        let mut healthy = Vec::new();
        let mut all_down = Vec::new();
        for v in &s.vips {
            let mut up = 0;
            for b in &v.backends {
                let address = b.address.to_string();
                let l = |extra: &[(&str, &str)]| {
                    let mut pairs = vec![("vip", v.vip.as_str()), ("backend", address.as_str())];
                    pairs.extend_from_slice(extra);
                    labels(&pairs)
                };
                for state in BackendState::ALL {
                    states.push((l(&[("state", state.as_str())]), i64::from(b.state == state)));
                }
                for h in HealthStatus::ALL {
                    health.push((l(&[("health", h.as_str())]), i64::from(b.health == h)));
                }
                alive.push((l(&[]), i64::from(b.alive)));
                weights.push((l(&[]), i64::from(b.weight)));
                shares.push((l(&[]), b.share));
                for (state, n) in [
                    ("live", b.flows.live),
                    ("closing", b.flows.closing),
                    ("idle", b.flows.idle),
                ] {
                    flows.push((l(&[("state", state)]), to_i64(n)));
                }
                if b.health != HealthStatus::Down && b.state != BackendState::Maintenance {
                    up += 1;
                }
                if let Some(c) = &b.check {
                    checks.push((l(&[]), c.checks));
                    through_tunnel.push((l(&[]), i64::from(c.through_tunnel)));
                    transitions.push((l(&[]), c.transitions));
                    for (reason, n) in &c.failures_by_reason {
                        failures.push((l(&[("reason", reason.as_str())]), *n));
                    }
                }
            }
            healthy.push((vip(&v.vip), up));
            all_down.push((vip(&v.vip), i64::from(v.all_down)));
        }
        self.gauge(
            "backend_state",
            "Admin state of the backend (1 for its current state)",
            states,
        );
        self.gauge(
            "backend_health",
            "Health of the backend (1 for its current health)",
            health,
        );
        self.gauge(
            "backend_alive",
            "Whether the data plane sends the backend packets",
            alive,
        );
        self.gauge(
            "backend_weight",
            "Configured weight of the backend",
            weights,
        );
        self.ratio(
            "backend_share",
            "Share of the VIP's Maglev table (of new flows)",
            shares,
        );
        self.gauge(
            "backend_flows",
            "Tracked flows of the backend, by liveness",
            flows,
        );
        self.gauge(
            "vip_healthy_backends",
            "Backends of the VIP that are neither down nor in maintenance",
            healthy,
        );
        self.gauge(
            "vip_backends",
            "Backends of the VIP",
            s.vips
                .iter()
                .map(|v| (vip(&v.vip), to_i64(v.backends.len() as u64)))
                .collect(),
        );
        self.gauge(
            "vip_all_down",
            "1 when no backend of the VIP meant to take flows is healthy",
            all_down,
        );
        self.counter("health_checks", "Health checks run", None, checks);
        self.counter(
            "health_check_failures",
            "Health checks failed, by reason",
            None,
            failures,
        );
        self.counter(
            "health_transitions",
            "Health state changes of the backend",
            None,
            transitions,
        );
        self.gauge(
            "health_check_through_tunnel",
            "1 when the backend's checks go to the VIP through its tunnel (health.through_tunnel), 0 when to its own address",
            through_tunnel,
        );
        self.registry.register_with_unit(
            "health_check_duration",
            "Duration of health checks",
            Unit::Seconds,
            kept.check_duration.clone(),
        );
        self.counter(
            "maglev_rebuilds",
            "Maglev tables rebuilt and flipped",
            None,
            vec![(Vec::new(), s.tables_rebuilt)],
        );
        self.registry.register_with_unit(
            "maglev_build_duration",
            "Time to build one Maglev table",
            Unit::Seconds,
            kept.table_build.clone(),
        );
        self.counter(
            "config_reloads",
            "Config reloads, by result",
            None,
            vec![
                (labels(&[("result", "success")]), s.reloads.succeeded),
                (labels(&[("result", "failure")]), s.reloads.failed),
            ],
        );

        // VRRP.
        let mut vrrp_state = Vec::new();
        let mut vrrp_priority = Vec::new();
        let mut vrrp_transitions = Vec::new();
        let mut sent = Vec::new();
        let mut received = Vec::new();
        let mut ignored = Vec::new();
        for i in &s.vrrp {
            let vrid = i.vrid.to_string();
            for state in ["initialize", "backup", "master"] {
                vrrp_state.push((
                    labels(&[("vrid", &vrid), ("state", state)]),
                    i64::from(i.state.to_string() == state),
                ));
            }
            vrrp_priority.push((labels(&[("vrid", &vrid)]), i64::from(i.priority)));
            vrrp_transitions.push((
                labels(&[("vrid", &vrid), ("to", "master")]),
                i.counters.became_master,
            ));
            vrrp_transitions.push((
                labels(&[("vrid", &vrid), ("to", "backup")]),
                i.counters.became_backup,
            ));
            sent.push((labels(&[("vrid", &vrid)]), i.counters.adverts_sent));
            received.push((labels(&[("vrid", &vrid)]), i.counters.adverts_received));
            for (reason, n) in &i.ignored {
                ignored.push((labels(&[("vrid", &vrid), ("reason", reason.as_str())]), *n));
            }
        }
        self.gauge(
            "vrrp_state",
            "VRRP state of the instance (1 for its current state)",
            vrrp_state,
        );
        self.gauge(
            "vrrp_priority",
            "Priority the instance advertises (after tracking)",
            vrrp_priority,
        );
        self.counter(
            "vrrp_transitions",
            "VRRP state changes",
            None,
            vrrp_transitions,
        );
        self.counter("vrrp_adverts_sent", "VRRP advertisements sent", None, sent);
        self.counter(
            "vrrp_adverts_received",
            "Valid VRRP advertisements received",
            None,
            received,
        );
        self.counter(
            "vrrp_adverts_ignored",
            "VRRP packets ignored, by reason",
            None,
            ignored,
        );

        self.export_modes(s);
        self.export_node(s);

        // Replication (families present but empty when it is off).
        let one = |v: u64| vec![(Vec::new(), v)];
        let (connected, sent, installed, refused) = match &s.replication {
            Some(r) => (
                vec![(Vec::new(), i64::from(r.connected))],
                one(r.channel.records_sent),
                one(r.installed),
                one(r.channel.auth_failures),
            ),
            None => (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        };
        let (nat_installed, nat_skipped) = match &s.replication {
            Some(r) => (
                one(r.nat_installed),
                vec![
                    (labels(&[("reason", "unknown")]), r.nat_unknown),
                    (labels(&[("reason", "conflict")]), r.nat_conflicts),
                ],
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.gauge(
            "replication_connected",
            "Whether the replication session to the peer is up",
            connected,
        );
        self.counter(
            "replication_flows_sent",
            "Flows sent to the peer",
            None,
            sent,
        );
        self.counter(
            "replication_flows_installed",
            "Flows installed from the peer",
            None,
            installed,
        );
        self.counter(
            "replication_auth_failures",
            "Replication sessions refused for a bad key or tag",
            None,
            refused,
        );
        self.export_replication_peers(s);
        self.counter(
            "replication_nat_flows_installed",
            "NAT'd flows installed from the peer",
            None,
            nat_installed,
        );
        self.counter(
            "replication_nat_flows_skipped",
            "NAT'd flows from the peer left out: unknown VIP or backend here, or another flow holds their key",
            None,
            nat_skipped,
        );
    }
}

impl Exporter<'_> {
    /// Replication per peer (label `peer`, the configured address), the
    /// flows left out for a fresher local entry, and the start-up signal.
    fn export_replication_peers(&mut self, s: &Status) {
        let peers = s.replication.iter().flat_map(|r| r.peers.iter());
        let per_peer = |f: fn(&crate::api::schema::ReplicationPeerStatus) -> u64| {
            peers
                .clone()
                .map(|p| (labels(&[("peer", &p.address)]), f(p)))
                .collect::<Vec<_>>()
        };
        self.gauge(
            "replication_peer_connected",
            "Whether this node's replication session to the peer is up",
            peers
                .clone()
                .map(|p| (labels(&[("peer", &p.address)]), i64::from(p.connected)))
                .collect(),
        );
        self.counter(
            "replication_peer_records_sent",
            "Records (flows and NAT'd flows) sent to the peer",
            None,
            per_peer(|p| p.records_sent),
        );
        self.counter(
            "replication_peer_records_received",
            "Records received from the peer",
            None,
            per_peer(|p| p.records_received),
        );
        self.counter(
            "replication_peer_full_dumps_received",
            "Complete full dumps received from the peer",
            None,
            per_peer(|p| p.full_dumps_received),
        );
        self.counter(
            "replication_peer_batches_dropped",
            "Batches for the peer dropped from its full send queue (a later full dump repairs them)",
            None,
            per_peer(|p| p.batches_dropped),
        );
        let (left_out, dumped) = match &s.replication {
            Some(r) => (
                vec![
                    (labels(&[("reason", "kept_local")]), r.kept_local),
                    (labels(&[("reason", "stale")]), r.stale),
                ],
                vec![(Vec::new(), i64::from(r.all_peers_dumped))],
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.counter(
            "replication_flows_left_out",
            "Flows from a peer left out because this node's own entry was fresher (kept_local: it names another backend)",
            None,
            left_out,
        );
        self.gauge(
            "replication_peers_dumped",
            "Whether every replication peer has delivered a complete full dump since start",
            dumped,
        );
    }

    /// Forwarding modes and the NAT flow table: the mode joins per-VIP
    /// series as an info metric (`lbd_vip_info{vip,mode} 1`, used as
    /// `* on(vip) group_left(mode) lbd_vip_info`), so no existing series
    /// changes its labels.
    fn export_modes(&mut self, s: &Status) {
        let mut info = Vec::new();
        let mut in_use = Vec::new();
        let mut ranges = Vec::new();
        for v in &s.vips {
            info.push((labels(&[("vip", &v.vip), ("mode", &v.mode)]), 1));
            if let Some(nat) = &v.nat {
                let source = nat.source.to_string();
                let l = labels(&[("vip", &v.vip), ("nat_address", &source)]);
                in_use.push((l.clone(), to_i64(nat.ports_in_use)));
                let size = u32::from(nat.port_max)
                    .saturating_sub(u32::from(nat.port_min))
                    .saturating_add(1);
                ranges.push((l, i64::from(size)));
            }
        }
        self.gauge("vip_info", "The VIP's forwarding mode (always 1)", info);
        self.gauge(
            "vip_nat_ports_in_use",
            "NAT source ports in use towards the VIP's busiest backend (they run out per NAT address and backend)",
            in_use,
        );
        self.gauge(
            "vip_nat_ports",
            "NAT source ports the VIP's NAT address hands out per backend",
            ranges,
        );
        let pressure = s
            .nat
            .as_ref()
            .map(|nat| vec![(Vec::new(), i64::from(nat.pressure))]);
        let memory = s
            .nat
            .as_ref()
            .map(|nat| vec![(Vec::new(), to_i64(nat.memory_bytes))]);
        let (flows, capacity, reaped) = match &s.nat {
            Some(nat) => (
                lb_common::nat::NatFlowState::ALL
                    .iter()
                    .map(|state| {
                        let n = nat.flows.get(state.name()).copied().unwrap_or(0);
                        (labels(&[("state", state.name())]), to_i64(n))
                    })
                    .collect(),
                vec![(Vec::new(), to_i64(nat.capacity))],
                vec![
                    (labels(&[("reason", "expired")]), nat.expired),
                    (labels(&[("reason", "orphan")]), nat.orphans),
                    (labels(&[("reason", "backend_gone")]), nat.backend_gone),
                ],
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        self.gauge(
            "nat_flows",
            "Translated flows, by state, as of the reaper's last complete sweep",
            flows,
        );
        self.gauge(
            "nat_flow_capacity",
            "Entries the NAT flow table holds at most (two per flow)",
            capacity,
        );
        self.gauge(
            "nat_flow_memory_bytes",
            "Bytes of kernel memory the NAT flow table takes",
            memory.unwrap_or_default(),
        );
        self.gauge(
            "nat_table_pressure",
            "1 while the NAT flow table (or a backend's source ports) is nearly full and closed flows are freed after a second",
            pressure.unwrap_or_default(),
        );
        self.counter(
            "nat_reaped",
            "NAT flows freed by the reaper, by reason",
            None,
            reaped,
        );
    }
}

impl Exporter<'_> {
    /// The node's state and its BGP announcements.
    fn export_node(&mut self, s: &Status) {
        let Some(node) = &s.node else {
            return;
        };
        let drained = i64::from(node.state == crate::bgp::NodeState::Drained);
        self.gauge(
            "node_drained",
            "1 while the operator has drained the node (lbctl node drain)",
            vec![(Vec::new(), drained)],
        );
        let Some(bgp) = &node.bgp else {
            return;
        };
        let mut announced: Vec<(Labels, i64)> = bgp
            .announced
            .iter()
            .map(|a| (labels(&[("address", &a.to_string()), ("reason", "")]), 1))
            .collect();
        announced.extend(bgp.withheld.iter().map(|w| {
            (
                labels(&[
                    ("address", &w.address.to_string()),
                    ("reason", w.reason.name()),
                ]),
                0,
            )
        }));
        self.gauge(
            "bgp_announced",
            "1 while BIRD announces the VIP address; 0 while withdrawn, with the reason",
            announced,
        );
        self.gauge(
            "bgp_in_sync",
            "1 when BIRD has accepted the routes lbd wants announced",
            vec![(Vec::new(), i64::from(bgp.in_sync))],
        );
        self.counter(
            "bgp_failures",
            "Writes of the routes file or BIRD reconfigures that failed",
            None,
            vec![(Vec::new(), bgp.failures)],
        );
    }
}

/// Every NAT flow state, so each has a series from the first scrape.
/// Families of data-plane event counters (a counter named
/// `<family>_<event>`), each rendered as `lbd_<family>_events_total`.
const EVENT_FAMILIES: [(&str, &str); 4] = [
    (
        "conntrack",
        "Connection-table events (hit, new, rehash, insert_failed)",
    ),
    (
        "nat",
        "NAT flow table events (new: a flow got its source port; hit: a packet found its translation)",
    ),
    (
        "tunnel",
        "Tunnelled-mode events (encap: a packet was encapsulated to its backend)",
    ),
    (
        "hc",
        "Data-path health checks (encap: a check packet was encapsulated to its backend; drop: it could not be)",
    ),
];

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        api::schema::{
            BackendStatus, CheckKind, CheckStatus, ConntrackStatus, ReloadCounts, VipStatus,
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
            last_latency_ms: Some(0.4),
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
            packets: 1000,
            bytes: 64_000,
            new_flows: 40,
            drain_remaining_s: Some(30),
            drain_timed_out: false,
            check: Some(check),
            runtime: false,
        };
        Status {
            interface: "eth0".into(),
            attach: "xdp".into(),
            xdp_mode: "native".into(),
            config_file: "/etc/lbd/lbd.toml".into(),
            pin_dir: Some("/sys/fs/bpf/lbd".into()),
            adopted: false,
            maglev_mode: "consistent".into(),
            vips: vec![VipStatus {
                vip: "198.18.0.100:80/tcp".into(),
                table_size: 65_537,
                on_all_down: crate::config::AllDown::Drop,
                all_down: false,
                runtime: false,
                packets: 1000,
                bytes: 64_000,
                new_flows: 40,
                mode: "nat".into(),
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
                addresses: vec![],
                counters: Counters::default(),
                ignored: BTreeMap::from([("ttl".to_owned(), 3)]),
            }],
            replication: Some(crate::api::schema::ReplicationStatus {
                connected: true,
                installed: 3,
                unknown: 0,
                nat_installed: 2,
                nat_unknown: 1,
                nat_conflicts: 0,
                channel: Default::default(),
                mode: "full-mesh".into(),
                kept_local: 0,
                stale: 0,
                all_peers_dumped: false,
                peers: vec![crate::api::schema::ReplicationPeerStatus {
                    address: "198.18.2.12:7946".into(),
                    node: Some("lb-b/eth0".into()),
                    connected: true,
                    records_sent: 7,
                    records_received: 11,
                    full_dumps_received: 2,
                    batches_dropped: 1,
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
                pressure: true,
            }),
            tunnel: None,
            node: Some(crate::api::schema::NodeStatus {
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
            "lbd_vrrp_state{vrid=\"51\",state=\"master\"} 1",
            "lbd_vrrp_adverts_ignored_total{vrid=\"51\",reason=\"ttl\"} 3",
            "lbd_conntrack_entries 5",
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
            "lbd_replication_peer_connected{peer=\"198.18.2.12:7946\"} 1",
            "lbd_replication_peer_records_sent_total{peer=\"198.18.2.12:7946\"} 7",
            "lbd_replication_peer_records_received_total{peer=\"198.18.2.12:7946\"} 11",
            "lbd_replication_peer_full_dumps_received_total{peer=\"198.18.2.12:7946\"} 2",
            "lbd_replication_peer_batches_dropped_total{peer=\"198.18.2.12:7946\"} 1",
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
}
