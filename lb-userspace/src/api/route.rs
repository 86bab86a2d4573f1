//! Every endpoint of the admin API, defined once: [`Route`] is what a
//! request asks for, with its path arguments and body already typed.
//! [`Route::encode`] turns it into the method, path and body `lbctl` sends;
//! [`Call::decode`] turns a request the server received back into it (or
//! into the error answer). A round-trip test over every variant keeps the
//! two sides equal, so no path is ever spelled twice.
//!
//! A path is matched first: one no endpoint has is a 404 whatever the
//! method, one that does not take the method a 405 naming those it takes
//! (`allowed_methods`, read off the same table). The server does this
//! once the path's encoding is checked, before the query and the body
//! (see `request`), so a typo in the path is a 404 whatever its body.
//! Then come the server's own checks of what every request must be (the
//! query's encoding, then the body's size, type, deadline and JSON), then
//! [`Call::decode`]: the path's arguments, the query's parameters, then
//! the body's fields. So a body that is not JSON is refused before a bad
//! VIP in the path is seen; `decode` matches the path again, for a
//! request built otherwise.
//!
//! Query parameters are strict: a change takes `dry_run` (`true`, `false`,
//! `1` or `0`); any other parameter, a parameter on an endpoint that takes
//! none, another spelling, or a body sent to an endpoint that takes none is
//! a 400, and nothing changes.

use std::net::{IpAddr, SocketAddr};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    code,
    schema::{
        BackendSpec, BackendState, LimitsSpec, NodeChange, StateChange, VipSpec, WeightChange,
    },
    Method, Request, Response, NO_ENDPOINT_PREFIX,
};
use crate::{
    guard::{AclRule, Limits, Scope},
    vip_id::VipId,
};

/// What a request asks for. Each variant's doc gives its method, path,
/// body and answer (the answer types are in [`super::schema`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `GET /v1/status` → `Status`.
    Status,
    /// `GET /v1/vips` → `[VipStatus]`.
    ListVips,
    /// `POST /v1/vips`, body `VipSpec` → `Change`.
    AddVip(VipSpec),
    /// `GET /v1/vips/{vip}` → `VipStatus`.
    GetVip(VipId),
    /// `DELETE /v1/vips/{vip}` → `Change`.
    RemoveVip(VipId),
    /// `POST /v1/vips/{vip}/backends`, body `BackendSpec` → `Change`.
    AddBackend(VipId, BackendSpec),
    /// `DELETE /v1/vips/{vip}/backends/{address}` → `Change`.
    RemoveBackend(VipId, IpAddr),
    /// `PUT /v1/vips/{vip}/backends/{address}/state`, body `StateChange` →
    /// `Change`.
    SetState(VipId, IpAddr, StateChange),
    /// `PUT /v1/vips/{vip}/backends/{address}/weight`, body `WeightChange`
    /// → `Change`.
    SetWeight(VipId, IpAddr, WeightChange),
    /// `GET /v1/vips/{vip}/backends/{address}/flows` → `FlowCount`.
    Flows(VipId, IpAddr),
    /// `GET /v1/vips/{vip}/flows/{client}` → `FlowExplanation`: where that
    /// flow goes, and why.
    Flow(VipId, SocketAddr),
    /// `POST /v1/reload` → `Change`.
    Reload,
    /// `GET /v1/config` → `ConfigText`.
    Config,
    /// `GET /v1/node` → `NodeStatus`: the node's state, traffic and BGP
    /// announcements.
    Node,
    /// `PUT /v1/node/state`, body `NodeChange` → `NodeStatus`: drain the
    /// node (withdraw every announcement) or make it active again.
    SetNode(NodeChange),
    /// `GET /v1/acl` → `GuardStatus`: deny/allow rules and limits with
    /// their counts.
    Acl,
    /// `POST /v1/acl`, body `AclRule` → `GuardStatus`.
    AddAcl(AclRule),
    /// `DELETE /v1/acl/{scope}/{action}/{source}` → `GuardStatus`
    /// (`scope`: `global` or a VIP; `source` a CIDR prefix, its `/`
    /// percent-encoded).
    RemoveAcl(AclRule),
    /// `PUT /v1/limits/{scope}`, body `LimitsSpec` (a `Limits` whose
    /// bursts may be left out: they are then the rates) → `GuardStatus`.
    SetLimits(Scope, Limits),
    /// `DELETE /v1/limits/{scope}` → `GuardStatus`.
    ClearLimits(Scope),
}

