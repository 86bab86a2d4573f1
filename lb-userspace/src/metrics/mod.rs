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
    ("lbd_backend_backup", "gauge"),
    ("lbd_backend_slow_start_ratios", "gauge"),
    ("lbd_backend_share_ratios", "gauge"),
    ("lbd_backend_flows", "gauge"),
    ("lbd_vip_healthy_backends", "gauge"),
    ("lbd_vip_serving_backends", "gauge"),
    ("lbd_vip_backends", "gauge"),
    ("lbd_vip_all_down", "gauge"),
    ("lbd_vip_on_backups", "gauge"),
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
mod tests;
