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
//! only backends that are not enabled are listed. Drain times are wall
//! clock, so a drain's deadline keeps running while lbd is down.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{backends_writer, node, running_state::Writer, BackendKey, Engine};
use crate::{
    config::Config,
    model::{is_checked, AdminState, BackendState, Model, MAX_DRAIN_TIMEOUT},
    vip_id::VipId,
};

/// The file format's version: a file of another is refused.
const VERSION: u32 = 1;

/// Each backend that is not enabled: its admin state and whether its
/// drain timed out (what the file keeps).
type Snapshot = BTreeMap<BackendKey, (AdminState, bool)>;

/// The backend state file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    backends: Vec<Recorded>,
}

/// One backend's recorded state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recorded {
    /// `ADDRESS:PORT/PROTOCOL`.
    vip: String,
    backend: IpAddr,
    /// `draining` or `maintenance`.
    state: BackendState,
    /// When the drain started (draining only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain_started_unix_ms: Option<u64>,
    /// When its drain's timeout ends it (draining only; none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain_deadline_unix_ms: Option<u64>,
    /// In maintenance because its drain timed out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    drain_timed_out: bool,
}

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
}

/// Where the backend states are kept: beside the node state file, so
/// they live as long as a node drain does (`[bgp] node_state_file` with
/// `.backends.state` appended to its whole name, e.g.
/// `/var/lib/lbd/node.state.backends.state`; without `[bgp]` beside the
/// admin socket, named after its stem, e.g. `/run/lbd/lbd.backends.state`,
/// which a restart keeps and a reboot empties). Each name is this lbd's
/// own, as it holds the lock of what it is derived from: two lbds on one
/// host have distinct node state files (each locks its own), and distinct
/// admin socket stems (each locks the record named after its stem; see
/// `ownership`), and so is its temporary file while it is replaced (the
/// whole name with `.new` appended, `node::temporary_of`).
pub(crate) fn backend_state_file(config: &Config) -> Option<PathBuf> {
    state_file_named(config, "backends")
}

/// The state file `<kind>.state` kept where the backend state file is
/// (see [`backend_state_file`]): beside the node state file with
/// `.<kind>.state` appended to its whole name, or without `[bgp]` beside
/// the admin socket, named after its stem. Shared with the other state a
/// restart keeps (`running_state`), so each lives as long and as far
/// apart from another lbd's.
pub(super) fn state_file_named(config: &Config, kind: &str) -> Option<PathBuf> {
    match &config.bgp {
        Some(bgp) => Some(beside_node_state_named(&bgp.node_state_file, kind)),
        None => beside_admin_socket_named(config, kind),
    }
}

/// The backend state file kept beside the node state file `node_state`.
fn beside_node_state(node_state: &Path) -> PathBuf {
    beside_node_state_named(node_state, "backends")
}

/// The state file `kind` kept beside the node state file `node_state`.
fn beside_node_state_named(node_state: &Path, kind: &str) -> PathBuf {
    let mut name = node_state.to_owned().into_os_string();
    name.push(format!(".{kind}.state"));
    PathBuf::from(name)
}

/// The backend state file kept beside the admin socket (without `[bgp]`).
fn beside_admin_socket(config: &Config) -> Option<PathBuf> {
    beside_admin_socket_named(config, "backends")
}

/// The state file `kind` kept beside the admin socket (without `[bgp]`).
fn beside_admin_socket_named(config: &Config, kind: &str) -> Option<PathBuf> {
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.{kind}.state")))
}

/// Where this lbd's backend state file would have been before a change
/// of its config that moves it (the file is found by its name alone):
/// beside the admin socket before `[bgp]` was added, beside the default
/// node state file (`default_node_state`) before `[bgp]` was removed or
/// its `node_state_file` set. A node state file set before is not
/// known. `path` (where it is now) is left out.
fn former_places(config: &Config, path: &Path, default_node_state: &Path) -> Vec<PathBuf> {
    let mut places = Vec::new();
    if config.bgp.is_some() {
        places.extend(beside_admin_socket(config));
    }
    places.push(beside_node_state(default_node_state));
    places.retain(|place| place != path);
    places.dedup();
    places
}

