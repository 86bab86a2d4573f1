//! The steps that undo on the node what a record holds, shared by a start
//! (for a previous lbd) and the offline actions: routes withdrawn (unless a
//! running lbd uses the file), VIP addresses removed, settings put back.

use std::{net::IpAddr, path::Path};

use anyhow::Context as _;
use tracing::{info, warn};

use super::{HeldBgp, HeldSetting};

/// Leave to empty a recorded routes file: the lock of the file, held
/// while the routes are withdrawn (see [`lock_routes_file`]).
#[derive(Debug)]
pub(crate) struct RoutesFileFree {
    /// None: the file's directory is gone, so nobody uses the file.
    _lock: Option<crate::ownership::lock::Lock>,
}

/// Locks the routes file of a record's announcement `bgp` for a process
/// (started with `config_path`) about to withdraw its routes; None, with
/// a warning naming the file and the owner's pid, when a running lbd
/// holds its lock: that lbd announces through the file now, and emptying
/// it would withdraw its routes.
pub(crate) fn lock_routes_file(
    bgp: &HeldBgp,
    config_path: &Path,
) -> anyhow::Result<Option<RoutesFileFree>> {
    match crate::ownership::try_bgp_file_lock(&bgp.routes_file, config_path)? {
        crate::ownership::BgpFileLock::Held(lock) => Ok(Some(RoutesFileFree { _lock: lock })),
        crate::ownership::BgpFileLock::Taken(owner) => {
            let owner = owner.map_or_else(|| "another lbd".to_owned(), |o| o.to_string());
            warn!(routes_file = %bgp.routes_file.display(), "BGP: the routes file recorded is used by {owner}, which is running: its routes are left to it, not withdrawn");
            Ok(None)
        }
    }
}

/// Withdraws the routes of a record's announcement `bgp` (see
/// [`lock_routes_file`]): false when a running lbd uses its routes file
/// and nothing was done.
pub(crate) async fn withdraw_recorded(bgp: &HeldBgp, config_path: &Path) -> anyhow::Result<bool> {
    let Some(_lock) = lock_routes_file(bgp, config_path)? else {
        return Ok(false);
    };
    crate::bgp::announcer::withdraw_routes(bgp).await?;
    Ok(true)
}

/// Removes lbd's `addresses` (host prefixes only) from interface `name`.
/// An interface that is gone took them with it.
pub(crate) async fn remove_addresses(
    netlink: &crate::netlink::Netlink,
    name: &str,
    addresses: &[IpAddr],
) -> anyhow::Result<()> {
    let interface = match netlink.interface(name).await {
        Ok(interface) => interface,
        Err(crate::netlink::NetlinkError::NoSuchInterface(_)) => {
            warn!(interface = %name, "interface no longer exists: its VIP addresses went with it");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    for address in addresses {
        // Never the interface's own address (see vrrp::addresses).
        let removal = crate::vrrp::addresses::remove(netlink, interface.index, *address)
            .await
            .with_context(|| format!("removing VIP {address} from {}", interface.name))?;
        match removal {
            crate::vrrp::addresses::Removal::Removed => {
                info!(%address, interface = %interface.name, "VIP address removed");
            }
            crate::vrrp::addresses::Removal::Absent => {
                tracing::debug!(%address, interface = %interface.name, "VIP address not held");
            }
            // `remove` warned.
            crate::vrrp::addresses::Removal::Own => {}
        }
    }
    Ok(())
}

/// Puts `settings` back to their original values (a clean stop, a
/// cleanup). A setting whose interface is gone went with it.
pub(crate) fn restore(settings: &[HeldSetting]) {
    for setting in settings {
        match std::fs::write(&setting.path, &setting.was) {
            Ok(()) => {
                info!(setting = %setting.path.display(), value = %setting.was, "interface setting restored");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                info!(setting = %setting.path.display(), "interface setting not restored: its interface is gone");
            }
            Err(error) => {
                warn!(setting = %setting.path.display(), %error, "restoring the interface setting failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::test_support::Scratch;
    use super::*;

    /// A routes file a record names is emptied only while no running lbd
    /// holds its lock: otherwise that lbd's routes stay.
    #[tokio::test]
    async fn a_recorded_routes_file_a_running_lbd_uses_is_left_alone() {
        let scratch = Scratch::new("routes");
        let bgp = HeldBgp {
            bird_socket: scratch.0.join("no-bird.ctl"),
            routes_file: scratch.0.join("vips.conf"),
            protocol: "lbd_vips".into(),
        };
        let routes = "protocol static lbd_vips4 { route 198.18.0.100/32 blackhole; }\n";
        std::fs::write(&bgp.routes_file, routes).expect("routes");
        let owner = crate::ownership::lock::OwnerRecord {
            pid: 4343,
            config: PathBuf::from("/etc/lbd/other.toml"),
        };
        let crate::ownership::lock::Attempt::Held(lock) = crate::ownership::lock::lock_file(
            &crate::ownership::bgp_file_lock_path(&bgp.routes_file),
            &owner,
        )
        .expect("lock") else {
            panic!("taken");
        };
        let config_path = Path::new("/etc/lbd/lbd.toml");
        assert!(!withdraw_recorded(&bgp, config_path).await.expect("skipped"));
        assert_eq!(
            std::fs::read_to_string(&bgp.routes_file).expect("read"),
            routes
        );
        drop(lock);
        // Free now: emptied (then BIRD, absent here, is asked to reload).
        assert!(withdraw_recorded(&bgp, config_path).await.is_err());
        assert_ne!(
            std::fs::read_to_string(&bgp.routes_file).expect("read"),
            routes
        );
    }
}
