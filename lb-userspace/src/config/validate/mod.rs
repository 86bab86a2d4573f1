//! The whole document checked and turned into a `Config`: the node's
//! settings, each VIP and its backends, and the rules that span sections
//! (NAT sources that are not VIPs and move with them). Here the document
//! itself; each family of rules in a file of its own below.

mod generic_xdp;
mod listeners;
mod log_filter;
mod node_settings;
mod paths;
mod peers;
mod vips;
mod vrrp_addresses;
mod vrrp_instances;

pub(crate) use peers::peer_on_a_vip;

use toml::{Spanned, Value};

use crate::config::{
    checker::Checker, raw::RawConfig, vrrp::RawVrrp, Config, ConfigError, LogFormat, MaglevMode,
};

impl Checker<'_> {
    /// The document as a `Config`, checked in the order its sections are
    /// read (the node's settings, the sections, the VIPs, the VRRP
    /// instances, then the rules across them): the first error found is
    /// the one reported.
    pub(super) fn config(&self, raw: &RawConfig) -> Result<Config, ConfigError> {
        let interface = self.interface(self.required(&raw.interface, 0, "interface")?)?;
        let (attach, xdp_mode) = self.hook(raw)?;
        let maglev_mode = match &raw.maglev_mode {
            None => MaglevMode::default(),
            Some(value) => self.choice(
                value,
                "maglev_mode",
                &MaglevMode::ALL.map(|m| (m.name(), m)),
            )?,
        };
        let (conntrack_size, half_open_size) = self.table_sizes(raw)?;
        let (admin_socket, pin_dir) = self.node_paths(raw)?;
        let admin_socket_group = match &raw.admin_socket_group {
            None => None,
            Some(value) => Some(self.group(value, "admin_socket_group")?),
        };
        let log_level = self.log_level(raw)?;
        let log_format = match &raw.log_format {
            None => LogFormat::default(),
            Some(value) => self.choice(
                value,
                "log_format",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?,
        };
        let metrics_listen = self.metrics_listen(raw)?;
        let (tcp_idle_timeout, udp_idle_timeout) = self.idle_timeouts(raw)?;

        let nat = self.nat(raw.nat.as_ref())?;
        let tunnel = self.tunnel(raw.tunnel.as_ref())?;
        let bgp = self.bgp(raw.bgp.as_ref())?;
        let sync = self.sync(raw.sync.as_ref())?;
        let flood = self.flood(raw.flood.as_ref())?;

        let vips = self.vips(raw, &nat)?;
        self.nat_sources_are_not_vips(&raw.vip.0, &vips)?;
        self.backends_are_not_own_addresses(&raw.vip.0, &vips)?;
        self.tunnel_sources_are_free(raw.tunnel.as_ref(), &tunnel, &vips)?;

        let vrrp_listed: Vec<bool> = raw
            .vrrp
            .0
            .iter()
            .map(|r| r.get_ref().lists_addresses())
            .collect();
        let instances = self.vrrp_instances(raw, &vips)?;
        self.nat_sources_move(&raw.vrrp.0, &instances, &vips)?;
        self.vrrp_addresses_are_single(&raw.vrrp.0, &instances, &vips)?;
        self.unicast_peers_are_others(&raw.vrrp.0, &instances, &vips)?;
        self.unicast_sources_are_own(&raw.vrrp.0, &instances, &vips, &nat)?;
        self.replication_peers_are_others(raw, &instances, &vips, sync.as_ref())?;
        self.listeners_bind_at_start(
            raw,
            metrics_listen,
            &instances,
            &vips,
            bgp.as_ref(),
            sync.as_ref(),
        )?;
        self.metrics_listen_is_free(raw, metrics_listen, &instances, sync.as_ref())?;
        self.announcement_is_single(raw, bgp.as_ref(), sync.as_ref(), &instances, &vips)?;
        let guard = self.guard(&raw.acl, &raw.limit, &vips)?;
        self.generic_xdp_serves(raw, attach, xdp_mode, &vips)?;

        Ok(Config {
            interface,
            attach,
            xdp_mode,
            conntrack_size,
            half_open_size,
            maglev_mode,
            admin_socket,
            pin_dir,
            admin_socket_group,
            log_level,
            log_format,
            metrics_listen,
            tcp_idle_timeout,
            udp_idle_timeout,
            vips,
            vrrp: instances,
            vrrp_listed,
            nat,
            tunnel,
            bgp,
            sync,
            guard,
            flood,
        })
    }
}

/// Where `[[vrrp]]` number `index` writes the setting `field` picks, else
/// where that table starts (the value was taken by default), else the
/// document's start: an error's position.
fn vrrp_setting_at(
    raw: &RawConfig,
    index: usize,
    field: fn(&RawVrrp) -> Option<&Spanned<Value>>,
) -> usize {
    let table = raw.vrrp.0.get(index);
    table
        .and_then(|t| field(t.get_ref()))
        .map(|v| v.span().start)
        .or(table.map(|t| t.span().start))
        .unwrap_or(0)
}