/// The backend state files at `former_places` when there is none at
/// `path`, each with what it holds (the number of backends it lists, or
/// why it cannot be read): states a restart after such a change of the
/// config would otherwise forget without a word. Empty ones are left
/// out (they hold nothing to forget).
fn left_behind(
    config: &Config,
    path: &Path,
    default_node_state: &Path,
) -> Vec<(PathBuf, Result<usize, String>)> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Vec::new();
    }
    former_places(config, path, default_node_state)
        .into_iter()
        .filter(|place| std::fs::symlink_metadata(place).is_ok())
        .filter_map(|place| match read(&place) {
            Ok(found) if found.is_empty() => None,
            Ok(found) => Some((place, Ok(found.len()))),
            Err(error) => Some((place, Err(format!("{error:#}")))),
        })
        .collect()
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
        })
    }

    /// Puts the recorded states into `model` (built from the config at
    /// start) at `now`, and logs which were restored and which were
    /// dropped because their backend is no longer configured.
    pub(crate) fn restore(&mut self, model: &mut Model, now: Instant) {
        let found = std::mem::take(&mut self.found);
        let outcome = restore(model, &found, now, SystemTime::now());
        for (key, state) in &outcome.restored {
            info!(vip = %key.0, backend = %key.1, %state, "backend state restored from before this start");
        }
        for (vip, backend, state) in &outcome.dropped {
            info!(%vip, %backend, %state, "backend state recorded before this start dropped: the config has no such backend");
        }
        if let (Some(path), false) = (&self.path, found.is_empty()) {
            info!(path = %path.display(), restored = outcome.restored.len(), dropped = outcome.dropped.len(), "backend states read");
        }
        // Dropped ones are written out by the first commit.
        self.recorded = outcome.dropped.is_empty().then(|| snapshot(model));
    }
}

/// What [`restore`] did.
#[derive(Debug, Default, PartialEq)]
struct Restored {
    /// Backends given their recorded state.
    restored: Vec<(BackendKey, BackendState)>,
    /// Recorded states of backends the model does not have.
    dropped: Vec<(String, IpAddr, BackendState)>,
}

/// Gives the backends of `model` the states `found` records, with the
/// wall clock at `wall` taken as `now`: a drain keeps its start and its
/// deadline (one that passed while lbd was down ends at the next tick,
/// as the drain's timeout does); a checked backend in maintenance awaits
/// its first check before it takes new flows again.
fn restore(model: &mut Model, found: &[Recorded], now: Instant, wall: SystemTime) -> Restored {
    let mut out = Restored::default();
    let wall_ms = unix_ms(wall);
    for entry in found {
        let key = entry
            .vip
            .parse::<VipId>()
            .ok()
            .map(|id| (id, entry.backend));
        let Some((vip, backend)) = key.and_then(|(id, address)| {
            let vip = model.vips.get_mut(&id)?;
            let backend = vip.backends.get_mut(&address)?;
            Some((&vip.config, backend))
        }) else {
            out.dropped
                .push((entry.vip.clone(), entry.backend, entry.state));
            continue;
        };
        let admin = match entry.state {
            BackendState::Enabled => continue,
            BackendState::Maintenance => AdminState::Maintenance,
            BackendState::Draining => {
                let ago = entry
                    .drain_started_unix_ms
                    .map_or(0, |at| wall_ms.saturating_sub(at));
                let since = now.checked_sub(Duration::from_millis(ago)).unwrap_or(now);
                // A deadline no later than a week from now (the longest a
                // drain may ask for), so a clock set back cannot push it
                // out of reach.
                let deadline = entry.drain_deadline_unix_ms.map(|at| {
                    let left = Duration::from_millis(at.saturating_sub(wall_ms));
                    now + left.min(MAX_DRAIN_TIMEOUT)
                });
                AdminState::Draining { since, deadline }
            }
        };
        backend.admin = admin;
        backend.drain_timed_out = entry.drain_timed_out && admin == AdminState::Maintenance;
        if admin == AdminState::Maintenance {
            // Its health is not known (the maps hold it dead for its
            // maintenance, and it may be down): an enable before its first
            // check gives it no new flows, as for a backend that joins.
            backend.awaiting_checks = is_checked(vip, &backend.config);
        }
        if let Some(key) = key {
            out.restored.push((key, entry.state));
        }
    }
    out
}

