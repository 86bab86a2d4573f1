//! The API's endpoints as typed calls, one per route: the way lbctl
//! reaches lbd.

use std::net::{IpAddr, SocketAddr};

use super::{Client, ClientError};
use crate::{
    api::{
        flow_schema::FlowExplanation,
        route::Route,
        schema::{
            BackendSpec, Change, ConfigText, GuardStatus, NodeChange, NodeStatus, StateChange,
            Status, VipSpec, VipStatus, WeightChange,
        },
    },
    guard::{AclRule, Limits, Scope},
    model::FlowCount,
    vip_id::VipId,
};

impl Client {
    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.send(Route::Status, false).await
    }

    /// `GET /v1/vips`.
    pub async fn vips(&self) -> Result<Vec<VipStatus>, ClientError> {
        self.send(Route::ListVips, false).await
    }

    /// `GET /v1/vips/{vip}`.
    pub async fn vip(&self, id: VipId) -> Result<VipStatus, ClientError> {
        self.send(Route::GetVip(id), false).await
    }

    /// `POST /v1/vips`.
    pub async fn add_vip(&self, spec: VipSpec, dry_run: bool) -> Result<Change, ClientError> {
        self.send(Route::AddVip(spec), dry_run).await
    }

    /// `DELETE /v1/vips/{vip}`.
    pub async fn remove_vip(&self, id: VipId, dry_run: bool) -> Result<Change, ClientError> {
        self.send(Route::RemoveVip(id), dry_run).await
    }

    /// `POST /v1/vips/{vip}/backends`.
    pub async fn add_backend(
        &self,
        id: VipId,
        spec: BackendSpec,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(Route::AddBackend(id, spec), dry_run).await
    }

    /// `DELETE /v1/vips/{vip}/backends/{address}`.
    pub async fn remove_backend(
        &self,
        id: VipId,
        address: IpAddr,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(Route::RemoveBackend(id, address), dry_run).await
    }

    /// `PUT /v1/vips/{vip}/backends/{address}/state`.
    pub async fn set_state(
        &self,
        id: VipId,
        address: IpAddr,
        change: StateChange,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(Route::SetState(id, address, change), dry_run)
            .await
    }

    /// `PUT /v1/vips/{vip}/backends/{address}/weight`.
    pub async fn set_weight(
        &self,
        id: VipId,
        address: IpAddr,
        weight: u32,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(
            Route::SetWeight(id, address, WeightChange { weight }),
            dry_run,
        )
        .await
    }

    /// `GET /v1/vips/{vip}/backends/{address}/flows`.
    pub async fn backend_flows(
        &self,
        id: VipId,
        address: IpAddr,
    ) -> Result<FlowCount, ClientError> {
        self.send(Route::Flows(id, address), false).await
    }

    /// `GET /v1/vips/{vip}/flows/{client}`.
    pub async fn flow(
        &self,
        id: VipId,
        client: SocketAddr,
    ) -> Result<FlowExplanation, ClientError> {
        self.send(Route::Flow(id, client), false).await
    }

    /// `POST /v1/reload`.
    pub async fn reload(&self, dry_run: bool) -> Result<Change, ClientError> {
        self.send(Route::Reload, dry_run).await
    }

    /// `GET /v1/config`.
    pub async fn config(&self) -> Result<ConfigText, ClientError> {
        self.send(Route::Config, false).await
    }

    /// `GET /v1/node`.
    pub async fn node(&self) -> Result<NodeStatus, ClientError> {
        self.send(Route::Node, false).await
    }

    /// `PUT /v1/node/state`.
    pub async fn set_node_state(
        &self,
        state: crate::bgp::NodeState,
        dry_run: bool,
    ) -> Result<NodeStatus, ClientError> {
        self.send(Route::SetNode(NodeChange { state }), dry_run)
            .await
    }

    /// `GET /v1/acl`: deny/allow rules and limits with their counts.
    pub async fn guard(&self) -> Result<GuardStatus, ClientError> {
        self.send(Route::Acl, false).await
    }

    /// `POST /v1/acl`.
    pub async fn add_acl(&self, rule: AclRule, dry_run: bool) -> Result<GuardStatus, ClientError> {
        self.send(Route::AddAcl(rule), dry_run).await
    }

    /// `DELETE /v1/acl/{scope}/{action}/{source}`.
    pub async fn remove_acl(
        &self,
        rule: AclRule,
        dry_run: bool,
    ) -> Result<GuardStatus, ClientError> {
        self.send(Route::RemoveAcl(rule), dry_run).await
    }

    /// `PUT /v1/limits/{scope}`.
    pub async fn set_limits(
        &self,
        scope: Scope,
        limits: Limits,
        dry_run: bool,
    ) -> Result<GuardStatus, ClientError> {
        self.send(Route::SetLimits(scope, limits), dry_run).await
    }

    /// `DELETE /v1/limits/{scope}`.
    pub async fn clear_limits(
        &self,
        scope: Scope,
        dry_run: bool,
    ) -> Result<GuardStatus, ClientError> {
        self.send(Route::ClearLimits(scope), dry_run).await
    }
}
