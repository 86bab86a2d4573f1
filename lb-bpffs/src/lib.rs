//! The BPF filesystem lbd and lb-decap pin their programs, links and maps
//! into, so the data plane outlives the process that loaded it. Both
//! daemons need the same three answers before they pin anything: is this
//! directory on a BPF filesystem, may one be mounted for it (only where
//! systemd would have mounted it, and only in the host's mount namespace:
//! a mount inside `ip netns exec`'s private namespace vanishes with the
//! process, and the pins with it), and mount it. One source, so both
//! refuse the same way.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

/// Where a BPF filesystem is mounted by convention, and the one place a
/// daemon mounts one itself when nothing is there.
pub const MOUNT: &str = "/sys/fs/bpf";

/// `BPF_FS_MAGIC` from statfs(2).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// Why a directory cannot hold pins. Each daemon words the fixes for its
/// own configuration; the variants say which case it is.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    /// The directory is not on a BPF filesystem, and none may be mounted
    /// for it (it is not under [`MOUNT`], or something else is mounted
    /// there).
    #[error("{0} is not on a BPF filesystem (mount one: mount -t bpf bpf {MOUNT})")]
    NotBpffs(PathBuf),
    /// The directory is not on a BPF filesystem, and this process runs in
    /// a mount namespace of its own: a filesystem mounted now would go
    /// when the process goes.
    #[error(
        "{0} is not on a BPF filesystem, and this process runs in a mount namespace of its own"
    )]
    PrivateMountNamespace(PathBuf),
    /// Mounting the filesystem on [`MOUNT`] failed.
    #[error("mounting a BPF filesystem on {path}: {source}")]
    Mount {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Makes sure `dir` is, or once created will be, on a BPF filesystem:
/// mounts one on [`MOUNT`] when `dir` lies under it and nothing is
/// mounted there (as systemd would have). Refused, before anything is
/// mounted, when this process runs in a mount namespace of its own.
/// Creates nothing else; the caller creates `dir`.
pub fn ensure(dir: &Path) -> Result<(), BpffsError> {
    if on_bpffs(dir) {
        return Ok(());
    }
    if private_mount_namespace() {
        return Err(BpffsError::PrivateMountNamespace(dir.to_owned()));
    }
    let mount = Path::new(MOUNT);
    if dir.starts_with(mount) && mount.is_dir() && !is_bpffs(mount) {
        mount_bpffs(mount)?;
    }
    if on_bpffs(dir) {
        Ok(())
    } else {
        Err(BpffsError::NotBpffs(dir.to_owned()))
    }
}

/// Whether `path` (or, if it does not exist yet, its nearest existing
/// ancestor) is on a BPF filesystem.
pub fn on_bpffs(path: &Path) -> bool {
    path.ancestors().find(|p| p.exists()).is_some_and(is_bpffs)
}

/// Whether `path` itself is on a BPF filesystem.
fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_type as u32 == BPF_FS_MAGIC
    }
}

/// Whether this process runs in a mount namespace other than the host's
/// (see [`is_private`]), from what /proc lets it read.
fn private_mount_namespace() -> bool {
    let own = mount_namespace("self");
    let host = mount_namespace("1");
    // PID 1's namespace is unreadable to a process without every
    // capability PID 1 has (a unit's CapabilityBoundingSet): then the
    // ancestors, and this process's own mount table, decide.
    let ancestor = match (own, host) {
        (Some(own), None) => ancestor_namespace_differs(own),
        _ => false,
    };
    let mountinfo = if host.is_none() && !ancestor {
        std::fs::read_to_string("/proc/self/mountinfo").ok()
    } else {
        None
    };
    is_private(own, host, ancestor, mountinfo.as_deref())
}

/// The decision: private if this process's mount namespace differs from
/// PID 1's; where PID 1's cannot be read, if an ancestor's (below PID 1)
/// differs (`ip netns exec` execs the daemon in a namespace of its own;
/// its caller stays outside), or else if this namespace's root mount is a
/// copy of another namespace's: a `master:` tag in /proc/self/mountinfo
/// (systemd's sandboxed units and `ip netns exec` make their namespaces
/// slaves of the host's; the host's own root never is one). Unknown (own
/// namespace unreadable, or no mount table): not private.
fn is_private(
    own: Option<u64>,
    host: Option<u64>,
    ancestor_differs: bool,
    mountinfo: Option<&str>,
) -> bool {
    let Some(own) = own else {
        return false;
    };
    if let Some(host) = host {
        return own != host;
    }
    ancestor_differs || mountinfo.is_some_and(root_mount_is_a_copy)
}

/// Whether the root mount in a mountinfo text (the last line mounted on
/// `/`, the one visible) carries a `master:` propagation tag.
fn root_mount_is_a_copy(mountinfo: &str) -> bool {
    mountinfo
        .lines()
        .rev()
        .find(|line| line.split_whitespace().nth(4) == Some("/"))
        .is_some_and(|line| {
            line.split_whitespace()
                .skip(6)
                .take_while(|field| *field != "-")
                .any(|field| field.starts_with("master:"))
        })
}

