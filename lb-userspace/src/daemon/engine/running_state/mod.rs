//! The running configuration kept across lbd's restarts: the VIPs,
//! backends, settings and guards changed through the API (`lbctl vip`,
//! `backend`, `acl`, `limit`) are recorded after every change, beside the
//! backend state file (`admin_state`), and a restart (an upgrade,
//! `systemctl restart`, a crash) starts from them, so it undoes none of
//! them: a backend added at run time keeps its established flows.
//!
//! The record is taken only while the config file is the one it was
//! based on: it holds the SHA-256 of that file's bytes, and a restart
//! with a file changed since applies the file, as a reload does (the
//! runtime changes it drops are named in a warning). A reload makes the
//! file the running configuration again, and so removes the record; a
//! stop for good (SIGINT, `lbd --cleanup`) forgets it. While the running
//! configuration is the file's, there is no record.
//!
//! The record is taken only from the lbd that ran last: it names the lbd
//! that wrote it (pid, boot id, start time), and a start restores it only
//! when that is the lbd the record of what the previous lbd held
//! (`held.json`, which every build rewrites at start) names. Otherwise
//! another lbd that keeps no such record (an older build) ran since, and
//! the runtime changes made through it (a backend or VIP removed, ACL
//! rules changed) are not in the record: it is moved aside with a
//! warning, and the start is from the file. A record from before a
//! reboot is restored by the first lbd of the boot (nothing of the boot
//! before says which lbd ran last). An lbd that restores a record
//! rewrites it as its own at once, so a crash or a restart of it, even
//! one whose start fails, restores it again.
//!
//! The file is JSON: `{"version": 2, "writer": {"pid": ..., "boot_id":
//! "...", "started": ...}, "base_sha256": "<hex>", "config": "<the
//! running configuration's [[vip]], [[acl]] and [[limit]] tables, as
//! lbctl config dump writes them>"}` (`jq -r .config` prints them). Only
//! what a restart restores is kept, and it is read leniently: a key this
//! build does not know (a newer build's, after a downgrade) is left out
//! with a warning, and the rest restored; so is a key of the JSON.
//!
//! Its files: `writer` (which lbd wrote a record), `record_file` (the
//! JSON, and the hashes it holds), `resume` (a start from a previous
//! lbd's record) and `recording` (the record kept in line with every
//! change, and forgotten at a stop for good).

use std::{collections::BTreeMap, path::PathBuf};

use super::admin_state;
use crate::{
    config::{Config, VipConfig},
    guard::GuardConfig,
    model::Model,
    vip_id::VipId,
};

mod record_file;
mod recording;
mod resume;
#[cfg(test)]
mod tests;
mod writer;

pub(super) use record_file::sha256_hex;
pub(crate) use recording::forget;
pub(crate) use writer::Writer;

/// What runtime changes change of a configuration: its VIPs (backends in
/// the model's order) and guards. Equal for the file and the running
/// configuration when there is nothing to record.
#[derive(Debug, Clone, PartialEq)]
struct Served {
    vips: BTreeMap<VipId, VipConfig>,
    guard: GuardConfig,
}

impl Served {
    /// Of a configuration `model.to_config` gave (backends in the model's
    /// order), with `guard`.
    fn of_running(running: &Config) -> Self {
        Self {
            vips: running
                .vips
                .iter()
                .map(|v| (VipId::of(v), v.clone()))
                .collect(),
            guard: running.guard.clone(),
        }
    }

    /// Of a config file's content, as the model gives it back.
    fn of_file(file: &Config) -> Self {
        Self::of_running(&Model::from_config(file).to_config(file))
    }
}

/// What a running configuration is based on (the config file's hash and
/// content), kept while a reload that replaces it may still be refused.
#[derive(Debug)]
pub(super) struct Base {
    hash: Option<String>,
    served: Option<Served>,
}

/// What the record file holds, as this lbd last left it.
#[derive(Debug, Clone, PartialEq)]
enum Written {
    /// No file.
    Nothing,
    /// The file with this text.
    Text(String),
}

/// The engine's record of the running configuration's file.
#[derive(Debug)]
pub(crate) struct RunningRecord {
    /// The file (None: nowhere to keep it, no admin socket directory).
    path: Option<PathBuf>,
    /// This lbd, named in what it writes.
    me: Writer,
    /// SHA-256 of the config file the running state is based on.
    base_hash: Option<String>,
    /// That file's VIPs and guards (None: not known, always recorded).
    base: Option<Served>,
    /// What the file holds (None: not known, the next record writes it).
    recorded: Option<Written>,
}

impl Default for RunningRecord {
    fn default() -> Self {
        Self {
            path: None,
            me: Writer::current(),
            base_hash: None,
            base: None,
            recorded: None,
        }
    }
}

/// Where the running configuration is kept: beside the backend state
/// file, named the same way (`node.state.running.state` beside `[bgp]
/// node_state_file`, else `lbd.running.state` beside the admin socket).
pub(crate) fn running_state_file(config: &Config) -> Option<PathBuf> {
    admin_state::state_file_named(config, "running")
}

/// Where an unusable record, or one the file changed under, is moved to
/// (`lbd.running-dropped.state`, `node.state.running-dropped.state`: a
/// state file of this lbd's like the others, which a package purge
/// removes with them), so its runtime changes can still be read.
fn dropped_state_file(config: &Config) -> Option<PathBuf> {
    admin_state::state_file_named(config, "running-dropped")
}
