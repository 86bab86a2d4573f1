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

/// Who a link pinned under one of lb-decap's names (`xdp-link-<if>`,
/// `tc-link-<if>`) belongs to, by the name of the program it runs: lbd
/// pins its links under the same names, and a pin directory may be
/// shared, so the name of the pin alone does not make a link lb-decap's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOwner {
    /// It runs lb-decap's program (`xdp_decap` or `tc_decap`).
    Decap,
    /// It runs another tool's program, of this name: never touched.
    Other(String),
    /// Which program it runs could not be told (why): left alone too.
    Unknown(String),
}

impl LinkOwner {
    /// What the link runs, in words for messages (naming the program).
    pub fn describe(&self) -> String {
        match self {
            Self::Decap => "lb-decap's program".to_owned(),
            Self::Other(name) => {
                format!("another tool's program {name:?} (lbd's is \"xdp_lb\" or \"tc_lb\")")
            }
            Self::Unknown(why) => format!("a program lb-decap could not identify ({why})"),
        }
    }
}

/// Whether a program of this name (as the kernel keeps it) is lb-decap's.
pub fn is_decap_program(name: &str) -> bool {
    name == lb_common::decap::names::PROG_XDP_DECAP
        || name == lb_common::decap::names::PROG_TC_DECAP
}

/// The owner of the link pinned at `path` (see [`LinkOwner`]): the name
/// of the program the link runs, read from the kernel. A defunct link
/// (its interface gone) still holds its program, so it is told too.
pub fn owner(path: &Path) -> LinkOwner {
    let program_id = match pinned_target(path) {
        Ok(target) => target.program_id,
        Err(error) => return LinkOwner::Unknown(format!("{error:#}")),
    };
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|info| info.id() == program_id)
        .map(|info| info.name_as_str().map(str::to_owned));
    match name {
        Some(Some(name)) if is_decap_program(&name) => LinkOwner::Decap,
        Some(Some(name)) => LinkOwner::Other(name),
        Some(None) => LinkOwner::Unknown(format!("program {program_id} has no name")),
        None => LinkOwner::Unknown(format!(
            "program {program_id} not found among the loaded programs (CAP_SYS_ADMIN needed to list them)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only lb-decap's two program names make a link lb-decap's: lbd's
    /// `xdp_lb`/`tc_lb` (pinned under the same file names) do not.
    #[test]
    fn only_the_decap_programs_are_lb_decaps() {
        assert!(is_decap_program("xdp_decap"));
        assert!(is_decap_program("tc_decap"));
        for other in ["xdp_lb", "tc_lb", "xdp_decap_bench", ""] {
            assert!(!is_decap_program(other), "{other}");
        }
        let other = LinkOwner::Other("xdp_lb".to_owned()).describe();
        assert!(other.contains("\"xdp_lb\""), "{other}");
    }

    /// A path that holds no link is not taken for lb-decap's.
    #[test]
    fn a_pin_that_cannot_be_read_is_unknown_not_decaps() {
        let path = std::env::temp_dir().join(format!("lb-decap-no-link-{}", std::process::id()));
        assert!(matches!(owner(&path), LinkOwner::Unknown(_)));
    }
}
