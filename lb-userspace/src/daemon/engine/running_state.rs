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

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use super::{admin_state, node, Engine};
use crate::{
    config::{self, Config, VipConfig},
    guard::GuardConfig,
    model::Model,
    ownership::held::{self, Held},
    vip_id::VipId,
};

/// The file format's version: a file of another is not restored (1:
/// the whole configuration, no writer).
const VERSION: u32 = 2;

/// The keys of the record's JSON this build reads (others are left out
/// with a warning).
const KEYS: [&str; 4] = ["version", "writer", "base_sha256", "config"];

/// Names one lbd process: its pid, its boot and when it started (see
/// `held::Held`), so a record it wrote is known to be its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Writer {
    pid: u32,
    boot_id: String,
    #[serde(default)]
    started: Option<u64>,
}

impl Writer {
    /// This process.
    pub(crate) fn current() -> Self {
        Self {
            pid: std::process::id(),
            boot_id: held::boot_id(),
            started: held::process_started(),
        }
    }

    /// The lbd the record of what it held names.
    pub(crate) fn of(held: &Held) -> Self {
        Self {
            pid: held.pid,
            boot_id: held.boot_id.clone(),
            started: held.started,
        }
    }

    /// Whether it says when it started: every build that records that
    /// also keeps the backend state file (see `backends_writer`).
    pub(super) fn records_its_start(&self) -> bool {
        self.started.is_some()
    }

    /// The lbd `pid` of boot `boot`, started at `started`.
    #[cfg(test)]
    pub(super) fn for_test(pid: u32, boot: &str, started: Option<u64>) -> Self {
        Self {
            pid,
            boot_id: boot.to_owned(),
            started,
        }
    }
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(started) = self.started {
            write!(f, " started at tick {started}")?;
        }
        write!(f, " of boot {}", self.boot_id)
    }
}

/// Why the record written by `writer` was not the last lbd's, which the
/// record of what it held names `previous` (None: there is none of this
/// boot, `boot` = this boot's id); None when it was.
fn not_the_last_lbds(
    writer: Option<&Writer>,
    previous: Option<&Writer>,
    boot: &str,
) -> Option<String> {
    let Some(writer) = writer else {
        return Some("it does not name the lbd that wrote it".to_owned());
    };
    match previous {
        Some(previous) if previous == writer => None,
        Some(previous) => Some(format!(
            "it was written by lbd {writer}, but the lbd that ran last was {previous} (one that keeps no such record, an older build, ran since)"
        )),
        // The first lbd since a reboot: nothing of the boot before says
        // which lbd ran last.
        None if writer.boot_id != boot || boot.is_empty() => None,
        None => Some(format!(
            "it was written by lbd {writer} in this boot, but no record of what the lbd that ran last held is left (an lbd stopped for good, or lbd --cleanup ran, since)"
        )),
    }
}

/// The record's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecordFile {
    version: u32,
    /// The lbd that wrote it (None: not said, an older build's).
    #[serde(default)]
    writer: Option<Writer>,
    /// SHA-256 (hex) of the bytes of the config file the running state
    /// is based on (None: it could not be read then, and the record is
    /// never restored).
    base_sha256: Option<String>,
    /// The running configuration's served sections (`[[vip]]`,
    /// `[[acl]]`, `[[limit]]`), as `lbctl config dump` writes them.
    config: String,
}

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

/// SHA-256 (hex) of `bytes` (also how `backends_writer` names the
/// backend state file's bytes).
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash of the config file at `path`, provided it still holds
/// `loaded` (what lbd read from it): None when it cannot be read or was
/// changed since (a record then based on it never matches).
fn file_hash(path: &Path, loaded: &Config) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            warn!(%error, file = %path.display(), "reading the config file to record what the running configuration is based on failed: runtime changes made from now on are not kept by a restart");
            return None;
        }
    };
    let text = std::str::from_utf8(&bytes).ok()?;
    let same =
        Config::from_toml_str(text, &path.display().to_string()).is_ok_and(|read| read == *loaded);
    if !same {
        warn!(file = %path.display(), "the config file changed while lbd read it: runtime changes made from now on are not kept by a restart (reload to base them on the file as it is)");
        return None;
    }
    Some(sha256_hex(&bytes))
}

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
    let mut notes = super::change::undone_by_reload(&from, &to, file, file, &|_| true);
    notes.extend(running.guard.undone_by(&file.guard));
    notes
}

