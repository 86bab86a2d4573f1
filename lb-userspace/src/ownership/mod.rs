//! One lbd per data plane. Before lbd touches pins or the interface it
//! takes two exclusive locks, held until it exits (the kernel drops them
//! then, also on kill -9): one per interface — keyed by network namespace
//! too, as several namespaces may each have an `eth0` — in [`LOCK_DIR`](claim_locks::LOCK_DIR)
//! (`/run/lbd`) whatever the admin socket's directory, so two lbds with
//! admin sockets in different directories still meet there (lbds before
//! this took it beside their admin socket: that one is taken too, so a
//! running older lbd and this one refuse each other across an upgrade),
//! and one on the `pin_dir`. A second lbd, `lbd --cleanup` and
//! `lbd --release-vips` are refused while another holds either, with that
//! lbd's pid and config.
//! lbd also refuses an interface that already runs an XDP program it did
//! not pin (another tool's, or an lbd's with another `pin_dir`), whichever
//! hook it uses (XDP runs before tc and would see the packets first); one
//! that runs lbd's tc program (`tc_lb`) it did not leave itself, on the
//! tcx ingress or in a cls_bpf filter, whichever hook it uses (two lbds
//! on one interface remove each other's hooks); and with `attach = "tc"`
//! one whose tcx ingress holds any program it did not pin. (Cls_bpf
//! filters of other tools are not looked for; lbd's own left behind by a
//! dead lbd are removed, see `cls_bpf`.) With `[bgp]`
//! lbd also locks its `routes_file` and `node_state_file` (through a
//! `.NAME.lbd-lock` beside each, as both are replaced by renames): two
//! lbds on one host must not announce through, or drain by, one file.
//! Once it owns the data plane lbd records what it holds (see `held`) in
//! a record named after its admin socket, which it locks too (before it
//! reads or undoes anything a previous record holds): a second lbd with
//! the same admin socket (or one of the same file name stem) is refused
//! before it changes anything.

mod claim_locks;
pub(crate) mod cls_bpf;
mod foreign_programs;
pub(crate) mod held;
pub(crate) mod lock;
mod refusals;
#[cfg(test)]
mod test_support;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use crate::{
    config::Config,
    netlink::NetlinkError,
    pinning::{PinDir, PinError},
};
#[cfg(test)]
use claim_locks::bgp_file_lock_path;
use claim_locks::{bgp_file_lock, interface_locks, pin_dir_lock, record_lock};
// For `held`, which undoes what a previous lbd held under these locks.
use claim_locks::{try_bgp_file_lock, try_interface_lock, try_record_lock, BgpFileLock};
pub(crate) use foreign_programs::program_name;
use foreign_programs::{check_interface_program, TcReach};
use lock::{Lock, OwnerRecord};
use refusals::{
    foreign_program_message, foreign_tc_filter_message, foreign_tc_program_message, owned_message,
};

/// What a process claims the data plane for (it decides the advice a
/// refusal gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// lbd itself: load or adopt, attach, serve.
    Serve,
    /// `lbd --cleanup`.
    Cleanup,
    /// `lbd --release-vips`.
    ReleaseVips,
}

/// What a lock protects, as a refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// An interface in a network namespace (the inode of its nsfs file).
    Interface {
        /// Interface name.
        name: String,
        /// Network namespace inode, as `ls -L -i /proc/self/ns/net` shows.
        netns: u64,
    },
    /// A pin directory.
    PinDir(PathBuf),
    /// The record of what an lbd holds (see `held`), named after its
    /// admin socket.
    Record {
        /// The admin socket.
        admin_socket: PathBuf,
        /// The record.
        record: PathBuf,
    },
    /// A file of `[bgp]` (`routes_file`, `node_state_file`).
    BgpFile {
        /// The setting's name.
        setting: &'static str,
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for Claimed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Interface { name, netns } => {
                write!(f, "interface {name} (network namespace net:[{netns}])")
            }
            Self::PinDir(path) => write!(f, "pin_dir {}", path.display()),
            Self::Record {
                admin_socket,
                record,
            } => write!(
                f,
                "admin_socket {} (the record of what its lbd holds, {})",
                admin_socket.display(),
                record.display()
            ),
            Self::BgpFile { setting, path } => write!(f, "[bgp] {setting} {}", path.display()),
        }
    }
}

