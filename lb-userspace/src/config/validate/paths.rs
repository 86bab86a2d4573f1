//! The path rules: `admin_socket`, a Unix socket path lbd can bind, with
//! room for the temporary name it binds first (its limit is arithmetic on
//! `sun_path`), and `pin_dir`, a directory on bpffs. Both are created and
//! written as root, so neither may climb with `..`.

use crate::config::value;

/// How many bytes the admin API's temporary socket name adds to the
/// path: it binds `.<name>.<pid>.tmp` beside it first, and a pid has up
/// to 7 digits (`/proc/sys/kernel/pid_max` is at most 4194304).
const ADMIN_SOCKET_TEMP_EXTRA: usize = ".".len() + ".".len() + 7 + ".tmp".len();

/// Longest `admin_socket` path in bytes: a Unix socket path holds 107
/// bytes (`sun_path` is 108 with the NUL), less what the temporary name
/// adds.
pub(super) const MAX_ADMIN_SOCKET_BYTES: usize = 107 - ADMIN_SOCKET_TEMP_EXTRA;

/// An `admin_socket` path the API can bind: absolute, naming a file (no
/// trailing `/`, not `/`), no `..` (the socket is created as root), and
/// short enough for its temporary name to fit `sun_path`.
pub(super) fn admin_socket_path(path: &str) -> Result<(), value::ValueError> {
    if !path.starts_with('/') {
        return Err(value::ValueError::invalid(format!(
            "{path:?} is not an absolute path"
        )));
    }
    if path.ends_with('/') {
        return Err(value::ValueError::invalid(format!(
            "{path:?} names a directory: give the socket's file name"
        )));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(value::ValueError::invalid(format!(
            "{path:?} has a \"..\" component: write the path without it"
        )));
    }
    if path.len() > MAX_ADMIN_SOCKET_BYTES {
        return Err(value::ValueError::invalid(format!(
            "{path:?} is {} bytes long; at most {MAX_ADMIN_SOCKET_BYTES} are allowed (a Unix socket path holds 107 bytes, and lbd first binds a temporary name {ADMIN_SOCKET_TEMP_EXTRA} bytes longer beside it)",
            path.len()
        )));
    }
    Ok(())
}

/// Longest `pin_dir` in bytes: room below `PATH_MAX` for the layout
/// version's directory and the longest pinned map or link name.
const MAX_PIN_DIR_BYTES: usize = 200;

/// A `pin_dir` lbd can pin under (other than "off"): absolute, no `..`
/// component (lbd creates and removes pins there as root), at most
/// [`MAX_PIN_DIR_BYTES`] bytes. Whether it is on bpffs is checked when
/// lbd pins (the error then names the mount).
pub(super) fn pin_dir_path(path: &str) -> Result<(), value::ValueError> {
    if !path.starts_with('/') {
        return Err(value::ValueError::invalid(format!(
            "{path:?} is not an absolute path (a directory on bpffs, e.g. /sys/fs/bpf/lbd) or \"off\""
        )));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(value::ValueError::invalid(format!(
            "{path:?} has a \"..\" component: write the path without it"
        )));
    }
    if path.len() > MAX_PIN_DIR_BYTES {
        return Err(value::ValueError::invalid(format!(
            "{path:?} is {} bytes long; at most {MAX_PIN_DIR_BYTES} are allowed",
            path.len()
        )));
    }
    Ok(())
}
