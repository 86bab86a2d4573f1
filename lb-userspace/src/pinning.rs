//! The data plane outlives lbd: its maps and its XDP or tc link are pinned in a
//! BPF filesystem, so a restarted (or upgraded, or killed) lbd finds the
//! program still forwarding and the connection table intact, adopts both,
//! and swaps in its own program atomically. `lbd --cleanup` removes it all.
//!
//! Layout under the pin directory (default `/sys/fs/bpf/lbd`):
//! `maps-v<LAYOUT_VERSION>/<MAP>`, and `xdp-link-<interface>` or
//! `tc-link-<interface>` (the tcx ingress link, `attach = "tc"`). While an
//! lbd that does not adopt the pinned state starts, the maps it makes in
//! place of the pinned ones wait in `maps-v<LAYOUT_VERSION>-staged/` and
//! take their names only once its program runs (`promote_staged`): a
//! start that stops before leaves the previous lbd's pins as they were.

use std::path::{Path, PathBuf};

use lb_bpffs::BpffsError;
use lb_common::consts::names;

mod format;

#[cfg(test)]
pub(crate) use format::FormatStamp;
pub use format::FORMAT_EPOCH;
pub(crate) use format::{layout_version_of, FormatFit, LayoutAge};

/// Bumped whenever a pinned map's key or value layout changes meaning
/// without changing size: a new lbd then starts from fresh maps instead of
/// misreading the old ones. (A change of where entries are placed or what
/// they mean that an upgrade can carry over bumps [`FORMAT_EPOCH`]
/// instead: the newer build adopts and converts, an older one refuses.)
pub const LAYOUT_VERSION: u32 = 1;

/// Where bpffs is mounted by convention (and where lbd mounts it if
/// nothing is).
pub(crate) const BPFFS_MOUNT: &str = lb_bpffs::MOUNT;

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
pub(crate) const STATE_MAPS: [&str; 6] = [
    names::MAP_VIPS,
    names::MAP_MAGLEV,
    names::MAP_BACKENDS,
    names::MAP_CONNTRACK,
    names::MAP_FLOW_BUCKETS,
    names::MAP_NAT_BUCKETS,
];

/// Maps that point into the state maps (backend ids and generations) or
/// mirror them, but that the rest does not need: adopted only together
/// with the state maps, yet one that does not fit this lbd (`half_open_size`
/// changed; no VIP index pinned by an older release; NAT sources of another
/// VIP capacity, as releases that kept them at 16 pinned) is started afresh
/// alone, with a warning, and the rest is still adopted (a half-open flow
/// lost costs nothing: its ACK takes Maglev's pick; the VIP index is
/// rebuilt from `VIPS`, and every NAT VIP's source written again by the
/// first commit, before this lbd's program runs).
///
/// The guard maps are among them: `VIP_GUARDS` is indexed by VIP id and
/// the ACL tries and token buckets are scoped by it, so an lbd that numbers
/// its VIPs afresh must not write them while the previous lbd's program,
/// numbering by its own `VIPS`, still reads them (another VIP's allow list
/// would filter a VIP until the swap).
///
/// So are the traffic counters, `VIP_STATS` and `BACKEND_STATS`, indexed
/// by VIP and backend id: an lbd that numbers afresh clears them for its
/// ids at its first commit, and shared, the previous lbd's program would
/// go on counting its own VIP or backend of that id there until the swap
/// (a new backend would start with another's traffic). An lbd that adopts
/// the state keeps them: the counters go on across a restart.
pub(crate) const DEPENDENT_MAPS: [&str; 10] = [
    names::MAP_HALF_OPEN,
    names::MAP_VIP_STATS,
    names::MAP_BACKEND_STATS,
    names::MAP_VIP_INDEX,
    names::MAP_NAT_SOURCES,
    names::MAP_VIP_GUARDS,
    names::MAP_ACL_V4,
    names::MAP_ACL_V6,
    names::MAP_ACL_HITS,
    names::MAP_LIMIT_BUCKETS,
];

