//! The server side of the admin API's endpoints (defined once in
//! `api::route`): each decoded call becomes an engine change, a reload or a
//! view of the state, and every refusal its answer. Bad requests change
//! nothing.

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use lb_common::stats::Counter;

use super::{change::ChangeError, engine::Engine};
use crate::{
    api::{
        code, convert,
        route::{Call, Route},
        schema::{
            BackendState, BackendStatus, CheckStatus, ConfigText, ConntrackStatus, HealthStatus,
            ReplicationStatus, StateChange, Status, VipStatus,
        },
        Request, Response,
    },
    config::{self, Config, VipConfig},
    mac::Mac,
    maglev,
    model::{AdminState, Edit, Model, ModelError},
    vip_id::VipId,
};

/// Answers one API request.
pub async fn handle(engine: &mut Engine, request: Request) -> Response {
    match Call::decode(&request) {
        Ok(call) => answer(engine, call).await,
        Err(response) => response,
    }
}

/// Carries out a decoded call.
async fn answer(engine: &mut Engine, call: Call) -> Response {
    let dry_run = call.dry_run;
    let edit = match call.route {
        Route::Status => return Response::ok(status(engine)),
        Route::ListVips => return Response::ok(status(engine).vips),
        Route::GetVip(id) => {
            let wanted = id.to_string();
            return match status(engine).vips.into_iter().find(|v| v.vip == wanted) {
                Some(vip) => Response::ok(vip),
                None => model_error(&ModelError::NoVip(id)),
            };
        }
        Route::Flows(id, address) => return flows(engine, &id, address),
        Route::Flow(id, client) => return super::flow::answer(engine, &id, client),
        Route::Config => {
            return Response::ok(ConfigText {
                toml: config::to_toml(&engine.model.to_config(&engine.config)),
            })
        }
        Route::Reload => return outcome(engine.reload(dry_run)),
        Route::AddVip(spec) => match VipConfig::try_from(&spec) {
            Ok(vip) => Edit::AddVip(vip),
            Err(error) => return error.into(),
        },
        Route::RemoveVip(id) => Edit::RemoveVip(id),
        Route::AddBackend(id, spec) => {
            if engine.model.vip(&id).is_err() {
                return model_error(&ModelError::NoVip(id));
            }
            match convert::backend_config(&id, &spec) {
                Ok(backend) => Edit::AddBackend(id, backend),
                Err(error) => return error.into(),
            }
        }
        Route::RemoveBackend(id, address) => Edit::RemoveBackend(id, address),
        Route::SetState(id, address, change) => state_edit(id, address, &change),
        Route::SetWeight(id, address, change) => Edit::SetWeight(id, address, change.weight),
    };
    outcome(engine.change(&edit, dry_run).await)
}

/// The edit a state change asks for.
fn state_edit(id: VipId, address: IpAddr, change: &StateChange) -> Edit {
    match change.state {
        BackendState::Enabled => Edit::Enable(id, address),
        BackendState::Maintenance => Edit::Maintenance(id, address),
        BackendState::Draining => Edit::Drain {
            vip: id,
            backend: address,
            timeout_s: change.timeout_s,
        },
    }
}

/// A backend's tracked flows by liveness.
fn flows(engine: &Engine, id: &VipId, address: IpAddr) -> Response {
    if let Err(e) = engine.model.backend(id, address) {
        return model_error(&e);
    }
    let backend_id = engine
        .balancer
        .vips()
        .get(id)
        .and_then(|v| v.backends.get(&address))
        .map(|b| b.id);
    let (counts, _) = engine.flow_counts();
    Response::ok(
        backend_id
            .and_then(|b| counts.get(&b).copied())
            .unwrap_or_default(),
    )
}

/// The answer to a change or reload.
fn outcome(result: Result<crate::api::schema::Change, ChangeError>) -> Response {
    match result {
        Ok(change) => Response::ok(change),
        Err(ChangeError::Model(error)) => model_error(&error),
        Err(error @ ChangeError::File(_)) => {
            Response::error(400, code::BAD_REQUEST, error.to_string())
        }
        Err(error @ ChangeError::Dataplane(_)) => {
            tracing::warn!(%error, "the data plane refused a change");
            Response::error(500, code::INTERNAL, error.to_string())
        }
    }
}

fn model_error(error: &ModelError) -> Response {
    let (status, code) = match error {
        ModelError::NoVip(_) | ModelError::NoBackend { .. } => (404, code::NOT_FOUND),
        ModelError::VipExists(_) | ModelError::BackendExists { .. } => (409, code::CONFLICT),
        ModelError::Invalid(_) => (400, code::BAD_REQUEST),
        ModelError::Limit(_) => (400, code::LIMIT_EXCEEDED),
    };
    Response::error(status, code, error.to_string())
}

