//! Recording the running configuration: after every change (an error
//! when it cannot be, and the change is refused), rebased on the file at
//! a reload, and forgotten at a stop for good.

use std::path::Path;

use tracing::{info, warn};

use super::{
    dropped_state_file,
    record_file::{encode, file_hash},
    running_state_file, Base, RunningRecord, Served, Written,
};
use crate::{
    config::{self, Config},
    daemon::engine::{node, Engine},
    guard::GuardConfig,
    model::Model,
};

impl RunningRecord {
    /// What the file should hold for the model `next` served with
    /// `guards`, the node settings of `running`: nothing when they are
    /// the base file's.
    fn wanted(&self, next: &Model, running: &Config, guards: &GuardConfig) -> Written {
        let mut config = next.to_config(running);
        let (guard, _left_out) = guards.of_served(&|id| next.vips.contains_key(id));
        config.guard = guard;
        if self.base.as_ref() == Some(&Served::of_running(&config)) {
            return Written::Nothing;
        }
        Written::Text(encode(
            &self.me,
            self.base_hash.as_deref(),
            config::served_to_toml(&config),
        ))
    }

    /// Brings the file in line with `next` (see [`Self::wanted`]); an
    /// error (naming the file, saying nothing changed) when it cannot.
    /// Nothing is written when it already is.
    pub(super) fn record(
        &mut self,
        next: &Model,
        running: &Config,
        guards: &GuardConfig,
    ) -> Result<(), String> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let wanted = self.wanted(next, running, guards);
        if self.recorded.as_ref() == Some(&wanted) {
            return Ok(());
        }
        let done = match &wanted {
            Written::Nothing => match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(anyhow::Error::new(error).context("removing it")),
            },
            Written::Text(text) => node::write_durably_with(
                &path,
                text.as_bytes(),
                "running configuration",
                node::sync_dir,
            ),
        };
        if let Err(error) = done {
            // Not known any more: the next change writes it again.
            self.recorded = None;
            return Err(format!(
                "nothing changed: recording the running configuration in {} failed ({error:#}), and a restart would not start from what the change makes",
                path.display()
            ));
        }
        self.recorded = Some(wanted);
        Ok(())
    }

    /// Bases what is recorded from now on on the config file `file` read
    /// from `config_path` (a reload); returns the base before, for
    /// [`Self::put_back_base`] if the reload does not go ahead.
    pub(super) fn rebase(&mut self, config_path: &Path, file: &Config) -> Base {
        let hash = file_hash(config_path, file);
        Base {
            hash: std::mem::replace(&mut self.base_hash, hash),
            served: self.base.replace(Served::of_file(file)),
        }
    }

    /// Puts back the base [`Self::rebase`] replaced.
    fn put_back_base(&mut self, before: Base) {
        self.base_hash = before.hash;
        self.base = before.served;
        // What the file holds was written on the other base.
        self.recorded = None;
    }
}

/// Removes the running configuration recorded for `config` (a stop for
/// good, `lbd --cleanup`): the next start is from the file. A failure is
/// logged.
pub(crate) fn forget(config: &Config) {
    if let Some(dropped) = dropped_state_file(config) {
        match std::fs::remove_file(&dropped) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                warn!(%error, path = %dropped.display(), "removing the set-aside running configuration record failed: it is only there to be read; remove it by hand")
            }
        }
    }
    let Some(path) = running_state_file(config) else {
        return;
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {
            info!(path = %path.display(), "running configuration record removed: the next start is from the config file")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            warn!(%error, path = %path.display(), "removing the running configuration record failed: the next start with an unchanged config file keeps the runtime changes it holds; remove it by hand")
        }
    }
}

impl Engine {
    /// Records the running configuration `next` will make current (with
    /// `guards` in force) before a change commits it: an error (naming
    /// the file) when it cannot be, and the change must then be refused
    /// (a restart would undo it). Nothing is written when it is already
    /// recorded.
    pub(in crate::daemon::engine) fn record_running(
        &mut self,
        next: &Model,
        guards: &GuardConfig,
    ) -> Result<(), String> {
        self.running.record(next, &self.config, guards)
    }

    /// Brings the record in line with the running state after a change
    /// that failed after it was recorded, or the first fill at start; a
    /// failure is logged, and the next change tries again.
    pub(in crate::daemon::engine) fn follow_running(&mut self) {
        let model = std::mem::take(&mut self.model);
        let guards = self.guard.config().clone();
        if let Err(error) = self.record_running(&model, &guards) {
            warn!(%error, "the running configuration record does not match the running state");
        }
        self.model = model;
    }

    /// Records `next`, the model a reload of `file` makes current, based
    /// on that file (so, for the reload's model, removes the record)
    /// before the reload commits it: the error of
    /// [`Self::record_running`], the base put back; else the base before,
    /// for [`Self::unrecord_reloaded`] if the commit fails.
    pub(in crate::daemon::engine) fn record_reloaded(
        &mut self,
        next: &Model,
        file: &Config,
    ) -> Result<Base, String> {
        let before = self.running.rebase(&self.config_path, file);
        match self.running.record(next, &self.config, &file.guard) {
            Ok(()) => Ok(before),
            Err(why) => {
                self.running.put_back_base(before);
                Err(why)
            }
        }
    }

    /// After a reload recorded by [`Self::record_reloaded`] whose commit
    /// failed: the base before (`before`) back, and the record back to
    /// the running state.
    pub(in crate::daemon::engine) fn unrecord_reloaded(&mut self, before: Base) {
        self.running.put_back_base(before);
        self.follow_running();
    }
}
