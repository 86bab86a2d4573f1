//! What a pinned XDP or tcx link is attached to, read with two bpf(2)
//! calls (aya 0.14 exposes neither the link's fd nor its interface): a
//! link outlives the interface it was made on (it goes defunct, with
//! interface 0), so "pinned" is not "attached".

use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use anyhow::{bail, Context as _};

/// `BPF_OBJ_GET` (linux/bpf.h).
const BPF_OBJ_GET: libc::c_long = 7;
/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Offset of the per-type union in `struct bpf_link_info` (after type, id,
/// prog_id and padding to 8 bytes); XDP and tcx links start it with their
/// ifindex.
const LINK_INFO_UNION: usize = 16;

/// A pinned link's program and interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTarget {
    /// The program it runs (0: none).
    pub program_id: u32,
    /// The interface it is attached to (0: defunct, the interface is gone).
    pub ifindex: u32,
}

/// Reads the link pinned at `path`.
pub fn pinned_target(path: &Path) -> anyhow::Result<LinkTarget> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut attr = [0u8; 128];
    attr[..8].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
    // SAFETY: bpf(2) with an attr buffer larger than the kernel's union,
    // zero beyond the fields set; the path outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening the pinned link {}", path.display()));
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = [0u8; 256];
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: as above; the kernel writes at most `info.len()` bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            attr.len(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("reading the link pinned at {}", path.display()));
    }
    let word = |at: usize| u32::from_ne_bytes([info[at], info[at + 1], info[at + 2], info[at + 3]]);
    let target = LinkTarget {
        program_id: word(8),
        ifindex: word(LINK_INFO_UNION),
    };
    if target.program_id == 0 {
        bail!("the link pinned at {} runs no program", path.display());
    }
    Ok(target)
}