/// Why this process may not own the data plane.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OwnershipError {
    /// Another lbd holds the lock.
    #[error("{}", owned_message(claimed, owner.as_ref(), lock, *purpose))]
    Owned {
        /// What is locked.
        claimed: Claimed,
        /// Who holds it, if its record could be read.
        owner: Option<OwnerRecord>,
        /// The lock (file or directory).
        lock: PathBuf,
        /// What this process wanted.
        purpose: Purpose,
    },
    /// The interface runs an XDP program this lbd did not pin.
    #[error("{}", foreign_program_message(interface, *id, name.as_deref(), pin_dir.as_deref()))]
    ForeignProgram {
        /// The interface.
        interface: String,
        /// The running program's id.
        id: u32,
        /// Its name, if the kernel says.
        name: Option<String>,
        /// This lbd's pin directory (None: `pin_dir = "off"`).
        pin_dir: Option<PathBuf>,
    },
    /// The interface's tcx ingress runs a program this lbd did not pin:
    /// any where lbd may attach at tc, or lbd's tc program (at XDP only).
    #[error("{}", foreign_tc_program_message(interface, *id, name.as_deref(), pin_dir.as_deref(), *reach))]
    ForeignTcProgram {
        /// The interface.
        interface: String,
        /// The running program's id.
        id: u32,
        /// Its name, if the kernel says.
        name: Option<String>,
        /// This lbd's pin directory (None: `pin_dir = "off"`).
        pin_dir: Option<PathBuf>,
        /// Whether this lbd may attach at tc.
        reach: TcReach,
    },
    /// The interface's ingress has a cls_bpf filter running lbd's tc
    /// program that this lbd did not leave (another lbd's, running or
    /// killed).
    #[error("{}", foreign_tc_filter_message(interface, *id, *priority, pin_dir.as_deref()))]
    ForeignTcFilter {
        /// The interface.
        interface: String,
        /// The filter's program id, if the kernel says.
        id: Option<u32>,
        /// The filter's priority (what `tc filter del ... pref` takes).
        priority: u16,
        /// This lbd's pin directory (None: `pin_dir = "off"`).
        pin_dir: Option<PathBuf>,
    },
    /// A lock could not be tried at all.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The pin directory cannot be used.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// The interface could not be read.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The locks of a data plane this process owns. Keep it alive as long as
/// the process acts on the data plane (dropping it releases them; so does
/// exiting).
#[derive(Debug)]
pub(crate) struct Ownership {
    locks: Vec<Lock>,
    /// The record of what the lbd that ran before held, as this start
    /// found it (None: none of this boot): it names that lbd.
    previous: Option<held::Held>,
}

impl Ownership {
    /// What is locked (lock files and directories).
    pub(crate) fn locks(&self) -> impl Iterator<Item = &Path> {
        self.locks.iter().map(Lock::path)
    }

    /// The record of the lbd that ran before this one (see `claim`), by
    /// which the state it kept (the running-state record) is known to be
    /// its own.
    pub(crate) fn previous_lbd(&self) -> Option<&held::Held> {
        self.previous.as_ref()
    }
}

/// Claims the data plane of `config` for lbd started with `config_path`:
/// the interface's locks (see [`interface_locks`]); then a check that the
/// interface runs no XDP program other than the one pinned in this
/// `pin_dir`, and no tc program this lbd did not leave (see
/// [`check_interface_program`]); then the `pin_dir` (made ready: on
/// bpffs, created) and its lock. Nothing in the pin directory is touched
/// before both locks are held, and nothing is created there when the
/// interface is refused. The lock of the record named after the admin
/// socket is taken right after the interface's, and what a previous
/// record holds is undone only once every lock is held: a refused lbd
/// changes nothing another one holds.
pub(crate) async fn claim(
    config: &Config,
    config_path: &Path,
) -> Result<Ownership, OwnershipError> {
    let me = OwnerRecord::current(config_path);
    let mut locks = interface_locks(&config.admin_socket, &config.interface, &me, Purpose::Serve)?;
    locks.extend(record_lock(&config.admin_socket, &me, Purpose::Serve)?);
    if let Some(bgp) = &config.bgp {
        for (setting, path) in [
            ("routes_file", &bgp.routes_file),
            ("node_state_file", &bgp.node_state_file),
        ] {
            locks.push(bgp_file_lock(setting, path, &me)?);
        }
    }
    let pins = config.pin_dir.as_ref().map(PinDir::new);
    check_interface_program(config, pins.as_ref()).await?;
    if let Some(pins) = pins {
        pins.prepare()?;
        locks.push(pin_dir_lock(&pins, &me, Purpose::Serve)?);
    }
    let previous = held::on_start(config, config_path).await;
    Ok(Ownership { locks, previous })
}

/// Claims the data plane `held` describes (what the lbd that ran held, or
/// what the config says) for `lbd --cleanup` or `--release-vips`: the same
/// locks as [`claim`] (the `pin_dir`'s only if it exists; not the `[bgp]`
/// files', which the withdrawal tries itself, see
/// `held::lock_routes_file`), refused while an lbd holds one; also the
/// locks of `also` (the config's interface, when it is another than the
/// record's).
pub(crate) fn claim_offline(
    held: &held::Held,
    also: Option<&str>,
    config_path: &Path,
    purpose: Purpose,
) -> Result<Ownership, OwnershipError> {
    let me = OwnerRecord::current(config_path);
    let mut locks = interface_locks(&held.admin_socket, &held.interface, &me, purpose)?;
    if let Some(other) = also.filter(|other| *other != held.interface) {
        locks.extend(interface_locks(&held.admin_socket, other, &me, purpose)?);
    }
    locks.extend(record_lock(&held.admin_socket, &me, purpose)?);
    if let Some(dir) = held.pin_dir.as_ref().filter(|d| d.is_dir()) {
        locks.push(pin_dir_lock(&PinDir::new(dir), &me, purpose)?);
    }
    Ok(Ownership {
        locks,
        previous: None,
    })
}
