//! What the tests that pin maps need: a BPF filesystem of their own and
//! maps of any layout.

use std::path::{Path, PathBuf};

use super::PinDir;

/// A BPF filesystem mounted for one test in a directory of its own
/// under the temporary directory (a mount is a filesystem of its own:
/// nothing is shared with lbd's or the labs'), unmounted when dropped,
/// also when an assertion fails: its pins, and the maps only they
/// held, go with it. Needs root.
pub(crate) struct TestBpffs {
    dir: PathBuf,
}

impl TestBpffs {
    /// Mounts one for test `tag` (None without root: the caller skips).
    pub(crate) fn new(tag: &str) -> Option<Self> {
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            eprintln!("skipped: needs root");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("lbd-unit-bpffs-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the mount point");
        let target =
            std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("a path without NUL");
        // SAFETY: plain mount(2) with NUL-terminated strings.
        let mounted = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            mounted,
            0,
            "mounting bpffs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Some(Self { dir })
    }

    /// A pin directory on it.
    pub(crate) fn pins(&self) -> PinDir {
        PinDir::new(self.dir.join("lbd"))
    }
}

impl Drop for TestBpffs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: plain umount2(2) with a NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A map of `map_type` with `key_size` and `value_size` bytes,
/// `max_entries` and `map_flags` (e.g. `BPF_F_MMAPABLE`, 0x400),
/// pinned at `path`: a table of another release's layout.
pub(crate) fn pin_map(
    path: &Path,
    map_type: u32,
    (key_size, value_size): (u32, u32),
    max_entries: u32,
    map_flags: u32,
) -> aya::maps::MapData {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    /// The `bpf_attr` of `BPF_MAP_CREATE`, up to the flags.
    #[repr(C)]
    struct CreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }
    let attr = CreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
    };
    // SAFETY: BPF_MAP_CREATE (0) with an attribute of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            std::ptr::from_ref(&attr),
            size_of::<CreateAttr>(),
        )
    };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor this process owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let map = aya::maps::MapData::from_fd(fd).expect("the map");
    map.pin(path).expect("pinned");
    map
}
