//! Where the backend state file lies (beside the node state file, or
//! beside the admin socket), shared with the other state files a restart
//! keeps, and where a config before this one kept it.

use std::path::{Path, PathBuf};

use super::file_io::read;
use crate::config::Config;

/// Where the backend states are kept: beside the node state file, so
/// they live as long as a node drain does (`[bgp] node_state_file` with
/// `.backends.state` appended to its whole name, e.g.
/// `/var/lib/lbd/node.state.backends.state`; without `[bgp]` beside the
/// admin socket, named after its stem, e.g. `/run/lbd/lbd.backends.state`,
/// which a restart keeps and a reboot empties). Each name is this lbd's
/// own, as it holds the lock of what it is derived from: two lbds on one
/// host have distinct node state files (each locks its own), and distinct
/// admin socket stems (each locks the record named after its stem; see
/// `ownership`), and so is its temporary file while it is replaced (the
/// whole name with `.new` appended, `node::temporary_of`).
pub(crate) fn backend_state_file(config: &Config) -> Option<PathBuf> {
    state_file_named(config, "backends")
}

/// The state file `<kind>.state` kept where the backend state file is
/// (see [`backend_state_file`]): beside the node state file with
/// `.<kind>.state` appended to its whole name, or without `[bgp]` beside
/// the admin socket, named after its stem. Shared with the other state a
/// restart keeps (`running_state`), so each lives as long and as far
/// apart from another lbd's.
pub(in crate::daemon::engine) fn state_file_named(config: &Config, kind: &str) -> Option<PathBuf> {
    match &config.bgp {
        Some(bgp) => Some(beside_node_state_named(&bgp.node_state_file, kind)),
        None => beside_admin_socket_named(config, kind),
    }
}

/// The backend state file kept beside the node state file `node_state`.
fn beside_node_state(node_state: &Path) -> PathBuf {
    beside_node_state_named(node_state, "backends")
}

/// The state file `kind` kept beside the node state file `node_state`.
fn beside_node_state_named(node_state: &Path, kind: &str) -> PathBuf {
    let mut name = node_state.to_owned().into_os_string();
    name.push(format!(".{kind}.state"));
    PathBuf::from(name)
}

/// The backend state file kept beside the admin socket (without `[bgp]`).
fn beside_admin_socket(config: &Config) -> Option<PathBuf> {
    beside_admin_socket_named(config, "backends")
}

/// The state file `kind` kept beside the admin socket (without `[bgp]`).
fn beside_admin_socket_named(config: &Config, kind: &str) -> Option<PathBuf> {
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.{kind}.state")))
}

/// Where this lbd's backend state file would have been before a change
/// of its config that moves it (the file is found by its name alone):
/// beside the admin socket before `[bgp]` was added, beside the default
/// node state file (`default_node_state`) before `[bgp]` was removed or
/// its `node_state_file` set. A node state file set before is not
/// known. `path` (where it is now) is left out.
fn former_places(config: &Config, path: &Path, default_node_state: &Path) -> Vec<PathBuf> {
    let mut places = Vec::new();
    if config.bgp.is_some() {
        places.extend(beside_admin_socket(config));
    }
    places.push(beside_node_state(default_node_state));
    places.retain(|place| place != path);
    places.dedup();
    places
}

/// The backend state files at `former_places` when there is none at
/// `path`, each with what it holds (the number of backends it lists, or
/// why it cannot be read): states a restart after such a change of the
/// config would otherwise forget without a word. Empty ones are left
/// out (they hold nothing to forget).
pub(super) fn left_behind(
    config: &Config,
    path: &Path,
    default_node_state: &Path,
) -> Vec<(PathBuf, Result<usize, String>)> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Vec::new();
    }
    former_places(config, path, default_node_state)
        .into_iter()
        .filter(|place| std::fs::symlink_metadata(place).is_ok())
        .filter_map(|place| match read(&place) {
            Ok(found) if found.is_empty() => None,
            Ok(found) => Some((place, Ok(found.len()))),
            Err(error) => Some((place, Err(format!("{error:#}")))),
        })
        .collect()
}
