//! A directory of a test's own under the temp dir, removed when dropped:
//! one guard shared by every module's tests, instead of a copy in each.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A freshly created directory under the temp dir, named for this process,
/// this call and `tag` (`lbd-test-<pid>-<n>-<tag>`), so tests running in
/// parallel, or in another test process, never share one, and a leftover
/// of an earlier run with the same name is cleared first. It is removed,
/// with all it holds, when dropped, so a passing test leaves nothing.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new, empty directory; `tag` says which test made it.
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lbd-test-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    /// The directory itself.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

/// So the directory can be passed wherever a path is taken.
impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
