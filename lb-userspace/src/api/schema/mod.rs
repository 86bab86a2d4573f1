//! The admin API's request and response bodies: the documented schema
//! shared by lbd (which serves it) and lbctl (which reads it). All under
//! `/v1/`; every change accepts `?dry_run=true`.
//!
//! Which endpoint takes and answers which type is said once, on the
//! variants of [`super::route::Route`].
//!
//! `{vip}` is `ADDRESS:PORT/PROTOCOL` (`198.18.0.100:80/tcp`,
//! `[2001:2::100]:443/tcp`); `{client}` is `ADDRESS:PORT` (`[ADDRESS]:PORT`)
//! of the VIP's family. Errors come as `{"error": {"code", "message"}}`
//! with 400 (bad request, or a change the data plane cannot stage), 404 (no
//! such endpoint, VIP or backend), 405 (the path does not take the method),
//! 409 (exists already), 500 (lbd failed: a data-plane write).
//!
//! Request bodies are strict: a field the schema does not have, or a key
//! given twice, is refused (400, naming it), so a typo never passes for an
//! absent field. A value of the wrong type is refused naming its JSON path
//! (`backends[3].address: invalid IP address syntax`). Values are checked
//! by the config file's rules (`config::value`, through `api::convert`); a
//! refusal names the field as the body spells it (`backends[1].weight: -1
//! is out of range 0..=10000`). States and kinds are lower-case names on
//! the wire.

mod change;
mod guard;
mod node;
mod status;

pub use crate::model::BackendState;
pub use change::{
    BackendSpec, Change, ConfigText, DrainPlan, HealthSpec, StateChange, VipSpec, WeightChange,
};
pub use guard::{AclRuleStatus, GuardDrops, GuardStatus, LimitStatus};
pub(crate) use guard::{LimitsSpec, RateSpec};
pub use node::{NodeChange, NodeStatus};
pub use status::{
    BackendStatus, CheckKind, CheckStatus, ConfigMismatch, ConntrackStatus, HealthStatus, HookLoss,
    HookLost, MismatchKind, NatStatus, ReloadCounts, ReplicationPeerStatus, ReplicationStatus,
    SlowStartStatus, Status, TunnelStatus, UnreadTraffic, VipNatStatus, VipStatus,
};
