//! The admin API's endpoints (schema in `api::schema`): each turns a
//! request into a change of the model, a plan, or a view of the state.
//! Changes go through one path: copy the model, change the copy, plan,
//! and (unless `dry_run`) commit. Bad requests change nothing.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::stats::Counter;
use tracing::{info, warn};

use super::engine::Engine;
use crate::{
    api::{
        code, convert,
        schema::{
            BackendSpec, BackendState, BackendStatus, Change, CheckStatus, ConfigText,
            ConntrackStatus, HealthStatus, ReplicationStatus, StateChange, Status, VipSpec,
            VipStatus, WeightChange,
        },
        Method, Request, Response,
    },
    config::{self, Config, VipConfig},
    mac::Mac,
    maglev,
    model::{self, AdminState, Model, ModelError},
    reconcile::VipId,
};

/// What a request asks for, decoded from its method, path segments and
/// body alone. Splitting this from [`handle`] keeps everything a client
/// controls in a pure function ([`route`]) that can be unit-tested and
/// fuzzed without an engine; the handler only carries the change out.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `GET /v1/status`.
    Status,
    /// `GET /v1/vips`.
    ListVips,
    /// `POST /v1/vips`: the VIP, checked by the config file's rules.
    AddVip(VipConfig),
    /// `GET /v1/vips/{vip}`.
    GetVip(VipId),
    /// `DELETE /v1/vips/{vip}`.
    RemoveVip(VipId),
    /// `POST /v1/vips/{vip}/backends`: the spec is checked by
    /// [`convert::backend_config`] once the VIP is found.
    AddBackend(VipId, BackendSpec),
    /// `DELETE /v1/vips/{vip}/backends/{address}`.
    RemoveBackend(VipId, IpAddr),
    /// `PUT /v1/vips/{vip}/backends/{address}/state`.
    SetState(VipId, IpAddr, StateChange),
    /// `PUT /v1/vips/{vip}/backends/{address}/weight`.
    SetWeight(VipId, IpAddr, WeightChange),
    /// `GET /v1/vips/{vip}/backends/{address}/flows`.
    Flows(VipId, IpAddr),
    /// `POST /v1/reload`.
    Reload,
    /// `GET /v1/config`.
    Config,
}

/// Decodes `request` into the endpoint it names and that endpoint's
/// arguments, or the answer for a request that cannot be served: 404 for
/// no such endpoint, 400 for a bad VIP, address or body. Checks happen in
/// the order a client reads errors: path first, then body.
pub fn route(request: &Request) -> Result<Route, Response> {
    let segments = request.segments();
    Ok(match (request.method, segments.as_slice()) {
        (Method::Get, ["status"]) => Route::Status,
        (Method::Get, ["vips"]) => Route::ListVips,
        (Method::Post, ["vips"]) => {
            Route::AddVip(VipConfig::try_from(&request.body_as::<VipSpec>()?)?)
        }
        (Method::Get, ["vips", vip]) => Route::GetVip(vip_id(vip)?),
        (Method::Delete, ["vips", vip]) => Route::RemoveVip(vip_id(vip)?),
        (Method::Post, ["vips", vip, "backends"]) => {
            let id = vip_id(vip)?;
            Route::AddBackend(id, request.body_as()?)
        }
        (Method::Delete, ["vips", vip, "backends", address]) => {
            let (id, address) = target(vip, address)?;
            Route::RemoveBackend(id, address)
        }
        (Method::Put, ["vips", vip, "backends", address, "state"]) => {
            let (id, address) = target(vip, address)?;
            Route::SetState(id, address, request.body_as()?)
        }
        (Method::Put, ["vips", vip, "backends", address, "weight"]) => {
            let (id, address) = target(vip, address)?;
            Route::SetWeight(id, address, request.body_as()?)
        }
        (Method::Get, ["vips", vip, "backends", address, "flows"]) => {
            let (id, address) = target(vip, address)?;
            Route::Flows(id, address)
        }
        (Method::Post, ["reload"]) => Route::Reload,
        (Method::Get, ["config"]) => Route::Config,
        _ => return Err(request.no_route()),
    })
}

/// Whether the request asks only for the plan (`?dry_run=true`, `1` or
/// `yes`): every change accepts it.
pub fn dry_run(request: &Request) -> bool {
    matches!(
        request.query.get("dry_run").map(String::as_str),
        Some("true" | "1" | "yes")
    )
}