/// A decoded request: the endpoint and the options every change takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The endpoint with its arguments.
    pub route: Route,
    /// Only plan the change (`?dry_run=true`); always false for reads.
    pub dry_run: bool,
}

/// The method, path segments (decoded) and body of a request for a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The method.
    pub method: Method,
    /// Path segments after `/v1/`, not yet percent-encoded.
    pub segments: Vec<String>,
    /// The JSON body, if the endpoint takes one.
    pub body: Option<Value>,
}

impl Route {
    /// Whether the route changes state (and so takes `dry_run`).
    #[cfg(test)]
    pub(crate) fn is_change(&self) -> bool {
        !matches!(
            self,
            Self::Status
                | Self::ListVips
                | Self::GetVip(_)
                | Self::Flows(..)
                | Self::Flow(..)
                | Self::Config
                | Self::Node
                | Self::Acl
        )
    }

    /// The request for this route, for the client. Fails only if a body
    /// cannot be represented as JSON.
    pub fn encode(&self) -> Result<Encoded, serde_json::Error> {
        let vip = |id: &VipId| id.to_string();
        let backend = |id: &VipId, address: &IpAddr, rest: &[&str]| {
            let mut segments = vec![
                "vips".to_owned(),
                id.to_string(),
                "backends".to_owned(),
                address.to_string(),
            ];
            segments.extend(rest.iter().map(|s| (*s).to_owned()));
            segments
        };
        let (method, segments, body) = match self {
            Self::Status => (Method::Get, vec!["status".to_owned()], None),
            Self::ListVips => (Method::Get, vec!["vips".to_owned()], None),
            Self::AddVip(spec) => (
                Method::Post,
                vec!["vips".to_owned()],
                Some(serde_json::to_value(spec)?),
            ),
            Self::GetVip(id) => (Method::Get, vec!["vips".to_owned(), vip(id)], None),
            Self::RemoveVip(id) => (Method::Delete, vec!["vips".to_owned(), vip(id)], None),
            Self::AddBackend(id, spec) => (
                Method::Post,
                vec!["vips".to_owned(), vip(id), "backends".to_owned()],
                Some(serde_json::to_value(spec)?),
            ),
            Self::RemoveBackend(id, address) => (Method::Delete, backend(id, address, &[]), None),
            Self::SetState(id, address, change) => (
                Method::Put,
                backend(id, address, &["state"]),
                Some(serde_json::to_value(change)?),
            ),
            Self::SetWeight(id, address, change) => (
                Method::Put,
                backend(id, address, &["weight"]),
                Some(serde_json::to_value(change)?),
            ),
            Self::Flows(id, address) => (Method::Get, backend(id, address, &["flows"]), None),
            Self::Flow(id, client) => (
                Method::Get,
                vec![
                    "vips".to_owned(),
                    vip(id),
                    "flows".to_owned(),
                    client.to_string(),
                ],
                None,
            ),
            Self::Reload => (Method::Post, vec!["reload".to_owned()], None),
            Self::Config => (Method::Get, vec!["config".to_owned()], None),
            Self::Node => (Method::Get, vec!["node".to_owned()], None),
            Self::SetNode(change) => (
                Method::Put,
                vec!["node".to_owned(), "state".to_owned()],
                Some(serde_json::to_value(change)?),
            ),
            Self::Acl => (Method::Get, vec!["acl".to_owned()], None),
            Self::AddAcl(rule) => (
                Method::Post,
                vec!["acl".to_owned()],
                Some(serde_json::to_value(rule)?),
            ),
            Self::RemoveAcl(rule) => (
                Method::Delete,
                vec![
                    "acl".to_owned(),
                    rule.scope.to_string(),
                    rule.action.to_string(),
                    rule.source.to_string(),
                ],
                None,
            ),
            Self::SetLimits(scope, limits) => (
                Method::Put,
                vec!["limits".to_owned(), scope.to_string()],
                Some(serde_json::to_value(limits)?),
            ),
            Self::ClearLimits(scope) => (
                Method::Delete,
                vec!["limits".to_owned(), scope.to_string()],
                None,
            ),
        };
        Ok(Encoded {
            method,
            segments,
            body,
        })
    }
}

