//! keepalived's vrrp_instance as lbd's `[[vrrp]]` table.

use std::net::IpAddr;

use toml::Value;

use crate::import::model::{Setup, Vrrp};
use crate::import::write::Table;
use crate::import::ImportError;

/// The `[[vrrp]]` tables of `setup`'s instances, each with the NAT
/// addresses of `nat_needed` that move with it; a second instance with a
/// VRID of one family is refused.
pub(super) fn tables(setup: &Setup, nat_needed: &[IpAddr]) -> Result<Vec<Table>, ImportError> {
    let mut tables = Vec::new();
    let mut seen: Vec<(u8, bool)> = Vec::new();
    for instance in &setup.vrrp {
        let extra = super::nat::moving_with(instance, setup, nat_needed);
        let table = table(instance, &extra)?;
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
