//! The status view (`GET /v1/status`, and the metrics page built on it):
//! model, maps and checks together; apart as the one view that reads
//! everything the engine holds.

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use lb_common::{stats::Counter, TrafficCounters};
use tracing::warn;

use super::nat_status::counted_since;
use crate::{
    api::schema::{
        BackendStatus, CheckStatus, ConntrackStatus, HealthStatus, HookLoss, HookLost, Status,
        UnreadTraffic, VipStatus,
    },
    daemon::{
        engine::{tracking::Lost, Engine},
        replication::Replication,
    },
    dataplane::{DataplaneError, Hooked},
    mac::Mac,
    maglev,
    model::AdminState,
    sync::log_limit::LogLimit,
};

/// One VIP's or backend's traffic counters as read (`Dataplane::
/// shown_vip_traffic`: new flows never fewer than shown before; zeros
/// when it is not in the data plane), and whether they were read: on a
/// failed read, zeros marked unread (false), so the status and the lists
/// say so and the metrics leave the series out rather than show a
/// counter reset, and a warning (at most one a minute).
fn traffic_or_unread(
    read: Option<Result<TrafficCounters, DataplaneError>>,
) -> (TrafficCounters, bool) {
    static WARNINGS: Mutex<LogLimit> = Mutex::new(LogLimit::new(Duration::from_secs(60)));
    match read {
        None => (TrafficCounters::default(), true),
        Some(Ok(traffic)) => (traffic, true),
        Some(Err(error)) => {
            let allowed = WARNINGS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allow(Instant::now());
            if let Some(suppressed) = allowed {
                warn!(%error, suppressed, "reading traffic counters failed; their series are left out of this scrape");
            }
            (TrafficCounters::default(), false)
        }
    }
}

