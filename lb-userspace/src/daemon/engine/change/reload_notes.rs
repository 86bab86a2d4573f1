//! The notes a reload's answer carries: the runtime changes it undoes
//! (each setting the file puts back), what a forwarding switch does to
//! established flows, the node settings it applies live, and those that
//! wait for a restart.

use crate::{config::Config, model::Model};

/// What a reload's note adds for established NAT flows that keep an old
/// NAT address or backend port on a node that replicates: the peer
/// refuses a record whose NAT address is not its VIP's or whose backend
/// port differs (`replication::nat`), so their copies there are no longer
/// refreshed.
const NOT_REPLICATED: &str = "; with replication ([[vrrp]] sync_peer or [sync] peers), these established flows are no longer copied to the peer, and do not survive a failover once the peer's copies of them age out";

/// Whether the running node copies its flows to peers: a `[[vrrp]]`
/// instance's `sync_peer` or the `[sync]` mesh's peers (restart settings,
/// so the running config's).
fn replicates(running: &Config) -> bool {
    running.vrrp.iter().any(|v| v.sync_peer.is_some())
        || running.sync.as_ref().is_some_and(|s| !s.peers.is_empty())
}

/// Runtime changes a reload undoes, node settings it applies whose
/// change the plan does not show, and settings it cannot apply live.
/// `mac_known` says which backends' MACs are known (after the change's
/// wait, or not yet in a dry run): a switch to DSR-L2 keeps no tracked
/// flow of a backend without one.
pub(in crate::daemon::engine) fn undone_by_reload(
    current: &Model,
    next: &Model,
    running: &Config,
    file: &Config,
    mac_known: &dyn Fn(std::net::IpAddr) -> bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let replicated = replicates(running);
    for (id, vip) in &current.vips {
        let Some(new) = next.vips.get(id) else {
            notes.push(format!("VIP {id} is not in the file: removed"));
            continue;
        };
        notes.extend(vip_settings_undone(
            id,
            &vip.config,
            &new.config,
            replicated,
        ));
        let nat = lb_common::Mode::Nat;
        let nat_replicated =
            replicated && vip.config.forwarding == nat && new.config.forwarding == nat;
        for (address, backend) in &vip.backends {
            match new.backends.get(address) {
                None => notes.push(format!(
                    "backend {address} of {id} is not in the file: removed"
                )),
                Some(b) => notes.extend(backend_settings_undone(
                    &format!("backend {address} of {id}"),
                    (&vip.config.health, &backend.config),
                    (&new.config.health, &b.config),
                    nat_replicated,
                )),
            }
        }
    }
    for (id, vip) in &next.vips {
        match current.vips.get(id) {
            None => notes.push(format!("VIP {id} from the file: added")),
            Some(old) => {
                for address in vip
                    .backends
                    .keys()
                    .filter(|a| !old.backends.contains_key(a))
                {
                    notes.push(format!("backend {address} of {id} from the file: added"));
                }
                let (was, now) = (old.config.forwarding, vip.config.forwarding);
                let nat = lb_common::Mode::Nat;
                if was != now && now == nat {
                    // A NAT VIP drops a packet of a connection it holds
                    // no translation for, and answers nothing: neither
                    // end is told (see `nat::reaper`).
                    notes.push(format!(
                        "VIP {id}: forwarding {} -> nat: established connections are cut without a reset (a NAT VIP drops the packets of a connection it holds no translation for, and answers nothing), so their clients time out (TCP retransmits for up to ~15 min); to move a service with long-lived connections to nat, give it a new VIP and move the clients there instead; new flows take the new mode",
                        was.name()
                    ));
                } else if was != now && was == nat {
                    // The backend knew a NAT'd connection by the NAT
                    // address, and now sees the client's: it resets it.
                    notes.push(format!(
                        "VIP {id}: forwarding nat -> {}: established connections end (their backend knew them by the NAT address, sees the client's now, and answers with a reset); new flows take the new mode",
                        now.name()
                    ));
                } else if was != now {
                    // A switch to DSR-L2 keeps no tracked flow of a
                    // backend without a MAC (see `mac_warnings`).
                    let without_mac: Vec<String> = if now == lb_common::Mode::DsrL2 {
                        vip.backends
                            .values()
                            .filter(|b| {
                                b.config.mac.is_none()
                                    && !mac_known(b.config.address)
                                    && old.backends.contains_key(&b.config.address)
                            })
                            .map(|b| b.config.address.to_string())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let except = if without_mac.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", except those of {}, whose MAC is not known: they are rehashed (see the warnings)",
                            without_mac.join(", ")
                        )
                    };
                    notes.push(format!(
                        "VIP {id}: forwarding {} -> {}: tracked flows keep their backend, their next packets take the new mode{except}",
                        was.name(),
                        now.name()
                    ));
                }
            }
        }
    }
    notes.extend(live_node_settings_changed(running, file));
    for name in running.restart_only_changes(file) {
        notes.push(format!("{name} changed: takes effect when lbd restarts"));
    }
    notes
}