/// Runtime changes a reload undoes, and settings it cannot apply live.
pub(crate) fn undone_by_reload(
    current: &Model,
    next: &Model,
    running: &Config,
    file: &Config,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (id, vip) in &current.vips {
        let Some(new) = next.vips.get(id) else {
            notes.push(format!("VIP {id} is not in the file: removed"));
            continue;
        };
        for (address, backend) in &vip.backends {
            match new.backends.get(address) {
                None => notes.push(format!(
                    "backend {address} of {id} is not in the file: removed"
                )),
                Some(b) if b.config.weight != backend.config.weight => notes.push(format!(
                    "weight of backend {address} of {id}: {} -> {} (the file's)",
                    backend.config.weight, b.config.weight
                )),
                Some(_) => {}
            }
        }
    }
    for (id, vip) in &next.vips {
        match current.vips.get(id) {
            None => notes.push(format!("VIP {id} from the file: added")),
            Some(old) => {
                for address in vip
                    .backends
                    .keys()
                    .filter(|a| !old.backends.contains_key(a))
                {
                    notes.push(format!("backend {address} of {id} from the file: added"));
                }
            }
        }
    }
    for name in running.restart_only_changes(file) {
        notes.push(format!("{name} changed: takes effect when lbd restarts"));
    }
    notes
}

