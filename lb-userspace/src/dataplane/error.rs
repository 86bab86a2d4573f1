//! The data plane's errors, each naming what was being done, and the
//! helpers that make them from aya's: every part of the data plane
//! returns them.

use crate::{config::Attach, conntrack, pinning::PinError};

/// Errors of the data plane, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The object did not load (verifier, memlock, missing privileges).
    #[error("loading the XDP object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// A program of the object did not load or attach.
    #[error("{action} program {program}: {source}")]
    Program {
        /// What was attempted.
        action: &'static str,
        /// Which program.
        program: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map is missing from the object or has the wrong type.
    #[error("map {name}: {source}")]
    MapType {
        /// Which map.
        name: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A map is missing from the object.
    #[error("map {0} is missing from the XDP object")]
    MissingMap(&'static str),
    /// A map lbd maps into its memory is not an array map in the object.
    #[error("map {0} of the XDP object is not an array map")]
    NotAnArray(&'static str),
    /// A map read or write failed.
    #[error("{action} map {name}: {source}")]
    Map {
        /// What was attempted.
        action: &'static str,
        /// Which map.
        name: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// The XDP or tc link could not be pinned or taken over. The reason
    /// carries the error's sources (the errno of a failed system call),
    /// which aya's errors leave out of their own message.
    #[error("{action} the pinned {} link {}: {reason}", hook_word(*.hook), .path.display())]
    Link {
        /// What was attempted.
        action: &'static str,
        /// The hook the link is at.
        hook: Attach,
        /// Where the link is (to be) pinned.
        path: std::path::PathBuf,
        /// Why it failed, with the causes.
        reason: String,
    },
    /// The pin directory could not be used.
    #[error("pinning the data plane: {0}")]
    Pin(#[from] PinError),
    /// The object could not be parsed (to check pinned maps against it).
    #[error("reading the XDP object: {0}")]
    Parse(String),
    /// The object could not be prepared for the requested map design.
    #[error(transparent)]
    Patch(#[from] conntrack::kind::PatchError),
    /// The bucket connection table could not be mapped or written.
    #[error(transparent)]
    FlowTable(Box<crate::conntrack::table::FlowTableError>),
    /// A connection or NAT flow table of another size cannot be set
    /// aside to carry its flows over: tables of two earlier sizes wait
    /// there already (`conntrack::legacy::Refused`, which says what to
    /// do). That table's pins were left as they were.
    #[error(transparent)]
    CarryRefused(#[from] crate::conntrack::legacy::Refused),
    /// The VIP index could not be mapped or written.
    #[error(transparent)]
    VipIndex(#[from] crate::vip_index::VipIndexError),
    /// Generic XDP asked for (`xdp_mode = "generic"`) with NAT or
    /// tunnelled VIPs, which it cannot translate (see `hook_choice`):
    /// nothing attached.
    #[error("{0}")]
    GenericXdpRefused(String),
    /// The loaded programs could not be listed (`BPF_PROG_GET_NEXT_ID`
    /// needs CAP_SYS_ADMIN), so which of them uses a map cannot be told:
    /// nothing is decided on a guess.
    #[error("listing the loaded programs to tell {purpose} failed (lbd needs CAP_SYS_ADMIN for it): {reason}")]
    ProgramsUnlisted {
        /// What the listing was to tell.
        purpose: &'static str,
        /// Why it failed, with the errno.
        reason: String,
    },
    /// An id is beyond what the maps were sized for.
    #[error("{what} {id} is out of range (capacity {capacity})")]
    OutOfRange {
        /// What kind of id.
        what: &'static str,
        /// The id.
        id: u32,
        /// The capacity.
        capacity: u32,
    },
}

pub(super) type Result<T> = std::result::Result<T, DataplaneError>;

/// The hook as messages name it: "XDP" or "tc".
pub(super) fn hook_word(hook: Attach) -> &'static str {
    match hook {
        Attach::Xdp => "XDP",
        Attach::Tc => "tc",
    }
}

pub(super) fn program_error(
    action: &'static str,
    program: &'static str,
    e: aya::programs::ProgramError,
) -> DataplaneError {
    DataplaneError::Program {
        action,
        program,
        source: Box::new(e),
    }
}

/// A map operation's failure, naming the action and the map.
pub(crate) fn map_error(
    action: &'static str,
    name: &'static str,
    e: aya::maps::MapError,
) -> DataplaneError {
    DataplaneError::Map {
        action,
        name,
        source: Box::new(e),
    }
}

/// `map_error` for a bpf syscall lbd makes itself (`call`, e.g. a batch
/// command aya has no method for).
pub(crate) fn syscall_error(
    action: &'static str,
    name: &'static str,
    call: &'static str,
    io_error: std::io::Error,
) -> DataplaneError {
    map_error(
        action,
        name,
        aya::sys::SyscallError { call, io_error }.into(),
    )
}