impl Call {
    /// Decodes `request` into the endpoint it names, its arguments and
    /// options, or the answer for a request that cannot be served: 404 for
    /// no such path, 405 for a path that does not take the method, 400 for
    /// a bad VIP, address, body or query. Checks happen in the order a
    /// client reads errors: path (and its arguments), query, body.
    pub fn decode(request: &Request) -> Result<Self, Response> {
        let segments = request.segments();
        let allowed = allowed_methods(&segments);
        if !allowed.contains(&request.method) {
            return Err(not_routed(
                request.method.as_str(),
                &request.display_path(),
                &allowed,
            ));
        }
        // Every read is a GET and every change another method.
        let query = query_options(request, request.method != Method::Get);
        let body = Body::Of {
            request,
            query: query.as_ref().err(),
        };
        let route =
            route_of(request.method, &segments, &body)?.ok_or_else(|| request.no_route())?;
        let dry_run = query?;
        let takes_body = matches!(
            route,
            Route::AddVip(_)
                | Route::AddBackend(..)
                | Route::SetState(..)
                | Route::SetWeight(..)
                | Route::SetNode(_)
                | Route::AddAcl(_)
                | Route::SetLimits(..)
        );
        if !takes_body && !request.body.is_null() {
            return Err(Response::error(
                400,
                code::BAD_REQUEST,
                format!(
                    "{} {} takes no body",
                    request.method,
                    request.display_path()
                ),
            ));
        }
        Ok(Self { route, dry_run })
    }
}

/// Where [`route_of`] reads a body from: the request (once its query has
/// been checked, so a bad query is named before a bad body), or nowhere,
/// when only the path's shape is asked about ([`allowed_methods`]).
enum Body<'a> {
    /// The request's body; `query` is the refusal of its query, if any.
    Of {
        /// The request.
        request: &'a Request,
        /// Why its query is refused (answered before the body is read).
        query: Option<&'a Response>,
    },
    /// No body: only whether the path and method match is wanted.
    Probe,
}

impl Body<'_> {
    /// The body as `T`, or the answer refusing the query or the body.
    fn read<T: DeserializeOwned>(&self) -> Result<T, Response> {
        match self {
            Self::Of {
                query: Some(refusal),
                ..
            } => Err((*refusal).clone()),
            Self::Of {
                request,
                query: None,
            } => request.body_as(),
            Self::Probe => Err(Response::error(
                400,
                code::BAD_REQUEST,
                "no body (only the path was matched)",
            )),
        }
    }
}

/// The one table of endpoints: the route `method` on `segments` names,
/// with its path arguments and body read (`Ok(None)`: no endpoint has
/// that method and path). Path arguments are read before the body.
fn route_of(method: Method, segments: &[&str], body: &Body<'_>) -> Result<Option<Route>, Response> {
    let route = match (method, segments) {
        (Method::Get, ["status"]) => Route::Status,
        (Method::Get, ["vips"]) => Route::ListVips,
        (Method::Post, ["vips"]) => Route::AddVip(body.read()?),
        (Method::Get, ["vips", vip]) => Route::GetVip(vip_id(vip)?),
        (Method::Delete, ["vips", vip]) => Route::RemoveVip(vip_id(vip)?),
        (Method::Post, ["vips", vip, "backends"]) => {
            let id = vip_id(vip)?;
            Route::AddBackend(id, body.read()?)
        }
        (Method::Delete, ["vips", vip, "backends", address]) => {
            let (id, address) = target(vip, address)?;
            Route::RemoveBackend(id, address)
        }
        (Method::Put, ["vips", vip, "backends", address, "state"]) => {
            let (id, address) = target(vip, address)?;
            Route::SetState(id, address, state_change(body.read()?)?)
        }
        (Method::Put, ["vips", vip, "backends", address, "weight"]) => {
            let (id, address) = target(vip, address)?;
            Route::SetWeight(id, address, body.read()?)
        }
        (Method::Get, ["vips", vip, "backends", address, "flows"]) => {
            let (id, address) = target(vip, address)?;
            Route::Flows(id, address)
        }
        (Method::Get, ["vips", vip, "flows", client]) => {
            let id = vip_id(vip)?;
            let client = parse_client(&id, client)
                .map_err(|e| Response::error(400, code::BAD_REQUEST, e))?;
            Route::Flow(id, client)
        }
        (Method::Post, ["reload"]) => Route::Reload,
        (Method::Get, ["config"]) => Route::Config,
        (Method::Get, ["node"]) => Route::Node,
        (Method::Put, ["node", "state"]) => Route::SetNode(body.read()?),
        (Method::Get, ["acl"]) => Route::Acl,
        (Method::Post, ["acl"]) => Route::AddAcl(body.read()?),
        (Method::Delete, ["acl", scope, action, source]) => Route::RemoveAcl(AclRule {
            scope: guard_arg(scope)?,
            action: guard_arg(action)?,
            source: guard_arg(source)?,
        }),
        (Method::Put, ["limits", scope]) => {
            let scope = guard_arg(scope)?;
            let spec: LimitsSpec = body.read()?;
            Route::SetLimits(scope, super::convert::limits(&spec)?)
        }
        (Method::Delete, ["limits", scope]) => Route::ClearLimits(guard_arg(scope)?),
        _ => return Ok(None),
    };
    Ok(Some(route))
}

