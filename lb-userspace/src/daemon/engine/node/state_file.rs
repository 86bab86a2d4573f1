//! The node state file: where the node state is kept for the next lbd,
//! how a start reads it (an unusable file leaves the node drained, a
//! legacy one is carried over), and how a change is written to it.

use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::durable_write::{sync_dir, write_durably_with};
use crate::{bgp::NodeState, config::Config};

/// Where the node state is kept for the next lbd: `[bgp]
/// node_state_file` (persistent storage: a drain outlasts stops and
/// reboots); without `[bgp]`, where there is nothing to announce, beside
/// the admin socket.
pub(super) fn node_state_file(config: &Config) -> Option<PathBuf> {
    match &config.bgp {
        Some(bgp) => Some(bgp.node_state_file.clone()),
        None => legacy_node_state_file(config),
    }
}

/// Where lbd kept the node state before `[bgp] node_state_file`: beside
/// the admin socket (a tmpfs such as /run/lbd, gone at stop and reboot).
pub(super) fn legacy_node_state_file(config: &Config) -> Option<PathBuf> {
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.node.state")))
}

/// The node state a previous lbd recorded: `[bgp] node_state_file`, else
/// (a node upgraded from an lbd that kept it there) the file beside the
/// admin socket, which is then carried over. A file that is there but
/// cannot be read or names no state leaves the node drained (see
/// [`read_state`]).
pub(super) fn read_node_state(config: &Config) -> NodeState {
    let path = node_state_file(config);
    if let Some(state) = path.as_deref().and_then(recorded_state) {
        return state;
    }
    let legacy = legacy_node_state_file(config).filter(|l| Some(l) != path.as_ref());
    let Some(state) = legacy.as_deref().and_then(recorded_state) else {
        return NodeState::default();
    };
    if let Some(path) = &path {
        match write_state(path, state) {
            Ok(()) => {
                info!(path = %path.display(), state = state.name(), "node state carried over to the state file")
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "carrying the node state over failed")
            }
        }
    }
    state
}

/// The state recorded in `path` (None: no file), drained when the file
/// is there but unusable, with an error saying so.
fn recorded_state(path: &Path) -> Option<NodeState> {
    match read_state(path) {
        Ok(state) => state,
        Err(error) => {
            error!(
                error = %format!("{error:#}"),
                path = %path.display(),
                "the node state file cannot be trusted: the node starts drained (announcing nothing) rather than perhaps undoing a drain; `lbctl node undrain` makes it active and rewrites the file"
            );
            Some(NodeState::Drained)
        }
    }
}

/// The state recorded in `path`: None when there is no file (a node
/// never drained); an error when it cannot be read or names no state
/// (an empty file too), as it may be hiding a drain.
pub(super) fn read_state(path: &Path) -> anyhow::Result<Option<NodeState>> {
    use anyhow::Context as _;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    };
    match NodeState::from_name(text.trim()) {
        Some(state) => Ok(Some(state)),
        None => anyhow::bail!(
            "{} holds {:?}, not \"active\" or \"drained\"",
            path.display(),
            text.trim()
        ),
    }
}

/// Records `state` in `path` durably: a temporary file beside it, synced,
/// renamed over it, then the directory synced, so a drain survives a
/// power cut (the directory is created if missing, e.g. /var/lib/lbd
/// outside the systemd unit).
pub(super) fn write_state(path: &Path, state: NodeState) -> anyhow::Result<()> {
    write_state_with(path, state, sync_dir)
}

/// [`write_state`], the directory synced by `sync_dir`. The rename is
/// the commit point: once it is done the file says `state`, so a failed
/// directory sync is only warned of (the state may not survive a power
/// cut), never reported as the state not recorded, which would leave the
/// caller's state other than the file's.
pub(super) fn write_state_with(
    path: &Path,
    state: NodeState,
    sync_dir: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    write_durably_with(
        path,
        format!("{}\n", state.name()).as_bytes(),
        "node state",
        sync_dir,
    )
}
