//! Reading and writing the backend state file: read only when the lbd
//! that ran last may have kept it (else set aside), an error naming it
//! when it cannot be trusted; written durably, naming this lbd its writer.

use std::{
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::Context as _;
use tracing::warn;

use super::file_format::{decode, encode, Recorded, Snapshot};
use crate::daemon::engine::{backends_writer, node, running_state::Writer};

/// What `path` records, provided the lbd that ran last (`previous`) may
/// have kept it (see `backends_writer`; else it is moved to `aside`,
/// with a warning, and nothing is restored); named as `me`'s at once, so
/// a restart of this lbd (even after a start that fails) restores it
/// again. Nothing when there is no file; an error naming it when it
/// cannot be read or understood.
pub(super) fn read_written_by_last(
    path: &Path,
    (writer_file, me): (&Path, &Writer),
    previous: Option<&Writer>,
    aside: Option<&Path>,
) -> anyhow::Result<Vec<Recorded>> {
    let Some(bytes) = read_bytes(path)? else {
        backends_writer::unmark(writer_file);
        return Ok(Vec::new());
    };
    if let Some(why) = backends_writer::not_restored_why(writer_file, &bytes, previous) {
        let listed = decode_file(path, &bytes).map_or(0, |found| found.len());
        let moved = backends_writer::set_aside(path, aside);
        backends_writer::unmark(writer_file);
        warn!(path = %path.display(), error = %why, listed, "the backend state file was not kept by the lbd that ran last: its drains and maintenance may have ended since, and are NOT restored (every backend starts enabled; drain or maintain again with lbctl what must be); the file was {moved}");
        return Ok(Vec::new());
    }
    let found = decode_file(path, &bytes)?;
    backends_writer::mark(writer_file, me, &bytes);
    Ok(found)
}

/// What `path` records: nothing when there is no file; an error naming
/// it when it cannot be read or understood.
pub(super) fn read(path: &Path) -> anyhow::Result<Vec<Recorded>> {
    match read_bytes(path)? {
        Some(bytes) => decode_file(path, &bytes),
        None => Ok(Vec::new()),
    }
}

/// The bytes of the backend state file `path` (None: there is none).
fn read_bytes(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            Err(error).with_context(|| format!("reading the backend state file {}", path.display()))
        }
    }
}

/// The entries of the backend state file `path` holding `bytes`; an
/// error naming it when they cannot be understood.
fn decode_file(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<Recorded>> {
    std::str::from_utf8(bytes)
        .context("not UTF-8")
        .and_then(decode)
        .with_context(|| {
        format!(
            "the backend state file {} cannot be trusted (it keeps the backends' drain and maintenance across restarts); lbd does not start rather than forget them: fix it, or remove it to start with every backend enabled",
            path.display()
        )
    })
}

/// Writes `wanted` to the backend state file `path` durably, and names
/// `writer` (its file, this lbd) as its writer; the error says that
/// nothing changed and names the file.
pub(super) fn write(
    path: &Path,
    wanted: &Snapshot,
    writer: Option<&(PathBuf, Writer)>,
) -> Result<(), String> {
    let text = encode(wanted, Instant::now(), SystemTime::now());
    node::write_durably_with(path, text.as_bytes(), "backend states", node::sync_dir).map_err(
        |error| {
            format!(
                "nothing changed: recording the backends' drain and maintenance in the backend state file {} failed ({error:#}), and a restart would not keep them",
                path.display()
            )
        },
    )?;
    if let Some((writer_file, me)) = writer {
        backends_writer::mark(writer_file, me, text.as_bytes());
    }
    Ok(())
}
