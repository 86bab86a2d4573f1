//! One lbd per data plane. Before lbd touches pins or the interface it
//! takes two exclusive locks, held until it exits (the kernel drops them
//! then, also on kill -9): one per interface — keyed by network namespace
//! too, as several namespaces may each have an `eth0` — in [`LOCK_DIR`]
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

pub(crate) mod cls_bpf;
pub(crate) mod held;
pub(crate) mod lock;

use std::{
    collections::HashSet,
    fmt,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

use crate::{
    config::{Attach, Config},
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

/// The locks of interface `name` (see [`interface_locks`], for `config`'s
/// admin socket) if no other process holds them; None if one does. For a
/// start that undoes what a previous lbd held on another interface.
pub(crate) fn try_interface_lock(
    config: &Config,
    config_path: &Path,
    name: &str,
) -> anyhow::Result<Option<Vec<Lock>>> {
    let me = OwnerRecord::current(config_path);
    match interface_locks(&config.admin_socket, name, &me, Purpose::Serve) {
        Ok(locks) => Ok(Some(locks)),
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

/// Where every lbd of the host takes its interface locks, whatever its
/// admin socket: a lock beside the admin socket (as lbd took it before)
/// let two lbds whose admin sockets are in different directories both
/// lock one interface, then remove each other's tc filters in turn. The
/// default admin socket's directory, so the lock of an older lbd that
/// ran with the default admin socket is this one too.
pub(crate) const LOCK_DIR: &str = "/run/lbd";

/// The lock file of `interface` in network namespace `netns`, in
/// `run_dir`.
pub(crate) fn interface_lock_path(run_dir: &Path, interface: &str, netns: u64) -> PathBuf {
    run_dir.join(format!("lbd-xdp-{interface}.net{netns}.lock"))
}

/// The directory of the admin socket, where lbds before [`LOCK_DIR`] took
/// their interface locks.
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

/// The locks of `interface` for a process whose admin socket (or
/// record's) is `admin_socket`: the one in [`LOCK_DIR`], which every lbd
/// takes whatever its admin socket (one lbd per interface), and the one
/// beside the admin socket when that is another directory, where an lbd
/// of an earlier release, running during an upgrade, holds its only one
/// (so each refuses the other).
fn interface_locks(
    admin_socket: &Path,
    interface: &str,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Vec<Lock>, OwnershipError> {
    interface_locks_in(Path::new(LOCK_DIR), admin_socket, interface, me, purpose)
}

/// [`interface_locks`] with the shared lock directory `lock_dir`.
fn interface_locks_in(
    lock_dir: &Path,
    admin_socket: &Path,
    interface: &str,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Vec<Lock>, OwnershipError> {
    let ns = Path::new("/proc/self/ns/net");
    let netns = std::fs::metadata(ns)
        .map_err(io_error("reading the network namespace of", ns))?
        .ino();
    create_lock_dir(lock_dir).map_err(io_error("creating", lock_dir))?;
    let legacy = run_dir(admin_socket);
    std::fs::create_dir_all(&legacy).map_err(io_error("creating", &legacy))?;
    let mut locks = vec![interface_lock(lock_dir, interface, netns, me, purpose)?];
    // The same directory under another name (a symlink, `./` with the
    // working directory there) is the same lock file: a second open of
    // it would be refused by this process's own lock.
    if !same_dir(lock_dir, &legacy) {
        locks.push(interface_lock(&legacy, interface, netns, me, purpose)?);
    }
    Ok(locks)
}

/// Creates `dir` if missing, mode 0755 whatever the umask (systemd's
/// `UMask=0077`): the directory of the default admin socket too.
fn create_lock_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Whether directories `a` and `b` are one (device and inode).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => a == b,
    }
}

fn interface_lock(
    dir: &Path,
    interface: &str,
    netns: u64,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Lock, OwnershipError> {
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
        // The routes file's directory: 0755 whatever the umask, as
        // `routes_file::write` would make it, so BIRD reaches the file
        // (`write` creates no directory once this one made it).
        crate::bgp::routes_file::create_dirs(dir).map_err(io_error("creating", dir))?;
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
/// attached through the link pinned in `pins`, or lbd's tc program other
/// than this lbd's own previous one (on the tcx ingress, see
/// [`check_tc_programs`]; in a cls_bpf filter, see
/// [`check_tc_filters`]), whatever `attach` this lbd has: an lbd at XDP
/// would otherwise run beside another one at tc, and two lbds at tc
/// remove each other's filters in turn (each then steps down, and is
/// restarted, and removes the other's).
async fn check_interface_program(
    config: &Config,
    pins: Option<&PinDir>,
) -> Result<(), OwnershipError> {
    let netlink = Netlink::connect()?;
    let interface = netlink.interface(&config.interface).await?;
    check_tc_programs(&interface.name, pins, TcReach::of(config))?;
    check_tc_filters(config, &interface.name, interface.index, pins).await?;
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

/// Whether lbd may attach its program at tc, for the start's refusal of
/// the tcx ingress programs it did not pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcReach {
    /// `attach = "tc"`.
    Tc,
    /// `attach = "xdp"` with `xdp_mode = "auto"` and NAT or tunnelled
    /// VIPs: where native XDP fails, lbd attaches at tc instead (see
    /// `dataplane::choose_hook`).
    AutoFallback,
    /// At XDP only: other tools' tc programs run after it.
    Xdp,
}

impl TcReach {
    /// Where `config`'s lbd may attach.
    pub(crate) fn of(config: &Config) -> Self {
        match config.attach {
            Attach::Tc => Self::Tc,
            Attach::Xdp
                if config.xdp_mode == crate::config::XdpMode::Auto
                    && crate::dataplane::Translating::of(&config.vips).any() =>
            {
                Self::AutoFallback
            }
            Attach::Xdp => Self::Xdp,
        }
    }
}

/// Refuses a tcx ingress that runs a program other than the one attached
/// through the tc link pinned in `pins`: any such program where lbd may
/// attach at tc (`reach`; lbd must be the only one there: one ahead of it
/// passing packets on bypasses it), lbd's tc program at XDP only
/// (another lbd's; other tools' tc programs run after XDP and are no
/// concern of an lbd at XDP).
fn check_tc_programs(
    interface: &str,
    pins: Option<&PinDir>,
    reach: TcReach,
) -> Result<(), OwnershipError> {
    let ours = pins
        .map(|p| p.tc_link_path(interface))
        .filter(|path| path.exists())
        .and_then(|path| PinnedLink::from_pin(path).ok())
        .map(FdLink::from)
        .and_then(|link| link.info().ok())
        .map(|info| info.program_id());
    let foreign = crate::dataplane::tcx_ingress_programs(interface)
        .into_iter()
        .filter(|id| Some(*id) != ours)
        .map(|id| (id, program_name(id)))
        .find(|(_, name)| refuses_tc_program(reach, name.as_deref()));
    match foreign {
        None => Ok(()),
        Some((id, name)) => Err(OwnershipError::ForeignTcProgram {
            interface: interface.to_owned(),
            id,
            name,
            pin_dir: pins.map(|p| p.root().to_owned()),
            reach,
        }),
    }
}

/// Whether an lbd that may attach at `reach` refuses a tcx ingress
/// program named `name` that it did not pin: any where it may attach at
/// tc, lbd's own tc program (another lbd's) at XDP only too.
fn refuses_tc_program(reach: TcReach, name: Option<&str>) -> bool {
    reach != TcReach::Xdp || name == Some(lb_common::consts::names::PROG_TC_LB)
}

/// Refuses an ingress with a cls_bpf filter running lbd's tc program
/// (`tc_lb`) that is not this lbd's own previous one (see
/// [`own_tc_filter`]): another lbd's, with another `pin_dir`, running (an
/// lbd of an earlier release, whose interface lock was beside its admin
/// socket) or killed (a filter outlives its process). A filter of this
/// lbd's own is left for the sweep after the attach (see `cls_bpf`).
/// A listing that fails is logged: the interface's lock still keeps
/// other lbds of this release off it.
async fn check_tc_filters(
    config: &Config,
    interface: &str,
    ifindex: u32,
    pins: Option<&PinDir>,
) -> Result<(), OwnershipError> {
    let filters = match cls_bpf::ingress_filters_of(ifindex).await {
        Ok(filters) => filters,
        Err(error) => {
            tracing::warn!(%interface, error = %format!("{error:#}"), "cannot list the tc filters on the interface's ingress: another lbd's cls_bpf filter there is not looked for");
            return Ok(());
        }
    };
    let mut lbds = filters
        .iter()
        .filter(|f| f.name == lb_common::consts::names::PROG_TC_LB)
        .peekable();
    if lbds.peek().is_none() {
        return Ok(());
    }
    let own_maps = pins.map(pinned_map_ids).unwrap_or_default();
    let unpinned_before =
        pins.is_none() && held::ran_unpinned_tc_on(&config.admin_socket, interface);
    for filter in lbds {
        let used = filter.program.map(program_map_ids).unwrap_or_default();
        if !own_tc_filter(pins.is_some(), &own_maps, &used, unpinned_before) {
            return Err(OwnershipError::ForeignTcFilter {
                interface: interface.to_owned(),
                id: filter.program,
                priority: filter.priority(),
                pin_dir: pins.map(|p| p.root().to_owned()),
            });
        }
    }
    Ok(())
}

/// Whether a cls_bpf filter running lbd's tc program whose maps are
/// `used` was left by this lbd's own previous run: with a `pin_dir`
/// (`pinned`), its program uses a map pinned there (`own_maps`; an lbd's
/// program uses the maps of its own `pin_dir`); with `pin_dir = "off"`,
/// the record of this admin socket says its previous lbd ran unpinned at
/// tc on this interface (`unpinned_before`: nothing else tells).
fn own_tc_filter(
    pinned: bool,
    own_maps: &HashSet<u32>,
    used: &[u32],
    unpinned_before: bool,
) -> bool {
    if pinned {
        used.iter().any(|id| own_maps.contains(id))
    } else {
        unpinned_before
    }
}

/// The ids of the maps pinned in `pins`, every layout version's
/// (`maps-v<N>`): an lbd of an older release pinned its maps in another.
fn pinned_map_ids(pins: &PinDir) -> HashSet<u32> {
    let Ok(entries) = std::fs::read_dir(pins.root()) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            entry.file_name().to_string_lossy().starts_with("maps-v")
                && entry.file_type().is_ok_and(|t| t.is_dir())
        })
        .filter_map(|entry| std::fs::read_dir(entry.path()).ok())
        .flat_map(|maps| maps.flatten())
        .filter_map(|map| aya::maps::MapInfo::from_pin(map.path()).ok())
        .map(|info| info.id())
        .collect()
}

/// The ids of the maps loaded program `id` uses (empty if the kernel
/// does not say).
fn program_map_ids(id: u32) -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == id)
        .and_then(|program| program.map_ids().ok().flatten())
        .unwrap_or_default()
}

/// The name of loaded program `id`, if the kernel says.
pub(crate) fn program_name(id: u32) -> Option<String> {
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
/// this lbd (at `attach`) did not pin, with the ways out.
pub(crate) fn foreign_tc_program_message(
    interface: &str,
    id: u32,
    name: Option<&str>,
    pin_dir: Option<&Path>,
    reach: TcReach,
) -> String {
    let (name, whose) = program_words(name, pin_dir);
    let tc_lb = lb_common::consts::names::PROG_TC_LB;
    match reach {
        TcReach::AutoFallback => format!(
            "interface {interface} already has tc program id {id} ({name}) on its tcx ingress, \
             {whose}: with xdp_mode = \"auto\" and NAT or tunnelled VIPs lbd attaches at tc \
             where native XDP fails, and must then be the only tcx ingress program (one ahead \
             of it that passes packets on bypasses it). If it is an lbd's (lbd's tc program is \
             named {tc_lb}), remove it with `lbd --config <that lbd's config> --cleanup`; if \
             another tool attached it, detach it with that tool (`bpftool net show dev \
             {interface}` lists it). Or use xdp_mode = \"native\" where the driver has native \
             XDP. Then start lbd again"
        ),
        TcReach::Tc => format!(
            "interface {interface} already has tc program id {id} ({name}) on its tcx ingress, \
             {whose}: with attach = \"tc\" lbd must be the only tcx ingress program (another one \
             would see or change the packets before or after it). If it is an lbd's (lbd's tc \
             program is named {tc_lb}), remove it with `lbd --config <that lbd's config> --cleanup`; \
             if another tool attached it, detach it with that tool (`bpftool net show dev \
             {interface}` lists it). Or use attach = \"xdp\". Then start lbd again"
        ),
        TcReach::Xdp => format!(
            "interface {interface} already has lbd's tc program id {id} ({name}) on its tcx \
             ingress, {whose}: another lbd (with attach = \"tc\" and another pin_dir) balances \
             this interface, or did before it was killed, and one lbd serves an interface (both \
             would take its packets). Stop that lbd, or remove what it left with `lbd --config \
             <that lbd's config> --cleanup` (`bpftool net show dev {interface}` lists the \
             program). Then start lbd again"
        ),
    }
}

/// The refusal when a cls_bpf filter (priority `priority`) on the ingress
/// of `interface` runs lbd's tc program `id` that this lbd did not leave,
/// with the ways out.
pub(crate) fn foreign_tc_filter_message(
    interface: &str,
    id: Option<u32>,
    priority: u16,
    pin_dir: Option<&Path>,
) -> String {
    let tc_lb = lb_common::consts::names::PROG_TC_LB;
    let id = id.map_or_else(|| "of unknown id".to_owned(), |id| format!("id {id}"));
    let whose = match pin_dir {
        Some(dir) => format!(
            "whose maps are not the ones pinned in this lbd's pin_dir {}",
            dir.display()
        ),
        None => "which this lbd (pin_dir = \"off\") did not leave: the record of its admin \
                 socket names no earlier run of its own at tc on this interface"
            .to_owned(),
    };
    format!(
        "interface {interface} already has a tc filter (clsact + cls_bpf, priority {priority}) \
         on its ingress running lbd's tc program {tc_lb} ({id}), {whose}: another lbd (with \
         another pin_dir, or an earlier release's with its admin socket elsewhere) balances \
         this interface, or did before it was killed (such a filter outlives its lbd), and one \
         lbd serves an interface (each would remove the other's filter). Stop that lbd, or \
         remove what it left with `lbd --config <that lbd's config> --cleanup`, or delete the \
         filter with `tc filter del dev {interface} ingress pref {priority}` (in the \
         interface's network namespace). Then start lbd again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

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
        let message =
            foreign_tc_program_message("eth0", 9, Some("cil_from_netdev"), None, TcReach::Tc);
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

    fn netns() -> u64 {
        std::fs::metadata("/proc/self/ns/net").expect("netns").ino()
    }

    /// Two lbds whose admin sockets are in different directories meet at
    /// the one lock directory: the second is refused, naming the first.
    #[test]
    fn an_interface_lock_holds_whatever_the_admin_sockets_directory() {
        let scratch = ScratchDir::new("iflock-shared");
        let shared = scratch.join("run-lbd");
        let first = interface_locks_in(
            &shared,
            &scratch.join("a").join("lbd.sock"),
            "eth0",
            &owner(),
            Purpose::Serve,
        )
        .expect("the first lbd");
        let paths: Vec<&Path> = first.iter().map(Lock::path).collect();
        assert_eq!(
            paths,
            vec![
                interface_lock_path(&shared, "eth0", netns()),
                interface_lock_path(&scratch.join("a"), "eth0", netns()),
            ]
        );
        let second = OwnerRecord {
            pid: 5678,
            config: PathBuf::from("/etc/lbd/b.toml"),
        };
        let error = interface_locks_in(
            &shared,
            &scratch.join("b").join("lbd.sock"),
            "eth0",
            &second,
            Purpose::Serve,
        )
        .expect_err("a second lbd on eth0 with its admin socket elsewhere")
        .to_string();
        assert!(
            error.starts_with("interface eth0 (network namespace net:["),
            "{error}"
        );
        assert!(
            error.contains("lbd pid 1234 (config /etc/lbd/lbd.toml)"),
            "{error}"
        );
        assert!(error.contains(&shared.display().to_string()), "{error}");
        // Another interface is free.
        let other = interface_locks_in(
            &shared,
            &scratch.join("b").join("lbd.sock"),
            "eth1",
            &second,
            Purpose::Serve,
        );
        assert!(other.is_ok());
        drop(first);
        assert!(interface_locks_in(
            &shared,
            &scratch.join("b").join("lbd.sock"),
            "eth0",
            &second,
            Purpose::Serve
        )
        .is_ok());
    }

    /// An lbd of an earlier release holds only the lock beside its admin
    /// socket: a new lbd with its admin socket there is refused by it.
    #[test]
    fn the_lock_beside_the_admin_socket_of_an_older_lbd_is_honoured() {
        let scratch = ScratchDir::new("iflock-legacy");
        let run = scratch.join("run");
        std::fs::create_dir_all(&run).expect("dir");
        let lock::Attempt::Held(older) =
            lock::lock_file(&interface_lock_path(&run, "eth0", netns()), &owner()).expect("lock")
        else {
            panic!("taken");
        };
        let error = interface_locks_in(
            &scratch.join("shared"),
            &run.join("lbd.sock"),
            "eth0",
            &OwnerRecord::current(Path::new("/etc/lbd/new.toml")),
            Purpose::Cleanup,
        )
        .expect_err("refused by the older lbd's lock")
        .to_string();
        assert!(
            error.starts_with("refusing --cleanup: interface eth0"),
            "{error}"
        );
        assert!(error.contains("lbd pid 1234"), "{error}");
        drop(older);
    }

    /// An admin socket in the lock directory itself (the default one) has
    /// one lock there, not two (a second open of the same file would be
    /// refused by this process's own lock), also named another way.
    #[test]
    fn an_admin_socket_in_the_lock_directory_takes_one_lock() {
        let scratch = ScratchDir::new("iflock-same");
        let shared = scratch.join("run-lbd");
        for socket in [
            shared.join("lbd.sock"),
            shared.join(".").join("lbd.sock"),
            scratch
                .join("run-lbd")
                .join("x")
                .join("..")
                .join("lbd.sock"),
        ] {
            let locks = interface_locks_in(&shared, &socket, "eth0", &owner(), Purpose::Serve)
                .unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
            assert_eq!(locks.len(), 1, "{}", socket.display());
        }
    }

    #[test]
    fn the_lock_directory_is_created_readable_by_all() {
        let scratch = ScratchDir::new("iflock-mode");
        let dir = scratch.join("a").join("run-lbd");
        create_lock_dir(&dir).expect("created");
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        create_lock_dir(&dir).expect("there already");
    }

    /// Set in the child the test below runs (the umask is the process's).
    const BGP_UMASK_CHILD: &str = "LBD_TEST_BGP_LOCK_UMASK_CHILD";

    /// Under the unit's UMask=0077, the directories the `[bgp]` lock
    /// creates on the way to the routes file are 0755, so BIRD (user
    /// `bird`) reaches the file `routes_file::write` puts there later (it
    /// creates no directory then: they exist); a directory that exists
    /// stays as it is. Run in a child process, as the umask is the
    /// process's.
    #[test]
    fn the_bgp_lock_creates_directories_bird_can_traverse_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let Some(base) = std::env::var_os(BGP_UMASK_CHILD) else {
            let scratch = ScratchDir::new("iflock-bgp-umask");
            std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o711))
                .expect("mode");
            let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "ownership::tests::the_bgp_lock_creates_directories_bird_can_traverse_whatever_the_umask",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(BGP_UMASK_CHILD, scratch.path())
                .output()
                .expect("child");
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        };
        let base = PathBuf::from(base);
        // SAFETY: umask has no preconditions; this child runs this test alone.
        unsafe { libc::umask(0o077) };
        let path = base.join("a").join("b").join("vips.conf");
        let _lock = bgp_file_lock("routes_file", &path, &owner()).expect("locked");
        crate::bgp::routes_file::write(&path, "one\n").expect("written");
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .permissions()
                .mode()
                & 0o7777
        };
        for dir in [base.join("a"), base.join("a").join("b")] {
            assert_eq!(mode(&dir), 0o755, "{}", dir.display());
        }
        assert_eq!(mode(&base), 0o711, "an existing directory changed");
    }

    /// At tc any tcx program this lbd did not pin is refused; at XDP only
    /// lbd's own tc program (another lbd's), not other tools'.
    #[test]
    fn an_lbd_at_xdp_refuses_another_lbds_tc_program_only() {
        assert!(refuses_tc_program(TcReach::Tc, Some("cil_from_netdev")));
        assert!(refuses_tc_program(TcReach::Tc, None));
        assert!(refuses_tc_program(TcReach::Tc, Some("tc_lb")));
        assert!(refuses_tc_program(TcReach::Xdp, Some("tc_lb")));
        assert!(!refuses_tc_program(TcReach::Xdp, Some("cil_from_netdev")));
        assert!(!refuses_tc_program(TcReach::Xdp, None));
    }

    /// An lbd at XDP that may fall back to tc (`xdp_mode = "auto"` with a
    /// NAT or tunnelled VIP, where native XDP fails) refuses any tcx
    /// program it did not pin, as one with `attach = "tc"` does: at tc a
    /// program ahead of it would bypass it.
    #[test]
    fn an_lbd_that_may_fall_back_to_tc_refuses_any_foreign_tc_program() {
        assert!(refuses_tc_program(
            TcReach::AutoFallback,
            Some("cil_from_netdev")
        ));
        assert!(refuses_tc_program(TcReach::AutoFallback, None));
        let message = foreign_tc_program_message(
            "eth0",
            9,
            Some("cil_from_netdev"),
            None,
            TcReach::AutoFallback,
        );
        assert!(message.contains("xdp_mode = \"auto\""), "{message}");
    }

    /// A `tc_lb` filter is this lbd's own previous one when its program
    /// uses a map pinned in this lbd's `pin_dir`; with `pin_dir = "off"`
    /// when the record says the previous lbd ran unpinned at tc there.
    #[test]
    fn a_tc_filter_is_ours_by_its_maps_or_the_record() {
        let own: HashSet<u32> = [10, 11, 12].into_iter().collect();
        assert!(own_tc_filter(true, &own, &[3, 11], false));
        assert!(
            !own_tc_filter(true, &own, &[3, 4], true),
            "another pin_dir's"
        );
        assert!(!own_tc_filter(true, &own, &[], true), "unknown maps");
        assert!(!own_tc_filter(true, &HashSet::new(), &[3], false));
        assert!(own_tc_filter(false, &HashSet::new(), &[3], true));
        assert!(!own_tc_filter(false, &own, &[11], false));
    }

    #[test]
    fn an_lbds_tc_program_refused_at_xdp_and_a_foreign_filter_say_the_ways_out() {
        let message = foreign_tc_program_message(
            "eth0",
            9,
            Some("tc_lb"),
            Some(Path::new("/sys/fs/bpf/b")),
            TcReach::Xdp,
        );
        assert!(
            message.starts_with(
                "interface eth0 already has lbd's tc program id 9 (tc_lb) on its tcx ingress"
            ),
            "{message}"
        );
        for hint in ["/sys/fs/bpf/b", "--cleanup", "one lbd serves an interface"] {
            assert!(message.contains(hint), "{hint}: {message}");
        }
        assert!(!message.contains("Or use attach"), "{message}");
        let message =
            foreign_tc_filter_message("eth0", Some(42), 49152, Some(Path::new("/sys/fs/bpf/b")));
        assert!(
            message.starts_with(
                "interface eth0 already has a tc filter (clsact + cls_bpf, priority 49152) on its ingress running lbd's tc program tc_lb (id 42)"
            ),
            "{message}"
        );
        for hint in [
            "pinned in this lbd's pin_dir /sys/fs/bpf/b",
            "--cleanup",
            "tc filter del dev eth0 ingress pref 49152",
            "one lbd serves an interface",
        ] {
            assert!(message.contains(hint), "{hint}: {message}");
        }
        let message = foreign_tc_filter_message("eth1", None, 1, None);
        assert!(message.contains("(of unknown id)"), "{message}");
        assert!(message.contains("pin_dir = \"off\""), "{message}");
    }

    #[test]
    fn interface_locks_are_per_namespace_and_interface() {
        let a = interface_lock_path(Path::new("/run/lbd"), "eth0", 1);
        assert_eq!(a, PathBuf::from("/run/lbd/lbd-xdp-eth0.net1.lock"));
        assert_ne!(a, interface_lock_path(Path::new("/run/lbd"), "eth0", 2));
        assert_ne!(a, interface_lock_path(Path::new("/run/lbd"), "eth1", 1));
    }
}
