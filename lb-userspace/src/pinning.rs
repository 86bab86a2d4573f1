//! The data plane outlives lbd: its maps and its XDP or tc link are pinned in a
//! BPF filesystem, so a restarted (or upgraded, or killed) lbd finds the
//! program still forwarding and the connection table intact, adopts both,
//! and swaps in its own program atomically. `lbd --cleanup` removes it all.
//!
//! Layout under the pin directory (default `/sys/fs/bpf/lbd`):
//! `maps-v<LAYOUT_VERSION>/<MAP>`, and `xdp-link-<interface>` or
//! `tc-link-<interface>` (the tcx ingress link, `attach = "tc"`).

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use lb_common::consts::names;

/// Bumped whenever a pinned map's key or value layout changes meaning
/// without changing size: a new lbd then starts from fresh maps instead of
/// misreading the old ones.
pub const LAYOUT_VERSION: u32 = 1;

/// Where bpffs is mounted by convention (and where lbd mounts it if
/// nothing is).
pub(crate) const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// `BPF_FS_MAGIC` from statfs(2).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// The maps the packet path reads and writes: pinned so they outlive lbd.
/// (Benchmark-only maps are not.)
pub(crate) const PINNED_MAPS: [&str; 21] = [
    names::MAP_VIPS,
    names::MAP_VIP_INDEX,
    names::MAP_MAGLEV,
    names::MAP_BACKENDS,
    names::MAP_CONNTRACK,
    names::MAP_FLOW_BUCKETS,
    names::MAP_HALF_OPEN,
    names::MAP_CONFIG,
    names::MAP_PACKET_STATE,
    names::MAP_VIP_STATS,
    names::MAP_BACKEND_STATS,
    names::MAP_EVENTS,
    names::MAP_EVENT_LAST,
    names::MAP_NAT_BUCKETS,
    names::MAP_NAT_SOURCES,
    names::MAP_TX_PORTS,
    names::MAP_VIP_GUARDS,
    names::MAP_ACL_V4,
    names::MAP_ACL_V6,
    names::MAP_ACL_HITS,
    names::MAP_LIMIT_BUCKETS,
];

/// Maps that only make sense together: the control state (which VIP is
/// where, which backend id is which) and the connection table that points
/// into it. Either all are adopted or none.
pub(crate) const STATE_MAPS: [&str; 7] = [
    names::MAP_VIPS,
    names::MAP_MAGLEV,
    names::MAP_BACKENDS,
    names::MAP_CONNTRACK,
    names::MAP_FLOW_BUCKETS,
    names::MAP_NAT_BUCKETS,
    names::MAP_NAT_SOURCES,
];

/// Maps that point into the state maps (backend ids and generations) or
/// mirror them, but that the rest does not need: adopted only together
/// with the state maps, yet one that does not fit this lbd (`half_open_size`
/// changed; no VIP index pinned by an older release) is started afresh
/// alone, with a warning, and the rest is still adopted (a half-open flow
/// lost costs nothing: its ACK takes Maglev's pick; the VIP index is
/// rebuilt from `VIPS` before this lbd's program runs).
pub(crate) const DEPENDENT_MAPS: [&str; 2] = [names::MAP_HALF_OPEN, names::MAP_VIP_INDEX];

/// Errors of the pin directory, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not on a BPF filesystem.
    #[error("{0} is not on a BPF filesystem (mount one: mount -t bpf bpf {BPFFS_MOUNT})")]
    NotBpffs(PathBuf),
    /// The directory is not on a BPF filesystem, and one lbd mounted would
    /// live in a mount namespace that ends with lbd (`ip netns exec`): the
    /// pins, and with them the program, would go when lbd goes.
    #[error("{}", private_namespace_message(.0))]
    PrivateMountNamespace(PathBuf),
}

/// The refusal of a `pin_dir` lbd would have to mount bpffs for in a mount
/// namespace of its own, with the fixes.
pub(crate) fn private_namespace_message(dir: &Path) -> String {
    format!(
        "pin_dir {} is not on a BPF filesystem, and lbd runs in a mount namespace of its own \
         (e.g. under `ip netns exec`, which also gives it a fresh /sys without the host's \
         {BPFFS_MOUNT}): a BPF filesystem lbd mounted there would vanish with lbd, and its pins \
         with it, so a kill -9 would detach the program. Mount a BPF filesystem on the host, \
         outside /sys, before starting lbd (e.g. `mkdir -p /run/lbd-bpffs && mount -t bpf bpf \
         /run/lbd-bpffs`) and set pin_dir under it (pin_dir = \"/run/lbd-bpffs/lbd\"); or start \
         lbd in the host's mount namespace, where `mount -t bpf bpf {BPFFS_MOUNT}` is the usual \
         place; or set pin_dir = \"off\" (the program then goes with lbd)",
        dir.display()
    )
}