/// The record at `path`: None when there is none; with it, the keys of
/// its JSON this build does not know (left out).
fn read(path: &Path) -> anyhow::Result<Option<(RecordFile, Vec<String>)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("reading it"),
    };
    decode(&text).map(Some)
}

/// A record's `text`, with the keys of its JSON this build does not know.
fn decode(text: &str) -> anyhow::Result<(RecordFile, Vec<String>)> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("not a running-state file")?;
    let ignored = value
        .as_object()
        .map(|object| {
            object
                .keys()
                .filter(|key| !KEYS.contains(&key.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let found: RecordFile = serde_json::from_value(value).context("not a running-state file")?;
    Ok((found, ignored))
}

/// The record's text for the running configuration `config` (its served
/// sections), based on the config file of hash `base_hash`, written by
/// `writer`.
fn encode(writer: &Writer, base_hash: Option<&str>, config: String) -> String {
    let file = RecordFile {
        version: VERSION,
        writer: Some(writer.clone()),
        base_sha256: base_hash.map(str::to_owned),
        config,
    };
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
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
    fn load_as(
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
    fn record(
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
    fn rebase(&mut self, config_path: &Path, file: &Config) -> Base {
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
        let _ = std::fs::remove_file(dropped);
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
    pub(super) fn record_running(
        &mut self,
        next: &Model,
        guards: &GuardConfig,
    ) -> Result<(), String> {
        self.running.record(next, &self.config, guards)
    }

    /// Brings the record in line with the running state after a change
    /// that failed after it was recorded, or the first fill at start; a
    /// failure is logged, and the next change tries again.
    pub(super) fn follow_running(&mut self) {
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
    pub(super) fn record_reloaded(&mut self, next: &Model, file: &Config) -> Result<Base, String> {
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
    pub(super) fn unrecord_reloaded(&mut self, before: Base) {
        self.running.put_back_base(before);
        self.follow_running();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::IpAddr,
        sync::{Arc, Mutex},
    };

    use super::*;
    use crate::{dataplane::FakeMaps, model::Edit, reconcile::Balancer, test_scratch::ScratchDir};

    /// A directory of this test's, removed when dropped.
    struct Scratch(ScratchDir);

    impl Scratch {
        fn new(tag: &str) -> Self {
            Self(ScratchDir::new(&format!("running-{tag}")))
        }

        /// The config file, written with VIP 198.18.0.100:80 and its
        /// backends b1 and b2 (`extra` appended), and loaded.
        fn file(&self, extra: &str) -> (PathBuf, Config) {
            let path = self.0.join("lbd.toml");
            let text = format!(
                "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                 [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
                 [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n{extra}",
                self.0.join("lbd.sock").display()
            );
            std::fs::write(&path, text).unwrap();
            let config = Config::load(&path).unwrap();
            (path, config)
        }
    }

    /// A start of the lbd that ran last (this process): it finds the
    /// record of what it held naming itself.
    fn load(path: &Path, file: Config) -> (Config, RunningRecord) {
        RunningRecord::load(path, file, Some(&Writer::current()))
    }

    /// The lbd `pid` of boot `boot`.
    fn lbd(pid: u32, boot: &str) -> Writer {
        Writer {
            pid,
            boot_id: boot.to_owned(),
            started: Some(u64::from(pid) * 10),
        }
    }

    fn address(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Backend b3 of VIP 198.18.0.100:80 and VIP 198.18.0.200:80 (with
    /// backend 198.18.0.21), as `lbctl backend add` and `vip add` give
    /// them.
    fn runtime_pieces() -> (crate::config::BackendConfig, VipConfig) {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n\
             [[vip]]\naddress = \"198.18.0.200\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.21\"\nmac = \"02:00:00:00:00:21\"\n",
            "runtime",
        )
        .unwrap();
        (config.vips[0].backends[0].clone(), config.vips[1].clone())
    }

    /// The running model after the orchestrator's changes: b3 added, b1
    /// removed, b2's weight set to 50, VIP 198.18.0.200:80 added.
    fn changed(file: &Config) -> Model {
        let (b3, vip) = runtime_pieces();
        let id = VipId::of(&file.vips[0]);
        let now = std::time::Instant::now();
        let mut model = Model::from_config(file);
        for edit in [
            Edit::AddBackend(id, b3),
            Edit::RemoveBackend(id, address("198.18.0.11")),
            Edit::SetWeight(id, address("198.18.0.12"), 50),
            Edit::AddVip(vip),
        ] {
            model.apply(&edit, now).unwrap();
        }
        model
    }

    /// The warn-level (and above) lines logged while `f` runs.
    fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    /// The orchestrator's changes are recorded; the next lbd, with the
    /// config file unchanged, starts from them: b3 and the added VIP are
    /// served, b1 stays removed, b2 keeps its weight. On the previous
    /// lbd's maps, b3 keeps its entry (id and generation: its established
    /// flows stay), which a start from the file alone retires.
    #[test]
    fn runtime_changes_come_back_at_a_restart_with_the_same_file() {
        let scratch = Scratch::new("same");
        let (path, file) = scratch.file("");
        let (config, mut record) = load(&path, file.clone());
        assert_eq!(config, file, "no record: the file");
        let running = changed(&file);
        record.record(&running, &file, &file.guard).unwrap();
        let record_path = running_state_file(&file).unwrap();
        assert_eq!(record_path, scratch.0.join("lbd.running.state"));
        assert!(record_path.exists());

        // The previous lbd's maps.
        let mut maps = FakeMaps::default();
        let mut before = Balancer::new(8);
        before
            .apply(&mut maps, &running.desired(&|_| None))
            .unwrap();
        let id = VipId::of(&file.vips[0]);
        let b3 = address("198.18.0.13");
        let entry_before = &before.vips()[&id].backends[&b3];
        let entry_before = (entry_before.id, entry_before.generation);

        // The restart, the file unchanged.
        let ((config, _record), warned) = warnings_of(|| load(&path, Config::load(&path).unwrap()));
        assert!(warned.is_empty(), "{warned}");
        let mut model = Model::from_config(&config);
        assert_eq!(model.to_config(&config).vips, running.to_config(&file).vips);
        assert!(model.backend(&id, b3).is_ok());
        assert!(model.backend(&id, address("198.18.0.11")).is_err());
        assert_eq!(
            model
                .backend(&id, address("198.18.0.12"))
                .unwrap()
                .config
                .weight,
            50
        );
        assert_eq!(model.vips.len(), 2);
        assert!(record_path.exists(), "kept for the next restart");

        let mut after = Balancer::new(8);
        after.adopt(&maps.adopted_state());
        super::super::start::seed_health(&mut model, &after);
        assert!(
            !model.backend(&id, b3).unwrap().awaits_first_check(),
            "adopted with its flows: takes new flows at once"
        );
        after.apply(&mut maps, &model.desired(&|_| None)).unwrap();
        let entry_after = &after.vips()[&id].backends[&b3];
        assert_eq!(
            (entry_after.id, entry_after.generation),
            entry_before,
            "b3's entry kept: its flows stay"
        );

        // What a start from the file alone did: b3 retired.
        let mut from_file = Balancer::new(8);
        let mut maps_file = FakeMaps::default();
        from_file
            .apply(&mut maps_file, &running.desired(&|_| None))
            .unwrap();
        let mut fresh = Balancer::new(8);
        fresh.adopt(&maps_file.adopted_state());
        fresh
            .apply(
                &mut maps_file,
                &Model::from_config(&file).desired(&|_| None),
            )
            .unwrap();
        assert!(!fresh.vips()[&id].backends.contains_key(&b3));
    }

    /// The config file changed since the record was taken (one byte is
    /// enough): the start applies the file, warns once naming what it
    /// drops, and moves the record aside; the next start says nothing.
    #[test]
    fn a_changed_file_drops_the_runtime_changes_with_a_warning() {
        let scratch = Scratch::new("changed");
        let (path, file) = scratch.file("");
        let (_, mut record) = load(&path, file.clone());
        record.record(&changed(&file), &file, &file.guard).unwrap();
        let record_path = running_state_file(&file).unwrap();

        let (_, edited) = scratch.file("# edited\n");
        let ((config, _), warned) = warnings_of(|| load(&path, edited.clone()));
        assert_eq!(config, edited, "the file");
        assert_eq!(warned.matches("WARN").count(), 1, "{warned}");
        assert!(warned.contains("the config file changed"), "{warned}");
        assert!(
            warned.contains(&record_path.display().to_string()),
            "{warned}"
        );
        for dropped in [
            "backend 198.18.0.13 of 198.18.0.100:80/tcp is not in the file: removed",
            "VIP 198.18.0.200:80/tcp is not in the file: removed",
            "backend 198.18.0.11 of 198.18.0.100:80/tcp from the file: added",
        ] {
            assert!(warned.contains(dropped), "{dropped}: {warned}");
        }
        assert!(!record_path.exists());
        let dropped = dropped_state_file(&file).unwrap();
        assert_eq!(dropped, scratch.0.join("lbd.running-dropped.state"));
        assert!(dropped.exists(), "kept to read");

        let ((config, _), warned) = warnings_of(|| load(&path, edited.clone()));
        assert_eq!(config, edited);
        assert!(warned.is_empty(), "{warned}");
    }

    /// A record that cannot be used (garbled, another version, a
    /// configuration that does not load) is named with why, and the
    /// start goes on from the file.
    #[test]
    fn an_unusable_record_is_named_and_the_start_is_from_the_file() {
        let scratch = Scratch::new("unusable");
        let (path, file) = scratch.file("");
        let record_path = running_state_file(&file).unwrap();
        let hash = sha256_hex(&std::fs::read(&path).unwrap());
        for (text, why) in [
            ("{".to_owned(), "not a running-state file"),
            (
                encode(&Writer::current(), Some(&hash), String::new())
                    .replace("\"version\": 2", "\"version\": 3"),
                "version 3",
            ),
            (
                encode(&Writer::current(), Some(&hash), "[[vip]]\n".to_owned()),
                "do not load",
            ),
        ] {
            std::fs::write(&record_path, &text).unwrap();
            let ((config, _), warned) = warnings_of(|| load(&path, file.clone()));
            assert_eq!(config, file, "{text}");
            assert!(
                warned.contains(&record_path.display().to_string()),
                "{warned}"
            );
            assert!(warned.contains(why), "{why}: {warned}");
            assert!(warned.contains("starting from the config file"), "{warned}");
            assert!(!record_path.exists());
        }
    }

    /// A reload makes the file the running configuration: its record
    /// goes; so does one of a running state back to the file's (the
    /// changes undone by hand). Nothing is written while the running
    /// configuration is the file's.
    #[test]
    fn a_reload_clears_the_record() {
        let scratch = Scratch::new("reload");
        let (path, file) = scratch.file("");
        let record_path = running_state_file(&file).unwrap();
        let (_, mut record) = load(&path, file.clone());
        // Health and admin states are no configuration.
        let mut model = Model::from_config(&file);
        let id = VipId::of(&file.vips[0]);
        model
            .apply(
                &Edit::Maintenance(id, address("198.18.0.11")),
                std::time::Instant::now(),
            )
            .unwrap();
        record.record(&model, &file, &file.guard).unwrap();
        assert!(!record_path.exists());

        let running = changed(&file);
        record.record(&running, &file, &file.guard).unwrap();
        assert!(record_path.exists());
        // The reload of an edited file: rebased on it, the reloaded
        // model recorded as nothing.
        let (_, edited) = scratch.file("# edited\n");
        let before = record.rebase(&path, &edited);
        assert_ne!(before.hash, record.base_hash);
        record
            .record(&running.reloaded(&edited), &edited, &edited.guard)
            .unwrap();
        assert!(!record_path.exists(), "the reload's state is the file's");
        // Changes after it are recorded on the file the reload read, and
        // a restart keeps them.
        record.record(&running, &edited, &edited.guard).unwrap();
        let (config, _) = load(&path, edited.clone());
        assert_eq!(config.vips.len(), 2);
    }

    /// A record that cannot be written is an error naming the file (the
    /// change asking for it is refused); once it can, it is written.
    #[test]
    fn a_record_that_cannot_be_written_names_the_file() {
        let scratch = Scratch::new("unwritable");
        let (path, file) = scratch.file("");
        let (_, mut record) = load(&path, file.clone());
        let record_path = running_state_file(&file).unwrap();
        std::fs::create_dir(super::node::temporary_of(&record_path)).unwrap();
        let why = record
            .record(&changed(&file), &file, &file.guard)
            .unwrap_err();
        assert!(why.starts_with("nothing changed"), "{why}");
        assert!(why.contains(&record_path.display().to_string()), "{why}");
        assert!(why.contains("a restart would not start from"), "{why}");
        std::fs::remove_dir(super::node::temporary_of(&record_path)).unwrap();
        record.record(&changed(&file), &file, &file.guard).unwrap();
        assert!(record_path.exists());
    }

    /// `lbd --cleanup` and a stop for good forget the record.
    #[test]
    fn a_stop_for_good_forgets_the_record() {
        let scratch = Scratch::new("forget");
        let (path, file) = scratch.file("");
        let (_, mut record) = load(&path, file.clone());
        record.record(&changed(&file), &file, &file.guard).unwrap();
        let record_path = running_state_file(&file).unwrap();
        assert!(record_path.exists());
        let dropped = dropped_state_file(&file).unwrap();
        std::fs::write(&dropped, "{}").unwrap();
        forget(&file);
        assert!(!record_path.exists());
        assert!(!dropped.exists());
        let (config, _) = load(&path, file.clone());
        assert_eq!(config, file);
    }

    /// The record's text holds only the running configuration's served
    /// sections (`[[vip]]`, `[[acl]]`, `[[limit]]`, as `lbctl config
    /// dump` writes them), which load with the file's node settings.
    #[test]
    fn the_record_holds_the_served_sections_only() {
        let scratch = Scratch::new("text");
        let (path, file) = scratch.file("");
        let (_, mut record) = load(&path, file.clone());
        record.record(&changed(&file), &file, &file.guard).unwrap();
        let text = std::fs::read_to_string(running_state_file(&file).unwrap()).unwrap();
        let (found, ignored) = decode(&text).unwrap();
        assert!(ignored.is_empty());
        assert!(!found.config.contains("interface"), "{}", found.config);
        assert!(!found.config.contains("conntrack_size"), "{}", found.config);
        let (loaded, ignored) = config::with_served(&file, &found.config, "record").unwrap();
        assert!(ignored.is_empty());
        assert_eq!(loaded.vips.len(), 2);
        assert_eq!(found.writer, Some(Writer::current()));
    }

    /// Writes, as the lbd `writer`, the record of the changed running
    /// configuration of `file` (at `path`).
    fn record_as(writer: Writer, path: &Path, file: &Config) {
        let (_, mut record) = RunningRecord::load_as(path, file.clone(), writer, (None, "boot-0"));
        record.record(&changed(file), file, &file.guard).unwrap();
    }

    /// Finding 3: lbd 100 records runtime changes; another lbd (200, an
    /// older build that keeps no record) runs after it, and runtime
    /// changes are made there; the next start, with the same config
    /// file, finds a record lbd 200 did not write: it starts from the
    /// file, warns, and moves the record aside (restoring it would bring
    /// back what was removed meanwhile).
    #[test]
    fn a_record_another_lbd_ran_after_is_set_aside() {
        let scratch = Scratch::new("stale");
        let (path, file) = scratch.file("");
        record_as(lbd(100, "boot-1"), &path, &file);
        let record_path = running_state_file(&file).unwrap();
        assert!(record_path.exists());

        let ((config, _), warned) = warnings_of(|| {
            RunningRecord::load_as(
                &path,
                file.clone(),
                lbd(300, "boot-1"),
                (Some(&lbd(200, "boot-1")), "boot-1"),
            )
        });
        assert_eq!(config, file, "the file, not the record");
        assert!(
            warned.contains("not written by the lbd that ran last"),
            "{warned}"
        );
        assert!(warned.contains("pid 100"), "{warned}");
        assert!(warned.contains("pid 200"), "{warned}");
        assert!(!record_path.exists());
        assert!(dropped_state_file(&file).unwrap().exists(), "kept to read");

        // The same pid in the same boot, started at another time: another
        // process.
        record_as(lbd(100, "boot-1"), &path, &file);
        let mut reused = lbd(100, "boot-1");
        reused.started = Some(7);
        let (config, _) = RunningRecord::load_as(
            &path,
            file.clone(),
            lbd(300, "boot-1"),
            (Some(&reused), "boot-1"),
        );
        assert_eq!(config, file);

        // An older build's record (no writer) is not known to be the last
        // lbd's either.
        let hash = sha256_hex(&std::fs::read(&path).unwrap());
        let text = encode(&lbd(1, "boot-1"), Some(&hash), String::new())
            .replace("\"writer\"", "\"unknown\"");
        std::fs::write(&record_path, text).unwrap();
        let ((config, _), warned) = warnings_of(|| {
            RunningRecord::load_as(
                &path,
                file.clone(),
                lbd(300, "boot-1"),
                (Some(&lbd(200, "boot-1")), "boot-1"),
            )
        });
        assert_eq!(config, file);
        assert!(warned.contains("does not name the lbd"), "{warned}");

        // No record of what an lbd held left in the boot the record was
        // written in (an lbd stopped for good since): set aside.
        record_as(lbd(100, "boot-1"), &path, &file);
        let (config, _) =
            RunningRecord::load_as(&path, file.clone(), lbd(300, "boot-1"), (None, "boot-1"));
        assert_eq!(config, file);
        assert!(!record_path.exists());
    }

    /// The record of the lbd that ran last comes back: after it crashed
    /// (the record of what it held names it), at each restart after (the
    /// lbd that restored it rewrote it as its own, though it changed
    /// nothing), and at the first start after a reboot.
    #[test]
    fn the_last_lbds_record_comes_back_after_a_crash_a_restart_and_a_reboot() {
        let scratch = Scratch::new("last");
        let (path, file) = scratch.file("");
        record_as(lbd(100, "boot-1"), &path, &file);
        let runtime = changed(&file).to_config(&file).vips;

        // lbd 100 crashed; lbd 300 starts.
        let (config, _) = RunningRecord::load_as(
            &path,
            file.clone(),
            lbd(300, "boot-1"),
            (Some(&lbd(100, "boot-1")), "boot-1"),
        );
        assert_eq!(config.vips, runtime);
        // lbd 300 is restarted (it changed nothing): lbd 400 restores.
        let (config, _) = RunningRecord::load_as(
            &path,
            file.clone(),
            lbd(400, "boot-1"),
            (Some(&lbd(300, "boot-1")), "boot-1"),
        );
        assert_eq!(config.vips, runtime);
        // A reboot: no record of what an lbd held in this boot.
        let (config, _) =
            RunningRecord::load_as(&path, file.clone(), lbd(500, "boot-2"), (None, "boot-2"));
        assert_eq!(config.vips, runtime);
        let text = std::fs::read_to_string(running_state_file(&file).unwrap()).unwrap();
        assert_eq!(decode(&text).unwrap().0.writer, Some(lbd(500, "boot-2")));
    }

    /// Finding 5: a record a newer build wrote, with keys this build does
    /// not know (in its JSON, beside the VIPs, in a VIP and in a backend),
    /// still restores the runtime changes, those keys left out with a
    /// warning naming them.
    #[test]
    fn a_newer_builds_keys_in_the_record_are_left_out() {
        let scratch = Scratch::new("newer");
        let (path, file) = scratch.file("");
        let hash = sha256_hex(&std::fs::read(&path).unwrap());
        let served = "future_key = 1\n\
                      [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nfuture_vip_key = \"x\"\n\
                      [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\nfuture_backend_key = 2\n";
        let text = encode(&Writer::current(), Some(&hash), served.to_owned()).replacen(
            '{',
            "{\n  \"future_field\": true,",
            1,
        );
        std::fs::write(running_state_file(&file).unwrap(), text).unwrap();
        let ((config, _), warned) = warnings_of(|| load(&path, file.clone()));
        assert_eq!(config.vips.len(), 1);
        let backends: Vec<String> = config.vips[0]
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        assert_eq!(backends, ["198.18.0.13"], "the record's backends");
        for key in [
            "future_field",
            "future_key",
            "vip[0].future_vip_key",
            "vip[0].backend[0].future_backend_key",
        ] {
            assert!(warned.contains(key), "{key}: {warned}");
        }
        assert!(!warned.contains("cannot be used"), "{warned}");
    }
}
