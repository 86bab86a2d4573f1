//! What a running lbd holds on the node, recorded for whoever undoes it
//! after lbd is gone. The offline actions (`lbd --release-vips`, the
//! systemd unit's stop path, and `lbd --cleanup`) must undo what the lbd
//! that ran held, not what the config file says now: the file may have
//! been edited (another interface, other VRRP addresses, another routes
//! file, `[bgp]` gone) or broken since. So lbd records, beside its admin
//! socket (`/run/lbd/lbd.held.json` by default, on a tmpfs, so a reboot,
//! which takes all of it away, takes the record too), its interface and
//! hook, the VRRP addresses it may put on that interface, its BGP
//! announcement's BIRD socket, routes file and protocol stem, and the
//! original values of the `forwarding` settings it switched on (kept
//! across restarts, so the first lbd's original is what a clean stop puts
//! back). The record is written when lbd claims the data plane and
//! rewritten atomically when it changes. A start that finds a previous
//! record first undoes what the new config no longer holds (addresses on
//! another interface or no longer listed, a routes file no longer used, a
//! cls_bpf filter on another interface, and the settings switched on for
//! another interface, which leave the record). The record is locked with the
//! data plane (see `ownership`): whoever reads it to undo what it holds
//! owns it, so no running lbd's holdings are undone. A routes file is
//! emptied from a record only while no running lbd holds its lock (it may
//! announce through it now). When the config's admin socket has no record
//! (`admin_socket` was edited) the newest record naming the same config
//! file stands in, and a start takes it over.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{Attach, BgpConfig, Config};

/// Where the kernel says which boot this is: a record from another boot
/// describes nothing that still exists.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The suffix of a record's file name (after the admin socket's stem).
const SUFFIX: &str = ".held.json";

/// What an lbd holds (or may hold) on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held {
    /// The config file lbd was started with (absolute): how an offline
    /// action whose config cannot be read finds the record.
    pub config: PathBuf,
    /// lbd's pid (for the log).
    pub pid: u32,
    /// The boot the record was written in.
    #[serde(default)]
    pub boot_id: String,
    /// When lbd started (clock ticks after boot, `/proc/self/stat`): with
    /// `pid` and `boot_id` it names one process, so a record of state an
    /// lbd kept (the running-state record) can tell whether its writer
    /// was the lbd that ran last (None: not known, or an older build's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// lbd's admin socket (an offline action checks no lbd answers there;
    /// the VRRP state files and the restart marker are named after it).
    pub admin_socket: PathBuf,
    /// Where the data plane is pinned (None: `pin_dir = "off"`).
    pub pin_dir: Option<PathBuf>,
    /// The interface lbd attaches to and puts its VRRP addresses on.
    pub interface: String,
    /// Whether lbd attaches with tc (a cls_bpf filter may outlive it on a
    /// kernel without tcx).
    pub attach_tc: bool,
    /// The VRRP addresses lbd may put on `interface`.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The BGP announcement (None: no `[bgp]`).
    pub bgp: Option<HeldBgp>,
    /// `forwarding` settings lbd switched on, with their original values.
    #[serde(default)]
    pub forwarding: Vec<HeldSetting>,
}

/// Where an lbd's BGP announcement lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldBgp {
    /// BIRD's control socket.
    pub bird_socket: PathBuf,
    /// The routes file BIRD includes.
    pub routes_file: PathBuf,
    /// The protocols' name stem.
    pub protocol: String,
}

impl From<&BgpConfig> for HeldBgp {
    fn from(bgp: &BgpConfig) -> Self {
        Self {
            bird_socket: bgp.bird_socket.clone(),
            routes_file: bgp.routes_file.clone(),
            protocol: bgp.protocol.clone(),
        }
    }
}

/// A kernel setting lbd changed, with the value it had before the first
/// lbd changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldSetting {
    /// The setting's file (`/proc/sys/net/ipv4/conf/eth0/forwarding`).
    pub path: PathBuf,
    /// Its original value.
    pub was: String,
}

impl Held {
    /// What an lbd started with `config` (from `config_path`) may hold,
    /// with no setting changed yet.
    pub(crate) fn of(config: &Config, config_path: &Path) -> Self {
        let mut addresses: Vec<IpAddr> = Vec::new();
        for address in config.vrrp.iter().flat_map(|v| &v.addresses) {
            if !addresses.contains(address) {
                addresses.push(*address);
            }
        }
        Self {
            config: std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned()),
            pid: std::process::id(),
            boot_id: boot_id(),
            started: process_started(),
            admin_socket: config.admin_socket.clone(),
            pin_dir: config.pin_dir.clone(),
            interface: config.interface.clone(),
            attach_tc: config.attach == Attach::Tc,
            addresses,
            bgp: config.bgp.as_ref().map(HeldBgp::from),
            forwarding: Vec::new(),
        }
    }

    /// The record as stored (JSON).
    pub(crate) fn encode(&self) -> String {
        // A struct of strings, paths and addresses always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Reads a stored record. A `forwarding` setting that is not an
    /// interface's switch lbd changes, to a small integer (see
    /// [`refused_setting`]), is left out with a warning naming it: the
    /// offline actions write these values as root.
    pub(crate) fn decode(text: &str) -> Result<Self, serde_json::Error> {
        let mut held: Self = serde_json::from_str(text)?;
        held.forwarding.retain(|setting| match refused_setting(setting) {
            None => true,
            Some(why) => {
                warn!(setting = %setting.path.display(), value = %setting.was, "the record of what lbd held names a setting lbd never changes ({why}): left out, never written");
                false
            }
        });
        Ok(held)
    }
}

/// The settings lbd switches on for an interface, and records.
const SETTING_NAMES: [&str; 3] = ["forwarding", "accept_local", "accept_ra"];