/// The pin directory of one lbd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// The pin directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the maps of this layout version are pinned.
    pub(crate) fn maps_dir(&self) -> PathBuf {
        self.root.join(format!("maps-v{LAYOUT_VERSION}"))
    }

    /// Where map `name` is pinned.
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// Where the XDP link on `interface` is pinned.
    pub(crate) fn link_path(&self, interface: &str) -> PathBuf {
        self.root.join(format!("xdp-link-{interface}"))
    }

    /// Where the tc (tcx ingress) link on `interface` is pinned.
    pub(crate) fn tc_link_path(&self, interface: &str) -> PathBuf {
        self.root.join(format!("tc-link-{interface}"))
    }

    /// Capacity of the pinned map `name`, if one is pinned: lets lbd keep
    /// the size a previous lbd chose when it is still big enough, so the
    /// map can be adopted.
    pub(crate) fn pinned_max_entries(&self, name: &str) -> Option<u32> {
        let path = self.map_path(name);
        if !path.exists() {
            return None;
        }
        aya::maps::MapInfo::from_pin(path)
            .ok()
            .map(|info| info.max_entries())
    }

    /// Makes sure the directory exists on a BPF filesystem, mounting one
    /// on `/sys/fs/bpf` if the directory is under it and nothing is
    /// mounted there (as systemd would have done). Refused, before
    /// anything is mounted or created, when lbd runs in a mount namespace
    /// of its own: a mount there would not outlive lbd.
    pub fn prepare(&self) -> Result<(), PinError> {
        if !on_bpffs(&self.root) {
            if private_mount_namespace() {
                return Err(PinError::PrivateMountNamespace(self.root.clone()));
            }
            let mount = Path::new(BPFFS_MOUNT);
            if self.root.starts_with(mount) && mount.is_dir() && !is_bpffs(mount) {
                mount_bpffs(mount)?;
            }
            if !on_bpffs(&self.root) {
                return Err(PinError::NotBpffs(self.root.clone()));
            }
        }
        let maps = self.maps_dir();
        std::fs::create_dir_all(&maps).map_err(|source| PinError::Io {
            action: "creating",
            path: maps,
            source,
        })
    }

    /// Removes everything pinned here: links (which detaches their
    /// programs once nothing else holds them) and maps (freed once no
    /// program uses them). Returns what was removed.
    pub(crate) fn remove_all(&self) -> Result<Vec<PathBuf>, PinError> {
        let mut removed = Vec::new();
        if !self.root.exists() {
            return Ok(removed);
        }
        for dir in [self.maps_dir(), self.root.clone()] {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(PinError::Io {
                        action: "listing",
                        path: dir,
                        source,
                    })
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    continue;
                }
                std::fs::remove_file(&path).map_err(|source| PinError::Io {
                    action: "removing",
                    path: path.clone(),
                    source,
                })?;
                removed.push(path);
            }
        }
        // Older layout versions' directories and the root, if now empty.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.root);
        Ok(removed)
    }
}

/// Whether `path` (or, if it does not exist yet, its nearest existing
/// ancestor) is on a BPF filesystem.
fn on_bpffs(path: &Path) -> bool {
    path.ancestors().find(|p| p.exists()).is_some_and(is_bpffs)
}

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

/// Whether this process runs in a mount namespace other than the host's:
/// other than PID 1's, or, where PID 1's cannot be read (a process without
/// every capability PID 1 has may not), other than an ancestor's (`ip netns
/// exec` execs lbd in a namespace of its own; its caller stays outside).
fn private_mount_namespace() -> bool {
    let Some(own) = mount_namespace("self") else {
        return false;
    };
    if let Some(host) = mount_namespace("1") {
        return own != host;
    }
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

fn mount_bpffs(target: &Path) -> Result<(), PinError> {
    let io = |source| PinError::Io {
        action: "mounting bpffs on",
        path: target.to_owned(),
        source,
    };
    let c_target =
        CString::new(target.as_os_str().as_bytes()).map_err(|e| io(std::io::Error::other(e)))?;
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
        return Err(io(std::io::Error::last_os_error()));
    }
    tracing::info!(path = %target.display(), "mounted a BPF filesystem");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_versioned_and_per_interface() {
        let pins = PinDir::new("/sys/fs/bpf/lbd");
        assert_eq!(
            pins.map_path("CONNTRACK"),
            PathBuf::from(format!("/sys/fs/bpf/lbd/maps-v{LAYOUT_VERSION}/CONNTRACK"))
        );
        assert_eq!(
            pins.link_path("eth0"),
            PathBuf::from("/sys/fs/bpf/lbd/xdp-link-eth0")
        );
        assert_eq!(
            pins.tc_link_path("eth0"),
            PathBuf::from("/sys/fs/bpf/lbd/tc-link-eth0")
        );
    }

    #[test]
    fn state_maps_are_pinned() {
        for name in STATE_MAPS {
            assert!(PINNED_MAPS.contains(&name), "{name}");
        }
    }

    #[test]
    fn a_directory_outside_bpffs_is_refused() {
        let dir = std::env::temp_dir().join(format!("lbd-pin-test-{}", std::process::id()));
        let error = PinDir::new(&dir).prepare().expect_err("not bpffs");
        // (Run in a mount namespace of its own, the refusal says so.)
        assert!(
            matches!(
                error,
                PinError::NotBpffs(_) | PinError::PrivateMountNamespace(_)
            ),
            "{error}"
        );
        assert!(!dir.exists(), "nothing created");
    }

    #[test]
    fn the_parent_pid_is_read_past_an_odd_command_name() {
        assert_eq!(parent_pid("123 (lbd) S 45 123 45 0"), Some(45));
        assert_eq!(parent_pid("123 (a) b (c) S 7 1 1"), Some(7));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn the_private_namespace_refusal_gives_every_fix() {
        let message = private_namespace_message(Path::new("/tmp/pins"));
        assert!(message.starts_with("pin_dir /tmp/pins is not on a BPF filesystem"));
        for fix in [
            "ip netns exec",
            "mount -t bpf bpf /run/lbd-bpffs",
            "pin_dir = \"/run/lbd-bpffs/lbd\"",
            "pin_dir = \"off\"",
        ] {
            assert!(message.contains(fix), "{fix}: {message}");
        }
    }

    #[test]
    fn removing_a_missing_directory_removes_nothing() {
        let pins = PinDir::new("/nonexistent/lbd-pins");
        assert!(pins.remove_all().expect("remove").is_empty());
    }
}
