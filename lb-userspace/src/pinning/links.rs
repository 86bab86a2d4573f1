//! The XDP and tc links pinned at the root of a pin directory: where each
//! is pinned, what a pin's name says of it, and whose program it runs
//! (lb-decap pins its links under the same names, and the directory may
//! be shared), so only lbd's are taken over or removed.

use std::path::{Path, PathBuf};

use lb_common::consts::names;

use super::{error_chain, PinDir, PinError};

impl PinDir {
    /// Where the XDP link on `interface` is pinned.
    pub(crate) fn link_path(&self, interface: &str) -> PathBuf {
        self.root.join(format!("xdp-link-{interface}"))
    }

    /// Where the tc (tcx ingress) link on `interface` is pinned.
    pub(crate) fn tc_link_path(&self, interface: &str) -> PathBuf {
        self.root.join(format!("tc-link-{interface}"))
    }

    /// The links pinned here (by any lbd that used this directory), each
    /// with the hook and interface its name says: lets a start find the
    /// links left on an interface the config no longer names. Empty when
    /// the directory does not exist.
    pub(crate) fn link_pins(&self) -> Result<Vec<LinkPin>, PinError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PinError::Io {
                    action: "listing",
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut pins: Vec<LinkPin> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let (hook, interface) = link_pin_of(name.to_str()?)?;
                Some(LinkPin {
                    hook,
                    interface: interface.to_owned(),
                    path: entry.path(),
                })
            })
            .collect();
        pins.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(pins)
    }
}

/// Who a link pinned under one of lbd's names (`xdp-link-<if>`,
/// `tc-link-<if>`) belongs to, by the program it runs: lb-decap pins its
/// links under the same names, and the pin directory may be shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkOwner {
    /// It runs lbd's program.
    Lbd,
    /// It runs another tool's program, of this name.
    Other(String),
    /// Which program it runs could not be told (why): left alone.
    Unknown(String),
}

/// Whether a program of this name (as the kernel keeps it) is one lbd
/// pins links for: `xdp_lb` at XDP, `tc_lb` at tc.
pub(crate) fn is_lbd_program(name: &str) -> bool {
    name == names::PROG_LB || name == names::PROG_TC_LB
}

/// The owner of the link pinned at `path` (see [`LinkOwner`]): the name
/// of the program the link runs, read from the kernel.
pub(crate) fn link_owner(path: &Path) -> LinkOwner {
    let program = match aya::programs::links::PinnedLink::from_pin(path)
        .map(aya::programs::links::FdLink::from)
        .and_then(|link| link.info())
    {
        Ok(info) => info.program_id(),
        Err(e) => return LinkOwner::Unknown(format!("reading the link: {}", error_chain(&e))),
    };
    let mut listing = aya::programs::loaded_programs();
    let name = loop {
        match listing.next() {
            Some(Ok(info)) if info.id() == program => {
                break info.name_as_str().map(str::to_owned);
            }
            Some(Ok(_)) => {}
            // Gone since it was listed: not the link's, which holds it.
            Some(Err(e)) if program_gone(&e) => {}
            Some(Err(e)) => {
                return LinkOwner::Unknown(format!(
                    "listing the loaded programs (needs CAP_SYS_ADMIN): {}",
                    error_chain(&e)
                ))
            }
            None => break None,
        }
    };
    match name {
        Some(name) if is_lbd_program(&name) => LinkOwner::Lbd,
        Some(name) => LinkOwner::Other(name),
        None => LinkOwner::Unknown(format!("program {program} not found or unnamed")),
    }
}

/// Whether `e`, met listing the loaded programs, is a program unloaded
/// between its listing and its opening (ENOENT), which is skipped; any
/// other error means the listing cannot be trusted.
pub(crate) fn program_gone(e: &aya::programs::ProgramError) -> bool {
    matches!(e, aya::programs::ProgramError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::ENOENT))
}

/// A link pinned at the root of a pin directory, as its name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkPin {
    /// The hook (`xdp-link-…` or `tc-link-…`).
    pub hook: crate::config::Attach,
    /// The interface the link was made on.
    pub interface: String,
    /// The pin.
    pub path: PathBuf,
}

/// The hook and interface a link pin's file name says (`xdp-link-eth0`,
/// `tc-link-bond0.100`); None for any other name. The inverse of
/// [`PinDir::link_path`] and [`PinDir::tc_link_path`].
pub(crate) fn link_pin_of(name: &str) -> Option<(crate::config::Attach, &str)> {
    use crate::config::Attach;
    [(Attach::Xdp, "xdp-link-"), (Attach::Tc, "tc-link-")]
        .into_iter()
        .find_map(|(hook, prefix)| {
            let interface = name.strip_prefix(prefix)?;
            (!interface.is_empty()).then_some((hook, interface))
        })
}
