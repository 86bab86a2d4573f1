//! The record as a file: where it sits (beside the admin socket), how it is
//! read (only if root or lbd wrote it, and of this boot) and written
//! (atomically), and how the record of a config is found elsewhere.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracing::{info, warn};

use super::Held;

/// Where the kernel says which boot this is: a record from another boot
/// describes nothing that still exists.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The suffix of a record's file name (after the admin socket's stem).
const SUFFIX: &str = ".held.json";

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
    let text = held
        .encode()
        .with_context(|| format!("encoding the record for {}", path.display()))?;
    // A file lbd creates now, never one found at the name (a symlink).
    let mut file = crate::fresh_file::create_fresh(&temporary, 0o666)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{held, Scratch};
    use super::*;

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
}