/// The pins of the tables a previous lbd's flows are carried over from
/// (`conntrack::legacy`, `nat::legacy`): their entries name VIPs and
/// backends by the ids of the state maps they were written against, so
/// they go when a start replaces those (`PinDir::promote_staged`).
pub(crate) const CARRIED_FROM: [&str; 6] = [
    crate::conntrack::legacy::MOVED_PIN,
    crate::conntrack::legacy::RESIZED_PIN,
    crate::conntrack::legacy::RESIZED_AGAIN_PIN,
    crate::nat::legacy::RESIZED_PIN,
    crate::nat::legacy::RESIZED_AGAIN_PIN,
    names::MAP_NAT_FLOWS,
];

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

    /// Where a start that does not adopt the pinned state stages the maps
    /// it makes in place of the pinned ones until its program runs
    /// (`promote_staged`).
    pub(crate) fn staged_dir(&self) -> PathBuf {
        self.root.join(format!("maps-v{LAYOUT_VERSION}-staged"))
    }

    /// Where map `name` is staged.
    pub(crate) fn staged_path(&self, name: &str) -> PathBuf {
        self.staged_dir().join(name)
    }

    /// The maps staged (`staged_dir`), each with its pin, by name; none
    /// when nothing is staged.
    pub(crate) fn staged_pins(&self) -> Result<Vec<(String, PathBuf)>, PinError> {
        let dir = self.staged_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PinError::Io {
                    action: "listing",
                    path: dir,
                    source,
                })
            }
        };
        let mut staged: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
            .collect();
        staged.sort();
        Ok(staged)
    }

    /// Puts the staged maps in place, once the program of the start that
    /// staged them runs: each is renamed over the pin of its name (the
    /// previous lbd's goes at once, no moment without one), then the
    /// staged directory goes. With `drop_carried` (the state maps were
    /// replaced) the `CARRIED_FROM` pins go first: their flows name VIPs
    /// and backends of the replaced maps. Run again after a failure part
    /// way (`dataplane::recover_staged`), it goes on with what is left.
    /// Returns the names put in place.
    pub(crate) fn promote_staged(&self, drop_carried: bool) -> Result<Vec<String>, PinError> {
        let staged = self.staged_pins()?;
        if drop_carried {
            for name in CARRIED_FROM {
                remove_file(&self.map_path(name))?;
            }
        }
        let mut moved = Vec::with_capacity(staged.len());
        for (name, path) in staged {
            let to = self.map_path(&name);
            std::fs::rename(&path, &to).map_err(|source| PinError::Io {
                action: "putting a staged map in place at",
                path: to,
                source,
            })?;
            moved.push(name);
        }
        remove_dir(&self.staged_dir())?;
        Ok(moved)
    }

    /// Removes the staged maps and their directory: the start that
    /// staged them stopped before its program ran, and the pins they were
    /// to replace stay as they are. Returns how many went.
    pub(crate) fn discard_staged(&self) -> Result<usize, PinError> {
        let staged = self.staged_pins()?;
        for (_, path) in &staged {
            remove_file(path)?;
        }
        remove_dir(&self.staged_dir())?;
        Ok(staged.len())
    }

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
        lb_bpffs::ensure(&self.root).map_err(|e| match e {
            BpffsError::NotBpffs(dir) => PinError::NotBpffs(dir),
            BpffsError::PrivateMountNamespace(dir) => PinError::PrivateMountNamespace(dir),
            BpffsError::Mount { path, source } => PinError::Io {
                action: "mounting bpffs on",
                path,
                source,
            },
        })?;
        let maps = self.maps_dir();
        std::fs::create_dir_all(&maps).map_err(|source| PinError::Io {
            action: "creating",
            path: maps,
            source,
        })
    }

    /// Removes the maps of other layout versions (an lbd of an older
    /// release pinned them, or of a newer one this build was downgraded
    /// from; this one started its own beside them): once
    /// this lbd's program runs and the old program is gone from every
    /// hook nothing uses them, and pinned they would hold their memory
    /// (a connection table, hundreds of MB) until a reboot, and a later
    /// downgrade would adopt their stale state. Returns what was removed.
    pub(crate) fn remove_other_layouts(&self) -> Result<Vec<PathBuf>, PinError> {
        let current = self.maps_dir();
        let mut removed = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(removed);
        };
        let others = entries.flatten().map(|entry| entry.path()).filter(|path| {
            *path != current
                && path.is_dir()
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(is_layout_dir)
        });
        for dir in others {
            let files = std::fs::read_dir(&dir).map_err(|source| PinError::Io {
                action: "listing",
                path: dir.clone(),
                source,
            })?;
            for path in files.flatten().map(|entry| entry.path()) {
                std::fs::remove_file(&path).map_err(|source| PinError::Io {
                    action: "removing",
                    path: path.clone(),
                    source,
                })?;
                removed.push(path);
            }
            std::fs::remove_dir(&dir).map_err(|source| PinError::Io {
                action: "removing",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(removed)
    }

    /// Removes everything lbd pinned here: links (which detaches their
    /// programs once nothing else holds them) and maps (freed once no
    /// program uses them), every layout version's, and the owner record;
    /// then the directory, if that left it empty. Only lbd's own names
    /// (see [`is_lbd_name`]) go, and of the links only those that run
    /// lbd's program (see [`link_owner`]): `pin_dir` may be any directory
    /// on bpffs, `/sys/fs/bpf` itself too, where lb-decap pins its links
    /// under the same names, and other tools' pins there are not lbd's to
    /// remove (what is left is logged). Returns what was removed.
    pub(crate) fn remove_all(&self) -> Result<Vec<PathBuf>, PinError> {
        self.remove_where(|_, _| true)
    }

    /// The pins of lbd's names here now, each with its inode: what a
    /// start found before it made anything, so that undoing a failed
    /// start (`remove_made_since`) removes only what it made. A pin
    /// replaced since (a staged map renamed over it, a link pinned anew)
    /// is another inode, so it counts as made since.
    pub(crate) fn snapshot(&self) -> Result<PinSnapshot, PinError> {
        let mut pins = std::collections::BTreeSet::new();
        let (layouts, files, _) = self.lbd_entries()?;
        for dir in layouts {
            for (path, ino) in files_in(&dir)? {
                pins.insert((path, ino));
            }
        }
        for path in files {
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                pins.insert((path, std::os::unix::fs::MetadataExt::ino(&meta)));
            }
        }
        Ok(PinSnapshot(pins))
    }

    /// Removes the pins of lbd's names made since `before` (see
    /// `snapshot`), and the owner record (this lbd's, rewritten at its
    /// start), then the directories that left empty: the undoing of a
    /// first start that failed, which leaves what a previous lbd pinned
    /// (maps not adopted, older layouts, links on other interfaces) as it
    /// was. Returns what was removed.
    pub(crate) fn remove_made_since(&self, before: &PinSnapshot) -> Result<Vec<PathBuf>, PinError> {
        self.remove_where(|path, ino| !before.0.contains(&(path.to_owned(), ino)))
    }

    /// The entries at the root: lbd's layout directories, lbd's files
    /// (link pins and the owner record) and everything else.
    fn lbd_entries(&self) -> Result<RootEntries, PinError> {
        let mut left = Vec::new();
        let mut layouts = Vec::new();
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((layouts, files, left))
            }
            Err(source) => {
                return Err(PinError::Io {
                    action: "listing",
                    path: self.root.clone(),
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match name.to_str().map(is_lbd_name) {
                Some(Some(LbdName::Layout)) if is_dir => layouts.push(path),
                Some(Some(LbdName::File)) if !is_dir => files.push(path),
                _ => left.push(path),
            }
        }
        Ok((layouts, files, left))
    }

    /// Removes lbd's pins for which `remove(path, inode)` says so (the
    /// owner record whatever it says), links only if they run lbd's
    /// program, then lbd's directories and the root if that left them
    /// empty (`remove_all`, `remove_made_since`).
    fn remove_where(&self, remove: impl Fn(&Path, u64) -> bool) -> Result<Vec<PathBuf>, PinError> {
        let mut removed = Vec::new();
        let (layouts, files, mut left) = self.lbd_entries()?;
        // Every layout version's maps (an older release's too: its tables
        // would stay pinned, and their memory held, until a reboot), and
        // the maps a start staged. What is in them is lbd's alone: its
        // maps, the tables set aside for a resize (`*_RESIZED`), the maps
        // of older releases (`COUNTERS`, `NAT_FLOWS`, the LRU connection
        // table).
        for dir in layouts {
            for (path, ino) in files_in(&dir)? {
                if remove(&path, ino) {
                    remove_file(&path)?;
                    removed.push(path);
                }
            }
            // Not empty: pins that stay.
            let _ = std::fs::remove_dir(&dir);
        }
        // The links and the owner record at the root.
        for path in files {
            let is_owner = path
                .file_name()
                .is_some_and(|n| n == crate::ownership::lock::OWNER_LINK);
            if !is_owner {
                let ino = std::fs::symlink_metadata(&path)
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                    .unwrap_or(0);
                if !remove(&path, ino) {
                    continue;
                }
                match link_owner(&path) {
                    LinkOwner::Lbd => {}
                    LinkOwner::Other(program) => {
                        tracing::debug!(pin = %path.display(), %program, "a link of another tool's program under an lbd name (lb-decap shares the pin directory?): left alone");
                        left.push(path);
                        continue;
                    }
                    LinkOwner::Unknown(reason) => {
                        tracing::warn!(pin = %path.display(), %reason, "cannot tell which program the pinned link runs: left alone, as another tool's would be (remove it by hand if it is lbd's)");
                        left.push(path);
                        continue;
                    }
                }
            }
            remove_file(&path)?;
            removed.push(path);
        }
        if left.is_empty() {
            let _ = std::fs::remove_dir(&self.root);
        } else {
            left.sort();
            tracing::info!(dir = %self.root.display(), left = ?left, "pins lbd did not make are left in pin_dir");
        }
        Ok(removed)
    }
}

/// The entries at a pin directory's root, sorted (`lbd_entries`): lbd's
/// layout directories, lbd's files, the rest.
type RootEntries = (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>);

/// The pins of lbd's names in a pin directory at one moment, by path and
/// inode (see [`PinDir::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PinSnapshot(std::collections::BTreeSet<(PathBuf, u64)>);

/// The files (pins) in the layout directory `dir`, each with its inode;
/// none if it is gone.
fn files_in(dir: &Path) -> Result<Vec<(PathBuf, u64)>, PinError> {
    let maps = match std::fs::read_dir(dir) {
        Ok(maps) => maps,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PinError::Io {
                action: "listing",
                path: dir.to_owned(),
                source,
            })
        }
    };
    Ok(maps
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            (!meta.is_dir()).then(|| (entry.path(), std::os::unix::fs::MetadataExt::ino(&meta)))
        })
        .collect())
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

