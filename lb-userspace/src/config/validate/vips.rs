//! Each `[[vip]]` and its backends checked into a `VipConfig`, and the
//! rules between VIPs: how many there are, no two alike, no NAT address
//! is a VIP's, no backend is an address of this node.

use std::collections::HashMap;
use std::net::IpAddr;

use toml::Spanned;

use crate::config::{
    checker::Checker,
    raw::{RawConfig, RawVip},
    value, AllDown, BackendConfig, ChecksFor, ConfigError, HealthConfig, NatConfig, Protocol,
    VipConfig, DEFAULT_TABLE_SIZE, DEFAULT_WEIGHT, MAX_BACKENDS_PER_VIP, MAX_BACKENDS_TOTAL,
    MAX_VIPS,
};

impl Checker<'_> {
    /// Every `[[vip]]`, at most `MAX_VIPS` with at most
    /// `MAX_BACKENDS_TOTAL` backends among them, no two with the same
    /// address, port and protocol.
    pub(super) fn vips(
        &self,
        raw: &RawConfig,
        nat: &NatConfig,
    ) -> Result<Vec<VipConfig>, ConfigError> {
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
            let vip = self.vip(index, raw_vip, nat)?;
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
        Ok(vips)
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
        let affinity = match &raw.affinity {
            None => lb_common::Affinity::default(),
            Some(v) => {
                let name = field("affinity");
                self.checked(v, &name, value::affinity(self.string(v, &name)?))?
            }
        };
        let slow_start = match &raw.slow_start_s {
            None => None,
            Some(v) => Some(self.rule(v, &field("slow_start_s"), value::slow_start_s)?),
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
        let checks_for = ChecksFor {
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
            let backup = match &raw_backend.backup {
                None => false,
                Some(v) => self.boolean(v, &backend_field("backup"))?,
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
                backup,
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
            affinity,
            slow_start,
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
}
