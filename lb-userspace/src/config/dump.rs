//! The running configuration written back as TOML, in the file's own
//! format, so runtime changes can be saved (`lbctl config dump`). Loading
//! the text gives the same `Config` back (a `[[vrrp]]` whose list is
//! written only to keep the addresses it moves, see `writes_addresses`,
//! loads as one that lists them).

use toml::{Table, Value};

use crate::{
    flood::machine::FloodThresholds,
    guard::{AclRule, Limits, Scope},
};

use super::{
    prefix_text, AdminSocketGroup, Announced, BackendConfig, BgpConfig, CheckType, Config,
    HealthConfig, NatConfig, SyncSettings, TunnelSettings, VipConfig, VrrpConfig,
};

/// `config` as the text of a config file.
pub fn to_toml(config: &Config) -> String {
    let mut root = Table::new();
    root.insert("interface".into(), config.interface.clone().into());
    root.insert("attach".into(), config.attach.to_string().into());
    root.insert("xdp_mode".into(), config.xdp_mode.to_string().into());
    root.insert("conntrack_size".into(), int(config.conntrack_size));
    root.insert("half_open_size".into(), int(config.half_open_size));
    root.insert("maglev_mode".into(), config.maglev_mode.to_string().into());
    root.insert(
        "admin_socket".into(),
        config.admin_socket.display().to_string().into(),
    );
    root.insert(
        "pin_dir".into(),
        config
            .pin_dir
            .as_ref()
            .map_or("off".to_owned(), |p| p.display().to_string())
            .into(),
    );
    match &config.admin_socket_group {
        Some(AdminSocketGroup::Name(name)) => {
            root.insert("admin_socket_group".into(), name.clone().into());
        }
        Some(AdminSocketGroup::Gid(gid)) => {
            root.insert("admin_socket_group".into(), int(*gid));
        }
        None => {}
    }
    root.insert("log_level".into(), config.log_level.clone().into());
    root.insert("log_format".into(), config.log_format.to_string().into());
    root.insert(
        "metrics_listen".into(),
        config
            .metrics_listen
            .map_or("off".to_owned(), |a| a.to_string())
            .into(),
    );
    root.insert(
        "tcp_idle_timeout_s".into(),
        int(config.tcp_idle_timeout.as_secs()),
    );
    root.insert(
        "udp_idle_timeout_s".into(),
        int(config.udp_idle_timeout.as_secs()),
    );
    root.insert("nat".into(), Value::Table(nat(&config.nat)));
    root.insert("tunnel".into(), Value::Table(tunnel(&config.tunnel)));
    root.insert("flood".into(), Value::Table(flood(&config.flood)));
    root.insert(
        "vip".into(),
        Value::Array(config.vips.iter().map(vip).collect()),
    );
    if !config.vrrp.is_empty() {
        root.insert(
            "vrrp".into(),
            Value::Array(
                config
                    .vrrp
                    .iter()
                    .enumerate()
                    .map(|(i, v)| vrrp(v, writes_addresses(config, i, v)))
                    .collect(),
            ),
        );
    }
    if let Some(b) = &config.bgp {
        root.insert("bgp".into(), Value::Table(bgp(b)));
    }
    if let Some(s) = &config.sync {
        root.insert("sync".into(), Value::Table(sync(s)));
    }
    if !config.guard.acl.is_empty() {
        root.insert(
            "acl".into(),
            Value::Array(config.guard.acl.iter().map(acl).collect()),
        );
    }
    if !config.guard.limits.is_empty() {
        root.insert(
            "limit".into(),
            Value::Array(
                config
                    .guard
                    .limits
                    .iter()
                    .map(|(scope, l)| limit(*scope, l))
                    .collect(),
            ),
        );
    }
    toml::to_string(&root).unwrap_or_else(|e| format!("# cannot write the config as TOML: {e}\n"))
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn acl(rule: &AclRule) -> Value {
    let mut t = Table::new();
    t.insert("action".into(), rule.action.to_string().into());
    t.insert("source".into(), rule.source.to_string().into());
    if let Scope::Vip(id) = rule.scope {
        t.insert("vip".into(), id.to_string().into());
    }
    Value::Table(t)
}

fn limit(scope: Scope, limits: &Limits) -> Value {
    let mut t = Table::new();
    if let Scope::Vip(id) = scope {
        t.insert("vip".into(), id.to_string().into());
    }
    for (name, rate) in [("source", limits.source), ("prefix", limits.prefix)] {
        if let Some(rate) = rate {
            t.insert(format!("{name}_rate"), int(rate.per_s));
            t.insert(format!("{name}_burst"), int(rate.burst));
        }
    }
    t.insert("prefix_v4".into(), int(limits.prefix_v4));
    t.insert("prefix_v6".into(), int(limits.prefix_v6));
    Value::Table(t)
}

fn vip(vip: &VipConfig) -> Value {
    let mut t = Table::new();
    t.insert("address".into(), vip.address.to_string().into());
    t.insert("port".into(), int(vip.port));
    t.insert("protocol".into(), vip.protocol.to_string().into());
    t.insert("table_size".into(), int(vip.table_size));
    t.insert("on_all_down".into(), vip.on_all_down.to_string().into());
    if let Some(timeout) = vip.drain_timeout {
        t.insert("drain_timeout_s".into(), int(timeout.as_secs()));
    }
    if let Some(ramp) = vip.slow_start {
        t.insert("slow_start_s".into(), int(ramp.as_secs()));
    }
    t.insert("forwarding".into(), vip.forwarding.name().into());
    // Only when set, as the files that leave it out read.
    if vip.affinity != lb_common::Affinity::default() {
        t.insert("affinity".into(), vip.affinity.name().into());
    }
    if let Some(nat) = vip.nat.filter(|n| n.own_source) {
        t.insert("nat_source".into(), nat.source.to_string().into());
    }
    t.insert("health".into(), Value::Table(health(&vip.health)));
    t.insert(
        "backend".into(),
        Value::Array(
            vip.backends
                .iter()
                .map(|b| backend(b, &vip.health))
                .collect(),
        ),
    );
    Value::Table(t)
}

/// A backend of a VIP whose health checks are `vip_health`.
fn backend(backend: &BackendConfig, vip_health: &HealthConfig) -> Value {
    let mut t = Table::new();
    t.insert("address".into(), backend.address.to_string().into());
    if let Some(mac) = backend.mac {
        t.insert("mac".into(), mac.to_string().into());
    }
    if let Some(port) = backend.port {
        t.insert("port".into(), int(port));
    }
    t.insert("weight".into(), int(backend.weight));
    if backend.backup {
        t.insert("backup".into(), Value::Boolean(true));
    }
    if let Some(h) = &backend.health {
        t.insert("health".into(), Value::Table(health_over(h, vip_health)));
    }
    Value::Table(t)
}

fn flood(f: &FloodThresholds) -> Table {
    let mut t = Table::new();
    t.insert("unanswered_syn_per_s".into(), int(f.unanswered_per_s));
    t.insert("half_open_evicted_per_s".into(), int(f.evicted_per_s));
    t.insert("calm_s".into(), int(f.calm.as_secs()));
    t
}

fn nat(nat: &NatConfig) -> Table {
    let mut t = Table::new();
    if let Some(a) = nat.source_ipv4 {
        t.insert("source_ipv4".into(), a.to_string().into());
    }
    if let Some(a) = nat.source_ipv6 {
        t.insert("source_ipv6".into(), a.to_string().into());
    }
    t.insert("source_port_min".into(), int(nat.port_min));
    t.insert("source_port_max".into(), int(nat.port_max));
    t.insert("flow_table_size".into(), int(nat.flow_table_size));
    let timeouts = &nat.timeouts;
    for (name, value) in [
        ("tcp_syn_timeout_s", timeouts.tcp_syn),
        ("tcp_established_timeout_s", timeouts.tcp_established),
        ("tcp_closing_timeout_s", timeouts.tcp_closing),
        ("tcp_time_wait_timeout_s", timeouts.tcp_time_wait),
        ("tcp_closed_timeout_s", timeouts.tcp_closed),
        ("udp_timeout_s", timeouts.udp),
    ] {
        t.insert(name.into(), int(value.as_secs()));
    }
    t
}

fn tunnel(tunnel: &TunnelSettings) -> Table {
    let mut t = Table::new();
    t.insert("gue_port".into(), int(tunnel.gue_port));
    if let Some(p) = tunnel.source_ipv4 {
        t.insert("source_ipv4".into(), prefix_text(p).into());
    }
    if let Some(p) = tunnel.source_ipv6 {
        t.insert("source_ipv6".into(), prefix_text(p).into());
    }
    t
}

fn bgp(b: &BgpConfig) -> Table {
    let mut t = Table::new();
    t.insert(
        "bird_socket".into(),
        b.bird_socket.display().to_string().into(),
    );
    t.insert(
        "routes_file".into(),
        b.routes_file.display().to_string().into(),
    );
    t.insert("protocol".into(), b.protocol.clone().into());
    if let Announced::Listed(list) = &b.addresses {
        t.insert(
            "addresses".into(),
            Value::Array(list.iter().map(|a| Value::String(a.to_string())).collect()),
        );
    }
    t.insert("startup_wait_ms".into(), int(b.startup_wait.as_millis()));
    t.insert(
        "node_state_file".into(),
        b.node_state_file.display().to_string().into(),
    );
    t
}

fn sync(s: &SyncSettings) -> Table {
    let mut t = Table::new();
    t.insert("listen".into(), s.listen.to_string().into());
    t.insert(
        "peers".into(),
        Value::Array(
            s.peers
                .iter()
                .map(|a| Value::String(a.to_string()))
                .collect(),
        ),
    );
    t.insert("key_file".into(), s.key_file.display().to_string().into());
    t
}

fn health(h: &HealthConfig) -> Table {
    let mut t = Table::new();
    t.insert(
        "check".into(),
        match h.check {
            CheckType::None => "none",
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::Pgsql => "pgsql",
        }
        .into(),
    );
    if let Some(port) = h.port {
        t.insert("port".into(), int(port));
    }
    t.insert("path".into(), h.path.clone().into());
    if let Some(host) = &h.host {
        t.insert("host".into(), host.clone().into());
    }
    t.insert("expect_status".into(), int(h.expect_status));
    if let Some(text) = &h.expect_body {
        t.insert("expect_body".into(), text.clone().into());
    }
    if h.tls {
        t.insert("tls".into(), Value::Boolean(true));
    }
    if let Some(user) = &h.user {
        t.insert("user".into(), user.clone().into());
    }
    if let Some(database) = &h.database {
        t.insert("database".into(), database.clone().into());
    }
    t.insert("interval_ms".into(), int(h.interval.as_millis()));
    t.insert("fast_interval_ms".into(), int(h.fast_interval.as_millis()));
    t.insert("timeout_ms".into(), int(h.timeout.as_millis()));
    t.insert("rise".into(), int(h.rise));
    t.insert("fall".into(), int(h.fall));
    t.insert("through_tunnel".into(), Value::Boolean(h.through_tunnel));
    t
}

/// A backend's own health table `h`, which loads over its VIP's `base`:
/// only the keys whose value differs from `base`'s, as a file that
/// overrides those keys says it, so a later edit of the VIP's other keys
/// still reaches the backend (`through_tunnel = false` under a VIP's
/// `true` is written, since left out it would take the VIP's back). None
/// differing: an empty table, which loads back as the same own table.
/// (A key `base` sets and `h` does not, `port` or `host`, cannot be
/// written; a backend's table cannot unset it either, so none has one.)
fn health_over(h: &HealthConfig, base: &HealthConfig) -> Table {
    let base_table = health(base);
    let mut own: Table = health(h)
        .into_iter()
        .filter(|(key, value)| base_table.get(key) != Some(value))
        .collect();
    // `tls` is written only when true: a backend's `false` under its
    // VIP's `true` is written, or it would load back as the VIP's.
    if base.tls && !h.tls {
        own.insert("tls".into(), Value::Boolean(false));
    }
    own
}

/// Whether instance `i` (`v`) of `config` is written with its address
/// list: one `vrrp_listed` says nothing of, or whose file's table wrote
/// `addresses`. One whose table left them out is written without them
/// too, so it takes the VIP addresses of its family when loaded, VIPs
/// added to the file later included; but left out they are every VIP
/// and NAT address of the first VIP's family (the loader's rule), so the
/// list it moves is written when the first VIP here is of the other
/// family, or there is none: VIPs removed or added at run time (a dump
/// puts them after the file's) must not make it move other addresses.
fn writes_addresses(config: &Config, i: usize, v: &VrrpConfig) -> bool {
    let listed = config.vrrp_listed.get(i).copied().unwrap_or(true);
    let same_family = match (config.vips.first(), v.addresses.first()) {
        (Some(vip), Some(moved)) => vip.address.is_ipv4() == moved.is_ipv4(),
        _ => false,
    };
    listed || !same_family
}

/// An instance; `listed`: whether `addresses` is written (see
/// [`writes_addresses`]).
fn vrrp(v: &VrrpConfig, listed: bool) -> Value {
    let mut t = Table::new();
    let addresses = |list: &[std::net::IpAddr]| {
        Value::Array(list.iter().map(|a| Value::String(a.to_string())).collect())
    };
    t.insert("vrid".into(), int(v.vrid));
    t.insert("priority".into(), int(v.priority));
    t.insert(
        "advert_interval_ms".into(),
        int(v.advert_interval.as_millis()),
    );
    t.insert("preempt".into(), Value::Boolean(v.preempt));
    t.insert("preempt_delay_ms".into(), int(v.preempt_delay.as_millis()));
    if listed {
        t.insert("addresses".into(), addresses(&v.addresses));
    }
    if !v.unicast_peers.is_empty() {
        t.insert("unicast_peers".into(), addresses(&v.unicast_peers));
    }
    if v.unicast_peer_hops != 0 {
        t.insert("unicast_peer_hops".into(), int(v.unicast_peer_hops));
    }
    if let Some(source) = v.unicast_src_ip {
        t.insert("unicast_src_ip".into(), Value::String(source.to_string()));
    }
    t.insert("announce_count".into(), int(v.announce_count));
    t.insert(
        "announce_interval_ms".into(),
        int(v.announce_interval.as_millis()),
    );
    if let Some(refresh) = v.announce_refresh {
        t.insert("announce_refresh_ms".into(), int(refresh.as_millis()));
    }
    if let Some(notify) = &v.notify {
        t.insert("notify".into(), notify.display().to_string().into());
    }
    t.insert("track_dataplane".into(), int(v.track_dataplane));
    t.insert("track_interface".into(), int(v.track_interface));
    t.insert("track_no_backend".into(), int(v.track_no_backend));
    if let Some(a) = v.sync_listen {
        t.insert("sync_listen".into(), a.to_string().into());
    }
    if let Some(a) = v.sync_peer {
        t.insert("sync_peer".into(), a.to_string().into());
    }
    if let Some(p) = &v.sync_key_file {
        t.insert("sync_key_file".into(), p.display().to_string().into());
    }
    Value::Table(t)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    /// A `[[vrrp]]` that left `addresses` out keeps leaving them out only
    /// while the dump's first VIP is of the family it moves: with the
    /// file's first VIP removed at run time (or none left) its list is
    /// written, so the dump still moves what runs.
    #[test]
    fn a_vrrp_list_left_out_is_written_when_the_first_vip_changes_family() {
        let file = Config::from_toml_str(
            "interface = \"eth0\"\n\
             [[vip]]\naddress = \"2001:2::100\"\nport = 80\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vrrp]]\nvrid = 51\n",
            "test.toml",
        )
        .unwrap();
        let moved: Vec<IpAddr> = vec!["2001:2::100".parse().unwrap()];
        assert_eq!(file.vrrp[0].addresses, moved);
        let round_trip = |config: &Config| {
            let text = to_toml(config);
            let table: Table = text.parse().unwrap();
            let written = table["vrrp"][0].get("addresses").is_some();
            let loaded = Config::from_toml_str(&text, "dump.toml").unwrap();
            (written, loaded.vrrp[0].addresses.clone())
        };
        assert_eq!(round_trip(&file), (false, moved.clone()));
        let mut removed = file.clone();
        removed.vips.remove(0);
        assert_eq!(round_trip(&removed), (true, moved.clone()));
        removed.vips.clear();
        assert_eq!(round_trip(&removed), (true, moved));
    }
}
