//! keepalived's vrrp_instance as lbd's `[[vrrp]]` table.

use std::net::IpAddr;

use toml::Value;

use crate::import::model::{Setup, Vrrp};
use crate::import::write::Table;
use crate::import::ImportError;

/// The `[[vrrp]]` tables of `setup`'s instances, each with the NAT
/// addresses `nat_movers` gives it; a second instance with a VRID of one
/// family is refused.
pub(super) fn tables(
    setup: &Setup,
    nat_movers: &[(IpAddr, Option<usize>)],
) -> Result<Vec<Table>, ImportError> {
    let mut tables = Vec::new();
    let mut seen: Vec<(u8, bool)> = Vec::new();
    for (index, instance) in setup.vrrp.iter().enumerate() {
        let extra: Vec<(IpAddr, String)> = nat_movers
            .iter()
            .filter(|(_, mover)| *mover == Some(index))
            .map(|(a, _)| {
                (
                    *a,
                    "--nat-source (a NAT address moves with the NAT VIPs that use it)".to_owned(),
                )
            })
            .collect();
        let mut table = table(instance, &extra)?;
        if let Some(warning) = version_warning(instance, setup) {
            table.notes.push(warning);
        }
        let key = (
            instance.vrid.as_ref().map_or(0, |v| v.value),
            instance.addresses.first().is_none_or(|a| a.value.is_ipv4()),
        );
        if seen.contains(&key) {
            return Err(ImportError::at_origin(
                &instance.origin,
                format!(
                    "vrrp_instance {}: a second instance with virtual_router_id {}; import one node's files at a time",
                    instance.name, key.0
                ),
            ));
        }
        seen.push(key);
        tables.push(table);
    }
    Ok(tables)
}

