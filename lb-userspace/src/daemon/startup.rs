//! The steps of lbd's start around the engine's own: the claim of the data
//! plane (and the admin socket's directory) before it, the admin socket's
//! bind, and the event reader, metrics listener and privilege drop after.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::info;

use super::{engine::Engine, events, http};
use crate::{
    api::server::{ServeOptions, Server},
    config::Config,
};

/// The part of the start before the engine, up to the claim: the
/// `LBD_TC_ATTACH` check, the admin socket's directory and the data
/// plane's locks (see `ownership::claim`); the admin socket's options,
/// for [`bind`].
pub(super) async fn claim(
    path: &Path,
    config: &Config,
) -> anyhow::Result<(crate::ownership::Ownership, ServeOptions)> {
    // A wrong LBD_TC_ATTACH is refused before anything is loaded or
    // pinned (the attach would refuse it too, after the load).
    crate::ownership::cls_bpf::tc_path().map_err(|error| anyhow::anyhow!(error))?;
    let admin_options: ServeOptions = crate::privilege::admin_socket_options(config)?;
    if let Some(dir) = config.admin_socket.parent() {
        create_socket_dir(dir, admin_options.group)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // Exactly one lbd per data plane: its locks are taken before anything
    // touches the pins or the interface, and held until lbd exits (the
    // kernel drops them then, also on kill -9). A second lbd stops here.
    let ownership = crate::ownership::claim(config, path).await?;
    let locks: Vec<String> = ownership.locks().map(|p| p.display().to_string()).collect();
    info!(
        ?locks,
        "this lbd owns the data plane of {}", config.interface
    );
    Ok((ownership, admin_options))
}

/// The admin socket, bound (after [`claim`]).
pub(super) async fn bind(config: &Config, options: &ServeOptions) -> anyhow::Result<Server> {
    Server::bind(&config.admin_socket, options)
        .await
        .with_context(|| format!("admin socket {}", config.admin_socket.display()))
}

/// Mode of the directories lbd creates for the admin socket when
/// `admin_socket_group` is set: that group may reach the socket (0660)
/// through them, whatever the umask (the systemd unit's is 0077).
const SOCKET_DIR_MODE: u32 = 0o750;

/// Creates `dir`, the admin socket's directory, with its missing parents.
/// With `group` (`admin_socket_group`'s gid), each directory created is
/// given to that group with mode [`SOCKET_DIR_MODE`], so its members can
/// reach the socket; directories that exist are left as they are. Without
/// a group the socket is root's only, and the umask decides.
fn create_socket_dir(dir: &Path, group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(gid) = group else {
        return std::fs::create_dir_all(dir);
    };
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for created in missing.into_iter().rev() {
        match std::fs::create_dir(created) {
            Ok(()) => {
                std::os::unix::fs::chown(created, None, Some(gid))?;
                std::fs::set_permissions(
                    created,
                    std::fs::Permissions::from_mode(SOCKET_DIR_MODE),
                )?;
                info!(
                    dir = %created.display(),
                    gid,
                    mode = format!("{SOCKET_DIR_MODE:04o}"),
                    "created the admin socket's directory, open to admin_socket_group"
                );
            }
            // Made meanwhile by someone else: theirs, left alone.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && created.is_dir() => {
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The rest of the start once the engine runs: the data-plane event
/// reader, the metrics listener, and dropping privileges. Returns the
/// reader's and the listener's tasks.
pub(super) async fn finish_start(
    engine: &mut Engine,
    events_tx: mpsc::Sender<lb_common::DataplaneEvent>,
    scrapes_tx: mpsc::Sender<http::Scrape>,
    changes: Arc<std::sync::atomic::AtomicU64>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<(
    Option<tokio::task::JoinHandle<()>>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let events_reader = match engine.take_dataplane_events() {
        Some(ring) => Some(events::spawn(ring, events_tx).context("data-plane event reader")?),
        None => None,
    };
    let metrics_server = match engine.config().metrics_listen {
        Some(address) => match http::serve(address, scrapes_tx, changes, ready).await {
            Ok(server) => Some(server),
            Err(error) => {
                if let Some(reader) = events_reader {
                    reader.abort();
                }
                return Err(error);
            }
        },
        None => None,
    };
    // Everything is bound and attached: from here on lbd needs only the
    // capabilities it keeps (see privilege.rs).
    if let Err(error) =
        crate::privilege::drop_after_start(engine.config()).context("dropping privileges")
    {
        for task in [events_reader, metrics_server].into_iter().flatten() {
            task.abort();
        }
        return Err(error);
    }
    Ok((events_reader, metrics_server))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;
    use crate::test_scratch::ScratchDir;

    fn mode_and_gid(path: &Path) -> (u32, u32) {
        let meta = std::fs::metadata(path).unwrap();
        (meta.permissions().mode() & 0o7777, meta.gid())
    }

    /// `admin_socket = "/run/lbd/admin/lbd.sock"` with `admin_socket_group`:
    /// the directories lbd makes let that group reach the 0660 socket
    /// (the unit's UMask=0077 would make them 0700); the ones that exist
    /// stay as they are.
    #[test]
    fn directories_made_for_the_admin_socket_let_its_group_through() {
        let scratch = ScratchDir::new("socket-dir");
        let base = scratch.path();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let before = mode_and_gid(base);
        let gid = 4321;
        let dir = base.join("admin").join("nested");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            create_socket_dir(&dir, Some(gid)).unwrap();
            assert_eq!(mode_and_gid(&base.join("admin")), (0o750, gid));
            assert_eq!(mode_and_gid(&dir), (0o750, gid));
            assert_eq!(mode_and_gid(base), before, "an existing directory changed");
            // Again: everything exists now, nothing changes.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            create_socket_dir(&dir, Some(gid)).unwrap();
            assert_eq!(mode_and_gid(&dir), (0o700, gid));
        } else {
            println!("not root: cannot give a directory to another group; group part skipped");
        }
        // Without a group: root's socket, created as before.
        let plain = base.join("plain").join("nested");
        create_socket_dir(&plain, None).unwrap();
        assert!(plain.is_dir());
    }
}