/// The methods the path `segments` (after `/v1/`) takes, read off the one
/// table of endpoints ([`route_of`]); empty for no such path. They give
/// the `Allow` header of a 405.
pub(crate) fn allowed_methods(segments: &[&str]) -> Vec<Method> {
    Method::ALL
        .into_iter()
        .filter(|&method| !matches!(route_of(method, segments, &Body::Probe), Ok(None)))
        .collect()
}

/// `methods` as an `Allow` header lists them (`GET, POST`).
pub(crate) fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The answer to `method` (as sent) on `path` when no endpoint takes it:
/// 404 for a path no endpoint has, else 405 naming the methods it takes
/// (`allowed`, the `Allow` header the server adds).
pub(crate) fn not_routed(method: &str, path: &str, allowed: &[Method]) -> Response {
    if allowed.is_empty() {
        return Response::error(
            404,
            code::NO_ENDPOINT,
            format!("{NO_ENDPOINT_PREFIX} {method} {path}"),
        );
    }
    Response::error(
        405,
        code::METHOD_NOT_ALLOWED,
        format!(
            "{path} does not take {method}: use {}",
            allow_header(allowed)
        ),
    )
}

/// A state change as asked, or the 400 for a timeout without a drain (it
/// would be ignored: only a drain has remaining flows to cut).
fn state_change(change: StateChange) -> Result<StateChange, Response> {
    if change.timeout_s.is_some() && change.state != BackendState::Draining {
        return Err(Response::error(
            400,
            code::BAD_REQUEST,
            format!(
                "invalid request body: timeout_s: only with state {:?} (the state asked is {:?})",
                BackendState::Draining.as_str(),
                change.state.as_str()
            ),
        ));
    }
    Ok(change)
}

/// The `dry_run` option of a change, refusing every other parameter and
/// every spelling but `true`, `false`, `1`, `0`.
fn query_options(request: &Request, is_change: bool) -> Result<bool, Response> {
    let mut dry_run = false;
    for (key, value) in &request.query {
        if key != "dry_run" || !is_change {
            let accepted = if is_change {
                "it takes only dry_run"
            } else {
                "it takes no query parameters"
            };
            return Err(Response::error(
                400,
                code::BAD_REQUEST,
                format!(
                    "unknown query parameter {key:?} for {} {}: {accepted}",
                    request.method,
                    request.display_path()
                ),
            ));
        }
        dry_run = parse_bool(key, value)?;
    }
    Ok(dry_run)
}

/// A boolean query value: exactly `true`, `false`, `1` or `0`.
fn parse_bool(key: &str, value: &str) -> Result<bool, Response> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(Response::error(
            400,
            code::BAD_REQUEST,
            format!("{key}={other:?} is not a boolean: use true or false"),
        )),
    }
}

/// The `{client}` segment (`ADDRESS:PORT`, IPv6 as `[ADDRESS]:PORT`) of a
/// flow of VIP `vip`, or why it cannot be one: not an address and port,
/// port 0 (no TCP or UDP flow has it), or another address family than the
/// VIP's (such a flow never reaches it). Public so that `lbctl flow`
/// refuses such a client itself, as lbd would.
pub fn parse_client(vip: &VipId, segment: &str) -> Result<SocketAddr, String> {
    let client: SocketAddr = segment.parse().map_err(|_| {
        format!("{segment:?} is not a client: expected ADDRESS:PORT, IPv6 as [ADDRESS]:PORT")
    })?;
    if client.port() == 0 {
        return Err(format!(
            "client {client}: port 0 is not the source port of a TCP or UDP flow"
        ));
    }
    if client.is_ipv4() != vip.address.is_ipv4() {
        let family = |ipv4: bool| if ipv4 { "IPv4" } else { "IPv6" };
        return Err(format!(
            "client {client} is {} but VIP {vip} is {}: no such flow reaches it",
            family(client.is_ipv4()),
            family(vip.address.is_ipv4()),
        ));
    }
    Ok(client)
}

