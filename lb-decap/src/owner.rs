//! Which interfaces of a pin directory a running `lb-decap run` serves.
//! The pin lock (`lock`) is held only while an apply runs, so on its own
//! it cannot tell a link a live lb-decap serves from one a stopped
//! lb-decap left: a second lb-decap on the same directory (say one for
//! eth1 beside one for eth0) used to take the first's link for stale,
//! remove it, and silently stop its unwrapping. So `run` also holds an
//! exclusive `flock(2)` on `owners/<interface>` under the pin directory,
//! for each interface it serves, for its whole life: the kernel drops it
//! when the process ends (kill -9 too), so a dead lb-decap never looks
//! alive. `apply` refuses to touch a link another live lb-decap holds,
//! and removes one that only its own config moved away from or that
//! nobody holds. A one-shot `apply` holds nothing.

use std::{
    collections::BTreeMap,
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use tracing::{debug, info};

use crate::pins::PinDir;

/// The interfaces a running lb-decap holds (empty for a one-shot apply).
#[derive(Debug, Default)]
pub struct Ownership {
    /// Interface -> the locked `owners/<interface>` directory.
    held: BTreeMap<String, File>,
    /// An apply succeeded: later ones are re-applies (reload, watch),
    /// which never swap another build's program for this one's.
    started: bool,
}

/// Locks taken by one apply, kept by [`Ownership::commit`] once it
/// succeeded (dropped, so released, if it failed).
#[derive(Debug, Default)]
pub(crate) struct Claim {
    new: BTreeMap<String, File>,
}

impl Ownership {
    /// Holds nothing yet: `run` makes one and passes it to every apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an apply with this ownership succeeded already (so the
    /// next one is a re-apply, not the start).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The interfaces held.
    pub fn interfaces(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// Whether this lb-decap holds `interface` in `pins` (and its lock
    /// directory was not removed meanwhile, by `lb-decap cleanup`).
    fn holds(&self, pins: &PinDir, interface: &str) -> bool {
        self.held.get(interface).is_some_and(|file| {
            crate::lock::is_current(file, &pins.owner_path(interface)).unwrap_or(false)
        })
    }

    /// After a successful apply of `interfaces`: holds those, releases
    /// (and removes the lock directory of) any it moved away from. Runs
    /// under the pin lock, so nobody tests a lock being removed.
    pub(crate) fn commit(&mut self, pins: &PinDir, claim: Claim, interfaces: &[String]) {
        let left: Vec<String> = self
            .held
            .keys()
            .filter(|name| !interfaces.contains(name))
            .cloned()
            .collect();
        for name in left {
            drop(self.held.remove(&name));
            let _ = std::fs::remove_dir(pins.owner_path(&name));
            info!(interface = %name, "no longer served by this lb-decap");
        }
        self.held.extend(claim.new);
        self.started = true;
    }
}

/// Before an apply of `interfaces` changes anything (under the pin
/// lock): refuses when `pins` holds a link on an interface the config
/// does not name that another live lb-decap serves; with `owner` (a
/// running `lb-decap run`), locks each configured interface it does not
/// hold yet, refusing one another live lb-decap holds.
pub(crate) fn claim(
    pins: &PinDir,
    interfaces: &[String],
    owner: Option<&Ownership>,
) -> anyhow::Result<Claim> {
    for (attach, interface, _) in pins.links() {
        if interfaces.contains(&interface) || owner.is_some_and(|o| o.holds(pins, &interface)) {
            continue;
        }
        if held_elsewhere(pins, &interface)? {
            bail!(
                "the pin directory {} holds the {} link on {interface} of another running lb-decap, and this config does not name {interface} (it names {}): serve them all from one lb-decap (interfaces = [{}]), or give this one a pin directory of its own (--pin-dir or LB_DECAP_PIN_DIR); if that lb-decap runs this very config, reload it instead (systemctl reload lb-decap). Nothing was changed",
                pins.root().display(),
                attach.name(),
                interfaces.join(", "),
                interfaces
                    .iter()
                    .chain(std::iter::once(&interface))
                    .map(|name| format!("\"{name}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        debug!(%interface, "link held by no running lb-decap: stale or moved away from");
    }
    let mut claim = Claim::default();
    let Some(owner) = owner else {
        return Ok(claim);
    };
    for interface in interfaces {
        if owner.holds(pins, interface) {
            continue;
        }
        match try_lock(&pins.owner_path(interface))? {
            Some(file) => {
                claim.new.insert(interface.clone(), file);
            }
            None => bail!(
                "interface {interface} is already served from the pin directory {} by another running lb-decap: stop that one first (systemctl stop lb-decap), or give this one a pin directory of its own (--pin-dir or LB_DECAP_PIN_DIR). Nothing was changed",
                pins.root().display()
            ),
        }
    }
    Ok(claim)
}

/// Whether a running lb-decap other than this one's `Ownership` holds
/// `interface` in `pins` (its lock directory locked).
pub fn held_elsewhere(pins: &PinDir, interface: &str) -> anyhow::Result<bool> {
    let path = pins.owner_path(interface);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    Ok(!flock_now(&file, &path)?)
}

/// The interfaces of `pins` a running lb-decap holds (for `cleanup` to
/// warn that it will attach again).
pub fn live_interfaces(pins: &PinDir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(pins.owners_dir()) else {
        return Vec::new();
    };
    let mut live: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| held_elsewhere(pins, name).unwrap_or(false))
        .collect();
    live.sort();
    live
}

/// Locks the directory `path` (made if missing) without waiting: the
/// locked directory, or `None` if another process holds it.
fn try_lock(path: &Path) -> anyhow::Result<Option<File>> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(flock_now(&file, path)?.then_some(file))
}

/// Takes an exclusive lock on `file` without waiting: false if another
/// open file holds it.
fn flock_now(file: &File, path: &Path) -> anyhow::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(error).with_context(|| format!("locking {}", path.display()))
}

/// The pin directory's lock directories, for `PinDir::remove_all`.
pub(crate) fn owner_dirs(pins: &PinDir) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(pins.owners_dir()) else {
        return Vec::new();
    };
    entries.flatten().map(|entry| entry.path()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock directory another open file holds is live; released (the
    /// process ended), it is not, and a claim may take it.
    #[test]
    fn a_held_lock_is_live_and_a_released_one_is_not() {
        let root = std::env::temp_dir().join(format!("lb-decap-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("dir");
        let pins = PinDir::new(&root);
        assert!(!held_elsewhere(&pins, "eth0").expect("no directory"));
        let held = try_lock(&pins.owner_path("eth0"))
            .expect("lock")
            .expect("free");
        assert!(held_elsewhere(&pins, "eth0").expect("read"));
        assert_eq!(live_interfaces(&pins), ["eth0"]);
        assert!(try_lock(&pins.owner_path("eth0")).expect("lock").is_none());
        drop(held);
        assert!(!held_elsewhere(&pins, "eth0").expect("read"));
        assert!(live_interfaces(&pins).is_empty());
        let _ = std::fs::remove_dir_all(root);
    }
}
