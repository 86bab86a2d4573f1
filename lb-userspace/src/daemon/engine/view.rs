//! What the engine shows: the status view (model, maps and checks
//! together), a backend's flows, the running config, and where one flow
//! goes. Reads only.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use lb_common::{stats::Counter, TrafficCounters};
use tracing::warn;

use super::{tracking::Lost, Engine};
use crate::{
    api::{
        code,
        schema::{
            BackendStatus, CheckStatus, ConfigText, ConntrackStatus, HealthStatus, HookLoss,
            HookLost, NatStatus, Status, UnreadTraffic, VipNatStatus, VipStatus,
        },
        Response,
    },
    config::{self, Protocol, VipNat},
    daemon::{
        flow::{explain, flow_key, Facts},
        replication::Replication,
    },
    dataplane::{DataplaneError, Hooked},
    mac::Mac,
    maglev,
    model::{AdminState, BackendState, FlowCount, Model, ModelError, VipModel},
    nat::reaper::SweepStats,
    sync::log_limit::LogLimit,
    vip_id::VipId,
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

/// Whether `sweep` (the NAT reaper's last complete one) counts a
/// backend's flows as of its admin state: it exists, and for a draining
/// backend it started after the drain did (a flow that ended before the
/// drain is not in an earlier sweep's count, but one opened just before
/// may be missing from it).
fn counted_since(sweep: Option<&SweepStats>, admin: &AdminState, now: Instant) -> bool {
    let Some(sweep) = sweep else {
        return false;
    };
    match admin {
        AdminState::Draining { since, .. } => {
            let ago = now.saturating_duration_since(*since).as_nanos();
            let since_ns = u128::from(crate::clock::monotonic_ns()).saturating_sub(ago);
            u128::from(sweep.started_ns) >= since_ns
        }
        _ => true,
    }
}

/// The dump's answer for `toml` (with `notes` on what it leaves out):
/// the text is loaded as a start loads a config file, and a refusal is
/// the answer's `load_error`, so `lbctl config dump` does not hand out a
/// file lbd would not start with (a `[bgp]` address whose VIP was removed
/// at run time, a runtime NAT VIP whose address an instance moves but
/// not its NAT address).
fn checked_dump(toml: String, notes: Vec<String>) -> ConfigText {
    let load_error = config::Config::from_toml_str(&toml, "the running configuration")
        .err()
        .map(|error| error.to_string());
    ConfigText {
        toml,
        notes,
        load_error,
    }
}

/// Backend `address`'s admin state in `model` (None: VIP `id` has no such
/// backend, or there is no such VIP). The model holds it: no census.
fn admin_state_of(model: &Model, id: &VipId, address: IpAddr) -> Option<BackendState> {
    model.backend(id, address).ok().map(|b| b.admin.state())
}

impl Engine {
    /// Backend `address` of VIP `id`'s admin state (None: no such
    /// backend), for a state change asked only `from` a state: read from
    /// the model, unlike [`Self::status`], whose census would walk the
    /// whole connection table in the loop's step.
    pub(crate) fn backend_state(&self, id: &VipId, address: IpAddr) -> Option<BackendState> {
        admin_state_of(&self.model, id, address)
    }

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
                    drain_remaining_s: match backend.admin {
                        AdminState::Draining {
                            deadline: Some(deadline),
                            ..
                        } => Some(deadline.saturating_duration_since(now).as_secs()),
                        _ => None,
                    },
                    check,
                    runtime: backend.runtime,
                });
            }
            vips.push(VipStatus {
                vip: id.to_string(),
                table_size: vip.config.table_size,
                on_all_down: vip.config.on_all_down,
                all_down: vip.all_down(),
                runtime: vip.runtime,
                packets: traffic.packets,
                bytes: traffic.bytes,
                new_flows: traffic.new_flows,
                traffic_read,
                mode: vip.config.forwarding,
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

    /// A NAT VIP's NAT address and port usage, from the reaper's last
    /// complete sweep.
    fn vip_nat_status(&self, id: &VipId, vip: &VipModel, nat: VipNat) -> VipNatStatus {
        let applied = self.balancer.vips().get(id);
        let ids: Vec<u32> = applied
            .map(|a| a.backends.values().map(|b| b.id).collect())
            .unwrap_or_default();
        let sweep = self.nat.reaper.last_sweep();
        let ports_in_use = sweep.map_or(0, |s| {
            // A NAT backend listens on its own port, if it has one.
            let backends = vip
                .backends
                .iter()
                .map(|(address, b)| (*address, b.config.port.unwrap_or(id.port)));
            s.busiest_towards(nat.source, id.protocol.number(), backends)
        });
        let flows = sweep.map_or(0, |s| {
            ids.iter()
                .filter_map(|b| s.by_backend.get(b))
                .map(|c| c.live + c.closing + c.idle)
                .sum()
        });
        VipNatStatus {
            source: nat.source,
            port_min: nat.port_min,
            port_max: nat.port_max,
            ports_in_use,
            flows,
        }
    }

    /// The NAT flow table in the status (None while no VIP is in NAT
    /// mode and the table is empty).
    fn nat_status(&self) -> Option<NatStatus> {
        let sweep = self.nat.reaper.last_sweep();
        let in_use = self
            .model
            .vips
            .values()
            .any(|v| v.config.forwarding == lb_common::Mode::Nat);
        if !in_use && sweep.is_none_or(|s| s.flows.is_empty()) {
            return None;
        }
        let reaped = self.nat.reaper.reaped();
        Some(NatStatus {
            flows: sweep
                .map(|s| {
                    s.flows
                        .iter()
                        .map(|(state, n)| ((*state).to_owned(), *n))
                        .collect()
                })
                .unwrap_or_default(),
            capacity: u64::from(self.dataplane.sizes().nat_flows),
            memory_bytes: self.dataplane.nat_memory_bytes(),
            swept: sweep.is_some(),
            expired: reaped.expired,
            orphans: reaped.orphans,
            backend_gone: reaped.backend_gone,
            reap_failed: reaped.failed,
            read_errors: self.nat.reaper.read_errors,
            pressure: self.nat.pressure.on(),
        })
    }

    /// VIP `id`'s forwarding mode, None if there is no such VIP (a
    /// request naming it is then answered as one for a missing VIP).
    pub(crate) fn vip_mode(&self, id: &VipId) -> Option<lb_common::Mode> {
        self.model.vips.get(id).map(|v| v.config.forwarding)
    }

    /// VIP `id`'s running configuration, None if there is no such VIP: a
    /// backend added to it is checked against its mode and starts from its
    /// health checks.
    pub(crate) fn vip_config(&self, id: &VipId) -> Option<&crate::config::VipConfig> {
        self.model.vips.get(id).map(|v| &v.config)
    }

    /// A backend's tracked flows by liveness (a census's, see `status`).
    pub(crate) fn backend_flows(
        &self,
        id: &VipId,
        address: IpAddr,
    ) -> Result<FlowCount, ModelError> {
        self.model.backend(id, address)?;
        let applied = self
            .balancer
            .vips()
            .get(id)
            .and_then(|v| v.backends.get(&address));
        if self.vip_mode(id) == Some(lb_common::Mode::Nat) {
            // As of the reaper's last complete sweep.
            let sweep = self.nat.reaper.last_sweep();
            return Ok(applied
                .and_then(|b| sweep.and_then(|s| s.by_backend.get(&b.id)).copied())
                .unwrap_or_default());
        }
        Ok(applied
            .map(|b| self.census().backend(b.id, b.generation))
            .unwrap_or_default())
    }

    /// The running configuration (runtime changes included) as TOML.
    /// What a file cannot hold is left out and named in its notes, and a
    /// text the loader would still refuse says so.
    pub(crate) fn config_text(&self) -> ConfigText {
        let mut running = self.model.to_config(&self.config);
        let (guard, notes) = self
            .guard
            .config()
            .of_served(&|id| self.model.vips.contains_key(id));
        running.guard = guard;
        checked_dump(config::to_toml(&running), notes)
    }

    /// Answers the endpoint: looks the flow up in the connection table (and
    /// the half-open table) and explains it. 404 for an unknown VIP; 500 when the maps cannot be read.
    pub(crate) fn explain_flow(&self, vip: &VipId, client: SocketAddr) -> Response {
        let model = match self.model.vip(vip) {
            Ok(model) => model,
            Err(error) => return Response::error(404, code::NOT_FOUND, error.to_string()),
        };
        let Some(applied) = self.balancer.vips().get(vip) else {
            return Response::error(
                500,
                code::INTERNAL,
                format!(
                    "VIP {vip} is not in the data plane ({})",
                    ModelError::NoVip(*vip)
                ),
            );
        };
        let key = flow_key(vip, client);
        let entry = match self.dataplane.flow(&key) {
            Ok(entry) => entry,
            Err(error) => return Response::error(500, code::INTERNAL, error.to_string()),
        };
        // As the data plane: the half-open table only for a TCP flow the
        // connection table does not hold.
        let half_open = match (entry, vip.protocol) {
            (None, Protocol::Tcp) => self.dataplane.half_open_flow(&key),
            _ => None,
        };
        // lbd's record of the live table; after a failed write it is unknown,
        // so read what packets read.
        let table: Cow<'_, [u32]> = match applied.live_table() {
            Some(table) => Cow::Borrowed(table),
            None => match self
                .dataplane
                .read_table(applied.id, applied.active, applied.table_size)
            {
                Ok(table) => Cow::Owned(table),
                Err(error) => return Response::error(500, code::INTERNAL, error.to_string()),
            },
        };
        let idle_timeout = match vip.protocol {
            Protocol::Tcp => self.config.tcp_idle_timeout,
            Protocol::Udp => self.config.udp_idle_timeout,
        };
        let facts = Facts {
            vip: *vip,
            client,
            model,
            applied,
            table: &table,
            entry,
            half_open,
            now_ns: crate::clock::monotonic_ns(),
            idle_timeout,
        };
        let mut explanation = explain(&facts);
        if applied.mode.is_tunnel() {
            explanation.tunnel = explanation.backend.as_ref().and_then(|b| {
                crate::daemon::tunnel_flow::encapsulation(
                    applied.mode,
                    &self.balancer.tunnel().config,
                    vip.address,
                    client,
                    b.address,
                )
            });
        }
        if applied.mode != lb_common::Mode::Nat {
            return Response::ok(explanation);
        }
        let nat = self.dataplane.nat();
        let forward = nat.flow(&key);
        let reply = forward
            .as_ref()
            .and_then(|f| nat.flow(&lb_common::nat::counterpart_key(&key, f)));
        Response::ok(crate::daemon::nat_flow::with_translation(
            explanation,
            &facts,
            &key,
            forward.as_ref(),
            reply.as_ref(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    #[test]
    fn a_dump_that_would_not_load_says_why() {
        let vip = "interface = \"eth0\"\n\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n";
        let fine = checked_dump(vip.to_owned(), vec!["left out".to_owned()]);
        assert_eq!(fine.load_error, None);
        assert_eq!(fine.notes, ["left out"]);
        // A runtime NAT VIP whose NAT address the [[vrrp]] does not move.
        let unmoved = vip.replace(
            "port = 80\n",
            "port = 80\nforwarding = \"nat\"\nnat_source = \"198.18.0.51\"\n",
        ) + "\n[[vrrp]]\nvrid = 51\npriority = 100\naddresses = [\"198.18.0.100\"]\n";
        let dumped = checked_dump(unmoved.clone(), Vec::new());
        let error = dumped.load_error.expect("refused");
        assert!(
            error.starts_with("the running configuration:") && error.contains("198.18.0.51"),
            "{error}\n{unmoved}"
        );
        assert_eq!(dumped.toml, unmoved);
    }

    fn sweep_started(ago: Duration) -> SweepStats {
        let now = crate::clock::monotonic_ns();
        SweepStats {
            started_ns: now - ago.as_nanos() as u64,
            ..SweepStats::default()
        }
    }

    /// The state a conditional state change (`maintenance --off`) checks
    /// is read from the model alone, which takes no census (see
    /// [`Engine::backend_state`]): each backend's own, None for a backend
    /// or VIP the model does not have.
    #[test]
    fn a_backends_admin_state_is_read_from_the_model() {
        let config = config::Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let mut model = crate::model::Model::from_config(&config);
        let (eleven, twelve) = (
            "198.18.0.11".parse().unwrap(),
            "198.18.0.12".parse().unwrap(),
        );
        model
            .set_admin(&id, twelve, AdminState::Maintenance)
            .unwrap();
        assert_eq!(
            admin_state_of(&model, &id, eleven),
            Some(BackendState::Enabled)
        );
        assert_eq!(
            admin_state_of(&model, &id, twelve),
            Some(BackendState::Maintenance)
        );
        assert_eq!(
            admin_state_of(&model, &id, "198.18.0.13".parse().unwrap()),
            None
        );
        let other: VipId = "198.18.0.101:80/tcp".parse().unwrap();
        assert_eq!(admin_state_of(&model, &other, eleven), None);
    }

    #[test]
    fn a_drained_nat_backend_is_counted_only_by_a_sweep_that_began_after_its_drain() {
        let now = Instant::now();
        let draining = AdminState::Draining {
            since: now - Duration::from_secs(5),
            deadline: None,
        };
        // No sweep finished yet (a restart): nothing is counted.
        assert!(!counted_since(None, &AdminState::Enabled, now));
        assert!(!counted_since(None, &draining, now));
        // A sweep that began before the drain: no answer for the drain.
        let before = sweep_started(Duration::from_secs(8));
        assert!(!counted_since(Some(&before), &draining, now));
        assert!(counted_since(Some(&before), &AdminState::Enabled, now));
        // One that began after it.
        let after = sweep_started(Duration::from_secs(2));
        assert!(counted_since(Some(&after), &draining, now));
    }
}