impl Engine {
    /// The status view: model, maps and checks together.
    /// Flow counts come from a census (see `flow_census`), never from a
    /// walk of the table here, unless called outside the loop's reads.
    pub fn status(&self) -> Status {
        let census = self.census();
        let sweep = self.nat.reaper.last_sweep();
        let nat_flows = sweep.map(|s| &s.by_backend);
        let now = Instant::now();
        let mut vips = Vec::new();
        let mut unread = UnreadTraffic::default();
        for (id, vip) in &self.model.vips {
            let applied = self.balancer.vips().get(id);
            let shares = applied
                .and_then(|a| a.live_table())
                .map(maglev::shares)
                .unwrap_or_default();
            let (traffic, traffic_read) =
                traffic_or_unread(applied.map(|a| self.dataplane.shown_vip_traffic(a.id)));
            if !traffic_read {
                unread.vips.push(id.to_string());
            }
            let is_nat = vip.config.forwarding == lb_common::Mode::Nat;
            let mut backends = Vec::new();
            for (address, backend) in &vip.backends {
                let applied_backend = applied.and_then(|a| a.backends.get(address));
                let backend_id = applied_backend.map(|b| b.id);
                let (traffic, traffic_read) =
                    traffic_or_unread(backend_id.map(|b| self.dataplane.shown_backend_traffic(b)));
                if !traffic_read {
                    unread.backends.push((id.to_string(), *address));
                }
                let health = backend.config.health.as_ref().unwrap_or(&vip.config.health);
                let changes = self.transitions.get(&(*id, *address));
                let check = self.checker.status(&(*id, *address)).map(|s| CheckStatus {
                    kind: (&s.target.kind).into(),
                    checks: s.checks,
                    failures: s.failures,
                    failures_by_reason: s.failures_by_reason.clone(),
                    transitions: changes.map_or(0, |c| c.count),
                    consecutive_successes: s.consecutive_successes,
                    consecutive_failures: s.consecutive_failures,
                    last: s.last_result.as_ref().map(|r| r.outcome.to_string()),
                    last_label: s
                        .last_result
                        .as_ref()
                        .map(|r| r.outcome.failure_label().unwrap_or("ok").to_owned()),
                    last_latency_ms: s.last_latency().map(|d| d.as_secs_f64() * 1000.0),
                    rise: Some(health.rise),
                    fall: Some(health.fall),
                    last_change_s: changes.and_then(|c| c.since(now)).map(|d| d.as_secs()),
                    last_change_unix_s: changes.and_then(|c| c.last_unix_s()),
                    through_tunnel: s.target.through.is_some(),
                    target: Some(s.target.address.to_string()),
                });
                backends.push(BackendStatus {
                    address: *address,
                    mac: applied_backend.and_then(|b| b.mac).map(Mac::from),
                    port: backend.config.port,
                    weight: backend.config.weight,
                    backup: backend.config.backup,
                    state: backend.admin.state(),
                    health: if check.is_some() {
                        backend.health.into()
                    } else {
                        HealthStatus::Unchecked
                    },
                    alive: applied_backend.is_some_and(|b| b.alive),
                    share: backend_id
                        .and_then(|b| shares.get(&b).copied())
                        .unwrap_or(0.0),
                    // A NAT VIP's flows are in the NAT table, not the
                    // connection table.
                    flows: applied_backend
                        .and_then(|b| {
                            if is_nat {
                                nat_flows.and_then(|n| n.get(&b.id)).copied()
                            } else {
                                Some(census.backend(b.id, b.generation))
                            }
                        })
                        .unwrap_or_default(),
                    // A count from before a drain is no answer for it.
                    flows_counting: if is_nat {
                        !counted_since(sweep, &backend.admin, now)
                    } else {
                        !census.counts_since(&backend.admin)
                    },
                    packets: traffic.packets,
                    bytes: traffic.bytes,
                    new_flows: traffic.new_flows,
                    traffic_read,
                    drain_timed_out: backend.drain_timed_out,
                    held_s: backend
                        .hold_left(&vip.config, now)
                        .map(|left| left.as_secs()),
                    slow_start: backend.ramp_left(&vip.config, now),
                    drain_remaining_s: match backend.admin {
                        AdminState::Draining {
                            deadline: Some(deadline),
                            ..
                        } => Some(deadline.saturating_duration_since(now).as_secs()),
                        _ => None,
                    },
                    state_from: self
                        .admin
                        .stamps
                        .get(&(*id, *address))
                        .and_then(|stamp| stamp.from.as_deref().map(str::to_owned)),
                    check,
                    runtime: backend.runtime,
                });
            }
            vips.push(VipStatus {
                vip: id.to_string(),
                table_size: vip.config.table_size,
                on_all_down: vip.config.on_all_down,
                all_down: vip.all_down(),
                on_backups: vip.on_backups(&|address| self.mac_of(address)),
                runtime: vip.runtime,
                packets: traffic.packets,
                bytes: traffic.bytes,
                new_flows: traffic.new_flows,
                traffic_read,
                mode: vip.config.forwarding,
                affinity: vip.config.affinity,
                slow_start_s: vip.config.slow_start.map(|d| d.as_secs()),
                nat: vip.config.nat.map(|nat| self.vip_nat_status(id, vip, nat)),
                backends,
            });
        }
        let counters: BTreeMap<String, u64> = self
            .dataplane
            .counters()
            .unwrap_or_default()
            .into_iter()
            .map(|(c, v): (Counter, u64)| (c.name().to_owned(), v))
            .collect();
        Status {
            interface: self.interface.name.clone(),
            attach: self.hooked.attach(),
            xdp_mode: match self.hooked {
                Hooked::Xdp(mode) => Some(mode),
                Hooked::Tcx | Hooked::TcClsBpf => None,
            },
            attached: self.link_watch.lost().is_none(),
            interface_up: self.interface_up,
            hook_lost: self.link_watch.lost().map(|(how, since)| HookLost {
                how: match how {
                    Lost::InterfaceGone => HookLoss::InterfaceGone,
                    Lost::Detached => HookLoss::Detached,
                    Lost::Shadowed { by } => HookLoss::Shadowed { by },
                },
                for_secs: since.elapsed().as_secs(),
            }),
            config_file: self.config_path.display().to_string(),
            pin_dir: self
                .config
                .pin_dir
                .as_ref()
                .map(|p| p.display().to_string()),
            adopted: self.dataplane.adopted(),
            maglev_mode: Some(self.config.maglev_mode),
            vips,
            counters,
            vrrp: self.vrrp.iter().map(|i| i.status()).collect(),
            replication: self.replication.as_ref().map(Replication::status),
            conntrack: ConntrackStatus {
                entries: census.entries,
                capacity: self.dataplane.flow_capacity(),
                memory_bytes: self.dataplane.flow_memory_bytes(),
                handshakes: census.handshakes,
                half_open: census
                    .half_open
                    .unwrap_or_else(|| self.dataplane.half_open_count()),
                half_open_capacity: self.dataplane.half_open_capacity(),
                syn_flood: self.flood.in_flood(),
                syn_flood_for_s: self.flood.flood_for(now).map(|d| d.as_secs()),
                syn_flood_transitions: self.flood.transitions(),
                unanswered_syn_per_s: self.flood.rates().unanswered_per_s.round() as u64,
                half_open_evicted_per_s: self.flood.rates().evicted_per_s.round() as u64,
            },
            nat: self.nat_status(),
            tunnel: self.tunnel_status(),
            node: Some(self.node_status()),
            guard: {
                let guard = self.guard_status();
                (!guard.rules.is_empty() || !guard.limits.is_empty()).then_some(guard)
            },
            traffic_unread: unread,
            tables_rebuilt: self.tables_rebuilt,
            reloads: self.reloads,
            version: crate::BUILD_VERSION.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed read of the traffic map gives zeros marked unread (the
    /// status's, `GET /v1/vips`' and `GET /v1/vips/{vip}`'s
    /// `traffic_read: false`), never zeros that pass for a count.
    #[test]
    fn traffic_that_could_not_be_read_is_marked_unread() {
        let counted = TrafficCounters {
            packets: 5,
            bytes: 500,
            new_flows: 1,
        };
        assert_eq!(traffic_or_unread(Some(Ok(counted))), (counted, true));
        // Not in the data plane (yet): nothing carried, which is a count.
        assert_eq!(traffic_or_unread(None), (TrafficCounters::default(), true));
        let failed = traffic_or_unread(Some(Err(DataplaneError::MissingMap("VIP_TRAFFIC"))));
        assert_eq!(failed, (TrafficCounters::default(), false));
    }

    /// The lists carry the marks: a VIP and a backend marked unread say
    /// so in their JSON, and an answer from an lbd before the mark reads
    /// as read.
    #[test]
    fn the_vip_answers_carry_the_unread_marks() {
        let old = serde_json::json!({
            "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
            "all_down": false, "runtime": false, "packets": 0, "bytes": 0, "new_flows": 0,
            "backends": [{
                "address": "198.18.0.11", "weight": 100, "state": "enabled", "health": "up",
                "alive": true, "share": 1.0, "flows": {"live": 0, "closing": 0, "idle": 0},
                "packets": 0, "bytes": 0, "new_flows": 0, "drain_remaining_s": null,
                "check": null, "runtime": false
            }]
        });
        let mut vip: VipStatus = serde_json::from_value(old).unwrap();
        assert!(vip.traffic_read && vip.backends[0].traffic_read);
        vip.traffic_read = false;
        vip.backends[0].traffic_read = false;
        let json = serde_json::to_value(&vip).unwrap();
        assert_eq!(json["traffic_read"], false, "{json}");
        assert_eq!(json["backends"][0]["traffic_read"], false, "{json}");
    }
}
