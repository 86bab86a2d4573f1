//! The operator's backend states (drain, maintenance) kept across lbd's
//! restarts, as the node's own drain is (see `node`): recorded in the
//! backend state file beside the node state file whenever they change,
//! and restored at start for the backends the config still has. A
//! drain, maintenance or enable that cannot be recorded is refused (a
//! maintenance a restart would forget sends new flows to a backend an
//! operator is working on).
//!
//! The file is JSON: `{"version": 1, "backends": [{"vip":
//! "198.18.0.100:80/tcp", "backend": "198.18.0.11", "state": "draining",
//! "drain_started_unix_ms": ..., "drain_deadline_unix_ms": ...}, ...]}`;
//! only backends that are not enabled are listed (and, on a node that
//! shares backend states with sync peers, every backend whose state an
//! operator set, with `"changed_unix_ms"`: see `shared_states`). Drain
//! times are wall clock, so a drain's deadline keeps running while lbd
//! is down.
//!
//! Its parts: `location` (where the file lies, and where a config before
//! kept it), `file_format` (the JSON and the states it records),
//! `file_io` (read only if the last lbd kept it, written durably) and
//! `restore` (the recorded states given back to the model at start).

mod file_format;
mod file_io;
mod location;
mod restore;
#[cfg(test)]
mod tests;

pub(crate) use location::backend_state_file;
pub(super) use location::state_file_named;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use tracing::warn;

pub(super) use file_format::{
    drain_deadline_at, drain_start_at, snapshot_with, unix_ms, unix_ms_at, Snapshot,
};

use self::{
    file_format::Recorded,
    file_io::{read, read_written_by_last, write},
    location::left_behind,
};
use super::{
    backends_writer,
    running_state::Writer,
    shared_states::{ClockWarnings, Stamps},
    Engine,
};
use crate::{config::Config, model::Model, sync::wire::BackendStateRecord};

/// The engine's record of what the backend state file holds.
#[derive(Debug, Default)]
pub(crate) struct AdminRecord {
    /// The file (None: nowhere to keep it, no admin socket directory).
    path: Option<PathBuf>,
    /// What it was last written with (None: not known to match the
    /// model, so the next commit writes it).
    recorded: Option<Snapshot>,
    /// What a previous lbd recorded, until start-up restores it.
    found: Vec<Recorded>,
    /// Where the file's writer is named, and this lbd (None: no file, or
    /// a record made without a start, in tests): see `backends_writer`.
    writer: Option<(PathBuf, Writer)>,
    /// When each backend's state was made, for the sync peers it is
    /// shared with (empty on a node that shares none).
    pub(super) stamps: Stamps,
    /// Whether this node shares backend states with sync peers (it has
    /// replication): only then are changes stamped.
    pub(super) shares: bool,
    /// The states last given to the sync peers, and their records (see
    /// `shared_states`).
    pub(super) shared: Option<(Snapshot, Arc<[BackendStateRecord]>)>,
    /// The warning that a peer's clock runs ahead, once a minute.
    pub(super) clock_warnings: ClockWarnings,
}

impl AdminRecord {
    /// Reads what a previous lbd recorded for `config`. A file that is
    /// there but cannot be read or understood is an error naming it:
    /// lbd refuses to start rather than forget a maintenance or a drain
    /// it may hold.
    /// Only a file the lbd that ran last (`previous`, named by the record
    /// of what it held) may have kept is restored: one left by this build
    /// before an older build that keeps none ran is moved aside with a
    /// warning (see `backends_writer`).
    pub(crate) fn load(config: &Config, previous: Option<&Writer>) -> anyhow::Result<Self> {
        Self::load_as(config, Writer::current(), previous)
    }

    /// [`Self::load`] for the lbd `me`.
    fn load_as(config: &Config, me: Writer, previous: Option<&Writer>) -> anyhow::Result<Self> {
        let path = backend_state_file(config);
        let writer = backends_writer::writer_file(config).map(|file| (file, me));
        let found = match (&path, &writer) {
            (Some(path), Some((writer_file, me))) => {
                let aside = backends_writer::dropped_file(config);
                read_written_by_last(path, (writer_file, me), previous, aside.as_deref())?
            }
            (Some(path), None) => read(path)?,
            (None, _) => Vec::new(),
        };
        if let Some(path) = &path {
            let default_node_state = Path::new(crate::config::DEFAULT_NODE_STATE_FILE);
            for (other, holds) in left_behind(config, path, default_node_state) {
                let holds = match holds {
                    Ok(count) => format!("it lists {count} backend(s) draining or in maintenance"),
                    Err(error) => format!("it cannot be read: {error}"),
                };
                warn!(
                    found = %other.display(),
                    path = %path.display(),
                    "no backend state file where this config keeps it, but one where a config before [bgp] was added or removed, or its node_state_file set, kept it ({holds}); its states were NOT restored: every backend starts enabled. If it is this lbd's, stop lbd, move it to {} and start lbd again (or drain or maintain those backends again with lbctl, and remove it); if it is another lbd's, leave it",
                    path.display()
                );
            }
        }
        Ok(Self {
            path,
            recorded: None,
            found,
            writer,
            stamps: Stamps::new(),
            shares: super::shared_states::shares_backend_states(config),
            shared: None,
            clock_warnings: ClockWarnings::default(),
        })
    }
}

impl Engine {
    /// Records the backend states of `next` before an operator's change
    /// makes them current: an error (naming the file) when they cannot
    /// be written, and the change must then be refused (a state a restart
    /// would forget is no state). Nothing is written when they are
    /// already recorded.
    pub(super) fn record_admin_states(
        &mut self,
        next: &Model,
        stamps: &Stamps,
    ) -> Result<(), String> {
        let Some(path) = self.admin.path.clone() else {
            return Ok(());
        };
        let wanted = snapshot_with(next, stamps);
        if self.admin.recorded.as_ref() == Some(&wanted) {
            return Ok(());
        }
        write(&path, &wanted, self.admin.writer.as_ref())?;
        self.admin.recorded = Some(wanted);
        Ok(())
    }

    /// Brings the backend state file in line with the running model
    /// after any change (a drain's timeout, a backend removed, a reload,
    /// a change that failed after it was recorded); a failure is logged,
    /// and the next change tries again.
    pub(super) fn follow_admin_states(&mut self) {
        let model = std::mem::take(&mut self.model);
        let stamps = std::mem::take(&mut self.admin.stamps);
        if let Err(error) = self.record_admin_states(&model, &stamps) {
            warn!(%error, "the backend state file does not match the running backends");
        }
        self.model = model;
        self.admin.stamps = stamps;
    }
}