/// The node settings a reload applies at once whose change no VIP's plan
/// shows, one note per key, with what it does to flows already there:
/// `[tunnel]` (every tunnelled packet takes the new port or sources at
/// once, established flows' too, which the backends' lb-decap may not
/// accept), and `[nat]`'s port range and timeouts (its addresses are
/// each NAT VIP's `nat_source` note).
fn live_node_settings_changed(running: &Config, file: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let (was, now) = (&running.tunnel, &file.tunnel);
    if was.gue_port != now.gue_port {
        notes.push(format!(
            "[tunnel] gue_port: {} -> {} (the file's): every GUE packet from now on, established flows' too, goes to UDP port {}; backends whose lb-decap does not listen on it drop them",
            was.gue_port, now.gue_port, now.gue_port
        ));
    }
    let sources = |prefix: Option<(std::net::IpAddr, u8)>, family: &str| {
        prefix.map_or_else(
            || format!("the interface's own {family} address"),
            crate::config::prefix_text,
        )
    };
    for (key, family, a, b) in [
        ("source_ipv4", "IPv4", was.source_ipv4, now.source_ipv4),
        ("source_ipv6", "IPv6", was.source_ipv6, now.source_ipv6),
    ] {
        if a != b {
            notes.push(format!(
                "[tunnel] {key}: {} -> {} (the file's): every tunnelled packet to an {family} backend from now on, established flows' too, leaves from the new sources; backends whose lb-decap `sources` do not allow them drop them",
                sources(a, family),
                sources(b, family)
            ));
        }
    }
    let (was, now) = (&running.nat, &file.nat);
    if (was.port_min, was.port_max) != (now.port_min, now.port_max) {
        notes.push(format!(
            "[nat] source_port_min..source_port_max: {}-{} -> {}-{} (the file's): new NAT flows take ports in {}-{}; established ones keep theirs until they end",
            was.port_min, was.port_max, now.port_min, now.port_max, now.port_min, now.port_max
        ));
    }
    let (a, b) = (&was.timeouts, &now.timeouts);
    for (key, was, now) in [
        ("tcp_syn_timeout_s", a.tcp_syn, b.tcp_syn),
        (
            "tcp_established_timeout_s",
            a.tcp_established,
            b.tcp_established,
        ),
        ("tcp_closing_timeout_s", a.tcp_closing, b.tcp_closing),
        ("tcp_time_wait_timeout_s", a.tcp_time_wait, b.tcp_time_wait),
        ("tcp_closed_timeout_s", a.tcp_closed, b.tcp_closed),
        ("udp_timeout_s", a.udp, b.udp),
    ] {
        if was != now {
            notes.push(format!(
                "[nat] {key}: {} -> {} (the file's): NAT flows already there take it too (the reaper removes those idle longer)",
                was.as_secs(),
                now.as_secs()
            ));
        }
    }
    notes
}

/// The settings of a VIP that stays (its backends apart) whose running
/// value is not the file's: one note per key, as the reload puts the
/// file's back (`Model::reloaded` rebuilds the VIP from the file). A
/// runtime `vip remove` + `vip add` can give a VIP any of them, so the
/// dry run must list each, not only the backends and weights.
/// `forwarding` has its own note (what its flows do); the NAT address is
/// compared only between two NAT VIPs (a switch to or from NAT is that
/// note's).
/// `replicated`: the node copies its flows to peers (see [`replicates`]).
fn vip_settings_undone(
    id: &crate::vip_id::VipId,
    was: &crate::config::VipConfig,
    now: &crate::config::VipConfig,
    replicated: bool,
) -> Vec<String> {
    let of = format!("VIP {id}");
    let mut notes = Vec::new();
    let mut moved_source = None;
    let mut differs = |key: &str, was: String, now: String| {
        if was != now {
            notes.push(format!("{key} of {of}: {was} -> {now} (the file's)"));
        }
    };
    differs(
        "table_size",
        was.table_size.to_string(),
        now.table_size.to_string(),
    );
    differs(
        "on_all_down",
        was.on_all_down.to_string(),
        now.on_all_down.to_string(),
    );
    differs(
        "affinity",
        was.affinity.name().to_owned(),
        now.affinity.name().to_owned(),
    );
    let seconds =
        |d: Option<std::time::Duration>| d.map_or("never".to_owned(), |d| d.as_secs().to_string());
    differs(
        "drain_timeout_s",
        seconds(was.drain_timeout),
        seconds(now.drain_timeout),
    );
    let ramp =
        |d: Option<std::time::Duration>| d.map_or("off".to_owned(), |d| d.as_secs().to_string());
    differs("slow_start_s", ramp(was.slow_start), ramp(now.slow_start));
    if let (Some(a), Some(b)) = (was.nat, now.nat) {
        let source = |n: crate::config::VipNat| {
            if n.own_source {
                n.source.to_string()
            } else {
                format!("the node's ({})", n.source)
            }
        };
        if a.source == b.source {
            differs("nat_source", source(a), source(b));
        } else {
            // A translation holds its NAT address: only new flows take
            // the new one, and replies to the old one must still reach
            // this node.
            moved_source = Some(format!(
                "nat_source of {of}: {} -> {} (the file's): established connections keep {}, which must stay on the node until they end; new flows take {}{}",
                source(a),
                source(b),
                a.source,
                b.source,
                if replicated {
                    NOT_REPLICATED
                } else {
                    ""
                }
            ));
        }
    }
    for (key, was, now) in health_keys(&was.health, &now.health) {
        differs(&format!("health.{key}"), was, now);
    }
    notes.extend(moved_source);
    notes
}