/// `e` and its sources, joined by ": " (aya's system-call errors keep
/// the errno in their source).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Removes the empty directory at `path`; one already gone is not an
/// error.
fn remove_dir(path: &Path) -> Result<(), PinError> {
    remove_with(path, |p| std::fs::remove_dir(p))
}

/// Removes the file (a pin) at `path`; one already gone is not an error.
fn remove_file(path: &Path) -> Result<(), PinError> {
    remove_with(path, |p| std::fs::remove_file(p))
}

/// `remove(path)`, a path already gone not an error.
fn remove_with(path: &Path, remove: fn(&Path) -> std::io::Result<()>) -> Result<(), PinError> {
    match remove(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PinError::Io {
            action: "removing",
            path: path.to_owned(),
            source,
        }),
    }
}

/// What an entry at the root of a pin directory named by lbd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LbdName {
    /// A layout version's directory of maps (`maps-v<N>`), or of the
    /// maps a start staged (`maps-v<N>-staged`).
    Layout,
    /// A pinned link (`xdp-link-<if>`, `tc-link-<if>`) or the owner
    /// record (`lbd-owner`).
    File,
}

/// Whether `name`, at the root of a pin directory, is one lbd makes
/// there, and what it is: what [`PinDir::remove_all`] may remove, since
/// the directory may be shared with other tools.
fn is_lbd_name(name: &str) -> Option<LbdName> {
    let staged = name.strip_suffix("-staged").is_some_and(is_layout_dir);
    if is_layout_dir(name) || staged {
        Some(LbdName::Layout)
    } else if link_pin_of(name).is_some() || name == crate::ownership::lock::OWNER_LINK {
        Some(LbdName::File)
    } else {
        None
    }
}

