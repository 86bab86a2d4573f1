//! Where one client's flow to a VIP goes, and why (`lbctl explain`): the
//! connection table, the half-open table, the Maglev table and, for a
//! NAT VIP, its translation, read as the data plane reads them.

use std::{borrow::Cow, net::SocketAddr};

use crate::{
    api::{code, Response},
    config::Protocol,
    daemon::{
        engine::Engine,
        flow::{explain, flow_key, Facts},
    },
    model::ModelError,
    vip_id::VipId,
};

impl Engine {
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
