//! One lbd per data plane. Before lbd touches pins or the interface it
//! takes two exclusive locks, held until it exits (the kernel drops them
//! then, also on kill -9): one per interface — keyed by network namespace
//! too, as several namespaces may each have an `eth0` — in the run
//! directory (the admin socket's, `/run/lbd` by default), and one on the
//! `pin_dir`. A second lbd, `lbd --cleanup` and `lbd --release-vips` are
//! refused while another holds either, with that lbd's pid and config.
//! lbd also refuses an interface that already runs an XDP program it did
//! not pin (another tool's, or an lbd's with another `pin_dir`), whichever
//! hook it uses (XDP runs before tc and would see the packets first), and
//! with `attach = "tc"` one whose tcx ingress holds a program it did not
//! pin. (Legacy cls_bpf filters of other tools are not looked for; lbd's
//! own left behind by a dead lbd are removed, see `cls_bpf`.) With `[bgp]`
//! lbd also locks its `routes_file` and `node_state_file` (through a
//! `.NAME.lbd-lock` beside each, as both are replaced by renames): two
//! lbds on one host must not announce through, or drain by, one file.
//! Once it owns the data plane lbd records what it holds (see `held`) in
//! a record named after its admin socket, which it locks too (before it
//! reads or undoes anything a previous record holds): a second lbd with
//! the same admin socket (or one of the same file name stem) is refused
//! before it changes anything.

pub(crate) mod cls_bpf;
pub(crate) mod held;
pub(crate) mod lock;