/// Answers one API request.
pub async fn handle(engine: &mut Engine, request: Request) -> Response {
    let dry_run = dry_run(&request);
    let route = match route(&request) {
        Ok(route) => route,
        Err(response) => return response,
    };
    match route {
        Route::Status => Response::ok(status(engine)),
        Route::ListVips => Response::ok(status(engine).vips),
        Route::AddVip(vip) => change(engine, dry_run, |m| m.add_vip(&vip)).await,
        Route::GetVip(id) => match status(engine)
            .vips
            .into_iter()
            .find(|v| v.vip == id.to_string())
        {
            Some(vip) => Response::ok(vip),
            None => model_error(ModelError::NoVip(id)),
        },
        Route::RemoveVip(id) => change(engine, dry_run, |m| m.remove_vip(&id)).await,
        Route::AddBackend(id, spec) => add_backend(engine, id, &spec, dry_run).await,
        Route::RemoveBackend(id, address) => {
            change(engine, dry_run, |m| m.remove_backend(&id, address)).await
        }
        Route::SetState(id, address, body) => set_state(engine, id, address, &body, dry_run).await,
        Route::SetWeight(id, address, body) => {
            change(engine, dry_run, |m| m.set_weight(&id, address, body.weight)).await
        }
        Route::Flows(id, address) => {
            if let Err(e) = engine.model.backend(&id, address) {
                return model_error(e);
            }
            let backend_id = engine
                .balancer
                .vips()
                .get(&id)
                .and_then(|v| v.backends.get(&address))
                .map(|b| b.id);
            let (counts, _) = engine.flow_counts();
            Response::ok(
                backend_id
                    .and_then(|b| counts.get(&b).copied())
                    .unwrap_or_default(),
            )
        }
        Route::Reload => reload(engine, dry_run),
        Route::Config => Response::ok(ConfigText {
            toml: config::to_toml(&engine.model.to_config(&engine.config)),
        }),
    }
}

/// A `{vip}` path segment (`ADDRESS:PORT/PROTOCOL`), or the 400 answer.
pub fn vip_id(segment: &str) -> Result<VipId, Response> {
    segment
        .parse()
        .map_err(|e: String| Response::error(400, code::BAD_REQUEST, e))
}

/// The `{vip}` and `{address}` segments of a backend's path, or the 400 answer.
pub fn target(vip: &str, address: &str) -> Result<(VipId, IpAddr), Response> {
    let id = vip_id(vip)?;
    let address = address.parse().map_err(|_| {
        Response::error(
            400,
            code::BAD_REQUEST,
            format!("{address:?} is not an IP address"),
        )
    })?;
    Ok((id, address))
}

fn model_error(error: ModelError) -> Response {
    let (status, code) = match &error {
        ModelError::NoVip(_) | ModelError::NoBackend { .. } => (404, code::NOT_FOUND),
        ModelError::VipExists(_) | ModelError::BackendExists { .. } => (409, code::CONFLICT),
        ModelError::Invalid(_) => (400, code::BAD_REQUEST),
        ModelError::Limit(_) => (400, code::LIMIT_EXCEEDED),
    };
    Response::error(status, code, error.to_string())
}

/// Applies `edit` to a copy of the model; plans, and commits unless
/// `dry_run`.
async fn change(
    engine: &mut Engine,
    dry_run: bool,
    edit: impl FnOnce(&mut Model) -> Result<(), ModelError>,
) -> Response {
    let mut next = engine.model.clone();
    if let Err(error) = edit(&mut next) {
        return model_error(error);
    }
    if let Err(response) = fits_the_maps(engine, &next) {
        return response;
    }
    let plan = model::plan(&engine.model, &next);
    if dry_run {
        return Response::ok(Change {
            dry_run: true,
            plan,
            undone: Vec::new(),
        });
    }
    let added: Vec<IpAddr> = next
        .vips
        .values()
        .flat_map(|v| v.backends.values())
        .filter(|b| b.config.mac.is_none() && engine.mac_of(b.config.address).is_none())
        .map(|b| b.config.address)
        .collect();
    if !added.is_empty() {
        let pending = next.clone();
        engine.resolve_new(&pending).await;
    }
    match engine.commit(next) {
        Ok(report) => {
            for vip in &plan {
                info!(vip = %vip.vip, change = %vip.change, moved = vip.moved_fraction, ?report, "change applied");
            }
            Response::ok(Change {
                dry_run: false,
                plan,
                undone: Vec::new(),
            })
        }
        Err(error) => {
            warn!(%error, "the data plane refused a change");
            Response::error(
                500,
                code::INTERNAL,
                format!("the data plane refused the change: {error}"),
            )
        }
    }
}