/// The `[[vrrp]]` table of `vrrp`; `extra` are addresses that must move
/// with it (a NAT address), with the reason.
fn table(vrrp: &Vrrp, extra: &[(IpAddr, String)]) -> Result<Table, ImportError> {
    let mut t = Table::new("[[vrrp]]", 0);
    t.notes = vrrp.notes.iter().map(ToString::to_string).collect();
    let vrid = vrrp.vrid.as_ref().ok_or_else(|| {
        ImportError::at_origin(
            &vrrp.origin,
            format!("vrrp_instance {} has no virtual_router_id", vrrp.name),
        )
    })?;
    t.push("vrid", i64::from(vrid.value), vrid.comment());
    if let Some(p) = &vrrp.priority {
        t.push("priority", i64::from(p.value), p.comment());
    } else if let Some(state) = vrrp.state.as_ref().filter(|s| s.value == "MASTER") {
        // keepalived derives an instance's priority from state MASTER.
        t.push(
            "priority",
            i64::from(u8::MAX),
            format!("{}: keepalived's default with state MASTER", state.origin),
        );
    } else {
        t.push(
            "priority",
            100,
            format!("{}: keepalived's default", vrrp.origin),
        );
    }
    if let Some(a) = &vrrp.advert_interval {
        t.push("advert_interval_ms", ms(a.value), a.comment());
    }
    if let Some(p) = &vrrp.preempt {
        t.push("preempt", p.value, p.comment());
    }
    if let Some(d) = &vrrp.preempt_delay {
        // (At most 1000 s: refused at the keepalived.conf line past that.)
        t.push("preempt_delay_ms", ms(d.value), d.comment());
    }
    if let Some(c) = &vrrp.announce_count {
        t.push("announce_count", i64::from(c.value), c.comment());
    }
    if let Some(r) = &vrrp.announce_refresh {
        t.push("announce_refresh_ms", ms(r.value), r.comment());
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut comments = Vec::new();
    for a in &vrrp.addresses {
        if !addresses.contains(&a.value) {
            addresses.push(a.value);
            comments.push(a.origin.to_string());
        }
    }
    for (address, why) in extra {
        if !addresses.contains(address) {
            addresses.push(*address);
            comments.push(why.clone());
        }
    }
    let Some(first) = addresses.first() else {
        return Err(ImportError::at_origin(
            &vrrp.origin,
            format!("vrrp_instance {} has no virtual_ipaddress", vrrp.name),
        ));
    };
    if addresses.iter().any(|a| a.is_ipv4() != first.is_ipv4()) {
        return Err(ImportError::at_origin(
            &vrrp.origin,
            format!("vrrp_instance {} mixes IPv4 and IPv6 addresses; lbd needs one instance per family: split it", vrrp.name),
        ));
    }
    t.push(
        "addresses",
        strings(&addresses),
        format!("virtual_ipaddress: {}", comments.join(", ")),
    );
    if let Some(warning) = advert_warning(vrrp, vrid.value, extra) {
        t.notes.push(warning);
    }
    if !vrrp.unicast_peers.is_empty() {
        let peers: Vec<IpAddr> = vrrp.unicast_peers.iter().map(|p| p.value).collect();
        let from: Vec<String> = vrrp
            .unicast_peers
            .iter()
            .map(|p| p.origin.to_string())
            .collect();
        t.push(
            "unicast_peers",
            strings(&peers),
            format!("unicast_peer: {}", from.join(", ")),
        );
    }
    if let Some(source) = &vrrp.unicast_src_ip {
        let first_v4 = first.is_ipv4();
        if vrrp.unicast_peers.is_empty() {
            t.notes.push(format!(
                "{}: {}: without unicast_peer the adverts go to the multicast group, which lbd sends from the interface's primary (IPv4) or link-local (IPv6) address; not carried over",
                source.origin, source.what
            ));
        } else if source.value.is_ipv4() != first_v4 {
            t.notes.push(format!(
                "{}: {}: not of the instance's family (it moves {} addresses), so keepalived cannot send from it either; not carried over: lbd sends from the interface's own address",
                source.origin,
                source.what,
                if first_v4 { "IPv4" } else { "IPv6" }
            ));
        } else {
            t.push("unicast_src_ip", source.value.to_string(), source.comment());
        }
    }
    if let Some(n) = &vrrp.notify {
        if n.value.starts_with('/') && !n.value.contains(char::is_whitespace) {
            t.push("notify", n.value.clone(), n.comment());
        } else {
            t.notes.push(format!(
                "{}: notify {:?} is not one absolute path; not carried over",
                n.origin, n.value
            ));
        }
    }
    if let Some(w) = &vrrp.track_interface {
        t.push("track_interface", i64::from(w.value), w.comment());
    }
    if let Some(w) = &vrrp.track_dataplane {
        t.push("track_dataplane", i64::from(w.value), w.comment());
    }
    Ok(t)
}

/// A warning when lbd's adverts for `vrrp` will list addresses
/// keepalived's do not (its `virtual_ipaddress_excluded`, the NAT
/// addresses of `extra`): lbd and keepalived each ignore adverts whose
/// address set differs from their own (RFC 5798 §7.1), so side by side on
/// one VRID both would become master.
fn advert_warning(vrrp: &Vrrp, vrid: u8, extra: &[(IpAddr, String)]) -> Option<String> {
    let mut added: Vec<IpAddr> = Vec::new();
    let mut why: Vec<String> = Vec::new();
    for excluded in &vrrp.excluded {
        if !added.contains(excluded) {
            added.push(*excluded);
            why.push(format!("{excluded} (virtual_ipaddress_excluded)"));
        }
    }
    let advertised = |a: &IpAddr| {
        vrrp.addresses
            .iter()
            .any(|s| s.value == *a && !vrrp.excluded.contains(a))
    };
    for (address, _) in extra {
        if !added.contains(address) && !advertised(address) {
            added.push(*address);
            why.push(format!("{address} (the NAT address, --nat-source)"));
        }
    }
    if added.is_empty() {
        return None;
    }
    let list: Vec<String> = added.iter().map(ToString::to_string).collect();
    Some(format!(
        "{}: WARNING: lbd's adverts for VRID {vrid} list {}, which keepalived's do not; keepalived and lbd each ignore adverts whose address list differs from their own, so side by side on this VRID both become master: before lbd runs beside keepalived, add {} to virtual_ipaddress of vrrp_instance {} on both keepalived nodes and reload keepalived",
        vrrp.origin,
        why.join(", "),
        list.join(", "),
        vrrp.name,
    ))
}

/// A warning when keepalived runs `vrrp` in VRRPv2 (its default for
/// IPv4; IPv6 instances are v3 unless their own `version` says 2): lbd speaks VRRPv3 only, and each
/// drops the other's adverts, so side by side both become master.
fn version_warning(vrrp: &Vrrp, setup: &Setup) -> Option<String> {
    let ipv6 = vrrp.addresses.first().is_some_and(|a| a.value.is_ipv6());
    // keepalived gives an IPv6 instance without a `version` of its own
    // VRRPv3, whatever global_defs' vrrp_version says (vrrp.c).
    let global = setup.vrrp_version.as_ref().filter(|_| !ipv6);
    let said = vrrp.version.as_ref().or(global);
    let (version, source) = match said {
        Some(v) => (v.value, format!("{} ({})", v.origin, v.what)),
        None if ipv6 => return None,
        None => (
            2,
            "keepalived's default: no vrrp_version in global_defs".to_owned(),
        ),
    };
    if version == 3 {
        return None;
    }
    Some(format!(
        "{}: WARNING: vrrp_instance {} speaks VRRPv{version} in keepalived ({source}); lbd speaks VRRPv3 only and the two ignore each other's adverts, so side by side both become master: before lbd runs beside keepalived, set `vrrp_version 3` in global_defs (and no `version 2` in the instance) on both keepalived nodes and restart keepalived",
        vrrp.origin, vrrp.name
    ))
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn strings(addresses: &[IpAddr]) -> Value {
    Value::Array(
        addresses
            .iter()
            .map(|a| Value::String(a.to_string()))
            .collect(),
    )
}
