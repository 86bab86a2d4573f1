//! Which states a node sends and which of its peers' it takes, as pure
//! functions of its model, its stamps, what the peers sent and the
//! clocks: the later change wins, and at the same millisecond the more
//! cautious state (maintenance over draining over enabled), so that every
//! node settles on the same one whatever order the messages come in.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Instant, SystemTime},
};

use super::{Stamp, Stamps};
use crate::{
    config::Protocol,
    daemon::engine::{
        admin_state::{drain_deadline_at, drain_start_at, unix_ms, unix_ms_at},
        BackendKey,
    },
    model::{AdminState, BackendModel, Model},
    sync::wire::{BackendStateRecord, SharedState},
    vip_id::VipId,
};

/// A backend's state as the sync protocol names it.
pub(super) fn shared_state(admin: AdminState) -> SharedState {
    match admin {
        AdminState::Enabled => SharedState::Enabled,
        AdminState::Draining { .. } => SharedState::Draining,
        AdminState::Maintenance => SharedState::Maintenance,
    }
}

/// How two states of one backend are ordered: by when they were made,
/// then by caution.
fn order(unix_ms: u64, state: SharedState) -> (u64, u8) {
    let caution = match state {
        SharedState::Enabled => 0,
        SharedState::Draining => 1,
        SharedState::Maintenance => 2,
    };
    (unix_ms, caution)
}

/// What this node tells its peers: every backend whose state has a stamp,
/// and every backend that is not enabled (one set before this node shared
/// its states, or restored from a file without times, goes with time 0:
/// a peer that knows of no change takes it, one with any change of its
/// own keeps that).
pub(super) fn own_records(
    model: &Model,
    stamps: &Stamps,
    now: Instant,
    wall: SystemTime,
) -> Vec<BackendStateRecord> {
    let wall_ms = unix_ms(wall);
    let mut records = Vec::new();
    for (id, vip) in &model.vips {
        for (address, backend) in &vip.backends {
            let stamp = stamps.get(&(*id, *address)).map(|s| s.unix_ms);
            if stamp.is_none() && backend.admin == AdminState::Enabled {
                continue;
            }
            let (started, deadline) = match backend.admin {
                AdminState::Draining { since, deadline } => (
                    unix_ms_at(since, now, wall_ms),
                    deadline.map(|d| unix_ms_at(d, now, wall_ms)),
                ),
                AdminState::Enabled | AdminState::Maintenance => (0, None),
            };
            records.push(BackendStateRecord {
                vip: id.address,
                port: id.port,
                protocol: id.protocol.number(),
                backend: *address,
                state: shared_state(backend.admin),
                changed_unix_ms: stamp.unwrap_or(0),
                drain_started_unix_ms: started,
                drain_deadline_unix_ms: deadline,
                drain_timed_out: backend.drain_timed_out
                    && backend.admin == AdminState::Maintenance,
            });
        }
    }
    records
}

/// How far ahead of this node's clock a peer's change may be stamped and
/// still be taken: more means the peer's clock is wrong, and a change
/// stamped in the future would override every change made here until
/// that time came (an undrain here taken back at once).
pub(super) const CLOCK_AHEAD_TOLERANCE_MS: u64 = 60_000;

/// A peer's state this node takes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Taken {
    /// The backend.
    pub(super) key: BackendKey,
    /// Its state as this node's model holds it.
    pub(super) admin: AdminState,
    /// In maintenance because a drain's timeout ended it.
    pub(super) drain_timed_out: bool,
    /// When it was made, and the peer it came from.
    pub(super) stamp: Stamp,
}

/// What [`later_from_peers`] found.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Later {
    /// The states to take.
    pub(super) taken: Vec<Taken>,
    /// Peers that sent a change stamped more than
    /// [`CLOCK_AHEAD_TOLERANCE_MS`] ahead of this node's clock, with how
    /// far ahead (ms): none of their states is taken.
    pub(super) clocks_ahead: Vec<(String, u64)>,
}

/// The states the peers sent (by node id) that are later than this
/// node's own, one per backend (the latest of them; between peers that
/// sent the same, the first by node id). Backends this node does not
/// serve are left out: a VRRP pair's nodes may serve different VIPs. A
/// peer whose changes are stamped too far in the future (see
/// [`CLOCK_AHEAD_TOLERANCE_MS`]) is left out whole, and named.
pub(super) fn later_from_peers(
    model: &Model,
    stamps: &Stamps,
    peers: &HashMap<String, Arc<[BackendStateRecord]>>,
    now: Instant,
    wall: SystemTime,
) -> Later {
    let wall_ms = unix_ms(wall);
    let mut names: Vec<&String> = peers.keys().collect();
    names.sort();
    let mut best: std::collections::BTreeMap<BackendKey, (&String, &BackendStateRecord)> =
        std::collections::BTreeMap::new();
    let mut clocks_ahead = Vec::new();
    for name in names {
        let latest = peers[name].iter().map(|r| r.changed_unix_ms).max();
        if let Some(ahead) = latest
            .map(|at| at.saturating_sub(wall_ms))
            .filter(|ahead| *ahead > CLOCK_AHEAD_TOLERANCE_MS)
        {
            clocks_ahead.push((name.clone(), ahead));
            continue;
        }
        for record in peers[name].iter() {
            let Some(key) = key_of(record) else { continue };
            let Some(backend) = backend_of(model, &key) else {
                continue;
            };
            let theirs = order(record.changed_unix_ms, record.state);
            let ours = stamps
                .get(&key)
                .map(|s| order(s.unix_ms, shared_state(backend.admin)));
            if ours.is_some_and(|ours| theirs <= ours) {
                continue;
            }
            let better = best
                .get(&key)
                .is_none_or(|(_, b)| theirs > order(b.changed_unix_ms, b.state));
            if better {
                best.insert(key, (name, record));
            }
        }
    }
    let taken = best
        .into_iter()
        .map(|(key, (name, record))| Taken {
            key,
            admin: admin_of(record, now, wall_ms),
            drain_timed_out: record.drain_timed_out && record.state == SharedState::Maintenance,
            stamp: Stamp {
                unix_ms: record.changed_unix_ms,
                from: Some(Arc::from(name.as_str())),
            },
        })
        .collect();
    Later {
        taken,
        clocks_ahead,
    }
}

/// The backend a record names, if it names one of a protocol lbd knows.
fn key_of(record: &BackendStateRecord) -> Option<BackendKey> {
    let protocol = Protocol::from_number(record.protocol)?;
    Some((
        VipId {
            address: record.vip,
            port: record.port,
            protocol,
        },
        record.backend,
    ))
}

/// `key`'s backend in `model`.
fn backend_of<'m>(model: &'m Model, key: &BackendKey) -> Option<&'m BackendModel> {
    model.vips.get(&key.0)?.backends.get(&key.1)
}

/// Whether `model` serves `key`'s backend (a stamp of one it does not is
/// dropped).
pub(super) fn serves(model: &Model, key: &BackendKey) -> bool {
    backend_of(model, key).is_some()
}

/// A record's state as this node's clock holds it (a drain keeps its
/// start and deadline in wall-clock time).
fn admin_of(record: &BackendStateRecord, now: Instant, wall_ms: u64) -> AdminState {
    match record.state {
        SharedState::Enabled => AdminState::Enabled,
        SharedState::Maintenance => AdminState::Maintenance,
        SharedState::Draining => AdminState::Draining {
            since: drain_start_at(record.drain_started_unix_ms, now, wall_ms),
            deadline: record
                .drain_deadline_unix_ms
                .map(|at| drain_deadline_at(at, now, wall_ms)),
        },
    }
}