/// Refuses (400, nothing changed) a model with more VIPs than the maps were
/// sized for at start (the file's VIPs and some spare), rather than letting
/// the data plane refuse it halfway as an internal error.
fn fits_the_maps(engine: &Engine, next: &Model) -> Result<(), Response> {
    let capacity = engine.dataplane.sizes().max_vips;
    if next.vips.len() > capacity as usize && next.vips.len() > engine.model.vips.len() {
        return Err(Response::error(
            400,
            code::LIMIT_EXCEEDED,
            format!(
                "too many VIPs: the data plane was sized for {capacity} at start (the file's VIPs and room for more); restart lbd to make room for {}",
                next.vips.len()
            ),
        ));
    }
    Ok(())
}

async fn add_backend(
    engine: &mut Engine,
    id: VipId,
    spec: &BackendSpec,
    dry_run: bool,
) -> Response {
    if engine.model.vip(&id).is_err() {
        return model_error(ModelError::NoVip(id));
    }
    let backend = match convert::backend_config(&id, spec) {
        Ok(backend) => backend,
        Err(error) => return error.into(),
    };
    change(engine, dry_run, |m| m.add_backend(&id, backend)).await
}

async fn set_state(
    engine: &mut Engine,
    id: VipId,
    address: IpAddr,
    body: &StateChange,
    dry_run: bool,
) -> Response {
    let now = Instant::now();
    let admin = match body.state {
        BackendState::Enabled => AdminState::Enabled,
        BackendState::Maintenance => AdminState::Maintenance,
        BackendState::Draining => {
            let default = engine
                .model
                .vip(&id)
                .ok()
                .and_then(|v| v.config.drain_timeout);
            let timeout = match body.timeout_s {
                Some(0) => None,
                Some(s) if s > 7 * 86_400 => {
                    return Response::error(
                        400,
                        code::BAD_REQUEST,
                        format!("timeout_s {s} is above a week"),
                    )
                }
                Some(s) => Some(Duration::from_secs(s)),
                None => default,
            };
            // Draining a draining backend keeps its start, takes the new deadline.
            let since = match engine.model.backend(&id, address).map(|b| b.admin) {
                Ok(AdminState::Draining { since, .. }) => since,
                _ => now,
            };
            AdminState::Draining {
                since,
                deadline: timeout.map(|t| now + t),
            }
        }
    };
    change(engine, dry_run, |m| m.set_admin(&id, address, admin)).await
}

fn reload(engine: &mut Engine, dry_run: bool) -> Response {
    let config = match Config::load(&engine.config_path) {
        Ok(config) => config,
        Err(error) => {
            if !dry_run {
                engine.reloads.failed += 1;
            }
            warn!(%error, "reload refused: the config file is invalid; running state unchanged");
            return Response::error(
                400,
                code::BAD_REQUEST,
                format!("reload refused, running state unchanged: {error}"),
            );
        }
    };
    let next = engine.model.reloaded(&config);
    if let Err(response) = fits_the_maps(engine, &next) {
        if !dry_run {
            engine.reloads.failed += 1;
        }
        warn!("reload refused: the file has more VIPs than the data plane holds; running state unchanged");
        return response;
    }
    let undone = undone_by_reload(&engine.model, &next, &engine.config, &config);
    let plan = model::plan(&engine.model, &next);
    if dry_run {
        return Response::ok(Change {
            dry_run: true,
            plan,
            undone,
        });
    }
    match engine.commit(next) {
        Ok(report) => {
            for note in &undone {
                warn!(note = %note, "reload");
            }
            info!(?report, vips = plan.len(), "config reloaded");
            engine.config = config;
            engine.reloads.succeeded += 1;
            Response::ok(Change {
                dry_run: false,
                plan,
                undone,
            })
        }
        Err(error) => {
            engine.reloads.failed += 1;
            warn!(%error, "reload failed in the data plane");
            Response::error(
                500,
                code::INTERNAL,
                format!("the data plane refused the reload: {error}"),
            )
        }
    }
}

