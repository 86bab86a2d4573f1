//! Where the listeners bind (`metrics_listen`, `sync_listen`, `[sync]
//! listen`): at start, on no address a `[[vrrp]]` moves, and never two on
//! one port. Rules across the node's settings, `[[vrrp]]` and `[sync]`.

use super::vrrp_setting_at;
use crate::config::{
    checker::Checker, raw::RawConfig, value, BgpConfig, ConfigError, SyncSettings, VipConfig,
    VrrpConfig,
};

impl Checker<'_> {
    /// Listeners (`metrics_listen`, `sync_listen`, `[sync] listen`) bind
    /// when lbd starts, before any VRRP instance takes its addresses (and
    /// lbd removes them at start): on an address a `[[vrrp]]` moves the
    /// bind fails and lbd does not start, or starts only on the node that
    /// still held it. The unspecified address binds anywhere. `[sync]
    /// listen` also names this node to its peers, so it is no VIP address
    /// `[bgp]` announces from every node of the group.
    pub(super) fn listeners_bind_at_start(
        &self,
        raw: &RawConfig,
        metrics: Option<std::net::SocketAddr>,
        instances: &[VrrpConfig],
        vips: &[VipConfig],
        bgp: Option<&BgpConfig>,
        sync: Option<&SyncSettings>,
    ) -> Result<(), ConfigError> {
        const ANY: &str = "give an address of this node's own, or the unspecified address";
        let mut listeners = Vec::new();
        // The default (loopback) is no address an instance moves.
        if let (Some(metrics), Some(v)) = (metrics, &raw.metrics_listen) {
            listeners.push((metrics, "metrics_listen".to_owned(), v.span().start, ANY));
        }
        for (index, instance) in instances.iter().enumerate() {
            let Some(listen) = instance.sync_listen else {
                continue;
            };
            let at = vrrp_setting_at(raw, index, |r| r.sync_listen.as_ref());
            listeners.push((listen, format!("vrrp[{index}].sync_listen"), at, ANY));
        }
        let mesh_at = mesh_listen_at(raw);
        if let (Some(settings), Some(at)) = (sync, mesh_at) {
            listeners.push((
                settings.listen,
                "sync.listen".to_owned(),
                at,
                "give this node's own address",
            ));
        }
        for (listen, field, at, hint) in listeners {
            let ip = listen.ip();
            if let Some(index) = instances.iter().position(|i| i.addresses.contains(&ip)) {
                return Err(self.invalid(
                    at,
                    &field,
                    format!(
                        "{ip} is an address vrrp[{index}] moves: listeners bind at start, before VRRP takes the address; {hint}"
                    ),
                ));
            }
        }
        if let (Some(settings), Some(at), Some(bgp)) = (sync, mesh_at, bgp) {
            let ip = settings.listen.ip();
            let held = instances.iter().any(|i| i.addresses.contains(&ip));
            if let Some(v) = vips
                .iter()
                .position(|v| v.address == ip && bgp.covers(ip, held))
            {
                return Err(self.invalid(
                    at,
                    "sync.listen",
                    format!(
                        "{ip} is vip[{v}]'s address, which [bgp] announces from every node: sync.listen names this node to its peers (its node id is built from it); give this node's own address"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The metrics server and a replication listener cannot bind the same
    /// port of the same address: the second bind fails at start-up.
    pub(super) fn metrics_listen_is_free(
        &self,
        raw: &RawConfig,
        metrics: Option<std::net::SocketAddr>,
        instances: &[VrrpConfig],
        sync: Option<&SyncSettings>,
    ) -> Result<(), ConfigError> {
        let Some(metrics) = metrics else {
            return Ok(());
        };
        let mut listeners = Vec::new();
        for (index, instance) in instances.iter().enumerate() {
            if let Some(listen) = instance.sync_listen {
                let at = vrrp_setting_at(raw, index, |r| r.sync_listen.as_ref());
                listeners.push((listen, format!("vrrp[{index}].sync_listen"), at));
            }
        }
        if let (Some(settings), Some(at)) = (sync, mesh_listen_at(raw)) {
            listeners.push((settings.listen, "sync.listen".to_owned(), at));
        }
        for (listen, name, at) in listeners {
            if !value::listeners_clash(metrics, listen) {
                continue;
            }
            return Err(match &raw.metrics_listen {
                Some(v) => self.bad_value(
                    v,
                    "metrics_listen",
                    format!("{metrics} takes the port of {name} ({listen}): give one of them another port"),
                ),
                None => self.invalid(
                    at,
                    &name,
                    format!("{listen} takes the port of metrics_listen ({metrics}, the default): give one of them another port"),
                ),
            });
        }
        Ok(())
    }
}

/// Where `[sync] listen` is written, else where `[sync]` starts (the
/// listener taken by default): an error's position; None without `[sync]`.
fn mesh_listen_at(raw: &RawConfig) -> Option<usize> {
    raw.sync.as_ref().map(|table| {
        table
            .get_ref()
            .get()
            .listen
            .as_ref()
            .map_or(table.span().start, |v| v.span().start)
    })
}