/// Whether an ancestor of this process below PID 1 runs in a mount
/// namespace other than `own`.
fn ancestor_namespace_differs(own: u64) -> bool {
    let mut pid = std::process::id();
    // A bounded walk up the ancestors (pids can be reused while walking).
    for _ in 0..64 {
        let Some(parent) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parent_pid(&stat))
        else {
            return false;
        };
        if parent <= 1 {
            return false;
        }
        if mount_namespace(&parent.to_string()).is_some_and(|ns| ns != own) {
            return true;
        }
        pid = parent;
    }
    false
}

/// The mount namespace of process `pid` (`self` or a number), as the
/// inode of its nsfs file.
fn mount_namespace(pid: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// The parent pid from the text of `/proc/<pid>/stat` (the field after the
/// command, which is in parentheses and may itself hold spaces or `)`).
fn parent_pid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Mounts a BPF filesystem on `target`.
fn mount_bpffs(target: &Path) -> Result<(), BpffsError> {
    let failed = |source| BpffsError::Mount {
        path: target.to_owned(),
        source,
    };
    let c_target = CString::new(target.as_os_str().as_bytes())
        .map_err(|e| failed(std::io::Error::other(e)))?;
    let bpf = c"bpf";
    // SAFETY: all strings are NUL-terminated; no data argument.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            c_target.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(failed(std::io::Error::last_os_error()));
    }
    tracing::info!(path = %target.display(), "mounted a BPF filesystem");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_is_read_past_an_odd_command_name() {
        assert_eq!(parent_pid("123 (lbd) S 45 123 45 0"), Some(45));
        assert_eq!(parent_pid("123 (a) b (c) S 7 1 1"), Some(7));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn a_directory_outside_bpffs_is_refused_and_nothing_is_created() {
        let dir = std::env::temp_dir().join(format!("lb-bpffs-test-{}", std::process::id()));
        let error = ensure(&dir).expect_err("not bpffs");
        // (Run in a mount namespace of its own, the refusal says so.)
        assert!(
            matches!(
                error,
                BpffsError::NotBpffs(_) | BpffsError::PrivateMountNamespace(_)
            ),
            "{error}"
        );
        assert!(!dir.exists(), "nothing created");
        assert!(!on_bpffs(&dir));
    }

    /// /proc/self/mountinfo's root line in the host's namespace under
    /// systemd, in a sandboxed unit's namespace (ProtectSystem=, PrivateTmp=:
    /// a slave of the host's, made shared again), after `ip netns exec`,
    /// and on a host whose mounts are private (no systemd).
    const HOST: &str = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
        22 27 0:21 / /proc rw,relatime shared:12 - proc proc rw\n";
    const UNIT: &str = "412 380 254:0 / / rw,relatime shared:205 master:1 - ext4 /dev/vda rw\n\
        413 412 0:21 / /proc rw,relatime shared:206 master:12 - proc proc rw\n";
    const NETNS: &str = "45 44 254:0 / / rw,relatime master:1 - ext4 /dev/vda rw\n";
    const PRIVATE_HOST: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";

    #[test]
    fn a_unit_whose_parent_is_pid_1_and_cannot_read_its_namespace_is_private() {
        // Under systemd with a CapabilityBoundingSet: PID 1's namespace is
        // unreadable and the parent is PID 1, so no ancestor tells.
        assert!(is_private(Some(7), None, false, Some(UNIT)));
        assert!(is_private(Some(7), None, false, Some(NETNS)));
        // The same unit without a sandbox runs in the host's namespace.
        assert!(!is_private(Some(7), None, false, Some(HOST)));
        assert!(!is_private(Some(7), None, false, Some(PRIVATE_HOST)));
        assert!(!is_private(Some(7), None, false, None));
    }

    #[test]
    fn pid_1s_namespace_or_an_ancestors_decides_when_readable() {
        assert!(!is_private(Some(7), Some(7), false, Some(UNIT)));
        assert!(is_private(Some(7), Some(8), false, Some(HOST)));
        assert!(is_private(Some(7), None, true, Some(HOST)));
        assert!(!is_private(None, Some(8), true, Some(UNIT)), "unknown");
    }

    #[test]
    fn the_visible_root_mount_is_the_last_one_on_slash() {
        let stacked = format!("{HOST}500 27 0:40 / / rw - tmpfs tmpfs rw,master:3\n");
        // The tag is read from the optional fields only, before "-".
        assert!(!root_mount_is_a_copy(&stacked));
        let stacked = format!("{HOST}500 27 0:40 / / rw master:3 - tmpfs tmpfs rw\n");
        assert!(root_mount_is_a_copy(&stacked));
        assert!(!root_mount_is_a_copy("garbage"));
    }

    #[test]
    fn the_process_own_namespace_is_read() {
        assert!(mount_namespace("self").is_some());
        assert!(mount_namespace("not-a-pid").is_none());
    }
}
