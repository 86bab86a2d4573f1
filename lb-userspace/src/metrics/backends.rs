//! Backends as the control plane sees them (admin state, health, weight,
//! share, flows, checks) and the changes it makes (Maglev rebuilds, config
//! reloads).

use prometheus_client::registry::Unit;

use super::{labels, to_i64, Exporter, Metrics};
use crate::api::schema::{BackendState, HealthStatus, Status};

impl Exporter<'_> {
    /// Each backend's state and health (as state sets), its checks, and
    /// each VIP's healthy backends.
    pub(super) fn export_backends(&mut self, s: &Status, kept: &Metrics) {
        let vip = |v: &str| labels(&[("vip", v)]);
        // Backend state and health, as state sets.
        let mut states = Vec::new();
        let mut health = Vec::new();
        let mut alive = Vec::new();
        let mut weights = Vec::new();
        let mut ramps = Vec::new();
        let mut backups = Vec::new();
        let mut shares = Vec::new();
        let mut flows = Vec::new();
        let mut checks = Vec::new();
        let mut through_tunnel = Vec::new();
        let mut failures = Vec::new();
        let mut transitions = Vec::new();
        let mut last_change = Vec::new();
        let mut healthy = Vec::new();
        let mut serving = Vec::new();
        let mut all_down = Vec::new();
        let mut on_backups = Vec::new();
        let nat_swept = super::modes::nat_swept(s);
        for v in &s.vips {
            // A NAT VIP's flows are counted by the NAT reaper's sweeps.
            let flows_measured = v.mode != lb_common::Mode::Nat || nat_swept;
            let mut up = 0;
            let mut takes_new = 0;
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
                let ramp = b.slow_start.map_or(1.0, |r| f64::from(r.percent) / 100.0);
                ramps.push((l(&[]), ramp));
                backups.push((l(&[]), i64::from(b.backup)));
                shares.push((l(&[]), b.share));
                if flows_measured {
                    for (state, n) in [
                        ("live", b.flows.live),
                        ("closing", b.flows.closing),
                        ("idle", b.flows.idle),
                    ] {
                        flows.push((l(&[("state", state)]), to_i64(n)));
                    }
                }
                // A full backend answers but takes no new flow: not healthy.
                if !matches!(b.health, HealthStatus::Down | HealthStatus::Full)
                    && b.state != BackendState::Maintenance
                {
                    up += 1;
                }
                // As the data plane decides: a backend it sends nothing
                // (awaiting its first checks, a dsr-l2 one whose MAC is
                // not known) takes no new flow, whatever its health says;
                // nor does a backup while another backend takes them.
                if b.alive
                    && b.health != HealthStatus::Down
                    && b.state == BackendState::Enabled
                    && b.weight > 0
                    && (!b.backup || v.on_backups)
                {
                    takes_new += 1;
                }
                if let Some(c) = &b.check {
                    checks.push((l(&[]), c.checks));
                    through_tunnel.push((l(&[]), i64::from(c.through_tunnel)));
                    transitions.push((l(&[]), c.transitions));
                    // Unknown before a first change: left out, not 0.
                    if let Some(at) = c.last_change_unix_s {
                        last_change.push((l(&[]), to_i64(at)));
                    }
                    for (reason, n) in &c.failures_by_reason {
                        failures.push((l(&[("reason", reason.as_str())]), *n));
                    }
                }
            }
            healthy.push((vip(&v.vip), up));
            serving.push((vip(&v.vip), takes_new));
            all_down.push((vip(&v.vip), i64::from(v.all_down)));
            on_backups.push((vip(&v.vip), i64::from(v.on_backups)));
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
            "backend_slow_start",
            "Part of its configured weight the backend has: below 1 while it ramps after coming back into rotation (the VIP's slow_start_s)",
            ramps,
        );
        self.gauge(
            "backend_backup",
            "1 for a backup backend: it takes new flows only while no other backend of its VIP can",
            backups,
        );
        self.ratio(
            "backend_share",
            "Share of the VIP's Maglev table (of new flows)",
            shares,
        );
        self.gauge(
            "backend_flows",
            "Tracked flows of the backend, by liveness (a NAT VIP's: as of the NAT reaper's last complete sweep, none before its first)",
            flows,
        );
        self.gauge(
            "vip_healthy_backends",
            "Backends of the VIP that are neither down, full nor in maintenance",
            healthy,
        );
        self.gauge(
            "vip_serving_backends",
            "Backends of the VIP that take new flows: enabled, weighted, not down and sent packets by the data plane (0 while backends exist: new connections fail)",
            serving,
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
        self.gauge(
            "vip_on_backups",
            "1 while the VIP's backup backends take its new flows: no other backend of it can (each down, draining, in maintenance, full or at weight 0)",
            on_backups,
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
            "backend_health_last_change_timestamp_seconds",
            "When the backend's health last changed (up, down, full or unknown), Unix time in seconds; no series before a first change since lbd started or since its check was set up (the changes: lbd_health_transitions_total)",
            last_change,
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
    }

    /// Maglev table rebuilds and their build time, config reloads.
    pub(super) fn export_changes(&mut self, s: &Status, kept: &Metrics) {
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
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::{tests::full_status, Metrics, FAMILIES};

    const LAST_CHANGE: &str = "lbd_backend_health_last_change_timestamp_seconds";

    /// When a backend's health last changed, as Unix time: what an
    /// on-call engineer reads as "down since", left out (not 0, which
    /// would read as 1970) for a backend whose health has not changed
    /// since lbd started. The changes themselves are counted once, in
    /// `lbd_health_transitions_total`.
    #[test]
    fn the_last_health_change_is_a_timestamp_left_out_before_the_first() {
        assert!(FAMILIES.contains(&(LAST_CHANGE, "gauge")));
        let mut status = full_status();
        let check = status.vips[0].backends[0]
            .check
            .as_mut()
            .expect("a checked backend");
        check.last_change_unix_s = Some(1_700_000_000);
        check.transitions = 3;
        let text = Metrics::new().render(&status);
        let labels = "{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"}";
        for line in [
            format!("{LAST_CHANGE}{labels} 1700000000"),
            format!("lbd_health_transitions_total{labels} 3"),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE lbd_health_transitions ").count(),
            1,
            "{text}"
        );

        let check = status.vips[0].backends[0]
            .check
            .as_mut()
            .expect("a checked backend");
        check.last_change_unix_s = None;
        let text = Metrics::new().render(&status);
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with(&format!("{LAST_CHANGE}{{"))),
            "a series before the first change:\n{text}"
        );
    }
}