/// Why `setting` is none lbd records (None: it is one): the path must be
/// `/proc/sys/net/ipv4|ipv6/conf/<interface>/<name>` with a name of
/// [`SETTING_NAMES`], and the value a small integer. Unit tests also use
/// settings under the temporary directory.
fn refused_setting(setting: &HeldSetting) -> Option<&'static str> {
    let in_proc = setting
        .path
        .to_str()
        .and_then(|path| path.strip_prefix("/proc/sys/net/"))
        .is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('/').collect();
            matches!(
                parts.as_slice(),
                [family, "conf", interface, name]
                    if matches!(*family, "ipv4" | "ipv6")
                        && !interface.is_empty()
                        && *interface != "."
                        && *interface != ".."
                        && SETTING_NAMES.contains(name)
            )
        });
    #[cfg(test)]
    let in_proc = in_proc || setting.path.starts_with(std::env::temp_dir());
    if !in_proc {
        return Some("not an interface's forwarding, accept_local or accept_ra");
    }
    if setting.was.trim().parse::<u8>().is_err() {
        return Some("its value is not a small integer");
    }
    None
}

/// What a start undoes of a previous lbd's record (see [`at_start`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StartRelease {
    /// The previous lbd's addresses the new one will not hold, and the
    /// interface they are on.
    pub addresses: Option<(String, Vec<IpAddr>)>,
    /// The interface whose cls_bpf filters a previous tc lbd may have left
    /// (another interface than the new lbd's, which sweeps its own).
    pub tc_filters_on: Option<String>,
    /// A BGP announcement no longer made through this routes file.
    pub bgp: Option<HeldBgp>,
    /// The settings lbd switched on for the previous interface
    /// (`forwarding`, `accept_local`), with their originals, when the new
    /// lbd is on another one: put back at this start, as nothing routes
    /// through that interface for lbd any more (kept in the record, they
    /// would stay on until a stop for good, which would then write them
    /// over whatever was set since).
    pub settings: Vec<HeldSetting>,
}

impl StartRelease {
    /// Whether there is nothing to undo.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a start with `next` undoes of `previous`: the previous addresses
/// on another interface, or no longer listed; the previous interface's
/// cls_bpf filters and the settings lbd switched on for it, if it was
/// another interface; the previous BGP announcement if the new lbd
/// announces nothing, or through another routes file (BIRD would keep the
/// old file's routes).
pub(crate) fn at_start(previous: &Held, next: &Held) -> StartRelease {
    let moved = previous.interface != next.interface;
    let addresses: Vec<IpAddr> = previous
        .addresses
        .iter()
        .filter(|a| moved || !next.addresses.contains(a))
        .copied()
        .collect();
    let bgp = previous.bgp.as_ref().filter(|old| {
        next.bgp
            .as_ref()
            .is_none_or(|new| new.routes_file != old.routes_file)
    });
    StartRelease {
        addresses: (!addresses.is_empty()).then(|| (previous.interface.clone(), addresses)),
        // Any lbd may have left cls_bpf filters without tcx: `tc_lb` on
        // the ingress (attach = "tc"), `tc_hc_encap` on the egress
        // (checks through a tunnel, at either hook).
        tc_filters_on: moved.then(|| previous.interface.clone()),
        bgp: bgp.cloned(),
        settings: if moved {
            previous
                .forwarding
                .iter()
                .filter(|s| setting_of(s, &previous.interface))
                .cloned()
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Whether `setting` is one of interface `interface`'s
/// (`/proc/sys/net/<family>/conf/<interface>/<name>`).
fn setting_of(setting: &HeldSetting, interface: &str) -> bool {
    setting
        .path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|name| name == interface)
}

/// The `forwarding` originals a new record keeps: every one of the
/// previous record (the first lbd's original survives restarts), then the
/// new ones, one per setting.
pub(crate) fn carry_forwarding(previous: &[HeldSetting], next: &[HeldSetting]) -> Vec<HeldSetting> {
    let mut kept = previous.to_vec();
    for setting in next {
        if !kept.iter().any(|k| k.path == setting.path) {
            kept.push(setting.clone());
        }
    }
    kept
}

/// Where an offline action's knowledge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The record the lbd that ran left.
    Record,
    /// The config file (no record: an older lbd, or one that never ran).
    Config,
}

/// What an offline action undoes: the record's holdings if there is a
/// record, else what the config says (an lbd that left no record).
/// None when there is neither.
pub(crate) fn offline_plan(
    record: Option<&Held>,
    config: Option<(&Config, &Path)>,
) -> Option<(Held, Source)> {
    match (record, config) {
        (Some(record), _) => Some((record.clone(), Source::Record)),
        (None, Some((config, path))) => Some((Held::of(config, path), Source::Config)),
        (None, None) => None,
    }
}

/// The record of the lbd whose admin socket is `admin_socket`
/// (`<dir>/<stem>.held.json`).
pub(crate) fn record_path(admin_socket: &Path) -> Option<PathBuf> {
    let stem = admin_socket.file_stem()?.to_string_lossy();
    admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}{SUFFIX}")))
}

/// When this process started, in clock ticks after boot (field 22 of
/// `/proc/self/stat`; None if it cannot be read).
pub(crate) fn process_started() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')'.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This boot's id (empty if the kernel does not say).
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string(BOOT_ID)
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Whether a record written in boot `recorded` still describes this boot
/// `now` (an unknown id on either side is taken as this boot).
pub(crate) fn same_boot(recorded: &str, now: &str) -> bool {
    recorded.is_empty() || now.is_empty() || recorded == now
}

/// The record at `path`, if there is one from this boot; an unreadable
/// one is logged and ignored.
pub(crate) fn read(path: &Path) -> Option<Held> {
    let text = match read_trusted(path) {
        Ok(Some(text)) => text,
        Ok(None) => return None,
        Err(error) => {
            warn!(path = %path.display(), error = %format!("{error:#}"), "cannot read the record of what lbd held: ignored");
            return None;
        }
    };
    match Held::decode(&text) {
        Ok(held) if same_boot(&held.boot_id, &boot_id()) => Some(held),
        Ok(_) => {
            info!(path = %path.display(), "the record of what lbd held is from before a reboot: ignored");
            None
        }
        Err(error) => {
            warn!(path = %path.display(), %error, "unreadable record of what lbd held: ignored");
            None
        }
    }
}

/// The text of the record at `path` (None: there is none), if only root
/// or lbd's own user could have written it: a regular file (not followed
/// through a symlink) owned by root or lbd's euid, in a directory group
/// and others cannot write to. The offline actions act as root on what
/// it names; a record anyone else planted is refused, naming why.
fn read_trusted(path: &Path) -> anyhow::Result<Option<String>> {
    use std::{
        io::Read as _,
        os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    };
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("opening it (a symlink is refused)"),
    };
    let metadata = file.metadata().context("reading its owner")?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !metadata.is_file() {
        anyhow::bail!("it is not a regular file");
    }
    if metadata.uid() != 0 && metadata.uid() != euid {
        anyhow::bail!(
            "it is owned by uid {}, not root: someone else may have written it",
            metadata.uid()
        );
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir_mode = std::fs::metadata(dir)
        .with_context(|| format!("reading the mode of its directory {}", dir.display()))?
        .mode();
    if dir_mode & 0o022 != 0 {
        anyhow::bail!(
            "its directory {} is writable by group or others (mode {:o}): anyone who may write there could have put it there",
            dir.display(),
            dir_mode & 0o7777
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text).context("reading it")?;
    Ok(Some(text))
}

/// Replaces the record at `path` with `held` (a temporary file beside it,
/// renamed over it).
pub(crate) fn write(path: &Path, held: &Held) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temporary = path.with_file_name(format!(".{}.new", name.to_string_lossy()));
    // A file lbd creates now, never one found at the name (a symlink).
    let mut file = crate::fresh_file::create_fresh(&temporary, 0o666)?;
    std::io::Write::write_all(&mut file, held.encode().as_bytes())
        .with_context(|| format!("writing {}", temporary.display()))?;
    drop(file);
    std::fs::rename(&temporary, path)
        .with_context(|| format!("replacing {} with {}", path.display(), temporary.display()))
}

/// Finds the record of the lbd started with `config_path` when the
/// config could not be read, or its admin socket has none (`admin_socket`
/// edited since): in `dirs`, the newest record that names that config.
pub(crate) fn find(config_path: &Path, dirs: &[PathBuf]) -> Option<(PathBuf, Held)> {
    find_all(config_path, dirs).into_iter().next()
}

/// Every record in `dirs` that names `config_path`, newest first (by the
/// time it was last written; a directory listing's order says nothing).
pub(crate) fn find_all(config_path: &Path, dirs: &[PathBuf]) -> Vec<(PathBuf, Held)> {
    let wanted = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned());
    let mut found: Vec<(std::time::SystemTime, PathBuf, Held)> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_record = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(SUFFIX));
            if !is_record || found.iter().any(|(_, p, _)| *p == path) {
                continue;
            }
            if let Some(held) = read(&path).filter(|h| h.config == wanted) {
                let written = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((written, path, held));
            }
        }
    }
    // Newest first; the same time ordered by path, for a stable answer.
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found
        .into_iter()
        .map(|(_, path, held)| (path, held))
        .collect()
}

