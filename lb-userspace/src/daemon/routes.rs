//! The server side of the admin API's endpoints (defined once in
//! `api::route`): each decoded call becomes an engine change, a reload or a
//! view of the state, and every refusal its answer. Bad requests change
//! nothing.

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use lb_common::stats::Counter;

use super::{change::ChangeError, engine::Engine};
use crate::{
    api::{
        code,
        route::{Call, Route},
        schema::{
            AdminStateRequest, BackendSpec, BackendStatus, CheckStatus, ConfigText,
            ConntrackStatus, ReplicationStatus, StateChange, Status, VipSpec, VipStatus,
        },
        Request, Response,
    },
    config::{self, BackendConfig, Config, ConfigError, VipConfig},
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
        Route::AddVip(spec) => match vip_config(&spec) {
            Ok(vip) => Edit::AddVip(vip),
            Err(response) => return response,
        },
        Route::RemoveVip(id) => Edit::RemoveVip(id),
        Route::AddBackend(id, spec) => {
            let Ok(vip) = engine.model.vip(&id) else {
                return model_error(&ModelError::NoVip(id));
            };
            match backend_config(&id, vip.config.table_size, &spec) {
                Ok(backend) => Edit::AddBackend(id, backend),
                Err(response) => return response,
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
        AdminStateRequest::Enabled => Edit::Enable(id, address),
        AdminStateRequest::Maintenance => Edit::Maintenance(id, address),
        AdminStateRequest::Draining => Edit::Drain {
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
        Err(error @ ChangeError::MapsFull { .. }) => {
            Response::error(400, code::LIMIT_EXCEEDED, error.to_string())
        }
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

/// A VIP or backend spec checked by the config file's own rules, so the
/// API accepts exactly what the file does.
/// `one_backend`: the request is about a single backend, so its errors
/// name its fields without the `backends[0].` path.
fn parse_vip(vip: toml::Table, one_backend: bool) -> Result<VipConfig, Response> {
    let mut root = toml::Table::new();
    root.insert("interface".into(), toml::Value::String("lo".into()));
    root.insert(
        "vip".into(),
        toml::Value::Array(vec![toml::Value::Table(vip)]),
    );
    let text = toml::to_string(&root).map_err(|e| {
        Response::error(400, code::BAD_REQUEST, format!("encoding the request: {e}"))
    })?;
    match Config::from_toml_str(&text, "request") {
        Ok(mut config) => config
            .vips
            .pop()
            .ok_or_else(|| Response::error(500, code::INTERNAL, "no VIP parsed")),
        Err(ConfigError::Invalid { field, message, .. }) => {
            let field = field.strip_prefix("vip[0].").unwrap_or(&field);
            let field = match field.strip_prefix("backend[0].") {
                Some(rest) if one_backend => rest.to_owned(),
                _ => field.replace("backend[", "backends["),
            };
            Err(Response::error(
                400,
                code::BAD_REQUEST,
                format!("{field}: {message}"),
            ))
        }
        Err(error) => Err(Response::error(400, code::BAD_REQUEST, error.to_string())),
    }
}

fn backend_table(spec: &BackendSpec) -> toml::Table {
    let mut table = toml::Table::new();
    table.insert(
        "address".into(),
        toml::Value::String(spec.address.to_string()),
    );
    if let Some(mac) = &spec.mac {
        table.insert("mac".into(), toml::Value::String(mac.clone()));
    }
    if let Some(weight) = spec.weight {
        table.insert("weight".into(), toml::Value::Integer(weight.into()));
    }
    table
}

/// The VIP a `POST /v1/vips` body describes, checked by the config
/// file's own rules (so the API accepts exactly what the file does), or
/// the 400 answer naming the field.
pub fn vip_config(spec: &VipSpec) -> Result<VipConfig, Response> {
    let mut table = toml::Table::new();
    table.insert(
        "address".into(),
        toml::Value::String(spec.address.to_string()),
    );
    table.insert("port".into(), toml::Value::Integer(spec.port.into()));
    if let Some(protocol) = &spec.protocol {
        table.insert("protocol".into(), toml::Value::String(protocol.clone()));
    }
    if let Some(size) = spec.table_size {
        table.insert("table_size".into(), toml::Value::Integer(size.into()));
    }
    if let Some(policy) = &spec.on_all_down {
        table.insert("on_all_down".into(), toml::Value::String(policy.clone()));
    }
    table.insert(
        "backend".into(),
        toml::Value::Array(
            spec.backends
                .iter()
                .map(|b| toml::Value::Table(backend_table(b)))
                .collect(),
        ),
    );
    parse_vip(table, false)
}

/// The backend a `POST /v1/vips/{vip}/backends` body describes for the VIP
/// `id` whose Maglev table has `table_size` slots, checked by the config
/// file's rules, or the 400 answer naming the field.
pub fn backend_config(
    id: &VipId,
    table_size: u32,
    spec: &BackendSpec,
) -> Result<BackendConfig, Response> {
    let mut table = toml::Table::new();
    table.insert(
        "address".into(),
        toml::Value::String(id.address.to_string()),
    );
    table.insert("port".into(), toml::Value::Integer(id.port.into()));
    table.insert(
        "protocol".into(),
        toml::Value::String(id.protocol.to_string()),
    );
    table.insert("table_size".into(), toml::Value::Integer(table_size.into()));
    table.insert(
        "backend".into(),
        toml::Value::Array(vec![toml::Value::Table(backend_table(spec))]),
    );
    parse_vip(table, true)?
        .backends
        .pop()
        .ok_or_else(|| Response::error(500, code::INTERNAL, "no backend parsed"))
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
                    kind: match s.target.kind {
                        crate::health::CheckKind::Tcp => "tcp".to_owned(),
                        crate::health::CheckKind::Http { .. } => "http".to_owned(),
                    },
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
                mac: applied_backend.and_then(|b| b.mac).map(|m| {
                    m.iter()
                        .map(|o| format!("{o:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                }),
                weight: backend.config.weight,
                state: backend.admin.name().to_owned(),
                health: if check.is_some() {
                    backend.health.to_string()
                } else {
                    "unchecked".to_owned()
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
            on_all_down: vip.config.on_all_down.to_string(),
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
    use serde_json::json;

    use super::*;
    use crate::config::Protocol;

    fn vip(body: serde_json::Value) -> Result<VipConfig, u16> {
        let spec: VipSpec = serde_json::from_value(body).map_err(|_| 400_u16)?;
        vip_config(&spec).map_err(|r| r.status)
    }

    #[test]
    fn vip_specs_follow_the_file_rules() {
        let ok = vip(
            json!({"address": "198.18.0.100", "port": 53, "protocol": "udp",
                           "backends": [{"address": "198.18.0.11", "weight": 7}]}),
        )
        .unwrap();
        assert_eq!((ok.port, ok.protocol), (53, Protocol::Udp));
        assert_eq!(ok.backends[0].weight, 7);
        // Backend of the other family, bad protocol, a table size that is
        // not prime, an injection attempt.
        let bad_vips = [
            json!({"address": "198.18.0.100", "port": 80,
                   "backends": [{"address": "2001:db8::1"}]}),
            json!({"address": "198.18.0.100", "port": 80, "protocol": "sctp"}),
            json!({"address": "198.18.0.100", "port": 80, "table_size": 100}),
            json!({"address": "198.18.0.100", "port": 80, "protocol": "tcp\"\n[x]"}),
        ];
        for body in bad_vips {
            assert_eq!(vip(body.clone()).err(), Some(400), "{body}");
        }
    }

    #[test]
    fn backend_specs_follow_the_file_rules() {
        let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let spec = |address: &str, mac: Option<&str>, weight| BackendSpec {
            address: address.parse().unwrap(),
            mac: mac.map(str::to_owned),
            weight,
        };
        let ok = backend_config(
            &id,
            65537,
            &spec("198.18.0.11", Some("02:00:00:00:00:11"), Some(3)),
        )
        .unwrap();
        assert_eq!((ok.weight, ok.mac), (3, Some([2, 0, 0, 0, 0, 0x11])));
        for bad in [
            spec("198.18.0.100", None, None),
            spec("2001:db8::1", None, None),
            spec("198.18.0.11", Some("01:00:00:00:00:11"), None),
            spec("198.18.0.11", None, Some(10_001)),
        ] {
            let answer = backend_config(&id, 65537, &bad).unwrap_err();
            assert_eq!(answer.status, 400, "{bad:?}");
        }
    }
}