/// The states of `model`'s backends that are not enabled.
fn snapshot(model: &Model) -> Snapshot {
    model
        .vips
        .iter()
        .flat_map(|(id, vip)| {
            vip.backends
                .iter()
                .filter(|(_, b)| b.admin != AdminState::Enabled)
                .map(|(address, b)| ((*id, *address), (b.admin, b.drain_timed_out)))
        })
        .collect()
}

/// `snapshot` as the file's text, its instants taken at `now` = `wall`.
fn encode(snapshot: &Snapshot, now: Instant, wall: SystemTime) -> String {
    let wall_ms = unix_ms(wall);
    let at = |instant: Instant| {
        if instant >= now {
            wall_ms.saturating_add(millis(instant - now))
        } else {
            wall_ms.saturating_sub(millis(now - instant))
        }
    };
    let backends = snapshot
        .iter()
        .map(|((id, address), (admin, timed_out))| {
            let (started, deadline) = match admin {
                AdminState::Draining { since, deadline } => (Some(at(*since)), deadline.map(at)),
                AdminState::Enabled | AdminState::Maintenance => (None, None),
            };
            Recorded {
                vip: id.to_string(),
                backend: *address,
                state: admin.state(),
                drain_started_unix_ms: started,
                drain_deadline_unix_ms: deadline,
                drain_timed_out: *timed_out,
            }
        })
        .collect();
    let file = StateFile {
        version: VERSION,
        backends,
    };
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// What `path` records, provided the lbd that ran last (`previous`) may
/// have kept it (see `backends_writer`; else it is moved to `aside`,
/// with a warning, and nothing is restored); named as `me`'s at once, so
/// a restart of this lbd (even after a start that fails) restores it
/// again. Nothing when there is no file; an error naming it when it
/// cannot be read or understood.
fn read_written_by_last(
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
fn read(path: &Path) -> anyhow::Result<Vec<Recorded>> {
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

/// The entries of a backend state file's `text`.
fn decode(text: &str) -> anyhow::Result<Vec<Recorded>> {
    let file: StateFile = serde_json::from_str(text).context("not a backend state file")?;
    anyhow::ensure!(
        file.version == VERSION,
        "version {} (this lbd reads version {VERSION})",
        file.version
    );
    for entry in &file.backends {
        entry
            .vip
            .parse::<VipId>()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("the entry of backend {}", entry.backend))?;
    }
    Ok(file.backends)
}

/// Writes `wanted` to the backend state file `path` durably, and names
/// `writer` (its file, this lbd) as its writer; the error says that
/// nothing changed and names the file.
fn write(path: &Path, wanted: &Snapshot, writer: Option<&(PathBuf, Writer)>) -> Result<(), String> {
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

fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Engine {
    /// Records the backend states of `next` before an operator's change
    /// makes them current: an error (naming the file) when they cannot
    /// be written, and the change must then be refused (a state a restart
    /// would forget is no state). Nothing is written when they are
    /// already recorded.
    pub(super) fn record_admin_states(&mut self, next: &Model) -> Result<(), String> {
        let Some(path) = self.admin.path.clone() else {
            return Ok(());
        };
        let wanted = snapshot(next);
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
        if let Err(error) = self.record_admin_states(&model) {
            warn!(%error, "the backend state file does not match the running backends");
        }
        self.model = model;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Edit;
    use crate::test_scratch::ScratchDir;

    fn config(dir: &Path) -> Config {
        let text = format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             drain_timeout_s = 600\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            dir.join("lbd.sock").display()
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    }

    fn key(model: &Model, backend: &str) -> BackendKey {
        (*model.vips.keys().next().unwrap(), backend.parse().unwrap())
    }

    /// The file this build wrote names its writer; a start after an
    /// older build that keeps no backend state file ran (the record of
    /// what the last lbd held names another lbd, which says not when it
    /// started) does not restore it: that build started every backend
    /// enabled, and what the file holds may have ended since. It is moved
    /// aside. The writer's own restart, or one after a build that keeps
    /// the file, restores it, and names the new lbd its writer at once.
    #[test]
    fn a_file_an_older_build_did_not_keep_is_not_restored() {
        let scratch = ScratchDir::new("backends-writer");
        let config = config(scratch.path());
        let start = Instant::now();
        let mut model = Model::from_config(&config);
        let b2 = key(&model, "198.18.0.12");
        model.apply(&Edit::Maintenance(b2.0, b2.1), start).unwrap();
        let path = backend_state_file(&config).unwrap();
        let writer_file = backends_writer::writer_file(&config).unwrap();
        let first = Writer::for_test(100, "boot-1", Some(1000));
        let older = Writer::for_test(200, "boot-1", None);
        write(
            &path,
            &snapshot(&model),
            Some(&(writer_file.clone(), first.clone())),
        )
        .unwrap();
        assert!(writer_file.exists());

        // The writer ran last: restored, and now the next lbd's.
        let second = Writer::for_test(101, "boot-1", Some(1100));
        let admin = AdminRecord::load_as(&config, second.clone(), Some(&first)).unwrap();
        assert_eq!(admin.found.len(), 1);
        // An older build ran after `second`: not restored, moved aside.
        let admin = AdminRecord::load_as(&config, first.clone(), Some(&older)).unwrap();
        assert!(admin.found.is_empty(), "{:?}", admin.found);
        assert!(!path.exists());
        assert!(!writer_file.exists());
        let aside = backends_writer::dropped_file(&config).unwrap();
        assert_eq!(read(&aside).unwrap().len(), 1);

        // A file an older build that keeps it wrote (no writer file, or
        // other bytes than the writer file names) is restored.
        std::fs::copy(&aside, &path).unwrap();
        let admin = AdminRecord::load_as(&config, first.clone(), Some(&older)).unwrap();
        assert_eq!(admin.found.len(), 1);
        let mut other = snapshot(&model);
        other.clear();
        write(&path, &other, Some(&(writer_file.clone(), first.clone()))).unwrap();
        std::fs::copy(&aside, &path).unwrap();
        let admin = AdminRecord::load_as(&config, second, Some(&older)).unwrap();
        assert_eq!(admin.found.len(), 1);
    }

    /// b2 in maintenance, b3 draining for ten minutes, b1 (a drain that
    /// timed out) in maintenance: written, and read back by the next lbd
    /// 30 s of wall clock later, every state comes back, the drain with
    /// its start and what is left of its deadline.
    #[test]
    fn states_written_come_back_at_the_next_start() {
        let scratch = ScratchDir::new("backends-roundtrip");
        let config = config(scratch.path());
        let start = Instant::now();
        let mut model = Model::from_config(&config);
        let (b1, b2, b3) = (
            key(&model, "198.18.0.11"),
            key(&model, "198.18.0.12"),
            key(&model, "198.18.0.13"),
        );
        let drain = |k: BackendKey| Edit::Drain {
            vip: k.0,
            backend: k.1,
            timeout_s: None,
        };
        model.apply(&Edit::Maintenance(b2.0, b2.1), start).unwrap();
        model.apply(&drain(b3), start).unwrap();
        model
            .apply(
                &Edit::Drain {
                    vip: b1.0,
                    backend: b1.1,
                    timeout_s: Some(1),
                },
                start,
            )
            .unwrap();
        model.expire_drains(start + Duration::from_secs(1));
        let wall = SystemTime::now();
        let text = encode(&snapshot(&model), start, wall);
        let path = backend_state_file(&config).unwrap();
        assert_eq!(path, scratch.join("lbd.backends.state"));
        std::fs::write(&path, &text).unwrap();

        let found = read(&path).unwrap();
        assert_eq!(found.len(), 3, "{text}");
        let later = start + Duration::from_secs(60);
        let mut next = Model::from_config(&config);
        let outcome = restore(&mut next, &found, later, wall + Duration::from_secs(30));
        assert!(outcome.dropped.is_empty(), "{outcome:?}");
        assert_eq!(outcome.restored.len(), 3);
        let state = |k: BackendKey| next.backend(&k.0, k.1).unwrap().clone();
        assert_eq!(state(b2).admin, AdminState::Maintenance);
        assert!(!state(b2).drain_timed_out);
        assert_eq!(state(b1).admin, AdminState::Maintenance);
        assert!(
            state(b1).drain_timed_out,
            "a timed-out drain's outcome stays"
        );
        match state(b3).admin {
            AdminState::Draining {
                since,
                deadline: Some(deadline),
            } => {
                assert_eq!(later - since, Duration::from_secs(30));
                assert_eq!(deadline - later, Duration::from_secs(570));
            }
            other => panic!("b3 should be draining with a deadline: {other:?}"),
        }
    }

    /// A backend the config no longer has is dropped (and said so); a
    /// drain whose deadline passed while lbd was down ends at once.
    #[test]
    fn gone_backends_are_dropped_and_passed_deadlines_end_at_once() {
        let scratch = ScratchDir::new("backends-dropped");
        let config = config(scratch.path());
        let now = Instant::now();
        let wall = SystemTime::now();
        let model = Model::from_config(&config);
        let vip = model.vips.keys().next().unwrap().to_string();
        let found = decode(&format!(
            "{{\"version\": 1, \"backends\": [\
             {{\"vip\": \"{vip}\", \"backend\": \"198.18.0.99\", \"state\": \"maintenance\"}},\
             {{\"vip\": \"198.18.0.200:80/tcp\", \"backend\": \"198.18.0.11\", \"state\": \"maintenance\"}},\
             {{\"vip\": \"{vip}\", \"backend\": \"198.18.0.13\", \"state\": \"draining\", \"drain_started_unix_ms\": 1, \"drain_deadline_unix_ms\": 2}}]}}"
        ))
        .unwrap();
        let mut next = model.clone();
        let outcome = restore(&mut next, &found, now, wall);
        assert_eq!(outcome.dropped.len(), 2, "{outcome:?}");
        assert_eq!(outcome.restored.len(), 1);
        let b3 = key(&next, "198.18.0.13");
        assert_eq!(next.expire_drains(now), vec![b3], "its deadline passed");
        assert!(next.backend(&b3.0, b3.1).unwrap().drain_timed_out);
        // The others are as the file left them: enabled.
        let b1 = key(&next, "198.18.0.11");
        assert_eq!(
            next.backend(&b1.0, b1.1).unwrap().admin,
            AdminState::Enabled
        );
    }

    /// A file that is there but unusable (garbled, another version, a
    /// VIP that is no VIP, unreadable) is an error naming it: lbd does not
    /// start on it. No file is no state.
    #[test]
    fn an_unusable_file_is_an_error_naming_it() {
        let scratch = ScratchDir::new("backends-unusable");
        let config = config(scratch.path());
        let path = backend_state_file(&config).unwrap();
        assert!(
            AdminRecord::load(&config, None).unwrap().found.is_empty(),
            "no file"
        );
        for text in [
            "",
            "{",
            "{\"version\": 2, \"backends\": []}",
            "{\"version\": 1, \"backends\": [{\"vip\": \"nonsense\", \"backend\": \"198.18.0.11\", \"state\": \"maintenance\"}]}",
            "{\"version\": 1, \"backends\": [{\"vip\": \"198.18.0.100:80\", \"backend\": \"198.18.0.11\", \"state\": \"sleeping\"}]}",
        ] {
            std::fs::write(&path, text).unwrap();
            let error = format!("{:#}", AdminRecord::load(&config, None).unwrap_err());
            assert!(error.contains(&path.display().to_string()), "{text:?}: {error}");
            assert!(error.contains("remove it"), "{error}");
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let error = format!("{:#}", AdminRecord::load(&config, None).unwrap_err());
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    /// A state that cannot be written is an error naming the file (the
    /// change asking for it is refused); once it can, it is read back.
    #[test]
    fn a_state_that_cannot_be_written_names_the_file() {
        let scratch = ScratchDir::new("backends-unwritable");
        let config = config(&scratch.join("run"));
        let path = backend_state_file(&config).unwrap();
        let mut model = Model::from_config(&config);
        let b2 = key(&model, "198.18.0.12");
        model
            .apply(&Edit::Maintenance(b2.0, b2.1), Instant::now())
            .unwrap();
        // Its directory cannot be made: a file is where it would go.
        std::fs::write(scratch.join("run"), b"not a directory").unwrap();
        let why = write(&path, &snapshot(&model), None).unwrap_err();
        assert!(why.contains(&path.display().to_string()), "{why}");
        assert!(why.starts_with("nothing changed"), "{why}");
        std::fs::remove_file(scratch.join("run")).unwrap();
        write(&path, &snapshot(&model), None).unwrap();
        let found = read(&path).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].state, BackendState::Maintenance);
        assert!(
            !super::node::temporary_of(&path).exists(),
            "no temporary file left"
        );
    }

    /// An lbd config with `[bgp]`'s node state file `node_state` and the
    /// admin socket `socket`, under `dir`.
    fn bgp_config(dir: &Path, socket: &str, node_state: &str) -> Config {
        let text = format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
            dir.join("run").join(socket).display(),
            dir.join("bird.ctl").display(),
            dir.join("vips.conf").display(),
            dir.join("lib").join(node_state).display()
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    }

    /// The file is found by its name alone: one left where the config
    /// put it before `[bgp]` was added (beside the admin socket) or
    /// removed (beside the default node state file) is named, with what
    /// it holds, when there is none where the config puts it now (and
    /// never restored); an empty one, or one beside a file in place, is
    /// not.
    #[test]
    fn a_file_left_where_the_config_put_it_before_is_named() {
        let scratch = ScratchDir::new("backends-moved");
        let default_node_state = scratch.join("default").join("node.state");
        let with_bgp = bgp_config(scratch.path(), "lbd.sock", "node.state");
        let without = config(&scratch.join("run"));
        let here = backend_state_file(&with_bgp).unwrap();
        let socket_side = backend_state_file(&without).unwrap();
        assert_eq!(socket_side, scratch.join("run").join("lbd.backends.state"));
        let default_side = scratch.join("default").join("node.state.backends.state");
        assert!(left_behind(&with_bgp, &here, &default_node_state).is_empty());

        // One backend in maintenance, recorded without [bgp].
        let mut model = Model::from_config(&without);
        let b2 = key(&model, "198.18.0.12");
        model
            .apply(&Edit::Maintenance(b2.0, b2.1), Instant::now())
            .unwrap();
        write(&socket_side, &snapshot(&model), None).unwrap();
        // [bgp] added: named, and not restored.
        assert_eq!(
            left_behind(&with_bgp, &here, &default_node_state),
            vec![(socket_side.clone(), Ok(1))]
        );
        assert!(AdminRecord::load(&with_bgp, None).unwrap().found.is_empty());
        // A file where the config puts it now: nothing else is looked at.
        write(&here, &Snapshot::new(), None).unwrap();
        assert!(left_behind(&with_bgp, &here, &default_node_state).is_empty());
        std::fs::remove_file(&here).unwrap();
        // An empty one holds nothing to forget.
        write(&socket_side, &Snapshot::new(), None).unwrap();
        assert!(left_behind(&with_bgp, &here, &default_node_state).is_empty());
        std::fs::remove_file(&socket_side).unwrap();

        // Recorded beside the default node state file, then [bgp]
        // removed: named; garbled, named with why it cannot be read.
        std::fs::create_dir_all(scratch.join("default")).unwrap();
        write(&default_side, &snapshot(&model), None).unwrap();
        assert_eq!(
            left_behind(&without, &socket_side, &default_node_state),
            vec![(default_side.clone(), Ok(1))]
        );
        // ... or node_state_file set away from the default.
        assert_eq!(
            left_behind(&with_bgp, &here, &default_node_state),
            vec![(default_side.clone(), Ok(1))]
        );
        std::fs::write(&default_side, "{").unwrap();
        let found = left_behind(&without, &socket_side, &default_node_state);
        assert_eq!(found.len(), 1);
        assert!(
            matches!(&found[0], (place, Err(why)) if *place == default_side && why.contains("cannot be trusted")),
            "{found:?}"
        );
    }

    /// With `[bgp]` the file lies beside the node state file (kept across
    /// reboots), named after its whole name.
    #[test]
    fn the_file_lies_beside_the_node_state_file() {
        let scratch = ScratchDir::new("backends-bgp");
        let config = bgp_config(scratch.path(), "lbd.sock", "node.state");
        assert_eq!(
            backend_state_file(&config),
            Some(scratch.join("lib").join("node.state.backends.state"))
        );
    }

    /// Two lbds on one host, each with its own node state file (which it
    /// locks) or, without `[bgp]`, its own admin socket stem (whose record
    /// it locks), keep their backend states apart: node state files that
    /// differ only after their last dot (`node.state.eth0`,
    /// `node.state.eth1`), or in their extension, or by having one, give
    /// distinct files, none of which is a node state file; and so do the
    /// temporary files they are written through.
    #[test]
    fn each_lbd_on_a_host_has_a_file_of_its_own() {
        let scratch = ScratchDir::new("backends-apart");
        let node_states = [
            "node.state",
            "node.state.eth0",
            "node.state.eth1",
            "node",
            "node.other",
            "node.backends",
        ];
        let mut files: Vec<PathBuf> = node_states
            .iter()
            .enumerate()
            .map(|(i, state)| {
                let config = bgp_config(scratch.path(), &format!("lbd{i}.sock"), state);
                backend_state_file(&config).unwrap()
            })
            .collect();
        assert_eq!(
            files[1],
            scratch.join("lib").join("node.state.eth0.backends.state")
        );
        for state in node_states {
            assert!(!files.contains(&scratch.join("lib").join(state)));
        }
        let temporaries: std::collections::BTreeSet<PathBuf> =
            files.iter().map(|f| super::node::temporary_of(f)).collect();
        assert_eq!(temporaries.len(), files.len(), "{temporaries:?}");
        let plain = |socket: &str| {
            let mut config = config(scratch.path());
            config.admin_socket = scratch.join(socket);
            backend_state_file(&config).unwrap()
        };
        files.extend([plain("lbd.sock"), plain("lbd-eth1.sock")]);
        let distinct: std::collections::BTreeSet<&PathBuf> = files.iter().collect();
        assert_eq!(distinct.len(), files.len(), "{files:?}");
    }
}
