//! The whole document checked and turned into a `Config`: the node's
//! settings, each VIP and its backends, and the rules that span sections
//! (NAT sources that are not VIPs and move with them). Here the document
//! itself; each family of rules in a file of its own below.

mod generic_xdp;
mod listeners;
mod log_filter;
mod paths;
mod peers;
mod vips;
mod vrrp_addresses;

pub(crate) use peers::peer_on_a_vip;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Spanned, Value};

use self::{
    log_filter::log_filter_silences_lbd,
    paths::{admin_socket_path, pin_dir_path},
};
use crate::config::{
    checker::Checker, raw::RawConfig, value, vrrp::RawVrrp, Attach, Config, ConfigError, LogFormat,
    MaglevMode, Protocol, VipConfig, VrrpConfig, XdpMode, DEFAULT_ADMIN_SOCKET,
    DEFAULT_CONNTRACK_SIZE, DEFAULT_HALF_OPEN_SIZE, DEFAULT_METRICS_LISTEN, DEFAULT_PIN_DIR,
    DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_UDP_IDLE_TIMEOUT, MAX_BACKENDS_TOTAL, MAX_CONNTRACK_SIZE,
    MAX_HALF_OPEN_SIZE, MAX_VIPS, MIN_CONNTRACK_SIZE, MIN_HALF_OPEN_SIZE,
};

