//! What a reload may change while lbd runs, and what waits for a restart:
//! the running config keeps every restart-only setting at its running
//! value, so `config dump` shows what runs, not what the file wishes.

use super::{Announced, BgpConfig, Config, SyncSettings, VrrpConfig};

impl Config {
    /// The config lbd runs after reloading `file`: the file's VIPs, idle
    /// timeouts, `[tunnel]` settings, guards (applied live: new packets
    /// take them), `[flood]` thresholds (the next observation takes
    /// them) and `[nat]` (its VIPs already carry its addresses and ports;
    /// VIPs added at run time and the reaper's timeouts take it too) but
    /// for the NAT flow table's size, `[sync] peers` (a node joins or
    /// leaves a running mesh with a reload of the others: see
    /// [`reloaded_sync`]), and this config's node settings (they take
    /// effect only at a restart).
    pub(crate) fn with_reloadable_from(&self, file: &Config) -> Config {
        Config {
            vips: file.vips.clone(),
            guard: file.guard.clone(),
            tunnel: file.tunnel,
            flood: file.flood,
            nat: super::NatConfig {
                flow_table_size: self.nat.flow_table_size,
                ..file.nat.clone()
            },
            tcp_idle_timeout: file.tcp_idle_timeout,
            udp_idle_timeout: file.udp_idle_timeout,
            sync: reloaded_sync(self.sync.as_ref(), file.sync.as_ref()),
            ..self.clone()
        }
    }