/// A `{vip}` path segment (`ADDRESS:PORT/PROTOCOL`), or the 400 answer.
pub fn vip_id(segment: &str) -> Result<VipId, Response> {
    segment
        .parse()
        .map_err(|e: String| Response::error(400, code::BAD_REQUEST, e))
}

/// A scope, action or source segment of the guards' paths, or the 400
/// answer naming what is wrong.
fn guard_arg<T: std::str::FromStr<Err = crate::guard::GuardError>>(
    segment: &str,
) -> Result<T, Response> {
    segment.parse().map_err(|e: crate::guard::GuardError| {
        Response::error(400, code::BAD_REQUEST, e.to_string())
    })
}

/// The `{vip}` and `{address}` segments of a backend's path, or the 400
/// answer.
fn target(vip: &str, address: &str) -> Result<(VipId, IpAddr), Response> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::api::schema::{BackendState, HealthSpec};

    fn request(method: Method, path: &[&str], query: &[(&str, &str)], body: Value) -> Request {
        Request {
            method,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            body,
        }
    }

    fn every_route() -> Vec<Route> {
        let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let v6: VipId = "[2001:2::100]:443/udp".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        // A backend's own health: only the keys given travel.
        let spec = BackendSpec {
            address: b,
            mac: None,
            port: Some(8080),
            weight: Some(5),
            health: Some(HealthSpec {
                rise: Some(5),
                through_tunnel: Some(false),
                ..HealthSpec::default()
            }),
        };
        let plain = BackendSpec {
            health: None,
            address: "198.18.0.12".parse().unwrap(),
            ..spec.clone()
        };
        // Every health key, as the file's table.
        let health = HealthSpec {
            check: Some("http".to_owned()),
            port: Some(8080),
            path: Some("/healthz".to_owned()),
            host: Some("example.test".to_owned()),
            expect_status: Some(204),
            user: Some("haproxy".to_owned()),
            database: Some("app".to_owned()),
            interval_ms: Some(1000),
            fast_interval_ms: Some(200),
            timeout_ms: Some(300),
            rise: Some(3),
            fall: Some(4),
            through_tunnel: Some(true),
        };
        vec![
            Route::Status,
            Route::ListVips,
            Route::AddVip(VipSpec {
                address: id.address,
                port: 80,
                protocol: None,
                table_size: None,
                on_all_down: None,
                drain_timeout_s: Some(300),
                forwarding: Some("nat".to_owned()),
                nat_source: Some("198.18.0.50".parse().unwrap()),
                health: Some(health),
                backends: vec![spec.clone(), plain.clone()],
            }),
            Route::GetVip(v6),
            Route::RemoveVip(id),
            Route::AddBackend(id, spec),
            Route::AddBackend(id, plain),
            Route::RemoveBackend(v6, "2001:2::11".parse().unwrap()),
            Route::SetState(
                id,
                b,
                StateChange {
                    state: BackendState::Draining,
                    timeout_s: Some(30),
                    from: None,
                },
            ),
            Route::SetState(
                id,
                b,
                StateChange {
                    state: BackendState::Enabled,
                    timeout_s: None,
                    from: Some(BackendState::Maintenance),
                },
            ),
            Route::SetWeight(id, b, WeightChange { weight: 7 }),
            Route::Flows(id, b),
            Route::Flow(id, "198.18.1.10:40000".parse().unwrap()),
            Route::Flow(v6, "[2001:2:1::10]:40000".parse().unwrap()),
            Route::Reload,
            Route::Config,
            Route::Node,
            Route::SetNode(NodeChange {
                state: crate::bgp::NodeState::Drained,
            }),
            Route::Acl,
            Route::AddAcl(AclRule {
                scope: Scope::Vip(v6),
                action: crate::guard::Action::Allow,
                source: "2001:2:1::/48".parse().unwrap(),
            }),
            Route::RemoveAcl(AclRule {
                scope: Scope::Global,
                action: crate::guard::Action::Deny,
                source: "198.18.66.0/24".parse().unwrap(),
            }),
            Route::SetLimits(
                Scope::Vip(id),
                Limits {
                    source: Some(crate::guard::RateLimit::new(5, Some(9), "source").unwrap()),
                    ..Limits::default()
                },
            ),
            Route::ClearLimits(Scope::Global),
        ]
    }

    #[test]
    fn bad_guard_arguments_are_refused_naming_what_is_wrong() {
        let r = |m, p: &[&str], body| refused(m, p, &[], body);
        let (status, message) = r(
            Method::Delete,
            &["acl", "global", "deny", "198.18.66.1/24"],
            Value::Null,
        );
        assert_eq!(status, 400);
        assert!(message.contains("host bits set"), "{message}");
        let (status, message) = r(
            Method::Delete,
            &["acl", "198.18.0.100", "deny", "198.18.66.0/24"],
            Value::Null,
        );
        assert_eq!(status, 400);
        assert!(message.contains("global"), "{message}");
        let (status, message) = r(
            Method::Post,
            &["acl"],
            json!({"scope": "global", "action": "deny", "source": "nope"}),
        );
        assert_eq!(status, 400);
        assert!(message.contains("is not a CIDR prefix"), "{message}");
        let (status, message) = r(
            Method::Post,
            &["acl"],
            json!({"scope": "global", "action": "block", "source": "198.18.66.0/24"}),
        );
        assert_eq!(status, 400);
        assert!(message.contains("block"), "{message}");
        let (status, message) = r(
            Method::Put,
            &["limits", "global"],
            json!({"source": {"per_s": 1, "burst": 0}}),
        );
        assert_eq!(status, 400);
        assert!(
            message.contains("source.burst: 0 is out of range"),
            "{message}"
        );
    }

    #[test]
    fn every_route_decodes_to_what_was_encoded() {
        for route in every_route() {
            let encoded = route.encode().unwrap();
            let segments: Vec<&str> = encoded.segments.iter().map(String::as_str).collect();
            let query: &[(&str, &str)] = if route.is_change() {
                &[("dry_run", "true")]
            } else {
                &[]
            };
            let request = request(
                encoded.method,
                &segments,
                query,
                encoded.body.unwrap_or(Value::Null),
            );
            let call = Call::decode(&request).unwrap_or_else(|r| panic!("{route:?}: {r:?}"));
            assert_eq!(call.route, route);
            assert_eq!(call.dry_run, route.is_change());
        }
    }

    #[test]
    fn dry_run_takes_only_plain_booleans() {
        let r = |query: &[(&str, &str)]| {
            Call::decode(&request(Method::Post, &["reload"], query, Value::Null))
                .map(|c| c.dry_run)
                .map_err(|r| r.status)
        };
        assert_eq!(r(&[]), Ok(false));
        assert_eq!(r(&[("dry_run", "true")]), Ok(true));
        assert_eq!(r(&[("dry_run", "1")]), Ok(true));
        assert_eq!(r(&[("dry_run", "false")]), Ok(false));
        assert_eq!(r(&[("dry_run", "0")]), Ok(false));
        for bad in ["TRUE", "on", "yes", "", "tru"] {
            assert_eq!(r(&[("dry_run", bad)]), Err(400), "dry_run={bad:?}");
        }
        assert_eq!(r(&[("dryrun", "true")]), Err(400));
        assert_eq!(r(&[("dry_run", "true"), ("x", "1")]), Err(400));
    }

    #[test]
    fn reads_take_no_query_and_no_body() {
        let status = |query: &[(&str, &str)], body| {
            Call::decode(&request(Method::Get, &["status"], query, body))
                .err()
                .map(|r| r.status)
        };
        assert_eq!(status(&[], Value::Null), None);
        assert_eq!(status(&[("dry_run", "true")], Value::Null), Some(400));
        assert_eq!(status(&[], json!({"x": 1})), Some(400));
    }

    #[test]
    fn bad_paths_and_bodies_are_answered_not_panicked_on() {
        let r = |m, p: &[&str], body| {
            Call::decode(&request(m, p, &[], body))
                .err()
                .map_or(200, |r| r.status)
        };
        assert_eq!(r(Method::Get, &["nope"], Value::Null), 404);
        assert_eq!(r(Method::Post, &["status"], Value::Null), 405);
        assert_eq!(r(Method::Get, &["vips", "x"], Value::Null), 400);
        assert_eq!(
            r(Method::Get, &["vips", "198.18.0.100:0"], Value::Null),
            400
        );
        assert_eq!(r(Method::Post, &["vips"], json!({"port": 80})), 400);
        let state = [
            "vips",
            "198.18.0.100:80",
            "backends",
            "198.18.0.11",
            "state",
        ];
        assert_eq!(r(Method::Put, &state, json!({"state": 1})), 400);
        let bad_backend = ["vips", "198.18.0.100:80", "backends", "nope", "state"];
        assert_eq!(
            r(Method::Put, &bad_backend, json!({"state": "enabled"})),
            400
        );
    }

    /// The status and message of the answer refusing a request.
    fn refused(
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Value,
    ) -> (u16, String) {
        match Call::decode(&request(method, path, query, body)) {
            Ok(call) => panic!("{method} {path:?} was accepted as {call:?}"),
            Err(answer) => (
                answer.status,
                answer.body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        }
    }

    #[test]
    fn a_known_path_names_the_methods_it_takes() {
        use Method::{Delete, Get, Post, Put};
        let backend = ["vips", "198.18.0.100:80", "backends", "198.18.0.11"];
        for (path, methods) in [
            (&["status"][..], &[Get][..]),
            (&["reload"], &[Post]),
            (&["vips"], &[Get, Post]),
            (&["vips", "198.18.0.100:80"], &[Get, Delete]),
            // The shape decides, not whether the arguments parse.
            (&["vips", "x"], &[Get, Delete]),
            (&backend, &[Delete]),
            (&["limits", "global"], &[Put, Delete]),
            (&["acl"], &[Get, Post]),
            (&["nope"], &[]),
            (&[], &[]),
            (&["status", "x"], &[]),
        ] {
            assert_eq!(allowed_methods(path), methods, "{path:?}");
        }
        for (method, path, allow) in [
            (Get, &["reload"][..], "POST"),
            (Post, &["status"], "GET"),
            (Put, &["vips"], "GET, POST"),
            (Get, &backend, "DELETE"),
        ] {
            let (status, message) = refused(method, path, &[], Value::Null);
            assert_eq!(status, 405, "{method} {path:?}");
            assert!(message.ends_with(&format!("use {allow}")), "{message}");
        }
        assert_eq!(allow_header(&Method::ALL), "GET, POST, PUT, DELETE");
    }

    #[test]
    fn the_path_is_checked_before_the_query_and_the_query_before_the_body() {
        let (status, message) = refused(Method::Get, &["nope"], &[("dry_run", "1")], Value::Null);
        assert_eq!(status, 404, "{message}");
        assert!(
            message.starts_with("no such endpoint: GET /v1/nope"),
            "{message}"
        );
        let (status, _) = refused(Method::Get, &["reload"], &[("dry_run", "1")], Value::Null);
        assert_eq!(status, 405);
        // A bad VIP in the path before a bad query.
        let (status, message) = refused(
            Method::Post,
            &["vips", "x", "backends"],
            &[("x", "1")],
            json!({"address": 1}),
        );
        assert_eq!(status, 400);
        assert!(!message.contains("query"), "{message}");
        // A bad query before a bad body.
        let (status, message) =
            refused(Method::Post, &["vips"], &[("x", "1")], json!({"port": 80}));
        assert_eq!(status, 400);
        assert!(
            message.contains("unknown query parameter \"x\""),
            "{message}"
        );
        let (_, message) = refused(
            Method::Delete,
            &["vips", "198.18.0.100:80"],
            &[("x", "1")],
            json!({"a": 1}),
        );
        assert!(message.contains("unknown query parameter"), "{message}");
    }

    #[test]
    fn a_timeout_goes_only_with_a_drain() {
        let state = [
            "vips",
            "198.18.0.100:80",
            "backends",
            "198.18.0.11",
            "state",
        ];
        for other in ["enabled", "maintenance"] {
            let (status, message) = refused(
                Method::Put,
                &state,
                &[],
                json!({"state": other, "timeout_s": 30}),
            );
            assert_eq!(status, 400);
            assert!(
                message.contains("timeout_s: only with state \"draining\""),
                "{message}"
            );
        }
        for body in [
            json!({"state": "draining", "timeout_s": 30}),
            json!({"state": "draining", "timeout_s": 0}),
            json!({"state": "maintenance"}),
        ] {
            assert!(
                Call::decode(&request(Method::Put, &state, &[], body.clone())).is_ok(),
                "{body}"
            );
        }
    }

    #[test]
    fn body_type_errors_name_the_json_path() {
        let backend = ["vips", "198.18.0.100:80", "backends", "198.18.0.11"];
        let state = [&backend[..], &["state"]].concat();
        let weight = [&backend[..], &["weight"]].concat();
        let vip = |extra: Value| {
            let mut body = json!({"address": "198.18.0.100", "port": 80});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        let backends = json!([{"address": "198.18.0.11"}, {"address": "198.18.0.12"},
                              {"address": "198.18.0.13"}, {"address": "x"}]);
        for (method, path, body, expected) in [
            (
                Method::Post,
                &["vips"][..],
                json!({"address": "198.18.0.100", "port": "80"}),
                "invalid request body: port: invalid type: string \"80\"",
            ),
            (
                Method::Post,
                &["vips"],
                json!({"address": "198.18.0.100", "port": 18_446_744_073_709_551_615_u64}),
                "invalid request body: port: invalid value: integer `18446744073709551615`",
            ),
            (
                Method::Post,
                &["vips"],
                vip(json!({"backends": backends})),
                "invalid request body: backends[3].address: invalid IP address syntax",
            ),
            (
                Method::Post,
                &["vips"],
                json!({"port": 80}),
                "invalid request body: missing field `address`",
            ),
            (
                Method::Post,
                &["vips", "198.18.0.100:80", "backends"],
                json!({"address": "198.18.0.11", "weight": "5"}),
                "invalid request body: weight: invalid type: string \"5\"",
            ),
            (
                Method::Put,
                &state,
                json!({"state": "draining", "timeout_s": -1}),
                "invalid request body: timeout_s: invalid value: integer `-1`",
            ),
            (
                Method::Put,
                &weight,
                json!({"weight": 10_001}),
                "invalid request body: weight: 10001 is out of range 0..=10000",
            ),
            (
                Method::Put,
                &["limits", "global"],
                json!({"source": {"per_s": 20}, "prefix_v4": 300}),
                "prefix_v4: 300 is out of range 1..=32",
            ),
            (
                Method::Put,
                &["limits", "global"],
                json!({"source": {"per_s": 20}, "prefix_v6": 0}),
                "prefix_v6: 0 is out of range 1..=128",
            ),
            (
                Method::Put,
                &["limits", "global"],
                json!({"source": {"per_s": 0}}),
                "source.per_s: 0 is out of range 1..=1000000",
            ),
            (
                Method::Put,
                &["limits", "global"],
                json!({"prefix": {"per_s": 5, "burst": 1_000_001}}),
                "prefix.burst: 1000001 is out of range 1..=1000000",
            ),
            (
                Method::Put,
                &["limits", "global"],
                json!({"source": {"per_s": "5"}}),
                "invalid request body: source.per_s: invalid type: string \"5\"",
            ),
            (
                Method::Put,
                &["limits", "global"],
                json!({"source": {"per_s": 5, "brust": 1}}),
                "invalid request body: source.brust: unknown field `brust`",
            ),
            (
                Method::Post,
                &["acl"],
                json!({"scope": "global", "action": "deny", "source": "nope"}),
                "invalid request body: source: ",
            ),
        ] {
            let (status, message) = refused(method, path, &[], body.clone());
            assert_eq!(status, 400, "{body}: {message}");
            assert!(message.starts_with(expected), "{body}: {message:?}");
        }
    }

    #[test]
    fn a_limit_burst_left_out_is_the_rate_as_in_the_file() {
        let call = Call::decode(&request(
            Method::Put,
            &["limits", "global"],
            &[],
            json!({"source": {"per_s": 20}, "prefix": {"per_s": 200, "burst": 400}}),
        ))
        .unwrap();
        let Route::SetLimits(Scope::Global, limits) = call.route else {
            panic!("{call:?}");
        };
        assert_eq!(
            limits,
            Limits {
                source: Some(crate::guard::RateLimit::new(20, Some(20), "source").unwrap()),
                prefix: Some(crate::guard::RateLimit::new(200, Some(400), "prefix").unwrap()),
                ..Limits::default()
            }
        );
        // As the file gives the same [[limit]].
        let file = crate::config::Config::from_toml_str(
            "interface = \"eth0\"\n[[limit]]\nsource_rate = 20\nprefix_rate = 200\nprefix_burst = 400\n",
            "test.toml",
        )
        .unwrap();
        assert_eq!(file.guard.limits.get(&Scope::Global), Some(&limits));
    }
}