impl Checker<'_> {
    pub(super) fn config(&self, raw: &RawConfig) -> Result<Config, ConfigError> {
        let interface = self.interface(self.required(&raw.interface, 0, "interface")?)?;
        let attach = match &raw.attach {
            None => Attach::default(),
            Some(value) => self.choice(value, "attach", &Attach::ALL.map(|a| (a.name(), a)))?,
        };
        let xdp_mode = match &raw.xdp_mode {
            None => XdpMode::default(),
            Some(value) => {
                let mode = self.choice(value, "xdp_mode", &XdpMode::ALL.map(|m| (m.name(), m)))?;
                // "auto" (the default, which `lbctl config dump` writes) is
                // let by; a mode asked for would be silently ignored.
                if attach == Attach::Tc && mode != XdpMode::Auto {
                    return Err(self.bad_value(
                        value,
                        "xdp_mode",
                        format!(
                            "xdp_mode = {:?} is for attach = \"xdp\"; with attach = \"tc\" there is no XDP program to attach: remove xdp_mode",
                            mode.name()
                        ),
                    ));
                }
                mode
            }
        };
        let maglev_mode = match &raw.maglev_mode {
            None => MaglevMode::default(),
            Some(value) => self.choice(
                value,
                "maglev_mode",
                &MaglevMode::ALL.map(|m| (m.name(), m)),
            )?,
        };
        let conntrack_size = match &raw.conntrack_size {
            None => DEFAULT_CONNTRACK_SIZE,
            Some(value) => self.integer(
                value,
                "conntrack_size",
                MIN_CONNTRACK_SIZE..=MAX_CONNTRACK_SIZE,
            )?,
        };
        let half_open_size = match &raw.half_open_size {
            None => DEFAULT_HALF_OPEN_SIZE,
            Some(value) => self.integer(
                value,
                "half_open_size",
                MIN_HALF_OPEN_SIZE..=MAX_HALF_OPEN_SIZE,
            )?,
        };

        let admin_socket = match &raw.admin_socket {
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
            Some(value) => {
                let path = self.string(value, "admin_socket")?;
                self.checked(value, "admin_socket", admin_socket_path(path))?;
                PathBuf::from(path)
            }
        };
        let pin_dir = match &raw.pin_dir {
            None => Some(PathBuf::from(DEFAULT_PIN_DIR)),
            Some(value) => {
                let path = self.string(value, "pin_dir")?;
                if path == "off" {
                    None
                } else {
                    self.checked(value, "pin_dir", pin_dir_path(path))?;
                    Some(PathBuf::from(path))
                }
            }
        };
        let admin_socket_group = match &raw.admin_socket_group {
            None => None,
            Some(value) => Some(self.group(value, "admin_socket_group")?),
        };
        let log_level = match &raw.log_level {
            None => "info".to_owned(),
            Some(value) => {
                let level = self.string(value, "log_level")?;
                if tracing_subscriber::EnvFilter::try_new(level).is_err() || level.is_empty() {
                    return Err(self.bad_value(
                        value,
                        "log_level",
                        format!("{level:?} is not a log filter (e.g. \"info\", \"warn\", \"info,lb_userspace=debug\")"),
                    ));
                }
                if let Some(problem) = log_filter_silences_lbd(level) {
                    return Err(self.bad_value(value, "log_level", problem));
                }
                level.to_owned()
            }
        };
        let log_format = match &raw.log_format {
            None => LogFormat::default(),
            Some(value) => self.choice(
                value,
                "log_format",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?,
        };
        let metrics_listen = match &raw.metrics_listen {
            None => DEFAULT_METRICS_LISTEN.parse().ok(),
            Some(value) => {
                let text = self.string(value, "metrics_listen")?;
                if text == "off" {
                    None
                } else if text.is_empty() {
                    // A template that rendered nothing would otherwise
                    // take /metrics, /healthz and /readyz away unseen.
                    return Err(self.bad_value(
                        value,
                        "metrics_listen",
                        "is empty: give ADDRESS:PORT, or \"off\" to serve no metrics",
                    ));
                } else {
                    let address = text.parse().map_err(|_| {
                        self.bad_value(
                            value,
                            "metrics_listen",
                            format!("{text:?} is not ADDRESS:PORT (or \"off\")"),
                        )
                    })?;
                    Some(self.checked(
                        value,
                        "metrics_listen",
                        value::socket_address(address, false),
                    )?)
                }
            }
        };
        let seconds = |value: &Option<Spanned<Value>>, name: &str, default: Duration| {
            value.as_ref().map_or(Ok(default), |v| {
                self.integer::<u32>(v, name, 1..=86_400 * 7)
                    .map(|s| Duration::from_secs(s.into()))
            })
        };
        let tcp_idle_timeout = seconds(
            &raw.tcp_idle_timeout_s,
            "tcp_idle_timeout_s",
            DEFAULT_TCP_IDLE_TIMEOUT,
        )?;
        let udp_idle_timeout = seconds(
            &raw.udp_idle_timeout_s,
            "udp_idle_timeout_s",
            DEFAULT_UDP_IDLE_TIMEOUT,
        )?;

        let nat = self.nat(raw.nat.as_ref())?;
        let tunnel = self.tunnel(raw.tunnel.as_ref())?;
        let bgp = self.bgp(raw.bgp.as_ref())?;
        let sync = self.sync(raw.sync.as_ref())?;
        let flood = self.flood(raw.flood.as_ref())?;

        if let Some(extra) = raw.vip.0.get(MAX_VIPS) {
            return Err(self.invalid(
                extra.span().start,
                &format!("vip[{MAX_VIPS}]"),
                format!("too many VIPs; at most {MAX_VIPS} are allowed"),
            ));
        }
        let mut vips: Vec<VipConfig> = Vec::with_capacity(raw.vip.0.len());
        let mut seen: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        let mut backends_before = 0;
        for (index, raw_vip) in raw.vip.0.iter().enumerate() {
            // Checked before the VIP's own validation, on the raw count, so
            // the error names the first backend past the limit.
            let room = MAX_BACKENDS_TOTAL.saturating_sub(backends_before);
            if let Some(extra) = raw_vip.get_ref().backend.0.get(room) {
                return Err(self.invalid(
                    extra.span().start,
                    &format!("vip[{index}].backend[{room}]"),
                    format!(
                        "too many backends; at most {MAX_BACKENDS_TOTAL} are allowed across all VIPs"
                    ),
                ));
            }
            backends_before += raw_vip.get_ref().backend.0.len();
            let vip = self.vip(index, raw_vip, &nat)?;
            let key = (vip.address, vip.port, vip.protocol);
            if let Some(first) = seen.get(&key) {
                return Err(self.invalid(
                    raw_vip.span().start,
                    &format!("vip[{index}]"),
                    format!(
                        "duplicates vip[{first}]: same address {}, port {} and protocol {}",
                        vip.address, vip.port, vip.protocol
                    ),
                ));
            }
            seen.insert(key, index);
            vips.push(vip);
        }
        self.nat_sources_are_not_vips(&raw.vip.0, &vips)?;
        self.backends_are_not_own_addresses(&raw.vip.0, &vips)?;
        self.tunnel_sources_are_free(raw.tunnel.as_ref(), &tunnel, &vips)?;

        let mut instances: Vec<VrrpConfig> = Vec::new();
        let vrrp_listed: Vec<bool> = raw
            .vrrp
            .0
            .iter()
            .map(|r| r.get_ref().lists_addresses())
            .collect();
        let mut replicating: Option<usize> = None;
        for (index, raw_vrrp) in raw.vrrp.0.iter().enumerate() {
            let mut instance = self.vrrp(index, raw_vrrp)?;
            if instance.addresses.is_empty() {
                // Default: every VIP address (of the first VIP's family).
                let family_v4 = vips.first().is_none_or(|v| v.address.is_ipv4());
                for vip in &vips {
                    if vip.address.is_ipv4() == family_v4
                        && !instance.addresses.contains(&vip.address)
                    {
                        instance.addresses.push(vip.address);
                    }
                }
                // NAT addresses move with the VIPs: replies come back to them.
                for source in vips.iter().filter_map(|v| v.nat.map(|n| n.source)) {
                    if source.is_ipv4() == family_v4 && !instance.addresses.contains(&source) {
                        instance.addresses.push(source);
                    }
                }
                // The cap a written list has (`vrrp`): an advertisement
                // holding more could not be encoded, so the master would
                // never advertise and the backups would take over too.
                let max = crate::vrrp::packet::MAX_ADDRESSES;
                if instance.addresses.len() > max {
                    let family = if family_v4 { "IPv4" } else { "IPv6" };
                    return Err(self.invalid(
                        raw_vrrp.span().start,
                        &format!("vrrp[{index}].addresses"),
                        format!(
                            "vrrp[{index}] lists no addresses, so it takes every {family} VIP address and NAT address: {} addresses, but at most {max} fit an advertisement; list the addresses it moves explicitly, or split them between several [[vrrp]] instances (each with its own vrid and addresses)",
                            instance.addresses.len()
                        ),
                    ));
                }
            }
            if instance.addresses.is_empty() {
                return Err(self.invalid(
                    raw_vrrp.span().start,
                    &format!("vrrp[{index}].addresses"),
                    "no address to move: list addresses or configure a VIP",
                ));
            }
            if let Some(first) = instances.iter().position(|i| {
                i.vrid == instance.vrid
                    && i.addresses.first().map(IpAddr::is_ipv4)
                        == instance.addresses.first().map(IpAddr::is_ipv4)
            }) {
                return Err(self.invalid(
                    raw_vrrp.span().start,
                    &format!("vrrp[{index}].vrid"),
                    format!("VRID {} is already vrrp[{first}]'s", instance.vrid),
                ));
            }
            if let Some(v) = raw_vrrp.get_ref().replication_key() {
                // The daemon starts the first instance's replication only.
                if let Some(first) = replicating {
                    return Err(self.bad_value(
                        v,
                        &format!("vrrp[{index}]"),
                        format!("replication is already configured in vrrp[{first}]: a pair replicates over one channel, so keep sync_listen, sync_peer and sync_key_file in one [[vrrp]]"),
                    ));
                }
                replicating = Some(index);
            }
            instances.push(instance);
        }
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
