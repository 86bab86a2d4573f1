//! The file lbd owns and BIRD includes: two static protocols holding one
//! route per announced VIP address. BIRD's BGP sessions export them (the
//! operator's `export where proto = "lbd_vips4"`), so announcing and
//! withdrawing is rewriting this file and asking BIRD to re-read its
//! config. The file is replaced atomically (write, then rename), so BIRD
//! never reads half of it.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::Path,
};

use anyhow::Context as _;

/// BIRD runs as its own user (`bird` on Debian): the file must be readable
/// by it, and writable only by lbd.
const FILE_MODE: u32 = 0o644;
/// The directory, when lbd creates it.
const DIR_MODE: u32 = 0o755;

/// An address family: each has a static protocol of its own in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Family {
    /// `{stem}4`.
    V4,
    /// `{stem}6`.
    V6,
}

impl Family {
    /// The family of `address`.
    pub(crate) fn of(address: IpAddr) -> Self {
        if address.is_ipv4() {
            Self::V4
        } else {
            Self::V6
        }
    }

    /// The name of the protocol the file defines for it under `stem`.
    pub(crate) fn protocol(self, stem: &str) -> String {
        match self {
            Self::V4 => format!("{stem}4"),
            Self::V6 => format!("{stem}6"),
        }
    }
}

/// The names of the static protocols the file defines for `stem`: IPv4's,
/// then IPv6's. lbd asks BIRD for them after each reconfigure: a BIRD
/// that runs neither does not include the file.
pub(crate) fn protocols(stem: &str) -> [String; 2] {
    [Family::V4.protocol(stem), Family::V6.protocol(stem)]
}

/// The file's text announcing `addresses` in the protocols `{stem}4` and
/// `{stem}6` (see [`protocols`]; both always defined, so the operator's
/// filters always name existing protocols). Routes are blackholes in BIRD's table only: the
/// BGP session sets the next hop to the node's own address, and the
/// operator's kernel protocol exports none of them.
pub(crate) fn render(stem: &str, addresses: &BTreeSet<IpAddr>) -> String {
    let mut text = String::from(
        "# Written by lbd: the VIP addresses this node announces now.\n\
         # lbd rewrites this file and reconfigures BIRD whenever that changes; do not edit.\n",
    );
    let [name4, name6] = protocols(stem);
    for (name, channel, v4, len) in [(name4, "ipv4", true, 32), (name6, "ipv6", false, 128)] {
        let _ = writeln!(text, "protocol static {name} {{\n  {channel};");
        for address in addresses.iter().filter(|a| a.is_ipv4() == v4) {
            let _ = writeln!(text, "  route {address}/{len} blackhole;");
        }
        text.push_str("}\n");
    }
    text
}

/// The addresses the file at `path` announces (its route lines), as a
/// previous lbd left it: BIRD read them at its last reconfigure, or reads
/// them when it starts. A missing or unreadable file announces nothing.
pub(crate) fn announced(path: &Path) -> BTreeSet<IpAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("route "))
        .filter_map(|route| route.split('/').next()?.trim().parse().ok())
        .collect()
}

/// Replaces `path` with `text`: a temporary file beside it, synced, then
/// renamed over it. Creates the directory if it is missing. On failure the
/// temporary file goes too (the next write would replace it, but a
/// failure that lasts must not leave it lying beside BIRD's file).
pub(crate) fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    if !dir.exists() {
        create_dirs(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temporary = dir.join(format!(".{}.lbd-new", name.to_string_lossy()));
    let written = write_through(&temporary, path, text);
    if written.is_err() {
        if let Err(error) = std::fs::remove_file(&temporary) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, path = %temporary.display(), "removing the temporary routes file after a failed write failed");
            }
        }
    }
    written
}

