//! The restart marker: word lbd leaves that its stop is a restart, so the
//! unit's stop path keeps the BGP announcements (a marker no stop path
//! took goes when the next lbd starts).

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::super::Engine;
use crate::{bgp::announcer, config::Config};

/// Removes a restart marker a previous lbd left that no stop path took.
pub(super) fn remove_stale_restart_marker(config: &Config) {
    let Some(marker) = restart_marker(config) else {
        return;
    };
    match std::fs::remove_file(&marker) {
        Ok(()) => {
            info!(path = %marker.display(), "stale restart marker removed: the next stop withdraws the BGP announcements unless it is a restart")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            warn!(%error, path = %marker.display(), "removing a stale restart marker failed: the next stop may keep the BGP announcements")
        }
    }
}

/// Where lbd leaves word that it stops for a restart, for the unit's stop
/// path (`lbd --release-vips`), which then keeps the BGP announcements.
pub(super) fn restart_marker(config: &Config) -> Option<PathBuf> {
    restart_marker_at(&config.admin_socket)
}

/// The restart marker of the lbd whose admin socket is `admin_socket`.
fn restart_marker_at(admin_socket: &Path) -> Option<PathBuf> {
    let stem = admin_socket.file_stem()?.to_string_lossy();
    admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.restarting")))
}

/// The unit's stop path: withdraws the announcement `bgp` (the one the
/// lbd that ran made, from its record; see `ownership::held`) unless that
/// lbd, whose admin socket was `admin_socket`, left word that it restarts
/// (the marker is taken).
pub(crate) async fn withdraw_unless_restarting(
    admin_socket: &Path,
    bgp: &crate::ownership::held::HeldBgp,
) -> anyhow::Result<()> {
    if let Some(marker) = restart_marker_at(admin_socket) {
        if std::fs::remove_file(&marker).is_ok() {
            info!("BGP: lbd stopped for a restart; announcements kept");
            return Ok(());
        }
    }
    announcer::withdraw_routes(bgp).await
}

impl Engine {
    /// Leaves word for the unit's stop path that this stop is a restart.
    pub(crate) fn mark_restart(&self) {
        let Some(marker) = restart_marker(&self.config) else {
            return;
        };
        if let Err(error) = std::fs::write(&marker, b"restart\n") {
            warn!(%error, path = %marker.display(), "leaving the restart marker failed: the unit's stop path will withdraw the BGP announcements");
        }
    }
}
