//! Temporary files written, then renamed over the file they replace: lbd
//! (root) creates them beside files in directories others may write to
//! (a routes file in BIRD's directory, for one), under predictable names.
//! A file at that name is never opened: it is removed (a stale one a crash
//! left, or a symlink someone planted: the link goes, not what it points
//! to), and the temporary is created anew, refusing to follow a symlink or
//! to open a file that is there again, so what lbd writes, and any mode it
//! sets, only ever reaches a file lbd just created.

use std::{fs::File, os::unix::fs::OpenOptionsExt as _, path::Path};

use anyhow::Context as _;

/// Creates `temporary` for writing, new, with `mode` (masked by the
/// umask), after removing whatever was at that name. Fails (naming the
/// file) if a file appears there again meanwhile, rather than open it.
pub(crate) fn create_fresh(temporary: &Path, mode: u32) -> anyhow::Result<File> {
    match std::fs::remove_file(temporary) {
        Ok(()) => {
            tracing::debug!(path = %temporary.display(), "removed a stale temporary file");
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error)
                .with_context(|| format!("removing the stale {}", temporary.display()))
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(temporary)
        .with_context(|| format!("creating {}", temporary.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::test_scratch::ScratchDir;

    /// A stale temporary and a planted symlink are replaced by a new file;
    /// the symlink's target is left as it was.
    #[test]
    fn whatever_is_at_the_name_is_replaced_never_followed() {
        let dir = ScratchDir::new("fresh-file");
        let temporary = dir.join(".file.new");
        std::fs::write(&temporary, "stale").expect("stale");
        let mut file = create_fresh(&temporary, 0o600).expect("created");
        file.write_all(b"new").expect("write");
        assert_eq!(std::fs::read_to_string(&temporary).expect("read"), "new");
        std::fs::remove_file(&temporary).expect("remove");

        let victim = dir.join("victim");
        std::fs::write(&victim, "secret").expect("victim");
        std::os::unix::fs::symlink(&victim, &temporary).expect("symlink");
        let mut file = create_fresh(&temporary, 0o600).expect("created");
        file.write_all(b"new").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "secret");
        assert!(!std::fs::symlink_metadata(&temporary)
            .expect("stat")
            .is_symlink());
    }
}