/// Runtime changes a reload undoes, and settings it cannot apply live.
fn undone_by_reload(current: &Model, next: &Model, running: &Config, file: &Config) -> Vec<String> {
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
    for (name, changed) in [
        ("interface", running.interface != file.interface),
        ("xdp_mode", running.xdp_mode != file.xdp_mode),
        (
            "conntrack_size",
            running.conntrack_size != file.conntrack_size,
        ),
        ("maglev_mode", running.maglev_mode != file.maglev_mode),
        ("admin_socket", running.admin_socket != file.admin_socket),
        ("pin_dir", running.pin_dir != file.pin_dir),
        (
            "admin_socket_group",
            running.admin_socket_group != file.admin_socket_group,
        ),
    ] {
        if changed {
            notes.push(format!("{name} changed: takes effect when lbd restarts"));
        }
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
    use crate::config::Protocol;

    fn request(method: Method, path: &[&str], body: Value) -> Request {
        Request {
            method,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: BTreeMap::new(),
            body,
        }
    }

    fn status_of(result: Result<Route, Response>) -> u16 {
        result.err().map_or(200, |r| r.status)
    }

    #[test]
    fn routes_decode_path_and_body() {
        let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        let r = |m, p: &[&str], body| route(&request(m, p, body));
        assert_eq!(r(Method::Get, &["status"], Value::Null), Ok(Route::Status));
        assert_eq!(
            r(
                Method::Delete,
                &["vips", "198.18.0.100:80/tcp"],
                Value::Null
            ),
            Ok(Route::RemoveVip(id))
        );
        assert_eq!(
            r(
                Method::Put,
                &[
                    "vips",
                    "198.18.0.100:80",
                    "backends",
                    "198.18.0.11",
                    "weight"
                ],
                json!({"weight": 5})
            ),
            Ok(Route::SetWeight(id, b, WeightChange { weight: 5 }))
        );
        let Ok(Route::AddVip(vip)) = r(
            Method::Post,
            &["vips"],
            json!({"address": "198.18.0.100", "port": 53, "protocol": "udp",
                   "backends": [{"address": "198.18.0.11", "weight": 7}]}),
        ) else {
            panic!("AddVip expected")
        };
        assert_eq!((vip.port, vip.protocol), (53, Protocol::Udp));
        assert_eq!(vip.backends[0].weight, 7);
    }

    #[test]
    fn bad_requests_are_answered_not_panicked_on() {
        let r = |m, p: &[&str], body| status_of(route(&request(m, p, body)));
        assert_eq!(r(Method::Get, &["nope"], Value::Null), 404);
        assert_eq!(r(Method::Post, &["status"], Value::Null), 404);
        assert_eq!(r(Method::Get, &["vips", "x"], Value::Null), 400);
        assert_eq!(
            r(Method::Get, &["vips", "198.18.0.100:0"], Value::Null),
            400
        );
        assert_eq!(r(Method::Post, &["vips"], json!({"port": 80})), 400);
        // The file's rules apply: backend of the other family, bad protocol,
        // a table size that is not prime.
        let bad_vips = [
            json!({"address": "198.18.0.100", "port": 80,
                   "backends": [{"address": "2001:db8::1"}]}),
            json!({"address": "198.18.0.100", "port": 80, "protocol": "sctp"}),
            json!({"address": "198.18.0.100", "port": 80, "table_size": 100}),
            json!({"address": "198.18.0.100", "port": 80, "protocol": "tcp\"\n[x]"}),
        ];
        for body in bad_vips {
            assert_eq!(r(Method::Post, &["vips"], body.clone()), 400, "{body}");
        }
        assert_eq!(
            r(
                Method::Put,
                &["vips", "198.18.0.100:80", "backends", "nope", "state"],
                json!({"state": "enabled"})
            ),
            400
        );
        assert_eq!(
            r(
                Method::Put,
                &[
                    "vips",
                    "198.18.0.100:80",
                    "backends",
                    "198.18.0.11",
                    "state"
                ],
                json!({"state": 1})
            ),
            400
        );
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
