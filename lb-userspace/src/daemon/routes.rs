//! The server side of the admin API's endpoints (defined once in
//! `api::route`): each decoded call becomes an engine change, a reload or a
//! view of the state, and every refusal its answer. Bad requests change
//! nothing.

use std::net::IpAddr;

use super::engine::{ChangeError, Engine};
use crate::{
    api::{
        code, convert,
        route::{Call, Route},
        schema::{BackendSpec, BackendState, StateChange},
        Request, Response,
    },
    config::VipConfig,
    guard::GuardEdit,
    model::{Edit, ModelError},
    reconcile::ReconcileError,
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
        Route::Status => return Response::ok(engine.status()),
        Route::ListVips => return Response::ok(engine.status().vips),
        Route::GetVip(id) => {
            let wanted = id.to_string();
            return match engine.status().vips.into_iter().find(|v| v.vip == wanted) {
                Some(vip) => Response::ok(vip),
                None => model_error(&ModelError::NoVip(id)),
            };
        }
        Route::Flows(id, address) => {
            return match engine.backend_flows(&id, address) {
                Ok(flows) => Response::ok(flows),
                Err(error) => model_error(&error),
            }
        }
        Route::Flow(id, client) => return engine.explain_flow(&id, client),
        Route::Config => return Response::ok(engine.config_text()),
        Route::Node => return Response::ok(engine.node_status()),
        Route::SetNode(change) => {
            if let Some(why) = engine.node_state_refuses(change.state) {
                return Response::error(400, code::BAD_REQUEST, why);
            }
            return match engine.set_node_state(change.state, dry_run).await {
                Ok(status) => Response::ok(status),
                Err(why) => Response::error(500, code::INTERNAL, why),
            };
        }
        Route::Reload => return outcome(engine.reload(dry_run).await),
        Route::Acl => return Response::ok(engine.guard_status()),
        Route::AddAcl(rule) => return engine.change_guard(&GuardEdit::AddRule(rule), dry_run),
        Route::RemoveAcl(rule) => {
            return engine.change_guard(&GuardEdit::RemoveRule(rule), dry_run)
        }
        Route::SetLimits(scope, limits) => {
            return engine.change_guard(&GuardEdit::SetLimits(scope, limits), dry_run)
        }
        Route::ClearLimits(scope) => {
            return engine.change_guard(&GuardEdit::ClearLimits(scope), dry_run)
        }
        Route::AddVip(spec) => match convert::vip_config(&spec, &engine.config().nat) {
            Ok(vip) => match engine.announcement_refuses(&vip) {
                None => Edit::AddVip(vip),
                Some(why) => return Response::error(400, code::BAD_REQUEST, why),
            },
            Err(error) => return error.into(),
        },
        Route::RemoveVip(id) => Edit::RemoveVip(id),
        Route::AddBackend(id, spec) => match backend_edit(id, engine.vip_config(&id), &spec) {
            Ok(edit) => edit,
            Err(answer) => return answer,
        },
        Route::RemoveBackend(id, address) => Edit::RemoveBackend(id, address),
        Route::SetState(id, address, change) => {
            if let Some(from) = change.from {
                // Checked here, in the engine loop's step that makes the
                // change: nothing can change the state in between. Read
                // from the model: the status view's census would walk the
                // whole connection table in the loop.
                let current = engine.backend_state(&id, address);
                if let Some(refusal) = state_precondition_refuses(id, address, from, current) {
                    return refusal;
                }
            }
            state_edit(id, address, &change)
        }
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

/// The 409 for a state change asked only `from` a state the backend is
/// not in (`current`; None: no such backend, which the edit itself answers
/// 404), None when it may go ahead.
fn state_precondition_refuses(
    id: VipId,
    address: IpAddr,
    from: BackendState,
    current: Option<BackendState>,
) -> Option<Response> {
    let current = current.filter(|current| *current != from)?;
    Some(Response::error(
        409,
        code::CONFLICT,
        format!("backend {address} of VIP {id} is {current}, not {from}: nothing was changed"),
    ))
}

/// The answer to a change or reload.
fn outcome(result: Result<crate::api::schema::Change, ChangeError>) -> Response {
    match result {
        Ok(change) => Response::ok(change),
        Err(ChangeError::Model(error)) => model_error(&error),
        Err(error @ ChangeError::File(_)) => {
            Response::error(400, code::BAD_REQUEST, error.to_string())
        }
        Err(ChangeError::Dataplane(error)) => reconcile_error(&error),
        Err(ChangeError::Unrecorded(why) | ChangeError::Program(why)) => {
            Response::error(500, code::INTERNAL, why)
        }
    }
}

/// The answer to a change the balancer refused: 400 for what the change
/// asks (`ReconcileError::is_refusal`), nothing changed; 500 for a write
/// that failed or a broken invariant, lbd's fault.
fn reconcile_error(error: &ReconcileError) -> Response {
    match error {
        ReconcileError::TooManyVips(_) | ReconcileError::TooManyBackends(_) => {
            Response::error(400, code::LIMIT_EXCEEDED, error.to_string())
        }
        _ if error.is_refusal() => Response::error(400, code::BAD_REQUEST, error.to_string()),
        _ => {
            tracing::warn!(%error, "the data plane refused a change");
            Response::error(
                500,
                code::INTERNAL,
                format!("the data plane refused the change: {error}"),
            )
        }
    }
}

/// The edit adding the backend `spec` to VIP `id`, whose running
/// configuration is `vip` (None: there is no such VIP). The VIP is looked
/// up first: its mode decides which fields the body may have, its health
/// checks are where the backend's own start, and a missing VIP is a 404
/// like on every other VIP path, not a refused field.
fn backend_edit(id: VipId, vip: Option<&VipConfig>, spec: &BackendSpec) -> Result<Edit, Response> {
    let Some(vip) = vip else {
        return Err(model_error(&ModelError::NoVip(id)));
    };
    let backend = convert::backend_config(vip, spec)?;
    Ok(Edit::AddBackend(id, backend))
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use std::collections::BTreeMap;

    use super::*;
    use crate::maglev::MaglevError;
    use crate::{
        api::{schema::VipSpec, Method},
        config::VipConfig,
    };

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
                convert::backend_config(&VipConfig::new(id.address, id.port, id.protocol), spec)?;
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

    #[test]
    fn staging_refusals_are_the_requests_and_write_failures_lbds() {
        let answer = |error: ReconcileError| {
            let r = reconcile_error(&error);
            (
                r.status,
                r.body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r.body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        };
        let (status, code, message) = answer(ReconcileError::NoTunnelSource {
            vip: "198.18.0.100:80/tcp".to_owned(),
            backend: "2001:2::11".parse().unwrap(),
            key: "source_ipv6",
        });
        assert_eq!((status, code.as_str()), (400, code::BAD_REQUEST));
        assert!(
            message
                .starts_with("VIP 198.18.0.100:80/tcp: backend 2001:2::11 needs an outer source")
                && message.contains("source_ipv6"),
            "{message}"
        );
        let (status, code, _) = answer(ReconcileError::TooManyBackends(7));
        assert_eq!((status, code.as_str()), (400, code::LIMIT_EXCEEDED));
        let (status, code, _) = answer(ReconcileError::TooManyVips(7));
        assert_eq!((status, code.as_str()), (400, code::LIMIT_EXCEEDED));
        let (status, _, _) = answer(ReconcileError::Maglev {
            vip: "198.18.0.100:80/tcp".to_owned(),
            source: MaglevError::SizeNotPrime(100),
        });
        assert_eq!(status, 400);
        // A broken invariant and a failed write are lbd's.
        let (status, code, _) = answer(ReconcileError::Maglev {
            vip: "198.18.0.100:80/tcp".to_owned(),
            source: MaglevError::ZeroId(vec![1]),
        });
        assert_eq!((status, code.as_str()), (500, code::INTERNAL));
        let (status, code, message) = answer(ReconcileError::Dataplane(
            crate::dataplane::DataplaneError::MissingMap("BACKENDS"),
        ));
        assert_eq!((status, code.as_str()), (500, code::INTERNAL));
        assert!(
            message.starts_with("the data plane refused the change: "),
            "{message}"
        );
    }

    #[test]
    fn a_timeout_is_refused_with_any_state_but_draining() {
        let state = [&BACKEND[..], &["state"]].concat();
        for other in ["enabled", "maintenance"] {
            let message = refusal(
                Method::Put,
                &state,
                json!({"state": other, "timeout_s": 30}),
            );
            assert!(
                message.contains("timeout_s: only with state \"draining\""),
                "{message:?}"
            );
        }
        let route = route(&request(
            Method::Put,
            &state,
            json!({"state": "draining", "timeout_s": 30}),
        ))
        .unwrap();
        assert!(matches!(
            route,
            Route::SetState(
                _,
                _,
                StateChange {
                    timeout_s: Some(30),
                    ..
                }
            )
        ));
    }

    /// A state change with a precondition (`from`) is refused, 409, when
    /// the backend is in another state now, before any edit is made: a
    /// `maintenance --off` raced by a drain leaves the drain in force
    /// rather than ending it. Met (or no precondition, or no such backend,
    /// which the edit answers 404), it goes ahead.
    #[test]
    fn a_conditional_state_change_is_refused_in_another_state() {
        let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let address: IpAddr = "198.18.0.11".parse().unwrap();
        let refusal = state_precondition_refuses(
            id,
            address,
            BackendState::Maintenance,
            Some(BackendState::Draining),
        )
        .expect("refused");
        assert_eq!(refusal.status, 409);
        assert_eq!(refusal.body["error"]["code"], code::CONFLICT);
        assert_eq!(
            refusal.body["error"]["message"],
            "backend 198.18.0.11 of VIP 198.18.0.100:80/tcp is draining, not maintenance: nothing was changed"
        );
        for (from, current) in [
            (BackendState::Maintenance, Some(BackendState::Maintenance)),
            (BackendState::Enabled, Some(BackendState::Enabled)),
            (BackendState::Maintenance, None),
        ] {
            assert_eq!(
                state_precondition_refuses(id, address, from, current),
                None,
                "{from:?} {current:?}"
            );
        }
        // The precondition travels in the body and is read back.
        let state = [&BACKEND[..], &["state"]].concat();
        let route = route(&request(
            Method::Put,
            &state,
            json!({"state": "enabled", "from": "maintenance"}),
        ))
        .unwrap();
        assert!(matches!(
            route,
            Route::SetState(
                _,
                _,
                StateChange {
                    from: Some(BackendState::Maintenance),
                    ..
                }
            )
        ));
    }

    #[test]
    fn a_backend_for_a_vip_that_does_not_exist_is_a_404() {
        let id: VipId = "198.18.0.99:80/tcp".parse().unwrap();
        let spec: BackendSpec =
            serde_json::from_value(json!({"address": "198.18.0.11", "port": 8080})).unwrap();
        let answer = match backend_edit(id, None, &spec) {
            Ok(edit) => panic!("accepted as {edit:?}"),
            Err(answer) => answer,
        };
        assert_eq!(answer.status, 404);
        assert_eq!(answer.body["error"]["code"], code::NOT_FOUND);
        assert_eq!(answer.body["error"]["message"], "no VIP 198.18.0.99:80/tcp");
        // An existing VIP's mode decides the fields.
        let mut vip = VipConfig::new(id.address, id.port, id.protocol);
        let answer = backend_edit(id, Some(&vip), &spec).unwrap_err();
        assert_eq!(answer.status, 400);
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("port: direct server return"),
            "{message}"
        );
        vip.forwarding = lb_common::Mode::Nat;
        assert!(matches!(
            backend_edit(id, Some(&vip), &spec),
            Ok(Edit::AddBackend(_, backend)) if backend.port == Some(8080)
        ));
    }
}