use std::{
    fmt,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

use crate::{
    config::Config,
    netlink::{Netlink, NetlinkError},
    pinning::{PinDir, PinError},
};
use lock::{Attempt, Lock, OwnerRecord};

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
    /// The interface's tcx ingress runs a program this lbd did not pin
    /// (`attach = "tc"`).
    #[error("{}", foreign_tc_program_message(interface, *id, name.as_deref(), pin_dir.as_deref()))]
    ForeignTcProgram {
        /// The interface.
        interface: String,
        /// The running program's id.
        id: u32,
        /// Its name, if the kernel says.
        name: Option<String>,
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
}

impl Ownership {
    /// What is locked (lock files and directories).
    pub(crate) fn locks(&self) -> impl Iterator<Item = &Path> {
        self.locks.iter().map(Lock::path)
    }
}

/// Claims the data plane of `config` for lbd started with `config_path`:
/// the interface's lock; then a check that the interface runs no XDP
/// program other than the one pinned in this `pin_dir`; then the
/// `pin_dir` (made ready: on bpffs, created) and its lock. Nothing in the
/// pin directory is touched before both locks are held, and nothing is
/// created there when the interface is refused. The lock of the record
/// named after the admin socket is taken right after the interface's, and
/// what a previous record holds is undone only once every lock is held:
/// a refused lbd changes nothing another one holds.
pub(crate) async fn claim(
    config: &Config,
    config_path: &Path,
) -> Result<Ownership, OwnershipError> {
    let me = OwnerRecord::current(config_path);
    let mut locks = vec![interface_lock(
        &run_dir(&config.admin_socket),
        &config.interface,
        &me,
        Purpose::Serve,
    )?];
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
    held::on_start(config, config_path).await;
    Ok(Ownership { locks })
}

/// Claims the data plane `held` describes (what the lbd that ran held, or
/// what the config says) for `lbd --cleanup` or `--release-vips`: the same
/// locks as [`claim`] (the `pin_dir`'s only if it exists; not the `[bgp]`
/// files', which the withdrawal tries itself, see
/// `held::lock_routes_file`), refused while an lbd holds one; also the
/// lock of `also` (the config's interface, when it is another than the
/// record's).
pub(crate) fn claim_offline(
    held: &held::Held,
    also: Option<&str>,
    config_path: &Path,
    purpose: Purpose,
) -> Result<Ownership, OwnershipError> {
    let me = OwnerRecord::current(config_path);
    let dir = run_dir(&held.admin_socket);
    let mut locks = vec![interface_lock(&dir, &held.interface, &me, purpose)?];
    if let Some(other) = also.filter(|other| *other != held.interface) {
        locks.push(interface_lock(&dir, other, &me, purpose)?);
    }
    locks.extend(record_lock(&held.admin_socket, &me, purpose)?);
    if let Some(dir) = held.pin_dir.as_ref().filter(|d| d.is_dir()) {
        locks.push(pin_dir_lock(&PinDir::new(dir), &me, purpose)?);
    }
    Ok(Ownership { locks })
}

/// The lock of interface `name` (beside `config`'s admin socket) if no
/// other process holds it; None if one does. For a start that undoes what
/// a previous lbd held on another interface.
pub(crate) fn try_interface_lock(
    config: &Config,
    config_path: &Path,
    name: &str,
) -> anyhow::Result<Option<Lock>> {
    let me = OwnerRecord::current(config_path);
    match interface_lock(&run_dir(&config.admin_socket), name, &me, Purpose::Serve) {
        Ok(lock) => Ok(Some(lock)),
        Err(OwnershipError::Owned { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The lock of the record at `record` (another lbd's, found by its
/// config: see `held::on_start`) if no other process holds it; None if
/// one does: that lbd runs and the record is its own.
pub(crate) fn try_record_lock(record: &Path, config_path: &Path) -> anyhow::Result<Option<Lock>> {
    use anyhow::Context as _;
    let path = bgp_file_lock_path(record);
    match lock::lock_file(&path, &OwnerRecord::current(config_path))
        .with_context(|| format!("locking {}", path.display()))?
    {
        Attempt::Held(lock) => Ok(Some(lock)),
        Attempt::Taken(_) => Ok(None),
    }
}

/// Tries the lock of `[bgp]` file `path` (see [`bgp_file_lock_path`]) for
/// a process started with `config_path` that undoes what a record holds:
/// held now, or taken by the lbd named (that lbd uses the file). A file
/// whose directory is gone has no lock to take: `Held(None)`.
pub(crate) fn try_bgp_file_lock(path: &Path, config_path: &Path) -> anyhow::Result<BgpFileLock> {
    use anyhow::Context as _;
    let lock = bgp_file_lock_path(path);
    let dir_exists = lock
        .parent()
        .is_none_or(|dir| dir.as_os_str().is_empty() || dir.is_dir());
    if !dir_exists {
        return Ok(BgpFileLock::Held(None));
    }
    match lock::lock_file(&lock, &OwnerRecord::current(config_path))
        .with_context(|| format!("locking {}", lock.display()))?
    {
        Attempt::Held(held) => Ok(BgpFileLock::Held(Some(held))),
        Attempt::Taken(owner) => Ok(BgpFileLock::Taken(owner)),
    }
}

/// The outcome of [`try_bgp_file_lock`].
#[derive(Debug)]
pub(crate) enum BgpFileLock {
    /// No other process uses the file: this one holds its lock (None: the
    /// file's directory is gone).
    Held(Option<Lock>),
    /// A running lbd uses it (its record, if it could be read).
    Taken(Option<OwnerRecord>),
}

/// The lock file of `interface` in network namespace `netns`, in
/// `run_dir`.
pub(crate) fn interface_lock_path(run_dir: &Path, interface: &str, netns: u64) -> PathBuf {
    run_dir.join(format!("lbd-xdp-{interface}.net{netns}.lock"))
}

/// The run directory: where the admin socket is.
fn run_dir(admin_socket: &Path) -> PathBuf {
    match admin_socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OwnershipError {
    let path = path.to_owned();
    move |source| OwnershipError::Io {
        action,
        path,
        source,
    }
}

fn interface_lock(
    dir: &Path,
    interface: &str,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Lock, OwnershipError> {
    let ns = Path::new("/proc/self/ns/net");
    let netns = std::fs::metadata(ns)
        .map_err(io_error("reading the network namespace of", ns))?
        .ino();
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    let path = interface_lock_path(dir, interface, netns);
    let claimed = Claimed::Interface {
        name: interface.to_owned(),
        netns,
    };
    match lock::lock_file(&path, me).map_err(io_error("locking", &path))? {
        Attempt::Held(lock) => Ok(lock),
        Attempt::Taken(owner) => Err(OwnershipError::Owned {
            claimed,
            owner,
            lock: path,
            purpose,
        }),
    }
}

/// The lock of `[bgp]` file `path` (also of the record of what lbd
/// holds, see `held`): a lock file beside it, as the file itself is
/// replaced by renames.
pub(crate) fn bgp_file_lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "bgp".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.lbd-lock"))
}

fn bgp_file_lock(
    setting: &'static str,
    path: &Path,
    me: &OwnerRecord,
) -> Result<Lock, OwnershipError> {
    let lock = bgp_file_lock_path(path);
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    }
    match lock::lock_file(&lock, me).map_err(io_error("locking", &lock))? {
        Attempt::Held(held) => Ok(held),
        Attempt::Taken(owner) => Err(OwnershipError::Owned {
            claimed: Claimed::BgpFile {
                setting,
                path: path.to_owned(),
            },
            owner,
            lock,
            purpose: Purpose::Serve,
        }),
    }
}

/// The lock of the record named after `admin_socket` (see
/// `held::record_path`): one lbd per admin socket, so one per record, and
/// an offline action only while no lbd runs with it. None when the admin
/// socket names no file (there is no record either).
fn record_lock(
    admin_socket: &Path,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Option<Lock>, OwnershipError> {
    let Some(record) = held::record_path(admin_socket) else {
        return Ok(None);
    };
    let lock = bgp_file_lock_path(&record);
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    }
    match lock::lock_file(&lock, me).map_err(io_error("locking", &lock))? {
        Attempt::Held(held) => Ok(Some(held)),
        Attempt::Taken(owner) => Err(OwnershipError::Owned {
            claimed: Claimed::Record {
                admin_socket: admin_socket.to_owned(),
                record,
            },
            owner,
            lock,
            purpose,
        }),
    }
}

fn pin_dir_lock(pins: &PinDir, me: &OwnerRecord, purpose: Purpose) -> Result<Lock, OwnershipError> {
    let dir = pins.root();
    match lock::lock_dir(dir, me).map_err(io_error("locking", dir))? {
        Attempt::Held(lock) => Ok(lock),
        Attempt::Taken(owner) => Err(OwnershipError::Owned {
            claimed: Claimed::PinDir(dir.to_owned()),
            owner,
            lock: dir.to_owned(),
            purpose,
        }),
    }
}

/// Refuses an interface that runs an XDP program other than the one
/// attached through the link pinned in `pins`.
async fn check_interface_program(
    config: &Config,
    pins: Option<&PinDir>,
) -> Result<(), OwnershipError> {
    let netlink = Netlink::connect()?;
    let interface = netlink.interface(&config.interface).await?;
    if config.attach == crate::config::Attach::Tc {
        check_tc_programs(&interface.name, pins)?;
    }
    let Some((id, _)) = netlink.xdp_program(interface.index).await? else {
        return Ok(());
    };
    let ours = pins
        .map(|p| p.link_path(&interface.name))
        .filter(|path| path.exists())
        .and_then(|path| PinnedLink::from_pin(path).ok())
        .map(FdLink::from)
        .and_then(|link| link.info().ok())
        .is_some_and(|info| info.program_id() == id);
    if ours {
        return Ok(());
    }
    let name = program_name(id);
    Err(OwnershipError::ForeignProgram {
        interface: interface.name,
        id,
        name,
        pin_dir: pins.map(|p| p.root().to_owned()),
    })
}

/// Refuses a tcx ingress that runs any program other than the one
/// attached through the tc link pinned in `pins`.
fn check_tc_programs(interface: &str, pins: Option<&PinDir>) -> Result<(), OwnershipError> {
    let ours = pins
        .map(|p| p.tc_link_path(interface))
        .filter(|path| path.exists())
        .and_then(|path| PinnedLink::from_pin(path).ok())
        .map(FdLink::from)
        .and_then(|link| link.info().ok())
        .map(|info| info.program_id());
    let foreign = crate::dataplane::tcx_ingress_programs(interface)
        .into_iter()
        .find(|id| Some(*id) != ours);
    match foreign {
        None => Ok(()),
        Some(id) => Err(OwnershipError::ForeignTcProgram {
            interface: interface.to_owned(),
            id,
            name: program_name(id),
            pin_dir: pins.map(|p| p.root().to_owned()),
        }),
    }
}

/// The name of loaded program `id`, if the kernel says.
fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == id)
        .and_then(|program| program.name_as_str().map(str::to_owned))
}

/// The refusal when `claimed` is held by `owner`.
pub(crate) fn owned_message(
    claimed: &Claimed,
    owner: Option<&OwnerRecord>,
    lock: &Path,
    purpose: Purpose,
) -> String {
    let owner = owner.map_or_else(
        || "another lbd (it has not recorded its pid and config yet)".to_owned(),
        ToString::to_string,
    );
    let lock = lock.display();
    match purpose {
        Purpose::Serve => {
            let rule = match claimed {
                Claimed::Interface { .. } => "one lbd serves an interface",
                Claimed::PinDir(_) => "an lbd on another interface needs a pin_dir of its own",
                Claimed::Record { .. } => {
                    "an lbd on another interface needs an admin_socket of its own, with a file \
                     name stem of its own (the record of what it holds, its VRRP state files \
                     and its restart marker are named after it)"
                }
                Claimed::BgpFile { .. } => {
                    "an lbd on another interface needs its own [bgp] routes_file (and a protocol \
                     stem BIRD's config tells apart) and node_state_file"
                }
            };
            format!(
                "{claimed} is owned by {owner} (lock {lock}): exactly one lbd may own a data plane. \
                 Stop that lbd first (SIGTERM leaves its data plane forwarding for the next lbd); \
                 {rule}"
            )
        }
        Purpose::Cleanup | Purpose::ReleaseVips => {
            let flag = if purpose == Purpose::Cleanup {
                "--cleanup"
            } else {
                "--release-vips"
            };
            format!(
                "refusing {flag}: {claimed} is owned by {owner}, which is running (lock {lock}). \
                 Stop it first (SIGINT removes its VIPs and data plane itself)"
            )
        }
    }
}

/// A foreign program's name as shown, and why it is not this lbd's.
fn program_words<'a>(name: Option<&'a str>, pin_dir: Option<&Path>) -> (&'a str, String) {
    let name = name.filter(|n| !n.is_empty()).unwrap_or("no name");
    let whose = match pin_dir {
        Some(dir) => format!("not the one pinned in this lbd's pin_dir {}", dir.display()),
        None => "and this lbd pins nothing (pin_dir = \"off\")".to_owned(),
    };
    (name, whose)
}

/// The refusal when `interface` runs program `id` that this lbd did not
/// pin, with the ways out.
pub(crate) fn foreign_program_message(
    interface: &str,
    id: u32,
    name: Option<&str>,
    pin_dir: Option<&Path>,
) -> String {
    let (name, whose) = program_words(name, pin_dir);
    format!(
        "interface {interface} already has XDP program id {id} ({name}) attached, {whose}: \
         it belongs to another tool, or to an lbd with another pin_dir. lbd does not replace it. \
         If it is an lbd's (lbd's program is named {}), remove it with \
         `lbd --config <that lbd's config> --cleanup` (refused while that lbd runs; a pinned \
         XDP link goes only with its pin, and `ip link` cannot detach it); if another tool \
         attached it, detach it with that tool or `ip link set dev {interface} xdp off` (in \
         the interface's network namespace). Then start lbd again",
        lb_common::consts::names::PROG_LB
    )
}

/// The refusal when the tcx ingress of `interface` runs program `id` that
/// this lbd did not pin, with the ways out.
pub(crate) fn foreign_tc_program_message(
    interface: &str,
    id: u32,
    name: Option<&str>,
    pin_dir: Option<&Path>,
) -> String {
    let (name, whose) = program_words(name, pin_dir);
    format!(
        "interface {interface} already has tc program id {id} ({name}) on its tcx ingress, \
         {whose}: with attach = \"tc\" lbd must be the only tcx ingress program (another one \
         would see or change the packets before or after it). If it is an lbd's (lbd's tc \
         program is named {}), remove it with `lbd --config <that lbd's config> --cleanup`; \
         if another tool attached it, detach it with that tool (`bpftool net show dev \
         {interface}` lists it). Or use attach = \"xdp\". Then start lbd again",
        lb_common::consts::names::PROG_TC_LB
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> OwnerRecord {
        OwnerRecord {
            pid: 1234,
            config: PathBuf::from("/etc/lbd/lbd.toml"),
        }
    }

    #[test]
    fn a_refused_start_names_the_owner_and_what_it_holds() {
        let claimed = Claimed::Interface {
            name: "eth0".into(),
            netns: 4_026_531_840,
        };
        let message = owned_message(
            &claimed,
            Some(&owner()),
            Path::new("/run/lbd/x.lock"),
            Purpose::Serve,
        );
        assert!(
            message.starts_with(
                "interface eth0 (network namespace net:[4026531840]) is owned by lbd pid 1234 (config /etc/lbd/lbd.toml)"
            ),
            "{message}"
        );
        assert!(message.contains("one lbd serves an interface"), "{message}");
        let message = owned_message(
            &Claimed::PinDir("/sys/fs/bpf/lbd".into()),
            Some(&owner()),
            Path::new("/sys/fs/bpf/lbd"),
            Purpose::Serve,
        );
        assert!(message.starts_with("pin_dir /sys/fs/bpf/lbd is owned by lbd pid 1234"));
        assert!(message.contains("a pin_dir of its own"), "{message}");
    }

    #[test]
    fn a_refused_cleanup_says_which_flag_and_to_stop_lbd_first() {
        for (purpose, flag) in [
            (Purpose::Cleanup, "--cleanup"),
            (Purpose::ReleaseVips, "--release-vips"),
        ] {
            let message = owned_message(
                &Claimed::PinDir("/p".into()),
                Some(&owner()),
                Path::new("/p"),
                purpose,
            );
            assert!(
                message.starts_with(&format!(
                    "refusing {flag}: pin_dir /p is owned by lbd pid 1234"
                )),
                "{message}"
            );
            assert!(message.contains("Stop it first"), "{message}");
        }
    }

    #[test]
    fn an_unknown_owner_is_still_a_refusal() {
        let message = owned_message(
            &Claimed::PinDir("/p".into()),
            None,
            Path::new("/p"),
            Purpose::Serve,
        );
        assert!(message.contains("owned by another lbd"), "{message}");
    }

    #[test]
    fn a_foreign_program_is_named_with_the_ways_out() {
        let message =
            foreign_program_message("eth0", 42, Some("xdp_lb"), Some(Path::new("/sys/fs/bpf/b")));
        assert!(
            message.starts_with("interface eth0 already has XDP program id 42 (xdp_lb) attached"),
            "{message}"
        );
        assert!(message.contains("/sys/fs/bpf/b"), "{message}");
        assert!(message.contains("lbd --config"), "{message}");
        assert!(message.contains("named xdp_lb"), "{message}");
        assert!(message.contains("--cleanup"), "{message}");
        assert!(
            message.contains("ip link set dev eth0 xdp off"),
            "{message}"
        );
        let message = foreign_program_message("eth1", 7, None, None);
        assert!(message.contains("id 7 (no name)"), "{message}");
        assert!(message.contains("pin_dir = \"off\""), "{message}");
    }

    #[test]
    fn a_foreign_tc_program_is_named_with_the_ways_out() {
        let message = foreign_tc_program_message("eth0", 9, Some("cil_from_netdev"), None);
        assert!(
            message.starts_with(
                "interface eth0 already has tc program id 9 (cil_from_netdev) on its tcx ingress"
            ),
            "{message}"
        );
        for hint in [
            "named tc_lb",
            "--cleanup",
            "bpftool net show dev eth0",
            "attach = \"xdp\"",
        ] {
            assert!(message.contains(hint), "{hint}: {message}");
        }
    }

    #[test]
    fn a_second_lbd_on_the_same_bgp_file_is_refused_naming_it_and_the_owner() {
        let dir = std::env::temp_dir().join(format!("lbd-bgp-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let routes = dir.join("bgp").join("vips.conf");
        let first = bgp_file_lock("routes_file", &routes, &owner()).expect("first lbd");
        assert_eq!(first.path(), dir.join("bgp").join(".vips.conf.lbd-lock"));
        let second = OwnerRecord {
            pid: 5678,
            config: PathBuf::from("/etc/lbd/lbd-eth1.toml"),
        };
        let error = bgp_file_lock("routes_file", &routes, &second)
            .expect_err("a second lbd on the same routes file")
            .to_string();
        assert!(
            error.starts_with(&format!(
                "[bgp] routes_file {} is owned by lbd pid 1234 (config /etc/lbd/lbd.toml)",
                routes.display()
            )),
            "{error}"
        );
        assert!(error.contains("its own [bgp] routes_file"), "{error}");
        // Another file is free; the first once its lbd is gone.
        let other = bgp_file_lock("node_state_file", &dir.join("node.state"), &second);
        assert!(other.is_ok());
        drop(first);
        assert!(bgp_file_lock("routes_file", &routes, &second).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_second_lbd_with_the_same_admin_socket_is_refused_naming_the_record() {
        let dir = std::env::temp_dir().join(format!("lbd-record-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("run").join("lbd.sock");
        let first = record_lock(&socket, &owner(), Purpose::Serve)
            .expect("first lbd")
            .expect("a lock");
        assert_eq!(
            first.path(),
            dir.join("run").join(".lbd.held.json.lbd-lock")
        );
        let second = OwnerRecord {
            pid: 5678,
            config: PathBuf::from("/etc/lbd/lbd-eth1.toml"),
        };
        // Another admin socket of the same stem shares the record.
        for (path, purpose) in [
            (socket.clone(), Purpose::Serve),
            (dir.join("run").join("lbd.ctl"), Purpose::Serve),
            (socket.clone(), Purpose::ReleaseVips),
        ] {
            let error = record_lock(&path, &second, purpose)
                .expect_err("refused")
                .to_string();
            assert!(error.contains("lbd.held.json"), "{error}");
            assert!(error.contains("lbd pid 1234"), "{error}");
        }
        let error = record_lock(&socket, &second, Purpose::Serve)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("admin_socket of its own"), "{error}");
        assert!(record_lock(
            &dir.join("run").join("lbd-eth1.sock"),
            &second,
            Purpose::Serve
        )
        .is_ok());
        // A record's lock, as a start taking over another record tries it.
        let record = held::record_path(&socket).expect("record");
        assert!(try_record_lock(&record, Path::new("/x.toml"))
            .expect("tried")
            .is_none());
        drop(first);
        assert!(try_record_lock(&record, Path::new("/x.toml"))
            .expect("tried")
            .is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn interface_locks_are_per_namespace_and_interface() {
        let a = interface_lock_path(Path::new("/run/lbd"), "eth0", 1);
        assert_eq!(a, PathBuf::from("/run/lbd/lbd-xdp-eth0.net1.lock"));
        assert_ne!(a, interface_lock_path(Path::new("/run/lbd"), "eth0", 2));
        assert_ne!(a, interface_lock_path(Path::new("/run/lbd"), "eth1", 1));
    }
}