/// Where to look for the record when the config cannot be read: the
/// admin socket's directory if the file is TOML enough to name it, the
/// service's runtime directory (`$RUNTIME_DIRECTORY`, which systemd sets
/// for the unit's stop path), and the default admin socket's directory.
pub(crate) fn search_dirs(
    config_text: Option<&str>,
    runtime_directory: Option<&str>,
) -> Vec<PathBuf> {
    let named = config_text
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| {
            table
                .get("admin_socket")
                .and_then(|v| v.as_str())
                .map(PathBuf::from)
        });
    search_dirs_of(named.as_deref(), runtime_directory)
}

/// Where to look for the record of an lbd whose config names
/// `admin_socket` (if it is known) but whose admin socket has none: its
/// directory, the service's runtime directory and the default admin
/// socket's directory (see [`search_dirs`]).
pub(crate) fn search_dirs_of(
    admin_socket: Option<&Path>,
    runtime_directory: Option<&str>,
) -> Vec<PathBuf> {
    let named = admin_socket
        .and_then(Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(Path::to_owned);
    // systemd may list several runtime directories, separated by colons.
    let runtime = runtime_directory
        .into_iter()
        .flat_map(|dirs| dirs.split(':'))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let default = Path::new(crate::config::DEFAULT_ADMIN_SOCKET)
        .parent()
        .map(Path::to_owned);
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in named.into_iter().chain(runtime).chain(default) {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Writes the record of what this lbd (started with `config` from
/// `config_path`) may hold, after undoing what a previous lbd's record
/// holds that this one will not (see [`at_start`]). Called once this lbd
/// owns the data plane, the lock of its record included (see
/// `ownership::claim`). The previous record is the one at this admin
/// socket; without one (`admin_socket` edited), the newest naming this
/// config elsewhere whose lbd is gone, which is taken over (removed, with
/// older ones naming this config). Failures are logged: without a record
/// the offline actions fall back to the config file.
pub(crate) async fn on_start(config: &Config, config_path: &Path) -> Option<Held> {
    let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
    let dirs = search_dirs_of(Some(&config.admin_socket), runtime.as_deref());
    on_start_in(config, config_path, &dirs).await
}

/// [`on_start`], looking for records of other admin sockets in `dirs`.
/// Returns the previous lbd's record as it was found (None: none of
/// this boot), which names the lbd that ran last.
async fn on_start_in(config: &Config, config_path: &Path, dirs: &[PathBuf]) -> Option<Held> {
    let path = record_path(&config.admin_socket)?;
    let mut next = Held::of(config, config_path);
    let (previous, taken_over, _locks) = previous_record(&path, config_path, dirs);
    let found = previous.clone();
    if let Some(mut previous) = previous {
        let release = at_start(&previous, &next);
        if !release.is_empty() {
            let done = undo_at_start(config, config_path, &release).await;
            // Put back (or left to the lbd that runs there now): no longer
            // this lbd's to restore.
            previous.forwarding.retain(|s| !done.contains(&s.path));
        }
        next.forwarding = carry_forwarding(&previous.forwarding, &next.forwarding);
    }
    match write(&path, &next) {
        Ok(()) => {
            info!(path = %path.display(), "recorded what this lbd holds, for the stop path and --cleanup");
            for old in taken_over {
                if let Err(error) = std::fs::remove_file(&old) {
                    warn!(path = %old.display(), %error, "removing a record this lbd took over failed");
                }
            }
        }
        Err(error) => {
            warn!(error = %format!("{error:#}"), "recording what this lbd holds failed: lbd --release-vips and --cleanup will go by the config file")
        }
    }
    found
}

/// The record a start at `path` (this lbd's record) takes over: the one
/// at `path`; else the newest in `dirs` naming `config_path` whose lbd is
/// gone (its lock is free). Returns it, the records to remove once this
/// lbd's is written (that one and older ones naming the config), and
/// their locks, held meanwhile. A record whose lock another process holds
/// is a running lbd's: left to it.
fn previous_record(
    path: &Path,
    config_path: &Path,
    dirs: &[PathBuf],
) -> (
    Option<Held>,
    Vec<PathBuf>,
    Vec<crate::ownership::lock::Lock>,
) {
    if let Some(own) = read(path) {
        return (Some(own), Vec::new(), Vec::new());
    }
    let mut previous = None;
    let mut taken_over = Vec::new();
    let mut locks = Vec::new();
    for (other, held) in find_all(config_path, dirs) {
        if other == path {
            continue;
        }
        match super::try_record_lock(&other, config_path) {
            Ok(Some(lock)) => {
                if previous.is_none() {
                    info!(record = %other.display(), admin_socket = %held.admin_socket.display(), "taking over the record of the lbd that ran with this config and another admin socket");
                    previous = Some(held);
                } else {
                    info!(record = %other.display(), "an older record of this config is removed");
                }
                locks.push(lock);
                taken_over.push(other);
            }
            Ok(None) => {
                info!(record = %other.display(), pid = held.pid, "a record naming this config belongs to a running lbd: left to it");
            }
            Err(error) => {
                warn!(record = %other.display(), error = %format!("{error:#}"), "cannot lock a record naming this config: left");
            }
        }
    }
    (previous, taken_over, locks)
}

/// Leave to empty a recorded routes file: the lock of the file, held
/// while the routes are withdrawn (see [`lock_routes_file`]).
#[derive(Debug)]
pub(crate) struct RoutesFileFree {
    /// None: the file's directory is gone, so nobody uses the file.
    _lock: Option<crate::ownership::lock::Lock>,
}

/// Locks the routes file of a record's announcement `bgp` for a process
/// (started with `config_path`) about to withdraw its routes; None, with
/// a warning naming the file and the owner's pid, when a running lbd
/// holds its lock: that lbd announces through the file now, and emptying
/// it would withdraw its routes.
pub(crate) fn lock_routes_file(
    bgp: &HeldBgp,
    config_path: &Path,
) -> anyhow::Result<Option<RoutesFileFree>> {
    match super::try_bgp_file_lock(&bgp.routes_file, config_path)? {
        super::BgpFileLock::Held(lock) => Ok(Some(RoutesFileFree { _lock: lock })),
        super::BgpFileLock::Taken(owner) => {
            let owner = owner.map_or_else(|| "another lbd".to_owned(), |o| o.to_string());
            warn!(routes_file = %bgp.routes_file.display(), "BGP: the routes file recorded is used by {owner}, which is running: its routes are left to it, not withdrawn");
            Ok(None)
        }
    }
}

/// Withdraws the routes of a record's announcement `bgp` (see
/// [`lock_routes_file`]): false when a running lbd uses its routes file
/// and nothing was done.
pub(crate) async fn withdraw_recorded(bgp: &HeldBgp, config_path: &Path) -> anyhow::Result<bool> {
    let Some(_lock) = lock_routes_file(bgp, config_path)? else {
        return Ok(false);
    };
    crate::bgp::announcer::withdraw_routes(bgp).await?;
    Ok(true)
}

/// Takes the BGP announcement out of the record of the lbd whose admin
/// socket is `admin_socket`: a stop for good withdrew it, and a later
/// offline action must not empty the routes file again (another lbd may
/// use it by then).
pub(crate) fn forget_announcement(admin_socket: &Path) {
    let Some(path) = record_path(admin_socket) else {
        return;
    };
    let Some(mut held) = read(&path) else {
        return;
    };
    if held.bgp.take().is_some() {
        if let Err(error) = write(&path, &held) {
            warn!(error = %format!("{error:#}"), "updating the record of what lbd holds failed");
        }
    }
}

/// Undoes what a previous lbd held that this one will not: its routes
/// unless a running lbd now uses its routes file; its addresses, filters
/// and settings unless a running lbd owns the previous interface.
/// Returns the settings of `release` no longer this lbd's to restore:
/// put back (under the previous interface's lock), or left to the lbd
/// that owns that interface now (this lbd must not write over them
/// later); none when that could not be told.
async fn undo_at_start(
    config: &Config,
    config_path: &Path,
    release: &StartRelease,
) -> Vec<PathBuf> {
    if let Some(bgp) = &release.bgp {
        info!(routes_file = %bgp.routes_file.display(), "BGP: the previous lbd announced through a routes file this lbd does not use; withdrawing its routes");
        if let Err(error) = withdraw_recorded(bgp, config_path).await {
            warn!(error = %format!("{error:#}"), routes_file = %bgp.routes_file.display(), "BGP: withdrawing the previous lbd's routes failed; empty that file and `birdc configure` by hand");
        }
    }
    let other_interface = release
        .addresses
        .as_ref()
        .map(|(name, _)| name)
        .or(release.tc_filters_on.as_ref())
        .filter(|name| **name != config.interface);
    let settings: Vec<PathBuf> = release.settings.iter().map(|s| s.path.clone()).collect();
    // Another lbd may run on the previous interface now (the previous
    // one is gone: this lbd holds its record's lock): its lock says.
    let _lock = match other_interface {
        Some(name) => match super::try_interface_lock(config, config_path, name) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                warn!(interface = %name, "the previous lbd's interface is owned by a running lbd: its addresses, filters and settings (forwarding, accept_local) are left to it");
                return settings;
            }
            Err(error) => {
                warn!(interface = %name, error = %format!("{error:#}"), "cannot lock the previous lbd's interface: its addresses, filters and settings are left");
                return Vec::new();
            }
        },
        None => None,
    };
    if !release.settings.is_empty() {
        info!("the previous lbd's interface is not this one's: the settings it switched on there are put back");
        restore(&release.settings);
    }
    let netlink = match crate::netlink::Netlink::connect() {
        Ok(netlink) => netlink,
        Err(error) => {
            warn!(%error, "cannot undo the previous lbd's addresses");
            return settings;
        }
    };
    if let Some((name, addresses)) = &release.addresses {
        if let Err(error) = remove_addresses(&netlink, name, addresses).await {
            warn!(error = %format!("{error:#}"), interface = %name, "removing the previous lbd's VIP addresses failed");
        }
    }
    if let Some(name) = &release.tc_filters_on {
        if let Ok(interface) = netlink.interface(name).await {
            if let Err(error) =
                super::cls_bpf::remove_left_filters(&interface.name, interface.index, None).await
            {
                warn!(error = %format!("{error:#}"), interface = %name, "removing the tc filters the previous lbd left failed");
            }
        }
    }
    settings
}

/// Removes lbd's `addresses` (host prefixes only) from interface `name`.
/// An interface that is gone took them with it.
pub(crate) async fn remove_addresses(
    netlink: &crate::netlink::Netlink,
    name: &str,
    addresses: &[IpAddr],
) -> anyhow::Result<()> {
    let interface = match netlink.interface(name).await {
        Ok(interface) => interface,
        Err(crate::netlink::NetlinkError::NoSuchInterface(_)) => {
            warn!(interface = %name, "interface no longer exists: its VIP addresses went with it");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    for address in addresses {
        // Never the interface's own address (see vrrp::addresses).
        let removal = crate::vrrp::addresses::remove(netlink, interface.index, *address)
            .await
            .with_context(|| format!("removing VIP {address} from {}", interface.name))?;
        match removal {
            crate::vrrp::addresses::Removal::Removed => {
                info!(%address, interface = %interface.name, "VIP address removed");
            }
            crate::vrrp::addresses::Removal::Absent => {
                tracing::debug!(%address, interface = %interface.name, "VIP address not held");
            }
            // `remove` warned.
            crate::vrrp::addresses::Removal::Own => {}
        }
    }
    Ok(())
}

/// Whether the record of the lbd whose admin socket is `admin_socket`
/// says it ran at tc on `interface` with `pin_dir = "off"`: the only sign
/// that a cls_bpf filter running lbd's tc program there (it outlives a
/// killed lbd, and nothing of it is pinned) is that lbd's, so this one's
/// to replace. Read while this lbd holds the record's lock (see
/// `ownership::claim`): its lbd is gone.
pub(crate) fn ran_unpinned_tc_on(admin_socket: &Path, interface: &str) -> bool {
    record_path(admin_socket)
        .and_then(|path| read(&path))
        .is_some_and(|held| held.interface == interface && held.attach_tc && held.pin_dir.is_none())
}

/// The original value recorded for interface setting `setting`
/// (`forwarding`, `accept_local`) by the
/// lbd whose admin socket is `admin_socket` (or one before it).
pub(crate) fn recorded_original(admin_socket: &Path, setting: &Path) -> Option<String> {
    let held = read(&record_path(admin_socket)?)?;
    held.forwarding
        .into_iter()
        .find(|s| s.path == setting)
        .map(|s| s.was)
}

/// Records that `setting` was `was` before lbd switched it on (kept if a
/// value is recorded already: that is the older original).
pub(crate) fn record_original(
    admin_socket: &Path,
    setting: &Path,
    was: &str,
) -> anyhow::Result<()> {
    let path = record_path(admin_socket).context("the admin socket names no file")?;
    let mut held = read(&path).with_context(|| format!("no record at {}", path.display()))?;
    let new = [HeldSetting {
        path: setting.to_owned(),
        was: was.to_owned(),
    }];
    let kept = carry_forwarding(&held.forwarding, &new);
    if kept == held.forwarding {
        return Ok(());
    }
    held.forwarding = kept;
    write(&path, &held)
}

/// Drops `setting` from the record of the lbd whose admin socket is
/// `admin_socket`: lbd put it back itself while running (`accept_local`
/// once no check goes through the tunnel), so a later stop or cleanup must
/// not write the old value over one set since.
pub(crate) fn forget_original(admin_socket: &Path, setting: &Path) {
    let Some(path) = record_path(admin_socket) else {
        return;
    };
    let Some(mut held) = read(&path) else {
        return;
    };
    let before = held.forwarding.len();
    held.forwarding.retain(|s| s.path != setting);
    if held.forwarding.len() != before {
        if let Err(error) = write(&path, &held) {
            warn!(error = %format!("{error:#}"), "updating the record of what lbd holds failed");
        }
    }
}

/// Takes the recorded forwarding originals out of the record of the lbd
/// whose admin socket is `admin_socket` (they are being restored: a later
/// lbd must not restore them again over a value set since).
pub(crate) fn take_originals(admin_socket: &Path) -> Vec<HeldSetting> {
    let Some(path) = record_path(admin_socket) else {
        return Vec::new();
    };
    let Some(mut held) = read(&path) else {
        return Vec::new();
    };
    let taken = std::mem::take(&mut held.forwarding);
    if !taken.is_empty() {
        if let Err(error) = write(&path, &held) {
            warn!(error = %format!("{error:#}"), "updating the record of what lbd holds failed");
        }
    }
    taken
}

/// Puts `settings` back to their original values (a clean stop, a
/// cleanup). A setting whose interface is gone went with it.
pub(crate) fn restore(settings: &[HeldSetting]) {
    for setting in settings {
        match std::fs::write(&setting.path, &setting.was) {
            Ok(()) => {
                info!(setting = %setting.path.display(), value = %setting.was, "interface setting restored");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                info!(setting = %setting.path.display(), "interface setting not restored: its interface is gone");
            }
            Err(error) => {
                warn!(setting = %setting.path.display(), %error, "restoring the interface setting failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    fn held(interface: &str, addresses: &[&str], routes: Option<&str>) -> Held {
        Held {
            config: PathBuf::from("/etc/lbd/lbd.toml"),
            pid: 42,
            boot_id: "b".into(),
            started: None,
            admin_socket: PathBuf::from("/run/lbd/lbd.sock"),
            pin_dir: Some(PathBuf::from("/sys/fs/bpf/lbd")),
            interface: interface.into(),
            attach_tc: false,
            addresses: addresses
                .iter()
                .map(|a| a.parse().expect("address"))
                .collect(),
            bgp: routes.map(|r| HeldBgp {
                bird_socket: PathBuf::from("/run/bird/bird.ctl"),
                routes_file: PathBuf::from(r),
                protocol: "lbd_vips".into(),
            }),
            forwarding: Vec::new(),
        }
    }

    fn setting(path: &str, was: &str) -> HeldSetting {
        HeldSetting {
            path: PathBuf::from(path),
            was: was.into(),
        }
    }

    #[test]
    fn a_record_reads_back_what_was_written() {
        let mut record = held(
            "eth0",
            &["198.18.0.100", "2001:2::100"],
            Some("/run/lbd-bgp/vips.conf"),
        );
        record.attach_tc = true;
        record.forwarding = vec![setting("/proc/sys/net/ipv4/conf/eth0/forwarding", "0")];
        assert_eq!(Held::decode(&record.encode()).expect("decode"), record);
        record.bgp = None;
        record.pin_dir = None;
        assert_eq!(Held::decode(&record.encode()).expect("decode"), record);
    }

    #[test]
    fn junk_is_no_record() {
        for text in ["", "junk", "{}", "{\"interface\": 3}"] {
            assert!(Held::decode(text).is_err(), "{text:?}");
        }
    }

    /// A recorded setting is written back as root: only an interface's
    /// own `forwarding`, `accept_local` or `accept_ra` under
    /// `/proc/sys/net`, to a small integer, is read; any other is left out
    /// with a warning naming it, and the rest of the record stands.
    #[test]
    fn a_recorded_setting_other_than_an_interface_switch_is_refused() {
        let mut record = held("eth0", &["198.18.0.100"], None);
        let good = vec![
            setting("/proc/sys/net/ipv4/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv6/conf/eth0.100/accept_ra", "1"),
            setting("/proc/sys/net/ipv4/conf/all/accept_local", "0"),
        ];
        let bad = vec![
            setting("/etc/passwd", "0"),
            setting("/etc/ld.so.preload", "0"),
            setting("/proc/sys/net/ipv4/conf/eth0/rp_filter", "0"),
            setting("/proc/sys/net/ipv4/conf/../../../../../etc/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth0/x/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf//forwarding", "0"),
            setting("/proc/sys/net/ipv5/conf/eth0/forwarding", "0"),
            setting("proc/sys/net/ipv4/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "/tmp/evil.so"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "1 2"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "100000"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", ""),
        ];
        record.forwarding = good.iter().chain(&bad).cloned().collect();
        let mut decoded = None;
        let logs = crate::test_logs::logs_of(|| {
            decoded = Some(Held::decode(&record.encode()).expect("decode"));
        });
        let decoded = decoded.expect("decoded");
        assert_eq!(decoded.forwarding, good);
        assert_eq!(decoded.interface, "eth0", "the rest stands");
        assert_eq!(logs.matches("WARN").count(), bad.len(), "{logs}");
        assert!(logs.contains("/etc/passwd"), "{logs}");
        assert!(logs.contains("/tmp/evil.so"), "{logs}");
    }

    /// A record is read only if nobody but root (or this lbd's user) may
    /// have written it: owned by root or lbd's euid, in a directory group
    /// and others cannot write to. Otherwise it is skipped, with a warning
    /// naming it.
    #[test]
    fn a_record_others_may_have_written_is_not_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = Scratch::new("trust");
        std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755)).expect("mode");
        let mut record = held("eth0", &["198.18.0.100"], None);
        record.boot_id = boot_id();
        let path = scratch.record("lbd", &record, 0);
        assert!(read(&path).is_some(), "lbd's own record is read");
        for mode in [0o775, 0o757, 0o1777] {
            std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(mode))
                .expect("mode");
            let mut found = Some(None);
            let logs = crate::test_logs::logs_of(|| found = Some(read(&path)));
            assert_eq!(found, Some(None), "read from a {mode:o} directory");
            assert!(
                logs.contains("WARN") && logs.contains(&path.display().to_string()),
                "{logs}"
            );
        }
        std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755)).expect("mode");
        // Another user's file (only root may give a file away).
        let me = std::fs::metadata(&path).expect("stat");
        if std::os::unix::fs::chown(&path, Some(4242), Some(4242)).is_ok() {
            let mut found = Some(None);
            let logs = crate::test_logs::logs_of(|| found = Some(read(&path)));
            assert_eq!(found, Some(None), "another user's record was read");
            assert!(logs.contains(&path.display().to_string()), "{logs}");
            use std::os::unix::fs::MetadataExt as _;
            std::os::unix::fs::chown(&path, Some(me.uid()), Some(me.gid())).expect("chown");
            assert!(read(&path).is_some());
        }
    }

    /// A symlink planted at the record's temporary name is never
    /// followed: the file it points to is left as it was.
    #[test]
    fn a_symlink_at_the_records_temporary_name_is_not_followed() {
        let scratch = Scratch::new("symlink");
        let victim = scratch.0.join("victim");
        std::fs::write(&victim, "secret\n").expect("victim");
        let path = scratch.0.join("lbd.held.json");
        std::os::unix::fs::symlink(&victim, scratch.0.join(".lbd.held.json.new")).expect("symlink");
        let mut record = held("eth0", &[], None);
        record.boot_id = boot_id();
        write(&path, &record).expect("write");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "secret\n"
        );
        assert!(!std::fs::symlink_metadata(&path).expect("stat").is_symlink());
        assert_eq!(read(&path), Some(record));
    }

    #[test]
    fn the_record_sits_beside_the_admin_socket() {
        assert_eq!(
            record_path(Path::new("/run/lbd/lbd-eth1.sock")),
            Some(PathBuf::from("/run/lbd/lbd-eth1.held.json"))
        );
    }

    #[test]
    fn a_record_of_another_boot_is_stale() {
        assert!(same_boot("a", "a"));
        assert!(!same_boot("a", "b"));
        assert!(same_boot("", "b"), "an unknown boot is taken as this one");
    }

    #[test]
    fn an_unchanged_restart_undoes_nothing() {
        let record = held("eth0", &["198.18.0.100"], Some("/run/lbd-bgp/vips.conf"));
        assert!(at_start(&record, &record.clone()).is_empty());
    }

    #[test]
    fn a_new_interface_takes_every_old_address_and_the_old_filters() {
        let mut old = held("eth0", &["198.18.0.100", "198.18.0.101"], None);
        old.attach_tc = true;
        let new = held("eth1", &["198.18.0.100"], None);
        let release = at_start(&old, &new);
        assert_eq!(
            release.addresses,
            Some(("eth0".to_owned(), old.addresses.clone()))
        );
        assert_eq!(release.tc_filters_on.as_deref(), Some("eth0"));
        // An XDP lbd with checks through a tunnel leaves tc_hc_encap's
        // egress filters without tcx.
        old.attach_tc = false;
        assert_eq!(at_start(&old, &new).tc_filters_on.as_deref(), Some("eth0"));
        // The same interface: its own sweep takes them.
        assert_eq!(at_start(&old, &old).tc_filters_on, None);
    }

    /// Moved to another interface, the settings lbd switched on for the
    /// old one go back (the old interface's only); on the same interface
    /// they stay.
    #[test]
    fn a_new_interface_puts_back_the_old_ones_settings() {
        let mut old = held("eth0", &[], None);
        old.forwarding = vec![
            setting("/proc/sys/net/ipv4/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv6/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth0/accept_local", "0"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth00/forwarding", "0"),
        ];
        let release = at_start(&old, &held("eth1", &[], None));
        assert_eq!(release.settings, old.forwarding[..3].to_vec());
        assert!(!release.is_empty());
        assert_eq!(at_start(&old, &old.clone()).settings, Vec::new());
        assert!(at_start(&old, &old.clone()).is_empty());
    }

    #[test]
    fn only_addresses_no_longer_listed_go_on_the_same_interface() {
        let old = held("eth0", &["198.18.0.100", "198.18.0.101"], None);
        let new = held("eth0", &["198.18.0.101", "198.18.0.102"], None);
        assert_eq!(
            at_start(&old, &new).addresses,
            Some((
                "eth0".to_owned(),
                vec!["198.18.0.100".parse().expect("address")]
            ))
        );
    }

    #[test]
    fn bgp_removed_or_moved_withdraws_the_old_routes_file() {
        let old = held("eth0", &[], Some("/run/lbd-bgp/vips.conf"));
        let none = held("eth0", &[], None);
        let moved = held("eth0", &[], Some("/run/lbd-bgp/other.conf"));
        assert_eq!(at_start(&old, &none).bgp, old.bgp);
        assert_eq!(at_start(&old, &moved).bgp, old.bgp);
        assert_eq!(at_start(&old, &old.clone()).bgp, None);
        assert_eq!(at_start(&none, &old).bgp, None, "nothing announced before");
    }

    #[test]
    fn the_first_original_survives_restarts() {
        let first = vec![setting("/p/eth0/forwarding", "0")];
        // A restarted lbd finds "1" (the first switched it on) and would
        // record nothing; the record keeps "0".
        assert_eq!(carry_forwarding(&first, &[]), first);
        assert_eq!(
            carry_forwarding(&first, &[setting("/p/eth0/forwarding", "1")]),
            first
        );
        let both = carry_forwarding(&first, &[setting("/p/eth1/forwarding", "0")]);
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn an_offline_action_goes_by_the_record_over_the_config() {
        let text = "interface = \"eth1\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:00:11\"\n";
        let config = Config::from_toml_str(text, "lbd.toml").expect("config");
        let record = held("eth0", &["198.18.0.100"], Some("/run/lbd-bgp/vips.conf"));
        let path = Path::new("/etc/lbd/lbd.toml");
        let (plan, source) = offline_plan(Some(&record), Some((&config, path))).expect("plan");
        assert_eq!((plan, source), (record.clone(), Source::Record));
        let (plan, source) = offline_plan(None, Some((&config, path))).expect("plan");
        assert_eq!(source, Source::Config);
        assert_eq!(plan.interface, "eth1");
        assert_eq!(plan.bgp, None);
        let (plan, _) = offline_plan(Some(&record), None).expect("plan");
        assert_eq!(plan, record);
        assert_eq!(offline_plan(None, None), None);
    }

    #[test]
    fn an_unreadable_config_is_searched_for_where_its_lbd_ran() {
        let dirs = search_dirs(
            Some("admin_socket = \"/run/lbd/x.sock\"\ninterface = 3\n"),
            None,
        );
        assert_eq!(dirs, vec![PathBuf::from("/run/lbd")]);
        let dirs = search_dirs(
            Some("admin_socket = \"/tmp/l/x.sock\"\n"),
            Some("/run/lbd2"),
        );
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/tmp/l"),
                PathBuf::from("/run/lbd2"),
                PathBuf::from("/run/lbd")
            ]
        );
        let dirs = search_dirs(Some("junk ]]"), Some("/tmp/run"));
        assert_eq!(
            dirs,
            vec![PathBuf::from("/tmp/run"), PathBuf::from("/run/lbd")]
        );
        assert_eq!(search_dirs(None, None), vec![PathBuf::from("/run/lbd")]);
    }

    /// A directory of this test's, removed when dropped.
    struct Scratch(ScratchDir);

    impl Scratch {
        fn new(tag: &str) -> Self {
            Self(ScratchDir::new(&format!("held-{tag}")))
        }

        /// Writes `record` as the record of admin socket `<dir>/<stem>.sock`,
        /// last written `age_s` seconds ago.
        fn record(&self, stem: &str, record: &Held, age_s: u64) -> PathBuf {
            let mut record = record.clone();
            record.admin_socket = self.0.join(format!("{stem}.sock"));
            let path = record_path(&record.admin_socket).expect("path");
            write(&path, &record).expect("write");
            let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(when))
                .expect("mtime");
            path
        }
    }

    #[test]
    fn the_newest_record_of_a_config_is_found_whatever_the_listing_order() {
        let scratch = Scratch::new("newest");
        let mut record = held("eth0", &["198.18.0.100"], None);
        record.boot_id = boot_id();
        // Written in both orders (a directory lists its entries in no
        // promised order): the newest wins, not the first listed.
        for (first, second) in [("a", "b"), ("b", "a")] {
            let _ = std::fs::remove_dir_all(&scratch.0);
            std::fs::create_dir_all(&scratch.0).expect("dir");
            let old = scratch.record(first, &record, 3600);
            let new = scratch.record(second, &record, 0);
            let found = find(
                Path::new("/etc/lbd/lbd.toml"),
                &[scratch.0.path().to_path_buf()],
            );
            assert_eq!(found.map(|(p, _)| p), Some(new.clone()));
            let all: Vec<PathBuf> = find_all(
                Path::new("/etc/lbd/lbd.toml"),
                &[
                    scratch.0.path().to_path_buf(),
                    scratch.0.path().to_path_buf(),
                ],
            )
            .into_iter()
            .map(|(p, _)| p)
            .collect();
            assert_eq!(all, vec![new, old], "newest first, each once");
        }
    }

    fn config_at(scratch: &Scratch, stem: &str) -> Config {
        let text = format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:00:11\"\n",
            scratch.0.join(format!("{stem}.sock")).display()
        );
        Config::from_toml_str(&text, "lbd.toml").expect("config")
    }

    /// `admin_socket` edited across a restart: the new lbd takes over the
    /// newest record naming its config (the first lbd's forwarding
    /// original survives) and removes the older ones, but not a running
    /// lbd's (its record's lock is held).
    #[tokio::test]
    async fn a_start_takes_over_the_record_of_its_config_under_another_admin_socket() {
        let scratch = Scratch::new("takeover");
        let config_path = scratch.0.join("lbd.toml");
        let mut record = held("eth0", &[], None);
        record.boot_id = boot_id();
        record.config = config_path.clone();
        let forwarding = "/proc/sys/net/ipv4/conf/eth0/forwarding";
        record.forwarding = vec![setting(forwarding, "0")];
        let newest = scratch.record("old", &record, 10);
        let mut older_record = record.clone();
        older_record.forwarding = vec![setting(forwarding, "2")];
        let older = scratch.record("older", &older_record, 3600);
        let mut running = record.clone();
        running.forwarding = vec![setting(forwarding, "3")];
        let running_path = scratch.record("running", &running, 0);
        let me = crate::ownership::lock::OwnerRecord {
            pid: 4242,
            config: config_path.clone(),
        };
        let crate::ownership::lock::Attempt::Held(running_lock) =
            crate::ownership::lock::lock_file(
                &crate::ownership::bgp_file_lock_path(&running_path),
                &me,
            )
            .expect("lock")
        else {
            panic!("the running lbd's record lock was taken");
        };

        let config = config_at(&scratch, "new");
        on_start_in(&config, &config_path, &[scratch.0.path().to_path_buf()]).await;
        let mine = read(&record_path(&config.admin_socket).expect("path")).expect("written");
        assert_eq!(mine.admin_socket, config.admin_socket);
        assert_eq!(
            mine.forwarding, record.forwarding,
            "the newest free record's"
        );
        assert!(!newest.exists(), "taken over");
        assert!(!older.exists(), "an older one removed");
        assert!(running_path.exists(), "a running lbd's is left");
        assert_eq!(
            read(&running_path),
            Some({
                let mut r = running.clone();
                r.admin_socket = scratch.0.join("running.sock");
                r
            })
        );
        drop(running_lock);
    }

    /// A routes file a record names is emptied only while no running lbd
    /// holds its lock: otherwise that lbd's routes stay.
    #[tokio::test]
    async fn a_recorded_routes_file_a_running_lbd_uses_is_left_alone() {
        let scratch = Scratch::new("routes");
        let bgp = HeldBgp {
            bird_socket: scratch.0.join("no-bird.ctl"),
            routes_file: scratch.0.join("vips.conf"),
            protocol: "lbd_vips".into(),
        };
        let routes = "protocol static lbd_vips4 { route 198.18.0.100/32 blackhole; }\n";
        std::fs::write(&bgp.routes_file, routes).expect("routes");
        let owner = crate::ownership::lock::OwnerRecord {
            pid: 4343,
            config: PathBuf::from("/etc/lbd/other.toml"),
        };
        let crate::ownership::lock::Attempt::Held(lock) = crate::ownership::lock::lock_file(
            &crate::ownership::bgp_file_lock_path(&bgp.routes_file),
            &owner,
        )
        .expect("lock") else {
            panic!("taken");
        };
        let config_path = Path::new("/etc/lbd/lbd.toml");
        assert!(!withdraw_recorded(&bgp, config_path).await.expect("skipped"));
        assert_eq!(
            std::fs::read_to_string(&bgp.routes_file).expect("read"),
            routes
        );
        drop(lock);
        // Free now: emptied (then BIRD, absent here, is asked to reload).
        assert!(withdraw_recorded(&bgp, config_path).await.is_err());
        assert_ne!(
            std::fs::read_to_string(&bgp.routes_file).expect("read"),
            routes
        );
    }

    #[test]
    fn a_record_is_found_by_its_config_and_updated_in_place() {
        let dir = std::env::temp_dir().join(format!("lbd-held-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut record = held("eth0", &["198.18.0.100"], None);
        record.boot_id = boot_id();
        record.admin_socket = dir.join("lbd.sock");
        let path = record_path(&record.admin_socket).expect("path");
        write(&path, &record).expect("write");
        let mut other = record.clone();
        other.config = PathBuf::from("/etc/lbd/other.toml");
        write(&dir.join("lbd-other.held.json"), &other).expect("write");
        std::fs::write(dir.join("junk.held.json"), "junk").expect("write");
        let found = find(
            Path::new("/etc/lbd/lbd.toml"),
            &[PathBuf::from("/nonexistent"), dir.clone()],
        );
        assert_eq!(found, Some((path.clone(), record.clone())));
        assert_eq!(
            find(Path::new("/etc/lbd/none.toml"), std::slice::from_ref(&dir)),
            None
        );

        let setting = Path::new("/proc/sys/net/ipv4/conf/eth0/forwarding");
        record_original(&record.admin_socket, setting, "0").expect("record");
        // A later lbd sees "1" and must not replace the original.
        record_original(&record.admin_socket, setting, "1").expect("record");
        assert_eq!(
            recorded_original(&record.admin_socket, setting).as_deref(),
            Some("0")
        );
        let taken = take_originals(&record.admin_socket);
        assert_eq!(
            taken,
            vec![HeldSetting {
                path: setting.to_owned(),
                was: "0".into()
            }]
        );
        assert_eq!(recorded_original(&record.admin_socket, setting), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