/// Writes `text` to `temporary`, readable by BIRD and synced, then
/// renames it over `path`.
fn write_through(temporary: &Path, path: &Path, text: &str) -> anyhow::Result<()> {
    // Never a file that was there (a symlink planted by whoever may
    // write the directory): one lbd creates now.
    let mut file = crate::fresh_file::create_fresh(temporary, FILE_MODE)?;
    // The mode given at creation is masked by the umask (0077 under the
    // systemd unit): set it explicitly so BIRD can read the file (the one
    // lbd just created, never one found there).
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("setting the mode of {}", temporary.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(temporary, path)
        .with_context(|| format!("replacing {} with {}", path.display(), temporary.display()))
}

/// Creates `dir` and its missing parents, each with [`DIR_MODE`] set
/// explicitly: the mode given at creation is masked by the umask (0077
/// under the systemd unit), and BIRD must traverse every one of them to
/// read the file (a reconfigure fails otherwise, and BIRD refuses to
/// start). Directories that exist are left as they are. Also for the
/// lock beside the routes file (see `ownership::claim_locks::bgp_file_lock`), taken
/// before the file is first written: the directories it creates are the
/// file's. An error names the directory that failed.
pub(crate) fn create_dirs(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    let naming = |created: &Path, what: &str, error: std::io::Error| {
        std::io::Error::new(
            error.kind(),
            format!("{what} {}: {error}", created.display()),
        )
    };
    for created in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(created) {
            Ok(()) => std::fs::set_permissions(created, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|error| naming(created, "setting the mode of", error))?,
            // Made meanwhile by someone else: theirs, left alone.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && created.is_dir() => {
            }
            Err(error) => return Err(naming(created, "creating", error)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    #[test]
    fn both_protocols_are_always_defined_and_hold_their_familys_routes() {
        let addresses: BTreeSet<IpAddr> = ["198.18.0.100", "2001:2::100", "198.18.0.101"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let text = render("lbd_vips", &addresses);
        let v4 = text.find("protocol static lbd_vips4 {").unwrap();
        let v6 = text.find("protocol static lbd_vips6 {").unwrap();
        let route = |r: &str| text.find(r).unwrap();
        assert!(
            v4 < route("route 198.18.0.100/32 blackhole;")
                && route("route 198.18.0.101/32 blackhole;") < v6
        );
        assert!(v6 < route("route 2001:2::100/128 blackhole;"));
        let empty = render("lbd_vips", &BTreeSet::new());
        assert!(
            empty.contains("protocol static lbd_vips4 {\n  ipv4;\n}\n"),
            "{empty}"
        );
        assert!(
            empty.contains("protocol static lbd_vips6 {\n  ipv6;\n}\n"),
            "{empty}"
        );
    }

    #[test]
    fn the_addresses_a_file_announces_are_read_back() {
        let dir = ScratchDir::new("routes-any");
        let path = dir.join("vips.conf");
        assert!(announced(&path).is_empty(), "missing");
        write(&path, &render("lbd_vips", &BTreeSet::new())).unwrap();
        assert!(announced(&path).is_empty(), "empty protocols");
        let two: BTreeSet<IpAddr> = [
            "2001:2::100".parse().unwrap(),
            "198.18.0.100".parse().unwrap(),
        ]
        .into();
        write(&path, &render("lbd_vips", &two)).unwrap();
        assert_eq!(announced(&path), two);
    }

    /// A write that fails after the temporary file was made (here the
    /// rename: a directory is where the file goes) leaves nothing behind.
    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = ScratchDir::new("routes-fail");
        let path = dir.join("vips.conf");
        std::fs::create_dir_all(path.join("occupied")).unwrap();
        let error = write(&path, "one\n").unwrap_err();
        assert!(format!("{error:#}").contains("replacing"), "{error:#}");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["vips.conf"], "the temporary file was left");
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_others() {
        let dir = ScratchDir::new("routes-test");
        let path = dir.join("sub").join("vips.conf");
        write(&path, "one\n").unwrap();
        write(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    /// A symlink planted at the temporary name (by whoever may write the
    /// file's directory) is never followed: the file it points to keeps
    /// its content and mode, and the routes file is written all the same.
    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        let dir = ScratchDir::new("routes-link");
        let victim = dir.join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.join("vips.conf");
        std::os::unix::fs::symlink(&victim, dir.join(".vips.conf.lbd-new")).unwrap();
        write(&path, "one\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the symlink's target was chmodded");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    /// Set in the child the test below runs (the umask is the process's).
    const UMASK_CHILD: &str = "LBD_TEST_ROUTES_DIR_UMASK_CHILD";

    /// Under the unit's UMask=0077, every directory lbd creates on the way
    /// to the file is 0755, so BIRD (user `bird`) reaches the file; a
    /// directory that exists stays as it is.
    #[test]
    fn every_directory_created_lets_bird_through_whatever_the_umask() {
        let Some(base) = std::env::var_os(UMASK_CHILD) else {
            let base = ScratchDir::new("routes-umask");
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "bgp::routes_file::tests::every_directory_created_lets_bird_through_whatever_the_umask",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(UMASK_CHILD, base.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        };
        let base = std::path::PathBuf::from(base);
        // SAFETY: umask has no preconditions; this child runs this test alone.
        unsafe { libc::umask(0o077) };
        let path = base.join("a").join("b").join("vips.conf");
        write(&path, "one\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode(&base.join("a")),
            DIR_MODE,
            "{}",
            base.join("a").display()
        );
        assert_eq!(mode(&base.join("a").join("b")), DIR_MODE);
        assert_eq!(mode(&path), FILE_MODE);
        assert_eq!(mode(&base), 0o711, "an existing directory changed");
    }
}
