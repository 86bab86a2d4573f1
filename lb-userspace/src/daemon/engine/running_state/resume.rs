//! A start from a previous lbd's record: restored when the lbd that ran
//! last wrote it and the config file is unchanged, else set aside with a
//! warning naming why (and what a start from the file undoes).

use std::path::Path;

use tracing::{info, warn};

use super::{
    dropped_state_file,
    record_file::{encode, file_hash, read, RecordFile, VERSION},
    running_state_file,
    writer::{not_the_last_lbds, Writer},
    RunningRecord, Served, Written,
};
use crate::{
    config::{self, Config},
    daemon::engine::node,
    model::Model,
    ownership::held,
};

/// What a previous lbd's record gives a start with the config file
/// `file` (whose hash is `base_hash`).
#[derive(Debug)]
enum Resumed {
    /// Start from `config` (the file's node settings, the record's VIPs
    /// and guards); `changes`: the runtime changes it keeps, one note per
    /// key as a reload's answer names what it undoes.
    Restored {
        config: Box<Config>,
        changes: Vec<String>,
    },
    /// The file changed since the record was taken: start from the file;
    /// `changes`: the runtime changes (and the file's own changes) this
    /// start drops or applies, as a reload would.
    FileChanged { changes: Vec<String> },
    /// The record cannot be used: start from the file.
    Unusable(String),
    /// The record was not written by the lbd that ran last (why): start
    /// from the file.
    Stale(String),
}

/// Decides what `found` (a record, `source` naming it) gives a start
/// with the config file `file` of hash `base_hash`, the lbd that ran
/// last being `previous` (see [`not_the_last_lbds`], `boot` this boot's
/// id). Keys of the record this build does not know are left out, and
/// named in `ignored`.
fn resume(
    found: &RecordFile,
    source: &str,
    file: &Config,
    base_hash: Option<&str>,
    (previous, boot): (Option<&Writer>, &str),
    ignored: &mut Vec<String>,
) -> Resumed {
    if found.version != VERSION {
        return Resumed::Unusable(format!(
            "version {} (this lbd reads version {VERSION})",
            found.version
        ));
    }
    if let Some(why) = not_the_last_lbds(found.writer.as_ref(), previous, boot) {
        return Resumed::Stale(why);
    }
    // The file's node settings (those of a restart), the record's VIPs
    // and guards: loaded as a start loads a file, so the file's rules
    // between them hold (a `[bgp]` or `[[vrrp]]` address, a NAT address).
    let recorded = match config::with_served(file, &found.config, source) {
        Ok((recorded, left_out)) => {
            ignored.extend(left_out.into_iter().map(|key| format!("config: {key}")));
            recorded
        }
        Err(error) => {
            return Resumed::Unusable(format!(
                "its VIPs and guards do not load with the config file's node settings: {error}"
            ))
        }
    };
    let mut config = file.clone();
    config.vips = recorded.vips;
    config.guard = recorded.guard;
    let matches = matches!((found.base_sha256.as_deref(), base_hash), (Some(a), Some(b)) if a == b);
    if !matches {
        return Resumed::FileChanged {
            changes: differences(&config, file),
        };
    }
    let changes = differences(&config, file);
    Resumed::Restored {
        config: Box::new(config),
        changes,
    }
}

/// What a reload of `file` undoes of `running` (VIPs, backends, their
/// settings, guards), one note per key as a reload's answer gives them.
fn differences(running: &Config, file: &Config) -> Vec<String> {
    let from = Model::from_config(running);
    let to = Model::from_config(file);
    let mut notes = super::super::change::undone_by_reload(&from, &to, file, file, &|_| true);
    notes.extend(running.guard.undone_by(&file.guard));
    notes
}

/// Moves the record at `path` aside, to `aside` (see
/// [`dropped_state_file`]); says where, or why it could not.
fn set_aside(path: &Path, aside: Option<&Path>) -> String {
    let Some(aside) = aside else {
        return match std::fs::remove_file(path) {
            Ok(()) => "removed".to_owned(),
            Err(error) => format!("left in place: removing it failed ({error})"),
        };
    };
    match std::fs::rename(path, aside) {
        Ok(()) => format!("moved to {}", aside.display()),
        Err(error) => match std::fs::remove_file(path) {
            Ok(()) => format!("removed (moving it to {} failed: {error})", aside.display()),
            Err(again) => {
                format!("left in place: moving it failed ({error}), removing it too ({again})")
            }
        },
    }
}

