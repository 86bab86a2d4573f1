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
mod tests;
