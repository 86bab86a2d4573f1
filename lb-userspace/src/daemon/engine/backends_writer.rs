//! Which lbd wrote the backend state file (`admin_state`), so a start
//! restores its drains and maintenance only when no lbd that keeps no
//! such file ran since, as the running-state record is restored only
//! when its writer ran last (`running_state`).
//!
//! The hazard: an lbd puts a backend in maintenance (recorded); the
//! operator goes back to a build that keeps no backend state file (from
//! before 2026-11-26), which starts every backend enabled, and works on
//! with it (the backend serves again); back on this build, the file
//! would put the backend in maintenance again, unasked, and drain one
//! whose drain ended long ago.
//!
//! The backend state file's format stays as every build since then reads
//! it (they refuse a key they do not know, and would not start): who
//! wrote it is in a file beside it, `<stem>.backends-writer.state`
//! (`node.state.backends-writer.state` with `[bgp]`), JSON `{"writer":
//! {"pid": ..., "boot_id": "...", "started": ...}, "sha256": "<hex of
//! the backend state file's bytes>"}`, rewritten with every write of the
//! file and at each start that restores it. The file is not restored
//! (it is moved to `<stem>.backends-dropped.state`, with a warning) only
//! when all of these hold:
//! - the writer file names the bytes the backend state file holds (a
//!   build that keeps the file but not the writer file rewrote it since:
//!   its content is that lbd's, and is restored);
//! - the lbd that ran last (named by the record of what it held,
//!   `held.json`) is not the writer;
//! - and it does not record when it started (every build that does also
//!   keeps the backend state file; among older builds, those from before
//!   2026-11-26 12:42 do not).
//!
//! A file without a writer file (written by a build before this one) is
//! restored, as before. No record of what the last lbd held (a stop for
//! good or `lbd --cleanup` since, which keep the backend state file on
//! purpose, or a reboot) restores it too. A build from before 2026-11-26
//! 10:05 writes no record of what it held at all, and is not seen.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{
    admin_state, node,
    running_state::{sha256_hex, Writer},
};
use crate::config::Config;

/// The writer file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Mark {
    /// The lbd that last wrote (or restored) the backend state file.
    writer: Writer,
    /// SHA-256 (hex) of the bytes it wrote there.
    sha256: String,
}

/// Where the writer of the backend state file of `config` is named.
pub(super) fn writer_file(config: &Config) -> Option<PathBuf> {
    admin_state::state_file_named(config, "backends-writer")
}

/// Where a backend state file that is not restored is moved to, so its
/// states can still be read (and moved back by hand).
pub(super) fn dropped_file(config: &Config) -> Option<PathBuf> {
    admin_state::state_file_named(config, "backends-dropped")
}

/// Why the backend state file holding `bytes` must not be restored, its
/// writer named at `writer_file` and the lbd that ran last being
/// `previous` (None: no record of one); None when it may be (see the
/// module's rules).
pub(super) fn not_restored_why(
    writer_file: &Path,
    bytes: &[u8],
    previous: Option<&Writer>,
) -> Option<String> {
    let mark = read(writer_file)?;
    if mark.sha256 != sha256_hex(bytes) {
        return None;
    }
    let previous = previous?;
    if *previous == mark.writer || previous.records_its_start() {
        return None;
    }
    Some(format!(
        "it was written by lbd {}, but the lbd that ran last was {previous}, a build that may keep no backend state file (one from before 2026-11-26 12:42 keeps none: it started every backend enabled, and the drains and maintenance ended with it are still in this file)",
        mark.writer
    ))
}

/// The writer file at `path`: None when there is none, or when it cannot
/// be read (a warning: the backend state file is then restored, as one
/// an older build wrote).
fn read(path: &Path) -> Option<Mark> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            warn!(path = %path.display(), %error, "reading which lbd wrote the backend state file failed: its states are restored as one an older build wrote");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(mark) => Some(mark),
        Err(error) => {
            warn!(path = %path.display(), %error, "the file naming which lbd wrote the backend state file is not understood: its states are restored as one an older build wrote");
            None
        }
    }
}

/// Names `me` as the writer of the backend state file that now holds
/// `bytes`. A failure is logged, not an error: the file then no longer
/// matches the writer file, and is restored as an older build's.
pub(super) fn mark(writer_file: &Path, me: &Writer, bytes: &[u8]) {
    let mark = Mark {
        writer: me.clone(),
        sha256: sha256_hex(bytes),
    };
    let mut text = match serde_json::to_string_pretty(&mark) {
        Ok(text) => text,
        Err(error) => {
            warn!(%error, "encoding which lbd wrote the backend state file failed");
            return;
        }
    };
    text.push('\n');
    if let Err(error) = node::write_durably_with(
        writer_file,
        text.as_bytes(),
        "backend state file's writer",
        node::sync_dir,
    ) {
        warn!(path = %writer_file.display(), error = %format!("{error:#}"), "naming this lbd as the backend state file's writer failed: a start after an older build ran will restore the file as that build's");
    }
}

/// Removes the writer file (there is no backend state file to name the
/// writer of); one that cannot be removed is logged.
pub(super) fn unmark(writer_file: &Path) {
    match std::fs::remove_file(writer_file) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            warn!(path = %writer_file.display(), %error, "removing the file naming the backend state file's writer failed");
        }
    }
}

/// Moves the backend state file at `path` to `aside`; says where, or
/// why it could not (then it is removed, so its states are not restored
/// by a later start either).
pub(super) fn set_aside(path: &Path, aside: Option<&Path>) -> String {
    if let Some(aside) = aside {
        match std::fs::rename(path, aside) {
            Ok(()) => return format!("moved to {}", aside.display()),
            Err(error) => {
                warn!(path = %path.display(), aside = %aside.display(), %error, "moving the backend state file aside failed: removing it")
            }
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => "removed".to_owned(),
        Err(error) => format!("left in place: removing it failed ({error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    /// Only a file its writer file still names, left by an lbd that was
    /// not the last, whose last one says not when it started (an older
    /// build, which may keep no backend state file), is not restored.
    #[test]
    fn only_a_file_an_older_build_may_not_have_kept_is_refused() {
        let dir = ScratchDir::new("bwriter-rules");
        let path = dir.join("lbd.backends-writer.state");
        let bytes = b"{\"version\": 1, \"backends\": []}\n";
        let writer = Writer::for_test(100, "boot-1", Some(1000));
        let older = Writer::for_test(200, "boot-1", None);
        let newer = Writer::for_test(300, "boot-1", Some(3000));
        // No writer file: an older build's file.
        assert_eq!(not_restored_why(&path, bytes, Some(&older)), None);
        mark(&path, &writer, bytes);
        let why = not_restored_why(&path, bytes, Some(&older)).expect("refused");
        assert!(why.contains("pid 100") && why.contains("pid 200"), "{why}");
        // The writer ran last; one that records its start keeps the file;
        // no record of the last lbd (a stop for good, --cleanup, a reboot).
        assert_eq!(not_restored_why(&path, bytes, Some(&writer)), None);
        assert_eq!(not_restored_why(&path, bytes, Some(&newer)), None);
        assert_eq!(not_restored_why(&path, bytes, None), None);
        // Rewritten since by a build that keeps the file: its content.
        assert_eq!(not_restored_why(&path, b"{}", Some(&older)), None);
        // A writer file not understood: as an older build's file.
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(not_restored_why(&path, bytes, Some(&older)), None);
        unmark(&path);
        assert!(!path.exists());
        unmark(&path);
    }
}
