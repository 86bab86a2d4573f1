//! `accept_local` switched on where the replies of checks through the tunnel
//! arrive, and put back at a clean stop: apart because it is a sysctl the
//! node keeps, unlike the check path's programs.

use std::{collections::BTreeSet, net::IpAddr, path::PathBuf};

use tracing::{info, warn};

use super::super::Engine;

/// A sysctl lbd changed, to restore at a clean stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SysctlChange {
    path: PathBuf,
    was: String,
}

/// The `accept_local` switch of `interface` (IPv4 only: IPv6 takes a
/// packet from one of the node's own addresses as it is).
pub(crate) fn accept_local_path(interface: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/accept_local"))
}

/// The interface that holds `address` among `addresses` (the node's, by
/// interface), if any.
fn owner_of(address: IpAddr, addresses: &[(String, IpAddr)]) -> Option<&str> {
    addresses
        .iter()
        .find(|(_, a)| *a == address)
        .map(|(name, _)| name.as_str())
}

/// The interfaces that need `accept_local` for checks through the tunnel
/// leaving from `sources` (their IPv4 source addresses; IPv6 takes a
/// packet from one of the node's own addresses as it is): the balancer
/// interface, and the one holding each source, where the backend's reply
/// from the VIP arrives (a backend routed out of another interface than
/// the balancer's answers on that one). `addresses`: the node's, by
/// interface.
pub(super) fn accept_local_interfaces(
    balancer: &str,
    sources: &[IpAddr],
    addresses: &[(String, IpAddr)],
) -> BTreeSet<String> {
    let mut out = BTreeSet::from([balancer.to_owned()]);
    for source in sources.iter().filter(|s| s.is_ipv4()) {
        if let Some(owner) = owner_of(*source, addresses) {
            out.insert(owner.to_owned());
        }
    }
    out
}

impl Engine {
    /// Makes `accept_local` on for every interface of `wanted`, and as
    /// lbd found it on every other it had switched on (a check's source
    /// moved off it, or the backends routed there went).
    pub(super) fn sync_accept_local(&mut self, wanted: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .tunnel
            .accept_local
            .keys()
            .filter(|i| !wanted.contains(*i))
            .cloned()
            .collect();
        for interface in gone {
            if let Some(change) = self.tunnel.accept_local.remove(&interface) {
                self.restore_sysctl(change);
            }
        }
        for interface in wanted {
            self.ensure_accept_local(interface);
        }
    }

    /// Switches `accept_local` on for `interface` (remembering the value
    /// found).
    fn ensure_accept_local(&mut self, interface: &str) {
        if self.tunnel.accept_local.contains_key(interface) {
            return;
        }
        let path = accept_local_path(interface);
        let was = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_owned(),
            Err(error) => {
                warn!(setting = %path.display(), %error, "cannot read accept_local: replies to checks through the tunnel (from the VIP) may be dropped");
                return;
            }
        };
        if was != "0" {
            // On already: by the operator, or by an lbd before this one (a
            // restart, or one that crashed), whose record keeps the
            // original to restore.
            if let Some(original) =
                crate::ownership::held::recorded_original(&self.config.admin_socket, &path)
            {
                self.tunnel.accept_local.insert(
                    interface.to_owned(),
                    SysctlChange {
                        path,
                        was: original,
                    },
                );
            }
            return;
        }
        match std::fs::write(&path, "1") {
            Ok(()) => {
                info!(setting = %path.display(), "accept_local switched on: replies to checks through the tunnel come from the VIP, an address this node holds (restored at a clean stop or when no check needs it)");
                // Recorded for the lbds after this one and for `lbd
                // --cleanup` (after a crash nothing else would put it back).
                if let Err(error) =
                    crate::ownership::held::record_original(&self.config.admin_socket, &path, &was)
                {
                    warn!(setting = %path.display(), error = %format!("{error:#}"), "recording accept_local's original value failed: after a crash or restart it will not be restored");
                }
                self.tunnel
                    .accept_local
                    .insert(interface.to_owned(), SysctlChange { path, was });
            }
            Err(error) => {
                warn!(setting = %path.display(), %error, "cannot switch accept_local on: replies to checks through the tunnel are dropped on the VRRP master and its backends go down");
            }
        }
    }

    /// Puts `accept_local` back as lbd found it, on every interface.
    pub(crate) fn restore_accept_local(&mut self) {
        for (_, change) in std::mem::take(&mut self.tunnel.accept_local) {
            self.restore_sysctl(change);
        }
    }

    /// Puts one `accept_local` back and drops it from lbd's record.
    fn restore_sysctl(&self, change: SysctlChange) {
        crate::ownership::held::forget_original(&self.config.admin_socket, &change.path);
        match std::fs::write(&change.path, &change.was) {
            Ok(()) => {
                info!(setting = %change.path.display(), value = %change.was, "accept_local restored")
            }
            Err(error) => {
                warn!(setting = %change.path.display(), %error, "restoring accept_local failed")
            }
        }
    }
}
