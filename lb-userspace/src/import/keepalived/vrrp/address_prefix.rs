//! The prefix of a `virtual_ipaddress` entry, which lbd does not add
//! (nor the connected route it brought): the note, or WARNING, on it.

use std::net::IpAddr;

use crate::import::blocks::Statement;

/// The note on a `virtual_ipaddress` entry with a prefix other than the
/// host's (`203.0.113.10/24`): keepalived added the address with it,
/// which installed the connected route to its subnet on `dev` (its own,
/// else the instance's interface); lbd adds a host address and no route,
/// a WARNING, since a node whose own addresses are elsewhere then
/// reaches neither that subnet's gateway nor its clients. None for a
/// host prefix or none.
pub(super) fn prefix_note(entry: &Statement, address: IpAddr, dev: Option<&str>) -> Option<String> {
    let (_, prefix) = entry.name().split_once('/')?;
    let host_prefix: u8 = if address.is_ipv4() { 32 } else { 128 };
    let on = dev.map_or(String::new(), |d| format!(" on {d}"));
    let Some(prefix) = prefix.parse::<u8>().ok().filter(|p| *p <= host_prefix) else {
        return Some(format!(
            "{}: lbd adds the address as /32 (/128) on its interface; the prefix, dev, label and scope are not carried over",
            entry.text()
        ));
    };
    if prefix == host_prefix {
        return None;
    }
    let network = match address {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Some(format!(
        "WARNING: {}: lbd adds the address as /{host_prefix} on its interface, without the /{prefix}: keepalived's address installed the connected route to {network}/{prefix}{on}, which lbd does not; unless another address of this node is in {network}/{prefix}, add one (or that route) yourself, or the node reaches neither that subnet's gateway nor its hosts{}",
        entry.text(),
        if entry.words.len() > 1 { ". Its label and scope are not carried over" } else { "" }
    ))
}