/// The status view: model, maps and checks together.
pub fn status(engine: &Engine) -> Status {
    let (flows, entries) = engine.flow_counts();
    let now = Instant::now();
    let mut vips = Vec::new();
    for (id, vip) in &engine.model.vips {
        let applied = engine.balancer.vips().get(id);
        let shares = applied
            .and_then(|a| a.live_table())
            .map(maglev::shares)
            .unwrap_or_default();
        let traffic = applied
            .and_then(|a| engine.dataplane.vip_traffic(a.id).ok())
            .unwrap_or_default();
        let mut backends = Vec::new();
        for (address, backend) in &vip.backends {
            let applied_backend = applied.and_then(|a| a.backends.get(address));
            let backend_id = applied_backend.map(|b| b.id);
            let traffic = backend_id
                .and_then(|b| engine.dataplane.backend_traffic(b).ok())
                .unwrap_or_default();
            let check = engine
                .checker
                .status(&(*id, *address))
                .map(|s| CheckStatus {
                    kind: (&s.target.kind).into(),
                    checks: s.checks,
                    failures: s.failures,
                    failures_by_reason: s.failures_by_reason.clone(),
                    transitions: engine
                        .transitions
                        .get(&(*id, *address))
                        .copied()
                        .unwrap_or(0),
                    consecutive_successes: s.consecutive_successes,
                    consecutive_failures: s.consecutive_failures,
                    last: s.last_result.as_ref().map(|r| r.outcome.to_string()),
                    last_latency_ms: s.last_latency().map(|d| d.as_secs_f64() * 1000.0),
                });
            backends.push(BackendStatus {
                address: *address,
                mac: applied_backend.and_then(|b| b.mac).map(Mac::from),
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
                flows: backend_id
                    .and_then(|b| flows.get(&b).copied())
                    .unwrap_or_default(),
                packets: traffic.packets,
                bytes: traffic.bytes,
                new_flows: traffic.new_flows,
                drain_timed_out: backend.drain_timed_out,
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
            backends,
        });
    }
    let counters: BTreeMap<String, u64> = engine
        .dataplane
        .counters()
        .unwrap_or_default()
        .into_iter()
        .map(|(c, v): (Counter, u64)| (c.name().to_owned(), v))
        .collect();
    Status {
        interface: engine.interface.name.clone(),
        xdp_mode: engine.xdp_mode.to_string(),
        config_file: engine.config_path.display().to_string(),
        pin_dir: engine
            .config
            .pin_dir
            .as_ref()
            .map(|p| p.display().to_string()),
        adopted: engine.dataplane.adopted(),
        maglev_mode: engine.config.maglev_mode.to_string(),
        vips,
        counters,
        vrrp: engine.vrrp.iter().map(|i| i.status()).collect(),
        replication: engine.replication.as_ref().map(|r| ReplicationStatus {
            connected: r.connected(),
            installed: r.installed,
            unknown: r.unknown,
            channel: r.stats.snapshot(),
        }),
        conntrack: ConntrackStatus {
            entries,
            capacity: u64::from(engine.dataplane.sizes().conntrack),
        },
        tables_rebuilt: engine.tables_rebuilt,
        reloads: engine.reloads,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::api::{schema::VipSpec, Method};

    fn request(method: Method, path: &[&str], body: Value) -> Request {
        Request {
            method,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: BTreeMap::new(),
            body,
        }
    }

    /// Decodes a request and converts its body as the handler does.
    fn route(request: &Request) -> Result<Route, Response> {
        let route = Call::decode(request)?.route;
        match &route {
            Route::AddVip(spec) => {
                VipConfig::try_from(spec)?;
            }
            Route::AddBackend(id, spec) => {
                convert::backend_config(id, spec)?;
            }
            _ => {}
        }
        Ok(route)
    }

    #[test]
    fn vip_bodies_convert_by_the_file_rules() {
        let spec: VipSpec = serde_json::from_value(json!({"address": "198.18.0.100", "port": 53,
            "protocol": "udp", "backends": [{"address": "198.18.0.11", "weight": 7}]}))
        .unwrap();
        let vip = VipConfig::try_from(&spec).unwrap();
        assert_eq!((vip.port, vip.backends[0].weight), (53, 7));
    }

    /// The 400 answer's message for a request that must be refused.
    fn refusal(method: Method, path: &[&str], body: Value) -> String {
        match route(&request(method, path, body.clone())) {
            Ok(route) => panic!("{body} was accepted as {route:?}"),
            Err(answer) => {
                assert_eq!(answer.status, 400, "{body}: {}", answer.body);
                answer.body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
        }
    }

    const BACKEND: [&str; 4] = ["vips", "198.18.0.100:80", "backends", "198.18.0.11"];

    #[test]
    fn unknown_body_fields_are_refused_by_name() {
        let state = [&BACKEND[..], &["state"]].concat();
        let weight = [&BACKEND[..], &["weight"]].concat();
        for (method, path, body, field) in [
            (
                Method::Post,
                &["vips"][..],
                json!({"address": "198.18.0.100", "port": 80,
                       "backend": [{"address": "198.18.0.11"}]}),
                "`backend`",
            ),
            (
                Method::Post,
                &["vips"][..],
                json!({"address": "198.18.0.100", "port": 80,
                       "backends": [{"address": "198.18.0.11", "wieght": 5}]}),
                "`wieght`",
            ),
            (
                Method::Post,
                &BACKEND[..3],
                json!({"address": "198.18.0.11", "mac_address": "02:00:00:00:00:11"}),
                "`mac_address`",
            ),
            (
                Method::Put,
                &state[..],
                json!({"state": "draining", "timeout": 5}),
                "`timeout`",
            ),
            (
                Method::Put,
                &weight[..],
                json!({"weight": 5, "dry_run": true}),
                "`dry_run`",
            ),
        ] {
            let message = refusal(method, path, body);
            assert!(message.contains(field), "{message:?} names {field}");
        }
    }

    #[test]
    fn body_values_are_refused_naming_their_field_and_rule() {
        let vip =
            |backends: Value| json!({"address": "198.18.0.100", "port": 80, "backends": backends});
        for (body, expected) in [
            (
                vip(json!([{"address": "198.18.0.11"}, {"address": "198.18.0.12", "weight": -1}])),
                "backends[1].weight: -1 is out of range 0..=10000",
            ),
            (
                vip(
                    json!([{"address": "198.18.0.11"}, {"address": "198.18.0.12"},
                           {"address": "198.18.0.11"}]),
                ),
                "backends[2].address: 198.18.0.11 is already backends[0]",
            ),
            (
                vip(json!([{"address": "198.18.0.11", "mac": "01:00:00:00:00:11"}])),
                "backends[0].mac: \"01:00:00:00:00:11\" is a multicast MAC address",
            ),
            (
                json!({"address": "198.18.0.100", "port": 70000}),
                "port: 70000 is out of range 1..=65535",
            ),
            (
                json!({"address": "198.18.0.100", "port": 80, "table_size": 100}),
                "table_size: 100 is not a prime",
            ),
            (
                json!({"address": "198.18.0.100", "port": 80, "on_all_down": "open"}),
                "on_all_down: \"open\" is not one of \"drop\", \"keep\"",
            ),
        ] {
            let message = refusal(Method::Post, &["vips"], body.clone());
            assert!(message.contains(expected), "{body}: {message:?}");
            assert!(!message.contains("vip[0]"), "{body}: {message:?}");
        }
        let weight = [&BACKEND[..], &["weight"]].concat();
        let message = refusal(Method::Put, &weight, json!({"weight": -1}));
        assert!(
            message.contains("weight: -1 is out of range 0..=10000"),
            "{message:?}"
        );
        let state = [&BACKEND[..], &["state"]].concat();
        let message = refusal(Method::Put, &state, json!({"state": "drained"}));
        assert!(
            message.contains("`drained`")
                && message.contains("`enabled`, `draining`, `maintenance`"),
            "{message:?}"
        );
    }
}