/// Whether `name` is a layout version's directory of maps: `maps-v`
/// and a version number.
fn is_layout_dir(name: &str) -> bool {
    name.strip_prefix("maps-v")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
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

/// What the tests that pin maps need: a BPF filesystem of their own and
/// maps of any layout.
#[cfg(test)]
pub(crate) mod test_support {
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
            let dir =
                std::env::temp_dir().join(format!("lbd-unit-bpffs-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("the mount point");
            let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
                .expect("a path without NUL");
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    #[test]
    fn link_pins_are_told_by_hook_and_interface() {
        use crate::config::Attach;
        let pins = PinDir::new("/sys/fs/bpf/lbd");
        for (hook, interface) in [
            (Attach::Xdp, "eth0"),
            (Attach::Tc, "bond0.100"),
            (Attach::Xdp, "xdp-link-x"),
        ] {
            let path = match hook {
                Attach::Xdp => pins.link_path(interface),
                Attach::Tc => pins.tc_link_path(interface),
            };
            let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
            assert_eq!(link_pin_of(name), Some((hook, interface)), "{name}");
        }
        for other in ["maps-v1", "lbd-owner", "xdp-link-", "tc-link", "CONNTRACK"] {
            assert_eq!(link_pin_of(other), None, "{other}");
        }
    }

    #[test]
    fn link_pins_lists_the_links_of_every_interface() {
        use crate::config::Attach;
        let scratch = ScratchDir::new("link-pins");
        let root = scratch.join("lbd");
        let pins = PinDir::new(&root);
        assert!(pins.link_pins().expect("no directory").is_empty());
        std::fs::create_dir_all(pins.maps_dir()).expect("maps");
        for file in [
            pins.link_path("eth0"),
            pins.link_path("eth1"),
            pins.tc_link_path("eth1"),
            pins.map_path("VIPS"),
            root.join("lbd-owner"),
        ] {
            std::fs::write(&file, b"").expect("a pin");
        }
        let found: Vec<(Attach, String)> = pins
            .link_pins()
            .expect("list")
            .into_iter()
            .map(|p| (p.hook, p.interface))
            .collect();
        assert_eq!(
            found,
            vec![
                (Attach::Tc, "eth1".to_owned()),
                (Attach::Xdp, "eth0".to_owned()),
                (Attach::Xdp, "eth1".to_owned()),
            ]
        );
    }

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
    fn removing_takes_older_layout_versions_too() {
        let scratch = ScratchDir::new("pins-remove");
        let root = scratch.join("lbd");
        let pins = PinDir::new(&root);
        let older = root.join("maps-v0");
        std::fs::create_dir_all(&older).expect("older layout");
        std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
        for file in [older.join("CONNTRACK"), pins.map_path("VIPS")] {
            std::fs::write(&file, b"").expect("a pin");
        }
        let removed = pins.remove_all().expect("remove");
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!root.exists(), "every directory goes once empty");
    }

    /// `pin_dir` may be shared (`/sys/fs/bpf` itself): a stop for good
    /// removes lbd's names only, every one of them, and leaves the rest,
    /// and the directory with it.
    #[test]
    fn removing_leaves_what_lbd_did_not_pin() {
        let scratch = ScratchDir::new("pins-shared");
        let root = scratch.join("lbd");
        let pins = PinDir::new(&root);
        let older = root.join("maps-v0");
        std::fs::create_dir_all(&older).expect("older layout");
        std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
        let ours = [
            older.join(names::MAP_CONNTRACK),
            pins.map_path(names::MAP_VIPS),
            pins.map_path(crate::conntrack::legacy::RESIZED_PIN),
            pins.map_path(names::MAP_LEGACY_COUNTERS),
        ];
        // Named as lbd's links, but no link runs lbd's program there (a
        // plain file: which program cannot be told): left, as lb-decap's
        // links under the same names are.
        let untold = [pins.link_path("eth0"), pins.tc_link_path("eth0")];
        for file in &untold {
            std::fs::write(file, b"").expect("a file");
        }
        for file in &ours {
            std::fs::write(file, b"").expect("a pin");
        }
        let owner = root.join(crate::ownership::lock::OWNER_LINK);
        std::os::unix::fs::symlink("pid=1\nconfig=/etc/lbd/lbd.toml\n", &owner).expect("owner");
        let foreign_file = root.join("cilium_calls_xdp");
        let foreign_dir = root.join("tc");
        let foreign_layout = root.join("maps-vendor");
        std::fs::write(&foreign_file, b"").expect("a foreign pin");
        std::fs::create_dir_all(&foreign_dir).expect("a foreign directory");
        std::fs::create_dir_all(&foreign_layout).expect("a foreign directory");

        let mut removed = pins.remove_all().expect("remove");
        removed.sort();
        let mut expected: Vec<PathBuf> = ours.to_vec();
        expected.push(owner.clone());
        expected.sort();
        let kept = [
            &foreign_file,
            &foreign_dir,
            &foreign_layout,
            &untold[0],
            &untold[1],
        ]
        .map(|p| p.exists());
        let gone = [&older, &pins.maps_dir(), &owner].map(|p| p.symlink_metadata().is_err());
        assert_eq!(removed, expected);
        assert_eq!(kept, [true; 5], "other tools' pins and directories stay");
        assert_eq!(
            gone, [true; 3],
            "lbd's layout directories and owner record go"
        );
    }

    #[test]
    fn other_layout_versions_are_removed_and_this_one_kept() {
        let scratch = ScratchDir::new("pins-others");
        let root = scratch.join("lbd");
        let pins = PinDir::new(&root);
        let older = root.join("maps-v0");
        std::fs::create_dir_all(&older).expect("older layout");
        std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
        for file in [
            older.join("CONNTRACK"),
            older.join("VIPS"),
            pins.map_path("VIPS"),
            pins.link_path("eth0"),
        ] {
            std::fs::write(&file, b"").expect("a pin");
        }
        let removed = pins.remove_other_layouts().expect("remove");
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!older.exists(), "the older layout's directory goes");
        assert!(pins.map_path("VIPS").exists(), "this layout's maps stay");
        assert!(pins.link_path("eth0").exists(), "links stay");
    }

    /// A start's staged maps take their names once its program runs,
    /// each replacing the pin there, and the staged directory goes; with
    /// the state maps replaced, the tables flows were to be carried over
    /// from go too. Staged maps of a start that stopped before go alone,
    /// the pins they were to replace stay. A stop for good takes them
    /// with the rest.
    #[test]
    fn staged_maps_take_their_names_or_go() {
        let scratch = ScratchDir::new("pins-staged");
        let root = scratch.join("lbd");
        let pins = PinDir::new(&root);
        let stage = |names: &[&str]| {
            std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
            std::fs::create_dir_all(pins.staged_dir()).expect("staged");
            for name in names {
                std::fs::write(pins.map_path(name), b"previous").expect("a pin");
                std::fs::write(pins.staged_path(name), b"staged").expect("a staged map");
            }
        };
        let read = |name: &str| std::fs::read(pins.map_path(name)).unwrap_or_default();
        let carried = pins.map_path(crate::conntrack::legacy::RESIZED_PIN);

        stage(&[names::MAP_VIPS, names::MAP_HALF_OPEN]);
        std::fs::write(&carried, b"aside").expect("a table set aside");
        let moved = pins.promote_staged(false).expect("promoted");
        assert_eq!(moved, [names::MAP_HALF_OPEN, names::MAP_VIPS]);
        assert_eq!(read(names::MAP_VIPS), b"staged");
        assert_eq!(read(names::MAP_HALF_OPEN), b"staged");
        assert!(!pins.staged_dir().exists());
        assert!(carried.exists(), "state adopted: the table set aside stays");
        assert!(pins.promote_staged(false).expect("again").is_empty());

        stage(&[names::MAP_VIPS]);
        pins.promote_staged(true).expect("promoted");
        assert!(
            !carried.exists(),
            "state replaced: the table set aside goes"
        );

        stage(&[names::MAP_VIPS, names::MAP_MAGLEV]);
        assert_eq!(pins.discard_staged().expect("discarded"), 2);
        assert_eq!(read(names::MAP_VIPS), b"previous");
        assert_eq!(read(names::MAP_MAGLEV), b"previous");
        assert!(!pins.staged_dir().exists());

        stage(&[names::MAP_VIPS]);
        pins.remove_all().expect("removed");
        assert!(!root.exists(), "the staged directory goes with the rest");
    }

    /// Undoing a failed start removes what it made since its snapshot:
    /// new pins, pins it replaced (a staged map renamed over the
    /// previous one is another inode), the owner record; the previous
    /// lbd's pins it did not touch stay, and the directories with them.
    #[test]
    fn undoing_a_start_removes_only_what_it_made() {
        let scratch = ScratchDir::new("pins-undo");
        let root = scratch.join("lbd");
        let pins = PinDir::new(&root);
        let older = root.join("maps-v0");
        std::fs::create_dir_all(&older).expect("older layout");
        std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
        let previous = [
            older.join(names::MAP_CONNTRACK),
            pins.map_path(names::MAP_VIPS),
            pins.map_path(names::MAP_MAGLEV),
        ];
        for file in &previous {
            std::fs::write(file, b"previous").expect("a pin");
        }
        let before = pins.snapshot().expect("snapshot");
        std::fs::create_dir_all(pins.staged_dir()).expect("staged");
        std::fs::write(pins.staged_path(names::MAP_MAGLEV), b"made").expect("staged");
        pins.promote_staged(false).expect("promoted");
        let made = pins.map_path(names::MAP_BACKENDS);
        std::fs::write(&made, b"made").expect("a new pin");
        let owner = root.join(crate::ownership::lock::OWNER_LINK);
        std::os::unix::fs::symlink("pid=1", &owner).expect("owner");

        let mut removed = pins.remove_made_since(&before).expect("undone");
        removed.sort();
        let stays = [&previous[0], &previous[1]].map(|p| p.exists());
        let mut expected = vec![pins.map_path(names::MAP_MAGLEV), made, owner];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(stays, [true; 2], "the previous lbd's pins stay");
    }

    #[test]
    fn removing_a_missing_directory_removes_nothing() {
        let pins = PinDir::new("/nonexistent/lbd-pins");
        assert!(pins.remove_all().expect("remove").is_empty());
    }
}