/// As [`vip_settings_undone`], for a backend that stays (`of`: "backend
/// B of V"), given with its VIP's checks before and after: weight, port,
/// backup, mac and its own checks. A backend's checks are compared as they apply
/// (its own, else its VIP's) when it has its own on either side; without
/// any, the VIP's notes say it.
/// `nat_replicated`: a NAT backend of a node that copies its flows to
/// peers (see [`replicates`]), whose established flows keep their port.
fn backend_settings_undone(
    of: &str,
    (vip_was, was): (&crate::config::HealthConfig, &crate::config::BackendConfig),
    (vip_now, now): (&crate::config::HealthConfig, &crate::config::BackendConfig),
    nat_replicated: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let port = |p: Option<u16>| p.map_or("the VIP's".to_owned(), |p| p.to_string());
    let port_note = (was.port != now.port && nat_replicated).then(|| {
        format!(
            "port of {of}: {} -> {} (the file's): established NAT flows keep the old port, new ones take the new{NOT_REPLICATED}",
            port(was.port),
            port(now.port)
        )
    });
    let mut differs = |key: &str, was: String, now: String, note: Option<String>| {
        if let Some(note) = note {
            notes.push(note);
        } else if was != now {
            notes.push(format!("{key} of {of}: {was} -> {now} (the file's)"));
        }
    };
    differs(
        "weight",
        was.weight.to_string(),
        now.weight.to_string(),
        None,
    );
    differs("port", port(was.port), port(now.port), port_note);
    differs(
        "backup",
        was.backup.to_string(),
        now.backup.to_string(),
        None,
    );
    let mac = |m: Option<crate::mac::Mac>| {
        m.map_or("none (from the neighbour table)".to_owned(), |m| {
            m.to_string()
        })
    };
    differs("mac", mac(was.mac), mac(now.mac), None);
    if was.health.is_some() || now.health.is_some() {
        let checks_was = was.health.as_ref().unwrap_or(vip_was);
        let checks_now = now.health.as_ref().unwrap_or(vip_now);
        for (key, was, now) in health_keys(checks_was, checks_now) {
            differs(&format!("health.{key}"), was, now, None);
        }
    }
    notes
}

/// The keys of two health tables that differ, by the file's names and
/// units: (key, running value, file's value).
fn health_keys(
    was: &crate::config::HealthConfig,
    now: &crate::config::HealthConfig,
) -> Vec<(&'static str, String, String)> {
    let keys = |h: &crate::config::HealthConfig| {
        let default = |v: Option<String>| v.unwrap_or_else(|| "default".to_owned());
        [
            ("check", h.check.to_string()),
            ("user", h.user.clone().unwrap_or_else(|| "none".to_owned())),
            ("database", database(h)),
            ("port", default(h.port.map(|p| p.to_string()))),
            ("path", h.path.clone()),
            ("host", default(h.host.clone())),
            ("expect_status", h.expect_status.to_string()),
            (
                "expect_body",
                h.expect_body
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |t| format!("{t:?}")),
            ),
            ("tls", h.tls.to_string()),
            ("interval_ms", h.interval.as_millis().to_string()),
            ("fast_interval_ms", h.fast_interval.as_millis().to_string()),
            ("timeout_ms", h.timeout.as_millis().to_string()),
            ("rise", h.rise.to_string()),
            ("fall", h.fall.to_string()),
            ("through_tunnel", h.through_tunnel.to_string()),
        ]
    };
    // An unset database is the user's name (the server's default): the
    // same database as naming it, and no change while both leave it
    // unset (the user's own note says it).
    let same_database = match (&was.database, &now.database) {
        (None, None) => true,
        (a, b) => a.as_ref().or(was.user.as_ref()) == b.as_ref().or(now.user.as_ref()),
    };
    keys(was)
        .into_iter()
        .zip(keys(now))
        .filter(|((key, a), (_, b))| {
            if *key == "database" {
                !same_database
            } else {
                a != b
            }
        })
        .map(|((key, a), (_, b))| (key, a, b))
        .collect()
}

/// A health table's `database` as a note shows it: an unset one is the
/// server's default, the user's name.
fn database(h: &crate::config::HealthConfig) -> String {
    match (&h.database, &h.user) {
        (Some(database), _) => database.clone(),
        (None, Some(user)) => format!("default (the user's name, {user})"),
        (None, None) => "default".to_owned(),
    }
}