    /// The node settings that differ in `file` and take effect only when
    /// lbd restarts.
    pub(crate) fn restart_only_changes(&self, file: &Config) -> Vec<&'static str> {
        let running = self.with_reloadable_from(file);
        [
            ("interface", running.interface != file.interface),
            ("attach", running.attach != file.attach),
            ("xdp_mode", running.xdp_mode != file.xdp_mode),
            (
                "conntrack_size",
                running.conntrack_size != file.conntrack_size,
            ),
            (
                "half_open_size",
                running.half_open_size != file.half_open_size,
            ),
            ("maglev_mode", running.maglev_mode != file.maglev_mode),
            ("admin_socket", running.admin_socket != file.admin_socket),
            ("pin_dir", running.pin_dir != file.pin_dir),
            (
                "admin_socket_group",
                running.admin_socket_group != file.admin_socket_group,
            ),
            ("log_level", running.log_level != file.log_level),
            ("log_format", running.log_format != file.log_format),
            (
                "metrics_listen",
                running.metrics_listen != file.metrics_listen,
            ),
            ("vrrp", !same_instances(&running.vrrp, &file.vrrp)),
            (
                "bgp",
                running.bgp.clone().map(in_effect) != file.bgp.clone().map(in_effect),
            ),
            (
                "sync",
                running.sync.clone().map(sync_in_effect) != file.sync.clone().map(sync_in_effect),
            ),
            (
                "nat.flow_table_size",
                running.nat.flow_table_size != file.nat.flow_table_size,
            ),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

/// Whether two `[[vrrp]]` lists run the same instances: what an instance
/// moves and whom it advertises to are sets (a `[[vrrp]]` without
/// addresses takes them in the VIPs' order, which a reload may change
/// without effect), and instances are known by their vrid and family, not
/// by their table's place.
fn same_instances(running: &[VrrpConfig], file: &[VrrpConfig]) -> bool {
    let running: Vec<VrrpConfig> = running.iter().cloned().map(instance_in_effect).collect();
    running.len() == file.len()
        && file
            .iter()
            .cloned()
            .map(instance_in_effect)
            .all(|instance| running.contains(&instance))
}

/// An instance with its address lists in one order, to compare what takes
/// effect.
fn instance_in_effect(mut instance: VrrpConfig) -> VrrpConfig {
    instance.addresses.sort_unstable();
    instance.unicast_peers.sort_unstable();
    instance
}

/// `[bgp]` with its announced list in one order, to compare what takes
/// effect (the set of addresses announced).
fn in_effect(mut bgp: BgpConfig) -> BgpConfig {
    if let Announced::Listed(list) = &mut bgp.addresses {
        list.sort_unstable();
    }
    bgp
}

/// The `[sync]` a reload runs: the file's peers when the running mesh
/// listens where the file says, with the same key file (replication
/// starts senders to the new peers and stops those of the removed ones:
/// `Replication::set_peers`); the running settings otherwise (a listen
/// address, a key file, or `[sync]` itself added or removed wait for a
/// restart).
fn reloaded_sync(
    running: Option<&SyncSettings>,
    file: Option<&SyncSettings>,
) -> Option<SyncSettings> {
    match (running, file) {
        (Some(running), Some(file))
            if running.listen == file.listen && running.key_file == file.key_file =>
        {
            Some(SyncSettings {
                peers: file.peers.clone(),
                ..running.clone()
            })
        }
        (running, _) => running.cloned(),
    }
}

/// `[sync]` with its peers in one order, to compare what takes effect:
/// peers are connected one by one and known by their address, so their
/// order in the file changes nothing.
fn sync_in_effect(mut sync: SyncSettings) -> SyncSettings {
    sync.peers.sort_unstable();
    sync
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        Config::from_toml_str(text, "test").unwrap()
    }

    #[test]
    fn a_reload_takes_the_vips_and_keeps_node_settings() {
        let running = load("interface = \"eth0\"\ntcp_idle_timeout_s = 300\n");
        let file = load(
            "interface = \"eth1\"\ntcp_idle_timeout_s = 60\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n",
        );
        let next = running.with_reloadable_from(&file);
        assert_eq!(next.interface, "eth0");
        assert_eq!(next.vips, file.vips);
        assert_eq!(next.tcp_idle_timeout, file.tcp_idle_timeout);
        assert_eq!(running.restart_only_changes(&file), vec!["interface"]);
        assert!(running.restart_only_changes(&running).is_empty());
    }

    #[test]
    fn nat_settings_reload_but_the_flow_tables_size_waits_for_a_restart() {
        let running = load("interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n");
        let file = load(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.51\"\nsource_port_min = 2000\nflow_table_size = 2097152\n",
        );
        let next = running.with_reloadable_from(&file);
        assert_eq!(next.nat.source_ipv4, file.nat.source_ipv4);
        assert_eq!(next.nat.port_min, 2000);
        assert_eq!(next.nat.timeouts, file.nat.timeouts);
        assert_eq!(next.nat.flow_table_size, running.nat.flow_table_size);
        assert_eq!(
            running.restart_only_changes(&file),
            vec!["nat.flow_table_size"]
        );
    }

    #[test]
    fn flood_thresholds_reload_and_the_half_open_size_waits_for_a_restart() {
        let running = load("interface = \"eth0\"\n");
        let file = load(
            "interface = \"eth0\"\nhalf_open_size = 65536\n[flood]\nunanswered_syn_per_s = 100\ncalm_s = 5\n",
        );
        let next = running.with_reloadable_from(&file);
        assert_eq!(next.flood, file.flood);
        assert_eq!(next.flood.unanswered_per_s, 100);
        assert_eq!(next.half_open_size, running.half_open_size);
        assert_eq!(running.restart_only_changes(&file), vec!["half_open_size"]);
    }

    /// `[sync] peers` is a set: peers are connected one by one and known
    /// by their address, so a file listing them in another order (a
    /// template's) changes nothing, and a restart is not asked for.
    #[test]
    fn reordering_sync_peers_is_no_restart_change() {
        let mesh = |peers: &str| {
            load(&format!(
                "interface = \"eth0\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [{peers}]\nkey_file = \"/k\"\n"
            ))
        };
        let running = mesh("\"198.18.2.12:7946\", \"198.18.2.13:7946\"");
        let file = mesh("\"198.18.2.13:7946\", \"198.18.2.12:7946\"");
        assert_ne!(running.sync, file.sync, "the order differs");
        assert!(running.restart_only_changes(&file).is_empty());
    }

    /// `[sync] peers` reload: a node joins (or leaves) a running mesh
    /// with a reload of the others, no restart; the listen address and
    /// the key file still wait for one.
    #[test]
    fn sync_peers_reload_and_the_rest_of_sync_waits_for_a_restart() {
        let mesh = |listen: &str, peers: &str, key: &str| {
            load(&format!(
                "interface = \"eth0\"\n[sync]\nlisten = \"{listen}\"\npeers = [{peers}]\nkey_file = \"{key}\"\n"
            ))
        };
        let two = "\"198.18.2.12:7946\"";
        let three = "\"198.18.2.12:7946\", \"198.18.2.13:7946\"";
        let running = mesh("198.18.2.11:7946", two, "/k");
        let file = mesh("198.18.2.11:7946", three, "/k");
        assert!(running.restart_only_changes(&file).is_empty());
        let next = running.with_reloadable_from(&file);
        assert_eq!(next.sync, file.sync, "the new peer is taken");
        // Another listen address or key file: restart settings, and the
        // running peers stay as they are until then.
        for other in [
            mesh("198.18.2.21:7946", three, "/k"),
            mesh("198.18.2.11:7946", three, "/other"),
        ] {
            assert_eq!(running.restart_only_changes(&other), vec!["sync"]);
            assert_eq!(running.with_reloadable_from(&other).sync, running.sync);
        }
        // Nor does a reload add or remove the whole table.
        let none = load("interface = \"eth0\"\n");
        assert_eq!(running.restart_only_changes(&none), vec!["sync"]);
        assert_eq!(none.restart_only_changes(&file), vec!["sync"]);
    }

    /// A reload notes what takes effect at a restart: the addresses an
    /// instance moves and `[bgp]` announces, whatever their order (a
    /// `[[vrrp]]` without addresses takes them in the VIPs' order), and
    /// the instances whatever the order of their tables.
    #[test]
    fn reordering_vips_lists_or_vrrp_tables_is_no_restart_change() {
        let vip = |a: &str| format!("[[vip]]\naddress = \"{a}\"\nport = 80\n");
        let node = "interface = \"eth0\"\n";
        let defaults = |first: &str, second: &str, peers: &str| {
            load(&format!(
                "{node}{}{}[[vrrp]]\nvrid = 51\nunicast_peers = [{peers}]\n",
                vip(first),
                vip(second)
            ))
        };
        let running = defaults(
            "198.18.0.100",
            "198.18.0.101",
            "\"198.18.0.3\", \"198.18.0.4\"",
        );
        let file = defaults(
            "198.18.0.101",
            "198.18.0.100",
            "\"198.18.0.4\", \"198.18.0.3\"",
        );
        assert_ne!(running.vrrp, file.vrrp, "the order differs");
        assert!(running.restart_only_changes(&file).is_empty());
        let listed = |v4: &str, v6: &str, bgp: &str, v6_first: bool| {
            let v4 = format!("[[vrrp]]\nvrid = 51\naddresses = [{v4}]\n");
            let v6 = format!("[[vrrp]]\nvrid = 52\naddresses = [{v6}]\n");
            let (a, b) = if v6_first { (v6, v4) } else { (v4, v6) };
            let vips: String = [
                "198.18.0.100",
                "198.18.0.101",
                "198.18.0.102",
                "198.18.0.103",
                "2001:2::100",
                "2001:2::101",
            ]
            .into_iter()
            .map(vip)
            .collect();
            load(&format!("{node}{vips}{a}{b}[bgp]\naddresses = [{bgp}]\n"))
        };
        let running = listed(
            "\"198.18.0.100\", \"198.18.0.101\"",
            "\"2001:2::100\", \"2001:2::101\"",
            "\"198.18.0.102\", \"198.18.0.103\"",
            false,
        );
        let file = listed(
            "\"198.18.0.101\", \"198.18.0.100\"",
            "\"2001:2::101\", \"2001:2::100\"",
            "\"198.18.0.103\", \"198.18.0.102\"",
            true,
        );
        assert!(running.restart_only_changes(&file).is_empty());
        // What an instance moves or [bgp] announces changed: noted.
        let moved = listed(
            "\"198.18.0.100\"",
            "\"2001:2::101\", \"2001:2::100\"",
            "\"198.18.0.103\", \"198.18.0.102\", \"198.18.0.101\"",
            true,
        );
        assert_eq!(running.restart_only_changes(&moved), vec!["vrrp", "bgp"]);
    }
}