impl RunningRecord {
    /// Reads what a previous lbd recorded beside the state files of
    /// `file` (the config file at `config_path`), and returns the
    /// configuration to start with: the record's VIPs and guards with
    /// the file's node settings when the file is the one the record was
    /// based on, else the file (the runtime changes dropped named in a
    /// warning). A record that cannot be used is named in a warning with
    /// why, and the start goes on from the file. Either is moved aside
    /// (see [`dropped_state_file`]), where its runtime changes can still
    /// be read. So is a record the lbd that ran last (`previous`, named
    /// by the record of what it held) did not write, with a warning.
    pub(crate) fn load(
        config_path: &Path,
        file: Config,
        previous: Option<&Writer>,
    ) -> (Config, Self) {
        Self::load_as(
            config_path,
            file,
            Writer::current(),
            (previous, &held::boot_id()),
        )
    }

    /// [`Self::load`] for the lbd `me`, in the boot `boot`.
    pub(super) fn load_as(
        config_path: &Path,
        file: Config,
        me: Writer,
        (previous, boot): (Option<&Writer>, &str),
    ) -> (Config, Self) {
        let path = running_state_file(&file);
        let aside = dropped_state_file(&file);
        let aside = aside.as_deref();
        let base_hash = file_hash(config_path, &file);
        let mut record = Self {
            path: path.clone(),
            me,
            base_hash,
            base: Some(Served::of_file(&file)),
            recorded: None,
        };
        let Some(path) = path else {
            return (file, record);
        };
        let source = path.display().to_string();
        let found = match read(&path) {
            Ok(None) => {
                record.recorded = Some(Written::Nothing);
                return (file, record);
            }
            Ok(Some(found)) => found,
            Err(error) => {
                let aside = set_aside(&path, aside);
                warn!(path = %source, error = %format!("{error:#}"), "the running configuration a previous lbd recorded cannot be read: starting from the config file, so the VIPs and backends changed through the API before this start are undone; the record was {aside}");
                return (file, record);
            }
        };
        let (found, mut ignored) = found;
        let resumed = resume(
            &found,
            &source,
            &file,
            record.base_hash.as_deref(),
            (previous, boot),
            &mut ignored,
        );
        match resumed {
            Resumed::Restored { config, changes } => {
                info!(path = %source, changes = changes.len(), "running configuration restored: the runtime changes made before this start are kept (a reload undoes them)");
                for change in &changes {
                    info!(%change, "restored runtime change");
                }
                if !ignored.is_empty() {
                    warn!(path = %source, ignored = %ignored.join(", "), "the running configuration record holds keys this build does not know (a newer build wrote it): they are left out, and the rest restored");
                }
                // Rewritten as this lbd's own at once: the next start, after
                // a crash or a restart of this one (even if this start
                // fails), restores it again.
                let text = encode(&record.me, found.base_sha256.as_deref(), found.config);
                match node::write_durably_with(
                    &path,
                    text.as_bytes(),
                    "running configuration",
                    node::sync_dir,
                ) {
                    Ok(()) => record.recorded = Some(Written::Text(text)),
                    Err(error) => {
                        record.recorded = None;
                        warn!(path = %source, error = %format!("{error:#}"), "rewriting the running configuration record as this lbd's failed: the next start does not restore it unless a change made through the API rewrites it first");
                    }
                }
                (*config, record)
            }
            Resumed::Stale(why) => {
                let aside = set_aside(&path, aside);
                record.recorded = None;
                warn!(path = %source, error = %why, "the running configuration record was not written by the lbd that ran last: runtime changes made since are not in it, and restoring it would bring back VIPs, backends and ACL rules removed since; starting from the config file, so the VIPs and backends changed through the API before this start are undone; the record was {aside}");
                (file, record)
            }
            Resumed::FileChanged { changes } => {
                let aside = set_aside(&path, aside);
                record.recorded = None;
                warn!(path = %source, config = %config_path.display(), dropped = %changes.join("; "), "the config file changed since the running configuration was recorded: this start applies the file, as a reload does, and undoes the runtime changes made before it (a backend added through the API loses its established connections); the record was {aside}");
                (file, record)
            }
            Resumed::Unusable(why) => {
                let aside = set_aside(&path, aside);
                record.recorded = None;
                warn!(path = %source, error = %why, "the running configuration a previous lbd recorded cannot be used: starting from the config file, so the VIPs and backends changed through the API before this start are undone; the record was {aside}");
                (file, record)
            }
        }
    }
}
