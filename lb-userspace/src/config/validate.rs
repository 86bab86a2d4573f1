//! The whole document checked and turned into a `Config`: the node's
//! settings, each VIP and its backends, and the rules that span sections
//! (NAT sources that are not VIPs and move with them).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Spanned, Value};

use super::{
    checker::Checker,
    raw::{RawConfig, RawVip},
    value, vrrp, AllDown, Attach, BackendConfig, Config, ConfigError, HealthConfig, LogFormat,
    MaglevMode, NatConfig, Protocol, VipConfig, VrrpConfig, XdpMode, DEFAULT_ADMIN_SOCKET,
    DEFAULT_CONNTRACK_SIZE, DEFAULT_HALF_OPEN_SIZE, DEFAULT_METRICS_LISTEN, DEFAULT_PIN_DIR,
    DEFAULT_TABLE_SIZE, DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_UDP_IDLE_TIMEOUT, DEFAULT_WEIGHT,
    MAX_BACKENDS_PER_VIP, MAX_BACKENDS_TOTAL, MAX_CONNTRACK_SIZE, MAX_HALF_OPEN_SIZE, MAX_VIPS,
    MIN_CONNTRACK_SIZE, MIN_HALF_OPEN_SIZE,
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
                } else if !path.starts_with('/') || path.len() > 200 || path.contains("..") {
                    return Err(self.bad_value(
                        value,
                        "pin_dir",
                        format!("{path:?} is not an absolute path (on bpffs) of at most 200 bytes, or \"off\""),
                    ));
                } else {
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

    pub(super) fn vip(
        &self,
        index: usize,
        raw: &Spanned<RawVip>,
        nat_config: &NatConfig,
    ) -> Result<VipConfig, ConfigError> {
        let table = raw.span().start;
        let raw = raw.get_ref();
        let field = |name: &str| format!("vip[{index}].{name}");

        let name = field("address");
        let address = self.address(self.required(&raw.address, table, &name)?, &name)?;

        let name = field("port");
        let port = self.rule(self.required(&raw.port, table, &name)?, &name, value::port)?;

        let protocol = match &raw.protocol {
            None => Protocol::default(),
            Some(v) => {
                let name = field("protocol");
                self.checked(v, &name, value::protocol(self.string(v, &name)?))?
            }
        };

        let table_size = match &raw.table_size {
            None => DEFAULT_TABLE_SIZE,
            Some(v) => self.rule(v, &field("table_size"), value::table_size)?,
        };

        let on_all_down = match &raw.on_all_down {
            None => AllDown::default(),
            Some(v) => {
                let name = field("on_all_down");
                self.checked(v, &name, value::on_all_down(self.string(v, &name)?))?
            }
        };
        let drain_timeout = match &raw.drain_timeout_s {
            None => None,
            Some(v) => Some(self.rule(v, &field("drain_timeout_s"), value::drain_timeout_s)?),
        };
        let forwarding = match &raw.forwarding {
            None => lb_common::Mode::default(),
            Some(v) => self.forwarding(v, &field("forwarding"))?,
        };
        let is_nat = forwarding == lb_common::Mode::Nat;
        let own_source = match &raw.nat_source {
            None => None,
            Some(v) => {
                let name = field("nat_source");
                let source = self.address(v, &name)?;
                Some(
                    value::nat_source(source, address, forwarding)
                        .map_err(|e| self.bad_value(v, &name, e.message()))?,
                )
            }
        };
        let nat = if is_nat {
            let resolved = nat_config.vip_nat(address, own_source);
            if resolved.is_none() {
                let message = value::no_nat_source(address).to_string();
                return Err(match &raw.forwarding {
                    Some(v) => self.bad_value(v, &field("forwarding"), message),
                    None => self.invalid(table, &field("forwarding"), message),
                });
            }
            resolved
        } else {
            None
        };
        let checks_for = super::ChecksFor {
            mode: forwarding,
            port,
            protocol,
        };
        let health = match &raw.health {
            None => HealthConfig::default_for(protocol),
            Some(table) => self.health(
                &HealthConfig::default_for(protocol),
                table,
                &field("health"),
                checks_for,
                "the default",
            )?,
        };

        if let Err(e) = value::backends_per_vip(raw.backend.0.len()) {
            let extra = raw
                .backend
                .0
                .get(MAX_BACKENDS_PER_VIP)
                .map_or(table, |b| b.span().start);
            return Err(self.invalid(
                extra,
                &field(&format!("backend[{MAX_BACKENDS_PER_VIP}]")),
                e.to_string(),
            ));
        }
        let mut backends = Vec::with_capacity(raw.backend.0.len());
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (b, raw_backend) in raw.backend.0.iter().enumerate() {
            let table = raw_backend.span().start;
            let raw_backend = raw_backend.get_ref();
            let backend_field = |name: &str| format!("vip[{index}].backend[{b}].{name}");

            let name = backend_field("address");
            let spanned = self.required(&raw_backend.address, table, &name)?;
            let backend_address = self.address(spanned, &name)?;
            self.checked(
                spanned,
                &name,
                value::backend_address(backend_address, address, forwarding),
            )?;
            let earlier = seen
                .get(&backend_address)
                .map(|first| format!("vip[{index}].backend[{first}]"));
            self.checked(
                spanned,
                &name,
                value::listed_once(backend_address, earlier.as_deref()),
            )?;
            seen.insert(backend_address, b);

            let mac = match &raw_backend.mac {
                None => None,
                Some(v) => {
                    value::backend_mac_allowed(forwarding)
                        .map_err(|e| self.bad_value(v, &backend_field("mac"), e.message()))?;
                    Some(self.mac(v, &backend_field("mac"))?)
                }
            };
            let backend_port = match &raw_backend.port {
                None => None,
                Some(v) => Some(if is_nat {
                    self.rule(v, &backend_field("port"), value::port)?
                } else {
                    // Refused whatever the number: the rule says why.
                    let refusal = value::backend_port(1, forwarding).err();
                    let message = refusal.map(|e| e.to_string()).unwrap_or_default();
                    return Err(self.bad_value(v, &backend_field("port"), message));
                }),
            };
            let weight = match &raw_backend.weight {
                None => DEFAULT_WEIGHT,
                Some(v) => self.rule(v, &backend_field("weight"), value::weight)?,
            };
            let backend_health = match &raw_backend.health {
                None => None,
                Some(table) => Some(self.health(
                    &health,
                    table,
                    &backend_field("health"),
                    checks_for,
                    if raw.health.is_some() {
                        "the VIP's or the default"
                    } else {
                        "the default"
                    },
                )?),
            };
            backends.push(BackendConfig {
                address: backend_address,
                mac,
                port: backend_port,
                weight,
                health: backend_health,
            });
        }

        let weighted = backends.iter().filter(|b| b.weight > 0).count();
        if let Err(e) = value::weighted_backends_fit(weighted, table_size) {
            let name = field("table_size");
            return Err(match &raw.table_size {
                Some(v) => self.bad_value(v, &name, e.to_string()),
                None => self.invalid(table, &name, e.to_string()),
            });
        }

        Ok(VipConfig {
            address,
            port,
            protocol,
            table_size,
            health,
            on_all_down,
            drain_timeout,
            forwarding,
            nat,
            backends,
        })
    }

    /// No NAT address is a VIP's address: replies to it would be taken for
    /// the VIP's traffic.
    pub(super) fn nat_sources_are_not_vips(
        &self,
        raw: &[Spanned<RawVip>],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        for (index, vip) in vips.iter().enumerate() {
            let Some(nat) = vip.nat else { continue };
            if let Some(other) = vips.iter().position(|v| v.address == nat.source) {
                let at = raw[index]
                    .get_ref()
                    .nat_source
                    .as_ref()
                    .map_or(raw[index].span().start, |v| v.span().start);
                let named = if nat.own_source {
                    format!("vip[{index}].nat_source")
                } else {
                    format!("vip[{index}] ([nat] source)")
                };
                return Err(self.invalid(
                    at,
                    &named,
                    format!(
                        "{} is vip[{other}]'s address; a NAT address must be an address of its own",
                        nat.source
                    ),
                ));
            }
        }
        Ok(())
    }

    /// No backend is an address of this node (a VIP's, or a NAT address):
    /// its packets would come back here instead of reaching a server.
    pub(super) fn backends_are_not_own_addresses(
        &self,
        raw: &[Spanned<RawVip>],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        for (index, vip) in vips.iter().enumerate() {
            for (b, backend) in vip.backends.iter().enumerate() {
                let owner = vips.iter().enumerate().find_map(|(other, v)| {
                    if v.address == backend.address {
                        Some(format!("vip[{other}]'s address"))
                    } else if v.nat.is_some_and(|n| n.source == backend.address) {
                        Some(format!("the NAT address of vip[{other}]"))
                    } else {
                        None
                    }
                });
                let Some(owner) = owner else { continue };
                let raw_backend = &raw[index].get_ref().backend.0[b];
                let at = raw_backend
                    .get_ref()
                    .address
                    .as_ref()
                    .map_or(raw_backend.span().start, |v| v.span().start);
                return Err(self.invalid(
                    at,
                    &format!("vip[{index}].backend[{b}].address"),
                    format!(
                        "{} is {owner}; a backend cannot be an address of this load balancer",
                        backend.address
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where to point at `address` of instance `index`: its item in the
    /// written list, or the `[[vrrp]]` table when the list is the default;
    /// with the field path to name.
    fn vrrp_address_at(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        index: usize,
        position: usize,
    ) -> (usize, String) {
        let table = raw.get(index).map_or(0, |r| r.span().start);
        match raw
            .get(index)
            .and_then(|r| r.get_ref().address_item(position))
        {
            Some(item) => (
                item.span().start,
                format!("vrrp[{index}].addresses[{position}]"),
            ),
            None => (table, format!("vrrp[{index}].addresses")),
        }
    }

    /// The instance that moves a NAT VIP's address also moves its NAT
    /// address (replies to translated flows come back to it, so it must be
    /// on the node that holds the VIP), and no other instance moves it.
    pub(super) fn nat_sources_move(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let holder = |address: IpAddr| {
            instances
                .iter()
                .position(|i| i.addresses.contains(&address))
        };
        for (index, instance) in instances.iter().enumerate() {
            for (position, address) in instance.addresses.iter().enumerate() {
                for vip in vips.iter().filter(|v| v.address == *address) {
                    let Some(nat) = vip.nat else { continue };
                    if instance.addresses.contains(&nat.source) {
                        // Moved here; if another instance moves it too,
                        // the duplicate check says so.
                        continue;
                    }
                    let (at, field) = self.vrrp_address_at(raw, index, position);
                    if let Some(other) = instances
                        .iter()
                        .enumerate()
                        .position(|(i, inst)| i != index && inst.addresses.contains(&nat.source))
                    {
                        // Another instance moves the NAT address: for its
                        // own NAT VIPs, or by mistake.
                        let shared = vips.iter().find(|w| {
                            w.nat.is_some_and(|n| n.source == nat.source)
                                && holder(w.address) == Some(other)
                        });
                        let why = match shared {
                            Some(w) => format!(
                                "; vrrp[{other}]'s NAT VIP {} uses it too, so NAT VIPs of different instances need different NAT addresses: give one of them its own nat_source",
                                w.address
                            ),
                            None => format!(": move it in vrrp[{index}] instead"),
                        };
                        return Err(self.invalid(
                            at,
                            &field,
                            format!(
                                "the NAT address {} of VIP {} (forwarding = \"nat\") is moved by vrrp[{other}], not with the VIP{why}",
                                nat.source, vip.address
                            ),
                        ));
                    }
                    return Err(self.invalid(
                        at,
                        &field,
                        format!(
                            "the NAT address {} of VIP {} must move with the VIP (replies to translated flows come back to it): add it to this list",
                            nat.source, vip.address
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each address is moved by one instance and is not a backend's: two
    /// instances electing masters apart would put it on two nodes, and a
    /// backend's address taken here would take its traffic.
    pub(super) fn vrrp_addresses_are_single(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let defaulted = |index: usize| {
            raw.get(index)
                .is_some_and(|r| !r.get_ref().lists_addresses())
        };
        for (index, instance) in instances.iter().enumerate() {
            for (position, address) in instance.addresses.iter().enumerate() {
                let (at, field) = self.vrrp_address_at(raw, index, position);
                if let Some(first) = instances[..index]
                    .iter()
                    .position(|i| i.addresses.contains(address))
                {
                    // The NAT address of NAT VIPs of both instances?
                    let nat_vip_of = |i: usize| {
                        vips.iter().find(|v| {
                            v.nat.is_some_and(|n| n.source == *address)
                                && instances[i].addresses.contains(&v.address)
                        })
                    };
                    let hint = match (defaulted(first), defaulted(index)) {
                        _ if nat_vip_of(first).is_some() && nat_vip_of(index).is_some() => {
                            format!(
                                " (it is the NAT address of VIP {} in vrrp[{first}] and of VIP {} in vrrp[{index}]: NAT VIPs of different instances need different NAT addresses; give one of them its own nat_source)",
                                nat_vip_of(first).map_or(*address, |v| v.address),
                                nat_vip_of(index).map_or(*address, |v| v.address),
                            )
                        }
                        (false, false) => String::new(),
                        (true, true) => format!(
                            " (neither vrrp[{first}] nor vrrp[{index}] lists addresses, so both take every VIP address of the first VIP's family: list addresses explicitly in each [[vrrp]])"
                        ),
                        (true, false) => format!(
                            " (vrrp[{first}] lists no addresses, so it takes every VIP address of its family: list its addresses explicitly)"
                        ),
                        (false, true) => format!(
                            " (vrrp[{index}] lists no addresses, so it takes every VIP address of its family: list its addresses explicitly)"
                        ),
                    };
                    return Err(self.invalid(
                        at,
                        &field,
                        format!(
                            "{address} is moved by vrrp[{first}] too: an address is moved by one instance{hint}"
                        ),
                    ));
                }
                for (v, vip) in vips.iter().enumerate() {
                    if let Some(b) = vip.backends.iter().position(|b| b.address == *address) {
                        return Err(self.invalid(
                            at,
                            &field,
                            format!(
                                "{address} is the address of vip[{v}].backend[{b}]: the master would take the backend's packets; a VRRP address is an address of this load balancer"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Unicast adverts go to the other nodes over the instance's family
    /// (an advert of the other family cannot be encoded, and both nodes
    /// would then be master), so a peer is of that family and is no
    /// address of this node.
    pub(super) fn unicast_peers_are_others(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        for (index, instance) in instances.iter().enumerate() {
            let Some(raw_vrrp) = raw.get(index) else {
                continue;
            };
            let family_v4 = instance.addresses.first().is_none_or(IpAddr::is_ipv4);
            for (position, peer) in instance.unicast_peers.iter().enumerate() {
                let at = raw_vrrp
                    .get_ref()
                    .peer_item(position)
                    .map_or(raw_vrrp.span().start, |v| v.span().start);
                let field = format!("vrrp[{index}].unicast_peers[{position}]");
                let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
                let problem = if peer.is_ipv4() != family_v4 {
                    let why = if raw_vrrp.get_ref().lists_addresses() {
                        String::new()
                    } else {
                        " (it lists no addresses, so it takes the family of the first VIP)"
                            .to_owned()
                    };
                    Some(format!(
                        "{peer} is {} but vrrp[{index}] moves {} addresses{why}: adverts go over the instance's family; list the peer's {} address",
                        family(peer.is_ipv4()),
                        family(family_v4),
                        family(family_v4)
                    ))
                } else if peer.is_loopback() || *peer == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
                    Some(format!(
                        "{peer} is not another node's address: list the other nodes' addresses"
                    ))
                } else {
                    peer_is_this_node(*peer, instances, vips)
                };
                if let Some(problem) = problem {
                    return Err(self.invalid(at, &field, problem));
                }
            }
        }
        Ok(())
    }

    /// A replication peer (`sync_peer`, `[sync] peers`) is another node,
    /// as a unicast peer is: an address of this node (a VIP, a NAT
    /// address, one a `[[vrrp]]` moves) reaches this node or whichever
    /// node holds it, never the peer's listener (which admits its
    /// configured peers only), so replication would never work.
    pub(super) fn replication_peers_are_others(
        &self,
        raw: &RawConfig,
        instances: &[VrrpConfig],
        vips: &[VipConfig],
        sync: Option<&super::SyncSettings>,
    ) -> Result<(), ConfigError> {
        for (index, instance) in instances.iter().enumerate() {
            let Some(peer) = instance.sync_peer else {
                continue;
            };
            let Some(problem) = peer_is_this_node(peer.ip(), instances, vips) else {
                continue;
            };
            let raw_vrrp = raw.vrrp.0.get(index);
            let at = raw_vrrp
                .and_then(|r| r.get_ref().sync_peer.as_ref())
                .map(|v| v.span().start)
                .or(raw_vrrp.map(|r| r.span().start))
                .unwrap_or(0);
            return Err(self.invalid(at, &format!("vrrp[{index}].sync_peer"), problem));
        }
        if let (Some(settings), Some(table)) = (sync, &raw.sync) {
            for (position, peer) in settings.peers.iter().enumerate() {
                let Some(problem) = peer_is_this_node(peer.ip(), instances, vips) else {
                    continue;
                };
                let at = table
                    .get_ref()
                    .get()
                    .peer_item(position)
                    .map_or(table.span().start, |v| v.span().start);
                return Err(self.invalid(at, &format!("sync.peers[{position}]"), problem));
            }
        }
        Ok(())
    }

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
        bgp: Option<&super::BgpConfig>,
        sync: Option<&super::SyncSettings>,
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
            let raw_vrrp = raw.vrrp.0.get(index);
            let at = raw_vrrp
                .and_then(|r| r.get_ref().sync_listen.as_ref())
                .map(|v| v.span().start)
                .or(raw_vrrp.map(|r| r.span().start))
                .unwrap_or(0);
            listeners.push((listen, format!("vrrp[{index}].sync_listen"), at, ANY));
        }
        let mesh_at = raw.sync.as_ref().map(|table| {
            table
                .get_ref()
                .get()
                .listen
                .as_ref()
                .map_or(table.span().start, |v| v.span().start)
        });
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
        sync: Option<&super::SyncSettings>,
    ) -> Result<(), ConfigError> {
        let Some(metrics) = metrics else {
            return Ok(());
        };
        let mut listeners = Vec::new();
        for (index, instance) in instances.iter().enumerate() {
            if let Some(listen) = instance.sync_listen {
                let at = raw
                    .vrrp
                    .0
                    .get(index)
                    .and_then(|r| r.get_ref().sync_listen.as_ref())
                    .map_or(0, |v| v.span().start);
                listeners.push((listen, format!("vrrp[{index}].sync_listen"), at));
            }
        }
        if let (Some(settings), Some(table)) = (sync, &raw.sync) {
            let at = table
                .get_ref()
                .get()
                .listen
                .as_ref()
                .map_or(table.span().start, |v| v.span().start);
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

/// How many bytes the admin API's temporary socket name adds to the
/// path: it binds `.<name>.<pid>.tmp` beside it first, and a pid has up
/// to 7 digits (`/proc/sys/kernel/pid_max` is at most 4194304).
const ADMIN_SOCKET_TEMP_EXTRA: usize = ".".len() + ".".len() + 7 + ".tmp".len();

/// Longest `admin_socket` path in bytes: a Unix socket path holds 107
/// bytes (`sun_path` is 108 with the NUL), less what the temporary name
/// adds.
pub(crate) const MAX_ADMIN_SOCKET_BYTES: usize = 107 - ADMIN_SOCKET_TEMP_EXTRA;

/// Why VRRP unicast peer `peer` is an address of one of `vips` (its
/// address or its NAT address), so this node's own and not another
/// node's: the file's rule (`unicast_peers_are_others`), shared with a
/// VIP added at run time so the API refuses what the file does. `name`
/// names VIP `index` of `vips`.
pub(crate) fn peer_on_a_vip(
    peer: IpAddr,
    vips: &[VipConfig],
    name: impl Fn(usize) -> String,
) -> Option<String> {
    if let Some(v) = vips.iter().position(|v| v.address == peer) {
        return Some(format!(
            "{peer} is {}'s address, so this node's own: a peer is another node's own address",
            name(v)
        ));
    }
    vips.iter()
        .position(|v| v.nat.is_some_and(|n| n.source == peer))
        .map(|v| {
            format!(
                "{peer} is the NAT address of {}, so this node's own: a peer is another node's own address",
                name(v)
            )
        })
}

/// Why `peer` (a VRRP unicast peer, a replication peer) is an address of
/// this node and not another node's: one a `[[vrrp]]` of `instances`
/// moves, or one of `vips`' addresses or NAT addresses
/// ([`peer_on_a_vip`]).
fn peer_is_this_node(peer: IpAddr, instances: &[VrrpConfig], vips: &[VipConfig]) -> Option<String> {
    if let Some(other) = instances.iter().position(|i| i.addresses.contains(&peer)) {
        return Some(format!(
            "{peer} is an address vrrp[{other}] moves, so this node's own: a peer is another node's own address"
        ));
    }
    peer_on_a_vip(peer, vips, |v| format!("vip[{v}]"))
}

/// An `admin_socket` path the API can bind: absolute, naming a file (no
/// trailing `/`, not `/`), no `..` (the socket is created as root), and
/// short enough for its temporary name to fit `sun_path`.
pub(crate) fn admin_socket_path(path: &str) -> Result<(), value::ValueError> {
    if !path.starts_with('/') {
        return Err(value::ValueError::invalid(format!(
            "{path:?} is not an absolute path"
        )));
    }
    if path.ends_with('/') {
        return Err(value::ValueError::invalid(format!(
            "{path:?} names a directory: give the socket's file name"
        )));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(value::ValueError::invalid(format!(
            "{path:?} has a \"..\" component: write the path without it"
        )));
    }
    if path.len() > MAX_ADMIN_SOCKET_BYTES {
        return Err(value::ValueError::invalid(format!(
            "{path:?} is {} bytes long; at most {MAX_ADMIN_SOCKET_BYTES} are allowed (a Unix socket path holds 107 bytes, and lbd first binds a temporary name {ADMIN_SOCKET_TEMP_EXTRA} bytes longer beside it)",
            path.len()
        )));
    }
    Ok(())
}

/// The log targets lbd logs under: the library (`lb_userspace::...`: all
/// of lbd's work) and the daemon's binary (`lbd`: the fatal start error and
/// the config's warnings).
const LBD_LOG_TARGETS: [&str; 2] = ["lb_userspace", "lbd"];

/// Why the tracing filter `filter` (which `EnvFilter` accepts) would
/// silence some of lbd's own logs, if it would. tracing enables an event by
/// the directives whose target is a prefix of the event's target (a plain
/// string prefix: `lb_userspace` and `lb_user` cover
/// `lb_userspace::daemon`, `lb_userspace2` and `lbd_userspace` do not),
/// and by a bare level (the default directive); an event no directive
/// covers is off. So each of lbd's two targets needs a level of its own
/// (a bare level gives both one): `"lb_userspace=debug"` leaves target
/// `lbd` off (lbd would exit 1 on a start error saying nothing),
/// `"lbd=info"` the whole library, `"h2=debug"` both, and
/// `"lb_userspace::vrrp=debug"` all but one module. A bare word that is not
/// a level (`"warning"`, `"inof"`) is read by tracing as a target to log at
/// every level: fine once both targets have a level (`"warn,h2"`), and
/// named as the likely misspelt level when neither has. An explicit `off`
/// (bare, or for lbd's targets) is taken as meant.
fn log_filter_silences_lbd(filter: &str) -> Option<String> {
    use tracing_subscriber::filter::LevelFilter;
    const LEVELS: &str = "trace, debug, info, warn, error, off";
    // Whether a directive for `target` covers every event of lbd's target
    // `own`, or only some (a module's: `lb_userspace::vrrp`).
    let whole = |target: &str, own: &str| own.starts_with(target);
    let part = |target: &str| {
        LBD_LOG_TARGETS.iter().any(|own| {
            target
                .strip_prefix(own)
                .is_some_and(|rest| rest.starts_with("::"))
        })
    };
    // Which of lbd's targets a bare level or a directive for all of it
    // gives a level.
    let mut covered = [false; LBD_LOG_TARGETS.len()];
    // A level for some of lbd's events only (a module's, within spans).
    let mut some = false;
    // The first bare word that is neither a level nor lbd's target.
    let mut stray = None;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // `target[span{field=value}]=level`: the level after the span
        // part, the target before it.
        let (head, level) = match directive.rfind(']') {
            Some(end) => (&directive[..=end], directive[end + 1..].strip_prefix('=')),
            None => match directive.rsplit_once('=') {
                Some((head, level)) => (head, Some(level)),
                None => (directive, None),
            },
        };
        let (target, span) = match head.split_once('[') {
            Some((target, _)) => (target, true),
            None => (head, false),
        };
        let bare_level = level.is_none() && directive.parse::<LevelFilter>().is_ok();
        let mut named = false;
        for (own, covered) in LBD_LOG_TARGETS.iter().zip(covered.iter_mut()) {
            if whole(target, own) {
                named = true;
                if !span {
                    *covered = true;
                }
            }
            if !span && bare_level {
                *covered = true;
            }
        }
        if bare_level {
            continue;
        }
        if named || part(target) {
            // Within spans only, or a module of lbd's.
            some |= span || !named;
        } else if level.is_none() && !span && stray.is_none() {
            stray = Some(directive);
        }
    }
    if covered.iter().all(|&c| c) {
        return None;
    }
    let missing: Vec<&str> = LBD_LOG_TARGETS
        .iter()
        .zip(covered)
        .filter(|(_, c)| !c)
        .map(|(own, _)| *own)
        .collect();
    // A stray word beside no level for any of lbd's targets is most
    // likely a misspelt level; beside one, the target left out is what to
    // name.
    if let (Some(word), false) = (stray, covered.iter().any(|&c| c)) {
        return Some(format!(
            "{word:?} is not a level ({LEVELS}); tracing reads a bare word as a target to log, so lbd's own logs would be off{}: write a level, or TARGET=LEVEL (e.g. \"warn\", \"info,lb_userspace::vrrp=debug\"), or a level beside a target (\"warn,h2\")",
            if some { " (but those of the modules named)" } else { "" }
        ));
    }
    if missing.len() == LBD_LOG_TARGETS.len() && !some {
        return Some(format!(
            "{filter:?} names no level for lbd's own logs (targets {}), so lbd would log nothing, not even errors: add one (e.g. \"info,{filter}\"); levels are {LEVELS}",
            LBD_LOG_TARGETS.join(", ")
        ));
    }
    Some(format!(
        "{filter:?} names no level for all of lbd's target{} {}, and tracing turns off every target a filter does not name, so {}: give each of lbd's targets (lb_userspace: all of its work; lbd: its start errors and config warnings) a level, or add a bare level (e.g. \"info,{filter}\"); levels are {LEVELS}",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(" and "),
        match missing.as_slice() {
            ["lbd"] => "an lbd that fails to start would exit saying nothing, and the config's warnings would be lost",
            ["lb_userspace"] => "all of lbd's work would log nothing, not even errors",
            _ => "lbd would log nothing but the modules named, not even its errors",
        }
    ))
}

impl Checker<'_> {
    /// `xdp_mode = "generic"` serves DSR-L2 VIPs only: generic XDP may be
    /// handed partial-checksum and GSO skbs, which a NAT or tunnelled VIP's
    /// rewrite gets wrong (see `dataplane::hook_choice`). Refused here, so
    /// `lbctl config check` and a reload say so as lbd's start does.
    fn generic_xdp_serves(
        &self,
        raw: &RawConfig,
        attach: Attach,
        xdp_mode: XdpMode,
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let translating = crate::dataplane::Translating::of(vips);
        match &raw.xdp_mode {
            Some(value)
                if attach == Attach::Xdp && xdp_mode == XdpMode::Generic && translating.any() =>
            {
                Err(self.bad_value(
                    value,
                    "xdp_mode",
                    translating.refusal("xdp_mode = \"generic\" serves DSR-L2 VIPs only"),
                ))
            }
            _ => Ok(()),
        }
    }
}
